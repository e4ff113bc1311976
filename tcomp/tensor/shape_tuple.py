"""``x.shape``: a tuple of int64 scalars that does arithmetic like Theano's shape vector.

Why a tuple subclass: tcomp (like JAX) hands out the shape as a tuple, so unpacking
(``n, m = x.shape``), ``len``, indexing and concatenation with a tuple (``x.shape[:-1] + (k,)``)
keep working, while Theano programs treat ``x.shape`` as an int64 vector.  A plain tuple
gave ``x.shape * 2`` as the tuple repeated (silently wrong) and refused ``x.shape + 1``;
here every arithmetic operator with a number, an array or a variable acts on the vector,
a symbolic index picks an entry, a function returns it as one int64 array, and attributes
a tuple lacks (``x.shape.prod()``, ``.ndim``, ``.dtype``) are the vector's.
"""
from __future__ import annotations

import numpy as np


class ShapeTuple(tuple):
    __slots__ = ()

    def vector(self):
        """The shape as an int64 vector variable (Theano's ``x.shape``)."""
        from .basic import stack
        from .variable import constant

        return stack(list(self)) if self else constant(np.zeros(0, "int64"))

    def __getitem__(self, key):
        from .variable import Variable

        if isinstance(key, slice):
            return ShapeTuple(tuple.__getitem__(self, key))
        if isinstance(key, Variable) or (isinstance(key, np.ndarray) and key.ndim):
            return self.vector()[key]
        return tuple.__getitem__(self, key)

    def __getattr__(self, name):
        if name.startswith("_"):  # copy/pickle probe dunders: not the vector's
            raise AttributeError(name)
        return getattr(self.vector(), name)

    # a tuple operand concatenates (tcomp's and JAX's habit); anything else is vector arithmetic
    def __add__(self, other):
        if isinstance(other, tuple):
            return ShapeTuple(tuple.__add__(self, other))
        return self.vector() + other

    def __radd__(self, other):
        if isinstance(other, tuple):
            return ShapeTuple(tuple(other) + tuple(self))
        return other + self.vector()

    def __mul__(self, other):
        return self.vector() * other

    def __rmul__(self, other):
        return other * self.vector()

    def __sub__(self, other):
        return self.vector() - other

    def __rsub__(self, other):
        return other - self.vector()

    def __floordiv__(self, other):
        return self.vector() // other

    def __rfloordiv__(self, other):
        return other // self.vector()

    def __truediv__(self, other):
        return self.vector() / other

    def __rtruediv__(self, other):
        return other / self.vector()

    def __mod__(self, other):
        return self.vector() % other

    def __pow__(self, other):
        return self.vector() ** other

    def __neg__(self):
        return -self.vector()

    def __repr__(self):
        return f"ShapeTuple{tuple.__repr__(self)}"


__all__ = ["ShapeTuple"]
