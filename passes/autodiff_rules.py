"""VJP rules for tcomp's built-in ops (rows of ``tcomp.passes.autodiff.VJP_RULES``).

Conventions at non-differentiable points (stated once, tested in tests/test_autodiff.py):

* ``abs``/``relu`` at 0: gradient 0 (sign(0) = 0, Theano's and JAX's choice).
* ``maximum``/``minimum`` ties and ``max``/``min`` reductions with several extrema: the
  gradient is split equally among the tied operands/elements (JAX's choice), so that
  d/dx max(x, x) = 1; Theano gives the full gradient to every tie (d/dx max(x, x) = 2).
* ``pow(a, b)``: d/db uses log(a) with a = 0 replaced by 1, so d/db = 0 at a = 0 (the
  limit of a**b log a for b > 0); d/da is 0 where b == 0 (so 0**0 has gradient 0, not nan).
  For a < 0, d/db is nan (the power is not real-differentiable in b there).
* ``prod``: exact with zeros (d/dx_j = product of the others, no division by zero),
  and written so that its own gradient (second order) is exact with zeros too.
* ``mod``: d/da = 1, d/db = -floor(a / b) (NumPy's sign convention, result has b's sign).
* ``set_subtensor`` with repeated advanced indices: every occurrence gets the cotangent
  of the element it writes (Theano's choice), although only the last write survives.
* ``cast``: float -> float passes the cotangent through (cast back); a cast to or from an
  integer/bool type passes nothing (integer nodes never carry cotangents), so a float input
  reached only through one gets a zero gradient (Theano's Cast.grad gives zeros).
* piecewise-constant ops (``floor``, ``ceil``, ``round``, ``sign``, ``floordiv``) and
  int/bool-valued ones (comparisons, logical ops, ``argmax``/``argmin``) have a zero
  gradient, including at their jumps (Theano's choice), not a disconnected input.
"""
from __future__ import annotations

import math

import numpy as np

from tcomp.ir import dtypes as dt
from tcomp.ir.ops.indexing import is_ref, ref_index

from .autodiff import broadcast_like, cast_to, const, expand_reduced, match_type, op, register_vjp, sum_to, zeros_like

# -- elementwise unary ------------------------------------------------------------------


def _unary(name):
    """Register ``local(g, x, out, ct) -> node``: the cotangent of x, typed like x."""
    def deco(local):
        @register_vjp(name)
        def rule(ctx):
            g = ctx.graph
            (x,) = ctx.operands
            return [local(g, x, ctx.node, ctx.cotangent)]
        return local
    return deco


def _c(g, v, like):
    return const(g, v, g.type(like).dtype)


@_unary("neg")
def _neg(g, x, y, ct):
    return op(g, "neg", ct)


@_unary("abs")
def _abs(g, x, y, ct):
    return op(g, "mul", ct, op(g, "sign", x))


@_unary("relu")
def _relu(g, x, y, ct):
    return op(g, "where", op(g, "gt", x, _c(g, 0, x)), ct, _c(g, 0, ct))


@_unary("exp")
def _exp(g, x, y, ct):
    return op(g, "mul", ct, y)


@_unary("log")
def _log(g, x, y, ct):
    return op(g, "truediv", ct, x)


@_unary("log1p")
def _log1p(g, x, y, ct):
    return op(g, "truediv", ct, op(g, "add", x, _c(g, 1, x)))


@_unary("expm1")
def _expm1(g, x, y, ct):
    return op(g, "mul", ct, op(g, "add", y, _c(g, 1, y)))


@_unary("sqrt")
def _sqrt(g, x, y, ct):
    return op(g, "truediv", op(g, "mul", ct, _c(g, 0.5, ct)), y)


@_unary("tanh")
def _tanh(g, x, y, ct):
    return op(g, "mul", ct, op(g, "sub", _c(g, 1, y), op(g, "mul", y, y)))


@_unary("sigmoid")
def _sigmoid(g, x, y, ct):
    return op(g, "mul", ct, op(g, "mul", y, op(g, "sub", _c(g, 1, y), y)))


@_unary("softplus")
def _softplus(g, x, y, ct):
    return op(g, "mul", ct, op(g, "sigmoid", x))


