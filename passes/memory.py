"""Memory planning: buffer reuse by liveness, in-place writes, views, donated inputs.

One algorithm, two callers.  :func:`assign_storage` is a linear scan over an abstract
*schedule* (steps in execution order, each writing some values and reading some
storages).  :func:`plan_memory` builds that schedule from a graph with the sizes its types
give (the graph-level plan: figures, dumps); ``lower_kernels`` builds it from the kernel
schedule with byte sizes as shape-program expressions, and every backend allocates exactly
what it assigns.  So both follow the same rules:

* a value's storage is dead after the last step reading it (a read of a view is a read of
  the storage it views);
* a step never gets a buffer that a storage it reads still lives in: storages read for the
  last time by step ``i`` are freed only *after* step ``i``'s writes are assigned; the one
  exception is an **in-place** write (``inplace`` candidates, vetted by the caller: an
  elementwise loop reading that storage only at the index it writes) over a storage that
  dies at this step and has exactly the value's size;
* a **donated** storage (an input the caller lets the step overwrite: a shared variable's
  old value under ``W <- W - lr * g``) is taken when no later step reads it and the caller
  vetted the writing step as above; otherwise the value gets ordinary memory;
* escaping values (returned to the caller) get a buffer never pooled again: fresh, or in
  place / donated;
* otherwise the best-fitting dead buffer: the smallest at least as large, else the largest
  dead one grown to fit (its final size is the largest value it holds); sizes that are only
  known as a (dtype, named shape) key reuse exactly matching buffers; unknown sizes (None)
  always get a fresh buffer.

Every rule that lets two values share bytes needs their sizes *proven* equal, never just
equal-looking types: two anonymous ``?`` dims are unrelated sizes at run time.  So a key is
only ever built from static and named dims (``passes/extents.py``, ``same_extent``), an
in-place candidate has its operand's extents (static or named) and dtype, and a graph-level
donation needs ``Extents`` to prove the update has the input's shape.

Graph-level rules of :func:`plan_memory`: ``reshape`` is a view (values are C-contiguous);
so is a ``dimshuffle`` that only inserts/drops size-1 axes; a multi-output ``fused`` kernel
writes its ``get_output`` nodes, which own storage.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

from tcomp.ir import Graph, TensorType, TupleType, get_op
from tcomp.ir import dtypes as dt

from .extents import Extents, same_extent

SizeKey = Union[int, tuple, None]


# -- the core ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One unit of execution: it writes ``writes`` (several for a multi-output kernel) and
    reads the storages ``reads``."""
    writes: tuple
    reads: tuple


@dataclass
class StorageAssignment:
    #: written value -> buffer id (values written into a donated storage are not here)
    buffer_of: dict
    #: buffer id -> size (bytes, or an exact-match key, or None)
    sizes: list
    #: value -> the storage it overwrote in place
    inplace: dict
    #: value -> the donated storage it was written into
    donated: dict
    #: buffer ids holding escaping values
    output_buffers: set


def _fits(have: SizeKey, need: SizeKey) -> bool:
    if isinstance(need, int):
        return isinstance(have, int) and have >= need
    return need is not None and have == need


def assign_storage(steps: Sequence[Step], size_of: dict, escaping=(), inplace: Optional[dict] = None,
                   donate: Optional[dict] = None, reuse: bool = True) -> StorageAssignment:
    """Assign every written value a buffer (see the module docstring for the rules).

    ``size_of``: value -> int bytes / exact key / None.  ``inplace``: value -> storages it may
    overwrite, best first.  ``donate``: value -> an external storage it may be written into.
    ``reuse=False`` gives every value its own buffer (the baseline figure and a test oracle).
    """
    escaping = set(escaping)
    inplace = inplace if reuse and inplace else {}
    donate = donate if donate else {}
    last: dict = {}
    for i, s in enumerate(steps):
        for r in s.reads:
            last[r] = i
    buffer_of: dict = {}
    holder: dict = {}  # buffer id -> the value living in it now
    sizes: list = []
    output_buffers: set = set()
    taken_inplace: dict = {}
    donated: dict = {}
    free: list = []
    dies: dict = {}  # step -> storages whose last read it is
    for s, i in last.items():
        dies.setdefault(i, []).append(s)

    def fresh(size):
        sizes.append(size)
        return len(sizes) - 1

    def from_pool(size):
        fits = [b for b in free if _fits(sizes[b], size)]
        if fits:
            b = min(fits, key=lambda b: sizes[b] if isinstance(sizes[b], int) else 0)
        elif isinstance(size, int):
            grown = [b for b in free if isinstance(sizes[b], int)]
            if not grown:
                return None
            b = max(grown, key=sizes.__getitem__)
            sizes[b] = size
        else:
            return None
        free.remove(b)
        return b

    for i, step in enumerate(steps):
        claimed = set()
        for v in step.writes:
            size = size_of[v]
            ext = donate.get(v)
            if ext is not None and last.get(ext, -1) <= i and ext not in claimed:
                donated[v] = ext
                claimed.add(ext)
                continue
            b = None
            for s in inplace.get(v, ()):
                if (s in buffer_of and s not in escaping and s not in claimed and last.get(s) == i
                        and holder.get(buffer_of[s]) == s and size is not None and sizes[buffer_of[s]] == size):
                    b = buffer_of[s]
                    taken_inplace[v] = s
                    claimed.add(s)
                    break
            if b is None and reuse and v not in escaping and size is not None:
                b = from_pool(size)
            if b is None:
                b = fresh(size)
            buffer_of[v] = b
            holder[b] = v
            if v in escaping:
                output_buffers.add(b)
        for s in dies.pop(i, ()):
            b = buffer_of.get(s)
            if b is not None and s not in escaping and holder.get(b) == s:
                free.append(b)
        for v in step.writes:
            b = buffer_of.get(v)
            if b is not None and v not in escaping and v not in last:  # written, never read
                free.append(b)
    return StorageAssignment(buffer_of, sizes, taken_inplace, donated, output_buffers)


