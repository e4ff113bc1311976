"""Scans and sorting along one axis: ``cumsum``, ``cumprod`` (NumPy's accumulation dtypes:
small ints and bools accumulate in int64, as ``sum`` does) and ``argsort`` (NumPy's stable
argsort: ties keep their order, nan sorts last; int64 indices).

``sort`` is not an op: the DSL gathers ``x`` at ``argsort(x)`` (so its gradient is the
gather's scatter), which gives NumPy's stable order of equal values such as -0.0 and 0.0.
"""
from __future__ import annotations

import numpy as np

from ..types import TensorType
from .reduction import _sum_dtype
from .registry import OpDef, register


def _check_axis(name, t, axis):
    if not isinstance(axis, int) or not 0 <= axis < t.ndim:
        raise ValueError(f"{name}: axis {axis!r} out of range for {t} (ndim {t.ndim}); scalars have no axis")


def _cumulative_infer(name):
    def infer(types, attrs):
        (t,) = types
        _check_axis(name, t, attrs["axis"])
        return TensorType(_sum_dtype(t.dtype), t.shape)
    return infer


def _cumulative_impl(fn):
    def impl(arrays, attrs, out_type):
        x = arrays[0].astype(out_type.dtype, copy=False)
        with np.errstate(all="ignore"):
            return fn(x, axis=attrs["axis"]).astype(out_type.dtype, copy=False)
    return impl


def _argsort_infer(types, attrs):
    (t,) = types
    _check_axis("argsort", t, attrs["axis"])
    return TensorType("int64", t.shape)


def _argsort_impl(arrays, attrs, out_type):
    return np.argsort(arrays[0], axis=attrs["axis"], kind="stable").astype("int64")


register(OpDef("cumsum", 1, _cumulative_infer("cumsum"), _cumulative_impl(np.cumsum), attr_defaults={"axis": 0},
               kind="cumulative", doc="running sum along one axis (sequential, NumPy's order of additions)"))
register(OpDef("cumprod", 1, _cumulative_infer("cumprod"), _cumulative_impl(np.cumprod), attr_defaults={"axis": 0},
               kind="cumulative", doc="running product along one axis"))
register(OpDef("argsort", 1, _argsort_infer, _argsort_impl, attr_defaults={"axis": 0}, kind="sort",
               doc="stable argsort along one axis (ties in order, nan last), int64 indices"))
