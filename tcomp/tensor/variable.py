"""Symbolic variables: the nodes users build expressions from.

A :class:`Variable` is an immutable expression node (op, operands, attrs, type), like
Theano's Variable+Apply in one object.  Building one infers its type through the op table
immediately, so every shape/dtype error surfaces where the user wrote the expression,
naming the variables involved.  ``tcomp.function`` turns the expression DAG into a
``tcomp.ir.Graph``.

Variables hash and compare by identity (``==`` is not overloaded, as in Theano: use
``T.eq``), so they can key dicts such as ``givens`` and ``updates``.

As in Theano, a variable is true (``if not W:`` tests for None-ness, as users write), except
the result of a ``<``/``<=``/``>``/``>=`` operator, whose truth value refuses ("Variables do
not support boolean operations."), because ``a < b < c`` would otherwise silently mean
``(a < b) and (b < c)``.  ``x.type`` is the interned :class:`tcomp.tensor.type.TensorType`
(``T.dscalar('x').type is T.dscalar``), ``x.eval({x: v})`` compiles (once per set of inputs)
and runs, and ``x.tag.test_value`` with ``tcomp.config.compute_test_value`` computes each new
expression's value eagerly with the reference op implementations, so a shape error is raised
where the expression is written (Theano's debugging aid).
"""
from __future__ import annotations

import itertools
import numbers
import sys
import warnings

import numpy as np

from tcomp import config as _config
from tcomp.ir import dtypes as dt
from tcomp.ir.ops import Constant, get_op
from tcomp.ir.types import TensorType

from .shape_tuple import ShapeTuple
from .type import interned

_counter = itertools.count()


def user_location():
    """(file, line) of the innermost caller outside tcomp (its examples count as user code),
    or None.  Only a few frame hops per Variable, so ``tcomp dump --locations`` costs nothing
    to keep on."""
    f = sys._getframe(1)
    while f is not None:
        mod = f.f_globals.get("__name__", "")
        if not (mod == "tcomp" or mod.startswith("tcomp.")) or mod.startswith("tcomp.examples"):
            return f.f_code.co_filename, f.f_lineno
        f = f.f_back
    return None


