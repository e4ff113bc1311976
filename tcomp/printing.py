"""Looking inside a model: Theano's ``debugprint``, ``pp`` and ``pydotprint``, for tcomp.

Every function here takes a compiled function (``tcomp.function``; its optimized graph by
default, ``stage='traced'`` for the graph as written), a symbolic variable or a list of
them (the graph that computes them; its free root variables become the inputs), or a
``tcomp.ir.Graph``.

* :func:`debugprint` — an indented tree, one line per node with a short stable id
  (``[id A]``); a subtree used twice is printed once and later only named by its id.
* :func:`pp` — a one-line math form: ``tanh((x @ W) + b)``; values used more than once
  are bound once (``... where t0 = ...``) so the text stays linear in the graph's size.
* :func:`pydotprint` — Graphviz dot, rendered to SVG/PNG/PDF when Graphviz's ``dot`` is
  installed, otherwise the ``.dot`` file and a message saying so.
* :func:`pprint` — Theano's name for the pretty printer (``theano.printing.pprint``).
* :class:`Print` — Theano's print op: an identity whose value the function prints each call.

Every walk is iterative (explicit stacks or topological order): a 100k-node chain prints.
"""
from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
import weakref

from tcomp.ir import Constant, Graph
from tcomp.ir.printer import elided_constants, format_elements, format_graph, format_location, format_type, format_value

#: constants with more elements than this print as a type and digest in dumps
MAX_CONSTANT_ELEMENTS = 100


def unknown_choice(what: str, value, choices) -> str:
    """``unknown WHAT 'x'; valid: a, b, c (did you mean 'b'?)`` — one line for an error."""
    choices = list(choices)
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {value!r}; valid: {', '.join(map(str, choices))}{hint}"


def graph_text(graph: Graph, *, full_constants: bool = False, locations: bool = False) -> str:
    """The dump text of a graph: fused kernels as blocks, large constants elided (then a
    first comment line says the text does not parse back)."""
    limit = None if full_constants else MAX_CONSTANT_ELEMENTS
    text = format_graph(graph, limit, readable=True, locations=locations)
    n = elided_constants(graph, limit)
    if n:
        text = (f"# {n} constant(s) over {MAX_CONSTANT_ELEMENTS} elements elided as blob<type, sha256>: this text "
                f"does not parse back (use --full-constants / dump(full_constants=True))\n" + text)
    return text


# -- what to print -------------------------------------------------------------------------------

def as_graph(obj, stage: str = "optimized") -> tuple[Graph, dict]:
    """(graph, labels) for a Function, a Variable or list of them, or a Graph; ``labels``
    names graph output positions (``update W`` for a function's updates)."""
    from .function import Function
    from .shared import SharedVariable
    from .tensor.variable import Variable
    from .trace import _postorder, build_graph

    if isinstance(obj, Graph):
        return obj, {}
    obj = getattr(obj, "dense_function", obj)  # a sparse / typed-list signature: its dense function
    if getattr(obj, "tcomp_composite", False) is True:  # a sparse matrix or typed list: its parts
        obj = list(obj.parts)
    if isinstance(obj, Function):
        if stage not in ("traced", "optimized"):
            raise ValueError(unknown_choice("graph stage", stage, ("traced", "optimized")))
        g = obj.traced if stage == "traced" else obj.optimized
        n_out = len(obj.outputs)
        labels = {n_out + k: f"update {var.name or f'#{k}'}" for k, (var, _) in enumerate(obj.updates)}
        base = n_out + len(obj.updates)
        labels.update({base + k: f"Print {op.message!r}" for k, (op, _) in enumerate(getattr(obj, "prints", ()))})
        return g, labels
    outs = [obj] if isinstance(obj, Variable) else list(obj) if isinstance(obj, (list, tuple)) else None
    if outs:
        outs = [p for v in outs for p in (v.parts if getattr(v, "tcomp_composite", False) is True else [v])]
    if not outs or not all(isinstance(v, Variable) for v in outs):
        raise TypeError(f"expected a compiled function, a symbolic variable (or a list of them) or a Graph, "
                        f"got {type(obj).__name__}")
    roots = [v for v in _postorder(outs, lambda v: v) if v.op == "input" and not isinstance(v, SharedVariable)]
    g, _, _ = build_graph(roots, outs)
    return g, {}


def _short_id(i: int) -> str:
    """A, B, ..., Z, BA, BB, ... (Theano's ids)."""
    s = ""
    while True:
        s = chr(ord("A") + i % 26) + s
        i //= 26
        if not i:
            return s


# -- fused kernels as expressions --------------------------------------------------------------

