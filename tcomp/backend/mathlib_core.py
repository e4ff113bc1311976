"""Building blocks of tcomp's vectorizable math library: typed constants, the few allowed
intrinsics, exact splitting tricks, and the exp/expm1/log cores the other functions reuse.

Everything here works on a scalar ``float``/``double`` or a ``<N x float>``/``<N x double>``
value without branches (``select`` only), and calls no libm: the same IR must vectorize on the
CPU and must be selectable on NVPTX, where ``llvm.exp``/``llvm.log`` abort LLVM (DESIGN.md).
No fast-math flags are set anywhere: the error-free transformations (TwoSum, fma residuals)
below rely on strict IEEE rounding, and special values (inf, nan, -0.0) must survive.
"""
from __future__ import annotations

import math
import struct
from fractions import Fraction

from llvmlite import ir

from .mathlib_coeffs import TABLES

# The only intrinsics the library may emit (all are selectable on x86 and NVPTX).
ALLOWED_INTRINSICS = frozenset({
    "llvm.fabs", "llvm.floor", "llvm.ceil", "llvm.trunc", "llvm.rint", "llvm.fma",
    "llvm.copysign", "llvm.sqrt", "llvm.minnum", "llvm.maxnum",
})


# Exact values (100 digits) for the constants that are split into hi + lo parts.
LN2 = Fraction("0.6931471805599453094172321214581765680755001343602552541206800094933936219696947156058633269964186875")
PIO2 = Fraction("1.570796326794896619231321691639751442098584699687552910487472296153908203143104499314017412671058534")


def _f32(v: float) -> float:
    return struct.unpack("f", struct.pack("f", v))[0]


def _split_hi(v: float, bits: int, dtype: str) -> float:
    """``v`` rounded to ``bits`` significant bits, so ``k * hi`` is exact for small ints ``k``."""
    m, e = math.frexp(v)
    hi = math.ldexp(round(math.ldexp(m, bits)), e - bits)
    return _f32(hi) if dtype == "float32" else hi


