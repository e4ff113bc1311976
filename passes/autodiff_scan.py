"""VJP rules of the control-flow ops: ``scan`` (backpropagation through time) and ``ifelse``.

The VJP of a loop is another loop running backwards over the forward steps (Theano's
design).  Its body is built from the forward body: the forward step is inlined, then
``tcomp.passes.autodiff.grad`` differentiates it with the step's output cotangents as
known gradients.  Values its derivative needs are recomputed per step from the stored
states (instead of storing every intermediate), except the step's own results, which the
forward stored: where the derivative reads one (``tanh``'s VJP reads ``tanh``'s result),
it reads the stored row and the recomputation is dropped (:func:`stored_results`).  What
the backward loop carries:

* per float recurrent output with taps ``T`` (``L = -min(T)``): a window ``Q`` of shape
  ``(L, *state)``, ``Q[r]`` = the cotangent collected so far for the state value ``r``
  steps before the current one; at forward step ``t`` the total cotangent of its new value
  is ``dY[t] + Q[0]``, and the step's tap cotangents shift into the window;
* per float non-sequence: the sum of its per-step cotangents, except the terms that are
  products of per-step values (``x_t^T d_t``): those are summed after the loop by one
  product over the stacked rows, and the loop stacks the value they need
  (``autodiff_scan_pushout.py``).

The forward values a backward step reads (each tap's state, each sequence row, each
output cotangent row, each stored result) are sequences of the backward loop: rows of
``concatenate(init, outputs)`` and of the operands, reversed.  ``truncate_gradient = k`` runs only the last
``k`` steps backwards (Theano's truncated BPTT): rows before them get zero cotangents,
and so do the initial states unless the loop ran at most ``k`` steps.

``ifelse``'s VJP is an ``ifelse`` on the same condition whose branches are the VJPs of
the branches (a branch's cotangent for a captured value it does not read is zero).
"""
from __future__ import annotations

from tcomp.ir import Graph, TensorType
from tcomp.ir import dtypes as dt
from tcomp.ir.ops.control import Body, scan_layout

from .autodiff import cast_to, const, grad, match_type, op, register_vjp, zeros_like
from .autodiff_scan_pushout import PushOut

I64 = "int64"


def inline(dst: Graph, src: Graph, inputs) -> list:
    """Copy ``src``'s nodes into ``dst`` with ``src``'s inputs standing for ``inputs``; its outputs."""
    m = dict(zip(src.inputs, inputs))
    for n in src.topo_order():
        if n in m:
            continue
        o = src.op(n)
        if o == "input":
            raise ValueError(f"inline: input %{n} of the nested graph is not listed in its inputs")
        if o == "constant":
            m[n] = dst.add_constant(src.attrs(n)["value"], name=src.name(n))
        else:
            m[n] = dst.add_node(o, [m[p] for p in src.operands(n)], src.attrs(n), name=src.name(n))
    return [m[o] for o in src.outputs]


def _row_type(t: TensorType) -> TensorType:
    return TensorType(t.dtype, t.shape[1:])


def _is_float(t) -> bool:
    return isinstance(t, TensorType) and dt.is_float(t.dtype)


def _slice_rows(g, v, start, stop):
    return g.add_node("subtensor", [v, start, stop], {"index": (("s", "$1", "$2", None),)})


def _reverse(g, v):
    return g.add_node("subtensor", [v], {"index": (("s", None, None, -1),)})


def _zeros_with_lead(g, ref, lead: int):
    """Zeros of ``ref``'s type with a leading axis of static size ``lead`` prepended."""
    t = g.type(ref)
    attr = (lead,) + tuple(d if isinstance(d, int) else None for d in t.shape)
    dims = [op(g, "shape", ref, axis=i) for i, d in enumerate(t.shape) if not isinstance(d, int)]
    return g.add_node("alloc", [const(g, 0, t.dtype)] + dims, {"shape": attr})


def _counts_rows(g, n, v) -> bool:
    """Whether trip count ``n`` is ``v``'s number of rows (``shape(v, 0)``)."""
    return g.op(n) == "shape" and g.operands(n) == [v] and g.attrs(n)["axis"] == 0


