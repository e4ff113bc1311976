"""VJP rules for ``cumsum``, ``cumprod`` and ``argsort`` (rows of ``VJP_RULES``).

* ``cumsum``: the cotangent summed from the end, ``flip(cumsum(flip(ct)))``.
* ``cumprod``: Theano's rule, ``flip(cumsum(flip(ct * y))) / x``: exact where x != 0; at a
  zero of x it divides by zero (inf/nan), as Theano's CumOp does.
* ``argsort``: an int64 result, zero gradient (the input stays connected, as in Theano).
"""
from __future__ import annotations

from .autodiff import match_type, op, register_vjp


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
    g = ctx.graph
    (x,) = ctx.operands
    s = _reverse_cumsum(g, op(g, "mul", ctx.cotangent, ctx.node), ctx.attrs["axis"], x)
    return [op(g, "truediv", s, x)]


@register_vjp("argsort")
def _argsort(ctx):
    return [None]
