"""Shared variables: tensors whose storage tcomp holds across calls (Theano's ``shared``)."""
from __future__ import annotations

import numpy as np

from tcomp.ir import dtypes as dt
from tcomp.ir.types import TensorType

from .tensor.variable import Variable


class SharedVariable(Variable):
    """A root variable bound to a value.  Its type's shape is the value's static shape unless
    ``shape=`` says otherwise (use None entries for dims that may change with set_value)."""

    __slots__ = ("_value", "default_update")

    def __init__(self, value, name=None, shape=None, dtype=None):
        arr = np.array(value, dtype=dtype, copy=True)
        arr = arr.astype(dt.canonical(arr.dtype if dtype is None else dtype), copy=False)
        shape = arr.shape if shape is None else tuple(shape)
        super().__init__(TensorType(arr.dtype.name, shape), "input", name=name)
        self._value = None
        #: an expression tcomp.function uses as this variable's update when none is given
        self.default_update = None
        self._store(arr, borrow=True)

    def _store(self, value, borrow):
        arr = np.asarray(value)
        label = self.name or "shared variable"
        if arr.dtype.name != self.dtype:
            if not np.can_cast(arr.dtype, self.dtype, "same_kind"):
                raise TypeError(f"{label}: expected dtype {self.dtype}, got {arr.dtype.name}")
            arr = arr.astype(self.dtype)
            borrow = True
        if arr.ndim != self.ndim or any(isinstance(d, int) and d != s for d, s in zip(self.type.shape, arr.shape)):
            raise ValueError(f"{label}: expected shape {self.type}, got {arr.shape}")
        if not borrow or not arr.flags.c_contiguous or not arr.flags.writeable:
            arr = np.array(arr, copy=True, order="C")
        self._value = arr

    def get_value(self, borrow=False):
        return self._value if borrow else self._value.copy()

    def set_value(self, value, borrow=False):
        self._store(value, borrow)

    def _assign_in_place(self, new):
        """Commit an update computed by a compiled function (same type, checked at build)."""
        if new.shape == self._value.shape:
            np.copyto(self._value, new, casting="unsafe")
        else:
            self._store(new, borrow=True)

    @property
    def value(self):
        return self.get_value()


def shared(value, name=None, borrow=False, shape=None, dtype=None) -> SharedVariable:
    """Create a shared variable holding (a copy of, unless ``borrow``) ``value``."""
    s = SharedVariable(value, name=name, shape=shape, dtype=dtype)
    if borrow and isinstance(value, np.ndarray) and value.dtype == s.dtype and value.flags.c_contiguous:
        s._value = value
    return s
