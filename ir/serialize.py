"""The IR's JSON form: for tools and other languages, where the text form needs a parser.

Layout::

    {"format": "tcomp.graph", "version": 1,
     "inputs": [0, 1], "outputs": [3],
     "nodes": [{"id": 2, "op": "add", "operands": [0, 1], "attrs": {...},
                "type": {"dtype": "float32", "shape": [null, "n", 3]}, "name": null}, ...]}

Nodes are listed in topological order.  JSON has no tuples, NaN or arrays, so attribute
values are tagged where plain JSON would lose information: ``{"tuple": [...]}``,
``{"float": "nan"|"inf"|"-inf"|"-nan"}`` (finite floats stay JSON numbers, which keep
``-0.0`` and always print with a '.' or exponent), ``{"constant": {"dtype", "shape",
"data"}}`` with ``data`` the little-endian bytes in base64 (exact, NaN payloads
included), and ``{"type": {...}}`` for a TensorType.  Plain JSON lists stay lists.
A multi-output kernel's TupleType is ``{"elements": [type, type, ...]}`` wherever a type goes.
A nested graph (the body of a scan, the branches of an ifelse) is ``{"graph": {...}}``, the
same layout as the whole document.
"""
from __future__ import annotations

import base64
import json
import math

import numpy as np

from .graph import Graph
from .ops import Constant
from .ops.control import Body
from .types import TensorType, TupleType

FORMAT = "tcomp.graph"
VERSION = 1


def _type_to_json(t: TensorType | TupleType) -> dict:
    if isinstance(t, TupleType):
        return {"elements": [_type_to_json(e) for e in t.elements]}
    return {"dtype": t.dtype, "shape": list(t.shape)}


def _type_from_json(d, where: str) -> TensorType | TupleType:
    if isinstance(d, dict) and set(d) == {"elements"}:
        elements = d["elements"]
        if not isinstance(elements, list) or len(elements) < 2 or any(
                not isinstance(e, dict) or "elements" in e for e in elements):
            raise ValueError(f"{where}: a tuple type is {{'elements': [type, type, ...]}} (at least 2 tensor "
                             f"types), got {d!r}")
        return TupleType(tuple(_type_from_json(e, where) for e in elements))
    if not isinstance(d, dict) or set(d) != {"dtype", "shape"}:
        raise ValueError(f"{where}: a type is {{'dtype': ..., 'shape': [...]}} or {{'elements': [...]}}, "
                         f"got {d!r}")
    try:
        return TensorType(d["dtype"], tuple(d["shape"]))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: bad type {d!r}: {exc}") from None


def _value_to_json(v, where: str):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isfinite(v):
            return v
        if v != v:
            return {"float": "-nan" if math.copysign(1.0, v) < 0 else "nan"}
        return {"float": "inf" if v > 0 else "-inf"}
    if isinstance(v, tuple):
        return {"tuple": [_value_to_json(x, where) for x in v]}
    if isinstance(v, list):
        return [_value_to_json(x, where) for x in v]
    if isinstance(v, Constant):
        arr = v.value.astype(v.value.dtype.newbyteorder("<"), copy=False)
        return {"constant": {"dtype": arr.dtype.name, "shape": list(arr.shape),
                             "data": base64.b64encode(arr.tobytes()).decode("ascii")}}
    if isinstance(v, (TensorType, TupleType)):
        return {"type": _type_to_json(v)}
    if isinstance(v, Body):
        return {"graph": to_dict(v.graph)}
    raise TypeError(f"{where}: cannot serialize attribute value {v!r} of type {type(v).__name__}")


