"""``T.nlinalg``: Theano's ``matrix_inverse``, ``det``, ``slogdet``, ``eigh``, ``svd``,
``qr``, ``pinv``, ``lstsq``, ``tensorinv``, ``tensorsolve``, ``matrix_dot``, ``matrix_power``,
``norm``, trace and diagonal helpers.

``matrix_inverse`` and ``det`` are ops (``ir/ops/linalg_decomp.py``: float32/float64, batched
over leading axes; a singular matrix makes ``matrix_inverse`` raise
``numpy.linalg.LinAlgError``, its ``det`` is 0), so are ``eigh`` and ``svd``
and ``qr`` (``ir/ops/linalg_spectral.py``: Jacobi methods and Householder QR on the CPU,
fine for small and medium matrices; vectors sign-normalized, see there); the rest compose
them."""
from __future__ import annotations

import numpy as np

from tcomp.ir import dtypes as dt

from . import basic as B
from .extra import _float, _vector_norm, diag, diagonal, trace  # noqa: F401
from .variable import as_variable

extract_diag = diagonal


def matrix_inverse(x):
    """The inverse of a nonsingular float matrix (LU with partial pivoting)."""
    return _apply("matrix_inverse", x)


def det(x):
    """The determinant of a float matrix (a batch of them: one per matrix)."""
    return _apply("det", x)


def slogdet(x):
    """(sign, log|det|) of a float matrix, as ``np.linalg.slogdet`` (no overflow for large
    matrices; (0, -inf) for a singular one)."""
    return _apply("det", x, mode="sign"), _apply("det", x, mode="logabs")


def _apply(op, x, **attrs):
    from .variable import apply

    return apply(op, [as_variable(x, "x")], attrs)


def matrix_dot(*args):
    """``args[0] @ args[1] @ ...`` (Theano's ``matrix_dot``)."""
    if not args:
        raise TypeError("matrix_dot needs at least one matrix")
    out = as_variable(args[0], "args[0]")
    for k, m in enumerate(args[1:], 1):
        out = B.dot(out, as_variable(m, f"args[{k}]"))
    return out


inv = matrix_inverse


def _float_matrix(x, what, name="x"):
    """``x`` as a float matrix variable (a batch of them); ints are refused, as by the ops."""
    x = as_variable(x, name)
    if not dt.is_float(x.dtype):
        raise TypeError(f"{what}: {name} must be a float32 or float64 tensor, got {x.describe()}; cast it first")
    if x.ndim < 2:
        raise ValueError(f"{what}: expected a matrix (or a batch of matrices), got {x.describe()}")
    return x


def eigh(a, UPLO="L"):
    """(w, v) with ``a @ v == v * w``: ascending eigenvalues and the eigenvectors (columns) of
    the symmetric matrix whose ``UPLO`` ('L' or 'U') triangle ``a`` holds."""
    if UPLO not in ("L", "U", "l", "u"):
        raise ValueError(f"eigh: UPLO must be 'L' or 'U', got {UPLO!r}")
    a = _float_matrix(a, "eigh")
    lower = UPLO in ("L", "l")
    return _apply("eigh", a, part="values", lower=lower), _apply("eigh", a, part="vectors", lower=lower)


def eigvalsh(a, b=None, lower=True):
    """The ascending eigenvalues of a symmetric matrix (the generalized problem with ``b`` is
    not supported)."""
    if b is not None:
        raise ValueError("eigvalsh: the generalized problem (b is not None) is not supported; pass b=None")
    return _apply("eigh", _float_matrix(a, "eigvalsh"), part="values", lower=bool(lower))


