"""Pooling kernels over the last two axes: pool2d, pool2d_grad, pool2d_grad_grad
(semantics of ir/ops/pool.py, Theano's pool_2d).

Geometry: window (i, j) covers buffer rows ``i*SH .. i*SH+KH-1`` where the image sits at
rows ``PH .. PH+H-1`` of the buffer; positions outside the image read as the dtype's
lowest value (max) or 0 (sums), exactly like the reference's padded buffer, and are
never loaded (the load address is clamped and the value replaced).  Max windows pick the
*first* arg-max in raster order (NaN wins, like ``np.argmax``), also for the gradients.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from tcomp.ir import dtypes as dt
from tcomp.ir.ops.pool import pool_params

from . import irutil as u
from .kctx import KernelCtx
from .scalar import cast


def _c(v):
    return ir.Constant(u.I64, v)


def _lowest(dtype):
    if dt.is_float(dtype):
        return u.const(dtype, float("-inf"))
    return u.const(dtype, int(np.iinfo(dtype).min))


class _Geo:
    def __init__(self, ctx: KernelCtx, xref: u.TensorRef, op: str):
        self.ctx, self.b = ctx, ctx.b
        self.ws, self.stride, self.pad, self.mode, self.ib = pool_params(op, ctx.g.attrs(ctx.n))
        self.x = xref
        self.lead = xref.dims[:-2]
        self.H, self.W = xref.dims[-2:]

    def image_pos(self, i, a, axis):
        """(image coordinate, inside-image flag, clamped coordinate) of window i, tap a."""
        b = self.b
        p = b.sub(b.add(b.mul(i, _c(self.stride[axis])), a), _c(self.pad[axis]))
        size = u.i64(self.H if axis == 0 else self.W)
        inside = b.and_(b.icmp_signed(">=", p, _c(0)), b.icmp_signed("<", p, size))
        return p, inside, b.select(inside, p, _c(0))

    def in_padded(self, i, a, axis):
        """Is the window position inside the padded image (for average_inc_pad counts)?"""
        b = self.b
        p = b.add(b.mul(i, _c(self.stride[axis])), a)
        size = b.add(u.i64(self.H if axis == 0 else self.W), _c(2 * self.pad[axis]))
        return b.icmp_signed("<", p, size)

    def argmax(self, lidx, i, j):
        """(found-in-image flag, row, col) of the first arg-max of window (i, j)."""
        b, x = self.b, self.x
        d = x.dtype

        def step(idx, accs):
            a, bb = idx
            best, bi, bj, bin_ = accs
            r, rin, rc = self.image_pos(i, a, 0)
            s, sin, sc = self.image_pos(j, bb, 1)
            inside = b.and_(rin, sin)
            v = b.select(inside, x.load(b, lidx + [rc, sc]), _lowest(d))
            if dt.is_float(d):
                better = b.or_(b.fcmp_ordered(">", v, best),
                               b.and_(b.fcmp_unordered("uno", v, v), b.fcmp_ordered("ord", best, best)))
            else:
                better = (b.icmp_signed if dt.kind(d) == "i" else b.icmp_unsigned)(">", v, best)
            first = b.and_(b.icmp_signed("==", a, _c(0)), b.icmp_signed("==", bb, _c(0)))
            better = b.or_(better, first)
            return [b.select(better, v, best), b.select(better, r, bi), b.select(better, s, bj),
                    b.select(better, inside, bin_)]
        init = [_lowest(d), _c(0), _c(0), ir.Constant(u.I1, 0)]
        _best, r, s, inside = u.nested_reduction(b, [self.ws[0], self.ws[1]], init, step, name="w")
        return inside, r, s

    def window_sum(self, ref, lidx, i, j, od):
        """(sum over the window's image pixels of ref, inc_pad count, exc_pad count)."""
        b = self.b

        def step(idx, accs):
            a, bb = idx
            acc, n_inc, n_exc = accs
            _r, rin, rc = self.image_pos(i, a, 0)
            _s, sin, sc = self.image_pos(j, bb, 1)
            inside = b.and_(rin, sin)
            v = cast(b, ref.load(b, lidx + [rc, sc]), ref.dtype, od)
            v = b.select(inside, v, u.const(od, 0))
            acc = b.fadd(acc, v) if dt.is_float(od) else b.add(acc, v)
            pad_ok = b.and_(self.in_padded(i, a, 0), self.in_padded(j, bb, 1))
            return [acc, b.add(n_inc, b.zext(pad_ok, u.I64)), b.add(n_exc, b.zext(inside, u.I64))]
        init = [u.const(od, 0), _c(0), _c(0)]
        return u.nested_reduction(b, [self.ws[0], self.ws[1]], init, step, name="w")

    def average(self, s, n_inc, n_exc, od):
        """s / count, divided in float64 like the reference (float32 sums / int64 counts)."""
        b = self.b
        n = n_inc if self.mode == "average_inc_pad" else n_exc
        if self.mode == "sum":
            return s
        q = b.fdiv(cast(b, s, od, "float64"), b.sitofp(n, u.F64))
        return cast(b, q, "float64", od)


def _nonempty(ctx, ref, body):
    """Run ``body`` only when ``ref`` has elements (the reference returns zeros otherwise)."""
    b = ctx.b
    n = u.numel(b, ref.dims)
    if isinstance(n, int):
        if n:
            body()
        return
    with b.if_then(b.icmp_signed(">", n, _c(0))):
        body()


def lower_pool2d(ctx: KernelCtx) -> None:
    g, n, b = ctx.g, ctx.n, ctx.b
    (xn,) = g.operands(n)
    od = g.type(n).dtype
    geo = _Geo(ctx, ctx.refs[xn], "pool2d")
    out = ctx.out
    u.loop_nest(b, out.dims, lambda idx: out.store(b, u.const(od, 0), idx), name="z")

    def compute():
        def point(idx):
            lidx, i, j = idx[:-2], idx[-2], idx[-1]
            if geo.mode == "max":
                inside, r, s = geo.argmax(lidx, i, j)
                x = geo.x
                v = x.load(b, lidx + [b.select(inside, r, _c(0)), b.select(inside, s, _c(0))])
                v = b.select(inside, v, _lowest(x.dtype))
                out.store(b, cast(b, v, x.dtype, od), idx)
                return
            s, n_inc, n_exc = geo.window_sum(geo.x, lidx, i, j, od)
            out.store(b, geo.average(s, n_inc, n_exc, od), idx)
        u.loop_nest(b, out.dims, point, name="p")
    _nonempty(ctx, geo.x, compute)


def lower_pool2d_grad(ctx: KernelCtx) -> None:
    g, n, b = ctx.g, ctx.n, ctx.b
    xn, gyn = g.operands(n)
    od = g.type(n).dtype
    geo = _Geo(ctx, ctx.refs[xn], "pool2d_grad")
    gy = ctx.refs[gyn]
    out = ctx.out
    u.loop_nest(b, out.dims, lambda idx: out.store(b, u.const(od, 0), idx), name="z")

    def compute():
        def point(idx):
            lidx, i, j = idx[:-2], idx[-2], idx[-1]
            gv = cast(b, gy.load(b, idx), gy.dtype, od)
            if geo.mode == "max":
                inside, r, s = geo.argmax(lidx, i, j)
                with b.if_then(inside):
                    addr = out.addr(b, lidx + [r, s])
                    u.store_value(b, b.fadd(u.load_value(b, addr, od), gv), addr, od)
                return
            ones = geo.window_sum(geo.x, lidx, i, j, od)  # only the counts are used
            cnt = ones[1] if geo.mode == "average_inc_pad" else ones[2]
            scaled = gv if geo.mode == "sum" else b.fdiv(gv, b.sitofp(cnt, u.value_type(od)))

            def tap(t):
                a, bb = t
                _r, rin, rc = geo.image_pos(i, a, 0)
                _s, sin, sc = geo.image_pos(j, bb, 1)
                with b.if_then(b.and_(rin, sin)):
                    addr = out.addr(b, lidx + [rc, sc])
                    u.store_value(b, b.fadd(u.load_value(b, addr, od), scaled), addr, od)
            u.loop_nest(b, [geo.ws[0], geo.ws[1]], tap, name="t")
        u.loop_nest(b, gy.dims, point, name="p")
    _nonempty(ctx, geo.x, compute)


def lower_pool2d_grad_grad(ctx: KernelCtx) -> None:
    g, n, b = ctx.g, ctx.n, ctx.b
    xn, gn = g.operands(n)
    od = g.type(n).dtype
    geo = _Geo(ctx, ctx.refs[xn], "pool2d_grad_grad")
    gr = ctx.refs[gn]
    out = ctx.out
    u.loop_nest(b, out.dims, lambda idx: out.store(b, u.const(od, 0), idx), name="z")

    def compute():
        def point(idx):
            lidx, i, j = idx[:-2], idx[-2], idx[-1]
            if geo.mode == "max":
                inside, r, s = geo.argmax(lidx, i, j)
                v = gr.load(b, lidx + [b.select(inside, r, _c(0)), b.select(inside, s, _c(0))])
                v = b.select(inside, cast(b, v, gr.dtype, od), u.const(od, 0))
                out.store(b, v, idx)
                return
            s, n_inc, n_exc = geo.window_sum(gr, lidx, i, j, od)
            out.store(b, geo.average(s, n_inc, n_exc, od), idx)
        u.loop_nest(b, out.dims, point, name="p")
    _nonempty(ctx, geo.x, compute)
