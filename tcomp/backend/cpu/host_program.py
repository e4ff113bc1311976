"""The host program of a kernel program: the CPU module's ``plan`` and ``run`` entries.

One LLVM module per compiled function holds the kernels (emitted by the lowerings of
``compiled.LOWERINGS``, unchanged) and two C-ABI entries generated from the kernel program
(``tcomp.passes.kernel_program``; its docstring is the design):

``int32 <sym>_plan(const int64 *dims, void *const *inputs, int64 *regs)``
    ``dims``: every input's dims, input after input; ``inputs``: one data pointer per input
    (only the shape-deciding scalar inputs are read).  Runs the shape program as
    straight-line ``i64``/``f64`` code; every check returns its code (index + 1) at once.
    Writes ``regs[0]`` = workspace bytes, ``regs[1:H]`` = the output dims (output after
    output), and ``regs[H + k]`` = register ``s<k>`` (f64 registers as their bits), each as
    soon as it is computed, so a failed check's message can be formatted from ``regs``.
``int32 <sym>_run(void *const *inputs, void *const *outputs, void *workspace, const int64 *regs)``
    for each kernel in schedule order: its pointers (root + offset for views, workspace +
    buffer offset), its local parameter table (dims, strides, params) stored into a stack
    array from the registers, then the call; returns 0, or 1 + the position of a
    bounds-checked kernel that failed.

Why the kernels' own emitters: they read a program view (roles, layouts, the offsets of
each node's dims/strides/extras in a parameter array; ``emitter_view.py``).  :class:`Sites` is that view of a
kernel program: its "parameter array" is a table of register references, so a kernel's
local table (``KernelCtx.slots``) maps straight onto registers and the program's ``params``
groups fill exactly the extras each emitter reads.  Nothing is re-derived: roles come from
the values' storage, the schedule and aliasing from the program.

Symbols are ``tcomp_<first 16 hex digits of program_hash>_plan``/``_run`` and the kernels
are named by graph node, so the same graph gives the same module text in any process;
constants are internal module globals.  The thread count is the process-wide cell the
parallel loops read (``parallel.CELL_SYMBOL``), an external global of the module.
"""
from __future__ import annotations

import contextlib
import struct

import numpy as np
from llvmlite import ir

from tcomp.ir import dtypes as dt
from tcomp.ir.types import TupleType
from tcomp.passes.kernel_program import KernelProgram, program_hash

from . import host_loops, host_pointers
from . import irutil as u
from .emitter_view import EmitterView
from .host_plan import PlanEmitter, reg_index, truth
from .kctx import KernelCtx
from .split_module import remember
from .templates import KernelTemplates

#: a kernel with more parameter slots than this gets them from a constant table (one call)
TABLE_FILL_MIN = 16
#: from this many kernels (plus a quarter of the shape program's instructions) the entries
#: are a module of their own compiled without IR passes and with FastISel
#: (:meth:`HostProgram.emit_parts`): the 784-512-512-10 MLP step (32 kernels, 36 shape
#: instructions) has 21,000 characters of ``plan``/``run`` that cost ~35 ms of CPU at O3 in
#: the kernels' module and 4 ms so; below it they join a kernel module (one optimizer job
#: less, and no second worker process to start, ~60 ms, where only one runs)
HOST_FAST_MIN = 24
#: kernels of less code than this (IR characters, inlined calls counted) stay one module:
#: about 0.5 s of LLVM (a 784-512-512-10 MLP step is ~100,000 and compiled slower split,
#: the second optimizer process's start-up and the shared cores costing more than it saved)
SPLIT_MIN_COST = 200_000
#: a program with its entries apart (HOST_FAST_MIN) hands its kernels to the optimizer in
#: modules of about this many instructions as they are emitted (``Splitter.flush``), so
#: that LLVM starts on them while later kernels are emitted
FLUSH_MIN_INSTRUCTIONS = 800
#: kernel kinds ``run`` emits itself (no graph node or no lowering of their own)
HOST_KINDS = ("scalar", "loop", "branch")


def lowerings():
    from .compiled import LOWERINGS

    return LOWERINGS


