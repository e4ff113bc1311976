"""Multi-threaded loops for the CPU kernels: one outer range split into static chunks, run
on the process's persistent thread pool (``threadpool.py``, LLVM IR made here, no C
compiler, no libgomp).

Why native threads and not a Python pool: the kernels already run with the GIL released
(ctypes), and a Python pool would add per-chunk Python calls.  Why a pool: the previous
scheme started threads with ``pthread_create`` per loop per call (10-30 us each, more than
a 2^17-element loop takes); the pool's workers are started once, by the first loop that
wants them, and a dispatch costs about a microsecond when they are awake.

Shape of the code for a parallel loop of kernel ``k<n>``:

``kw_<hash>(ptr out..., ptr leaf..., ptr params, i64 lo, i64 hi) -> i32``
    the loop body over ``[lo, hi)``; the *only* place the body is emitted, so one thread
    and N threads run the same instructions on every element (bit-identical results);
``pt_<hash>(ptr argv, i64 lo, i64 hi) -> i32``
    the pool's task: unpacks the kernel's argument pointers (stored once per call in
    ``argv`` on the kernel's stack, shared by every chunk) and calls the worker;
``k<n>``
    decides the thread count *at call time* from the process-wide cell
    ``tcomp_cpu_num_threads`` (``tcomp.config.num_threads``) and the work size: below
    :data:`MIN_PER_THREAD` elements per thread it calls the worker once on the whole range
    (small calls pay one direct call, no pool).  Otherwise it calls
    ``tcomp_cpu_parallel(task, argv, stop, nt, align, pieces)``: chunk 0 on the calling
    thread, chunk ``w`` on worker ``w``; a busy pool (another Python thread's loop, or a loop
    nested in a chunk) runs the whole range inline; see ``threadpool.py`` for fork and for
    descheduled workers.

Where the pool lives: in this process, one JIT library made on the first link of a module
that calls it (``engine.symbol_providers``, so kernel objects from the compile cache share
it too); in an ahead-of-time library, its own hidden copy from :func:`runtime_ir`.
Worker names are content hashes so structurally identical kernels stay byte-identical and
the backend's kernel deduplication keeps working.

Measured with ``python -m tcomp.backend.cpu.pool_bench`` (best call of 3 rounds, NumPy in
the same run; TCOMP_NATIVE_PROGRAM=1) on a 2-vCPU AMD EPYC (Zen 4) VM shared with other jobs,
load average 6-7, 2026-12-01; "before": the same cases on the ``pthread_create``-per-call
code (``tools``-free script with the same timing) minutes earlier::

    case (float32)        1 thread   2 threads  NumPy    before: 1 thread, 2 threads
    elementwise 2^17      56 us      31 us      92 us    56 us, 83 us
    elementwise 2^20      426 us     216 us     790 us   430 us, 472 us
    gemm 256              317 us     168 us     179 us   317 us, 353 us
    gemm 512              2.52 ms    1.23 ms    1.34 ms  2.72 ms, 1.62 ms

Best calls: with the machine this loaded the medians of the 2-thread calls are 0.6-3x the
one-thread time for both versions (the pool's caller then takes back the pieces of a worker
that is not scheduled, so it stays near one thread).  A dispatch of a trivial two-chunk
loop costs 1.5 us with the worker awake, 7-16 us (median) when it must be woken.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import threading

import llvmlite.binding as llvm
from llvmlite import ir

from . import irutil as u
from . import split_module, threadpool

#: below this many elements per thread a loop runs on the calling thread only (2^16 total
#: for two threads, ~30 us of the fused elementwise kernel on one): a dispatch to an awake
#: worker costs ~1.5 us, waking a sleeping one 5-20 us, which smaller kernels cannot repay.
#: Measured: 2^16 elements 34 us -> 18 us at 2 threads; 2^15 split at 2^14 per thread gave
#: 15.7 -> 10.1 us (best), not kept: a woken worker would cost more than it saves
MIN_PER_THREAD = 1 << 15
#: hard cap on threads per loop (records live in a fixed stack array)
MAX_THREADS = 16
#: flat chunks start at multiples of this many elements (whole cache lines, whole vectors)
ALIGN = 64
#: calls a worker's chunk is split into (``parallel_for``'s default)
PIECES = 4

CELL_SYMBOL = "tcomp_cpu_num_threads"
#: the pool's entry point (threadpool.py), defined by :func:`runtime_ir`'s module
POOL_SYMBOL = threadpool.ENTRY
_cell = ctypes.c_int64(1)
_registered = False


def default_num_threads() -> int:
    """``TCOMP_NUM_THREADS`` if set, else the CPUs this process may run on, capped."""
    env = os.environ.get("TCOMP_NUM_THREADS")
    if env:
        return _checked(int(env) if env.strip().lstrip("-").isdigit() else env, "TCOMP_NUM_THREADS")
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_THREADS))


def _checked(n, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{what} must be an int >= 1, got {n!r} ({type(n).__name__})")
    if n < 1:
        raise ValueError(f"{what} must be >= 1, got {n}")
    return min(n, MAX_THREADS)


def set_num_threads(n: int) -> None:
    """Threads a large parallel loop may use from the next kernel call on (capped at MAX_THREADS)."""
    _cell.value = _checked(n, "num_threads")


def get_num_threads() -> int:
    return int(_cell.value)


def _register_symbols() -> None:
    """Tell the JIT where the thread-count cell and the libc entry points the pool's module
    calls are, and how to make the pool (``engine.symbol_providers``: on first link)."""
    global _registered
    if _registered:
        return
    libc = ctypes.CDLL(None)
    for name in ("pthread_create", "pthread_detach", "getpid", "syscall", "sched_yield", "clock_gettime",
                 "sched_getcpu", "sched_getaffinity", "sched_setaffinity"):
        if not llvm.address_of_symbol(name):
            llvm.add_symbol(name, ctypes.cast(getattr(libc, name), ctypes.c_void_p).value)
    llvm.add_symbol(CELL_SYMBOL, ctypes.addressof(_cell))
    from tcomp.runtime import engine

    engine.symbol_providers[POOL_SYMBOL] = _pool_address
    _registered = True


def runtime_ir(*, jit: bool = False) -> str:
    """One LLVM IR module defining every external symbol generated kernels need beyond
    libc/libm/libpthread: the thread-count cell ``tcomp_cpu_num_threads`` (an ``i64``, one
    thread by default) and the thread pool (``threadpool.py``: ``tcomp_cpu_parallel``).

    By default for linking into an ahead-of-time shared library: every symbol ``hidden``, so
    each library has its own pool and cell.  ``jit=True``: the module this process loads
    once into the JIT (:func:`_pool_address`): the pool only, the cell being :data:`_cell`
    (set from Python without a JIT lookup)."""
    m = ir.Module(name="tcomp_cpu_runtime")
    if not jit:
        cell = ir.GlobalVariable(m, u.I64, name=CELL_SYMBOL)
        cell.initializer = ir.Constant(u.I64, 1)
        cell.align = 8
        cell.storage_class = "hidden"  # printed as the visibility: ``@x = hidden global``
    threadpool.emit(m, MAX_THREADS, visibility=None if jit else "hidden")
    return str(m)


_pool_library = None
_pool_lock = threading.Lock()


def _renew_pool_lock() -> None:  # a forked child: the thread that held it is not there
    global _pool_lock
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_pool_lock)


def _pool_address() -> int:
    """The JIT's one pool: its module is compiled and linked once per process, the first
    time a kernel that calls it is linked or prefetched (``engine.prefetch``; under this
    module's lock, not the engine's: other modules compile and link meanwhile)."""
    global _pool_library
    from tcomp.runtime import engine

    with _pool_lock:
        if _pool_library is None:
            import platform

            from tcomp.runtime.cache import source_fingerprint

            # keyed without making the text (llvmlite printing at every start)
            key = f"cpu-pool:{MAX_THREADS}:{platform.machine()}:{source_fingerprint('tcomp.backend.cpu')}"
            # no IR passes and FastISel: 0.008 instead of 0.089 CPU s (O1; O3 0.12; O0 with
            # SelectionDAG 0.032) on a first compile, the same dispatch times (pool_bench, a
            # 2^16-element 2-thread loop at ~5.5 us; znver4, A/B): its time goes to atomics,
            # cache-line transfers and futex calls, not to instruction selection
            lib = engine.compile_ir(lambda: [engine.Part(runtime_ir(jit=True), 0, False, 0)], cache_key=key,
                                    opt_level=0, loop_unrolling=False)
            llvm.add_symbol(POOL_SYMBOL, lib.address(POOL_SYMBOL))
            _pool_library = lib
        return _pool_library.address(POOL_SYMBOL)


def pool_stats() -> dict:
    """The JIT pool's counters (``threadpool.STATS``): workers started by this process,
    loops dispatched, pieces posted to workers, pieces the workers ran, pieces the caller
    took back (no worker had started them), loops run inline (pool busy or nested), moves
    of a worker off the caller's CPU, pieces of the caller's own chunk that workers ran
    (``helped``) and the CPUs the pool last found in the process's mask (``cpus``).
    ``posted == worker_pieces + taken_back`` whenever no loop is running."""
    addr = _pool_library.address(threadpool.STAT) if _pool_library is not None else None
    if addr is None:
        return dict.fromkeys(threadpool.STATS, 0)
    fn = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(addr)
    return {name: int(fn(k)) for k, name in enumerate(threadpool.STATS)}


def set_thread_cap(n: int) -> int:
    """Most threads one loop may use whatever the process's CPU mask says; 0 (the default)
    caps at the CPUs in the mask (``os.sched_getaffinity``, read again every few hundred
    loops), so ``num_threads`` above it never oversubscribes.  Returns the previous value.
    For tests that want several workers on a machine with fewer CPUs."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"thread cap must be an int >= 0, got {n!r}")
    _pool_address()
    fn = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(_pool_library.address(threadpool.CAP))
    return int(fn(n))


