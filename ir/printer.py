"""The IR's text form and its structural hash.

The text form is for people (``tcomp dump``, ``--print-after``) *and* for machines: it
parses back (:func:`tcomp.ir.parse_graph`) into an equal graph, so a dump can be edited
and replayed, and tests can write graphs by hand.  Example::

    graph(%0: f32[?, 784] "x", %1: f32[784, 10] "W") {
      %2 = dot(%0, %1) : f32[?, 10]
      %3 = constant() {value=tensor([0.5, nan, -inf, 1e+20, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0])} : f32[10]
      %4 = add(%2, %3) : f32[?, 10] "logits"
      %5 = sum(%4) {axis=(1,), keepdims=false} : f32[?]
      return (%5, %4, %0)
    }

Grammar (one statement per line; blank lines and lines starting with ``#`` are ignored)::

    graph   := "graph" "(" [input {"," input}] ")" "{"  node*  "return" "(" [ref {"," ref}] ")"  "}"
    input   := ref ":" type [STRING]       a graph input (an ``input`` node), in graph.inputs order
             | ref                         a listed input defined by a node line (invalid graphs only)
    node    := ref "=" OP "(" [ref {"," ref}] ")" [attrs] ":" type [STRING]
    attrs   := "{" key "=" value {"," key "=" value} "}"      keys sorted; key := NAME | STRING
    type    := DTYPE "[" [dim {"," dim}] "]"       DTYPE: bool i8 i16 i32 i64 u8 f32 f64
             | "(" type "," type {"," type} ")"     a TupleType: a multi-output kernel's results
    dim     := INT | "?" | NAME | STRING           "?" anonymous symbolic, NAME/STRING named symbolic
    value   := "none" | "true" | "false" | INT | FLOAT | STRING
             | "(" ")" | "(" value "," ")" | "(" value "," value {"," value} ")"     a tuple
             | "[" [value {"," value}] "]"                                           a list
             | "tensor" "(" elems [":" type] ")"       a Constant; its type defaults to the node's
             | "type" "(" type ")"                     a TensorType (or TupleType)
    elems   := scalar | "[" [elems {"," elems}] "]"    nested lists, C order
             | blob<...>      a digest: only in abbreviated dumps and the hash's text; never parses
    ref     := "%" INT                                 node ids are kept as written
    STRING  := a JSON string literal (double quotes, backslash escapes, ASCII only)
    FLOAT   := Python ``repr`` of a float (has "." or "e"), or nan, -nan, inf, -inf
    NAME    := [A-Za-z_][A-Za-z0-9_.]* other than the reserved words above

A ``fused`` kernel prints either in the canonical one-line form above (its ``body`` etc.
as attrs: what ``str(graph)`` and the hash use) or, with ``format_graph(g, readable=True)``
(what ``fn.dump`` and ``tcomp dump`` print), as a nested block that parses back to the same
attrs::

      %9 = fused(%2, %3) : f32[?, 8] "h" {
        %0 = add($0, $1) : f32[?, 8]
        %1 = tanh(%0) : f32[?, 8]
        reduce sum {axis=(1,), keepdims=false} : f32[?]
        epilogue dimshuffle {pattern=(0, "x")}
        outputs (%0)
      }

    block   := step* ["reduce" OP [attrs] ":" type] {"epilogue" OP [attrs]} ["outputs" "(" [sref {"," sref}] ")"]
    step    := sref "=" OP "(" [oref {"," oref}] ")" [attrs] ":" type
    sref    := "%" INT      the result of step INT of this kernel (steps are numbered from 0, in order)
    oref    := "$" INT | sref     "$i": the kernel's i-th operand (the node's i-th graph operand)

Inside a block, ``%k`` names step ``k`` (not graph node ``k``).  Step and reduce types are
what the op's type rule gives (the parser checks them); step attrs are taken as written
(complete, as the fusion pass writes them).  A kernel whose attrs a block cannot express
exactly (malformed, for the verifier to report) prints in the one-line form.  A ``#``
outside a string starts a comment to the end of the line (``--locations`` prints
``# file.py:12`` after each node that records where the user's Python made it).

Nodes are printed in :meth:`Graph.topo_order` (deterministic), each with its optional
name as a trailing string.  Floats print with ``repr`` (float32 constants with NumPy's
shortest float32 form, checked to round-trip), so printing is exact; only NaN payloads
other than the sign are not preserved.

:func:`structural_hash` hashes a canonical variant of the same text: nodes renumbered in
an order that depends only on structure (inputs first, then a post-order walk from the
outputs in order, operands in argument order), intermediate node names dropped, and
constants replaced by a digest of their bytes.  It therefore ignores id numbering and
intermediate names but sees input names and order, output order, ops, attrs, types and
constant values.  It keys the disk cache of compiled code.
"""
from __future__ import annotations

