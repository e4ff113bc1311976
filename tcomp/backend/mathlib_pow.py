"""pow(a, b) with NumPy (C99) semantics for :mod:`tcomp.backend.mathlib`.

|a|^b = exp(b * log|a|) where log|a| is computed as a double-word (hi + lo, ~2x precision)
and b*log|a| as a double-word too: exp amplifies the absolute error of its argument, so a
plain log would lose up to log2(|b log a|) bits.  The log keeps fdlibm's s = f/(2+f) form;
the exact parts are 2s, its division residual, e*ln2 (split so e*ln2_hi is exact) and the
(2/3)s^3 term (made exact with fma products); only the s^5 tail is rounded, with a relative
weight below 2e-4.  The argument error of exp is then far below one ulp of the result: measured max error
~1.3 ulp for both precisions, also for a near 1 with |b| up to 1e6 (tests).

Special cases follow C99 Annex F / NumPy: pow(x, +-0) = 1, pow(1, y) = 1 (also for nan),
pow(-1, +-inf) = 1, negative finite base with non-integer exponent -> nan, odd integer
exponents keep the sign of the base (including -0.0 and -inf), zero base with negative
exponent -> inf, +-inf exponents compare |a| with 1.
"""
from __future__ import annotations

from fractions import Fraction

from .mathlib_core import LN2, Ctx, exp_core, log_decompose


def log_dd(cx: Ctx, ax):
    """log(ax) as (hi, lo) for finite ax > 0 (caller fixes 0, inf, nan)."""
    ef, f = log_decompose(cx, ax)
    ln2_hi, ln2_lo = cx.split(LN2, cx.mant + 1 - 12)
    two = cx.c(2.0)
    d = cx.add(two, f)
    d_lo = cx.add(cx.sub(two, d), f)                                 # exact (|2| >= |f|)
    s = cx.div(f, d)
    resid = cx.sub(cx.fma(cx.neg(s), d, f), cx.mul(s, d_lo))
    s_lo = cx.div(resid, d)                                          # f/(2+f) = s + s_lo
    z, z_lo = cx.two_prod(s, s)
    c3, c3_lo = cx.two_prod(s, z)
    c3_lo = cx.fma(s, z_lo, c3_lo)                                   # s^3 = c3 + c3_lo
    t23_hi, t23_lo = cx.split(Fraction(2, 3), cx.mant + 1)                # 2/3 = t23_hi + t23_lo
    t, t_lo = cx.two_prod(c3, cx.c(t23_hi))
    t_lo = cx.fma(c3, cx.c(t23_lo), cx.fma(c3_lo, cx.c(t23_hi), t_lo))   # (2/3)s^3 = t + t_lo
    tail_coeffs = cx.tab["log"][1:]                                  # P(z) = 2/3 + z*tail(z)
    tail = cx.mul(cx.mul(c3, z), cx.horner(z, tail_coeffs))          # s^5 * tail(z)
    e_hi = cx.mul(ef, cx.c(ln2_hi))                                  # exact
    h, err1 = cx.two_sum(e_hi, cx.add(s, s))
    h, err2 = cx.two_sum(h, t)
    lo = cx.add(tail, cx.mul(cx.mul(cx.c(2.0), z), s_lo))            # d(2/3 s^3)/ds * s_lo
    lo = cx.add(lo, cx.add(cx.add(s_lo, s_lo), t_lo))
    lo = cx.fma(ef, cx.c(ln2_lo), lo)
    lo = cx.add(lo, cx.add(err1, err2))
    return cx.fast_two_sum(h, lo)


def pow_core(cx: Ctx, a, b):
    inf = float("inf")
    ax = cx.fabs(a)
    l_hi, l_lo = log_dd(cx, ax)
    # log of the special magnitudes: 0 -> -inf, inf -> inf, nan -> nan.
    l_hi = cx.select(cx.cmp("==", ax, cx.c(0.0)), cx.c(-inf), l_hi)
    l_hi = cx.select(cx.cmp("==", ax, cx.c(inf)), cx.c(inf), l_hi)
    l_hi = cx.select(cx.isnan(ax), ax, l_hi)
    y, y_lo = cx.two_prod(b, l_hi)
    y_lo = cx.fma(b, l_lo, y_lo)
    y_finite = cx.cmp("<", cx.fabs(y), cx.c(inf))
    y_lo = cx.select(y_finite, y_lo, cx.c(0.0))
    mag = exp_core(cx, y, y_lo)
    # Exponent classes.
    b_finite = cx.cmp("<", cx.fabs(b), cx.c(inf))
    b_int = cx.b.and_(b_finite, cx.cmp("==", cx.trunc(b), b))
    half = cx.mul(b, cx.c(0.5))
    b_odd = cx.b.and_(b_int, cx.cmp("!=", cx.trunc(half), half))
    a_neg = cx.b.icmp_signed("<", cx.as_int(a), cx.ci(0))          # sign bit (also -0.0, -inf)
    res = cx.select(cx.b.and_(a_neg, b_odd), cx.neg(mag), mag)
    neg_finite = cx.b.and_(cx.cmp("<", a, cx.c(0.0)), cx.cmp(">", a, cx.c(-inf)))
    bad = cx.b.and_(neg_finite, cx.b.and_(b_finite, cx.b.not_(b_int)))
    res = cx.select(bad, cx.c(float("nan")), res)
    one = cx.b.or_(cx.cmp("==", b, cx.c(0.0)), cx.cmp("==", a, cx.c(1.0)))
    one = cx.b.or_(one, cx.b.and_(cx.cmp("==", a, cx.c(-1.0)), cx.b.not_(b_finite)))
    one = cx.b.and_(one, cx.b.not_(cx.b.and_(cx.isnan(b), cx.cmp("une", a, cx.c(1.0)))))
    return cx.select(one, cx.c(1.0), res)
