"""``T.slinalg``: Theano's (and SciPy's) ``cholesky``, ``solve``, ``solve_triangular``,
``cho_solve``, ``eigvalsh`` and the structured solves, on float32/float64 matrices, batched
over leading axes (ops in ``ir/ops/linalg_decomp.py``, CPU kernels in ``backend/cpu/kernels_linalg.py``).

A matrix that is not positive definite (``cholesky``) or singular (``solve``, a zero on the
diagonal for ``solve_triangular``) raises ``numpy.linalg.LinAlgError`` when the function
runs, as NumPy and SciPy do.  The CUDA backend refuses these ops at compile time.
"""
from __future__ import annotations

import numpy as np

from tcomp.ir import dtypes as dt

from .variable import apply, as_variable

_STRUCTURES = {"general": "gen", "gen": "gen", "symmetric": "sym", "sym": "sym", "hermitian": "sym", "her": "sym",
               "positive_definite": "pos", "pos": "pos", "lower_triangular": "lower", "upper_triangular": "upper"}


def _pair(a, b, what):
    """``a`` and ``b`` as variables of one float dtype (NumPy's promotion); ints are refused."""
    a, b = as_variable(a, "a"), as_variable(b, "b")
    for name, v in (("a", a), ("b", b)):
        if not dt.is_float(v.dtype):
            raise TypeError(f"{what}: {name} must be a float32 or float64 tensor, got {v.describe()}; cast it first")
    d = dt.promote_types(a.dtype, b.dtype)
    from .basic import cast

    return (a if a.dtype == d else cast(a, d)), (b if b.dtype == d else cast(b, d))


def cholesky(x, lower=True):
    """The Cholesky factor of a symmetric positive definite ``x`` (``L @ L.T == x``; with
    ``lower=False`` the upper factor ``U.T @ U == x``); reads only that triangle of ``x``."""
    return apply("cholesky", [as_variable(x, "x")], {"lower": bool(lower)})


def _trans(trans):
    if trans in (0, "N", "n", False):
        return False
    if trans in (1, 2, "T", "t", "C", "c", True):
        return True
    raise ValueError(f"solve_triangular: trans must be 0, 1, 2, 'N', 'T' or 'C', got {trans!r}")


def solve_triangular(a, b, trans=0, lower=False, unit_diagonal=False, check_finite=True, b_ndim=None):
    """``x`` with ``t @ x == b`` (``trans``: ``t.T @ x == b``), ``t`` the lower (``lower``) or
    upper triangle of ``a``; ``unit_diagonal`` takes its diagonal as ones (SciPy's signature;
    ``check_finite`` is accepted and ignored)."""
    a, b = _pair(a, b, "solve_triangular")
    _check_b_ndim(a, b, b_ndim)
    return apply("solve_triangular", [a, b], {"lower": bool(lower), "trans": _trans(trans),
                                              "unit_diagonal": bool(unit_diagonal)})


def _check_b_ndim(a, b, b_ndim):
    if b_ndim is not None and b_ndim != b.ndim - (a.ndim - 2):
        raise ValueError(f"b_ndim={b_ndim} does not match b {b.describe()} for a {a.describe()}")


def solve(a, b, assume_a="gen", lower=False, check_finite=True, b_ndim=None, A_structure=None, transposed=False):
    """``x`` with ``a @ x == b`` (``transposed``: ``a.T @ x == b``).  ``assume_a`` (SciPy's,
    or Theano's ``A_structure``): 'gen' and 'sym' use LU with partial pivoting, 'pos' the
    Cholesky factor of ``a`` (``lower`` says which triangle it reads), 'lower'/'upper'
    ('lower_triangular'/'upper_triangular') a triangular solve."""
    structure = A_structure if A_structure is not None else assume_a
    kind = _STRUCTURES.get(structure)
    if kind is None:
        raise ValueError(f"solve: unknown matrix structure {structure!r}; expected one of {sorted(_STRUCTURES)}")
    a, b = _pair(a, b, "solve")
    _check_b_ndim(a, b, b_ndim)
    if kind in ("lower", "upper"):
        return solve_triangular(a, b, trans=int(bool(transposed)), lower=kind == "lower")
    if transposed:
        a = _swap_last(a)
    if kind == "pos":
        return cho_solve((cholesky(a, lower=lower), lower), b)
    return apply("solve", [a, b])


def _swap_last(a):
    n = a.ndim
    return a.dimshuffle(*range(n - 2), n - 1, n - 2)


