"""``T.nlinalg``: Theano's ``matrix_inverse``, ``det``, ``matrix_dot``, norm, trace and
diagonal helpers.  ``matrix_inverse`` and ``det`` are ops (``ir/ops/linalg_decomp.py``:
float32/float64, batched over leading axes; a singular matrix makes ``matrix_inverse``
raise ``numpy.linalg.LinAlgError``, its ``det`` is 0); the rest compose existing ops.

Norms that need singular values (matrix ord 2, -2, 'nuc') need an SVD, which tcomp does not
have; they are refused with a ValueError naming the order."""
from __future__ import annotations

import numpy as np

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
        raise ValueError(f"norm: matrix norm order {ord!r} needs singular values (an SVD), which tcomp "
                         "does not have; use 'fro', 1, -1, inf or -inf")
    raise ValueError(f"norm: invalid norm order {ord!r} for matrices")
