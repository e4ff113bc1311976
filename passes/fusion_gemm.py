"""GEMM epilogue fusion: an elementwise kernel that reads a matrix product becomes one
``fused`` kernel whose body *starts* with the product (a ``dot``/``matmul`` step, see
``tcomp.ir.ops.fused``), so a backend can apply the elementwise steps to each tile of the
product while the tile is still in cache, instead of writing the product and reading it
back in a second loop.  ``relu(x @ W + b)``, the SGD update ``W - lr * (h.T @ d)`` and the
backward mask ``where(a > 0, d @ W.T, 0)`` of an MLP are each one kernel.

Runs after elementwise fusion (the pass ``fuse_gemm_epilogue`` follows ``fuse_elementwise``
in the default pipeline), on its ``fused`` kernels and on lone elementwise nodes.  A product ``D`` is absorbed into its
reader ``F`` when:

* ``D`` is a ``dot``/``matmul`` of two rank-2 float32/float64 operands of ``D``'s dtype
  (the packed GEMM's domain), ``F`` is its only reader and ``D`` is not a graph output;
* ``F`` has no reduction, no trailing layout (``epilogue``) and no layout step but
  dimshuffles of its operands (the CPU epilogue evaluates elementwise steps and reads an
  operand through a permuted index, e.g. a column bias), and its iteration space has ``D``'s
  extents at run time (``_same_space``): the product is read at the point it is computed,
  never broadcast;
* ``F``'s primary result has ``D``'s dtype (a backend may keep partial sums of the product in
  the primary result's memory while the K loop runs).
* (cost rule, :func:`absorb_products`) every elementwise step of ``F`` is a few instructions
  per element (``CHEAP_STEPS``: add, mul, max, compare, where, relu, a division, ...).
  Measured on the 2-core znver4 (interleaved A/B, min of 100-call loops, loaded): epilogues
  of that kind ran as fast as or faster than the product and a separate elementwise kernel
  at 1 and 2 threads (the MLP step's bias + relu, backward masks and SGD updates: 0.87-1.01
  per kernel); a tanh epilogue of a 128x784x512 product was 0.99 at 1 thread but 1.02-1.18
  at 2 threads, so transcendental epilogues (tanh, sigmoid, exp, ...) stay a separate
  kernel unless asked for: :func:`absorb_all_products` (pass ``fuse_gemm_epilogue_all``,
  ``PIPELINES['gemm_epilogue']``) absorbs any elementwise epilogue.

The rewritten kernel's operands are ``D``'s two operands, then ``F``'s other operands; its
steps are the product (step 0) and ``F``'s steps, renumbered; its results are ``F``'s.
Nothing is computed twice and the value of every result is unchanged (each step is still
the op's own semantics).  :func:`split_products` undoes the rewrite (a backend without a
fused GEMM, e.g. NVPTX, runs the product and the elementwise kernel as before).
"""
from __future__ import annotations

from tcomp.ir import Graph, get_op
from tcomp.ir.ops.fused import CONTRACTIONS, LAYOUT_OPS, step_types

GEMM_DTYPES = ("float32", "float64")


def _product_ok(g: Graph, d: int) -> bool:
    if g.op(d) not in CONTRACTIONS or d in g.outputs:
        return False
    t = g.type(d)
    a, b = g.operands(d)
    ta, tb = g.type(a), g.type(b)
    return t.dtype in GEMM_DTYPES and ta.ndim == 2 and tb.ndim == 2 and ta.dtype == t.dtype and tb.dtype == t.dtype


def _as_body(g: Graph, n: int):
    """(body, operands, outputs) of a fused kernel without reduction or trailing layout, or
    of a lone elementwise node as a one-step body; None for anything else."""
    op = g.op(n)
    if op == "fused":
        a = g.attrs(n)
        if a["reduce"] is not None or a.get("epilogue") or a["body"][0][0] in CONTRACTIONS:
            return None
        if any(_layout_not_epilogue(step) for step in a["body"]):
            return None  # the GEMM epilogue evaluates elementwise steps and operand dimshuffles only
        return a["body"], list(g.operands(n)), tuple(a.get("outputs", ()))
    if get_op(op).kind != "elemwise" or g.op(n) == "alloc":
        return None
    ops = list(g.operands(n))
    attrs = tuple(sorted(get_op(op).normalize_attrs(dict(g.attrs(n))).items()))
    return ((op, attrs, tuple(f"${i}" for i in range(len(ops)))),), ops, ()


def _layout_not_epilogue(step) -> bool:
    """A layout step the CPU epilogue (``kernels_gemm_epilogue._step``) cannot evaluate: a
    reshape, or a dimshuffle of an earlier step (a dimshuffle of a kernel operand, e.g. a
    column bias ``c[:, None]`` or a mask of broadcast aranges, reads the operand through the
    permuted index)."""
    op, _attrs, refs = step
    return op == "reshape" or (op == "dimshuffle" and refs[0][0] != "$")


#: elementwise ops a few instructions per element: epilogues made of these (and constants,
#: operand dimshuffles) are absorbed by the default pass (see the module docstring)
CHEAP_STEPS = frozenset({"abs", "add", "sub", "mul", "neg", "truediv", "maximum", "minimum", "relu", "where",
                         "eq", "neq", "lt", "le", "gt", "ge", "sign", "cast", "logical_and", "logical_or",
                         "logical_not", "logical_xor", "isnan", "isinf", "floor", "ceil", "round",
                         "constant", "dimshuffle"})


def _cheap(body) -> bool:
    return all(step[0] in CHEAP_STEPS for step in body)