import hashlib
import json
import re

import numpy as np

from . import dtypes as dt
from .ops import Constant
from .ops.control import GRAPH_ATTRS, Body
from .types import TensorType, TupleType

#: bumped whenever the canonical text changes, so old cache keys are never reused
HASH_VERSION = "tcomp-graph-hash-v2"

RESERVED = frozenset({"none", "true", "false", "nan", "inf", "tensor", "type", "return", "graph"})
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def quote(s: str) -> str:
    """A JSON string literal: escapes quotes, backslashes, control and non-ASCII chars."""
    if not isinstance(s, str):
        raise TypeError(f"node names and dim names must be str, got {s!r}")
    return json.dumps(s, ensure_ascii=True)


def format_name(s: str) -> str:
    """A dim name or attr key: bare when it is a plain identifier, else quoted."""
    return s if _NAME_RE.match(s) and s not in RESERVED else quote(s)


def format_dim(d) -> str:
    if d is None:
        return "?"
    if isinstance(d, str):
        return format_name(d)
    return str(int(d))


def format_type(t: TensorType | TupleType) -> str:
    if isinstance(t, TupleType):
        return "(" + ", ".join(format_type(e) for e in t.elements) + ")"
    return f"{dt.SHORT_NAMES[t.dtype]}[{', '.join(format_dim(d) for d in t.shape)}]"


def format_float(x: float) -> str:
    x = float(x)
    if x != x:
        return "-nan" if np.signbit(x) else "nan"
    return repr(x)  # 'inf', '-inf', '-0.0', '1e+20', '0.1': all exact round trips


def _format_float32_elems(flat: np.ndarray) -> list[str]:
    """Shortest float32 strings, falling back to the exact float64 repr where needed."""
    out = []
    for v in flat:
        if v != v:
            out.append("-nan" if np.signbit(v) else "nan")
            continue
        s = str(v)
        if np.float32(float(s)) != v or (v == 0 and np.signbit(v) != np.signbit(np.float32(float(s)))):
            s = repr(float(v))
        out.append(s)
    return out


def format_elements(arr: np.ndarray) -> str:
    """The values of ``arr`` as nested lists in C order (a bare scalar when 0-d)."""
    flat = arr.reshape(-1)
    kind = dt.kind(arr.dtype.name)
    if kind == "b":
        items = ["true" if v else "false" for v in flat.tolist()]
    elif kind in "iu":
        items = [str(v) for v in flat.tolist()]
    elif arr.dtype == np.float32:
        items = _format_float32_elems(flat)
    else:
        items = [format_float(v) for v in flat.tolist()]
    shape = arr.shape
    if not shape:
        return items[0]
    if 0 in shape:
        # nest down to the first empty axis; deeper axes are implied by the type
        shape = shape[:shape.index(0)]
        items = ["[]"] * int(np.prod(shape, dtype=np.int64))
        if not shape:
            return "[]"
    for d in reversed(shape):
        items = ["[" + ", ".join(items[i:i + d]) + "]" for i in range(0, len(items), d)]
    return items[0]


def _blob(c: Constant) -> str:
    h = hashlib.sha256()
    h.update(f"{c.value.dtype.name}{c.value.shape}".encode())
    h.update(c.value.tobytes())
    return f"blob<{h.hexdigest()}>"


def _display_blob(c: Constant) -> str:
    """An elided constant in a human-facing dump: its type and a short digest of its bytes."""
    digest = _blob(c)[len("blob<"):-1]
    return f"blob<{format_type(c.type)} constant, sha256 {digest[:12]}..>"


