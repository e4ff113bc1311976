"""Compiled functions whose graph has loops (``scan``) or branches (``ifelse``).

They always run as native programs (``config.native_program`` or not: the Python planner
never learnt loops).  What the call path adds around the native function:

* **until**: a loop that may stop early writes the number of steps that ran into one more
  program output (``passes/lower_loops.py``); its results are sized for ``n_steps`` and are
  trimmed here to that count.  When the graph reads such a result itself (a gradient
  through ``until``, a sum of the outputs), the count decides shapes after the loop, so
  the graph is cut at the loop (as ``staged.py`` cuts at a shape-deciding value): the first
  stage returns the loop's results, trimmed, and the second stage takes them as inputs.
* **errors**: a failure inside a loop or branch body (a check of the body's shapes, an index
  out of bounds, a step result of another shape) makes ``run`` return that kernel's code; the
  graph is then run by the reference interpreter, which raises the error the reference
  backend raises for these inputs (naming the step); rare, so its cost does not matter.
"""
from __future__ import annotations

from tcomp.ir import evaluate
from tcomp.ir.graph import Graph
from tcomp.ir.interpreter import ShapeError
from tcomp.ir.ops.control import scan_layout
from tcomp.passes.lower_loops import CONTROL_OPS, UntilCount

from .host_loops import CONTROL_KINDS

MAX_STAGES = 16


def has_control_flow(graph: Graph) -> bool:
    return any(graph.op(n) in CONTROL_OPS for n in graph.nodes())


def _trims(fn) -> list:
    """(output position, count output position) for every until loop's "all" result."""
    from .native_function import NativeFunction

    stages = getattr(fn, "stages", None)
    if stages:  # a chain (staged.py): the last program returns the outputs
        fn = stages[-1]
    if not isinstance(fn, NativeFunction):
        return []
    kp = fn.program
    pos_of = {o.value: p for p, o in enumerate(kp.outputs)}
    out = []
    for k in kp.kernels:
        if k.kind != "loop" or not dict(k.attrs)["until"]:
            continue
        attrs = dict(k.attrs)
        _, n_rec, n_nitsot, _, _ = scan_layout(attrs, len(k.args))
        store = attrs["store"] or ("all",) * (n_rec + n_nitsot)
        count = pos_of[k.writes[-1]]
        for w, mode in zip(k.writes[:n_rec + n_nitsot], store):
            if mode == "all" and w in pos_of:
                out.append((pos_of[w], count))
    return out


class ControlFunction:
    """A native function (or a staged chain) with until trimming and reference errors."""

    fresh_outputs = True

    def __init__(self, inner, graph: Graph, n_out: int):
        self.inner, self.graph, self.n_out = inner, graph, n_out
        self.n_in = inner.n_in
        self.input_names = inner.input_names
        self._trims = _trims(inner)
        self._labels = {k.label for p in self.programs for k in p.kernels if k.kind in CONTROL_KINDS}

    @property
    def programs(self) -> list:
        stages = getattr(self.inner, "stages", None)
        return [s.program for s in stages] if stages is not None else [self.inner.program]

    @property
    def program(self):
        return self.inner.program

    def __call__(self, inputs) -> list:
        args = inputs if type(inputs) is tuple else tuple(inputs)
        try:
            outs = self.inner(args)
        except IndexError as exc:
            self._body_failed(exc, args)
        outs = list(outs)
        for p, c in self._trims:
            outs[p] = outs[p][:int(outs[c])]
        return outs[:self.n_out]

    def _body_failed(self, exc, args):
        """Re-raise ``exc`` of a call, as the reference's error when a control kernel failed."""
        msg = str(exc)
        if not any(msg.startswith(f"{label}: ") for label in self._labels):
            raise exc
        self._reference_error(args)
        raise ValueError(f"{msg.split(': index out of bounds')[0]}: a loop or branch body failed in native code "
                         f"although the reference interpreter runs it: a body whose step results change shape, "
                         f"or an ifelse inside a loop whose branches give different shapes, is not supported by "
                         f"the cpu backend (use backend='reference')") from None

    @staticmethod
    def fast_call(compiled: "ControlFunction", function):
        """``tcomp.function``'s direct call path: the native function's, when no output is
        trimmed (no until loop among the outputs), with the body-failure errors above."""
        inner = compiled.inner
        make = getattr(type(inner), "fast_call", None)
        fast = make(inner, function) if make is not None and not compiled._trims else None
        if fast is None:
            return None

        def call(args):
            try:
                return fast(args)
            except IndexError as exc:
                compiled._body_failed(exc, args)
        return call

    def _reference_error(self, args) -> None:
        try:
            evaluate(self.graph, list(args))
        except ShapeError as exc:
            raise ValueError(str(exc)) from None
        except (ValueError, TypeError, IndexError) as exc:
            raise type(exc)(str(exc)) from None

    def __getattr__(self, name):  # dump, llvm_ir_unoptimized, last_call_memory, kernels_text, ...
        if name in ("inner", "fast_call"):
            raise AttributeError(name)
        return getattr(self.inner, name)


class UntilStages:
    """``first`` returns an until loop's results (trimmed); ``rest`` reads them as inputs."""

    fresh_outputs = True

    def __init__(self, first, rest):
        self.first, self.rest = first, rest
        self.n_in, self.input_names = first.n_in, first.input_names

    @property
    def stages(self) -> list:
        out = []
        for s in (self.first, self.rest):
            out.extend(s.stages if hasattr(s, "stages") else [s])
        return out

    @property
    def programs(self) -> list:
        return [p for s in (self.first, self.rest) for p in s.programs]

    @property
    def program(self):
        return self.rest.program

    def kernels_text(self) -> str:
        ps = self.programs
        return "\n".join(f"# stage {k + 1} of {len(ps)}\n{p}" for k, p in enumerate(ps))

    def __call__(self, inputs) -> list:
        args = list(inputs)
        return self.rest(args + list(self.first(args)))

    def dump(self, stage: str) -> str:
        return "\n".join(s.dump(stage) for s in (self.first, self.rest))

    @property
    def last_call_memory(self):
        return self.rest.last_call_memory


def split_at_loop(graph: Graph, node: int):
    """(the graph returning loop ``node``'s results, the graph reading them as inputs)."""
    results = [u for u in graph.users(node) if graph.op(u) == "get_output"] or [node]
    results.sort(key=lambda u: graph.attrs(u)["index"] if graph.op(u) == "get_output" else 0)
    first = graph.copy()
    first.outputs = list(results)
    first.remove_dead()
    rest = graph.copy()
    for r in results:
        new = rest.add_input(graph.type(r), name=graph.name(r) or f"until%{r}")
        rest.replace_all_uses(r, new)
    rest.remove_dead()
    return first, rest


def compile_control(graph: Graph, *, name: str = "fn", donate=None, _depth: int = 0):
    """The compiled function of a graph with scan/ifelse (see the module docstring)."""
    from .staged import compile_native

    try:
        inner = compile_native(graph, name=name, donate=donate)
    except UntilCount as exc:
        if _depth >= MAX_STAGES:
            raise
        first, rest = split_at_loop(graph, exc.node)
        return UntilStages(compile_control(first, name=f"{name}.loop", _depth=_depth + 1),
                           compile_control(rest, name=name, donate=donate, _depth=_depth + 1))
    return ControlFunction(inner, graph, len(graph.outputs))


__all__ = ["compile_control", "has_control_flow", "ControlFunction", "UntilStages"]