@_unary("sin")
def _sin(g, x, y, ct):
    return op(g, "mul", ct, op(g, "cos", x))


@_unary("cos")
def _cos(g, x, y, ct):
    return op(g, "neg", op(g, "mul", ct, op(g, "sin", x)))


@_unary("erf")
def _erf(g, x, y, ct):
    gauss = op(g, "exp", op(g, "neg", op(g, "mul", x, x)))
    return op(g, "mul", ct, op(g, "mul", gauss, _c(g, 2.0 / math.sqrt(math.pi), x)))


@_unary("arctan")
def _arctan(g, x, y, ct):
    return op(g, "truediv", ct, op(g, "add", _c(g, 1, x), op(g, "mul", x, x)))


@_unary("log2")
def _log2(g, x, y, ct):
    return op(g, "truediv", ct, op(g, "mul", x, _c(g, math.log(2.0), x)))


@_unary("log10")
def _log10(g, x, y, ct):
    return op(g, "truediv", ct, op(g, "mul", x, _c(g, math.log(10.0), x)))


@_unary("exp2")
def _exp2(g, x, y, ct):
    return op(g, "mul", ct, op(g, "mul", y, _c(g, math.log(2.0), y)))


# -- elementwise binary ------------------------------------------------------------------


def _binary(name):
    """Register ``local(g, a, b, out, ct, wants) -> (ga, gb)`` computed in the output's
    broadcast shape; the rule sums them back to each operand's type."""
    def deco(local):
        @register_vjp(name)
        def rule(ctx):
            g = ctx.graph
            a, b = ctx.operands
            ga, gb = local(g, a, b, ctx.node, ctx.cotangent, ctx.wants)
            return [sum_to(g, ga, a) if ga is not None and ctx.wants[0] else None,
                    sum_to(g, gb, b) if gb is not None and ctx.wants[1] else None]
        return local
    return deco


@_binary("add")
def _add(g, a, b, y, ct, wants):
    return ct, ct


@_binary("sub")
def _sub(g, a, b, y, ct, wants):
    return ct, (op(g, "neg", ct) if wants[1] else None)


@_binary("mul")
def _mul(g, a, b, y, ct, wants):
    return (op(g, "mul", ct, b) if wants[0] else None), (op(g, "mul", ct, a) if wants[1] else None)


@_binary("truediv")
def _truediv(g, a, b, y, ct, wants):
    ga = op(g, "truediv", ct, b) if wants[0] else None
    gb = op(g, "neg", op(g, "truediv", op(g, "mul", ct, y), b)) if wants[1] else None
    return ga, gb


@_binary("mod")
def _mod(g, a, b, y, ct, wants):
    gb = None
    if wants[1]:
        q = op(g, "floor", op(g, "truediv", a, b))
        gb = op(g, "neg", op(g, "mul", ct, q))
    return ct, gb


@_binary("pow")
def _pow(g, a, b, y, ct, wants):
    ga = gb = None
    if wants[0]:
        bm1 = op(g, "sub", b, const(g, 1, g.type(b).dtype))
        local = op(g, "mul", b, op(g, "pow", a, bm1))
        local = op(g, "where", op(g, "eq", b, const(g, 0, g.type(b).dtype)), _c(g, 0, ct), local)
        ga = op(g, "mul", ct, local)
    if wants[1]:
        safe_a = op(g, "where", op(g, "eq", a, _c(g, 0, a)), _c(g, 1, a), a)
        gb = op(g, "mul", ct, op(g, "mul", y, op(g, "log", safe_a)))
    return ga, gb


@_binary("arctan2")
def _arctan2(g, a, b, y, ct, wants):
    """d atan2(a, b) = (b da - a db) / (a^2 + b^2)."""
    r2 = op(g, "add", op(g, "mul", a, a), op(g, "mul", b, b))
    ga = op(g, "truediv", op(g, "mul", ct, b), r2) if wants[0] else None
    gb = op(g, "neg", op(g, "truediv", op(g, "mul", ct, a), r2)) if wants[1] else None
    return ga, gb


