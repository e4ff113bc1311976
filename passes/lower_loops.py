"""Lowering ``scan`` and ``ifelse`` to kernels whose bodies are nested kernel programs.

A ``scan`` node becomes one ``loop`` kernel, an ``ifelse`` node one ``branch`` kernel.  Each
body graph (already optimized by the pipeline, ``passes/scan_opt.py``) is lowered by the same
:func:`lower_kernels` into a kernel program of its own, kept in the kernel's attrs
(``("program", KernelProgram)``; ``("then", ...)``/``("else", ...)``), so the text form, the
JSON round trip and the program hash cover it.  A backend runs the nested program's ``plan``
and ``run`` from inside the outer ``run``: per step for a loop (once before the loop when the
body's shapes depend on dims only), for the taken side only for a branch.

The loop kernel (``Kernel.args`` in operand order: the trip count as a register, then the
sequences, initial buffers and non-sequences as values, all with C-contiguous rows):

* ``writes``: the scan's results in order (``"all"``: ``(n, *row)``; ``"last"``: ``row``),
  then one ring buffer of ``L + 1`` rows per ``"last"`` recurrent output (``L`` its deepest
  tap), then, with ``until``, a bool scalar for the condition and an ``int64`` scalar that
  receives the number of steps that ran;
* step ``t`` reads row ``t`` of every sequence (``seq_stride``: the element stride of its
  leading axis; a reversed sequence has a negative one), for recurrent output ``i`` tap
  ``tau`` the row ``t + tau`` of its ``"all"`` result, or of its initial buffer while
  ``t + tau < 0`` (row ``L + t + tau``), and writes its new value straight into row ``t`` of
  the result: the output buffer is the state, nothing is copied per step; a ``"last"``
  output cycles through its ring (row ``(t + L) mod (L + 1)``), and the newest row is copied
  to the result after the loop;
* params: ``seq_stride``, ``body_dims`` (every body input's dims, input after input: what
  the nested ``plan`` reads) and ``out_dims`` (every body result's dims as the outer program
  sized them: checked against the nested plan's output dims before each step writes).

The result dims are computed in the *outer* shape program: recurrent rows from the initial
buffers, other rows by running the body's shape rules in the outer builder with the body's
input dims bound to outer registers (:class:`BodyRules`; its checks are dropped, the nested
plan makes them per step).  A body whose result shape depends on a value computed inside
the loop is refused.  ``until`` outputs are sized for ``n_steps``; the loop writes the
number of steps that ran into its count value and the caller trims (a graph that reads an
``until`` result inside itself runs in two stages, ``tcomp/backend/cpu/host_loops.py``).

The branch kernel: ``args`` are the condition (a value read at run time, or a register when
the branches' result shapes differ and the shape program can compute the condition), then
the captured values; ``writes`` its results; params ``body_dims`` and ``out_dims`` as above.
"""
from __future__ import annotations

from tcomp.ir import Graph
from tcomp.ir.ops.control import scan_layout
from tcomp.ir.types import TupleType

from .kernel_program import Arg, HostValueUnavailable
from .shape_program import TUP, I
from .shape_rules import ShapeRules

CONTROL_OPS = ("scan", "ifelse")
#: placeholder input index base for values the outer shape program cannot know (loop-varying)
_UNKNOWN = 1 << 20


class UntilCount(TypeError):
    """A graph reads the result of a ``scan`` with ``until`` inside itself: the number of
    steps is known only after the loop ran, so the graph is run in two stages (``node``:
    the scan node whose results the first stage returns)."""

    def __init__(self, message: str, node: int):
        super().__init__(message)
        self.node = node


class _NoChecks:
    """The outer builder, but checks are dropped and input loads are unknown values (the
    body's shape rules run in the outer plan only to size the results)."""

    def __init__(self, b, unknown):
        self._b, self._unknown = b, unknown

    def __getattr__(self, name):
        return getattr(self._b, name)

    def check(self, cond, error, parts):
        return None

    def load(self, k, index, dtype):
        return self._unknown(("load", k, index, dtype))


