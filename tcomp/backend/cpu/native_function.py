"""A compiled function as one native program: the thin call path around ``plan`` and ``run``.

``NativeFunction(graph, donate=...)`` lowers the graph to its kernel program
(``tcomp.passes.lower_kernels``), emits the module (``host_program.HostProgram``: kernels,
``plan``, ``run``), links it into the process-wide JIT (one library per program hash, shared
by every function of the same program in this process) and is called like
``fn(list of arrays) -> list of arrays``.

Per call, in Python: the input count; one ctypes call to ``plan`` through the shims of
``pycall.py`` (they read pointers and dims from the array objects and reject an input whose
rank, dtype, byte order, contiguity or alignment is wrong; only then does Python look at
the inputs: it raises the same error as before or makes a native contiguous copy and calls
again); the outputs allocated with NumPy, 64-byte aligned (from 16 MiB on leased from the
bounded block cache of ``tcomp.runtime.buffers``: no fresh pages faulted in per call); the
workspace from a per-thread cache (grown, never shrunk: a call touches no fresh pages); donated updates get the shared
variable's own array as their output when it is writeable, aligned, C-contiguous, of this
call's shape and overlaps no other input (else a fresh array, and ``tcomp.function`` copies
it back); one ctypes call to ``run``.  In the common case (no donation) the outputs are
allocated with the previous call's shapes first and one call does both (``tcomp_py_call``:
it runs ``run`` only if plan's dims match; a miss costs one more call).  Nothing mutable is
shared between threads (scratch, registers and workspace are per thread), and the native
calls release the GIL.

Measured here (``python -m tcomp.tools.bench_native xyz``, 2 busy cores): ``x + y*z`` on three
3-element float32 vectors 2.5 us with checks, 2.1 us with ``trust_input`` (the Python planner
this replaced: ~100 us; NumPy's two ufuncs: 0.65 us).
"""
from __future__ import annotations

import ctypes
import functools
import math
import struct
import threading
import weakref

import numpy as np

from tcomp.ir.interpreter import ShapeError
from tcomp.passes.kernel_program import error_class, format_check
from tcomp.passes.lower_kernels import _Lowering
from tcomp.runtime import buffers, engine, optimizer  # (every compile, hit or miss, reads engine and optimizer)
from tcomp.runtime.buffers import aligned_empty

from . import pycall
from .host_program import HostProgram
from .kernels_linalg import native_error

PLAN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
RUN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_MEMORY = pycall.MEMORY

_libraries: "weakref.WeakValueDictionary" = weakref.WeakValueDictionary()
_libraries_lock = threading.Lock()


class _Native:
    """One program's loaded code (shared by the functions of one program hash)."""

    def __init__(self, hp: HostProgram):
        self._hp, self._text, self._parts = hp, None, False
        # the module text is made only on a compile-cache miss (a warm start links the stored object)
        groups = _kernel_groups(hp)
        make = self._emit if groups == 0 else functools.partial(self._emit_parts, groups)
        workers = 2 if groups and hp.host_is_large() else 1  # (more start when a split needs them)
        self.library = engine.load(make, exports=[hp.plan_name, hp.run_name], loop_unrolling=False,
                                   cache_key=cache_key(hp), workers=workers)
        self.plan_addr = self.library.address(hp.plan_name)
        self.run_addr = self.library.address(hp.run_name)

    def _emit_parts(self, groups: int):
        """The program as several modules compiled at once (``HostProgram.emit_parts``)."""
        self._parts = True
        yield from self._hp.emit_parts(groups)

    def _emit(self) -> str:
        if self._text is None:
            hp = self._hp
            if self._parts:  # compiled as parts: the one-module text emitted afresh
                hp = HostProgram(hp.kp, hp.g, symbol=hp.symbol)
            self._text = hp.emit()
        return self._text

    #: the module before optimization (emitted on first use after a compile-cache hit)
    text = property(_emit)


#: programs with fewer kernels than this are one module (splitting costs more than it saves)
SPLIT_MIN_KERNELS = 4


