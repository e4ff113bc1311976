"""Theano's ``T.nnet.ctc.ctc``: the connectionist temporal classification loss (Graves et al.
2006), blank = class 0, as warp-ctc computes it for Theano.

Built from a ``scan`` of the forward (alpha) recursion in log space over the blank-extended
label sequences of the whole batch, so ``T.grad`` is backpropagation through that scan and
every backend that runs scan runs it.  ``-inf`` is replaced by a large negative finite
log-probability, so that impossible paths give zeros, never nan, in the gradient.
"""
from __future__ import annotations

from . import basic as B
from .variable import as_variable

#: log-probability of an impossible path (finite: logsumexp of two of them stays finite)
_NEG = -1e30


def _logaddexp(a, b):
    m = B.maximum(a, b)
    return m + B.log(B.exp(a - m) + B.exp(b - m))


def ctc(activations, labels, input_lengths):
    """Per-example CTC costs, shape (batch,).

    ``activations``: (time, batch, classes) unnormalized scores (softmaxed here, as warp-ctc);
    ``labels``: (batch, max_label_length) int, class ids >= 1, padded with -1;
    ``input_lengths``: (batch,) int, the number of valid time steps of each example.
    """
    from tcomp.scan import scan

    acts = as_variable(activations, "activations")
    labels = as_variable(labels, "labels")
    lengths = as_variable(input_lengths, "input_lengths")
    if acts.ndim != 3:
        raise TypeError(f"ctc: activations must be (time, batch, classes), got {acts.describe()}")
    if labels.ndim != 2 or not labels.dtype.startswith(("int", "uint")):
        raise TypeError(f"ctc: labels must be an int matrix (batch, max_label_length), got {labels.describe()}")
    if lengths.ndim != 1 or not lengths.dtype.startswith(("int", "uint")):
        raise TypeError(f"ctc: input_lengths must be an int vector (batch,), got {lengths.describe()}")
    log_probs = B.log_softmax(acts, axis=2)
    batch = B.shape_i(labels, 0)
    n_labels = B.sum(B.cast(B.ge(labels, 0), "int64"), axis=1)  # (batch,)
    n_ext = 2 * B.shape_i(labels, 1) + 1
    # blank-extended labels [0, l1, 0, l2, ..., 0] (padding -1 becomes blank 0: never reached)
    pos = B.arange(n_ext)
    odd = B.eq(pos % 2, 1)
    label_at = B.clip(B.dimshuffle((pos - 1) // 2, ("x", 0)), 0, B.shape_i(labels, 1) - 1)
    picked = labels[B.dimshuffle(B.arange(batch), (0, "x")), label_at]
    ext = B.where(B.dimshuffle(odd, ("x", 0)), B.maximum(picked, 0), 0)  # (batch, n_ext)
    prev2 = B.concatenate([B.cast(B.zeros((batch, 2)), ext.dtype) - 1, ext[:, :-2]], axis=1)
    can_skip = B.dimshuffle(odd, ("x", 0)) & B.neq(ext, prev2)
    valid = B.lt(B.dimshuffle(pos, ("x", 0)), B.dimshuffle(2 * n_labels + 1, (0, "x")))
    # emissions per step: log p_t(ext[b, s]), (time, batch, n_ext)
    rows = B.dimshuffle(B.arange(batch), (0, "x"))
    emit = log_probs[:, rows, ext]
    emit = B.where(B.dimshuffle(valid, ("x", 0, 1)), emit, _NEG)
    time_mask = B.lt(B.dimshuffle(B.arange(B.shape_i(acts, 0)), (0, "x")), B.dimshuffle(lengths, ("x", 0)))
    start = B.lt(B.dimshuffle(pos, ("x", 0)), 2)
    alpha0 = B.where(start, emit[0], _NEG)
    neg_col = B.zeros((batch, 1), dtype=acts.dtype) + _NEG

    def step(e, live, alpha):
        shift1 = B.concatenate([neg_col, alpha[:, :-1]], axis=1)
        shift2 = B.concatenate([neg_col, neg_col, alpha[:, :-2]], axis=1)
        acc = _logaddexp(alpha, shift1)
        acc = B.where(can_skip, _logaddexp(acc, shift2), acc)
        new = B.maximum(acc + e, _NEG)
        return B.where(B.dimshuffle(live, (0, "x")), new, alpha)

    alphas, _ = scan(step, sequences=[emit[1:], time_mask[1:]], outputs_info=[alpha0])
    last = B.concatenate([B.dimshuffle(alpha0, ("x", 0, 1)), alphas], axis=0)[-1]
    end = 2 * n_labels  # the last blank; end - 1 is the last label
    ids = B.arange(batch)
    final = _logaddexp(last[ids, end], B.where(B.gt(n_labels, 0), last[ids, B.maximum(end - 1, 0)], _NEG))
    return -final
