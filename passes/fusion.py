"""Elementwise fusion: DAGs of elementwise ops (with broadcasting) become one ``fused``
kernel node, optionally ending in a reduction (``sum((a - b) ** 2, axis=1)`` is one loop).
The kernel format is documented in ``tcomp.ir.ops.fused``.

Grouping (greedy, from the outputs back, linear up to a heap):

* every elementwise node not yet in a group roots a new group, and so does a fusable
  reduction (sum/prod/max/min) whose operand is elementwise and used only by it;
* a producer joins a group when it is elementwise, not a graph output and *all* its users
  are already in the group.  Candidates are examined in decreasing topological order, so
  when one is examined every user that could join already has; hence a value needed outside
  a group is always the group's root, no kernel both feeds and consumes an outside node
  (no cycles), and nothing is recomputed: the fused graph computes exactly what the
  unfused one did, with the same per-op dtype rules (the reference impl runs each op's own
  NumPy impl);
* rank-0 constants are inlined into the body as ``constant`` steps; other constants and
  every non-elementwise value are kernel operands;
* a group of one elementwise op stays a plain node (nothing to fuse); the backends lower
  plain elementwise ops anyway.

Missing by design: multi-output kernels (a shared intermediate ends the kernel instead) and
recomputing cheap shared values into several kernels.
"""
from __future__ import annotations

import heapq

from tcomp.ir import Graph, get_op
from tcomp.ir.ops.fused import FUSABLE_REDUCTIONS

from .rewrite import replace


def _is_elemwise(g: Graph, n: int) -> bool:
    return get_op(g.op(n)).kind == "elemwise"


def _is_inlinable_const(g: Graph, n: int) -> bool:
    return g.op(n) == "constant" and g.type(n).ndim == 0


def _grow(g: Graph, root: int, start: int, pos: dict, assigned: dict, outputs: set) -> list[int]:
    """Members of the group rooted at ``root`` whose elementwise part starts at ``start``."""
    members = {root, start}
    heap = []
    pushed = set()

    def push_operands(n):
        for o in g.operands(n):
            if o not in pushed and o not in members:
                pushed.add(o)
                heapq.heappush(heap, (-pos[o], o))

    push_operands(start)
    while heap:
        _, p = heapq.heappop(heap)
        if p in assigned or p in outputs or not _is_elemwise(g, p):
            continue
        if all(u in members for u in g.users(p)):
            members.add(p)
            push_operands(p)
    return sorted(members, key=pos.__getitem__)


def _build_kernel(g: Graph, members: list[int], root: int, reduce_node) -> tuple[list[int], dict]:
    """Kernel operands and attrs for a group (elementwise members in topological order)."""
    member_set = set(members)
    inputs: list[int] = []
    input_ref: dict[int, str] = {}
    step_ref: dict[int, str] = {}
    body = []

    def ref(o):
        if o in step_ref:
            return step_ref[o]
        if _is_inlinable_const(g, o):
            step_ref[o] = f"%{len(body)}"
            body.append(("constant", (("value", g.attrs(o)["value"]),), ()))
            return step_ref[o]
        if o not in input_ref:
            input_ref[o] = f"${len(inputs)}"
            inputs.append(o)
        return input_ref[o]

    for n in members:
        if n == reduce_node:
            continue
        refs = tuple(ref(o) if o not in member_set else step_ref[o] for o in g.operands(n))
        step_ref[n] = f"%{len(body)}"
        body.append((g.op(n), tuple(sorted(g.attrs(n).items())), refs))
    attrs = {"body": tuple(body)}
    if reduce_node is not None:
        attrs.update(reduce=g.op(reduce_node), axis=tuple(g.attrs(reduce_node)["axis"]),
                     keepdims=bool(g.attrs(reduce_node)["keepdims"]))
    return inputs, attrs


def fuse_elementwise(graph: Graph, min_ops: int = 2) -> Graph:
    """Fuse elementwise groups of ``graph`` (in place) into ``fused`` kernels; returns it.

    ``min_ops``: the fewest ops (elementwise steps plus a reduction) worth a kernel.
    """
    g = graph
    order = g.topo_order()
    pos = {n: i for i, n in enumerate(order)}
    outputs = set(g.outputs)
    assigned: dict[int, int] = {}
    groups = []  # (root, members, reduce_node)
    for n in reversed(order):
        if n in assigned:
            continue
        reduce_node = None
        if g.op(n) in FUSABLE_REDUCTIONS:
            x = g.operands(n)[0]
            if (x in assigned or x in outputs or not _is_elemwise(g, x) or g.users(x) != [n]
                    or g.nx.out_degree(x) != 1):
                continue
            start, reduce_node = x, n
        elif _is_elemwise(g, n):
            start = n
        else:
            continue
        members = _grow(g, n, start, pos, assigned, outputs)
        n_ops = len(members)
        if n_ops < min_ops:
            continue
        for m in members:
            assigned[m] = n
        groups.append((n, members, reduce_node))
    for root, members, reduce_node in sorted(groups, key=lambda grp: pos[grp[0]]):
        operands, attrs = _build_kernel(g, members, root, reduce_node)
        kernel = g.add_node("fused", operands, attrs)
        if g.type(kernel) != g.type(root):  # pragma: no cover - infer mirrors the members' rules
            raise AssertionError(f"fusion changed the type of %{root}: {g.type(root)} -> {g.type(kernel)}")
        replace(g, root, kernel)
    if groups:
        g.remove_dead()
    return g