def _kernel_groups(hp: HostProgram) -> int:
    """How many kernel modules ``hp`` is compiled as (0: one module, kernels and entries):
    one per optimizer process the machine can run at once, for a program with enough kernels."""
    if not hp.splittable() or len(hp.kp.kernels) < SPLIT_MIN_KERNELS:
        return 0
    return optimizer.max_workers()


@functools.lru_cache(maxsize=None)
def _codegen_fingerprint() -> str:
    """What the generated module depends on besides the kernel program: the GEMM settings
    (vector width, tiles, blocking) and the source of the emitters (a development tree
    changes them without a version bump)."""
    from tcomp.runtime.cache import source_fingerprint

    from .kernels_gemm import codegen_key
    from .kernels_stream import codegen_key as stream_key

    return ":".join((codegen_key(), stream_key(), source_fingerprint("tcomp.backend.cpu", "tcomp.ir", "tcomp.ir.ops")))


def cache_key(hp: HostProgram) -> str:
    """The compile-cache content key of a host program (its symbols derive from the hash)."""
    return f"native:{hp.hash}:{hp.symbol}:{_codegen_fingerprint()}"


class _State:
    """A thread's scratch (header, pointers, dims, registers) and workspace for one function."""

    __slots__ = ("scratch", "addr", "host", "ws", "ws_size", "shapes")

    def __init__(self, fn: "NativeFunction"):
        self.scratch = np.zeros(fn.scratch_words, dtype=np.int64)
        self.addr = self.scratch.ctypes.data
        self.scratch[:pycall.HEADER] = [fn.spec_addr, fn.native.plan_addr, fn.native.run_addr, 0, fn.in_off,
                                        fn.dims_off, fn.out_off, fn.regs_off, -1]
        self.host = (ctypes.c_int64 * fn.hp.n_host).from_address(self.addr + 8 * fn.regs_off)
        self.ws, self.ws_size = None, -1
        #: the output shapes of this thread's previous call (the next call's guess)
        self.shapes = None

    def grow(self, nbytes: int) -> None:
        self.ws = aligned_empty((max(nbytes, 64),), np.uint8)
        self.ws_size = max(nbytes, 64)
        self.scratch[3] = self.ws.ctypes.data
        self.scratch[pycall.WS_CAPACITY] = self.ws_size


