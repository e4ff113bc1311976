"""The ``flatnonzero`` kernel (kind 'nonzero'): one pass over ``x`` in C order writing the flat
position of every nonzero element.

The result's length ``count`` is a host value computed before this kernel runs (a stage of
its own when only a kernel can compute it, ``staged.py``); the kernel writes at most
``count`` positions and returns its error code when ``x`` does not have exactly ``count``
nonzeros, so a wrong count can never write out of bounds.
"""
from __future__ import annotations

from llvmlite import ir

from tcomp.ir import dtypes as dt

from . import irutil as u
from .kctx import KernelCtx


def nonzero_leaves(prog, n):
    """Only ``x`` is read as a tensor; ``count`` arrives as the result's dim."""
    return [prog.g.operands(n)[0]]


def lower_flatnonzero(ctx: KernelCtx) -> None:
    g, n, b = ctx.g, ctx.n, ctx.b
    x = g.operands(n)[0]
    xr, out = ctx.refs[x], ctx.out
    count = u.i64(out.dims[0])
    d = g.type(x).dtype
    with b.goto_block(ctx.fn.entry_basic_block):
        written = b.alloca(u.I64, name="written")
        flat = b.alloca(u.I64, name="flat")
    b.store(ir.Constant(u.I64, 0), written)
    b.store(ir.Constant(u.I64, 0), flat)

    def body(idx):
        v = xr.load(b, idx)
        if dt.is_float(d):
            nz = b.fcmp_unordered("!=", v, ir.Constant(v.type, 0.0))   # nan is nonzero
        else:
            nz = b.icmp_unsigned("!=", v, ir.Constant(v.type, 0))
        w, i = b.load(written), b.load(flat)
        with b.if_then(nz):
            with b.if_then(b.icmp_signed("<", w, count)):
                out.store(b, i, [w])
            b.store(b.add(w, ir.Constant(u.I64, 1)), written)
        b.store(b.add(i, ir.Constant(u.I64, 1)), flat)

    u.loop_nest(b, xr.dims, body, name="nz")
    ctx.fail_if(b.icmp_signed("!=", b.load(written), count))


__all__ = ["lower_flatnonzero", "nonzero_leaves"]
