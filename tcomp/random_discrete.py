"""Discrete draws of :class:`tcomp.RandomStreams`: ``choice``, ``permutation``,
``multinomial``, ``shuffle_row_elements``, and the weighted sampling the MRG streams use.

All are built from uniform draws and ordinary ops (so every backend gives the same
draws):

* a weighted category is the *exponential race* ``argmin_i E_i / p_i`` with ``E_i =
  -log U_i`` independent Exp(1) draws: category ``i`` wins with probability ``p_i / sum(p)``
  (exact; ``p`` need not be normalized, a zero weight never wins);
* the order in which the race's runners arrive is sequential sampling *without*
  replacement (NumPy's ``choice(replace=False, p=...)``): the first ``m`` arrivals;
* a uniform permutation is the (stable) argsort of i.i.d. uniform float64 keys (ties, of
  probability about ``n**2 / 2**54``, keep their positions): ``n log n`` work.
"""
from __future__ import annotations

import numpy as np

from tcomp.ir import dtypes as dt

from .random import _check_shape, _is_const, _wrap, normalize_size
from .tensor import basic as B
from .tensor.variable import Variable, as_variable

#: lower bound of the uniforms behind exponential draws: -log(u) stays finite and > 0
_TINY = 2.0 ** -60


def _expand(x: Variable, where: int) -> Variable:
    """``x`` with a broadcastable axis inserted at position ``where`` (negative: from the end)."""
    pattern = list(range(x.ndim))
    pos = where if where >= 0 else x.ndim + 1 + where
    pattern.insert(pos, "x")
    return x.dimshuffle(*pattern)


def _order(keys: Variable) -> Variable:
    """Positions of the keys along the last axis in increasing order (stable argsort)."""
    from .tensor.extra import argsort

    return argsort(keys, axis=-1)


def _exponentials(srng, dims):
    u, rng = srng._standard_uniform(dims, "float64", low=_TINY)
    return -B.log(u), rng


def _weights(p, what) -> Variable:
    pv = as_variable(p, what)
    if not dt.is_float(pv.dtype):
        pv = B.cast(pv, "float64")
    return B.cast(pv, "float64")


def weighted_draws(srng, pvals, dims):
    """Categories drawn with weights ``pvals`` (..., k) for a result of shape ``dims`` (which
    broadcasts with ``pvals``' leading axes): ``argmin(E / p)``.  Returns (draws, state)."""
    k = B.shape_i(pvals, pvals.ndim - 1)
    e, rng = _exponentials(srng, tuple(dims) + (k,))
    return B.argmin(e / pvals, axis=-1), rng


def weighted_without_replacement(srng, pvals, m):
    """``m`` distinct categories per row of ``pvals`` (..., k), in draw order: (..., m)."""
    lead = tuple(B.shape_i(pvals, i) for i in range(pvals.ndim - 1))
    k = B.shape_i(pvals, pvals.ndim - 1)
    e, rng = _exponentials(srng, lead + (k,))
    order = _order(e / pvals)
    return order[(slice(None),) * (order.ndim - 1) + (slice(0, m),)], rng


def _count(size_dims) -> Variable:
    total = None
    for d in size_dims:
        d = B.cast(as_variable(d), "int64")
        total = d if total is None else total * d
    return total if total is not None else as_variable(1)


def choice(srng, size=None, a=2, replace=True, p=None, ndim=None, dtype="int64"):
    """Theano's ``RandomStreams.choice``: ``size`` draws from ``range(a)`` (``a`` an int) or from
    the elements of the 1-d ``a``, with or without replacement, uniform or with weights ``p``."""
    items = None
    if _is_const(a):
        k = int(a)
        if k < 1:
            raise ValueError(f"choice: a must be >= 1, got {a!r}")
    else:
        av = as_variable(a, "choice a")
        if av.ndim == 0:
            if not dt.is_int(av.dtype):
                raise TypeError(f"choice: a must be an int or a 1-d tensor, got {av.describe()}")
            k = av
        elif av.ndim == 1:
            items, k = av, B.shape_i(av, 0)
        else:
            raise ValueError(f"choice: a must be an int or a 1-d tensor, got {av.describe()}")
    dims = normalize_size(size, ndim, (), "choice")
    static_k = k if isinstance(k, int) else (k.attrs["value"].value if getattr(k, "op", None) == "constant" else None)
    if not replace and static_k is not None and all(isinstance(d, (int, np.integer)) for d in dims) \
            and int(np.prod(dims, dtype=np.int64)) > int(static_k):
        raise ValueError(f"choice: cannot take {int(np.prod(dims))} distinct samples from {static_k} items "
                         "(replace=False)")
    if p is not None:
        pv = _weights(p, "choice p")
        if pv.ndim != 1:
            raise ValueError(f"choice: p must be 1-d, got {pv.describe()}")
        if replace:
            idx, rng = weighted_draws(srng, pv, dims)
        else:
            flat, rng = weighted_without_replacement(srng, pv, _count(dims))
            idx = B.reshape(flat, dims)
    elif replace:
        u, rng = srng._standard_uniform(dims, "float64")
        kk = B.cast(as_variable(k), "int64")
        idx = B.minimum(B.cast(B.floor(u * B.cast(kk, "float64")), "int64"), kk - 1)
    else:
        u, rng = srng._standard_uniform((k,), "float64")
        idx = B.reshape(_order(u)[:_count(dims)], dims)
    out = items[idx] if items is not None else B.cast(idx, dtype)
    _check_shape(out, dims, "choice")
    return _wrap(out, rng)


