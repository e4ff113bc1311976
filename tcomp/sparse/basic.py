"""Theano's ``theano.sparse`` operations, each a composition of dense IR ops.

Costs: a sparse x dense product is a gather of the dense rows the entries need, a multiply
and a scatter-add of the products into the result -- O(nnz * columns), no dense copy of the
sparse operand.  Structured ops (``structured_*``, ``mul`` by a dense matrix, ``sp_sum``,
``row_scale``) touch only the stored values.  Operations whose result's sparsity pattern is
data (sparse + sparse, sparse * sparse, sparse x sparse products, slicing, stacking,
``csr_from_dense``) go through a dense intermediate and ``csr_from_dense``'s nonzero scan:
correct, O(rows * columns), meant for moderate sizes.

Gradients come from ``T.grad`` through these compositions: the gradient with respect to a
dense operand is dense, and with respect to a sparse variable it is *structured* (a sparse
matrix with the variable's own pattern: ``T.grad`` of the stored values), as for Theano's
structured ops.
"""
from __future__ import annotations

import numpy as np

import tcomp.tensor as B
from tcomp.ir import dtypes as dt
from tcomp.tensor.indexing import inc_subtensor
from tcomp.tensor.variable import Variable, as_variable, is_python_scalar

from .variable import CSM, SparseVariable, _with_data, as_sparse_variable, is_sparse


def _dense(x, what):
    """A dense operand: a Variable, array or number (a sparse one is refused)."""
    if is_sparse(x):
        raise TypeError(f"{what}: expected a dense tensor, got sparse {x.describe()}")
    return as_variable(x, what)


def _result_dtype(*vs):
    return dt.promote_types(*[v.dtype for v in vs])


# -- to and fro --------------------------------------------------------------------------------

def dense_from_sparse(x):
    """The dense matrix (SciPy's ``toarray``: duplicate entries add up)."""
    x = as_sparse_variable(x)
    rows, cols = x.coords()
    z = B.zeros(x.shape, dtype=x.dtype)
    return inc_subtensor(z[rows, cols], x.data)


def _nonzero_csr(x, what):
    """(data, indices, indptr) of the CSR form of the dense matrix ``x``: its nonzero entries
    in row-major order; ``indptr`` is the cumulative count per row."""
    x = _dense(x, what)
    if x.ndim != 2:
        raise TypeError(f"{what}: expected a matrix, got {x.describe()}")
    rows, cols = B.nonzero(x)
    counts = inc_subtensor(B.zeros((x.shape[0],), dtype="int64")[rows], B.ones_like(rows))
    from tcomp.tensor.extra import cumsum

    indptr = B.concatenate([B.zeros((1,), dtype="int64"), cumsum(counts)])
    return x[rows, cols], cols, indptr


def csr_from_dense(x):
    """The CSR matrix of ``x``'s nonzero entries (sorted indices)."""
    x = _dense(x, "csr_from_dense")
    data, indices, indptr = _nonzero_csr(x, "csr_from_dense")
    return CSM("csr", data, indices, indptr, x.shape)


def csc_from_dense(x):
    """The CSC matrix of ``x``'s nonzero entries: the CSR form of ``x.T`` read as CSC."""
    x = _dense(x, "csc_from_dense")
    data, indices, indptr = _nonzero_csr(B.transpose(x), "csc_from_dense")
    return CSM("csc", data, indices, indptr, x.shape)


def sparse_from_dense(x, format="csr"):
    return csr_from_dense(x) if format == "csr" else csc_from_dense(x)


def as_sparse_or_tensor_variable(x, name=None):
    if is_sparse(x):
        return x
    try:
        return as_sparse_variable(x, name)
    except TypeError:
        return as_variable(x, name or "value")


# -- structure ----------------------------------------------------------------------------------

def transpose(x):
    """``x.T``: the same arrays read in the other format (free)."""
    x = as_sparse_variable(x)
    rows, cols = x.shape
    return SparseVariable("csc" if x.format == "csr" else "csr", x.data, x.indices, x.indptr, (cols, rows))


def cast(x, dtype):
    x = as_sparse_variable(x)
    return _with_data(x, B.cast(x.data, dtype))


def _caster(dtype):
    def f(x):
        return cast(x, dtype)
    f.__name__ = f"{dtype[0]}cast"
    return f


bcast, wcast, icast, lcast = (_caster(d) for d in ("int8", "int16", "int32", "int64"))
fcast, dcast = _caster("float32"), _caster("float64")


