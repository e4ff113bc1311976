"""Neural-net primitives kept whole so passes and backends can treat them specially:
softmax, log_softmax and logsumexp over one axis (computed max-subtracted).

Over a zero-size axis they follow the formulas (as JAX and SciPy do): softmax and
log_softmax of no classes are an empty array of the input's shape, logsumexp of nothing is
``log(0) = -inf`` (``scipy.special.logsumexp([]) == -inf``), so ``log(sum(exp(x)))`` keeps
its value when stabilize rewrites it to logsumexp."""
from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..types import TensorType
from .reduction import reduced_shape
from .registry import OpDef, register


def _axis_ok(name, t, axis):
    if not 0 <= axis < t.ndim:
        raise ValueError(f"{name}: axis {axis} out of range for {t}")


def _float(t):
    return t.dtype if dt.is_float(t.dtype) else dt.canonical("floatX")


def _softmax_infer(name):
    def infer(types, attrs):
        (t,) = types
        _axis_ok(name, t, attrs["axis"])
        return TensorType(_float(t), t.shape)
    return infer


def _log_softmax(x, axis):
    if x.shape[axis] == 0:
        return x.copy()  # no classes: nothing to normalize (np.max has no identity)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    s = x - m
    with np.errstate(divide="ignore"):
        return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


def _softmax_impl(arrays, attrs, out_type):
    x = arrays[0].astype(out_type.dtype, copy=False)
    return np.exp(_log_softmax(x, attrs["axis"])).astype(out_type.dtype, copy=False)


def _log_softmax_impl(arrays, attrs, out_type):
    x = arrays[0].astype(out_type.dtype, copy=False)
    return _log_softmax(x, attrs["axis"]).astype(out_type.dtype, copy=False)


def _logsumexp_infer(types, attrs):
    (t,) = types
    _axis_ok("logsumexp", t, attrs["axis"])
    return TensorType(_float(t), reduced_shape(t.shape, (attrs["axis"],), attrs["keepdims"]))


def _logsumexp_impl(arrays, attrs, out_type):
    x = arrays[0].astype(out_type.dtype, copy=False)
    axis = attrs["axis"]
    if x.shape[axis] == 0:  # log of an empty sum
        m = np.zeros(x.shape[:axis] + (1,) + x.shape[axis + 1:], x.dtype)
    else:
        m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore"):
        r = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    if not attrs["keepdims"]:
        r = np.squeeze(r, axis=axis)
    return r.astype(out_type.dtype, copy=False)


register(OpDef("softmax", 1, _softmax_infer("softmax"), _softmax_impl, attr_defaults={"axis": -1}, kind="nnet"))
register(OpDef("log_softmax", 1, _softmax_infer("log_softmax"), _log_softmax_impl, attr_defaults={"axis": -1},
               kind="nnet"))
register(OpDef("logsumexp", 1, _logsumexp_infer, _logsumexp_impl, attr_defaults={"axis": -1, "keepdims": False},
               kind="nnet"))
