"""More of Theano's tensor names, as compositions of existing ops (so every backend and
autodiff have them): tri/tril/triu, split, stacklists, batched_tensordot, compress,
bartlett, unique, inv, second, int_div, power, iround, scalar_from_tensor and
tensor_from_scalar."""
from __future__ import annotations

import numpy as np

from tcomp.ir import dtypes as dt

from . import basic as B
from .extra import _axes_list, _dim, _float, _int_scalar, _size, argsort, cumsum
from .extra import any as any_
from .variable import as_variable, constant

# -- triangles ---------------------------------------------------------------------------


def _lower_mask(rows, cols, k):
    """bool (rows, cols): True where column <= row + k (NumPy's tri)."""
    r = B.dimshuffle(B.arange(rows), (0, "x"))
    c = B.dimshuffle(B.arange(cols), ("x", 0))
    return B.ge(r + k, c)


def tri(N, M=None, k=0, dtype=None):
    """An ``N x M`` matrix with ones at and below the ``k``-th diagonal (NumPy's tri)."""
    n = _int_scalar(N, "tri: N")
    m = n if M is None else _int_scalar(M, "tri: M")
    return B.cast(_lower_mask(n, m, k), dt.canonical(dtype or "floatX"))


def _triangle(m, k, lower, what):
    m = as_variable(m, "m")
    if m.ndim < 2:
        raise ValueError(f"{what}: m must have at least two dimensions, got {m.describe()}")
    rows, cols = _dim(m, m.ndim - 2), _dim(m, m.ndim - 1)
    keep = _lower_mask(rows, cols, k) if lower else B.logical_not(_lower_mask(rows, cols, k - 1))
    return B.where(keep, m, B.zeros_like(m))


def tril(m, k=0):
    """``m`` with the elements above the ``k``-th diagonal zeroed (last two axes, as NumPy)."""
    return _triangle(m, k, True, "tril")


def triu(m, k=0):
    """``m`` with the elements below the ``k``-th diagonal zeroed (last two axes, as NumPy)."""
    return _triangle(m, k, False, "triu")


# -- splitting and stacking --------------------------------------------------------------


def split(x, splits_size, n_splits, axis=0):
    """Theano's split: ``n_splits`` consecutive pieces of ``x`` along ``axis`` whose lengths
    are the (possibly symbolic) vector ``splits_size``; they must be non-negative and add up
    to the axis length (checked at call time)."""
    x = as_variable(x, "x")
    if not isinstance(n_splits, (int, np.integer)) or n_splits < 1:
        raise ValueError(f"split: n_splits must be a positive int, got {n_splits!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"split: axis {axis} is out of range for {x.describe()}")
    axis %= x.ndim
    sizes = as_variable(splits_size, "splits_size")
    if sizes.ndim != 1 or not dt.is_int(sizes.dtype):
        raise TypeError(f"split: splits_size must be an integer vector, got {sizes.describe()}")
    if isinstance(sizes.type.shape[0], int) and sizes.type.shape[0] != n_splits:
        raise ValueError(f"split: splits_size has {sizes.type.shape[0]} entries but n_splits={n_splits}")
    sizes = B.cast(sizes, "int64")
    ends = cumsum(sizes)
    # Checked in native code before slicing (wrong sizes would otherwise give wrong pieces
    # silently): x reshaped to the sizes' sum along ``axis`` fails (ValueError) unless it is
    # the axis length; a negative size or a wrong count of sizes makes that length -2, which
    # no reshape accepts (-1 would mean "infer").  A view when x is contiguous.
    bad = any_(B.lt(sizes, 0)) | B.neq(B.shape_i(sizes, 0), n_splits)
    checked = [B.shape_i(x, i) for i in range(x.ndim)]
    checked[axis] = B.switch(bad, -2, ends[int(n_splits) - 1])
    x = B.reshape(x, checked)
    lead = (slice(None),) * axis
    pieces, start = [], 0
    for i in range(int(n_splits)):
        stop = ends[i]
        pieces.append(x[lead + (slice(start, stop),)])
        start = stop
    return pieces


def stacklists(arg):
    """Nested lists of scalars (or tensors) stacked into one tensor: ``stacklists([[a, b], [c, d]])``
    is a 2x2 matrix."""
    if isinstance(arg, (tuple, list)):
        return B.stack([stacklists(a) for a in arg])
    return as_variable(arg, "stacklists element")


def batched_tensordot(x, y, axes):
    """Theano's batched_tensordot: a tensordot for each index of the leading (batch) axis.
    ``axes`` is an int n (the last n axes of ``x`` with axes 1..n of ``y``) or a pair of
    axis lists that exclude axis 0; computed as one batched matmul."""
    x, y = as_variable(x, "x"), as_variable(y, "y")
    if x.ndim < 2 or y.ndim < 2:
        raise ValueError(f"batched_tensordot: operands need a batch axis and at least one more, got "
                         f"{x.describe()} and {y.describe()}")
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        if n < 1 or n >= x.ndim or n >= y.ndim:
            raise ValueError(f"batched_tensordot: axes={n} does not fit {x.describe()} and {y.describe()}")
        x_axes, y_axes = list(range(x.ndim - n, x.ndim)), list(range(1, n + 1))
    else:
        if len(axes) != 2:
            raise ValueError(f"batched_tensordot: axes must be an int or a pair of axis lists, got {axes!r}")
        x_axes, y_axes = _axes_list(axes[0], x.ndim, "x"), _axes_list(axes[1], y.ndim, "y")
    if 0 in x_axes or 0 in y_axes:
        raise ValueError("batched_tensordot: axis 0 is the batch axis and cannot be summed over")
    if len(x_axes) != len(y_axes):
        raise ValueError(f"batched_tensordot: {len(x_axes)} axes of x but {len(y_axes)} axes of y")
    free_x = [i for i in range(1, x.ndim) if i not in x_axes]
    free_y = [j for j in range(1, y.ndim) if j not in y_axes]
    batch = _dim(x, 0)
    x3 = B.reshape(B.transpose(x, [0] + free_x + x_axes), (batch, _size(x, free_x), _size(x, x_axes)))
    y3 = B.reshape(B.transpose(y, [0] + y_axes + free_y), (_dim(y, 0), _size(y, y_axes), _size(y, free_y)))
    r = B.matmul(x3, y3)
    return B.reshape(r, [_dim(r, 0)] + [_dim(x, i) for i in free_x] + [_dim(y, j) for j in free_y])


# -- selections ----------------------------------------------------------------------------


def compress(condition, x, axis=None):
    """NumPy's compress: the slices of ``x`` along ``axis`` (of ``x.flatten()`` when None)
    where the vector ``condition`` is true; a shorter condition selects from the front."""
    from .masks import flatnonzero

    x = as_variable(x, "x")
    cond = as_variable(condition, "condition")
    if cond.ndim != 1:
        raise ValueError(f"compress: condition must be a vector, got {cond.describe()}")
    idx = flatnonzero(cond)
    if axis is None:
        return B.flatten(x)[idx]
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"compress: axis {axis} is out of range for {x.describe()}")
    return x[(slice(None),) * (axis % x.ndim) + (idx,)]