def _results(g, node, count):
    if count == 1:
        return [node]
    return [g.add_node("get_output", [node], {"index": k}) for k in range(count)]


@register_vjp("scan")
def _scan_vjp(ctx):
    g, node, operands = ctx.graph, ctx.node, ctx.operands
    attrs = ctx.attrs
    fwd = attrs["body"].graph
    n_seqs, n_rec, n_nitsot, n_nonseq, taps = scan_layout(attrs, len(operands))
    n_out = n_rec + n_nitsot
    store = attrs["store"] or ("all",) * n_out
    cts = list(ctx.cotangent) if isinstance(ctx.cotangent, list) else [ctx.cotangent]
    seqs = operands[1:1 + n_seqs]
    inits = operands[1 + n_seqs:1 + n_seqs + n_rec]
    nonseqs = operands[1 + n_seqs + n_rec:]
    last = {k for k in range(n_out) if store[k] == "last"}
    if last:
        # a result kept as its last value only (a backward loop's accumulators, an optimized
        # graph): the backward steps need every step's states, so the loop is run again
        # storing them; a last state's cotangent seeds the window (Q[0] is the newest value's),
        # a last non-fed-back result's goes to its last row
        outs = _results(g, g.add_node("scan", operands, dict(attrs, store=())), n_out)
        for k in sorted(last):
            if k >= n_rec and cts[k] is not None:
                cts[k] = g.add_node("set_subtensor", [zeros_like(g, outs[k]), cts[k]], {"index": (("i", -1),)})
    else:
        outs = _results(g, node, n_out)
    body_out_types = attrs["body"].output_types

    n_done = op(g, "shape", outs[0], axis=0)
    trunc = attrs["truncate_gradient"]
    m = n_done if trunc == -1 else op(g, "minimum", n_done, const(g, trunc, I64))
    lo = const(g, 0, I64) if trunc == -1 else op(g, "sub", n_done, m)  # the first step backpropagated

    def rows_forward(v, offset=0, whole=False):
        """Rows offset+lo .. offset+n_done-1 of v, in step order (``whole``: v has n_done
        rows; then with every step backpropagated, v itself, not a view of all of it)."""
        if not offset and trunc == -1 and (whole or _counts_rows(g, operands[0], v) and not attrs["until"]):
            return v
        a = lo if not offset else op(g, "add", lo, const(g, offset, I64))
        b = n_done if not offset else op(g, "add", n_done, const(g, offset, I64))
        return _slice_rows(g, v, a, b)

    float_rec = [i for i in range(n_rec) if _is_float(g.type(inits[i]))]
    float_nonseq = [j for j in range(n_nonseq) if _is_float(g.type(nonseqs[j]))]
    ct_rec = [i for i in float_rec if cts[i] is not None]
    ct_nitsot = [k for k in range(n_nitsot) if cts[n_rec + k] is not None and _is_float(body_out_types[n_rec + k])]
    if not ct_rec and not ct_nitsot:
        return [None] * len(operands)

    # -- outer sequences of the backward loop, and the backward body's inputs (same order) --
    bg = Graph()
    outer_seqs = []
    seq_rows = {}  # body input -> the outer rows it steps through, in forward step order

    seq_ins = []

    def seq_input(forward_rows, type_=None):
        outer_seqs.append(_reverse(g, forward_rows))
        v = bg.add_input(type_ or _row_type(g.type(forward_rows)))
        seq_rows[v] = forward_rows
        seq_ins.append(v)
        return v

    b_seq = [seq_input(rows_forward(s)) for s in seqs]
    b_tap = []
    for i in range(n_rec):
        L = -taps[i][0]
        full = g.add_node("concatenate", [inits[i], outs[i]], {"axis": 0})
        b_tap.append({t: seq_input(rows_forward(full, L + t)) for t in taps[i]})
    b_cty = {i: seq_input(rows_forward(cts[i], whole=True)) for i in ct_rec if i not in last}
    b_ctz = {k: seq_input(rows_forward(cts[n_rec + k], whole=True)) for k in ct_nitsot}
    outer_inits = [_zeros_with_lead(g, inits[i], 1) for i in float_rec]
    for pos, i in enumerate(float_rec):
        if i in last and cts[i] is not None:  # the newest state's cotangent: window row 0
            outer_inits[pos] = g.add_node("set_subtensor", [outer_inits[pos], cts[i]],
                                          {"index": (("i", 0), ("i", 0))})
    outer_inits += [_zeros_with_lead(g, nonseqs[j], 1) for j in float_nonseq]
    b_state = [bg.add_input(_row_type(g.type(z))) for z in outer_inits]
    b_q = dict(zip(float_rec, b_state[:len(float_rec)]))
    b_acc = dict(zip(float_nonseq, b_state[len(float_rec):]))
    b_nonseq = [bg.add_input(g.type(p)) for p in nonseqs]

    # -- the backward step: the forward step inlined, differentiated --
    f_inputs = b_seq + [b_tap[i][t] for i in range(n_rec) for t in taps[i]] + b_nonseq
    fo = inline(bg, fwd, f_inputs)
    known: dict = {}

    def seed(node_, c):
        c = match_type(bg, cast_to(bg, c, bg.type(node_).dtype), node_)
        known[node_] = c if node_ not in known else bg.add_node("add", (known[node_], c))

    q0 = {}
    for i in float_rec:
        q0[i] = bg.add_node("subtensor", [b_q[i]], {"index": (("i", 0),)})
        total = q0[i] if i not in b_cty else op(bg, "add", q0[i], b_cty[i])
        seed(fo[i], total)
    for k in ct_nitsot:
        seed(fo[n_rec + k], b_ctz[k])
    wrt = ([b_seq[k] for k in range(n_seqs) if _is_float(bg.type(b_seq[k]))]
           + [b_tap[i][t] for i in float_rec for t in taps[i]]
           + [b_nonseq[j] for j in float_nonseq])
    grads = dict(zip(wrt, grad(bg, None, wrt, disconnected_inputs="ignore", known_grads=known))) if wrt else {}
    stored_results(g, bg, fo, outs, seq_input, grads, rows_forward)

    new_states = []
    for i in float_rec:
        L = -taps[i][0]
        rows = []
        for r in range(L):
            parts = []
            if r + 1 < L:
                parts.append(bg.add_node("subtensor", [b_q[i]], {"index": (("i", r + 1),)}))
            if -(r + 1) in b_tap[i]:
                parts.append(grads[b_tap[i][-(r + 1)]])
            v = parts[0] if parts else zeros_like(bg, q0[i])
            for p in parts[1:]:
                v = op(bg, "add", v, p)
            rows.append(match_type(bg, v, q0[i]))
        new_states.append(op(bg, "stack", *rows, axis=0))
    q_inits = outer_inits[:len(float_rec)]
    # the non-sequences' cotangents: products of per-step values summed after the loop
    # (autodiff_scan_pushout), the other terms summed in the loop
    exclude = set(b_nonseq) | set(b_acc.values())
    plan = PushOut(g, bg, seq_rows, lambda v: v not in exclude and bg.op(v) != "constant")
    acc_js = []
    for j in float_nonseq:
        rest = plan.split(j, grads[b_nonseq[j]], nonseqs[j])
        if rest is not None:
            acc_js.append(j)
            new_states.append(op(bg, "add", b_acc[j], rest))
    acc_inits = [outer_inits[len(float_rec) + float_nonseq.index(j)] for j in acc_js]
    acc_ins = [b_acc[j] for j in acc_js]
    stack_ins = [bg.add_input(t) for t in plan.state_types()]
    new_states += plan.values
    dseq_k = [k for k in range(n_seqs) if b_seq[k] in grads]
    bg.outputs = new_states + [grads[b_seq[k]] for k in dseq_k]
    if not bg.outputs:
        return [None] * len(operands)
    bg.inputs = seq_ins + [b_q[i] for i in float_rec] + acc_ins + stack_ins + b_nonseq
    bg.remove_dead()

    n_states = len(new_states)
    n_last = len(float_rec) + len(acc_js)
    back = g.add_node("scan", [m] + outer_seqs + q_inits + acc_inits + plan.inits + list(nonseqs),
                      {"body": Body(bg), "n_seqs": len(outer_seqs), "taps": ((-1,),) * n_states,
                       "n_nitsot": len(dseq_k), "until": False,
                       "store": ("last",) * n_last + ("all",) * (n_states - n_last + len(dseq_k)),
                       "truncate_gradient": -1,
                       "name": None if attrs["name"] is None else f"grad_of_{attrs['name']}"})
    res = _results(g, back, len(bg.outputs))
    result = [None] * len(operands)
    for pos, i in enumerate(float_rec):
        d = _reverse(g, res[pos])
        if trunc != -1:
            d = op(g, "where", op(g, "eq", m, n_done), d, const(g, 0, g.type(d).dtype))
        result[1 + n_seqs + i] = match_type(g, d, inits[i])
    stacked = [_reverse(g, r) for r in res[n_last:n_states]]  # (back in forward step order)
    for j in float_nonseq:
        total = res[len(float_rec) + acc_js.index(j)] if j in acc_js else None
        for term in plan.outer_terms(j, stacked):
            total = term if total is None else op(g, "add", total, term)
        result[1 + n_seqs + n_rec + j] = match_type(g, total, nonseqs[j])
    for pos, k in enumerate(dseq_k):
        rows = _reverse(g, res[n_states + pos])
        full = g.add_node("set_subtensor", [zeros_like(g, seqs[k]), rows, lo, n_done],
                          {"index": (("s", "$2", "$3", None),)})
        result[1 + k] = full
    return result


