"""Reductions over any set of axes, with ``keepdims``.

``axis`` is normalized by the builder to a sorted tuple of non-negative ints (``None``
in the DSL becomes all axes), so equal reductions have equal attributes.
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import dtypes as dt
from ..types import TensorType
from .registry import OpDef, register


def check_axes(name, t: TensorType, axis) -> tuple:
    axes = tuple(axis)
    for a in axes:
        if not (0 <= a < t.ndim):
            raise ValueError(f"{name}: axis {a} out of range for {t} (ndim {t.ndim})")
    if len(set(axes)) != len(axes) or list(axes) != sorted(axes):
        raise ValueError(f"{name}: axes must be sorted and distinct, got {axes}")
    return axes


def reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _sum_dtype(d):
    # NumPy/Theano accumulate small integers and bools in the default int.
    if d == dt.BOOL or (dt.is_int(d) and d != "int64"):
        return dt.DEFAULT_INT
    return d


def _mean_dtype(d):
    return d if dt.is_float(d) else dt.canonical("floatX")


def _argdtype(d):
    return "int64"


def _make(name, dtype_rule, fn, differentiable=True, needs_nonempty=False):
    def infer(types, attrs):
        (t,) = types
        axes = check_axes(name, t, attrs["axis"])
        if needs_nonempty:
            for a in axes:
                if t.shape[a] == 0:
                    raise ValueError(f"{name}: zero-size axis {a} of {t} has no {name}")
        return TensorType(dtype_rule(t.dtype), reduced_shape(t.shape, axes, attrs["keepdims"]))

    def impl(arrays, attrs, out_type):
        (x,) = arrays
        axes = tuple(attrs["axis"])
        return np.asarray(fn(x, axes, attrs["keepdims"], out_type.dtype)).astype(out_type.dtype, copy=False)

    return register(OpDef(name, 1, infer, impl, attr_defaults={"axis": (), "keepdims": False},
                          kind="reduction", differentiable=differentiable))


def _np_reduce(f):
    def run(x, axes, keepdims, out_dtype):
        if out_dtype != dt.BOOL:
            x = x.astype(out_dtype, copy=False)
        if not axes:
            return x.copy()
        return f(x, axis=axes, keepdims=keepdims)
    return run


def _arg_reduce(f):
    """argmax/argmin over several axes: index into those axes flattened (C order)."""
    def run(x, axes, keepdims, out_dtype):
        rest = [i for i in range(x.ndim) if i not in axes]
        moved = np.transpose(x, rest + list(axes))
        # (an explicit size, not -1: -1 cannot be inferred when another dim is 0)
        flat = moved.reshape(moved.shape[:len(rest)] + (int(np.prod([x.shape[a] for a in axes])),))
        r = f(flat, axis=-1)
        if keepdims:
            r = r.reshape(tuple(1 if i in axes else x.shape[i] for i in range(x.ndim)))
        return r
    return run


_make("sum", _sum_dtype, _np_reduce(np.sum))
def _prod(x, axis, keepdims):
    """np.prod, with the exact answer where a factor is 0: 0, or nan if a 0 meets an inf or
    nan (0 * inf).  np.prod itself multiplies in SIMD lanes, so a float32 product whose other
    factors overflow forms inf * 0 = nan (1024 values 1e10 and one 0 give nan)."""
    p = np.prod(x, axis=axis, keepdims=keepdims)
    if x.dtype.kind != "f":
        return p  # wrapping integer products: a 0 factor gives 0 anyway
    zero = np.any(x == 0, axis=axis, keepdims=keepdims)
    nonfinite = np.any(~np.isfinite(x), axis=axis, keepdims=keepdims)
    # a zero product's sign is the xor of its factors' signs (IEEE, as np.prod gives it)
    negative = np.logical_xor.reduce(np.signbit(x), axis=axis, keepdims=keepdims)
    return np.where(zero, np.where(nonfinite, np.nan, np.where(negative, -0.0, 0.0)), p).astype(x.dtype)


_make("prod", _sum_dtype, _np_reduce(_prod))
_make("max", lambda d: d, _np_reduce(np.max), needs_nonempty=True)
_make("min", lambda d: d, _np_reduce(np.min), needs_nonempty=True)
def _mean(x, axis, keepdims):
    """np.mean without its "Mean of empty slice" warning: the mean of nothing is nan, as on
    the CPU backend, which does not warn either."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.mean(x, axis=axis, keepdims=keepdims)


_make("mean", _mean_dtype, _np_reduce(_mean))
# (argmax/argmin are "differentiable": their int result carries no cotangent, but x stays
# connected to the cost with a zero gradient, as in Theano)
_make("argmax", _argdtype, _arg_reduce(np.argmax), needs_nonempty=True)
_make("argmin", _argdtype, _arg_reduce(np.argmin), needs_nonempty=True)

REDUCTIONS = ("sum", "prod", "max", "min", "mean", "argmax", "argmin")
