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

import math

from llvmlite import ir

from .mathlib_core import (
    ALLOWED_INTRINSICS,
    LN2,
    Ctx,
    exp_core,
    expm1_core,
    log_core,
)
from .mathlib_inv import atan2_core, atan_core, exp2_core, log2_core, log10_core
from .mathlib_pow import pow_core
from .mathlib_trig import erf_core, sincos_core

__all__ = ["emit_unary", "emit_pow", "emit_atan2", "SUPPORTED_UNARY", "ALLOWED_INTRINSICS"]


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
    """tanh on a = |x|, the sign of x or-ed back in at the end (both sides are >= 0, so -0.0 ->
    -0.0, +-inf -> +-1; nan takes the small side through the unordered compare).  The body is
    branch-free, so both sides are always evaluated: in a fused loop every op and every step of
    the longest dependency chain costs time (the out-of-order window holds only a few
    iterations), hence the choices below.

    a < 0.625: a + a^3 P(a^2) (minimax).  Above: 1 - 2/d, d = exp(2a) + 1 = 2^k (1 + q) + 1 in
    one fma, q = expm1(r), r = 2a - k ln2, with k and 2^(k+1) both from one magic-number fma.
    a is clamped where tanh rounds to 1, so k < 60: no over/underflow handling, no expm1 call.
    The errors of q and of 2/d (<= 0.45) shrink before they reach the result, which lets q use
    a shorter polynomial (``tanh_exp``, Estrin-style in float32 for a shorter chain) and float32
    drop the low part of ln2 (k * 2^-24 ln2 relative error, weighted by 2e/(e+1)^2 <= 0.35: below
    0.01 ulp).  Max error 1.12 ulp in float32 (1.21 over every float32 in [2^-12, 10.5]) and 1.09
    in float64; <= 0.85 ulp below the switch."""
    a = cx.fabs(x)
    z = cx.mul(a, a)
    small = cx.fma(cx.mul(z, a), cx.horner(z, cx.tab["tanh"]), a)
    sat = 9.1 if cx.dtype == "float32" else 19.1
    ac = cx.minnum(a, cx.c(sat + 1.0))
    # kb = rint(2 ac / ln2) + magic: its low bits hold k + bias + 1, so 2^(k+1) is one shift away
    magic = 1.5 * 2.0 ** cx.mant + cx.bias + 1
    kb = cx.fma(ac, cx.c(2 / math.log(2)), cx.c(magic))
    nk = cx.sub(cx.c(magic), kb)                                       # -k, exact
    s2 = cx.as_float(cx.b.shl(cx.as_int(kb), cx.ci(cx.mant)))          # 2^(k+1)
    ln2_hi, ln2_lo = cx.split(LN2, cx.mant + 1)
    h = cx.fma(nk, cx.c(ln2_hi / 2), ac)                               # ac - k ln2/2 = r/2
    if cx.dtype == "float64":
        h = cx.fma(nk, cx.c(ln2_lo / 2), h)
    # q/2 = expm1(2h)/2 = h + h^2 (1 + 4 c0 h + 8 c1 h^2 + ...): exact power-of-2 rescaling
    co = [c * 2.0 ** (2 + i) for i, c in enumerate(cx.tab["tanh_exp"])]
    h2 = cx.mul(h, h)
    if len(co) == 4:      # Estrin: 3 steps after h^2 instead of 5
        inner = cx.fma(h2, cx.fma(cx.c(co[3]), h2, cx.fma(cx.c(co[2]), h, cx.c(co[1]))),
                       cx.fma(cx.c(co[0]), h, cx.c(1.0)))
    else:
        inner = cx.fma(h, cx.horner(h, co), cx.c(1.0))
    d = cx.fma(s2, cx.fma(h2, inner, h), cx.fma(s2, cx.c(0.5), cx.c(1.0)))    # 2^k (1 + q) + 1
    large = cx.sub(cx.c(1.0), cx.div(cx.c(2.0), d))
    t = cx.select(cx.cmp("ult", a, cx.c(0.625)), small, large)
    sign = cx.b.and_(cx.as_int(x), cx.ci(-(1 << (cx.bits - 1))))      # the sign bit
    return cx.as_float(cx.b.or_(cx.as_int(t), sign))


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
    "arctan": atan_core,
    "log2": log2_core,
    "log10": log10_core,
    "exp2": exp2_core,
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


def emit_atan2(builder: ir.IRBuilder, y: ir.Value, x: ir.Value) -> ir.Value:
    """``arctan2(y, x)`` with NumPy (C99) semantics; y and x must have the same float (vector) type."""
    if y.type != x.type:
        raise TypeError(f"tcomp.mathlib.emit_atan2: y has type {y.type} but x has type {x.type}; "
                        "convert them to one float type first")
    fn = _get_function(builder.module, "atan2", y.type, 2, atan2_core)
    return builder.call(fn, [y, x])
