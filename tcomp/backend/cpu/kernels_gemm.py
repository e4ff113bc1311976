"""BLIS-style GEMM for float32/float64 ``matmul``: packed, cache-blocked, register-tiled.

Shape of the generated code (one copy per dtype and blocking per module, shared by every
matmul kernel of the module):

``tcomp_gemm_<cfg>(M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc, bufA, bufB)``
    C[M, N] = A[M, K] @ B[K, N] for any element strides of A, B and C (a transposed
    operand is a strided view today, so transposes cost nothing but the packing, which
    reads them in their own order; C is strided when the kernel computes C^T = B^T A^T,
    which it does when N is below NR and M is not, e.g. the 10-class layer of an MLP).
    Loops, outer to inner: NC columns (jc), KC depth (pc, balanced so the last block is
    not a sliver): pack B[pc, jc] into KC x NR panels (zero padded); MC rows (ic): pack A
    into MR x KC panels; then NR x MR micro-tiles.  The B panel of a tile stays in L1/L2 across the MR loop, the A block
    in L2, the packed B block in L3.
``tcomp_ukr_<cfg>(kc, Ap, Bp, C, rsc, csc, accumulate, mv, nv)``
    the micro-kernel: MR x (NR/W) accumulator vectors live in registers over all of kc
    (k loop unrolled by hand: the backend compiles with LLVM's unroller off), each step
    one broadcast of A and NR/W vector FMAs per row; partial edge tiles go through a
    stack tile.  It carries ``"min-legal-vector-width"`` so LLVM keeps 512-bit vectors on
    CPUs that prefer 256-bit ones for auto-vectorization (znver4, skylake-avx512).
``tcomp_mm_<cfg>(M, N, K, A, rsa, csa, B, rsb, csb, C, lo, hi)``
    the driver: one product's share ``[lo, hi)`` of the thread split; picks gemv, the
    no-packing loop or the packed GEMM (with its pack buffers).  Each matmul kernel is
    then only a batch loop calling it, so a module with many matmuls compiles the GEMM
    code once (+0.1 s CPU for the MLP training step's module, from +0.4 s with a copy of
    the dispatch per kernel).
``tcomp_narrow_rows_<cfg>`` / ``tcomp_narrow_cols_<cfg>``
    C with at most 16 (AVX2: 8) columns or rows, e.g. a 10-class layer and its weight
    gradient: unpacked register-blocked dots / axpys (packing A to feed a few columns of
    FMAs costs more than the FMAs).
``tcomp_gemv_<cfg>`` / ``tcomp_gemm_small_<dt>``
    matrix-vector (M or N is 1: dot form over contiguous rows, axpy form otherwise) and
    the no-packing i-k-j loop for products too small to repay packing.

Pack buffers: each worker ``malloc``s its own (libc, resolved by the JIT like
``pthread_create``; no C compiler) sized to the call, 64-byte aligned by hand, and frees
them before returning.  The stack is too small for a KC x NC block (MiBs; thread stacks),
and a fixed global per thread would be shared by two Python threads calling one function
at once.  If ``malloc`` fails the product runs on the no-packing path, so memory pressure
only costs speed.

Threads: the kernel splits C into row blocks (M >= N) or column blocks of whole micro
tiles across ``tcomp.config.num_threads`` threads (``parallel.parallel_for``: the
pthread machinery, small products stay on the calling thread); each thread packs its own
operands.  Every element of C is a k-ordered sum computed by the same micro-kernel with
the same KC blocking whatever the thread count, so 1 and N threads give bit-identical
results (a property of this split, not a promise of the API).

Vector width: from the host's features (avx512f -> 512 bits, avx/avx2 -> 256, else 128);
``TCOMP_GEMM_VECTOR_BITS=256`` (or ``kernels_gemm.VECTOR_BITS = 256`` before compiling)
forces narrower code, e.g. for portable ahead-of-time objects.  Cache sizes come from
``/sys/devices/system/cpu/cpu0/cache`` (defaults 32 KiB / 1 MiB / 8 MiB).
"""
from __future__ import annotations