def _chooser(g, a, b, ct, strict):
    """Cotangent share of ``a`` in maximum/minimum: all of it where a wins, half on ties."""
    zero = _c(g, 0, ct)
    half = op(g, "mul", ct, _c(g, 0.5, ct))
    return op(g, "where", op(g, strict, a, b), ct, op(g, "where", op(g, "eq", a, b), half, zero))


@_binary("maximum")
def _maximum(g, a, b, y, ct, wants):
    return (_chooser(g, a, b, ct, "gt") if wants[0] else None), (_chooser(g, b, a, ct, "gt") if wants[1] else None)


@_binary("minimum")
def _minimum(g, a, b, y, ct, wants):
    return (_chooser(g, a, b, ct, "lt") if wants[0] else None), (_chooser(g, b, a, ct, "lt") if wants[1] else None)


@register_vjp("where")
def _where(ctx):
    g = ctx.graph
    c, a, b = ctx.operands
    ct = ctx.cotangent
    zero = _c(g, 0, ct)
    ga = sum_to(g, op(g, "where", c, ct, zero), a) if ctx.wants[1] else None
    gb = sum_to(g, op(g, "where", c, zero, ct), b) if ctx.wants[2] else None
    return [None, ga, gb]


@register_vjp("cast")
def _cast(ctx):
    g = ctx.graph
    (x,) = ctx.operands
    if not (dt.is_float(g.type(x).dtype) and dt.is_float(ctx.out_type.dtype)):
        return [None]
    return [cast_to(g, ctx.cotangent, g.type(x).dtype)]


#: ops whose gradient is zero: piecewise constant (the derivative is 0 wherever it exists),
#: or a bool/int result, which never carries a cotangent (their rows are listed so that the
#: table states the convention; autodiff never calls a rule for a bool node)
ZERO_GRADIENT = ("sign", "floor", "ceil", "round", "floordiv", "eq", "neq", "lt", "le", "gt", "ge",
                 "logical_not", "logical_and", "logical_or", "logical_xor", "argmax", "argmin", "isnan", "isinf")


def _zero_gradient(ctx):
    """No operand gets a contribution; an input that reaches the cost only through such
    ops gets zeros from the walk (Theano: ``zeros_like(x)``), not "disconnected input"."""
    return [None] * len(ctx.operands)


for _name in ZERO_GRADIENT:
    register_vjp(_name)(_zero_gradient)


# -- reductions -----------------------------------------------------------------------------


def _reduction(ctx):
    """(graph, x, axes, cotangent expanded to keepdims form)."""
    g = ctx.graph
    (x,) = ctx.operands
    axes = tuple(ctx.attrs["axis"])
    ct = expand_reduced(g, ctx.cotangent, axes, ctx.attrs["keepdims"], g.type(x).ndim)
    return g, x, axes, ct


def _count(g, x, axes, dtype):
    """Number of elements reduced over ``axes`` of x, as a scalar of ``dtype``."""
    t = g.type(x)
    static = 1
    dyn = None
    for a in axes:
        d = t.shape[a]
        if isinstance(d, int):
            static *= d
        else:
            s = op(g, "shape", x, axis=a)
            dyn = s if dyn is None else op(g, "mul", dyn, s)
    n = const(g, float(static), dtype)
    if dyn is not None:
        n = op(g, "mul", n, cast_to(g, dyn, dtype))
    return n


@register_vjp("sum")
def _sum(ctx):
    g, x, axes, ct = _reduction(ctx)
    return [cast_to(g, broadcast_like(g, cast_to(g, ct, g.type(x).dtype), x), g.type(x).dtype)]


@register_vjp("mean")
def _mean(ctx):
    g, x, axes, ct = _reduction(ctx)
    dtype = g.type(x).dtype
    scaled = op(g, "truediv", ct, _count(g, x, axes, g.type(ct).dtype))
    return [broadcast_like(g, cast_to(g, scaled, dtype), x)]


