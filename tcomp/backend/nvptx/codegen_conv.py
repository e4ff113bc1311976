"""Direct convolution kernels for the grid: ``conv2d`` and its two gradients, one thread per
output element, each a nested loop over its contraction (semantics: ``ir/ops/conv.py``).

Why direct and not im2col + the tiled matmul: it needs no workspace beyond the program's and
is exact to write; the gather form (each output element reads what contributes to it) makes
``conv2d_grad_input`` a pure per-element sum too (no scatter-add, no atomics).  A tiled
implicit-GEMM version is the performance follow-up.
"""
from __future__ import annotations

from llvmlite import ir

from tcomp.backend.cpu import irutil as u
from tcomp.backend.cpu.scalar import cast, emit_elemwise
from tcomp.ir.ops.conv import conv_params

from .codegen import _emit_pointwise

_I64 = u.I64


def _c(v):
    return ir.Constant(_I64, v)


def _in_range(b, v, hi):
    return b.and_(b.icmp_signed(">=", v, _c(0)), b.icmp_signed("<", v, u.i64(hi)))


def _mac(b, odt, acc, ok, load_x, load_w, xdt, wdt):
    """``acc + x * w`` where ``ok`` (the loads are guarded: nothing is read outside)."""
    pre = b.block
    then = b.append_basic_block("mac")
    done = b.append_basic_block("mac.done")
    b.cbranch(ok, then, done)
    b.position_at_end(then)
    x = cast(b, load_x(), xdt, odt)
    w = cast(b, load_w(), wdt, odt)
    r = emit_elemwise(b, "add", {}, [acc, emit_elemwise(b, "mul", {}, [x, w], [odt, odt], odt)], [odt, odt], odt)
    end = b.block
    b.branch(done)
    b.position_at_end(done)
    phi = b.phi(acc.type)
    phi.add_incoming(r, end)
    phi.add_incoming(acc, pre)
    return phi


def gen_conv(ctx):
    k, b = ctx.k, ctx.b
    attrs = dict(k.attrs)
    pad, stride, dil = conv_params(k.op, attrs)
    flip = bool(attrs["filter_flip"])
    a0, a1 = k.args[0].value, k.args[1].value
    A, B = ctx.ref(a0), ctx.ref(a1)
    adt, bdt = ctx.value(a0).dtype, ctx.value(a1).dtype
    out = ctx.ref(k.writes[0])
    odt = ctx.value(k.writes[0]).dtype
    zero = u.const(odt, 0)

    def tap(kidx, kdim):
        return b.sub(u.i64(u.add(b, kdim, -1)), kidx) if flip else kidx

    if k.op == "conv2d":
        X, W = A, B
        C, KH, KW = W.dims[1], W.dims[2], W.dims[3]

        def point(idx):
            n, o, i, j = idx

            def step(r, accs):
                c, ka, kb_ = r
                h = b.add(b.mul(i, _c(stride[0])), _c(-pad[0]))
                h = b.add(h, b.mul(ka, _c(dil[0])))
                w = b.add(b.add(b.mul(j, _c(stride[1])), _c(-pad[1])), b.mul(kb_, _c(dil[1])))
                ok = b.and_(_in_range(b, h, X.dims[2]), _in_range(b, w, X.dims[3]))
                return [_mac(b, odt, accs[0], ok, lambda: X.load(b, [n, c, h, w]),
                             lambda: W.load(b, [o, c, tap(ka, KH), tap(kb_, KW)]), adt, bdt)]
            (acc,) = u.nested_reduction(b, [C, KH, KW], [zero], step, name="cv")
            out.store(b, acc, idx)
    elif k.op == "conv2d_grad_input":
        GY, W = A, B
        O, KH, KW = W.dims[0], W.dims[2], W.dims[3]
        OH, OW = GY.dims[2], GY.dims[3]

        def point(idx):
            n, c, h, w = idx

            def step(r, accs):
                o, ka, kb_ = r
                th = b.sub(b.add(h, _c(pad[0])), b.mul(ka, _c(dil[0])))
                tw = b.sub(b.add(w, _c(pad[1])), b.mul(kb_, _c(dil[1])))
                ih, iw = b.sdiv(th, _c(stride[0])), b.sdiv(tw, _c(stride[1]))
                ok = b.and_(b.icmp_signed(">=", th, _c(0)), b.icmp_signed(">=", tw, _c(0)))
                ok = b.and_(ok, b.and_(b.icmp_signed("==", b.srem(th, _c(stride[0])), _c(0)),
                                       b.icmp_signed("==", b.srem(tw, _c(stride[1])), _c(0))))
                ok = b.and_(ok, b.and_(_in_range(b, ih, OH), _in_range(b, iw, OW)))
                return [_mac(b, odt, accs[0], ok, lambda: GY.load(b, [n, o, ih, iw]),
                             lambda: W.load(b, [o, c, tap(ka, KH), tap(kb_, KW)]), adt, bdt)]
            (acc,) = u.nested_reduction(b, [O, KH, KW], [zero], step, name="gi")
            out.store(b, acc, idx)
    else:  # conv2d_grad_filters
        X, GY = A, B
        N, OH, OW = GY.dims[0], GY.dims[2], GY.dims[3]
        KH, KW = out.dims[2], out.dims[3]

        def point(idx):
            o, c, ka, kb_ = idx
            ka, kb_ = tap(ka, KH), tap(kb_, KW)

            def step(r, accs):
                n, i, j = r
                h = b.add(b.sub(b.mul(i, _c(stride[0])), _c(pad[0])), b.mul(ka, _c(dil[0])))
                w = b.add(b.sub(b.mul(j, _c(stride[1])), _c(pad[1])), b.mul(kb_, _c(dil[1])))
                ok = b.and_(_in_range(b, h, X.dims[2]), _in_range(b, w, X.dims[3]))
                return [_mac(b, odt, accs[0], ok, lambda: GY.load(b, [n, o, i, j]),
                             lambda: X.load(b, [n, c, h, w]), bdt, adt)]
            (acc,) = u.nested_reduction(b, [N, OH, OW], [zero], step, name="gf")
            out.store(b, acc, idx)
    return _emit_pointwise(ctx, ctx.value(k.writes[0]).dims, point)


GENERATORS = {"conv2d": gen_conv, "conv2d_grad_input": gen_conv, "conv2d_grad_filters": gen_conv}

__all__ = ["GENERATORS"]
