"""The IR container: a ``networkx.MultiDiGraph`` with ordered inputs and outputs.

Node ids are ints, handed out in increasing order, so "sorted by id" is a valid and
stable topological order for any graph built front to back.  Each node carries
``op`` (a name in the op table), ``attrs`` (a dict of hashable, printable values),
``type`` (its result :class:`TensorType`, or a :class:`TupleType` for a multi-output kernel,
which only ``get_output`` nodes read) and an optional ``name``.  An edge
``u -> v`` carries ``arg``: the operand position of ``u`` in ``v``; a node used twice by
the same consumer (``x * x``) gives two parallel edges, hence the multigraph.
"""
from __future__ import annotations

import contextlib
import gc
import heapq
from typing import Iterable, Optional

import networkx as nx
from networkx.utils.misc import _clear_cache

from .ops import get_op
from .types import TensorType, TupleType


class _MultiDiGraph(nx.MultiDiGraph):
    """networkx's multigraph with a structure ``version``: each node or edge change made
    through its API bumps it, and so do :class:`Graph`'s direct writes into its adjacency
    dicts, so :meth:`Graph.topo_order` can keep its answer while nothing changed (a pass
    that rewrites nothing then costs no topological sort).  Node *data* is not structure."""

    def __init__(self, *args, **kwargs):
        self.version = 0
        super().__init__(*args, **kwargs)