@register_vjp("prod")
def _prod(ctx):
    """d prod / d x_j = prod of the others, built so that its own derivative is right too.

    With P = product of the non-zero elements and Z = sum of the zero elements (value 0,
    derivative 1 w.r.t. each zero): no zero: P / x_j; one zero m: P at m, P / x_j * Z
    elsewhere; two zeros m, n: P * (Z - x_m) = P * x_n at the zeros, 0 elsewhere; more: 0.
    The Z factors are 0 in value but carry the derivative w.r.t. the zeros, so grad of
    grad (Hessians) is exact where the zeros are.  What multiplies a Z is first clipped to
    the dtype's finite range: where P overflows (1024 float32 values 1e10 and one 0), inf * Z
    would be nan, and those gradients are 0 (an inf input next to a 0 gives 0 there too,
    where the product of the others is really undefined).
    """
    g, x, axes, ct = _reduction(ctx)
    dtype = g.type(x).dtype
    zero = _c(g, 0, x)
    is_zero = op(g, "eq", x, zero)
    safe = op(g, "where", is_zero, _c(g, 1, x), x)
    p = op(g, "prod", safe, axis=axes, keepdims=True)
    count = op(g, "sum", cast_to(g, is_zero, dtype), axis=axes, keepdims=True)
    zsum = op(g, "sum", op(g, "where", is_zero, x, zero), axis=axes, keepdims=True)
    p_over = op(g, "truediv", p, safe)
    big = float(np.finfo(dtype).max)

    def finite(v):  # nan stays nan: maximum/minimum propagate it
        return op(g, "minimum", op(g, "maximum", v, _c(g, -big, x)), _c(g, big, x))

    one_zero = op(g, "where", is_zero, p, op(g, "mul", finite(p_over), zsum))
    two_zeros = op(g, "where", is_zero, op(g, "mul", finite(p), op(g, "sub", zsum, x)), zero)

    def count_is(k):
        return op(g, "eq", count, _c(g, k, count))

    local = op(g, "where", count_is(0), p_over,
               op(g, "where", count_is(1), one_zero, op(g, "where", count_is(2), two_zeros, zero)))
    return [match_type(g, cast_to(g, op(g, "mul", local, ct), dtype), x)]


def _extremum(ctx):
    g, x, axes, ct = _reduction(ctx)
    dtype = g.type(x).dtype
    y = expand_reduced(g, ctx.node, axes, ctx.attrs["keepdims"], g.type(x).ndim)
    hit = cast_to(g, op(g, "eq", x, y), dtype)
    share = op(g, "truediv", hit, op(g, "sum", hit, axis=axes, keepdims=True))
    return [match_type(g, cast_to(g, op(g, "mul", share, ct), dtype), x)]


register_vjp("max")(_extremum)
register_vjp("min")(_extremum)


# -- nnet -------------------------------------------------------------------------------------


def _axis(ctx):
    return ctx.attrs["axis"] % ctx.type(ctx.operands[0]).ndim


@register_vjp("softmax")
def _softmax(ctx):
    g, y, ct = ctx.graph, ctx.node, ctx.cotangent
    (x,) = ctx.operands
    s = op(g, "sum", op(g, "mul", ct, y), axis=(_axis(ctx),), keepdims=True)
    return [match_type(g, cast_to(g, op(g, "mul", y, op(g, "sub", ct, s)), g.type(x).dtype), x)]


@register_vjp("log_softmax")
def _log_softmax(ctx):
    g, y, ct = ctx.graph, ctx.node, ctx.cotangent
    (x,) = ctx.operands
    s = op(g, "sum", ct, axis=(_axis(ctx),), keepdims=True)
    return [match_type(g, cast_to(g, op(g, "sub", ct, op(g, "mul", op(g, "exp", y), s)), g.type(x).dtype), x)]


@register_vjp("logsumexp")
def _logsumexp(ctx):
    g = ctx.graph
    (x,) = ctx.operands
    axis = _axis(ctx)
    ct = expand_reduced(g, ctx.cotangent, (axis,), ctx.attrs["keepdims"], g.type(x).ndim)
    p = op(g, "softmax", x, axis=axis)
    return [match_type(g, cast_to(g, op(g, "mul", p, ct), g.type(x).dtype), x)]


# -- shape ops ----------------------------------------------------------------------------------


@register_vjp("dimshuffle")
def _dimshuffle(ctx):
    g = ctx.graph
    (x,) = ctx.operands
    pattern = tuple(ctx.attrs["pattern"])
    inverse = tuple(pattern.index(j) if j in pattern else "x" for j in range(g.type(x).ndim))
    return [match_type(g, op(g, "dimshuffle", ctx.cotangent, pattern=inverse), x)]


