"""Choosing the optimization pipeline and the backend for a traced graph."""
from __future__ import annotations

from tcomp.ir import Graph, evaluate

BACKENDS = ("reference", "cpu")


class ReferenceCompiled:
    """The reference backend: the NumPy interpreter behind the compiled-function interface."""

    def __init__(self, graph: Graph):
        self.graph = graph

    def __call__(self, inputs):
        return evaluate(self.graph, inputs)

    def dump(self, stage):
        raise ValueError(f"stage {stage!r} does not exist on the reference backend (it compiles nothing); "
                         "use 'traced' or 'optimized'")


def optimize(graph: Graph, mode=None, exclude=()) -> Graph:
    g = graph.copy()
    g.remove_dead()
    return g


def compile_graph(graph: Graph, backend: str = "reference", name: str = "fn"):
    if backend == "reference":
        return ReferenceCompiled(graph)
    if backend == "cpu":
        from tcomp.backend.cpu import compile_graph as cpu_compile

        return cpu_compile(graph, name=name)
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
