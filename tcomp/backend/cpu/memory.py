"""The CPU backend's buffers for one call: the schedule of its native kernels, handed to
the one memory planner (``tcomp.passes.memory.assign_storage``).

Why the schedule is built here: only the backend knows what needs storage (``kernel``
roles write it, a multi-output kernel writes its ``get_output`` results, ``inline`` nodes
are never stored, ``view`` nodes alias their source), exactly which pointers every native
kernel reads (its *leaves*), and the byte sizes once a plan has fixed the shapes.  The rules
(liveness, in place, donation, best fit, outputs never pooled) are the planner's; this
module adds the facts only the backend has:

* a storage is read by a kernel when one of its leaves lives in it (views included);
* **in place** (``inplace_candidates``, decided at compile time because the kernel is then
  emitted without ``noalias`` on its output and that leaf): a pure elementwise loop whose
  every read of the leaf is at the index it writes, because the leaf is a kernel's own
  contiguous buffer with the output's dtype and extents proven equal from the types (static
  or named dims: ``tcomp.passes.extents.same_extent``; two anonymous ``?`` dims may differ at
  run time, and the decision is made before any shape is known); no other leaf lives in the
  same storage; no later kernel reads it; it is no output;
* **donation** (``donation_candidates``, for ``tcomp.function``'s shared-variable updates):
  an update kernel may write straight into the shared variable's storage (no copy after
  the call).  The kernel is then scheduled right after the later of its operands and the
  last other kernel reading the old value (it has no users, so that order is valid); if it
  reads the old value itself it must be in-place compatible as above (and is emitted
  without ``noalias`` there); no output is (a view of) that input.  At call time the
  storage must also be writeable, C-contiguous, aligned and overlap no other input, and the
  update's shape in this call must be the input's (``assign_buffers``: that is the proof of
  equal extents for anonymous dims), or the call uses the assignment without donation.

Every call allocates fresh buffers (callers may keep outputs; concurrent calls share
nothing mutable).  A buffer is a 64-byte aligned ``uint8`` array; a value takes a
C-contiguous prefix of it, so a dead buffer can serve a smaller value of any dtype.
Figures (``BufferAssignment.stats``): intermediate bytes are what a call allocates beyond
the bytes of the values it returns, without reuse (one buffer per value) and with it.
"""
from __future__ import annotations

import numpy as np

from tcomp.passes.extents import same_extent
from tcomp.passes.memory import Step, assign_storage, schedule_donations
from tcomp.runtime.buffers import aligned_empty


class BufferAssignment:
    """Which buffer each stored value writes, for one plan (shapes fixed)."""

    __slots__ = ("buffer_of", "nbytes", "sizes", "donated", "kernels", "bytes_without_reuse", "bytes_with_reuse",
                 "output_bytes")

    def __init__(self, buffer_of, nbytes, sizes, escaping, donated, kernels):
        self.buffer_of = buffer_of          # stored value -> buffer id
        self.nbytes = nbytes                # stored value -> bytes it needs
        self.sizes = sizes                  # buffer id -> bytes allocated per call
        self.donated = donated              # value -> input node whose storage it is written into
        self.kernels = kernels
        # intermediates: bytes beyond what the returned outputs themselves occupy
        self.output_bytes = sum(nbytes[n] for n in escaping if n in buffer_of)
        self.bytes_without_reuse = sum(b for n, b in nbytes.items() if n not in donated) - self.output_bytes
        self.bytes_with_reuse = sum(sizes) - self.output_bytes

    def stats(self) -> dict:
        """Intermediate bytes per call without / with reuse, and the buffer counts."""
        return {"kernels": self.kernels, "buffers": len(self.sizes),
                "intermediate_bytes_without_reuse": self.bytes_without_reuse,
                "intermediate_bytes_with_reuse": self.bytes_with_reuse, "output_bytes": self.output_bytes,
                "donated_updates": len(self.donated)}

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
    """storage root -> position of the last kernel reading it."""
    last: dict = {}
    for k in prog.kernels():
        for leaf in leaves_of[k]:
            r = root[leaf]
            last[r] = max(last.get(r, -1), pos[k])
    return last


def _pure_elementwise(prog, k) -> bool:
    """A loop writing one result at each point of its own shape (leaves may broadcast)."""
    g = prog.g
    op = g.op(k)
    if op == "alloc" or prog.kernel_kind(k) not in ("elemwise", "fused"):
        return False
    if op == "fused":
        a = g.attrs(k)
        if a["reduce"] is not None or a.get("outputs") or a.get("epilogue"):
            return False
    return True


