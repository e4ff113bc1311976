"""The op table: one row per op name with its attributes, type rule and NumPy reference.

Adding an op is adding a row here (semantics) plus a row in every other table keyed by
op name (gradients in ``tcomp.passes.autodiff``, lowering in each backend); tests check
the tables cover each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .. import dtypes as dt
from ..types import TensorType


class Constant:
    """An immutable ndarray usable as a hashable attribute (the ``value`` of a constant)."""

    __slots__ = ("value", "_key")

    def __init__(self, value, dtype=None):
        if dtype is None and isinstance(value, (bool, int, float)) and not isinstance(value, np.generic):
            dtype = dt.weak_default(value)
        arr = np.array(value, dtype=dtype, copy=True)
        # (np.ascontiguousarray would turn a 0-d value into shape (1,))
        arr = np.array(arr, dtype=dt.canonical(arr.dtype), order="C", copy=True)
        if arr.dtype.kind == "f":
            # NaN payloads carry no meaning in tcomp: keep only the sign, so equal-looking
            # constants compare, hash and print identically (the text form has no payloads).
            nans = np.isnan(arr)
            if nans.any():
                arr[nans] = np.copysign(np.nan, np.signbit(arr[nans]) * -2.0 + 1.0).astype(arr.dtype)
        arr.setflags(write=False)
        self.value = arr
        self._key = (arr.dtype.name, arr.shape, arr.tobytes())

    @property
    def type(self) -> TensorType:
        return TensorType(self.value.dtype.name, self.value.shape)

    def __eq__(self, other):
        return isinstance(other, Constant) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def __repr__(self):
        return f"Constant({self.value.tolist()!r}, {self.value.dtype.name})"


@dataclass
class OpDef:
    name: str
    #: number of operands; None means variadic (at least ``min_arity``)
    arity: Optional[int]
    #: infer(input_types, attrs) -> TensorType; raises TypeError/ValueError
    infer: Optional[Callable]
    #: impl(arrays, attrs, out_type) -> ndarray: the NumPy reference semantics
    impl: Optional[Callable]
    attr_defaults: dict = field(default_factory=dict)
    #: 'elemwise', 'reduction', 'shape', 'index', 'linalg', 'nnet', 'source', 'kernel'
    kind: str = "misc"
    #: source ops (input, constant) carry their type instead of inferring it
    source: bool = False
    #: False for ops whose outputs do not depend on their operands' values differentiably at
    #: all (shape, arange, random draws): autodiff treats what lies behind them as disconnected.
    #: Piecewise-constant and int/bool-valued ops (floor, comparisons) stay True: zero gradient.
    differentiable: bool = True
    min_arity: int = 1
    doc: str = ""

    def normalize_attrs(self, attrs: dict) -> dict:
        unknown = set(attrs) - set(self.attr_defaults)
        if unknown:
            raise TypeError(f"op {self.name!r} has no attribute(s) {sorted(unknown)}; "
                            f"it takes {sorted(self.attr_defaults)}")
        out = dict(self.attr_defaults)
        out.update(attrs)
        return out

    def check_arity(self, n: int) -> None:
        if self.arity is None:
            if n < self.min_arity:
                raise TypeError(f"op {self.name!r} takes at least {self.min_arity} operands, got {n}")
        elif n != self.arity:
            raise TypeError(f"op {self.name!r} takes {self.arity} operands, got {n}")

    def infer_type(self, input_types: list, attrs: dict) -> TensorType:
        self.check_arity(len(input_types))
        return self.infer(list(input_types), attrs)


OPS: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    if opdef.name in OPS:
        raise ValueError(f"op {opdef.name!r} registered twice")
    OPS[opdef.name] = opdef
    return opdef


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}") from None


def describe(types) -> str:
    return ", ".join(str(t) for t in types)
