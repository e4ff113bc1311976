"""Random-number kernels: Philox-4x32-10 per element, then the uniform / normal /
binomial recipes of ir/ops/random.py, bit for bit (normal: to a few ulp, through mathlib's
log/cos instead of libm's).

Counter-based generation makes every element a pure function of (key, counter, index),
so the element loop has no carried state and vectorizes like any elementwise loop.
"""
from __future__ import annotations

import math

from llvmlite import ir

from tcomp.ir.ops.random import PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1

from . import irutil as u
from .kctx import KernelCtx
from .scalar import cast


def _c32(v):
    return ir.Constant(u.I32, v & 0xFFFFFFFF)


def _c64(v):
    return ir.Constant(u.I64, v)


def philox(b, ctr, key):
    """Philox-4x32-10 of 4 i32 counter words under a 2-word i32 key."""
    x0, x1, x2, x3 = ctr
    k0, k1 = key
    for r in range(10):
        if r:
            k0 = b.add(k0, _c32(PHILOX_W0))
            k1 = b.add(k1, _c32(PHILOX_W1))
        p0 = b.mul(b.zext(x0, u.I64), _c64(PHILOX_M0))
        p1 = b.mul(b.zext(x2, u.I64), _c64(PHILOX_M1))
        hi0 = b.trunc(b.lshr(p0, _c64(32)), u.I32)
        hi1 = b.trunc(b.lshr(p1, _c64(32)), u.I32)
        x0, x1, x2, x3 = (b.xor(b.xor(hi1, x1), k0), b.trunc(p1, u.I32),
                          b.xor(b.xor(hi0, x3), k1), b.trunc(p0, u.I32))
    return x0, x1, x2, x3


def _u24(b, w):
    return b.fmul(b.uitofp(b.lshr(w, _c32(8)), u.F32), ir.Constant(u.F32, 2.0 ** -24))


def _u53(b, w0, w1):
    hi = b.uitofp(b.lshr(w0, _c32(5)), u.F64)
    lo = b.uitofp(b.lshr(w1, _c32(6)), u.F64)
    return b.fmul(b.fadd(b.fmul(hi, ir.Constant(u.F64, 67108864.0)), lo), ir.Constant(u.F64, 2.0 ** -53))


def _key_and_counter(ctx: KernelCtx):
    g, b, n = ctx.g, ctx.b, ctx.n
    seed_n, ctr_n = g.operands(n)[:2]
    sref, cref = ctx.refs[seed_n], ctx.refs[ctr_n]
    st = g.type(seed_n)
    if st.ndim == 0:
        s = cast(b, sref.load(b, []), st.dtype, "int64")
        key = (b.trunc(s, u.I32), b.trunc(b.lshr(s, _c64(32)), u.I32))
    else:
        key = tuple(b.trunc(cast(b, sref.load(b, [_c64(k)]), st.dtype, "int64"), u.I32) for k in range(2))
    c = cast(b, cref.load(b, []), g.type(ctr_n).dtype, "int64")
    return key, (b.trunc(c, u.I32), b.trunc(b.lshr(c, _c64(32)), u.I32))


def random_leaves(prog, n):
    ops = prog.g.operands(n)[:2]
    return list(dict.fromkeys(ops))


def lower_random(ctx: KernelCtx) -> None:
    from tcomp.backend import mathlib

    g, n, b = ctx.g, ctx.n, ctx.b
    op, attrs = g.op(n), g.attrs(n)
    od = g.type(n).dtype
    key, (c_lo, c_hi) = _key_and_counter(ctx)
    out = ctx.out
    size = u.numel(b, out.dims)

    def words(i, block):
        return philox(b, (b.trunc(i, u.I32), _c32(block) if isinstance(block, int) else block, c_lo, c_hi), key)

    def store(i, v):
        u.store_value(b, v, u.gep(b, out.ptr, od, i), od)

    if op == "random_uniform":
        import numpy as np

        lo, hi = np.dtype(od).type(attrs["low"]), np.dtype(od).type(attrs["high"])
        below = float(np.nextafter(hi, np.dtype(od).type(-np.inf)))
        vt = u.value_type(od)

        def body(i):
            w = words(i, 0)
            uu = _u24(b, w[0]) if od == "float32" else _u53(b, w[0], w[1])
            r = b.fadd(ir.Constant(vt, float(lo)), b.fmul(ir.Constant(vt, float(hi - lo)), uu))
            store(i, b.select(b.fcmp_ordered(">=", r, ir.Constant(vt, float(hi))), ir.Constant(vt, below), r))
        u.for_range(b, size, body, name="ru")
        return
    if op == "random_normal":
        def body(i):
            w0, w1, w2, w3 = words(i, 0)
            u1 = b.fsub(ir.Constant(u.F64, 1.0), _u53(b, w0, w1))
            u2 = _u53(b, w2, w3)
            rad = u.call_intrinsic(b, "sqrt", b.fmul(ir.Constant(u.F64, -2.0), mathlib.emit_unary(b, "log", u1)))
            z = b.fmul(rad, mathlib.emit_unary(b, "cos", b.fmul(ir.Constant(u.F64, 2.0 * math.pi), u2)))
            r = b.fadd(ir.Constant(u.F64, float(attrs["mean"])), b.fmul(ir.Constant(u.F64, float(attrs["std"])), z))
            store(i, cast(b, r, "float64", od))
        u.for_range(b, size, body, name="rn")
        return
    trials = int(attrs["n"])
    threshold = min(math.floor(float(attrs["p"]) * 4294967296.0), 1 << 32)

    def body(i):
        def block(k, accs):
            w = words(i, b.trunc(k, u.I32))
            cnt = accs[0]
            for t in range(4):
                ok = b.icmp_signed("<", b.add(b.mul(k, _c64(4)), _c64(t)), _c64(trials))
                hit = b.icmp_unsigned("<", b.zext(w[t], u.I64), _c64(threshold))
                cnt = b.add(cnt, b.zext(b.and_(ok, hit), u.I64))
            return [cnt]
        (count,) = u.reduction_loop(b, (trials + 3) // 4, [_c64(0)], block, name="bt")
        store(i, cast(b, count, "int64", od) if od != "bool" else b.icmp_unsigned("!=", count, _c64(0)))
    u.for_range(b, size, body, name="rb")


__all__ = ["lower_random", "random_leaves", "philox"]
