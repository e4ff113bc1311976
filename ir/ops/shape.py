"""Shape ops: dimshuffle (transpose/expand/squeeze), reshape, alloc (broadcast_to),
concatenate, stack, shape, arange.

Shapes that depend on run-time values (``reshape(x, (n, -1))`` with symbolic ``n``) use
a ``shape`` attribute whose ``None`` entries are taken, in order, from extra int scalar
operands; the other entries are static ints.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..types import TensorType, broadcast_shapes, merge_dims, shape_str
from .registry import OpDef, describe, register


def _check_dim_operands(name, types, start):
    for i, t in enumerate(types[start:]):
        if t.ndim != 0 or not dt.is_int(t.dtype):
            raise TypeError(f"{name}: dim operand {i} must be an integer scalar, got {t}")


def dims_from_attr(shape_attr, dim_values):
    """Fill the None entries of a shape attribute from run-time dim values."""
    it = iter(dim_values)
    return tuple(int(next(it)) if d is None else d for d in shape_attr)


# -- dimshuffle ------------------------------------------------------------------------

def _dimshuffle_infer(types, attrs):
    (t,) = types
    pattern = tuple(attrs["pattern"])
    kept = [p for p in pattern if p != "x"]
    if any(not isinstance(p, int) or not 0 <= p < t.ndim for p in kept) or len(set(kept)) != len(kept):
        raise ValueError(f"dimshuffle: bad pattern {pattern} for {t}")
    for axis in range(t.ndim):
        if axis not in kept and t.shape[axis] != 1:
            raise ValueError(f"dimshuffle: cannot drop axis {axis} of {t}: it is not broadcastable (size 1)")
    return TensorType(t.dtype, tuple(1 if p == "x" else t.shape[p] for p in pattern))


def _dimshuffle_impl(arrays, attrs, out_type):
    (x,) = arrays
    pattern = tuple(attrs["pattern"])
    kept = [p for p in pattern if p != "x"]
    dropped = tuple(a for a in range(x.ndim) if a not in kept)
    y = np.squeeze(x, axis=dropped) if dropped else x
    order = sorted(kept)
    y = np.transpose(y, [order.index(p) for p in kept])
    return y.reshape(tuple(1 if p == "x" else x.shape[p] for p in pattern))


register(OpDef("dimshuffle", 1, _dimshuffle_infer, _dimshuffle_impl, attr_defaults={"pattern": ()},
               kind="shape", doc="Theano's dimshuffle: permute axes, 'x' inserts a broadcastable axis, "
                                 "omitted axes (size 1) are dropped"))


# -- reshape -----------------------------------------------------------------------------

def _reshape_infer(types, attrs):
    t = types[0]
    _check_dim_operands("reshape", types, 1)
    shape = tuple(attrs["shape"])
    if sum(1 for d in shape if d is None) != len(types) - 1:
        raise ValueError(f"reshape: shape {shape} needs {len(types) - 1} symbolic dims")
    if sum(1 for d in shape if d == -1) > 1:
        raise ValueError(f"reshape: at most one -1 in {shape}")
    known = [d for d in shape if isinstance(d, int) and d != -1]
    out = []
    for d in shape:
        if d == -1:
            if t.is_static and all(isinstance(e, int) for e in shape):
                prod = int(np.prod(known)) if known else 1
                if prod == 0 or t.size % prod:
                    raise ValueError(f"reshape: cannot reshape {t} into {shape_str(shape)}")
                out.append(t.size // prod)
            else:
                out.append(None)
        else:
            out.append(d)
    if t.is_static and all(isinstance(d, int) for d in out) and int(np.prod(out)) != t.size:
        raise ValueError(f"reshape: cannot reshape {t} ({t.size} elements) into {shape_str(out)}")
    return TensorType(t.dtype, tuple(out))


def _reshape_impl(arrays, attrs, out_type):
    x = arrays[0]
    shape = dims_from_attr(attrs["shape"], arrays[1:])
    return np.reshape(x, shape)


register(OpDef("reshape", None, _reshape_infer, _reshape_impl, attr_defaults={"shape": ()}, kind="shape"))


# -- alloc / broadcast_to ---------------------------------------------------------------

def _alloc_infer(types, attrs):
    t = types[0]
    _check_dim_operands("alloc", types, 1)
    shape = tuple(attrs["shape"])
    if sum(1 for d in shape if d is None) != len(types) - 1:
        raise ValueError(f"alloc: shape {shape} needs {len(types) - 1} symbolic dims")
    if t.ndim > len(shape):
        raise ValueError(f"alloc: value {t} has more dims than the target shape {shape_str(shape)}")
    target = broadcast_shapes(t.shape, shape, what=f"alloc of {t} to {shape_str(shape)}")
    for have, want in zip(reversed(t.shape), reversed(shape)):
        if have != 1 and want == 1:
            raise ValueError(f"alloc: cannot broadcast {t} to {shape_str(shape)}")
    out = tuple(merge_dims(w, g) if w is None else w for w, g in zip(shape, target))
    return TensorType(t.dtype, out)


def _alloc_impl(arrays, attrs, out_type):
    shape = dims_from_attr(attrs["shape"], arrays[1:])
    return np.array(np.broadcast_to(arrays[0], shape))


register(OpDef("alloc", None, _alloc_infer, _alloc_impl, attr_defaults={"shape": ()}, kind="shape",
               doc="broadcast a value to a shape (Theano's alloc; T.broadcast_to, T.zeros, T.fill)"))


# -- concatenate / stack -------------------------------------------------------------------

def _concat_infer(types, attrs):
    axis = attrs["axis"]
    t0 = types[0]
    if any(t.ndim != t0.ndim for t in types):
        raise ValueError(f"concatenate: operands differ in rank: {describe(types)}")
    if not 0 <= axis < t0.ndim:
        raise ValueError(f"concatenate: axis {axis} out of range for {t0}")
    shape = list(t0.shape)
    for t in types[1:]:
        for i, d in enumerate(t.shape):
            if i == axis:
                continue
            if isinstance(shape[i], int) and isinstance(d, int) and shape[i] != d:
                raise ValueError(f"concatenate: shapes differ off axis {axis}: {describe(types)}")
            shape[i] = merge_dims(shape[i], d)
    along = [t.shape[axis] for t in types]
    shape[axis] = sum(along) if all(isinstance(d, int) for d in along) else None
    return TensorType(dt.promote_types(*(t.dtype for t in types)), tuple(shape))


def _concat_impl(arrays, attrs, out_type):
    return np.concatenate([a.astype(out_type.dtype, copy=False) for a in arrays], axis=attrs["axis"])


register(OpDef("concatenate", None, _concat_infer, _concat_impl, attr_defaults={"axis": 0}, kind="shape"))


def _stack_infer(types, attrs):
    axis = attrs["axis"]
    t0 = types[0]
    if not 0 <= axis <= t0.ndim:
        raise ValueError(f"stack: axis {axis} out of range for {t0}")
    if any(t.ndim != t0.ndim for t in types):
        raise ValueError(f"stack: operands differ in rank: {describe(types)}")
    shape = list(t0.shape)
    for t in types[1:]:
        for i, d in enumerate(t.shape):
            if isinstance(shape[i], int) and isinstance(d, int) and shape[i] != d:
                raise ValueError(f"stack: operand shapes differ: {describe(types)}")
            shape[i] = merge_dims(shape[i], d)
    shape.insert(axis, len(types))
    return TensorType(dt.promote_types(*(t.dtype for t in types)), tuple(shape))


def _stack_impl(arrays, attrs, out_type):
    return np.stack([a.astype(out_type.dtype, copy=False) for a in arrays], axis=attrs["axis"])


register(OpDef("stack", None, _stack_infer, _stack_impl, attr_defaults={"axis": 0}, kind="shape"))


# -- shape, arange ----------------------------------------------------------------------------

def _shape_infer(types, attrs):
    (t,) = types
    if not 0 <= attrs["axis"] < t.ndim:
        raise ValueError(f"shape: axis {attrs['axis']} out of range for {t}")
    return TensorType("int64", ())


def _shape_impl(arrays, attrs, out_type):
    return np.asarray(arrays[0].shape[attrs["axis"]], dtype="int64")


register(OpDef("shape", 1, _shape_infer, _shape_impl, attr_defaults={"axis": 0}, kind="shape",
               differentiable=False, doc="the run-time size of one axis, as an int64 scalar"))


def _arange_infer(types, attrs):
    for name, t in zip(("start", "stop", "step"), types):
        if t.ndim != 0:
            raise TypeError(f"arange: {name} must be a scalar, got {t}")
    return TensorType(dt.canonical(attrs["dtype"]), (None,))


def _arange_impl(arrays, attrs, out_type):
    start, stop, step = (a.item() for a in arrays)
    if step == 0:
        raise ValueError("arange: step is zero")
    return np.arange(start, stop, step, dtype=out_type.dtype)


register(OpDef("arange", 3, _arange_infer, _arange_impl, attr_defaults={"dtype": "int64"}, kind="shape",
               differentiable=False, doc="arange(start, stop, step) with run-time bounds"))
