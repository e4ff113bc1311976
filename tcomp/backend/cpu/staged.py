"""Graphs whose shapes depend on values only a kernel can compute, run as a chain of programs.

A native program's ``plan`` computes every dim before ``run`` starts a kernel, from input dims
and scalar *inputs*.  Some graphs size a tensor from data: a binomial draw with a tensor ``n``
draws ``max(n)`` trials per element, a Poisson draw with tensor ``lam`` sizes its arrivals from
``max(lam)``.  The shape program cannot run a reduction, so lowering raises
:class:`~tcomp.passes.kernel_program.HostValueUnavailable` naming that rank-0 node.

The graph is then cut at that node: the first stage is the graph with that value as its one
output; the second stage is the whole graph with that value turned into one more scalar
input (so its ``plan`` reads it like a reshape target).  A stage may be cut again, so any
number of such values works.  A call runs the first stage, then the second with the value
appended; an AOT export of such a function needs the same two calls (each stage is a
complete native program).  The first stage recomputes only what the value depends on; the
second recomputes nothing of the first but that value.
"""
from __future__ import annotations

from tcomp.ir.graph import Graph
from tcomp.passes.kernel_program import HostValueUnavailable

#: a graph needing more stages than this is refused (each stage is one more native call)
MAX_STAGES = 16


def split_at(graph: Graph, node: int) -> tuple[Graph, Graph]:
    """(the graph computing ``node`` only, the graph reading ``node`` as its last input)."""
    first = graph.copy()
    first.outputs = [node]
    first.remove_dead()
    rest = graph.copy()
    label = graph.name(node) or f"host%{node}"
    new = rest.add_input(graph.type(node), name=label)
    rest.replace_all_uses(node, new)
    rest.remove_dead()
    return first, rest


class StageChain:
    """Native programs called one after another (``self.parts``, in call order, each a
    program or itself a chain): what callers read of a compiled function (its kernel
    program, dumps, the last call's memory) comes from the stages, the outputs' from the last."""

    fresh_outputs = True
    #: said in each stage's header of :meth:`kernels_text`
    stage_note = ""

    def _arguments(self, inputs) -> list:
        args = list(inputs)
        if len(args) != self.n_in:
            raise TypeError(f"function takes {self.n_in} inputs ({', '.join(self.input_names)}), got {len(args)}")
        return args

    @property
    def stages(self) -> list:
        """Every native program of the chain, in call order."""
        out = []
        for s in self.parts:
            out.extend(s.stages if hasattr(s, "stages") else [s])
        return out

    @property
    def program(self):
        """The last stage's kernel program (the one producing the outputs)."""
        return self.stages[-1].program

    def kernels_text(self) -> str:
        ps = self.stages
        return "\n".join(f"# stage {k + 1} of {len(ps)}{self.stage_note}\n{s.program}" for k, s in enumerate(ps))

    @property
    def llvm_ir_unoptimized(self) -> str:
        return "\n".join(s.llvm_ir_unoptimized for s in self.stages)

    def dump(self, stage: str) -> str:
        return "\n".join(s.dump(stage) for s in self.stages)

    @property
    def last_call_memory(self):
        return self.stages[-1].last_call_memory


class StagedFunction(StageChain):
    """``first`` computes the shape-deciding value; ``rest`` takes it as its last input."""

    def __init__(self, first, rest, node: int):
        self.first, self.rest, self.node = first, rest, node
        self.parts = (first, rest)
        self.n_in = first.n_in
        self.input_names = first.input_names

    def __call__(self, inputs) -> list:
        args = self._arguments(inputs)
        (value,) = self.first(args)
        return self.rest(args + [value])


def compile_native(graph: Graph, *, name: str = "fn", donate=None, _depth: int = 0):
    """A ``NativeFunction``, or a :class:`StagedFunction` chain when shapes depend on kernels."""
    from .native_function import NativeFunction
    from .python_stages import compile_python_stages, has_python_ops

    if has_python_ops(graph):  # Python ops: native programs split at each call (python_stages.py)
        return compile_python_stages(graph, name=name, donate=donate)
    if not any(graph.op(n) == "fused" for n in graph.nodes()):
        # a hand-built graph is fused here rather than in NativeFunction, so that the node a
        # HostValueUnavailable names is a node of the graph split below
        from tcomp.passes.fusion import fuse_elementwise

        graph = fuse_elementwise(graph.copy())
    try:
        return NativeFunction(graph, name=name, donate=donate, fuse=False)
    except HostValueUnavailable as e:
        if _depth >= MAX_STAGES:
            raise
        node = e.node
    first, rest = split_at(graph, node)
    return StagedFunction(compile_native(first, name=f"{name}.stage", _depth=_depth + 1),
                          compile_native(rest, name=name, donate=donate, _depth=_depth + 1), node)
