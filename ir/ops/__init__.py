"""The op table (``OPS``) and its row type; importing this module registers every op."""
from . import conv, elementwise, fused, indexing, linalg, multi_output, nnet, pool, random, reduction, shape, source  # noqa: F401
from .registry import OPS, Constant, OpDef, get_op, register

__all__ = ["OPS", "Constant", "OpDef", "get_op", "register"]
