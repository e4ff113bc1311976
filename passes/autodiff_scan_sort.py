"""VJP rules for ``cumsum``, ``cumprod`` and ``argsort`` (rows of ``VJP_RULES``).

* ``cumsum``: the cotangent summed from the end, ``flip(cumsum(flip(ct)))``.
* ``cumprod``: Theano's rule ``flip(cumsum(flip(ct * y))) / x`` up to each row's first zero,
  and the exact value at and after it (Theano's divides by zero there: inf/nan).
* ``argsort``: an int64 result, zero gradient (the input stays connected, as in Theano).
"""
from __future__ import annotations

from .autodiff import const, match_type, op, register_vjp


def _flip(g, v, axis):
    index = (("s", None, None, None),) * axis + (("s", None, None, -1),)
    return op(g, "subtensor", v, index=index)


def _reverse_cumsum(g, v, axis, ref):
    return match_type(g, _flip(g, op(g, "cumsum", _flip(g, v, axis), axis=axis), axis), ref)


@register_vjp("cumsum")
def _cumsum(ctx):
    (x,) = ctx.operands
    return [_reverse_cumsum(ctx.graph, ctx.cotangent, ctx.attrs["axis"], x)]


@register_vjp("cumprod")
def _cumprod(ctx):
    """d/dx_j = sum_{k >= j} ct_k prod_{i <= k, i != j} x_i, exact with zeros: before a row's
    first zero it is Theano's revcumsum(ct * y)_j / x_j; at the first zero j0 it is
    revcumsum(ct * y')_j0 with y' the cumprod of x with x_j0 replaced by 1; after it, 0 (every
    product contains x_j0).  Differentiating this again is exact away from zeros; at an exact
    zero the masks are constants, so the second derivative misses the terms through x_j0
    (tests/test_ops_theano_extra.py checks the first order there)."""
    g = ctx.graph
    (x,) = ctx.operands
    axis = ctx.attrs["axis"]
    d = g.type(x).dtype
    ct, y = ctx.cotangent, ctx.node
    zero = op(g, "eq", x, const(g, 0, d))
    nz = op(g, "cumsum", op(g, "cast", zero, dtype="int64"), axis=axis)          # zeros so far
    before = op(g, "eq", nz, const(g, 0, "int64"))
    first = op(g, "logical_and", zero, op(g, "eq", nz, const(g, 1, "int64")))
    safe_x = op(g, "where", before, x, const(g, 1, d))
    plain = op(g, "truediv", _reverse_cumsum(g, op(g, "mul", ct, y), axis, x), safe_x)
    y1 = op(g, "cumprod", op(g, "where", first, const(g, 1, d), x), axis=axis)
    at_zero = _reverse_cumsum(g, op(g, "mul", ct, y1), axis, x)
    grad = op(g, "where", before, plain, op(g, "where", first, at_zero, const(g, 0, d)))
    return [match_type(g, grad, x)]


@register_vjp("argsort")
def _argsort(ctx):
    return [None]
