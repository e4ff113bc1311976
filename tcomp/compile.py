"""Choosing the optimization pipeline and the backend for a traced graph."""
from __future__ import annotations

from tcomp.ir import Graph, evaluate
from tcomp.ir.graph import paused_gc

BACKENDS = ("reference", "cpu", "cuda")


class ReferenceCompiled:
    """The reference backend: the NumPy interpreter behind the compiled-function interface."""

    def __init__(self, graph: Graph):
        self.graph = graph

    def __call__(self, inputs):
        return evaluate(self.graph, inputs)

    def dump(self, stage):
        raise ValueError(f"stage {stage!r} does not exist on the reference backend (it compiles nothing); "
                         "use 'traced' or 'optimized'")


def optimize(graph: Graph, mode=None, exclude=(), pass_options=None):
    """Run the pass pipeline of ``mode`` ('default' or 'fast_compile'); returns (graph, report).

    ``pass_options``: PassManager instrumentation (verify_each, print_after, print_after_all,
    time_passes, stream), like LLVM's -verify-each / -print-after / -time-passes.
    """
    from tcomp.passes import PassManager

    pm = PassManager("default" if mode is None else mode, exclude=tuple(exclude or ()), **dict(pass_options or {}))
    return pm.run(graph), pm.report


#: ops the CPU backend does not lower (scan and ifelse are native loops and branches since
#: issue 15: ``passes/lower_loops.py``); compiling one raises at compile time
CPU_NOT_LOWERED = ()
#: ops the CUDA backend does not lower yet
CUDA_NOT_LOWERED = ("scan", "ifelse")


def _reject_control_flow(graph: Graph, backend: str = "cpu") -> None:
    refused = CPU_NOT_LOWERED if backend == "cpu" else CUDA_NOT_LOWERED
    for n in graph.nodes():
        op = graph.op(n)
        if op in refused:
            raise TypeError(f"{op} is not yet lowered by the {backend} backend; use backend='reference' or 'cpu' "
                            f"(node %{n})")


def _reject_python_ops(graph: Graph, where: str,
                       hint: str = "use backend='cpu' or 'reference', or write the op with tcomp tensor operations"):
    """Python ops (``py_call``, tcomp/op.py) run only on the CPU and reference backends."""
    from tcomp.ir.ops.pyop import op_name, python_nodes, resolve

    found = python_nodes(graph)
    if found:
        g, n = found[0]
        raise TypeError(f"{where} cannot run Python op {op_name(resolve(g.attrs(n)['op']))} (its perform is Python "
                        f"code); {hint}")


@paused_gc()  # (the backend builds millions of live objects for a big graph: see paused_gc)
def compile_graph(graph: Graph, backend: str = "reference", name: str = "fn", donate=None, cuda_arch=None):
    """``donate``: graph output position -> input position whose storage the output may be
    written into (shared-variable updates); a backend uses it where it is safe, or ignores it.
    ``cuda_arch``: the GPU architecture of backend 'cuda' (default: the device's, else sm_80)."""
    if cuda_arch is not None and backend != "cuda":
        raise ValueError(f"cuda_arch={cuda_arch!r} applies to backend='cuda' only, not {backend!r}")
    if backend == "reference":
        return ReferenceCompiled(graph)
    if backend == "cpu":
        from tcomp.backend.cpu import compile_graph as cpu_compile

        _reject_control_flow(graph)
        from tcomp.backend.cpu.control_function import compile_control, has_control_flow
        from tcomp.backend.cpu.python_stages import refuse_nested

        refuse_nested(graph)  # a Python op inside a native loop body

        if has_control_flow(graph):  # loops and branches: always the native program (until, body errors)
            return compile_control(graph, name=name, donate=donate)
        return cpu_compile(graph, name=name, donate=donate)
    if backend == "cuda":  # NVPTX kernels, run through the CUDA driver (tcomp/backend/nvptx/runtime.py)
        from tcomp.backend.nvptx.runtime import compile_graph as cuda_compile

        _reject_control_flow(graph, "cuda")
        _reject_python_ops(graph, "the cuda backend")
        return cuda_compile(graph, name=name, donate=donate, cuda_arch=cuda_arch)
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


# Theano's spellings: tcomp.compile.mode.get_mode, tcomp.compile.DebugMode, tcomp.compile.Mode
import tcomp.mode as _mode_module  # noqa: E402
from tcomp.mode import DebugMode, Mode, get_mode  # noqa: E402, F401

globals()["mode"] = _mode_module  # not a plain import: optimize()'s ``mode`` argument has that name
debugmode = _mode_module  # Theano's tcomp.compile.debugmode.DebugMode

# Theano's tcomp.compile.ops.as_op (and tcomp.compile.as_op): Python ops (tcomp/op.py)
import sys as _sys  # noqa: E402

from tcomp import op as ops  # noqa: E402
from tcomp import op_from_graph as builders  # noqa: E402  (theano.compile.builders.OpFromGraph)
from tcomp.op import as_op  # noqa: E402, F401

_sys.modules.setdefault(__name__ + ".ops", ops)  # so that ``from tcomp.compile.ops import as_op`` works
_sys.modules.setdefault(__name__ + ".builders", builders)
