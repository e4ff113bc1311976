"""``T.nlinalg``: Theano's norm, trace and diagonal helpers (compositions of existing ops).

Norms that need singular values (matrix ord 2, -2, 'nuc') need an SVD, which tcomp does not
have; they are refused with a ValueError naming the order."""
from __future__ import annotations

import numpy as np

from . import basic as B
from .extra import _float, _vector_norm, diag, diagonal, trace  # noqa: F401
from .variable import as_variable

extract_diag = diagonal


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
