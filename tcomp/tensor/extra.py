"""Theano's (and NumPy's) remaining tensor functions, built from the existing op table.

Each function here is a composition of IR ops that is exact (or as accurate as its parts)
and numerically stable, so it gets native lowering, fusion and gradients from the ops it is
made of, and no new table rows.  Where a formula has branches, every branch is fed an input
clamped into the range where it is finite, so that the unselected branch of a ``where``
never produces inf/nan that its gradient would multiply by zero (0 * inf = nan).
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from tcomp.ir import dtypes as dt

from . import basic as B
from .variable import Variable, apply, as_variable, constant

# -- helpers ------------------------------------------------------------------------------


def _float(x: Variable) -> Variable:
    """Float inputs keep their dtype; ints and bools compute in floatX (JAX's lattice)."""
    return x if dt.is_float(x.dtype) else B.cast(x, "floatX")


def _axis(x: Variable, axis, what: str) -> int:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"{what}: axis must be an int, got {axis!r}")
    if not -x.ndim <= int(axis) < x.ndim:
        raise ValueError(f"{what}: axis {axis} is out of range for {x.describe()}")
    return int(axis) % x.ndim


def _size(x: Variable, axes) -> object:
    """The product of ``x``'s dims over ``axes``: an int when all are static, else an int64 scalar."""
    static, sym = 1, None
    for i in axes:
        d = x.type.shape[i]
        if isinstance(d, int):
            static *= d
        else:
            s = B.shape_i(x, i)
            sym = s if sym is None else B.mul(sym, s)
    if sym is None:
        return static
    return sym if static == 1 else B.mul(sym, constant(np.int64(static)))


def _dim(x: Variable, i: int):
    d = x.type.shape[i]
    return d if isinstance(d, int) else B.shape_i(x, i)


def _mul_dims(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    return B.mul(_as_i64(a), _as_i64(b))


def _as_i64(v):
    if isinstance(v, (int, np.integer)):
        return constant(np.int64(v))
    v = as_variable(v)
    return v if v.dtype == "int64" else B.cast(v, "int64")


def _int_scalar(v, what: str):
    """A Python int stays; an integer scalar variable (or 0-d constant) is accepted."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, Variable):
        if v.ndim != 0 or not dt.is_int(v.dtype):
            raise TypeError(f"{what} must be an integer scalar, got {v.describe()}")
        if v.op == "constant":
            return int(v.attrs["value"].value)
        return v
    raise TypeError(f"{what} must be an int or an integer scalar variable, got {v!r}")


def _take(x: Variable, idx, axis: int) -> Variable:
    return x[(slice(None),) * axis + (idx,)]


# -- linear algebra -----------------------------------------------------------------------

def outer(x, y):
    """NumPy's outer: both operands are flattened, result[i, j] = x[i] * y[j]."""
    x, y = B.flatten(as_variable(x, "x")), B.flatten(as_variable(y, "y"))
    return B.mul(B.dimshuffle(x, (0, "x")), B.dimshuffle(y, ("x", 0)))


def _axes_list(v, nd, what):
    axes = [v] if isinstance(v, (int, np.integer)) else list(v)
    out = []
    for a in axes:
        if not -nd <= int(a) < nd:
            raise ValueError(f"tensordot: axis {a} out of range for {what} of rank {nd}")
        out.append(int(a) % nd)
    if len(set(out)) != len(out):
        raise ValueError(f"tensordot: repeated axis in {v} for {what}")
    return out


def tensordot(a, b, axes=2):
    """NumPy's tensordot: sum over ``axes`` (an int n: the last n of ``a`` with the first n of
    ``b``; or a pair of axis lists), computed as one ``dot`` of the operands transposed and
    reshaped into matrices, so its gradient and lowering are dot's."""
    a, b = as_variable(a, "a"), as_variable(b, "b")
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        if n < 0 or n > a.ndim or n > b.ndim:
            raise ValueError(f"tensordot: axes={n} does not fit {a.describe()} and {b.describe()}")
        a_axes, b_axes = list(range(a.ndim - n, a.ndim)), list(range(n))
    else:
        if len(axes) != 2:
            raise ValueError(f"tensordot: axes must be an int or a pair of axis lists, got {axes!r}")
        a_axes, b_axes = _axes_list(axes[0], a.ndim, "a"), _axes_list(axes[1], b.ndim, "b")
    if len(a_axes) != len(b_axes):
        raise ValueError(f"tensordot: {len(a_axes)} axes of a but {len(b_axes)} axes of b")
    for i, j in zip(a_axes, b_axes):
        da, db = a.type.shape[i], b.type.shape[j]
        if isinstance(da, int) and isinstance(db, int) and da != db:
            raise ValueError(f"tensordot: axis {i} of {a.describe()} ({da}) does not match axis {j} of "
                             f"{b.describe()} ({db})")
    free_a = [i for i in range(a.ndim) if i not in a_axes]
    free_b = [j for j in range(b.ndim) if j not in b_axes]
    at = B.transpose(a, free_a + a_axes) if a.ndim else a
    bt = B.transpose(b, b_axes + free_b) if b.ndim else b
    am = B.reshape(at, (_size(a, free_a), _size(a, a_axes)))
    bm = B.reshape(bt, (_size(b, b_axes), _size(b, free_b)))
    r = apply("dot", [am, bm])
    return B.reshape(r, [_dim(a, i) for i in free_a] + [_dim(b, j) for j in free_b])


def batched_dot(a, b):
    """Theano's batched_dot: ``result[i] = dot(a[i], b[i])`` over the leading axis (a batched
    matmul; two matrices give the row-wise inner products)."""
    a, b = as_variable(a, "a"), as_variable(b, "b")
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"batched_dot: operands need a batch axis and at least one more, got "
                         f"{a.describe()} and {b.describe()}")
    if a.ndim == 2 and b.ndim == 2:
        return B.sum(B.mul(a, b), axis=1)
    batch = _dim(a, 0)
    a3 = B.dimshuffle(a, (0, "x", 1)) if a.ndim == 2 else \
        B.reshape(a, (batch, _size(a, range(1, a.ndim - 1)), _dim(a, a.ndim - 1)))
    b3 = B.dimshuffle(b, (0, 1, "x")) if b.ndim == 2 else \
        B.reshape(b, (_dim(b, 0), _dim(b, 1), _size(b, range(2, b.ndim))))
    r = B.matmul(a3, b3)
    return B.reshape(r, [_dim(r, 0)] + [_dim(a, i) for i in range(1, a.ndim - 1)]
                     + [_dim(b, j) for j in range(2, b.ndim)])


