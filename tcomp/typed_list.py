"""Theano's ``theano.typed_list``: symbolic Python lists of tensors of one type.

    tl = TypedListType(T.fvector)('tl'); v = T.fvector('v')
    f = tcomp.function([tl, v], append(tl, v))
    f([[1, 2, 3], [4, 5]], [2])            # -> [array([1, 2, 3]), array([4, 5]), array([2])]

A list's length and its elements' shapes are data, so a list is a ragged pair of dense
tensors (a composite variable, ``tcomp/composite.py``): ``data``, every element's values end
to end (C order), and ``shapes``, an int64 matrix with one row per element.  Every list
operation is a composition of dense ops (concatenation, slicing with symbolic bounds,
gathers, cumulative sums, a reshape to a shape read from ``shapes``), so the lists compile on
every backend, are differentiable through ``getitem`` and cost one pass over the values
they touch; a compiled function takes and returns Python lists of arrays.

Differences from Theano: nested lists (``depth > 0``) are not supported; ``index_`` and
``count`` return int64 scalars (Theano: floatX); ``index_`` of a missing element raises
ValueError at call time.  Elements compare as Theano's ``values_eq``: same shape, equal
values, NaN equal to NaN.
"""
from __future__ import annotations

import numpy as np

import tcomp.tensor as T
from tcomp.ir import dtypes as dt
from tcomp.tensor.indexing import inc_subtensor
from tcomp.tensor.variable import Variable, as_variable


class TypedListType:
    """``TypedListType(ttype)``: the type of lists whose elements have tensor type ``ttype``
    (``T.fvector``, ``T.dmatrix``, ...); calling it makes an input variable."""

    def __init__(self, ttype, depth=0):
        if depth:
            raise TypeError("TypedListType: nested typed lists (depth > 0) are not supported by tcomp")
        if not (hasattr(ttype, "dtype") and hasattr(ttype, "ndim") and hasattr(ttype, "shape")):
            raise TypeError(f"TypedListType: ttype must be a tensor type such as T.fvector, got {ttype!r}")
        self.ttype = ttype

    def __call__(self, name=None):
        data = T.vector(f"{name or 'list'}.data", dtype=self.ttype.dtype)
        shapes = T.tensor(f"{name or 'list'}.shapes", dtype="int64", shape=(None, self.ttype.ndim))
        return TypedListVariable(self.ttype, data, shapes, name=name, root=True)

    def __eq__(self, other):
        return isinstance(other, TypedListType) and other.ttype == self.ttype

    def __hash__(self):
        return hash((TypedListType, self.ttype))

    def __repr__(self):
        return f"TypedList({self.ttype})"


class TypedListVariable:
    """A symbolic list: ``data`` (the values end to end) and ``shapes`` (one row per element).
    Methods as Theano's: ``append extend insert remove reverse count ind``, ``tl[i]``,
    ``tl[a:b:c]``."""

    tcomp_composite = True

    def __init__(self, ttype, data, shapes, name=None, root=False):
        self.ttype, self.data, self.shapes = ttype, data, shapes
        self.name, self.is_root = name, bool(root)

    type = property(lambda self: TypedListType(self.ttype))
    dtype = property(lambda self: self.ttype.dtype)
    ndim = property(lambda self: self.ttype.ndim + 1)
    parts = property(lambda self: (self.data, self.shapes))

    def describe(self):
        return f"{self.name or '<typed list>'}: {self.type}"

    def __repr__(self):
        return f"TypedListVariable({self.describe()})"

    def __getitem__(self, index):
        return getitem(self, index)

    def __len__(self):
        raise TypeError(f"{self.describe()} has no len(): its length is symbolic; use typed_list.length(x)")

    def append(self, x): return append(self, x)
    def extend(self, other): return extend(self, other)
    def insert(self, index, x): return insert(self, index, x)
    def remove(self, x): return remove(self, x)
    def reverse(self): return reverse(self)
    def count(self, x): return count(self, x)
    def ind(self, x): return index_(self, x)

    # -- the composite protocol (tcomp/composite.py) ------------------------------------------
    def unpack_argument(self, value, convert):
        label = self.name or "typed list"
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"argument {label!r}: expected a list of {self.ttype} arrays, got {type(value).__name__}")
        elems = []
        for i, v in enumerate(value):
            a = np.asarray(convert(v, f"{label}[{i}]", self.dtype))
            static = zip(self.ttype.shape, a.shape)
            if a.ndim != self.ttype.ndim or any(isinstance(d, int) and d != s for d, s in static):
                raise ValueError(f"argument {label!r}: element {i} has shape {a.shape}, the list holds {self.ttype}")
            elems.append(a)
        data = np.concatenate([a.ravel() for a in elems]) if elems else np.zeros(0, self.dtype)
        shapes = np.array([a.shape for a in elems], dtype=np.int64).reshape(len(elems), self.ttype.ndim)
        return [data.astype(self.dtype, copy=False), shapes]

    def pack_result(self, arrays):
        data, shapes = arrays
        ends = np.cumsum(np.prod(shapes, axis=1, dtype=np.int64))
        starts = ends - np.prod(shapes, axis=1, dtype=np.int64)
        return [data[s:e].reshape(tuple(shape)) for s, e, shape in zip(starts, ends, shapes.tolist())]