def reshape_like(g, v, ref):
    """Reshape ``v`` to ``ref``'s shape (run-time dims taken from ``ref``)."""
    t = g.type(ref)
    attr = tuple(d if isinstance(d, int) else None for d in t.shape)
    dims = [op(g, "shape", ref, axis=i) for i, d in enumerate(t.shape) if not isinstance(d, int)]
    return match_type(g, g.add_node("reshape", [v] + dims, {"shape": attr}), ref)


@register_vjp("reshape")
def _reshape(ctx):
    g = ctx.graph
    x = ctx.operands[0]
    return [reshape_like(g, ctx.cotangent, x)] + [None] * (len(ctx.operands) - 1)


@register_vjp("alloc")
def _alloc(ctx):
    g = ctx.graph
    v = ctx.operands[0]
    return [sum_to(g, ctx.cotangent, v)] + [None] * (len(ctx.operands) - 1)


@register_vjp("concatenate")
def _concatenate(ctx):
    g, ct = ctx.graph, ctx.cotangent
    axis = ctx.attrs["axis"]
    out = []
    # offsets are ("static", int) while every size so far is static, else ("node", int64 node id)
    start = ("static", 0)
    for x, want in zip(ctx.operands, ctx.wants):
        d = g.type(x).shape[axis]
        size = ("static", d) if isinstance(d, int) else ("node", op(g, "shape", x, axis=axis))
        if start[0] == "static" and size[0] == "static":
            stop = ("static", start[1] + size[1])
        else:
            stop = ("node", op(g, "add", _as_node(g, start), _as_node(g, size)))
        if want and dt.is_float(g.type(x).dtype):
            refs = []
            entry = ["s"]
            for kind, v in (start, stop):
                if kind == "static":
                    entry.append(v)
                else:
                    refs.append(v)
                    entry.append(f"${len(refs)}")
            entry.append(None)
            index = tuple(("s", None, None, None) for _ in range(axis)) + (tuple(entry),)
            piece = g.add_node("subtensor", [ct] + refs, {"index": index})
            out.append(match_type(g, cast_to(g, piece, g.type(x).dtype), x))
        else:
            out.append(None)
        start = stop
    return out


def _as_node(g, v):
    kind, value = v
    return const(g, value, "int64") if kind == "static" else value


@register_vjp("stack")
def _stack(ctx):
    g, ct = ctx.graph, ctx.cotangent
    axis = ctx.attrs["axis"]
    out = []
    for i, (x, want) in enumerate(zip(ctx.operands, ctx.wants)):
        if want and dt.is_float(g.type(x).dtype):
            index = tuple(("s", None, None, None) for _ in range(axis)) + (("i", i),)
            piece = g.add_node("subtensor", [ct], {"index": index})
            out.append(match_type(g, cast_to(g, piece, g.type(x).dtype), x))
        else:
            out.append(None)
    return out


# -- indexing -------------------------------------------------------------------------------------


def shift_index(index, delta):
    """The same index with every operand reference ``$k`` moved to ``$k+delta``."""
    return tuple(tuple(f"${ref_index(v) + delta}" if is_ref(v) else v for v in entry) for entry in index)


@register_vjp("subtensor")
def _subtensor(ctx):
    g = ctx.graph
    x, idx = ctx.operands[0], ctx.operands[1:]
    index = shift_index(ctx.attrs["index"], 1)
    gx = g.add_node("inc_subtensor", [zeros_like(g, x), ctx.cotangent] + list(idx), {"index": index})
    return [gx] + [None] * len(idx)


def _value_cotangent(ctx):
    """Cotangent of the value ``y`` of set_/inc_subtensor: the selected part, unbroadcast."""
    g = ctx.graph
    y, idx = ctx.operands[1], ctx.operands[2:]
    if not ctx.wants[1]:
        return None
    index = shift_index(ctx.attrs["index"], -1)
    part = g.add_node("subtensor", [ctx.cotangent] + list(idx), {"index": index})
    return sum_to(g, part, y)


