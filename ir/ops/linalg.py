"""``dot`` (Theano/NumPy dot for rank <= 2) and ``matmul`` (batched, NumPy rules)."""
from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..types import TensorType, broadcast_shapes, dims_may_match
from .registry import OpDef, describe, register


def _dtype(name, a, b):
    d = dt.promote_types(a.dtype, b.dtype)
    if d == dt.BOOL:
        raise TypeError(f"{name} is not defined for bool tensors ({a}, {b})")
    return d


def _inner(name, a, b, ka, kb):
    da, db = a.shape[ka], b.shape[kb]
    if not dims_may_match(da, db):
        raise ValueError(f"{name}: inner dimensions differ: {a} (axis {ka} = {da}) and "
                         f"{b} (axis {kb} = {db})")


def _dot_infer(types, attrs):
    a, b = types
    if a.ndim == 0 or b.ndim == 0 or a.ndim > 2 or b.ndim > 2:
        raise ValueError(f"dot takes vectors or matrices, got {describe(types)}; use matmul for batches")
    _inner("dot", a, b, a.ndim - 1, 0)
    shape = a.shape[:-1] + b.shape[1:]
    return TensorType(_dtype("dot", a, b), shape)


def _matmul_infer(types, attrs):
    a, b = types
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul does not take scalars, got {describe(types)}")
    if a.ndim == 1 and b.ndim == 1:
        _inner("matmul", a, b, 0, 0)
        return TensorType(_dtype("matmul", a, b), ())
    a_shape = (1,) + a.shape if a.ndim == 1 else a.shape
    b_shape = b.shape + (1,) if b.ndim == 1 else b.shape
    _inner("matmul", TensorType(a.dtype, a_shape), TensorType(b.dtype, b_shape), len(a_shape) - 1, len(b_shape) - 2)
    batch = broadcast_shapes(a_shape[:-2], b_shape[:-2], what=f"batch dims of matmul({describe(types)})")
    shape = batch + (a_shape[-2], b_shape[-1])
    if a.ndim == 1:
        shape = shape[:-2] + shape[-1:]
    if b.ndim == 1:
        shape = shape[:-1]
    return TensorType(_dtype("matmul", a, b), shape)


def _impl(fn):
    def impl(arrays, attrs, out_type):
        a, b = (x.astype(out_type.dtype, copy=False) for x in arrays)
        return np.asarray(fn(a, b)).astype(out_type.dtype, copy=False)
    return impl


register(OpDef("dot", 2, _dot_infer, _impl(np.dot), kind="linalg"))
register(OpDef("matmul", 2, _matmul_infer, _impl(np.matmul), kind="linalg"))