def _check_list(tl, what):
    if not isinstance(tl, TypedListVariable):
        raise TypeError(f"{what}: expected a typed list, got {tl!r}")
    return tl


def _element(tl, x, what):
    """``x`` as an element of ``tl``: its dtype and rank (static dims must agree)."""
    x = as_variable(x, what) if isinstance(x, Variable) else T.constant(np.asarray(x, dtype=tl.dtype))
    if x.dtype != tl.dtype or x.ndim != tl.ttype.ndim:
        raise TypeError(f"{what}: {x.describe()} is not an element of {tl.describe()} (expected {tl.ttype})")
    for a, (want, have) in enumerate(zip(tl.ttype.shape, x.type.shape)):
        if isinstance(want, int) and isinstance(have, int) and want != have:
            raise TypeError(f"{what}: {x.describe()} axis {a} is {have}, the list holds {tl.ttype}")
    return x


def _shape_row(x):
    """``x``'s shape as a (1, ndim) int64 matrix."""
    if x.ndim == 0:
        return T.zeros((1, 0), dtype="int64")
    return T.reshape(T.stack([T.cast(d, "int64") for d in x.shape]), (1, x.ndim))


def _sizes(tl):
    return T.prod(tl.shapes, axis=1)


def _offsets(tl):
    """Start of each element in ``data``, and the end: length + 1 entries."""
    from tcomp.tensor.extra import cumsum

    return T.concatenate([T.zeros((1,), dtype="int64"), cumsum(_sizes(tl))])


def _like(tl, data, shapes):
    return TypedListVariable(tl.ttype, data, shapes)


def make_list(elements, ttype=None):
    """A typed list of the given tensors (Theano's ``make_list``); ``ttype`` defaults to the
    first element's type."""
    elements = [as_variable(e, f"element {i}") for i, e in enumerate(elements)]
    if ttype is None:
        if not elements:
            raise TypeError("make_list: give ttype for an empty list")
        ttype = elements[0].type
    tl = TypedListVariable(ttype, T.zeros((0,), dtype=ttype.dtype), T.zeros((0, ttype.ndim), dtype="int64"))
    if not elements:
        return tl
    xs = [_element(tl, e, f"make_list element {i}") for i, e in enumerate(elements)]
    return _like(tl, T.concatenate([T.flatten(x) for x in xs]), T.concatenate([_shape_row(x) for x in xs]))


def length(tl):
    """The number of elements (an int64 scalar)."""
    return _check_list(tl, "length").shapes.shape[0]


def _normalize(i, n, what):
    i = as_variable(i, what)
    if i.ndim != 0 or not dt.is_int(i.dtype):
        raise TypeError(f"{what} must be an integer scalar, got {i.describe()}")
    i = T.cast(i, "int64")
    return i + T.cast(T.lt(i, 0), "int64") * n


def _element_at(tl, i):
    offs = _offsets(tl)
    flat = tl.data[offs[i]:offs[i + 1]]
    shape = [d if isinstance(d, int) else tl.shapes[i, a] for a, d in enumerate(tl.ttype.shape)]
    return T.reshape(flat, tuple(shape))


def _take(tl, idx):
    """The list of ``tl``'s elements at the int64 vector ``idx``, in that order."""
    from tcomp.sparse.variable import expand_indptr
    from tcomp.tensor.extra import cumsum

    sizes = _sizes(tl)[idx]
    new_offs = T.concatenate([T.zeros((1,), dtype="int64"), cumsum(sizes)])
    total = T.sum(sizes)
    owner = expand_indptr(new_offs, total)  # the new element each value belongs to
    pos = _offsets(tl)[idx][owner] + T.arange(total) - new_offs[owner]
    return _like(tl, tl.data[pos], tl.shapes[idx])


