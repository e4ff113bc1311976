"""Turning user expression DAGs (Variables) into ``tcomp.ir.Graph`` and back.

Walks are iterative (explicit stacks), so a 100k-node expression chain cannot hit
Python's recursion limit.
"""
from __future__ import annotations

from tcomp.ir import Graph
from tcomp.ir.graph import paused_gc

from .shared import SharedVariable
from .tensor.variable import Variable, apply


class MissingInputError(ValueError):
    """An expression needs a root variable that is neither an input nor shared."""


def _postorder(roots, substitute):
    """Variables reachable from ``roots`` (after substitution), operands before users."""
    order, state = [], {}
    stack = [(substitute(r), False) for r in reversed(roots)]
    while stack:
        v, expanded = stack.pop()
        key = id(v)
        if expanded:
            if state.get(key) != "done":
                state[key] = "done"
                order.append(v)
            continue
        if key in state:
            continue
        state[key] = "open"
        stack.append((v, True))
        for operand in reversed(v.inputs):
            operand = substitute(operand)
            if id(operand) not in state:
                stack.append((operand, False))
    return order


def givens_substitution(givens):
    """The function mapping a variable to what ``givens`` replaces it with (transitively)."""
    def substitute(v):
        seen = 0
        while v in givens:
            v = givens[v]
            seen += 1
            if seen > len(givens):
                raise ValueError("givens form a cycle")
        return v
    return substitute


@paused_gc()  # (a big graph is millions of live objects: see paused_gc)
def build_graph(inputs, outputs, givens=None):
    """Trace ``outputs`` into a Graph whose inputs are ``inputs`` then the shared
    variables used (in discovery order).  Returns (graph, var_to_node, shared_list)."""
    givens = dict(givens or {})
    substitute = givens_substitution(givens)

    g = Graph()
    var_to_node: dict[Variable, int] = {}
    for v in inputs:
        var_to_node[v] = g.add_input(v.type, v.name)
    shared: list[SharedVariable] = []
    for v in _postorder(list(outputs), substitute):
        if v in var_to_node:
            continue
        if v.op == "input":
            if isinstance(v, SharedVariable):
                var_to_node[v] = g.add_input(v.type, v.name)
                shared.append(v)
                continue
            raise MissingInputError(
                f"variable {v.describe()} is needed to compute the outputs but is not among the inputs "
                f"(inputs: {', '.join(i.describe() for i in inputs) or 'none'})")
        if v.op == "constant":
            var_to_node[v] = g.add_constant(v.attrs["value"], name=v.name)
            continue
        operands = [var_to_node[substitute(o)] for o in v.inputs]
        try:
            var_to_node[v] = g.add_node(v.op, operands, v.attrs, name=v.name)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{exc} [while substituting givens into {v.describe()}]") from None
    for v, nid in var_to_node.items():  # where the user's Python made each node (tcomp dump --locations)
        if v.loc is not None:
            g.nx.nodes[nid]["loc"] = v.loc
    g.outputs = [var_to_node[substitute(o)] for o in outputs]
    return g, var_to_node, shared


@paused_gc()
def variables_from_graph(graph: Graph, node_to_var: dict, nodes) -> list[Variable]:
    """Variables for ``nodes`` of ``graph``; nodes already in ``node_to_var`` map to the
    existing Variables, the rest are rebuilt as expressions over them."""
    memo = dict(node_to_var)
    for n in graph.topo_order():
        if n in memo:
            continue
        op = graph.op(n)
        if op == "input":
            raise ValueError(f"graph input %{n} has no variable")
        if op == "constant":
            from .tensor.variable import constant

            memo[n] = constant(graph.attrs(n)["value"].value)
            continue
        memo[n] = apply(op, [memo[o] for o in graph.operands(n)], graph.attrs(n), name=graph.name(n))
    return [memo[n] for n in nodes]


def clone_replace(output, replace=None, strict=True, share_inputs=True):
    """Theano's ``theano.clone``: ``output`` (a variable or a list of them) with the
    variables of ``replace`` (a dict or pairs) substituted, as new expressions; the originals
    are untouched.  ``strict``: a replacement must have the replaced variable's dtype and
    rank (else types are inferred again downstream).  ``share_inputs=False`` gives the
    clone fresh copies of its non-shared input variables (shared variables stay shared:
    a copy would alias the same storage anyway)."""
    from .tensor.variable import as_variable

    single = isinstance(output, Variable)
    outputs = [output] if single else list(output)
    pairs = list(replace.items() if isinstance(replace, dict) else (replace or ()))
    mapping: dict = {}
    for old, new in pairs:
        if not isinstance(old, Variable):
            raise TypeError(f"clone: replace keys must be variables, got {old!r}")
        new = as_variable(new, f"replacement for {old.describe()}")
        if strict and (new.dtype != old.dtype or new.ndim != old.ndim):
            raise TypeError(f"clone: replacement for {old.describe()} has type {new.type}; it must have dtype "
                            f"{old.dtype} and rank {old.ndim} (or pass strict=False)")
        mapping[id(old)] = new
    memo: dict = {}

    def mapped(v):
        return memo.get(id(v), v)

    for v in _postorder(outputs, lambda v: v):
        if id(v) in mapping:
            memo[id(v)] = mapping[id(v)]
        elif v.op == "input":
            if not share_inputs and not isinstance(v, SharedVariable):
                memo[id(v)] = Variable(v.type, name=v.name)
        elif v.inputs and any(mapped(o) is not o for o in v.inputs):
            memo[id(v)] = apply(v.op, [mapped(o) for o in v.inputs], v.attrs, name=v.name)
    out = [mapped(o) for o in outputs]
    return out[0] if single else out
