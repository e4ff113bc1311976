"""More of Theano's elementwise names, as compositions of existing ops (so every backend
and autodiff have them): tan, deg2rad/rad2deg, isclose/allclose, largest/smallest, ptp,
choose."""
from __future__ import annotations

import functools
import math

from . import basic as B
from .extra import _float
from .variable import as_variable


def tan(x):
    """sin(x) / cos(x) elementwise."""
    x = _float(as_variable(x, "x"))
    return B.sin(x) / B.cos(x)


def deg2rad(x):
    return _float(as_variable(x, "x")) * (math.pi / 180.0)


def rad2deg(x):
    return _float(as_variable(x, "x")) * (180.0 / math.pi)


def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """NumPy's isclose: |a - b| <= atol + rtol |b|, infinities equal only to themselves."""
    from .extra import isinf, isnan

    a, b = as_variable(a, "a"), as_variable(b, "b")
    # an infinity is close only to itself (|a - b| <= rtol * inf would say yes to any finite a)
    close = B.where(isinf(a) | isinf(b), B.eq(a, b), B.abs(a - b) <= atol + rtol * B.abs(b))
    if equal_nan:
        close = close | (isnan(a) & isnan(b))
    return close


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """A bool scalar: every element isclose."""
    from .extra import all as all_

    return all_(isclose(a, b, rtol, atol, equal_nan))


def largest(*args):
    """The elementwise maximum of all arguments."""
    if not args:
        raise ValueError("largest needs at least one argument")
    return functools.reduce(B.maximum, [as_variable(a, f"argument {i}") for i, a in enumerate(args)])


def smallest(*args):
    """The elementwise minimum of all arguments."""
    if not args:
        raise ValueError("smallest needs at least one argument")
    return functools.reduce(B.minimum, [as_variable(a, f"argument {i}") for i, a in enumerate(args)])


def ptp(a, axis=None):
    """max - min along ``axis`` (all elements when None), as NumPy's ptp."""
    a = as_variable(a, "a")
    return B.max(a, axis) - B.min(a, axis)


def choose(a, choices, mode="raise"):
    """NumPy's choose: element i of the result is ``choices[a[i]][i]`` (choices broadcast
    with ``a``).  Only mode='raise' semantics for valid indices; 'clip' and 'wrap' adjust
    the index first."""
    a = as_variable(a, "a")
    if not isinstance(choices, (list, tuple)):
        raise TypeError("choose: choices must be a list or tuple of tensors")
    if not choices:
        raise ValueError("choose needs at least one choice")
    n = len(choices)
    if mode == "clip":
        a = B.clip(a, 0, n - 1)
    elif mode == "wrap":
        a = a % n
    elif mode != "raise":
        raise ValueError(f"choose: mode must be 'raise', 'clip' or 'wrap', got {mode!r}")
    out = as_variable(choices[-1], f"choices[{n - 1}]")
    for k in range(n - 2, -1, -1):
        out = B.where(B.eq(a, k), as_variable(choices[k], f"choices[{k}]"), out)
    return out
