"""The kernel interpreter's ``loop`` and ``branch`` kernels (``passes/lower_loops.py``).

It does what a generated ``run`` does (``tcomp/backend/cpu/host_loops.py``), in NumPy: the
nested program runs through :func:`kernel_interpreter.run_program` on views of row ``t`` of
the sequences, of the state taps (the ``"all"`` result itself, the initial buffer before
step 0, or the ring of a ``"last"`` output) and writes its results into row ``t``; so the
interpreter checks the loop layout (offsets, rings, the count of an ``until`` loop), not
only the values.
"""
from __future__ import annotations

import numpy as np

from tcomp.ir.ops.control import scan_layout


def _c(a):
    """A C-contiguous copy (``np.ascontiguousarray`` would make a 0-d value 1-d)."""
    return np.array(a, order="C")


def _put(dst, value, label):
    value = np.asarray(value)
    if value.shape != dst.shape:
        raise ValueError(f"{label}: a step result has shape {value.shape}, the loop holds {dst.shape}")
    np.copyto(dst, value.astype(dst.dtype, copy=False), casting="unsafe")


def run_control(k, args, outs, run_program) -> None:
    attrs = dict(k.attrs)
    if k.kind == "branch":
        sub = attrs["then"] if bool(np.asarray(args[0])) else attrs["else"]
        for o, r in zip(outs, run_program(sub, [_c(a) for a in args[1:]])):
            _put(o, r, k.label)
        return
    body = attrs["program"]
    n_seqs, n_rec, n_nitsot, _, taps = scan_layout(attrs, len(args))
    n_out = n_rec + n_nitsot
    store = attrs["store"] or ("all",) * n_out
    n = int(np.asarray(args[0]))
    seqs = args[1:1 + n_seqs]
    inits = args[1 + n_seqs:1 + n_seqs + n_rec]
    nonseqs = [_c(a) for a in args[1 + n_seqs + n_rec:]]
    results, extra = outs[:n_out], list(outs[n_out:])
    rings = {i: extra.pop(0) for i in range(n_rec) if store[i] == "last"}
    for i, r in rings.items():
        r[:-1] = inits[i]
    count = n
    for t in range(n):
        ins = [_c(s[t]) for s in seqs]
        for i, tp in enumerate(taps):
            L = -tp[0]
            for tau in tp:
                if i in rings:
                    ins.append(rings[i][(t + L + tau) % (L + 1)].copy())
                else:
                    ins.append((results[i][t + tau] if t + tau >= 0 else inits[i][L + t + tau]).copy())
        res = run_program(body, ins + nonseqs)
        for j in range(n_out):
            if store[j] == "all":
                _put(results[j][t], res[j], k.label)
            elif j in rings:
                L = -taps[j][0]
                _put(rings[j][(t + L) % (L + 1)], res[j], k.label)
            else:
                _put(results[j], res[j], k.label)
        if attrs["until"] and bool(np.asarray(res[n_out])):
            count = t + 1
            break
    for i, r in rings.items():
        L = -taps[i][0]
        _put(results[i], r[(count + L - 1) % (L + 1)], k.label)
    if attrs["until"]:
        outs[-1][...] = count


__all__ = ["run_control"]
