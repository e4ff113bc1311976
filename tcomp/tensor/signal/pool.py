"""``T.signal.pool``: Theano's pooling module (``from theano.tensor.signal import pool``).

``pool_2d`` keeps Theano's signature and defaults: ``ignore_border=None`` warns and means
False (Theano 0.9/1.0), and ``ds``/``st``/``padding`` are the deprecated names of
``ws``/``stride``/``pad``.  The op is tcomp's ``pool2d`` (see ir/ops/pool.py for the exact
semantics, which follow Theano's)."""
from __future__ import annotations

import warnings

from .. import basic as B
from ..nnet import pool_2d as _pool_2d
from ..variable import as_variable


def pool_2d(input, ws=None, ignore_border=None, stride=None, pad=(0, 0), mode="max", ds=None, st=None, padding=None):
    """Pool the last two axes of ``input`` (N-d, N >= 2) with windows ``ws``."""
    if ws is None and ds is None:
        raise ValueError("pool_2d: the window size ws is required")
    if ignore_border is None:
        warnings.warn("pool_2d: ignore_border was not given; it means False, as in Theano "
                      "(pass ignore_border=True to drop partial windows)", UserWarning, stacklevel=2)
        ignore_border = False
    return _pool_2d(input, ws=ws, ignore_border=ignore_border, stride=stride, pad=pad, mode=mode, ds=ds, st=st,
                    padding=padding)


def max_pool_2d_same_size(input, patch_size):
    """Keep the maximum of every non-overlapping ``patch_size`` patch of the last two axes and
    set every other value to zero; the output has the input's shape (rows/columns past the
    last whole patch become zero).  Tied maxima are all kept, as Theano's ``MaxPoolGrad`` does."""
    x = as_variable(input, "input")
    if x.ndim < 2:
        raise ValueError(f"max_pool_2d_same_size: input needs at least 2 dims, got {x.describe()}")
    p0, p1 = (int(v) for v in patch_size)
    if p0 < 1 or p1 < 1:
        raise ValueError(f"max_pool_2d_same_size: patch_size must be positive, got {patch_size!r}")
    nd = x.ndim
    lead = [B.shape_i(x, i) for i in range(nd - 2)]
    h = B.shape_i(x, nd - 2) // p0
    w = B.shape_i(x, nd - 1) // p1
    core = x[(slice(None),) * (nd - 2) + (slice(0, h * p0), slice(0, w * p1))]
    maxes = _pool_2d(core, ws=(p0, p1), ignore_border=True)  # [..., h, w]
    blocks = B.reshape(core, tuple(lead) + (h, p0, w, p1))
    up = maxes.dimshuffle(*range(nd - 2), nd - 2, "x", nd - 1, "x")
    kept = B.switch(B.eq(blocks, up), blocks, B.zeros_like(blocks))
    kept = B.reshape(kept, tuple(lead) + (h * p0, w * p1))
    from ..indexing import set_subtensor

    return set_subtensor(B.zeros_like(x)[(slice(None),) * (nd - 2) + (slice(0, h * p0), slice(0, w * p1))], kept)



def _triple(value, what):
    out = tuple(int(v) for v in value)
    if len(out) != 3:
        raise ValueError(f"pool_3d: {what} must have three entries, got {value!r}")
    return out


def pool_3d(input, ws=None, ignore_border=None, stride=None, pad=(0, 0, 0), mode="max"):
    """Pool the last three axes of ``input`` (N-d, N >= 3) with windows ``ws``: a 2-d pool
    of the last two axes, then a pool of the third-last.  Every mode is separable that way
    (max of maxes; sums of sums; the average divisors are products of per-axis counts)."""
    x = as_variable(input, "input")
    if ws is None:
        raise ValueError("pool_3d: the window size ws is required")
    if x.ndim < 3:
        raise ValueError(f"pool_3d: input needs at least 3 dims (pooled: the last three), got {x.describe()}")
    if ignore_border is None:
        warnings.warn("pool_3d: ignore_border was not given; it means False, as in Theano", UserWarning, stacklevel=2)
        ignore_border = False
    ws = _triple(ws, "ws")
    stride = ws if stride is None else _triple(stride, "stride")
    pad = _triple(pad, "pad")
    inner = _pool_2d(x, ws=ws[1:], ignore_border=ignore_border, stride=stride[1:], pad=pad[1:], mode=mode)
    nd = x.ndim
    lead = [B.shape_i(inner, i) for i in range(nd - 2)]  # ..., depth
    rows, cols = B.shape_i(inner, nd - 2), B.shape_i(inner, nd - 1)
    flat = B.reshape(inner, tuple(lead) + (rows * cols, ))
    outer = _pool_2d(flat, ws=(ws[0], 1), ignore_border=ignore_border, stride=(stride[0], 1), pad=(pad[0], 0),
                     mode=mode)
    return B.reshape(outer, tuple(lead[:-1]) + (B.shape_i(outer, nd - 3), rows, cols))


class Pool:
    """Theano's ``Pool(ignore_border=False, mode='max', ndim=2)`` op object, called as
    ``Pool(...)(input, ws, stride=None, pad=None)``."""

    def __init__(self, ignore_border=False, mode="max", ndim=2, openmp=None):
        if ndim not in (2, 3):
            raise ValueError(f"Pool: ndim must be 2 or 3, got {ndim!r}")
        self.ignore_border, self.mode, self.ndim = bool(ignore_border), mode, ndim

    def __call__(self, input, ws, stride=None, pad=None):
        pad = (0,) * self.ndim if pad is None else pad
        pool = pool_2d if self.ndim == 2 else pool_3d
        return pool(input, ws=ws, ignore_border=self.ignore_border, stride=stride, pad=pad, mode=self.mode)


__all__ = ["Pool", "pool_2d", "pool_3d", "max_pool_2d_same_size"]
