"""The one process-wide LLVM JIT: ORC ``LLJIT``, one JIT library per compiled module.

Why LLJIT and not MCJIT: MCJIT never gives back a module's machine code (its
``remove_module`` only forgets the IR), so every compiled function stayed resident for the
life of the process.  LLJIT puts each module in its own JIT library with a resource
tracker; dropping the tracker unloads the library.  A second MCJIT engine in the same
process has crashed here (DESIGN.md), so there is exactly one engine, this LLJIT.

Lifetime: :func:`load` returns a :class:`NativeLibrary`; its native code stays valid while
the object is referenced and is freed (under the engine lock) when the last reference
goes.  A compiled function keeps its library, and a running call keeps the function, so
code is never freed under a call in another thread.  :func:`compile_ir` is the permanent
variant (the library lives as long as the process; :func:`function_address` finds its
symbols by name), for small kernels made once, such as the mathlib accuracy tools.

Parsing, O3 and code generation (``emit_object``) run in helper processes
(``optimizer.py``: llvmlite's pass pipeline leaks ~100 KiB per module, so it must not run
in the user's process); this process only links the objects into LLJIT.  A library may be
made of several modules (:class:`Part`) compiled at the same time by several helpers.  With the helper
disabled, each module is parsed and optimized here in its own LLVM context.

With ``cache_key`` (``load``), the object and the symbol tables the linker needs are kept in
the persistent compile cache (``cache.py``): a later process with the same key links the
stored object and skips parsing, O3 and code generation (and, when ``llvm_ir`` is given as a
callable, even making the IR text).
"""
from __future__ import annotations

import _thread
import os
import re
import threading
import weakref
import zlib
from typing import NamedTuple

import llvmlite.binding as llvm

from . import _optimizer_worker as _worker  # imports only llvmlite

_lock = threading.RLock()
_jit = None
_target_machine = None
_initialized = False
#: host CPU name and feature string of the target machine (the optimizer process uses the same)
_host: list = []
_library_ids = iter(range(1, 1 << 62))
#: trackers whose release found the engine busy in another thread: freed by the next engine call
_pending: list = []
#: libraries made by compile_ir: kept for the life of the process
_permanent: list = []
_permanent_addresses: dict = {}
#: libraries loaded and not yet dropped (see live_libraries)
_live = 0
_live_lock = threading.Lock()
#: compile-cache lookups of this process (tests, ``tcomp inspect``): hits, misses, stores
cache_stats = {"hits": 0, "misses": 0, "stores": 0}


def _init_llvm() -> None:
    global _initialized
    if not _initialized:
        # llvmlite >= 0.45 initializes core LLVM itself; only the native target is ours.
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _initialized = True


def target_machine() -> "llvm.TargetMachine":
    """The host target machine (host CPU name and features, so AVX2 etc. are used)."""
    global _target_machine
    with _lock:
        if _target_machine is None:
            _init_llvm()
            target = llvm.Target.from_default_triple()
            _host[:] = [llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()]
            _target_machine = target.create_target_machine(
                cpu=_host[0], features=_host[1], opt=3, reloc="default", codemodel="jitdefault")
        return _target_machine


def _get_jit():
    global _jit
    if _jit is None:
        _jit = llvm.create_lljit_compiler(target_machine())
    return _jit


def optimize(module: "llvm.ModuleRef", level: int = 3, loop_unrolling: bool = True) -> None:
    """Run LLVM's new-pass-manager O``level`` pipeline (vectorizers on) on ``module``.

    ``loop_unrolling=False`` keeps the vectorizer (and its interleaving) but skips the
    unroll passes, which full-unroll small static loop nests into huge code: the CPU
    backend measured 10-40x faster compiles and ~20x smaller modules without them.
    """
    _worker.optimize_module(module, target_machine(), level, loop_unrolling)