class Variable:
    __slots__ = ("type", "op", "inputs", "attrs", "name", "id", "loc", "_tag", "_is_nonzero", "_fn_cache",
                 "_shape_of", "__weakref__")

    def __init__(self, type: TensorType, op: str = "input", inputs=(), attrs=None, name=None):
        self.type = interned(type) if isinstance(type, TensorType) else type
        self._tag = None
        self._is_nonzero = True
        self._fn_cache = None
        #: for a constant dim returned by ``x.shape`` (a static dim): ``x``, whose inputs count as
        #: used by a function computing it (Theano compiles ``function([x], specify_shape(x, s).shape)``)
        self._shape_of = None
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = dict(attrs or {})
        self.name = name
        self.id = next(_counter)
        #: (file, line) of the user's Python that made this variable (``--locations``)
        self.loc = user_location()

    # -- introspection -------------------------------------------------------------
    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return self.type.ndim

    @property
    def broadcastable(self) -> tuple:
        return self.type.broadcastable

    @property
    def is_root(self) -> bool:
        return self.op == "input"

    @property
    def shape(self) -> tuple:
        """A tuple of int64 scalars: constants for static dims, ``shape`` nodes otherwise;
        arithmetic on it is on the int64 vector, as in Theano (tcomp/tensor/shape_tuple.py)."""
        from . import basic

        return ShapeTuple(basic.shape_i(self, i) for i in range(self.ndim))

    def describe(self) -> str:
        label = self.name if self.name else (f"<{self.op}>" if self.op != "constant" else "<constant>")
        return f"{label}: {self.type}"

    def __repr__(self) -> str:
        return f"Variable({self.describe()})"

    def __str__(self) -> str:
        return self.name or f"{self.op}.{self.id}"

    def __bool__(self):
        if self._is_nonzero:
            return True
        raise TypeError(f"Variables do not support boolean operations. (The truth value of {self.describe()} is "
                        "unknown at build time: use T.switch / T.where for conditions, and T.and_ for a < b < c.)")

    def __iter__(self):
        n = self.type.shape[0] if self.ndim else None
        if not isinstance(n, int):
            raise TypeError(f"symbolic variable {self.describe()} is not iterable (its length is not static; "
                            "maybe you are using builtins.sum instead of T.sum?)")
        return (self[i] for i in range(n))

    def __getstate__(self):
        """Pickling or copying a variable leaves its ``eval`` cache behind (compiled functions
        hold native code; they are rebuilt on the next ``eval``)."""
        slots = {}
        for cls in type(self).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if name != "__weakref__" and hasattr(self, name):
                    slots[name] = getattr(self, name)
        slots["_fn_cache"] = None
        return (None, slots)

    # -- Theano's Variable API -----------------------------------------------------------
    @property
    def owner(self):
        """Theano's ``owner``: None for an input, shared variable or constant; otherwise the
        application that made this variable (``.op`` is the op's name, ``.inputs``, ``.outputs``;
        for a Python op's result, ``.op`` is the ``tcomp.Op`` instance, as in Theano)."""
        if self.op in ("input", "constant"):
            return None
        call = self.inputs[0] if self.op == "get_output" and self.inputs[0].op == "py_call" else self
        if call.op == "py_call":
            from tcomp.ir.ops.pyop import resolve

            return Apply(resolve(call.attrs["op"]), list(call.inputs), [self], dict(call.attrs))
        return Apply(self.op, list(self.inputs), [self], dict(self.attrs))

    @property
    def tag(self) -> "Tag":
        """Theano's scratchpad; ``tag.test_value`` is checked against the type when set."""
        if self._tag is None:
            self._tag = Tag(self.type)
        return self._tag

    def get_test_value(self):
        value = known_test_value(self)
        if value is _MISSING:
            raise AttributeError(f"{self.describe()} has no test value (set its .tag.test_value)")
        return value

    def eval(self, inputs_to_values=None):
        """The value of this expression, given ``{variable: value}`` for its inputs (names of
        the inputs may stand for them).  Compiled once per set of inputs, as Theano does."""
        from tcomp.function import function

        values = dict(inputs_to_values or {})
        if any(isinstance(k, str) for k in values):
            values = _resolve_names(self, values)
        keys = tuple(sorted(values, key=lambda v: v.id))
        if self._fn_cache is None:
            self._fn_cache = {}
        fn = self._fn_cache.get(keys)
        if fn is None:
            fn = self._fn_cache[keys] = function(list(keys), self)
        return fn(*[values[k] for k in keys])

    def __len__(self):
        raise TypeError(f"symbolic variable {self.describe()} has no len(); use .shape[0]")

    # -- operators -----------------------------------------------------------------
    def __add__(self, o): return apply_binary("add", self, o)
    def __radd__(self, o): return apply_binary("add", o, self)
    def __sub__(self, o): return apply_binary("sub", self, o)
    def __rsub__(self, o): return apply_binary("sub", o, self)
    def __mul__(self, o): return apply_binary("mul", self, o)
    def __rmul__(self, o): return apply_binary("mul", o, self)
    def __truediv__(self, o): return apply_binary("truediv", self, o)
    def __rtruediv__(self, o): return apply_binary("truediv", o, self)
    def __floordiv__(self, o): return apply_binary("floordiv", self, o)
    def __rfloordiv__(self, o): return apply_binary("floordiv", o, self)
    def __mod__(self, o): return apply_binary("mod", self, o)
    def __rmod__(self, o): return apply_binary("mod", o, self)
    def __pow__(self, o): return apply_binary("pow", self, o)
    def __rpow__(self, o): return apply_binary("pow", o, self)
    def __lt__(self, o): return _comparison("lt", self, o)
    def __le__(self, o): return _comparison("le", self, o)
    def __gt__(self, o): return _comparison("gt", self, o)
    def __ge__(self, o): return _comparison("ge", self, o)
    # bitwise on integer tensors, logical on bools (and on floats' truthiness): basic_more
    def __and__(self, o): return _basic_more().and_(self, o)
    def __rand__(self, o): return _basic_more().and_(o, self)
    def __or__(self, o): return _basic_more().or_(self, o)
    def __ror__(self, o): return _basic_more().or_(o, self)
    def __xor__(self, o): return _basic_more().xor(self, o)
    def __rxor__(self, o): return _basic_more().xor(o, self)
    def __invert__(self): return _basic_more().invert(self)
    def __neg__(self): return apply("neg", [self])
    def __pos__(self): return self
    def __abs__(self): return apply("abs", [self])

    def __matmul__(self, o):
        from . import basic
        return basic.matmul(self, o)

    def __rmatmul__(self, o):
        from . import basic
        return basic.matmul(o, self)

    __hash__ = object.__hash__

    # -- methods mirroring NumPy/Theano ---------------------------------------------
    @property
    def T(self):
        from . import basic
        return basic.transpose(self)

    def transpose(self, *axes):
        from . import basic
        return basic.transpose(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else
                               (axes or None))

    def reshape(self, *shape, ndim=None):
        """``x.reshape(shape, ndim=None)`` (Theano, ``shape`` a tuple or an integer vector) or
        ``x.reshape(d0, d1, ...)`` (NumPy)."""
        from . import basic

        def is_shape(s):
            return isinstance(s, (tuple, list)) or (isinstance(s, Variable) and s.ndim == 1)
        if len(shape) == 2 and is_shape(shape[0]) and isinstance(shape[1], int) and ndim is None:
            shape, ndim = shape[:1], shape[1]  # Theano's positional ndim
        if len(shape) == 1 and is_shape(shape[0]):
            shape = shape[0]
        return basic.reshape(self, shape, ndim)

    def flatten(self, ndim=None, outdim=None):
        from . import basic
        return basic.flatten(self, ndim, outdim)

    def ravel(self):
        """``self.flatten()`` (NumPy's name)."""
        return self.flatten()

    def dimshuffle(self, *pattern):
        from . import basic
        if len(pattern) == 1 and isinstance(pattern[0], (tuple, list)):
            pattern = pattern[0]
        return basic.dimshuffle(self, pattern)

    def astype(self, dtype):
        from . import basic
        return basic.cast(self, dtype)

    def sum(self, axis=None, keepdims=False, dtype=None, acc_dtype=None):
        return _basic().accumulating("sum", self, axis, keepdims, dtype, acc_dtype)

    def prod(self, axis=None, keepdims=False, dtype=None, acc_dtype=None, no_zeros_in_input=False):
        return _basic().accumulating("prod", self, axis, keepdims, dtype, acc_dtype)

    def mean(self, axis=None, keepdims=False, dtype=None, acc_dtype=None):
        return _basic().accumulating("mean", self, axis, keepdims, dtype, acc_dtype)

    def max(self, axis=None, keepdims=False): return _reduce("max", self, axis, keepdims)
    def min(self, axis=None, keepdims=False): return _reduce("min", self, axis, keepdims)
    def argmax(self, axis=None, keepdims=False): return _reduce("argmax", self, axis, keepdims)
    def argmin(self, axis=None, keepdims=False): return _reduce("argmin", self, axis, keepdims)

    # (tcomp.tensor.extra: compositions of the ops above)
    def var(self, axis=None, ddof=0, keepdims=False, corrected=False):
        return _extra().var(self, axis, ddof, keepdims, corrected)

    def std(self, axis=None, ddof=0, keepdims=False, corrected=False):
        return _extra().std(self, axis, ddof, keepdims, corrected)

    def norm(self, L=2, axis=None, keepdims=False): return _extra().norm(self, L, axis, keepdims)
    def any(self, axis=None, keepdims=False): return _extra().any(self, axis, keepdims)
    def all(self, axis=None, keepdims=False): return _extra().all(self, axis, keepdims)
    def squeeze(self, axis=None): return _extra().squeeze(self, axis)
    def repeat(self, repeats, axis=None): return _extra().repeat(self, repeats, axis)
    def trace(self, offset=0): return _extra().trace(self, offset)
    def diagonal(self, offset=0, axis1=0, axis2=1): return _extra().diagonal(self, offset, axis1, axis2)
    def cumsum(self, axis=None): return _extra().cumsum(self, axis)
    def cumprod(self, axis=None): return _extra().cumprod(self, axis)
    def sort(self, axis=-1, kind=None, order=None): return _extra().sort(self, axis, kind, order)
    def argsort(self, axis=-1, kind=None, order=None): return _extra().argsort(self, axis, kind, order)

    @property
    def size(self):
        """The number of elements (a symbolic int64 scalar; a constant when the shape is static)."""
        return _extra()._size(self, range(self.ndim)) if self.ndim else _basic().constant(1, "int64")

    def clip(self, a_min, a_max): return _basic().clip(self, a_min, a_max)
    def round(self, mode=None): return _basic().round(self, mode)  # noqa: A003
    def dot(self, other): return _basic().dot(self, other)
    def zeros_like(self, dtype=None): return _basic().zeros_like(self, dtype)
    def ones_like(self, dtype=None): return _basic().ones_like(self, dtype)

    def swapaxes(self, axis1, axis2):
        """The transpose exchanging ``axis1`` and ``axis2``."""
        order = list(range(self.ndim))
        a, b = (int(axis1) % self.ndim, int(axis2) % self.ndim) if self.ndim else (0, 0)
        order[a], order[b] = order[b], order[a]
        return self.transpose(*order)

    def take(self, indices, axis=None, mode="raise"):
        """NumPy's take: ``self[..., indices, ...]`` along ``axis`` (of the flattened tensor when None)."""
        if mode != "raise":
            raise ValueError(f"take: only mode='raise' is supported, got {mode!r}")
        if axis is None:
            return self.flatten()[indices]
        return self[(slice(None),) * (int(axis) % self.ndim) + (indices,)]

    def copy(self, name=None):
        """A new variable with this value (Theano's ``tensor_copy``; the passes remove it)."""
        return apply("dimshuffle", [self], {"pattern": tuple(range(self.ndim))}, name=name)

    def ptp(self, axis=None):
        return _elemwise_more().ptp(self, axis)

    def conj(self):
        """The complex conjugate: this (real) tensor (tcomp has no complex dtypes)."""
        return self

    conjugate = conj

    @property
    def real(self):
        """The real part: this (real) tensor."""
        return self

    @property
    def imag(self):
        """The imaginary part of a real tensor: zeros."""
        return _basic().zeros_like(self)

    def fill(self, value):
        """Theano's ``x.fill(value)``: ``value`` broadcast to this tensor's shape."""
        return _basic().fill(self, value)

    def compress(self, a, axis=None):
        """Theano's ``x.compress(a, axis)``: NumPy's ``compress(a, x, axis)``."""
        from .array_more import compress
        return compress(a, self, axis)

    def searchsorted(self, v, side="left", sorter=None):
        from .extra_ops import searchsorted
        return searchsorted(self, v, side, sorter)

    def choose(self, choices, mode="raise"):
        return _elemwise_more().choose(self, choices, mode)

    def get_scalar_constant_value(self):
        """The value of this scalar when it is a constant (Theano's method); raises
        ``NotScalarConstantError`` otherwise."""
        from .shape_helpers import get_scalar_constant_value
        return get_scalar_constant_value(self)

    def __divmod__(self, o):
        return apply_binary("floordiv", self, o), apply_binary("mod", self, o)

    def __rdivmod__(self, o):
        return apply_binary("floordiv", o, self), apply_binary("mod", o, self)

    def nonzero(self, return_matrix=False):
        from . import masks
        return masks.nonzero(self, return_matrix)

    def nonzero_values(self):
        from . import masks
        return masks.nonzero_values(self)

    def __getitem__(self, key):
        from . import indexing
        return indexing.getitem(self, key)


