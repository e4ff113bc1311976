"""``compile_graph``: a Graph -> one LLVM module, its own library in the process-wide JIT
(``tcomp.runtime.engine``; unloaded when the compiled graph is dropped) -> a callable.

Call ABI (one C entry per graph): ``int32 entry(void **ptrs, int64 *params)``.
``ptrs`` holds one data pointer per live node (inputs, constants, views, buffers);
``params`` holds, kernel after kernel, each kernel's local table (gathered from the
global array of every node's dims, the strides (in elements) of strided views, and
per-node extras: normalized slice starts/steps, arange start/delta, ...).  The entry
returns 0, or ``slot + 1`` of the node whose bounds check failed (-> ``IndexError``).

Per call, in Python: check inputs (count, dtype, rank, static and named dims), make
non-contiguous, misaligned or byte-swapped inputs native and contiguous (one copy), get
the plan (shapes; cached by input shapes, with its buffer assignment: dead intermediates' buffers are reused by later
kernels, see ``memory.py``), allocate the distinct buffers 64-byte aligned, build views, call the
entries through ctypes (which releases the GIL, so calls from several threads run in
parallel; nothing mutable is shared between calls).
"""
from __future__ import annotations

import ctypes
import itertools
import threading

import numpy as np
from llvmlite import ir

from tcomp.ir.interpreter import ShapeError
from tcomp.runtime import engine
from tcomp.runtime.buffers import aligned_empty

from . import irutil as u
from . import kernels as K
from . import kernels_conv as CV
from . import kernels_data as D
from . import kernels_gemm as GM
from . import kernels_pool as PL
from . import kernels_random as RN
from . import kernels_scan_sort as SS
from .kctx import KernelCtx
from .memory import assign_buffers, donation_candidates, inplace_candidates, schedule_donated, value_in
from .plan import Planner
from .program import Program
from .templates import KernelTemplates, emit_kernel_call

LOWERINGS = {
    "elemwise": (K.elemwise_leaves, K.lower_elemwise),
    "fused": (K.fused_leaves, K.lower_fused),
    "reduce": (K.reduce_leaves, K.lower_reduce),
    "softmax": (D.direct_leaves, K.lower_softmax),
    "matmul": (D.direct_leaves, GM.lower_gemm),  # packed GEMM; ints/mixed dtypes: K.lower_matmul
    "concat": (D.direct_leaves, D.lower_concat),
    "stack": (D.direct_leaves, D.lower_stack),
    "arange": (D.direct_leaves, D.lower_arange),
    "copy": (D.direct_leaves, D.lower_copy),
    "transpose": (D.direct_leaves, D.lower_transpose),
    "gather": (D.direct_leaves, D.lower_gather),
    "update": (D.direct_leaves, D.lower_update),
    "conv2d": (D.direct_leaves, CV.lower_conv2d),
    "conv2d_grad_input": (D.conv_leaves, CV.lower_conv2d_grad_input),
    "conv2d_grad_filters": (D.conv_leaves, CV.lower_conv2d_grad_filters),
    "pool2d": (D.direct_leaves, PL.lower_pool2d),
    "pool2d_grad": (D.direct_leaves, PL.lower_pool2d_grad),
    "pool2d_grad_grad": (D.direct_leaves, PL.lower_pool2d_grad_grad),
    "random": (RN.random_leaves, RN.lower_random),
    "cumulative": (D.direct_leaves, SS.lower_cumulative),
    "argsort": (D.direct_leaves, SS.lower_argsort),
}

_ENTRY = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p)
_counter = itertools.count()
_counter_lock = threading.Lock()


