"""Theano's ``T.fft``: ``rfft`` and ``irfft`` over every axis but the first (the batch), with
complex values stored as a trailing axis of size 2 (real, imaginary), as Theano does.

Each axis is a matrix product with its DFT matrix, built in the graph from ``arange`` (so
sizes may be symbolic, every backend runs it and the gradient is exact): O(n^2) per axis,
which is fine for the signal and filter sizes Theano programs use, and not a fast FFT.
The angles are reduced mod n in integers before the cos/sin, so large n stays accurate."""
from __future__ import annotations

import math

from . import basic as B
from .extra import _dim, _float
from .variable import as_variable


def _angles(n, k, sign):
    """sign * 2 pi (j * m mod n) / n for j < n, m < k: an (n, k) float64 matrix."""
    j = B.dimshuffle(B.arange(n), (0, "x"))
    m = B.dimshuffle(B.arange(k), ("x", 0))
    return B.cast(B.mod(j * m, n), "float64") * (sign * 2.0 * math.pi) / B.cast(n, "float64")


def _along(x, axis, matrix):
    """``x`` with ``axis`` contracted against the rows of ``matrix`` (the result's axis keeps its place)."""
    nd = x.ndim
    order = [i for i in range(nd) if i != axis] + [axis]
    moved = B.dimshuffle(x, order)
    y = B.dot(moved, B.cast(matrix, x.dtype))
    back = [0] * nd
    for pos, src in enumerate(order):
        back[src] = pos
    return B.dimshuffle(y, back)


def _complex_dft(re, im, axis, n, sign):
    """The full DFT along ``axis`` with exp(sign * 2 pi i j m / n)."""
    theta = _angles(n, n, sign)
    c, s = B.cos(theta), B.sin(theta)
    return _along(re, axis, c) - _along(im, axis, s), _along(im, axis, c) + _along(re, axis, s)


def _scale(total, norm, inverse):
    if norm == "ortho":
        return 1.0 / B.sqrt(B.cast(total, "float64"))
    if norm is None and inverse:
        return 1.0 / B.cast(total, "float64")
    return None


def _check_norm(norm, what):
    if norm not in (None, "ortho", "no_norm"):
        raise ValueError(f"{what}: norm must be None, 'ortho' or 'no_norm', got {norm!r}")


def rfft(inp, norm=None):
    """The real-input FFT of ``inp`` (batch, n1, ..., nd) over n1..nd: (batch, n1, ...,
    nd // 2 + 1, 2).  ``norm``: None (unscaled, as NumPy), 'ortho' (1 / sqrt(N)) or
    'no_norm'."""
    _check_norm(norm, "rfft")
    x = _float(as_variable(inp, "inp"))
    if x.ndim < 2:
        raise ValueError(f"rfft: inp needs a batch axis and at least one signal axis, got {x.describe()}")
    last = x.ndim - 1
    n = _dim(x, last)
    k = n // 2 + 1
    theta = _angles(n, k, -1.0)
    re, im = _along(x, last, B.cos(theta)), _along(x, last, B.sin(theta))
    total = n
    for axis in range(1, last):
        re, im = _complex_dft(re, im, axis, _dim(x, axis), -1.0)
        total = total * _dim(x, axis)
    scale = _scale(total, norm, inverse=False)
    out = B.stack([re, im], axis=-1)
    return out if scale is None else out * B.cast(scale, out.dtype)


def irfft(inp, norm=None, is_odd=False):
    """The inverse of :func:`rfft`: (batch, n1, ..., k, 2) to (batch, n1, ..., n) with
    n = 2 (k - 1), plus one when ``is_odd``.  ``norm``: None (1 / N, as NumPy), 'ortho' or
    'no_norm' (unscaled)."""
    _check_norm(norm, "irfft")
    z = _float(as_variable(inp, "inp"))
    if z.ndim < 3:
        raise ValueError(f"irfft: inp must be (batch, ..., frequencies, 2), got {z.describe()}")
    re, im = z[..., 0], z[..., 1]
    last = re.ndim - 1
    total = None
    for axis in range(1, last):
        re, im = _complex_dft(re, im, axis, _dim(re, axis), 1.0)
        total = _dim(re, axis) if total is None else total * _dim(re, axis)
    k = _dim(re, last)
    n = 2 * (k - 1) + (1 if is_odd else 0)
    theta = _angles(n, k, 1.0)  # (n, k); used transposed: frequencies m -> samples j
    m = B.arange(k)
    # Hermitian symmetry: every frequency but 0 (and n/2 for even n) stands for two
    weight = B.cast(B.switch(B.eq(m, 0) | B.eq(2 * m, n), 1, 2), "float64")
    c = B.transpose(B.cos(theta) * weight)
    s = B.transpose(B.sin(theta) * weight)
    x = _along(re, last, c) - _along(im, last, s)
    total = n if total is None else total * n
    scale = _scale(total, norm, inverse=True)
    return x if scale is None else x * B.cast(scale, x.dtype)


__all__ = ["rfft", "irfft"]
