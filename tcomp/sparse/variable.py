"""Symbolic sparse matrices (Theano's ``SparseVariable``) as a Python-level wrapper.

A sparse variable is four dense symbolic tensors -- ``data`` (the stored values),
``indices`` and ``indptr`` (int32, SciPy's compressed layout) and the two int64 scalars of
its shape -- plus a format, ``'csr'`` or ``'csc'``.  Every sparse operation is a
composition of existing dense IR ops (gathers, scatter-adds through ``inc_subtensor``,
cumulative sums), so every backend, every pass and ``T.grad`` handle sparse graphs with no
new op in any table.  Why not a new IR type: a sparse value's length (``nnz``) is data, and
the IR's tensors already carry symbolic lengths; a wrapper costs nothing at run time, since
``tcomp.function`` unpacks a SciPy matrix into its arrays and packs the results back.

In nnz order, entry ``k`` sits at row ``rows[k]`` and column ``cols[k]``: for CSR ``cols``
is ``indices`` and ``rows`` expands ``indptr``; for CSC the other way round
(:meth:`SparseVariable.coords`).  Duplicate entries add up, as in SciPy's ``toarray``.
"""
from __future__ import annotations

import numbers
import weakref

import numpy as np

from tcomp.ir import dtypes as dt
from tcomp.tensor import basic as B
from tcomp.tensor.variable import Variable, as_variable