class BodyRules(ShapeRules):
    """A body graph's shape rules evaluated in the outer shape program.  ``in_dims``: each
    body input's dims (outer registers); ``in_scal``: each input's outer register when it is
    a rank-0 value the outer program knows, else None (a loop-varying value)."""

    def __init__(self, g: Graph, outer_b, in_dims, in_scal):
        order = g.topo_order()
        from .lower_kernels import _host_values

        super().__init__(g, order, _host_values(g, order), [g.name(n) or f"%{n}" for n in g.inputs])
        self._outer = outer_b
        self.unknown: set = set()
        self.b = _NoChecks(outer_b, self._placeholder)
        self._in_dims, self._in_scal = in_dims, in_scal

    def _placeholder(self, key):
        r = self._outer.dim(_UNKNOWN + len(self.unknown), 0)
        self.unknown.add(r)
        return r

    def inputs(self):
        for n, dims, s in zip(self.g.inputs, self._in_dims, self._in_scal):
            self.dims[n] = tuple(dims)
            if self.g.type(n).ndim == 0:
                self.scal[n] = s if s is not None else self._placeholder(("input", n))

    def value(self, n):
        if self.scal.get(n) is None or isinstance(self.scal[n], tuple):
            self.scal[n] = self._placeholder(("value", n))
        return self.scal[n]

    def depends_on_unknown(self, refs) -> bool:
        insts, seen, stack = self._outer.insts, set(), [r for r in refs if isinstance(r, str)]
        while stack:
            r = stack.pop()
            if r in self.unknown:
                return True
            if r in seen:
                continue
            seen.add(r)
            stack.extend(a for a in insts[int(r[1:])].args if isinstance(a, str))
        return False

    def output_dims(self) -> list:
        return [self.dims[o] for o in self.g.outputs]


def _outer_scal(rules, n):
    s = rules.scal.get(n)
    return None if s is None or isinstance(s, tuple) else s


def _body_rules(rules, body, in_dims, operands) -> BodyRules:
    in_scal = [_outer_scal(rules, o) if o is not None else None for o in operands]
    return BodyRules(body.graph, rules.b, in_dims, in_scal).run()


def _row(dims):
    return tuple(dims[1:])


def scan_body_input_dims(attrs, shapes):
    """(body input dims, the outer operand each body input passes through or None)."""
    n_seqs, n_rec, _, _, taps = scan_layout(attrs, len(shapes))
    dims, src = [], []
    for k in range(n_seqs):
        dims.append(_row(shapes[1 + k]))
        src.append(None)
    for i, tp in enumerate(taps):
        dims.extend([_row(shapes[1 + n_seqs + i])] * len(tp))
        src.extend([None] * len(tp))
    for j in range(1 + n_seqs + n_rec, len(shapes)):
        dims.append(tuple(shapes[j]))
        src.append(j)
    return dims, src


def scan_rule(rules, n, attrs, gtypes, shapes):
    """The result dims of a scan, and the reference's call-time errors as checks."""
    b, g = rules.b, rules.g
    ops = g.operands(n)
    n_seqs, n_rec, n_nitsot, _, taps = scan_layout(attrs, len(shapes))
    steps = rules.value(ops[0])
    b.check(b.le(0, steps), "ValueError", ["scan: n_steps is ", I(steps), "; it must be >= 0"])
    for k in range(n_seqs):
        rows = shapes[1 + k][0]
        b.check(b.le(steps, rows), "ValueError",
                [f"scan: sequence {k} has ", I(rows), " rows but the loop runs ", I(steps), " steps"])
    store = attrs["store"] or ("all",) * (n_rec + n_nitsot)
    in_dims, src = scan_body_input_dims(attrs, shapes)
    body = attrs["body"]
    br = _body_rules(rules, body, in_dims, [None if s is None else ops[s] for s in src])
    outs = br.output_dims()
    rows = []
    for i in range(n_rec):
        state = _row(shapes[1 + n_seqs + i])
        if not br.depends_on_unknown(outs[i]) and len(outs[i]) == len(state):
            same = b.all_of([b.eq(x, y) for x, y in zip(outs[i], state)])
            b.check(b.emit("or", (b.eq(steps, 0), same)), "ValueError",
                    [f"scan step 0: recurrent output {i} has shape ", TUP(outs[i]), " but its state has shape ",
                     TUP(state)])
        rows.append(state)
    for k in range(n_nitsot):
        d = outs[n_rec + k]
        if br.depends_on_unknown(d):
            raise TypeError(f"scan {rules.describe(n)}: the shape of output {n_rec + k} depends on values computed "
                            f"inside the loop; the cpu backend sizes loop outputs before the loop runs")
        t = body.output_types[n_rec + k]
        if store[n_rec + k] == "last":
            b.check(b.ne(steps, 0), "ValueError",
                    [f"scan: the last value of output {n_rec + k} is asked for, but the loop ran zero steps"])
        elif not t.is_static:
            b.check(b.ne(steps, 0), "ValueError",
                    [f"scan: output {n_rec + k} ran zero steps and its shape {t} is not static"])
        rows.append(tuple(b.emit("max", (0, x)) for x in d))
    res = [r if mode == "last" else (steps,) + tuple(r) for r, mode in zip(rows, store)]
    return tuple(res) if isinstance(g.type(n), TupleType) else res[0]


