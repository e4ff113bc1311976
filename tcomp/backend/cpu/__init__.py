"""The LLVM CPU backend: ``compile_graph(graph)`` -> one native program per function (see
``native_function.py`` for the call path and ``host_program.py`` for the generated entries)."""
from .compiled import compile_graph

#: multi-output ``fused`` kernels, leading layout steps and epilogues are lowered
SUPPORTS_MULTI_OUTPUT = True

__all__ = ["compile_graph", "SUPPORTS_MULTI_OUTPUT"]
