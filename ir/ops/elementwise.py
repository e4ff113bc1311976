"""Elementwise ops: unary, binary, ``where`` and ``cast``, with broadcasting."""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes as dt
from ..types import TensorType, broadcast_shapes
from .registry import OpDef, describe, register

# -- type rules ---------------------------------------------------------------------


def _float_result(t: TensorType) -> str:
    """Float ops on ints/bools compute in floatX (JAX: int -> default float)."""
    return t.dtype if dt.is_float(t.dtype) else dt.canonical("floatX")


def _broadcast(name, types):
    shapes = [t.shape for t in types]
    try:
        return broadcast_shapes(*shapes)
    except ValueError:  # the message names the op and its operand types (built only on error)
        return broadcast_shapes(*shapes, what=f"operands of {name}({describe(types)})")


def _unary(name, result_dtype, fn, differentiable=True, doc=""):
    def infer(types, attrs):
        (t,) = types
        return TensorType(result_dtype(t, name), t.shape)

    def impl(arrays, attrs, out_type):
        (x,) = arrays
        if dt.is_float(out_type.dtype):
            x = x.astype(out_type.dtype, copy=False)
        return np.asarray(fn(x)).astype(out_type.dtype, copy=False)

    return register(OpDef(name, 1, infer, impl, kind="elemwise", differentiable=differentiable, doc=doc))


def _same(t, name):
    return t.dtype


def _numeric_same(t, name):
    if t.dtype == dt.BOOL:
        raise TypeError(f"{name} is not defined for bool tensors ({t}); cast first")
    return t.dtype


def _floaty(t, name):
    return _float_result(t)


def _to_bool(t, name):
    return dt.BOOL


def _integral_same(t, name):
    """Bitwise ops: ints and bools only (NumPy and Theano reject floats)."""
    if dt.is_float(t.dtype):
        raise TypeError(f"{name} is defined for integer and bool tensors only, got {t}")
    return t.dtype


def _sigmoid(x):
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _relu(x):
    return np.maximum(x, np.zeros((), x.dtype))


_erf = np.frompyfunc(math.erf, 1, 1)

UNARY = {
    "neg": (_numeric_same, np.negative, True),
    "abs": (_numeric_same, np.abs, True),
    # piecewise constant: differentiable with a zero gradient (Theano's grad is zeros_like(x))
    "sign": (_numeric_same, np.sign, True),
    "floor": (_numeric_same, np.floor, True),
    "ceil": (_numeric_same, np.ceil, True),
    "round": (_numeric_same, np.round, True),  # half to even, as NumPy
    "relu": (_numeric_same, _relu, True),
    "exp": (_floaty, np.exp, True),
    "log": (_floaty, np.log, True),
    "log1p": (_floaty, np.log1p, True),
    "expm1": (_floaty, np.expm1, True),
    "sqrt": (_floaty, np.sqrt, True),
    "tanh": (_floaty, np.tanh, True),
    "sigmoid": (_floaty, _sigmoid, True),
    "softplus": (_floaty, lambda x: np.logaddexp(np.zeros((), x.dtype), x), True),
    "sin": (_floaty, np.sin, True),
    "cos": (_floaty, np.cos, True),
    # (np.asarray: frompyfunc returns a bare Python float for a 0-d input)
    "erf": (_floaty, lambda x: np.asarray(_erf(x.astype("float64")), dtype="float64").astype(x.dtype), True),
    "logical_not": (_to_bool, np.logical_not, True),
    "arctan": (_floaty, np.arctan, True),
    "log2": (_floaty, np.log2, True),
    "log10": (_floaty, np.log10, True),
    "exp2": (_floaty, np.exp2, True),
    # bool results (False for int and bool inputs, as NumPy); zero gradient
    "isnan": (_to_bool, np.isnan, True),
    "isinf": (_to_bool, np.isinf, True),
    # two's-complement not of ints, logical not of bools (NumPy's invert); no gradient (ints)
    "bitwise_not": (_integral_same, np.invert, False),
}

for _name, (_rule, _fn, _diff) in UNARY.items():
    _unary(_name, _rule, _fn, _diff)


# -- binary -----------------------------------------------------------------------

def _arith_dtype(name, types):
    d = dt.promote_types(*(t.dtype for t in types))
    if d == dt.BOOL and name not in ("maximum", "minimum"):
        raise TypeError(f"{name} is not defined for bool tensors ({describe(types)}); cast first")
    return d


def _truediv_dtype(name, types):
    d = dt.promote_types(*(t.dtype for t in types))
    return d if dt.is_float(d) else dt.canonical("floatX")


def _cmp_dtype(name, types):
    return dt.BOOL


def _bitwise_dtype(name, types):
    d = dt.promote_types(*(t.dtype for t in types))
    if dt.is_float(d):
        raise TypeError(f"{name} is defined for integer and bool tensors only ({describe(types)})")
    return d


def _floor_divide(a, b):
    if np.issubdtype(a.dtype, np.integer):
        safe_b = np.where(b == 0, 1, b)
        return np.where(b == 0, 0, np.floor_divide(a, safe_b))
    return np.floor_divide(a, b)


