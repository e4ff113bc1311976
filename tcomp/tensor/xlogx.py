"""Theano's ``T.xlogx``: x log x and x log y with the value 0 where x is 0 (the limit), and
gradients that stay finite there (the log's argument is replaced by 1 where x == 0, so the
untaken branch of the ``where`` never differentiates log(0))."""
from __future__ import annotations

from . import basic as B
from .extra import _float
from .variable import as_variable


def xlogx(x):
    """x * log(x), 0 where x == 0."""
    x = _float(as_variable(x, "x"))
    zero = B.eq(x, 0)
    safe = B.where(zero, B.ones_like(x), x)
    return B.where(zero, B.zeros_like(x), safe * B.log(safe))


def xlogy0(x, y):
    """x * log(y), 0 where x == 0 (whatever y is)."""
    x, y = _float(as_variable(x, "x")), _float(as_variable(y, "y"))
    zero = B.eq(x, 0)
    safe_y = B.where(zero, B.ones_like(y * x), y)
    return B.where(zero, B.zeros_like(x * safe_y), x * B.log(safe_y))


__all__ = ["xlogx", "xlogy0"]