def _comparison(op, a, b):
    out = apply_binary(op, a, b)
    out._is_nonzero = False  # Theano: only comparison results refuse a truth value
    return out


def _resolve_names(expr, values):
    """Replace string keys by the root variables of ``expr`` with that name (unique)."""
    from tcomp.trace import _postorder

    roots = {}
    for v in _postorder([expr], lambda v: v):
        if v.op == "input" and v.name is not None:
            roots.setdefault(v.name, []).append(v)
    out = {}
    for k, val in values.items():
        if isinstance(k, str):
            found = roots.get(k, [])
            if len(found) != 1:
                raise ValueError(f"eval: {len(found)} inputs of {expr.describe()} are named {k!r}; "
                                 "pass the variable itself")
            k = found[0]
        out[k] = val
    return out


class Tag:
    """``variable.tag``: free attributes, plus ``test_value`` validated by the type's filter
    (dtype converted losslessly, rank and static dims checked), as Theano's scratchpad does.

    One difference: a float test value may be rounded to a narrower float type.  Theano's
    documentation assigns ``numpy.random.rand(5, 10)`` (float64) to ``T.matrix`` under its
    default floatX=float64; tcomp's default floatX is float32, and a debugging aid should not
    refuse the documented example."""

    def __init__(self, type):
        object.__setattr__(self, "_type", type)

    def __setattr__(self, name, value):
        if name == "test_value":
            t = self._type
            if not hasattr(t, "filter"):
                value = np.asarray(value)
            elif dt.is_float(t.dtype) and np.asarray(value).dtype.kind == "f":
                value = t.filter(value, allow_downcast=True)
            else:
                value = t.filter(value)
        object.__setattr__(self, name, value)

    def __repr__(self):
        return f"Tag({', '.join(k for k in vars(self) if k != '_type')})"