def schedule_donations(order: list, reads: dict, deps: dict, donated: dict) -> list:
    """``order`` with each donated step moved to right after the later of its own
    dependencies and the last *other* step reading the storage it is donated.  Only for
    steps whose values nothing in the schedule reads (an update only returned to the
    caller), so the order stays valid; every reader of the old value then runs first, which
    is what lets the planner take the donation, and the gradient an update reads dies as soon
    as it is applied.  ``reads``: step -> storages it reads; ``deps``: step -> the steps it
    needs before it; ``donated``: step -> storage."""
    order = list(order)
    for k, x in donated.items():
        order.remove(k)
        where = {s: j for j, s in enumerate(order)}
        after = [where[d] for d in deps.get(k, ()) if d in where]
        after += [j for j, s in enumerate(order) if x in reads.get(s, ())]
        order.insert(max(after, default=-1) + 1, k)
    return order


# -- the graph-level plan ---------------------------------------------------------------------


def _size_key(t: TensorType) -> SizeKey:
    """Static byte size, or (dtype, shape) when every dim is static or named (equal keys are
    then equal sizes at run time), else None (anonymous dims: no size is provably equal)."""
    if t.is_static:
        return t.size * dt.itemsize(t.dtype)
    if all(d is not None for d in t.shape):
        return (t.dtype, t.shape)
    return None


def is_view(g: Graph, n: int) -> bool:
    """True for nodes whose result is their operand's storage reinterpreted (no copy)."""
    op = g.op(n)
    if op == "reshape":
        return True
    if op == "dimshuffle":
        src = g.type(g.operands(n)[0])
        kept = [p for p in g.attrs(n)["pattern"] if p != "x" and src.shape[p] != 1]
        return kept == sorted(kept)
    return False


def _elementwise(g: Graph, n: int) -> bool:
    """One result written at each point of its own shape (operands may broadcast)."""
    op = g.op(n)
    if op == "fused":
        a = g.attrs(n)
        return a["reduce"] is None and not a.get("outputs") and not a.get("epilogue")
    return get_op(op).kind == "elemwise"


def _relaid_operands(g: Graph, n: int) -> set:
    """Operands a fused kernel reads through a leading dimshuffle/reshape step or a product
    step (not at the index it writes, so never overwritten in place)."""
    if g.op(n) != "fused":
        return set()
    ops = g.operands(n)
    return {ops[int(r[1:])] for op, _a, refs in g.attrs(n)["body"] if op in ("dimshuffle", "reshape", "dot", "matmul")
            for r in refs}


def kernel_results(g: Graph, n: int) -> list:
    """The values node ``n`` writes: itself, or a multi-output node's get_output nodes (a
    multi-output fused kernel, or any node of tuple type: scan, a random draw with its state)."""
    if (g.op(n) == "fused" and g.attrs(n).get("outputs")) or isinstance(g.type(n), TupleType):
        return sorted((u for u in g.users(n) if g.op(u) == "get_output"), key=lambda u: g.attrs(u)["index"])
    return [n]


@dataclass
class Buffer:
    id: int
    dtype: str
    shape: tuple
    nbytes: Optional[int]  # None when the size is only known at run time
    output: bool = False
    values: list = field(default_factory=list)


@dataclass
class MemoryPlan:
    #: node -> buffer id, for every node that owns or reuses storage
    buffer_of: dict
    #: node -> the node whose storage it views (reshape / no-copy dimshuffle)
    view_of: dict
    #: node -> operand node it overwrites (in-place elementwise)
    inplace: dict
    buffers: list
    bytes_without_reuse: int
    bytes_with_reuse: int
    dynamic_values: int
    #: node -> graph input whose storage it is written into (a donated shared-variable update)
    donated: dict = field(default_factory=dict)

    def storage_of(self, node: int) -> int:
        """The node whose storage ``node`` ultimately lives in (itself unless a view)."""
        while node in self.view_of:
            node = self.view_of[node]
        return node

    def __str__(self) -> str:
        lines = [f"memory plan: {len(self.buffers)} buffers, intermediate bytes {self.bytes_with_reuse} "
                 f"(without reuse {self.bytes_without_reuse}), {self.dynamic_values} dynamic-size values"]
        for b in self.buffers:
            size = "?" if b.nbytes is None else str(b.nbytes)
            kind = " output" if b.output else ""
            lines.append(f"  buf{b.id}: {b.dtype}{list(b.shape)} {size} B{kind} <- "
                         + ", ".join(f"%{v}" for v in b.values))
        for v, i in sorted(self.donated.items()):
            lines.append(f"  %{v} written into input %{i} (donated)")
        return "\n".join(lines)


