"""``scan_opt``: the loop and branch rewrites, and the pipeline run inside their bodies.

For every ``scan`` node, in one rebuild:

* **dead outputs**: results nobody reads are dropped, with the recurrent states only they
  needed (a state stays while a kept result's step reads one of its taps), and the
  sequences and non-sequences the remaining body no longer reads; a scan none of whose
  results is read is removed by DCE;
* **last value only**: a result read only as ``out[-1]`` is stored as ``"last"`` (the
  loop keeps one value instead of every step's) and those reads become the result;
* **loop-invariant code motion**: body nodes that depend only on non-sequences (and
  constants) move to the outer graph and enter the body as new non-sequences, computed once;
* **products pushed out** (``scan_pushout.py``): ``x_t W`` with ``x_t`` a sequence row and
  ``W`` invariant becomes one product before the loop (a new sequence), and a stored
  result ``v_t W`` of another stored result ``v_t`` one product after it;
* **the body** is optimized by the pipeline running this pass (``exclude`` honoured; the
  default one includes fusion, and this pass again for nested loops).

``ifelse`` branches are optimized by the pipeline too (nothing is hoisted out of them:
that would make their work eager).  The pass runs before the outer fusion, after the
outer CSE/DCE, so a body's hoisted values fuse with outer code.
"""
from __future__ import annotations

from tcomp.ir import Graph
from tcomp.ir.ops.control import Body, scan_layout

from .scan_pushout import derived_results, push_out_products, stacked_product

LAST = (("i", -1),)


def _body_pipeline(graph: Graph) -> Graph:
    """The pipeline that runs this pass (``exclude`` and mode included), else the default."""
    from .manager import PassManager, active_pipeline

    return PassManager(active_pipeline() or "default").run(graph)


def _result_uses(g: Graph, n: int, count: int):
    """Per result index: (result node or None, consumer nodes, is a graph output)."""
    if count == 1:
        return [(n, g.users(n), n in g.outputs)]
    out = [(None, [], False) for _ in range(count)]
    res = {}
    for u in g.users(n):
        k = g.attrs(u)["index"]
        res.setdefault(k, []).append(u)
    for k, nodes in res.items():
        users = sorted({c for r in nodes for c in g.users(r)})
        out[k] = (nodes, users, any(r in g.outputs for r in nodes))
    return out


def _ancestors(bg: Graph, roots) -> set:
    seen, stack = set(), list(roots)
    while stack:
        v = stack.pop()
        if v not in seen:
            seen.add(v)
            stack.extend(bg.operands(v))
    return seen