def _mod(a, b):
    if np.issubdtype(a.dtype, np.integer):
        safe_b = np.where(b == 0, 1, b)
        return np.where(b == 0, 0, np.mod(a, safe_b))
    return np.mod(a, b)


def _power(a, b):
    if np.issubdtype(a.dtype, np.integer):
        # NumPy raises for negative integer exponents; tcomp defines them as 0 (like C
        # integer arithmetic would truncate 1/a**k), except for bases 1 and -1.
        neg = b < 0
        safe_b = np.where(neg, 0, b)
        r = np.power(a, safe_b)
        odd = (b % 2) != 0
        exact = np.where(a == 1, 1, np.where(a == -1, np.where(odd, -1, 1), 0))
        return np.where(neg, exact, r)
    return np.power(a, b)


# (the third entry, ``differentiable``, is True for comparisons and logical ops too: their
# bool results carry no cotangent, but the float operands stay connected to the cost with a
# zero gradient, as in Theano, instead of raising "disconnected input")
BINARY = {
    "add": (_arith_dtype, np.add, True, True),
    "sub": (_arith_dtype, np.subtract, True, True),
    "mul": (_arith_dtype, np.multiply, True, True),
    "truediv": (_truediv_dtype, np.true_divide, True, True),
    "floordiv": (_arith_dtype, _floor_divide, True, True),  # piecewise constant: zero gradient
    "mod": (_arith_dtype, _mod, True, True),
    "pow": (_arith_dtype, _power, True, True),
    "maximum": (_arith_dtype, np.maximum, True, True),
    "minimum": (_arith_dtype, np.minimum, True, True),
    "eq": (_cmp_dtype, np.equal, True, True),
    "neq": (_cmp_dtype, np.not_equal, True, True),
    "lt": (_cmp_dtype, np.less, True, True),
    "le": (_cmp_dtype, np.less_equal, True, True),
    "gt": (_cmp_dtype, np.greater, True, True),
    "ge": (_cmp_dtype, np.greater_equal, True, True),
    "logical_and": (_cmp_dtype, np.logical_and, True, False),
    "logical_or": (_cmp_dtype, np.logical_or, True, False),
    "logical_xor": (_cmp_dtype, np.logical_xor, True, False),
    "arctan2": (_truediv_dtype, np.arctan2, True, True),  # arctan2(y, x), NumPy's argument order
    # on the promoted int (or bool) dtype, as NumPy; no gradient (integer results)
    "bitwise_and": (_bitwise_dtype, np.bitwise_and, False, True),
    "bitwise_or": (_bitwise_dtype, np.bitwise_or, False, True),
    "bitwise_xor": (_bitwise_dtype, np.bitwise_xor, False, True),
}


def _binary(name, rule, fn, differentiable, cast_inputs):
    def infer(types, attrs):
        shape = _broadcast(name, types)
        return TensorType(rule(name, types), shape)

    def impl(arrays, attrs, out_type):
        a, b = arrays
        if cast_inputs:
            compute = out_type.dtype if out_type.dtype != dt.BOOL else dt.promote_types(a.dtype.name, b.dtype.name)
            a = a.astype(compute, copy=False)
            b = b.astype(compute, copy=False)
        with np.errstate(all="ignore"):
            return np.asarray(fn(a, b)).astype(out_type.dtype, copy=False)

    return register(OpDef(name, 2, infer, impl, kind="elemwise", differentiable=differentiable))


for _name, (_rule, _fn, _diff, _cast) in BINARY.items():
    _binary(_name, _rule, _fn, _diff, _cast)


# -- where, cast ----------------------------------------------------------------------

def _where_infer(types, attrs):
    c, a, b = types
    shape = _broadcast("where", types)
    return TensorType(dt.promote_types(a.dtype, b.dtype), shape)


def _where_impl(arrays, attrs, out_type):
    c, a, b = arrays
    return np.where(c.astype(bool), a.astype(out_type.dtype), b.astype(out_type.dtype))


register(OpDef("where", 3, _where_infer, _where_impl, kind="elemwise",
               doc="where(cond, a, b): a where cond is true, else b (Theano's switch)"))


def _cast_infer(types, attrs):
    return TensorType(dt.canonical(attrs["dtype"]), types[0].shape)


def _cast_impl(arrays, attrs, out_type):
    x = arrays[0]
    if dt.is_int(out_type.dtype) and dt.is_float(x.dtype.name):
        # float -> int truncates toward zero; nan/inf/out of range become 0 so the
        # result never depends on the platform's undefined behaviour.
        info = np.iinfo(out_type.dtype)
        with np.errstate(invalid="ignore"):
            t = np.trunc(x)
            ok = np.isfinite(t) & (t >= info.min) & (t <= info.max)
            return np.where(ok, t, 0).astype(out_type.dtype)
    with np.errstate(all="ignore"):
        return x.astype(out_type.dtype)


register(OpDef("cast", 1, _cast_infer, _cast_impl, attr_defaults={"dtype": "float32"}, kind="elemwise"))

ELEMWISE_UNARY = tuple(UNARY)
ELEMWISE_BINARY = tuple(BINARY)