def cho_solve(c_and_lower, b, check_finite=True, b_ndim=None):
    """``x`` with ``a @ x == b`` from ``(c, lower)``, ``c`` the Cholesky factor of ``a``."""
    c, lower = c_and_lower
    c, b = _pair(c, b, "cho_solve")
    if lower:   # a = L L^T: L y = b, then L^T x = y
        return solve_triangular(c, solve_triangular(c, b, lower=True), lower=True, trans=1)
    return solve_triangular(c, solve_triangular(c, b, lower=False, trans=1), lower=False)


def eigvalsh(a, b=None, lower=True):
    """The ascending eigenvalues of the symmetric matrix whose ``lower`` (else upper) triangle
    ``a`` holds (Theano's signature; the generalized problem with ``b`` is not supported)."""
    from .nlinalg import eigvalsh as _eigvalsh

    return _eigvalsh(a, b, lower)


def kron(a, b):
    """The Kronecker product (NumPy's ``kron``: the operands padded to the same rank)."""
    from . import basic as B

    a, b = as_variable(a, "a"), as_variable(b, "b")
    nd = max(a.ndim, b.ndim, 1)
    a = a.dimshuffle(*(["x"] * (nd - a.ndim)), *range(a.ndim)) if a.ndim < nd else a
    b = b.dimshuffle(*(["x"] * (nd - b.ndim)), *range(b.ndim)) if b.ndim < nd else b
    # out[i0, j0, i1, j1, ...] = a[i0, i1, ...] * b[j0, j1, ...], then pairs merged
    pa = [p for k in range(nd) for p in (k, "x")]
    pb = [p for k in range(nd) for p in ("x", k)]
    prod = B.mul(a.dimshuffle(*pa), b.dimshuffle(*pb))
    return B.reshape(prod, tuple(a.shape[k] * b.shape[k] for k in range(nd)))


#: Higham 2005 ("The scaling and squaring method for the matrix exponential revisited"):
#: the [13/13] Pade coefficients and the 1-norm up to which it is accurate to double precision
_PADE13 = (64764752532480000, 32382376266240000, 7771770303897600, 1187353796428800, 129060195264000,
           10559470521600, 670442572800, 33522128640, 1323241920, 40840800, 960960, 16380, 182, 1)
_THETA13 = 5.371920351148152


def expm(A):
    """The matrix exponential (SciPy's ``expm``): Higham's scaling and squaring with the
    [13/13] Pade approximant, A scaled by 2^-s so its 1-norm is at most theta_13, then
    squared s times (a ``tcomp.scan`` of ``s`` steps, ``s`` computed from the data: the CPU
    backend runs its count first).  Differentiable (through the solve and the loop)."""
    import tcomp.tensor as B

    from .. import scan as _scan

    A = as_variable(A, "A")
    if not dt.is_float(A.dtype):
        raise TypeError(f"expm: A must be a float32 or float64 matrix, got {A.describe()}; cast it first")
    if A.ndim != 2:
        raise ValueError(f"expm: A must be a square matrix, got {A.describe()}")
    norm1 = B.max(B.sum(B.abs(A), axis=0))
    s = B.cast(B.maximum(0, B.ceil(B.log2(norm1 / _THETA13))), "int64")
    As = A / B.exp2(B.cast(s, A.dtype))
    c = [B.constant(np.asarray(v, A.dtype)) for v in _PADE13]
    eye = B.identity_like(As)
    A2 = B.dot(As, As)
    A4 = B.dot(A2, A2)
    A6 = B.dot(A4, A2)
    U = B.dot(As, B.dot(A6, c[13] * A6 + c[11] * A4 + c[9] * A2) + c[7] * A6 + c[5] * A4 + c[3] * A2 + c[1] * eye)
    V = B.dot(A6, c[12] * A6 + c[10] * A4 + c[8] * A2) + c[6] * A6 + c[4] * A4 + c[2] * A2 + c[0] * eye
    R = solve(V - U, V + U)
    squares, _ = _scan(lambda X: B.dot(X, X), outputs_info=[R], n_steps=s)
    return B.concatenate([R.dimshuffle("x", 0, 1), squares])[-1]


def solve_lower_triangular(a, b):
    return solve_triangular(a, b, lower=True)


def solve_upper_triangular(a, b):
    return solve_triangular(a, b, lower=False)


def solve_symmetric(a, b):
    return solve(a, b, assume_a="sym")


__all__ = ["cho_solve", "cholesky", "eigvalsh", "expm", "kron", "solve", "solve_lower_triangular", "solve_symmetric",
           "solve_triangular", "solve_upper_triangular"]

from .linalg_ops import slinalg_classes  # noqa: E402

globals().update(slinalg_classes())  # Cholesky, Solve, Eigvalsh, Expm