def sp_ones_like(x):
    """Ones at ``x``'s stored entries."""
    x = as_sparse_variable(x)
    return _with_data(x, B.ones_like(x.data))


def sp_zeros_like(x):
    """An empty matrix of ``x``'s shape and format."""
    x = as_sparse_variable(x)
    major = x.shape[0] if x.format == "csr" else x.shape[1]
    empty = B.zeros((0,), dtype=x.dtype)
    return CSM(x.format, empty, B.zeros((0,), dtype="int32"), B.zeros((major + 1,), dtype="int32"), x.shape)


def square_diagonal(diag):
    """The square CSC matrix with ``diag`` on its diagonal."""
    diag = _dense(diag, "square_diagonal")
    if diag.ndim != 1:
        raise TypeError(f"square_diagonal: expected a vector, got {diag.describe()}")
    n = diag.shape[0]
    return CSM("csc", diag, B.arange(n, dtype="int32"), B.arange(n + 1, dtype="int32"), (n, n))


def diag(x):
    """The diagonal of the square sparse matrix ``x`` (dense vector)."""
    x = as_sparse_variable(x)
    rows, cols = x.coords()
    on = B.cast(B.eq(rows, cols), x.dtype) * x.data
    return inc_subtensor(B.zeros((x.shape[0],), dtype=x.dtype)[rows], on)


# -- arithmetic ---------------------------------------------------------------------------------

def _entries_of(dense_matrix, x):
    """``dense_matrix[r, c]`` at each stored entry of ``x`` (broadcasting like NumPy)."""
    rows, cols = x.coords()
    if dense_matrix.ndim == 0:
        return dense_matrix
    if dense_matrix.ndim == 1:  # (NumPy's broadcasting of a vector: along the rows)
        return B.broadcast_to(dense_matrix, (x.shape[1],))[cols]
    if dense_matrix.ndim != 2:
        raise TypeError(f"a sparse matrix combines with a dense matrix, vector or scalar, got "
                        f"{dense_matrix.describe()}")
    full = B.broadcast_to(dense_matrix, x.shape)
    return full[rows, cols]


def _same_pattern(x, y):
    """Whether two sparse variables share their structure variables (``W`` and its structured
    gradient, ``x`` and ``2 * x``): then an elementwise op of the two is an op of the values."""
    return x.format == y.format and x.indices is y.indices and x.indptr is y.indptr and \
        all(a is b for a, b in zip(x.shape, y.shape))


def _via_dense(op, x, y, format):
    """A sparse result whose pattern is data: computed dense, then compressed (unless both
    share one pattern: then the values alone)."""
    if is_sparse(x) and is_sparse(y) and _same_pattern(x, y):
        return _with_data(x, op(x.data, y.data))
    out = op(x.toarray() if is_sparse(x) else x, y.toarray() if is_sparse(y) else y)
    return csr_from_dense(out) if format == "csr" else csc_from_dense(out)


def add(x, y):
    """Sparse + sparse -> sparse; sparse + dense (or scalar) -> dense, as in Theano."""
    if is_sparse(x) and is_sparse(y):
        return _via_dense(B.add, x, y, x.format)
    if is_sparse(y):
        x, y = y, x
    x = as_sparse_variable(x)
    return B.add(dense_from_sparse(x), _dense(y, "sparse.add"))


def sub(x, y):
    if is_sparse(x) and is_sparse(y):
        return _via_dense(B.sub, x, y, x.format)
    if is_sparse(x):
        return B.sub(dense_from_sparse(x), _dense(y, "sparse.sub"))
    return B.sub(_dense(x, "sparse.sub"), dense_from_sparse(as_sparse_variable(y)))


def mul(x, y):
    """Elementwise product.  Sparse * dense and sparse * scalar keep the sparse pattern
    (structured: only stored entries are multiplied); sparse * sparse is sparse."""
    if is_sparse(x) and is_sparse(y):
        return _via_dense(B.mul, x, y, x.format)
    if is_sparse(y):
        x, y = y, x
    x = as_sparse_variable(x)
    if is_python_scalar(y):
        return _with_data(x, x.data * y)
    y = _dense(y, "sparse.mul")
    return _with_data(x, x.data * _entries_of(y, x))


def neg(x):
    return -as_sparse_variable(x)


def row_scale(x, s):
    """Row ``i`` of the sparse ``x`` times ``s[i]`` (structured)."""
    x, s = as_sparse_variable(x), _dense(s, "row_scale")
    s = _inner_checked(s, 0, x.shape[0])
    rows, _ = x.coords()
    return _with_data(x, x.data * s[rows])