def _optimize_scan(g: Graph, n: int) -> bool:
    """Rebuild scan node ``n``; True when code was hoisted or pushed out of its body."""
    attrs = dict(g.attrs(n))
    operands = g.operands(n)
    n_seqs, n_rec, n_nitsot, n_nonseq, taps = scan_layout(attrs, len(operands))
    n_out = n_rec + n_nitsot
    store = list(attrs["store"] or ("all",) * n_out)
    uses = _result_uses(g, n, n_out)
    used = [bool(u[1]) or u[2] for u in uses]
    if not any(used):
        return False  # DCE removes it
    bg = attrs["body"].graph.copy()
    ins = list(bg.inputs)
    seq_in = ins[:n_seqs]
    tap_in, pos = [], n_seqs
    for tp in taps:
        tap_in.append(ins[pos:pos + len(tp)])
        pos += len(tp)
    nonseq_in = ins[pos:]
    outs = list(bg.outputs)
    cond = outs[n_out] if attrs["until"] else None
    # which recurrent states the kept results need (fixpoint over the taps they read)
    keep_rec = {i for i in range(n_rec) if used[i]}
    keep_nit = [k for k in range(n_nitsot) if used[n_rec + k]]
    while True:
        roots = [outs[i] for i in keep_rec] + [outs[n_rec + k] for k in keep_nit] + ([cond] if cond is not None
                                                                                     else [])
        need = _ancestors(bg, roots)
        more = {i for i in range(n_rec) if i not in keep_rec and any(t in need for t in tap_in[i])}
        if not more:
            break
        keep_rec |= more
    keep_rec = sorted(keep_rec)
    # last value only: every read is out[-1]
    replace_last = {}
    for k in keep_rec + [n_rec + j for j in keep_nit]:
        nodes, users, is_out = uses[k]
        if store[k] == "all" and users and not is_out and all(
                g.op(u) == "subtensor" and g.attrs(u)["index"] == LAST and len(g.operands(u)) == 1 for u in users):
            store[k] = "last"
            replace_last[k] = users
    new_outs = [outs[i] for i in keep_rec] + [outs[n_rec + k] for k in keep_nit] + ([cond] if cond is not None
                                                                                    else [])
    bg.outputs = new_outs
    bg.remove_dead()
    live = set(bg.nx.nodes)
    keep_seq = [k for k in range(n_seqs) if seq_in[k] in live and bg.num_uses(seq_in[k])]
    keep_nonseq = [j for j in range(n_nonseq) if nonseq_in[j] in live and bg.num_uses(nonseq_in[j])]
    # loop-invariant code motion
    # (constant-like: computed from constants only; it stays in the body, folded there, but an
    # invariant node may read it, and then gets an outer copy of it)
    invariant = {nonseq_in[j] for j in keep_nonseq}
    const_like = set()
    outer_of = {nonseq_in[j]: operands[1 + n_seqs + n_rec + j] for j in keep_nonseq}
    order = bg.topo_order()
    for v in order:
        if v in invariant or bg.op(v) == "input":
            continue
        ops = bg.operands(v)
        if bg.op(v) == "constant" or (ops and all(o in const_like for o in ops)):
            const_like.add(v)
        elif ops and all(o in invariant or o in const_like for o in ops):
            invariant.add(v)
    hoisted = []
    for v in order:
        if (v not in invariant and v not in const_like) or bg.op(v) == "input":
            continue
        if bg.op(v) == "constant":
            outer_of[v] = g.add_constant(bg.attrs(v)["value"])
            continue
        outer_of[v] = g.add_node(bg.op(v), [outer_of[o] for o in bg.operands(v)], bg.attrs(v))
        if v in invariant and (v in bg.outputs or any(u not in invariant for u in bg.users(v))):
            hoisted.append(v)
    new_inputs = []
    for v in hoisted:
        ni = bg.add_input(bg.type(v), bg.name(v))
        bg.replace_all_uses(v, ni)
        new_inputs.append((ni, outer_of[v]))
        invariant.add(ni)
        outer_of[ni] = outer_of[v]
    # products with an invariant matrix: of sequence rows (x_t W) before the loop, of another
    # stored result (d_t W^T) after it (scan_pushout.py)
    def is_inv(v):
        return v in invariant or v in const_like
    pushed = [] if attrs["until"] else push_out_products(g, bg, operands, {seq_in[k]: 1 + k for k in keep_seq},
                                                        is_inv, outer_of)
    kept = keep_rec + [n_rec + j for j in keep_nit]
    derived = {} if attrs["until"] else {  # (an until loop's results read in the graph would stage it)
        kept[p]: (kept[q], w, first) for p, (q, w, first) in derived_results(bg, kept, store, n_rec, is_inv).items()}
    if derived:
        keep_nit = [j for j in keep_nit if n_rec + j not in derived]
        kept = keep_rec + [n_rec + j for j in keep_nit]
        bg.outputs = [outs[k] for k in kept] + ([cond] if cond is not None else [])
        derived = {k: (src, bg.type(outs[k]), outer_of[w], first) for k, (src, w, first) in derived.items()}
    bg.remove_dead()
    keep_nonseq = [j for j in keep_nonseq if bg.num_uses(nonseq_in[j])]  # (hoisting may free some)
    keep_seq = [k for k in keep_seq if bg.num_uses(seq_in[k])]
    seq_order = [seq_in[k] for k in keep_seq] + [ni for ni, _ in pushed]
    rest = [v for v in bg.inputs if v not in set(seq_in) and v not in {ni for ni, _ in pushed}]
    bg.inputs = seq_order + rest
    drop = set(seq_in[k] for k in range(n_seqs) if k not in keep_seq)
    drop |= {t for i in range(n_rec) if i not in keep_rec for t in tap_in[i]}
    drop |= {nonseq_in[j] for j in range(n_nonseq) if j not in keep_nonseq}
    bg.inputs = [v for v in bg.inputs if v not in drop]
    bg.nx.remove_nodes_from([v for v in drop if v in bg.nx])
    bg = _body_pipeline(bg)
    new_attrs = dict(attrs, body=Body(bg), n_seqs=len(keep_seq) + len(pushed), taps=tuple(taps[i] for i in keep_rec),
                     n_nitsot=len(keep_nit),
                     store=tuple(store[k] for k in keep_rec + [n_rec + j for j in keep_nit]))
    if all(s == "all" for s in new_attrs["store"]):
        new_attrs["store"] = ()
    new_ops = ([operands[0]] + [operands[1 + k] for k in keep_seq] + [o for _, o in pushed]
               + [operands[1 + n_seqs + i] for i in keep_rec]
               + [operands[1 + n_seqs + n_rec + j] for j in keep_nonseq] + [o for _, o in new_inputs])
    new = g.add_node("scan", new_ops, new_attrs, name=g.name(n))
    count = len(kept)
    result = {k: new if count == 1 else g.add_node("get_output", [new], {"index": new_k})
              for new_k, k in enumerate(kept)}
    for k, (src, t, w, first) in derived.items():
        result[k] = stacked_product(g, result[src], w, first, t)
    for k, r in result.items():
        nodes, users, _ = uses[k]
        if k in replace_last:
            for u in users:
                g.replace_all_uses(u, r)
        else:
            for old in ([nodes] if n_out == 1 else nodes or []):
                g.replace_all_uses(old, r)
    return bool(hoisted or pushed or derived)


def _optimize_ifelse(g: Graph, n: int) -> None:
    attrs = dict(g.attrs(n))
    new_attrs = dict(attrs, then_body=Body(_body_pipeline(attrs["then_body"].graph)),
                     else_body=Body(_body_pipeline(attrs["else_body"].graph)))
    new = g.add_node("ifelse", g.operands(n), new_attrs, name=g.name(n))
    g.replace_all_uses(n, new)


def scan_opt(graph: Graph) -> Graph:
    """Dead loop outputs, last-value-only storage, loop-invariant hoisting, and the default
    pipeline inside every scan body and ifelse branch (in place; returns the graph)."""
    g = graph
    hoisted = False
    for n in g.topo_order():
        if n in g and g.op(n) == "scan":
            hoisted |= _optimize_scan(g, n)
        elif n in g and g.op(n) == "ifelse":
            _optimize_ifelse(g, n)
    g.remove_dead()
    if hoisted:  # the hoisted code meets the outer graph's rewrites it missed
        from .cse import cse
        from .fold import constant_fold
        from .simplify import simplify

        g = cse(constant_fold(simplify(constant_fold(g))))
        g.remove_dead()
    return g