@register_vjp("set_subtensor")
def _set_subtensor(ctx):
    g = ctx.graph
    idx = ctx.operands[2:]
    gx = None
    if ctx.wants[0]:
        gx = g.add_node("set_subtensor", [ctx.cotangent, _c(g, 0, ctx.cotangent)] + list(idx),
                        {"index": tuple(ctx.attrs["index"])})
    return [gx, _value_cotangent(ctx)] + [None] * len(idx)


@register_vjp("inc_subtensor")
def _inc_subtensor(ctx):
    return [ctx.cotangent, _value_cotangent(ctx)] + [None] * (len(ctx.operands) - 2)


# -- linalg ---------------------------------------------------------------------------------------


def _t(g, v):
    """Swap the last two axes."""
    n = g.type(v).ndim
    return op(g, "dimshuffle", v, pattern=tuple(range(n - 2)) + (n - 1, n - 2))


def _finish(g, v, ref):
    return match_type(g, cast_to(g, v, g.type(ref).dtype), ref)


@register_vjp("dot")
def _dot(ctx):
    g, ct = ctx.graph, ctx.cotangent
    a, b = ctx.operands
    ra, rb = g.type(a).ndim, g.type(b).ndim
    ga = gb = None
    if ra == 1 and rb == 1:
        ga = op(g, "mul", ct, b) if ctx.wants[0] else None
        gb = op(g, "mul", ct, a) if ctx.wants[1] else None
    elif ra == 2 and rb == 1:   # (m,k)(k,) -> (m,)
        if ctx.wants[0]:
            ga = op(g, "dot", op(g, "dimshuffle", ct, pattern=(0, "x")), op(g, "dimshuffle", b, pattern=("x", 0)))
        gb = op(g, "dot", _t(g, a), ct) if ctx.wants[1] else None
    elif ra == 1 and rb == 2:   # (k,)(k,n) -> (n,)
        ga = op(g, "dot", b, ct) if ctx.wants[0] else None
        if ctx.wants[1]:
            gb = op(g, "dot", op(g, "dimshuffle", a, pattern=(0, "x")), op(g, "dimshuffle", ct, pattern=("x", 0)))
    else:
        ga = op(g, "dot", ct, _t(g, b)) if ctx.wants[0] else None
        gb = op(g, "dot", _t(g, a), ct) if ctx.wants[1] else None
    return [_finish(g, ga, a) if ga is not None else None, _finish(g, gb, b) if gb is not None else None]


@register_vjp("matmul")
def _matmul(ctx):
    g, ct = ctx.graph, ctx.cotangent
    a, b = ctx.operands
    ra, rb = g.type(a).ndim, g.type(b).ndim
    if ra == 1 and rb == 1:
        return [_finish(g, op(g, "mul", ct, b), a) if ctx.wants[0] else None,
                _finish(g, op(g, "mul", ct, a), b) if ctx.wants[1] else None]
    a2 = op(g, "dimshuffle", a, pattern=("x", 0)) if ra == 1 else a
    b2 = op(g, "dimshuffle", b, pattern=(0, "x")) if rb == 1 else b
    ct2 = ct
    n = g.type(ct).ndim
    if ra == 1:   # the m axis was dropped just before the last axis
        ct2 = op(g, "dimshuffle", ct2, pattern=tuple(range(n - 1)) + ("x", n - 1))
        n += 1
    if rb == 1:   # the n axis was dropped at the end
        ct2 = op(g, "dimshuffle", ct2, pattern=tuple(range(n)) + ("x",))
    out = [None, None]
    if ctx.wants[0]:
        ga = sum_to(g, cast_to(g, op(g, "matmul", ct2, _t(g, b2)), g.type(a).dtype), a2)
        if ra == 1:
            ga = op(g, "dimshuffle", ga, pattern=(1,))
        out[0] = _finish(g, ga, a)
    if ctx.wants[1]:
        gb = sum_to(g, cast_to(g, op(g, "matmul", _t(g, a2), ct2), g.type(b).dtype), b2)
        if rb == 1:
            gb = op(g, "dimshuffle", gb, pattern=(0,))
        out[1] = _finish(g, gb, b)
    return out
