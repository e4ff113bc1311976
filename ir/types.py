"""Tensor types: a dtype and a shape whose dims are static ints or symbolic.

A dim is an ``int`` (static), a ``str`` (a named symbolic dim: every dim with the same
name has the same size at run time) or ``None`` (an anonymous symbolic dim).

Broadcasting follows Theano: only a dim that is *statically* 1 broadcasts.  A symbolic
dim never broadcasts, so a result type is always known at build time; where two dims
meet that are not both static, their equality is checked at run time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from . import dtypes as dt

Dim = Union[int, str, None]


def _check_dim(d) -> Dim:
    if d is None or isinstance(d, str) or (type(d) is int and d >= 0):  # (the common cases first)
        return d
    try:
        import numpy as np

        if isinstance(d, (int, np.integer)) and not isinstance(d, bool):
            if int(d) < 0:
                raise ValueError(f"negative dimension {d}")
            return int(d)
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"a dim must be an int, a name or None, got {d!r}")


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: tuple

    def __init__(self, dtype, shape=()):
        object.__setattr__(self, "dtype", dt.canonical(dtype))
        object.__setattr__(self, "shape", tuple(_check_dim(d) for d in shape))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def broadcastable(self) -> tuple:
        return tuple(d == 1 for d in self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    @property
    def size(self) -> Optional[int]:
        """Number of elements when the shape is static, else None."""
        if not self.is_static:
            return None
        n = 1
        for d in self.shape:
            n *= d
        return n

    def with_dtype(self, dtype) -> "TensorType":
        return TensorType(dtype, self.shape)

    def with_shape(self, shape) -> "TensorType":
        return TensorType(self.dtype, shape)

    def __str__(self) -> str:
        return f"{dt.SHORT_NAMES[self.dtype]}[{', '.join(dim_str(d) for d in self.shape)}]"

    __repr__ = __str__


@dataclass(frozen=True)
class TupleType:
    """The type of a multi-output kernel (a ``fused`` node with ``outputs``): its results in order.

    A tuple value exists only between such a kernel and its ``get_output`` readers, so it has
    no dtype, shape or rank; reading one raises instead of letting a pass treat the whole
    tuple as one tensor (the failure would otherwise surface far away as a wrong buffer).
    """

    elements: tuple

    def __init__(self, elements):
        if isinstance(elements, TensorType) or not isinstance(elements, (tuple, list)):
            raise TypeError(f"TupleType takes a tuple of TensorTypes, got {elements!r}")
        elements = tuple(elements)
        bad = [e for e in elements if not isinstance(e, TensorType)]
        if bad:
            raise TypeError(f"TupleType elements must be TensorTypes, got {bad[0]!r}")
        if len(elements) < 2:
            raise ValueError(f"a TupleType has at least 2 elements, got {len(elements)}")
        object.__setattr__(self, "elements", elements)

    def _no(self, what):
        raise AttributeError(f"{self} is a tuple of {len(self.elements)} results and has no {what}; "
                             f"read one element through get_output")

    dtype = property(lambda self: self._no("dtype"))
    shape = property(lambda self: self._no("shape"))
    ndim = property(lambda self: self._no("ndim"))
    broadcastable = property(lambda self: self._no("broadcastable"))
    is_static = property(lambda self: self._no("is_static"))
    size = property(lambda self: self._no("size"))

    def __str__(self) -> str:
        return "(" + ", ".join(str(e) for e in self.elements) + ")"

    __repr__ = __str__


def dim_str(d: Dim) -> str:
    return "?" if d is None else str(d)


def is_static_dim(d: Dim) -> bool:
    return isinstance(d, int)


def merge_dims(a: Dim, b: Dim) -> Dim:
    """The dim two equal-at-run-time dims are known as: prefer static, then named."""
    if isinstance(a, int):
        return a
    if isinstance(b, int):
        return b
    return a if a is not None else b


def broadcast_shapes(*shapes: tuple, what: str = "operands") -> tuple:
    """Broadcast shapes (NumPy right alignment) where only static 1 dims broadcast.

    Raises ValueError naming ``what`` when two static dims conflict.
    """
    if len(shapes) == 2:  # the common cases, same result as the loop below: equal shapes, a scalar
        a, b = shapes
        if a == b or not b:
            return tuple(a)
        if not a:
            return tuple(b)
    ndim = max((len(s) for s in shapes), default=0)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    out = []
    for axis in range(ndim):
        dims = [p[axis] for p in padded]
        result: Dim = 1
        for d in dims:
            if d == 1:
                continue
            if result == 1:
                result = d
            elif isinstance(result, int) and isinstance(d, int) and result != d:
                raise ValueError(
                    f"cannot broadcast {what}: shapes {', '.join(shape_str(s) for s in shapes)} "
                    f"conflict at axis {axis} ({result} vs {d})"
                )
            else:
                result = merge_dims(result, d)
        out.append(result)
    return tuple(out)


def shape_str(shape) -> str:
    return "[" + ", ".join(dim_str(d) for d in shape) + "]"


def dims_may_match(a: Dim, b: Dim) -> bool:
    """False only when both dims are static and differ."""
    return not (isinstance(a, int) and isinstance(b, int) and a != b)