def svd(a, full_matrices=True, compute_uv=True):
    """NumPy's ``svd``: (u, s, vt), or ``s`` (descending) when ``compute_uv`` is false.  Only
    the reduced factors exist: ``full_matrices`` must be false unless ``a`` is statically
    square (where the two agree)."""
    a = _float_matrix(a, "svd")
    if not compute_uv:
        return _apply("svd", a, part="s")
    m, n = a.type.shape[-2:]
    if full_matrices and not (isinstance(m, int) and m == n):
        raise ValueError(f"svd: full_matrices=True needs the orthogonal complement of u or vt, which tcomp does "
                         f"not compute; pass full_matrices=False (the reduced SVD) for {a.describe()}")
    return _apply("svd", a, part="u"), _apply("svd", a, part="s"), _apply("svd", a, part="vt")


def qr(a, mode="reduced"):
    """NumPy's ``qr``: (q, r) for mode 'reduced', ``r`` for mode 'r'; R's diagonal is made
    non-negative (unique factors for a full-rank ``a``).  Mode 'complete' needs the
    orthogonal complement and is refused unless ``a`` is statically square (then it equals
    'reduced'); 'raw' (LAPACK's Householder form) is not offered."""
    a = _float_matrix(a, "qr")
    m, n = a.type.shape[-2:]
    if mode == "complete" and isinstance(m, int) and m == n:
        mode = "reduced"
    if mode == "r":
        return _apply("qr", a, part="r")
    if mode != "reduced":
        raise ValueError(f"qr: mode must be 'reduced' or 'r' (or 'complete' for a square matrix), got {mode!r} "
                         f"for {a.describe()}")
    return _apply("qr", a, part="q"), _apply("qr", a, part="r")


def pinv(x, hermitian=False, rcond=1e-15):
    """The Moore-Penrose pseudo-inverse through the SVD; singular values at most ``rcond``
    times the largest count as zero (NumPy's rule)."""
    x = _float_matrix(x, "pinv")
    u, s, vt = svd(x, full_matrices=False)
    cut = B.max(s, axis=-1, keepdims=True) * rcond
    inv_s = B.switch(B.gt(s, cut), 1 / B.switch(B.gt(s, cut), s, 1), 0)
    n = x.ndim
    swap = tuple(range(n - 2)) + (n - 1, n - 2)
    return B.matmul(vt.dimshuffle(swap) * inv_s.dimshuffle(*range(n - 2), "x", n - 2), u.dimshuffle(swap))


def _prod(dims):
    """The product of (symbolic) dims; one dim is returned as it is."""
    out = dims[0]
    for d in dims[1:]:
        out = out * d
    return out


def tensorinv(a, ind=2):
    """NumPy's ``tensorinv``: the inverse of ``a`` seen as a matrix of its first ``ind`` axes
    by the others, shaped ``a.shape[ind:] + a.shape[:ind]``."""
    a = as_variable(a, "a")
    if not isinstance(ind, (int, np.integer)) or not 0 < ind < a.ndim:
        raise ValueError(f"tensorinv: ind must be an int in 1..{a.ndim - 1}, got {ind!r} for {a.describe()}")
    dims = [a.shape[k] for k in range(a.ndim)]
    inv_m = matrix_inverse(B.reshape(a, (_prod(dims[:ind]), _prod(dims[ind:]))))
    return B.reshape(inv_m, tuple(dims[ind:] + dims[:ind]))


def tensorsolve(a, b, axes=None):
    """NumPy's ``tensorsolve``: ``x`` with ``tensordot(a, x, x.ndim) == b`` (``axes``: axes of
    ``a`` moved to the end first)."""
    a, b = as_variable(a, "a"), as_variable(b, "b")
    if axes is not None:
        axes = [int(k) % a.ndim for k in axes]
        a = a.dimshuffle(*[k for k in range(a.ndim) if k not in axes], *axes)
    if not 0 < b.ndim < a.ndim:
        raise ValueError(f"tensorsolve: b must have fewer axes than a, got {b.describe()} and {a.describe()}")
    dims = [a.shape[k] for k in range(a.ndim)]
    x_dims = dims[b.ndim:]
    from .slinalg import solve

    x = solve(B.reshape(a, (_prod(dims[:b.ndim]), _prod(x_dims))), B.flatten(b))
    return B.reshape(x, tuple(x_dims))


