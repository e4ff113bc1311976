"""Elementwise fusion: DAGs of elementwise ops (with broadcasting) become one ``fused``
kernel node, optionally ending in a reduction (``sum((a - b) ** 2, axis=1)`` is one loop),
reading operands through leading dimshuffles/reshapes, relabelling its result through a
trailing one, and returning several results when values are needed outside the kernel.
The kernel format is documented in ``tcomp.ir.ops.fused``.

Phase 1, vertical groups (greedy, from the outputs back, linear up to a heap):

* every elementwise node not yet in a group roots a new group, and so does a fusable
  reduction (sum/prod/max/min) whose operand is elementwise and free;
* a producer joins a group when it is elementwise and *all* its users are already in the
  group.  Candidates are examined in decreasing topological position, so when one is
  examined every user that could join already has;
* a producer with users outside the group (or a graph output) still joins, as an *extra
  output*, when its shape is the group's iteration space and every outside user comes
  after the group's root in the topological order (the cycle rule below);
* a dimshuffle, or a reshape with a fully given shape, whose users are all in the group
  joins as a *leading layout step* (its operand stays a kernel operand).  A reshape is
  absorbed only when its operand is certainly C-contiguous at run time (a graph input, a
  constant, or a computed node that is not itself a view), because the kernel reads the
  operand's memory through the reshape's index map.  (The memory planners still write such a
  kernel's result over an operand it reads at the written index; only a re-laid-out operand
  is never overwritten.)

Phase 2, merging: groups (and lone elementwise nodes) that touch the same value -- siblings
sharing an operand, or a consumer of a value another group computes -- merge into one
multi-output kernel when they have the same iteration-space shape, at most one of them
reduces, every value the merged group exports has the iteration-space shape, and the cycle
rule holds.

"The same iteration space" (phase 1 extra outputs and every phase-2 result) means the same
type shape *and* extents proven equal at run time (``passes/extents.py``): static ints,
the same named dim, or anonymous dims that come from the same place (an operand both read
without broadcasting, a shape carried through a reduction, ...).  Two anonymous ``?`` dims are
unrelated sizes: ``[x * z, x - y]`` with ``x: f32[?, 1]`` and ``y, z: f32[?, ?]`` gives two
``f32[?, ?]`` results whose columns are ``z``'s and ``y``'s, so one loop cannot store both.

A try costs time linear in the two groups; each group fails at most
``MAX_MERGE_FAILURES`` tries, merged groups are capped at ``MAX_MERGE_MEMBERS`` members and every
success removes a group, so the phase is linear in graph size.  A kernel returns at most
``MAX_KERNEL_RESULTS`` results through merging: each result is one more store stream per point.

Trailing layout: a dimshuffle that keeps memory order (inserts/drops size-1 axes only) or a
fully given reshape that is the *only* user of a kernel's primary result becomes the
kernel's ``epilogue`` (repeatedly, for chains).

Cycle rule (why no kernel can depend on itself).  Let ``pos`` be the topological position in
the graph before fusion and ``t(G)`` the largest position of a member of group ``G``.  Every
group keeps the invariant: *each user outside ``G`` of a member of ``G`` has ``pos > t(G)``*.
Then for every edge ``x -> y`` between different groups (a lone node is a group of one),
``t(group(x)) < pos(y) <= t(group(y))``, so ordering the contracted graph by ``t`` is a
topological order: contraction creates no cycle.  Phase 1 checks the invariant for each
extra output (its outside users come after the root, which is the group's largest position,
as every member is an ancestor of the root); phase 2 checks it on the merged group; a
leading layout step has no outside users and its operand precedes its users; an epilogue
node's only operand is the kernel's primary, so adding it to an acyclic contracted graph
keeps it acyclic.  Nothing is computed twice: each node is in at most one group, and a value
needed outside its kernel is a kernel result read through ``get_output``.  The fused graph
computes exactly what the unfused one did, with the same per-op dtype rules (the reference
impl runs each op's own NumPy impl).

Multi-output kernels are formed only over iteration spaces of rank >= 1: a one-point loop
saves no memory traffic by returning several results (and scalar index arithmetic, which
backends evaluate on the host for shapes, stays plain).

Rank-0 constants are inlined as ``constant`` steps; other constants and every
non-elementwise value are kernel operands.  A group of one elementwise op stays a plain node
(nothing to fuse; backends lower plain elementwise ops anyway).

Missing by design: recomputing cheap shared values into several kernels (a value needed
outside is a kernel result instead), and fusing a reduction with a consumer of its result.
"""
from __future__ import annotations