def build_module(prog: Program, symbol: str, donate=None) -> tuple:
    """The LLVM IR text of ``prog``, its entry's name, the gather index that builds the
    kernels' local parameter tables from the global parameter array, each kernel's leaves
    (the only pointers it reads: what buffer liveness is computed from), the in-place
    kernels (node -> the leaf it may overwrite; emitted without ``noalias`` there) and the
    donated update kernels (node -> the input it may write into; ``schedule_donated`` has moved
    each right after the last other reader of that input in ``prog.order``)."""
    module = ir.Module(name=symbol)
    kernel_fns, local_off = {}, {}
    leaves_of = {n: LOWERINGS[prog.kernel_kind(n)][0](prog, n) for n in prog.kernels()}
    donated = donation_candidates(prog, leaves_of, donate or {})
    schedule_donated(prog, leaves_of, donated)
    inplace = inplace_candidates(prog, leaves_of, donated)
    aliased_leaf = dict(inplace)
    aliased_leaf.update({k: x for k, x in donated.items() if x in leaves_of[k]})
    seen: dict = {}
    gather: list = []
    templates = KernelTemplates(prog)
    for n in prog.kernels():
        leaves = leaves_of[n]
        aliased = None if n not in aliased_leaf else leaves.index(aliased_leaf[n])
        local_off[n] = len(gather)
        hit = templates.lookup(n, leaves, aliased)
        if hit is not None and not templates.check:  # an emitted kernel's signature: its code, own parameters
            kernel_fns[n], slots = hit
            gather.extend(slots)
            continue
        ctx = KernelCtx(prog, module, n, leaves, aliased_leaf.get(n))
        LOWERINGS[prog.kernel_kind(n)][1](ctx)
        ctx.finish()
        # the signature line (dropped: it names the node) carries the noalias attributes
        key = (len(ctx.outs), len(leaves), aliased, str(ctx.fn).split("\n", 1)[1])
        if key in seen:  # structurally identical to an earlier kernel: drop this copy
            del module.globals[ctx.fn.name]
        else:
            seen[key] = ctx.fn
        kernel_fns[n] = seen[key]
        slots = sorted(ctx.slots, key=ctx.slots.get)
        gather.extend(slots)
        templates.record(n, kernel_fns[n], slots, hit)
    name = f"{symbol}_entry"
    fn = ir.Function(module, ir.FunctionType(u.I32, [u.PTR, u.PTR]), name=name)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    ptrs, params = fn.args
    for n in prog.kernels():
        local = b.gep(params, [ir.Constant(u.I64, local_off[n])], source_etype=u.I64, inbounds=True)
        rc = emit_kernel_call(b, kernel_fns[n], ptrs, [prog.slot[m] for m in prog.results(n) + leaves_of[n]],
                              local, str(n))
        fail = b.append_basic_block(f"fail{n}")
        ok = b.append_basic_block(f"ok{n}")
        b.cbranch(b.icmp_signed("!=", rc, ir.Constant(u.I32, 0)), fail, ok)
        b.position_at_end(fail)
        b.ret(ir.Constant(u.I32, prog.slot[n] + 1))
        b.position_at_end(ok)
    b.ret(ir.Constant(u.I32, 0))
    return str(module), name, np.asarray(gather, dtype=np.intp), leaves_of, inplace, donated


def _dimshuffle_view(a: np.ndarray, pattern) -> np.ndarray:
    kept = [p for p in pattern if p != "x"]
    dropped = tuple(ax for ax in range(a.ndim) if ax not in kept)
    y = np.squeeze(a, axis=dropped) if dropped else a
    order = sorted(kept)
    y = np.transpose(y, [order.index(p) for p in kept])
    new_axes = tuple(i for i, p in enumerate(pattern) if p == "x")
    return np.expand_dims(y, new_axes) if new_axes else y