def col_scale(x, s):
    """Column ``j`` of the sparse ``x`` times ``s[j]`` (structured)."""
    x, s = as_sparse_variable(x), _dense(s, "col_scale")
    s = _inner_checked(s, 0, x.shape[1])
    _, cols = x.coords()
    return _with_data(x, x.data * s[cols])


def _comparison(op):
    def compare(x, y):
        """Theano's sparse comparison: the dense boolean... as a sparse matrix of 0/1 (int8)."""
        xd = x.toarray() if is_sparse(x) else _dense(x, op.__name__)
        yd = y.toarray() if is_sparse(y) else _dense(y, op.__name__)
        fmt = x.format if is_sparse(x) else y.format
        out = B.cast(op(xd, yd), "int8")
        return csr_from_dense(out) if fmt == "csr" else csc_from_dense(out)
    compare.__name__ = op.__name__
    compare.__doc__ = f"``{op.__name__}`` elementwise: a sparse int8 matrix of the true entries."
    return compare


eq, neq, gt, ge, lt, le = (_comparison(getattr(B, n)) for n in ("eq", "neq", "gt", "ge", "lt", "le"))


# -- monoids: an elementwise op applied to the stored values only -------------------------------

def structured_monoid(tensor_op):
    """Theano's decorator: ``f(x, *scalars)`` applies ``tensor_op(x.data, *scalars)``."""
    def decorator(f):
        def wrapper(x, *args):
            x = as_sparse_variable(x)
            return _with_data(x, tensor_op(x.data, *args))
        wrapper.__name__ = f.__name__
        wrapper.__doc__ = f.__doc__
        return wrapper
    return decorator


def _monoid(name, tensor_op, doc):
    def f(x, *args):
        x = as_sparse_variable(x)
        return _with_data(x, tensor_op(x.data, *args))
    f.__name__ = f.__qualname__ = name
    f.__doc__ = doc
    return f


def _trunc(v):
    return B.sgn(v) * B.floor(B.abs(v))


def _rint(v):
    return B.round(v, mode="half_to_even")


structured_sigmoid = _monoid("structured_sigmoid", B.sigmoid, "sigmoid of the stored values")
structured_exp = _monoid("structured_exp", B.exp, "exp of the stored values (zeros stay zero)")
structured_log = _monoid("structured_log", B.log, "log of the stored values")
structured_pow = _monoid("structured_pow", B.pow, "stored values to the power of a scalar")
structured_minimum = _monoid("structured_minimum", B.minimum, "minimum of the stored values and a scalar")
structured_maximum = _monoid("structured_maximum", B.maximum, "maximum of the stored values and a scalar")
structured_add = _monoid("structured_add", B.add, "a scalar added to the stored values only")
_UNARY = {"sin": B.sin, "arcsin": B.arcsin, "tan": B.tan, "arctan": B.arctan, "sinh": B.sinh,
          "arcsinh": B.arcsinh, "tanh": B.tanh, "arctanh": B.arctanh, "rad2deg": None, "deg2rad": None,
          "rint": _rint, "ceil": B.ceil, "floor": B.floor, "trunc": _trunc, "sgn": B.sgn, "log1p": B.log1p,
          "expm1": B.expm1, "sqr": B.sqr, "sqrt": B.sqrt, "abs_": B.abs}


def _unary_table():
    table = dict(_UNARY, rad2deg=B.rad2deg, deg2rad=B.deg2rad)
    return {name: _monoid(name, op, f"{name} of the stored values (structured: zeros stay zero)")
            for name, op in table.items()}


globals().update(_unary_table())
abs = globals()["abs_"]  # noqa: A001 - Theano's sparse.abs_ / NumPy's name


# -- reductions -------------------------------------------------------------------------------

def sp_sum(x, axis=None, sparse_grad=False):
    """Sum of the sparse ``x`` (dense result): all entries, or per column (``axis=0``) / row
    (``axis=1``).  The gradient with respect to ``x`` is structured either way
    (``sparse_grad`` is accepted for Theano's signature)."""
    x = as_sparse_variable(x)
    if axis is None:
        return B.sum(x.data)
    axis = int(axis)
    if axis not in (0, 1, -1, -2):
        raise ValueError(f"sp_sum: axis must be None, 0 or 1, got {axis}")
    rows, cols = x.coords()
    where, n = (cols, x.shape[1]) if axis % 2 == 0 else (rows, x.shape[0])
    return inc_subtensor(B.zeros((n,), dtype=x.dtype)[where], x.data)