import heapq

from tcomp.ir import Graph, get_op
from tcomp.ir.ops.fused import FUSABLE_REDUCTIONS, is_order_keeping

from .extents import Extents

#: how many merge attempts one group may take part in (phase 2), and the largest merged group
MAX_MERGE_FAILURES = 4
MAX_MERGE_MEMBERS = 256
MAX_KERNEL_RESULTS = 8
#: the most members (ops, layout steps, the reduction) one kernel may have, in phase 1 and 2:
#: LLVM's time per op grows with the size of one function, so a long chain becomes several
#: kernels (each a bounded function; identical segments compile once) instead of one giant body
MAX_FUSED_BODY = 128
#: ops whose result may be a strided view of their operand (a reshape of one is not absorbed)
VIEW_OPS = ("dimshuffle", "reshape", "subtensor")


def _is_elemwise(g: Graph, n: int) -> bool:
    return get_op(g.op(n)).kind == "elemwise"


def _is_inlinable_const(g: Graph, n: int) -> bool:
    return g.op(n) == "constant" and g.type(n).ndim == 0


def _layout_ok(g: Graph, n: int, *, leading: bool) -> bool:
    """A dimshuffle/reshape a kernel can take as a body layout step or an epilogue entry."""
    op = g.op(n)
    if op == "dimshuffle":
        return leading or is_order_keeping(g.attrs(n)["pattern"])
    if op != "reshape" or len(g.operands(n)) != 1:
        return False  # a reshape with run-time dim operands is not fully given
    if not leading:
        return True
    return g.op(g.operands(n)[0]) not in VIEW_OPS


class _Group:
    __slots__ = ("members", "reduce", "start", "layout", "failures", "t")

    def __init__(self, members, reduce_node, start, layout, t):
        self.members = set(members)
        self.reduce = reduce_node
        self.start = start          # the last elementwise step (the reduction's operand) when reducing
        self.layout = set(layout)   # leading layout members
        self.failures = 0           # phase-2 merge tries that failed
        self.t = t                  # the largest topological position of a member


