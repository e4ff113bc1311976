"""The per-kernel emission context: one internal LLVM function per materialized node.

A kernel is ``i32 k<node>(ptr noalias out..., ptr noalias leaf..., ptr params)``: each
``out`` (one per result; several for a multi-output kernel) is a buffer tcomp assigned
(it aliases nothing), leaves are only read, so ``noalias`` is true and LLVM vectorizes
without run-time alias checks.  It returns 0, or 1 when a
bounds check failed.  Static dims become constants; symbolic ones are loaded from the
kernel's *own* parameter table (``slots``: local index -> global parameter offset), so two
nodes with the same structure get byte-identical kernels and the module keeps one.
``value(node, idx)`` evaluates a node at an index, recomputing inline
elementwise producers in place (the backend's loop fusion).
"""
from __future__ import annotations

from llvmlite import ir

from tcomp.ir.ops.registry import get_op

from . import irutil as u
from .scalar import emit_elemwise

FLAT = "flat"


class KernelCtx:
    def __init__(self, prog, module: ir.Module, n: int, leaves: list, inplace_leaf=None):
        self.prog, self.g, self.n = prog, prog.g, n
        self.leaves = leaves
        self.n_out = n_out = len(prog.results(n))
        self.slots: dict = {}  # global parameter offset -> local index
        fnty = ir.FunctionType(u.I32, [u.PTR] * (n_out + len(leaves) + 1))
        self.fn = ir.Function(module, fnty, name=f"k{n}")
        self.fn.linkage = "internal"
        # shared by every node of the same structure; inlining into the entry would copy it back
        self.fn.attributes.add("noinline")
        # an in-place kernel (memory.py) writes over leaf ``inplace_leaf``, which it reads only
        # at the index it writes (lower_kernels.same_index), before writing it: every load of
        # the leaf feeds the store at its own index, so "the leaf's old value" (what noalias
        # lets LLVM assume) is exactly the kernel's meaning, and that pair keeps noalias too.
        # Without it the vectorizer adds a run-time overlap check that an exact alias fails,
        # so every in-place kernel ran its scalar loop (W - lr * g, 784x512: 235 -> 70 us)
        for a in self.fn.args[:-1]:
            a.add_attribute("noalias")
        #: the leaf the first result may be written over (None: none); see kernels_gemm_epilogue
        self.inplace_leaf = inplace_leaf
        self.b = ir.IRBuilder(self.fn.append_basic_block("entry"))
        #: ptr -> TensorRef for the first result when it is written with other dims than its
        #: type's (a fused kernel's epilogue: same bytes, pre-epilogue shape); set by a lowering
        self.primary_view = None
        self.bind(self.fn)
        self._fail = None

    def bind(self, fn: ir.Function) -> None:
        """Read the params, results and leaves from ``fn``'s arguments (the kernel's, or a
        parallel worker's with the same leading arguments)."""
        self.params = fn.args[self.n_out + len(self.leaves)]
        self._dims = {}
        #: one reference per result; ``out`` is the first (the only one but for multi-output kernels)
        self.outs = [self.ref(r, fn.args[k]) for k, r in enumerate(self.prog.results(self.n))]
        if self.primary_view is not None:
            self.outs[0] = self.primary_view(fn.args[0])
        self.out = self.outs[0]
        self.refs = {leaf: self.ref(leaf, fn.args[self.n_out + k]) for k, leaf in enumerate(self.leaves)}

    # -- shapes and memory ---------------------------------------------------------------
    def param(self, off: int) -> ir.Value:
        b = self.b
        local = self.slots.setdefault(off, len(self.slots))
        return b.load(b.gep(self.params, [ir.Constant(u.I64, local)], source_etype=u.I64, inbounds=True), typ=u.I64)

    def dims(self, n) -> list:
        """Extents of node ``n``; loaded once, in the entry block, so they dominate every use."""
        if n not in self._dims:
            t = self.g.type(n)
            off = self.prog.dims_off[n]
            with self.b.goto_block(self.fn.entry_basic_block):
                self._dims[n] = [d if isinstance(d, int) else self.param(off + a) for a, d in enumerate(t.shape)]
        return self._dims[n]

    def ref(self, n, ptr) -> u.TensorRef:
        dims = self.dims(n)
        if self.prog.layout[n] == "strided":
            off = self.prog.strides_off[n]
            strides = [0 if d == 1 else self.param(off + a) for a, d in enumerate(dims)]
        else:
            strides = u.contiguous_strides(self.b, dims)
        return u.TensorRef(ptr, self.g.type(n).dtype, dims, strides)

    def fail_if(self, cond: ir.Value) -> None:
        """Return this kernel's error code when ``cond`` holds (bounds checks)."""
        if self._fail is None:
            here = self.b.block
            self._fail = self.fn.append_basic_block("fail")
            self.b.position_at_end(self._fail)
            self.b.ret(ir.Constant(u.I32, 1))
            self.b.position_at_end(here)
        ok = self.b.append_basic_block("ok")
        self.b.cbranch(cond, self._fail, ok)
        self.b.position_at_end(ok)

    def finish(self) -> None:
        self.b.ret(ir.Constant(u.I32, 0))

    # -- expressions -------------------------------------------------------------------------
    def bidx(self, operand, consumer_type, idx):
        """Index of ``operand`` read at ``idx`` of a broadcasting consumer of ``consumer_type``."""
        t = self.g.type(operand) if isinstance(operand, int) else operand
        if isinstance(idx, tuple):  # flat mode: every operand is full-shape or rank 0
            return idx if t.ndim else []
        off = consumer_type.ndim - t.ndim
        return [0 if d == 1 else idx[off + a] for a, d in enumerate(t.shape)]

    def runtime_bcast(self, dims, idx):
        """Index for an operand that NumPy broadcasts at run time (alloc, matmul batches,
        set/inc values, index arrays): a symbolic dim that turns out to be 1 reads index 0."""
        b = self.b
        return [i if isinstance(d, int) else b.select(b.icmp_signed("==", d, ir.Constant(u.I64, 1)),
                                                      ir.Constant(u.I64, 0), i) for d, i in zip(dims, idx)]

    def load_leaf(self, n, idx):
        ref = self.refs[n]
        if isinstance(idx, tuple):
            return u.load_value(self.b, u.gep(self.b, ref.ptr, ref.dtype, idx[1]), ref.dtype)
        if not idx:
            return u.load_value(self.b, ref.ptr, ref.dtype)
        return ref.load(self.b, idx)

    def value(self, n, idx, memo: dict, root: bool = False):
        """Value of node ``n`` at ``idx`` (a list, ``[]`` for rank 0, or ``(FLAT, i)``).

        Inline producers are evaluated with an explicit stack (operands left to right, each
        node once per point through ``memo``), so an inline chain of any depth needs no
        Python recursion."""
        if n in memo:
            return memo[n]
        g, prog = self.g, self.prog
        # (node, its index, expanded?, is the root): a node is expanded once its operands are pushed
        stack = [(n, idx, False, root)]
        while stack:
            m, midx, expanded, is_root = stack.pop()
            if m in memo and not expanded:
                continue
            if expanded:
                t = g.type(m)
                ops = g.operands(m)
                args = [memo[o] for o in ops]
                memo[m] = emit_elemwise(self.b, g.op(m), g.attrs(m), args, [g.type(o).dtype for o in ops], t.dtype)
            elif prog.is_scalar_const(m) and not is_root:
                memo[m] = u.const(g.type(m).dtype, g.attrs(m)["value"].value.item())
            elif is_root or prog.role[m] == "inline":
                t = g.type(m)
                stack.append((m, midx, True, is_root))
                for o in reversed(g.operands(m)):
                    if o not in memo:
                        stack.append((o, self.bidx(o, t, midx), False, False))
            else:
                memo[m] = self.load_leaf(m, midx)
        return memo[n]


def expression_leaves(prog, roots) -> list:
    """Nodes whose memory an expression over ``roots`` reads (inline nodes are walked through)."""
    out, seen, stack = [], set(), list(reversed(roots))
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if prog.role[n] == "inline":
            stack.extend(reversed(prog.g.operands(n)))
        elif not prog.is_scalar_const(n):
            out.append(n)
    return out


def flat_ok(prog, root, roots) -> bool:
    """True when an expression can run as one flat loop: contiguous leaves, no broadcasting."""
    g = prog.g
    rt = g.type(root)
    stack, seen = [(o, rt) for o in roots], set()
    while stack:
        n, consumer = stack.pop()
        t = g.type(n)
        if prog.is_scalar_const(n):
            continue
        if t.ndim:
            if t.ndim != consumer.ndim:
                return False
            if any(d == 1 and c != 1 for d, c in zip(t.shape, consumer.shape)):
                return False
        if n in seen:
            continue
        seen.add(n)
        if prog.role[n] == "inline":
            stack.extend((o, t) for o in g.operands(n))
        elif prog.layout[n] != "contig":
            return False
    return True


def elemwise_kind(op: str) -> bool:
    return get_op(op).kind == "elemwise"