class NativeFunction:
    """A graph compiled to one native program; call it with one NumPy array per graph input."""

    #: outputs are never an input's storage, except donated updates written on purpose
    fresh_outputs = True

    def __init__(self, graph, *, name: str = "fn", donate=None, fuse: bool = True, lowered=None):
        """``lowered``: (kernel program, lowered graph, program hash) from a graph-cache hit
        (``tcomp/runtime/graph_cache.py``; ``graph`` is then None): no fusion, no lowering."""
        if lowered is not None:
            kp, low_g, known = lowered
        else:
            if fuse and not any(graph.op(n) == "fused" for n in graph.nodes()):
                # a graph that never went through the fusion pass (``compile_graph`` on a hand-built
                # graph): fuse it here, as the old backend inlined elementwise chains in its loops
                from tcomp.passes.fusion import fuse_elementwise

                graph = fuse_elementwise(graph.copy())
            low = _Lowering(graph, donate)
            kp, low_g, known = low.finish(), low.g, None
        self.program = kp
        self.graph = low_g
        self.hp = hp = HostProgram(kp, low_g, known_hash=known)
        self.name = name
        key = (hp.hash, _codegen_key())  # the program, and the settings the kernels' code depends on
        with _libraries_lock:
            native = _libraries.get(key)
            if native is None:
                native = _Native(hp)
                _libraries[key] = native
        self.native = native
        self._plan = PLAN(native.plan_addr)
        self._run = RUN(native.run_addr)
        self.input_names = [x.name for x in kp.inputs]
        self.n_in, self.n_out = len(kp.inputs), len(kp.outputs)
        # scratch layout (int64 words): header, input pointers, input dims, output pointers, registers
        self.in_off = pycall.HEADER
        self.dims_off = self.in_off + self.n_in
        self.out_off = self.dims_off + hp.n_dims
        self.regs_off = self.out_off + self.n_out
        self.scratch_words = self.regs_off + hp.n_regs
        spec = [self.n_in, id(np.ndarray)]
        for x, off in zip(kp.inputs, hp.dim_off):
            spec += [len(x.shape), off, *pycall.type_chars(x.dtype)]
        spec.append(len(kp.outputs))
        for lo, hi in hp.out_slots:
            spec += [lo, hi]
        self._spec = np.asarray(spec, dtype=np.int64)
        self.spec_addr = self._spec.ctypes.data
        self._dtypes = [np.dtype(x.dtype) for x in kp.inputs]
        shims = pycall.shims()
        self._py_plan, self._py_run, self._py_call = shims if shims is not None else (None, None, None)
        self._tls = threading.local()
        outs = []
        for o, (lo, hi) in zip(kp.outputs, hp.out_slots):
            v = kp.values[o.value]
            static = tuple(v.dims) if all(isinstance(d, int) for d in v.dims) else None
            outs.append((lo, hi, np.dtype(v.dtype), static, o.donates))
        self._outs = outs
        self._donating = [k for k, o in enumerate(outs) if o[4] is not None]
        self._last = None
        self._quick = self._make_quick()
        #: for tests and tools: the emitters' view of the
        #: program (roles, layouts by node) and the in-place kernels (node -> overwritten leaf)
        self.prog = hp.sites
        donated = {kp.values[o.value].node for o in kp.outputs if o.donates is not None}
        self._inplace = {k.node: kp.values[r].node for k in kp.kernels for w, r in k.may_alias
                         if k.node is not None and k.node not in donated}

    # -- introspection ---------------------------------------------------------------------------
    @property
    def llvm_ir_unoptimized(self) -> str:
        return self.native.text

    @property
    def _leaves(self) -> dict:
        """Kernel node -> the graph nodes whose memory it reads (its pointer operands)."""
        from .host_program import lowerings

        sites = self.hp.sites
        return {n: lowerings()[sites.kernel_kind(n)][0](sites, n) for n in sites.kernel_of}

    def dump(self, stage: str) -> str:
        """'llvm': the module after optimization; 'asm': its host assembly."""
        safe = "".join(c if c.isalnum() else "_" for c in self.name)
        head = f"; tcomp_{safe}: kernel program {self.hp.hash[:16]} (entries {self.hp.plan_name}, {self.hp.run_name})\n"
        if stage == "llvm":
            return head + self.native.library.llvm_ir
        if stage == "asm":
            return head.replace(";", "#", 1) + self.native.library.assembly()
        raise ValueError(f"dump stage must be 'llvm' or 'asm', got {stage!r}")

    @property
    def last_call_memory(self) -> dict | None:
        """Buffer figures of the most recent call (kernels, buffers, bytes with/without reuse),
        from the registers that call's thread left in its scratch."""
        if self._last is None:
            return None
        st, donated = self._last
        return self._stats(self._registers(st), donated)

    def _stats(self, regs: dict, donated) -> dict:
        from tcomp.passes.kernel_program import resolve

        kp = self.program

        def nbytes(v):
            return int(np.prod(resolve(v.dims, regs), dtype=np.int64)) * np.dtype(v.dtype).itemsize
        without = sum(nbytes(v) for v in kp.values if v.storage.kind == "buffer")
        with_reuse = sum(resolve(b.size, regs) for b in kp.buffers)
        out_bytes = sum(nbytes(kp.values[o.value]) for k, o in enumerate(kp.outputs) if k not in donated)
        return {"kernels": len(kp.kernels), "buffers": len(kp.buffers) + self.n_out - len(donated),
                "intermediate_bytes_without_reuse": without, "intermediate_bytes_with_reuse": with_reuse,
                "output_bytes": out_bytes, "donated_updates": len(donated)}

    def bytes_allocated_per_call(self, inputs=None) -> dict:
        """Memory figures for a call with these inputs (``plan`` only; no kernel runs)."""
        kp = self.program
        if inputs is None:
            if kp.shape.value_inputs or not all(isinstance(d, int) for x in kp.inputs for d in x.shape):
                raise ValueError("bytes_allocated_per_call: input shapes are not all static (or shapes depend on "
                                 "input values); pass example inputs")
            inputs = [np.zeros(x.shape, dtype=x.dtype) for x in kp.inputs]
        args = self._checked(tuple(inputs))
        if len(args) != self.n_in:
            raise TypeError(f"function takes {self.n_in} inputs ({', '.join(self.input_names)}), got {len(args)}")
        st = _State(self)  # not this thread's: last_call_memory keeps reading the last call's registers
        self._plan_call(args, st)
        return self._stats(self._registers(st), self._donating)

    # -- calling ---------------------------------------------------------------------------------
    def _state(self) -> _State:
        st = getattr(self._tls, "s", None)
        if st is None:
            st = self._tls.s = _State(self)
        return st

    def __call__(self, inputs) -> list:
        args = inputs if type(inputs) is tuple else tuple(inputs)
        if len(args) != self.n_in:
            raise TypeError(f"function takes {self.n_in} inputs ({', '.join(self.input_names)}), got {len(args)}")
        if self._quick is not None:
            return self._quick(args)
        return self._general(args)

    def _make_quick(self, n=None, pick=None, rejected=None):
        """The common call as one closure (locals instead of attribute lookups: a small call
        is mostly Python overhead): inputs the shim accepts, no donation, outputs aligned
        by slicing an over-allocated array.  Anything else takes :meth:`_general`.

        For ``tcomp.function``'s direct path: ``n`` (a call with another argument count
        returns NotImplemented), ``pick`` (return ``outs[0]`` for ``0``, else ``outs[:pick]``)
        and ``rejected`` (what a call whose inputs the shim declines returns instead of
        the general path: NotImplemented, so that the function converts them first)."""
        if self._py_plan is None or self._donating or any(o[2].itemsize > 16 for o in self._outs):
            return None
        py_plan, py_run, tls, state, general = self._py_plan, self._py_run, self._tls, self._state, self._general
        whole = pick is None
        align, data = pycall.ALIGN, pycall.ARR_DATA
        specs = [(dtype, dtype.itemsize, align // dtype.itemsize, hi - lo != 1) for lo, hi, dtype, _, _ in self._outs]
        slots = [(lo, hi, static) for lo, hi, _, static, _ in self._outs]
        memory, np_empty, prod, kernels, fn = _MEMORY, np.empty, math.prod, self.program.kernels, self
        large, lease, cached = buffers.LARGE, buffers.lease, buffers.enabled

        py_call, miss, ran = self._py_call, pycall.MISS, pycall.RAN

        def allocate(shapes):
            outs = []
            for shape, (dtype, item, pad, reshape) in zip(shapes, specs):
                count = prod(shape)
                if count * item >= large and cached():  # a reused block: no fresh pages to fault in
                    outs.append(lease(shape, count, dtype))
                    continue
                raw = np_empty(count + pad, dtype)  # NumPy's data is 16-byte aligned: slice to 64
                off = ((-memory[(id(raw) + data) >> 3]) % align) // item
                a = raw[off:off + count]
                outs.append(a.reshape(shape) if reshape else a)
            return outs

        def quick(args):
            if n is not None and len(args) != n:
                return NotImplemented
            try:
                st = tls.s
            except AttributeError:
                st = state()
            addr = st.addr
            if st.shapes is not None:  # guess this call's output shapes: plan and run in one call
                outs = allocate(st.shapes)
                rc = py_call(args, outs, addr)
                if rc == ran:
                    fn._last = (st, ())
                    return outs if whole else outs[0] if pick == 0 else outs[:pick]
                if rc != miss:
                    if rc > 0 and rc & ran:
                        raise native_error(kernels[(rc ^ ran) - 1])
                    if rc < 0 and rejected is not None:
                        return rejected
                    return general(args) if whole else quick_done(general(args))
            else:
                rc = py_plan(args, addr)
                if rc:
                    if rc < 0 and rejected is not None:
                        return rejected
                    return general(args) if whole else quick_done(general(args))
            h = st.host[:]
            if h[0] > st.ws_size:
                st.grow(h[0])
            st.shapes = shapes = [static if static is not None else tuple(h[lo:hi]) for lo, hi, static in slots]
            outs = allocate(shapes)
            rc = py_run(outs, addr)
            if rc:
                raise native_error(kernels[rc - 1])
            fn._last = (st, ())
            return outs if whole else outs[0] if pick == 0 else outs[:pick]

        def quick_done(outs):
            return outs[0] if pick == 0 else outs[:pick]
        return quick

    def _general(self, args) -> list:
        st = getattr(self._tls, "s", None) or self._state()
        args = self._plan_call(args, st)
        h = st.host[:]
        if h[0] > st.ws_size:
            st.grow(h[0])
        outs, donated, spans = [], [], None
        if self._donating:  # the inputs' byte ranges, from the pointers plan was given
            ptrs = st.scratch[self.in_off:self.in_off + self.n_in].tolist()
            spans = [(p, p + a.nbytes) for p, a in zip(ptrs, args)]
        for k, (lo, hi, dtype, static, donates) in enumerate(self._outs):
            shape = static if static is not None else tuple(h[lo:hi])
            if donates is not None and self._may_donate(donates, args[donates], shape, spans):
                outs.append(args[donates])
                donated.append(k)
            else:
                outs.append(self._empty(shape, dtype))
        if self._py_run is not None:
            rc = self._py_run(outs, st.addr)
        else:
            st.scratch[self.out_off:self.out_off + self.n_out] = [a.ctypes.data for a in outs]
            rc = self._run(st.addr + 8 * self.in_off, st.addr + 8 * self.out_off, int(st.scratch[3]),
                           st.addr + 8 * self.regs_off)
        if rc:
            k = self.program.kernels[rc - 1]
            raise native_error(k)
        self._last = (st, donated)
        return outs

    def _empty(self, shape, dtype):
        """A fresh 64-byte aligned C array (the data pointer read from the array object when
        ``pycall`` verified the layout: ``a.ctypes.data`` alone costs more than a small call)."""
        if self._py_run is None or dtype.itemsize > 16:
            return aligned_empty(shape, dtype)
        count = math.prod(shape)
        if count * dtype.itemsize >= buffers.LARGE and buffers.enabled():  # from the buffer cache
            return buffers.lease(shape, count, dtype)
        raw = np.empty(count + pycall.ALIGN // dtype.itemsize, dtype)  # NumPy's data is 16-byte aligned
        off = ((-_MEMORY[(id(raw) + pycall.ARR_DATA) >> 3]) % pycall.ALIGN) // dtype.itemsize
        a = raw[off:off + count]
        return a if len(shape) == 1 else a.reshape(shape)

    def _plan_call(self, args, st) -> tuple:
        """Run ``plan`` for these inputs (repairing or rejecting inputs the shim declines);
        returns the inputs the call uses."""
        if self._py_plan is not None:
            rc = self._py_plan(args, st.addr)
            if rc < 0:
                args = self._checked(args)
                rc = self._py_plan(args, st.addr)
                if rc < 0:
                    raise TypeError(f"input {self.input_names[-rc - 1]!r}: cannot be passed to native code")
        else:
            args = self._checked(args)
            ptrs = [a.ctypes.data for a in args]
            dims = [d for a in args for d in a.shape]
            s = st.scratch
            s[self.in_off:self.in_off + self.n_in] = ptrs
            s[self.dims_off:self.dims_off + len(dims)] = dims
            rc = self._plan(st.addr + 8 * self.dims_off, st.addr + 8 * self.in_off,
                            st.addr + 8 * self.regs_off)
        if rc:
            self._raise_check(rc, st)
        return args

    def _registers(self, st) -> dict:
        hp = self.hp
        raw = st.scratch[self.regs_off + hp.n_host:self.regs_off + hp.n_regs].tolist()
        regs = {}
        for k, (x, t) in enumerate(zip(raw, hp.types)):
            regs[f"s{k}"] = struct.unpack("<d", struct.pack("<q", x))[0] if t == "f64" else x
        return regs

    def _raise_check(self, code: int, st) -> None:
        check = self.program.shape.checks[code - 1]
        regs = self._registers(st)
        cls = error_class(check.error)
        msg = format_check(check, regs)
        if cls is ShapeError:
            raise ValueError(msg) from None
        raise cls(msg) from None

    def _checked(self, args) -> tuple:
        """The inputs with the dtype and rank checked (the reference backend's error classes) and
        any byte-swapped, misaligned or non-contiguous one replaced by a native C copy."""
        out = []
        for x, label, v in zip(self.program.inputs, self.input_names, args):
            a = v if isinstance(v, np.ndarray) else np.asarray(v)
            if a.dtype.name != x.dtype:
                raise TypeError(f"input {label!r}: expected dtype {x.dtype}, got {a.dtype.name}")
            if a.ndim != len(x.shape):
                t = _type_text(x)
                raise ValueError(f"input {label!r}: expected rank {len(x.shape)} ({t}), got shape {a.shape}")
            if not (a.dtype.isnative and a.flags.aligned) or type(a) is not np.ndarray:
                a = np.array(a, dtype=a.dtype.newbyteorder("="), order="C")
            if not a.flags.c_contiguous:
                a = np.ascontiguousarray(a)
            out.append(a)
        return tuple(out)

    @staticmethod
    def _may_donate(pos, a, shape, spans) -> bool:
        """``a`` (input ``pos``, a donated update's) may be overwritten by this call: writeable,
        C-contiguous, aligned, of this call's shape, and overlapping no other input (two
        shared variables may borrow one array; ``spans``: every input's byte range)."""
        if a.shape != shape or not (a.flags.writeable and a.flags.c_contiguous and a.flags.aligned):
            return False
        lo, hi = spans[pos]
        return not any(j != pos and b_lo < b_hi and b_lo < hi and lo < b_hi for j, (b_lo, b_hi) in enumerate(spans))


def _codegen_key() -> str:
    """Settings (not the graph) that the emitted kernels depend on (``kernels_gemm``'s vector
    width and blocking, ``kernels_stream``'s threshold; ``templates.REUSE`` changes only how
    the same code is made)."""
    try:
        from .kernels_gemm import codegen_key
    except ImportError:  # an older tree without the GEMM kernels
        return ""
    from .kernels_stream import codegen_key as stream_key

    return codegen_key() + ":" + stream_key()


def _type_text(x) -> str:
    from tcomp.ir.types import TensorType

    return str(TensorType(x.dtype, x.shape))


def compile_native(graph, *, name: str = "fn", donate=None) -> NativeFunction:
    return NativeFunction(graph, name=name, donate=donate)


__all__ = ["NativeFunction", "compile_native"]


def _fast_call(compiled: NativeFunction, function):
    """The direct call path of a ``tcomp.function`` with only plain positional inputs and no
    shared variables or updates (else None).  The native shim checks every argument (an
    ndarray of the input's rank and exact dtype, native, aligned, contiguous); one it
    declines returns NotImplemented, so the function converts it as always (Python numbers,
    lists, safe casts) and calls again; with ``trust_input`` nothing is converted (a
    declined input is copied if only its layout is wrong, else refused with the error the
    general path gives)."""
    from tcomp.io import _NO_VALUE

    sig = getattr(function, "signature", None)
    if function.shared_inputs or function.updates or sig is None:
        return None
    params = getattr(sig, "params", None)
    if params is None or len(params) != compiled.n_in or len(function.inputs) != compiled.n_in:
        return None
    for k, p in enumerate(params):
        if p.default is not _NO_VALUE or p.state is not None or p.implicit or \
                getattr(sig, "positions", {}).get(id(p.variable)) != k:
            return None
    n, n_out, single = compiled.n_in, len(function.outputs), function.single_output
    dtypes = tuple(compiled._dtypes)
    ndarray = np.ndarray

    if n_out == 0 and not single:  # (pick 0 means one bare output below; no outputs take the general path)
        return None
    pick = 0 if single else n_out
    quick = compiled._make_quick(n=n, pick=pick, rejected=None if function.trust_input else NotImplemented)
    if quick is not None:
        return quick
    call = compiled._general
    if function.trust_input:
        def fast(args):
            if len(args) != n:
                return NotImplemented
            outs = call(args)
            return outs[0] if single else outs[:n_out]
        return fast

    def fast(args):
        if len(args) != n:
            return NotImplemented
        for a, d in zip(args, dtypes):
            if type(a) is not ndarray or a.dtype is not d:
                return NotImplemented
        outs = call(args)
        return outs[0] if single else outs[:n_out]
    return fast


NativeFunction.fast_call = staticmethod(_fast_call)
