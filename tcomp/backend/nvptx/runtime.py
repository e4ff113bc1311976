"""``backend='cuda'``: a compiled function that runs its kernel program on an NVIDIA GPU.

Compile time needs no GPU: the graph is lowered to its kernel program (the CPU backend's:
``passes/lower_kernels.py``), every kernel to NVPTX IR (``codegen``), and PTX is emitted
for ``cuda_arch`` (default: the device's architecture when a driver is present, else
``sm_80``), so ``fn.dump('ptx')`` works anywhere.  The driver is touched at the first
call: no driver -> ``CudaUnavailable`` (a RuntimeError) with the reason.

A call: the kernel program's shape program runs on the host (``evaluate_shape_program``:
dims, the checks with the CPU backend's messages, the workspace size); inputs go to device
memory from the device's :class:`~tcomp.backend.nvptx.driver.MemoryPool` (steady calls
allocate nothing), constants were uploaded once; the pointer and parameter tables of every
launch go up in one copy; kernels launch in schedule order on one stream (a reduction with
few long rows as two launches: ``host.split_parts``); outputs come back and the error word
(index bounds) is checked after the stream synchronizes.

Through ``tcomp.function`` (:meth:`CudaCompiled.run_resident`) shared variables stay on the
GPU between calls (``resident.py``): read from their device copies, updated by adopting the
update's output buffer, copied back only when host code reads them.

``use_device(dev)`` runs calls on another object with the driver's interface (tests run the
whole host side over :class:`~tcomp.backend.nvptx.emulator.EmulatedDevice`).
"""
from __future__ import annotations

import contextlib
import functools
import threading

import numpy as np

from .codegen import generate
from .host import PlanCache, index_error, registers
from .resident import device_copy
from .target import BLOCK, PTX_FEATURES, emit_ptx

#: most blocks one launch uses (grid-stride loops cover the rest)
MAX_GRID = 65535

_override: list = []


@contextlib.contextmanager
def use_device(dev):
    """Run CUDA calls on ``dev`` (an object with the driver Device's interface) in this block."""
    _override.append(dev)
    try:
        yield dev
    finally:
        _override.pop()


def current_device():
    """The device calls run on: ``use_device``'s, else the driver's (CudaUnavailable without one)."""
    if _override:
        return _override[-1]
    from . import driver

    return driver.device()


def pool_of(dev):
    """The device's memory pool (one per device, shared by every function and shared variable)."""
    pool = getattr(dev, "pool", None)
    if pool is None:
        from .driver import MemoryPool

        pool = dev.pool = MemoryPool(dev)
    return pool


def default_arch() -> str:
    """The device's architecture if a driver and GPU are present, else sm_80."""
    from . import driver

    try:
        arch = current_device().arch
    except (driver.CudaUnavailable, driver.CudaError):
        return "sm_80"
    known = sorted(PTX_FEATURES, key=lambda a: int(a[3:]))
    usable = [a for a in known if int(a[3:]) <= int(arch[3:])]
    return usable[-1] if usable else known[0]


def check_arch(arch):
    if arch is not None and arch not in PTX_FEATURES:
        raise ValueError(f"cuda_arch must be one of {', '.join(PTX_FEATURES)}, got {arch!r}")
    return arch


