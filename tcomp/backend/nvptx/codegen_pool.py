"""Pooling kernels for the grid: ``pool2d``, ``pool2d_grad`` and ``pool2d_grad_grad``, one
thread per output element, windows unrolled (``ws`` is static).  Semantics are the
reference's (``ir/ops/pool.py``): the image sits at ``[PH:PH+H, PW:PW+W]`` of a buffer whose
other cells hold the lowest value (max) or 0 (sums); a window's arg-max is its first
maximum in row-major order (NaN first), the one cell a max window's gradient goes to.

The input gradient is written in gather form: each image cell sums over the windows that
contain it (for 'max': those whose arg-max it is), so no scatter-add or atomics is needed;
the max gradient accumulates in float64 as the reference's ``bincount`` does.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from tcomp.backend.cpu import irutil as u
from tcomp.backend.cpu.scalar import cast, emit_elemwise
from tcomp.ir import dtypes as dt
from tcomp.ir.ops.pool import pool_params

from .codegen import _emit_pointwise

_I64 = u.I64


def _c(v):
    return ir.Constant(_I64, v)


class Pool:
    def __init__(self, ctx):
        self.ctx, self.b = ctx, ctx.b
        k = ctx.k
        self.ws, self.stride, self.pad, self.mode, _ = pool_params(k.op, dict(k.attrs))
        self.x = ctx.ref(k.args[0].value)
        self.xdt = ctx.value(k.args[0].value).dtype
        self.H, self.W = self.x.dims[-2], self.x.dims[-1]

    def load_or(self, ref, dtype, lead, p, q, fill):
        """``ref[lead, p - PH, q - PW]`` where that is inside the image, else ``fill``."""
        b = self.b
        h, w = b.sub(p, _c(self.pad[0])), b.sub(q, _c(self.pad[1]))
        ok = b.and_(b.and_(b.icmp_signed(">=", h, _c(0)), b.icmp_signed("<", h, u.i64(self.H))),
                    b.and_(b.icmp_signed(">=", w, _c(0)), b.icmp_signed("<", w, u.i64(self.W))))
        pre = b.block
        then = b.append_basic_block("pl")
        done = b.append_basic_block("pl.done")
        b.cbranch(ok, then, done)
        b.position_at_end(then)
        v = ref.load(b, lead + [h, w])
        end = b.block
        b.branch(done)
        b.position_at_end(done)
        phi = b.phi(v.type)
        phi.add_incoming(v, end)
        phi.add_incoming(fill, pre)
        return phi

    def lowest(self):
        d = self.xdt
        return u.const(d, float("-inf") if dt.is_float(d) else int(np.iinfo(d).min))

    def taps(self, i, j):
        b = self.b
        for a in range(self.ws[0]):
            for c in range(self.ws[1]):
                yield a * self.ws[1] + c, b.add(b.mul(i, _c(self.stride[0])), _c(a)), \
                    b.add(b.mul(j, _c(self.stride[1])), _c(c))

    def argmax(self, lead, i, j):
        """(first max value, its tap number) of window (i, j)."""
        b = self.b
        best, at = None, None
        for t, p, q in self.taps(i, j):
            v = self.load_or(self.x, self.xdt, lead, p, q, self.lowest())
            if best is None:
                best, at = v, _c(0)
                continue
            if dt.is_float(self.xdt):
                take = b.or_(b.fcmp_ordered(">", v, best),
                             b.and_(b.fcmp_unordered("uno", v, v), b.fcmp_ordered("==", best, best)))
            else:
                take = (b.icmp_signed if dt.kind(self.xdt) == "i" else b.icmp_unsigned)(">", v, best)
            best, at = b.select(take, v, best), b.select(take, _c(t), at)
        return best, at

    def count(self, i, j):
        """The window's divisor (1 for 'sum'), as i64."""
        b = self.b
        if self.mode == "sum":
            return _c(1)
        if self.mode == "average_inc_pad":
            lo = [_c(0), _c(0)]
            hi = [u.i64(u.add(b, self.H, 2 * self.pad[0])), u.i64(u.add(b, self.W, 2 * self.pad[1]))]
        else:
            lo = [_c(self.pad[0]), _c(self.pad[1])]
            hi = [u.i64(u.add(b, self.H, self.pad[0])), u.i64(u.add(b, self.W, self.pad[1]))]
        n = _c(1)
        for ax, s in enumerate((i, j)):
            start = b.mul(s, _c(self.stride[ax]))
            stop = b.add(start, _c(self.ws[ax]))
            a = b.select(b.icmp_signed(">", start, lo[ax]), start, lo[ax])
            z = b.select(b.icmp_signed("<", stop, hi[ax]), stop, hi[ax])
            n = b.mul(n, b.select(b.icmp_signed(">", z, a), b.sub(z, a), _c(0)))
        return n

    def pooled(self, ref, dtype, odt, lead, i, j):
        """pool2d of ``ref`` at window (i, j) in dtype ``odt`` (sum/average modes)."""
        b = self.b
        acc = u.const(odt, 0)
        for _t, p, q in self.taps(i, j):
            v = cast(b, self.load_or(ref, dtype, lead, p, q, u.const(dtype, 0)), dtype, odt)
            acc = emit_elemwise(b, "add", {}, [acc, v], [odt, odt], odt)
        if self.mode == "sum":
            return acc
        return emit_elemwise(b, "truediv", {}, [acc, cast(b, self.count(i, j), "int64", odt)], [odt, odt], odt)