def format_value(v, node_type: TensorType | None = None, *, hash_mode: bool = False, where: str = "attr",
                 max_elements: float = float("inf")) -> str:
    """One attribute value in the grammar above; ``node_type`` is implied for Constants.

    Constants over ``max_elements`` elements print as a digest (``blob<sha256>``), which
    keeps dumps readable but does not parse back.
    """
    if v is None:
        return "none"
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return format_float(v)
    if isinstance(v, str):
        return quote(v)
    if isinstance(v, tuple):
        parts = [format_value(x, node_type, hash_mode=hash_mode, where=where, max_elements=max_elements) for x in v]
        return "(" + parts[0] + ",)" if len(parts) == 1 else "(" + ", ".join(parts) + ")"
    if isinstance(v, list):
        return "[" + ", ".join(format_value(x, node_type, hash_mode=hash_mode, where=where, max_elements=max_elements)
                               for x in v) + "]"
    if isinstance(v, Constant):
        if hash_mode:
            body = _blob(v)
        else:
            body = _display_blob(v) if v.value.size > max_elements else format_elements(v.value)
        if node_type is not None and v.type == node_type:
            return f"tensor({body})"
        return f"tensor({body} : {format_type(v.type)})"
    if isinstance(v, (TensorType, TupleType)):
        return f"type({format_type(v)})"
    if isinstance(v, Body):
        if hash_mode:  # a nested graph counts through its own structural hash
            return f"graph<{v.key}>"
        # (the text form prints nested graphs as blocks; this summary is for one-line displays
        # such as debugprint, and does not parse back)
        return f"graph<{len(v.graph.inputs)} inputs, {len(v.graph.outputs)} outputs, sha256 {v.key[:12]}..>"
    raise TypeError(f"{where}: cannot print attribute value {v!r} of type {type(v).__name__}; "
                    f"attrs hold None, bool, int, float, str, tuple, list, Constant, TensorType or TupleType")


def format_attrs(attrs: dict, node_type: TensorType, *, hash_mode: bool = False, where: str = "attr",
                 max_elements: float = float("inf")) -> str:
    if not attrs:
        return ""
    parts = []
    for key in sorted(attrs):
        if not isinstance(key, str):
            raise TypeError(f"{where}: attribute keys must be str, got {key!r}")
        value = format_value(attrs[key], node_type, hash_mode=hash_mode, where=f"{where} attr {key!r}",
                             max_elements=max_elements)
        parts.append(f"{format_name(key)}={value}")
    return " {" + ", ".join(parts) + "}"


_STEP_REF_RE = re.compile(r"[$%]\d+\Z")


def _sorted_pairs(attrs) -> bool:
    """A tuple of (str, value) pairs with sorted, distinct keys: what a block prints as ``{k=v}``."""
    if not isinstance(attrs, tuple) or not all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str)
                                               for p in attrs):
        return False
    keys = [k for k, _ in attrs]
    return keys == sorted(set(keys))


def _block_types(attrs: dict, operand_types: list):
    """(step types, reduced type) when the readable block expresses ``attrs`` exactly, else None."""
    from .ops.fused import _pre_epilogue, step_types

    if set(attrs) - {"body", "reduce", "axis", "keepdims", "outputs", "epilogue"}:
        return None
    body, red, epi, outs = attrs.get("body"), attrs.get("reduce"), attrs.get("epilogue", ()), attrs.get("outputs", ())
    if not isinstance(body, tuple) or not body:
        return None
    for step in body:
        if not (isinstance(step, tuple) and len(step) == 3 and isinstance(step[0], str) and _sorted_pairs(step[1])
                and isinstance(step[2], tuple) and all(isinstance(r, str) and _STEP_REF_RE.match(r) for r in step[2])):
            return None
    if red is None:
        if attrs.get("axis", ()) != () or attrs.get("keepdims", False) is not False:
            return None
    elif not isinstance(red, str) or not isinstance(attrs.get("axis"), tuple) \
            or not isinstance(attrs.get("keepdims"), bool):
        return None
    if not isinstance(epi, tuple) or not all(isinstance(e, tuple) and len(e) == 2 and isinstance(e[0], str)
                                             and _sorted_pairs(e[1]) for e in epi):
        return None
    if not isinstance(outs, tuple) or not all(type(j) is int for j in outs):
        return None
    if any(isinstance(t, TupleType) for t in operand_types):
        return None
    try:
        types = step_types(body, operand_types)
        reduced = _pre_epilogue(attrs, types)
    except (TypeError, ValueError, KeyError, IndexError):
        return None
    return types, reduced


