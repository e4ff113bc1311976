"""Theano's tensor *types*: ``T.dscalar``, ``T.fmatrix``, ``T.TensorType('float64', (False, True))``.

In Theano a type constant is an object that describes variables and also makes them:
``x = T.dscalar('x')`` and then ``x.type is T.dscalar``.  Here :class:`TensorType` is a
subclass of the IR's ``tcomp.ir.TensorType`` (so it goes straight into graphs, compares and
hashes equal to the IR type with the same dtype and shape), with Theano's constructor,
``__call__``, ``filter`` and ``repr``.  Every Variable's type is *interned*
(:func:`interned`): one object per (dtype, shape), and the constants below are those objects,
which is what makes ``x.type is T.dscalar`` hold.

Broadcastable patterns map onto tcomp shapes: ``True`` is a static dim of 1 (in tcomp only a
static 1 broadcasts), ``False`` an anonymous symbolic dim.  ``TensorType(dtype, shape)``
also takes a tcomp shape (ints, names, None); a tuple of Python/NumPy bools is read as a
broadcastable pattern, anything else as a shape, so ``(1, 0)`` means a static 1x0 shape,
not Theano's ``(True, False)``.

Also here: the plural constructors (``T.dmatrices('a', 'b')``, ``T.scalars(3)``) and
``T.specify_shape`` / ``T.addbroadcast`` / ``T.unbroadcast`` / ``T.patternbroadcast``.
"""
from __future__ import annotations

import numpy as np

from tcomp.ir import dtypes as dt
from tcomp.ir import types as ir_types

_NAMED_PATTERNS = {(): "scalar", (False,): "vector", (False, True): "col", (True, False): "row",
                   (False, False): "matrix"}


def _is_pattern(seq) -> bool:
    return all(isinstance(b, (bool, np.bool_)) for b in seq) and len(seq) > 0


class TensorType(ir_types.TensorType):
    """A tensor type (dtype + shape) that is also a variable constructor, as in Theano."""

    def __init__(self, dtype, broadcastable=None, name=None, shape=None, sparse_grad=False):
        if shape is None:
            shape = () if broadcastable is None else tuple(broadcastable)
            if _is_pattern(shape):
                shape = tuple(1 if b else None for b in shape)
        elif broadcastable is not None:
            raise TypeError("TensorType: give broadcastable= or shape=, not both")
        super().__init__(dtype, shape)
        object.__setattr__(self, "name", name)

    # equal to (and hashing like) any IR TensorType with the same dtype and shape: graphs mix
    # the two (inputs carry these, op results the IR's), and passes compare node types
    def __eq__(self, other):
        if isinstance(other, ir_types.TensorType):
            return self.dtype == other.dtype and self.shape == other.shape
        return NotImplemented

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = ir_types.TensorType.__hash__

    def __reduce__(self):
        return (_rebuild, (self.dtype, self.shape))

    # -- Theano's type API -----------------------------------------------------------
    def __call__(self, name=None, shape=None, dtype=None):
        """A new symbolic input of this type (``shape=`` may refine dims, tcomp's extension)."""
        from .variable import Variable

        t = self
        if dtype is not None and dt.canonical(dtype) != self.dtype:
            t = t.with_dtype(dtype)
        if shape is not None:
            shape = tuple(shape)
            if len(shape) != self.ndim:
                raise ValueError(f"shape {shape} has {len(shape)} dims, expected {self.ndim} for {self!r}")
            t = ir_types.TensorType(t.dtype, shape)
        return Variable(t, "input", name=name)

    make_variable = __call__

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def filter(self, data, strict=False, allow_downcast=None):
        """``data`` as an ndarray of this type, or TypeError/ValueError saying why not.

        As Theano: ``strict`` wants the exact dtype; otherwise a lossless cast is made, and a
        lossy one only with ``allow_downcast`` (Python scalars/lists are converted when every
        value survives the conversion)."""
        if strict:
            if not isinstance(data, np.ndarray) or data.dtype.name != self.dtype:
                got = data.dtype.name if isinstance(data, np.ndarray) else type(data).__name__
                raise TypeError(f"{self!r} expected an ndarray of dtype {self.dtype}, got {got}")
            arr = data
        elif isinstance(data, np.ndarray) or isinstance(data, np.generic):
            arr = np.asarray(data)
            if arr.dtype.name != self.dtype:
                if allow_downcast or np.can_cast(arr.dtype, self.dtype, "safe"):
                    arr = arr.astype(self.dtype)
                else:
                    raise TypeError(f"{self!r} cannot store a value of dtype {arr.dtype.name} without "
                                    "risking loss of precision; cast it first or pass allow_downcast=True")
        else:
            arr = np.asarray(data)
            if arr.dtype.kind in "OUSV":
                raise TypeError(f"{self!r} cannot store {type(data).__name__} {data!r}")
            converted = arr.astype(self.dtype)
            with np.errstate(invalid="ignore"):
                if not allow_downcast and not np.array_equal(converted, arr, equal_nan=arr.dtype.kind == "f"):
                    raise TypeError(f"{self!r} cannot store {data!r} exactly; pass allow_downcast=True")
            arr = converted
        if arr.ndim != self.ndim:
            raise TypeError(f"{self!r} expected a value of rank {self.ndim}, got shape {arr.shape}")
        for axis, (want, have) in enumerate(zip(self.shape, arr.shape)):
            if isinstance(want, int) and want != have:
                raise ValueError(f"{self!r} expected size {want} on axis {axis}, got shape {arr.shape}")
        return arr

    def is_valid_value(self, data) -> bool:
        try:
            self.filter(data, strict=True)
            return True
        except (TypeError, ValueError):
            return False

    def value_zeros(self, shape):
        return np.zeros(shape, dtype=self.dtype)

    def __repr__(self) -> str:
        if getattr(self, "name", None):
            return self.name
        b = self.broadcastable
        if all(d is None or d == 1 for d in self.shape):
            kind = _NAMED_PATTERNS.get(b) or (str(b) if any(b) else f"{len(b)}D")
        else:
            kind = f"shape={ir_types.shape_str(self.shape)}"
        return f"TensorType({self.dtype}, {kind})"


