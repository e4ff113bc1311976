"""sin, cos and erf for :mod:`tcomp.backend.mathlib` (branch-free, vectorizable IR).

sin/cos: Cody-Waite reduction x = q*pi/2 + r with pi/2 split in parts and each step an fma,
so the first step is exact; the reduction keeps the polynomials on |r| <= pi/4.  q is a
float (no integer overflow).  float64 uses three double parts (~159 bits of pi/2): below
1.5 ulp for |x| <= 1e15, degrading past ~1e16.  float32 arguments are reduced in float64
(exact conversion, two double parts = 106 bits of pi/2, q exact) and only r and q mod 4 come
back to float32 for the float32 polynomials: measured with ``mathlib_accuracy`` (random bit
patterns per decade and the floats nearest to k*pi/2, mpmath-checked), the error stays below
1.4 ulp for |x| <= 5e14 (the float32 reduction it replaces degraded past 1e6: 1.76e9 gave
1.0 for 0.804); it costs ~1.4x the float32-only version (8 lanes, 1M values: 0.85 vs
0.61 ms).  Beyond 5e14 (no Payne-Hanek reduction) the result degrades to meaningless values
and is only clamped into [-1, 1]; inf/nan give nan.

erf: x*P(x^2) on |x| < 1; above, erf = 1 - exp(-x^2) * Q(1/x) / x with Q piecewise polynomial
in 1/x (see mathlib_coeffs).  The rounding of x^2 costs nothing visible because exp(-x^2) is
multiplied by erfc-sized values that are small next to the result 1 - erfc.
"""
from __future__ import annotations

import math
from fractions import Fraction

from llvmlite import ir

from .mathlib_core import PIO2, Ctx, exp_core


def _pio2_parts(cx: Ctx) -> tuple[float, float, float]:
    # Exact rational arithmetic on a 100-digit pi/2 so each part is the rounded remainder.
    pio2 = PIO2
    c1 = cx.rnd(float(pio2))
    c2 = cx.rnd(float(pio2 - Fraction(c1)))
    c3 = cx.rnd(float(pio2 - Fraction(c1) - Fraction(c2)))
    return c1, c2, c3


def _reduce(cx: Ctx, x, parts: int = 3):
    """(q, r): x = q * pi/2 + r, |r| <= ~pi/4, in ``cx``'s precision (Cody-Waite with the
    first ``parts`` of pi/2)."""
    q = cx.rint(cx.mul(x, cx.c(2 / math.pi)))
    nq = cx.neg(q)
    r = x
    for c in _pio2_parts(cx)[:parts]:
        r = cx.fma(nq, cx.c(c), r)
    return q, r


#: double parts of pi/2 for float32 arguments (2 hold 106 bits: enough below 2^49, see below)
PARTS_F32 = 2


def _reduce_f32_in_f64(cx: Ctx, x):
    """(q, r) of a float32 x reduced in float64: x is exact there, the three double parts
    hold ~159 bits of pi/2 and q < 2^53 stays exact, so r is good to ~2^-50 relative for
    |x| up to ~2^49 (5.6e14) where float32 arithmetic gave up at ~1e6; r and q come back
    as float32 (q mod 4 exactly), and the polynomials stay float32."""
    dty = ir.VectorType(ir.DoubleType(), cx.count) if cx.vec else ir.DoubleType()
    dx = Ctx(cx.b, dty)
    q, r = _reduce(dx, cx.b.fpext(x, dty), PARTS_F32)
    qm = dx.sub(q, dx.mul(dx.c(4.0), dx.floor(dx.mul(q, dx.c(0.25)))))
    return cx.b.fptrunc(qm, cx.ty), cx.b.fptrunc(r, cx.ty)


def sincos_core(cx: Ctx, x, want_cos: bool):
    if cx.dtype == "float32":
        qm, r = _reduce_f32_in_f64(cx, x)
    else:
        q, r = _reduce(cx, x)
        # Quadrant q mod 4, computed in floating point so huge q never overflows an integer;
        # non-finite x gives nan here, replaced by 0 before fptosi (the result is nan anyway).
        qm = cx.sub(q, cx.mul(cx.c(4.0), cx.floor(cx.mul(q, cx.c(0.25)))))
    finite = cx.cmp("<", cx.fabs(x), cx.c(float("inf")))
    qi = cx.to_int(cx.select(finite, qm, cx.c(0.0)))
    if want_cos:
        qi = cx.b.add(qi, cx.ci(1))
    z = cx.mul(r, r)
    s = cx.fma(cx.mul(z, r), cx.horner(z, cx.tab["sin"]), r)
    hz = cx.mul(cx.c(0.5), z)
    w = cx.sub(cx.c(1.0), hz)
    # cos = w + (((1 - w) - hz) + z^2 Q): the bracket recovers the rounding error of w.
    co = cx.add(w, cx.fma(cx.mul(z, z), cx.horner(z, cx.tab["cos"]), cx.sub(cx.sub(cx.c(1.0), w), hz)))
    odd = cx.b.icmp_signed("!=", cx.b.and_(qi, cx.ci(1)), cx.ci(0))
    val = cx.select(odd, co, s)
    sign = cx.b.shl(cx.b.and_(qi, cx.ci(2)), cx.ci(cx.bits - 2))
    val = cx.as_float(cx.b.xor(cx.as_int(val), sign))
    val = cx.clamp(val, -1.0, 1.0)           # far outside the accurate domain r may be off
    if not want_cos:
        val = cx.select(cx.cmp("==", x, cx.c(0.0)), x, val)   # sin(-0.0) = -0.0
    return cx.select(finite, val, cx.c(float("nan")))


def erf_core(cx: Ctx, x):
    ax = cx.fabs(x)
    small = cx.mul(x, cx.horner(cx.mul(x, x), cx.tab["erf_small"]))
    pieces = cx.tab["erf_large"]
    x_max = pieces[-1][1]                      # erf rounds to 1 beyond this
    axc = cx.clamp(ax, 1.0, x_max)
    t = cx.div(cx.c(1.0), axc)
    # Per-lane piece selection: pick each coefficient (and centre) by the piece axc falls in.
    n = max(len(p[3]) for p in pieces)
    centre = cx.c(pieces[0][2])
    coeffs = [cx.c(p) for p in pieces[0][3]] + [cx.c(0.0)] * (n - len(pieces[0][3]))
    for x_lo, _, tc, cs in pieces[1:]:
        above = cx.cmp(">=", axc, cx.c(x_lo))
        centre = cx.select(above, cx.c(tc), centre)
        cs = list(cs) + [0.0] * (n - len(cs))
        coeffs = [cx.select(above, cx.c(v), old) for v, old in zip(cs, coeffs)]
    u = cx.sub(t, centre)
    acc = coeffs[-1]
    for co in reversed(coeffs[:-1]):
        acc = cx.fma(acc, u, co)
    e = exp_core(cx, cx.neg(cx.mul(axc, axc)))
    erfc = cx.mul(cx.mul(e, t), acc)
    large = cx.copysign(cx.sub(cx.c(1.0), erfc), x)
    res = cx.select(cx.cmp("<", ax, cx.c(1.0)), small, large)
    return cx.select(cx.isnan(x), x, res)
