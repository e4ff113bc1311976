"""``backend='cuda'``: a compiled function that runs its kernel program on an NVIDIA GPU.

Compile time needs no GPU: the graph is lowered to its kernel program, every kernel to
NVPTX IR (``codegen``), and PTX is emitted for ``cuda_arch`` (default: the device's
architecture when a driver is present, else ``sm_80``), so ``fn.dump('ptx')`` works
anywhere.  The driver is touched at the first call: no driver -> ``CudaUnavailable``
(a RuntimeError) with the reason.

A call (this first version keeps the host side in Python): the shape program runs on the
host (``evaluate_shape_program``: dims, checks with the CPU backend's messages, the
workspace size); inputs are copied to device memory from a :class:`MemoryPool` (so steady
calls allocate nothing), constants were uploaded once; the pointer and parameter tables of
every kernel go up in one copy; kernels launch in order on one stream; outputs come back
and the error word (index bounds) is checked after the stream synchronizes.
"""
from __future__ import annotations

import numpy as np

from tcomp.passes.kernel_program import resolve

from .codegen import generate
from .host import KernelTables, index_error, registers
from .target import BLOCK, PTX_FEATURES, emit_ptx

#: most blocks one launch uses (grid-stride loops cover the rest)
MAX_GRID = 65535


def default_arch() -> str:
    """The device's architecture if a driver and GPU are present, else sm_80."""
    from . import driver

    try:
        arch = driver.device().arch
    except (driver.CudaUnavailable, driver.CudaError):
        return "sm_80"
    known = sorted(PTX_FEATURES, key=lambda a: int(a[3:]))
    usable = [a for a in known if int(a[3:]) <= int(arch[3:])]
    return usable[-1] if usable else known[0]


class CudaCompiled:
    """The compiled-function interface (``__call__(inputs) -> outputs``, ``dump(stage)``)."""

    fresh_outputs = True  # results are new host arrays, never an input's storage

    def __init__(self, graph, name: str = "fn", donate=None, cuda_arch=None):
        from tcomp.passes.lower_kernels import lower_kernels

        self.program = lower_kernels(_fused(graph), donate)
        module, self.specs = generate(self.program, "gpu", name=_symbol(name))
        self.llvm_ir = str(module)
        self.arch = cuda_arch or default_arch()
        self.ptx = emit_ptx(self.llvm_ir, self.arch)
        self._dev = None

    def dump(self, stage):
        if stage == "llvm":
            return self.llvm_ir
        if stage in ("ptx", "asm"):
            return self.ptx
        raise ValueError(f"stage {stage!r} does not exist on the cuda backend; it has 'llvm' and 'ptx'")

    # -- the device side, built at the first call ----------------------------------------------
    def _setup(self):
        from . import driver

        dev = driver.device()
        self._dev = dev
        self.module = dev.load_module(self.ptx)
        self.kernels = [self.module.function(s.name) for s in self.specs]
        self.pool = driver.MemoryPool(dev)
        self.stream = dev.stream()
        self.constants = {}
        for v in self.program.values:
            if v.storage.kind == "constant":
                a = np.ascontiguousarray(v.storage.data.value)
                ptr = dev.alloc(a.nbytes)
                dev.htod(ptr, a.ctypes.data, a.nbytes)
                self.constants[v.id] = ptr
        self.error_word = dev.alloc(4)

    def __call__(self, inputs):
        if self._dev is None:
            self._setup()
        dev, p = self._dev, self.program
        dev.make_current()
        regs = registers(p, inputs)
        arrays = [np.ascontiguousarray(a) for a in inputs]
        held = []

        def get(nbytes):
            ptr = self.pool.get(nbytes)
            held.append((ptr, nbytes))
            return ptr
        try:
            dins = []
            for a in arrays:
                ptr = get(a.nbytes)
                dev.htod(ptr, a.ctypes.data, a.nbytes, self.stream)
                dins.append(ptr)
            outs = [np.empty(resolve(p.values[o.value].dims, regs), p.values[o.value].dtype) for o in p.outputs]
            douts = [get(o.nbytes) for o in outs]
            ws = get(int(resolve(p.workspace, regs)))
            offsets = {b.id: int(resolve(b.offset, regs)) for b in p.buffers}

            def root_address(v):
                s = p.values[v].storage
                if s.kind == "input":
                    return dins[s.index]
                if s.kind == "output":
                    return douts[s.index]
                if s.kind == "constant":
                    return self.constants[v]
                return ws + offsets[s.index]

            dev.memset(self.error_word, 0, 4)
            tables = KernelTables(p, self.specs, regs, root_address, self.error_word)
            host_tables, where = [], []
            off = 0
            for ptrs, params in tables.tables():
                where.append((off, off + ptrs.nbytes))
                host_tables += [ptrs.view(np.uint8), params.view(np.uint8)]
                off += ptrs.nbytes + params.nbytes
            blob = np.concatenate(host_tables) if host_tables else np.zeros(1, np.uint8)
            dblob = get(blob.nbytes)
            dev.htod(dblob, blob.ctypes.data, blob.nbytes, self.stream)
            for spec, kern, (po, pa) in zip(self.specs, self.kernels, where):
                work = tables.work(spec)
                if work == 0:
                    continue
                grid = -(-work // BLOCK) if spec.kind == "prod" else work
                kern.launch(min(grid, MAX_GRID), BLOCK, [dblob + po, dblob + pa], self.stream)
            for o, d in zip(outs, douts):
                dev.dtoh(o.ctypes.data, d, o.nbytes, self.stream)
            err = np.zeros(1, np.int32)
            dev.dtoh(err.ctypes.data, self.error_word, 4, self.stream)
            self.stream.synchronize()
            blob_keepalive = blob  # the async copy read it until the synchronize
            del blob_keepalive
        finally:
            for ptr, n in held:
                self.pool.put(ptr, n)
        if err[0]:
            raise index_error(p, int(err[0]))
        return outs


def _fused(graph):
    """A graph that never went through fusion is fused first (as the CPU native path does)."""
    if any(graph.op(n) == "fused" for n in graph.nodes()):
        return graph
    from tcomp.passes.fusion import fuse_elementwise

    return fuse_elementwise(graph.copy())


def _symbol(name: str) -> str:
    s = "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "fn"
    return "tc_" + s


def compile_graph(graph, name: str = "fn", donate=None, cuda_arch=None) -> CudaCompiled:
    return CudaCompiled(graph, name=name, donate=donate, cuda_arch=cuda_arch)


__all__ = ["CudaCompiled", "compile_graph", "default_arch"]