import ctypes
import functools
import os

import llvmlite.binding as llvm
from llvmlite import ir

from tcomp.ir import dtypes as dt

from . import irutil as u
from . import parallel as P
from .kctx import KernelCtx

FAST = ("reassoc", "contract", "nsz")

#: None: from the host features / TCOMP_GEMM_VECTOR_BITS; else 128, 256 or 512
VECTOR_BITS = None
#: products with M*N*K below this run the no-packing loop
SMALL_MNK = 48 ** 3
#: k steps per iteration of the micro-kernel's main loop
UNROLL = 4
#: (MR, vectors per row) per (dtype, vector bits); NR = vectors * lanes
TILES = {("float32", 512): (6, 4), ("float64", 512): (6, 4),
         ("float32", 256): (6, 2), ("float64", 256): (6, 2),
         ("float32", 128): (4, 2), ("float64", 128): (4, 2)}
#: overrides of the cache-derived (MC, KC, NC), for tuning
BLOCKING: dict = {}


def _fast(v):
    v.flags.extend(FAST)
    return v


# -- configuration --------------------------------------------------------------------------


def host_vector_bits() -> int:
    env = os.environ.get("TCOMP_GEMM_VECTOR_BITS", "").strip()
    if VECTOR_BITS is not None or env:
        bits = VECTOR_BITS if VECTOR_BITS is not None else (int(env) if env.isdigit() else env)
        if bits not in (128, 256, 512):
            raise ValueError(f"gemm vector width (TCOMP_GEMM_VECTOR_BITS / kernels_gemm.VECTOR_BITS) must be "
                             f"128, 256 or 512, got {bits!r}")
    else:
        bits = 512
    feats = _host_features()
    if "avx512f" not in feats:
        bits = min(bits, 256 if "avx" in feats else 128)
    return bits


@functools.lru_cache(maxsize=None)
def _host_features() -> frozenset:
    return frozenset(k for k, v in llvm.get_host_cpu_features().items() if v)


