"""conv2d and its two gradients as packed GEMMs (``kernels_gemm``) on an im2col packing.

For image n, with ``Cols_n[(c, a, b), (i, j)] = x[n, c, i*SH + a*DH - PH, j*SW + b*DW - PW]``
(0 outside the image) and ``Wm[o, (c, a, b)]`` the filters with the taps in the order the
flag ``filter_flip`` reads them:

* forward: ``y_n (O x P) = Wm (O x CKK) @ Cols_n (CKK x P)``, written straight into y;
* input gradient: ``dCols_n = Wm^T @ gy_n``, then col2im adds each entry of dCols_n into gx
  (the transposed walk of im2col);
* filter gradient: ``gWm = sum_n gy_n @ Cols_n^T`` as one product per chunk of images whose
  inner dim runs over (image, position): ``[gy_0 .. gy_k] (O x kP) @ [Cols_0 .. Cols_k]^T``,
  partial products added; threads split Cols' rows (the filter taps).

Why GEMM and not the direct loops (``kernels_conv``): the direct walk streams y (or gx, or
the input and gy for the filters) once per filter tap, so it is bound by memory traffic:
measured 2.6-25 GFLOP/s on the LeNet layers against the GEMM's ~100.  The packing costs
CKK x P writes per image, small next to O x CKK x P multiply-adds.  Forward and input
gradient split chunks of images across threads (each thread packs its own, one product at
a time, chunks keeping the packed operands under ``CHUNK_BYTES``).
Float32/float64 with operands of the output dtype only; anything else keeps the direct
kernels.
"""
from __future__ import annotations

from llvmlite import ir

from tcomp.ir.ops.conv import conv_params

from . import irutil as u
from . import kernels_gemm as GM
from . import kernels_gemm_ir as gir
from . import parallel as P
from .kctx import KernelCtx
from .kernels_conv import _pos, _range
from .kernels_gemm_ir import I64, _gep, c64

#: the filter gradient packs at most this many bytes of (gy, Cols) per product
CHUNK_BYTES = 1 << 20


def applies(ctx: KernelCtx, operands) -> bool:
    od = ctx.g.type(ctx.n).dtype
    return od in ("float32", "float64") and all(ctx.g.type(o).dtype == od for o in operands)


class _Geom:
    """Dims, strides and taps of one conv kernel, read in the function being emitted."""

    def __init__(self, ctx: KernelCtx, op: str, x, w, y, xref=None):
        g, n, b = ctx.g, ctx.n, ctx.b
        self.pad, self.stride, self.dil = conv_params(op, g.attrs(n))
        self.flip = bool(g.attrs(n)["filter_flip"])
        self.N, self.C, self.H, self.Wd = x.dims
        self.O, _, self.KH, self.KW = w.dims
        self.OH, self.OW = y.dims[2:]
        self.P = b.mul(u.i64(self.OH), u.i64(self.OW))
        self.KK = b.mul(u.i64(self.KH), u.i64(self.KW))
        self.CKK = b.mul(u.i64(self.C), self.KK)


def _malloc(ctx, count, es):
    """A 64-byte aligned scratch buffer of ``count`` elements; out of memory: the kernel
    returns its failure code (as a failed bounds check does)."""
    b = ctx.b
    malloc, _ = gir._libc(ctx.fn.module)
    raw = b.call(malloc, [b.add(b.mul(count, c64(es)), c64(64))])
    ctx.fail_if(b.icmp_unsigned("==", b.ptrtoint(raw, I64), c64(0)))
    return raw, b.inttoptr(b.and_(b.add(b.ptrtoint(raw, I64), c64(63)), c64(~63)), u.PTR)


def _free(b, module, raw):
    _, free = gir._libc(module)
    b.call(free, [raw])


