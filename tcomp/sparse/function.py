"""Sparse arguments, results and gradients.

A compiled function with a sparse variable in its signature is a
:class:`tcomp.composite.CompositeFunction`: each sparse input is five arguments (data,
indices, indptr and the two dims) and each sparse output five results; :func:`unpack`
and :func:`pack` convert at the boundary, so the native program, its caches and its
checks are the dense ones.

``T.grad(cost, x)`` with ``x`` sparse is the structured gradient: ``T.grad`` of the stored
values, with ``x``'s pattern.
"""
from __future__ import annotations

import numpy as np

from .variable import SparseVariable, _scipy, is_sparse


def unpack(var, value, convert):
    """The five arrays of a sparse argument: converted to the input's format (as Theano's
    filter does) with int32 indices; its values follow the dense argument rules."""
    sp = _scipy()
    label = var.name or var.format
    if not sp.issparse(value):
        arr = np.asarray(value) if not hasattr(value, "describe") else None
        if arr is None or arr.ndim != 2 or arr.dtype.kind not in "biuf":
            raise TypeError(f"argument {label!r}: expected a SciPy {var.format} matrix, got {type(value).__name__}")
        value = sp.csr_matrix(arr)
    m = value.asformat(var.format)
    if m.nnz > np.iinfo(np.int32).max:
        raise ValueError(f"argument {label!r}: {m.nnz} stored entries do not fit int32 indices")
    data = convert(m.data, f"{label}.data", var.dtype)
    return [data, m.indices.astype(np.int32, copy=False), m.indptr.astype(np.int32, copy=False),
            np.int64(m.shape[0]), np.int64(m.shape[1])]


def pack(var, arrays):
    """A SciPy matrix of ``var``'s format from its five result arrays."""
    sp = _scipy()
    data, indices, indptr, m, n = arrays
    cls = sp.csr_matrix if var.format == "csr" else sp.csc_matrix
    return cls((data, indices, indptr), shape=(int(m), int(n)))


def sparse_grad(grad, cost, wrt, **kwargs):
    """``T.grad`` with sparse entries in ``wrt``: structured gradients (the pattern of each
    sparse variable, the gradient of its stored values)."""
    single = not isinstance(wrt, (list, tuple))
    wrt_list = [wrt] if single else list(wrt)
    dense = [w.data if is_sparse(w) else w for w in wrt_list]
    grads = grad(cost, dense, **kwargs)
    out = [SparseVariable(w.format, g, w.indices, w.indptr, w.shape) if is_sparse(w) and g is not None else g
           for w, g in zip(wrt_list, grads)]
    return out[0] if single else out
