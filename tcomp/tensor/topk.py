"""Theano's ``topk``, ``argtopk`` and ``topk_and_argtopk``: the ``kth`` largest (kth > 0) or
smallest (kth < 0) elements along an axis, from the stable argsort (so the gradient
scatters back through the gather).  The result is sorted: largest first for kth > 0,
smallest first for kth < 0."""
from __future__ import annotations

from .extra import _along, _take_along, argsort
from .variable import as_variable


def _top_indices(x, kth, axis, idx_dtype):
    if not isinstance(kth, int) or kth == 0:
        raise ValueError(f"topk: kth must be a non-zero int, got {kth!r}")
    x, ax = _along(as_variable(x, "x"), axis, "topk")
    order = argsort(x, ax)
    lead = (slice(None),) * ax
    if kth > 0:
        idx = order[lead + (slice(None, None, -1),)][lead + (slice(0, kth),)]
    else:
        idx = order[lead + (slice(0, -kth),)]
    return x, ax, idx if idx.dtype == idx_dtype else idx.astype(idx_dtype)


def argtopk(x, kth, axis=-1, sorted=True, idx_dtype="int64"):  # noqa: A002 - Theano's name
    return _top_indices(x, kth, axis, idx_dtype)[2]


def topk_and_argtopk(x, kth, axis=-1, sorted=True, idx_dtype="int64"):  # noqa: A002
    x, ax, idx = _top_indices(x, kth, axis, idx_dtype)
    return _take_along(x, idx, ax), idx


def topk(x, kth, axis=-1, sorted=True, idx_dtype="int64"):  # noqa: A002
    return topk_and_argtopk(x, kth, axis, sorted, idx_dtype)[0]
