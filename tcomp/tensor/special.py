"""``T.gammaln``, ``T.psi``, ``T.gamma``, ``T.erfc``, ``T.erfcx``, ``T.erfinv``, ``T.erfcinv``:
Theano's special functions (scipy's semantics).

Why compositions of existing ops and not new ops: every backend (CPU, NVPTX, the reference
interpreter) and autodiff get them for free, and the gradient of ``gammaln`` is the
derivative of the same series, which is the series of ``psi`` (and of ``psi``, trigamma).
Arguments below ``SHIFT`` are moved up with the recurrence ``lgamma(x) = lgamma(x + n) -
log(x (x+1) ... (x+n-1))`` (the product stays small there), where Stirling's series is
accurate to float64 rounding; negative arguments use the reflection formula.
"""
from __future__ import annotations

import math

from . import basic as B
from .extra import _float
from .variable import as_variable


def _no_gradient(x):
    """``tcomp.gradient.disconnected_grad`` (imported here: tcomp.gradient imports this package)."""
    from tcomp.gradient import disconnected_grad

    return disconnected_grad(x)


#: arguments below this are shifted up by the recurrence (Stirling's series needs z >= ~8)
SHIFT = 8
#: Stirling's series for lgamma: B_2k / (2k (2k-1) z^(2k-1)), k = 1..5
_STIRLING = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _positive_lgamma(x):
    """lgamma for x > 0 (any other x gives a finite don't-care value, never nan traps)."""
    small = B.lt(x, SHIFT)
    xs = B.where(small, x, 1.0)  # the product below only for x < SHIFT, so it cannot overflow
    prod = xs
    for k in range(1, SHIFT):
        prod = prod * (xs + k)
    z = B.where(small, x + SHIFT, x)
    inv, inv2 = 1.0 / z, 1.0 / (z * z)
    series = _STIRLING[-1]
    for c in reversed(_STIRLING[:-1]):
        series = c + inv2 * series
    stirling = (z - 0.5) * B.log(z) - z + _HALF_LOG_2PI + inv * series
    return stirling - B.where(small, B.log(prod), 0.0)


def _sin_pi(x):
    """sin(pi x), exact zeros at the integers (x - round(x) keeps the argument small)."""
    return B.sin(math.pi * (x - B.round(x))) * (1 - 2 * B.abs(B.round(x) % 2))


def gammaln(x):
    """``log |Gamma(x)|`` elementwise (scipy.special.gammaln): +inf at 0 and the negative
    integers; int inputs compute in floatX."""
    x = _float(as_variable(x, "x"))
    pos = B.gt(x, 0)
    xr = B.where(pos, 0.5, x)  # each branch sees only its own arguments: no inf * 0 in the gradient
    reflected = B.log(math.pi / B.abs(_sin_pi(xr))) - _positive_lgamma(1 - xr)
    return B.where(pos, _positive_lgamma(B.where(pos, x, 1.0)), reflected)


def _positive_psi(x):
    small = B.lt(x, SHIFT)
    xs = B.where(small, x, 1.0)
    recip = 1.0 / xs
    for k in range(1, SHIFT):
        recip = recip + 1.0 / (xs + k)
    z = B.where(small, x + SHIFT, x)
    inv2 = 1.0 / (z * z)
    # psi(z) ~ log z - 1/(2z) - sum B_2k / (2k z^2k)
    coeffs = (1 / 12, -1 / 120, 1 / 252, -1 / 240, 1 / 132)
    series = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        series = c + inv2 * series
    asym = B.log(z) - 0.5 / z - inv2 * series
    return asym - B.where(small, recip, 0.0)


def psi(x):
    """The digamma function d/dx log Gamma(x) (scipy.special.psi), poles as SciPy: -inf at
    +0, +inf at -0 (the limits from each side) and nan at the negative integers."""
    x = _float(as_variable(x, "x"))
    pos = B.gt(x, 0)
    xr = B.where(pos, 0.5, x)
    # reflection: psi(x) = psi(1 - x) - pi / tan(pi x)
    reflected = _positive_psi(1 - xr) - math.pi * _cos_pi(xr) / _sin_pi(xr)
    out = B.where(pos, _positive_psi(B.where(pos, x, 1.0)), reflected)
    zero = B.eq(x, 0)
    out = B.where(zero, -1.0 / B.where(zero, x, 1.0), out)  # -1/x: -inf at +0, +inf at -0
    return B.where(B.lt(x, 0) & B.eq(x, B.floor(x)), math.nan, out)


def _cos_pi(x):
    return B.cos(math.pi * (x - B.round(x))) * (1 - 2 * B.abs(B.round(x) % 2))


def gamma(x):
    """``Gamma(x)`` elementwise (scipy.special.gamma), as sign * exp(gammaln)."""
    x = _float(as_variable(x, "x"))
    # Gamma(x) < 0 exactly for negative non-integers with floor(x) odd
    odd_floor = B.eq(B.abs(B.floor(x) % 2), 1)
    sign = B.where(B.lt(x, 0) & odd_floor, -1.0, 1.0)
    return sign * B.exp(gammaln(x))