_INFIX = {"add": "+", "sub": "-", "mul": "*", "truediv": "/", "floordiv": "//", "mod": "%", "pow": "**",
          "dot": "@", "matmul": "@", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!=",
          "logical_and": "&", "logical_or": "|", "logical_xor": "^"}
_PREFIX = {"neg": "-", "logical_not": "~"}


def _attr_text(attrs: dict) -> str:
    return ", ".join(f"{k}={format_value(v, max_elements=8)}" for k, v in sorted(attrs.items()))


def _const_text(c: Constant) -> str:
    if c.value.ndim == 0:
        return format_elements(c.value)  # float32 in its shortest form: 0.1, not 0.10000000149011612
    if c.value.size <= 8:
        return format_value(c, c.type)[len("tensor("):-1]
    return f"<{format_type(c.type)} constant>"


class _Expr:
    """Expression strings for pp: ``compound`` ones get parentheses as operands."""

    def __init__(self):
        self.bindings: list[str] = []

    @staticmethod
    def wrap(e: tuple[str, bool]) -> str:
        return f"({e[0]})" if e[1] else e[0]

    def apply(self, op: str, args: list, attrs: dict) -> tuple[str, bool]:
        if op == "constant":
            return _const_text(attrs["value"]), False
        if op in _INFIX and len(args) == 2:
            return f"{self.wrap(args[0])} {_INFIX[op]} {self.wrap(args[1])}", True
        if op in _PREFIX and len(args) == 1:
            return f"{_PREFIX[op]}{self.wrap(args[0])}", True
        inner = [a[0] for a in args]
        extra = _attr_text(attrs)
        return f"{op}({', '.join(inner + ([extra] if extra else []))})", False

    def bind(self, e: tuple[str, bool], uses: int) -> tuple[str, bool]:
        """Name a non-trivial value used more than once: ``t3``, listed in ``where``."""
        if uses < 2 or not (e[1] or "(" in e[0]):
            return e
        name = f"t{len(self.bindings)}"
        self.bindings.append(f"{name} = {e[0]}")
        return name, False


def kernel_results(attrs: dict, operands: list, expr: _Expr | None = None) -> list:
    """Expressions of a fused kernel's results (primary first) over operand expressions."""
    expr = expr or _Expr()
    body = attrs["body"]
    uses = [0] * len(body)
    for _, _, refs in body:
        for r in refs:
            if r[0] == "%":
                uses[int(r[1:])] += 1
    for j in attrs.get("outputs", ()):
        uses[j] += 1
    vals: list = []
    for j, (op, sattrs, refs) in enumerate(body):
        args = [operands[int(r[1:])] if r[0] == "$" else vals[int(r[1:])] for r in refs]
        vals.append(expr.bind(expr.apply(op, args, dict(sattrs)), uses[j] + (j == len(body) - 1)))
    primary = vals[-1]
    if attrs.get("reduce") is not None:
        primary = expr.apply(attrs["reduce"], [primary], {"axis": attrs["axis"], "keepdims": attrs["keepdims"]})
    for op, a in attrs.get("epilogue", ()):
        primary = expr.apply(op, [primary], dict(a))
    return [primary] + [vals[j] for j in attrs.get("outputs", ())]


def kernel_summary(attrs: dict) -> str:
    """A fused kernel's math over its operands ``$0, $1, ...``: ``tanh($0 + $1)``."""
    try:
        n_in = 1 + max((int(r[1:]) for _, _, refs in attrs["body"] for r in refs if r[0] == "$"), default=-1)
        expr = _Expr()
        results = kernel_results(attrs, [(f"${i}", False) for i in range(n_in)], expr)
    except (KeyError, TypeError, ValueError, IndexError):
        return f"{len(attrs.get('body', ()))} steps"
    text = ", ".join(r[0] for r in results) if len(results) > 1 else results[0][0]
    if len(results) > 1:
        text = f"({text})"
    return text + (f" where {', '.join(expr.bindings)}" if expr.bindings else "")


def node_label(g: Graph, n: int) -> str:
    """``op{attrs}``, an input's name, a constant's value, or ``fused{math}``."""
    op, attrs = g.op(n), g.attrs(n)
    if op == "input":
        return g.name(n) or f"input %{n}"
    if op == "constant":
        return f"constant{{{_const_text(attrs['value'])}}}"
    if op == "fused":
        return f"fused{{{kernel_summary(attrs)}}}"
    a = _attr_text(attrs)
    return f"{op}{{{a}}}" if a else op


# -- debugprint ------------------------------------------------------------------------------