class Apply(tuple):
    """What ``Variable.owner`` returns: (op name, inputs, outputs, attrs) with Theano's names."""

    __slots__ = ()

    def __new__(cls, op, inputs, outputs, attrs):
        return super().__new__(cls, (op, inputs, outputs, attrs))

    op = property(lambda self: self[0])
    inputs = property(lambda self: self[1])
    outputs = property(lambda self: self[2])
    attrs = property(lambda self: self[3])
    nin = property(lambda self: len(self[1]))
    nout = property(lambda self: len(self[2]))


_MISSING = object()


def known_test_value(v):
    """The test value of ``v`` (a constant's value, a shared variable's value, or
    ``tag.test_value``), else ``_MISSING``."""
    if v.op == "constant":
        return np.asarray(v.attrs["value"].value)
    if v._tag is not None and "test_value" in vars(v._tag):
        return v._tag.test_value
    get_value = getattr(v, "get_value", None)
    if get_value is not None:
        return get_value(borrow=True)
    return _MISSING


def compute_test_value(out: "Variable", mode: str) -> None:
    """Theano's ``compute_test_value``: evaluate ``out`` from its operands' test values with
    the reference op implementation and store it in ``out.tag.test_value``; an error of the
    op (shapes that do not fit) is raised now, naming the operands.  An operand without a
    test value: 'raise' raises, 'warn' warns, 'ignore' skips (no test value for ``out``)."""
    from tcomp.ir.interpreter import check_elemwise_broadcast, check_value

    values = []
    for i, v in enumerate(out.inputs):
        val = known_test_value(v)
        if val is _MISSING:
            msg = (f"Cannot compute test value: input {i} ({v.describe()}) of {out.op} has no test value; "
                   f"set its .tag.test_value or tcomp.config.compute_test_value = 'off'")
            if mode == "raise":
                raise ValueError(msg)
            if mode == "warn":
                warnings.warn(msg, stacklevel=4)
            return
        values.append(np.asarray(val))
    opdef = get_op(out.op)
    try:
        with np.errstate(all="ignore"):
            result = np.asarray(opdef.impl(values, out.attrs, out.type))
        if result.dtype.name != out.type.dtype:
            result = result.astype(out.type.dtype)
        if opdef.kind == "elemwise":
            check_elemwise_broadcast(out.op, [v.type for v in out.inputs], values, result.shape)
        check_value(result, out.type, f"{out.op}", {})
    except (ValueError, TypeError, IndexError) as exc:
        operands = ", ".join(f"{_operand_label(v, i)} with test value of shape {np.shape(val)}"
                             for i, (v, val) in enumerate(zip(out.inputs, values)))
        raise type(exc)(f"computing the test value of {out.op}({operands}): {exc}") from None
    object.__setattr__(out.tag, "test_value", result)


