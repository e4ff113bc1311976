"""The in-place GEMM path: C = A @ B with neither operand packed, for few rows of C or narrow tall products.

Why: a recurrent step's ``h_{t-1} @ U`` (16 x 128 x 128 in the scan bench) is too small to
repay packing B (K x N copies for M x N x K FMAs: 1/M of the work again) and too wide for the
narrow kernels, which computed it as C^T = U^T h^T: 2W x 4 blocks whose results went out
through a stack tile as 128 scattered scalar stores per block (~13% slower than the packed
micro-kernel's rate).  Here every block of C is ``ROWS`` rows x ``VECS`` vectors of W lanes
(16 accumulators): each k step is ``VECS`` vector loads of B's row k, ``ROWS`` broadcasts
of A's column k and ``ROWS * VECS`` FMAs, and the block is stored as whole vectors of C's
rows.  B's rows must be contiguous (``csb == 1``); A may have any strides (its elements are
broadcast one at a time).  Blocks walk ``MB`` rows of A at a time (in L2), then B's column
panels (``K x VECS*W``, in L1/L2), then C's row blocks, so each panel is read from cache
``MB / ROWS`` times.  When B (K x N) exceeds half of L2 the product runs KC deep at a time
(a KC x N block of B must fit there), the sums carried in C from one k block to the next.

Taller products take it too when they are narrow (``WIDE_N``) and one KC block deep, or
deeper with C within a quarter of L2: there the packed GEMM's packing of A (a load and a
store per element, for N/W FMAs) and of B costs more than broadcasting A in place; the bench
scan's pushed-out ``X W`` (16000 x 128 x 128) and its weight gradients ``X^T dH`` (128 x 128
over 16000 rows) are such.

Edges: in one k block, row and column blocks overlap at the ends instead of having tails
(the last row block starts at ``m - ROWS`` and a block's vectors start at ``min(j0 + v*W,
n - W)``; rows past the share repeat its last row).  An element recomputed by the same code
has the same bits, so the overlap only costs the repeated FMAs.  With several k blocks the
blocks must not overlap (``k_blocked`` in :func:`gemm_rows`); shares narrower than one
vector run scalar FMAs.  Every element of C is the same k-ordered ``fma`` chain from 0 whatever its
place in a block, the block sizes or the thread split: 1 and N threads agree bit for bit.
C must not share memory with A or B (a product's result never does).
"""
from __future__ import annotations

from llvmlite import ir

from . import irutil as u
from .kernels_gemm_ir import _GEMM_ARGS, _cdiv, _gep, _min, _new_fn, c64

#: products with at most this many rows of C take this path (when a KC x N block of B fits in half of L2)
MAX_ROWS = 32
#: rows x vectors of one block of C (ROWS * VECS accumulators in registers)
ROWS, VECS = 4, 4
#: k steps per iteration of a block's loop (the backend compiles with LLVM's unroller off)
UNROLL = 2
#: the driver path bit of this kernel (``kernels_gemm.static_paths``; GEMV, NARROW, PACKED are 1, 2, 4)
ROWS_PATH = 8
#: rows of A per outer block (a multiple of ROWS): they stay in L2 while every panel of B
#: passes over them
MB = 128
#: taller products take this path too when they are one KC block deep and at most this wide
#: (measured on znver4, 1 thread: 256^3 112 GFLOP/s against 100 packed, 2048 x 100 x 50 85
#: against 72; at N = 1024 the rows of B, 4 KiB apart, fight over L1 sets and packing wins)
WIDE_N = 256


