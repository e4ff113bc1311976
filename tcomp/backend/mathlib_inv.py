"""arctan, arctan2, log2, log10 and exp2 for :mod:`tcomp.backend.mathlib` (branch-free,
vectorizable IR, no libm; DESIGN.md principle 7).

arctan: a = |x| in three ranges, each mapped to |t| <= tan(pi/8): a itself, (a - 1)/(a + 1)
(+ pi/4) and -1/a (+ pi/2); then atan(t) = t + t z P(z), z = t^2, and the base (hi + lo
parts) added last, the sign of x copied back (so -0.0 and nan pass through, +-inf give
+-pi/2).  arctan2(y, x) = arctan of the ratio min/max of |x|, |y| (never over 1, no
overflow: the quotient of the smaller by the larger), put in its octant, with C99's values
for zeros and infinities (atan2(+-0, -0) = +-pi, atan2(+-inf, +-inf) = +-pi/4 or +-3pi/4).

log2/log10: x = 2^e (1 + f) as in log, log(1 + f) as hi + lo (fdlibm's e_log2 arrangement),
then e + log1p(f)/ln2 (resp. e log10(2) + log1p(f)/ln10) summed with error-free steps, so
powers of two (log2) are exact and the result stays within ~1 ulp.

exp2: x = k + f with k = rint(x) (f exact), 2^f = 1 + expm1(f ln2) with f ln2 as an exact
product plus its error, then scaled by 2^k in two exact steps (so overflow and gradual
underflow round once); integer x gives exact powers of two.

The polynomial coefficients are mpmath Chebyshev fits (``generate_atan_table``), stored as
literals so importing tcomp never needs mpmath.
"""
from __future__ import annotations

import math
from fractions import Fraction

from .mathlib_core import LN2, PIO2, Ctx, expm1_poly, log_decompose, log_specials

#: atan(t) = t + t^3 P(t^2) on |t| <= tan(pi/8), lowest degree first (fit error ~0.05 ulp)
ATAN = {
    "float32": [-0.3333333134651184, 0.19999538362026215, -0.14263896644115448, 0.10743099451065063,
                -0.06449835002422333],
    "float64": [-0.3333333333333333, 0.1999999999999548, -0.14285714284657894, 0.11111111014561013,
                -0.09090904549884611, 0.07692182535116648, -0.06664502215671447, 0.058580687568615106,
                -0.05085030492810941, 0.03921955253255129, -0.019162068915902573],
}
_ATAN_DEGREES = {"float32": 5, "float64": 11}

# 80-digit constants
LOG10_2 = Fraction("0.30102999566398119521373889472449302676818988146210854131042746112710818927442451")
INV_LN2 = Fraction("1.4426950408889634073599246810018921374266459541529859341354494069311092191811851")
INV_LN10 = Fraction("0.43429448190325182765112891891660508229439700580366656611445378316586464920887077")
TAN_PIO8 = math.sqrt(2.0) - 1.0
TAN_3PIO8 = math.sqrt(2.0) + 1.0


def generate_atan_table() -> dict:
    """Refit ``ATAN`` with mpmath (``pip install mpmath``); returns the same layout."""
    import struct

    import mpmath as mp

    mp.mp.dps = 60

    def f(z):
        if abs(z) < mp.mpf("1e-25"):
            return -mp.mpf(1) / 3
        return (mp.atan(mp.sqrt(z)) - mp.sqrt(z)) / (mp.sqrt(z) * z)

    out = {}
    for dtype, n in _ATAN_DEGREES.items():
        coeffs = mp.chebyfit(f, [0, mp.tan(mp.pi / 8) ** 2 * mp.mpf("1.001")], n)
        out[dtype] = [struct.unpack("f", struct.pack("f", float(c)))[0] if dtype == "float32" else float(c)
                      for c in coeffs[::-1]]
    return out


def _atan_poly(cx: Ctx, t):
    z = cx.mul(t, t)
    return cx.fma(cx.mul(t, z), cx.horner(z, ATAN[cx.dtype]), t)


def _pio4_parts(cx: Ctx):
    """pi/4 as hi + lo with hi short enough that k * hi is exact for k <= 4."""
    return cx.split(PIO2 / 2, cx.mant + 1 - 3)


def _atan_reduced(cx: Ctx, num, den):
    """atan(num/den) for num, den >= 0 as (k, p): the angle is k * pi/4 + p, k in {0, 1, 2}
    (a float), |p| <= atan(tan(pi/8)) from the polynomial."""
    a = cx.div(num, den)
    mid = cx.cmp(">", a, cx.c(TAN_PIO8))
    high = cx.cmp(">", a, cx.c(TAN_3PIO8))
    t_mid = cx.div(cx.sub(num, den), cx.add(num, den))          # (a - 1)/(a + 1), from num, den directly
    t_high = cx.neg(cx.div(den, num))                            # -1/a
    t = cx.select(high, t_high, cx.select(mid, t_mid, a))
    k = cx.select(high, cx.c(2.0), cx.select(mid, cx.c(1.0), cx.c(0.0)))
    return k, _atan_poly(cx, t)


def _angle(cx: Ctx, k, p):
    """k * pi/4 + p rounded once (k * hi exact, the low parts added to p first)."""
    hi, lo = _pio4_parts(cx)
    return cx.fma(k, cx.c(hi), cx.fma(k, cx.c(lo), p))


