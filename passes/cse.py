"""Common subexpression elimination and dead code elimination.

CSE hashes each node structurally, in topological order: ``(op, attrs, operand ids, type)``
after the operands themselves were merged, so one linear sweep merges whole equal
subtrees.  Constants are keyed by value (dtype, shape and bytes: ``0.0`` and ``-0.0``
stay apart, equal nans merge); graph inputs are never merged.  Attribute values are
hashable by construction of the op table (tuples, ints, strings, ``Constant``).
"""
from __future__ import annotations

from tcomp.ir import Graph

from .rewrite import replace


def node_key(g: Graph, node: int):
    attrs = tuple(sorted(g.attrs(node).items()))
    return (g.op(node), attrs, tuple(g.operands(node)), g.type(node))


def cse(graph: Graph) -> Graph:
    """Merge structurally equal nodes of ``graph`` in place; returns it."""
    g = graph
    seen: dict = {}
    merged = False
    for node in g.topo_order():
        if g.op(node) == "input" or (g.op(node) == "py_call" and not g.attrs(node)["pure"]):
            continue  # (a Python op may have side effects: one call per application, ir/ops/pyop.py)
        key = node_key(g, node)
        first = seen.setdefault(key, node)
        if first != node:
            replace(g, node, first)
            merged = True
    if merged:
        g.remove_dead()
    return g


def dce(graph: Graph) -> Graph:
    """Remove nodes no output depends on (graph inputs always stay); returns the graph."""
    graph.remove_dead()
    return graph