def lstsq(a, b, rcond=None):
    """NumPy's ``lstsq``: [x, residuals, rank, s] through the SVD (x = pinv(a) b with the
    cutoff ``rcond`` times the largest singular value; None: eps * max(m, n); negative: eps).
    ``residuals`` holds the squared residual norm per column of ``b`` when ``a`` has full
    column rank and more rows than columns, else it is empty (as NumPy's), a data-sized
    result (``tcomp/tensor/masks.py``)."""
    a = _float_matrix(a, "lstsq")
    b = as_variable(b, "b")
    if a.ndim != 2 or b.ndim not in (1, 2):
        raise ValueError(f"lstsq: a must be a matrix and b a vector or matrix, got {a.describe()}, {b.describe()}")
    b = B.cast(b, a.dtype) if b.dtype != a.dtype else b
    u, s, vt = svd(a, full_matrices=False)
    m, n = a.shape[0], a.shape[1]
    eps = float(np.finfo(a.dtype).eps)
    if rcond is None:
        cut = B.max(s) * eps * B.cast(B.maximum(m, n), a.dtype)
    else:
        cut = B.max(s) * (eps if rcond < 0 else rcond)
    keep = B.gt(s, cut)
    inv_s = B.switch(keep, 1 / B.switch(keep, s, 1), 0)
    ub = B.dot(u.T, b)
    x = B.dot(vt.T, ub * (inv_s if b.ndim == 1 else inv_s.dimshuffle(0, "x")))
    rank = B.sum(B.cast(keep, "int32"))
    resid = B.sum(B.sqr(b - B.dot(a, x)), axis=0)
    full = B.logical_and(B.eq(rank, n), B.gt(m, n))
    cols = resid.dimshuffle("x") if b.ndim == 1 else resid
    residuals = cols[B.alloc(full, cols.shape[0])]
    return [x, residuals, rank, s]


def matrix_power(M, n):
    """``M`` multiplied by itself ``n`` times (``n`` a non-negative int; 0 gives the identity)."""
    M = as_variable(M, "M")
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"matrix_power: n must be a non-negative int, got {n!r}")
    if n == 0:
        from .extra import identity_like

        return identity_like(M)
    result, base, k = None, M, int(n)
    while k:
        if k & 1:
            result = base if result is None else B.dot(result, base)
        k >>= 1
        if k:
            base = B.dot(base, base)
    return result


def alloc_diag(v, offset=0):
    """The square matrix with vector ``v`` on its ``offset`` diagonal."""
    return diag(v, offset)


def norm(x, ord=None):
    """NumPy's ``linalg.norm(x, ord)`` for a vector or a matrix."""
    x = _float(as_variable(x, "x"))
    if x.ndim == 1:
        if isinstance(ord, str):
            raise ValueError(f"norm: invalid norm order {ord!r} for vectors")
        return _vector_norm(x, 2 if ord is None else ord, None, False)
    if x.ndim != 2:
        raise ValueError(f"norm: x must be a vector or a matrix, got {x.describe()}")
    if ord is None or ord == "fro":
        return B.sqrt(B.sum(B.sqr(x)))
    a = B.abs(x)
    if ord == np.inf:
        return B.max(B.sum(a, axis=1))
    if ord == -np.inf:
        return B.min(B.sum(a, axis=1))
    if ord == 1:
        return B.max(B.sum(a, axis=0))
    if ord == -1:
        return B.min(B.sum(a, axis=0))
    if ord in (2, -2, "nuc"):
        s = svd(x, compute_uv=False)
        return B.max(s) if ord == 2 else B.min(s) if ord == -2 else B.sum(s)
    raise ValueError(f"norm: invalid norm order {ord!r} for matrices")


from .linalg_ops import nlinalg_classes  # noqa: E402

globals().update(nlinalg_classes())  # MatrixInverse, MatrixPinv, Det, Eigh, SVD, QRFull, AllocDiag, ExtractDiag