def eye(n, m=None, k=0, dtype=None):
    """An ``n x m`` matrix with ones on the ``k``-th diagonal (sizes may be symbolic)."""
    n = _int_scalar(n, "eye: n")
    m = n if m is None else _int_scalar(m, "eye: m")
    k = _int_scalar(k, "eye: k")
    rows, cols = B.arange(n), B.arange(m)
    mask = B.eq(B.add(B.dimshuffle(rows, (0, "x")), k), B.dimshuffle(cols, ("x", 0)))
    return B.cast(mask, dt.canonical(dtype or "floatX"))


def identity_like(x, dtype=None):
    """The identity matrix with ``x``'s shape (and dtype unless given)."""
    x = as_variable(x, "x")
    if x.ndim != 2:
        raise ValueError(f"identity_like: x must be a matrix, got {x.describe()}")
    return eye(_dim(x, 0), _dim(x, 1), dtype=dtype or x.dtype)


def _diag_len(x: Variable, offset):
    """Length of the ``offset`` diagonal of the first two axes: max(min(r - a, c - b), 0)."""
    r, c = _dim(x, 0), _dim(x, 1)
    if isinstance(offset, int) and isinstance(r, int) and isinstance(c, int):
        return builtins.max(builtins.min(r - builtins.max(-offset, 0), c - builtins.max(offset, 0)), 0)
    rr = B.sub(_as_i64(r), B.maximum(B.neg(_as_i64(offset)), 0))
    cc = B.sub(_as_i64(c), B.maximum(_as_i64(offset), 0))
    return B.maximum(B.minimum(rr, cc), 0)


