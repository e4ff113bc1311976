"""BLIS-style GEMM for float32/float64 ``matmul``: packed, cache-blocked, register-tiled.

Shape of the generated code (one copy per dtype and blocking per module, shared by every
matmul kernel of the module; this file chooses and dispatches, ``kernels_gemm_ir.py``
builds the functions):

``tcomp_gemm_<cfg>(M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc, bufA, bufB)``
    C[M, N] = A[M, K] @ B[K, N] for any element strides of A, B and C (a transposed
    operand is a strided view today, so transposes cost nothing but the packing, which
    reads them in their own order; C is strided when the kernel computes C^T = B^T A^T,
    which it does when N is below NR and M is not, e.g. the 10-class layer of an MLP).
    Loops, outer to inner: NC columns (jc), KC depth (pc, balanced so the last block is
    not a sliver): pack B[pc, jc] into KC x NR panels (zero padded); MC rows (ic): pack A
    into MR x KC panels; then NR x MR micro-tiles.  The B panel of a tile stays in L1/L2 across the MR loop, the A block
    in L2, the packed B block in L3.
``tcomp_ukr_<cfg>(kc, Ap, Bp, C, rsc, csc, accumulate, mv, nv, D, rsd, csd)``
    the micro-kernel (D = its sums, plus C's when accumulating; D is C but for the last KC
    block of a product with an epilogue): MR x (NR/W) accumulator vectors live in registers over all of kc
    (k loop unrolled by hand: the backend compiles with LLVM's unroller off), each step
    one broadcast of A and NR/W vector FMAs per row; partial edge tiles go through a
    stack tile.  It carries ``"min-legal-vector-width"`` so LLVM keeps 512-bit vectors on
    CPUs that prefer 256-bit ones for auto-vectorization (znver4, skylake-avx512).
``tcomp_mm_<cfg>_p<paths>[e](M, N, K, A, rsa, csa, B, rsb, csb, C, lo, hi, epi, env, flags)``
    the driver: one product's share ``[lo, hi)`` of the thread split; picks gemv, the
    no-packing loop or the packed GEMM (with its pack buffers) among ``paths`` (with
    static dims, only those the product can take: ``static_paths``).  ``epi`` (null: none)
    is a ``fused`` kernel's elementwise epilogue (``kernels_gemm_epilogue``), called on each
    MC x EW block of C after its last KC block (while it is in L2) or on each block of the
    non-packed paths (``kernels_gemm_tiles``).  Each matmul kernel is then only a batch
    loop calling it.  The drivers and the functions they call are libraries of their own
    (see ``SHARED_RUNTIME``): a JIT module only declares its drivers, and the libraries
    compile (or load from the compile cache) while the module is emitted and compiled.
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
persistent pool, one piece per thread; small products stay on the calling thread); each
thread packs its own operands.  Every element of C is a k-ordered sum computed by the same
micro-kernel with the same KC blocking whatever the thread count, so 1 and N threads give
bit-identical results (a property of this split, not a promise of the API).

Vector width: from the host's features (avx512f -> 512 bits, avx/avx2 -> 256, else 128);
``TCOMP_GEMM_VECTOR_BITS=256`` (or ``kernels_gemm.VECTOR_BITS = 256`` before compiling)
forces narrower code, e.g. for portable ahead-of-time objects.  Cache sizes come from
``/sys/devices/system/cpu/cpu0/cache`` (defaults 32 KiB / 1 MiB / 8 MiB).
"""
from __future__ import annotations

import functools
import os
import threading

import llvmlite.binding as llvm
from llvmlite import ir

from tcomp.ir import dtypes as dt

