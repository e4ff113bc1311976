"""Buffer reuse by liveness for one call of a compiled graph.

Why here and not in ``passes/memory.py``: the CPU backend decides what needs storage
(``kernel`` roles; ``inline`` nodes are never stored, ``view`` nodes alias their source) and
exactly which pointers every native kernel reads (its *leaves*), and the byte sizes are
only known once a plan has fixed the shapes.  The graph-level ``plan_memory`` cannot see
either, so this module works on the ``Program`` plus the concrete shapes of a plan, once
per plan (the assignment is cached with the plan), and each call allocates only the
distinct buffers.

Rules (what makes reuse safe):

* a kernel's result lives in the *storage* of its node; a view (dimshuffle, reshape,
  basic slice) reads its source's storage, so a read of a view is a read of that storage;
* a storage is dead after the last kernel that reads it through a leaf pointer (kernels
  run in ``prog.order``; nothing else reads tcomp-owned memory during the call);
* a kernel never gets a buffer that one of its own leaves still lives in: storages read
  for the last time by kernel ``k`` are freed only *after* ``k`` is assigned, so the
  ``noalias`` promise on kernel pointers holds; the one exception is an *in-place*
  elementwise kernel (``inplace_candidates``), compiled without ``noalias`` on its output
  and the dying leaf it overwrites, which it reads at exactly the index it writes;
* storages returned to the caller (graph outputs, or what an output views) get a buffer
  that is never pooled again: a fresh one, or (in place, e.g. ``W - lr * grad``) the
  buffer of the dying operand when it has exactly the output's size; outputs never share
  memory with one another or with anything overwritten later, and every call allocates
  fresh buffers (callers may keep outputs; concurrent calls share nothing mutable).

Figures (``BufferAssignment.stats``): intermediate bytes are what a call allocates beyond
the bytes of the values it returns, without reuse (one buffer per kernel) and with it.

A buffer is a 64-byte aligned ``uint8`` array; a value takes a C-contiguous prefix of it,
so a dead buffer can serve a smaller value of any dtype, and one that is too small is
grown (its final size is the largest value it holds) rather than leaving it idle.
"""
from __future__ import annotations

import numpy as np

from tcomp.runtime.buffers import aligned_empty


class BufferAssignment:
    """Which buffer each kernel node writes, for one plan (shapes fixed)."""

    __slots__ = ("buffer_of", "nbytes", "sizes", "output_buffers", "bytes_without_reuse", "bytes_with_reuse",
                 "output_bytes")

    def __init__(self, buffer_of, nbytes, sizes, escaping):
        self.buffer_of = buffer_of          # kernel node -> buffer id
        self.nbytes = nbytes                # kernel node -> bytes its value needs
        self.sizes = sizes                  # buffer id -> bytes allocated per call
        self.output_buffers = {buffer_of[n] for n in escaping if n in buffer_of}
        # intermediates: bytes beyond what the returned outputs themselves occupy
        self.output_bytes = sum(nbytes[n] for n in escaping if n in nbytes)
        self.bytes_without_reuse = sum(nbytes.values()) - self.output_bytes
        self.bytes_with_reuse = sum(sizes) - self.output_bytes

    def stats(self) -> dict:
        """Intermediate bytes per call without / with reuse, and the buffer counts."""
        return {"kernels": len(self.buffer_of), "buffers": len(self.sizes),
                "intermediate_bytes_without_reuse": self.bytes_without_reuse,
                "intermediate_bytes_with_reuse": self.bytes_with_reuse, "output_bytes": self.output_bytes}

    def allocate(self) -> list:
        """Fresh aligned storage for one call (never shared between calls)."""
        return [aligned_empty((s,), np.uint8) for s in self.sizes]


def storage_roots(prog) -> dict:
    """node -> the node whose memory it lives in (itself unless a view)."""
    g = prog.g
    root = {}
    for n in prog.order:
        root[n] = root[g.operands(n)[0]] if prog.role[n] == "view" else n
    return root