# -- products --------------------------------------------------------------------------------

def _inner_checked(y, axis, k):
    """``y`` whose dim ``axis`` is checked to be ``k`` at run time: a reshape to the same shape
    with that dim (a view of a contiguous operand; the shape program rejects another size, as
    a dense dot rejects mismatched inner dims)."""
    shape = list(y.shape)
    shape[axis] = k
    return B.reshape(y, tuple(shape))


def _spmm(x, y, checked=False):
    """Sparse ``x`` (M, K) times dense ``y`` (K, N) or (K,): gather the rows of ``y`` the
    entries need, scale, scatter-add into the result's rows."""
    rows, cols = x.coords()
    if y.ndim not in (1, 2):
        raise TypeError(f"sparse dot: the dense operand must be a vector or matrix, got {y.describe()}")
    if not checked:
        y = _inner_checked(y, 0, x.shape[1])
    if y.ndim == 1:
        prod = x.data * y[cols]
        return inc_subtensor(B.zeros((x.shape[0],), dtype=prod.dtype)[rows], prod)
    prod = B.dimshuffle(x.data, (0, "x")) * y[cols]
    return inc_subtensor(B.zeros((x.shape[0], y.shape[1]), dtype=prod.dtype)[rows], prod)


def structured_dot(x, y):
    """``x @ y`` with ``x`` sparse: dense when ``y`` is dense, sparse when both are."""
    x = as_sparse_variable(x)
    if is_sparse(y):
        return csr_from_dense(_spmm(x, dense_from_sparse(y))) if x.format == "csr" else \
            csc_from_dense(_spmm(x, dense_from_sparse(y)))
    return _spmm(x, _dense(y, "structured_dot"))


def dot(x, y):
    """Theano's ``sparse.dot``: one operand sparse, the other sparse or dense; the result is
    dense unless both are sparse."""
    if is_sparse(x):
        return structured_dot(x, y)
    if is_sparse(y):
        x = _dense(x, "sparse.dot")
        if x.ndim not in (1, 2):
            raise TypeError(f"sparse dot: the dense operand must be a vector or matrix, got {x.describe()}")
        x = _inner_checked(x, x.ndim - 1, y.shape[0])  # (checked before the transpose: a view)
        if x.ndim == 1:  # v @ S = S.T @ v
            return _spmm(transpose(y), x, checked=True)
        return B.transpose(_spmm(transpose(y), B.transpose(x), checked=True))
    raise TypeError("sparse.dot: one operand must be sparse (use T.dot for dense tensors)")


def true_dot(x, y, grad_preserves_dense=True):
    """``x @ y`` as a sparse matrix (Theano's ``true_dot``)."""
    out = dot(x, y)
    if is_sparse(out):
        return out
    fmt = x.format if is_sparse(x) else y.format
    return csr_from_dense(out) if fmt == "csr" else csc_from_dense(out)


def sampling_dot(x, y, p):
    """``(x @ y.T) * p`` computed only at ``p``'s stored entries (Theano's SamplingDot):
    ``x`` (M, K), ``y`` (N, K) dense, ``p`` (M, N) sparse; the result has ``p``'s pattern."""
    x, y, p = _dense(x, "sampling_dot x"), _dense(y, "sampling_dot y"), as_sparse_variable(p)
    x, y = _inner_checked(x, 0, p.shape[0]), _inner_checked(y, 0, p.shape[1])
    rows, cols = p.coords()
    return _with_data(p, B.sum(x[rows] * y[cols], axis=1) * p.data)


# -- indexing and stacking --------------------------------------------------------------------

def _is_int_key(k):
    return (isinstance(k, (int, np.integer)) and not isinstance(k, bool)) or \
        (isinstance(k, Variable) and k.ndim == 0 and dt.is_int(k.dtype))


def _slice_bound(b, n, default):
    """A slice bound by Python's rule (negative from the end, clamped to [0, n]) as scalar
    arithmetic, which the shape program computes without running a kernel."""
    if b is None:
        return B.as_tensor_variable(default) if not isinstance(default, Variable) else default
    b = B.cast(as_variable(b, "slice bound"), "int64")
    return B.clip(B.switch(B.lt(b, 0), b + n, b), 0, n)


