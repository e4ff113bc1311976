"""Theano's sparse testing helpers: ``verify_grad_sparse`` and ``sparse_random_inputs``
(``theano.sparse.verify_grad_sparse``, ``theano.sparse.tests.test_basic.sparse_random_inputs``),
so a Theano test of a sparse op ports with its import changed."""
from __future__ import annotations

import numpy as np

from .basic import csc_from_dense, csr_from_dense
from .variable import CSM, _scipy, as_sparse_variable, matrix


def verify_grad_sparse(op, pt, structured=False, *args, **kwargs):
    """``tcomp.testing.verify_grad`` of ``op`` at ``pt`` (SciPy matrices and arrays).  With
    ``structured``, a sparse point varies only its stored values (its pattern is kept);
    otherwise its dense matrix varies and is compressed again (``csr_from_dense``), as in
    Theano.  A sparse result is compared through its dense matrix."""
    from tcomp.testing import verify_grad

    sp = _scipy()
    dense_pt, convs = [], []
    for p in pt:
        if not sp.issparse(p):
            dense_pt.append(np.asarray(p))
            convs.append(lambda v: v)
            continue
        fmt = "csc" if p.format == "csc" else "csr"
        m = p.asformat(fmt)
        if structured:
            dense_pt.append(np.asarray(m.data))
            convs.append(lambda v, m=m, fmt=fmt: CSM(fmt, v, m.indices.astype("int32"), m.indptr.astype("int32"),
                                                     m.shape))
        else:
            dense_pt.append(m.toarray())
            convs.append(csr_from_dense if fmt == "csr" else csc_from_dense)

    def fn(*inputs):
        return op(*[conv(v) for conv, v in zip(convs, inputs)])
    return verify_grad(fn, dense_pt, *args, **kwargs)


def sparse_random_inputs(format, shape, n=1, out_dtype=None, p=0.5, gap=None, explicit_zero=False,
                         unsorted_indices=False, rng=None):
    """``n`` symbolic sparse inputs of ``format`` and ``n`` random SciPy matrices of ``shape``
    for them: each entry stored with probability ``p``, values uniform in ``gap`` (default
    [0, 1)), ``explicit_zero`` stores a zero, ``unsorted_indices`` reverses each row's (or
    column's) indices.  ``rng``: a seed or Generator (default: NumPy's global state, as
    Theano)."""
    sp = _scipy()
    dtype = out_dtype or "float64"
    if rng is None or isinstance(rng, (int, np.integer)):
        draw = np.random.default_rng(rng) if rng is not None else np.random.mtrand._rand
    else:
        draw = rng
    uniform = draw.uniform if hasattr(draw, "uniform") else draw.random
    lo, hi = gap if gap is not None else (0.0, 1.0)
    variables = [matrix(format, f"sparse_random_{i}", dtype) for i in range(n)]
    values = []
    for _ in range(n):
        keep = uniform(0, 1, size=shape) < p
        vals = uniform(lo, hi, size=shape) * keep
        if np.dtype(dtype).kind in "iu":
            vals = np.floor(vals)
        if explicit_zero:
            keep.flat[0] = True  # a stored zero
            vals.flat[0] = 0
        rows, cols = np.nonzero(keep)
        m = sp.coo_matrix((vals[rows, cols].astype(dtype), (rows, cols)), shape=shape).asformat(format)
        if unsorted_indices:
            for k in range(m.indptr.size - 1):
                a, b = m.indptr[k], m.indptr[k + 1]
                m.indices[a:b] = m.indices[a:b][::-1].copy()
                m.data[a:b] = m.data[a:b][::-1].copy()
            m.has_sorted_indices = False
        values.append(m)
    return variables, values


__all__ = ["verify_grad_sparse", "sparse_random_inputs", "as_sparse_variable"]
