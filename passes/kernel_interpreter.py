"""A Python interpreter of a whole kernel program: NumPy per kernel over one workspace.

It runs what a generated ``run`` entry would: the shape program (dims, checks, offsets),
every value at its storage (a workspace buffer at its byte offset, the caller's output
arrays, views through ``as_strided`` on their root), and the kernels in schedule order, each
by its op's NumPy reference.  Its results equal the reference interpreter's exactly when
offsets, strides, views and the schedule are right; :func:`verify_memory` proves the buffer
assignment (no two live values overlap, except the pairs a kernel declares ``may_alias``;
nothing is read before it is written; every value fits its buffer and the workspace).
"""
from __future__ import annotations

import numpy as np

from tcomp.ir import get_op
from tcomp.ir.ops.shape import _dimshuffle_impl
from tcomp.ir.types import TensorType, TupleType

from .kernel_program import KernelProgram, evaluate_shape_program, resolve


def _nbytes(p, v, regs) -> int:
    val = p.values[v]
    return int(np.prod(resolve(val.dims, regs), dtype=np.int64)) * np.dtype(val.dtype).itemsize


def verify_memory(p: KernelProgram, regs: dict) -> None:
    """Raise ValueError unless the buffer assignment is sound for these register values."""
    ws = resolve(p.workspace, regs)
    buf = {b.id: (resolve(b.offset, regs), resolve(b.size, regs)) for b in p.buffers}
    for b, (off, size) in buf.items():
        if off % 64 or off + size > ws:
            raise ValueError(f"buffer {b} at {off} ({size} bytes) is misaligned or outside the {ws}-byte workspace")

    def root(v):
        s = p.values[v].storage
        return s.base if s.kind == "view" else v

    last: dict = {}
    for i, k in enumerate(p.kernels):
        for r in k.reads:
            last[root(r)] = i
    ready = {v.id for v in p.values if v.storage.kind in ("input", "constant")}
    live: dict = {}  # workspace value -> (start, end)
    for i, k in enumerate(p.kernels):
        for r in k.reads:
            if root(r) not in ready:
                raise ValueError(f"kernel {i} ({k.label}) reads v{r} before it is written")
        for w in k.writes:
            s = p.values[w].storage
            ready.add(w)
            if s.kind != "buffer":
                continue
            off, size = buf[s.index]
            n = _nbytes(p, w, regs)
            if n > size:
                raise ValueError(f"v{w} ({n} bytes) does not fit buffer {s.index} ({size} bytes)")
            for u, (a, z) in live.items():
                if u == w or not (a < off + n and off < z):
                    continue
                if (w, u) in k.may_alias and last.get(u) == i:
                    continue
                raise ValueError(f"kernel {i} ({k.label}) writes v{w} over live v{u} (bytes {off}..{off + n} "
                                 f"and {a}..{z})")
            live[w] = (off, off + n)
        for u in [u for u in live if last.get(u, -1) <= i]:
            del live[u]


class _Memory:
    def __init__(self, p, arrays, regs, donate):
        self.p, self.regs = p, regs
        # the entry's contract: C-contiguous inputs (np.ascontiguousarray would make a 0-d value 1-d)
        self.inputs = [a if a.flags.c_contiguous else np.array(a, order="C") for a in map(np.asarray, arrays)]
        self.ws = np.full(resolve(p.workspace, regs), 0xCD, dtype=np.uint8)  # garbage: nothing reads unwritten bytes
        self.outputs = []
        for o in p.outputs:
            v = p.values[o.value]
            if donate and o.donates is not None and self.inputs[o.donates].shape == resolve(v.dims, regs):
                self.outputs.append(self.inputs[o.donates])
            else:
                self.outputs.append(np.empty(resolve(v.dims, regs), v.dtype))
        self.offsets = {b.id: resolve(b.offset, regs) for b in p.buffers}

    def array(self, v) -> np.ndarray:
        val = self.p.values[v]
        s = val.storage
        shape = resolve(val.dims, self.regs)
        if s.kind == "input":
            return self.inputs[s.index]
        if s.kind == "constant":
            return s.data.value
        if s.kind == "output":
            return self.outputs[s.index]
        if s.kind == "buffer":
            return np.ndarray(shape, val.dtype, buffer=self.ws, offset=self.offsets[s.index])
        base = self.array(s.base).reshape(-1)
        if 0 in shape:
            return np.empty(shape, val.dtype)
        off, strides = resolve(s.offset, self.regs), resolve(s.strides, self.regs)
        hi = off + sum((d - 1) * st for d, st in zip(shape, strides) if st > 0)
        lo = off + sum((d - 1) * st for d, st in zip(shape, strides) if st < 0)
        if lo < 0 or hi >= base.size:
            raise ValueError(f"view v{v} reaches elements {lo}..{hi} of a root of {base.size}")
        item = base.itemsize
        return np.lib.stride_tricks.as_strided(base[off:], shape, tuple(st * item for st in strides), writeable=False)


def _run_kernel(k, mem: _Memory):
    p, regs = mem.p, mem.regs
    args = [mem.array(a.value) if a.value is not None else np.asarray(resolve(a.scalar, regs)).astype(a.dtype)
            for a in k.args]
    outs = [mem.array(w) for w in k.writes]
    attrs = dict(k.attrs)
    if k.kind in ("loop", "branch"):  # nested programs (passes/interpret_loops.py)
        from .interpret_loops import run_control

        return run_control(k, args, outs, run_program)
    if k.kind == "scalar":
        results = [args[0]]
    elif k.kind == "copy" and k.op in ("copy", "reshape"):
        results = [np.reshape(args[0], outs[0].shape)]
    elif k.kind == "transpose":
        results = [_dimshuffle_impl(args[:1], attrs, None)]
    else:
        types = [TensorType(p.values[w].dtype, o.shape) for w, o in zip(k.writes, outs)]
        t = types[0] if len(types) == 1 else TupleType(types)
        with np.errstate(all="ignore"):
            r = get_op(k.op).impl(args, attrs, t)
        results = list(r) if isinstance(t, TupleType) else [r]
    for o, r in zip(outs, results):
        r = np.asarray(r)
        if r.shape != o.shape:
            raise ValueError(f"{k.label}: computed shape {r.shape}, the program says {o.shape}")
        with np.errstate(all="ignore"):
            np.copyto(o, r.astype(o.dtype, copy=False), casting="unsafe")


def run_program(p: KernelProgram, arrays, donate: bool = False, verify: bool = True) -> list:
    """The outputs of ``p`` on ``arrays`` (one per input).  ``donate`` passes a donated
    update's input array as its output (as a caller that may overwrite it would)."""
    regs = evaluate_shape_program(p.shape, arrays)
    if verify:
        verify_memory(p, regs)
    mem = _Memory(p, arrays, regs, donate)
    for k in p.kernels:
        _run_kernel(k, mem)
    return mem.outputs


__all__ = ["run_program", "verify_memory"]