def _nbytes(shape, dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def _last_readers(prog, leaves_of, root, pos) -> dict:
    """storage root (a kernel node) -> position of the last kernel reading it."""
    last: dict = {}
    for k in prog.kernels():
        for leaf in leaves_of[k]:
            r = root[leaf]
            if r in pos:
                last[r] = max(last.get(r, -1), pos[k])
    return last


def inplace_candidates(prog, leaves_of: dict) -> dict:
    """Elementwise kernels that may write over a dying operand: kernel -> that leaf.

    Decided at compile time (the kernel is then emitted without ``noalias`` on its output
    and that leaf), from static facts only: the kernel is a pure elementwise loop (an
    elementwise op other than ``alloc``, or a fused kernel without reduction) whose every
    read of the leaf is at the index it writes, because the leaf is a kernel's own
    contiguous buffer with the output's exact type (static or named dims: same extents at
    run time, so never a broadcast read); no other leaf lives in the same storage (a view
    would read it at other indices); the leaf is read by no later kernel and is no output.
    """
    g = prog.g
    root = storage_roots(prog)
    kernels = prog.kernels()
    pos = {n: i for i, n in enumerate(kernels)}
    last = _last_readers(prog, leaves_of, root, pos)
    escaping = {root[o] for o in g.outputs}
    out = {}
    for k in kernels:
        op = g.op(k)
        if op == "alloc" or prog.kernel_kind(k) not in ("elemwise", "fused"):
            continue
        if op == "fused" and g.attrs(k)["reduce"] is not None:
            continue
        t = g.type(k)
        if any(d is None for d in t.shape):
            continue
        roots = [root[leaf] for leaf in leaves_of[k]]
        for leaf in leaves_of[k]:
            if (root[leaf] == leaf and leaf in pos and leaf not in escaping and last[leaf] == pos[k]
                    and g.type(leaf) == t and roots.count(leaf) == 1):
                out[k] = leaf
                break
    return out


def assign_buffers(prog, leaves_of: dict, shapes: dict, reuse: bool = True, inplace=None) -> BufferAssignment:
    """Greedy linear-scan assignment in kernel order (best fit among dead buffers);
    ``inplace`` (from ``inplace_candidates``) lets such a kernel take its dying leaf's buffer;
    ``reuse=False`` gives every kernel its own buffer (the baseline, and a test oracle)."""
    g = prog.g
    root = storage_roots(prog)
    kernels = prog.kernels()
    pos = {n: i for i, n in enumerate(kernels)}
    last = _last_readers(prog, leaves_of, root, pos)
    escaping = {root[o] for o in g.outputs}
    inplace = inplace if reuse and inplace else {}
    sizes: list = []
    output_buffers: set = set()
    free: list = []
    dies: dict = {}
    buffer_of, nbytes = {}, {}
    for k in kernels:
        need = _nbytes(shapes[k], g.type(k).dtype)  # a strided-source reshape copy has the same element count
        nbytes[k] = need
        b = None
        if k in inplace and nbytes[inplace[k]] == need:
            src = buffer_of[inplace[k]]
            if k not in escaping or sizes[src] == need:  # an output gets no larger buffer than itself
                b = src
        if b is None and reuse and k not in escaping and free:
            fits = [i for i in free if sizes[i] >= need]
            b = min(fits, key=sizes.__getitem__) if fits else max(free, key=sizes.__getitem__)
            free.remove(b)
            sizes[b] = max(sizes[b], need)
        if b is None:
            b = len(sizes)
            sizes.append(need)
        if k in escaping:
            output_buffers.add(b)
        buffer_of[k] = b
        for r in dies.pop(pos[k], ()):  # read for the last time by k: free for later kernels only
            if buffer_of[r] != b:  # (not when k took it over in place)
                free.append(buffer_of[r])
        if k not in escaping:
            end = last.get(k, pos[k])
            if end == pos[k]:  # no kernel reads it (only its shape is used)
                free.append(b)
            else:
                dies.setdefault(end, []).append(k)
    return BufferAssignment(buffer_of, nbytes, sizes, escaping)


def value_in(buf: np.ndarray, nbytes: int, shape, dtype) -> np.ndarray:
    """A C-contiguous ``dtype`` array of ``shape`` over the first ``nbytes`` of ``buf``."""
    return buf[:nbytes].view(np.dtype(dtype)).reshape(shape)
