"""``scan_opt``'s push-outs: products with a loop-invariant matrix taken out of the loop.

A ``dot(v_t, W)`` whose left operand is known for every step before or after the loop is
one product over the stacked rows, ``reshape(V, (n*B, k)) @ W`` reshaped to ``(n, B, m)``,
instead of ``n`` small products inside it (one GEMM at full speed, parallel over the
threads, instead of one per step):

* **before the loop**, when ``v_t`` is a row of a sequence: the product becomes a new
  sequence.  Only the ``n`` rows the loop reads are multiplied (``x[:n]``), and loops that
  stop early (``until``) are left alone: which steps run is not known before;
* **after the loop**, when the product is a not-fed-back result (stored every step) and
  ``v_t`` is another result stored every step (the backward loop's ``d_t W^T``, the
  cotangent of an input sequence, from the stacked ``d_t``): the result is computed from the
  other's rows.  Not for ``until`` loops either: reading their results inside the graph
  would make the cpu backend run the loop as a separate stage.

Memory: the pushed-out product is one more ``(n, *row)`` buffer, the size of a stored result.

A vector row gives ``V @ W`` directly; ``dot(W, v_t)`` with a vector row is ``V @ W^T``.
The value of each row is the op's own (the same products, summed in the same order inside
each row; the GEMM may block them differently, so float results can differ in the last bits).
"""
from __future__ import annotations

from tcomp.ir import Graph

from .autodiff_scan_pushout import _dim, _mul, _reshape, _static, const, op


def _node(g: Graph, d):
    """A dim as an int64 node (a static extent as a constant), so a reshape keeps it symbolic."""
    return const(g, d[0], "int64") if _static(d) else d


def product_form(bg: Graph, v: int, invariant):
    """``(row operand, W, W first)`` when body node ``v`` is ``dot(r, W)`` (``r`` of rank 1
    or 2) or ``dot(W, r)`` (``r`` a vector), ``W`` a matrix with ``invariant(W)``; else None."""
    if bg.op(v) != "dot":
        return None
    a, b = bg.operands(v)
    if invariant(b) and bg.type(b).ndim == 2 and bg.type(a).ndim in (1, 2) and not invariant(a):
        return a, b, False
    if invariant(a) and bg.type(a).ndim == 2 and bg.type(b).ndim == 1 and not invariant(b):
        return b, a, True
    return None


def stacked_product(g: Graph, rows: int, w: int, w_first: bool, t) -> int:
    """The product of every row of ``rows`` (outer, ``(n, *row)``) with ``w`` (outer), typed
    ``(?, *t.shape)`` for the body product's type ``t`` (its static dims kept, the others
    symbolic)."""
    if w_first:
        w = op(g, "dimshuffle", w, pattern=(1, 0))
    n = _dim(g, rows, 0)
    if g.type(rows).ndim == 3:
        flat = _reshape(g, rows, [_mul(g, n, _dim(g, rows, 1)), _dim(g, rows, 2)])
        dims = [n, _dim(g, rows, 1), _dim(g, w, 1)]
    else:
        flat = rows
        dims = [n, _dim(g, w, 1)]
    prod = op(g, "dot", flat, w)
    want = [None] + list(t.shape)
    dims = [(s,) if isinstance(s, int) else _node(g, d) for s, d in zip(want, dims)]
    return _reshape(g, prod, dims)


def push_out_products(g: Graph, bg: Graph, operands, seq_operand: dict, invariant, outer_of: dict) -> list:
    """Before the loop: each body product of a sequence row (``seq_operand``: body input ->
    operand position) becomes a new sequence.  Returns ``[(new body input, outer rows)]``."""
    out = []
    for v in bg.topo_order():
        form = product_form(bg, v, invariant)
        if form is None or form[0] not in seq_operand:
            continue
        r, w, w_first = form
        seq, n = operands[seq_operand[r]], operands[0]
        if not (g.op(n) == "shape" and g.operands(n) == [seq] and g.attrs(n)["axis"] == 0):  # (else x is x[:n])
            seq = g.add_node("subtensor", [seq, n], {"index": (("s", None, "$1", None),)})
        rows = seq
        t = bg.type(v)
        stacked = stacked_product(g, rows, outer_of[w], w_first, t)
        if g.type(stacked).dtype != t.dtype:
            continue
        ni = bg.add_input(t, bg.name(v))
        bg.replace_all_uses(v, ni)
        out.append((ni, stacked))
    return out


def derived_results(bg: Graph, kept: list, store: list, n_rec: int, invariant) -> dict:
    """After the loop: ``{position p in bg.outputs: (position q, W, W first)}`` for each
    not-fed-back result ``p`` stored every step that is a product of result ``q``'s value
    (stored every step, not itself derived) with an invariant ``W``."""
    outs = bg.outputs[:len(kept)]
    first_at = {}
    for q, v in enumerate(outs):
        if store[kept[q]] == "all":
            first_at.setdefault(v, q)
    found = {}
    for p, v in enumerate(outs):
        if kept[p] < n_rec or store[kept[p]] != "all" or outs.index(v) != p:
            continue
        form = product_form(bg, v, invariant)
        if form is None or first_at.get(form[0], p) == p:
            continue
        found[p] = (first_at[form[0]], form[1], form[2])
    return {p: f for p, f in found.items() if f[0] not in found}


__all__ = ["push_out_products", "derived_results", "stacked_product", "product_form"]
