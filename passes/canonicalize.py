"""Canonicalization: one spelling for expressions that are equal by definition.

It makes the later passes' patterns few and CSE effective:

* commutative binary ops (add, mul, maximum, minimum, eq, neq, logical_and/or/xor) take a
  constant operand second, otherwise the operand with the smaller node id first, so
  ``a + b`` and ``b + a`` hash alike (IEEE add/mul/max/min are commutative, nan included);
* ``a > b`` becomes ``b < a`` and ``a >= b`` becomes ``b <= a`` (same result, nan included);
* a reduction over no axes is the identity or a cast (``sum(x, axis=())``);
* a cast to the operand's own dtype and an identity dimshuffle disappear.

Every rewrite keeps the node's exact type (the driver in :mod:`.rewrite` checks it): a swap
that would rename a symbolic dim of the result is not made.
"""
from __future__ import annotations

from tcomp.ir import Graph

from .rewrite import apply_rules

COMMUTATIVE = ("add", "mul", "maximum", "minimum", "eq", "neq", "logical_and", "logical_or", "logical_xor")
FLIPPED = {"gt": "lt", "ge": "le"}


def _order_key(g: Graph, n: int):
    return (g.op(n) == "constant", n)


def commute(g: Graph, node: int):
    a, b = g.operands(node)
    if _order_key(g, a) <= _order_key(g, b):
        return None
    return g.add_node(g.op(node), [b, a], g.attrs(node))


def flip_comparison(g: Graph, node: int):
    a, b = g.operands(node)
    return g.add_node(FLIPPED[g.op(node)], [b, a])


def empty_reduction(g: Graph, node: int):
    if g.attrs(node)["axis"] or g.op(node) in ("argmax", "argmin"):
        return None
    (x,) = g.operands(node)
    want = g.type(node)
    if g.type(x).dtype == want.dtype:
        return x
    return g.add_node("cast", [x], {"dtype": want.dtype})


def cast_to_same(g: Graph, node: int):
    (x,) = g.operands(node)
    return x if g.type(x) == g.type(node) else None


def identity_dimshuffle(g: Graph, node: int):
    (x,) = g.operands(node)
    if tuple(g.attrs(node)["pattern"]) == tuple(range(g.type(x).ndim)):
        return x
    return None


RULES = {op: [commute] for op in COMMUTATIVE}
RULES.update({op: [flip_comparison] for op in FLIPPED})
RULES.update({op: [empty_reduction] for op in ("sum", "prod", "max", "min", "mean")})
RULES["cast"] = [cast_to_same]
RULES["dimshuffle"] = [identity_dimshuffle]


def canonicalize(graph: Graph) -> Graph:
    """Rewrite ``graph`` (in place) into canonical form; returns it."""
    apply_rules(graph, RULES)
    return graph
