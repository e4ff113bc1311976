"""Graph transformations (depends only on tcomp.ir).

``optimize(graph, mode='default')`` runs the standard pipeline (canonicalize, constant
folding, CSE, algebraic simplification, stabilization, fusion, DCE); ``PassManager`` gives
control over the pipeline and its instrumentation; ``plan_memory`` is the buffer analysis;
``lower_kernels`` makes a graph's kernel program (see ``kernel_program``), what backends compile.
"""
from .canonicalize import canonicalize
from .cse import cse, dce
from .fold import MAX_FOLD_ELEMENTS, constant_fold
from .fusion import fuse_elementwise
from .kernel_program import KernelProgram
from .lower_kernels import lower_kernels
from .manager import PASSES, PIPELINES, Pass, PassManager, PassRecord, PassReport, optimize, register_pass
from .memory import MemoryPlan, plan_memory
from .simplify import simplify
from .stabilize import stabilize

__all__ = [
    "canonicalize", "constant_fold", "cse", "dce", "simplify", "stabilize", "fuse_elementwise",
    "optimize", "PassManager", "PassReport", "PassRecord", "Pass", "PASSES", "PIPELINES", "register_pass",
    "plan_memory", "MemoryPlan", "lower_kernels", "KernelProgram", "MAX_FOLD_ELEMENTS",
]