from . import irutil as u
from . import kernels_gemm_ir as gir
from . import kernels_gemm_small as small_m
from . import kernels_gemm_tiles as tiles
from . import parallel as P
from .kctx import KernelCtx
from .kernels_gemm_ir import I64, _cdiv, _gep, _min, c64

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
#: JIT modules *declare* their drivers (``tcomp_mm_<cfg>_p<paths>``) and the drivers'
#: libraries the components they call (packed GEMM, narrow kernels, gemv, ...): one
#: permanent library per driver or component and configuration (:func:`runtime_ir`, built
#: on first use, cached on disk like any module): a copy per module cost ~0.65 CPU s of
#: LLVM, the bulk of compiling an MLP step.  False: every module defines its own copies.
SHARED_RUNTIME = True
DRIVER_PREFIX = "tcomp_mm_"


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
        #: columns of C an epilogue runs on at a time: whole micro-panels, 512 bytes of each row
        #: (an MC x EW block just stored by the micro-kernel, in L1/L2).  Blocks in half of L2
        #: (EW = 512 f32 columns) made products split by columns across 2 threads ~50 us slower
        #: per call (128x256x512: 236 vs 186 us; M rows of sweeps along each thread's half-rows);
        #: EW = 64 or 128 ran as the plain GEMM at 1 and 2 threads (znver4)
        self.EW = max(self.NR, (512 // es) // self.NR * self.NR)
        #: the same when C may share memory with an epilogue operand (the block's final sums then
        #: go to a stack buffer of MC x EB first, not to C)
        self.EB = max(self.NR, min(self.EW, (128 << 10) // (self.MC * es) // self.NR * self.NR))
        self.unroll = UNROLL
        self.tag = (f"{dtype[0]}{es * 8}_{self.MR}x{self.NR}_{self.MC}_{self.KC}_{self.NC}_e{self.EW}_v{self.bits}"
                    + ("" if UNROLL == 4 else f"_u{UNROLL}"))


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


#: the driver's arguments: M, N, K, A, rsa, csa, B, rsb, csb, C, lo, hi, then the epilogue
#: (null: none), its environment and flags (bit 0: a result may share memory with an operand
#: the epilogue reads, so partial sums of the product must not be kept in C)
_DRIVER_ARGS = [I64, I64, I64, u.PTR, I64, I64, u.PTR, I64, I64, u.PTR, I64, I64,
                gir.epilogue_type().as_pointer(), u.PTR, I64]


#: a driver's paths (the bits of its ``paths``): the components it may call besides the
#: no-packing loop, which every driver has (it is correct for any dims and strides: a path a
#: driver was made without runs there).  A kernel whose dims are static asks only for the
#: paths its product can take (``static_paths``), so the MLP step never compiles gemv.
GEMV, NARROW, PACKED = 1, 2, 4
ROWS = small_m.ROWS_PATH  # the in-place kernel (kernels_gemm_small)
ALL_PATHS = GEMV | NARROW | PACKED | ROWS


def static_paths(cfg: Config, M, N, K) -> int:
    """The driver paths a product of dims M x K @ K x N can take (``ALL_PATHS`` unless the
    three are Python ints): as ``_split`` and the driver decide at run time.  A narrow
    product also gets the packed path: the driver packs a narrow share whose strides suit
    neither narrow kernel (or with fewer than 4 rows)."""
    if not all(isinstance(d, int) for d in (M, N, K)):
        return ALL_PATHS
    if M == 1 or N == 1:
        return GEMV
    rows = ROWS if small_m.static_applies(cfg, M, N, K) else 0
    if M * N * K < SMALL_MNK:
        return rows
    return (NARROW | PACKED if min(M, N) <= cfg.narrow else PACKED) | rows


# -- the runtime components ----------------------------------------------------------------------
#
# The driver's callees are each their own JIT library (one per component and configuration,
# each cached on disk by its own key, compiled on first use, in parallel in the optimizer
# pool): a module declares the ones its drivers call (``_component``) and the engine links
# them from :func:`_runtime_address`.  One library with every component cost ~0.9 CPU s of
# LLVM on the first compile of any GEMM (the MLP step's cold compile: 1.0-1.7 s), most of it
# for paths the MLP never takes (gemv, the epilogue paths).

def _small(module, cfg):
    return gir._gemm_small(module, cfg.dtype)


#: kind -> (symbol name of a configuration, builder(module, cfg) -> its function); the
#: symbols carry the configuration's tag (the no-packing loop: its dtype; it has no blocking)
_COMPONENTS = {
    "gemm": (lambda cfg: f"tcomp_gemm_{cfg.tag}", gir._gemm),
    "small": (lambda cfg: f"tcomp_gemm_small_{cfg.dtype}", _small),
    "gemv": (lambda cfg: f"tcomp_gemv_{cfg.tag}", gir._gemv),
    "narrow_rows": (lambda cfg: f"tcomp_narrow_rows_{cfg.tag}", gir._narrow_rows),
    "narrow_cols": (lambda cfg: f"tcomp_narrow_cols_{cfg.tag}", gir._narrow_cols),
    "epi": (lambda cfg: f"tcomp_gemm_epi_{cfg.tag}", tiles.blocked_epilogue),
    "rows": (lambda cfg: f"tcomp_gemm_rows_{cfg.tag}", small_m.gemm_rows),
}
#: what the engine asks ``_runtime_address`` for (every component symbol starts with one)
COMPONENT_PREFIXES = ("tcomp_gemm_", "tcomp_gemv_", "tcomp_narrow_")
#: LLVM pipeline of each component's library: (O level, loop unrolling).  The packed product
#: and the narrow-columns kernel skip LLVM's IR passes (level 0; code generation stays at
#: the JIT's level): their hot loops are written as vector code in SSA form, and the
#: assembly of the micro-kernel's k loop, the packing loops and the narrow blocks is the
#: same instruction for instruction as at O1/O3 (but for the loop exit test), while the IR
#: passes were 60% of their compile (packed: 0.07 instead of 0.17-0.18 CPU s; znver4), and
#: at O1/O3 the loop vectorizer turned the zero padding of partial panels into scatters.
#: The narrow-rows kernel keeps O1 (its B^T packing is the vectorizer's), the no-packing
#: loop and gemv O3 (their inner loops are the vectorizer's).
#: The drivers (dispatch glue run once per product and thread) skip the IR passes too (0.009
#: instead of 0.019 CPU s each).
RUNTIME_PIPELINE = {"driver": (0, False), "gemm": (0, False), "small": (3, False), "gemv": (3, False),
                    "narrow_rows": (1, False), "narrow_cols": (0, False), "epi": (3, False), "rows": (3, False)}
#: code generation level of a component's library where it is not the JIT's 3: the drivers
#: with FastISel (0.002-0.003 instead of 0.007-0.009 CPU s each; glue run once per product
#: and thread: the x + y*z call overhead and small products' times unchanged, A/B)
RUNTIME_CODEGEN = {"driver": 0}
#: the components a component's library calls in the others' libraries (JIT) instead of
#: compiling its own copy (they fall back to the no-packing loop, e.g. out of memory)
_CALLS = {"narrow_rows": ("small",), "epi": ("small", "narrow_rows", "narrow_cols")}


#: the argument types of the components whose signature is fixed here (the others', e.g. the
#: epilogue path's, are read off a copy built in a scratch module)
_ARG_TYPES = {"gemm": lambda: gir._GEMM_ARGS + [u.PTR, u.PTR, u.PTR] + gir.EPI_ARGS,
              "small": lambda: gir._GEMM_ARGS, "narrow_rows": lambda: gir._GEMM_ARGS,
              "narrow_cols": lambda: gir._GEMM_ARGS, "gemv": lambda: [I64, I64, u.PTR, I64, I64, u.PTR, I64, u.PTR],
              "rows": lambda: gir._GEMM_ARGS}


@functools.lru_cache(maxsize=None)
def _component_type(kind: str, tag: str) -> ir.FunctionType:
    """A component's function type (``tests/test_gemm.py`` checks each against the
    builder's): written out for the fixed ones (building one to read it costs up to 25 ms
    of the compile), else from a copy built in a scratch module, once per process."""
    if kind in _ARG_TYPES:
        return ir.FunctionType(ir.VoidType(), _ARG_TYPES[kind]())
    cfg = next(c for c in (Config("float32"), Config("float64")) if c.tag == tag)
    return _COMPONENTS[kind][1](ir.Module(name="scratch"), cfg).function_type


def component_names() -> dict:
    """symbol -> (kind, dtype) of every component for the current GEMM settings."""
    out = {}
    for d in ("float32", "float64"):
        cfg = Config(d)
        for kind, (name, _) in _COMPONENTS.items():
            out[name(cfg)] = (kind, d)
    return out


def _component(module, cfg: Config, kind: str, prefetch: bool = True) -> ir.Function:
    """Component ``kind`` for a module: with ``SHARED_RUNTIME``, its definition when the
    module has one (an ahead-of-time runtime module), else an external declaration (the
    engine links it from its library, which starts compiling now, while the module is still
    being emitted, unless not ``prefetch``); without, its own internal copy."""
    name_of, build = _COMPONENTS[kind]
    if not SHARED_RUNTIME:
        return build(module, cfg)
    name = name_of(cfg)
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, _component_type(kind, cfg.tag), name=name)
        fn.attributes.add("nounwind")
        if prefetch:
            from tcomp.runtime import engine

            engine.prefetch([name])
    return fn


def _driver_spec(name: str):
    """(dtype, paths, epilogue) of driver symbol ``name`` for the current settings, or None
    (not a driver, or one of other GEMM settings)."""
    if not name.startswith(DRIVER_PREFIX) or "_p" not in name:
        return None
    tag, _, rest = name[len(DRIVER_PREFIX):].rpartition("_p")
    epilogue = rest.endswith("e")
    if not rest.rstrip("e").isdigit():
        return None
    for d in ("float32", "float64"):
        if Config(d).tag == tag:
            return d, int(rest.rstrip("e")), epilogue
    return None


def _other_settings(name: str) -> RuntimeError:
    return RuntimeError(f"gemm runtime: {name} was compiled with other GEMM settings than the current ones; "
                        f"compile the module again")


def runtime_ir(module_texts, visibility: str | None = None, jit: bool = False) -> str | None:
    """An LLVM IR module defining the GEMM drivers and components that ``module_texts``
    declare (None when they declare none), for the current settings: an ahead-of-time
    library's copy (``visibility='hidden'``; every component its drivers call defined in it
    too) or, with ``jit``, one JIT library, which declares the components it calls."""
    import re

    table = component_names()
    prefixes = "|".join((DRIVER_PREFIX,) + COMPONENT_PREFIXES)
    drivers, wanted = set(), set()
    for text in module_texts:
        for name in re.findall(r'declare [^\n]*@"?((?:' + prefixes + r')[A-Za-z0-9_]+)"?\(', text):
            if name.startswith(DRIVER_PREFIX):
                if _driver_spec(name) is None:
                    raise _other_settings(name)
                drivers.add(name)
            elif name not in table:
                raise _other_settings(name)
            else:
                wanted.add(name)
    if not drivers and not wanted:
        return None
    if not jit and SHARED_RUNTIME:  # the components the drivers call, defined before them
        scratch = ir.Module(name="scratch")
        for name in drivers:
            _driver(scratch, Config(_driver_spec(name)[0]), *_driver_spec(name)[1:], prefetch=False, define=True)
        wanted.update(n for n, gv in scratch.globals.items() if n in table)
    m = ir.Module(name="tcomp_gemm_runtime")
    for name in sorted(wanted):
        kind, dtype = table[name]
        if jit and SHARED_RUNTIME:
            for other in _CALLS.get(kind, ()):
                _component(m, Config(dtype), other)
        fn = _COMPONENTS[kind][1](m, Config(dtype))
        fn.linkage = visibility or ""  # llvmlite prints the linkage text verbatim: 'hidden' is a visibility
    for name in sorted(drivers):
        dtype, paths, epilogue = _driver_spec(name)
        fn = _driver(m, Config(dtype), paths, epilogue, prefetch=jit, define=True)
        fn.linkage = visibility or ""
    return str(m)


_runtime_libraries: dict = {}
_runtime_locks: dict = {}
_runtime_lock = threading.Lock()


def _runtime_address(name: str) -> int:
    """Address of driver or component ``name`` in this process's GEMM runtime (its library compiled
    or loaded from the compile cache on first use, once per process: a second thread asking
    waits for the first).  Not under the engine's lock: the components compile at the same
    time, and a module being linked does not hold up another's compile."""
    from tcomp.runtime import engine

    with _runtime_lock:
        lock = _runtime_locks.setdefault(name, threading.Lock())
    with lock:
        lib = _runtime_libraries.get(name)
        if lib is None:
            table = component_names()
            if name in table:
                kind = table[name][0]
            elif _driver_spec(name) is not None:
                kind = "driver"
            else:
                raise _other_settings(name)
            from tcomp.runtime.cache import source_fingerprint

            opt, unroll = RUNTIME_PIPELINE[kind]
            cg = RUNTIME_CODEGEN.get(kind, 3)
            # keyed without making the text (llvmlite printing at every start)
            key = f"gemm-runtime:{name}:{codegen_key()}:{source_fingerprint('tcomp.backend.cpu')}"
            lib = engine.compile_ir(lambda: [engine.Part(runtime_ir([f'declare void @"{name}"('], jit=True), opt,
                                                         unroll, cg)], cache_key=key,
                                    opt_level=opt, loop_unrolling=unroll)
            _runtime_libraries[name] = lib
        return lib.address(name)


def _register_provider() -> None:
    from tcomp.runtime import engine

    for prefix in (DRIVER_PREFIX,) + COMPONENT_PREFIXES:
        engine.symbol_prefix_providers[prefix] = _runtime_address


_register_provider()


def _after_fork_in_child() -> None:
    """A forked child starts with fresh build locks: a parent's thread that held one while
    building a library does not exist in the child (the child builds what it lacks)."""
    global _runtime_lock
    _runtime_lock = threading.Lock()
    _runtime_locks.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _driver(module, cfg: Config, paths: int = ALL_PATHS, epilogue: bool = False, prefetch: bool = True,
            define: bool = False) -> ir.Function:
    """``tcomp_mm_<cfg>_p<paths>[e](M, N, K, A, rsa, csa, B, rsb, csb, C, lo, hi, epi, env,
    flags)``: one product, C contiguous (M, N), its share ``[lo, hi)`` of the ``_split``
    units: picks gemv, the no-packing loop or the packed GEMM (allocating and freeing its
    pack buffers) among ``paths``.  ``epilogue``: the driver of products with an epilogue
    (``epi`` not null), else of those without (``epi`` null).  With ``SHARED_RUNTIME`` a
    module declares it (its own small library, which starts compiling now unless not
    ``prefetch``: off the program's critical path and shared by programs) unless ``define``
    (:func:`runtime_ir`); the components it calls are their libraries' (``_component``)."""
    name = f"{DRIVER_PREFIX}{cfg.tag}_p{paths}" + ("e" if epilogue else "")
    if name in module.globals:
        return module.globals[name]
    if SHARED_RUNTIME and not define:
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), _DRIVER_ARGS), name=name)
        fn.attributes.add("nounwind")
        if prefetch:
            from tcomp.runtime import engine

            engine.prefetch([name])
        return fn
    comp = functools.partial(_component, module, cfg, prefetch=prefetch)
    small = comp("small")
    gemm = comp("gemm") if paths & PACKED else None
    gemv = comp("gemv") if paths & GEMV else None
    narrow_rows, narrow_cols = (comp("narrow_rows"), comp("narrow_cols")) if paths & NARROW else (None, None)
    rows = comp("rows") if paths & ROWS else None
    if epilogue:  # (the packed product with its epilogue, else the blocked path)
        gemm, blocked = gemm or comp("gemm"), comp("epi")
    malloc, free = gir._libc(module)
    et = u.value_type(cfg.dtype)
    fn, b = gir._new_fn(module, name, _DRIVER_ARGS, ret=ir.VoidType())
    fn.attributes.add("optsize")
    fn.attributes.add("noinline")
    M, N, K, Ab, rsa, csa, Bb, rsb, csb, Cb, lo, hi, epi, env, flags = fn.args
    is_gemv, narrow, sw, Ms, Ns, split_m, unit, _ = _split(b, cfg, M, N, K)
    r0, r1 = b.mul(lo, unit), b.mul(hi, unit)
    if gemv is not None:
        with b.if_then(is_gemv):
            total = b.mul(M, N)
            y0 = _min(b, r0, total)
            ylen = b.sub(_min(b, r1, total), y0)
            if epilogue:
                tiles.gemv_epilogue(b, cfg, gemv, epi, env, M, N, K, Ab, rsa, csa, Bb, rsb, csb, y0, ylen)
                b.ret_void()
            else:
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
    swap = b.zext(sw, I64)
    if epilogue:
        if rows is not None:  # the in-place kernel's chunks of C's rows, then the epilogue on each
            tiles.rows_epilogue(b, cfg, rows, M, N, K, Ab, rsa, csa, Bb, rsb, csb, sw, i0, m, j0, n, epi, env)
        _epilogue_paths(b, cfg, gemm, blocked, malloc, free, args, b.mul(b.mul(M, N), K), narrow, swap, i0, j0,
                        epi, env, flags)
        b.ret_void()
        return fn
    if rows is not None:  # few rows of C, or one KC block and narrow: neither operand packed
        small_m.dispatch(b, cfg, rows, M, N, K, Ab, rsa, csa, Bb, rsb, csb, Cb, sw, i0, m, j0, n)
    if narrow_rows is not None:
        with b.if_then(narrow):
            rows_ok = b.and_(b.icmp_signed("==", csa_s, c64(1)), b.icmp_signed(">=", K, c64(2 * cfg.W)))
            with b.if_then(b.and_(rows_ok, b.icmp_signed(">=", m, c64(4)))):
                b.call(narrow_rows, args)
                b.ret_void()
            with b.if_then(b.icmp_signed("==", rsa_s, c64(1))):
                b.call(narrow_cols, args)
                b.ret_void()
    if gemm is not None:
        small_bb = b.append_basic_block("small")
        with b.if_then(b.icmp_signed(">=", b.mul(b.mul(M, N), K), c64(SMALL_MNK))):
            raw_a, raw_b, have = _pack_buffers(b, cfg, malloc, m, n, K)  # sized to this share
            with b.if_then(have):
                null = ir.Constant(u.PTR, None)
                b.call(gemm, args + [_aligned(b, raw_a), _aligned(b, raw_b), null, _null_epi(), null, c64(0), c64(0),
                                     c64(0)])
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


