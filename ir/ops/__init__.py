"""The op table (``OPS``) and its row type; importing this module registers every op."""
from . import (  # noqa: F401
    control,
    conv,
    elementwise,
    fused,
    indexing,
    linalg,
    linalg_decomp,
    linalg_spectral,
    multi_output,
    nnet,
    nonzero,
    pool,
    pyop,
    random,
    reduction,
    scan_sort,
    shape,
    source,
)
from .registry import OPS, Constant, OpDef, get_op, register

__all__ = ["OPS", "Constant", "OpDef", "get_op", "register"]
