"""``flatnonzero(x, count)``: the int64 flat (C order) positions of ``x``'s nonzero elements
(nan counts as nonzero, as in NumPy), the one op behind ``T.nonzero``, ``T.flatnonzero``,
``T.nonzero_values`` and boolean-mask indexing ``x[mask]``.

The result's length depends on the data.  It is the operand ``count``, a rank-0 int64 that
the DSL builds as ``sum(x != 0)``: so the result's shape is a *host value* like a reshape
target, and a backend that can only size buffers before running kernels computes ``count``
first (the CPU backend runs such graphs as a chain of native programs,
``tcomp/backend/cpu/staged.py``).  A ``count`` that is not the number of nonzeros is an
error (ValueError), never a short or overlong write.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..types import TensorType
from .registry import OpDef, register


def _infer(types, attrs):
    x, count = types
    if count.ndim != 0 or not dt.is_int(count.dtype):
        raise TypeError(f"flatnonzero: count must be an integer scalar (the number of nonzeros), got {count}")
    return TensorType("int64", (None,))


def _impl(arrays, attrs, out_type):
    x, count = arrays
    out = np.flatnonzero(x).astype("int64")
    if out.size != int(count):
        raise ValueError(f"flatnonzero: count is {int(count)} but the operand has {out.size} nonzero elements")
    return out


register(OpDef("flatnonzero", 2, _infer, _impl, kind="nonzero", differentiable=False,
               doc="flat positions of the nonzero elements (count: their number, a host value)"))