class CompiledGraph:
    """A graph compiled to native code; call it with one NumPy array per graph input."""

    def __init__(self, graph, *, name: str = "fn", donate=None):
        """``donate``: graph output position -> graph input position whose storage that output
        may be written into (shared-variable updates; see ``memory.py`` for when it is)."""
        self.prog = prog = Program(graph)
        g = prog.g
        self.input_names = [g.name(n) or f"%{n}" for n in g.inputs]
        with _counter_lock:
            uid = next(_counter)
        symbol = f"tcomp_{''.join(c if c.isalnum() else '_' for c in name)}_{uid}"
        (self.llvm_ir_unoptimized, entry, self._gather, self._leaves, self._inplace,
         self._donated) = build_module(prog, symbol, donate)
        self._input_pos = {n: i for i, n in enumerate(g.inputs)}
        # this function's native code: unloaded when the CompiledGraph is dropped (a running
        # call holds ``self``, so never under a call)
        self._library = engine.load(self.llvm_ir_unoptimized, exports=[entry], loop_unrolling=False,
                                    cache_key=engine.ir_key(self.llvm_ir_unoptimized))
        self._entry = _ENTRY(self._library.address(entry))
        self._planner = Planner(prog)
        self._plans: dict = {}
        self._owned = {n for n in prog.order if prog.role[n] in ("kernel", "result")}
        #: buffer statistics of the most recent call (see ``bytes_allocated_per_call``)
        self.last_call_memory: dict | None = None

    # -- introspection -------------------------------------------------------------------
    def dump(self, stage: str) -> str:
        """'llvm': the module after optimization; 'asm': its host assembly."""
        if stage == "llvm":
            return self._library.llvm_ir
        if stage == "asm":
            return self._library.assembly()
        raise ValueError(f"dump stage must be 'llvm' or 'asm', got {stage!r}")

    # -- calling -------------------------------------------------------------------------------
    def _check_inputs(self, inputs) -> list:
        g = self.prog.g
        if len(inputs) != len(g.inputs):
            raise TypeError(f"function takes {len(g.inputs)} inputs ({', '.join(self.input_names)}), "
                            f"got {len(inputs)}")
        arrays, named = [], {}
        for n, label, v in zip(g.inputs, self.input_names, inputs):
            t = g.type(n)
            a = v if isinstance(v, np.ndarray) else np.asarray(v)
            if a.dtype.name != t.dtype:
                raise TypeError(f"input {label!r}: expected dtype {t.dtype}, got {a.dtype.name}")
            if a.ndim != t.ndim:
                raise ValueError(f"input {label!r}: expected rank {t.ndim} ({t}), got shape {a.shape}")
            for axis, (want, have) in enumerate(zip(t.shape, a.shape)):
                if isinstance(want, int) and want != have:
                    raise ValueError(f"input {label!r}: expected {t}, got shape {a.shape} (axis {axis})")
                if isinstance(want, str):
                    seen = named.setdefault(want, (have, label))
                    if seen[0] != have:
                        raise ValueError(f"input {label!r}: symbolic dim {want!r} is {have} here but "
                                         f"{seen[0]} in input {seen[1]!r}")
            if not (a.dtype.isnative and a.flags.aligned):  # big-endian or misaligned: a native copy
                a = np.array(a, dtype=a.dtype.newbyteorder("="), order="C")
            arrays.append(a if a.flags.c_contiguous else np.ascontiguousarray(a))
        return arrays

    def _plan(self, arrays):
        """The plan for these inputs, cached by input shapes plus, when shapes or indices
        depend on input values (a minibatch index slicing a shared dataset), those small
        inputs' bytes; planning in Python costs far more than a small kernel."""
        key = tuple(a.shape for a in arrays)
        if self.prog.value_dependent:
            host = [a for n, a in zip(self.prog.g.inputs, arrays) if self.prog.role[n] == "hostval"]
            if any(a.size > 16 for a in host):
                return self._new_plan(arrays)
            key += tuple((a.dtype.str, a.tobytes()) for a in host)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._new_plan(arrays)
            if len(self._plans) >= 1024:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _new_plan(self, arrays):
        """A plan plus its buffer assignments (with and without donation), cached together."""
        plan = self._planner.plan(arrays)
        plan.memory = assign_buffers(self.prog, self._leaves, plan.shapes, inplace=self._inplace,
                                     donate=self._donated)
        plan.memory_undonated = plan.memory if not plan.memory.donated else assign_buffers(
            self.prog, self._leaves, plan.shapes, inplace=self._inplace)
        return plan

    def _donation_ok(self, arrays, donated) -> bool:
        """The donated inputs of this call may be overwritten: writeable, C-contiguous,
        aligned, and overlapping no other input (two shared variables borrowing one array)."""
        spans = [(a.ctypes.data, a.ctypes.data + a.nbytes) for a in arrays]
        for x in set(donated.values()):
            i = self._input_pos[x]
            a = arrays[i]
            if not (a.flags.writeable and a.flags.c_contiguous and a.flags.aligned):
                return False
            lo, hi = spans[i]
            if any(j != i and a2.nbytes and lo < h2 and l2 < hi for j, (a2, (l2, h2)) in enumerate(zip(arrays, spans))):
                return False
        return True

    def bytes_allocated_per_call(self, inputs=None) -> dict:
        """Memory figures for a call with these inputs (nothing is run): kernels, distinct
        buffers, intermediate bytes without / with buffer reuse, bytes of the outputs.
        ``inputs`` may be left out when every input has a static shape and no shape
        depends on input values (then the sizes are known from the types alone)."""
        if inputs is None:
            g = self.prog.g
            types = [g.type(n) for n in g.inputs]
            if self.prog.value_dependent or not all(t.is_static for t in types):
                raise ValueError("bytes_allocated_per_call: input shapes are not all static (or shapes depend on "
                                 "input values); pass example inputs")
            inputs = [np.zeros(t.shape, dtype=t.dtype) for t in types]
        arrays = self._check_inputs(list(inputs))
        try:
            plan = self._plan(arrays)
        except ShapeError as e:
            raise ValueError(str(e)) from None
        return plan.memory.stats()

    def __call__(self, inputs) -> list:
        prog = self.prog
        g = prog.g
        arrays = self._check_inputs(list(inputs))
        try:
            plan = self._plan(arrays)
        except ShapeError as e:
            raise ValueError(str(e)) from None
        memory = plan.memory
        if memory.donated and not self._donation_ok(arrays, memory.donated):
            memory = plan.memory_undonated
        mem = self._materialize(plan, memory, arrays)
        self.last_call_memory = memory.stats()
        ptrs = np.fromiter((a.ctypes.data for a in mem), dtype=np.uintp, count=len(mem))
        params = plan.params.copy()
        for n, off in prog.strides_off.items():
            a = mem[prog.slot[n]]
            if a.ndim:
                params[off:off + a.ndim] = [s // a.itemsize for s in a.strides]
        local = params[self._gather] if self._gather.size else params
        rc = self._entry(ptrs.ctypes.data, local.ctypes.data)
        if rc:
            n = next(m for m, slot in prog.slot.items() if slot == rc - 1)
            raise IndexError(f"{prog.describe(n)}: index out of bounds (checked in native code)")
        outs, seen = [], set()
        for n in g.outputs:
            a = mem[prog.slot[n]]
            if n not in self._owned or n in seen:  # inputs, constants, views, repeats: a fresh aligned copy
                c = aligned_empty(a.shape, a.dtype)
                np.copyto(c, a)
                a = c
            seen.add(n)
            outs.append(a)
        return outs

    def _materialize(self, plan, assignment, arrays) -> list:
        prog = self.prog
        g = prog.g
        mem = [None] * len(prog.order)
        inputs = dict(zip(g.inputs, arrays))
        bufs = assignment.allocate()
        for n in prog.order:
            role = prog.role[n]
            op = g.op(n)
            if role == "input":
                a = inputs[n]
            elif role == "const":
                a = g.attrs(n)["value"].value
            elif role == "hostval":
                a = plan.values[n]
                if isinstance(a, tuple):  # a multi-output kernel run on the host: its get_outputs hold the arrays
                    a = _EMPTY
            elif role == "view":
                src = mem[prog.slot[g.operands(n)[0]]]
                if op == "dimshuffle":
                    a = _dimshuffle_view(src, g.attrs(n)["pattern"])
                elif op == "reshape":
                    a = src.reshape(plan.shapes[n])
                else:
                    a = src[plan.index_tuples[n] + (Ellipsis,)]  # Ellipsis: all-int indices give a 0-d view
            elif role == "inline" or (role == "kernel" and n not in assignment.nbytes):
                a = _EMPTY  # computed in its consumer's loop / a multi-output kernel (its results hold memory)
            elif n in assignment.donated:
                a = inputs[assignment.donated[n]]
            else:
                buf, size = bufs[assignment.buffer_of[n]], assignment.nbytes[n]
                if op == "reshape":  # strided source: the kernel copies it into C order, then a view
                    src_shape = plan.shapes[g.operands(n)[0]]
                    a = value_in(buf, size, src_shape, g.type(n).dtype).reshape(plan.shapes[n])
                else:
                    a = value_in(buf, size, plan.shapes[n], g.type(n).dtype)
            mem[prog.slot[n]] = a
        return mem


_EMPTY = np.zeros(1, dtype=np.uint8)


def compile_graph(graph, *, name: str = "fn", donate=None) -> CompiledGraph:
    """Compile ``graph`` (a ``tcomp.ir.Graph``) for the host CPU (``tcomp.config.native_program``:
    as one native program, see ``native_function.py``)."""
    from tcomp import config

    if config.native_program:
        from .staged import compile_native

        return compile_native(graph, name=name, donate=donate)
    return CompiledGraph(graph, name=name, donate=donate)