_cell.value = default_num_threads()
_register_symbols()


def _declare(module: ir.Module):
    g = module.globals
    if POOL_SYMBOL not in g:
        ir.Function(module, ir.FunctionType(u.I32, [u.PTR, u.PTR, u.I64, u.I64, u.I64, u.I64]), name=POOL_SYMBOL)
        cell = ir.GlobalVariable(module, u.I64, name=CELL_SYMBOL)
        cell.linkage = "external"
        if _pool_library is None:  # a first compile: the pool's library compiles while the module is emitted
            from tcomp.runtime import engine

            engine.prefetch([POOL_SYMBOL])
    return g[POOL_SYMBOL], g[CELL_SYMBOL]


class _Swap:
    """Point a KernelCtx (and its builder) at another function with the same leading
    arguments, so lowering code written for ``k<n>`` emits into the worker unchanged."""

    def __init__(self, ctx, fn):
        self.ctx, self.fn = ctx, fn

    def __enter__(self):
        c = self.ctx
        self.saved = (c.fn, c.params, c._dims, c.outs, c.out, c.refs, c._fail, c.b.block)
        c.fn = self.fn
        c._fail = None
        c.b.position_at_end(self.fn.append_basic_block("entry"))
        c.bind(self.fn)
        return c

    def __exit__(self, *exc):
        c = self.ctx
        c.fn, c.params, c._dims, c.outs, c.out, c.refs, c._fail, block = self.saved
        c.b.position_at_end(block)
        return False