def atan_core(cx: Ctx, x):
    k, p = _atan_reduced(cx, cx.fabs(x), cx.c(1.0))
    return cx.copysign(_angle(cx, k, p), x)


def atan2_core(cx: Ctx, y, x):
    """atan2(y, x): the angle of |y| over |x| as atan of min/max (k pi/4 + p, no overflow),
    then pi/2 - it when |y| > |x| and pi - it when x < 0 (or -0.0), all as k' pi/4 +- p so the
    result is rounded once; the sign of y copied last."""
    ay, ax = cx.fabs(y), cx.fabs(x)
    swap = cx.cmp(">", ay, ax)
    num = cx.select(swap, ax, ay)
    den = cx.select(swap, ay, ax)
    both_inf = cx.b.and_(cx.cmp("==", ay, cx.c(math.inf)), cx.cmp("==", ax, cx.c(math.inf)))
    # (inf, inf): the ratio is 1; (0, 0): 0 (den = 0 only then, as den = max)
    num = cx.select(both_inf, cx.c(1.0), num)
    den = cx.select(both_inf, cx.c(1.0), den)
    zero = cx.cmp("==", den, cx.c(0.0))
    den = cx.select(zero, cx.c(1.0), den)
    # num + den in the middle range must not overflow: scale huge pairs by 1/4 (exact, and a
    # num that underflows by it is below 2^-bias of den, where the angle rounds to num/den)
    huge = cx.cmp(">", den, cx.c(2.0 ** (cx.bias - 1)))
    num = cx.select(huge, cx.mul(num, cx.c(0.25)), num)
    den = cx.select(huge, cx.mul(den, cx.c(0.25)), den)
    k, p = _atan_reduced(cx, num, den)                           # angle in [0, pi/4]
    k = cx.select(swap, cx.sub(cx.c(2.0), k), k)
    p = cx.select(swap, cx.neg(p), p)
    xneg = cx.b.icmp_signed("<", cx.as_int(x), cx.ci(0))         # x < 0, -0.0 included
    k = cx.select(xneg, cx.sub(cx.c(4.0), k), k)
    p = cx.select(xneg, cx.neg(p), p)
    r = cx.copysign(_angle(cx, k, p), y)
    return cx.select(cx.b.or_(cx.isnan(x), cx.isnan(y)), cx.add(x, y), r)


def _log1p_parts(cx: Ctx, f):
    """log(1 + f) = hi + lo for f = m - 1, |f| < sqrt(2) - 1 (fdlibm's k_log1p / e_log2)."""
    hfsq = cx.mul(cx.mul(cx.c(0.5), f), f)
    s = cx.div(f, cx.add(cx.c(2.0), f))
    z = cx.mul(s, s)
    rr = cx.mul(z, cx.horner(z, cx.tab["log"]))
    hi = cx.sub(f, hfsq)
    lo = cx.add(cx.sub(cx.sub(f, hi), hfsq), cx.mul(s, cx.add(hfsq, rr)))
    return hi, lo


def _scaled(cx: Ctx, hi, lo, k: Fraction):
    """(hi + lo) * k as (P, err): P the rounded product, err the rest to working precision."""
    k_hi = cx.rnd(float(k))
    k_lo = cx.rnd(float(k - Fraction(k_hi)))
    p = cx.mul(hi, cx.c(k_hi))
    err = cx.add(cx.fma(hi, cx.c(k_hi), cx.neg(p)), cx.fma(hi, cx.c(k_lo), cx.mul(lo, cx.c(k_hi))))
    return p, err


def log2_core(cx: Ctx, x):
    ef, f = log_decompose(cx, x)
    hi, lo = _log1p_parts(cx, f)
    p, err = _scaled(cx, hi, lo, INV_LN2)
    w, e2 = cx.two_sum(ef, p)                                    # ef is an integer: exact when p = 0
    return log_specials(cx, x, cx.add(w, cx.add(e2, err)))


def log10_core(cx: Ctx, x):
    ef, f = log_decompose(cx, x)
    hi, lo = _log1p_parts(cx, f)
    p, err = _scaled(cx, hi, lo, INV_LN10)
    l2_hi, l2_lo = cx.split(LOG10_2, cx.mant + 1 - 12)          # ef * l2_hi exact for |ef| < 2^12
    w, e2 = cx.two_sum(cx.mul(ef, cx.c(l2_hi)), p)
    return log_specials(cx, x, cx.add(w, cx.add(e2, cx.fma(ef, cx.c(l2_lo), err))))


def exp2_core(cx: Ctx, x):
    lo, hi = (-151.0, 129.0) if cx.dtype == "float32" else (-1076.0, 1025.0)
    xc = cx.clamp(x, lo, hi)
    kf = cx.rint(xc)
    f = cx.sub(xc, kf)                                           # exact, |f| <= 1/2
    ln2 = cx.rnd(float(LN2))
    ln2_lo = cx.rnd(float(LN2 - Fraction(ln2)))
    r = cx.mul(f, cx.c(ln2))
    r_lo = cx.fma(f, cx.c(ln2), cx.neg(r))
    r_lo = cx.fma(f, cx.c(ln2_lo), r_lo)
    q = expm1_poly(cx, r)
    p = cx.add(cx.c(1.0), cx.fma(r_lo, cx.add(cx.c(1.0), q), q))  # e^(r + r_lo) - the low part to first order
    res = cx.ldexp(p, cx.to_int(kf))
    return cx.select(cx.isnan(x), x, res)