def _same_space(td, it) -> bool:
    """The product (type ``td``), read by the kernel's elementwise steps, has the iteration
    space's extents at run time: same rank, and every static dim of the product equal to the
    space's (a static 1 would broadcast).  A symbolic dim never broadcasts (both backends
    check that before running), so the space's dim there is the product's."""
    return td.ndim == it.ndim and all(not isinstance(a, int) or a == b for a, b in zip(td.shape, it.shape))


class _Absorber:
    def __init__(self, g: Graph, cheap_only: bool):
        self.g = g
        self.cheap_only = cheap_only

    def try_absorb(self, n: int) -> bool:
        g = self.g
        form = _as_body(g, n)
        if form is None:
            return False
        body, ops, outputs = form
        if self.cheap_only and not _cheap(body):
            return False
        for d in dict.fromkeys(ops):
            if not _product_ok(g, d) or any(u != n for u in g.users(d)):
                continue
            refs = {f"${i}" for i, o in enumerate(ops) if o == d}
            if any(step[0] in LAYOUT_OPS and refs & set(step[2]) for step in body):
                continue
            stypes = step_types(body, [g.type(o) for o in ops])
            if stypes[-1].dtype != g.type(d).dtype or not _same_space(g.type(d), stypes[-1]):
                continue
            self.rewrite(n, d, body, ops, outputs)
            return True
        return False

    def rewrite(self, n, d, body, ops, outputs) -> None:
        g = self.g
        rest = [o for o in ops if o != d]
        new_index = {}
        for i, o in enumerate(ops):
            if o != d:
                new_index[i] = 2 + len(new_index)

        def ref(r):
            if r[0] == "%":
                return f"%{int(r[1:]) + 1}"
            i = int(r[1:])
            return "%0" if ops[i] == d else f"${new_index[i]}"
        dattrs = tuple(sorted(get_op(g.op(d)).normalize_attrs(dict(g.attrs(d))).items()))
        steps = [(g.op(d), dattrs, ("$0", "$1"))]
        steps += [(op, sattrs, tuple(ref(r) for r in refs)) for op, sattrs, refs in body]
        attrs = {"body": tuple(steps)}
        if outputs:
            attrs["outputs"] = tuple(j + 1 for j in outputs)
        new = g.add_node("fused", list(g.operands(d)) + rest, attrs)
        if g.type(new) != g.type(n):  # pragma: no cover - the steps' rules are the nodes' own
            raise AssertionError(f"gemm epilogue fusion changed the type of %{n}: {g.type(n)} -> {g.type(new)}")
        name = g.name(n)
        g.replace_all_uses(n, new)
        if name is not None and g.name(new) is None:
            g.set_name(new, name)


def absorb_products(graph: Graph) -> Graph:
    """Absorb matrix products into the elementwise kernels that read them when the kernel's
    steps are cheap (``CHEAP_STEPS``; in place; returns ``graph``): the default pipeline's
    ``fuse_gemm_epilogue``.  See the module docstring for the conditions."""
    return _absorb(graph, cheap_only=True)


def absorb_all_products(graph: Graph) -> Graph:
    """:func:`absorb_products` for any elementwise epilogue, transcendental ones included
    (``fuse_gemm_epilogue_all``, in ``PIPELINES['gemm_epilogue']``)."""
    return _absorb(graph, cheap_only=False)


def _absorb(graph: Graph, cheap_only: bool) -> Graph:
    """In a pass pipeline that does not fuse elementwise code (``exclude=["fuse_elementwise"]``)
    it does nothing: such a graph keeps no fused kernels at all."""
    from .manager import active_pipeline

    pipeline = active_pipeline()
    if pipeline is not None and "fuse_elementwise" not in pipeline:
        return graph
    g = graph
    cands = [n for n in g.topo_order() if g.op(n) == "fused" or get_op(g.op(n)).kind == "elemwise"]
    a = _Absorber(g, cheap_only)
    changed = False
    for n in cands:
        if any(g.op(o) in CONTRACTIONS for o in g.operands(n)):
            changed |= a.try_absorb(n)
    if changed:
        g.remove_dead()
    return g


def has_products(graph: Graph) -> bool:
    """True when some ``fused`` kernel of ``graph`` starts with a product."""
    return any(graph.op(n) == "fused" and graph.attrs(n)["body"][0][0] in CONTRACTIONS for n in graph.nodes())


def split_products(graph: Graph) -> Graph:
    """The inverse rewrite, for backends without a fused GEMM: every ``fused`` kernel that
    starts with a product becomes the product node and a ``fused`` kernel of the remaining
    steps (in place; returns ``graph``)."""
    g = graph
    changed = False
    for n in g.topo_order():
        if g.op(n) != "fused" or g.attrs(n)["body"][0][0] not in CONTRACTIONS:
            continue
        a = g.attrs(n)
        ops = list(g.operands(n))
        op0, attrs0, refs0 = a["body"][0]
        d = g.add_node(op0, [ops[int(refs0[0][1:])], ops[int(refs0[1][1:])]], dict(attrs0))
        rest = [d] + ops[2:]

        def ref(r):
            i = int(r[1:])
            if r[0] == "%":
                return "$0" if i == 0 else f"%{i - 1}"
            return f"${i - 1}"
        steps = tuple((op, sattrs, tuple(ref(r) for r in refs)) for op, sattrs, refs in a["body"][1:])
        attrs = {"body": steps}
        if a.get("outputs"):
            attrs["outputs"] = tuple(j - 1 for j in a["outputs"])
        new = g.add_node("fused", rest, attrs)
        name = g.name(n)
        g.replace_all_uses(n, new)
        if name is not None and g.name(new) is None:
            g.set_name(new, name)
        changed = True
    if changed:
        g.remove_dead()
    return g


__all__ = ["CHEAP_STEPS", "absorb_all_products", "absorb_products", "has_products", "split_products"]
