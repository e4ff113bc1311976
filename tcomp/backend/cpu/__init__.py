"""The LLVM CPU backend: ``compile_graph(graph) -> CompiledGraph`` (see ``compiled.py`` for
the call ABI and ``program.py`` for how each node is realized)."""
from .compiled import CompiledGraph, compile_graph

#: multi-output ``fused`` kernels, leading layout steps and epilogues are lowered
SUPPORTS_MULTI_OUTPUT = True

__all__ = ["compile_graph", "CompiledGraph", "SUPPORTS_MULTI_OUTPUT"]
