"""``T.mgrid`` and ``T.ogrid``: Theano's dense and open mesh grids.

As in Theano, ``T.mgrid[0:3, 0:4]`` is a *list* of tensors (one per axis, each of the full
grid shape) where NumPy stacks them into one array; ``T.ogrid`` gives the open (broadcastable)
form. Bounds may be symbolic scalars; an imaginary step (``0:1:5j``, a number of points, as
NumPy) needs Python-number bounds.
"""
from __future__ import annotations

import numpy as np

from tcomp.ir import dtypes as dt

from . import basic as B
from .variable import constant, is_python_scalar


def _axis_range(sl: slice):
    if not isinstance(sl, slice):
        raise TypeError(f"mgrid/ogrid take slices (start:stop:step), got {sl!r}")
    if sl.stop is None:
        raise ValueError(f"mgrid/ogrid: slice {sl} needs a stop")
    start, step = 0 if sl.start is None else sl.start, 1 if sl.step is None else sl.step
    if isinstance(step, complex):
        if not (is_python_scalar(start) and is_python_scalar(sl.stop)):
            raise TypeError("mgrid/ogrid: an imaginary step (a number of points) needs Python-number bounds")
        return constant(np.linspace(start, sl.stop, int(abs(step))).astype(dt.canonical("floatX")))
    return B.arange(start, sl.stop, step)


class _Grid:
    def __init__(self, sparse: bool):
        self.sparse = sparse

    def __getitem__(self, key):
        single = not isinstance(key, tuple)
        slices = (key,) if single else key
        ranges = [_axis_range(sl) for sl in slices]
        if single:
            return ranges[0]
        nd = len(ranges)
        opened = [B.reshape(r, tuple(-1 if j == i else 1 for j in range(nd))) for i, r in enumerate(ranges)]
        if self.sparse:
            return opened
        grid = opened[0]
        for o in opened[1:]:
            grid = grid + B.zeros_like(o)  # every axis's full extent, in the range's dtype
        zero = B.zeros_like(grid)
        return [o + B.cast(zero, o.dtype) for o in opened]


mgrid = _Grid(sparse=False)
ogrid = _Grid(sparse=True)