def _aligned(b, p):
    return b.inttoptr(b.and_(b.add(b.ptrtoint(p, I64), c64(63)), c64(~63)), u.PTR)


def _null_epi():
    return ir.Constant(gir.epilogue_type().as_pointer(), None)


def _pack_buffers(b, cfg, malloc, m, n, K):
    """malloc'd pack buffers for a share of m x n (64 bytes of slack for the alignment) and
    whether both allocations succeeded."""
    kcb = _min(b, c64(cfg.KC), K)
    mcb = _min(b, c64(cfg.MC), b.mul(_cdiv(b, m, cfg.MR), c64(cfg.MR)))
    ncb = _min(b, c64(cfg.NC), b.mul(_cdiv(b, n, cfg.NR), c64(cfg.NR)))
    raw_a = b.call(malloc, [b.add(b.mul(b.mul(mcb, kcb), c64(cfg.es)), c64(64))])
    raw_b = b.call(malloc, [b.add(b.mul(b.mul(ncb, kcb), c64(cfg.es)), c64(64))])
    have = b.and_(b.icmp_unsigned("!=", b.ptrtoint(raw_a, I64), c64(0)),
                  b.icmp_unsigned("!=", b.ptrtoint(raw_b, I64), c64(0)))
    return raw_a, raw_b, have


