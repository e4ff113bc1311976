"""Sparse shared variables: ``tcomp.shared(scipy_matrix)`` (Theano's sparse shared variable).

The matrix is held as five dense shared variables (data, indices, indptr and the two dims,
their lengths free to change), so every compiled function reads them as implicit inputs like
any shared variable, with the usual locks.  An update ``(W, new_sparse_expression)`` updates
the parts (``tcomp/composite.py``); a part the new value shares with ``W`` (the pattern, when
only the values change: ``W - lr * T.grad(cost, W)``) is not rewritten.  ``get_value`` and
``set_value`` take or give a SciPy matrix; ``set_value`` sets the parts one after another.
"""
from __future__ import annotations

import numpy as np

from .variable import SparseVariable, _scipy, all_dtypes


class SparseSharedVariable(SparseVariable):
    """A sparse matrix whose parts are shared variables (not a function input: implicit)."""

    def __init__(self, value, name=None, borrow=False):
        from tcomp.shared import shared

        m = self._as_matrix(value, None, name)
        fmt = m.format
        label = name or f"sparse_{fmt}"
        parts = self._arrays(m)
        self._parts = [shared(a, f"{label}.{p}", borrow=borrow, shape=None if a.ndim == 0 else (None,))
                       for a, p in zip(parts, ("data", "indices", "indptr", "shape[0]", "shape[1]"))]
        data, indices, indptr, rows, cols = self._parts
        super().__init__(fmt, data, indices, indptr, (rows, cols), name=name)

    @staticmethod
    def _as_matrix(value, fmt, name):
        sp = _scipy()
        if not sp.issparse(value):
            raise TypeError(f"sparse shared variable {name or ''}: expected a SciPy sparse matrix, got "
                            f"{type(value).__name__}")
        fmt = fmt or ("csc" if value.format == "csc" else "csr")
        m = value.asformat(fmt)
        if str(m.dtype) not in all_dtypes:
            raise TypeError(f"sparse shared variable {name or ''}: dtype {m.dtype} is not a sparse dtype")
        return m

    @staticmethod
    def _arrays(m):
        return [np.asarray(m.data), m.indices.astype(np.int32), m.indptr.astype(np.int32),
                np.int64(m.shape[0]), np.int64(m.shape[1])]

    def get_value(self, borrow=False):
        """The matrix (a SciPy matrix of this variable's format; a copy unless ``borrow``)."""
        sp = _scipy()
        data, indices, indptr, m, n = (p.get_value(borrow=borrow) for p in self._parts)
        cls = sp.csr_matrix if self.format == "csr" else sp.csc_matrix
        return cls((data, indices, indptr), shape=(int(m), int(n)), copy=not borrow)

    def set_value(self, value, borrow=False):
        """Store a SciPy matrix (converted to this variable's format; its data dtype must
        convert without loss, as for dense shared variables)."""
        m = self._as_matrix(value, self.format, self.name)
        for p, a in zip(self._parts, self._arrays(m)):
            p.set_value(a, borrow=borrow)

    @property
    def shared_parts(self):
        return list(self._parts)

    def update_pairs(self, new):
        """The dense updates that make ``new`` (a sparse expression) this variable's value."""
        from .variable import is_sparse

        if not is_sparse(new):
            raise TypeError(f"update of sparse shared variable {self.describe()}: the new value must be a sparse "
                            f"{self.format} matrix, got {getattr(new, 'describe', lambda: repr(new))()}")
        if new.format != self.format:
            raise TypeError(f"update of sparse shared variable {self.describe()}: the new value is {new.format}, "
                            f"the variable {self.format} (convert with sparse.csr_from_dense / csc_from_dense)")
        if new.dtype != self.dtype:
            raise TypeError(f"update of sparse shared variable {self.describe()}: the new value has dtype "
                            f"{new.dtype}, the variable {self.dtype} (use sparse.cast)")
        return [(p, q) for p, q in zip(self._parts, new.parts) if q is not p]


def sparse_shared(value, name=None, borrow=False):
    return SparseSharedVariable(value, name=name, borrow=borrow)