def permutation(srng, size=None, n=1, ndim=None, dtype="int64"):
    """Theano's ``RandomStreams.permutation``: permutations of ``range(n)``, shape ``size + (n,)``."""
    dims = normalize_size(size, ndim, (), "permutation")
    nv = n if _is_const(n) else as_variable(n, "permutation n")
    if _is_const(n) and int(n) < 0:
        raise ValueError(f"permutation: n must be >= 0, got {n!r}")
    u, rng = srng._standard_uniform(tuple(dims) + (nv if not _is_const(nv) else int(nv),), "float64")
    return _wrap(B.cast(_order(u), dtype), rng)


def multinomial(srng, size=None, n=1, pvals=(0.5, 0.5), ndim=None, dtype="int64"):
    """Theano's ``RandomStreams.multinomial``: counts of ``n`` draws over the categories of
    ``pvals`` (last axis), shape ``size + (k,)``; ``size`` None is ``pvals.shape[:-1]``
    (``n`` may be a tensor broadcasting with it)."""
    pv = _weights(pvals, "multinomial pvals")
    if pv.ndim < 1:
        raise ValueError(f"multinomial: pvals must have a category axis, got {pv.describe()}")
    nv = None if _is_const(n) else as_variable(n, "multinomial n")
    if nv is not None and not dt.is_int(nv.dtype):
        raise TypeError(f"multinomial: n must be an integer, got {nv.describe()}")
    lead = [pv[(slice(None),) * (pv.ndim - 1) + (0,)]] if pv.ndim > 1 else []
    if size is None:
        dims = normalize_size(None, ndim, lead + ([nv] if nv is not None else []), "multinomial")
    else:
        dims = normalize_size(size, ndim, (), "multinomial")
    trials = int(n) if nv is None else B.cast(B.max(nv), "int64")
    k = B.shape_i(pv, pv.ndim - 1)
    cats, rng = weighted_draws(srng, _expand(pv, -2), tuple(dims) + (trials,))  # [..., n]
    onehot = B.cast(B.eq(_expand(cats, -1), B.arange(k)), "int64")  # [..., n, k]
    if nv is not None:
        live = B.lt(B.arange(trials), _expand(nv, -1))  # [..., n]
        onehot = onehot * B.cast(_expand(live, -1), "int64")
    out = B.cast(B.sum(onehot, axis=-2), dtype)
    if out.ndim != len(dims) + 1:
        raise ValueError(f"multinomial: pvals {pv.describe()} do not broadcast to size {dims}")
    return _wrap(out, rng)


def poisson(srng, size=None, lam=1.0, ndim=None, dtype="int64"):
    """Theano's ``RandomStreams.poisson``: the number of arrivals of a rate-1 Poisson process
    in ``[0, lam]``, i.e. how many partial sums of Exp(1) draws stay <= ``lam`` (exact, but for
    a cut after ``K = lam + 10 sqrt(lam) + 20`` draws, whose tail probability is below 1e-20).
    ``lam`` may be a tensor (``K`` then follows its maximum); work is ``K`` per element."""
    from .tensor.extra import cumsum

    if _is_const(lam):
        if not float(lam) >= 0:
            raise ValueError(f"poisson: lam must be >= 0, got {lam!r}")
        lv = as_variable(float(lam))
        top = float(lam)
        k = int(np.ceil(top + 10 * np.sqrt(top) + 20))
        dims = normalize_size(size, ndim, (), "poisson")
    else:
        lv = as_variable(lam, "poisson lam")
        dims = normalize_size(size, ndim, (lv,), "poisson")
        top = B.cast(B.max(lv), "float64")
        k = B.cast(B.ceil(top + 10 * B.sqrt(top) + 20), "int64")
    lv = B.cast(lv, "float64")
    e, rng = _exponentials(srng, tuple(dims) + (k,))
    arrivals = B.le(cumsum(e, axis=-1), _expand(lv, -1))
    out = B.cast(B.sum(B.cast(arrivals, "int64"), axis=-1), dtype)
    _check_shape(out, dims, "poisson")
    return _wrap(out, rng)


def shuffle_row_elements(srng, input):
    """Theano's ``shuffle_row_elements``: each row (last axis) permuted independently."""
    x = as_variable(input, "shuffle_row_elements input")
    if x.ndim == 0:
        raise ValueError(f"shuffle_row_elements: needs at least one axis, got {x.describe()}")
    lead = tuple(B.shape_i(x, i) for i in range(x.ndim - 1))
    u, rng = srng._standard_uniform(lead + (B.shape_i(x, x.ndim - 1),), "float64")
    perm = _order(u)
    if x.ndim == 1:
        return _wrap(x[perm], rng)
    flat = B.reshape(x, (-1, B.shape_i(x, x.ndim - 1)))
    rows = B.reshape(perm, (-1, B.shape_i(x, x.ndim - 1)))
    picked = flat[B.arange(B.shape_i(flat, 0)).dimshuffle(0, "x"), rows]
    return _wrap(B.reshape(picked, x.shape), rng)
