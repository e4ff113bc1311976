"""The pass manager: named passes, ordered pipelines, and LLVM-style instrumentation.

A pass is a named function ``Graph -> Graph``.  ``PassManager.run`` copies the graph
once and hands that copy down the pipeline, so the caller's graph is never changed
while each pass may mutate what it is given.  Instrumentation mirrors LLVM's
``-verify-each``, ``-print-after`` / ``-print-after-all`` and ``-time-passes``: after
each pass the manager can verify the graph (``tcomp.ir.verify``), print its text form to
``stream``, and record wall time and node counts in ``PassManager.report``.

``optimize(graph, mode=...)`` is the one-call form; its last report is kept as
``optimize.last_report``.
"""
from __future__ import annotations

import contextvars
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, TextIO

from tcomp.ir import Graph
from tcomp.ir.graph import paused_gc

from .canonicalize import canonicalize
from .cse import cse, dce
from .fold import constant_fold
from .fusion import fuse_elementwise
from .fusion_gemm import absorb_all_products, absorb_products
from .scan_opt import scan_opt
from .simplify import simplify
from .stabilize import stabilize


@dataclass(frozen=True)
class Pass:
    name: str
    fn: Callable[[Graph], Graph]
    doc: str = ""


PASSES: dict[str, Pass] = {}


def register_pass(name: str, fn: Callable[[Graph], Graph], doc: str = "") -> Pass:
    """Add a pass to the registry (names are unique)."""
    if name in PASSES:
        raise ValueError(f"pass {name!r} registered twice")
    p = Pass(name, fn, doc or (fn.__doc__ or "").strip().splitlines()[0] if (doc or fn.__doc__) else "")
    PASSES[name] = p
    return p


register_pass("canonicalize", canonicalize)
register_pass("constant_fold", constant_fold)
register_pass("cse", cse)
register_pass("simplify", simplify)
register_pass("stabilize", stabilize)
register_pass("scan_opt", scan_opt)
register_pass("fuse_elementwise", fuse_elementwise)
register_pass("fuse_gemm_epilogue", absorb_products)
register_pass("fuse_gemm_epilogue_all", absorb_all_products)
register_pass("dce", dce)

#: the pipelines by mode; a name may appear more than once (cse/dce run again after rewrites)
PIPELINES: dict[str, tuple[str, ...]] = {
    # stabilize runs before the first constant_fold too: folding log(1 - sigmoid(c)) in float32
    # first gave -inf where the stabilized form (of a symbolic c as well) gives -softplus(c)
    "default": ("canonicalize", "stabilize", "constant_fold", "cse", "simplify", "stabilize", "simplify",
                "constant_fold", "cse", "dce", "scan_opt", "fuse_elementwise", "dce"),
    "fast_compile": ("canonicalize", "dce"),
}
#: GEMM epilogue fusion (``passes/fusion_gemm.py``) is opt-in.  ``gemm_epilogue_cheap``
#: absorbs cheap epilogues (bias, relu, masks, scaled updates): on the 2-core znver4, idle,
#: the 784-512-512-10 MLP step ran the same with and without it (0.99-1.005x at 1 and 2
#: threads) while its fully cold compile took ~45 ms longer (0.48 vs 0.44 s: each epilogue is
#: its own function to emit and optimize), so the default pipeline leaves products unfused.
#: ``gemm_epilogue`` absorbs every elementwise epilogue, transcendental ones too (a tanh
#: epilogue measured up to 1.18x slower at 2 threads, loaded).
#: Use: ``tcomp.Mode(optimizer=PIPELINES['gemm_epilogue_cheap'])``.
_DEFAULT_WITH_EPILOGUES = PIPELINES["default"][:-1] + ("fuse_gemm_epilogue", "dce")
PIPELINES["gemm_epilogue_cheap"] = _DEFAULT_WITH_EPILOGUES
PIPELINES["gemm_epilogue"] = tuple("fuse_gemm_epilogue_all" if p == "fuse_gemm_epilogue" else p
                                   for p in _DEFAULT_WITH_EPILOGUES)


def _check_names(what: str, names: Iterable[str]) -> tuple[str, ...]:
    names = (names,) if isinstance(names, str) else tuple(names)
    bad = [n for n in names if n not in PASSES]
    if bad:
        raise ValueError(f"{what}: unknown pass name(s) {bad}; valid names: {sorted(PASSES)}")
    return names


@dataclass
class PassRecord:
    name: str
    seconds: float
    nodes_before: int
    nodes_after: int


