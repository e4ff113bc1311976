"""Parse the IR's text form (grammar in :mod:`tcomp.ir.printer`) back into a Graph.

Node ids, names, input order and output order are kept exactly as written, so
``format_graph(parse_graph(format_graph(g))) == format_graph(g)``.  Errors are
``ValueError("line N: ...")``; with ``check=True`` (the default) the result is also run
through :func:`tcomp.ir.verify.verify`, whose complaints are mapped back to the line of
the node they name, so a hand-edited dump with a wrong type or arity is caught here.
Attributes a node line leaves out take the op's defaults (handy when writing by hand).
A fused kernel may be written as a readable block (``format_graph(g, readable=True)``),
read here line by line: the parser stays a loop over lines, with no recursion on graph depth.
"""
from __future__ import annotations

import json
import re

import numpy as np

from . import dtypes as dt
from .graph import Graph
from .ops import OPS, Constant
from .ops.control import GRAPH_ATTRS
from .types import TensorType, TupleType

_TOKEN_RE = re.compile(r"""
    \s*(?:
      (?P<ref>%\d+)
    | (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<comment>\#.*)
    | (?P<operand>\$\d+)
    | (?P<blob>blob<[^<>]*>)
    | (?P<num>-?(?:inf|nan)(?![A-Za-z0-9_.])
             |-?(?:\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)(?![A-Za-z0-9_.]))
    | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    | (?P<punct>[()\[\]{},=:?])
    | (?P<bad>\S)
    )""", re.VERBOSE)


#: parsed types, keyed by (short dtype, dims): TensorType is immutable and a graph repeats few types
_TYPE_CACHE: dict = {}


class _Pending:
    """A tensor literal whose type comes from the node type printed after the attrs."""

    __slots__ = ("elems", "type")

    def __init__(self, elems, type_):
        self.elems, self.type = elems, type_


