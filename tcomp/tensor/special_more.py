"""``T.polygamma(n, x)`` and ``T.tri_gamma(x)``: Theano's polygamma family (scipy's values),
found missing by the API sweep.

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


__all__ = ["polygamma", "tri_gamma"]
