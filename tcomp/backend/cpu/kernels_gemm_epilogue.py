"""``fused`` kernels that start with a matrix product (``passes/fusion_gemm.py``): the packed
GEMM with the kernel's elementwise steps applied to each tile of C as it is finished.

The GEMM drivers live in one permanent runtime library per process (``kernels_gemm``), but
an epilogue is particular to its kernel, so the kernel's module defines it as a function
the driver calls back: in the packed path once per MC x EW block of C (EW columns: whole
micro-panels, 512 bytes of each row; see ``kernels_gemm.Config.EW``) after the block's last
KC block, reading the final sums from C (or,
where a result may share memory with an epilogue operand, from a stack buffer of MC x EB);
in the non-packed paths once per block (``kernels_gemm_tiles``).  (Once per micro-tile, from
a stack tile, measured slower than a separate elementwise pass: ~250 calls of a short loop
per 784 x 512 product.)::

    epi_<hash>(ptr env, ptr src, i64 rs, i64 cs, i64 i0, i64 j0, i64 m, i64 n)

``env`` is the kernel's own argument array (result, leaf and parameter pointers, as the
thread pool's trampolines get it); ``ke_<hash>`` (the kernel's leading arguments, then the
tile's) evaluates the steps at every point of rows ``[i0, i0+m)`` and columns
``[j0, j0+n)``: step 0 (the product) is read from the tile, the other operands through
their broadcasting indices (a row-broadcast bias, a same-shape matrix, a scalar), and every
result is stored at the point.  The row loop is written twice, for a unit column stride
of the tile (the common case, which LLVM vectorizes) and any other (C^T computed).  The
kernel passes flag 1 when a result may be written over an operand the epilogue reads (an
in-place or donated kernel), so the driver never keeps partial sums in C.
"""
from __future__ import annotations

from llvmlite import ir

from tcomp.ir.ops.fused import CONTRACTIONS, step_types
from tcomp.ir.ops.registry import get_op

from . import irutil as u
from . import kernels_gemm as GM
from . import parallel as P
from .kctx import KernelCtx
from .kernels_gemm_ir import epilogue_type
from .scalar import emit_elemwise


def is_gemm_epilogue(g, n) -> bool:
    return g.op(n) == "fused" and g.attrs(n)["body"][0][0] in CONTRACTIONS


def lower_fused(ctx: KernelCtx) -> None:
    """The ``fused`` family: a kernel that starts with a product here, any other in
    ``kernels.lower_fused``."""
    if not is_gemm_epilogue(ctx.g, ctx.n):
        from .kernels import lower_fused as lower_elementwise

        return lower_elementwise(ctx)
    epi = _epilogue(ctx)
    GM.lower_gemm_epilogue(ctx, epi, 1 if getattr(ctx, "inplace_leaf", None) is not None else 0)


def _epilogue(ctx: KernelCtx) -> ir.Function:
    g, n = ctx.g, ctx.n
    module = ctx.fn.module
    attrs = g.attrs(n)
    body = attrs["body"]
    ops = g.operands(n)
    stypes = step_types(body, [g.type(o) for o in ops])
    it = stypes[-1]
    extra = tuple(attrs.get("outputs", ()))
    nptr = ctx.n_out + len(ctx.leaves) + 1
    tile_args = [u.PTR, u.I64, u.I64, u.I64, u.I64, u.I64, u.I64]
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [u.PTR] * nptr + tile_args), name=f"k{n}.etmp")
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    for a, k in zip(fn.args, ctx.fn.args[:nptr - 1]):
        if "noalias" in k.attributes:
            a.add_attribute("noalias")
    fn.args[nptr].add_attribute("noalias")  # the tile: stack or scratch memory of the driver
    with P._Swap(ctx, fn):
        b = ctx.b
        src, rs, cs, i0, j0, m, nn = fn.args[nptr:]
        et = u.mem_type(stypes[0].dtype)

        def point(i, j, p):
            memo = [u.load_value(b, p, stypes[0].dtype)]
            for k in range(1, len(body)):
                memo.append(_step(ctx, body[k], stypes, memo, ops, it, [i, j]))
            ctx.out.store(b, memo[-1], [i, j])
            for q, s in enumerate(extra):
                ctx.outs[1 + q].store(b, memo[s], [i, j])

        def row(r):
            i = b.add(i0, r)
            line = u.gep(b, src, stypes[0].dtype, b.mul(r, rs))
            with b.if_else(b.icmp_signed("==", cs, ir.Constant(u.I64, 1))) as (unit, other):
                with unit:
                    u.for_range(b, nn, lambda c: point(i, b.add(j0, c), b.gep(line, [c], source_etype=et,
                                                                               inbounds=True)), name="euc")
                with other:
                    u.for_range(b, nn, lambda c: point(i, b.add(j0, c), b.gep(line, [b.mul(c, cs)], source_etype=et,
                                                                               inbounds=True)), name="esc")
        u.for_range(b, m, row, name="er")
        b.ret_void()
    inner = P._intern(module, fn, "ke")
    name = "epi_" + inner.name[len("ke_"):]
    if name in module.globals:
        return module.globals[name]
    tr = ir.Function(module, epilogue_type(), name=name)
    tr.linkage = "internal"
    env = tr.args[0]
    b = ir.IRBuilder(tr.append_basic_block("entry"))
    ptrs = [b.load(b.gep(env, [ir.Constant(u.I64, k)], source_etype=u.PTR, inbounds=True), typ=u.PTR)
            for k in range(nptr)]
    b.call(inner, ptrs + list(tr.args[1:]))
    b.ret_void()
    return tr


def _step(ctx, step, stypes, memo, ops, it, idx):
    """One elementwise, constant or operand-dimshuffle body step at the point (operands:
    earlier steps in ``memo``, kernel operands read through their broadcasting index; a
    dimshuffle of a kernel operand, e.g. a column bias ``c[:, None]``, reads the operand at
    the permuted index, as ``kernels.lower_fused`` does; the fusion pass absorbs no other
    layout step)."""
    g, b, prog = ctx.g, ctx.b, ctx.prog
    op, sattrs, refs = step
    sattrs = dict(sattrs)
    if op == "constant":
        c = sattrs["value"].value
        return u.const(c.dtype.name, c.item())
    if op == "dimshuffle":
        o = ops[int(refs[0][1:])]
        if prog.is_scalar_const(o):
            return u.const(g.type(o).dtype, g.attrs(o)["value"].value.item())
        sidx = ctx.bidx(stypes[len(memo)], it, idx)
        src = [ir.Constant(u.I64, 0)] * g.type(o).ndim
        for a, p in enumerate(sattrs["pattern"]):
            if p != "x":
                src[p] = sidx[a]
        return ctx.load_leaf(o, src)
    args, dts = [], []
    for r in refs:
        k = int(r[1:])
        if r[0] == "%":
            args.append(memo[k])
            dts.append(stypes[k].dtype)
            continue
        o = ops[k]
        if prog.is_scalar_const(o):
            args.append(u.const(g.type(o).dtype, g.attrs(o)["value"].value.item()))
        else:
            args.append(ctx.load_leaf(o, ctx.bidx(o, it, idx)))
        dts.append(g.type(o).dtype)
    j = len(memo)
    return emit_elemwise(b, op, get_op(op).normalize_attrs(sattrs), args, dts, stypes[j].dtype)