class _Line:
    """Recursive-descent reader over the tokens of one line."""

    def __init__(self, text: str, lineno: int):
        self.lineno = lineno
        self.toks: list[tuple[str, str]] = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN_RE.match(text, pos)
            if m is None:  # only trailing whitespace is left
                break
            kind = m.lastgroup
            if kind == "comment":
                break
            if kind == "bad":
                self.error(f"unexpected character {m.group(kind)!r} at column {m.start(kind) + 1}")
            self.toks.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def error(self, msg: str):
        raise ValueError(f"line {self.lineno}: {msg}")

    def peek(self, value: str | None = None, kind: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        k, v = self.toks[self.i]
        return (value is None or v == value) and (kind is None or k == kind)

    def next(self) -> tuple[str, str]:
        if self.i >= len(self.toks):
            self.error("unexpected end of line")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        k, v = self.next()
        if v != value or k in ("str",):
            self.error(f"expected {value!r}, got {v!r}")

    def accept(self, value: str) -> bool:
        if self.peek(value) and self.toks[self.i][0] != "str":
            self.i += 1
            return True
        return False

    def done(self) -> None:
        if self.i != len(self.toks):
            self.error(f"unexpected {self.toks[self.i][1]!r} at end of line")

    # -- pieces -----------------------------------------------------------------------
    def ref(self) -> int:
        k, v = self.next()
        if k != "ref":
            self.error(f"expected a node reference like %3, got {v!r}")
        return int(v[1:])

    def ref_list(self) -> list[int]:
        self.expect("(")
        out = []
        if not self.accept(")"):
            out.append(self.ref())
            while self.accept(","):
                out.append(self.ref())
            self.expect(")")
        return out

    def string(self) -> str:
        k, v = self.next()
        if k != "str":
            self.error(f"expected a quoted string, got {v!r}")
        return json.loads(v)

    def key(self) -> str:
        k, v = self.next()
        if k == "str":
            return json.loads(v)
        if k != "name":
            self.error(f"expected an attribute name, got {v!r}")
        return v

    def type(self) -> TensorType | TupleType:
        if self.accept("("):
            elements = [self.type()]
            while self.accept(","):
                elements.append(self.type())
            self.expect(")")
            if len(elements) < 2:
                self.error("a tuple type has at least 2 element types")
            if any(isinstance(e, TupleType) for e in elements):
                self.error("a tuple type's elements are tensor types, not tuples")
            return TupleType(tuple(elements))
        k, v = self.next()
        if k != "name" or v not in dt.FROM_SHORT:
            self.error(f"expected a dtype ({', '.join(dt.FROM_SHORT)}), got {v!r}")
        self.expect("[")
        dims = []
        if not self.accept("]"):
            dims.append(self.dim())
            while self.accept(","):
                dims.append(self.dim())
            self.expect("]")
        key = (v, tuple(dims))
        t = _TYPE_CACHE.get(key)
        if t is None:
            if len(_TYPE_CACHE) > 4096:
                _TYPE_CACHE.clear()
            t = _TYPE_CACHE[key] = TensorType(dt.FROM_SHORT[v], key[1])
        return t

    def dim(self):
        k, v = self.next()
        if v == "?" and k == "punct":
            return None
        if k == "num" and re.fullmatch(r"\d+", v):
            return int(v)
        if k == "name":
            return v
        if k == "str":
            return json.loads(v)
        self.error(f"expected a dim (an int, ?, or a name), got {v!r}")

    def value(self):
        k, v = self.next()
        if k == "str":
            return json.loads(v)
        if k == "num":
            return _number(v)
        if k == "name":
            if v in ("none", "true", "false"):
                return {"none": None, "true": True, "false": False}[v]
            if v == "tensor":
                self.expect("(")
                elems = self.elems()
                t = self.type() if self.accept(":") else None
                self.expect(")")
                return _Pending(elems, t)
            if v == "type":
                self.expect("(")
                t = self.type()
                self.expect(")")
                return t
            self.error(f"unknown value {v!r}")
        if v == "(":
            items = []
            trailing_comma = False
            while not self.accept(")"):
                items.append(self.value())
                trailing_comma = self.accept(",")
                if not trailing_comma and not self.peek(")"):
                    self.error(f"expected ',' or ')' in tuple, got {self.next()[1]!r}")
            if len(items) == 1 and not trailing_comma:
                self.error("a 1-tuple needs a trailing comma: (x,)")
            return tuple(items)
        if v == "[":
            items = []
            if not self.accept("]"):
                items.append(self.value())
                while self.accept(","):
                    items.append(self.value())
                self.expect("]")
            return items
        self.error(f"expected a value, got {v!r}")

    def elems(self):
        k, v = self.next()
        if k == "num":
            return _number(v)
        if k == "name" and v in ("true", "false"):
            return v == "true"
        if k == "blob":
            self.error("this constant was abbreviated to a digest when printed "
                       "(format_graph(..., max_constant_elements=...)); print without a limit to parse it back")
        if v == "[":
            items = []
            if not self.accept("]"):
                items.append(self.elems())
                while self.accept(","):
                    items.append(self.elems())
                self.expect("]")
            return items
        self.error(f"expected a tensor element or '[', got {v!r}")

    def attrs(self) -> dict:
        out = {}
        if not self.accept("{"):
            return out
        while True:
            key = self.key()
            if key in out:
                self.error(f"attribute {key!r} given twice")
            self.expect("=")
            out[key] = self.value()
            if self.accept("}"):
                return out
            self.expect(",")


def _number(tok: str):
    if tok.lstrip("-") in ("inf", "nan") or any(c in tok for c in ".eE"):
        return float(tok)
    return int(tok)


def _tensor(line: _Line, pending: _Pending, node_type: TensorType | TupleType) -> Constant:
    t = pending.type or node_type
    if isinstance(t, TupleType):
        line.error(f"a tensor literal needs a tensor type; write it as tensor(... : TYPE), got {t}")
    try:
        arr = np.array(pending.elems, dtype=t.dtype)
    except (OverflowError, ValueError, TypeError) as exc:
        line.error(f"tensor literal does not fit {t}: {exc}")
    if not t.is_static:
        line.error(f"a tensor literal needs a static type, got {t}")
    if arr.size == 0 and t.size == 0:
        arr = arr.reshape(t.shape)
    if arr.shape != t.shape:
        line.error(f"tensor literal has shape {arr.shape} but its type is {t}")
    return Constant(arr)


def _resolve(line: _Line, v, node_type: TensorType):
    if isinstance(v, _Pending):
        return _tensor(line, v, node_type)
    if isinstance(v, tuple):
        return tuple(_resolve(line, x, node_type) for x in v)
    if isinstance(v, list):
        return [_resolve(line, x, node_type) for x in v]
    return v


class _Block:
    """A fused kernel's readable block being read (see :mod:`tcomp.ir.printer`)."""

    def __init__(self, head: _Line, nid: int, operands: list[int], t, name):
        self.head, self.nid, self.operands, self.type, self.name = head, nid, operands, t, name
        self.steps: list = []
        self.step_types: list = []  # (line, printed type) per step
        self.reduce = None
        self.reduce_line = None
        self.reduce_attrs = {"axis": (), "keepdims": False}
        self.epilogue: list = []
        self.outputs: tuple = ()
        self.seen_outputs = False

    def read(self, line: _Line) -> None:
        """One line inside the block."""
        if line.peek(kind="ref"):
            if self.reduce is not None or self.epilogue or self.seen_outputs:
                line.error("kernel steps come before the reduce/epilogue/outputs lines")
            k = line.ref()
            if k != len(self.steps):
                line.error(f"steps are numbered in order from %0: expected %{len(self.steps)}, got %{k}")
            line.expect("=")
            op = self._op(line)
            line.expect("(")
            refs = []
            if not line.accept(")"):
                while True:
                    kind, v = line.next()
                    if kind not in ("ref", "operand"):
                        line.error(f"expected a kernel operand $i or an earlier step %k, got {v!r}")
                    refs.append(v)
                    if line.accept(")"):
                        break
                    line.expect(",")
            attrs = line.attrs()
            line.expect(":")
            t = line.type()
            line.done()
            attrs = {key: _resolve(line, val, t) for key, val in attrs.items()}
            self.steps.append((op, tuple(sorted(attrs.items())), tuple(refs)))
            self.step_types.append((line, t))
            return
        kind, word = line.next()
        if kind == "name" and word == "reduce":
            if self.reduce is not None or self.epilogue or self.seen_outputs:
                line.error("one 'reduce' line, after the steps and before epilogue/outputs")
            self.reduce = self._op(line)
            attrs = line.attrs()
            bad = set(attrs) - {"axis", "keepdims"}
            if bad:
                line.error(f"a kernel's reduce takes only axis and keepdims, got {sorted(bad)}")
            self.reduce_attrs.update(attrs)
            line.expect(":")
            self.reduce_line = (line, line.type())
            line.done()
        elif kind == "name" and word == "epilogue":
            if self.seen_outputs:
                line.error("epilogue lines come before the outputs line")
            op = self._op(line)
            attrs = line.attrs()
            line.done()
            self.epilogue.append((op, tuple(sorted(attrs.items()))))
        elif kind == "name" and word == "outputs":
            if self.seen_outputs:
                line.error("'outputs' given twice")
            self.outputs = tuple(line.ref_list())
            self.seen_outputs = True
            line.done()
        else:
            hint = f" (is the '}}' closing the fused block of %{self.nid} missing?)" if word in ("return", "}") else ""
            line.error(f"expected a kernel step '%k = op(...)', 'reduce', 'epilogue', 'outputs' or '}}', "
                       f"got {word!r}{hint}")

    @staticmethod
    def _op(line: _Line) -> str:
        kind, op = line.next()
        if kind != "name" or op not in OPS:
            line.error(f"unknown op {op!r}")
        return op

    def attrs(self) -> dict:
        if not self.steps:
            self.head.error(f"the fused block of %{self.nid} has no steps")
        return {"body": tuple(self.steps), "reduce": self.reduce, "axis": self.reduce_attrs["axis"],
                "keepdims": self.reduce_attrs["keepdims"], "outputs": self.outputs, "epilogue": tuple(self.epilogue)}

    def check_types(self, g: Graph, attrs: dict) -> None:
        """The printed step and reduce types are what the ops' type rules give."""
        from .ops.fused import _pre_epilogue, step_types

        try:
            types = step_types(attrs["body"], [g.type(o) for o in self.operands])
            reduced = _pre_epilogue(attrs, types) if self.reduce_line else None
        except (TypeError, ValueError) as exc:
            self.head.error(f"%{self.nid} = fused: {exc}")
        for j, ((line, printed), t) in enumerate(zip(self.step_types, types)):
            if printed != t:
                line.error(f"step %{j} of %{self.nid} is written as {printed} but {self.steps[j][0]} gives {t}")
        if self.reduce_line and self.reduce_line[1] != reduced:
            self.reduce_line[0].error(f"the reduce of %{self.nid} is written as {self.reduce_line[1]} "
                                      f"but gives {reduced}")


class _Nested:
    """The nested graphs of a scan/ifelse node being read: ``key = graph(...) {`` ... ``}``
    per graph-valued attribute, then ``}``.  Each nested graph's lines are collected (brace
    depth counted per line) and parsed by :func:`parse_graph`: recursion only as deep as
    loops are nested, never as deep as the graph."""

    def __init__(self, head: _Line, nid: int, op: str, operands: list, attrs: dict, t, name):
        self.head, self.nid, self.op, self.operands, self.plain, self.type, self.name = \
            head, nid, op, operands, attrs, t, name
        self.bodies: dict = {}
        self.key = None
        self.lines: list = []
        self.depth = 0
        self.start = 0

    def read(self, line: _Line, raw: str) -> bool:
        """One line; True when the node's closing ``}`` was read."""
        if self.key is None:
            if line.accept("}"):
                line.done()
                return True
            key = line.key()
            if key not in GRAPH_ATTRS[self.op]:
                line.error(f"%{self.nid} = {self.op}: expected a nested graph {GRAPH_ATTRS[self.op]} or '}}', "
                           f"got {key!r}")
            if key in self.bodies:
                line.error(f"%{self.nid} = {self.op}: nested graph {key!r} given twice")
            line.expect("=")
            self.key, self.start, self.depth = key, line.lineno, 0
            raw = raw.split("=", 1)[1]
        if line.toks and line.toks[-1] == ("punct", "{"):
            self.depth += 1
        elif [v for _, v in line.toks] == ["}"]:
            self.depth -= 1
        self.lines.append(raw)
        if self.depth == 0:
            text = "\n".join(self.lines)
            try:
                sub = parse_graph(text, check=self.check)
            except ValueError as exc:
                raise ValueError(f"in nested graph {self.key!r} of %{self.nid} (from line {self.start}): "
                                 f"{exc}") from None
            from .ops.control import Body

            self.bodies[self.key] = Body(sub)
            self.key, self.lines = None, []
        return False

    check = True

    def attrs(self, check: bool) -> dict:
        missing = [k for k in GRAPH_ATTRS[self.op] if k not in self.bodies]
        if missing:
            self.head.error(f"%{self.nid} = {self.op}: nested graph(s) {missing} missing")
        attrs = dict(self.plain)
        attrs.update(self.bodies)
        for key, default in OPS[self.op].attr_defaults.items():
            attrs.setdefault(key, default)
        return attrs


def _content_lines(text: str):
    for lineno, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if s and not s.startswith("#"):
            yield lineno, raw


def parse_graph(text: str, check: bool = True) -> Graph:
    """Parse the text form; ``check`` runs the verifier and reports the offending line."""
    if not isinstance(text, str):
        raise TypeError(f"parse_graph takes the text form as a str, got {type(text).__name__}")
    lines = list(_content_lines(text))
    if not lines:
        raise ValueError("line 1: empty graph text (expected 'graph(...) {')")
    g = Graph()
    where: dict[int, int] = {}  # node id -> line number

    def define(line: _Line, nid: int) -> None:
        if nid in where:
            line.error(f"%{nid} is defined twice (first on line {where[nid]})")
        where[nid] = line.lineno

    # header
    lineno, raw = lines[0]
    line = _Line(raw, lineno)
    k, v = line.next()
    if v != "graph" or k != "name":
        line.error(f"expected 'graph(', got {v!r}")
    line.expect("(")
    pending_inputs: list[int] = []
    if not line.accept(")"):
        while True:
            nid = line.ref()
            if line.accept(":"):
                t = line.type()
                name = line.string() if line.peek(kind="str") else None
                define(line, nid)
                g.nx.add_node(nid, op="input", attrs={}, type=t, name=name)
            g.inputs.append(nid)
            pending_inputs.append(nid)
            if line.accept(")"):
                break
            line.expect(",")
    line.expect("{")
    line.done()

    # body
    body = lines[1:]
    outputs = None
    closed = False
    block = None
    nested = None  # a node with nested graphs (scan, ifelse) being read: _Nested
    for lineno, raw in body:
        line = _Line(raw, lineno)
        if nested is not None:
            if nested.read(line, raw):
                define(nested.head, nested.nid)
                g.nx.add_node(nested.nid, op=nested.op, attrs=nested.attrs(check), type=nested.type,
                              name=nested.name)
                for i, o in enumerate(nested.operands):
                    g.nx.add_edge(o, nested.nid, arg=i)
                nested = None
            continue
        if block is not None:
            if line.accept("}"):
                line.done()
                attrs = block.attrs()
                if check:
                    block.check_types(g, attrs)
                define(block.head, block.nid)
                g.nx.add_node(block.nid, op="fused", attrs=attrs, type=block.type, name=block.name)
                for i, o in enumerate(block.operands):
                    g.nx.add_edge(o, block.nid, arg=i)
                block = None
            else:
                block.read(line)
            continue
        if not line.toks:  # a line holding only a comment after some spaces
            continue
        if closed:
            line.error("text after the closing '}'")
        if line.accept("}"):
            line.done()
            if outputs is None:
                line.error("missing 'return (...)' before '}'")
            closed = True
            continue
        if outputs is not None:
            line.error("only '}' may follow 'return'")
        if line.peek("return", kind="name"):
            line.next()
            outputs = line.ref_list()
            line.done()
            for o in outputs:
                if o not in where:
                    line.error(f"output %{o} is not defined")
            continue
        nid = line.ref()
        line.expect("=")
        k, op = line.next()
        if k != "name":
            line.error(f"expected an op name, got {op!r}")
        if op not in OPS:
            line.error(f"unknown op {op!r} for %{nid}")
        operands = line.ref_list()
        for o in operands:
            if o not in where:
                line.error(f"%{nid} = {op}: operand %{o} is not defined above")
        attrs = line.attrs()
        line.expect(":")
        t = line.type()
        name = line.string() if line.peek(kind="str") else None
        if line.accept("{") and op in GRAPH_ATTRS:
            line.done()
            if nid in where:
                line.error(f"%{nid} is defined twice (first on line {where[nid]})")
            nested = _Nested(line, nid, op, operands, {key: _resolve(line, val, t) for key, val in attrs.items()},
                             t, name)
            nested.check = check
            continue
        if line.i and line.toks[line.i - 1] == ("punct", "{"):
            line.done()
            if op != "fused":
                line.error(f"only a fused kernel has a '{{' block, not {op}")
            if attrs:
                line.error("a fused kernel gives its body either as attrs or as a block, not both")
            if nid in where:
                line.error(f"%{nid} is defined twice (first on line {where[nid]})")
            block = _Block(line, nid, operands, t, name)
            continue
        line.done()
        attrs = {key: _resolve(line, val, t) for key, val in attrs.items()}
        for key, default in OPS[op].attr_defaults.items():
            attrs.setdefault(key, default)
        define(line, nid)
        g.nx.add_node(nid, op=op, attrs=attrs, type=t, name=name)
        for i, o in enumerate(operands):
            g.nx.add_edge(o, nid, arg=i)
    last = body[-1][0] if body else lines[0][0]
    if nested is not None:
        raise ValueError(f"line {last}: missing '}}' closing the nested graphs of %{nested.nid} "
                         f"(opened on line {nested.head.lineno})")
    if block is not None:
        raise ValueError(f"line {last}: missing '}}' closing the fused block of %{block.nid} "
                         f"(opened on line {block.head.lineno})")
    if not closed:
        raise ValueError(f"line {last}: missing closing '}}'")
    for nid in pending_inputs:
        if nid not in where:
            raise ValueError(f"line {lines[0][0]}: input %{nid} is neither declared with a type nor defined")
    g.outputs = list(outputs)
    g._next_id = max(where, default=-1) + 1
    if check:
        from .verify import verify

        try:
            verify(g)
        except ValueError as exc:
            m = re.search(r"%(\d+)", str(exc))
            at = where.get(int(m.group(1)), lines[0][0]) if m else lines[0][0]
            raise ValueError(f"line {at}: {exc}") from None
    return g
