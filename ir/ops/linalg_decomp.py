"""Dense linear algebra on square float matrices, batched over leading axes: ``cholesky``,
``solve`` (LU with partial pivoting), ``solve_triangular``, ``matrix_inverse`` and ``det``.

Semantics are NumPy's/SciPy's: ``cholesky`` reads only the triangle it factors (``lower``:
the lower one, as LAPACK's potrf) and fails on a matrix that is not positive definite;
``solve``/``matrix_inverse`` fail on an exactly singular matrix (a zero pivot), as
``np.linalg.solve``/``inv``; ``solve_triangular`` reads only its triangle (with
``unit_diagonal`` not even the diagonal) and fails on a zero on the diagonal, as SciPy;
``det`` of a singular matrix is 0 (no error); its ``mode`` 'sign' and 'logabs' are the
two results of ``np.linalg.slogdet`` (0 and -inf for a singular matrix).  Failures raise ``np.linalg.LinAlgError``
(a ``ValueError``) in the reference interpreter and in native code alike.

Operands are ``a`` of shape ``(..., n, n)`` and, for the solves, ``b`` of shape
``(..., n)`` (one right-hand side per matrix) or ``(..., n, k)``, with the same batch dims
as ``a`` (no broadcasting of batches: a clear error instead).  Only float32/float64:
integer matrices are refused with a TypeError (cast them first), and ``b`` must have
``a``'s dtype.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..types import TensorType, dims_may_match
from .registry import OpDef, register

#: op name -> what the failure of its native kernel means (the LinAlgError text)
FAILURES = {
    "cholesky": "matrix is not positive definite",
    "solve": "singular matrix",
    "solve_triangular": "singular matrix: a zero on the diagonal",
    "matrix_inverse": "singular matrix",
    "det": "no memory for the scratch copy of the matrix",
    "eigh": "no memory for the scratch copy of the matrix",
    "svd": "no memory for the scratch copy of the matrix",
    "qr": "no memory for the scratch copy of the matrix",
}


def _square(name, a):
    if not dt.is_float(a.dtype):
        raise TypeError(f"{name}: expected a float32 or float64 matrix, got {a} (dtype {a.dtype}); "
                        f"cast integer matrices to a float type first")
    if a.ndim < 2:
        raise ValueError(f"{name}: expected a matrix (or a batch of matrices, rank >= 2), got {a} (rank {a.ndim})")
    if not dims_may_match(a.shape[-1], a.shape[-2]):
        raise ValueError(f"{name}: expected square matrices, got {a} ({a.shape[-2]} x {a.shape[-1]})")
    return a.shape[-1]


def _square_infer(name, result=None):
    def infer(types, attrs):
        (a,) = types
        n = _square(name, a)
        m = _pick(a.shape[-2], n)
        shape = a.shape[:-2] if result == "batch" else a.shape[:-2] + (m, m)
        return TensorType(a.dtype, shape)
    return infer


def _pick(d, e):
    """One dim of two that must match at run time: the static (or named) one if there is."""
    return d if isinstance(d, int) or not isinstance(e, int) and d is not None else e


def _solve_infer(name):
    def infer(types, attrs):
        a, b = types
        n = _square(name, a)
        if b.dtype != a.dtype:
            raise TypeError(f"{name}: a ({a}) and b ({b}) must have the same float dtype")
        if b.ndim not in (a.ndim - 1, a.ndim):
            raise ValueError(f"{name}: b must have rank {a.ndim - 1} (one vector per matrix) or {a.ndim} "
                             f"(a matrix of right-hand sides per matrix), got {b} (rank {b.ndim}) for a {a}")
        batch = a.shape[:-2]
        for k, (x, y) in enumerate(zip(batch, b.shape[:len(batch)])):
            if not dims_may_match(x, y):
                raise ValueError(f"{name}: batch dims differ at axis {k}: a {a}, b {b} (batches do not broadcast)")
        rows = b.shape[len(batch)]
        if not dims_may_match(rows, n):
            raise ValueError(f"{name}: b has {rows} rows but a is {a.shape[-2]} x {n} ({a}, {b})")
        shape = tuple(_pick(x, y) for x, y in zip(batch, b.shape)) + (_pick(rows, n),) + b.shape[len(batch) + 1:]
        return TensorType(a.dtype, shape)
    return infer


def _batched(fn, infer):
    """The reference: ``fn`` on the arrays (NumPy's gufuncs batch them), after the type rule
    on their concrete shapes (so run-time shape errors read as the build-time ones)."""
    def impl(arrays, attrs, out_type):
        infer([TensorType(out_type.dtype, np.shape(x)) for x in arrays], attrs)
        arrays = [np.asarray(x, dtype=out_type.dtype) for x in arrays]
        return np.asarray(fn(*arrays, **attrs), dtype=out_type.dtype)
    return impl


def _row(name, arity, infer, fn, attrs=None, doc=""):
    register(OpDef(name, arity, infer, _batched(fn, infer), attr_defaults=attrs or {}, kind="decomposition", doc=doc))


def _lower_of(a):
    """The symmetric matrix whose lower triangle is ``a``'s (what potrf reads)."""
    low = np.tril(a)
    return low + np.swapaxes(np.tril(a, -1), -1, -2)


def _cholesky(a, lower):
    a = a if lower else np.swapaxes(a, -1, -2)
    if not np.all(np.isfinite(np.tril(a))):
        raise np.linalg.LinAlgError("matrix is not positive definite")
    c = np.linalg.cholesky(_lower_of(a))
    return c if lower else np.swapaxes(c, -1, -2)


def _solve(a, b):
    vec = b.ndim == a.ndim - 1
    out = np.linalg.solve(a, b[..., None] if vec else b)
    return out[..., 0] if vec else out


def _solve_triangular(a, b, lower, trans, unit_diagonal):
    vec = b.ndim == a.ndim - 1
    bb = b[..., None] if vec else b
    t = np.tril(a) if lower else np.triu(a)
    if unit_diagonal:
        n = a.shape[-1]
        t = t * (1 - np.eye(n, dtype=a.dtype)) + np.eye(n, dtype=a.dtype)
    elif t.size and np.any(np.diagonal(t, axis1=-2, axis2=-1) == 0):
        raise np.linalg.LinAlgError("singular matrix: a zero on the diagonal")
    if trans:
        t = np.swapaxes(t, -1, -2)
    out = np.linalg.solve(t, bb) if t.size else np.zeros_like(bb)
    return out[..., 0] if vec else out


def _det(a, mode):
    with np.errstate(all="ignore"):
        if mode == "det":
            return np.linalg.det(a)
        sign, logabs = np.linalg.slogdet(a)
        return sign if mode == "sign" else logabs


def _det_infer(types, attrs):
    if attrs["mode"] not in ("det", "sign", "logabs"):
        raise ValueError(f"det: mode must be 'det', 'sign' or 'logabs', got {attrs['mode']!r}")
    return _square_infer("det", "batch")(types, attrs)


_row("cholesky", 1, _square_infer("cholesky"), _cholesky, {"lower": True},
     doc="Cholesky factor of a symmetric positive definite matrix (one triangle read)")
_row("solve", 2, _solve_infer("solve"), _solve, doc="x with a @ x == b (LU with partial pivoting)")
_row("solve_triangular", 2, _solve_infer("solve_triangular"), _solve_triangular,
     {"lower": True, "trans": False, "unit_diagonal": False},
     doc="x with t @ x == b (trans: t.T @ x == b), t the lower/upper triangle of a")
_row("matrix_inverse", 1, _square_infer("matrix_inverse"), np.linalg.inv, doc="inverse of a nonsingular square matrix")
_row("det", 1, _det_infer, _det, {"mode": "det"},
     doc="determinant (0 for a singular matrix); mode 'sign'/'logabs': slogdet's sign and log|det|")