def _fused_block(attrs: dict, operand_types: list) -> list[str] | None:
    """The lines inside a fused kernel's readable block, or None (print it on one line)."""
    got = _block_types(attrs, operand_types)
    if got is None:
        return None
    types, reduced = got
    lines = []
    for j, (op, sattrs, refs) in enumerate(attrs["body"]):
        a = format_attrs(dict(sattrs), types[j], where=f"step %{j} = {op}")  # rank-0 constants: never elided
        lines.append(f"%{j} = {op}({', '.join(refs)}){a} : {format_type(types[j])}")
    if attrs["reduce"] is not None:
        a = format_attrs({"axis": attrs["axis"], "keepdims": attrs["keepdims"]}, reduced)
        lines.append(f"reduce {attrs['reduce']}{a} : {format_type(reduced)}")
    for op, eattrs in attrs.get("epilogue", ()):
        lines.append(f"epilogue {op}{format_attrs(dict(eattrs), reduced, where=f'epilogue {op}')}")
    if attrs.get("outputs"):
        lines.append(f"outputs ({', '.join(f'%{j}' for j in attrs['outputs'])})")
    return lines


def format_location(loc) -> str:
    """``file:line`` of a recorded ``(file, line)`` pair; the file relative to the working
    directory when it lies below it."""
    import os

    path = loc[0]
    try:
        rel = os.path.relpath(path)
        path = rel if not rel.startswith("..") else path
    except ValueError:  # another drive (Windows)
        pass
    return f"{path}:{loc[1]}"


def _format(graph, order: list[int], ids: dict[int, int], hash_mode: bool,
            max_elements: float = float("inf"), readable: bool = False, locations: bool = False) -> str:
    """Shared by the printer (identity ids) and the hash (canonical ids, hash_mode)."""
    def ref(n):
        return f"%{ids.get(n, n)}"

    def comment(n):
        loc = graph.nx.nodes[n].get("loc") if locations else None
        return "" if loc is None else f"  # {format_location(loc)}"

    header_inputs = set()
    decls = []
    for n in graph.inputs:
        if n in graph.nx and graph.op(n) == "input" and n not in header_inputs:
            header_inputs.add(n)
            name = graph.name(n)
            decls.append(f"{ref(n)}: {format_type(graph.type(n))}" + ("" if name is None else f" {quote(name)}"))
        else:
            decls.append(ref(n))
    lines = [f"graph({', '.join(decls)}) {{"]
    if locations:
        lines += [f"  # {ref(n)} {quote(graph.name(n) or '')}: {format_location(graph.nx.nodes[n]['loc'])}"
                  for n in graph.inputs if n in header_inputs and graph.nx.nodes[n].get("loc") is not None]
    for n in order:
        if n in header_inputs:
            continue
        where = f"%{n} = {graph.op(n)}"
        operands = graph.operands(n)
        t = graph.type(n)
        name = graph.name(n)
        label = "" if name is None or (hash_mode and graph.op(n) != "input") else f" {quote(name)}"
        block = None
        if readable and graph.op(n) == "fused":
            block = _fused_block(graph.attrs(n), [graph.type(o) for o in operands])
        if not hash_mode and graph.op(n) in GRAPH_ATTRS:
            _control_block(graph, n, ref, t, label, comment(n), lines, max_elements, readable, locations)
            continue
        if block is not None:
            lines.append(f"  {ref(n)} = fused({', '.join(ref(o) for o in operands)}) : {format_type(t)}{label} {{"
                         + comment(n))
            lines.extend("    " + b for b in block)
            lines.append("  }")
            continue
        attrs = format_attrs(graph.attrs(n), t, hash_mode=hash_mode, where=where, max_elements=max_elements)
        lines.append(f"  {ref(n)} = {graph.op(n)}({', '.join(ref(o) for o in operands)}){attrs} : {format_type(t)}"
                     f"{label}{comment(n)}")
    lines.append(f"  return ({', '.join(ref(o) for o in graph.outputs)})")
    lines.append("}")
    return "\n".join(lines)


def _control_block(graph, n, ref, t, label, comment, lines, max_elements, readable, locations) -> None:
    """A node with nested graphs (scan, ifelse): its plain attrs on the head line, then one
    ``key = graph(...) { ... }`` block per nested graph (printed by the same printer), then ``}``."""
    attrs = graph.attrs(n)
    keys = GRAPH_ATTRS[graph.op(n)]
    plain = {k: v for k, v in attrs.items() if k not in keys}
    a = format_attrs(plain, t, where=f"%{n} = {graph.op(n)}", max_elements=max_elements)
    lines.append(f"  {ref(n)} = {graph.op(n)}({', '.join(ref(o) for o in graph.operands(n))}){a} : "
                 f"{format_type(t)}{label} {{{comment}")
    for key in keys:
        body = attrs.get(key)
        if not isinstance(body, Body):
            raise TypeError(f"%{n} = {graph.op(n)}: attribute {key!r} must be a Body, got {body!r}")
        inner = _format(body.graph, body.graph.topo_order(), {}, hash_mode=False, max_elements=max_elements,
                        readable=readable, locations=locations).split("\n")
        lines.append(f"    {format_name(key)} = {inner[0]}")
        lines.extend("    " + x for x in inner[1:])
    lines.append("  }")