class _EntryBuilder(ir.IRBuilder):
    """An IRBuilder whose ``goto_block`` finds a block's terminator in O(1) (llvmlite's
    ``position_before`` looks it up with ``list.index``).  The run entry hoists every register
    load and pointer into its entry block, once per value, so that lookup made emission
    quadratic in graph size (0.8 s of a 2000-step chain gradient).  Same IR: a terminator is
    its block's last instruction."""

    @contextlib.contextmanager
    def goto_block(self, block):
        old_block = self.basic_block
        term = block.terminator
        if term is not None and block.instructions and block.instructions[-1] is term:
            self._block, self._anchor = block, len(block.instructions) - 1
        elif term is not None:
            self.position_before(term)
        else:
            self.position_at_end(block)
        try:
            yield
        finally:
            self.position_at_end(old_block)


def _f64_bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", float(x)))[0]


class Sites(EmitterView):
    """What the kernel emitters read about each node (roles, layouts, parameter offsets),
    made from a kernel program and the graph it was lowered from (``_Lowering.g``: the node
    ids it names); the graph-only queries are :class:`EmitterView`'s."""

    def __init__(self, g, kp: KernelProgram):
        self.g, self.kp = g, kp
        self.order = g.topo_order()
        self.value_of = {v.node: v for v in kp.values if v.node is not None}
        self.kernel_of = {k.node: k for k in kp.kernels if k.node is not None and k.kind not in HOST_KINDS}
        self.role, self.layout = {}, {}
        for n in self.order:
            op, v = g.op(n), self.value_of.get(n)
            if op == "input":
                role = "input"
            elif op == "constant":
                role = "const"
            elif n in self.kernel_of:
                role = "kernel"
            elif op == "get_output":
                role = "result"
            elif v is not None and v.storage.kind == "view":
                role = "view"
            else:
                role = "hostval"
            self.role[n] = role
            strided = v is not None and v.storage.kind == "view" and not v.storage.contiguous
            self.layout[n] = "strided" if strided else "contig"
        #: the parameter array: global offset -> DimRef (None: never read by a kernel)
        self.refs: list = []
        self.dims_off, self.strides_off, self.extra_off = {}, {}, {}
        for n in self.order:
            t, v = g.type(n), self.value_of.get(n)
            self.dims_off[n] = len(self.refs)
            if not isinstance(t, TupleType):
                self.refs.extend(v.dims if v is not None else [d if isinstance(d, int) else None for d in t.shape])
            if self.layout[n] == "strided":
                self.strides_off[n] = len(self.refs)
                self.refs.extend(v.storage.strides)
            if n in self.kernel_of:
                extra = self._kernel_extras(n)
                if extra:
                    self.extra_off[n] = len(self.refs)
                    self.refs.extend(extra)
        self.n_params = max(len(self.refs), 1)
        self.slot = {n: k for k, n in enumerate(self.order)}
        self.value_dependent = bool(kp.shape.value_inputs)

    def _kernel_extras(self, n) -> list:
        """The extras the lowering of ``n`` reads (``EmitterView._extra_len``), from the kernel's params."""
        k, op = self.kernel_of[n], self.g.op(n)
        params = dict(k.params)
        if op == "arange":
            out = list(params["start_delta"])
        elif op == "subtensor":
            out = list(params["index"])
        elif op in ("set_subtensor", "inc_subtensor"):
            out = list(params["index"]) + list(params["selection"])
        elif op == "fused":
            out = []
            for key, _ in self.fused_dims_layout(n):
                out.extend(params["space"] if key == "it" else params[f"step{key}"])
        else:
            out = []
        want = self._extra_len(n)
        if len(out) != want:
            raise TypeError(f"cpu backend: kernel {k.label} has {len(out)} parameters, its lowering reads {want}")
        return out