def debugprint(obj, print_type: bool = True, file=None, stage: str = "optimized", depth: int = -1,
               locations: bool = False) -> str:
    """Theano's ``debugprint``: the graph as an indented tree (operands below their user).

    Each node gets a short id in order of first appearance (``[id A]``); a node reached a
    second time is printed as its label and id only.  ``file``: None prints to stdout,
    ``'str'`` only returns the text, any other object with ``write`` gets it.
    """
    g, labels = as_graph(obj, stage)
    ids: dict[int, str] = {}
    lines = []
    for pos, out in enumerate(g.outputs):
        stack = [(out, 0)]
        while stack:
            n, d = stack.pop()
            prefix = "" if d == 0 else " " + "| " * (d - 1) + "|"
            seen = n in ids
            if not seen:
                ids[n] = _short_id(len(ids))
            line = f"{prefix}{node_label(g, n)} [id {ids[n]}]"
            if print_type:
                line += f" {format_type(g.type(n))}"
            if g.name(n) is not None and g.op(n) != "input":
                line += f" {g.name(n)!r}"
            if locations and g.nx.nodes[n].get("loc") is not None:
                line += f"  # {format_location(g.nx.nodes[n]['loc'])}"
            if d == 0 and pos in labels:
                line += f"  ({labels[pos]})"
            lines.append(line)
            if not seen and (depth < 0 or d < depth):
                stack.extend((o, d + 1) for o in reversed(g.operands(n)))
    text = "\n".join(lines)
    if file is None:
        print(text)
    elif file != "str":
        file.write(text + "\n")
    return text


# -- pp ---------------------------------------------------------------------------------------

def pp(obj, stage: str = "optimized") -> str:
    """A one-line math form per output: ``tanh((x @ W) + b)``.

    Fused kernels are written out as the math they compute; a non-trivial value used more
    than once is bound to ``t0, t1, ...`` and listed after ``where``.
    """
    g, _ = as_graph(obj, stage)
    live = g.live_nodes()
    uses = {n: 0 for n in live}
    for n in live:
        for o in g.operands(n):
            uses[o] += 1
    for o in g.outputs:
        uses[o] += 1
    expr = _Expr()
    val: dict = {}
    for n in g.topo_order():
        if n not in live:
            continue
        op, attrs = g.op(n), g.attrs(n)
        args = [val[o] for o in g.operands(n)]
        if op == "input":
            val[n] = (g.name(n) or f"%{n}", False)
            continue
        if op == "get_output":
            val[n] = expr.bind(args[0][attrs["index"]], uses[n])
            continue
        if op == "fused":
            results = kernel_results(attrs, args, expr)
            if attrs.get("outputs"):
                val[n] = results
                continue
            val[n] = expr.bind(results[0], uses[n])
            continue
        val[n] = expr.bind(expr.apply(op, args, attrs), uses[n])
    outs = []
    for o in g.outputs:
        v = val[o]
        if isinstance(v, list):
            v = (", ".join(r[0] for r in v), False)
        outs.append(v[0])
    text = ", ".join(outs)
    if expr.bindings:
        text += "  where " + ", ".join(expr.bindings)
    return text


# -- pydotprint -------------------------------------------------------------------------------

def _dot_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot_text(obj, stage: str = "optimized") -> str:
    """The graph in Graphviz's dot language: ops as boxes, inputs and constants as ellipses,
    fused kernels as orange boxes showing their math, edges labelled with operand positions."""
    g, labels = as_graph(obj, stage)
    lines = ["digraph tcomp {", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=11];',
             '  edge [fontname="Helvetica", fontsize=9];']
    style = {"input": 'shape=ellipse, style=filled, fillcolor="#d6e6ff"',
             "constant": 'shape=ellipse, style=filled, fillcolor="#eeeeee"',
             "fused": 'shape=box, style="rounded,filled", fillcolor="#ffe2b0"'}
    for n in g.topo_order():
        label = node_label(g, n)
        if len(label) > 60:
            label = label[:57] + "..."
        name = g.name(n)
        text = f"{label}\n{format_type(g.type(n))}" + (f"\n{name!r}" if name and g.op(n) != "input" else "")
        lines.append(f"  n{n} [label={_dot_quote(text)}, "
                     f"{style.get(g.op(n), 'shape=box, style=filled, fillcolor=white')}];")
    for n in g.topo_order():
        ops = g.operands(n)
        for i, o in enumerate(ops):
            lines.append(f"  n{o} -> n{n}" + (f" [label={_dot_quote(str(i))}];" if len(ops) > 1 else ";"))
    for pos, o in enumerate(g.outputs):
        label = labels.get(pos, f"output {pos}")
        lines.append(f"  out{pos} [label={_dot_quote(label)}, shape=plaintext];")
        lines.append(f"  n{o} -> out{pos};")
    lines.append("}")
    return "\n".join(lines) + "\n"