def gen_pool(ctx):
    k, b = ctx.k, ctx.b
    pl = Pool(ctx)
    out = ctx.ref(k.writes[0])
    odt = ctx.value(k.writes[0]).dtype

    if k.op == "pool2d":
        def point(idx):
            lead, i, j = idx[:-2], idx[-2], idx[-1]
            if pl.mode == "max":
                v = cast(b, pl.argmax(lead, i, j)[0], pl.xdt, odt)
            else:
                v = pl.pooled(pl.x, pl.xdt, odt, lead, i, j)
            out.store(b, v, idx)
    elif k.op == "pool2d_grad_grad":
        g = ctx.ref(k.args[1].value)
        gdt = ctx.value(k.args[1].value).dtype

        def point(idx):
            lead, i, j = idx[:-2], idx[-2], idx[-1]
            if pl.mode != "max":
                out.store(b, pl.pooled(g, gdt, odt, lead, i, j), idx)
                return
            _, at = pl.argmax(lead, i, j)
            v = u.const(odt, 0)
            for t, p, q in pl.taps(i, j):
                gv = cast(b, pl.load_or(g, gdt, lead, p, q, u.const(gdt, 0)), gdt, odt)
                v = b.select(b.icmp_unsigned("==", at, _c(t)), gv, v)
            out.store(b, v, idx)
    else:  # pool2d_grad: gather over the windows containing each image cell
        gy = ctx.ref(k.args[1].value)
        gdt = ctx.value(k.args[1].value).dtype
        OH, OW = gy.dims[-2], gy.dims[-1]
        acc_dt = "float64" if pl.mode == "max" else odt
        (kh, kw), (sh, sw) = pl.ws, pl.stride

        def point(idx):
            lead, h, w = idx[:-2], idx[-2], idx[-1]
            p, q = b.add(h, _c(pl.pad[0])), b.add(w, _c(pl.pad[1]))
            acc = u.const(acc_dt, 0)
            # windows i with i*sh <= p < i*sh + kh: i in [ceil((p - kh + 1) / sh), p // sh]
            for da in range(-(-kh // sh) + 1):
                for db in range(-(-kw // sw) + 1):
                    i, j = b.sub(b.udiv(p, _c(sh)), _c(da)), b.sub(b.udiv(q, _c(sw)), _c(db))
                    a, c = b.sub(p, b.mul(i, _c(sh))), b.sub(q, b.mul(j, _c(sw)))
                    ok = b.and_(b.and_(b.icmp_signed(">=", i, _c(0)), b.icmp_signed("<", i, u.i64(OH))),
                                b.and_(b.icmp_signed(">=", j, _c(0)), b.icmp_signed("<", j, u.i64(OW))))
                    ok = b.and_(ok, b.and_(b.icmp_signed("<", a, _c(kh)), b.icmp_signed("<", c, _c(kw))))
                    acc = _accumulate_window(ctx, pl, gy, gdt, acc, acc_dt, odt, ok, lead, i, j, a, c)
            out.store(b, cast(b, acc, acc_dt, odt), idx)
    return _emit_pointwise(ctx, ctx.value(k.writes[0]).dims, point)


def _accumulate_window(ctx, pl, gy, gdt, acc, acc_dt, odt, ok, lead, i, j, a, c):
    """``acc`` plus window (i, j)'s share of its gradient at tap (a, c), when ``ok``."""
    b = pl.b
    pre = b.block
    then = b.append_basic_block("pw")
    done = b.append_basic_block("pw.done")
    b.cbranch(ok, then, done)
    b.position_at_end(then)
    g = gy.load(b, lead + [i, j])
    if pl.mode == "max":
        _, at = pl.argmax(lead, i, j)
        mine = b.icmp_unsigned("==", at, b.add(b.mul(a, _c(pl.ws[1])), c))
        share = b.select(mine, cast(b, g, gdt, acc_dt), u.const(acc_dt, 0))
    else:
        gv = cast(b, g, gdt, odt)
        share = emit_elemwise(b, "truediv", {}, [gv, cast(b, pl.count(i, j), "int64", odt)], [odt, odt], odt)
        if pl.mode == "sum":
            share = gv
    r = emit_elemwise(b, "add", {}, [acc, share], [acc_dt, acc_dt], acc_dt)
    end = b.block
    b.branch(done)
    b.position_at_end(done)
    phi = b.phi(acc.type)
    phi.add_incoming(r, end)
    phi.add_incoming(acc, pre)
    return phi


GENERATORS = {"pool2d": gen_pool, "pool2d_grad": gen_pool, "pool2d_grad_grad": gen_pool}

__all__ = ["GENERATORS"]