def _rebuild(dtype, shape):
    return interned(ir_types.TensorType(dtype, shape))


_INTERNED: dict = {}


def interned(t) -> TensorType:
    """The one :class:`TensorType` object for ``t``'s dtype and shape."""
    key = (t.dtype, t.shape)
    out = _INTERNED.get(key)
    if out is None:
        out = t if type(t) is TensorType and getattr(t, "name", None) is None else TensorType(t.dtype, shape=t.shape)
        _INTERNED[key] = out
    return out


# -- the type constants --------------------------------------------------------------------

PREFIXES = {"b": "int8", "w": "int16", "i": "int32", "l": "int64", "f": "float32", "d": "float64"}
KINDS = {"scalar": (), "vector": (None,), "matrix": (None, None), "row": (1, None), "col": (None, 1),
         "tensor3": (None,) * 3, "tensor4": (None,) * 4, "tensor5": (None,) * 5}
#: Theano's plural names
PLURALS = {"scalar": "scalars", "vector": "vectors", "matrix": "matrices", "row": "rows", "col": "cols",
           "tensor3": "tensor3s", "tensor4": "tensor4s", "tensor5": "tensor5s"}

TYPE_CONSTANTS = {p + k: interned(ir_types.TensorType(d, shape))
                  for p, d in PREFIXES.items() for k, shape in KINDS.items()}


def plural(make, what):
    """Theano's plural constructor: ``f(3)`` -> 3 unnamed variables, ``f('a', 'b')`` -> one per
    name (a list), ``f('a')`` -> one variable (Theano returns it bare, not in a list), and
    ``f('abcd')`` -> one per character (Theano's ``a, b, c, d = scalars('abcd')``)."""
    def many(*names, dtype=None):
        kw = {} if dtype is None else {"dtype": dtype}
        if len(names) == 1 and isinstance(names[0], (int, np.integer)) and not isinstance(names[0], bool):
            return [make(**kw) for _ in range(int(names[0]))]
        if len(names) == 1 and isinstance(names[0], (list, tuple)):
            names = tuple(names[0])
        bad = [n for n in names if not isinstance(n, str)]
        if bad or not names:
            raise TypeError(f"{what}: give names (strings) or a count, got {names!r}")
        if len(names) == 1:
            if len(names[0]) > 1:  # Theano iterates over the one string given
                return [make(c, **kw) for c in names[0]]
            return make(names[0], **kw)
        return [make(n, **kw) for n in names]
    many.__name__ = what
    many.__doc__ = f"Several variables at once: ``{what}('a', 'b')`` or ``{what}(n)`` (Theano's name)."
    return many