#: pydotprint keywords of Theano's that change only its picture's styling (accepted, ignored:
#: tcomp's picture always names variables simply and colours inputs, constants, kernels)
PYDOT_STYLE_OPTIONS = ("var_with_name_simple", "compact", "format", "with_ids", "high_contrast", "cond_highlight",
                       "colorCodes", "max_label_size", "scan_graphs", "print_output_file", "return_image",
                       "assert_nb_all_strings")


def pydotprint(obj, outfile: str = "tcomp_graph.svg", stage: str = "optimized", file=None, **style) -> str:
    """Theano's ``pydotprint``: write the graph as Graphviz dot and render it.

    The format follows ``outfile``'s suffix (``.svg``, ``.png``, ``.pdf``; ``.dot`` only
    writes the dot text).  Without Graphviz's ``dot`` program the ``.dot`` file is written
    next to ``outfile`` and a message says so.  Returns the path written; the message goes
    to ``file`` (default stderr).  Theano's styling keywords (``var_with_name_simple=True``
    as in its printing tutorial, ``compact``, ``with_ids``, ... see ``PYDOT_STYLE_OPTIONS``)
    are accepted and change nothing; any other keyword is a TypeError.
    """
    unknown = sorted(set(style) - set(PYDOT_STYLE_OPTIONS))
    if unknown:
        raise TypeError(f"pydotprint() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                        f"accepted Theano styling options: {', '.join(PYDOT_STYLE_OPTIONS)}")
    file = sys.stderr if file is None else file
    text = dot_text(obj, stage)
    root, ext = os.path.splitext(outfile)
    fmt = ext.lstrip(".").lower() or "svg"
    dot_path = outfile if fmt == "dot" else root + ".dot"
    with open(dot_path, "w") as f:
        f.write(text)
    if fmt == "dot":
        return dot_path
    exe = shutil.which("dot")
    if exe is None:
        print(f"pydotprint: Graphviz's 'dot' program is not installed, so {outfile} was not rendered; wrote the "
              f"graph as {dot_path} (render it with: dot -T{fmt} {dot_path} -o {outfile})", file=file)
        return dot_path
    out = subprocess.run([exe, f"-T{fmt}", dot_path, "-o", outfile], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"pydotprint: dot -T{fmt} failed: {out.stderr.strip()}")
    print(f"pydotprint: wrote {outfile} (and {dot_path})", file=file)
    return outfile


#: Theano's ``theano.printing.pprint(var)``: the same one-line math form as :func:`pp`
pprint = pp


# -- Print: print a value when the function runs -------------------------------------------------

def _print_fn(op: "Print", value) -> None:
    """Theano's default: ``message attr = value`` for each attr (called when it is a method)."""
    for attr in op.attrs:
        got = getattr(value, attr)
        print(op.message, attr, "=", got() if callable(got) else got)


class Print:
    """Theano's ``Print`` op: ``Print('msg')(x)`` is ``x``, and each call of a compiled
    function that computes it prints ``msg __str__ = <value>`` (``attrs=('shape',)`` prints
    the shape instead; ``global_fn(op, value)`` replaces the printing).

    tcomp calls no Python from native code, so the printing is the function's: the printed
    variable is an identity node in the graph (a same-dtype cast the optimizer removes) and
    the function computes its value as an extra hidden output, then prints it after the call,
    in an order where a printed value that depends on another prints after it.  A copied or
    unpickled function (rebuilt from its graph) no longer prints."""

    def __init__(self, message: str = "", attrs=("__str__",), global_fn=_print_fn):
        if isinstance(attrs, str):
            attrs = (attrs,)
        self.message = str(message)
        self.attrs = tuple(attrs)
        self.global_fn = global_fn

    def __call__(self, x):
        from .tensor.variable import Variable, as_variable

        x = as_variable(x, "Print input")
        out = Variable(x.type, "cast", [x], {"dtype": x.dtype})
        _PRINTED[out] = self
        return out

    def __repr__(self):
        return f"Print{{message={self.message!r}, attrs={self.attrs!r}}}"


#: printed variable -> its Print op (weak: a graph thrown away takes its prints along)
_PRINTED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def printed_in(variables) -> list:
    """``(Print op, variable)`` for every printed variable among ``variables`` (given operands
    first, as ``trace._postorder`` lists them)."""
    return [(_PRINTED[v], v) for v in variables if v in _PRINTED]


__all__ = ["debugprint", "pp", "pprint", "Print", "pydotprint", "dot_text", "graph_text", "as_graph",
           "kernel_summary", "node_label", "unknown_choice", "MAX_CONSTANT_ELEMENTS"]
