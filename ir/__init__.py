"""tcomp's IR: dtypes, tensor types, the op table, Graph, and the reference interpreter.

Imports nothing of the rest of tcomp (the dependency arrow points here).
"""
from . import dtypes
from .graph import Graph
from .interpreter import ShapeError, evaluate
from .ops import OPS, Constant, OpDef, get_op
from .parser import parse_graph
from .printer import format_graph, structural_hash
from .serialize import from_json, to_json
from .types import TensorType, TupleType
from .verify import verify

__all__ = ["dtypes", "Graph", "evaluate", "ShapeError", "OPS", "Constant", "OpDef", "get_op", "TensorType",
           "TupleType", "format_graph", "structural_hash", "parse_graph", "to_json", "from_json", "verify"]