def _value_from_json(v, where: str):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, list):
        return [_value_from_json(x, where) for x in v]
    if isinstance(v, dict) and len(v) == 1:
        (tag, body), = v.items()
        if tag == "tuple" and isinstance(body, list):
            return tuple(_value_from_json(x, where) for x in body)
        if tag == "float" and body in ("nan", "-nan", "inf", "-inf"):
            return float(body)
        if tag == "type":
            return _type_from_json(body, where)
        if tag == "graph" and isinstance(body, dict):
            try:
                return Body(from_dict(body, check=False))  # the outer verify checks nested graphs
            except ValueError as exc:
                raise ValueError(f"{where}: nested graph: {exc}") from None
        if tag == "constant" and isinstance(body, dict):
            t = _type_from_json({"dtype": body.get("dtype"), "shape": body.get("shape")}, where)
            if not t.is_static:
                raise ValueError(f"{where}: constant shape must be static, got {t}")
            raw = base64.b64decode(body.get("data", ""), validate=True)
            dtype = np.dtype(t.dtype).newbyteorder("<")
            if len(raw) != t.size * dtype.itemsize:
                raise ValueError(f"{where}: constant data has {len(raw)} bytes, {t} needs {t.size * dtype.itemsize}")
            arr = np.frombuffer(raw, dtype=dtype).reshape(t.shape).astype(t.dtype)
            return Constant(arr)
    raise ValueError(f"{where}: unrecognized attribute value {v!r}")


def to_dict(graph) -> dict:
    nodes = []
    for n in graph.topo_order():
        where = f"%{n} ({graph.op(n)})"
        bad_keys = [k for k in graph.attrs(n) if not isinstance(k, str)]
        if bad_keys:
            raise TypeError(f"{where}: attribute keys must be str, got {bad_keys!r}")
        nodes.append({
            "id": n, "op": graph.op(n), "operands": graph.operands(n),
            "attrs": {k: _value_to_json(v, f"{where} attr {k!r}") for k, v in sorted(graph.attrs(n).items())},
            "type": _type_to_json(graph.type(n)), "name": graph.name(n),
        })
    return {"format": FORMAT, "version": VERSION, "inputs": list(graph.inputs),
            "outputs": list(graph.outputs), "nodes": nodes}


def to_json(graph, indent: int | None = None) -> str:
    """The JSON form of ``graph`` (strict JSON: no NaN literals)."""
    return json.dumps(to_dict(graph), indent=indent, allow_nan=False)


def from_dict(d: dict, check: bool = True) -> Graph:
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"not a tcomp graph: expected 'format': {FORMAT!r}")
    if d.get("version") != VERSION:
        raise ValueError(f"unsupported tcomp graph version {d.get('version')!r} (this reader knows {VERSION})")
    g = Graph()
    for i, node in enumerate(d.get("nodes", [])):
        try:
            nid, op = node["id"], node["op"]
            operands, attrs = node.get("operands", []), node.get("attrs", {})
            type_, name = node["type"], node.get("name")
        except (KeyError, TypeError):
            raise ValueError(f"nodes[{i}] must have 'id', 'op' and 'type', got {node!r}") from None
        where = f"node %{nid} ({op})"
        if not isinstance(nid, int) or isinstance(nid, bool) or nid in g.nx:
            raise ValueError(f"nodes[{i}]: id {nid!r} is not a fresh int")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"{where}: name must be a string or null")
        attrs = {k: _value_from_json(v, f"{where} attr {k!r}") for k, v in attrs.items()}
        g.nx.add_node(nid, op=op, attrs=attrs, type=_type_from_json(type_, where), name=name)
        for arg, o in enumerate(operands):
            if o not in g.nx:
                raise ValueError(f"{where}: operand %{o} is not defined before it")
            g.nx.add_edge(o, nid, arg=arg)
    g.inputs = list(d.get("inputs", []))
    g.outputs = list(d.get("outputs", []))
    g._next_id = max(g.nx.nodes, default=-1) + 1
    if check:
        from .verify import verify

        verify(g)
    return g


def from_json(text: str, check: bool = True) -> Graph:
    """Parse the JSON form; ``check`` runs :func:`tcomp.ir.verify.verify` on the result."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"graph JSON is malformed: {exc}") from None
    return from_dict(d, check=check)
