"""``get_output``: read one result of a multi-output kernel (a node of :class:`TupleType`).

Multi-output ``fused`` kernels (see ``tcomp.ir.ops.fused``) give a tuple, which is not a
tensor: every consumer reads it through a ``get_output`` node, so every other op keeps
seeing TensorTypes only.  It is a ``kernel``-kind op: passes leave it alone, backends map it
to the kernel's ``index``-th result buffer (no code runs for it).
"""
from __future__ import annotations

from ..types import TupleType
from .registry import OpDef, register


def _infer(types, attrs):
    (t,) = types
    index = attrs["index"]
    if not isinstance(t, TupleType):
        raise TypeError(f"get_output: the operand must be a multi-output kernel (a tuple type), got {t}")
    if not isinstance(index, int) or isinstance(index, bool):
        raise TypeError(f"get_output: index must be an int, got {index!r}")
    if not 0 <= index < len(t.elements):
        raise ValueError(f"get_output: index {index} out of range for {t} ({len(t.elements)} results)")
    return t.elements[index]


def _impl(arrays, attrs, out_type):
    return arrays[0][attrs["index"]]


register(OpDef("get_output", 1, _infer, _impl, attr_defaults={"index": None}, kind="kernel",
               differentiable=False, doc="result `index` of a multi-output kernel"))
