"""LLVM IR of the GEMM (see ``kernels_gemm``, which chooses tiles and blocking and
dispatches): the micro-kernel, the packing loops, the blocked product, the no-packing
loop, gemv and the narrow kernels.  Each builder emits its function once per module
(named after the configuration's tag) and returns it; ``cfg`` is a
``kernels_gemm.Config``.
"""
from __future__ import annotations

import ctypes

import llvmlite.binding as llvm
from llvmlite import ir

from . import irutil as u

FAST = ("reassoc", "contract", "nsz")


def _fast(v):
    v.flags.extend(FAST)
    return v


# -- small IR helpers -----------------------------------------------------------------------

I64 = u.I64


def c64(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


def _min(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def _cdiv(b, x, k):
    k = u.i64(k)
    return b.sdiv(b.add(x, b.sub(k, c64(1))), k)


def _gep(b, ptr, et, off):
    return b.gep(ptr, [off], source_etype=et, inbounds=True)


def _new_fn(module, name, args, ret=u.I32, vector_bits=None):
    """An internal helper function.  The packing loops and gemv carry ``optsize``: their
    vector code is written out here, and without it LLVM's loop vectorizer spends ~0.3 s
    per module versioning their strided scalar loops (and turns strided stores into
    scatters); ``optsize`` keeps it from adding run-time checks."""
    fn = ir.Function(module, ir.FunctionType(ret, args), name=name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    if vector_bits:  # llvmlite only knows enum attributes; this string one is valid IR
        set.add(fn.attributes, f'"min-legal-vector-width"="{vector_bits}"')
    return fn, ir.IRBuilder(fn.append_basic_block("entry"))


def _libc(module):
    g = module.globals
    if "malloc" not in g:
        ir.Function(module, ir.FunctionType(u.PTR, [I64]), name="malloc")
        ir.Function(module, ir.FunctionType(ir.VoidType(), [u.PTR]), name="free")
    return g["malloc"], g["free"]


def _register_libc() -> None:
    libc = ctypes.CDLL(None)
    for name in ("malloc", "free"):
        if not llvm.address_of_symbol(name):
            llvm.add_symbol(name, ctypes.cast(getattr(libc, name), ctypes.c_void_p).value)


_register_libc()


def _loop(b, lo, hi, step, body, name):
    """for (x = lo; x < hi; x += step) body(x)  (step a Python int)."""
    n = _cdiv(b, b.sub(u.i64(hi), u.i64(lo)), step)
    u.for_range(b, n, lambda t: body(b.add(u.i64(lo), b.mul(t, c64(step)))), name=name)


# -- the micro-kernel ------------------------------------------------------------------------


def _ukr(module, cfg) -> ir.Function:
    name = f"tcomp_ukr_{cfg.tag}"
    if name in module.globals:
        return module.globals[name]
    et = u.value_type(cfg.dtype)
    MR, NV, W, NR, es = cfg.MR, cfg.NV, cfg.W, cfg.NR, cfg.es
    vt = ir.VectorType(et, W)
    fn, b = _new_fn(module, name, [I64, u.PTR, u.PTR, u.PTR, I64, I64, I64, I64, I64, u.PTR, I64, I64],
                    ret=ir.VoidType(), vector_bits=cfg.bits)
    fn.attributes.add("noinline")
    kc, Ap, Bp, C, rsc, csc, accumulate, mv, nv, D, rsd, csd = fn.args
    for a in (Ap, Bp):
        a.add_attribute("noalias")
    with b.goto_block(fn.entry_basic_block):
        slot = b.alloca(et, size=c64(MR * NR), name="tile")
        slot.align = 64
        tile = b.inttoptr(b.ptrtoint(slot, I64), u.PTR)  # an untyped pointer: vector and scalar accesses
    undef = ir.Constant(vt, ir.Undefined)
    splat = ir.Constant(ir.VectorType(u.I32, W), [0] * W)
    balign = 64 if NR * es % 64 == 0 else es

    def step(k, accs):
        bv = [b.load(_gep(b, Bp, et, b.add(b.mul(k, c64(NR)), c64(v * W))), typ=vt, align=balign)
              for v in range(NV)]
        out = list(accs)
        for r in range(MR):
            a = b.load(_gep(b, Ap, et, b.add(b.mul(k, c64(MR)), c64(r))), typ=et)
            av = b.shuffle_vector(b.insert_element(undef, a, ir.Constant(u.I32, 0)), undef, splat)
            for v in range(NV):
                out[r * NV + v] = u.call_intrinsic(b, "fma", av, bv[v], accs[r * NV + v])
        return out

    def unrolled(t, accs):
        k0 = b.mul(t, c64(cfg.unroll))
        for q in range(cfg.unroll):
            accs = step(b.add(k0, c64(q)), accs)
        return accs

    zero = ir.Constant(vt, [0.0] * W)
    accs = u.reduction_loop(b, b.sdiv(kc, c64(cfg.unroll)), [zero] * (MR * NV), unrolled, name="kk")
    main = b.mul(b.sdiv(kc, c64(cfg.unroll)), c64(cfg.unroll))

    def tail(t, accs):
        return step(b.add(main, t), accs)
    accs = u.reduction_loop(b, b.sub(kc, main), accs, tail, name="kt")

    full = b.and_(b.icmp_signed("==", mv, c64(MR)), b.icmp_signed("==", nv, c64(NR)))
    full = b.and_(full, b.and_(b.icmp_signed("==", csc, c64(1)), b.icmp_signed("==", csd, c64(1))))
    add = b.icmp_signed("!=", accumulate, c64(0))
    with b.if_else(full) as (then, other):
        with then:
            for r in range(MR):
                row = _gep(b, C, et, b.mul(c64(r), rsc))
                drow = _gep(b, D, et, b.mul(c64(r), rsd))
                for v in range(NV):
                    acc = accs[r * NV + v]
                    old = b.load(_gep(b, row, et, c64(v * W)), typ=vt, align=es)
                    val = b.select(add, _fast(b.fadd(acc, old)), acc)
                    b.store(val, _gep(b, drow, et, c64(v * W)), align=es)
        with other:
            for r in range(MR):
                for v in range(NV):
                    b.store(accs[r * NV + v], _gep(b, tile, et, c64(r * NR + v * W)), align=64)

            def row(r):
                def col(j):
                    p = _gep(b, C, et, b.add(b.mul(r, rsc), b.mul(j, csc)))
                    d = _gep(b, D, et, b.add(b.mul(r, rsd), b.mul(j, csd)))
                    x = b.load(_gep(b, tile, et, b.add(b.mul(r, c64(NR)), j)), typ=et)
                    with b.if_else(add) as (t2, o2):
                        with t2:
                            b.store(_fast(b.fadd(b.load(p, typ=et), x)), d)
                        with o2:
                            b.store(x, d)
                u.for_range(b, nv, col, name="ej")
            u.for_range(b, mv, row, name="ei")
    b.ret_void()
    return fn


# -- packing -----------------------------------------------------------------------------


def _pack_b(b, cfg, et, kc, nc, B, rsb, csb, Bp):
    """Bp[p][k][j] = B[k, p*NR + j] (zero beyond nc): panels of kc x NR, NR contiguous.

    Every path writes Bp in order and reads B row- or column-wise with whole vectors where
    it can: a loop with strided stores would be vectorized into AVX-512 scatters, which are
    slow (znver4: ~10x slower packing of a transposed B)."""
    NR, W, NV = cfg.NR, cfg.W, cfg.NV
    vt = ir.VectorType(et, W)
    zero = ir.Constant(et, 0.0)
    TB = 8  # k steps per block of the transposed-B path: one vector load per column
    vt8 = ir.VectorType(et, TB)
    palign = 64 if NR * cfg.es % 64 == 0 else cfg.es

    def panel(p):
        j0 = b.mul(p, c64(NR))
        dst = _gep(b, Bp, et, b.mul(p, b.mul(kc, c64(NR))))
        width = _min(b, c64(NR), b.sub(nc, j0))
        full = b.icmp_signed("==", width, c64(NR))
        rows = b.and_(b.icmp_signed("==", csb, c64(1)), full)
        cols = b.icmp_signed("==", rsb, c64(1))  # (a partial panel too: its columns past width are zeros)
        partial_rows = b.and_(b.icmp_signed("==", csb, c64(1)), b.not_(b.or_(full, cols)))
        with b.if_else(partial_rows) as (pr, whole):
            with pr:
                def prow(k):  # the last, partial panel of row-contiguous B: width copies, then zeros
                    src = _gep(b, B, et, b.add(b.mul(k, rsb), j0))
                    d = _gep(b, dst, et, b.mul(k, c64(NR)))
                    u.for_range(b, width, lambda j: b.store(b.load(_gep(b, src, et, j), typ=et), _gep(b, d, et, j)),
                                name="pbpj")
                    u.for_range(b, c64(NR), lambda j: b.store(zero, _gep(b, d, et, j)), start=width, name="pbpz")
                u.for_range(b, kc, prow, name="pbpk")
            with whole:
                with b.if_else(rows) as (then, other):
                    with then:  # rows of B contiguous: NV vector copies per k
                        def krow(k):
                            src = _gep(b, B, et, b.add(b.mul(k, rsb), j0))
                            d = _gep(b, dst, et, b.mul(k, c64(NR)))
                            for v in range(NV):
                                x = b.load(_gep(b, src, et, c64(v * W)), typ=vt, align=cfg.es)
                                b.store(x, _gep(b, d, et, c64(v * W)), align=palign)
                        u.for_range(b, kc, krow, name="pbk")
                    with other:
                        kmain = b.select(cols, b.mul(b.sdiv(kc, c64(TB)), c64(TB)), c64(0))

                        def kblock(t):  # a transposed B: TB contiguous k of each column, TB scalar stores
                            k0 = b.mul(t, c64(TB))

                            def col(j):
                                x = b.load(_gep(b, B, et, b.add(b.mul(b.add(j0, j), csb), k0)), typ=vt8, align=cfg.es)
                                for q in range(TB):
                                    d = _gep(b, dst, et, b.add(b.mul(b.add(k0, c64(q)), c64(NR)), j))
                                    b.store(b.extract_element(x, ir.Constant(u.I32, q)), d)
                            u.for_range(b, width, col, name="pbj8")

                            def pad(j):
                                for q in range(TB):
                                    b.store(zero, _gep(b, dst, et, b.add(b.mul(b.add(k0, c64(q)), c64(NR)), j)))
                            u.for_range(b, c64(NR), pad, start=width, name="pbz8")
                        u.for_range(b, b.sdiv(kmain, c64(TB)), kblock, name="pbk8")

                        def krow(k):  # any strides, zero padding beyond the last column
                            def col(j):
                                inside = b.icmp_signed("<", j, width)
                                jj = b.select(inside, b.add(j0, j), c64(0))
                                x = b.load(_gep(b, B, et, b.add(b.mul(k, rsb), b.mul(jj, csb))), typ=et)
                                b.store(b.select(inside, x, zero), _gep(b, dst, et, b.add(b.mul(k, c64(NR)), j)))
                            u.for_range(b, c64(NR), col, name="pbj")
                        u.for_range(b, kc, krow, start=kmain, name="pbk2")
    u.for_range(b, _cdiv(b, nc, NR), panel, name="pbp")


def _pack_a(b, cfg, et, mc, kc, A, rsa, csa, Ap):
    """Ap[p][k][r] = A[p*MR + r, k] (zero beyond mc): panels of MR x kc, MR contiguous,
    written in order (k outer, the MR rows unrolled: MR streams along A's rows)."""
    MR = cfg.MR
    zero = ir.Constant(et, 0.0)

    def panel(p):
        i0 = b.mul(p, c64(MR))
        dst = _gep(b, Ap, et, b.mul(p, b.mul(kc, c64(MR))))
        height = _min(b, c64(MR), b.sub(mc, i0))
        full = b.icmp_signed("==", height, c64(MR))
        srcs = [_gep(b, A, et, b.mul(b.add(i0, c64(r)), rsa)) for r in range(MR)]
        with b.if_else(full) as (then, other):
            with then:
                def kcol(k):
                    d = _gep(b, dst, et, b.mul(k, c64(MR)))
                    off = b.mul(k, csa)
                    for r in range(MR):
                        b.store(b.load(_gep(b, srcs[r], et, off), typ=et), _gep(b, d, et, c64(r)))
                u.for_range(b, kc, kcol, name="pak")
            with other:
                rows = [_gep(b, A, et, b.mul(b.add(i0, b.select(b.icmp_signed("<", c64(r), height), c64(r), c64(0))),
                                                rsa)) for r in range(MR)]

                def kcol2(k):
                    d = _gep(b, dst, et, b.mul(k, c64(MR)))
                    off = b.mul(k, csa)
                    for r in range(MR):
                        x = b.load(_gep(b, rows[r], et, off), typ=et)
                        b.store(b.select(b.icmp_signed("<", c64(r), height), x, zero), _gep(b, d, et, c64(r)))
                u.for_range(b, kc, kcol2, name="pak2")
    u.for_range(b, _cdiv(b, mc, MR), panel, name="pap")


# -- the blocked product ---------------------------------------------------------------------

_GEMM_ARGS = [I64, I64, I64, u.PTR, I64, I64, u.PTR, I64, I64, u.PTR, I64, I64]


def epilogue_type() -> ir.FunctionType:
    """``void epi(ptr env, ptr src, i64 rs, i64 cs, i64 i0, i64 j0, i64 m, i64 n)``: apply a
    kernel's elementwise epilogue to the product's rows ``[i0, i0 + m)`` and columns
    ``[j0, j0 + n)`` (of C as the graph sees it), read from ``src`` with strides (rs, cs)."""
    return ir.FunctionType(ir.VoidType(), [u.PTR, u.PTR, I64, I64, I64, I64, I64, I64])


#: the epilogue arguments of the blocked product: the epilogue (null: none; typed so the
#: indirect call can be emitted), its environment, whether C is the transposed product (1)
#: and the share's offsets in it
EPI_ARGS = [epilogue_type().as_pointer(), u.PTR, I64, I64, I64]


def call_epilogue(b, epi, env, swap, src, rs, cs, p, q, mp, nq) -> None:
    """The epilogue on a block of the computed product: rows ``p..p+mp``, columns
    ``q..q+nq``, stored at ``src`` with strides (rs, cs); when ``swap`` the computed product is
    C^T, so its rows are C's columns."""
    sw = b.icmp_signed("!=", swap, c64(0))
    rs, cs = u.i64(rs), u.i64(cs)
    b.call(epi, [env, src, b.select(sw, cs, rs), b.select(sw, rs, cs), b.select(sw, q, p),
                 b.select(sw, p, q), b.select(sw, nq, mp), b.select(sw, mp, nq)])


def _zero_rect(b, et, M, N, C, rsc, csc):
    zero = ir.Constant(et, 0.0)
    u.for_range(b, M, lambda i: u.for_range(
        b, N, lambda j: b.store(zero, _gep(b, C, et, b.add(b.mul(i, rsc), b.mul(j, csc)))), name="zj"), name="zi")


def _gemm(module, cfg) -> ir.Function:
    name = f"tcomp_gemm_{cfg.tag}"
    if name in module.globals:
        return module.globals[name]
    ukr = _ukr(module, cfg)
    et = u.value_type(cfg.dtype)
    MR, NR, MC, KC, NC = cfg.MR, cfg.NR, cfg.MC, cfg.KC, cfg.NC
    fn, b = _new_fn(module, name, _GEMM_ARGS + [u.PTR, u.PTR, u.PTR] + EPI_ARGS, ret=ir.VoidType(),
                    vector_bits=cfg.bits)
    fn.attributes.add("noinline")
    fn.attributes.add("optsize")  # see _new_fn: loops here are vectorized by hand
    M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc, Abuf, Bbuf, Ebuf, epi, env, swap, po, qo = fn.args
    has_epi = b.icmp_unsigned("!=", b.ptrtoint(epi, I64), c64(0))
    # the final sums of a block go to Ebuf when given (C may share memory with an operand the
    # epilogue reads), else stay in C, where the epilogue reads them and writes its results
    own = b.icmp_unsigned("!=", b.ptrtoint(Ebuf, I64), c64(0))
    EW, EB = cfg.EW, cfg.EB
    gwidth = b.select(own, c64(EB), c64(EW))
    with b.if_then(b.icmp_signed("==", K, c64(0))):
        _zero_rect(b, et, M, N, C, rsc, csc)
        b.ret_void()
    # KC blocks of equal depth: K = 257 is two blocks of 129, not 256 + 1
    nkb = _cdiv(b, K, KC)
    kcb = _cdiv(b, K, nkb)
    # MC blocks likewise, in whole micro-panels: M = 256 is 2 x 128 rows, not 252 + 4
    nmb = _cdiv(b, M, MC)
    mcb = b.mul(_cdiv(b, _cdiv(b, M, nmb), MR), c64(MR))

    def jc_block(jc):
        nc = _min(b, c64(NC), b.sub(N, jc))

        def pc_block(pc):
            kc = _min(b, kcb, b.sub(K, pc))
            _pack_b(b, cfg, et, kc, nc, _gep(b, B, et, b.add(b.mul(pc, rsb), b.mul(jc, csb))), rsb, csb, Bbuf)
            acc = b.zext(b.icmp_signed(">", pc, c64(0)), I64)
            last = b.icmp_signed(">=", b.add(pc, kcb), K)

            def ic_block(ic):
                mc = _min(b, mcb, b.sub(M, ic))
                _pack_a(b, cfg, et, mc, kc, _gep(b, A, et, b.add(b.mul(ic, rsa), b.mul(pc, csa))), rsa, csa, Abuf)

                fin = b.and_(has_epi, last)

                def group(jg):  # EW (EB) columns of micro-panels, then the epilogue on them
                    gw = _min(b, gwidth, b.sub(nc, jg))

                    def jr_tile(jr):
                        nv = _min(b, c64(NR), b.sub(nc, jr))
                        bp = _gep(b, Bbuf, et, b.mul(jr, kc))

                        def ir_tile(i):
                            mv = _min(b, c64(MR), b.sub(mc, i))
                            ap = _gep(b, Abuf, et, b.mul(i, kc))
                            cp = _gep(b, C, et, b.add(b.mul(b.add(ic, i), rsc), b.mul(b.add(jc, jr), csc)))
                            ep = _gep(b, Ebuf, et, b.add(b.mul(i, c64(EB)), b.sub(jr, jg)))
                            to_e = b.and_(fin, own)
                            b.call(ukr, [kc, ap, bp, cp, rsc, csc, acc, mv, nv, b.select(to_e, ep, cp),
                                         b.select(to_e, c64(EB), rsc), b.select(to_e, c64(1), csc)])
                        _loop(b, c64(0), mc, MR, ir_tile, "ir")
                    _loop(b, jg, b.add(jg, gw), NR, jr_tile, "jr")
                    with b.if_then(fin):
                        cg = _gep(b, C, et, b.add(b.mul(ic, rsc), b.mul(b.add(jc, jg), csc)))
                        call_epilogue(b, epi, env, swap, b.select(own, Ebuf, cg), b.select(own, c64(EB), rsc),
                                      b.select(own, c64(1), csc), b.add(po, ic), b.add(qo, b.add(jc, jg)), mc, gw)
                u.for_range(b, _cdiv(b, nc, gwidth), lambda t: group(b.mul(t, gwidth)), name="jg")
            u.for_range(b, _cdiv(b, M, mcb), lambda t: ic_block(b.mul(t, mcb)), name="ic")
        u.for_range(b, nkb, lambda t: pc_block(b.mul(t, kcb)), name="pc")
    _loop(b, c64(0), N, NC, jc_block, "jc")
    b.ret_void()
    return fn


def _gemm_small(module, dtype: str) -> ir.Function:
    """C = A @ B by i-k-j loops, no packing (the inner loop vectorizes over contiguous B rows)."""
    name = f"tcomp_gemm_small_{dtype}"
    if name in module.globals:
        return module.globals[name]
    et = u.value_type(dtype)
    fn, b = _new_fn(module, name, _GEMM_ARGS, ret=ir.VoidType())
    M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc = fn.args
    for a in (A, B, C):
        a.add_attribute("noalias")
    zero = ir.Constant(et, 0.0)

    def row(i):
        crow = _gep(b, C, et, b.mul(i, rsc))
        u.for_range(b, N, lambda j: b.store(zero, _gep(b, crow, et, b.mul(j, csc))), name="sz")

        def kk(k):
            a = b.load(_gep(b, A, et, b.add(b.mul(i, rsa), b.mul(k, csa))), typ=et)
            brow = _gep(b, B, et, b.mul(k, rsb))

            def jj(j):
                p = _gep(b, crow, et, b.mul(j, csc))
                x = b.load(_gep(b, brow, et, b.mul(j, csb)), typ=et)
                b.store(_fast(b.fadd(b.load(p, typ=et), _fast(b.fmul(a, x)))), p)
            u.for_range(b, N, jj, name="sj")
        u.for_range(b, K, kk, name="sk")
    u.for_range(b, M, row, name="si")
    b.ret_void()
    return fn


def _hsum(b, v, W):
    """Sum of a vector's lanes (``llvm.vector.reduce.fadd``, reassociated: a shuffle tree;
    the order is fixed by the code, the same on every call and thread)."""
    et = v.type.element
    fn = u.intrinsic(b.module, f"llvm.vector.reduce.fadd.{u.type_suffix(v.type)}", et, [et, v.type])
    return b.call(fn, [ir.Constant(et, -0.0), v], fastmath=FAST)


def _gemv(module, cfg) -> ir.Function:
    """y[i] = sum_k A[i, k] x[k] for i < M (y contiguous), as its own kernel: no packing, A
    streamed once.  Rows of A contiguous: dots of 4 rows at a time sharing each vector of x
    (2 vector accumulators per row); columns contiguous (a transposed A, or x @ B): y +=
    8 columns at a time, whole (walking one row of A across all columns instead touches a
    new page every column or two: 3x slower at 2048^2); any other strides: scalar dots."""
    name = f"tcomp_gemv_{cfg.tag}"
    if name in module.globals:
        return module.globals[name]
    et = u.value_type(cfg.dtype)
    W = cfg.W
    vt = ir.VectorType(et, W)
    fn, b = _new_fn(module, name, [I64, I64, u.PTR, I64, I64, u.PTR, I64, u.PTR], ret=ir.VoidType(),
                    vector_bits=cfg.bits)
    fn.attributes.add("optsize")  # see _new_fn
    M, K, A, rsa, csa, x, incx, y = fn.args
    for a in (A, x, y):
        a.add_attribute("noalias")
    zero = ir.Constant(et, 0.0)
    vzero = ir.Constant(vt, [0.0] * W)
    undef = ir.Constant(vt, ir.Undefined)
    splat = ir.Constant(ir.VectorType(u.I32, W), [0] * W)
    es = cfg.es

    def dot_rows(i0, R):
        rows = [_gep(b, A, et, b.mul(b.add(i0, c64(r)), rsa)) for r in range(R)]
        kv = b.sdiv(K, c64(2 * W))

        def vstep(t, accs):
            k = b.mul(t, c64(2 * W))
            out = list(accs)
            for q in range(2):
                kq = b.add(k, c64(q * W))
                xv = b.load(_gep(b, x, et, kq), typ=vt, align=es)
                for r in range(R):
                    av = b.load(_gep(b, rows[r], et, kq), typ=vt, align=es)
                    out[r * 2 + q] = u.call_intrinsic(b, "fma", av, xv, accs[r * 2 + q])
            return out
        accs = u.reduction_loop(b, kv, [vzero] * (2 * R), vstep, name="gvk")

        def sstep(k, sums):
            xk = b.load(_gep(b, x, et, k), typ=et)
            return [_fast(b.fadd(sums[r], _fast(b.fmul(b.load(_gep(b, rows[r], et, k), typ=et), xk))))
                    for r in range(R)]
        kt = b.mul(kv, c64(2 * W))
        sums = u.reduction_loop(b, b.sub(K, kt), [zero] * R, lambda t, s_: sstep(b.add(kt, t), s_), name="gsk")
        for r in range(R):
            tot = _fast(b.fadd(_hsum(b, _fast(b.fadd(accs[2 * r], accs[2 * r + 1])), W), sums[r]))
            b.store(tot, _gep(b, y, et, b.add(i0, c64(r))))

    def scalar_row(i):
        def kk(k, accs):
            p = b.load(_gep(b, A, et, b.add(b.mul(i, rsa), b.mul(k, csa))), typ=et)
            q = b.load(_gep(b, x, et, b.mul(k, incx)), typ=et)
            return [_fast(b.fadd(accs[0], _fast(b.fmul(p, q))))]
        (s_,) = u.reduction_loop(b, K, [zero], kk, name="gk")
        b.store(s_, _gep(b, y, et, i))

    dot = b.and_(b.icmp_signed("==", csa, c64(1)), b.icmp_signed("==", incx, c64(1)))
    cols = b.icmp_signed("==", rsa, c64(1))
    R = 4
    with b.if_else(dot) as (then, other):
        with then:
            mb = b.sdiv(M, c64(R))
            u.for_range(b, mb, lambda t: dot_rows(b.mul(t, c64(R)), R), name="gvi")
            u.for_range(b, M, lambda i: dot_rows(i, 1), start=b.mul(mb, c64(R)), name="gvi1")
        with other:
            with b.if_else(cols) as (t2, o2):
                with t2:  # y += A[:, k:k+KB] @ x[k:k+KB]: KB columns stream, y stays in L1
                    u.for_range(b, M, lambda i: b.store(zero, _gep(b, y, et, i)), name="gaz")
                    mv = b.mul(b.sdiv(M, c64(W)), c64(W))

                    def colblock(k0, KB):
                        xk = [b.load(_gep(b, x, et, b.mul(b.add(k0, c64(q)), incx)), typ=et) for q in range(KB)]
                        xv = [b.shuffle_vector(b.insert_element(undef, v, ir.Constant(u.I32, 0)), undef, splat)
                              for v in xk]
                        cols_ = [_gep(b, A, et, b.mul(b.add(k0, c64(q)), csa)) for q in range(KB)]

                        def vrow(t):
                            i = b.mul(t, c64(W))
                            p = _gep(b, y, et, i)
                            acc = b.load(p, typ=vt, align=es)
                            for q in range(KB):
                                av = b.load(_gep(b, cols_[q], et, i), typ=vt, align=es)
                                acc = u.call_intrinsic(b, "fma", av, xv[q], acc)
                            b.store(acc, p, align=es)
                        u.for_range(b, b.sdiv(M, c64(W)), vrow, name="gav")

                        def srow(i):
                            p = _gep(b, y, et, i)
                            acc = b.load(p, typ=et)
                            for q in range(KB):  # fma, as the vector rows: same bits whatever the split
                                acc = u.call_intrinsic(b, "fma", b.load(_gep(b, cols_[q], et, i), typ=et), xk[q], acc)
                            b.store(acc, p)
                        u.for_range(b, M, srow, start=mv, name="gas")
                    KB = 8
                    kb = b.sdiv(K, c64(KB))
                    u.for_range(b, kb, lambda t: colblock(b.mul(t, c64(KB)), KB), name="gak")
                    u.for_range(b, K, lambda k: colblock(k, 1), start=b.mul(kb, c64(KB)), name="gak1")
                with o2:
                    u.for_range(b, M, scalar_row, name="gi")
    b.ret_void()
    return fn


def _narrow_rows(module, cfg) -> ir.Function:
    """C = A @ B for a narrow C (N <= cfg.narrow, M >= 4) and A's rows contiguous: blocks of 4
    rows x 4 columns of C are 16 vector dots over k (the rows of A read from L1 again per column
    block), B^T packed once (N x K, malloc'd; out of memory: the no-packing loop).  The
    packed GEMM would spend more on packing A than on its few columns of FMAs."""
    name = f"tcomp_narrow_rows_{cfg.tag}"
    if name in module.globals:
        return module.globals[name]
    small = _gemm_small(module, cfg.dtype)
    malloc, free = _libc(module)
    et = u.value_type(cfg.dtype)
    W, es = cfg.W, cfg.es
    vt = ir.VectorType(et, W)
    fn, b = _new_fn(module, name, _GEMM_ARGS, ret=ir.VoidType(), vector_bits=cfg.bits)
    fn.attributes.add("noinline")
    M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc = fn.args
    vzero = ir.Constant(vt, [0.0] * W)
    raw = b.call(malloc, [b.add(b.mul(b.mul(N, K), c64(es)), c64(64))])
    with b.if_then(b.icmp_unsigned("==", b.ptrtoint(raw, I64), c64(0))):
        b.call(small, list(fn.args))
        b.ret_void()
    Bt = b.inttoptr(b.and_(b.add(b.ptrtoint(raw, I64), c64(63)), c64(~63)), u.PTR)
    u.for_range(b, K, lambda k: u.for_range(b, N, lambda j: b.store(
        b.load(_gep(b, B, et, b.add(b.mul(k, rsb), b.mul(j, csb))), typ=et),
        _gep(b, Bt, et, b.add(b.mul(j, K), k))), name="ntj"), name="ntk")
    kv = b.sdiv(K, c64(W))
    kt = b.mul(kv, c64(W))
    # the last K % W of each dot: one masked vector step (lanes past K read nothing)
    lane_ids = ir.Constant(ir.VectorType(I64, W), list(range(W)))
    rem = b.sub(K, kt)
    rem_v = b.shuffle_vector(b.insert_element(ir.Constant(ir.VectorType(I64, W), ir.Undefined), rem,
                                              ir.Constant(u.I32, 0)), ir.Constant(ir.VectorType(I64, W), ir.Undefined),
                             ir.Constant(ir.VectorType(u.I32, W), [0] * W))
    mask = b.icmp_signed("<", lane_ids, rem_v)
    mload = u.intrinsic(module, f"llvm.masked.load.{u.type_suffix(vt)}.p0", vt, [u.PTR, u.I32, mask.type, vt])

    def block(i0, j0, J):
        """C[i0:i0+4, j0:j0+J]; row and column blocks overlap at the ends instead of having
        tails (an element recomputed by the same code has the same bits)."""
        R = 4
        rows = [_gep(b, A, et, b.mul(b.add(i0, c64(r)), rsa)) for r in range(R)]
        cols = [_gep(b, Bt, et, b.mul(b.add(j0, c64(q)), K)) for q in range(J)]

        def step(k, accs, load):
            av = [load(_gep(b, rows[r], et, k)) for r in range(R)]
            bv = [load(_gep(b, cols[q], et, k)) for q in range(J)]
            return [u.call_intrinsic(b, "fma", av[r], bv[q], accs[r * J + q]) for r in range(R) for q in range(J)]
        accs = u.reduction_loop(b, kv, [vzero] * (R * J), lambda t, a: step(
            b.mul(t, c64(W)), a, lambda p: b.load(p, typ=vt, align=es)), name="nrk")
        accs = step(kt, accs, lambda p: b.call(mload, [p, ir.Constant(u.I32, es), mask, vzero]))
        for r in range(R):
            for q in range(J):
                b.store(_hsum(b, accs[r * J + q], W),
                        _gep(b, C, et, b.add(b.mul(b.add(i0, c64(r)), rsc), b.mul(b.add(j0, c64(q)), csc))))

    def rows_of(i0):
        with b.if_else(b.icmp_signed(">=", N, c64(4))) as (then, other):
            with then:
                last = b.sub(N, c64(4))
                u.for_range(b, _cdiv(b, N, 4), lambda t: block(i0, _min(b, b.mul(t, c64(4)), last), 4), name="nrj")
            with other:
                u.for_range(b, N, lambda j: block(i0, j, 1), name="nrj1")
    last_i = b.sub(M, c64(4))
    u.for_range(b, _cdiv(b, M, 4), lambda t: rows_of(_min(b, b.mul(t, c64(4)), last_i)), name="nri")
    b.call(free, [raw])
    b.ret_void()
    return fn


def _narrow_cols(module, cfg) -> ir.Function:
    """C = A @ B for a narrow C (N <= cfg.narrow) and A's columns contiguous (a transposed A,
    e.g. h.T @ delta for the weights of a 10-class layer): blocks of 2W rows x 4 columns
    of C in 8 vector accumulators, each k step two vectors of A's column k and 4
    broadcasts of B's row k; no packing."""
    name = f"tcomp_narrow_cols_{cfg.tag}"
    if name in module.globals:
        return module.globals[name]
    et = u.value_type(cfg.dtype)
    W, es = cfg.W, cfg.es
    vt = ir.VectorType(et, W)
    undef = ir.Constant(vt, ir.Undefined)
    splat = ir.Constant(ir.VectorType(u.I32, W), [0] * W)
    fn, b = _new_fn(module, name, _GEMM_ARGS, ret=ir.VoidType(), vector_bits=cfg.bits)
    fn.attributes.add("noinline")
    M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc = fn.args
    zero, vzero = ir.Constant(et, 0.0), ir.Constant(vt, [0.0] * W)
    H = 2
    with b.goto_block(fn.entry_basic_block):
        slot = b.alloca(et, size=c64(4 * H * W), name="tile")
        slot.align = 64
    tile = b.inttoptr(b.ptrtoint(slot, I64), u.PTR)  # untyped: vector stores, scalar loads

    def block(i0, j0, J):
        def kstep(k, accs):
            col = _gep(b, A, et, b.add(b.mul(k, csa), i0))
            av = [b.load(_gep(b, col, et, c64(h * W)), typ=vt, align=es) for h in range(H)]
            brow = _gep(b, B, et, b.mul(k, rsb))
            out = []
            for q in range(J):
                x = b.load(_gep(b, brow, et, b.mul(b.add(j0, c64(q)), csb)), typ=et)
                xv = b.shuffle_vector(b.insert_element(undef, x, ir.Constant(u.I32, 0)), undef, splat)
                out += [u.call_intrinsic(b, "fma", av[h], xv, accs[q * H + h]) for h in range(H)]
            return out
        accs = u.reduction_loop(b, K, [vzero] * (J * H), kstep, name="nck")
        for q in range(J):  # C's column block through a stack tile (compact code, any C strides)
            for h in range(H):
                b.store(accs[q * H + h], _gep(b, tile, et, c64(q * H * W + h * W)), align=es)

        def out_row(t):
            i = b.add(i0, t)
            for q in range(J):
                x = b.load(_gep(b, tile, et, b.add(c64(q * H * W), t)), typ=et)
                b.store(x, _gep(b, C, et, b.add(b.mul(i, rsc), b.mul(b.add(j0, c64(q)), csc))))
        u.for_range(b, c64(H * W), out_row, name="ncs")

    def rows_of(i0):
        nb = b.sdiv(N, c64(4))
        u.for_range(b, nb, lambda t: block(i0, b.mul(t, c64(4)), 4), name="ncj")
        rest, j0 = b.sub(N, b.mul(nb, c64(4))), b.mul(nb, c64(4))
        for J in (1, 2, 3):  # the last N % 4 columns in one block (each block reads A's columns once)
            with b.if_then(b.icmp_signed("==", rest, c64(J))):
                block(i0, j0, J)
    mb = b.sdiv(M, c64(H * W))
    u.for_range(b, mb, lambda t: rows_of(b.mul(t, c64(H * W))), name="nci")

    def tail_row(i):  # the last M % 2W rows: scalar dots
        def one(j):
            def kk(k, acc):
                a = b.load(_gep(b, A, et, b.add(b.mul(i, rsa), b.mul(k, csa))), typ=et)
                x = b.load(_gep(b, B, et, b.add(b.mul(k, rsb), b.mul(j, csb))), typ=et)
                return [u.call_intrinsic(b, "fma", a, x, acc[0])]  # as the vector lanes: same bits
            (v,) = u.reduction_loop(b, K, [zero], kk, name="nctk")
            b.store(v, _gep(b, C, et, b.add(b.mul(i, rsc), b.mul(j, csc))))
        u.for_range(b, N, one, name="nctj")
    u.for_range(b, M, tail_row, start=b.mul(mb, c64(H * W)), name="nct")
    b.ret_void()
    return fn