def _taps(b, geo: _Geom, body):
    """``body(q, c, a, bb, (i0, i1), (j0, j1))`` for every row q = (c, a, b) of Cols: the
    output rows/columns whose input pixel is inside the image."""
    def tap(idx):
        c, a, bb = idx
        q = b.add(b.mul(c, geo.KK), b.add(b.mul(a, u.i64(geo.KW)), bb))
        body(q, c, a, bb, _range(b, a, geo.pad[0], geo.stride[0], geo.dil[0], geo.H, geo.OH),
             _range(b, bb, geo.pad[1], geo.stride[1], geo.dil[1], geo.Wd, geo.OW))
    u.loop_nest(b, [geo.C, geo.KH, geo.KW], tap, name="q")


def _im2col(b, geo: _Geom, X, nn, dst, ld, et, dtype, qs=None):
    """Cols_n into ``dst`` (row q at ``dst + q * ld``), every entry written once; ``qs``:
    only rows ``[q0, q1)``, row q at ``dst + (q - q0) * ld``."""
    zero = u.const(dtype, 0)

    def body(q, c, a, bb, irange, jrange):
        if qs is None:
            return rows(q, c, a, bb, irange, jrange, q)
        with b.if_then(b.and_(b.icmp_signed(">=", q, qs[0]), b.icmp_signed("<", q, qs[1]))):
            rows(q, c, a, bb, irange, jrange, b.sub(q, qs[0]))

    def rows(q, c, a, bb, irange, jrange, qrow):
        (i0, i1), (j0, j1) = irange, jrange
        rowp = _gep(b, dst, et, b.mul(qrow, ld))

        def orow(i):
            line = _gep(b, rowp, et, b.mul(i, u.i64(geo.OW)))
            inside = b.and_(b.icmp_signed(">=", i, i0), b.icmp_signed("<", i, i1))
            lo = b.select(inside, j0, u.i64(geo.OW))
            hi = b.select(inside, b.select(b.icmp_signed("<", j1, lo), lo, j1), u.i64(geo.OW))
            u.for_range(b, lo, lambda j: u.store_value(b, zero, _gep(b, line, et, j), dtype), name="z0")
            r = _pos(b, i, a, geo.pad[0], geo.stride[0], geo.dil[0])

            def col(j):
                s = _pos(b, j, bb, geo.pad[1], geo.stride[1], geo.dil[1])
                u.store_value(b, X.load(b, [nn, c, r, s]), _gep(b, line, et, j), dtype)
            u.for_range(b, hi, col, start=lo, name="cj")
            u.for_range(b, u.i64(geo.OW), lambda j: u.store_value(b, zero, _gep(b, line, et, j), dtype), start=hi,
                        name="z1")
        u.for_range(b, u.i64(geo.OH), orow, name="ci")
    _taps(b, geo, body)


def _filters(b, geo: _Geom, W, dst, et, dtype, inverse=False):
    """Wm (O x CKK, contiguous) from the stored filters, taps read as ``filter_flip`` says;
    ``inverse``: write the stored filters (W) from Wm instead."""
    def tap(idx):
        o, c, a, bb = idx
        sa = b.sub(b.sub(u.i64(geo.KH), c64(1)), a) if geo.flip else a
        sb = b.sub(b.sub(u.i64(geo.KW), c64(1)), bb) if geo.flip else bb
        p = _gep(b, dst, et, b.add(b.mul(o, geo.CKK), b.add(b.mul(c, geo.KK), b.add(b.mul(a, u.i64(geo.KW)), bb))))
        if inverse:
            W.store(b, u.load_value(b, p, dtype), [o, c, sa, sb])
        else:
            u.store_value(b, W.load(b, [o, c, sa, sb]), p, dtype)
    u.loop_nest(b, [geo.O, geo.C, geo.KH, geo.KW], tap, name="wf")


def _gemm(ctx, cfg, M, N, K, A, rsa, csa, B, rsb, csb, C) -> None:
    """C = A @ B on this thread (the whole product: ``[0, units)`` of the GEMM's split)."""
    b = ctx.b
    driver = GM._driver(ctx.fn.module, cfg)
    units = GM._split(b, cfg, M, N, K)[-1]
    b.call(driver, [M, N, K, A, rsa, csa, B, rsb, csb, C, c64(0), units, GM._null_epi(), ir.Constant(u.PTR, None),
                    c64(0)])


