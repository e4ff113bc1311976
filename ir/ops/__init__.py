"""The op table (``OPS``) and its row type; importing this module registers every op."""
from .registry import OPS, Constant, OpDef, get_op, register
from . import source, elementwise, reduction, shape, indexing, linalg, nnet  # noqa: F401,E402

__all__ = ["OPS", "Constant", "OpDef", "get_op", "register"]