class CudaCompiled:
    """The compiled-function interface (``__call__(inputs) -> outputs``, ``dump(stage)``)."""

    fresh_outputs = True  # results are new host arrays, never an input's storage

    def __init__(self, graph, name: str = "fn", donate=None, cuda_arch=None):
        from tcomp.passes.lower_kernels import lower_kernels

        self.arch = check_arch(cuda_arch) or default_arch()
        self.program = lower_kernels(_fused(graph), donate)
        self.symbol = _symbol(name)
        module, self.specs = generate(self.program, "gpu", name=self.symbol)
        self.llvm_ir = str(module)
        self.ptx = emit_ptx(self.llvm_ir, self.arch)
        self.plans = PlanCache(self.program, self.specs)
        self.n_in = len(self.program.inputs)
        self.input_names = [x.name for x in self.program.inputs]
        self._dev = None
        #: one call at a time per function (they share the stream and the error word)
        self._lock = threading.RLock()

    def dump(self, stage):
        if stage == "llvm":
            return self.llvm_ir
        if stage in ("ptx", "asm"):
            return self.ptx
        raise ValueError(f"stage {stage!r} does not exist on the cuda backend; it has 'llvm' and 'ptx'")

    # -- the device side, built at the first call on a device ----------------------------------
    def _ready(self):
        dev = current_device()
        if self._dev is not dev:
            self._setup(dev)
        dev.make_current()
        return dev

    def _setup(self, dev):
        from .emulator import kernel_names

        if getattr(dev, "emulated", False):
            self.module = dev.load_program(self.program, self.symbol)
        else:
            self.module = dev.load_module(self.ptx)
        self.kernels = {n: self.module.function(n) for n in kernel_names(self.specs)}
        self.pool = pool_of(dev)
        self.stream = dev.stream()
        self.constant_ptrs = []
        for v in self.plans.constant_ids:
            a = np.ascontiguousarray(self.program.values[v].storage.data.value)
            ptr = dev.alloc(a.nbytes)
            dev.htod(ptr, a.ctypes.data, a.nbytes)
            self.constant_ptrs.append(ptr)
        self.error_word = dev.alloc(4)
        self._dev = dev

    def _execute(self, dev, arrays, resident=None):
        """Run the program; ``arrays``: per input a host array, or for an entry of
        ``resident`` (input position -> device address) a stand-in of its shape and dtype.
        Returns per output (device buffer, nbytes, shape), owned by the caller."""
        p, pool, resident = self.program, self.pool, resident or {}
        plan = self.plans.get(registers(p, arrays))
        held, outs = [], []

        def get(nbytes):
            ptr = pool.get(nbytes)
            held.append((ptr, nbytes))
            return ptr
        try:
            dins = []
            for i, a in enumerate(arrays):
                if i in resident:
                    dins.append(resident[i])
                    continue
                a = np.ascontiguousarray(a)
                ptr = get(a.nbytes)
                dev.htod(ptr, a.ctypes.data, a.nbytes, self.stream)
                dins.append(ptr)
            for nbytes, shape in zip(plan.out_nbytes, plan.out_shapes):
                outs.append((pool.get(nbytes), nbytes, shape))
            ws = get(plan.workspace_bytes)
            scratch = get(plan.scratch_bytes) if plan.scratch_bytes else 0
            dev.memset(self.error_word, 0, 4)
            blob = plan.blob(ws, self.error_word, scratch, dins, [o[0] for o in outs], self.constant_ptrs)
            dblob = get(blob.nbytes)
            dev.htod(dblob, blob.ctypes.data, blob.nbytes, self.stream)
            for ln, (po, pa) in zip(plan.launches, plan.where):
                self.kernels[ln.spec.name].launch(ln.grid(MAX_GRID), BLOCK, [dblob + po, dblob + pa], self.stream)
            err = np.zeros(1, np.int32)
            dev.dtoh(err.ctypes.data, self.error_word, 4, self.stream)
            self.stream.synchronize()  # (the async copies read ``blob`` until here)
            if err[0]:
                raise index_error(p, int(err[0]))
        except BaseException:
            for ptr, n, _ in outs:
                pool.put(ptr, n)
            raise
        finally:
            for ptr, n in held:
                pool.put(ptr, n)
        return outs

    def _fetch(self, dev, buf, dtype) -> np.ndarray:
        """An output buffer copied into a new host array; the buffer goes back to the pool."""
        ptr, nbytes, shape = buf
        a = np.empty(shape, dtype)
        dev.dtoh(a.ctypes.data, ptr, nbytes, self.stream)
        return a

    def _fetch_all(self, dev, bufs, positions):
        p = self.program
        got = {k: self._fetch(dev, bufs[k], p.values[p.outputs[k].value].dtype) for k in positions}
        self.stream.synchronize()
        for k in positions:
            self.pool.put(bufs[k][0], bufs[k][1])
        return got

    def __call__(self, inputs):
        """Host arrays in, new host arrays out (every input copied up, every output down)."""
        with self._lock:
            dev = self._ready()
            bufs = self._execute(dev, list(inputs))
            got = self._fetch_all(dev, bufs, range(len(bufs)))
        return [got[k] for k in range(len(bufs))]

    def run_resident(self, fn, arrays):
        """``tcomp.function``'s call (``Function._run``, shared variables' locks held):
        explicit inputs ``arrays`` are copied up; shared variables are read from their
        device copies and their updates adopted on the device (``resident.py``); only the
        user outputs (and printed values) come back.  Returns the results list
        ``Function._run`` returns (``None`` where an update's value stays on the GPU)."""
        with self._lock:
            return self._run_resident(fn, arrays)

    def _run_resident(self, fn, arrays):
        dev = self._ready()
        n_in, shared = len(arrays), fn.shared_inputs
        loads = set(self.program.shape.value_inputs)
        copies = [device_copy(s, dev, self.pool) for s in shared]
        shape_arrays, resident = list(arrays), {}
        for i, (s, c) in enumerate(zip(shared, copies)):
            pos = n_in + i
            resident[pos] = c.device_ptr(s, self.stream)
            if pos in loads:  # the shape program reads this value: it must be on the host
                shape_arrays.append(s.get_value(borrow=True))
            else:
                shape_arrays.append(_standin(tuple(c.value_shape(s)), s.dtype))
        bufs = self._execute(dev, shape_arrays, resident)
        n_out, n_up = len(fn.outputs), len(fn.updates)
        host = [k for k in range(len(bufs)) if not n_out <= k < n_out + n_up]
        got = self._fetch_all(dev, bufs, host)
        for k, (var, _) in enumerate(fn.updates):
            ptr, nbytes, shape = bufs[n_out + k]
            device_copy(var, dev, self.pool).adopt(ptr, nbytes, shape)
        return [got.get(k) for k in range(len(bufs))]