class NativeLibrary:
    """One module's native code in the JIT.  ``address(name)`` gives an exported symbol;
    ``str(lib)`` is the optimized IR.  The code is unloaded when this object is dropped."""

    def __init__(self, tracker, llvm_ir, addresses: dict, from_cache: bool = False):
        #: the optimized IR of each part, or its zlib bytes from a cache entry (inflated and,
        #: for several parts, linked into one module when first read)
        self._ir = [llvm_ir] if isinstance(llvm_ir, (str, bytes)) else list(llvm_ir)
        #: whether the object came from the persistent compile cache
        self.from_cache = from_cache
        self._addresses = dict(addresses)
        self._finalizer = weakref.finalize(self, _release, tracker)
        self._finalizer.atexit = False  # at interpreter exit the process frees everything

    def address(self, name: str) -> int:
        addr = self._addresses.get(name)
        if not addr:
            raise KeyError(f"JIT library has no exported function {name!r}")
        return addr

    @property
    def llvm_ir(self) -> str:
        texts = [zlib.decompress(t).decode() if isinstance(t, bytes) else t for t in self._ir]
        self._ir = [texts[0] if len(texts) == 1 else _link_texts(texts)]
        return self._ir[0]

    @property
    def alive(self) -> bool:
        return self._finalizer.alive

    def assembly(self) -> str:
        """The host assembly of the optimized module (for ``fn.dump('asm')``)."""
        with _lock:
            ctx = llvm.create_context()
            try:
                mod = llvm.parse_assembly(self.llvm_ir, context=ctx)
                try:
                    return target_machine().emit_assembly(mod)
                finally:
                    mod.close()
            finally:
                ctx.close()

    def __str__(self) -> str:
        return self.llvm_ir


def _link_texts(texts) -> str:
    """Several modules' IR linked into one module's text (``dump('llvm')``, ``assembly``)."""
    with _lock:
        _init_llvm()
        ctx = llvm.create_context()
        try:
            mod = llvm.parse_assembly(texts[0], context=ctx)
            for text in texts[1:]:
                mod.link_in(llvm.parse_assembly(text, context=ctx))
            out = str(mod)
            mod.close()
            return out
        finally:
            ctx.close()


def _release(tracker) -> None:
    """Unload one library, unless another thread is inside the engine: then defer it."""
    global _live
    with _live_lock:
        _live -= 1
    if _lock.acquire(blocking=False):
        try:
            _drain()
            tracker.close()
        finally:
            _lock.release()
    else:
        _pending.append(tracker)


def _drain() -> None:
    while _pending:
        _pending.pop().close()


_symbol_cache: dict = {}
#: symbols made on first use: name -> callable returning the address, called (not under
#: ``_lock``; a provider makes its library once, under its own lock) when a module declaring
#: the name is linked or :func:`prefetch` asks (the CPU thread pool, ``backend/cpu/parallel.py``:
#: one per process, also for kernel objects that come from the compile cache)
symbol_providers: dict = {}
#: the same for families of symbols: name prefix -> callable(name) returning the address (the
#: GEMM drivers of ``backend/cpu/kernels_gemm.py``, one per configuration)
symbol_prefix_providers: dict = {}


def _imports(declared) -> dict:
    """Addresses of the module's external declarations that the process defines or that
    tcomp registered with ``llvm.add_symbol`` (thread-count cell) or ``symbol_providers``."""
    found = {}
    for name in declared:
        addr = _symbol_cache.get(name) or llvm.address_of_symbol(name)
        if not addr and name in symbol_providers:
            addr = symbol_providers[name]()
        if not addr:
            for prefix, provide in symbol_prefix_providers.items():
                if name.startswith(prefix):
                    addr = provide(name)
                    break
        if addr:  # only hits are cached: a symbol may be registered later
            found[name] = _symbol_cache[name] = addr
    return found


class Part(NamedTuple):
    """One module of a library made of several (``load`` with a callable returning parts):
    its text and its pipeline.  ``opt_level`` 0 skips LLVM's IR passes; ``codegen_level`` is
    the target machine's level (0: FastISel and the fast register allocator, linear in a
    function's size: for huge straight-line host code whose speed does not matter)."""

    text: str
    opt_level: int = 3
    loop_unrolling: bool = True
    codegen_level: int = 3


#: in-process target machines of other code generation levels than the JIT's
_machines: dict = {}


_DECLARE = re.compile(r'^declare [^\n]*?@"([^"]+)"\(', re.M)
_prefetching: set = set()
_prefetch_lock = threading.Lock()


def _provided(name: str) -> bool:
    return name in symbol_providers or any(name.startswith(p) for p in symbol_prefix_providers)


def prefetch(names) -> None:
    """Make the libraries that define ``names`` (the thread pool, the GEMM components:
    ``symbol_providers``) now, each in a background thread, while the module that declares
    them is still being emitted or compiled, instead of one after another when it is linked
    (a first compile on a fresh machine waited for each in turn).  Names already linked or
    on their way, and names no provider makes, are skipped.  The providers run without the
    engine's lock (each has its own), so the libraries compile at the same time in the
    optimizer pool and a link elsewhere is not held up."""
    todo = []
    with _prefetch_lock:
        for name in names:
            if name in _symbol_cache or name in _prefetching or not _provided(name):
                continue
            _prefetching.add(name)
            todo.append(name)
    for name in todo:
        _background(_prefetch_one, name)


