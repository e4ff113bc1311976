"""Host side of a launch, shared by the CUDA runtime and the CPU grid emulator: the
pointer and parameter tables of every kernel and its work count, from the registers of
one call (``evaluate_shape_program``)."""
from __future__ import annotations

import numpy as np

from tcomp.passes.kernel_program import resolve

from .codegen_block import PARTS_PARAM, SCRATCH_SLOT, SLOT_BYTES, TILE
from .codegen_data import ERROR_SLOT
from .target import BLOCK

#: a reduction is split across blocks only when its rows alone fill fewer blocks than this
#: (the H100/H200 have 132 SMs: a few blocks each keeps them busy) ...
TARGET_BLOCKS = 512
#: ... and each part still gets at least this many elements (8 per thread)
MIN_PART = 8 * BLOCK
MAX_PARTS = 1024


def split_parts(rows: int, R: int) -> int:
    """How many parts (blocks) each of ``rows`` reductions over ``R`` elements is cut into;
    1 means the one-pass kernel.  Depends only on the shapes, so a result is the same on
    every GPU and in the emulator."""
    if rows <= 0 or rows >= TARGET_BLOCKS or R <= MIN_PART:
        return 1
    return max(1, min(-(-R // MIN_PART), -(-TARGET_BLOCKS // rows), MAX_PARTS))


class Launch:
    """One kernel launch of a call: its spec, grid kind ('prod': threads, else blocks) and work."""

    __slots__ = ("spec", "kind", "work")

    def __init__(self, spec, kind, work):
        self.spec, self.kind, self.work = spec, kind, work

    def grid(self, max_grid: int) -> int:
        g = -(-self.work // BLOCK) if self.kind == "prod" else self.work
        return max(1, min(g, max_grid))


class KernelTables:
    """The launches of one call in schedule order (a split reduction is two) and their
    pointer and parameter tables, from the shape program's registers."""

    def __init__(self, prog, specs, regs, root_address, error_address):
        self.p, self.specs, self.regs, self.root_address = prog, specs, regs, root_address
        self.error_address = error_address
        self.scratch_address = 0
        self.parts: dict = {}
        self.scratch_bytes = 0
        self.launches: list = []
        for s in specs:
            work = self.work(s)
            if work == 0:
                continue
            if s.split:
                part, comb, red, ncomp = s.split
                R = int(np.prod([resolve(d, regs) for d in red], dtype=np.int64))
                g = split_parts(work, R)
                if g > 1:
                    self.parts[s.index] = g
                    self.scratch_bytes = max(self.scratch_bytes, work * g * ncomp * SLOT_BYTES)
                    self.launches += [Launch(part, "rows", work * g), Launch(comb, "rows", work)]
                    continue
            self.launches.append(Launch(s, s.kind, work))

    def address(self, v) -> int:
        if v == ERROR_SLOT:
            return self.error_address
        if v == SCRATCH_SLOT:
            return self.scratch_address
        val = self.p.values[v]
        s = val.storage
        if s.kind == "view":
            return self.root_address(s.base) + int(resolve(s.offset, self.regs)) * np.dtype(val.dtype).itemsize
        return self.root_address(v)

    def param(self, ref, spec) -> np.int64:
        if ref == PARTS_PARAM:
            return np.int64(self.parts[spec.index])
        v = self.regs[ref]
        if isinstance(v, float):
            return np.float64(v).view(np.int64)
        return np.int64(v)

    def tables(self):
        """(ptrs, params) of every launch, in order (set ``scratch_address`` first)."""
        for ln in self.launches:
            s = ln.spec
            ptrs = np.array([self.address(v) for v in s.slots] or [0], dtype=np.uint64)
            params = np.array([self.param(r, s) for r in s.params] or [0], dtype=np.int64)
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


__all__ = ["KernelTables", "Launch", "split_parts", "index_error", "registers"]