def _same_index_leaf(prog, k, leaf, leaves, root) -> bool:
    """``k`` reads ``leaf`` (its own storage, not a view) only at the index it writes: the
    leaf has the result's dtype and provably its extents (static or named dims), is no other
    leaf's storage, and (in a fused kernel) is not re-laid out by a leading dimshuffle/reshape
    step."""
    g = prog.g
    roots = [root[x] for x in leaves]
    lt, kt = g.type(leaf), g.type(k)
    if not (root[leaf] == leaf and lt.dtype == kt.dtype and same_extent(lt, kt) and roots.count(leaf) == 1):
        return False
    if g.op(k) == "fused":
        refs = {f"${i}" for i, o in enumerate(g.operands(k)) if o == leaf}
        return not any(step[0] in ("dimshuffle", "reshape") and set(step[2]) & refs for step in g.attrs(k)["body"])
    return True


def donation_candidates(prog, leaves_of: dict, donate: dict) -> dict:
    """Update kernels that may write into a donated input: kernel -> input node.
    ``donate``: graph output position -> graph input position (``tcomp.function`` updates)."""
    g = prog.g
    root = storage_roots(prog)
    out_roots = [root[o] for o in g.outputs]
    out = {}
    for pos, ipos in sorted(donate.items()):
        k, x = g.outputs[pos], g.inputs[ipos]
        if prog.role.get(k) != "kernel" or prog.results(k) != [k] or g.users(k) or g.outputs.count(k) != 1:
            continue
        if g.type(k) != g.type(x) or x in out_roots or x in out.values():
            continue
        reads = [leaf for leaf in leaves_of[k] if root[leaf] == x]
        if reads and not (_pure_elementwise(prog, k) and _same_index_leaf(prog, k, reads[0], leaves_of[k], root)):
            continue
        out[k] = x
    return out


def inplace_candidates(prog, leaves_of: dict, donated=()) -> dict:
    """Elementwise kernels that may write over a dying operand: kernel -> that leaf (see the
    module docstring); decided at compile time from static facts only."""
    g = prog.g
    root = storage_roots(prog)
    kernels = prog.kernels()
    pos = {n: i for i, n in enumerate(kernels)}
    last = _last_readers(prog, leaves_of, root, pos)
    escaping = {root[o] for o in g.outputs}
    out = {}
    for k in kernels:
        if k in donated or not _pure_elementwise(prog, k):
            continue
        for leaf in leaves_of[k]:
            if (leaf in pos and leaf not in escaping and last[leaf] == pos[k]
                    and _same_index_leaf(prog, k, leaf, leaves_of[k], root)):
                out[k] = leaf
                break
    return out


def schedule_donated(prog, leaves_of: dict, donated: dict) -> None:
    """Move each donated update kernel to right after the later of its operands and the last
    other kernel reading the old value (``prog.order`` stays a topological order)."""
    root = storage_roots(prog)
    reads = {k: {root[leaf] for leaf in leaves_of[k]} for k in prog.kernels()}
    deps = {k: set(prog.g.operands(k)) | set(leaves_of[k]) | reads[k] for k in donated}
    prog.order = schedule_donations(prog.order, reads, deps, donated)


def assign_buffers(prog, leaves_of: dict, shapes: dict, reuse: bool = True, inplace=None,
                   donate=None) -> BufferAssignment:
    """The planner's assignment for these shapes.  ``inplace`` (``inplace_candidates``) and
    ``donate`` (``donation_candidates``, already checked for this call) are offered to it;
    ``reuse=False`` gives every value its own buffer (the baseline, and a test oracle)."""
    g = prog.g
    root = storage_roots(prog)
    kernels = prog.kernels()
    steps = [Step(tuple(prog.results(k)), tuple(sorted({root[leaf] for leaf in leaves_of[k]}))) for k in kernels]
    nbytes = {v: _nbytes(shapes[v], g.type(v).dtype) for s in steps for v in s.writes}
    escaping = {root[o] for o in g.outputs}
    donate = {k: x for k, x in (donate or {}).items() if tuple(shapes[k]) == tuple(shapes[x])}
    a = assign_storage(steps, nbytes, escaping, {k: [leaf] for k, leaf in (inplace or {}).items()},
                       donate, reuse=reuse)
    return BufferAssignment(a.buffer_of, nbytes, a.sizes, escaping, a.donated, len(kernels))


def value_in(buf: np.ndarray, nbytes: int, shape, dtype) -> np.ndarray:
    """A C-contiguous ``dtype`` array of ``shape`` over the first ``nbytes`` of ``buf``."""
    return buf[:nbytes].view(np.dtype(dtype)).reshape(shape)
