"""Host side of a launch, shared by the CUDA runtime and the CPU grid emulator: the
pointer and parameter tables of every kernel and its work count, from the registers of
one call (``evaluate_shape_program``)."""
from __future__ import annotations

import numpy as np

from tcomp.passes.kernel_program import resolve

from .codegen_block import TILE
from .codegen_data import ERROR_SLOT


class KernelTables:
    def __init__(self, prog, specs, regs, root_address, error_address):
        self.p, self.specs, self.regs, self.root_address = prog, specs, regs, root_address
        self.error_address = error_address

    def address(self, v) -> int:
        if v == ERROR_SLOT:
            return self.error_address
        val = self.p.values[v]
        s = val.storage
        if s.kind == "view":
            return self.root_address(s.base) + int(resolve(s.offset, self.regs)) * np.dtype(val.dtype).itemsize
        return self.root_address(v)

    def param(self, ref) -> np.int64:
        v = self.regs[ref]
        if isinstance(v, float):
            return np.float64(v).view(np.int64)
        return np.int64(v)

    def tables(self):
        for s in self.specs:
            ptrs = np.array([self.address(v) for v in s.slots] or [0], dtype=np.uint64)
            params = np.array([self.param(r) for r in s.params] or [0], dtype=np.int64)
            yield ptrs, params

    def work(self, spec) -> int:
        """Elements (prod), rows or tiles of a launch: 0 means nothing to do."""
        if spec.kind in ("prod", "rows"):
            return int(np.prod([resolve(d, self.regs) for d in spec.work[0]], dtype=np.int64))
        batch, M, N = spec.work
        nb = int(np.prod([resolve(d, self.regs) for d in batch], dtype=np.int64))
        m, n = resolve(M, self.regs), resolve(N, self.regs)
        return nb * (-(-m // TILE)) * (-(-n // TILE))




def registers(prog, arrays) -> dict:
    """The shape program's registers for one call; a failing shape check raises ValueError
    with the CPU backend's message (its ShapeError surfaces as ValueError, as there)."""
    from tcomp.ir.interpreter import ShapeError
    from tcomp.passes.kernel_program import evaluate_shape_program

    if len(arrays) != len(prog.inputs):
        raise TypeError(f"expected {len(prog.inputs)} inputs, got {len(arrays)}")
    for x, a in zip(prog.inputs, arrays):
        a = np.asarray(a)
        if a.dtype.name != x.dtype or a.ndim != len(x.shape):
            raise TypeError(f"input {x.name!r}: expected {x.dtype} of rank {len(x.shape)}, "
                            f"got {a.dtype.name} of rank {a.ndim}")
    try:
        return evaluate_shape_program(prog.shape, arrays)
    except ShapeError as e:
        raise ValueError(str(e)) from None


def index_error(prog, code: int) -> IndexError:
    """The CPU backend's error for a bad index array entry found by kernel ``code - 1``."""
    return IndexError(f"{prog.kernels[code - 1].label}: index out of bounds (checked in native code)")


__all__ = ["KernelTables", "index_error", "registers"]