def plan_memory(graph: Graph, donate: Optional[dict] = None) -> MemoryPlan:
    """The graph-level plan.  ``donate``: graph output position -> graph input position
    whose storage that output may overwrite (``tcomp.function`` passes its shared-variable
    updates); taken only where safe, see :func:`assign_storage`."""
    g = graph
    order = g.topo_order()
    view_of = {n: g.operands(n)[0] for n in order if g.op(n) not in ("input", "constant") and is_view(g, n)}

    def storage(n):
        while n in view_of:
            n = view_of[n]
        return n

    steps, writers = [], []
    for n in order:
        if g.op(n) in ("input", "constant", "get_output") or n in view_of:
            continue
        writes = tuple(kernel_results(g, n))
        steps.append(Step(writes, tuple(sorted({storage(o) for o in g.operands(n)}))))
        writers.append(n)
    escaping = {storage(o) for o in g.outputs}
    size_of = {v: _size_key(g.type(v)) for s in steps for v in s.writes}
    inplace = {}
    for s, n in zip(steps, writers):
        if not _elementwise(g, n) or s.writes != (n,):
            continue
        t = g.type(n)
        cands = []
        relaid = _relaid_operands(g, n)
        for o in g.operands(n):
            st = storage(o)
            aliases = [a for a in g.operands(n) if storage(a) == st]
            if st not in cands and all(_same_index(g.type(a), t) and a not in relaid for a in aliases):
                cands.append(st)
        inplace[n] = cands
    donations = _graph_donations(g, donate or {}, storage, steps, writers) if donate else {}
    late = {k: donations[n] for k, n in enumerate(writers) if n in donations and not g.users(n)}
    writer_of = {v: k for k, s in enumerate(steps) for v in s.writes}
    deps = {k: [writer_of[r] for r in steps[k].reads if r in writer_of] for k in late}
    keys = schedule_donations(list(range(len(steps))), {k: s.reads for k, s in enumerate(steps)}, deps, late)
    steps = [steps[k] for k in keys]
    a = assign_storage(steps, size_of, escaping, inplace, donations)

    buffers = [Buffer(b, "", (), size if isinstance(size, int) else None) for b, size in enumerate(a.sizes)]
    pos = {n: i for i, n in enumerate(order)}
    for v in sorted(a.buffer_of, key=pos.__getitem__):
        buf = buffers[a.buffer_of[v]]
        if not buf.values:
            buf.dtype, buf.shape = g.type(v).dtype, g.type(v).shape
        buf.values.append(v)
        buf.output = buf.output or v in escaping
    no_reuse = sum(k for v, k in size_of.items() if isinstance(k, int) and v not in escaping and v not in a.donated)
    dynamic = sum(1 for k in size_of.values() if not isinstance(k, int))
    with_reuse = sum(b.nbytes or 0 for b in buffers if not b.output)
    inplace_nodes = {}
    for v, s in a.inplace.items():  # report the operand (possibly a view of the storage) overwritten
        inplace_nodes[v] = next(o for o in g.operands(v) if storage(o) == s)
    return MemoryPlan(a.buffer_of, view_of, inplace_nodes, buffers, no_reuse, with_reuse, dynamic, a.donated)


def _same_index(operand: TensorType, result: TensorType) -> bool:
    """An elementwise result may overwrite this operand: same dtype and extents proven equal
    from the types (so the operand is read at exactly the index written, never broadcast)."""
    return operand.dtype == result.dtype and same_extent(operand, result)


def _graph_donations(g: Graph, donate: dict, storage, steps, writers) -> dict:
    """Output value -> input node, for the donations that are safe to offer the core: the
    output is a plain computed node written by its own step, returned once, of the input's
    dtype and of a shape proven equal to the input's (``Extents``: an anonymous dim counts only
    when it provably is the input's); no output is (a view of) the input; the writer reads the
    input only elementwise at the written index (or not at all)."""
    out = {}
    extents = None
    step_of = {n: s for s, n in zip(steps, writers)}
    out_storages = [storage(o) for o in g.outputs]
    for pos, ipos in donate.items():
        v, x = g.outputs[pos], g.inputs[ipos]
        if v not in step_of or step_of[v].writes != (v,) or g.outputs.count(v) != 1:
            continue
        tv, tx = g.type(v), g.type(x)
        if tv.dtype != tx.dtype or x in out_storages:
            continue
        if not same_extent(tv, tx):
            extents = extents or Extents(g)  # (built only when an anonymous dim needs a proof)
            if not extents.same(v, x):
                continue
        reads_x = [o for o in g.operands(v) if storage(o) == x]
        if reads_x and not (_elementwise(g, v) and all(o == x for o in reads_x) and x not in _relaid_operands(g, v)):
            continue
        out[v] = x
    return out