class _Fuser:
    def __init__(self, g: Graph, min_ops: int):
        self.g = g
        self.min_ops = min_ops
        self.order = g.topo_order()
        self.pos = {n: i for i, n in enumerate(self.order)}
        self.outputs = set(g.outputs)
        self.group_of: dict[int, _Group] = {}
        self.replaced: dict[int, int] = {}
        self._extents = None  # built on the first question (many graphs never ask one)

    # -- helpers ----------------------------------------------------------------------------
    def shape(self, n):
        return self.g.type(n).shape

    def same_space(self, a: int, b: int) -> bool:
        """``a`` and ``b`` have one iteration space: the same type shape (the kernel format
        lists results of exactly the iteration shape) *and* extents proven equal at run time
        (two anonymous ``?`` dims are unrelated sizes unless they come from the same place)."""
        if self.shape(a) != self.shape(b):
            return False
        if None not in self.shape(a):
            return True  # static and named dims: equal types are equal extents
        if self._extents is None:
            self._extents = Extents(self.g, self.order)
        return self._extents.same(a, b)

    def external_users(self, n, members):
        return [u for u in self.g.users(n) if u not in members]

    def primary(self, grp: _Group) -> int:
        """The last body step: the reduction's operand, else the latest elementwise member."""
        if grp.reduce is not None:
            return grp.start
        return max((m for m in grp.members if m not in grp.layout), key=self.pos.__getitem__)

    def exported(self, grp: _Group) -> list[int]:
        """Members whose value is needed outside the group (the reduction excluded)."""
        out = []
        for m in grp.members:
            if m == grp.reduce:
                continue
            if m in self.outputs or self.external_users(m, grp.members):
                out.append(m)
        return sorted(out, key=self.pos.__getitem__)

    def n_ops(self, grp: _Group) -> int:
        return len(grp.members) - len(grp.layout)

    # -- phase 1 ------------------------------------------------------------------------------
    def grow(self, root: int, start: int, reduce_node) -> _Group:
        g, pos = self.g, self.pos
        members = {root, start}
        layout = set()
        space = self.shape(start)
        heap = []
        pushed = set()

        def push_operands(n):
            for o in g.operands(n):
                if o not in pushed and o not in members:
                    pushed.add(o)
                    heapq.heappush(heap, (-pos[o], o))

        push_operands(start)
        while heap and len(members) < MAX_FUSED_BODY:
            _, p = heapq.heappop(heap)
            if p in self.group_of:
                continue
            is_layout = g.op(p) in ("dimshuffle", "reshape")
            if not is_layout and not _is_elemwise(g, p):
                continue  # (before reading users: a shared input may have very many)
            users = g.users(p)
            if is_layout:
                if p not in self.outputs and all(u in members for u in users) and _layout_ok(g, p, leading=True):
                    members.add(p)
                    layout.add(p)
                continue
            if any(u in layout for u in users):
                continue
            outside = [u for u in users if u not in members]
            if outside or p in self.outputs:
                # an extra output: the loop stores it at every point, and the cycle rule holds
                if not space or not self.same_space(p, start) or any(pos[u] <= pos[root] for u in outside):
                    continue
            members.add(p)
            push_operands(p)
        return _Group(members, reduce_node, start, layout, pos[root])

    def phase1(self) -> None:
        g, pos = self.g, self.pos
        for n in reversed(self.order):
            if n in self.group_of:
                continue
            reduce_node = None
            if g.op(n) in FUSABLE_REDUCTIONS:
                x = g.operands(n)[0]
                if x in self.group_of or not _is_elemwise(g, x):
                    continue
                if (x in self.outputs or len(g.users(x)) > 1) and not self.shape(x):
                    continue  # rank 0: a one-point loop gains nothing from a second result
                if any(pos[u] <= pos[n] for u in g.users(x) if u != n):
                    continue  # x is needed before the reduction is done: the cycle rule
                start, reduce_node = x, n
            elif _is_elemwise(g, n):
                start = n
            else:
                continue
            grp = self.grow(n, start, reduce_node)
            if self.n_ops(grp) < self.min_ops:
                continue
            for m in grp.members:
                self.group_of[m] = grp

    # -- phase 2 ------------------------------------------------------------------------------
    def unit(self, n):
        """The group of an elementwise node or fused reduction, a lone elementwise node as a new
        group of one, else None."""
        grp = self.group_of.get(n)
        if grp is not None:
            return grp
        if _is_elemwise(self.g, n):
            grp = _Group({n}, None, n, (), self.pos[n])
            self.group_of[n] = grp
            return grp
        return None

    def space(self, grp: _Group):
        return self.shape(self.primary(grp))

    def same_spaces(self, a: _Group, b: _Group) -> bool:
        return self.same_space(self.primary(a), self.primary(b))

    def try_merge(self, a: _Group, b: _Group):
        """The merged group when merging a and b keeps every rule (see the module docstring)."""
        merged = self._merged(a, b)
        if merged is None:
            a.failures += 1
            b.failures += 1
        else:
            merged.failures = max(a.failures, b.failures)
        return merged

    def _merged(self, a: _Group, b: _Group):
        g, pos = self.g, self.pos
        if a.reduce is not None and b.reduce is not None:
            return None
        if len(a.members) + len(b.members) > min(MAX_MERGE_MEMBERS, MAX_FUSED_BODY) or not self.same_spaces(a, b):
            return None
        if not self.space(a):
            return None  # rank 0: a one-point loop gains nothing from merging (scalar index math stays plain)
        members = a.members | b.members
        t = max(a.t, b.t)
        red = a if a.reduce is not None else b if b.reduce is not None else None
        if red is not None:
            other = b if red is a else a
            if any(u in other.members for u in g.users(red.start)):
                return None  # the reduced value must stay the last step
            if any(u in other.members for u in g.users(red.reduce)):
                return None  # a kernel cannot read its own reduction
            merged = _Group(members, red.reduce, red.start, a.layout | b.layout, t)
        else:
            merged = _Group(members, None, None, a.layout | b.layout, t)
            merged.start = self.primary(merged)
        for m in merged.layout:
            if g.operands(m)[0] in members:
                return None  # a layout step reads a kernel operand, never a step
        head = self.primary(merged)
        results = 1 if merged.reduce is not None else 0
        for m in members:
            outside = self.external_users(m, members)
            if any(pos[u] <= t for u in outside):
                return None  # the cycle rule
            if (outside or m in self.outputs) and m != merged.reduce:
                if not self.same_space(m, head):
                    return None  # an extra result is stored at every point of the loop
                results += 1
        if results > MAX_KERNEL_RESULTS:
            return None
        return merged

    def phase2(self) -> None:
        g = self.g
        for v in self.order:
            cands = []
            seen = set()
            for n in [v] + g.users(v):
                grp = self.unit(n)
                if grp is not None and id(grp) not in seen:
                    seen.add(id(grp))
                    cands.append(grp)
            if len(cands) < 2:
                continue
            cands.sort(key=lambda grp: grp.t)
            # in position order, each candidate joins the group gathered so far, or (when it
            # cannot) starts the next one: a full kernel does not stop its later siblings merging
            acc = cands[0]
            for c in cands[1:]:
                merged = None
                if acc.failures < MAX_MERGE_FAILURES and c.failures < MAX_MERGE_FAILURES:
                    merged = self.try_merge(acc, c)
                if merged is None:
                    acc = c
                    continue
                for m in merged.members:
                    self.group_of[m] = merged
                acc = merged

    # -- trailing layout ------------------------------------------------------------------------
    def epilogue(self, grp: _Group) -> list[int]:
        g = self.g
        chain = []
        cur = grp.reduce if grp.reduce is not None else grp.start
        while cur not in self.outputs and g.nx.out_degree(cur) == 1:  # (not an output: one edge, one use)
            (u,) = g.users(cur)
            if u in self.group_of or g.op(u) not in ("dimshuffle", "reshape") or not _layout_ok(g, u, leading=False):
                break
            chain.append(u)
            cur = u
        return chain

    # -- building -------------------------------------------------------------------------------
    def groups(self) -> list[_Group]:
        out, seen = [], set()
        for n in self.order:
            grp = self.group_of.get(n)
            if grp is not None and id(grp) not in seen:
                seen.add(id(grp))
                out.append(grp)
        return [grp for grp in out if self.n_ops(grp) >= self.min_ops]

    def build(self, grp: _Group) -> None:
        g, pos = self.g, self.pos
        primary = self.primary(grp)
        steps = sorted((m for m in grp.members if m != grp.reduce and m != primary), key=pos.__getitem__)
        steps.append(primary)
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

        for n in steps:
            if n in grp.layout:
                (o,) = g.operands(n)
                if o not in input_ref:
                    input_ref[o] = f"${len(inputs)}"
                    inputs.append(o)
                refs = (input_ref[o],)
            else:
                refs = tuple(ref(o) for o in g.operands(n))
            step_ref[n] = f"%{len(body)}"
            body.append((g.op(n), tuple(sorted(g.attrs(n).items())), refs))
        attrs = {"body": tuple(body)}
        if grp.reduce is not None:
            r = grp.reduce
            attrs.update(reduce=g.op(r), axis=tuple(g.attrs(r)["axis"]), keepdims=bool(g.attrs(r)["keepdims"]))
        head = grp.reduce if grp.reduce is not None else primary
        chain = self.epilogue(grp)
        if chain:
            attrs["epilogue"] = tuple((g.op(n), tuple(sorted(g.attrs(n).items()))) for n in chain)
        extra = [m for m in self.exported(grp) if m != head]
        if extra:
            attrs["outputs"] = tuple(int(step_ref[m][1:]) for m in extra)
        kernel = g.add_node("fused", inputs, attrs)
        results = [chain[-1] if chain else head] + extra
        if not extra:
            self._replace(results[0], kernel)
            return
        for i, old in enumerate(results):
            self._replace(old, g.add_node("get_output", [kernel], {"index": i}))

    def _replace(self, old: int, new: int) -> None:
        """``rewrite.replace`` with the graph outputs remapped once at the end (``remap_outputs``):
        rewriting the output list per replaced node would be quadratic in graph size."""
        g = self.g
        if g.type(new) != g.type(old):  # pragma: no cover - infer mirrors the members' rules
            raise AssertionError(f"fusion changed the type of %{old}: {g.type(old)} -> {g.type(new)}")
        name = g.name(old)
        g.replace_all_uses(old, new, outputs=False)
        if name is not None and g.name(new) is None:
            g.set_name(new, name)
        self.replaced[old] = new

    def remap_outputs(self) -> None:
        self.g.outputs = [self.replaced.get(o, o) for o in self.g.outputs]


def fuse_elementwise(graph: Graph, min_ops: int = 2) -> Graph:
    """Fuse elementwise groups of ``graph`` (in place) into ``fused`` kernels; returns it.

    ``min_ops``: the fewest ops (elementwise steps plus a reduction) worth a kernel.
    """
    f = _Fuser(graph, min_ops)
    f.phase1()
    f.phase2()
    groups = f.groups()
    for grp in groups:
        f.build(grp)
    f.remap_outputs()
    if groups:
        graph.remove_dead()
    return graph
