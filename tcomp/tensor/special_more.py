"""``T.polygamma(n, x)``, ``T.tri_gamma(x)`` and the modified Bessel functions ``T.i0``,
``T.i1``: Theano's functions of these names (scipy's values), found missing by the API sweep.

Built like ``tcomp/tensor/special.py``'s ``psi``: a composition of existing ops, so every
backend runs it and autodiff differentiates it (the derivative of the series is the next
polygamma's series).  For ``x > 0``, arguments below ``SHIFT`` move up by the recurrence
``psi_n(x) = psi_n(x + N) - (-1)**n n! sum_k (x + k)**-(n + 1)``, and the asymptotic series

    psi_n(z) ~ (-1)**(n+1) [(n-1)!/z**n + n!/(2 z**(n+1)) + sum_k B_2k (2k+n-1)!/((2k)! z**(2k+n))]

is summed at ``z >= SHIFT`` (relative error ~1e-15 in float64 for the orders used here).  For
``x <= 0`` the reflection formula ``psi_n(x) = (-1)**n psi_n(1 - x) - pi d^n/dx^n cot(pi x)``
applies, the derivative of cot written as a polynomial in ``cot(pi x)`` (``Q_0(c) = c``,
``Q_k+1 = -(1 + c**2) Q_k'``); at the poles (0, -1, -2, ...) the value is scipy's
``(-1)**(n+1) inf``.  ``n`` must be a non-negative Python int (Theano's op takes a scalar;
scipy's value for non-integer ``n`` is nan); ``n = 0`` is ``T.psi``.
"""
from __future__ import annotations

import math
from fractions import Fraction

from . import basic as B
from .extra import _float
from .special import _cos_pi, _sin_pi, psi
from .variable import as_variable

#: z below this is shifted up by the recurrence before the asymptotic series
SHIFT = 16
#: Bernoulli numbers B_2, B_4, ..., B_16
_BERNOULLI = (Fraction(1, 6), Fraction(-1, 30), Fraction(1, 42), Fraction(-1, 30), Fraction(5, 66),
              Fraction(-691, 2730), Fraction(7, 6), Fraction(-3617, 510))


def _positive_polygamma(n: int, x):
    """psi_n(x) for x > 0 and n >= 1 (other x: a finite don't-care value)."""
    small = B.lt(x, SHIFT)
    xs = B.where(small, x, 1.0)  # the shifted sum only where it is used: no 1/0 elsewhere
    total = 0.0
    for k in range(SHIFT):
        r = 1.0 / (xs + k)
        term = r
        for _ in range(n):
            term = term * r
        total = total + term
    z = B.where(small, x + SHIFT, x)
    inv = 1.0 / z
    series = 0.0
    for k in reversed(range(1, len(_BERNOULLI) + 1)):
        c = float(_BERNOULLI[k - 1] * math.factorial(2 * k + n - 1) / math.factorial(2 * k))
        series = (series + c) * (inv * inv)
    asym = math.factorial(n - 1) * B.pow(inv, float(n)) + math.factorial(n) * 0.5 * B.pow(inv, float(n + 1))
    asym = asym + series * B.pow(inv, float(n))
    sign = -1.0 if n % 2 == 0 else 1.0  # (-1)**(n+1)
    shift_term = math.factorial(n) * total  # sum_k (x+k)^-(n+1), times n!
    return sign * asym + B.where(small, sign * shift_term, 0.0)


def _cot_derivative_poly(n: int) -> list:
    """Integer coefficients (lowest power first) of Q_n with d^n/dy^n cot(y) = Q_n(cot y)."""
    q = [0, 1]
    for _ in range(n):
        deriv = [i * q[i] for i in range(1, len(q))]
        # -(1 + c^2) * deriv
        out = [0] * (len(deriv) + 2)
        for i, a in enumerate(deriv):
            out[i] -= a
            out[i + 2] -= a
        q = out
    return q


