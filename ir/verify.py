"""The IR verifier: checks the invariants every pass may assume and must keep.

Passes build graphs through :meth:`Graph.add_node`, which infers types, but they also
rewire edges and replace uses directly; one bad rewrite (a dropped operand, a stale
type) would otherwise surface far away as a wrong kernel.  ``verify`` is cheap (linear
in the graph) so the pass manager can run it after every pass in tests.
Every complaint is a ``ValueError`` naming the node as ``%id`` and its op.
"""
from __future__ import annotations

import networkx as nx

from .ops import OPS, Constant
from .ops.control import GRAPH_ATTRS
from .types import TensorType, TupleType


def _where(graph, n) -> str:
    return f"%{n} ({graph.nx.nodes[n].get('op', '?')})"


def _check_node_fields(graph, n) -> None:
    data = graph.nx.nodes[n]
    for field in ("op", "attrs", "type"):
        if field not in data:
            raise ValueError(f"node %{n} has no {field!r} field")
    op = data["op"]
    if op not in OPS:
        raise ValueError(f"node %{n}: unknown op {op!r}")
    if not isinstance(data["attrs"], dict):
        raise ValueError(f"node %{n} ({op}): attrs must be a dict, got {type(data['attrs']).__name__}")
    if not isinstance(data["type"], (TensorType, TupleType)):
        raise ValueError(f"node %{n} ({op}): type must be a TensorType or TupleType, got {data['type']!r}")
    if isinstance(data["type"], TupleType) and OPS.get(op) is not None and OPS[op].source:
        raise ValueError(f"node %{n} ({op}): a source node's type must be a TensorType, got {data['type']}")
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"node %{n} ({op}): name must be a str or None, got {name!r}")
    opdef = OPS[op]
    accepted = set(opdef.attr_defaults)
    unknown = set(data["attrs"]) - accepted
    if unknown:
        raise ValueError(f"node %{n} ({op}): unknown attribute(s) {sorted(unknown)}; {op} accepts {sorted(accepted)}")
    missing = accepted - set(data["attrs"])
    if missing:
        raise ValueError(f"node %{n} ({op}): missing attribute(s) {sorted(missing)}")


def _check_operands(graph, n) -> None:
    op = graph.op(n)
    raw = [d.get("arg") for _, _, d in graph.nx.in_edges(n, data=True)]
    if not all(isinstance(a, int) and not isinstance(a, bool) for a in raw):
        raise ValueError(f"node %{n} ({op}): operand positions must be ints, got {raw}")
    args = sorted(raw)
    if args != list(range(len(args))):
        raise ValueError(f"node %{n} ({op}): operand positions are {args}, expected 0..{len(args) - 1} each once")
    try:
        OPS[op].check_arity(len(args))
    except TypeError as exc:
        raise ValueError(f"node %{n} ({op}): wrong arity: {exc}") from None


def _order_or_cycle(graph) -> list[int]:
    """The topological order; on a cycle (rare), name the nodes on one."""
    try:
        return graph.topo_order()
    except ValueError:
        pass
    try:
        cycle = nx.find_cycle(graph.nx)
    except nx.NetworkXNoCycle:  # pragma: no cover - topo_order and networkx disagree
        raise ValueError("graph has a cycle") from None
    nodes = [u for u, *_ in cycle]
    path = " -> ".join(_where(graph, u) for u in nodes + nodes[:1])
    raise ValueError(f"graph has a cycle through node {path}")


def _check_type(graph, n) -> None:
    op = graph.op(n)
    opdef = OPS[op]
    stored = graph.type(n)
    if opdef.source:
        value = graph.attrs(n).get("value")
        if op == "constant":
            if not isinstance(value, Constant):
                raise ValueError(f"node %{n} (constant): 'value' must be a Constant, got {value!r}")
            if value.type != stored:
                raise ValueError(f"node %{n} (constant): value has type {value.type} but the node says {stored}")
        return
    operand_types = [graph.type(o) for o in graph.operands(n)]
    try:
        inferred = opdef.infer_type(operand_types, graph.attrs(n))
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"node %{n} ({op}): type inference fails on operands "
                         f"({', '.join(map(str, operand_types))}): {exc}") from None
    if inferred != stored:
        raise ValueError(f"node %{n} ({op}): stored type {stored} differs from inferred {inferred}")


def _check_tuple_uses(graph, n) -> None:
    """A tuple-typed node (multi-output kernel) is read only through get_output nodes."""
    if not isinstance(graph.type(n), TupleType):
        return
    if n in graph.outputs:
        raise ValueError(f"node %{n} ({graph.op(n)}) has tuple type {graph.type(n)} and is a graph output; "
                         f"return its results through get_output nodes")
    for u in graph.users(n):
        if graph.op(u) != "get_output":
            raise ValueError(f"node %{n} ({graph.op(n)}) has tuple type {graph.type(n)} and is an operand of "
                             f"%{u} ({graph.op(u)}); only get_output may read a multi-output kernel")


def verify(graph) -> None:
    """Raise ValueError on the first broken invariant; return None when the graph is sound.

    Checked: every node has a known op, accepted attrs and a TensorType; operand
    positions are exactly 0..n-1 and match the op's arity; no cycles; every non-source
    node's type equals re-inference; graph.inputs are distinct ``input`` nodes and every
    ``input`` node is listed; every output exists; a tuple-typed node (a multi-output
    kernel) is neither a graph output nor an operand of anything but ``get_output``.
    """
    for n in graph.inputs:
        if n not in graph.nx:
            raise ValueError(f"graph input %{n} is not a node of the graph")
    if len(set(graph.inputs)) != len(graph.inputs):
        dups = sorted({n for n in graph.inputs if graph.inputs.count(n) > 1})
        raise ValueError(f"graph inputs list node(s) {', '.join(f'%{n}' for n in dups)} more than once")
    for n in graph.outputs:
        if n not in graph.nx:
            raise ValueError(f"graph output %{n} is not a node of the graph")
    listed = set(graph.inputs)
    for n in sorted(graph.nx.nodes):
        _check_node_fields(graph, n)
        op = graph.op(n)
        if n in listed and op != "input":
            raise ValueError(f"graph input %{n} is a {op} node, not an input node")
        if op == "input" and n not in listed:
            raise ValueError(f"node %{n} (input) is an input node missing from graph.inputs")
        _check_operands(graph, n)
        _check_tuple_uses(graph, n)
    for n in _order_or_cycle(graph):
        _check_type(graph, n)
        if graph.op(n) in GRAPH_ATTRS:
            _check_nested(graph, n)


def _check_nested(graph, n) -> None:
    """The nested graphs of a scan/ifelse node are sound graphs themselves."""
    for key in GRAPH_ATTRS[graph.op(n)]:
        body = graph.attrs(n)[key]
        try:
            verify(body.graph)
        except ValueError as exc:
            raise ValueError(f"node %{n} ({graph.op(n)}): nested graph {key!r}: {exc}") from None
