"""Orthogonal decompositions of float matrices, batched over leading axes: ``eigh``
(symmetric eigenvalues/eigenvectors, one triangle read, as ``np.linalg.eigh(a, UPLO)``),
``svd`` (the reduced SVD, as ``np.linalg.svd(a, full_matrices=False)``) and ``qr`` (the
reduced QR, as ``np.linalg.qr(a)``, with R's diagonal made non-negative so that the
factors of a full-rank matrix are unique; part 'q' (..., m, k) or 'r' (..., k, n)).

Each is one op with a ``part`` attribute naming the result it gives (``eigh``: 'values'
ascending, shape (..., n), or 'vectors' (..., n, n), column i for value i; ``svd``: 's'
descending (..., k), 'u' (..., m, k) or 'vt' (..., k, n), k = min(m, n)), so every result
is a plain tensor (no tuple type) and a graph asking for two parts computes the
decomposition twice.

Eigenvectors and singular vectors are unique only up to sign (and, for repeated values, up
to a rotation): tcomp fixes the sign so that the largest-magnitude entry of each
eigenvector, and of each row of ``vt`` (with the matching column of ``u``), is positive
(the first such entry on ties), in the reference as in native code.  For repeated values
and the singular vectors of zero singular values the vectors differ from LAPACK's (any
orthonormal basis is right; native ``u`` has zero columns for zero singular values).
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..types import TensorType
from .linalg_decomp import _batched, _pick, _square
from .registry import OpDef, register


def _eigh_infer(types, attrs):
    (a,) = types
    if attrs["part"] not in ("values", "vectors"):
        raise ValueError(f"eigh: part must be 'values' or 'vectors', got {attrs['part']!r}")
    n = _square("eigh", a)
    m = _pick(a.shape[-2], n)
    return TensorType(a.dtype, a.shape[:-2] + ((m,) if attrs["part"] == "values" else (m, m)))


def _svd_infer(types, attrs):
    (a,) = types
    if attrs["part"] not in ("s", "u", "vt"):
        raise ValueError(f"svd: part must be 's', 'u' or 'vt', got {attrs['part']!r}")
    if not dt.is_float(a.dtype):
        raise TypeError(f"svd: expected a float32 or float64 matrix, got {a} (dtype {a.dtype}); cast it first")
    if a.ndim < 2:
        raise ValueError(f"svd: expected a matrix (or a batch of matrices, rank >= 2), got {a} (rank {a.ndim})")
    m, n = a.shape[-2:]
    k = min(m, n) if isinstance(m, int) and isinstance(n, int) else None
    shape = {"s": (k,), "u": (m, k), "vt": (k, n)}[attrs["part"]]
    return TensorType(a.dtype, a.shape[:-2] + shape)


def _qr_infer(types, attrs):
    (a,) = types
    if attrs["part"] not in ("q", "r"):
        raise ValueError(f"qr: part must be 'q' or 'r', got {attrs['part']!r}")
    if not dt.is_float(a.dtype):
        raise TypeError(f"qr: expected a float32 or float64 matrix, got {a} (dtype {a.dtype}); cast it first")
    if a.ndim < 2:
        raise ValueError(f"qr: expected a matrix (or a batch of matrices, rank >= 2), got {a} (rank {a.ndim})")
    m, n = a.shape[-2:]
    k = min(m, n) if isinstance(m, int) and isinstance(n, int) else None
    return TensorType(a.dtype, a.shape[:-2] + ((m, k) if attrs["part"] == "q" else (k, n)))


def _qr(a, part):
    q, r = np.linalg.qr(a, mode="reduced")
    k = r.shape[-2]
    d = np.diagonal(r[..., :, :k], axis1=-2, axis2=-1)
    sign = np.where(d < 0, -1, 1).astype(a.dtype)
    return q * sign[..., None, :] if part == "q" else r * sign[..., :, None]


def _signs(rows):
    """+1/-1 per row (last axis: the entries): the sign of each row's first largest |entry|."""
    if rows.shape[-1] == 0:
        return np.ones(rows.shape[:-1], rows.dtype)
    k = np.argmax(np.abs(rows), axis=-1)
    pick = np.take_along_axis(rows, k[..., None], axis=-1)[..., 0]
    return np.where(pick < 0, -1, 1).astype(rows.dtype)


def _eigh(a, part, lower):
    w, v = np.linalg.eigh(a, UPLO="L" if lower else "U")
    v = v * _signs(np.swapaxes(v, -1, -2))[..., None, :]
    return w if part == "values" else v


def _svd(a, part):
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    sign = _signs(vt)
    return {"s": s, "u": u * sign[..., None, :], "vt": vt * sign[..., :, None]}[part]


register(OpDef("eigh", 1, _eigh_infer, _batched(_eigh, _eigh_infer), attr_defaults={"part": "values", "lower": True},
               kind="decomposition", doc="symmetric eigendecomposition (one triangle read): values or vectors"))
register(OpDef("qr", 1, _qr_infer, _batched(_qr, _qr_infer), attr_defaults={"part": "r"}, kind="decomposition",
               doc="reduced QR (Householder), R's diagonal made non-negative: q or r"))
register(OpDef("svd", 1, _svd_infer, _batched(_svd, _svd_infer), attr_defaults={"part": "s"}, kind="decomposition",
               doc="reduced SVD: singular values (descending), u or vt"))
