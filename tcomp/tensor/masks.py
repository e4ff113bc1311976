"""Theano's ``nonzero``, ``flatnonzero``, ``nonzero_values`` and the index vectors behind
boolean-mask indexing ``x[mask]`` (``indexing.py`` turns a bool key into ``nonzero(mask)``,
NumPy's rule).

All of them are built on the op ``flatnonzero(x, count)`` with ``count = sum(x != 0)``: the
number of results is data, computed first (``ir/ops/nonzero.py``).  ``nonzero`` unravels the
flat positions with the (run-time) shape, so its vectors index ``x`` with the ordinary
advanced-indexing gather, whose gradient scatters back: ``T.grad`` of ``x[mask].sum()`` is
``mask`` as floats.
"""
from __future__ import annotations

from tcomp.ir import dtypes as dt

from . import basic as B
from .variable import Variable, apply, as_variable


def flatnonzero(a):
    """The int64 positions of ``a.flatten()``'s nonzero elements (nan is nonzero)."""
    a = as_variable(a, "a")
    nz = a if a.dtype == dt.BOOL else B.neq(a, 0)
    count = B.sum(B.cast(nz, "int64"))
    return apply("flatnonzero", [a, count])


def nonzero(a, return_matrix=False):
    """The index vectors (one per axis, int64) of ``a``'s nonzero elements, in C order:
    ``a[nonzero(a)]`` are those elements.  ``return_matrix``: stacked, shape (a.ndim, nnz)."""
    a = as_variable(a, "a")
    if a.ndim == 0:
        raise ValueError(f"nonzero: a must have at least one dimension (NumPy's rule), got {a.describe()}")
    flat = flatnonzero(a)
    out = []
    rest = flat
    for axis in range(a.ndim - 1, 0, -1):
        size = B.cast(a.shape[axis], "int64")
        out.append(B.mod(rest, size))
        rest = B.floor_div(rest, size)
    out.append(rest)
    out = tuple(reversed(out))
    if return_matrix:
        return B.stack(list(out)) if len(out) > 1 else out[0].dimshuffle("x", 0)
    return out


def nonzero_values(a):
    """The nonzero elements of ``a`` (flattened), in C order."""
    a = as_variable(a, "a")
    return B.flatten(a)[flatnonzero(a)] if a.ndim != 1 else a[flatnonzero(a)]


def is_mask(k) -> bool:
    """True for a boolean index key of rank >= 1 (a variable or an array)."""
    import numpy as np

    if isinstance(k, Variable):
        return k.dtype == dt.BOOL and k.ndim > 0
    if isinstance(k, np.ndarray) or isinstance(k, list) and np.size(k):
        return np.asarray(k).dtype == np.bool_ and np.ndim(k) > 0
    return False


__all__ = ["flatnonzero", "nonzero", "nonzero_values"]
