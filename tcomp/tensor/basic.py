"""The functional API of ``tcomp.tensor`` (imported as ``T``): Theano's names over the op table."""
from __future__ import annotations

import builtins

import numpy as np

from tcomp.ir import dtypes as dt
from tcomp.ir.types import TensorType

from . import type as _types
from .variable import Variable, apply, apply_binary, as_variable, constant, is_python_scalar

# -- constructors ---------------------------------------------------------------------

_RANKS = {"scalar": 0, "vector": 1, "matrix": 2, "tensor3": 3, "tensor4": 4, "tensor5": 5}
_PREFIX = {"b": "int8", "w": "int16", "i": "int32", "l": "int64", "f": "float32", "d": "float64",
           "c": None}


def _default_shape(ndim, shape, fixed=None):
    if shape is None:
        return tuple(fixed[i] if fixed and i in fixed else None for i in range(ndim))
    shape = tuple(shape)
    if len(shape) != ndim:
        raise ValueError(f"shape {shape} has {len(shape)} dims, expected {ndim}")
    return shape


def tensor(*args, **kwargs) -> Variable:
    """A symbolic input: ``tensor(name=None, dtype=None, shape=None, ndim=None, broadcastable=None)``;
    ``shape`` entries: int (static), str (named symbolic), None.  Theano's positional form
    ``tensor(dtype, broadcastable, name=None)`` works too."""
    if len(args) >= 2 and isinstance(args[1], (tuple, list)) and _is_dtype_name(args[0]):
        if len(args) > 2:
            kwargs["name"] = args[2]
        return _tensor(dtype=args[0], broadcastable=tuple(args[1]), **kwargs)
    return _tensor(*args, **kwargs)


def _is_dtype_name(d) -> bool:
    try:
        return isinstance(d, str) and bool(dt.canonical(d))
    except (TypeError, ValueError, KeyError):
        return False


def _tensor(name=None, dtype=None, shape=None, ndim=None, broadcastable=None) -> Variable:
    dtype = dt.canonical(dtype or "floatX")
    if shape is None and broadcastable is not None:
        shape = tuple(1 if b else None for b in broadcastable)
    if shape is None:
        if ndim is None:
            raise TypeError("tensor() needs shape=, ndim= or broadcastable=")
        shape = (None,) * ndim
    return Variable(TensorType(dtype, shape), "input", name=name)


def _maker(ndim, fixed=None, dtype_default=None):
    def make(name=None, dtype=None, shape=None):
        return tensor(name, dtype or dtype_default, _default_shape(ndim, shape, fixed))
    return make


scalar = _maker(0)
vector = _maker(1)
matrix = _maker(2)
row = _maker(2, {0: 1})
col = _maker(2, {1: 1})
tensor3 = _maker(3)
tensor4 = _maker(4)
tensor5 = _maker(5)

# Theano's type constants (T.dscalar, T.fmatrix, ...: types that are also callable, so that
# T.dscalar('x').type is T.dscalar) and plural constructors (T.scalars, T.dmatrices, ...)
globals().update(_types.TYPE_CONSTANTS)
for _kind, _plural in _types.PLURALS.items():
    globals()[_plural] = _types.plural(globals()[_kind], _plural)
    for _p in _types.PREFIXES:
        globals()[_p + _plural] = _types.plural(_types.TYPE_CONSTANTS[_p + _kind], _p + _plural)


# -- elementwise --------------------------------------------------------------------------

def _unary(op):
    def f(x):
        return apply(op, [x])
    f.__name__ = op
    f.__doc__ = f"Elementwise {op}."
    return f


exp, log, log1p, expm1, sqrt, tanh = (_unary(n) for n in ("exp", "log", "log1p", "expm1", "sqrt", "tanh"))
sin, cos, erf, sign, floor, ceil = (_unary(n) for n in ("sin", "cos", "erf", "sign", "floor", "ceil"))
neg, relu, sigmoid, softplus = (_unary(n) for n in ("neg", "relu", "sigmoid", "softplus"))
logical_not = invert = _unary("logical_not")
abs = abs_ = _unary("abs")  # noqa: A001 - Theano's name
round_half_to_even = _unary("round")


def round_half_away_from_zero(x):
    """Round to the nearest integer, ties away from zero (C's ``round``)."""
    x = as_variable(x)
    return sign(x) * floor(abs(x) + 0.5)