def _epilogue_paths(b, cfg, gemm, blocked, malloc, free, args, mnk, narrow, swap, i0, j0, epi, env, flags):
    """A share of a product with an epilogue: the packed product (its epilogue per
    micro-tile) when it is large and not narrow, else the blocked no-packing path.  When the
    packed product has several KC blocks its partial sums live in C, or, where a result may
    share memory with an epilogue operand (``flags``), in a malloc'd buffer of the share."""
    m, n, K = args[0], args[1], args[2]
    # (whole-product size, as the plain path: 1 and N threads take the same path)
    packed = b.and_(b.not_(narrow), b.icmp_signed(">=", mnk, c64(SMALL_MNK)))
    with b.if_then(packed):
        raw_a, raw_b, have = _pack_buffers(b, cfg, malloc, m, n, K)
        several = b.icmp_signed(">", K, c64(cfg.KC))
        need_tmp = b.and_(several, b.icmp_signed("!=", b.and_(flags, c64(1)), c64(0)))
        with b.goto_block(b.function.entry_basic_block):
            slot = b.alloca(u.PTR, name="tmpc")
            # (MC x EB elements, ~130 KB: on the stack, as a malloc this size per call is given
            # back to the kernel on free and faults its pages in again at the next call)
            e_slot = b.alloca(u.value_type(cfg.dtype), size=c64(cfg.MC * cfg.EB), name="ebuf")
            e_slot.align = 64
            e_stack = b.inttoptr(b.ptrtoint(e_slot, I64), u.PTR)
        b.store(ir.Constant(u.PTR, None), slot)
        with b.if_then(need_tmp):
            b.store(b.call(malloc, [b.add(b.mul(b.mul(m, n), c64(cfg.es)), c64(64))]), slot)
        raw_c = b.load(slot, typ=u.PTR)
        # C may share memory with an epilogue operand, in one KC block: the final sums of an
        # MC x EW block go to a buffer (in L2) for the epilogue (with several, to the buffer C)
        need_e = b.and_(b.not_(several), b.icmp_signed("!=", b.and_(flags, c64(1)), c64(0)))
        ok = b.and_(have, b.or_(b.not_(need_tmp), b.icmp_unsigned("!=", b.ptrtoint(raw_c, I64), c64(0))))
        with b.if_then(ok):
            tmp = _aligned(b, raw_c)
            cp = b.select(need_tmp, tmp, args[9])
            rsc = b.select(need_tmp, n, args[10])
            csc = b.select(need_tmp, c64(1), args[11])
            ebuf = b.select(need_e, e_stack, ir.Constant(u.PTR, None))
            b.call(gemm, args[:9] + [cp, rsc, csc, _aligned(b, raw_a), _aligned(b, raw_b), ebuf, epi, env, swap, i0,
                                     j0])
            for raw in (raw_a, raw_b, raw_c):
                b.call(free, [raw])
            b.ret_void()
        for raw in (raw_a, raw_b, raw_c):  # free(NULL) is a no-op; out of memory: the blocked path
            b.call(free, [raw])
    b.call(blocked, args + [epi, env, swap, i0, j0, flags, b.zext(narrow, I64)])


