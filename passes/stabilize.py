"""Numerical stabilization: rewrite formulas that overflow or cancel into stable ops.

Each rule replaces a naive formula by an op of the table that computes the same function
without the intermediate overflow/cancellation (tests show the naive graph going wrong in
the reference interpreter where the rewritten one does not):

* ``log(softmax(x))`` -> ``log_softmax(x)``; also ``log(subtensor(softmax(x), idx))`` ->
  ``subtensor(log_softmax(x), idx)`` (the cross-entropy select ``-log(p)[arange(n), y]``
  either way, since log is elementwise and commutes with selection);
* ``log(1 + x)`` -> ``log1p(x)``, ``log(1 - x)`` -> ``log1p(-x)`` (float results only: an
  integer ``1 + x`` may wrap before the log);
* ``exp(x) - 1`` -> ``expm1(x)``;
* ``log(sigmoid(x))`` -> ``-softplus(-x)`` and ``log(1 - sigmoid(x))`` -> ``-softplus(x)``;
* ``log(sum(exp(x), axis=a))`` -> ``logsumexp(x, a)`` for a single axis, and the
  max-subtracted form ``log(sum(exp(x - m), a)) + m`` with ``m = max(x, a)`` likewise;
* a hand-written softmax ``exp(x) / sum(exp(x), a, keepdims)`` (also with ``x - max(x)``
  in both exps, and with a dimshuffle re-inserting the reduced axis) -> ``softmax(x, a)``.

Rules apply in one topological sweep, so a hand-written softmax first becomes ``softmax``
and then a ``log`` over it becomes ``log_softmax``.
"""
from __future__ import annotations

from typing import Optional

from tcomp.ir import Graph
from tcomp.ir import dtypes as dt

from .rewrite import apply_rules, fit_type, is_const_filled


def _float_node(g: Graph, node: int) -> bool:
    return dt.is_float(g.type(node).dtype)


def _one_plus(g: Graph, node: int) -> Optional[tuple[int, bool]]:
    """For ``1 + x`` return (x, False); for ``1 - x`` return (x, True); else None."""
    op = g.op(node)
    if op not in ("add", "sub"):
        return None
    a, b = g.operands(node)
    if op == "add":
        if is_const_filled(g, b, 1):
            return a, False
        if is_const_filled(g, a, 1):
            return b, False
    elif is_const_filled(g, a, 1):
        return b, True
    return None


def log_softmax_rule(g, node):
    (x,) = g.operands(node)
    if g.op(x) == "softmax":
        (inner,) = g.operands(x)
        return g.add_node("log_softmax", [inner], g.attrs(x))
    if g.op(x) == "subtensor" and g.op(g.operands(x)[0]) == "softmax":
        sm, *index_operands = g.operands(x)
        ls = g.add_node("log_softmax", g.operands(sm), g.attrs(sm))
        return g.add_node("subtensor", [ls] + index_operands, g.attrs(x))
    return None


def log1p_rule(g, node):
    (s,) = g.operands(node)
    if not _float_node(g, s):
        return None
    m = _one_plus(g, s)
    if m is None:
        return None
    x, negate = m
    x = fit_type(g, x, g.type(s))  # the add computed in its promoted dtype and shape
    if x is None:
        return None
    if negate:
        x = g.add_node("neg", [x])
    return g.add_node("log1p", [x])


def log_sigmoid_rule(g, node):
    (s,) = g.operands(node)
    if g.op(s) == "sigmoid":
        (x,) = g.operands(s)
        x = fit_type(g, x, g.type(s))
        if x is None:
            return None
        return g.add_node("neg", [g.add_node("softplus", [g.add_node("neg", [x])])])
    m = _one_plus(g, s)
    if m is None or not m[1] or g.op(m[0]) != "sigmoid" or g.type(m[0]) != g.type(s):
        return None
    (x,) = g.operands(m[0])
    return g.add_node("neg", [g.add_node("softplus", [x])])


def expm1_rule(g, node):
    a, b = g.operands(node)
    if g.op(a) != "exp" or not is_const_filled(g, b, 1):
        return None
    e = fit_type(g, a, g.type(node))
    if e is None or e != a:
        return None
    return g.add_node("expm1", g.operands(a))