def _major_slice(x, sl):
    """Rows ``a:b`` of a CSR matrix (columns of a CSC one) without a dense copy: the slices of
    ``data``/``indices`` between two ``indptr`` entries, and ``indptr``'s slice rebased
    (a minibatch of a sparse dataset, ``givens={x: data[i * n:(i + 1) * n]}``)."""
    n_major = x.shape[0] if x.format == "csr" else x.shape[1]
    start, stop = (_slice_bound(b, n_major, default) for b, default in ((sl.start, 0), (sl.stop, n_major)))
    count = B.maximum(stop - start, 0)
    ptr = B.cast(x.indptr, "int64")
    lo, hi = ptr[start], ptr[start + count]
    indptr = x.indptr[start:start + count + 1] - B.cast(lo, "int32")
    shape = (count, x.shape[1]) if x.format == "csr" else (x.shape[0], count)
    return CSM(x.format, x.data[lo:hi], x.indices[lo:hi], indptr, shape)


def getitem(x, key):
    """``x[i, j]``: a dense scalar (a sum over the stored entries, O(nnz)); ``x[a:b]`` /
    ``x[a:b, :]`` of a CSR matrix (``x[:, a:b]`` of a CSC one): its rows (columns) without a
    dense copy; other ``x[a:b, c:d]``: a sparse matrix of the same format through the dense
    block."""
    if not isinstance(key, tuple):
        key = (key, slice(None))
    if len(key) != 2:
        raise IndexError(f"sparse {x.describe()}: index with 2 entries, got {len(key)}")
    i, j = key
    if _is_int_key(i) and _is_int_key(j):
        rows, cols = x.coords()
        i = as_variable(i) + B.cast(B.lt(as_variable(i), 0), "int64") * x.shape[0]
        j = as_variable(j) + B.cast(B.lt(as_variable(j), 0), "int64") * x.shape[1]
        hit = B.cast(B.eq(rows, i), x.dtype) * B.cast(B.eq(cols, j), x.dtype)
        return B.sum(hit * x.data)
    if isinstance(i, slice) and isinstance(j, slice):
        major, minor = (i, j) if x.format == "csr" else (j, i)
        if minor == slice(None) and major.step in (None, 1):
            return _major_slice(x, major)
        block = dense_from_sparse(x)[i, j]
        return csr_from_dense(block) if x.format == "csr" else csc_from_dense(block)
    raise TypeError(f"sparse {x.describe()}: index with two integers (a scalar) or two slices (a sparse "
                    "matrix); write x[i:i+1, a:b] for a row block, as in Theano")


def _stack(blocks, axis, format, dtype, what):
    blocks = [as_sparse_variable(b) if not isinstance(b, Variable) else b for b in blocks]
    if not blocks:
        raise ValueError(f"{what} needs at least one matrix")
    dense = [b.toarray() if is_sparse(b) else b for b in blocks]
    out = B.concatenate(dense, axis=axis)
    if dtype is not None:
        out = B.cast(out, dtype)
    fmt = format or "csc"  # (Theano's HStack/VStack default, whatever the blocks' formats)
    return csr_from_dense(out) if fmt == "csr" else csc_from_dense(out)


def hstack(blocks, format=None, dtype=None):
    """Sparse (or dense) matrices side by side, a sparse result (Theano's ``sparse.hstack``;
    default format csc)."""
    return _stack(blocks, 1, format, dtype, "hstack")


def vstack(blocks, format=None, dtype=None):
    return _stack(blocks, 0, format, dtype, "vstack")


def remove0(x):
    """``x`` without its explicit zeros (a sparse matrix of the same format)."""
    x = as_sparse_variable(x)
    return csr_from_dense(x.toarray()) if x.format == "csr" else csc_from_dense(x.toarray())


clean = ensure_sorted_indices = remove0


# -- Theano's op classes, for code that instantiates them ---------------------------------------

class DenseFromSparse:
    """``DenseFromSparse()(x)``: :func:`dense_from_sparse`."""

    def __call__(self, x):
        return dense_from_sparse(x)


class SparseFromDense:
    """``SparseFromDense('csr')(x)``: :func:`csr_from_dense` / :func:`csc_from_dense`."""

    def __init__(self, format):
        if format not in ("csr", "csc"):
            raise ValueError(f"SparseFromDense: format must be 'csr' or 'csc', got {format!r}")
        self.format = format

    def __call__(self, x):
        return sparse_from_dense(x, self.format)


class CSMProperties:
    """``CSMProperties()(x)``: (data, indices, indptr, shape)."""

    def __call__(self, x):
        from .variable import csm_properties

        return csm_properties(x)