def _bumping(name):
    base = getattr(nx.MultiDiGraph, name)

    def method(self, *args, **kwargs):
        self.version += 1
        return base(self, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = base.__doc__
    return method


for _name in ("add_node", "add_nodes_from", "remove_node", "remove_nodes_from", "add_edge", "add_edges_from",
              "add_weighted_edges_from", "remove_edge", "remove_edges_from", "update", "clear", "clear_edges"):
    setattr(_MultiDiGraph, _name, _bumping(_name))


class Graph:
    def __init__(self):
        self.nx = _MultiDiGraph()
        self._topo = None  # (nx graph, its version, topo order) of the last topo_order()
        self.inputs: list[int] = []
        self.outputs: list[int] = []
        self._next_id = 0

    # -- building -----------------------------------------------------------------
    def add_node(self, op: str, operands: Iterable[int] = (), attrs: Optional[dict] = None,
                 type: Optional[TensorType | TupleType] = None, name: Optional[str] = None) -> int:
        """Add a node; its type is inferred from the op table unless it is a source op."""
        operands = list(operands)
        attrs = dict(attrs or {})
        opdef = get_op(op)
        attrs = opdef.normalize_attrs(attrs)
        for o in operands:
            if o not in self.nx:
                raise ValueError(f"operand %{o} of new {op} node is not in the graph")
        if opdef.source:
            if type is None:
                raise ValueError(f"a {op} node needs an explicit type")
            if not isinstance(type, TensorType):
                raise TypeError(f"a {op} node's type must be a TensorType, got {type!r}")
        else:
            if op != "get_output":
                for o in operands:
                    if isinstance(self.type(o), TupleType):
                        raise TypeError(f"{op}: operand %{o} is a multi-output kernel of type {self.type(o)}; "
                                        f"read one result through get_output first")
            inferred = opdef.infer_type([self.type(o) for o in operands], attrs)
            if type is not None and type != inferred:
                raise TypeError(f"{op}: declared type {type} differs from inferred {inferred}")
            type = inferred
        nid = self._next_id
        self._next_id += 1
        G = self.nx
        _bump(G)
        G._node[nid] = {"op": op, "attrs": attrs, "type": type, "name": name}
        G._succ[nid] = {}
        G._pred[nid] = {}
        for i, o in enumerate(operands):
            self._link(o, nid, i)
        _clear_cache(G)
        return nid

    # (edges are written into networkx's adjacency dicts directly, as ``MultiDiGraph.add_edge``
    # and ``remove_edge`` do, without their per-call checks: the passes add and move edges for
    # every node, and those calls cost several times the work)
    def _link(self, u: int, v: int, arg: int) -> None:
        """Add the edge ``u -> v`` for operand position ``arg`` (both nodes exist)."""
        succ_u = self.nx._succ[u]
        keydict = succ_u.get(v)
        if keydict is None:
            succ_u[v] = self.nx._pred[v][u] = {0: {"arg": arg}}
            return
        key = len(keydict)
        while key in keydict:
            key += 1
        keydict[key] = {"arg": arg}

    def _unlink(self, u: int, v: int, key) -> None:  # (callers bump the version)
        """Remove the edge ``(u, v, key)``."""
        keydict = self.nx._succ[u][v]
        del keydict[key]
        if not keydict:
            del self.nx._succ[u][v]
            del self.nx._pred[v][u]

    def add_input(self, type: TensorType, name: Optional[str] = None) -> int:
        nid = self.add_node("input", (), {}, type=type, name=name)
        self.inputs.append(nid)
        return nid

    def add_constant(self, value, type: Optional[TensorType] = None, name=None) -> int:
        from .ops import Constant

        c = value if isinstance(value, Constant) else Constant(value, type.dtype if type else None)
        return self.add_node("constant", (), {"value": c}, type=c.type, name=name)

    def set_operand(self, node: int, arg: int, new_operand: int) -> None:
        """Point operand ``arg`` of ``node`` at ``new_operand`` (types must stay equal)."""
        if new_operand not in self.nx._node:
            raise ValueError(f"operand %{new_operand} is not in the graph")
        _bump(self.nx)
        for u, keydict in list(self.nx._pred[node].items()):
            for k, data in list(keydict.items()):
                if data["arg"] == arg:
                    self._unlink(u, node, k)
        self._link(new_operand, node, arg)
        _clear_cache(self.nx)

    def replace_all_uses(self, old: int, new: int, outputs: bool = True) -> None:
        """Make every consumer of ``old`` (and, with ``outputs``, the output list) use ``new``
        instead.  A pass replacing many outputs passes ``outputs=False`` and remaps the list once."""
        if old == new:
            return
        G = self.nx
        _bump(G)
        old_data, new_data = G._node[old], G._node[new]
        loc = old_data.get("loc")  # the user's file:line (tcomp dump --locations) moves along
        if loc is not None and "loc" not in new_data and new_data["op"] not in ("input", "constant"):
            new_data["loc"] = loc
        succ_old = G._succ[old]
        users = list(succ_old.items())
        succ_old.clear()
        for v, keydict in users:  # same edges (and keys, in order) as remove_edge + add_edge each
            del G._pred[v][old]
            for data in keydict.values():
                self._link(new, v, data["arg"])
        _clear_cache(G)
        if outputs and old in self.outputs:  # (list.index, not a Python loop: a graph may have 1000 outputs)
            outs = list(self.outputs)
            i = outs.index(old)
            while True:
                outs[i] = new
                try:
                    i = outs.index(old, i + 1)
                except ValueError:
                    break
            self.outputs = outs

    def remove_node(self, node: int) -> None:
        self.nx.remove_node(node)

    # -- reading ------------------------------------------------------------------
    def __contains__(self, node: int) -> bool:
        return node in self.nx

    def __len__(self) -> int:
        return self.nx.number_of_nodes()

    def nodes(self) -> list[int]:
        return sorted(self.nx.nodes)

    # (the node accessors read networkx's node dict directly: ``nx.nodes[n]`` builds a view)
    def op(self, node: int) -> str:
        return self.nx._node[node]["op"]

    def attrs(self, node: int) -> dict:
        return self.nx._node[node]["attrs"]

    def type(self, node: int) -> TensorType | TupleType:
        return self.nx._node[node]["type"]

    def name(self, node: int) -> Optional[str]:
        return self.nx._node[node]["name"]

    def set_name(self, node: int, name: Optional[str]) -> None:
        self.nx._node[node]["name"] = name

    # (operands, users and topo_order read networkx's adjacency dicts directly: the passes call
    # them for every node, and the edge views cost several times more than the work)
    def operands(self, node: int) -> list[int]:
        pred = self.nx._pred[node]
        if len(pred) == 1:  # the common cases: one operand, or one node used several times
            ((u, keys),) = pred.items()
            return [u] * len(keys)
        if len(pred) == 2:  # two distinct operands, one edge each (a binary op)
            (u, ku), (v, kv) = pred.items()
            if len(ku) == 1 and len(kv) == 1:
                (du,), (dv,) = ku.values(), kv.values()
                return [u, v] if du["arg"] < dv["arg"] else [v, u]
        edges = sorted((d["arg"], u) for u, keys in pred.items() for d in keys.values())
        return [u for _, u in edges]

    def users(self, node: int) -> list[int]:
        """Distinct consumers of ``node``, sorted by id."""
        return sorted(self.nx._succ[node])

    def num_uses(self, node: int) -> int:
        return sum(map(len, self.nx._succ[node].values())) + self.outputs.count(node)

    def topo_order(self) -> list[int]:
        """Topological order, smallest ready id first: stable across runs and processes.

        When every edge goes from a smaller id to a larger one (a graph built front to back,
        and what most passes leave), that order is simply the ids sorted: each node is ready
        once the smaller ids are out, and it is then the smallest ready one.  That case is
        checked first, in one sweep over the edges, instead of running the heap."""
        G = self.nx
        version = getattr(G, "version", None)  # (None: a plain networkx graph someone assigned)
        cached = getattr(self, "_topo", None)
        if version is not None and cached is not None and cached[0] is G and cached[1] == version:
            return list(cached[2])
        order = self._topo_order()
        if version is not None:
            self._topo = (G, version, order)
        return list(order)

    def _topo_order(self) -> list[int]:
        succ = self.nx._succ
        if all(u < v for u, nbrs in succ.items() for v in nbrs):
            return sorted(succ)
        indeg = {n: 0 for n in self.nx.nodes}
        for nbrs in succ.values():
            for v, keys in nbrs.items():
                indeg[v] += len(keys)
        ready = [n for n, d in indeg.items() if d == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            n = heapq.heappop(ready)
            order.append(n)
            for v, keys in succ[n].items():
                indeg[v] -= len(keys)
                if indeg[v] == 0:
                    heapq.heappush(ready, v)
        if len(order) != len(indeg):
            raise ValueError("graph has a cycle")
        return order

    def copy(self) -> "Graph":
        """An independent copy: node data, attrs dicts and edge data are copied (what
        ``MultiDiGraph.copy`` does, filled in directly: it costs a tenth)."""
        g = Graph()
        G, src = g.nx, self.nx
        G.graph.update(src.graph)
        node = {}
        for n, d in src._node.items():
            d = dict(d)
            d["attrs"] = dict(d["attrs"])
            node[n] = d
        succ = {n: {} for n in node}
        pred = {n: {} for n in node}
        for u, nbrs in src._succ.items():
            su = succ[u]
            for v, keydict in nbrs.items():
                su[v] = pred[v][u] = {k: dict(d) for k, d in keydict.items()}
        G._node.update(node)
        G._succ.update(succ)  # (``_adj`` is the same dict as ``_succ``)
        G._pred.update(pred)
        g.inputs = list(self.inputs)
        g.outputs = list(self.outputs)
        g._next_id = self._next_id
        return g

    def live_nodes(self) -> set[int]:
        """Nodes the outputs depend on (inputs always count as live)."""
        live = set(self.inputs)
        stack = list(self.outputs)
        pred = self.nx._pred
        while stack:
            n = stack.pop()
            if n in live:
                live.add(n)
                continue
            live.add(n)
            stack.extend(pred[n])
        # inputs reached above may not have had their preds expanded (they have none)
        return live

    def remove_dead(self) -> int:
        """Delete nodes no output depends on; returns how many were removed."""
        live = self.live_nodes()
        dead = [n for n in self.nx._node if n not in live]
        if dead:
            self.nx.remove_nodes_from(dead)
        return len(dead)

    def renumbered(self) -> "Graph":
        """A copy whose ids are 0..n-1 in topological order (canonical numbering)."""
        order = self.topo_order()
        mapping = {old: new for new, old in enumerate(order)}
        g = Graph()
        g.nx = nx.relabel_nodes(self.nx, mapping, copy=True)
        g.inputs = [mapping[i] for i in self.inputs]
        g.outputs = [mapping[o] for o in self.outputs]
        g._next_id = len(order)
        return g

    def __str__(self) -> str:
        from .printer import format_graph

        return format_graph(self)

    def structural_hash(self) -> str:
        from .printer import structural_hash

        return structural_hash(self)


def _bump(G) -> None:
    """A structure change written directly into ``G``'s dicts (see ``_MultiDiGraph``)."""
    if hasattr(G, "version"):
        G.version += 1


@contextlib.contextmanager
def paused_gc():
    """Run the block with Python's cyclic garbage collector off (restored after, if it was on).

    Why: compiling a big graph allocates millions of small objects that all stay alive (node
    dicts, types, edge dicts), and each full collection walks every one of them: on a
    5000-step chain the collector took about a third of the pass, trace and autodiff time
    while finding nothing to free (graphs hold no reference cycles; refcounting frees what
    the passes drop).  Nesting is fine: only the outermost block turns the collector back on.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