def _chunk(b, geo: _Geom, es: int):
    """Images per product: the packed (CKK + O) x P columns of a chunk under CHUNK_BYTES."""
    per_image = b.mul(b.add(geo.CKK, u.i64(geo.O)), b.mul(geo.P, c64(es)))
    chunk = b.sdiv(c64(CHUNK_BYTES), b.select(b.icmp_signed("<", per_image, c64(1)), c64(1), per_image))
    chunk = b.select(b.icmp_signed(">", chunk, u.i64(geo.N)), u.i64(geo.N), chunk)
    return b.select(b.icmp_signed("<", chunk, c64(1)), c64(1), chunk)


def _gy_columns(b, geo: _Geom, GY, nn, m, dst, ld, et, dtype):
    """gy_n as columns ``m*P .. (m+1)*P`` of the O-row matrix at ``dst`` (row stride ``ld``)."""
    u.loop_nest(b, [geo.O, geo.OH, geo.OW], lambda idx: u.store_value(
        b, GY.load(b, [nn] + idx), _gep(b, dst, et, b.add(b.mul(idx[0], ld), b.add(
            b.mul(m, geo.P), b.add(b.mul(idx[1], u.i64(geo.OW)), idx[2])))), dtype), name="gyc")


def _chunked(ctx, cfg, x, w, y, op, per_chunk):
    """Chunks of images across threads: ``per_chunk(geo, n0, cnt, kp)`` in the worker (its own
    scratch), ``kp`` the columns of a chunk's packed matrices."""
    b = ctx.b
    geo = _Geom(ctx, op, ctx.refs[x] if x is not None else ctx.out, ctx.refs[w], ctx.refs[y] if y is not None
                else ctx.out)
    chunk = _chunk(b, geo, cfg.es)
    nchunks = b.sdiv(b.add(u.i64(geo.N), b.sub(chunk, c64(1))), chunk)
    work = b.mul(b.mul(u.i64(geo.N), u.i64(geo.O)), b.sdiv(b.mul(geo.P, geo.CKK), c64(64)))

    def body(lo, hi):
        b = ctx.b
        geo = _Geom(ctx, op, ctx.refs[x] if x is not None else ctx.out, ctx.refs[w], ctx.refs[y] if y is not None
                    else ctx.out)
        chunk = _chunk(b, geo, cfg.es)
        kp = b.mul(chunk, geo.P)
        state = per_chunk(geo, None, None, kp)  # scratch, allocated once per worker

        def one(t):
            n0 = b.mul(t, chunk)
            end = b.add(n0, chunk)
            cnt = b.sub(b.select(b.icmp_signed("<", end, u.i64(geo.N)), end, u.i64(geo.N)), n0)
            per_chunk(geo, n0, cnt, kp, state)
        u.for_range(b, hi, one, start=lo, name="chunk")
        for raw in state["raw"]:
            _free(b, ctx.fn.module, raw)
    P.parallel_for(ctx, nchunks, body, work=work, pieces=1)