@dataclass
class PassReport:
    records: list = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return sum(r.seconds for r in self.records)

    def __str__(self) -> str:
        lines = [f"{'pass':<18}{'ms':>10}{'nodes before':>14}{'nodes after':>13}"]
        for r in self.records:
            lines.append(f"{r.name:<18}{1e3 * r.seconds:>10.3f}{r.nodes_before:>14}{r.nodes_after:>13}")
        lines.append(f"{'total':<18}{1e3 * self.total_seconds:>10.3f}")
        return "\n".join(lines)


def _verifier() -> Callable[[Graph], None]:
    from tcomp.ir.verify import verify

    return verify


def graph_text(graph: Graph) -> str:
    """The printer's text form (``str(graph)``)."""
    return str(graph)


class PassManager:
    """Runs a pipeline of registered passes with optional verification, printing, timing.

    ``pipeline`` is a mode name (``'default'``, ``'fast_compile'``) or a sequence of pass
    names; ``exclude`` drops every occurrence of the named passes.
    """

    def __init__(self, pipeline="default", *, exclude=(), verify_each: bool = False, print_after=(),
                 print_after_all: bool = False, time_passes: bool = False, stream: Optional[TextIO] = None):
        if isinstance(pipeline, str):
            if pipeline not in PIPELINES:
                raise ValueError(f"unknown optimizer mode {pipeline!r}; valid modes: {sorted(PIPELINES)}")
            names = PIPELINES[pipeline]
        else:
            names = _check_names("pipeline", pipeline)
        exclude = set(_check_names("exclude", exclude))
        self.pipeline = tuple(n for n in names if n not in exclude)
        self.print_after = set(_check_names("print_after", print_after))
        self.print_after_all = print_after_all
        self.verify_each = verify_each
        self.time_passes = time_passes
        self.stream = stream
        self.report = PassReport()

    def run(self, graph: Graph) -> Graph:
        """Optimize a copy of ``graph`` and return it; ``self.report`` gets one record per pass."""
        with paused_gc():
            return self._run(graph)

    def _run(self, graph: Graph) -> Graph:
        verify = _verifier() if self.verify_each else None
        stream = self.stream if self.stream is not None else sys.stderr
        self.report = PassReport()
        g = graph.copy()
        if verify is not None:
            _verify(verify, g, "the input graph")
        for name in self.pipeline:
            before = len(g)
            t0 = time.perf_counter()
            token = _ACTIVE_PIPELINE.set(self.pipeline)  # (scan_opt runs the same pipeline on loop bodies)
            try:
                out = PASSES[name].fn(g)
            finally:
                _ACTIVE_PIPELINE.reset(token)
            seconds = time.perf_counter() - t0
            if not isinstance(out, Graph):
                raise TypeError(f"pass {name!r} returned {type(out).__name__}, expected a Graph")
            g = out
            self.report.records.append(PassRecord(name, seconds, before, len(g)))
            if verify is not None:
                _verify(verify, g, f"pass {name!r}")
            if self.print_after_all or name in self.print_after:
                print(f"; *** graph after {name} ***", file=stream)
                print(graph_text(g), file=stream)
        if self.time_passes:
            print(str(self.report), file=stream)
        return g


#: the pipeline of the PassManager whose pass is running (a pass that optimizes nested graphs
#: runs the same passes on them, exclusions included)
_ACTIVE_PIPELINE: contextvars.ContextVar = contextvars.ContextVar("tcomp_active_pipeline", default=None)


def active_pipeline() -> Optional[tuple]:
    """The pass names of the pipeline running now (None outside a PassManager run)."""
    return _ACTIVE_PIPELINE.get()


def _verify(verify, g: Graph, where: str) -> None:
    try:
        verify(g)
    except ValueError as exc:
        raise ValueError(f"graph invalid after {where}: {exc}") from exc


def optimize(graph: Graph, mode="default", exclude=(), verify_each: bool = False, print_after=(),
             print_after_all: bool = False, time_passes: bool = False, stream: Optional[TextIO] = None) -> Graph:
    """Optimize a copy of ``graph`` with the pipeline of ``mode``; the report of the run is
    kept as ``optimize.last_report`` (a :class:`PassReport`)."""
    pm = PassManager(mode, exclude=exclude, verify_each=verify_each, print_after=print_after,
                     print_after_all=print_after_all, time_passes=time_passes, stream=stream)
    out = pm.run(graph)
    optimize.last_report = pm.report
    return out


optimize.last_report = PassReport()
