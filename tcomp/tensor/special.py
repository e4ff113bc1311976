"""``T.gammaln``, ``T.psi``, ``T.gamma``: Theano's special functions (scipy's semantics).

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
    """The digamma function d/dx log Gamma(x) (scipy.special.psi); at its poles (0 and the
    negative integers) the value is infinite or nan."""
    x = _float(as_variable(x, "x"))
    pos = B.gt(x, 0)
    xr = B.where(pos, 0.5, x)
    # reflection: psi(x) = psi(1 - x) - pi / tan(pi x)
    reflected = _positive_psi(1 - xr) - math.pi * _cos_pi(xr) / _sin_pi(xr)
    return B.where(pos, _positive_psi(B.where(pos, x, 1.0)), reflected)


def _cos_pi(x):
    return B.cos(math.pi * (x - B.round(x))) * (1 - 2 * B.abs(B.round(x) % 2))


def gamma(x):
    """``Gamma(x)`` elementwise (scipy.special.gamma), as sign * exp(gammaln)."""
    x = _float(as_variable(x, "x"))
    # Gamma(x) < 0 exactly for negative non-integers with floor(x) odd
    odd_floor = B.eq(B.abs(B.floor(x) % 2), 1)
    sign = B.where(B.lt(x, 0) & odd_floor, -1.0, 1.0)
    return sign * B.exp(gammaln(x))
