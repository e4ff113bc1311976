"""Direct 2-D convolution kernels: conv2d and its two gradients (NCHW, see ir/ops/conv.py),
for operands the packed GEMM does not take (ints, mixed dtypes); float32/float64 convolutions
run as GEMMs (``kernels_conv_gemm``).

All three are the same bilinear relation ``y[n,o,i,j] += xp[n,c,i*SH+a*DH, j*SW+b*DW] *
wk[o,c,a,b]`` read in different directions.  For each kernel tap (a, b) the output rows
and columns whose input pixel lies inside the unpadded image are a contiguous range
computed once (ceil/floor divisions), so the inner loops carry no bounds tests, never read
padding, and the innermost one (over output columns) vectorizes for stride 1.
"""
from __future__ import annotations

from llvmlite import ir

from tcomp.ir.ops.conv import conv_params

from . import irutil as u
from .kctx import KernelCtx
from .scalar import cast


def _c(v):
    return ir.Constant(u.I64, v)


def _floordiv(b, p, q: int):
    """floor(p / q) for a positive constant q and any signed p."""
    qv = _c(q)
    d = b.sdiv(p, qv)
    r = b.srem(p, qv)
    return b.select(b.and_(b.icmp_signed("!=", r, _c(0)), b.icmp_signed("<", p, _c(0))), b.sub(d, _c(1)), d)


def _range(b, tap, pad, stride, dil, size, out_len):
    """Output positions i in [lo, hi) with 0 <= i*stride + tap*dil - pad < size."""
    base = b.sub(_c(pad), b.mul(tap, _c(dil)))  # i*stride >= base
    lo = b.sub(_c(0), _floordiv(b, b.sub(_c(0), base), stride))  # ceil(base / stride)
    lo = b.select(b.icmp_signed("<", lo, _c(0)), _c(0), lo)
    hi = b.add(_floordiv(b, b.sub(b.add(u.i64(size), base), _c(1)), stride), _c(1))
    out_len = u.i64(out_len)
    hi = b.select(b.icmp_signed(">", hi, out_len), out_len, hi)
    return lo, hi


def _pos(b, i, tap, pad, stride, dil):
    return b.sub(b.add(b.mul(i, _c(stride)), b.mul(tap, _c(dil))), _c(pad))


def _tap(b, k, flip, K):
    """Index into the stored filters of (flipped) kernel tap k."""
    return b.sub(b.sub(u.i64(K), _c(1)), k) if flip else k


def _fma_acc(b, acc, x, y):
    r = b.fadd(acc, b.fmul(x, y))
    r.flags.extend(("reassoc", "contract"))
    return r


def _tap_loops(ctx: KernelCtx, W, od, attrs_op, dims, accumulate) -> None:
    """Loop over every filter tap (n, o, c, kh, kw) and the output positions (i, j) whose
    input position (r, s) is inside the image; ``accumulate(nn, o, c, r, s, i, j, wv)``
    does the one multiply-add.  conv2d and its input gradient are this same walk with
    source and destination swapped."""
    g, n, b = ctx.g, ctx.n, ctx.b
    pad, stride, dil = conv_params(attrs_op, g.attrs(n))
    flip = bool(g.attrs(n)["filter_flip"])
    N, O, C, KH, KW, H, Wd, OH, OW = dims

    def body(idx):
        nn, o, c, a, bb = idx
        wv = cast(b, W.load(b, [o, c, _tap(b, a, flip, KH), _tap(b, bb, flip, KW)]), W.dtype, od)
        i0, i1 = _range(b, a, pad[0], stride[0], dil[0], H, OH)
        j0, j1 = _range(b, bb, pad[1], stride[1], dil[1], Wd, OW)

        def row(i):
            r = _pos(b, i, a, pad[0], stride[0], dil[0])

            def col(j):
                s = _pos(b, j, bb, pad[1], stride[1], dil[1])
                accumulate(nn, o, c, r, s, i, j, wv)
            u.for_range(b, j1, col, start=j0, name="j")
        u.for_range(b, i1, row, start=i0, name="i")
    u.loop_nest(b, [N, O, C, KH, KW], body, name="t")


def _fma_into(b, dst, dst_idx, src, src_idx, wv, od) -> None:
    v = cast(b, src.load(b, src_idx), src.dtype, od)
    addr = dst.addr(b, dst_idx)
    u.store_value(b, _fma_acc(b, u.load_value(b, addr, od), wv, v), addr, od)


