"""Shared by the NVPTX tests: every op's graph (tests/test_cpu_ops.py's CASES) lowered to
its kernel program, and the kernel kinds the NVPTX backend does not lower yet."""
import numpy as np
import test_cpu_ops as C

from tcomp.ir import Graph
from tcomp.passes.lower_kernels import lower_kernels

#: kernel kinds without NVPTX codegen (a clear TypeError at compile time names the kind)
NOT_LOWERED_KINDS: set = {"linalg", "nonzero"}


def op_case(op, dtype, seed=0):
    """(graph, inputs, program) or None where the op does not take ``dtype``."""
    g = Graph()
    rng = np.random.default_rng(seed)
    try:
        ins = C.CASES[op](g, dtype, rng)
    except (TypeError, ValueError):
        return None
    return g, ins, lower_kernels(g)


def lowered(p) -> bool:
    return not any(k.kind in NOT_LOWERED_KINDS for k in p.kernels)


#: ops whose result length is data (a host value only a kernel computes): one kernel program
#: cannot hold them (the CPU backend chains programs; NVPTX refuses their kind, tested in
#: tests/test_ops_nonzero.py)
NEEDS_STAGES = {"flatnonzero"}

OPS = sorted(op for op in C.CASES if op not in NEEDS_STAGES)