#: Theano's ``sparse.all_dtypes`` (the complex ones are not tcomp dtypes)
all_dtypes = frozenset(["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                        "float32", "float64"])
FORMATS = ("csr", "csc")

#: the shape vector ``csm_shape`` made -> its two scalars, so CSR(..., shape) stays static
_SHAPE_VECTORS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _scipy():
    """SciPy, imported on first use: an optional dependency of ``tcomp.sparse`` only."""
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy is in the test extra
        raise ImportError("tcomp.sparse needs SciPy to pass and return sparse matrices: pip install scipy "
                          "(or pip install 'tcomp[test]')") from None
    return sp


def _check_format(format):
    if format not in FORMATS:
        raise ValueError(f"sparse format must be 'csr' or 'csc', got {format!r}")
    return format


class SparseType:
    """Theano's ``SparseType(format, dtype)``: calling it makes an input variable."""

    def __init__(self, format, dtype=None):
        self.format = _check_format(format)
        self.dtype = dt.canonical(dtype or "floatX")
        if self.dtype not in all_dtypes:
            raise TypeError(f"sparse dtype must be one of {sorted(all_dtypes)}, got {self.dtype}")

    def __call__(self, name=None):
        return _input(self.format, name, self.dtype)

    def __eq__(self, other):
        return isinstance(other, SparseType) and (self.format, self.dtype) == (other.format, other.dtype)

    def __hash__(self):
        return hash((SparseType, self.format, self.dtype))

    def __repr__(self):
        return f"Sparse[{self.dtype}, {self.format}]"

    __str__ = __repr__


class SparseVariable:
    """A symbolic sparse matrix: ``data``, ``indices``, ``indptr`` (dense variables) and
    ``shape`` (two int64 scalars).  Operators: ``+ - *`` with sparse/dense/scalars, unary
    ``-``, ``.T``, ``.toarray()``; ``x[i, j]`` is a dense scalar, ``x[a:b, c:d]`` sparse."""

    is_sparse_variable = True
    #: tcomp.function passes it as its dense parts (tcomp/composite.py)
    tcomp_composite = True
    #: lets Theano-style code test ``x.ndim`` and ``x.broadcastable``
    ndim = 2
    broadcastable = (False, False)

    def __init__(self, format, data, indices, indptr, shape, name=None, root=False):
        self.format = _check_format(format)
        self.data, self.indices, self.indptr = data, indices, indptr
        self._shape = tuple(shape)
        self.name = name
        self.is_root = bool(root)
        self._coords = None

    # -- introspection ----------------------------------------------------------------
    dtype = property(lambda self: self.data.dtype)
    type = property(lambda self: SparseType(self.format, self.dtype))
    shape = property(lambda self: self._shape, doc="(rows, columns) as int64 scalars")
    owner = property(lambda self: None if self.is_root else self.data.owner)

    @property
    def parts(self):
        """The five dense variables a compiled function passes for this matrix."""
        return (self.data, self.indices, self.indptr) + self._shape

    def as_same_kind(self, value):
        """``value`` (a SciPy matrix) as a sparse constant of this variable's format (givens)."""
        return as_sparse_variable(value.asformat(self.format) if hasattr(value, "asformat") else value)

    def unpack_argument(self, value, convert):
        from .function import unpack

        return unpack(self, value, convert)

    def pack_result(self, arrays):
        from .function import pack

        return pack(self, arrays)

    def nnz(self):
        return self.data.shape[0]

    def describe(self) -> str:
        return f"{self.name or '<sparse>'}: {self.type}"

    def __repr__(self):
        return f"SparseVariable({self.describe()})"

    def __str__(self):
        return self.name or f"sparse.{self.data}"

    def coords(self):
        """(rows, cols) of each stored entry in nnz order (int64 expanded from indptr, int32
        indices; O(nnz + major dim))."""
        if self._coords is None:
            major = expand_indptr(self.indptr, self.nnz())
            minor = self.indices  # (int32: gathers and scatters take it as is)
            self._coords = (major, minor) if self.format == "csr" else (minor, major)
        return self._coords

    # -- Theano's methods and operators ---------------------------------------------------
    def toarray(self):
        from .basic import dense_from_sparse

        return dense_from_sparse(self)

    def __tcomp_dense__(self):
        """What a dense op (``T.exp(x)``, ``D + x``) sees: the dense matrix."""
        return self.toarray()

    @property
    def T(self):
        from .basic import transpose

        return transpose(self)

    def transpose(self):
        return self.T

    def astype(self, dtype):
        from .basic import cast

        return cast(self, dtype)

    def sum(self, axis=None, sparse_grad=False):
        from .basic import sp_sum

        return sp_sum(self, axis, sparse_grad)

    def zeros_like(self):
        from .basic import sp_zeros_like

        return sp_zeros_like(self)

    def __add__(self, o):
        from .basic import add
        return add(self, o)

    def __radd__(self, o):
        from .basic import add
        return add(o, self)

    def __sub__(self, o):
        from .basic import sub
        return sub(self, o)

    def __rsub__(self, o):
        from .basic import sub
        return sub(o, self)

    def __mul__(self, o):
        from .basic import mul
        return mul(self, o)

    def __rmul__(self, o):
        from .basic import mul
        return mul(o, self)

    def __truediv__(self, o):
        if isinstance(o, SparseVariable):
            raise TypeError(f"sparse / sparse is not defined ({self.describe()} / {o.describe()}): the zeros divide")
        return _with_data(self, self.data / o)

    def __neg__(self):
        return _with_data(self, -self.data)

    def __getitem__(self, key):
        from .basic import getitem

        return getitem(self, key)

    def __iter__(self):
        raise TypeError(f"sparse variable {self.describe()} is not iterable")

    def __bool__(self):
        return True

    def eval(self, inputs_to_values=None):
        """The value (a SciPy matrix) given ``{input: value}``, as ``Variable.eval``."""
        from tcomp.function import function

        values = dict(inputs_to_values or {})
        keys = list(values)
        return function(keys, self)(*[values[k] for k in keys])


def is_sparse(v) -> bool:
    return getattr(v, "is_sparse_variable", False) is True


def expand_indptr(indptr, nnz):
    """The major index of each of ``nnz`` entries from a compressed ``indptr`` (length
    major + 1): a mark at each row start, then a cumulative sum.  Empty rows repeat an
    ``indptr`` value and so add several marks at one place (``inc_subtensor`` adds
    duplicates); marks at ``nnz`` (trailing empty rows) fall in the dropped last slot."""
    starts = B.cast(indptr[1:-1], "int64")
    marks = B.zeros((nnz + 1,), dtype="int64")
    from tcomp.tensor.indexing import inc_subtensor

    marks = inc_subtensor(marks[starts], B.ones_like(starts))
    from tcomp.tensor.extra import cumsum

    return cumsum(marks)[:nnz]


def _shape_pair(shape, what):
    """Two int64 scalar variables from a tuple/list of ints or scalars, or a length-2 vector."""
    if isinstance(shape, Variable) and shape.ndim == 1:
        if shape in _SHAPE_VECTORS:
            return _SHAPE_VECTORS[shape]
        if isinstance(shape.type.shape[0], int) and shape.type.shape[0] != 2:
            raise ValueError(f"{what}: shape must have 2 entries, got {shape.describe()}")
        shape = (shape[0], shape[1])
    if isinstance(shape, np.ndarray):
        shape = tuple(shape.tolist())
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise ValueError(f"{what}: shape must be 2 entries (rows, columns), got {shape!r}")
    out = []
    for i, d in enumerate(shape):
        if isinstance(d, numbers.Integral) and not isinstance(d, bool):
            if d < 0:
                raise ValueError(f"{what}: shape entry {i} is negative ({d})")
            out.append(B.constant(np.int64(d)))
            continue
        d = as_variable(d, f"{what} shape entry {i}")
        if d.ndim != 0 or not dt.is_int(d.dtype):
            raise TypeError(f"{what}: shape entry {i} must be an integer scalar, got {d.describe()}")
        out.append(d if d.dtype == "int64" else B.cast(d, "int64"))
    return tuple(out)


def _int_vector(v, what):
    v = as_variable(v, what)
    if v.ndim != 1 or not dt.is_int(v.dtype):
        raise TypeError(f"{what} must be an integer vector, got {v.describe()}")
    return v if v.dtype == "int32" else B.cast(v, "int32")


def CSM(format, data=None, indices=None, indptr=None, shape=None, name=None):
    """Theano's ``CSM(format)(data, indices, indptr, shape)`` (or ``CSM(format, data, ...)``):
    a sparse matrix built from its properties (no check that they are consistent, as in
    Theano and SciPy)."""
    _check_format(format)
    if data is None and indices is None and indptr is None and shape is None:
        return lambda data, indices, indptr, shape, name=None: CSM(format, data, indices, indptr, shape, name)
    if indices is None or indptr is None or shape is None:
        raise TypeError(f"CSM({format!r}): give data, indices, indptr and shape")
    data = as_variable(data, f"{format.upper()} data")
    if data.ndim != 1:
        raise TypeError(f"{format.upper()}: data must be a vector, got {data.describe()}")
    return SparseVariable(format, data, _int_vector(indices, f"{format.upper()} indices"),
                          _int_vector(indptr, f"{format.upper()} indptr"), _shape_pair(shape, format.upper()),
                          name=name)


def CSR(data, indices, indptr, shape, name=None):
    return CSM("csr", data, indices, indptr, shape, name)


def CSC(data, indices, indptr, shape, name=None):
    return CSM("csc", data, indices, indptr, shape, name)


def _with_data(x, data, format=None):
    """``x``'s sparsity structure with new values (the structured ops)."""
    return SparseVariable(format or x.format, data, x.indices, x.indptr, x.shape)


def _input(format, name=None, dtype=None):
    dtype = dt.canonical(dtype or "floatX")
    if dtype not in all_dtypes:
        raise TypeError(f"sparse dtype must be one of {sorted(all_dtypes)}, got {dtype}")
    label = name or format
    data = B.vector(f"{label}.data", dtype=dtype)
    indices = B.vector(f"{label}.indices", dtype="int32")
    indptr = B.vector(f"{label}.indptr", dtype="int32")
    rows = B.scalar(f"{label}.shape[0]", dtype="int64")
    cols = B.scalar(f"{label}.shape[1]", dtype="int64")
    return SparseVariable(format, data, indices, indptr, (rows, cols), name=name, root=True)


def csr_matrix(name=None, dtype=None):
    """A symbolic CSR input (Theano's ``sparse.csr_matrix('x', dtype='float32')``)."""
    return _input("csr", name, dtype)


def csc_matrix(name=None, dtype=None):
    return _input("csc", name, dtype)


def matrix(format, name=None, dtype=None):
    return _input(format, name, dtype)


def csm_properties(x):
    """(data, indices, indptr, shape): shape is an int64 vector of length 2, as in Theano."""
    x = as_sparse_variable(x)
    return x.data, x.indices, x.indptr, csm_shape(x)


def csm_data(x):
    return as_sparse_variable(x).data


def csm_indices(x):
    return as_sparse_variable(x).indices


def csm_indptr(x):
    return as_sparse_variable(x).indptr


def csm_shape(x):
    x = as_sparse_variable(x)
    vec = B.stack(list(x.shape))
    _SHAPE_VECTORS[vec] = x.shape
    return vec


def as_sparse_variable(x, name=None):
    """A sparse variable as is; a SciPy sparse matrix becomes a constant (CSR, or CSC when
    it is CSC)."""
    if is_sparse(x):
        return x
    if isinstance(x, Variable):
        raise TypeError(f"as_sparse_variable: {x.describe()} is a dense tensor; use sparse.csr_from_dense")
    sp = _scipy()
    if not sp.issparse(x):
        raise TypeError(f"as_sparse_variable: expected a sparse variable or a SciPy sparse matrix, got {x!r}")
    fmt = "csc" if x.format == "csc" else "csr"
    m = x.asformat(fmt)
    if str(m.dtype) not in all_dtypes:
        raise TypeError(f"as_sparse_variable: dtype {m.dtype} is not a sparse dtype ({sorted(all_dtypes)})")
    return CSM(fmt, B.constant(np.asarray(m.data)), B.constant(m.indices.astype("int32")),
               B.constant(m.indptr.astype("int32")), m.shape, name=name)


as_sparse = as_sparse_variable

csc_dmatrix, csr_dmatrix = SparseType("csc", "float64"), SparseType("csr", "float64")
csc_fmatrix, csr_fmatrix = SparseType("csc", "float32"), SparseType("csr", "float32")
csc_imatrix, csr_imatrix = SparseType("csc", "int32"), SparseType("csr", "int32")
csc_lmatrix, csr_lmatrix = SparseType("csc", "int64"), SparseType("csr", "int64")
