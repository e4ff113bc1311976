"""The LLVM CPU backend: ``compile_graph(graph) -> CompiledGraph`` (see ``compiled.py`` for
the call ABI and ``program.py`` for how each node is realized)."""
from .compiled import CompiledGraph, compile_graph

__all__ = ["compile_graph", "CompiledGraph"]