def _extra():
    from . import extra
    return extra


def _basic_more():
    from . import basic_more
    return basic_more


def _elemwise_more():
    from . import elemwise_more
    return elemwise_more


def _basic():
    from . import basic
    return basic


def _reduce(op, x, axis, keepdims):
    from . import basic
    return basic.reduce(op, x, axis, keepdims)


# -- building nodes -------------------------------------------------------------------

def is_python_scalar(v) -> bool:
    return isinstance(v, (bool, numbers.Number, np.bool_)) and not isinstance(v, (np.ndarray, Variable)) \
        and np.ndim(v) == 0 and not isinstance(v, complex)


def constant(value, dtype=None, name=None) -> Variable:
    """A constant tensor (NumPy arrays keep their dtype; Python scalars take the default)."""
    c = Constant(value, None if dtype is None else dt.canonical(dtype))
    return Variable(c.type, "constant", (), {"value": c}, name=name)


def as_variable(value, name="value") -> Variable:
    if isinstance(value, Variable):
        return value
    if isinstance(value, ShapeTuple):  # x.shape: Theano's int64 shape vector
        return value.vector()
    dense = getattr(type(value), "__tcomp_dense__", None)
    if dense is not None:  # a tcomp.sparse matrix in a dense op: its dense form
        return dense(value)
    if isinstance(value, (list, tuple)) and any(isinstance(v, Variable) for v in value):
        # Theano's as_tensor_variable stacks a list of variables (T.prod(x.shape), [a, 2 * b]):
        # tensors of one rank, and Python numbers as weak constants of their dtype
        syms = [v for v in value if isinstance(v, Variable)]
        if all(isinstance(v, Variable) or is_python_scalar(v) for v in value) and len({v.ndim for v in syms}) == 1:
            from .basic import stack
            parts = [v if isinstance(v, Variable) else weak_constant_for(v, syms) for v in value]
            if syms[0].ndim == 0 or all(p.ndim == syms[0].ndim for p in parts):
                return stack(parts)
        raise TypeError(f"{name}: a list mixing symbolic variables and other values cannot become a tensor "
                        f"(Theano stacks a list of variables of one rank and Python numbers); use T.stack")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - defensive
        raise TypeError(f"{name}: cannot convert {value!r} to a tensor") from exc
    if arr.dtype.kind in "OUSV":
        raise TypeError(f"{name}: cannot convert {type(value).__name__} {value!r} to a tensor")
    if is_python_scalar(value) and not isinstance(value, np.generic):
        return constant(value)
    return constant(arr)