def bartlett(M):
    """NumPy's Bartlett (triangular) window of ``M`` points (float64; empty for M < 1)."""
    m = B.maximum(_int_scalar(M, "bartlett: M"), 0)
    n = B.cast(B.arange(m), "float64")
    half = (B.cast(m, "float64") - 1.0) / 2.0
    safe = B.where(B.le(half, 0.0), 1.0, half)
    w = 1.0 - B.abs(n - half) / safe
    return B.where(B.eq(m, 1), B.ones_like(w), w)


def unique(ar, return_index=False, return_inverse=False, return_counts=False):
    """NumPy's unique of the flattened ``ar``: the sorted distinct values, and optionally the
    index of each one's first occurrence, the inverse (flat, as Theano) and the counts.
    Built on a stable argsort and a mask of where the sorted values change."""
    from .masks import flatnonzero

    flat = B.flatten(as_variable(ar, "ar"))
    order = argsort(flat)
    s = flat[order]
    n = _dim(flat, 0)
    # True where a new value starts; [:n] keeps an empty input empty
    first = B.concatenate([B.ones((1,), "bool"), B.neq(s[1:], s[:-1])])[:n]
    starts = flatnonzero(first)
    out = [s[starts]]
    if return_index:
        out.append(order[starts])
    if return_inverse:
        group = cumsum(B.cast(first, "int64")) - 1
        out.append(group[argsort(order)])
    if return_counts:
        bounds = B.concatenate([starts, B.reshape(B.cast(n, "int64"), (1,))])
        out.append(bounds[1:] - bounds[:-1])
    return out[0] if len(out) == 1 else tuple(out)


class Unique:
    """Theano's ``Unique(return_index, return_inverse, return_counts, axis=None)`` op object:
    call it on a tensor."""

    def __init__(self, return_index=False, return_inverse=False, return_counts=False, axis=None):
        if axis is not None:
            raise ValueError("Unique: only axis=None (the flattened input) is supported")
        self.flags = (return_index, return_inverse, return_counts)

    def __call__(self, ar):
        return unique(ar, *self.flags)


# -- renamed elementwise ops and scalar conversions ---------------------------------------


def inv(x):
    """Theano's ``inv``: the elementwise reciprocal 1 / x."""
    return B.true_div(1.0, _float(as_variable(x, "x")))


def second(a, b):
    """``b`` broadcast to the shape of ``a`` (Theano's ``second``, the same as ``fill``)."""
    return B.fill(a, b)


int_div = B.floor_div
power = B.pow


def iround(x, mode=None):
    """``round(x, mode)`` cast to int64."""
    return B.cast(B.round(x, mode), "int64")


def _as_scalar(x, what):
    x = as_variable(x, what)
    if x.ndim != 0:
        raise TypeError(f"{what}: expected a 0-d tensor, got {x.describe()}")
    return x


def scalar_from_tensor(t):
    """A 0-d tensor as a scalar (tcomp's scalars are 0-d tensors: the same variable)."""
    return _as_scalar(t, "scalar_from_tensor: t")


def tensor_from_scalar(s):
    """A scalar as a 0-d tensor (the same variable in tcomp)."""
    if isinstance(s, (int, float, np.number)):
        return constant(np.asarray(s))
    return _as_scalar(s, "tensor_from_scalar: s")


__all__ = ["tri", "tril", "triu", "split", "stacklists", "batched_tensordot", "compress", "bartlett",
           "unique", "Unique", "inv", "second", "int_div", "power", "iround", "scalar_from_tensor",
           "tensor_from_scalar"]