def _max_of(g: Graph, m: int, x: int, axis: int) -> Optional[bool]:
    """If ``m`` is ``max(x, (axis,))`` (keepdims or re-expanded by a dimshuffle), return its
    keepdims-ness (True: m has the reduced axis as size 1); else None."""
    if g.op(m) == "dimshuffle":
        (inner,) = g.operands(m)
        nd = g.type(x).ndim
        want = tuple(range(axis)) + ("x",) + tuple(range(axis, nd - 1))
        if tuple(g.attrs(m)["pattern"]) != want:
            return None
        return True if _max_of(g, inner, x, axis) is False else None
    if g.op(m) != "max" or g.operands(m)[0] != x or tuple(g.attrs(m)["axis"]) != (axis,):
        return None
    return bool(g.attrs(m)["keepdims"])


def _exp_argument(g: Graph, e: int, axis: int) -> Optional[tuple[int, bool]]:
    """For ``exp(x)`` return (x, False); for ``exp(x - max(x, axis))`` return (x, True)."""
    if g.op(e) != "exp":
        return None
    (arg,) = g.operands(e)
    if g.op(arg) == "sub":
        x, m = g.operands(arg)
        if _max_of(g, m, x, axis) is True:
            return x, True
    return arg, False


def _sum_exp(g: Graph, s: int) -> Optional[tuple[int, int, bool, bool]]:
    """For ``sum(exp(...), (a,))`` return (x, a, keepdims, max_subtracted)."""
    if g.op(s) != "sum" or len(g.attrs(s)["axis"]) != 1:
        return None
    (a,) = g.attrs(s)["axis"]
    e = g.operands(s)[0]
    found = _exp_argument(g, e, a)
    if found is None:
        return None
    return found[0], a, bool(g.attrs(s)["keepdims"]), found[1]


def logsumexp_rule(g, node):
    (s,) = g.operands(node)
    found = _sum_exp(g, s)
    if found is None or found[3]:
        return None
    x, a, keepdims, _ = found
    return g.add_node("logsumexp", [x], {"axis": a, "keepdims": keepdims})


def logsumexp_shifted_rule(g, node):
    """``log(sum(exp(x - m), a)) + m2`` with m, m2 = max(x, a) -> ``logsumexp(x, a)``."""
    for lg, m2 in (g.operands(node), reversed(g.operands(node))):
        if g.op(lg) != "log":
            continue
        found = _sum_exp(g, g.operands(lg)[0])
        if found is None or not found[3]:
            continue
        x, a, keepdims, _ = found
        if _max_of(g, m2, x, a) is not keepdims:
            continue
        return g.add_node("logsumexp", [x], {"axis": a, "keepdims": keepdims})
    return None


def softmax_rule(g, node):
    num, den = g.operands(node)
    if g.op(den) == "dimshuffle":
        (s,) = g.operands(den)
        if g.op(s) != "sum" or g.attrs(s)["keepdims"] or len(g.attrs(s)["axis"]) != 1:
            return None
        (a,) = g.attrs(s)["axis"]
        nd = g.type(num).ndim
        if tuple(g.attrs(den)["pattern"]) != tuple(range(a)) + ("x",) + tuple(range(a, nd - 1)):
            return None
    else:
        s = den
        if g.op(s) != "sum" or not g.attrs(s)["keepdims"]:
            return None
    found = _sum_exp(g, s)
    if found is None:
        return None
    x, a, _, shifted = found
    exp_node = g.operands(s)[0]
    if num != exp_node and _exp_argument(g, num, a) != (x, shifted):
        return None
    return g.add_node("softmax", [x], {"axis": a})


RULES = {
    "log": [log_softmax_rule, log_sigmoid_rule, log1p_rule, logsumexp_rule],
    "sub": [expm1_rule],
    "add": [logsumexp_shifted_rule],
    "truediv": [softmax_rule],
}


def stabilize(graph: Graph) -> Graph:
    """Apply the stabilization rules to ``graph`` in place; returns it."""
    apply_rules(graph, RULES)
    return graph