class HostProgram:
    """Emits the module of one kernel program (see the module docstring)."""

    def __init__(self, kp: KernelProgram, g, symbol: str | None = None, known_hash: str | None = None):
        self.kp, self.g = kp, g
        #: ``known_hash``: the hash a graph-cache entry stored with ``kp`` (tcomp/runtime/graph_cache.py)
        self.hash = known_hash or program_hash(kp)
        self.symbol = symbol or f"tcomp_{self.hash[:16]}"
        self.sites = Sites(g, kp)
        self.module = ir.Module(name=self.symbol)
        self.types = ["f64" if i.type == "f64" else "i64" for i in kp.shape.insts]
        #: host slots at the start of ``regs``: workspace bytes, then every output's dims
        self.out_slots = []
        h = 1
        for o in kp.outputs:
            nd = kp.values[o.value].ndim
            self.out_slots.append((h, h + nd))
            h += nd
        self.n_host = h
        self.n_regs = h + len(kp.shape.insts)
        self.dim_off = []
        off = 0
        for x in kp.inputs:
            self.dim_off.append(off)
            off += len(x.shape)
        self.n_dims = off
        self.plan_name, self.run_name = f"{self.symbol}_plan", f"{self.symbol}_run"
        self._globals: dict = {}
        self._kernel_fns = None  # emitted ahead of ``run`` by emit_parts
        self._consts: dict = {}  # constant value -> its module global
        self._const_gv, self._const_index = None, {}

    # -- plan -------------------------------------------------------------------------------------
    def emit_plan(self) -> None:
        PlanEmitter(self).emit()

    # -- run --------------------------------------------------------------------------------------
    def emit_run(self) -> None:
        kp, sites = self.kp, self.sites
        fn = ir.Function(self.module, ir.FunctionType(u.I32, [u.PTR] * 4), name=self.run_name)
        self._run_fn = fn
        inputs, outputs, ws, regs = fn.args
        b = _EntryBuilder(fn.append_basic_block("entry"))
        self._b = b
        self._regs = regs
        self._regval: dict = {}  # (block, register) -> its i64 load in that block
        self._ptr: dict = {}     # (block, value) -> its data pointer in that block
        self._tables: dict = {}  # parameter-table contents -> its module global (_fill_from_table)
        self._ptables: dict = {}  # pointer-recipe table contents -> its module global (host_pointers)
        self._hoisting = False
        self._args = (inputs, outputs, ws)
        kernel_fns = self._kernel_fns if self._kernel_fns is not None else self._emit_kernels()
        self._nested = host_loops.prepare(self)  # loop and branch kernels' nested programs
        width = max([len(s) for _, s in kernel_fns.values()] + [1])
        table = b.alloca(u.I64, size=width, name="params")
        nptr = max([len(k.writes) + len(self._leaves[k.node]) for k in kp.kernels if k.node in self._leaves] + [1])
        ptr_array = b.alloca(u.PTR, size=nptr, name="ptrs") if nptr > host_pointers.DIRECT_PTRS else None
        for pos, k in enumerate(kp.kernels):
            if k.kind == "scalar":
                self._store_scalar(k)
                continue
            if k.kind in host_loops.CONTROL_KINDS:
                host_loops.emit_control(self, pos, k, self._nested[pos])
                continue
            if k.node is None or k.node not in sites.kernel_of:
                self._emit_copy(k)
                continue
            kfn, slots = kernel_fns[k.node]
            refs = []
            for off in slots:
                r = sites.refs[off]
                if r is None:
                    raise TypeError(f"cpu backend: kernel {k.label} reads parameter {off}, which no value defines")
                refs.append(r)
            if len(refs) > TABLE_FILL_MIN:
                self._fill_from_table(table, refs)
            else:
                for i, r in enumerate(refs):
                    b.store(self._param(r), b.gep(table, [ir.Constant(u.I64, i)], source_etype=u.I64, inbounds=True))
            leaves = self._leaves[k.node]
            values = list(k.writes) + [sites.value_of[leaf].id for leaf in leaves]
            if len(values) > host_pointers.DIRECT_PTRS:
                rc = host_pointers.emit_call(self, kfn, values, table, ptr_array)
            else:
                rc = b.call(kfn, [self.ptr(v) for v in values] + [table])
            fail, ok = fn.append_basic_block(f"fail{pos}"), fn.append_basic_block(f"ok{pos}")
            b.cbranch(b.icmp_signed("!=", rc, ir.Constant(u.I32, 0)), fail, ok)
            b.position_at_end(fail)
            b.ret(ir.Constant(u.I32, pos + 1))
            b.position_at_end(ok)
        b.ret(ir.Constant(u.I32, 0))

    def _fill_from_table(self, table, refs) -> None:
        """Fill a kernel's local table with one call of a small loop over a constant table of
        (is-register, register index or literal) pairs, instead of one store per slot: a deep
        gradient has hundreds of kernels with ~60 slots each, and LLVM's SLP vectorizer,
        dead-store elimination and register allocation over those stores were seconds."""
        entries = []
        for r in refs:
            if isinstance(r, str):
                entries += [1, self.n_host + reg_index(r)]
            else:
                entries += [0, _f64_bits(r) if isinstance(r, float) else int(r)]
        gv = self.constant_table(self._tables, "tbl", entries)
        self._b.call(self._fill_fn(), [table, self._regs, gv, ir.Constant(u.I64, len(refs))])

    def constant_table(self, tables: dict, stem: str, entries: list):
        """A private constant i64 array holding ``entries``: one module global per distinct
        content, kept in ``tables`` (content -> global)."""
        key = tuple(entries)
        gv = tables.get(key)
        if gv is None:
            aty = ir.ArrayType(u.I64, len(entries))
            gv = ir.GlobalVariable(self.module, aty, name=f"{self.symbol}_{stem}{len(tables)}")
            gv.linkage = "internal"
            gv.global_constant = True
            gv.initializer = ir.Constant(aty, entries)
            tables[key] = gv
        return gv

    def _fill_fn(self):
        """``fill(dst, regs, tbl, n)``: ``dst[i] = tbl[2i] ? regs[tbl[2i+1]] : tbl[2i+1]``."""
        name = f"{self.symbol}_fill_params"
        if name in self.module.globals:
            return self.module.globals[name]
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [u.PTR, u.PTR, u.PTR, u.I64]), name=name)
        fn.linkage = "internal"
        fn.attributes.add("noinline")
        fn.attributes.add("nounwind")
        dst, regs, tbl, n = fn.args
        entry, loop, done = fn.append_basic_block("entry"), fn.append_basic_block("loop"), fn.append_basic_block("done")
        b = ir.IRBuilder(entry)
        b.cbranch(b.icmp_signed(">", n, ir.Constant(u.I64, 0)), loop, done)
        b.position_at_end(loop)
        i = b.phi(u.I64)
        i.add_incoming(ir.Constant(u.I64, 0), entry)
        two_i = b.shl(i, ir.Constant(u.I64, 1))
        kind = b.load(b.gep(tbl, [two_i], source_etype=u.I64, inbounds=True), typ=u.I64)
        val = b.load(b.gep(tbl, [b.add(two_i, ir.Constant(u.I64, 1))], source_etype=u.I64, inbounds=True), typ=u.I64)
        is_reg = b.icmp_signed("!=", kind, ir.Constant(u.I64, 0))
        safe = b.select(is_reg, val, ir.Constant(u.I64, 0))
        reg = b.load(b.gep(regs, [safe], source_etype=u.I64, inbounds=True), typ=u.I64)
        b.store(b.select(is_reg, reg, val), b.gep(dst, [i], source_etype=u.I64, inbounds=True))
        nxt = b.add(i, ir.Constant(u.I64, 1))
        i.add_incoming(nxt, loop)
        b.cbranch(b.icmp_signed("<", nxt, n), loop, done)
        b.position_at_end(done)
        b.ret_void()
        return fn

    def _emit_kernels(self) -> dict:
        """Kernel node -> (function, local table as parameter-array offsets), as
        ``compiled.build_module`` emits them (structurally identical kernels shared)."""
        for _ in self._each_kernel():
            pass
        return self._emitted

    def _each_kernel(self):
        """:meth:`_emit_kernels` as a generator that yields after each kernel it emits
        (every function made so far is then complete); the result is ``self._emitted``."""
        sites, table = self.sites, lowerings()
        seen, out = {}, {}
        self._emitted = out
        templates = KernelTemplates(sites)
        self._leaves = {}
        for k in self.kp.kernels:
            n = k.node
            if n is None or n not in sites.kernel_of:
                continue
            kind = sites.kernel_kind(n)
            leaves = table[kind][0](sites, n)
            self._leaves[n] = leaves
            alias = [r for w, r in k.may_alias]
            alias_node = sites.kp.values[alias[0]].node if alias else None
            aliased = None if alias_node is None else leaves.index(alias_node)
            hit = templates.lookup(n, leaves, aliased)
            if hit is not None:
                out[n] = hit
                continue
            ctx = KernelCtx(sites, self.module, n, leaves, alias_node)
            table[kind][1](ctx)
            ctx.finish()
            body = str(ctx.fn).split("\n", 1)[1]
            key = (len(ctx.outs), len(leaves), aliased, body)
            if key in seen:
                del self.module.globals[ctx.fn.name]
            else:
                seen[key] = ctx.fn
                remember(ctx.fn, body)  # the splitter reuses the text
            slots = sorted(ctx.slots, key=ctx.slots.get)
            out[n] = (seen[key], slots)
            templates.record(n, seen[key], slots)
            yield

    # (Register loads and data pointers are computed in the block that uses them, once per
    # block, not hoisted into the entry block (unless the current block is already
    # terminated): a hoisted value is live across every kernel call, and LLVM's
    # CorrelatedValuePropagation walks from each use back to the entry through one block per
    # kernel call, which was quadratic in graph size: 6 of 15 CPU seconds of LLVM on a
    # 5000-step chain gradient.  A value used by several kernels costs a few loads more.)
    def _reg(self, r):
        """An i64 register (or literal) of the run entry (f64 registers: their bits)."""
        if not isinstance(r, str):
            return ir.Constant(u.I64, _f64_bits(r) if isinstance(r, float) else int(r))
        b = self._b
        if b.block.is_terminated and not self._hoisting:
            return self._in_entry(self._reg, r)
        key = (b.block, r)
        if key not in self._regval:
            p = b.gep(self._regs, [ir.Constant(u.I64, self.n_host + reg_index(r))], source_etype=u.I64,
                      inbounds=True)
            self._regval[key] = b.load(p, typ=u.I64)
        return self._regval[key]

    _param = _reg

    def ptr(self, v: int):
        """The data pointer of value ``v`` (computed once per block, where it is used)."""
        b = self._b
        if b.block.is_terminated and not self._hoisting:
            return self._in_entry(self.ptr, v)
        key = (b.block, v)
        if key in self._ptr:
            return self._ptr[key]
        val = self.kp.values[v]
        s = val.storage
        inputs, outputs, ws = self._args
        if s.kind == "view":
            base = self.ptr(s.base)
            off = self._reg(s.offset)
            p = base if s.offset == 0 else b.gep(base, [off], source_etype=u.mem_type(val.dtype))
        elif s.kind == "constant":
            p = self._consts.get(v)  # (a module global: one per value, valid in every block)
            if p is None:
                p = self._consts[v] = self._constant(v)
        elif s.kind in ("input", "output"):
            arr = inputs if s.kind == "input" else outputs
            p = b.load(b.gep(arr, [ir.Constant(u.I64, s.index)], source_etype=u.PTR, inbounds=True), typ=u.PTR)
        elif self.kp.buffers[s.index].offset == 0:
            p = ws
        else:
            p = b.gep(ws, [self._reg(self.kp.buffers[s.index].offset)], source_etype=u.I8, inbounds=True)
        self._ptr[key] = p
        return p

    def _in_entry(self, get, x):
        """``get(x)`` emitted in the entry block: a caller past its block's terminator
        (host_loops computes a branch kernel's operands after the branch, for both sides)."""
        self._hoisting = True
        try:
            with self._b.goto_entry_block():
                return get(x)
        finally:
            self._hoisting = False

    def const_slot(self, v: int) -> int:
        """Value ``v``'s index in :meth:`const_table`."""
        self.const_table()
        return self._const_index[v]

    def const_table(self):
        """``[C x ptr]``: every constant value's module global (for ``host_pointers``)."""
        if self._const_gv is None:
            ids = [val.id for val in self.kp.values if val.storage.kind == "constant"]
            if not ids:
                self._const_gv = ir.Constant(u.PTR, None)
                return self._const_gv
            gvs = []
            for v in ids:
                if v not in self._consts:
                    self._consts[v] = self._constant(v)
                gvs.append(self._consts[v])
            aty = ir.ArrayType(u.PTR, len(gvs))
            gv = ir.GlobalVariable(self.module, aty, name=f"{self.symbol}_consts")
            gv.linkage = "internal"
            gv.global_constant = True
            gv.initializer = ir.Constant(aty, gvs)
            self._const_gv, self._const_index = gv, {v: i for i, v in enumerate(ids)}
        return self._const_gv

    def _constant(self, v):
        data = np.ascontiguousarray(self.kp.values[v].storage.data.value)
        raw = data.tobytes() or b"\0"
        aty = ir.ArrayType(u.I8, len(raw))
        gv = ir.GlobalVariable(self.module, aty, name=f"{self.symbol}_const{v}")
        gv.linkage = "internal"
        gv.global_constant = True
        gv.align = 64
        gv.initializer = ir.Constant(aty, bytearray(raw))
        return gv

    def _store_scalar(self, k) -> None:
        """A ``scalar`` kernel: a register stored into its rank-0 value, in its dtype."""
        b = self._b
        (a,) = k.args
        (w,) = k.writes
        dtype = self.kp.values[w].dtype
        r = a.scalar
        is_f = isinstance(r, float) or (isinstance(r, str) and self.types[reg_index(r)] == "f64")
        x = self._reg(r)
        if is_f:
            x = b.bitcast(x, u.F64)
        if dtype == "bool":
            x = truth(b, x)
        elif dt.is_float(dtype):
            x = x if is_f else b.sitofp(x, u.F64)
            if dtype != "float64":
                x = b.fptrunc(x, u.value_type(dtype))
        else:
            x = b.fptosi(x, u.I64) if is_f else x
            width = u.value_type(dtype).width
            if width < 64:
                x = b.trunc(x, ir.IntType(width))
        u.store_value(b, x, self.ptr(w), dtype)

    def _emit_copy(self, k) -> None:
        """An output copy (an output that is an input, a constant, a view or a repeat)."""
        b = self._b
        (a,) = k.args
        (w,) = k.writes
        src, dst = self.kp.values[a.value], self.kp.values[w]
        fn = self._copy_fn(src.dtype, src.ndim)
        dims = [self._reg(d) for d in src.dims]
        s = src.storage
        strides = list(s.strides) if s.kind == "view" and not s.contiguous else None
        if strides is None:
            acc, strides = 1, []
            for d in reversed(src.dims):
                strides.append(acc)
                acc = acc * d if isinstance(acc, int) and isinstance(d, int) else None
            strides = list(reversed(strides))
            if any(x is None for x in strides):  # symbolic dims: C strides computed here
                strides, accv = [], ir.Constant(u.I64, 1)
                for d in reversed(dims):
                    strides.append(accv)
                    accv = b.mul(accv, d)
                strides = list(reversed(strides))
        strides = [x if isinstance(x, ir.Value) else self._reg(x) for x in strides]
        nd = max(src.ndim, 1)
        arr = b.alloca(u.I64, size=2 * nd)
        for i, x in enumerate(dims + strides):
            b.store(x, b.gep(arr, [ir.Constant(u.I64, i)], source_etype=u.I64, inbounds=True))
        b.call(fn, [self.ptr(w), self.ptr(a.value), arr])
        del dst

    def _copy_fn(self, dtype, ndim):
        name = f"copy_{dtype}_{ndim}"
        if name in self.module.globals:
            return self.module.globals[name]
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [u.PTR] * 3), name=name)
        fn.linkage = "internal"
        dst, src, params = fn.args
        dst.add_attribute("noalias")
        b = ir.IRBuilder(fn.append_basic_block("entry"))

        def p(i):
            return b.load(b.gep(params, [ir.Constant(u.I64, i)], source_etype=u.I64, inbounds=True), typ=u.I64)
        dims = [p(i) for i in range(ndim)]
        strides = [p(ndim + i) for i in range(ndim)]
        s = u.TensorRef(src, dtype, dims, strides)
        d = u.TensorRef(dst, dtype, dims, u.contiguous_strides(b, dims))
        u.loop_nest(b, dims, lambda idx: d.store(b, s.load(b, idx), idx), name="c")
        b.ret_void()
        return fn

    # -- several modules ----------------------------------------------------------------------------
    def splittable(self) -> bool:
        """Whether :meth:`emit_parts` may split the module: not with loop or branch kernels
        (their nested ``plan``/``run`` run at every step and are linked into the outer module)."""
        return not any(k.kind in host_loops.CONTROL_KINDS for k in self.kp.kernels)

    def host_is_large(self) -> bool:
        """Whether ``plan``/``run`` get a module of their own and the fast pipeline."""
        return len(self.kp.kernels) + len(self.kp.shape.insts) // 4 >= HOST_FAST_MIN

    def emit_parts(self, groups: int):
        """The module as ``engine.Part`` s compiled at the same time (``split_module``): the
        kernels are emitted first and yielded in up to ``groups`` modules, so they compile
        while this process emits ``plan``/``run``; then the entries.  For a large program
        (:meth:`host_is_large`) the entries are a module of their own compiled without IR
        passes and with FastISel: straight-line code run once per call, on which LLVM's O3
        (SLP vectorizer, greedy register allocation, SelectionDAG over huge blocks) was most
        of a deep gradient's compile while it made the call only microseconds faster (and
        the kernels' modules are handed on before the entries are emitted, not after).
        Otherwise they join the lightest kernel module (at O3)."""
        from tcomp.runtime.engine import Part

        from .split_module import Splitter

        if not self.splittable():
            raise TypeError("cpu backend: a program with loop or branch kernels is one module (emit())")
        large = self.host_is_large()
        splitter = Splitter(self.module)
        if large:  # kernels handed on in groups as they are emitted
            for _ in self._each_kernel():
                text = splitter.flush(FLUSH_MIN_INSTRUCTIONS)
                if text is not None:
                    yield Part(text, 3, False, 3)
            self._kernel_fns = self._emitted
        else:
            self._kernel_fns = self._emit_kernels()
        for k in self.kp.kernels:  # the output copies are kernels too (O3, with the kernels)
            if k.kind not in HOST_KINDS and (k.node is None or k.node not in self.sites.kernel_of):
                src = self.kp.values[k.args[0].value]
                self._copy_fn(src.dtype, src.ndim)
        if large:  # the entries' helpers run per kernel call: O3, with the kernels
            self._fill_fn()
            host_pointers.fill_fn(self.module, self.symbol)
        for text in splitter.kernel_parts(groups, hold_one=not large, min_cost=SPLIT_MIN_COST):
            yield Part(text, 3, False, 3)
        self.emit_plan()
        self.emit_run()
        text = splitter.host_part()
        yield Part(text, 0, False, 0) if large else Part(text, 3, False, 3)

    # -- all --------------------------------------------------------------------------------------
    def emit(self) -> str:
        self.emit_plan()
        self.emit_run()
        nested = [n for group in self._nested.values() for n in group]
        return host_loops.link(str(self.module), nested) if nested else str(self.module)


def emit_object(llvm_ir: str, reloc: str = "pic", opt_level: int = 3) -> bytes:
    """An ELF object of a host-program module for the host CPU (position independent by
    default, for ``cc`` and shared libraries); it needs ``tcomp_cpu_num_threads`` and the
    thread pool (``tcomp_cpu_parallel``): link ``emit_object(parallel.runtime_ir())`` with it,
    and, when it has float matmuls, ``emit_object(kernels_gemm.runtime_ir([llvm_ir]))``."""
    import llvmlite.binding as llvm

    from tcomp.runtime import engine

    engine.target_machine()  # initializes the native target
    target = llvm.Target.from_default_triple()
    tm = target.create_target_machine(cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
                                      opt=3, reloc=reloc, codemodel="default")
    ctx = llvm.create_context()
    try:
        mod = llvm.parse_assembly(llvm_ir, context=ctx)
        try:
            mod.verify()
            mod.triple = tm.triple
            mod.data_layout = str(tm.target_data)
            if opt_level:
                engine.optimize(mod, opt_level, loop_unrolling=False)
            return tm.emit_object(mod)
        finally:
            mod.close()
    finally:
        ctx.close()


__all__ = ["HostProgram", "Sites", "emit_object"]