def diagonal(x, offset=0, axis1=0, axis2=1):
    """NumPy's diagonal: the ``offset`` diagonal of axes (axis1, axis2), as the last axis."""
    x = as_variable(x, "x")
    if x.ndim < 2:
        raise ValueError(f"diagonal: x needs at least 2 dims, got {x.describe()}")
    a1, a2 = _axis(x, axis1, "diagonal"), _axis(x, axis2, "diagonal")
    if a1 == a2:
        raise ValueError(f"diagonal: axis1 and axis2 are both {a1}")
    offset = _int_scalar(offset, "diagonal: offset")
    rest = [i for i in range(x.ndim) if i not in (a1, a2)]
    y = B.transpose(x, [a1, a2] + rest) if [a1, a2] + rest != list(range(x.ndim)) else x
    idx = B.arange(_diag_len(y, offset))
    rows = B.add(idx, B.maximum(B.neg(_as_i64(offset)), 0)) if not isinstance(offset, int) else idx + max(-offset, 0)
    cols = B.add(idx, B.maximum(_as_i64(offset), 0)) if not isinstance(offset, int) else idx + max(offset, 0)
    d = y[rows, cols]                                 # (len, *rest)
    return B.dimshuffle(d, list(range(1, d.ndim)) + [0]) if d.ndim > 1 else d


def diag(v, k=0):
    """NumPy's (and Theano's) diag: a vector gives the square matrix with it on the ``k``-th
    diagonal, a matrix gives its ``k``-th diagonal."""
    v = as_variable(v, "v")
    k = _int_scalar(k, "diag: k")
    if v.ndim == 2:
        return diagonal(v, k)
    if v.ndim != 1:
        raise ValueError(f"diag: v must be a vector or a matrix, got {v.describe()}")
    n = _dim(v, 0)
    if isinstance(k, int):
        size = n + builtins.abs(k) if isinstance(n, int) else B.add(n, builtins.abs(k))
        r_off, c_off = max(-k, 0), max(k, 0)
    else:
        size = B.add(_as_i64(n), B.abs(k))
        r_off, c_off = B.maximum(B.neg(_as_i64(k)), 0), B.maximum(_as_i64(k), 0)
    idx = B.arange(n)
    z = B.zeros((size, size), v.dtype)
    from .indexing import set_subtensor

    return set_subtensor(z[B.add(idx, r_off), B.add(idx, c_off)], v)


def trace(x, offset=0):
    """Sum of the ``offset`` diagonal of the first two axes (NumPy's trace; ints sum in int64)."""
    x = as_variable(x, "x")
    return B.sum(diagonal(x, offset), axis=-1)


# -- logic ---------------------------------------------------------------------------------

def _truth(x):
    x = as_variable(x, "x")
    return x if x.dtype == dt.BOOL else B.neq(x, 0)


def any(x, axis=None, keepdims=False):  # noqa: A001 - NumPy's name
    """True where any element over ``axis`` is nonzero (nan counts as true; empty: False)."""
    return B.gt(B.sum(B.cast(_truth(x), "int64"), axis, keepdims), 0)


def all(x, axis=None, keepdims=False):  # noqa: A001 - NumPy's name
    """True where every element over ``axis`` is nonzero (empty: True)."""
    return B.eq(B.sum(B.cast(B.logical_not(_truth(x)), "int64"), axis, keepdims), 0)


# -- shapes --------------------------------------------------------------------------------

def squeeze(x, axis=None):
    """Drop the broadcastable (static size 1) axes, or only those in ``axis``, which must be
    broadcastable (a symbolic dim is not known to be 1: use ``T.addbroadcast`` first)."""
    x = as_variable(x, "x")
    if axis is None:
        drop = [i for i in range(x.ndim) if x.type.shape[i] == 1]
    else:
        drop = list(B.normalize_axes(x, axis))
        for i in drop:
            if x.type.shape[i] != 1:
                raise ValueError(f"squeeze: axis {i} of {x.describe()} is not broadcastable (size 1); "
                                 "use T.addbroadcast to declare it")
    return B.dimshuffle(x, [i for i in range(x.ndim) if i not in drop])


