"""Memory planning: a pure analysis assigning every computed value a buffer.

``plan_memory(graph)`` walks the graph in its stable topological order and decides, for
each node that is not an input or a constant:

* **view**: ``reshape`` (always, buffers are C-contiguous) and a ``dimshuffle`` that only
  inserts or drops size-1 axes without reordering the others need no copy; the node
  aliases its operand's storage (ultimately an input, a constant or a buffer);
* **in place**: an elementwise node (or an elementwise ``fused`` kernel without reduction)
  may write over an operand whose storage dies at this node, when that operand has the
  same dtype and the same shape (static, or the same named symbolic dims) and every other
  operand reading that storage is aligned the same way (no broadcast read of what is being
  overwritten);
* otherwise a buffer from the free pool: the smallest dead buffer at least as large, when
  byte sizes are static (or, for symbolic shapes, a dead buffer of the identical
  named-dim shape and dtype); else a fresh buffer.

A storage dies after its last reader (the readers of every view of it count).  Graph
outputs (and whatever they view) get buffers that are never reused: the caller owns them.
Inputs and constants are never written.  ``bytes_without_reuse`` sums the static sizes of
all intermediate values that need storage; ``bytes_with_reuse`` the static sizes of the
planned intermediate buffers.  Values with anonymous symbolic dims are counted in
``dynamic_values`` instead of bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from tcomp.ir import Graph, TensorType, get_op
from tcomp.ir import dtypes as dt

SizeKey = Union[int, tuple, None]


def _size_key(t: TensorType) -> SizeKey:
    """Static byte size, or (dtype, shape) when every dim is static or named, else None."""
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
    op = g.op(n)
    if op == "fused":
        return g.attrs(n)["reduce"] is None
    return get_op(op).kind == "elemwise"


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
        return "\n".join(lines)


def plan_memory(graph: Graph) -> MemoryPlan:
    g = graph
    order = g.topo_order()
    pos = {n: i for i, n in enumerate(order)}
    end = len(order)  # "after the call": the life end of outputs
    view_of = {n: g.operands(n)[0] for n in order if g.op(n) not in ("input", "constant") and is_view(g, n)}

    def storage(n):
        while n in view_of:
            n = view_of[n]
        return n

    # the last reader of each storage, over all views of it
    last_use: dict[int, int] = {}
    for n in order:
        for o in g.operands(n):
            s = storage(o)
            last_use[s] = max(last_use.get(s, -1), pos[n])
    escaping = {storage(o) for o in g.outputs}
    for s in escaping:
        last_use[s] = end

    buffers: list[Buffer] = []
    buffer_of: dict[int, int] = {}
    inplace: dict[int, int] = {}
    free: list[int] = []  # ids of dead intermediate buffers
    dies_at: dict[int, list[int]] = {}
    no_reuse = 0
    dynamic = 0

    for n in order:
        op = g.op(n)
        if op in ("input", "constant") or n in view_of:
            continue
        t = g.type(n)
        key = _size_key(t)
        if isinstance(key, int):
            no_reuse += 0 if n in escaping else key
        else:
            dynamic += 1
        chosen = None
        if _elementwise(g, n) and n not in escaping and key is not None:
            for o in g.operands(n):
                s = storage(o)
                aliases = [a for a in g.operands(n) if storage(a) == s]
                if (s in buffer_of and s not in escaping and last_use.get(s) == pos[n]
                        and all(g.type(a) == t for a in aliases)):
                    chosen = buffer_of[s]
                    inplace[n] = o
                    dies_at[pos[n]] = [b for b in dies_at.get(pos[n], []) if b != s]
                    break
        if chosen is None and n not in escaping and key is not None:
            chosen = _take_free(buffers, free, key)
        if chosen is None:
            chosen = len(buffers)
            buffers.append(Buffer(chosen, t.dtype, t.shape, key if isinstance(key, int) else None,
                                  output=n in escaping))
        buffer_of[n] = chosen
        buffers[chosen].values.append(n)
        dies_at.setdefault(last_use.get(n, pos[n]), []).append(n)
        # storages read for the last time here are free for later nodes
        for s in dies_at.pop(pos[n], []):
            if s != n and s in buffer_of and not buffers[buffer_of[s]].output and buffer_of[s] != chosen:
                free.append(buffer_of[s])
        if last_use.get(n) is None and n not in escaping:  # computed but never read
            free.append(chosen)
    with_reuse = sum(b.nbytes or 0 for b in buffers if not b.output)
    return MemoryPlan(buffer_of, view_of, inplace, buffers, no_reuse, with_reuse, dynamic)


def _take_free(buffers: list[Buffer], free: list[int], key: SizeKey) -> Optional[int]:
    """Pop the best dead buffer for a value of size ``key`` (smallest that fits)."""
    best = None
    for i, b in enumerate(free):
        buf = buffers[b]
        if isinstance(key, int):
            fits = buf.nbytes is not None and buf.nbytes >= key
            if fits and (best is None or buf.nbytes < buffers[free[best]].nbytes):
                best = i
        elif buf.nbytes is None and (buf.dtype, buf.shape) == key:
            best = i
            break
    if best is None:
        return None
    return free.pop(best)
