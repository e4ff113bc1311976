"""Theano's ``scan_checkpoints``: a scan whose gradient stores the state only every
``save_every_N`` steps and recomputes the steps in between during backpropagation.

It is a scan over blocks of ``save_every_N`` steps whose body is an inner scan over the
block, returning only the inner scan's last state.  The outer scan's gradient keeps one
state per block; the inner scan's forward values are recomputed in the outer backward
step, so memory is O(n / N + N) states instead of O(n)."""
from __future__ import annotations

import functools

from .scan import _as_list, scan
from .tensor import basic as B
from .tensor.variable import as_variable


def scan_checkpoints(fn, sequences=None, outputs_info=None, non_sequences=None, name="checkpointscan_fn",
                     n_steps=None, save_every_N=10, no_padding=False):
    """Like :func:`tcomp.scan` (same ``fn`` convention), but ``outputs`` hold the state after
    every ``save_every_N``-th step (and after the last step), not after every step.
    Restrictions (Theano's): sequences without taps, all as long as ``n_steps``; recurrent
    outputs with a single tap (-1).  ``no_padding``: the length is a multiple of
    ``save_every_N`` (otherwise the sequences are zero-padded, a copy)."""
    sequences = [as_variable(s, f"sequences[{i}]") for i, s in enumerate(_as_list(sequences))]
    outputs_info = _as_list(outputs_info)
    non_sequences = _as_list(non_sequences)
    if not isinstance(save_every_N, int) or save_every_N < 1:
        raise ValueError(f"scan_checkpoints: save_every_N must be a positive int, got {save_every_N!r}")
    for k, o in enumerate(outputs_info):
        if isinstance(o, dict) and "taps" in o:
            raise ValueError(f"scan_checkpoints: outputs_info[{k}] has taps; only single-tap recurrences are "
                             "supported")
        if o is None:
            raise ValueError(f"scan_checkpoints: outputs_info[{k}] is None; every output must be recurrent "
                             "(only its last value per block is kept)")
    if not sequences and n_steps is None:
        raise ValueError("scan_checkpoints: give sequences or n_steps")
    N = save_every_N
    # as scan: the loop runs the smallest of n_steps and the sequences' lengths
    lengths = [B.cast(q.shape[0], "int64") for q in sequences]
    if n_steps is not None:
        lengths.append(B.cast(as_variable(n_steps, "n_steps"), "int64"))
    total = functools.reduce(B.minimum, lengths)
    blocks = (total + (N - 1)) // N
    # steps per block: N, except the last block runs what is left
    counts = B.switch(B.eq(B.arange(blocks), blocks - 1), total - (blocks - 1) * N, N)
    blocked = []
    for s in sequences:
        tail = [s.shape[i] for i in range(1, s.ndim)]
        s = s[:total]
        if not no_padding:
            pad = blocks * N - s.shape[0]
            s = B.concatenate([s, B.zeros([pad] + tail, dtype=s.dtype)])
        blocked.append(B.reshape(s, [blocks, N] + tail))
    n_seq, n_out = len(blocked), len(outputs_info)

    def block_step(*args):
        seq_blocks, count = list(args[:n_seq]), args[n_seq]
        states = list(args[n_seq + 1:n_seq + 1 + n_out])
        consts = list(args[n_seq + 1 + n_out:])
        inner, updates = scan(fn, sequences=seq_blocks, outputs_info=states, non_sequences=consts, n_steps=count,
                              name=name + "_inner", return_list=True)
        return [r[-1] for r in inner], updates

    outs, updates = scan(block_step, sequences=blocked + [counts], outputs_info=outputs_info,
                         non_sequences=non_sequences, n_steps=blocks, name=name + "_outer")
    return outs, updates


__all__ = ["scan_checkpoints"]
