"""``T.extra_ops``: where Theano keeps cumsum, cumprod, repeat, squeeze, diff, bincount,
to_one_hot, fill_diagonal, searchsorted and the index (un)ravelling helpers."""
from __future__ import annotations

import numpy as np

from tcomp.ir import dtypes as dt

from . import basic as B
from .array_more import Unique, bartlett, compress, unique  # noqa: F401
from .basic_more import cpu_contiguous  # noqa: F401,E402
from .extra import _axis, cumprod, cumsum, repeat, squeeze  # noqa: F401
from .variable import as_variable, constant


def diff(x, n=1, axis=-1):
    """NumPy's diff: the ``n``-th forward difference along ``axis`` (x[1:] - x[:-1], n times)."""
    x = as_variable(x, "x")
    a = _axis(x, axis, "diff")
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"diff: n must be a non-negative int, got {n!r}")
    lead = (slice(None),) * a
    for _ in range(n):
        x = B.sub(x[lead + (slice(1, None),)], x[lead + (slice(None, -1),)])
    return x


def _int_vector(x, what):
    x = as_variable(x, what)
    if not dt.is_int(x.dtype) or x.ndim != 1:
        raise TypeError(f"{what} must be an integer vector, got {x.describe()}")
    return x


def bincount(x, weights=None, minlength=None, assert_nonneg=False):
    """NumPy's bincount of a non-negative integer vector: the result's length is
    max(max(x) + 1, minlength), known only from the data (a chain of native programs)."""
    x = _int_vector(x, "x")
    n = B.max(B.concatenate([B.cast(x, "int64") + 1, constant(np.zeros(1, "int64"))]))
    if minlength is not None:
        n = B.maximum(n, minlength)
    hits = B.eq(B.dimshuffle(x, (0, "x")), B.dimshuffle(B.arange(n), ("x", 0)))
    if weights is None:
        return B.sum(B.cast(hits, "int64"), axis=0)
    w = as_variable(weights, "weights")
    return B.sum(B.where(hits, B.dimshuffle(w, (0, "x")), 0), axis=0)


def to_one_hot(y, nb_class, dtype=None):
    """A (len(y), nb_class) matrix with a one at column y[i] of row i (Theano's to_one_hot)."""
    y = _int_vector(y, "y")
    out = B.eq(B.dimshuffle(y, (0, "x")), B.dimshuffle(B.arange(nb_class), ("x", 0)))
    return B.cast(out, dtype or dt.canonical("floatX"))


def fill_diagonal(a, val):
    """``a`` with its main diagonal set to the scalar ``val`` (a copy, as Theano)."""
    return fill_diagonal_offset(a, val, 0)


def fill_diagonal_offset(a, val, offset):
    """``a`` (a matrix) with its ``offset`` diagonal set to the scalar ``val``."""
    a = as_variable(a, "a")
    if a.ndim != 2:
        raise TypeError(f"fill_diagonal takes a matrix, got {a.describe()}")
    val = as_variable(val, "val")
    if val.ndim != 0:
        raise TypeError(f"fill_diagonal: val must be a scalar, got {val.describe()}")
    rows = B.dimshuffle(B.arange(a.shape[0]), (0, "x"))
    cols = B.dimshuffle(B.arange(a.shape[1]), ("x", 0))
    return B.where(B.eq(cols - rows, offset), B.cast(val, a.dtype), a)


def searchsorted(x, v, side="left", sorter=None):
    """Indices where ``v``'s elements would go in the sorted vector ``x`` (NumPy's searchsorted):
    counted comparisons, O(len(x) * len(v))."""
    x = as_variable(x, "x")
    if x.ndim != 1:
        raise TypeError(f"searchsorted: x must be a vector, got {x.describe()}")
    if sorter is not None:
        x = x[as_variable(sorter, "sorter")]
    v = as_variable(v, "v")
    if side not in ("left", "right"):
        raise ValueError(f"searchsorted: side must be 'left' or 'right', got {side!r}")
    pattern = tuple(["x"] * v.ndim + [0])
    xs, vs = B.dimshuffle(x, pattern), B.dimshuffle(v, tuple(range(v.ndim)) + ("x",))
    before = B.lt(xs, vs) if side == "left" else B.le(xs, vs)
    return B.sum(B.cast(before, "int64"), axis=-1)


def _dims_tuple(dims, what):
    if isinstance(dims, (list, tuple)):
        return [as_variable(d, f"{what}[{i}]") for i, d in enumerate(dims)]
    raise TypeError(f"{what} must be a tuple of dimension sizes, got {dims!r}")


def unravel_index(indices, dims, order="C"):
    """The tuple of coordinate arrays of flat ``indices`` into an array of shape ``dims``."""
    idx = as_variable(indices, "indices")
    if not dt.is_int(idx.dtype):
        raise TypeError(f"unravel_index: indices must be integers, got {idx.describe()}")
    sizes = _dims_tuple(dims, "dims")
    order_axes = range(len(sizes) - 1, -1, -1) if order == "C" else range(len(sizes))
    if order not in ("C", "F"):
        raise ValueError(f"unravel_index: order must be 'C' or 'F', got {order!r}")
    out = [None] * len(sizes)
    rest = idx
    for k in order_axes:
        out[k] = rest % sizes[k]
        rest = rest // sizes[k]
    return tuple(out)


def ravel_multi_index(multi_index, dims, mode="raise", order="C"):
    """Flat indices of the coordinate arrays ``multi_index`` into an array of shape ``dims``."""
    coords = [as_variable(c, f"multi_index[{i}]") for i, c in enumerate(multi_index)]
    sizes = _dims_tuple(dims, "dims")
    if len(coords) != len(sizes):
        raise ValueError(f"ravel_multi_index: {len(coords)} coordinate arrays for {len(sizes)} dims")
    if mode == "clip":
        coords = [B.clip(c, 0, s - 1) for c, s in zip(coords, sizes)]
    elif mode == "wrap":
        coords = [c % s for c, s in zip(coords, sizes)]
    elif mode != "raise":
        raise ValueError(f"ravel_multi_index: mode must be 'raise', 'clip' or 'wrap', got {mode!r}")
    axes = range(len(sizes)) if order == "C" else range(len(sizes) - 1, -1, -1)
    flat = None
    for k in axes:
        flat = coords[k] if flat is None else flat * sizes[k] + coords[k]
    return flat