def _operand_label(v, i) -> str:
    return v.describe() if isinstance(v, Variable) else f"operand {i}"


def apply(op: str, inputs, attrs=None, name=None) -> Variable:
    """Make the node ``op(inputs, attrs)``; type errors name the operand variables."""
    inputs = [as_variable(v, name=f"operand {i} of {op}") for i, v in enumerate(inputs)]
    attrs = get_op(op).normalize_attrs(dict(attrs or {}))
    try:
        out_type = get_op(op).infer_type([v.type for v in inputs], attrs)
    except (TypeError, ValueError) as exc:
        operands = ", ".join(_operand_label(v, i) for i, v in enumerate(inputs))
        raise type(exc)(f"{exc} [in {op}({operands})]") from None
    out = Variable(out_type, op, inputs, attrs, name=name)
    mode = _config.compute_test_value
    if mode != "off":
        compute_test_value(out, mode)
    return out


def weak_constant_for(value, others) -> Variable:
    """Turn a Python scalar into a constant whose dtype follows JAX's weak-type rule."""
    strong = [o.dtype for o in others if isinstance(o, Variable)]
    kind = dt.weak_scalar_kind(value)
    if not strong:
        return constant(value)
    d = dt.promote_with_weak(strong, [kind])
    try:
        return constant(np.asarray(value, dtype=d))
    except OverflowError:
        raise OverflowError(f"Python scalar {value!r} does not fit {d}, the dtype of "
                            f"{', '.join(o.describe() for o in others if isinstance(o, Variable))}") from None


def apply_binary(op: str, a, b) -> Variable:
    if isinstance(a, Variable) and is_python_scalar(b):
        b = weak_constant_for(b, [a])
    elif isinstance(b, Variable) and is_python_scalar(a):
        a = weak_constant_for(a, [b])
    return apply(op, [a, b])