@functools.lru_cache(maxsize=256)
def _standin(shape, dtype) -> np.ndarray:
    """A read-only array of ``shape`` and ``dtype`` owning one element (the shape program
    reads only the dims of a resident input)."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape=tuple(shape), strides=(0,) * len(shape),
                                           writeable=False)


def _fused(graph):
    """A graph that never went through fusion is fused first (as the CPU native path does);
    a fused kernel that starts with a matrix product (passes/fusion_gemm.py, the CPU GEMM's
    epilogue) runs here as the product and an elementwise kernel."""
    from tcomp.passes.fusion_gemm import has_products, split_products

    if has_products(graph):
        return split_products(graph.copy())
    if any(graph.op(n) == "fused" for n in graph.nodes()):
        return graph
    from tcomp.passes.fusion import fuse_elementwise

    return fuse_elementwise(graph.copy())


def _symbol(name: str) -> str:
    s = "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "fn"
    return "tc_" + s


def compile_graph(graph, name: str = "fn", donate=None, cuda_arch=None, _depth: int = 0):
    """A :class:`CudaCompiled`, or where a shape depends on a value only a kernel computes
    (``max`` of a tensor sizing an ``arange``) the CPU backend's chain of programs
    (``backend/cpu/staged.py``) with CUDA stages: the value first, then the rest with it as
    one more input.  (A chain takes host arrays: its shared variables are not resident.)"""
    from tcomp.backend.cpu.staged import MAX_STAGES, StagedFunction, split_at
    from tcomp.passes.kernel_program import HostValueUnavailable

    try:
        return CudaCompiled(graph, name=name, donate=donate, cuda_arch=cuda_arch)
    except HostValueUnavailable as e:
        if _depth >= MAX_STAGES:
            raise
        node = e.node
    first, rest = split_at(graph, node)
    return StagedFunction(compile_graph(first, f"{name}.stage", None, cuda_arch, _depth + 1),
                          compile_graph(rest, name, donate, cuda_arch, _depth + 1), node)


__all__ = ["CudaCompiled", "compile_graph", "current_device", "default_arch", "use_device"]