def _prefetch_one(name: str) -> None:
    try:
        _imports([name])
    except Exception:  # the link that needs it reports it
        pass
    finally:
        with _prefetch_lock:
            _prefetching.discard(name)


def _background(fn, *args) -> None:
    """``fn(*args)`` in a new thread, without waiting for it to start (``Thread.start``
    waits until the new thread holds the GIL: up to a switch interval per thread while the
    caller, emitting a module, is the one that holds it)."""
    _thread.start_new_thread(fn, args)


#: callables run once per process, each in a background thread, when the first module made
#: by a callable (``load``) misses the compile cache: the libraries every compiled function
#: needs right after its own (pycall's call shims), so that on a first compile they build
#: while the program does, not after it
warmups: list = []
_warmed = [False]


def _start_warmups() -> None:
    with _prefetch_lock:
        if _warmed[0] or not warmups:
            return
        _warmed[0] = True
        todo = list(warmups)

    for fn in todo:
        _background(_quietly, fn)


def _quietly(fn) -> None:
    try:
        fn()
    except Exception:  # its own caller reports it
        pass


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's prefetch threads: nothing is on its way."""
    global _prefetch_lock, _emit_lock
    _prefetch_lock = threading.Lock()
    _emit_lock = threading.Lock()
    _prefetching.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _prefetch(text: str) -> None:
    """:func:`prefetch` of the provided symbols that module ``text`` declares."""
    prefetch(sorted(set(_DECLARE.findall(text))))


def _compile_in_process(llvm_ir: str, opt_level: int, loop_unrolling: bool, codegen_level: int = 3):
    """What the optimizer process does, done here (``TCOMP_JIT_OPTIMIZER=inprocess``)."""
    with _lock:
        tm = target_machine()
        if codegen_level != 3:
            tm = _machines.get(codegen_level)
            if tm is None:
                tm = _machines[codegen_level] = _worker.target_machine(_host[0], _host[1], codegen_level)
        out = _worker.compile_module(tm, llvm_ir, opt_level, loop_unrolling)
    return (llvm_ir if out[0] is None else out[0],) + tuple(out[1:])


def ir_key(llvm_ir: str) -> str:
    """The cache content key of a module identified by its IR text alone."""
    return "ir:" + llvm_ir


def load(llvm_ir, *, exports=None, opt_level: int = 3, loop_unrolling: bool = True,
         cache_key=None, workers: int = 1) -> NativeLibrary:
    """Parse, verify, optimize and compile a module (in the optimizer processes, see
    ``optimizer.py``), then link it into its own JIT library here.

    ``llvm_ir``: the module text, or a callable that returns it (called only when the
    object must be compiled), or a callable that returns an iterable of :class:`Part`: then
    each part is handed to an optimizer process as soon as the iterable yields it (a
    generator's later parts are made while the earlier ones compile) and the objects are
    linked into one library (their external symbols resolve among them; ``hidden`` ones
    are not exported).  ``exports``: the symbols whose addresses are wanted (default: every
    function the modules define with external linkage).  ``cache_key`` (str or bytes):
    what the module's text is a function of (e.g. :func:`ir_key`); with it, and the cache
    on, the objects are looked up in and stored into the persistent compile cache
    (``cache.py``).  ``workers``: how many optimizer processes the compile can use (they
    are started before the text is made, so their start-up overlaps it)."""
    from . import cache, optimizer

    key = None
    if cache_key is not None and cache.enabled():
        key = cache.make_key(cache_key, opt_level=opt_level, loop_unrolling=bool(loop_unrolling))
        hit = cache.lookup(key)
        if hit is not None:
            sections, meta = hit
            try:
                n = int(meta["parts"])
                objs = [sections[f"obj{i}"] for i in range(n)]
                irs = [sections[f"ir{i}"] for i in range(n)]
                declared, defined = list(meta["declared"]), list(meta["defined"])
            except (KeyError, TypeError, ValueError):  # a valid entry of another layout: compiled again and replaced
                objs = None
            if objs is not None:
                imports = _imports(declared)  # (not under the lock: a provider may compile a library)
                with _lock:
                    lib = _link(objs, imports, defined, exports, irs, True)
                    cache_stats["hits"] += 1
                    return lib
        with _lock:
            cache_stats["misses"] += 1
    target_machine()
    optimizer.prestart(workers)
    if callable(llvm_ir):  # a module made on a miss (a program, not a test's text): warm the rest now
        _start_warmups()
    made = llvm_ir() if callable(llvm_ir) else llvm_ir
    parts = [Part(made, opt_level, loop_unrolling)] if isinstance(made, str) else made
    jobs = []
    for p in parts:
        jobs.append((p, optimizer.submit(p.text, p.opt_level, p.loop_unrolling, p.codegen_level)))
        _prefetch(p.text)
    objs, irs, declared, defined = [], [], set(), set()
    for p, job in jobs:
        done = optimizer.result(job) if job is not None else None
        if done is None:
            done = _compile_in_process(p.text, p.opt_level, p.loop_unrolling, p.codegen_level)
        elif done[0] is None:
            done = (p.text,) + tuple(done[1:])
        optimized, obj, dec, dfn = done
        objs.append(obj)
        irs.append(optimized)
        declared.update(dec)
        defined.update(dfn)
    declared = sorted(declared - defined)  # a part's declaration of another part's symbol resolves in the library
    defined = sorted(defined)
    imports = _imports(declared)
    with _lock:
        lib = _link(objs, imports, defined, exports, irs, False)
    if key is not None:
        sections = {}
        for i, (obj, text) in enumerate(zip(objs, irs)):
            sections[f"obj{i}"] = obj
            sections[f"ir{i}"] = zlib.compress(text.encode(), 1)
        if cache.store(key, sections, {"parts": len(objs), "declared": declared, "defined": defined}):
            cache_stats["stores"] += 1
    return lib


