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

from tcomp.passes.kernel_program import resolve

from .codegen import generate
from .host import KernelTables, index_error, registers


class EmulatedProgram:
    def __init__(self, prog, nblocks: int = 3):
        from tcomp.runtime import engine

        self.prog, self.nblocks = prog, nblocks
        module, self.specs = generate(prog, "emu", name="emu")
        self.llvm_ir = str(module)
        self.lib = engine.load(self.llvm_ir, exports=[s.name for s in self.specs])
        proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
        self.fns = [proto(self.lib.address(s.name)) for s in self.specs]

    def __call__(self, arrays):
        p = self.prog
        regs = registers(p, arrays)
        inputs = [a if a.flags.c_contiguous else np.array(a, order="C") for a in map(np.asarray, arrays)]
        ws = np.full(max(int(resolve(p.workspace, regs)), 1), 0xCD, dtype=np.uint8)
        outputs = [np.empty(resolve(p.values[o.value].dims, regs), p.values[o.value].dtype) for o in p.outputs]
        keep = []

        def root_address(v):
            s = p.values[v].storage
            if s.kind == "input":
                return inputs[s.index].ctypes.data
            if s.kind == "output":
                return outputs[s.index].ctypes.data
            if s.kind == "constant":
                c = np.ascontiguousarray(s.data.value)
                keep.append(c)
                return c.ctypes.data
            off = next(b.offset for b in p.buffers if b.id == s.index)
            return ws.ctypes.data + int(resolve(off, regs))

        err = np.zeros(1, np.int32)
        tables = KernelTables(p, self.specs, regs, root_address, err.ctypes.data)
        for spec, fn, (ptrs, params) in zip(self.specs, self.fns, tables.tables()):
            if tables.work(spec) == 0:
                continue
            fn(ptrs.ctypes.data, params.ctypes.data, self.nblocks)
            if err[0]:
                raise index_error(p, int(err[0]))
        return outputs


__all__ = ["EmulatedProgram"]
