"""Constant folding, computed by the reference interpreter so folding and execution agree.

A node is folded when all its operands are constants, its result type is fully static (a
constant's type is static, and a rewrite must keep the node's exact type) and the result
has at most ``MAX_FOLD_ELEMENTS`` elements: folding must not bloat the graph or the
compiled module with big literals.  ``alloc`` of a smaller constant (``zeros((n, m))``)
stays an alloc for the same reason: the broadcast is cheaper at run time than the literal.
``shape(x, axis)`` of a static dim folds even when ``x`` is not constant.

A node whose evaluation raises (an out-of-bounds constant index, say) is left alone: the
error belongs to run time, where it names the user's call.
"""
from __future__ import annotations

import numpy as np

from tcomp.ir import Constant, Graph, TensorType, evaluate

from .rewrite import replace

MAX_FOLD_ELEMENTS = 1 << 16


def _fold_value(g: Graph, node: int):
    """Evaluate one node whose operands are constants, through the interpreter."""
    mini = Graph()
    operands = [mini.add_constant(g.attrs(o)["value"]) for o in g.operands(node)]
    out = mini.add_node(g.op(node), operands, g.attrs(node))
    mini.outputs = [out]
    (value,) = evaluate(mini, [])
    return value


def _foldable(g: Graph, node: int) -> bool:
    op = g.op(node)
    if op in ("input", "constant", "py_call"):  # (a Python op runs when the function runs: ir/ops/pyop.py)
        return False
    t = g.type(node)
    if not isinstance(t, TensorType):  # a multi-output kernel: its get_output readers fold nothing either
        return False
    if not t.is_static or t.size > MAX_FOLD_ELEMENTS:
        return False
    operands = g.operands(node)
    if not all(g.op(o) == "constant" for o in operands):
        return False
    if op == "alloc" and g.type(operands[0]).size < t.size:
        return False
    return True


def constant_fold(graph: Graph) -> Graph:
    """Fold constant subexpressions of ``graph`` in place; returns it."""
    g = graph
    changed = False
    for node in g.topo_order():
        op = g.op(node)
        if op == "shape":
            (x,) = g.operands(node)
            d = g.type(x).shape[g.attrs(node)["axis"]]
            if isinstance(d, int):
                replace(g, node, g.add_constant(Constant(np.array(d, dtype="int64"))))
                changed = True
            continue
        if not _foldable(g, node):
            continue
        try:
            value = _fold_value(g, node)
        except (ArithmeticError, ValueError, TypeError, IndexError):
            continue
        c = Constant(value)
        if c.type != g.type(node):  # pragma: no cover - the interpreter checks types
            continue
        replace(g, node, g.add_constant(c))
        changed = True
    if changed:
        g.remove_dead()
    return g