def _as_matrix(ref: u.TensorRef, side: str) -> u.TensorRef:
    """A rank-1 operand as (1, K) (left) or (K, 1) (right)."""
    if ref.ndim != 1:
        return ref
    if side == "a":
        return u.TensorRef(ref.ptr, ref.dtype, [1] + ref.dims, [0] + ref.strides)
    return u.TensorRef(ref.ptr, ref.dtype, ref.dims + [1], ref.strides + [0])


def _operands(ctx: KernelCtx):
    g, n = ctx.g, ctx.n
    a_node, b_node = g.operands(n)[:2]  # (a fused kernel starting with a product: its first two)
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
    _lower(ctx, od, None)


def lower_gemm_epilogue(ctx: KernelCtx, epilogue, flags: int) -> None:
    """A ``fused`` kernel that starts with a rank-2 float product (``kernels_gemm_epilogue``):
    the packed GEMM with ``epilogue`` (the kernel's ``void epi(...)``, see
    ``kernels_gemm_ir.epilogue_type``) applied to each tile of C; ``flags`` as the driver's."""
    _lower(ctx, ctx.g.type(ctx.g.operands(ctx.n)[0]).dtype, (epilogue, flags))


def _lower(ctx: KernelCtx, od: str, epilogue) -> None:
    cfg = Config(od)
    b = ctx.b
    A, B, M, K, N, batch_nd = _operands(ctx)
    driver = _driver(ctx.fn.module, cfg, static_paths(cfg, A.dims[-2], B.dims[-1], A.dims[-1]), epilogue is not None)
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

        if epilogue is None:
            epi = [_null_epi(), ir.Constant(u.PTR, None), c64(0)]
        else:  # the epilogue's environment: this worker's kernel arguments (results, leaves, params)
            nptr = ctx.n_out + len(ctx.leaves) + 1
            with b.goto_block(ctx.fn.entry_basic_block):
                env = b.alloca(u.PTR, size=c64(nptr), name="epienv")
            for k, a in enumerate(ctx.fn.args[:nptr]):
                b.store(a, _gep(b, env, u.PTR, c64(k)))
            epi = [epilogue[0], env, c64(epilogue[1])]

        def one_batch(bidx):
            lin = c64(0)
            for i, st in zip(bidx, cstrides[:-2]):
                lin = b.add(lin, b.mul(u.i64(i), u.i64(st)))
            b.call(driver, [M, N, K, ptr(A, bidx), u.i64(A.strides[-2]), u.i64(A.strides[-1]), ptr(B, bidx),
                            u.i64(B.strides[-2]), u.i64(B.strides[-1]), _gep(b, ctx.out.ptr, u.mem_type(od), lin),
                            lo, hi] + epi)
        u.loop_nest(b, batch_dims, one_batch, name="bt")

    P.parallel_for(ctx, units, body, work=work, pieces=1)  # a piece packs its own operands: one per thread
