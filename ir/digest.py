"""An exact digest of a graph as built: what the graph-level compile cache is keyed by.

Why not :func:`tcomp.ir.printer.structural_hash`: that hash renumbers nodes and drops
intermediate names, so two graphs it calls equal may still lower to kernel programs that
differ (node ids and names appear in a program's labels and error messages).  A cache
that hands back the program made for *another* graph must only do so when nothing the
passes and the lowering read could differ, so this digest covers everything a node
carries but the user's source location (``loc``, read only by ``dump(locations=True)``
and DebugMode's messages, which use the caller's own traced graph): node ids, ops,
operand order, every attribute value with its exact type (``1``, ``1.0``, ``True`` and
``np.float32(1)`` differ; floats by their bits), types, names, the input and output lists.

It is also fast (one pass over the nodes, no sort, no text formatting): a warm start of the
MLP training step pays it on every compile.  A value it cannot encode exactly (a Python
op's callable, anything unknown) raises :class:`Undigestable`: such a graph is not cached.
"""
from __future__ import annotations

import hashlib
import struct

import numpy as np

from .ops import Constant
from .ops.control import Body
from .types import TensorType, TupleType

#: bump when the encoding changes
DIGEST_VERSION = 1
#: node data keys the digest covers; ``loc`` is left out on purpose (see the module doc)
_KNOWN_KEYS = frozenset(("op", "attrs", "type", "name", "loc"))


class Undigestable(TypeError):
    """The graph holds a value the digest cannot encode exactly (it is then not cached)."""


def _type(t) -> str:
    c = type(t)
    if c is TensorType:
        return f"T{t.dtype}{t.shape!r}"  # dims are int, str or None: repr is exact and unambiguous
    if c is TupleType:
        return "U(" + ",".join(_type(e) for e in t.elements) + ")"
    if isinstance(t, TensorType):  # a subclass (``tcomp.tensor.type.TensorType`` carries a name)
        name = getattr(t, "name", None)
        if name is not None and type(name) is not str:
            raise Undigestable(f"type name of type {type(name).__name__}")
        return f"T{t.dtype}{t.shape!r}{c.__module__}.{c.__qualname__}:{name!r}"
    raise Undigestable(f"unknown type object {c.__name__}")


def _value(v, out: list) -> None:
    """Append an exact, type-tagged encoding of an attribute value to ``out`` (str and bytes)."""
    t = type(v)
    if v is None:
        out.append("N")
    elif t is bool:
        out.append("B1" if v else "B0")
    elif t is int:
        out.append(f"I{v};")
    elif t is float:
        out.append("F" + struct.pack("<d", v).hex())
    elif t is str:
        out.append(f"S{len(v)}:{v}")
    elif t is tuple or t is list:
        out.append(f"{'(' if t is tuple else '['}{len(v)}:")
        for x in v:
            _value(x, out)
    elif t is Constant:
        dtype, shape, data = v._key
        out.append(f"C{dtype}{shape!r}{len(data)}:")
        out.append(data)
    elif isinstance(v, (TensorType, TupleType)):
        out.append("Y" + _type(v))
    elif t is Body:
        out.append("G" + graph_digest(v.graph))
    elif isinstance(v, np.generic) and v.dtype.kind in "biuf":
        out.append(f"n{v.dtype.str}:")
        out.append(v.tobytes())
    else:
        raise Undigestable(f"attribute value of type {t.__name__} has no exact encoding")


def graph_digest(graph) -> str:
    """Hex sha256 of everything ``graph`` holds but source locations (see the module doc).
    Raises :class:`Undigestable` for a value without an exact encoding."""
    h = hashlib.sha256(f"tcomp.graph-digest.{DIGEST_VERSION}\n".encode())
    parts: list = [f"in{graph.inputs!r}out{graph.outputs!r}next{graph._next_id};"]
    G = graph.nx
    pred = G._pred
    for n, d in G._node.items():
        if not _KNOWN_KEYS.issuperset(d):
            raise Undigestable(f"node %{n} carries data {sorted(set(d) - _KNOWN_KEYS)} the digest does not cover")
        # operands in argument order, as Graph.operands reads them (parallel edges included)
        ops = sorted((e["arg"], u) for u, keys in pred[n].items() for e in keys.values())
        parts.append(f"\n{n}:{d['op']}:{[u for _, u in ops]!r}:{[a for a, _ in ops]!r}:{_type(d['type'])}:")
        name = d.get("name")
        parts.append("-" if name is None else f"S{len(name)}:{name}")
        attrs = d["attrs"]
        for k in sorted(attrs):
            parts.append(f"|{len(k)}:{k}=")
            _value(attrs[k], parts)
    for p in parts:
        h.update(p if type(p) is bytes else p.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


__all__ = ["graph_digest", "Undigestable", "DIGEST_VERSION"]