#: how many body lowerings are running (a stage split cannot cut inside a body)
_DEPTH = [0]


def branch_condition(rules, n):
    """The condition's register, for a branch whose result shapes depend on it; None inside
    a loop or branch body when the shape program cannot compute it."""
    g = rules.g
    c = g.operands(n)[0]
    s = _outer_scal(rules, c)
    if s is not None:
        return s
    if g.op(c) == "input" and not isinstance(rules, BodyRules):
        s = rules.b.load(g.inputs.index(c), 0, g.type(c).dtype)
        rules.scal[c] = s
        return s
    if isinstance(rules, BodyRules) or _DEPTH[0]:
        return None
    raise HostValueUnavailable(f"kernel program: {rules.describe(n)}: the branches' results have different shapes, "
                               f"so the condition {rules.describe(c)} decides a shape", c)


def ifelse_rule(rules, n, attrs, gtypes, shapes):
    """Where the branches' result dims differ (as registers), the condition selects them when
    the shape program can compute it (a scalar input, shape arithmetic; at the top level any
    kernel-computed condition by a stage split); inside a loop body it cannot, and the two
    branches must then give the same shape (a check, made when the body runs)."""
    b, g = rules.b, rules.g
    ops = g.operands(n)
    caps = [tuple(s) for s in shapes[1:]]
    a = _body_rules(rules, attrs["then_body"], caps, ops[1:]).output_dims()
    e = _body_rules(rules, attrs["else_body"], caps, ops[1:]).output_dims()
    res = []
    for k, (x, y) in enumerate(zip(a, e)):
        if tuple(x) == tuple(y):
            res.append(tuple(x))
            continue
        c = branch_condition(rules, n)
        if c is None:
            b.check(b.all_of([b.eq(p, q) for p, q in zip(x, y)]), "ValueError",
                    [f"{rules.describe(n)}: result {k}: the then branch gives shape ", TUP(x), ", the else branch ",
                     TUP(y), "; inside a loop body the cpu backend needs the branches' shapes to agree"])
            res.append(tuple(x))
            continue
        c = b.ne(c, 0)
        res.append(tuple(b.select(c, p, q) for p, q in zip(x, y)))
    return tuple(res) if isinstance(g.type(n), TupleType) else res[0]


SHAPE_RULES = {"scan": scan_rule, "ifelse": ifelse_rule}


# -- kernels -----------------------------------------------------------------------------------

def lower_body(graph: Graph):
    """The ``_Lowering`` of a body graph (fused first if it never went through fusion)."""
    from .lower_kernels import _Lowering

    if not any(graph.op(n) == "fused" for n in graph.nodes()):
        from .fusion import fuse_elementwise

        graph = fuse_elementwise(graph.copy())
    _DEPTH[0] += 1
    try:
        low = _Lowering(graph, None)
        return low, low.finish()
    except HostValueUnavailable as exc:  # a stage split cannot cut inside a body
        raise TypeError(f"inside a loop or branch body: {exc}; a result whose size is data (x[mask], "
                        f"T.nonzero, a random draw sized by a tensor) runs as a chain of programs, which a "
                        f"loop or branch body cannot be: compute it outside the loop, or use "
                        f"backend='reference'") from None
    finally:
        _DEPTH[0] -= 1


def _results(low, n) -> list:
    """One value per result of control node ``n`` (its get_output users share it)."""
    g = low.g
    t = g.type(n)
    dims = low.rules.dims[n]
    if not isinstance(t, TupleType):
        v = low.new_value(t.dtype, dims, n)
        low.vid[n] = v
        return [v]
    by_index: dict = {}
    for u in g.users(n):
        if g.op(u) == "get_output":
            by_index.setdefault(g.attrs(u)["index"], []).append(u)
    out = []
    for k, e in enumerate(t.elements):
        users = by_index.get(k, [])
        v = low.new_value(e.dtype, dims[k], users[0] if users else None)
        for u in users:
            low.vid[u] = v
        out.append(v)
    return out


