"""tcomp's IR: dtypes, tensor types, the op table, Graph, and the reference interpreter.

Imports nothing of the rest of tcomp (the dependency arrow points here).
"""
from . import dtypes
from .graph import Graph
from .interpreter import ShapeError, evaluate
from .ops import OPS, Constant, OpDef, get_op
from .types import TensorType

__all__ = ["dtypes", "Graph", "evaluate", "ShapeError", "OPS", "Constant", "OpDef", "get_op", "TensorType"]
