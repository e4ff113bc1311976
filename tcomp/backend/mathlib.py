"""tcomp's vectorizable transcendental math library (DESIGN.md principle 7).

LLVM lowers ``llvm.exp``/``llvm.log``/... to scalar libm calls on the CPU (which blocks the
loop vectorizer) and cannot select them at all on NVPTX.  So tcomp emits its own IR: range
reduction + polynomial, using only fadd/fsub/fmul/fdiv, fcmp/select, bitcasts, integer ops and
the intrinsics in ``ALLOWED_INTRINSICS`` (fabs, floor, ceil, trunc, rint, fma, copysign, sqrt,
minnum, maxnum).  Every function accepts ``float``/``double`` or ``<N x float>``/``<N x double>``
and contains no branches, so the same code serves scalar loops, explicit vector bodies and GPU
kernels.

Each function is emitted once per module and value type as an ``internal alwaysinline``
function named ``tcomp.<name>.<type>`` (e.g. ``tcomp.exp.v8f32``); callers get a ``call`` that
the inliner removes.  Accuracy and special values follow NumPy; the measured max ulp errors come from
``tcomp.backend.mathlib_accuracy.measure_ulp_table()`` (all functions <= 2.6 ulp in float32
and float64; tests assert <= 4).  The bodies rely on strict IEEE rounding (TwoSum/fma error
terms): callers may put fast-math flags on their own instructions, but must not mark kernels
that inline these functions with ``"unsafe-fp-math"``/``nnan``/``ninf``/``reassoc``.
"""
from __future__ import annotations

from llvmlite import ir

from .mathlib_core import (
    ALLOWED_INTRINSICS,
    Ctx,
    exp_core,
    expm1_core,
    log_core,
)
from .mathlib_pow import pow_core
from .mathlib_trig import erf_core, sincos_core

__all__ = ["emit_unary", "emit_pow", "SUPPORTED_UNARY", "ALLOWED_INTRINSICS"]


def _log1p(cx: Ctx, x):
    """log1p(x) = log(u) + c/u with u = 1 + x and c its rounding error (Fast2Sum, ordered by
    magnitude): log(u + c) ~ log(u) + c/u recovers the bits that 1 + x lost."""
    one = cx.c(1.0)
    u = cx.add(one, x)
    c_small = cx.sub(x, cx.sub(u, one))
    c_big = cx.sub(one, cx.sub(u, x))
    c = cx.select(cx.cmp(">", cx.fabs(x), one), c_big, c_small)
    res = cx.add(_call(cx, "log", u), cx.div(c, u))
    inf = float("inf")
    res = cx.select(cx.cmp("==", x, cx.c(inf)), cx.c(inf), res)
    res = cx.select(cx.cmp("==", x, cx.c(-1.0)), cx.c(-inf), res)
    res = cx.select(cx.cmp("==", x, cx.c(0.0)), x, res)                  # keeps -0.0
    return cx.select(cx.cmp("ult", x, cx.c(-1.0)), cx.c(float("nan")), res)


def _tanh(cx: Ctx, x):
    """|x| < 0.625: x + x^3 P(x^2) (minimax, relative error well below an ulp).  Above:
    tanh|x| = 1 - 2/(e+2) with e = expm1(2|x|), well conditioned there; |x| is clamped where
    tanh rounds to 1 so e stays finite."""
    ax = cx.fabs(x)
    z = cx.mul(x, x)
    small = cx.fma(cx.mul(z, x), cx.horner(z, cx.tab["tanh"]), x)
    small = cx.select(cx.cmp("==", x, cx.c(0.0)), x, small)         # keeps -0.0
    sat = 9.1 if cx.dtype == "float32" else 19.1
    axc = cx.minnum(ax, cx.c(sat + 1.0))
    e = _call(cx, "expm1", cx.add(axc, axc))
    large = cx.sub(cx.c(1.0), cx.div(cx.c(2.0), cx.add(e, cx.c(2.0))))
    t = cx.select(cx.cmp("<", ax, cx.c(0.625)), small, cx.copysign(large, x))
    return cx.select(cx.isnan(x), x, t)


def _sigmoid(cx: Ctx, x):
    """1/(1+e) for x >= 0 and e/(1+e) for x < 0 with e = exp(-|x|): never overflows, and the
    tiny tail for x << 0 keeps full relative precision (it equals exp(x))."""
    e = _call(cx, "exp", cx.neg(cx.fabs(x)))
    d = cx.add(cx.c(1.0), e)
    pos = cx.div(cx.c(1.0), d)
    neg = cx.div(e, d)
    return cx.select(cx.cmp("uge", x, cx.c(0.0)), pos, neg)


def _softplus(cx: Ctx, x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): no overflow for large x, no loss of the
    exp(x) tail for x << 0."""
    e = _call(cx, "exp", cx.neg(cx.fabs(x)))
    res = cx.add(cx.maxnum(x, cx.c(0.0)), _call(cx, "log1p", e))
    return cx.select(cx.isnan(x), x, res)


_UNARY = {
    "exp": exp_core,
    "expm1": expm1_core,
    "log": log_core,
    "log1p": _log1p,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "softplus": _softplus,
    "erf": erf_core,
    "sin": lambda cx, x: sincos_core(cx, x, want_cos=False),
    "cos": lambda cx, x: sincos_core(cx, x, want_cos=True),
    "sqrt": lambda cx, x: cx.sqrt(x),
}

SUPPORTED_UNARY: frozenset[str] = frozenset(_UNARY)


def _get_function(module: ir.Module, name: str, ty: ir.Type, nargs: int, body) -> ir.Function:
    """Get or create ``tcomp.<name>.<type>`` in ``module``; ``body(cx, *args)`` builds it once."""
    probe = Ctx(ir.IRBuilder(), ty)                    # validates ty, gives the suffix
    fname = f"tcomp.{name}.{probe.suffix}"
    fn = module.globals.get(fname)
    if fn is not None:
        return fn
    fn = ir.Function(module, ir.FunctionType(ty, [ty] * nargs), fname)
    fn.linkage = "internal"
    fn.attributes.add("alwaysinline")
    fn.attributes.add("nounwind")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    cx = Ctx(builder, ty)
    builder.ret(body(cx, *fn.args))
    return fn


def _call(cx: Ctx, name: str, x):
    """Call another library function from inside a function body (shared, inlined later)."""
    fn = _get_function(cx.b.module, name, cx.ty, 1, _UNARY[name])
    return cx.b.call(fn, [x])


def emit_unary(builder: ir.IRBuilder, name: str, x: ir.Value) -> ir.Value:
    """``name(x)`` for x of type float, double, <N x float> or <N x double>."""
    if name not in _UNARY:
        raise ValueError(f"tcomp.mathlib.emit_unary: unknown function {name!r}; "
                         f"supported: {sorted(SUPPORTED_UNARY)}")
    fn = _get_function(builder.module, name, x.type, 1, _UNARY[name])
    return builder.call(fn, [x])


def emit_pow(builder: ir.IRBuilder, a: ir.Value, b: ir.Value) -> ir.Value:
    """``a ** b`` with NumPy float semantics; a and b must have the same float (vector) type."""
    if a.type != b.type:
        raise TypeError(f"tcomp.mathlib.emit_pow: base has type {a.type} but exponent has type {b.type}; "
                        "convert them to one float type first")
    fn = _get_function(builder.module, "pow", a.type, 2, pow_core)
    return builder.call(fn, [a, b])