def getitem(tl, index):
    """``tl[i]`` (an element, negative ``i`` from the end; out of range raises IndexError at
    call time, from the native bounds checks) or ``tl[a:b:c]`` (a typed list)."""
    tl = _check_list(tl, "getitem")
    n = length(tl)
    if isinstance(index, slice):
        return _take(tl, T.arange(n)[index])
    i = _normalize(index, n, "typed list index")
    # An index still negative after the wrap would wrap again in the reads: it reads past the
    # end instead (n + 1 is past offsets' end too), so the native bounds check raises IndexError.
    i = T.switch(T.lt(i, 0), n + 1, i)
    return _element_at(tl, i)


def append(tl, x):
    tl = _check_list(tl, "append")
    x = _element(tl, x, "append")
    return _like(tl, T.concatenate([tl.data, T.flatten(x)]), T.concatenate([tl.shapes, _shape_row(x)]))


def extend(tl, other):
    tl, other = _check_list(tl, "extend"), _check_list(other, "extend")
    if other.dtype != tl.dtype or other.ttype.ndim != tl.ttype.ndim:
        raise TypeError(f"extend: {other.describe()} does not hold the elements of {tl.describe()}")
    return _like(tl, T.concatenate([tl.data, other.data]), T.concatenate([tl.shapes, other.shapes]))


def insert(tl, index, x):
    """``x`` inserted before position ``index`` (Python's rule: negative from the end,
    clamped to the list)."""
    tl = _check_list(tl, "insert")
    x = _element(tl, x, "insert")
    n = length(tl)
    i = T.clip(_normalize(index, n, "insert index"), 0, n)
    at = _offsets(tl)[i]
    data = T.concatenate([tl.data[:at], T.flatten(x), tl.data[at:]])
    return _like(tl, data, T.concatenate([tl.shapes[:i], _shape_row(x), tl.shapes[i:]]))


def _matches(tl, x):
    """Per element: whether it equals ``x`` (same shape, equal values, NaN == NaN)."""
    from tcomp.sparse.variable import expand_indptr

    x = _element(tl, x, "compare")
    n = length(tl)
    offs = _offsets(tl)
    same_shape = T.all(T.eq(tl.shapes, _shape_row(x)), axis=1) if tl.ttype.ndim else T.ones((n,), dtype="bool")
    flat = T.flatten(x)
    size = flat.shape[0]
    padded = T.concatenate([flat, T.zeros((1,), dtype=tl.dtype)])
    owner = expand_indptr(offs, tl.data.shape[0])
    local = T.minimum(T.arange(tl.data.shape[0]) - offs[owner], size)
    other = padded[local]
    differ = T.neq(tl.data, other)
    if dt.is_float(tl.dtype):
        differ = T.and_(differ, T.invert(T.and_(T.isnan(tl.data), T.isnan(other))))
    bad = inc_subtensor(T.zeros((n,), dtype="int64")[owner], T.cast(differ, "int64"))
    return T.and_(same_shape, T.eq(bad, 0))


def count(tl, x):
    """How many elements equal ``x`` (int64)."""
    tl = _check_list(tl, "count")
    return T.sum(T.cast(_matches(tl, x), "int64"))


def index_(tl, x):
    """The position of the first element equal to ``x`` (int64); ValueError at call time if
    there is none."""
    from tcomp.raise_op import CheckAndRaise

    tl = _check_list(tl, "index_")
    pos = _first_match(tl, x)
    return CheckAndRaise(ValueError, "typed_list.index_: the element is not in the list")(pos, T.lt(pos, length(tl)))


def _first_match(tl, x):
    """The position of the first element equal to ``x``, or the length when none is (an
    argmax over the matches with a final 1, so an empty list has an answer too)."""
    m = T.cast(_matches(tl, x), "int8")
    return T.argmax(T.concatenate([m, T.ones((1,), dtype="int8")]))


def remove(tl, x):
    """``tl`` without its first element equal to ``x`` (unchanged when none is, as Theano's)."""
    tl = _check_list(tl, "remove")
    j = _first_match(tl, x)
    offs = T.concatenate([_offsets(tl), T.stack([T.cast(tl.data.shape[0], "int64")])])
    data = T.concatenate([tl.data[:offs[j]], tl.data[offs[j + 1]:]])
    return _like(tl, data, T.concatenate([tl.shapes[:j], tl.shapes[j + 1:]]))


def reverse(tl):
    tl = _check_list(tl, "reverse")
    return _take(tl, T.arange(length(tl))[::-1])


__all__ = ["TypedListType", "TypedListVariable", "append", "count", "extend", "getitem", "index_", "insert",
           "length", "make_list", "remove", "reverse"]