def join(axis, *tensors):
    """Theano's join: ``concatenate(tensors, axis)`` (a single tensor is returned as is)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if not tensors:
        raise ValueError("join needs at least one tensor")
    ts = [as_variable(t, f"tensor {i}") for i, t in enumerate(tensors)]
    if len(ts) == 1:
        return ts[0]
    if ts[0].ndim == 0:
        raise ValueError(f"join: cannot join scalars ({ts[0].describe()}); use T.stack")
    return B.concatenate(ts, _axis(ts[0], axis, "join"))


def roll(x, shift, axis=None):
    """NumPy's roll: elements shifted by ``shift`` along ``axis`` (flattened when None): two
    slices concatenated when the size and the shift are static, else a gather at
    ``(arange(n) - shift) mod n`` (``shift`` may be symbolic)."""
    x = as_variable(x, "x")
    shift = _int_scalar(shift, "roll: shift")
    if axis is None:
        if x.ndim == 0:
            return x
        flat = roll(B.flatten(x), shift, 0)
        return B.reshape(flat, [_dim(x, i) for i in range(x.ndim)]) if x.ndim != 1 else flat
    a = _axis(x, axis, "roll")
    n = _dim(x, a)
    if isinstance(n, int) and isinstance(shift, int):
        if n == 0 or shift % n == 0:
            return x
        k = n - shift % n                        # the result starts at x[k]: two slices, no index array
        lead = (slice(None),) * a
        return B.concatenate([x[lead + (slice(k, None),)], x[lead + (slice(0, k),)]], a)
    idx = B.mod(B.sub(B.arange(n), shift), _as_i64(n))
    return _take(x, idx, a)


def tile(x, reps, ndim=None):
    """NumPy's tile: ``x`` repeated ``reps[i]`` times along axis i (``reps`` shorter than
    x.ndim is padded with 1s in front; longer prepends axes to x; Theano's ``ndim`` asks for
    at least that many result axes), as a broadcast of x with interleaved new axes and one
    reshape (gradient: a sum)."""
    x = as_variable(x, "x")
    if isinstance(reps, Variable):
        raise TypeError("tile: give reps as a tuple of ints or integer scalars, not a tensor")
    reps = [reps] if isinstance(reps, (int, np.integer)) else list(reps)
    reps = [_int_scalar(r, f"tile: reps[{i}]") for i, r in enumerate(reps)]
    for r in reps:
        if isinstance(r, int) and r < 0:
            raise ValueError(f"tile: negative repetition {r}")
    d = builtins.max(len(reps), x.ndim, ndim or 0)
    reps = [1] * (d - len(reps)) + reps
    if d > x.ndim:
        x = B.dimshuffle(x, ["x"] * (d - x.ndim) + list(range(x.ndim)))
    if d == 0 or builtins.all(isinstance(r, int) and r == 1 for r in reps):
        return x
    pattern, target, final = [], [], []
    for i, r in enumerate(reps):
        pattern += ["x", i]
        target += [r, _dim(x, i)]
        final.append(_mul_dims(r, _dim(x, i)))
    y = B.alloc(B.dimshuffle(x, pattern), *target)
    return B.reshape(y, final)


def repeat(x, repeats, axis=None):
    """NumPy's repeat: each element repeated along ``axis`` (flattened when None).  ``repeats``
    is an int or integer scalar (a broadcast and a reshape) or a static sequence of counts
    (a gather at NumPy's index pattern, the axis checked to have that length)."""
    x = as_variable(x, "x")
    if axis is None:
        x, axis = B.flatten(x), 0
    a = _axis(x, axis, "repeat")
    if isinstance(repeats, Variable) and repeats.op == "constant":
        repeats = np.asarray(repeats.attrs["value"].value)
    if isinstance(repeats, Variable) and repeats.ndim > 0:
        return _repeat_symbolic(x, repeats, a)
    if isinstance(repeats, (list, tuple, np.ndarray)):
        counts = np.asarray(repeats)
        if counts.dtype.kind not in "iu" and counts.size:
            raise TypeError(f"repeat: repeats must be integers, got dtype {counts.dtype}")
        if counts.ndim == 0 or counts.size == 1:
            repeats = int(counts.reshape(-1)[0]) if counts.size else 0
        else:
            if counts.ndim != 1 or (counts < 0).any():
                raise ValueError(f"repeat: repeats must be non-negative ints of rank <= 1, got {repeats!r}")
            n = x.type.shape[a]
            if isinstance(n, int) and n != counts.size:
                raise ValueError(f"repeat: {counts.size} repeats for axis {a} of size {n} ({x.describe()})")
            if not isinstance(n, int):
                from .type import specify_shape
                x = specify_shape(x, [counts.size if i == a else _dim(x, i) for i in range(x.ndim)])
            idx = np.repeat(np.arange(counts.size, dtype="int64"), counts.astype("int64"))
            return _take(x, constant(idx), a)
    r = _int_scalar(repeats, "repeat: repeats")
    if isinstance(r, int) and r < 0:
        raise ValueError(f"repeat: negative repeats {r}")
    if isinstance(r, int) and r == 1:
        return x
    pattern = list(range(a + 1)) + ["x"] + list(range(a + 1, x.ndim))
    target = [_dim(x, i) for i in range(a + 1)] + [r] + [_dim(x, i) for i in range(a + 1, x.ndim)]
    y = B.alloc(B.dimshuffle(x, pattern), *target)
    final = [_dim(x, i) for i in range(x.ndim)]
    final[a] = _mul_dims(final[a], r)
    return B.reshape(y, final)


def _repeat_symbolic(x, repeats, a):
    """``repeat`` with a symbolic vector of counts (Theano's ``extra_ops.repeat``): element ``j``
    of the output comes from the first ``i`` with ``cumsum(repeats)[i] > j``, a searchsorted of
    ``arange(sum(repeats))`` into the running counts, then a gather along ``a`` (its gradient
    sums each element's copies)."""
    from .extra_ops import searchsorted

    if repeats.ndim != 1 or not dt.is_int(repeats.dtype):
        raise TypeError(f"repeat: repeats must be an integer vector, got {repeats.describe()}")
    ends = cumsum(B.cast(repeats, "int64"))
    total = B.sum(B.cast(repeats, "int64"))
    idx = searchsorted(ends, B.arange(total), side="right")
    return _take(x, idx, a)


# -- scans and sorting ------------------------------------------------------------------------

def _along(x, axis, what):
    """(x, axis) with NumPy's axis=None: the flattened tensor along axis 0."""
    x = as_variable(x, "x")
    if axis is None:
        return (x if x.ndim == 1 else B.flatten(x)), 0
    if x.ndim == 0:
        raise ValueError(f"{what}: axis {axis} is out of range for the scalar {x.describe()}")
    return x, _axis(x, axis, what)


def cumsum(x, axis=None):
    """Running sum along ``axis`` (flattened when None); small ints and bools sum in int64."""
    x, a = _along(x, axis, "cumsum")
    return apply("cumsum", [x], {"axis": a})


def cumprod(x, axis=None):
    """Running product along ``axis`` (flattened when None); small ints and bools in int64."""
    x, a = _along(x, axis, "cumprod")
    return apply("cumprod", [x], {"axis": a})


def argsort(a, axis=-1, kind=None, order=None):
    """Indices (int64) that sort ``a`` along ``axis`` (flattened when None): NumPy's stable
    order whatever ``kind`` says (ties keep their order, nan last)."""
    if order is not None:
        raise ValueError("argsort: order= (structured arrays) is not supported by tensors")
    x, ax = _along(a, axis, "argsort")
    return apply("argsort", [x], {"axis": ax})


def _take_along(x, idx, axis):
    """x[..., idx, ...] with idx of x's shape (NumPy's take_along_axis): a gather whose other
    axes are indexed by broadcast aranges."""
    key = []
    for k in range(x.ndim):
        if k == axis:
            key.append(idx)
        else:
            pattern = ["x"] * x.ndim
            pattern[k] = 0
            key.append(B.dimshuffle(B.arange(_dim(x, k)), pattern))
    return x[tuple(key)]


def sort(a, axis=-1, kind=None, order=None):
    """``a`` sorted along ``axis`` (flattened when None), nan last: ``a`` gathered at its
    stable argsort, so the gradient scatters the cotangent back to where each value came from."""
    x, ax = _along(a, axis, "sort")
    return _take_along(x, argsort(x, ax, kind, order), ax)


# -- statistics and norms ---------------------------------------------------------------------

def var(x, axis=None, ddof=0, keepdims=False, corrected=False):
    """Variance over ``axis`` (Theano's argument order, NumPy's ``ddof``), as the sum of
    squared deviations from the mean over ``n - ddof`` (two passes: no cancellation).
    ``corrected=True`` is Theano's 'corrected two-pass' algorithm (Chan, Golub & LeVeque):
    ``(sum d**2 - (sum d)**2 / n) / (n - ddof)`` with ``d = x - mean``, the same value with the
    rounding error of the mean subtracted."""
    if isinstance(ddof, (bool, np.bool_)):
        raise ValueError("var/std: ddof must be an int, got a bool (Theano's order is (x, axis, ddof, "
                         "keepdims, corrected): pass keepdims= by name)")
    x = _float(as_variable(x, "x"))
    m = B.mean(x, axis, keepdims=True)
    d = B.sub(x, m)
    ss = B.sum(B.sqr(d), axis, keepdims)
    n = _size(x, B.normalize_axes(x, axis))
    if corrected:
        nf = B.cast(_as_i64(n), x.dtype) if not isinstance(n, int) else float(n)
        ss = B.sub(ss, B.true_div(B.sqr(B.sum(d, axis, keepdims)), nf))
    denom = B.cast(B.sub(_as_i64(n), ddof), x.dtype) if not isinstance(n, int) else float(n - ddof)
    return B.true_div(ss, denom)


def std(x, axis=None, ddof=0, keepdims=False, corrected=False):
    """Standard deviation: sqrt(var(...)) with the same arguments."""
    return B.sqrt(var(x, axis, ddof, keepdims, corrected))


def _vector_norm(x, L, axis, keepdims):
    a = B.abs(x)
    if L == 2:
        return B.sqrt(B.sum(B.sqr(x), axis, keepdims))
    if L == 1:
        return B.sum(a, axis, keepdims)
    if L == np.inf:
        return B.max(a, axis, keepdims)
    if L == -np.inf:
        return B.min(a, axis, keepdims)
    if L == 0:
        return B.cast(B.sum(B.cast(B.neq(x, 0), "int64"), axis, keepdims), x.dtype)
    return B.pow(B.sum(B.pow(a, float(L)), axis, keepdims), 1.0 / float(L))


def norm(x, L=2, axis=None, keepdims=False):
    """Theano's ``x.norm(L, axis)``: the L-norm of the elements over ``axis`` (all when None),
    ``(sum |x|**L) ** (1/L)``; L=2 is sqrt(sum x**2), L=inf/-inf the max/min of |x|, L=0 the
    number of nonzeros.  Int inputs compute in floatX."""
    x = _float(as_variable(x, "x"))
    if not isinstance(L, (int, float, np.integer, np.floating)) or isinstance(L, bool):
        raise TypeError(f"norm: L must be a number, got {L!r}")
    return _vector_norm(x, L, axis, keepdims)


# -- elementwise math ------------------------------------------------------------------------

def _unary_op(name, doc):
    def f(x):
        return apply(name, [as_variable(x, "x")])
    f.__name__, f.__doc__ = name, doc
    return f


arctan = _unary_op("arctan", "Elementwise arctan (tcomp's polynomial: no libm).")
log2 = _unary_op("log2", "Elementwise base-2 log (exact at powers of two).")
log10 = _unary_op("log10", "Elementwise base-10 log.")
exp2 = _unary_op("exp2", "Elementwise 2**x (exact at integers).")
isnan = _unary_op("isnan", "Elementwise isnan: a bool tensor (False for int and bool inputs).")
isinf = _unary_op("isinf", "Elementwise isinf (+-inf): a bool tensor (False for int and bool inputs).")


def arctan2(y, x):
    """Elementwise arctan2(y, x) (NumPy's argument order; C99's values at zeros and infinities)."""
    from .variable import apply_binary

    return apply_binary("arctan2", y, x)


def _one_minus_sq_sqrt(x):
    """sqrt((1 - x)(1 + x)): both factors exact near +-1, so no cancellation there."""
    return B.sqrt(B.mul(B.sub(1.0, x), B.add(1.0, x)))


def arcsin(x):
    """arctan2(x, sqrt((1 - x)(1 + x))): accurate over [-1, 1], nan outside."""
    x = _float(as_variable(x, "x"))
    return arctan2(x, _one_minus_sq_sqrt(x))


def arccos(x):
    """arctan2(sqrt((1 - x)(1 + x)), x): accurate over [-1, 1] (no cancellation near 1), nan outside."""
    x = _float(as_variable(x, "x"))
    return arctan2(_one_minus_sq_sqrt(x), x)


def _signed_abs(x):
    """|x| whose gradient is +1 at 0 (where(x < 0, -x, x)): odd functions f(x) = s f(|x|) then
    get f'(0), not the 0 that abs's sign(0) convention would give."""
    return B.where(B.lt(x, 0), B.neg(x), x)


def _odd(x, mag):
    """sign(x) * mag, with x itself at 0 (so -0.0 stays -0.0: -0.0 + 0.0 would give +0.0 in the
    formulas; the functions using this have f'(0) = 1, which the x branch's gradient is)."""
    return B.where(B.eq(x, 0), x, B.where(B.lt(x, 0), B.neg(mag), mag))


def cosh(x):
    """(e + 1/e) / 2 with e = exp(|x|); near overflow e2 * (e2 / 2) with e2 = exp(|x| / 2)."""
    x = _float(as_variable(x, "x"))
    a = B.abs(x)
    big = 80.0 if x.dtype != "float64" else 700.0
    e = B.exp(B.minimum(a, big))
    small = B.mul(0.5, B.add(e, B.true_div(1.0, e)))
    e2 = B.exp(B.mul(0.5, B.maximum(a, big)))
    large = B.mul(B.mul(0.5, e2), e2)
    return B.where(B.lt(a, big), small, large)


def sinh(x):
    """fdlibm's arrangement: t = expm1(|x|), sinh = (t + t/(t+1)) / 2 (no cancellation near 0),
    and e2 * (e2 / 2) near overflow; the sign restored last (-0.0 stays -0.0)."""
    x = _float(as_variable(x, "x"))
    a = _signed_abs(x)
    big = 80.0 if x.dtype != "float64" else 700.0
    t = B.expm1(B.minimum(a, big))
    small = B.mul(0.5, B.add(t, B.true_div(t, B.add(t, 1.0))))
    e2 = B.exp(B.mul(0.5, B.maximum(a, big)))
    large = B.mul(B.mul(0.5, e2), e2)
    return _odd(x, B.where(B.lt(a, big), small, large))


_HUGE = 2.0 ** 28   # beyond: asinh(a) = log(2a), acosh(x) = log(2x) to within an ulp


def arcsinh(x):
    """sign(x) * log1p(a + a^2 / (1 + sqrt(1 + a^2))), a = |x| (accurate near 0), and
    log(a) + ln 2 for a > 2^28 (where a^2 could overflow)."""
    x = _float(as_variable(x, "x"))
    a = _signed_abs(x)
    s = B.minimum(a, _HUGE)
    s2 = B.mul(s, s)
    small = B.log1p(B.add(s, B.true_div(s2, B.add(1.0, B.sqrt(B.add(1.0, s2))))))
    large = B.add(B.log(B.maximum(a, _HUGE)), math.log(2.0))
    return _odd(x, B.where(B.lt(a, _HUGE), small, large))


def arccosh(x):
    """log1p(t + sqrt(2t + t^2)), t = x - 1 (exact near 1); log(x) + ln 2 for x > 2^28;
    nan below 1."""
    x = _float(as_variable(x, "x"))
    s = B.minimum(B.maximum(x, 1.0), _HUGE)
    t = B.sub(s, 1.0)
    small = B.log1p(B.add(t, B.sqrt(B.add(B.mul(2.0, t), B.mul(t, t)))))
    large = B.add(B.log(B.maximum(x, _HUGE)), math.log(2.0))
    r = B.where(B.lt(x, _HUGE), small, large)
    return B.where(B.lt(x, 1.0), float("nan"), r)


def arctanh(x):
    """sign(x) * log1p(2a / (1 - a)) / 2, a = |x|: +-inf at +-1, nan beyond."""
    x = _float(as_variable(x, "x"))
    a = _signed_abs(x)
    return _odd(x, B.mul(0.5, B.log1p(B.true_div(B.mul(2.0, a), B.sub(1.0, a)))))


__all__ = ["outer", "tensordot", "batched_dot", "eye", "identity_like", "diagonal", "diag", "trace",
           "any", "all", "squeeze", "join", "roll", "tile", "repeat", "var", "std", "norm",
           "cosh", "sinh", "arcsinh", "arccosh", "arctanh", "arctan", "arctan2", "arcsin", "arccos", "log2",
           "log10", "exp2", "isnan", "isinf", "cumsum", "cumprod", "argsort", "sort"]
