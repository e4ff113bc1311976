"""``tcomp.ifelse.ifelse``: Theano's lazy conditional.

``ifelse(cond, then_branch, else_branch)`` takes expressions (one or a list each) already
built, and moves into each branch's nested graph the part of that branch's expression
that nothing else needs: the nodes reachable from the branch's outputs that neither the
condition nor the other branch reach.  What both branches share, and the leaves (inputs,
shared variables), are computed before the conditional and passed in.  Only the branch
``cond`` selects is evaluated (``T.switch`` computes both).

A difference from Theano: a value computed inside a branch and *also* used elsewhere in
the same function is computed twice (once in the branch), since the conditional is built
before the rest of the function is known.
"""
from __future__ import annotations

from tcomp.ir import Graph
from tcomp.ir.ops.control import Body

from .tensor import basic as B
from .tensor.variable import apply, as_variable

__all__ = ["ifelse", "IfElse"]


def _reach(roots) -> dict:
    """id -> Variable for everything ``roots`` depend on (iterative)."""
    seen, stack = {}, list(roots)
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen[id(v)] = v
        stack.extend(v.inputs)
    return seen


def _branch(outputs, local: set, captured: list, index: dict) -> list:
    """The branch's Variables in build order; the outer values it reads join ``captured``."""
    def ref(v):
        if id(v) in local or v.op == "constant":
            return None
        if id(v) not in index:
            index[id(v)] = len(captured)
            captured.append(v)
        return index[id(v)]

    # first pass: which outer values the branch reads, in a deterministic order
    order, done, stack = [], set(), [(o, False) for o in reversed(outputs)]
    while stack:
        v, expanded = stack.pop()
        if expanded:
            if id(v) not in done:
                done.add(id(v))
                order.append(v)
            continue
        if id(v) in done:
            continue
        stack.append((v, True))
        if id(v) in local:
            stack.extend((o, False) for o in reversed(v.inputs) if id(o) not in done)
    for v in order:
        if id(v) not in local:
            ref(v)
    return order


def _build(order, outputs, local, captured, index) -> Body:
    g = Graph()
    ins = [g.add_input(v.type, v.name) for v in captured]
    node_of = {}
    for v in order:
        if id(v) in local:
            node_of[id(v)] = g.add_node(v.op, [node_of[id(o)] for o in v.inputs], v.attrs, name=v.name)
        elif v.op == "constant" and id(v) not in index:
            node_of[id(v)] = g.add_constant(v.attrs["value"], name=v.name)
        else:
            node_of[id(v)] = ins[index[id(v)]]
    g.outputs = [node_of[id(o)] for o in outputs]
    return Body(g)


def ifelse(condition, then_branch, else_branch, name=None):
    """``then_branch`` if ``condition`` (a scalar) is true, else ``else_branch``; each a
    Variable or a list of Variables of matching dtype and rank.  Returns a Variable or a list."""
    single = not isinstance(then_branch, (list, tuple))
    thens = [then_branch] if single else list(then_branch)
    elses = [else_branch] if not isinstance(else_branch, (list, tuple)) else list(else_branch)
    if len(thens) != len(elses):
        raise ValueError(f"ifelse: the then branch has {len(thens)} values, the else branch {len(elses)}")
    cond = as_variable(condition, "ifelse condition")
    if cond.ndim != 0:
        raise TypeError(f"ifelse: the condition must be a scalar, got {cond.describe()}")
    thens = [as_variable(v, f"ifelse then value {k}") for k, v in enumerate(thens)]
    elses = [as_variable(v, f"ifelse else value {k}") for k, v in enumerate(elses)]
    for k, (a, b) in enumerate(zip(thens, elses)):
        if a.dtype != b.dtype and a.op == "constant":
            thens[k] = a = B.cast(a, b.dtype)
        elif a.dtype != b.dtype and b.op == "constant":
            elses[k] = b = B.cast(b, a.dtype)
        if a.dtype != b.dtype or a.ndim != b.ndim:
            raise TypeError(f"ifelse: value {k}: the then branch gives {a.describe()}, the else branch "
                            f"{b.describe()}; they must have the same dtype and rank")
    r_then, r_else, r_cond = _reach(thens), _reach(elses), _reach([cond])

    def local_of(mine, other):
        return {k for k, v in mine.items() if k not in other and k not in r_cond
                and v.op not in ("input", "constant")}

    l_then, l_else = local_of(r_then, r_else), local_of(r_else, r_then)
    captured, index = [], {}
    o_then = _branch(thens, l_then, captured, index)
    o_else = _branch(elses, l_else, captured, index)
    then_body = _build(o_then, thens, l_then, captured, index)
    else_body = _build(o_else, elses, l_else, captured, index)
    node = apply("ifelse", [cond] + captured, {"then_body": then_body, "else_body": else_body}, name=name)
    outs = [node] if len(thens) == 1 else [apply("get_output", [node], {"index": k}) for k in range(len(thens))]
    return outs[0] if single else outs


class IfElse:
    """Theano's ``IfElse(n_outs)`` op object: ``IfElse(n)(cond, *then, *else)``."""

    def __init__(self, n_outs, as_view=False, gpu=False, name=None):
        self.n_outs, self.name = int(n_outs), name

    def __call__(self, condition, *values, **kwargs):
        if len(values) != 2 * self.n_outs:
            raise TypeError(f"IfElse({self.n_outs}) takes the condition and {2 * self.n_outs} values, "
                            f"got {len(values)}")
        out = ifelse(condition, list(values[:self.n_outs]), list(values[self.n_outs:]), name=self.name)
        return out[0] if self.n_outs == 1 else out