class Ctx:
    """One (builder, value type) pair: typed constants and IEEE-exact operations on it."""

    def __init__(self, builder: ir.IRBuilder, ty: ir.Type):
        self.b = builder
        self.ty = ty
        self.vec = isinstance(ty, ir.VectorType)
        self.count = ty.count if self.vec else 1
        self.fty = ty.element if self.vec else ty
        if isinstance(self.fty, ir.FloatType):
            self.dtype, self.bits, self.mant, self.suffix_el = "float32", 32, 23, "f32"
        elif isinstance(self.fty, ir.DoubleType):
            self.dtype, self.bits, self.mant, self.suffix_el = "float64", 64, 52, "f64"
        else:
            raise TypeError(f"tcomp.mathlib: expected float/double or a vector of them, got {ty}")
        self.bias = (1 << (self.bits - self.mant - 2)) - 1          # 127 / 1023
        self.ity = ir.IntType(self.bits)
        if self.vec:
            self.ity = ir.VectorType(self.ity, self.count)
            self.bty = ir.VectorType(ir.IntType(1), self.count)
        else:
            self.bty = ir.IntType(1)
        self.tab = TABLES[self.dtype]

    # -- naming and constants -------------------------------------------------------------
    @property
    def suffix(self) -> str:
        return f"v{self.count}{self.suffix_el}" if self.vec else self.suffix_el

    def rnd(self, v: float) -> float:
        """``v`` rounded to this context's precision (what a constant really holds)."""
        return _f32(v) if self.dtype == "float32" else float(v)

    def c(self, v: float) -> ir.Constant:
        v = float(v)
        if self.vec:
            return ir.Constant(self.ty, [ir.Constant(self.fty, v)] * self.count)
        return ir.Constant(self.ty, v)

    def ci(self, v: int) -> ir.Constant:
        if self.vec:
            return ir.Constant(self.ity, [ir.Constant(self.ity.element, v)] * self.count)
        return ir.Constant(self.ity, v)

    def split(self, v: Fraction, hi_bits: int) -> tuple[float, float]:
        """(hi, lo): hi holds ``hi_bits`` bits of the exact ``v``, lo the rounded rest, so
        ``hi + lo`` is ``v`` to about twice the working precision."""
        hi = _split_hi(float(v), hi_bits, self.dtype)
        return hi, self.rnd(float(v - Fraction(hi)))

    # -- arithmetic (no fast-math flags: exactness matters) -------------------------------
    def add(self, a, b):
        return self.b.fadd(a, b)

    def sub(self, a, b):
        return self.b.fsub(a, b)

    def mul(self, a, b):
        return self.b.fmul(a, b)

    def div(self, a, b):
        return self.b.fdiv(a, b)

    def neg(self, a):
        return self.b.fneg(a)

    def intrinsic(self, name: str, *args):
        assert name in ALLOWED_INTRINSICS, name
        module = self.b.module
        full = f"{name}.{self.suffix}"
        fn = module.globals.get(full)
        if fn is None:
            fn = ir.Function(module, ir.FunctionType(self.ty, [self.ty] * len(args)), full)
        return self.b.call(fn, list(args))

    def fma(self, a, b, c):
        return self.intrinsic("llvm.fma", a, b, c)

    def fabs(self, a):
        return self.intrinsic("llvm.fabs", a)

    def rint(self, a):
        return self.intrinsic("llvm.rint", a)

    def floor(self, a):
        return self.intrinsic("llvm.floor", a)

    def trunc(self, a):
        return self.intrinsic("llvm.trunc", a)

    def minnum(self, a, b):
        return self.intrinsic("llvm.minnum", a, b)

    def maxnum(self, a, b):
        return self.intrinsic("llvm.maxnum", a, b)

    def copysign(self, mag, sgn):
        return self.intrinsic("llvm.copysign", mag, sgn)

    def sqrt(self, a):
        return self.intrinsic("llvm.sqrt", a)

    def clamp(self, a, lo: float, hi: float):
        """Clamp to [lo, hi]; a nan input becomes lo, so callers restore nan afterwards."""
        return self.maxnum(self.minnum(a, self.c(hi)), self.c(lo))

    def cmp(self, op: str, a, b):
        """Ordered float compare ('<', '==', ...; false on nan), or unordered 'ult', 'uge',
        'une', ... (true on nan)."""
        if op.startswith("u"):
            sym = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}[op[1:]]
            return self.b.fcmp_unordered(sym, a, b)
        return self.b.fcmp_ordered(op, a, b)

    def isnan(self, a):
        return self.b.fcmp_unordered("uno", a, a)

    def select(self, cond, a, b):
        return self.b.select(cond, a, b)

    def horner(self, x, coeffs):
        """sum(coeffs[i] * x**i) by fma Horner (coeffs lowest degree first)."""
        acc = self.c(coeffs[-1])
        for co in reversed(coeffs[:-1]):
            acc = self.fma(acc, x, self.c(co))
        return acc

    # -- bits ------------------------------------------------------------------------------
    def as_int(self, a):
        return self.b.bitcast(a, self.ity)

    def as_float(self, i):
        return self.b.bitcast(i, self.ty)

    def to_int(self, a):
        """fptosi; callers guarantee ``a`` is a small finite integer value (else poison)."""
        return self.b.fptosi(a, self.ity)

    def to_float(self, i):
        return self.b.sitofp(i, self.ty)

    def pow2i(self, k):
        """2**k for an integer vector ``k`` inside the normal exponent range."""
        return self.as_float(self.b.shl(self.b.add(k, self.ci(self.bias)), self.ci(self.mant)))

    def ldexp(self, p, k):
        """p * 2**k in two exact steps, so k may reach twice the exponent range (overflow to
        inf and gradual underflow to subnormals happen in the last multiply, rounded once)."""
        k1 = self.b.ashr(k, self.ci(1))
        k2 = self.b.sub(k, k1)
        return self.mul(self.mul(p, self.pow2i(k1)), self.pow2i(k2))

    # -- error-free transformations -------------------------------------------------------
    def two_sum(self, a, b):
        s = self.add(a, b)
        bb = self.sub(s, a)
        err = self.add(self.sub(a, self.sub(s, bb)), self.sub(b, bb))
        return s, err

    def fast_two_sum(self, a, b):
        """Requires |a| >= |b| (or a == 0)."""
        s = self.add(a, b)
        return s, self.sub(b, self.sub(s, a))

    def two_prod(self, a, b):
        p = self.mul(a, b)
        return p, self.fma(a, b, self.neg(p))


# --------------------------------------------------------------------------------------------
# exp / expm1 cores
# --------------------------------------------------------------------------------------------
def _exp_limits(cx: Ctx) -> tuple[float, float]:
    # Inputs are clamped to [lo, hi] before range reduction: outside, the result is already
    # 0 / inf, and the clamp keeps fptosi in range.  hi overflows, lo underflows to +0.
    return (-105.0, 89.0) if cx.dtype == "float32" else (-746.0, 710.0)


def reduce_ln2(cx: Ctx, x, x_lo=None):
    """x (+ x_lo) = k*ln2 + r with |r| <= ln2/2 (+ rounding); returns (k as int, r)."""
    ln2_hi, ln2_lo = cx.split(LN2, cx.mant + 1)
    kf = cx.rint(cx.mul(x, cx.c(1 / math.log(2))))
    nk = cx.neg(kf)
    r = cx.fma(nk, cx.c(ln2_hi), x)       # exact: the result needs fewer bits than it has
    r = cx.fma(nk, cx.c(ln2_lo), r)
    if x_lo is not None:
        r = cx.add(r, x_lo)
    return cx.to_int(kf), r


