"""Graphs with Python ops (``py_call``) run as native programs split at each Python call.

A native program cannot call back into Python (its ``run`` holds no GIL, and the AOT
library has no interpreter), so the graph is cut at its first ``py_call`` ``p``:

* **before**: a native program computing ``p``'s operands and every other value of
  ``p``'s ancestry that the rest of the graph reads (so nothing is computed twice);
* **the call**: ``perform`` on those values (read-only NumPy arrays, GIL held), its results
  checked against the declared types (``tcomp.ir.ops.pyop.run_perform``);
* **after**: the whole graph with those values and ``p``'s results as extra inputs, compiled
  by :func:`tcomp.backend.cpu.staged.compile_native` again (so it is cut again at the next
  ``py_call``, or at a shape only a kernel computes).

No stage contains a ``py_call``, so every stage is an ordinary kernel program, hashed and
kept in the persistent compile cache like any other.  The graph's outputs and the
shared-variable donations stay in the last stage, in place.  Threads: the native stages
release the GIL; ``perform`` runs under it, and a function called from several threads may
run the same op's ``perform`` concurrently (as Theano did), under the shared-variable locks
the call holds (``tcomp/shared.py``).  Those locks are re-entrant per thread: a ``perform``
that calls another compiled function (or ``get_value``/``set_value``) on a shared variable
this call holds goes on and sees the current value; only an update of a variable this call
reads while another thread reads it too raises (waiting could deadlock).
"""
from __future__ import annotations

from tcomp.ir.graph import Graph
from tcomp.ir.ops.pyop import PerformNode, op_name, python_nodes, resolve, run_perform
from tcomp.ir.types import TupleType

from .staged import StageChain

#: a graph with more Python calls than this is refused (each is two more stages)
MAX_CALLS = 64


def has_python_ops(graph: Graph) -> bool:
    return any(graph.op(n) == "py_call" for n in graph.nodes())


def refuse_nested(graph: Graph, backend: str = "cpu") -> None:
    """A ``py_call`` inside a loop or branch body cannot be split out of the native loop."""
    for g, n in python_nodes(graph):
        if g is not graph:
            op = resolve(g.attrs(n)["op"])
            raise TypeError(f"Python op {op_name(op)} is used inside a scan or ifelse body, which the {backend} "
                            "backend runs as one native loop; use backend='reference' or call the op outside the "
                            "loop")


def _ancestry(g: Graph, roots) -> set:
    seen, stack = set(), list(roots)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(g.operands(n))
    # a multi-output kernel's readers cost nothing: keep them on the same side as the kernel
    for n in list(seen):
        if isinstance(g.type(n), TupleType):
            seen.update(g.users(n))
    return seen


def split_at_call(graph: Graph, call: int):
    """(before graph or None, crossing nodes, operand sources, after graph, result count)."""
    g = graph
    operands = g.operands(call)
    before = _ancestry(g, operands)
    outputs = set(g.outputs)
    crossing = [n for n in g.topo_order() if n in before and g.op(n) not in ("input", "constant")
                and not isinstance(g.type(n), TupleType)
                and (n in operands or n in outputs or any(u not in before for u in g.users(n)))]
    position = {n: i for i, n in enumerate(g.inputs)}
    cross_pos = {n: i for i, n in enumerate(crossing)}
    sources = []  # per operand: ("input", k) | ("constant", array) | ("cross", k)
    for o in operands:
        if o in position:
            sources.append(("input", position[o]))
        elif g.op(o) == "constant":
            sources.append(("constant", g.attrs(o)["value"].value))
        else:
            sources.append(("cross", cross_pos[o]))
    first = None
    if crossing:
        first = g.copy()
        first.outputs = list(crossing)
        first.remove_dead()
    rest = g.copy()
    for n in crossing:
        new = rest.add_input(g.type(n), name=g.name(n) or f"before%{n}")
        rest.replace_all_uses(n, new)
    op = resolve(g.attrs(call)["op"])
    t = g.type(call)
    label = op_name(op)
    if isinstance(t, TupleType):
        for i, et in enumerate(t.elements):
            new = rest.add_input(et, name=f"{label} output {i}")
            for r in [u for u in rest.users(call) if rest.op(u) == "get_output" and rest.attrs(u)["index"] == i]:
                rest.replace_all_uses(r, new)
        n_results = len(t.elements)
    else:
        new = rest.add_input(t, name=f"{label} output 0")
        rest.replace_all_uses(call, new)
        n_results = 1
    rest.remove_dead()
    return first, crossing, sources, rest, n_results


class PythonCall:
    """One ``py_call`` between two native stages: gathers its operands, runs ``perform``."""

    def __init__(self, graph: Graph, node: int, sources):
        attrs = graph.attrs(node)
        self.op = resolve(attrs["op"])
        self.out_types = list(attrs["outputs"])
        self.sources = sources
        self.node = PerformNode(self.op, [graph.type(o) for o in graph.operands(node)], self.out_types)

    def __call__(self, args, crossed) -> list:
        vals = [args[k] if kind == "input" else crossed[k] if kind == "cross" else k
                for kind, k in self.sources]
        return run_perform(self.op, self.node, vals, self.out_types, protect=args)


class PythonStages(StageChain):
    """``before`` (or nothing), the Python call, then ``after`` (itself maybe a chain)."""

    stage_note = " (Python calls run between stages)"

    def __init__(self, before, call: PythonCall, after, n_in: int, input_names):
        self.before, self.call, self.after = before, call, after
        self.parts = tuple(s for s in (before, after) if s is not None)
        self.n_in, self.input_names = n_in, list(input_names)

    def __call__(self, inputs) -> list:
        args = self._arguments(inputs)
        crossed = list(self.before(args)) if self.before is not None else []
        results = self.call(args, crossed)
        return self.after(args + crossed + results)


def compile_python_stages(graph: Graph, *, name: str = "fn", donate=None, _depth: int = 0):
    """The chain of native programs and Python calls computing ``graph`` (module docstring)."""
    from .staged import compile_native

    refuse_nested(graph)
    if _depth >= MAX_CALLS:
        raise TypeError(f"{name}: more than {MAX_CALLS} Python op calls in one function")
    call = next(n for n in graph.topo_order() if graph.op(n) == "py_call")
    first, _crossing, sources, rest, _ = split_at_call(graph, call)
    before = compile_native(first, name=f"{name}.before") if first is not None else None
    site = PythonCall(graph, call, sources)
    if has_python_ops(rest):
        after = compile_python_stages(rest, name=name, donate=donate, _depth=_depth + 1)
    else:
        after = compile_native(rest, name=name, donate=donate)
    return PythonStages(before, site, after, len(graph.inputs),
                        [graph.name(n) or f"%{n}" for n in graph.inputs])


__all__ = ["compile_python_stages", "has_python_ops", "refuse_nested", "PythonStages", "split_at_call"]