def applies(b, cfg, M, N, K, csb):
    """Whether the whole product (M, N, K) takes this path: B's rows contiguous, N at least
    one vector, min(K, KC) x N of B within half of L2, and either 4 <= M <= MAX_ROWS, or
    M >= 4 and N <= WIDE_N and (K <= KC or C within a quarter of L2: its sums carried from
    one k block to the next stay there); packing A then costs more than it saves.  Decided
    from the whole product's dims, not a thread's share, so every share of it runs the same
    code."""
    from .kernels_gemm import _cache_sizes

    l2 = _cache_sizes()[1]
    ok = b.and_(b.icmp_signed(">=", M, c64(ROWS)), b.icmp_signed(">=", N, c64(cfg.W)))
    ok = b.and_(ok, b.icmp_signed("==", csb, c64(1)))
    kb = _min(b, K, c64(cfg.KC))
    ok = b.and_(ok, b.icmp_signed("<=", b.mul(b.mul(kb, N), c64(cfg.es)), c64(l2 // 2)))
    deep = b.and_(b.icmp_signed(">", K, c64(cfg.KC)), b.icmp_signed(">", M, c64(MAX_ROWS)))
    small_c = b.icmp_signed("<=", b.mul(b.mul(M, N), c64(cfg.es)), c64(l2 // 4))
    tall = b.and_(b.icmp_signed("<=", N, c64(WIDE_N)), b.or_(b.not_(deep), small_c))
    return b.and_(ok, b.or_(b.icmp_signed("<=", M, c64(MAX_ROWS)), tall))


def gemm_rows(module, cfg) -> ir.Function:
    """``tcomp_gemm_rows_<cfg>(M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc)``: C = A @ B
    with ``csb == csc == 1`` (not checked here: :func:`applies` and the driver's C are)."""
    name = f"tcomp_gemm_rows_{cfg.tag}"
    if name in module.globals:
        return module.globals[name]
    et = u.value_type(cfg.dtype)
    W, es = cfg.W, cfg.es
    vt = ir.VectorType(et, W)
    undef = ir.Constant(vt, ir.Undefined)
    splat = ir.Constant(ir.VectorType(u.I32, W), [0] * W)
    vzero = ir.Constant(vt, [0.0] * W)
    fn, b = _new_fn(module, name, _GEMM_ARGS, ret=ir.VoidType(), vector_bits=cfg.bits)
    fn.attributes.add("noinline")
    M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc = fn.args
    for a in (A, B, C):
        a.add_attribute("noalias")
    zero = ir.Constant(et, 0.0)
    BW = VECS * W
    KB = cfg.KC
    from .kernels_gemm import _cache_sizes

    def block(i0, j0, clamp, k0, kc, ncols):
        """C[rows, cols] for the ROWS rows from i0 (clamped to the last) and the VECS vectors
        from j0, over k in [k0, k0 + kc) (continuing the sums stored in C unless k0 is 0);
        ``clamp`` (N < VECS * W): each vector's start clamped to end at N, else the vectors
        are at constant offsets from one pointer (fewer live registers in the k loop)."""
        last_row, last_col = b.sub(M, c64(1)), b.sub(ncols, c64(W))
        rows = [_min(b, b.add(i0, c64(r)), last_row) for r in range(ROWS)]
        arows = [_gep(b, A, et, b.add(b.mul(r, rsa), b.mul(k0, csa))) for r in rows]
        if clamp:
            offs = [_min(b, b.add(j0, c64(v * W)), last_col) for v in range(VECS)]
            bbase = _gep(b, B, et, b.mul(k0, rsb))
        else:
            offs = [c64(v * W) for v in range(VECS)]
            bbase = _gep(b, B, et, b.add(j0, b.mul(k0, rsb)))
        crows = [_gep(b, C, et, b.add(b.mul(r, rsc), c64(0) if clamp else j0)) for r in rows]
        first = b.icmp_signed("==", k0, c64(0))
        init = [b.select(first, vzero, b.load(_gep(b, crows[r], et, offs[v]), typ=vt, align=es))
                for r in range(ROWS) for v in range(VECS)]

        def step(k, accs):
            brow = _gep(b, bbase, et, b.mul(k, rsb))
            bv = [b.load(_gep(b, brow, et, o), typ=vt, align=es) for o in offs]
            ko = b.mul(k, csa)
            out = list(accs)
            for r in range(ROWS):
                a = b.load(_gep(b, arows[r], et, ko), typ=et)
                av = b.shuffle_vector(b.insert_element(undef, a, ir.Constant(u.I32, 0)), undef, splat)
                for v in range(VECS):
                    out[r * VECS + v] = u.call_intrinsic(b, "fma", av, bv[v], accs[r * VECS + v])
            return out

        def unrolled(t, accs):
            k0 = b.mul(t, c64(UNROLL))
            for q in range(UNROLL):
                accs = step(b.add(k0, c64(q)), accs)
            return accs
        accs = u.reduction_loop(b, b.sdiv(kc, c64(UNROLL)), init, unrolled, name="gsk")
        kt = b.mul(b.sdiv(kc, c64(UNROLL)), c64(UNROLL))
        accs = u.reduction_loop(b, b.sub(kc, kt), accs, lambda t, a_: step(b.add(kt, t), a_), name="gskt")
        for r in range(ROWS):
            for v in range(VECS):
                b.store(accs[r * VECS + v], _gep(b, crows[r], et, offs[v]), align=es)

    def elem(i, j):  # one element as a scalar fma chain over all of K (the lanes' bits)
        def kk(k, acc):
            a = b.load(_gep(b, A, et, b.add(b.mul(i, rsa), b.mul(k, csa))), typ=et)
            x = b.load(_gep(b, B, et, b.add(b.mul(k, rsb), j)), typ=et)
            return [u.call_intrinsic(b, "fma", a, x, acc[0])]
        (s,) = u.reduction_loop(b, K, [zero], kk, name="gstk")
        b.store(s, _gep(b, C, et, b.add(b.mul(i, rsc), j)))

    def row_blocks(m0, body):  # the ROWS-row blocks of MB rows from m0
        rows_end = _min(b, b.add(m0, c64(MB)), M)
        u.for_range(b, _cdiv(b, b.sub(rows_end, m0), ROWS), lambda s: body(b.add(m0, b.mul(s, c64(ROWS)))),
                    name="gsi")

    def one_block():
        """B within half of L2: all of K in one pass; the last row and column blocks overlap
        the ones before (recomputing their elements, same bits)."""
        last_j, last_i = b.sub(N, c64(BW)), b.sub(M, c64(ROWS))

        def outer(o):  # MB rows of A at a time stay in L2 while every panel of B passes over them
            def panel(j0, clamp):
                row_blocks(b.mul(o, c64(MB)), lambda i0: block(
                    b.select(b.icmp_signed("<", last_i, c64(0)), c64(0), _min(b, i0, last_i)), j0, clamp, c64(0), K, N))
            with b.if_else(b.icmp_signed("<", last_j, c64(0))) as (few, many):
                with few:  # fewer columns than a block: one block, its vectors clamped
                    panel(c64(0), True)
                with many:
                    u.for_range(b, _cdiv(b, N, BW), lambda t: panel(_min(b, b.mul(t, c64(BW)), last_j), False),
                                name="gsj")
        u.for_range(b, _cdiv(b, M, MB), outer, name="gso")

    def k_blocked():
        """KC deep at a time (B's k block, KC x N, stays in L2), the sums carried in C from one
        k block to the next: blocks must not overlap (an overlapping block would read sums
        another block already carried on), so rows past the end repeat the last one, the last
        panel's vectors are clamped to the last whole vector, and the last N % W columns are
        one masked vector per row."""
        nv = b.sub(N, b.srem(N, c64(W)))
        last_i = b.sub(M, c64(1))
        lanes = ir.Constant(ir.VectorType(u.I64, W), list(range(W)))
        rem = b.sub(N, nv)
        rem_v = b.shuffle_vector(b.insert_element(ir.Constant(ir.VectorType(u.I64, W), ir.Undefined), rem,
                                                  ir.Constant(u.I32, 0)),
                                 ir.Constant(ir.VectorType(u.I64, W), ir.Undefined), splat)
        mask = b.icmp_signed("<", lanes, rem_v)
        mload = u.intrinsic(module, f"llvm.masked.load.{u.type_suffix(vt)}.p0", vt, [u.PTR, u.I32, mask.type, vt])
        mstore = u.intrinsic(module, f"llvm.masked.store.{u.type_suffix(vt)}.p0", ir.VoidType(),
                             [vt, u.PTR, u.I32, mask.type])
        align = ir.Constant(u.I32, es)

        def tail(i0, k0, kc):
            """Columns [nv, N) of ROWS rows from i0: one masked vector each (the lanes past N
            neither read nor written)."""
            rows = [_min(b, b.add(i0, c64(r)), last_i) for r in range(ROWS)]
            arows = [_gep(b, A, et, b.add(b.mul(r, rsa), b.mul(k0, csa))) for r in rows]
            crows = [_gep(b, C, et, b.add(b.mul(r, rsc), nv)) for r in rows]
            first = b.icmp_signed("==", k0, c64(0))
            init = [b.select(first, vzero, b.call(mload, [p, align, mask, vzero])) for p in crows]
            bbase = _gep(b, B, et, b.add(nv, b.mul(k0, rsb)))

            def step(k, accs):
                bv = b.call(mload, [_gep(b, bbase, et, b.mul(k, rsb)), align, mask, vzero])
                out = []
                for r in range(ROWS):
                    a = b.load(_gep(b, arows[r], et, b.mul(k, csa)), typ=et)
                    av = b.shuffle_vector(b.insert_element(undef, a, ir.Constant(u.I32, 0)), undef, splat)
                    out.append(u.call_intrinsic(b, "fma", av, bv, accs[r]))
                return out
            accs = u.reduction_loop(b, kc, init, step, name="gkt")
            for r in range(ROWS):
                b.call(mstore, [accs[r], crows[r], align, mask])

        def outer(o):
            def kblock(q):
                k0 = b.mul(q, c64(KB))
                kc = _min(b, c64(KB), b.sub(K, k0))

                def panel(t):
                    j0 = b.mul(t, c64(BW))
                    with b.if_else(b.icmp_signed("<=", b.add(j0, c64(BW)), nv)) as (full, part):
                        for side, clamp in ((full, False), (part, True)):
                            with side:
                                row_blocks(b.mul(o, c64(MB)), lambda i0: block(_min(b, i0, last_i), j0, clamp, k0, kc,
                                                                              nv))
                u.for_range(b, _cdiv(b, nv, BW), panel, name="gkj")
                with b.if_then(b.icmp_signed(">", rem, c64(0))):
                    row_blocks(b.mul(o, c64(MB)), lambda i0: tail(_min(b, i0, last_i), k0, kc))
            u.for_range(b, _cdiv(b, K, KB), kblock, name="gkb")
        u.for_range(b, _cdiv(b, M, MB), outer, name="gko")

    with b.if_else(b.icmp_signed(">=", N, c64(W))) as (wide, thin):
        with wide:
            whole = b.icmp_signed("<=", b.mul(b.mul(K, N), c64(es)), c64(_cache_sizes()[1] // 2))
            with b.if_else(whole) as (one, deep):
                with one:
                    one_block()
                with deep:
                    k_blocked()
        with thin:  # a share narrower than one vector: scalar fma chains
            u.for_range(b, M, lambda i: u.for_range(b, N, lambda j: elem(i, j), name="gstj"), name="gsti")
    b.ret_void()
    return fn


def static_applies(cfg, M, N, K) -> bool:
    """:func:`applies` for Python-int dims (``kernels_gemm.static_paths``), but for B's
    stride, which only the call knows."""
    from .kernels_gemm import _cache_sizes

    l2 = _cache_sizes()[1]
    if M < ROWS or N < cfg.W or min(K, cfg.KC) * N * cfg.es > l2 // 2:
        return False
    return M <= MAX_ROWS or (N <= WIDE_N and (K <= cfg.KC or M * N * cfg.es <= l2 // 4))


def dispatch(b, cfg, rows, M, N, K, A, rsa, csa, B, rsb, csb, C, sw, i0, m, j0, n) -> None:
    """In the GEMM driver (C contiguous (M, N), no epilogue): when :func:`applies`, run this
    thread's share on ``rows`` (the module's declaration of :func:`gemm_rows`) and return.
    The share comes as the driver computes it, rows ``[i0, i0+m)`` and columns ``[j0, j0+n)``
    of C, or of C^T when ``sw`` (the driver's transposed form of narrow products): mapped
    back to C's rows and columns."""
    et = u.value_type(cfg.dtype)
    with b.if_then(applies(b, cfg, M, N, K, csb)):
        r0, mr = b.select(sw, j0, i0), b.select(sw, n, m)
        q0, nq = b.select(sw, i0, j0), b.select(sw, m, n)
        b.call(rows, [mr, nq, K, _gep(b, A, et, b.mul(r0, rsa)), rsa, csa, _gep(b, B, et, q0), rsb, csb,
                      _gep(b, C, et, b.add(b.mul(r0, N), q0)), N, c64(1)])
        b.ret_void()


__all__ = ["MAX_ROWS", "ROWS_PATH", "applies", "static_applies", "gemm_rows", "dispatch"]