def expm1_poly(cx: Ctx, r):
    """expm1(r) for |r| <= ln2/2 as r + r^2 (1/2 + r P(r)): the exact r is added last in one
    fma, so the rounding errors of the correction term weigh at most |r|/2 of an ulp."""
    r2 = cx.mul(r, r)
    return cx.fma(r2, cx.fma(r, cx.horner(r, cx.tab["expm1"]), cx.c(0.5)), r)


def exp_core(cx: Ctx, x, x_lo=None):
    """exp(x + x_lo) (x_lo: optional low part, for pow); special values handled."""
    lo, hi = _exp_limits(cx)
    xc = cx.clamp(x, lo, hi)
    if x_lo is not None:      # a clamped x is already far past over/underflow: drop its low part
        x_lo = cx.select(cx.cmp("==", x, xc), x_lo, cx.c(0.0))
    k, r = reduce_ln2(cx, xc, x_lo)
    p = cx.add(cx.c(1.0), expm1_poly(cx, r))
    res = cx.ldexp(p, k)
    return cx.select(cx.isnan(x), x, res)


def expm1_core(cx: Ctx, x):
    """expm1 = 2^k (1 + q) - 1, formed as fma(2^k, q, 2^k - 1): 2^k - 1 is exact for small k and
    the -1 is below half an ulp once k > mant + 1, where the scale is split to avoid overflow."""
    lo, hi = (-18.0, 89.0) if cx.dtype == "float32" else (-40.0, 710.0)
    xc = cx.clamp(x, lo, hi)
    k, r = reduce_ln2(cx, xc)
    q = expm1_poly(cx, r)
    big = cx.b.icmp_signed(">", k, cx.ci(cx.mant + 1))
    ks = cx.b.select(big, cx.ci(0), k)
    s = cx.pow2i(ks)
    small = cx.fma(s, q, cx.sub(s, cx.c(1.0)))
    sb = cx.pow2i(cx.b.sub(k, cx.ci(1)))
    large = cx.mul(cx.fma(sb, q, sb), cx.c(2.0))
    res = cx.select(big, large, small)
    # -0.0 and nan pass through unchanged (the reduction would turn -0.0 into +0.0).
    res = cx.select(cx.cmp("==", x, cx.c(0.0)), x, res)
    return cx.select(cx.isnan(x), x, res)


# --------------------------------------------------------------------------------------------
# log core
# --------------------------------------------------------------------------------------------
def log_decompose(cx: Ctx, x):
    """x = 2^e * m with m in [sqrt(1/2), sqrt(2)); x finite > 0 (subnormals rescaled first).
    Returns (e as float, f = m - 1 exactly)."""
    min_normal = 2.0 ** (1 - cx.bias)
    scale = cx.mant + 2
    sub = cx.cmp("<", x, cx.c(min_normal))
    xs = cx.select(sub, cx.mul(x, cx.c(2.0 ** scale)), x)
    eadj = cx.b.select(sub, cx.ci(-scale), cx.ci(0))
    ix = cx.as_int(xs)
    sqrt_half_bits = struct.unpack("<I", struct.pack("<f", math.sqrt(0.5)))[0] if cx.bits == 32 else \
        struct.unpack("<Q", struct.pack("<d", math.sqrt(0.5)))[0]
    t = cx.b.sub(ix, cx.ci(sqrt_half_bits))
    e = cx.b.ashr(t, cx.ci(cx.mant))
    m = cx.as_float(cx.b.sub(ix, cx.b.shl(e, cx.ci(cx.mant))))
    e = cx.b.add(e, eadj)
    return cx.to_float(e), cx.sub(m, cx.c(1.0))


def log_core(cx: Ctx, x):
    """Natural log, fdlibm's arrangement: log = e*ln2_hi - ((hfsq - (s*(hfsq+R) + e*ln2_lo)) - f),
    so the only large rounding errors are on terms far smaller than the result."""
    ef, f = log_decompose(cx, x)
    ln2_hi, ln2_lo = cx.split(LN2, cx.mant + 1 - 12)   # e*ln2_hi exact for |e| < 2^12
    hfsq = cx.mul(cx.mul(cx.c(0.5), f), f)
    s = cx.div(f, cx.add(cx.c(2.0), f))
    z = cx.mul(s, s)
    rr = cx.mul(z, cx.horner(z, cx.tab["log"]))
    inner = cx.fma(s, cx.add(hfsq, rr), cx.mul(ef, cx.c(ln2_lo)))
    res = cx.fma(ef, cx.c(ln2_hi), cx.neg(cx.sub(cx.sub(hfsq, inner), f)))
    return log_specials(cx, x, res)


def log_specials(cx: Ctx, x, res):
    inf = float("inf")
    res = cx.select(cx.cmp("==", x, cx.c(inf)), cx.c(inf), res)
    res = cx.select(cx.cmp("==", x, cx.c(0.0)), cx.c(-inf), res)
    return cx.select(cx.cmp("ult", x, cx.c(0.0)), cx.c(float("nan")), res)
