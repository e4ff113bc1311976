"""Theano's shape helpers: shape_padleft/right/padaxis, horizontal/vertical_stack and
get_scalar_constant_value."""
from __future__ import annotations

import numpy as np

from . import basic as B
from .variable import Variable, as_variable


class NotScalarConstantError(ValueError):
    """The variable is not a constant scalar (Theano's name)."""


def shape_padaxis(t, axis):
    """``t`` with a broadcastable dim inserted at ``axis`` (negative counts from the end of the result)."""
    t = as_variable(t, "t")
    nd = t.ndim + 1
    if not -nd <= axis < nd:
        raise ValueError(f"shape_padaxis: axis {axis} is out of range for a result of rank {nd}")
    axis %= nd
    pattern = list(range(t.ndim))
    pattern.insert(axis, "x")
    return t.dimshuffle(*pattern)


def shape_padleft(t, n_ones=1):
    """``t`` with ``n_ones`` broadcastable dims in front."""
    t = as_variable(t, "t")
    return t.dimshuffle(*(["x"] * n_ones + list(range(t.ndim))))


def shape_padright(t, n_ones=1):
    """``t`` with ``n_ones`` broadcastable dims at the end."""
    t = as_variable(t, "t")
    return t.dimshuffle(*(list(range(t.ndim)) + ["x"] * n_ones))


def horizontal_stack(*args):
    """Matrices side by side (concatenate along axis 1)."""
    if len(args) < 2:
        raise ValueError("horizontal_stack needs at least two matrices")
    for i, a in enumerate(args):
        if as_variable(a, f"argument {i}").ndim != 2:
            raise TypeError(f"horizontal_stack takes matrices; argument {i} is {as_variable(a).describe()}")
    return B.concatenate(args, axis=1)


def vertical_stack(*args):
    """Matrices one above the other (concatenate along axis 0)."""
    if len(args) < 2:
        raise ValueError("vertical_stack needs at least two matrices")
    for i, a in enumerate(args):
        if as_variable(a, f"argument {i}").ndim != 2:
            raise TypeError(f"vertical_stack takes matrices; argument {i} is {as_variable(a).describe()}")
    return B.concatenate(args, axis=0)


def get_scalar_constant_value(v):
    """The Python/NumPy value of a constant scalar (or of a constant all of whose elements are
    equal, as Theano); raises NotScalarConstantError otherwise."""
    if isinstance(v, (int, float, bool, np.number)):
        return np.asarray(v)
    if isinstance(v, np.ndarray):
        value = v
    elif isinstance(v, Variable) and v.op == "constant":
        value = np.asarray(v.attrs["value"].value)
    else:
        raise NotScalarConstantError(f"{v.describe() if isinstance(v, Variable) else v!r} is not a constant")
    flat = value.reshape(-1)
    if flat.size == 0 or not (flat == flat[0]).all():
        raise NotScalarConstantError(f"constant of shape {value.shape} is not one scalar value")
    return np.asarray(flat[0])