def polygamma(n, x):
    """The ``n``-th derivative of the digamma function (scipy.special.polygamma), elementwise;
    int inputs compute in floatX."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise TypeError(f"polygamma: n must be a non-negative Python int, got {n!r}")
    if n == 0:
        return psi(x)
    x = _float(as_variable(x, "x"))
    pos = B.gt(x, 0)
    # one series for both branches: at x where x > 0, else at 1 - x (> 0)
    p = _positive_polygamma(n, B.where(pos, x, 1 - x))
    xr = B.where(pos, 0.5, x)  # the cot polynomial sees only the reflected branch's arguments
    c = _cos_pi(xr) / _sin_pi(xr)
    poly = 0.0
    for a in reversed(_cot_derivative_poly(n)):
        poly = poly * c + float(a)
    reflected = (1.0 if n % 2 == 0 else -1.0) * p - math.pi ** (n + 1) * poly
    pole = B.eq(xr, B.round(xr))
    reflected = B.where(pole, (1.0 if n % 2 else -1.0) * math.inf, reflected)
    return B.where(pos, p, reflected)


def tri_gamma(x):
    """The trigamma function psi_1(x) = d^2/dx^2 log Gamma(x) (scipy.special.polygamma(1, x))."""
    return polygamma(1, x)


# -- modified Bessel functions of the first kind, orders 0 and 1 ------------------------------------
# Cephes' layout: for |x| <= 8, exp(-|x|) I0(|x|) (and exp(-|x|) I1(|x|) / |x|) as a Chebyshev
# series in t = |x|/4 - 1; for |x| > 8, sqrt(|x|) exp(-|x|) I(|x|) as a series in t = 16/|x| - 1.
# Coefficients computed here with mpmath at 40 digits (exact Chebyshev interpolation at 48
# nodes, trailing terms below 1e-18 dropped): relative error <= 1.8e-15 on each range.
_I0_SMALL = (
    0.33839763720473803, -0.3046826723431984, 0.17162090152220877,
    -0.09490109704804764, 0.04930528423967071, -0.02373741480589947,
    0.010546460394594998, -0.004324309995050576, 0.0016394756169413357,
    -0.0005763755745385824, 0.00018850288509584165, -5.754195010082104e-05,
    1.6448448070728896e-05, -4.4167383584587505e-06, 1.1173875391201037e-06,
    -2.670793853940612e-07, 6.046995022541919e-08, -1.300025009986248e-08,
    2.6598237246823866e-09, -5.189795601635263e-10, 9.675809035373237e-11,
    -1.726826291441556e-11, 2.95505266312964e-12, -4.856446783111929e-13,
    7.676185498604936e-14, -1.1685332877993451e-14, 1.715391285555133e-15,
    -2.431279846547955e-16, 3.3307945188222384e-17, -4.4153416464793395e-18,
)
_I1_SMALL = (
    0.12629359322181682, -0.17641651835783406, 0.1026436586898471,
    -0.05294598120809499, 0.024726449030626516, -0.010564084894626197,
    0.004156422944312888, -0.0015135724506312532, 0.0005122859561685758,
    -0.00016176081582589674, 4.781565107550054e-05, -1.3273163656039436e-05,
    3.4702513081376785e-06, -8.568720264695455e-07, 2.0032947535521353e-07,
    -4.445059128796328e-08, 9.381537386495773e-09, -1.8872497517228294e-09,
    3.625590281552117e-10, -6.663489723502027e-11, 1.1736186298890901e-11,
    -1.9839743977649436e-12, 3.223793365945575e-13, -5.042185504727912e-14,
    7.600684294735408e-15, -1.1055969477353862e-15, 1.5536319577362005e-16,
    -2.111421214358166e-17, 2.7779141127610464e-18,
)
_I0_LARGE = (
    0.4022452055070544, 0.0033691164782556943, 6.889758346916825e-05,
    2.8913705208347567e-06, 2.0489185894690638e-07, 2.266668990498178e-08,
    3.3962320257083865e-09, 4.94060238822497e-10, 1.1889147107846439e-11,
    -3.1499165279632416e-11, -1.3215811840447713e-11, -1.7941785315068062e-12,
    7.180124451383666e-13, 3.8527783827421426e-13, 1.54008621752141e-14,
    -4.150569347287222e-14, -9.554846698828307e-15, 3.8116806693526224e-15,
    1.7725601330565263e-15, -3.425485619677219e-16, -2.8276239805165836e-16,
    3.461222867697461e-17, 4.46562142029676e-17, -4.830504485944178e-18,
    -7.23318048787476e-18, 9.921475412173676e-19, 1.1936508908460063e-18,
)
_I1_LARGE = (
    0.38928811750914005, -0.009761097491361469, -0.00011058893876262371,
    -3.882564808877691e-06, -2.512236237870209e-07, -2.6314688468895196e-08,
    -3.835380385964237e-09, -5.589743462196584e-10, -1.8974958123505413e-11,
    3.2526035830154884e-11, 1.4125807436613782e-11, 2.0356285441470896e-12,
    -7.198551776245908e-13, -4.0835511110921974e-13, -2.1015418427726643e-14,
    4.272440016711951e-14, 1.0420276984128802e-14, -3.8144030724370075e-15,
    -1.8803547755107825e-15, 3.3082023109209285e-16, 2.96262899764595e-16,
    -3.209525921993424e-17, -4.650305368489358e-17, 4.414348323071704e-18,
    7.517296310842111e-18, -9.314178867326863e-19, -1.2421932751949152e-18,
)


def _clenshaw(coeffs, t):
    b1 = b2 = 0.0
    for a in reversed(coeffs[1:]):
        b1, b2 = 2.0 * t * b1 - b2 + a, b1
    return t * b1 - b2 + coeffs[0]


def _bessel_parts(x, small_coeffs, large_coeffs):
    """(|x|, |x| <= 8, exp(|x|/2), the small-range series, the large-range series / sqrt(|x|))."""
    ax = B.abs(x)
    small = B.le(ax, 8.0)
    ts = B.where(small, ax, 0.0) * 0.25 - 1.0     # each series sees only its own range
    tl = 16.0 / B.where(small, 16.0, ax) - 1.0
    half = B.exp(0.5 * ax)  # exp(|x|) as a product of two halves: no overflow before the result's
    return ax, small, half, _clenshaw(small_coeffs, ts), _clenshaw(large_coeffs, tl) / B.sqrt(B.where(small, 1.0, ax))


def _i0_value(x):
    _, small, half, fs, fl = _bessel_parts(x, _I0_SMALL, _I0_LARGE)
    return half * (half * B.where(small, fs, fl))


def _i1_value(x):
    _, small, half, fs, fl = _bessel_parts(x, _I1_SMALL, _I1_LARGE)
    return half * (half * B.where(small, x * fs, B.sign(x) * fl))


def i0(x):
    """The modified Bessel function of the first kind of order 0 (scipy.special.i0); its
    gradient is ``i1``.  Int inputs compute in floatX.  ``exp(|x|)`` is formed as two halves,
    so values up to the dtype's maximum come out finite (scipy's i0(710.0) overflows to inf,
    the true value is 3.3e306)."""
    from tcomp.gradient import custom_gradient

    x = _float(as_variable(x, "x"))
    return custom_gradient([_i0_value(x)], [x], lambda ins, gs: [None if gs[0] is None else gs[0] * i1(ins[0])],
                           "i0")[0]


def i1(x):
    """The modified Bessel function of the first kind of order 1 (scipy.special.i1); its
    gradient is ``i0(x) - i1(x) / x`` (1/2 at 0).  Int inputs compute in floatX."""
    from tcomp.gradient import custom_gradient

    x = _float(as_variable(x, "x"))

    def vjp(ins, gs):
        if gs[0] is None:
            return [None]
        (v,) = ins
        zero = B.eq(v, 0)
        return [gs[0] * B.where(zero, 0.5, i0(v) - i1(v) / B.where(zero, 1.0, v))]
    return custom_gradient([_i1_value(x)], [x], vjp, "i1")[0]


__all__ = ["polygamma", "tri_gamma", "i0", "i1"]