@functools.lru_cache(maxsize=None)
def _cache_sizes() -> tuple:
    """(L1d, L2, L3) bytes of cpu0, from sysfs; defaults where it says nothing."""
    sizes = {1: 32 << 10, 2: 1 << 20, 3: 8 << 20}
    root = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for name in os.listdir(root):
            if not name.startswith("index"):
                continue
            d = os.path.join(root, name)
            with open(os.path.join(d, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(d, "level")) as f:
                level = int(f.read())
            with open(os.path.join(d, "size")) as f:
                text = f.read().strip().upper()
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
            size = int(text.rstrip("KMG")) * mult
            if kind in ("Data", "Unified") and level in sizes:
                sizes[level] = size
    except (OSError, ValueError):
        pass
    return sizes[1], sizes[2], sizes[3]


def codegen_key() -> str:
    """What of the generated GEMM code depends on settings rather than on the graph (vector
    width, tiles, blocking from the cache sizes): part of any key that caches compiled code."""
    return "gemm:" + ",".join(Config(d).tag for d in ("float32", "float64")) + f":small{SMALL_MNK}:u{UNROLL}"


class Config:
    """Tile and block sizes for one dtype on this host."""

    def __init__(self, dtype: str):
        self.dtype = dtype
        self.bits = host_vector_bits()
        es = dt.itemsize(dtype)
        self.es = es
        self.W = self.bits // (8 * es)
        self.MR, self.NV = TILES[(dtype, self.bits)]
        self.NR = self.NV * self.W
        #: C with at most this many columns (or rows) runs the narrow kernels (no packing)
        self.narrow = 16 if self.bits == 512 else 8
        l1, l2, l3 = _cache_sizes()
        # KC: a KC x NR micro-panel of B fills L1 (it is reused by MC/MR micro-tiles); float32
        # does twice the FMAs per byte of B, so its panel may be twice L1 and stream from L2
        # (measured on znver4: f32 KC 256 beats 128 by 3-8%, f64 KC 128 beats 256 by 40% at
        # N=256 and ties at 1024)
        kc = (2 if dtype == "float32" else 1) * l1 // (self.NR * es)
        kc = max(64, min(384, kc // 16 * 16))
        # MC: an MC x KC block of A in a quarter of L2; NC: a KC x NC block of B in a quarter of L3
        mc = max(self.MR, min(1024, (l2 // 4) // (kc * es) // self.MR * self.MR))
        nc = max(self.NR, min(8192, (l3 // 4) // (kc * es) // self.NR * self.NR))
        self.MC, self.KC, self.NC = BLOCKING.get(dtype, (mc, kc, nc))
        self.MC = max(self.MR, self.MC // self.MR * self.MR)
        self.NC = max(self.NR, self.NC // self.NR * self.NR)
        self.tag = f"{dtype[0]}{es * 8}_{self.MR}x{self.NR}_{self.MC}_{self.KC}_{self.NC}_v{self.bits}"


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


def _ukr(module, cfg: Config) -> ir.Function:
    name = f"tcomp_ukr_{cfg.tag}"
    if name in module.globals:
        return module.globals[name]
    et = u.value_type(cfg.dtype)
    MR, NV, W, NR, es = cfg.MR, cfg.NV, cfg.W, cfg.NR, cfg.es
    vt = ir.VectorType(et, W)
    fn, b = _new_fn(module, name, [I64, u.PTR, u.PTR, u.PTR, I64, I64, I64, I64, I64], ret=ir.VoidType(),
                    vector_bits=cfg.bits)
    fn.attributes.add("noinline")
    kc, Ap, Bp, C, rsc, csc, accumulate, mv, nv = fn.args
    for a in (Ap, Bp, C):
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
        k0 = b.mul(t, c64(UNROLL))
        for q in range(UNROLL):
            accs = step(b.add(k0, c64(q)), accs)
        return accs

    zero = ir.Constant(vt, [0.0] * W)
    accs = u.reduction_loop(b, b.sdiv(kc, c64(UNROLL)), [zero] * (MR * NV), unrolled, name="kk")
    main = b.mul(b.sdiv(kc, c64(UNROLL)), c64(UNROLL))

    def tail(t, accs):
        return step(b.add(main, t), accs)
    accs = u.reduction_loop(b, b.sub(kc, main), accs, tail, name="kt")

    full = b.and_(b.icmp_signed("==", mv, c64(MR)), b.icmp_signed("==", nv, c64(NR)))
    full = b.and_(full, b.icmp_signed("==", csc, c64(1)))
    add = b.icmp_signed("!=", accumulate, c64(0))
    with b.if_else(full) as (then, other):
        with then:
            for r in range(MR):
                row = _gep(b, C, et, b.mul(c64(r), rsc))
                for v in range(NV):
                    p = _gep(b, row, et, c64(v * W))
                    acc = accs[r * NV + v]
                    old = b.load(p, typ=vt, align=es)
                    val = b.select(add, _fast(b.fadd(acc, old)), acc)
                    b.store(val, p, align=es)
        with other:
            for r in range(MR):
                for v in range(NV):
                    b.store(accs[r * NV + v], _gep(b, tile, et, c64(r * NR + v * W)), align=64)

            def row(r):
                def col(j):
                    p = _gep(b, C, et, b.add(b.mul(r, rsc), b.mul(j, csc)))
                    x = b.load(_gep(b, tile, et, b.add(b.mul(r, c64(NR)), j)), typ=et)
                    with b.if_else(add) as (t2, o2):
                        with t2:
                            b.store(_fast(b.fadd(b.load(p, typ=et), x)), p)
                        with o2:
                            b.store(x, p)
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
        cols = b.and_(b.icmp_signed("==", rsb, c64(1)), full)
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
                    u.for_range(b, c64(NR), col, name="pbj8")
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


def _zero_rect(b, et, M, N, C, rsc, csc):
    zero = ir.Constant(et, 0.0)
    u.for_range(b, M, lambda i: u.for_range(
        b, N, lambda j: b.store(zero, _gep(b, C, et, b.add(b.mul(i, rsc), b.mul(j, csc)))), name="zj"), name="zi")


def _gemm(module, cfg: Config) -> ir.Function:
    name = f"tcomp_gemm_{cfg.tag}"
    if name in module.globals:
        return module.globals[name]
    ukr = _ukr(module, cfg)
    et = u.value_type(cfg.dtype)
    MR, NR, MC, KC, NC = cfg.MR, cfg.NR, cfg.MC, cfg.KC, cfg.NC
    fn, b = _new_fn(module, name, _GEMM_ARGS + [u.PTR, u.PTR], ret=ir.VoidType(), vector_bits=cfg.bits)
    fn.attributes.add("noinline")
    fn.attributes.add("optsize")  # see _new_fn: loops here are vectorized by hand
    M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc, Abuf, Bbuf = fn.args
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

            def ic_block(ic):
                mc = _min(b, mcb, b.sub(M, ic))
                _pack_a(b, cfg, et, mc, kc, _gep(b, A, et, b.add(b.mul(ic, rsa), b.mul(pc, csa))), rsa, csa, Abuf)

                def jr_tile(jr):
                    nv = _min(b, c64(NR), b.sub(nc, jr))
                    bp = _gep(b, Bbuf, et, b.mul(jr, kc))

                    def ir_tile(i):
                        mv = _min(b, c64(MR), b.sub(mc, i))
                        ap = _gep(b, Abuf, et, b.mul(i, kc))
                        cp = _gep(b, C, et, b.add(b.mul(b.add(ic, i), rsc), b.mul(b.add(jc, jr), csc)))
                        b.call(ukr, [kc, ap, bp, cp, rsc, csc, acc, mv, nv])
                    _loop(b, c64(0), mc, MR, ir_tile, "ir")
                _loop(b, c64(0), nc, NR, jr_tile, "jr")
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
    """Sum of a vector's lanes, as a tree (the order is fixed: the same on every call)."""
    lanes = [b.extract_element(v, ir.Constant(u.I32, q)) for q in range(W)]
    while len(lanes) > 1:
        lanes = [_fast(b.fadd(lanes[q], lanes[q + 1])) for q in range(0, len(lanes), 2)]
    return lanes[0]


def _gemv(module, cfg: Config) -> ir.Function:
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


def _narrow_rows(module, cfg: Config) -> ir.Function:
    """C = A @ B for a narrow C (N <= cfg.narrow) and A's rows contiguous: blocks of 4 rows x
    4 columns of C are 16 vector dots over k (the rows of A read from L1 again per column
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
    zero, vzero = ir.Constant(et, 0.0), ir.Constant(vt, [0.0] * W)
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

    def block(i0, j0, R, J):
        rows = [_gep(b, A, et, b.mul(b.add(i0, c64(r)), rsa)) for r in range(R)]
        cols = [_gep(b, Bt, et, b.mul(b.add(j0, c64(q)), K)) for q in range(J)]

        def vstep(t, accs):
            k = b.mul(t, c64(W))
            av = [b.load(_gep(b, rows[r], et, k), typ=vt, align=es) for r in range(R)]
            bv = [b.load(_gep(b, cols[q], et, k), typ=vt, align=es) for q in range(J)]
            return [u.call_intrinsic(b, "fma", av[r], bv[q], accs[r * J + q]) for r in range(R) for q in range(J)]
        accs = u.reduction_loop(b, kv, [vzero] * (R * J), vstep, name="nrk")

        def sstep(t, sums):
            k = b.add(kt, t)
            av = [b.load(_gep(b, rows[r], et, k), typ=et) for r in range(R)]
            bv = [b.load(_gep(b, cols[q], et, k), typ=et) for q in range(J)]
            return [_fast(b.fadd(sums[r * J + q], _fast(b.fmul(av[r], bv[q])))) for r in range(R) for q in range(J)]
        sums = u.reduction_loop(b, b.sub(K, kt), [zero] * (R * J), sstep, name="nrt")
        for r in range(R):
            for q in range(J):
                v = _fast(b.fadd(_hsum(b, accs[r * J + q], W), sums[r * J + q]))
                b.store(v, _gep(b, C, et, b.add(b.mul(b.add(i0, c64(r)), rsc), b.mul(b.add(j0, c64(q)), csc))))

    def rows_of(i0, R):
        nb = b.sdiv(N, c64(4))
        u.for_range(b, nb, lambda t: block(i0, b.mul(t, c64(4)), R, 4), name="nrj")
        u.for_range(b, N, lambda j: block(i0, j, R, 1), start=b.mul(nb, c64(4)), name="nrj1")
    mb = b.sdiv(M, c64(4))
    u.for_range(b, mb, lambda t: rows_of(b.mul(t, c64(4)), 4), name="nri")
    u.for_range(b, M, lambda i: rows_of(i, 1), start=b.mul(mb, c64(4)), name="nri1")
    b.call(free, [raw])
    b.ret_void()
    return fn


def _narrow_cols(module, cfg: Config) -> ir.Function:
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
        for q in range(J):
            for h in range(H):
                for lane in range(W):
                    i = b.add(i0, c64(h * W + lane))
                    b.store(b.extract_element(accs[q * H + h], ir.Constant(u.I32, lane)),
                            _gep(b, C, et, b.add(b.mul(i, rsc), b.mul(b.add(j0, c64(q)), csc))))

    def rows_of(i0):
        nb = b.sdiv(N, c64(4))
        u.for_range(b, nb, lambda t: block(i0, b.mul(t, c64(4)), 4), name="ncj")
        u.for_range(b, N, lambda j: block(i0, j, 1), start=b.mul(nb, c64(4)), name="ncj1")
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


# -- the kernel ----------------------------------------------------------------------------------


def _split(b, cfg: Config, M, N, K):
    """How one product is computed and split across threads, from its dims alone (the
    kernel, which sizes the parallel range, and the driver, which reads its ``[lo, hi)``,
    must agree): gemv when M or N is 1; C^T = B^T A^T when C is narrower than a
    micro-tile but taller (fewer wasted lanes); threads take row blocks (M >= N) or column
    blocks of whole micro-tiles, or 64 outputs of a gemv."""
    is_gemv = b.or_(b.icmp_signed("==", M, c64(1)), b.icmp_signed("==", N, c64(1)))
    narrow = b.and_(b.not_(is_gemv), b.icmp_signed("<=", _min(b, M, N), c64(cfg.narrow)))
    narrow = b.and_(narrow, b.icmp_signed(">=", b.mul(b.mul(M, N), K), c64(SMALL_MNK)))
    swap = b.and_(b.icmp_signed("<", N, c64(cfg.NR)), b.icmp_signed(">", M, N))
    swap = b.select(narrow, b.icmp_signed("<", M, N), swap)  # narrow: the short side is N
    Ms, Ns = b.select(swap, N, M), b.select(swap, M, N)
    split_m = b.or_(narrow, b.icmp_signed(">=", Ms, Ns))
    GV = 64
    tiles = b.select(split_m, _cdiv(b, Ms, cfg.MR), _cdiv(b, Ns, cfg.NR))
    unit = b.select(is_gemv, c64(GV), b.select(split_m, c64(cfg.MR), c64(cfg.NR)))
    units = b.select(is_gemv, _cdiv(b, b.mul(M, N), GV), tiles)
    return is_gemv, narrow, swap, Ms, Ns, split_m, unit, units


def _driver(module, cfg: Config) -> ir.Function:
    """``tcomp_mm_<cfg>(M, N, K, A, rsa, csa, B, rsb, csb, C, lo, hi)``: one product, C
    contiguous (M, N), its share ``[lo, hi)`` of the ``_split`` units: picks gemv, the
    no-packing loop or the packed GEMM (allocating and freeing its pack buffers)."""
    name = f"tcomp_mm_{cfg.tag}"
    if name in module.globals:
        return module.globals[name]
    gemm, small, gemv = _gemm(module, cfg), _gemm_small(module, cfg.dtype), _gemv(module, cfg)
    narrow_rows, narrow_cols = _narrow_rows(module, cfg), _narrow_cols(module, cfg)
    malloc, free = _libc(module)
    et = u.value_type(cfg.dtype)
    fn, b = _new_fn(module, name, [I64, I64, I64, u.PTR, I64, I64, u.PTR, I64, I64, u.PTR, I64, I64],
                    ret=ir.VoidType())
    fn.attributes.add("optsize")
    fn.attributes.add("noinline")
    M, N, K, Ab, rsa, csa, Bb, rsb, csb, Cb, lo, hi = fn.args
    is_gemv, narrow, sw, Ms, Ns, split_m, unit, _ = _split(b, cfg, M, N, K)
    r0, r1 = b.mul(lo, unit), b.mul(hi, unit)
    with b.if_then(is_gemv):
        total = b.mul(M, N)
        y0 = _min(b, r0, total)
        ylen = b.sub(_min(b, r1, total), y0)
        yp = _gep(b, Cb, et, y0)
        with b.if_else(b.icmp_signed("==", N, c64(1))) as (t2, o2):
            with t2:  # (M, K) @ (K,): rows y0.. of A
                b.call(gemv, [ylen, K, _gep(b, Ab, et, b.mul(y0, rsa)), rsa, csa, Bb, rsb, yp])
            with o2:  # (K,) @ (K, N): y = B^T a, columns y0.. of B
                b.call(gemv, [ylen, K, _gep(b, Bb, et, b.mul(y0, csb)), csb, rsb, Ab, csa, yp])
        b.ret_void()
    # the product as computed: C = A @ B, or C^T = B^T @ A^T
    rsa_s, csa_s = b.select(sw, csb, rsa), b.select(sw, rsb, csa)
    rsb_s, csb_s = b.select(sw, csa, rsb), b.select(sw, rsa, csb)
    rsc, csc = b.select(sw, c64(1), N), b.select(sw, N, c64(1))
    As, Bs = b.select(sw, Bb, Ab), b.select(sw, Ab, Bb)
    i0 = b.select(split_m, _min(b, r0, Ms), c64(0))
    m = b.select(split_m, b.sub(_min(b, r1, Ms), i0), Ms)
    j0 = b.select(split_m, c64(0), _min(b, r0, Ns))
    n = b.select(split_m, Ns, b.sub(_min(b, r1, Ns), j0))
    args = [m, n, K, _gep(b, As, et, b.mul(i0, rsa_s)), rsa_s, csa_s, _gep(b, Bs, et, b.mul(j0, csb_s)), rsb_s,
            csb_s, _gep(b, Cb, et, b.add(b.mul(i0, rsc), b.mul(j0, csc))), rsc, csc]
    with b.if_then(narrow):
        with b.if_then(b.and_(b.icmp_signed("==", csa_s, c64(1)), b.icmp_signed(">=", K, c64(2 * cfg.W)))):
            b.call(narrow_rows, args)
            b.ret_void()
        with b.if_then(b.icmp_signed("==", rsa_s, c64(1))):
            b.call(narrow_cols, args)
            b.ret_void()
    small_bb = b.append_basic_block("small")
    with b.if_then(b.icmp_signed(">=", b.mul(b.mul(M, N), K), c64(SMALL_MNK))):
        # pack buffers sized to this share (64 bytes of slack for the alignment)
        kcb = _min(b, c64(cfg.KC), K)
        mcb = _min(b, c64(cfg.MC), b.mul(_cdiv(b, m, cfg.MR), c64(cfg.MR)))
        ncb = _min(b, c64(cfg.NC), b.mul(_cdiv(b, n, cfg.NR), c64(cfg.NR)))
        raw_a = b.call(malloc, [b.add(b.mul(b.mul(mcb, kcb), c64(cfg.es)), c64(64))])
        raw_b = b.call(malloc, [b.add(b.mul(b.mul(ncb, kcb), c64(cfg.es)), c64(64))])
        have = b.and_(b.icmp_unsigned("!=", b.ptrtoint(raw_a, I64), c64(0)),
                      b.icmp_unsigned("!=", b.ptrtoint(raw_b, I64), c64(0)))
        with b.if_then(have):
            def aligned(p):
                return b.inttoptr(b.and_(b.add(b.ptrtoint(p, I64), c64(63)), c64(~63)), u.PTR)
            b.call(gemm, args + [aligned(raw_a), aligned(raw_b)])
            b.call(free, [raw_a])
            b.call(free, [raw_b])
            b.ret_void()
        b.call(free, [raw_a])  # free(NULL) is a no-op; out of memory: the no-packing loop
        b.call(free, [raw_b])
    b.branch(small_bb)
    b.position_at_end(small_bb)
    b.call(small, args)
    b.ret_void()
    return fn


def _as_matrix(ref: u.TensorRef, side: str) -> u.TensorRef:
    """A rank-1 operand as (1, K) (left) or (K, 1) (right)."""
    if ref.ndim != 1:
        return ref
    if side == "a":
        return u.TensorRef(ref.ptr, ref.dtype, [1] + ref.dims, [0] + ref.strides)
    return u.TensorRef(ref.ptr, ref.dtype, ref.dims + [1], ref.strides + [0])


def _operands(ctx: KernelCtx):
    g, n = ctx.g, ctx.n
    a_node, b_node = g.operands(n)
    A, B = _as_matrix(ctx.refs[a_node], "a"), _as_matrix(ctx.refs[b_node], "b")
    return A, B, u.i64(A.dims[-2]), u.i64(A.dims[-1]), u.i64(B.dims[-1]), max(A.ndim, B.ndim) - 2


def lower_gemm(ctx: KernelCtx) -> None:
    """``matmul`` of float32/float64 operands of the output's dtype; anything else (ints,
    mixed dtypes) goes to the generic loops of ``kernels.lower_matmul``.  The kernel only
    sizes the thread split; its worker walks the batch (NumPy broadcasting) and calls the
    module's shared driver once per batch element with its share of the split."""
    g, n = ctx.g, ctx.n
    od = g.type(n).dtype
    if od not in ("float32", "float64") or any(g.type(o).dtype != od for o in g.operands(n)):
        from .kernels import lower_matmul

        return lower_matmul(ctx)
    cfg = Config(od)
    driver = _driver(ctx.fn.module, cfg)
    b = ctx.b
    _, _, M, K, N, batch_nd = _operands(ctx)
    is_gemv, *_, units = _split(b, cfg, M, N, K)
    work = b.mul(u.i64(u.numel(b, ctx.out.dims[:batch_nd])), b.mul(b.mul(M, N), K))
    # work in "elements" for parallel_for's cost model: MACs / 64 (gemm), / 4 (gemv)
    work = b.select(is_gemv, b.sdiv(work, c64(4)), b.sdiv(work, c64(64)))

    def body(lo, hi):
        b = ctx.b
        A, B, M, K, N, batch_nd = _operands(ctx)  # the worker's own dims and strides
        batch_dims = ctx.out.dims[:batch_nd]
        cstrides = u.contiguous_strides(b, batch_dims + [M, N])

        def ptr(ref, bidx):
            off = batch_nd - (ref.ndim - 2)
            idx = ctx.runtime_bcast(ref.dims[:-2], [0 if ref.dims[a] == 1 else bidx[off + a]
                                                    for a in range(ref.ndim - 2)])
            lin = c64(0)
            for i, st in zip(idx, ref.strides[:-2]):
                lin = b.add(lin, b.mul(u.i64(i), u.i64(st)))
            return _gep(b, ref.ptr, u.mem_type(ref.dtype), lin)

        def one_batch(bidx):
            lin = c64(0)
            for i, st in zip(bidx, cstrides[:-2]):
                lin = b.add(lin, b.mul(u.i64(i), u.i64(st)))
            b.call(driver, [M, N, K, ptr(A, bidx), u.i64(A.strides[-2]), u.i64(A.strides[-1]), ptr(B, bidx),
                            u.i64(B.strides[-2]), u.i64(B.strides[-1]), _gep(b, ctx.out.ptr, u.mem_type(od), lin),
                            lo, hi])
        u.loop_nest(b, batch_dims, one_batch, name="bt")

    P.parallel_for(ctx, units, body, work=work)