def _intern(module: ir.Module, fn: ir.Function, prefix: str) -> ir.Function:
    """Rename ``fn`` after a hash of its text; reuse an identical function already there."""
    text = str(fn).split("\n", 1)
    key = hashlib.sha1((str(len(fn.args)) + text[1]).encode()).hexdigest()[:16]
    name = f"{prefix}_{key}"
    old = fn.name
    if name in module.globals:
        del module.globals[old]
        return module.globals[name]
    module.globals[name] = module.globals.pop(old)
    fn._name = module.scope.register(name)
    fn.__dict__.pop("_StringReferenceCaching__cached_refstr", None)  # llvmlite caches "@name"
    split_module.remember(fn, text[1])  # (the body does not name the function)
    return fn


def _worker(ctx, body, extra: int = 0) -> ir.Function:
    module = ctx.fn.module
    nptr = ctx.n_out + len(ctx.leaves) + 1 + extra
    fnty = ir.FunctionType(u.I32, [u.PTR] * nptr + [u.I64, u.I64])
    fn = ir.Function(module, fnty, name=f"k{ctx.n}.wtmp")
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    for a, k in zip(fn.args, ctx.fn.args[:nptr - 1 - extra]):  # same promises as the kernel (in-place ones alias)
        if "noalias" in k.attributes:
            a.add_attribute("noalias")
    for a in fn.args[nptr - extra:nptr]:  # the kernel's own scratch arrays
        a.add_attribute("noalias")
    with _Swap(ctx, fn):
        body(fn.args[nptr], fn.args[nptr + 1], *fn.args[nptr - extra:nptr])
        ctx.b.ret(ir.Constant(u.I32, 0))
    return _intern(module, fn, "kw")