def stored_results(g, bg, fo, outs, seq_input, grads, rows_forward) -> None:
    """Where the backward step reads a value the forward step returned (``tanh``'s VJP
    reads its result), it reads the stored row instead of recomputing it: the result's
    rows become a sequence of the backward loop, and the recomputation is left dead
    (the forward's stored rows are exactly the values the recomputation would give)."""
    for k, f in enumerate(fo):
        if bg.op(f) in ("input", "constant") or not bg.users(f):
            continue
        row = _row_type(g.type(outs[k]))
        want = bg.type(f)
        if not (isinstance(want, TensorType) and row.dtype == want.dtype and row.ndim == want.ndim
                and all(b is None or a == b for a, b in zip(row.shape, want.shape))):
            continue
        s_in = seq_input(rows_forward(outs[k], whole=True), want)
        bg.replace_all_uses(f, s_in)
        for w, v in grads.items():
            if v == f:
                grads[w] = s_in


@register_vjp("ifelse")
def _ifelse_vjp(ctx):
    g, operands, attrs = ctx.graph, ctx.operands, ctx.attrs
    captured = operands[1:]
    types = [g.type(c) for c in captured]
    n_res = len(attrs["then_body"].graph.outputs)
    cts = list(ctx.cotangent) if isinstance(ctx.cotangent, list) else [ctx.cotangent]
    res_types = attrs["then_body"].output_types
    with_ct = [k for k in range(n_res) if cts[k] is not None and _is_float(res_types[k])]
    wanted = [j for j, c in enumerate(captured) if ctx.wants[1 + j] and _is_float(types[j])]
    if not with_ct or not wanted:
        return [None] * len(operands)
    ct_nodes = [cts[k] for k in with_ct]

    def branch_vjp(body):
        bg = Graph()
        ins = [bg.add_input(t) for t in types]
        ct_ins = [bg.add_input(g.type(c)) for c in ct_nodes]
        fo = inline(bg, body.graph, ins)
        known = {}
        for k, c in zip(with_ct, ct_ins):
            c = match_type(bg, cast_to(bg, c, bg.type(fo[k]).dtype), fo[k])
            known[fo[k]] = c if fo[k] not in known else bg.add_node("add", (known[fo[k]], c))
        wrt = [ins[j] for j in wanted]
        bg.outputs = grad(bg, None, wrt, disconnected_inputs="ignore", known_grads=known)
        bg.remove_dead()
        return Body(bg)

    new = g.add_node("ifelse", [operands[0]] + list(captured) + ct_nodes,
                     {"then_body": branch_vjp(attrs["then_body"]), "else_body": branch_vjp(attrs["else_body"])})
    res = _results(g, new, len(wanted))
    result = [None] * len(operands)
    for j, r in zip(wanted, res):
        result[1 + j] = match_type(g, r, captured[j])
    return result