def lower_conv2d(ctx: KernelCtx) -> None:
    from . import kernels_conv_gemm as CG

    if CG.applies(ctx, ctx.g.operands(ctx.n)[:2]):  # float: im2col + the packed GEMM
        return CG.lower_conv2d(ctx)
    g, n, b = ctx.g, ctx.n, ctx.b
    xn, wn = g.operands(n)
    od = g.type(n).dtype
    X, W, Y = ctx.refs[xn], ctx.refs[wn], ctx.out
    N, C, H, Wd = X.dims
    O, _, KH, KW = W.dims
    OH, OW = Y.dims[2:]
    u.loop_nest(b, Y.dims, lambda idx: Y.store(b, u.const(od, 0), idx), name="z")
    _tap_loops(ctx, W, od, "conv2d", (N, O, C, KH, KW, H, Wd, OH, OW),
               lambda nn, o, c, r, s, i, j, wv: _fma_into(b, Y, [nn, o, i, j], X, [nn, c, r, s], wv, od))


def lower_conv2d_grad_input(ctx: KernelCtx) -> None:
    from . import kernels_conv_gemm as CG

    if CG.applies(ctx, ctx.g.operands(ctx.n)[:2]):
        return CG.lower_conv2d_grad_input(ctx)
    g, n, b = ctx.g, ctx.n, ctx.b
    gyn, wn = g.operands(n)[:2]
    od = g.type(n).dtype
    GY, W, GX = ctx.refs[gyn], ctx.refs[wn], ctx.out
    N, O, OH, OW = GY.dims
    _, C, KH, KW = W.dims
    H, Wd = GX.dims[2:]
    u.loop_nest(b, GX.dims, lambda idx: GX.store(b, u.const(od, 0), idx), name="z")
    _tap_loops(ctx, W, od, "conv2d_grad_input", (N, O, C, KH, KW, H, Wd, OH, OW),
               lambda nn, o, c, r, s, i, j, wv: _fma_into(b, GX, [nn, c, r, s], GY, [nn, o, i, j], wv, od))


def lower_conv2d_grad_filters(ctx: KernelCtx) -> None:
    from . import kernels_conv_gemm as CG

    if CG.applies(ctx, ctx.g.operands(ctx.n)[:2]):
        return CG.lower_conv2d_grad_filters(ctx)
    g, n, b = ctx.g, ctx.n, ctx.b
    xn, gyn = g.operands(n)[:2]
    od = g.type(n).dtype
    pad, stride, dil = conv_params("conv2d_grad_filters", g.attrs(n))
    flip = bool(g.attrs(n)["filter_flip"])
    X, GY, GW = ctx.refs[xn], ctx.refs[gyn], ctx.out
    N, C, H, Wd = X.dims
    _, O, OH, OW = GY.dims
    KH, KW = GW.dims[2:]

    def body(idx):
        o, c, a, bb = idx
        i0, i1 = _range(b, a, pad[0], stride[0], dil[0], H, OH)
        j0, j1 = _range(b, bb, pad[1], stride[1], dil[1], Wd, OW)

        def over_n(nn, accs):
            def over_i(i, accs_i):
                r = _pos(b, i, a, pad[0], stride[0], dil[0])

                def over_j(j, accs_j):
                    s = _pos(b, j, bb, pad[1], stride[1], dil[1])
                    xv = cast(b, X.load(b, [nn, c, r, s]), X.dtype, od)
                    gv = cast(b, GY.load(b, [nn, o, i, j]), GY.dtype, od)
                    return [_fma_acc(b, accs_j[0], xv, gv)]
                return _ranged_loop(b, j0, j1, accs_i, over_j, "j")
            return _ranged_loop(b, i0, i1, accs, over_i, "i")
        (acc,) = u.reduction_loop(b, N, [u.const(od, 0)], over_n, name="n")
        GW.store(b, acc, [o, c, _tap(b, a, flip, KH), _tap(b, bb, flip, KW)])
    u.loop_nest(b, [O, C, KH, KW], body, name="t")


def _ranged_loop(b, lo, hi, accs, step, name):
    """A carried loop over [lo, hi): ``step(i, accs) -> accs``."""
    n = b.sub(hi, lo)
    n = b.select(b.icmp_signed("<", n, _c(0)), _c(0), n)
    return u.reduction_loop(b, n, accs, lambda k, a: step(b.add(lo, k), a), name=name)