def _link(objs, imports, defined, exports, optimized, from_cache: bool) -> NativeLibrary:
    """Link objects into one JIT library (the caller holds ``_lock``); ``imports``: the
    addresses of their external declarations (:func:`_imports`, resolved before taking the
    lock: a provider may compile and link a library itself)."""
    global _live
    _init_llvm()
    _drain()
    exports = list(defined) if exports is None else list(exports)
    builder = llvm.JITLibraryBuilder()
    for obj in objs:
        builder.add_object_img(obj)
    builder.add_current_process()
    for name, addr in imports.items():
        builder.import_symbol(name, addr)
    for name in exports:
        builder.export_symbol(name)
    tracker = builder.link(_get_jit(), f"tcomp_lib_{next(_library_ids)}")
    with _live_lock:
        _live += 1
    lib = NativeLibrary(tracker, optimized, {name: tracker[name] for name in exports}, from_cache)
    _drain()  # releases deferred while this thread held the lock
    return lib


#: held while a permanent library's text is made (:func:`compile_ir` with a callable): the
#: libraries a first compile prefetches (a dozen GEMM, pool and pycall modules, each in its
#: own thread) make their text one at a time, so the thread emitting the program, which
#: the compile waits for, shares the GIL with one of them, not with all
_emit_lock = threading.Lock()


def compile_ir(llvm_ir, *, opt_level: int = 3, loop_unrolling: bool = True, cache_key=None) -> NativeLibrary:
    """Like :func:`load`, but the library stays loaded for the life of the process and its
    functions are found by name with :func:`function_address`.  Cached by its IR text (such
    modules are made at every start: e.g. the call shims of ``backend/cpu/pycall.py``), or by
    ``cache_key`` when given (then ``llvm_ir`` may be a callable, called only on a miss)."""
    if cache_key is None:
        cache_key = ir_key(llvm_ir)
    if callable(llvm_ir):  # one such module made at a time (see _emit_lock)
        make = llvm_ir

        def llvm_ir():
            with _emit_lock:
                return make()
    lib = load(llvm_ir, opt_level=opt_level, loop_unrolling=loop_unrolling, cache_key=cache_key)
    with _lock:
        _permanent.append(lib)
        _permanent_addresses.update(lib._addresses)
    return lib


def function_address(name: str) -> int:
    """Address of a function made by :func:`compile_ir`."""
    with _lock:
        addr = _permanent_addresses.get(name)
    if not addr:
        raise KeyError(f"JIT has no function {name!r}")
    return addr


def host_assembly(library: NativeLibrary) -> str:
    """The host assembly of a library's optimized module, for ``fn.dump('asm')``."""
    return library.assembly()


def live_libraries() -> int:
    """How many JIT libraries of compiled functions are loaded and still referenced (leak
    checks and tests); the permanent ones (``compile_ir``: call shims, the thread pool, the
    GEMM runtime), made once per process on first use, are not counted."""
    with _lock:
        return _live - len(_permanent)