# -- broadcast patterns and shape hints ------------------------------------------------------

def _axes(x, axes, what):
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise TypeError(f"{what}: axes must be ints, got {a!r}")
        if not -x.ndim <= a < x.ndim:
            raise ValueError(f"{what}: axis {a} is out of range for {x.describe()}")
        out.append(int(a) % x.ndim)
    return out


def _dims(x):
    """x's dims as reshape/alloc entries that keep static dims static and read symbolic ones
    off x (a shape node, never folded into the attr)."""
    from .variable import apply

    return [d if isinstance(d, int) else apply("shape", [x], {"axis": i}) for i, d in enumerate(x.type.shape)]


def addbroadcast(x, *axes):
    """``x`` with dims ``axes`` made broadcastable (static 1), checked at run time: a reshape to
    the same dims with 1 on those axes fails unless every one of them is 1 (non-empty x)."""
    from . import basic
    from .variable import as_variable

    x = as_variable(x)
    axes = [a for a in _axes(x, axes, "addbroadcast") if x.type.shape[a] != 1]
    if not axes:
        return x
    dims = _dims(x)
    for a in axes:
        dims[a] = 1
    return basic.reshape(x, dims)


def unbroadcast(x, *axes):
    """``x`` with dims ``axes`` made non-broadcastable (symbolic, still 1 at run time)."""
    from . import basic
    from .variable import apply, as_variable

    x = as_variable(x)
    axes = [a for a in _axes(x, axes, "unbroadcast") if x.type.shape[a] == 1]
    if not axes:
        return x
    dims = _dims(x)
    for a in axes:
        dims[a] = apply("shape", [x], {"axis": a})  # a node, so the dim stays symbolic
    return basic.reshape(x, dims)


def patternbroadcast(x, broadcastable):
    """``x`` with broadcastable pattern ``broadcastable`` (True: static 1, False: symbolic)."""
    from .variable import as_variable

    x = as_variable(x)
    pattern = tuple(bool(b) for b in broadcastable)
    if len(pattern) != x.ndim:
        raise ValueError(f"patternbroadcast: pattern {pattern} has {len(pattern)} entries, "
                         f"{x.describe()} has {x.ndim} dims")
    x = addbroadcast(x, *[i for i, b in enumerate(pattern) if b])
    return unbroadcast(x, *[i for i, b in enumerate(pattern) if not b])


def specify_shape(x, shape):
    """``x`` with its shape declared as ``shape`` (ints or integer scalar variables): the type
    gets the static dims, and the run-time shape is checked (a dim of 1 declared by a reshape
    that fails otherwise; other dims by an alloc, which rejects a different size; a size-1
    dim given where a larger one is declared is broadcast by that alloc, as NumPy does)."""
    from . import basic
    from .variable import Variable, as_variable

    x = as_variable(x)
    if isinstance(shape, Variable):
        raise TypeError("specify_shape: give the shape as a tuple (e.g. y.shape), not a tensor")
    shape = list(shape)
    if len(shape) != x.ndim:
        raise ValueError(f"specify_shape: shape {shape} has {len(shape)} dims, {x.describe()} has {x.ndim}")
    static = [_static(d) for d in shape]
    ones = [i for i, d in enumerate(static) if d == 1]
    x = addbroadcast(x, *ones)
    if all(static[i] is not None and static[i] == x.type.shape[i] for i in range(x.ndim)):
        return x
    return basic.alloc(x, *[static[i] if static[i] is not None else shape[i] for i in range(x.ndim)])


def _static(d):
    from .variable import Variable

    if isinstance(d, Variable):
        if d.op == "constant":
            return int(np.asarray(d.attrs["value"].value))
        if d.ndim != 0 or not dt.is_int(d.dtype):
            raise TypeError(f"specify_shape: dims must be integer scalars, got {d.describe()}")
        return None
    if isinstance(d, (int, np.integer)) and not isinstance(d, bool):
        return int(d)
    raise TypeError(f"specify_shape: dims must be ints or integer scalar variables, got {d!r}")