def elided_constants(graph, max_constant_elements: int | None) -> int:
    """How many constant values ``format_graph(graph, max_constant_elements, readable=True)``
    prints as digests (a readable kernel block never elides its rank-0 constants)."""
    if max_constant_elements is None:
        return 0
    count = 0
    stack = [a for n in graph.nx.nodes if graph.op(n) != "fused" for a in graph.attrs(n).values()]
    while stack:
        v = stack.pop()
        if isinstance(v, Constant):
            count += v.value.size > max_constant_elements
        elif isinstance(v, (tuple, list)):
            stack.extend(v)
    return count


def format_graph(graph, max_constant_elements: int | None = None, *, readable: bool = False,
                 locations: bool = False) -> str:
    """The text form of ``graph`` (see the module docstring); parses back exactly.

    ``max_constant_elements`` abbreviates larger constants to a digest for human-facing
    dumps (``tcomp dump``); such text no longer parses back.  ``readable`` prints fused
    kernels as nested blocks; ``locations`` adds ``# file:line`` comments where nodes
    recorded the user's source line.  Both still parse back.
    """
    limit = float("inf") if max_constant_elements is None else max_constant_elements
    return _format(graph, graph.topo_order(), {}, hash_mode=False, max_elements=limit, readable=readable,
                   locations=locations)


# -- structural hash ---------------------------------------------------------------------

def _merkle(graph, topo: list[int]) -> dict[int, str]:
    """Per-node digest of the node and everything it depends on (ids and names ignored)."""
    position = {n: i for i, n in enumerate(graph.inputs)}
    digest: dict[int, str] = {}
    for n in topo:
        t = graph.type(n)
        parts = [graph.op(n), format_attrs(graph.attrs(n), t, hash_mode=True), format_type(t)]
        if n in position:
            parts.append(f"input#{position[n]}:{graph.name(n)!r}")
        parts.extend(digest[o] for o in graph.operands(n))
        digest[n] = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return digest


def canonical_order(graph) -> list[int]:
    """A topological order that depends only on the graph's structure, not its ids.

    Inputs come first in graph.inputs order, then an iterative post-order walk from the
    outputs in order (operands in argument order).  Nodes no output depends on are
    walked last from their sinks, sorted by content digest; exact ties among such dead
    sinks fall back to id order, which is why ``structural_hash`` leaves dead nodes out.
    """
    topo = graph.topo_order()  # raises on a cycle
    order: list[int] = []
    seen: set[int] = set()

    def walk(root):
        if root in seen or root not in graph.nx:
            return
        stack = [(root, iter(graph.operands(root)))]
        seen.add(root)
        while stack:
            node, it = stack[-1]
            for o in it:
                if o not in seen:
                    seen.add(o)
                    stack.append((o, iter(graph.operands(o))))
                    break
            else:
                stack.pop()
                order.append(node)

    for n in graph.inputs:
        walk(n)
    for n in graph.outputs:
        walk(n)
    if len(order) < len(topo):
        digest = _merkle(graph, topo)
        sinks = [n for n in topo if n not in seen and graph.nx.out_degree(n) == 0]
        for n in sorted(sinks, key=lambda n: (digest[n], n)):
            walk(n)
    return order


def canonical_text(graph) -> str:
    """The text the structural hash is taken of (useful to debug a cache miss).

    Only what the function computes counts: nodes no output depends on are left out, so
    two graphs that differ only in dead code (which DCE removes) hash alike.
    """
    live = graph.live_nodes()
    order = [n for n in canonical_order(graph) if n in live]
    ids = {n: i for i, n in enumerate(order)}
    return _format(graph, order, ids, hash_mode=True)


def structural_hash(graph) -> str:
    """Hex sha256 of the canonical text: stable across runs, processes and id numbering."""
    h = hashlib.sha256(HASH_VERSION.encode())
    h.update(b"\n")
    h.update(canonical_text(graph).encode())
    return h.hexdigest()