def _trampoline(module: ir.Module, worker: ir.Function, nptr: int) -> ir.Function:
    """``i32 pt_<hash>(ptr argv, i64 lo, i64 hi)`` for worker ``kw_<hash>``: the pool's task;
    unpacks the kernel's argument pointers (stored once per call, shared by every chunk) and
    calls the worker."""
    name = "pt_" + worker.name[len("kw_"):]
    if name in module.globals:
        return module.globals[name]
    fn = ir.Function(module, ir.FunctionType(u.I32, [u.PTR, u.I64, u.I64]), name=name)
    fn.linkage = "internal"
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    argv, lo, hi = fn.args
    args = [b.inttoptr(b.load(b.gep(argv, [ir.Constant(u.I64, k)], source_etype=u.I64, inbounds=True), typ=u.I64),
                       u.PTR) for k in range(nptr)]
    b.ret(b.call(worker, args + [lo, hi]))
    return fn


def parallel_for(ctx, stop, body, work=None, align: int = 1, pieces: int = PIECES, extra=()) -> None:
    """Run ``body(lo, hi)`` (emits a loop over ``[lo, hi)`` of an outer range of ``stop``
    iterations) on up to ``num_threads`` threads when ``work`` (elements, an int or i64;
    default ``stop``) is large enough, else once over ``[0, stop)`` on the calling thread.

    ``body`` runs with ``ctx`` pointed at the worker function: it must read dims, refs and
    the output through ``ctx`` (not values captured from the kernel) and return nothing.
    ``pieces``: each worker's chunk is run as this many calls (the caller takes back the ones
    a descheduled worker has not started); 1 where a call has a set-up cost (GEMM packing).
    ``extra``: pointers of the kernel (e.g. a stack array each chunk writes its partial
    results to) handed to every chunk: ``body(lo, hi, *extra_in_the_worker)``.
    """
    b = ctx.b
    module = ctx.fn.module
    nptr = ctx.n_out + len(ctx.leaves) + 1 + len(extra)
    worker = _worker(ctx, body, len(extra))
    tramp = _trampoline(module, worker, nptr)
    pool, cell = _declare(module)
    kargs = list(ctx.fn.args) + list(extra)  # outs..., leaves..., params, extra...
    stop = u.i64(stop)
    work = u.i64(stop if work is None else work)
    with b.goto_block(ctx.fn.entry_basic_block):
        argv = b.alloca(u.I64, size=ir.Constant(u.I64, nptr), name="argv")

    one = ir.Constant(u.I64, 1)
    want = b.load(cell, typ=u.I64)
    by_work = b.sdiv(work, ir.Constant(u.I64, MIN_PER_THREAD))
    nt = _min(b, _min(b, want, by_work), ir.Constant(u.I64, MAX_THREADS))
    nt = _min(b, nt, stop)
    serial_bb = b.append_basic_block("par.serial")
    pool_bb = b.append_basic_block("par.pool")
    done_bb = b.append_basic_block("par.done")
    b.cbranch(b.icmp_signed(">", nt, one), pool_bb, serial_bb)

    b.position_at_end(serial_bb)
    rc_serial = b.call(worker, kargs + [ir.Constant(u.I64, 0), stop])
    serial_end = b.block
    b.branch(done_bb)

    b.position_at_end(pool_bb)
    for k, a in enumerate(kargs):
        b.store(b.ptrtoint(a, u.I64), b.gep(argv, [ir.Constant(u.I64, k)], source_etype=u.I64, inbounds=True))
    rc_pool = b.call(pool, [tramp, argv, stop, nt, ir.Constant(u.I64, max(1, align)),
                            ir.Constant(u.I64, max(1, pieces))])
    pool_end = b.block
    b.branch(done_bb)

    b.position_at_end(done_bb)
    rc = b.phi(u.I32, name="par.rc")
    rc.add_incoming(rc_serial, serial_end)
    rc.add_incoming(rc_pool, pool_end)
    ctx.fail_if(b.icmp_signed("!=", rc, ir.Constant(u.I32, 0)))


def _min(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)
