"""Source ops: graph inputs and constants.  They carry their type instead of inferring it."""
from __future__ import annotations

from .registry import OpDef, register

register(OpDef("input", 0, None, None, kind="source", source=True, differentiable=False,
               doc="a graph input; its name is the node name"))
register(OpDef("constant", 0, None, lambda arrays, attrs, out_type: attrs["value"].value,
               attr_defaults={"value": None}, kind="source", source=True, differentiable=False,
               doc="a constant tensor held in the 'value' attribute"))
