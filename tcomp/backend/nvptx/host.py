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


#: root slots of a :class:`CallPlan`'s encoded addresses (then inputs, outputs, constants)
_NULL, _WS, _ERR, _SCRATCH, _FIRST = 0, 1, 2, 3, 4
_SHIFT = 48
_LOW = (1 << _SHIFT) - 1


def constant_ids(prog) -> tuple:
    return tuple(v.id for v in prog.values if v.storage.kind == "constant")


class CallPlan:
    """Everything of a call that depends only on the registers, built once per distinct
    register set (every call of a static-shape function has the same): the launches, the
    output shapes and sizes, the workspace and scratch sizes, and the tables of every launch
    as one blob of 8-byte words whose pointer words are *encoded* (root slot << 48 | byte
    offset: a view's offset or a workspace buffer's).  A call then fills the blob with one
    NumPy gather + add (:meth:`blob`) from its roots (workspace, error word, scratch,
    inputs, outputs, constants), instead of walking every kernel's slots in Python."""

    def __init__(self, prog, specs, regs):
        n_in, n_out = len(prog.inputs), len(prog.outputs)
        consts = {v: i for i, v in enumerate(constant_ids(prog))}
        offsets = {b.id: int(resolve(b.offset, regs)) for b in prog.buffers}

        def root(v):
            s = prog.values[v].storage
            if s.kind == "input":
                slot, off = _FIRST + s.index, 0
            elif s.kind == "output":
                slot, off = _FIRST + n_in + s.index, 0
            elif s.kind == "constant":
                slot, off = _FIRST + n_in + n_out + consts[v], 0
            else:
                slot, off = _WS, offsets[s.index]
            return (slot << _SHIFT) + off

        t = KernelTables(prog, specs, regs, root, _ERR << _SHIFT)
        t.scratch_address = _SCRATCH << _SHIFT
        self.launches, self.scratch_bytes = t.launches, t.scratch_bytes
        words, is_ptr, self.where = [], [], []
        off = 0
        for ptrs, params in t.tables():
            self.where.append((off * 8, (off + len(ptrs)) * 8))
            words += [ptrs, params.view(np.uint64)]
            is_ptr += [np.ones(len(ptrs), bool), np.zeros(len(params), bool)]
            off += len(ptrs) + len(params)
        words = np.concatenate(words) if words else np.zeros(1, np.uint64)
        self.ptr_words = np.flatnonzero(np.concatenate(is_ptr)) if is_ptr else np.zeros(0, np.int64)
        enc = words[self.ptr_words]
        self.enc_root, self.enc_off = (enc >> np.uint64(_SHIFT)).astype(np.intp), enc & np.uint64(_LOW)
        self.template = words
        self.out_shapes = [tuple(resolve(prog.values[o.value].dims, regs)) for o in prog.outputs]
        self.out_nbytes = [int(np.prod(s, dtype=np.int64)) * np.dtype(prog.values[o.value].dtype).itemsize
                           for s, o in zip(self.out_shapes, prog.outputs)]
        self.workspace_bytes = int(resolve(prog.workspace, regs))

    def blob(self, workspace, error, scratch, inputs, outputs, constants) -> np.ndarray:
        """The tables of every launch for these root addresses (uint64 words)."""
        roots = np.array([0, workspace, error, scratch, *inputs, *outputs, *constants], np.uint64)
        words = self.template.copy()
        words[self.ptr_words] = roots[self.enc_root] + self.enc_off
        return words


class PlanCache:
    """CallPlans by register values (a few kept: shapes usually repeat)."""

    def __init__(self, prog, specs, size: int = 8):
        self.prog, self.specs, self.size, self.plans = prog, specs, size, {}
        #: value ids of the program's constants, in the order ``CallPlan.blob`` takes them
        self.constant_ids = constant_ids(prog)

    def get(self, regs) -> CallPlan:
        key = tuple(regs.values())
        plan = self.plans.get(key)
        if plan is None:
            if len(self.plans) >= self.size:
                self.plans.pop(next(iter(self.plans)))
            plan = self.plans[key] = CallPlan(self.prog, self.specs, regs)
        return plan


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


__all__ = ["CallPlan", "KernelTables", "Launch", "PlanCache", "split_parts", "index_error", "registers"]