# -- the complementary error function family ------------------------------------------------------
# erfcx(x) = exp(x^2) erfc(x) for x >= 1/2 as a Chebyshev series of (x + K) erfcx(x) in
# t = (x - K) / (x + K) (smooth on [-7/9, 1), x = inf included); fitted here with mpmath at 40
# digits (degree 24: relative error 3.4e-15 over [0.5, 1e8]).
_K = 4.0
_T_LO = (0.5 - _K) / (0.5 + _K)
_ERFCX_CHEB = (
    1.3067513901000367, -0.9994000137784346, 0.3345056463956313,
    -0.09812769153233612, 0.02510305592361216, -0.0055295638137972105,
    0.0010226912503611613, -0.00015075914584359744, 1.5458306995689375e-05,
    -4.886374200630043e-07, -1.7443091490098817e-07, 3.477211128638732e-08,
    -1.4254739987004768e-09, -5.273279734278918e-10, 9.004171276468807e-11,
    2.7219297074417075e-12, -2.3807163679764744e-12, 1.2783327891237754e-13,
    5.227263153517052e-14, -6.611809393987075e-15, -1.0746010657845326e-15,
    4.3263549760222926e-16, -1.0254690363099507e-15, 1.3558050757058676e-16,
    5.966845636399102e-17,
)


def _erfcx_tail(x):
    """erfcx for x >= 1/2 (other x: a finite don't-care value)."""
    x = B.where(B.ge(x, 0.5), x, 0.5)  # (not maximum: its gradient splits at a tie)
    t = 1.0 - (2.0 * _K) / (x + _K)  # (x - K) / (x + K), also at x = inf
    u = (t - _T_LO) * (2.0 / (1.0 - _T_LO)) - 1.0
    b1 = b2 = 0.0 * u  # Clenshaw's recurrence
    for c in reversed(_ERFCX_CHEB[1:]):
        b1, b2 = 2.0 * u * b1 - b2 + c, b1
    return (u * b1 - b2 + _ERFCX_CHEB[0]) / (x + _K)


def _exp_minus_square(x):
    """exp(-x^2) without the rounding error of x*x for large x: x = h + (x - h) with h a
    multiple of 1/16 (h*h is exact), exp(-h^2) * exp(-(x - h)(x + h))."""
    h = B.floor(x * 16.0) / 16.0
    return B.exp(-(h * h)) * B.exp(-((x - h) * (x + h)))


def erfc(x):
    """1 - erf(x), accurate where it is tiny (x large); int inputs compute in floatX."""
    x = _float(as_variable(x, "x"))
    a = B.abs(x)
    big = B.where(B.lt(a, 40.0), a, 40.0)  # erfc(40) underflows to 0 (and inf - inf is nan)
    tail = _exp_minus_square(big) * _erfcx_tail(big)  # erfc(|x|) for |x| >= 1/2
    pos = B.where(B.ge(x, 0), tail, 2.0 - tail)
    return B.where(B.lt(a, 0.5), 1.0 - B.erf(x), pos)


def erfcx(x):
    """The scaled complementary error function exp(x^2) erfc(x) (no overflow for large x)."""
    x = _float(as_variable(x, "x"))
    near = B.where(B.lt(x, 0.5), x, 0.0)  # exp(x^2) erfc(x) directly where erfc is not tiny
    direct = B.exp(near * near) * (1.0 - B.erf(near))
    return B.where(B.lt(x, 0.5), direct, _erfcx_tail(x))


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _inverse(a, z):
    """x >= 0 with erf(x) = a, given a in [0, 1) and z = 1 - a computed exactly by the caller:
    a closed-form first guess (Winitzki's, ~2e-3), then three Halley steps.  The residual
    erf(x) - a is taken as z - erfc(x) where a > 1/2, so it keeps its relative precision
    as a approaches 1."""
    log_term = B.log(z * (1.0 + a))  # log(1 - a^2)
    c = 2.0 / (math.pi * 0.147) + 0.5 * log_term
    # the guess carries no gradient (its sqrt has an infinite slope at 0): the derivative comes
    # from the Halley steps, whose last one gives 1 / erf'(x) at convergence
    x = _no_gradient(B.sqrt(B.sqrt(c * c - log_term / 0.147) - c))
    near_one = B.gt(a, 0.5)
    for _ in range(3):
        f = B.where(near_one, z - erfc(x), B.erf(x) - a)
        r = f / (_TWO_OVER_SQRT_PI * _exp_minus_square(x))
        x = x - r / (1.0 + x * r)
    return x


def erfinv(y):
    """The inverse of erf on (-1, 1): +-inf at +-1, nan outside."""
    y = _float(as_variable(y, "y"))
    a = B.where(B.lt(y, 0), -y, y)  # |y| whose gradient at 0 is 1 (abs's would be 0)
    inside = B.lt(a, 1.0)
    a_safe = B.where(inside, a, 0.5)  # the other branches never see 1 (no inf * 0 in the gradient)
    x = _inverse(a_safe, 1.0 - a_safe)
    edge = B.where(B.eq(a, 1.0), float("inf"), float("nan"))
    return B.where(inside, B.where(B.lt(y, 0), -x, x), B.where(B.lt(y, 0), -edge, edge))


def erfcinv(z):
    """The inverse of erfc on (0, 2): +inf at 0, -inf at 2, nan outside; accurate for tiny z."""
    z = _float(as_variable(z, "z"))
    inside = B.gt(z, 0) & B.lt(z, 2.0)
    low = B.le(z, 1.0)
    zz = B.where(inside, B.where(low, z, 2.0 - z), 0.5)  # the tail of the smaller side
    x = _inverse(1.0 - zz, zz)
    edge = B.where(B.eq(z, 0), float("inf"), B.where(B.eq(z, 2.0), float("-inf"), float("nan")))
    return B.where(inside, B.where(low, x, -x), edge)
