"""VJP rules for conv2d, pool2d and their gradient ops (rows of ``autodiff.VJP_RULES``).

conv2d is bilinear, ``y = B(x, w)``, and its two gradient ops are the two partial
transposes: ``conv2d_grad_input(gy, w) = d<gy, B(x, w)>/dx`` and
``conv2d_grad_filters(x, gy) = d<gy, B(x, w)>/dw``.  Each of the three is bilinear too, and
the transpose of each is again one of the three, so gradients of any order stay inside
this closed set (no new ops, exact shapes):

* ``<g, grad_input(gy, w)> = <gy, B(g, w)>``: d/dgy = conv2d(g, w), d/dw = grad_filters(g, gy)
* ``<g, grad_filters(x, gy)> = <gy, B(x, g)>``: d/dgy = conv2d(x, g), d/dx = grad_input(gy, g)

Pooling: ``pool2d_grad(x, gy)`` is linear in ``gy`` and piecewise constant in ``x`` (the
arg-max or the window counts do not move under a small change of ``x``), so its VJP has no
``x`` part, and its ``gy`` part is ``pool2d_grad_grad(x, g)``, whose own transpose is
``pool2d_grad`` again.  Random ops are not differentiable (``OpDef.differentiable`` is
False), so they need no row.
"""
from __future__ import annotations

from tcomp.ir import dtypes as dt

from .autodiff import cast_to, match_type, op, register_vjp

_CONV_KEYS = ("pad", "stride", "dilation", "filter_flip")


def _conv_attrs(attrs: dict) -> dict:
    return {k: attrs[k] for k in _CONV_KEYS}


def _fit(g, v: int, ref: int) -> int:
    """``v`` cast and retyped to exactly ``ref``'s type (dtype promotion may have widened it)."""
    return match_type(g, cast_to(g, v, g.type(ref).dtype), ref)


def _spatial(g, ref: int, attr: str, base: dict) -> tuple:
    """Attrs with ``attr`` = the last two dims of ``ref`` (static ints, else None), plus the
    run-time dim operands (``shape`` nodes of ``ref``) that fill the None entries."""
    shape = g.type(ref).shape[2:]
    entries = tuple(d if isinstance(d, int) else None for d in shape)
    dims = [op(g, "shape", ref, axis=2 + i) for i, d in enumerate(shape) if not isinstance(d, int)]
    return dict(base, **{attr: entries}), dims


def _as_float(g, v: int, dtype: str) -> int:
    return v if dt.is_float(g.type(v).dtype) else cast_to(g, v, dtype)


def _grad_input(g, gy: int, w: int, x_ref: int, attrs: dict) -> int:
    a, dims = _spatial(g, x_ref, "input_shape", _conv_attrs(attrs))
    return _fit(g, g.add_node("conv2d_grad_input", [gy, w] + dims, a), x_ref)


def _grad_filters(g, x: int, gy: int, w_ref: int, attrs: dict) -> int:
    a, dims = _spatial(g, w_ref, "filter_shape", _conv_attrs(attrs))
    return _fit(g, g.add_node("conv2d_grad_filters", [x, gy] + dims, a), w_ref)


def _conv(g, x: int, w: int, ref: int, attrs: dict) -> int:
    return _fit(g, g.add_node("conv2d", [x, w], _conv_attrs(attrs)), ref)


@register_vjp("conv2d")
def _vjp_conv2d(ctx):
    g, (x, w), gy = ctx.graph, ctx.operands, ctx.cotangent
    dtype = ctx.out_type.dtype
    dx = _grad_input(g, gy, _as_float(g, w, dtype), x, ctx.attrs) if ctx.wants[0] else None
    dw = _grad_filters(g, _as_float(g, x, dtype), gy, w, ctx.attrs) if ctx.wants[1] else None
    return [dx, dw]


@register_vjp("conv2d_grad_input")
def _vjp_conv2d_grad_input(ctx):
    g, ct = ctx.graph, ctx.cotangent
    gy, w = ctx.operands[:2]
    dtype = ctx.out_type.dtype
    dgy = _conv(g, ct, _as_float(g, w, dtype), gy, ctx.attrs) if ctx.wants[0] else None
    dw = _grad_filters(g, ct, _as_float(g, gy, dtype), w, ctx.attrs) if ctx.wants[1] else None
    return [dgy, dw] + [None] * (len(ctx.operands) - 2)


@register_vjp("conv2d_grad_filters")
def _vjp_conv2d_grad_filters(ctx):
    g, ct = ctx.graph, ctx.cotangent
    x, gy = ctx.operands[:2]
    dtype = ctx.out_type.dtype
    dx = _grad_input(g, _as_float(g, gy, dtype), ct, x, ctx.attrs) if ctx.wants[0] else None
    dgy = _conv(g, _as_float(g, x, dtype), ct, gy, ctx.attrs) if ctx.wants[1] else None
    return [dx, dgy] + [None] * (len(ctx.operands) - 2)


@register_vjp("pool2d")
def _vjp_pool2d(ctx):
    (x,) = ctx.operands
    return [_fit(ctx.graph, ctx.graph.add_node("pool2d_grad", [x, ctx.cotangent], dict(ctx.attrs)), x)]


@register_vjp("pool2d_grad")
def _vjp_pool2d_grad(ctx):
    x, gy = ctx.operands
    if not ctx.wants[1]:
        return [None, None]
    return [None, _fit(ctx.graph, ctx.graph.add_node("pool2d_grad_grad", [x, ctx.cotangent], dict(ctx.attrs)), gy)]


@register_vjp("pool2d_grad_grad")
def _vjp_pool2d_grad_grad(ctx):
    x, gv = ctx.operands
    if not ctx.wants[1]:
        return [None, None]
    return [None, _fit(ctx.graph, ctx.graph.add_node("pool2d_grad", [x, ctx.cotangent], dict(ctx.attrs)), gv)]