def round(x, mode=None):  # noqa: A001 - NumPy's name
    """Theano's ``round``: ``mode`` 'half_to_even' (the default, as NumPy) or
    'half_away_from_zero'."""
    if mode in (None, "half_to_even"):
        return round_half_to_even(x)
    if mode == "half_away_from_zero":
        return round_half_away_from_zero(x)
    raise ValueError(f"round: mode must be 'half_to_even' or 'half_away_from_zero', got {mode!r}")


sgn = sign  # Theano's name


def sqr(x):
    return mul(x, x)


def _binary(op):
    def f(a, b):
        return apply_binary(op, a, b)
    f.__name__ = op
    f.__doc__ = f"Elementwise {op} with broadcasting."
    return f


add, sub, mul, true_div, floor_div, mod = (_binary(n) for n in ("add", "sub", "mul", "truediv", "floordiv", "mod"))
pow, maximum, minimum = (_binary(n) for n in ("pow", "maximum", "minimum"))  # noqa: A001
eq, neq, lt, le, gt, ge = (_binary(n) for n in ("eq", "neq", "lt", "le", "gt", "ge"))
and_, or_, xor = (_binary(n) for n in ("logical_and", "logical_or", "logical_xor"))
logical_and, logical_or, logical_xor = and_, or_, xor
divide = true_div


def switch(cond, a, b):
    """``a`` where ``cond`` else ``b`` (elementwise, broadcasting)."""
    cond = as_variable(cond, "cond")
    if cond.dtype != dt.BOOL:
        cond = neq(cond, 0)
    a_is, b_is = is_python_scalar(a), is_python_scalar(b)
    from .variable import weak_constant_for
    if a_is and not b_is:
        a = weak_constant_for(a, [as_variable(b)])
    elif b_is and not a_is:
        b = weak_constant_for(b, [as_variable(a)])
    return apply("where", [cond, a, b])


where = switch


def clip(x, lo, hi):
    return minimum(maximum(x, lo), hi)


def cast(x, dtype):
    x = as_variable(x)
    dtype = dt.canonical(dtype)
    if x.dtype == dtype:
        return x
    return apply("cast", [x], {"dtype": dtype})


# -- reductions -----------------------------------------------------------------------------

