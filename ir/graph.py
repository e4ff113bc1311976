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

import heapq
from typing import Iterable, Optional

import networkx as nx

from .ops import get_op
from .types import TensorType, TupleType


class Graph:
    def __init__(self):
        self.nx = nx.MultiDiGraph()
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
        self.nx.add_node(nid, op=op, attrs=attrs, type=type, name=name)
        for i, o in enumerate(operands):
            self.nx.add_edge(o, nid, arg=i)
        return nid

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
        for u, _, k, data in list(self.nx.in_edges(node, keys=True, data=True)):
            if data["arg"] == arg:
                self.nx.remove_edge(u, node, key=k)
        self.nx.add_edge(new_operand, node, arg=arg)

    def replace_all_uses(self, old: int, new: int, outputs: bool = True) -> None:
        """Make every consumer of ``old`` (and, with ``outputs``, the output list) use ``new``
        instead.  A pass replacing many outputs passes ``outputs=False`` and remaps the list once."""
        if old == new:
            return
        loc = self.nx.nodes[old].get("loc")  # the user's file:line (tcomp dump --locations) moves along
        if loc is not None and "loc" not in self.nx.nodes[new] and self.op(new) not in ("input", "constant"):
            self.nx.nodes[new]["loc"] = loc
        for _, v, k, data in list(self.nx.out_edges(old, keys=True, data=True)):
            self.nx.remove_edge(old, v, key=k)
            self.nx.add_edge(new, v, arg=data["arg"])
        if outputs and old in self.outputs:
            self.outputs = [new if o == old else o for o in self.outputs]

    def remove_node(self, node: int) -> None:
        self.nx.remove_node(node)

    # -- reading ------------------------------------------------------------------
    def __contains__(self, node: int) -> bool:
        return node in self.nx

    def __len__(self) -> int:
        return self.nx.number_of_nodes()

    def nodes(self) -> list[int]:
        return sorted(self.nx.nodes)

    def op(self, node: int) -> str:
        return self.nx.nodes[node]["op"]

    def attrs(self, node: int) -> dict:
        return self.nx.nodes[node]["attrs"]

    def type(self, node: int) -> TensorType | TupleType:
        return self.nx.nodes[node]["type"]

    def name(self, node: int) -> Optional[str]:
        return self.nx.nodes[node]["name"]

    def set_name(self, node: int, name: Optional[str]) -> None:
        self.nx.nodes[node]["name"] = name

    # (operands, users and topo_order read networkx's adjacency dicts directly: the passes call
    # them for every node, and the edge views cost several times more than the work)
    def operands(self, node: int) -> list[int]:
        edges = sorted((d["arg"], u) for u, keys in self.nx._pred[node].items() for d in keys.values())
        return [u for _, u in edges]

    def users(self, node: int) -> list[int]:
        """Distinct consumers of ``node``, sorted by id."""
        return sorted(self.nx._succ[node])

    def num_uses(self, node: int) -> int:
        return self.nx.out_degree(node) + self.outputs.count(node)

    def topo_order(self) -> list[int]:
        """Topological order, smallest ready id first: stable across runs and processes."""
        succ = self.nx._succ
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
        g = Graph()
        g.nx = self.nx.copy()
        for n in g.nx.nodes:
            g.nx.nodes[n]["attrs"] = dict(g.nx.nodes[n]["attrs"])
        g.inputs = list(self.inputs)
        g.outputs = list(self.outputs)
        g._next_id = self._next_id
        return g

    def live_nodes(self) -> set[int]:
        """Nodes the outputs depend on (inputs always count as live)."""
        live = set(self.inputs)
        stack = list(self.outputs)
        while stack:
            n = stack.pop()
            if n in live:
                live.add(n)
                continue
            live.add(n)
            stack.extend(self.nx.predecessors(n))
        # inputs reached above may not have had their preds expanded (they have none)
        return live

    def remove_dead(self) -> int:
        """Delete nodes no output depends on; returns how many were removed."""
        dead = set(self.nx.nodes) - self.live_nodes()
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