def lower_conv2d(ctx: KernelCtx) -> None:
    """y for a chunk of images: Wm @ [Cols_n0 .. ] (O x cnt*P), then scattered into y's
    (n, o, p) order (one copy per O x CKK multiply-adds)."""
    g, n = ctx.g, ctx.n
    xn, wn = g.operands(n)
    cfg = GM.Config(g.type(n).dtype)
    et, dtype = u.value_type(cfg.dtype), cfg.dtype

    def per_chunk(geo, n0, cnt, kp, state=None):
        b = ctx.b
        X, W, Y = ctx.refs[xn], ctx.refs[wn], ctx.out
        if state is None:
            raw_w, wm = _malloc(ctx, b.mul(u.i64(geo.O), geo.CKK), cfg.es)
            raw_c, cols = _malloc(ctx, b.mul(geo.CKK, kp), cfg.es)
            raw_y, yc = _malloc(ctx, b.mul(u.i64(geo.O), kp), cfg.es)
            _filters(b, geo, W, wm, et, dtype)
            return {"raw": (raw_w, raw_c, raw_y), "wm": wm, "cols": cols, "yc": yc}
        cols, yc = state["cols"], state["yc"]
        u.for_range(b, cnt, lambda m: _im2col(b, geo, X, b.add(n0, m), _gep(b, cols, et, b.mul(m, geo.P)), kp, et,
                                              dtype), name="img")
        _gemm(ctx, cfg, u.i64(geo.O), b.mul(cnt, geo.P), geo.CKK, state["wm"], geo.CKK, c64(1), cols, kp, c64(1), yc)
        ldy = b.mul(cnt, geo.P)  # (the product's row stride: C is contiguous O x cnt*P)
        u.loop_nest(b, [cnt, u.i64(geo.O), geo.P], lambda idx: u.store_value(
            b, u.load_value(b, _gep(b, yc, et, b.add(b.mul(idx[1], ldy), b.add(b.mul(idx[0], geo.P), idx[2]))), dtype),
            _gep(b, Y.ptr, et, b.add(b.mul(b.add(n0, idx[0]), b.mul(u.i64(geo.O), geo.P)),
                                     b.add(b.mul(idx[1], geo.P), idx[2]))), dtype), name="ys")
    _chunked(ctx, cfg, xn, wn, None, "conv2d", per_chunk)


def lower_conv2d_grad_input(ctx: KernelCtx) -> None:
    """dCols for a chunk of images: Wm^T @ [gy_n0 .. ] (CKK x cnt*P), then col2im adds each
    entry into gx."""
    g, n = ctx.g, ctx.n
    gyn, wn = g.operands(n)[:2]
    cfg = GM.Config(g.type(n).dtype)
    et, dtype = u.value_type(cfg.dtype), cfg.dtype
    zero = u.const(dtype, 0)

    def per_chunk(geo, n0, cnt, kp, state=None):
        b = ctx.b
        GY, W, GX = ctx.refs[gyn], ctx.refs[wn], ctx.out
        if state is None:
            raw_w, wm = _malloc(ctx, b.mul(u.i64(geo.O), geo.CKK), cfg.es)
            raw_c, dcols = _malloc(ctx, b.mul(geo.CKK, kp), cfg.es)
            raw_g, gyc = _malloc(ctx, b.mul(u.i64(geo.O), kp), cfg.es)
            _filters(b, geo, W, wm, et, dtype)
            return {"raw": (raw_w, raw_c, raw_g), "wm": wm, "dcols": dcols, "gyc": gyc}
        dcols, gyc = state["dcols"], state["gyc"]
        ld = b.mul(cnt, geo.P)
        u.for_range(b, cnt, lambda m: _gy_columns(b, geo, GY, b.add(n0, m), m, gyc, ld, et, dtype), name="img")
        _gemm(ctx, cfg, geo.CKK, ld, u.i64(geo.O), state["wm"], c64(1), geo.CKK, gyc, ld, c64(1), dcols)

        def image(m):
            nn = b.add(n0, m)
            u.loop_nest(b, [geo.C, geo.H, geo.Wd], lambda idx: GX.store(b, zero, [nn] + idx), name="gxz")

            def tap(q, c, a, bb, irange, jrange):
                (i0, i1), (j0, j1) = irange, jrange
                rowp = _gep(b, dcols, et, b.add(b.mul(q, ld), b.mul(m, geo.P)))

                def orow(i):
                    r = _pos(b, i, a, geo.pad[0], geo.stride[0], geo.dil[0])

                    def col(j):
                        s = _pos(b, j, bb, geo.pad[1], geo.stride[1], geo.dil[1])
                        v = u.load_value(b, _gep(b, rowp, et, b.add(b.mul(i, u.i64(geo.OW)), j)), dtype)
                        addr = GX.addr(b, [nn, c, r, s])
                        u.store_value(b, b.fadd(u.load_value(b, addr, dtype), v), addr, dtype)
                    u.for_range(b, j1, col, start=j0, name="sj")
                u.for_range(b, i1, orow, start=i0, name="si")
            _taps(b, geo, tap)
        u.for_range(b, cnt, image, name="c2i")
    _chunked(ctx, cfg, None, wn, gyn, "conv2d_grad_input", per_chunk)


