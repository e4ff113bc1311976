"""The CPU grid emulator: the NVPTX kernel bodies compiled for the host, run over a kernel
program with the reference's memory layout.

``generate(prog, 'emu')`` emits every kernel with its block and thread loops (see
``target.py``); this module compiles that module with the process's one JIT, lays out
memory exactly as :mod:`tcomp.passes.kernel_interpreter` does (caller inputs, outputs, one
workspace, views as root + offset), fills each kernel's pointer and parameter tables as
the CUDA runtime does, and calls the kernels in order with a chosen block count (small and
odd by default, so grid-stride loops run several rounds).
"""
from __future__ import annotations

import ctypes

import numpy as np

from .codegen import generate
from .host import CallPlan, constant_ids, index_error, registers


class EmulatedProgram:
    def __init__(self, prog, nblocks: int = 3):
        from tcomp.runtime import engine

        self.prog, self.nblocks = prog, nblocks
        module, self.specs = generate(prog, "emu", name="emu")
        self.llvm_ir = str(module)
        self.lib = engine.load(self.llvm_ir, exports=kernel_names(self.specs))
        proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
        self.fns = {name: proto(self.lib.address(name)) for name in kernel_names(self.specs)}

    def __call__(self, arrays):
        p = self.prog
        plan = CallPlan(p, self.specs, registers(p, arrays))
        inputs = [a if a.flags.c_contiguous else np.array(a, order="C") for a in map(np.asarray, arrays)]
        ws = np.full(max(plan.workspace_bytes, 1), 0xCD, dtype=np.uint8)
        outputs = [np.empty(shape, p.values[o.value].dtype) for shape, o in zip(plan.out_shapes, p.outputs)]
        consts = [np.ascontiguousarray(p.values[v].storage.data.value) for v in constant_ids(p)]
        err = np.zeros(1, np.int32)
        scratch = np.zeros(max(plan.scratch_bytes, 8), np.uint8)
        blob = plan.blob(ws.ctypes.data, err.ctypes.data, scratch.ctypes.data, [a.ctypes.data for a in inputs],
                         [a.ctypes.data for a in outputs], [c.ctypes.data for c in consts])
        base = blob.ctypes.data
        self.last_launches = [ln.spec.name for ln in plan.launches]  # (tests: which form ran)
        for ln, (po, pa) in zip(plan.launches, plan.where):
            self.fns[ln.spec.name](base + po, base + pa, self.nblocks)
            if err[0]:
                raise index_error(p, int(err[0]))
        return outputs


def kernel_names(specs) -> list:
    """Every function of a module: each kernel's and its split reduction's two passes."""
    return [n for s in specs for n in (s.name, *(x.name for x in s.split[:2]))]




class EmulatedDevice:
    """The CUDA driver Device's interface over host memory, running the emulator's build of
    the kernels: the runtime's whole host side (pool, resident shared variables, tables,
    launch grids, split reductions, the error word) runs unchanged without a GPU
    (``with runtime.use_device(EmulatedDevice()):``).  ``max_blocks`` caps a launch's grid
    (small caps make the grid-stride loops take several rounds)."""

    emulated = True
    arch = "sm_80"

    def __init__(self, max_blocks=None):
        self.max_blocks = max_blocks
        self.memory: dict = {}     # address -> the host array behind it
        self.allocations = 0       # alloc calls (the pool should make these stop)
        self.launches: list = []   # (kernel name, grid) of every launch, in order

    def make_current(self) -> None:
        pass

    def alloc(self, nbytes: int) -> int:
        raw = np.full(max(int(nbytes), 1) + 64, 0xCD, np.uint8)  # garbage, as cuMemAlloc gives
        addr = raw.ctypes.data
        addr += -addr % 64
        self.memory[addr] = raw
        self.allocations += 1
        return addr

    def free(self, ptr: int) -> None:
        del self.memory[ptr]

    def htod(self, dst: int, host_ptr: int, nbytes: int, stream=None) -> None:
        ctypes.memmove(dst, host_ptr, nbytes)

    def dtoh(self, host_ptr: int, src: int, nbytes: int, stream=None) -> None:
        ctypes.memmove(host_ptr, src, nbytes)

    def memset(self, dst: int, byte: int, nbytes: int) -> None:
        ctypes.memset(dst, byte, nbytes)

    def stream(self):
        return _Stream()

    def synchronize(self) -> None:
        pass

    def load_program(self, program, symbol: str):
        """The 'module' of a program: its kernels built for the emulator (same names as the PTX's)."""
        from tcomp.runtime import engine

        module, specs = generate(program, "emu", name=symbol)
        names = kernel_names(specs)
        lib = engine.load(str(module), exports=names)
        proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
        return _Module(self, lib, {n: proto(lib.address(n)) for n in names})


class _Stream:
    def synchronize(self) -> None:
        pass


class _Module:
    def __init__(self, dev, lib, fns):
        self.dev, self.lib, self.fns = dev, lib, fns

    def function(self, name):
        return _Kernel(self, name)


class _Kernel:
    def __init__(self, module, name):
        self.module, self.name = module, name

    def launch(self, grid: int, block: int, args, stream=None) -> None:
        from .target import BLOCK

        dev = self.module.dev
        if block != BLOCK:
            raise ValueError(f"{self.name}: kernels are built for {BLOCK} threads per block, got {block}")
        grid = grid if dev.max_blocks is None else min(grid, dev.max_blocks)
        dev.launches.append((self.name, grid))
        self.module.fns[self.name](args[0], args[1], grid)


__all__ = ["EmulatedDevice", "EmulatedProgram", "kernel_names"]