def normalize_axes(x: Variable, axis) -> tuple:
    if axis is None:
        return tuple(range(x.ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -x.ndim <= a < x.ndim:
            raise ValueError(f"axis {a} is out of range for {x.describe()}")
        out.append(a % x.ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {axis} for {x.describe()}")
    return tuple(sorted(out))


def reduce(op, x, axis=None, keepdims=False):
    x = as_variable(x)
    return apply(op, [x], {"axis": normalize_axes(x, axis), "keepdims": bool(keepdims)})


def accumulating(op, x, axis=None, keepdims=False, dtype=None, acc_dtype=None):
    """A sum/prod/mean with Theano's ``dtype`` (of the result) and ``acc_dtype`` (accumulated
    in): the input is cast to ``acc_dtype`` (default: the wider of the input's and
    ``dtype``, NumPy's rule), reduced, and the result cast to ``dtype``."""
    x = as_variable(x)
    if _is_dtype_like(keepdims):
        keepdims, dtype, acc_dtype = _theano_positional(op, keepdims, dtype, acc_dtype)
    if dtype is None and acc_dtype is None:
        return reduce(op, x, axis, keepdims)
    if dtype is None:
        # Theano: the default result dtype does not depend on acc_dtype (a float32 sum
        # accumulated in float64 is float32): the dtype the plain reduction would give
        dtype = _reduced_dtype(op, x, axis, keepdims)
    want = dt.canonical(dtype) if dtype is not None else None
    acc = dt.canonical(acc_dtype) if acc_dtype is not None else \
        np.promote_types(x.dtype, want).name if want is not None else x.dtype
    out = reduce(op, cast(x, acc), axis, keepdims)
    return out if want is None else cast(out, want)


def _is_dtype_like(v) -> bool:
    return isinstance(v, (str, np.dtype)) or (isinstance(v, type) and issubclass(v, np.generic))


def _theano_positional(op, third, fourth, fifth):
    """(keepdims, dtype, acc_dtype) from a call in Theano's positional order, recognised by a
    dtype in the third place: ``sum/prod(x, axis, dtype, keepdims, acc_dtype)`` and
    ``mean(x, axis, dtype, op, keepdims)`` (tcomp's order is NumPy-like ``(x, axis,
    keepdims, dtype, acc_dtype)``; a dtype is never a keepdims flag, so both orders work)."""
    if op == "mean":
        if fourth not in (None, False):
            raise ValueError("mean: Theano's deprecated op=True (the sum and count as an op) is not supported")
        return bool(fifth) if isinstance(fifth, (bool, np.bool_)) else False, third, None
    return bool(fourth) if isinstance(fourth, (bool, np.bool_)) else False, third, fifth


def _reduced_dtype(op, x, axis, keepdims) -> str:
    """The result dtype of reduction ``op`` on ``x`` (its type rule; no node is built)."""
    from tcomp.ir import get_op

    attrs = {"axis": normalize_axes(x, axis), "keepdims": bool(keepdims)}
    return get_op(op).infer_type([x.type], attrs).dtype


def sum(x, axis=None, keepdims=False, dtype=None, acc_dtype=None):  # noqa: A001
    return accumulating("sum", x, axis, keepdims, dtype, acc_dtype)


def prod(x, axis=None, keepdims=False, dtype=None, acc_dtype=None, no_zeros_in_input=False):
    return accumulating("prod", x, axis, keepdims, dtype, acc_dtype)


def mean(x, axis=None, keepdims=False, dtype=None, acc_dtype=None):
    return accumulating("mean", x, axis, keepdims, dtype, acc_dtype)


def max(x, axis=None, keepdims=False): return reduce("max", x, axis, keepdims)  # noqa: A001
def min(x, axis=None, keepdims=False): return reduce("min", x, axis, keepdims)  # noqa: A001
def argmax(x, axis=None, keepdims=False): return reduce("argmax", x, axis, keepdims)
def argmin(x, axis=None, keepdims=False): return reduce("argmin", x, axis, keepdims)


def max_and_argmax(x, axis=None, keepdims=False):
    """Theano's ``[max(x, axis), argmax(x, axis)]``."""
    return [max(x, axis, keepdims), argmax(x, axis, keepdims)]


def _single_axis(x, axis, what):
    if not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{what}: axis must be an int, got {axis!r}")
    return normalize_axes(x, axis)[0]


def logsumexp(x, axis=-1, keepdims=False):
    x = as_variable(x)
    return apply("logsumexp", [x], {"axis": _single_axis(x, axis, "logsumexp"), "keepdims": bool(keepdims)})


def softmax(x, axis=-1):
    x = as_variable(x)
    return apply("softmax", [x], {"axis": _single_axis(x, axis, "softmax")})


def log_softmax(x, axis=-1):
    x = as_variable(x)
    return apply("log_softmax", [x], {"axis": _single_axis(x, axis, "log_softmax")})


# -- linear algebra -----------------------------------------------------------------------

def dot(a, b):
    """Theano's dot: dot for rank <= 2, matmul semantics for batched operands; with a
    ``tcomp.sparse`` operand, ``sparse.dot`` (as Theano's ``T.dot`` dispatches)."""
    if getattr(a, "is_sparse_variable", False) is True or getattr(b, "is_sparse_variable", False) is True:
        from tcomp.sparse import dot as sparse_dot

        return sparse_dot(a, b)
    a, b = as_variable(a, "a"), as_variable(b, "b")
    if a.ndim <= 2 and b.ndim <= 2 and a.ndim and b.ndim:
        return apply("dot", [a, b])
    if a.ndim == 0 or b.ndim == 0:
        return mul(a, b)
    return apply("matmul", [a, b])


def matmul(a, b):
    return apply("matmul", [as_variable(a, "a"), as_variable(b, "b")])


# -- shapes ---------------------------------------------------------------------------------

def shape_i(x: Variable, i: int) -> Variable:
    d = x.type.shape[i]
    if isinstance(d, int):
        c = constant(np.int64(d))
        c._shape_of = x  # x's inputs are still used by whoever computes this (tcomp/function.py)
        return c
    return apply("shape", [x], {"axis": i})


def _vector_dims(v):
    """An int vector of static length as its entries (Theano passes shapes as vectors:
    ``T.zeros(T.shape(x))``, ``T.zeros(x.shape * 2)``); None for anything else."""
    if not (isinstance(v, Variable) and v.ndim == 1 and dt.is_int(v.dtype) and isinstance(v.type.shape[0], int)):
        return None
    if v.op == "stack" and all(i.ndim == 0 for i in v.inputs):
        return tuple(v.inputs)
    return tuple(v[i] for i in range(v.type.shape[0]))


def _dim_entries(shape, what):
    """Split a user shape into (attr with None for symbolic, dim operands)."""
    if isinstance(shape, (tuple, list)) and len(shape) == 1 and _vector_dims(shape[0]) is not None:
        shape = shape[0]
    if isinstance(shape, Variable):
        dims = _vector_dims(shape)
        if dims is None:
            raise TypeError(f"{what}: give the shape as a tuple (e.g. x.shape) or an int vector of static "
                            f"length, got {shape.describe()}")
        shape = dims
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    attr, operands = [], []
    for i, d in enumerate(shape):
        if isinstance(d, Variable):
            if d.op == "constant":
                attr.append(int(d.attrs["value"].value))
                continue
            if d.ndim != 0 or not dt.is_int(d.dtype):
                raise TypeError(f"{what}: dim {i} must be an integer scalar, got {d.describe()}")
            attr.append(None)
            operands.append(d)
        elif isinstance(d, (int, np.integer)) and not isinstance(d, bool):
            attr.append(int(d))
        else:
            raise TypeError(f"{what}: dim {i} must be an int or an integer scalar variable, got {d!r}")
    return tuple(attr), operands


def with_shape_origins(out: Variable, shape) -> Variable:
    """Remember the variables whose static dims ``shape`` read (``x.shape[i]`` folded to a
    constant): as in Theano, ``T.zeros(x.shape)`` uses ``x`` (tcomp.function's unused-input
    check follows ``_shape_of``), although the value needs none of it."""
    dims = shape if isinstance(shape, (tuple, list)) else (shape,)
    origins = tuple(o for d in dims if isinstance(d, Variable)
                    for o in ((d._shape_of,) if isinstance(d._shape_of, Variable) else d._shape_of or ()))
    if origins:
        mine = out._shape_of
        out._shape_of = tuple(dict.fromkeys(((mine,) if isinstance(mine, Variable) else mine or ()) + origins))
    return out


def reshape(x, shape, ndim=None):
    """Theano's ``reshape(x, newshape, ndim=None)``: ``newshape`` is a tuple/list of ints and
    integer scalars, or an integer vector (symbolic: its length must be static, or given as
    ``ndim``); ``ndim``, when given, must match the new rank."""
    x = as_variable(x)
    if isinstance(shape, Variable) and shape.ndim == 1:
        n = ndim
        if n is None:
            from .basic_more import get_vector_length

            n = get_vector_length(shape)
        shape = [shape[i] for i in range(int(n))]
    elif isinstance(shape, Variable) and shape.ndim == 0:
        shape = (shape,)
    if ndim is not None and len(_shape_tuple(shape)) != int(ndim):
        raise ValueError(f"reshape: ndim={ndim} but the new shape {shape} has {len(_shape_tuple(shape))} entries")
    attr, operands = _dim_entries(shape, "reshape")
    if any(d is not None and d < -1 for d in attr):
        raise ValueError(f"reshape: bad shape {shape}")
    return with_shape_origins(apply("reshape", [x] + operands, {"shape": attr}), shape)


def flatten(x, ndim=None, outdim=None):
    """Keep the first ``ndim - 1`` axes, merge the rest into one (``ndim`` defaults to 1;
    ``outdim`` is Theano's older name for it).

    The merged size is the product of the trailing dims, computed explicitly (NumPy's and
    Theano's flatten): a ``-1`` would be ambiguous when a leading dim is 0, and reshape
    rejects that, as NumPy does (shape (0, 2, 3) flattens to (0, 6))."""
    x = as_variable(x)
    if ndim is not None and outdim is not None and int(ndim) != int(outdim):
        raise ValueError(f"flatten: ndim={ndim} and outdim={outdim} disagree")
    ndim = int(ndim if ndim is not None else outdim if outdim is not None else 1)
    if not 1 <= ndim <= builtins.max(x.ndim, 1):
        raise ValueError(f"flatten: ndim {ndim} out of range for {x.describe()}")
    if ndim == 1:
        return reshape(x, (-1,))
    lead = [shape_i(x, i) for i in range(ndim - 1)]
    static, rest = 1, None
    for i in range(ndim - 1, x.ndim):
        d = x.type.shape[i]
        if isinstance(d, int):
            static *= d
        else:
            rest = shape_i(x, i) if rest is None else mul(rest, shape_i(x, i))
    merged = static if rest is None else (rest if static == 1 else mul(rest, constant(np.int64(static))))
    return reshape(x, lead + [merged])


def dimshuffle(x, pattern):
    x = as_variable(x)
    pattern = tuple(p if p == "x" else int(p) for p in pattern)
    if pattern == tuple(range(x.ndim)):
        return x
    return apply("dimshuffle", [x], {"pattern": pattern})


def transpose(x, axes=None):
    x = as_variable(x)
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    return dimshuffle(x, tuple(int(a) % x.ndim for a in axes))


def alloc(value, *shape, dtype=None):
    value = as_variable(value) if not is_python_scalar(value) else constant(value, dtype)
    if dtype is not None:
        value = cast(value, dtype)
    attr, operands = _dim_entries(shape, "alloc")
    return with_shape_origins(apply("alloc", [value] + operands, {"shape": attr}), shape)


def broadcast_to(x, shape):
    return alloc(x, *(shape if isinstance(shape, (tuple, list)) else (shape,)))


def _shape_tuple(shape):
    return tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)


def zeros(shape, dtype=None):
    return alloc(constant(0, dt.canonical(dtype or "floatX")), *_shape_tuple(shape))


def ones(shape, dtype=None):
    return alloc(constant(1, dt.canonical(dtype or "floatX")), *_shape_tuple(shape))


def full(shape, value, dtype=None):
    return alloc(constant(value, dtype), *_shape_tuple(shape))


def zeros_like(x, dtype=None):
    x = as_variable(x)
    return zeros(x.shape, dtype or x.dtype)


def ones_like(x, dtype=None):
    x = as_variable(x)
    return ones(x.shape, dtype or x.dtype)


def fill(model, value):
    """Theano's fill: ``value`` broadcast to the shape of ``model``."""
    model = as_variable(model)
    v = as_variable(value) if not is_python_scalar(value) else constant(value, model.dtype)
    return alloc(v, *model.shape)


def concatenate(tensors, axis=0):
    tensors = [as_variable(t) for t in tensors]
    if not tensors:
        raise ValueError("concatenate needs at least one tensor")
    return apply("concatenate", tensors, {"axis": int(axis) % tensors[0].ndim if tensors[0].ndim else 0})


def stack(*tensors, axis=0):
    """Theano's ``stack(tensors, axis=0)``; the older ``stack(a, b, c)`` (tensors as
    positional arguments, stacked along axis 0) works too."""
    if tensors and isinstance(tensors[0], (list, tuple)):
        if len(tensors) > 2:
            raise TypeError("stack(tensors, axis): too many positional arguments")
        if len(tensors) == 2:
            axis = tensors[1]
        tensors = tensors[0]
    tensors = [as_variable(t) for t in tensors]
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    return apply("stack", tensors, {"axis": int(axis) % (tensors[0].ndim + 1)})


def arange(start, stop=None, step=1, dtype=None):
    if stop is None:
        start, stop = 0, start
    parts = (start, stop, step)
    if all(is_python_scalar(p) for p in parts):
        out = np.arange(start, stop, step)
        d = dt.canonical(dtype) if dtype else (dt.DEFAULT_INT if out.dtype.kind in "iu" else dt.canonical("floatX"))
        return constant(out.astype(d))
    vs = [as_variable(p) for p in parts]
    for name, v in zip(("start", "stop", "step"), vs):
        if v.ndim != 0:
            raise TypeError(f"arange: {name} must be a scalar, got {v.describe()}")
    if dtype is None:
        # integer bounds give the default int; float bounds keep their precision (a float64
        # bound gives float64, JAX's lattice with weak Python scalars), never a silent float32
        strong_floats = [v.dtype for p, v in zip(parts, vs) if not is_python_scalar(p) and dt.is_float(v.dtype)]
        if strong_floats:
            dtype = dt.promote_types(*strong_floats)
        elif all(dt.is_int(v.dtype) or v.dtype == dt.BOOL for v in vs):
            dtype = dt.DEFAULT_INT
        else:
            dtype = "floatX"
    d = dtype
    return apply("arange", vs, {"dtype": dt.canonical(d)})


def as_tensor_variable(x, name=None, ndim=None):
    """``x`` as a tensor variable (a constant for Python/NumPy values).  With ``ndim``
    (Theano): leading broadcastable dims are dropped, or dims of size 1 padded on the left, to
    reach that rank; other mismatches raise ValueError."""
    v = as_variable(x, name or "value")
    if ndim is None or v.ndim == int(ndim):
        return v
    ndim = int(ndim)
    if v.ndim < ndim:
        return dimshuffle(v, ("x",) * (ndim - v.ndim) + tuple(range(v.ndim)))
    extra = v.ndim - ndim
    if any(v.type.shape[i] != 1 for i in range(extra)):
        raise ValueError(f"as_tensor_variable: cannot make {v.describe()} of rank {ndim}: "
                         f"its {extra} leading dim(s) are not broadcastable (static 1)")
    return dimshuffle(v, tuple(range(extra, v.ndim)))