def _contiguous_arg(low, v, rows_only=False):
    """``v``, or a C-contiguous copy of it (a nested program's inputs are C-contiguous; a
    sequence needs only C-contiguous rows: any stride along its leading axis)."""
    s = low.values[v][3]
    if s is None or s.kind != "view" or s.contiguous:
        return v
    dims = low.values[v][1]
    if rows_only:
        want = low.b.strides(dims[1:])
        if all(d == 1 or st == w for d, st, w in zip(dims[1:], s.strides[1:], want)):
            return v
    w = low.new_value(low.values[v][0], dims)
    low.add_kernel("copy", "copy", (), (Arg(value=v),), (w,), dims)
    return w


def _flat(dimss) -> tuple:
    return tuple(d for dims in dimss for d in dims)


def lower_control(low, n) -> None:
    if low.g.op(n) == "scan":
        _lower_scan(low, n)
    else:
        _lower_ifelse(low, n)


def _lower_scan(low, n) -> None:
    g, rules = low.g, low.rules
    attrs = dict(g.attrs(n))
    ops = g.operands(n)
    n_seqs, n_rec, n_nitsot, _, taps = scan_layout(attrs, len(ops))
    store = attrs["store"] or ("all",) * (n_rec + n_nitsot)
    if attrs["until"]:
        if _DEPTH[0]:  # its count would have to trim a body result per step
            raise TypeError(f"kernel program: {rules.describe(n)}: a scan that stops early (until) inside a loop or "
                            f"branch body is not lowered by the cpu backend; use backend='reference'")
        _check_until_uses(low, n)
    _, nested = lower_body(attrs["body"].graph)
    args = [Arg(scalar=rules.value(ops[0]), dtype=g.type(ops[0]).dtype)]
    strides = []
    for k, o in enumerate(ops[1:]):
        v = _contiguous_arg(low, low.vid[o], rows_only=k < n_seqs)
        if k < n_seqs:
            s = low.values[v][3]
            strides.append(s.strides[0] if s is not None and s.kind == "view" and not s.contiguous
                           else low.strides_of(v)[0])
        args.append(Arg(value=v))
    writes = _results(low, n)
    dims = [rules.dims[o] for o in ops]
    in_dims, _ = scan_body_input_dims(attrs, dims)
    out_dims = [tuple(low.values[w][1]) if store[k] == "last" else tuple(low.values[w][1][1:])
                for k, w in enumerate(writes)]
    for i in range(n_rec):
        if store[i] == "last":
            L = -taps[i][0]
            writes.append(low.new_value(low.values[writes[i]][0], (L + 1,) + out_dims[i]))
    if attrs["until"]:
        writes.append(low.new_value("bool", ()))
        writes.append(low.new_value("int64", ()))
        low.extra_outputs.append(writes[-1])
    kattrs = tuple(sorted((k, v) for k, v in attrs.items() if k != "body")) + (("program", nested),)
    params = (("seq_stride", tuple(strides)), ("body_dims", _flat(in_dims)), ("out_dims", _flat(out_dims)))
    low.add_kernel("loop", "scan", tuple(sorted(kattrs)), tuple(args), tuple(writes), (), params, n)


def _check_until_uses(low, n) -> None:
    g = low.g
    results = [n] if not isinstance(g.type(n), TupleType) else \
        [u for u in g.users(n) if g.op(u) == "get_output"]
    if any(g.users(r) or r not in g.outputs for r in results):
        raise UntilCount(f"kernel program: {low.rules.describe(n)} stops early (until) and its results are read "
                         f"inside the graph: the count decides their shapes, so the loop runs as a separate stage", n)


def _lower_ifelse(low, n) -> None:
    g, rules = low.g, low.rules
    attrs = g.attrs(n)
    ops = g.operands(n)
    _, then_p = lower_body(attrs["then_body"].graph)
    _, else_p = lower_body(attrs["else_body"].graph)
    c = ops[0]
    s = _outer_scal(rules, c)
    if s is not None:
        args = [Arg(scalar=s, dtype=g.type(c).dtype)]
    else:
        args = [Arg(value=low.vid[c])]
    caps = [_contiguous_arg(low, low.vid[o]) for o in ops[1:]]
    args += [Arg(value=v) for v in caps]
    writes = _results(low, n)
    params = (("body_dims", _flat(rules.dims[o] for o in ops[1:])),
              ("out_dims", _flat(low.values[w][1] for w in writes)))
    low.add_kernel("branch", "ifelse", (("else", else_p), ("then", then_p)), tuple(args), tuple(writes), (),
                   params, n)


__all__ = ["CONTROL_OPS", "SHAPE_RULES", "UntilCount", "BodyRules", "lower_body", "lower_control"]