def lower_conv2d_grad_filters(ctx: KernelCtx) -> None:
    """Threads take ranges of Cols' rows (filter taps q): each packs only its rows of Cols
    (and all of gy), and computes its columns of gWm over every chunk of images; the
    threads' results are disjoint entries of gw."""
    g, n = ctx.g, ctx.n
    xn, gyn = g.operands(n)[:2]
    cfg = GM.Config(g.type(n).dtype)
    et, dtype = u.value_type(cfg.dtype), cfg.dtype
    zero = u.const(dtype, 0)

    def geom():
        return _Geom(ctx, "conv2d_grad_filters", ctx.refs[xn], ctx.out, ctx.refs[gyn])
    geo = geom()
    b = ctx.b
    work = b.mul(b.mul(u.i64(geo.N), u.i64(geo.O)), b.sdiv(b.mul(geo.P, geo.CKK), c64(64)))

    def body(lo, hi):
        b, module = ctx.b, ctx.fn.module
        X, GY, GW = ctx.refs[xn], ctx.refs[gyn], ctx.out
        geo = geom()
        qn = b.sub(hi, lo)
        chunk = _chunk(b, geo, cfg.es)
        kp = b.mul(chunk, geo.P)
        raw_c, cols = _malloc(ctx, b.mul(qn, kp), cfg.es)
        raw_g, gyc = _malloc(ctx, b.mul(u.i64(geo.O), kp), cfg.es)
        owk = b.mul(u.i64(geo.O), qn)
        raw_a, gwm = _malloc(ctx, owk, cfg.es)
        raw_t, part = _malloc(ctx, owk, cfg.es)
        u.for_range(b, owk, lambda t: u.store_value(b, zero, _gep(b, gwm, et, t), dtype), name="gz")

        def chunk_of(t):
            n0 = b.mul(t, chunk)
            end = b.add(n0, chunk)
            cnt = b.sub(b.select(b.icmp_signed("<", end, u.i64(geo.N)), end, u.i64(geo.N)), n0)

            def image(m):
                nn = b.add(n0, m)
                _im2col(b, geo, X, nn, _gep(b, cols, et, b.mul(m, geo.P)), kp, et, dtype, qs=(lo, hi))
                _gy_columns(b, geo, GY, nn, m, gyc, kp, et, dtype)
            u.for_range(b, cnt, image, name="img")
            _gemm(ctx, cfg, u.i64(geo.O), qn, b.mul(cnt, geo.P), gyc, kp, c64(1), cols, c64(1), kp, part)
            u.for_range(b, owk, lambda e: u.store_value(b, b.fadd(u.load_value(b, _gep(b, gwm, et, e), dtype),
                                                                  u.load_value(b, _gep(b, part, et, e), dtype)),
                                                        _gep(b, gwm, et, e), dtype), name="gacc")
        u.for_range(b, b.sdiv(b.add(u.i64(geo.N), b.sub(chunk, c64(1))), chunk), chunk_of, name="chunk")

        def out(idx):  # gw[o, c, tap a, tap b] (flipped as filter_flip says) = gWm[o, q]
            o, t = idx
            q = b.add(lo, t)
            c, rem = b.sdiv(q, geo.KK), b.srem(q, geo.KK)
            a, bb = b.sdiv(rem, u.i64(geo.KW)), b.srem(rem, u.i64(geo.KW))
            sa = b.sub(b.sub(u.i64(geo.KH), c64(1)), a) if geo.flip else a
            sb = b.sub(b.sub(u.i64(geo.KW), c64(1)), bb) if geo.flip else bb
            GW.store(b, u.load_value(b, _gep(b, gwm, et, b.add(b.mul(o, qn), t)), dtype), [o, c, sa, sb])
        u.loop_nest(b, [u.i64(geo.O), qn], out, name="gwo")
        for raw in (raw_c, raw_g, raw_a, raw_t):
            _free(b, module, raw)
    P.parallel_for(ctx, geo.CKK, body, work=work, pieces=1)
