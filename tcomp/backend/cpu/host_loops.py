"""The ``loop`` and ``branch`` kernels of a host program: nested programs called from ``run``.

A loop or branch kernel (``passes/lower_loops.py``) carries nested kernel programs.  Each is
emitted as a host program of its own (``<outer symbol>_k<position>[_then|_else]_plan`` /
``_run``), in its own LLVM module, linked into the outer module and made internal, so LLVM
sees one module and may inline the body's entries into the loop.  The outer ``run`` then:

* **loop**: stores the body's input dims once, the non-sequence pointers once, copies the
  initial buffers of ``"last"`` outputs into their rings; for ``t`` in ``[0, n)``: points the
  body's inputs at row ``t`` of every sequence and at the rows of the state taps (the
  ``"all"`` result itself, or the initial buffer before step 0), its outputs at row ``t`` of
  the results, calls the body's ``plan`` (once before the loop when the body's shapes depend
  on dims only), checks that the body's result dims are the ones the outer plan sized, and
  calls the body's ``run``; with ``until``, stops after a step whose condition is true and
  writes the number of steps that ran into the count value;
* **branch**: evaluates the condition and calls the taken program's ``plan`` and ``run``.

The body's workspace is one heap block (``aligned_alloc``, 64-byte aligned) grown when a
step's plan asks for more, freed when the kernel ends: no allocation per step.  A failure
inside (a body check, a bounds check, a result of unexpected shape) frees it and makes
``run`` return 1 + the kernel's position; the caller re-runs the reference interpreter to
raise the error the reference raises (:func:`raise_control_error`).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from tcomp.ir.ops.control import scan_layout
from tcomp.passes.kernel_program import KernelProgram, program_hash

from . import irutil as u
from .host_plan import reg_index, truth

CONTROL_KINDS = ("loop", "branch")


def _i64(x):
    return ir.Constant(u.I64, int(x))


class Nested:
    """One nested program's host program and its entries as declared in the outer module."""

    def __init__(self, outer, kp: KernelProgram, body_graph, symbol: str):
        from tcomp.passes.lower_loops import lower_body

        from .host_program import HostProgram

        low, again = lower_body(body_graph)
        if program_hash(again) != program_hash(kp):
            raise TypeError(f"cpu backend: the nested program {symbol} does not lower again to the same program")
        self.hp = HostProgram(kp, low.g, symbol=symbol)
        fty = ir.FunctionType(u.I32, [u.PTR] * 3)
        self.plan = ir.Function(outer.module, fty, name=self.hp.plan_name)
        self.run = ir.Function(outer.module, ir.FunctionType(u.I32, [u.PTR] * 4), name=self.hp.run_name)
        self.kp = kp


def prepare(hp) -> dict:
    """Kernel position -> [Nested, ...] for every control kernel of ``hp``'s program."""
    out = {}
    for pos, k in enumerate(hp.kp.kernels):
        if k.kind not in CONTROL_KINDS:
            continue
        attrs, gattrs = dict(k.attrs), hp.g.attrs(k.node)
        if k.kind == "loop":
            out[pos] = [Nested(hp, attrs["program"], gattrs["body"].graph, f"{hp.symbol}_k{pos}")]
        else:
            out[pos] = [Nested(hp, attrs["then"], gattrs["then_body"].graph, f"{hp.symbol}_k{pos}_then"),
                        Nested(hp, attrs["else"], gattrs["else_body"].graph, f"{hp.symbol}_k{pos}_else")]
    return out


def link(text: str, nested: list) -> str:
    """The outer module's text with every nested host program linked in (entries internal)."""
    import llvmlite.binding as llvm

    from tcomp.runtime import engine

    engine.target_machine()
    ctx = llvm.create_context()
    mod = llvm.parse_assembly(text, context=ctx)
    names = []
    for n in nested:
        sub = llvm.parse_assembly(n.hp.emit(), context=ctx)
        mod.link_in(sub)
        names += [n.hp.plan_name, n.hp.run_name]
    for name in names:
        mod.get_function(name).linkage = "internal"
    return str(mod)


class _Emit:
    """Helpers over the outer ``run`` builder."""

    def __init__(self, hp, pos):
        self.hp, self.pos = hp, pos
        self.b, self.fn = hp._b, hp._run_fn
        m = hp.module
        g = m.globals
        self.alloc = g.get("aligned_alloc") or ir.Function(m, ir.FunctionType(u.PTR, [u.I64, u.I64]),
                                                           name="aligned_alloc")
        self.free = g.get("free") or ir.Function(m, ir.FunctionType(ir.VoidType(), [u.PTR]), name="free")
        self.memcpy = m.declare_intrinsic("llvm.memcpy", [u.PTR, u.PTR, u.I64])

    def entry_alloca(self, ty, count, name):
        with self.b.goto_entry_block():
            return self.b.alloca(ty, size=max(count, 1), name=name)

    def slot(self, arr, ety, i):
        return self.b.gep(arr, [_i64(i)], source_etype=ety, inbounds=True)

    def put(self, arr, ety, i, v):
        self.b.store(v, self.slot(arr, ety, i))

    def reg(self, r):
        return self.hp._reg(r)

    def numel(self, dims):
        acc = _i64(1)
        for d in dims:
            acc = self.b.mul(acc, self.reg(d))
        return acc

    def byte_ptr(self, base, nbytes):
        return self.b.gep(base, [nbytes], source_etype=u.I8)

    def copy(self, dst, src, nbytes):
        self.b.call(self.memcpy, [dst, src, nbytes, ir.Constant(u.I1, 0)])

    def fail_block(self, ws_var):
        """A block that frees the body workspace and returns this kernel's failure code."""
        b = self.b
        blk = self.fn.append_basic_block(f"k{self.pos}.fail")
        here = b.block
        b.position_at_end(blk)
        b.call(self.free, [b.load(ws_var, typ=u.PTR)])
        b.ret(ir.Constant(u.I32, self.pos + 1))
        b.position_at_end(here)
        return blk

    def unless_zero(self, rc, fail, tag):
        b = self.b
        ok = self.fn.append_basic_block(f"k{self.pos}.{tag}.ok")
        b.cbranch(b.icmp_signed("!=", rc, ir.Constant(u.I32, 0)), fail, ok)
        b.position_at_end(ok)

    def plan(self, nested, dims, ins, regs, fail, ws_var, cap_var, expected):
        """Call the nested plan; fail unless its result dims are ``expected`` (outer
        registers, output after output); grow the workspace to what it asks for."""
        b = self.b
        rc = b.call(nested.plan, [dims, ins, regs])
        self.unless_zero(rc, fail, "plan")
        ok = ir.Constant(u.I1, 1)
        it = iter(expected)
        for (lo, hi), o in zip(nested.hp.out_slots, nested.kp.outputs):
            for s in range(lo, hi):
                want = next(it, None)
                if want is None:
                    break
                have = b.load(self.slot(regs, u.I64, s), typ=u.I64)
                ok = b.and_(ok, b.icmp_signed("==", have, self.reg(want)))
        good = self.fn.append_basic_block(f"k{self.pos}.dims.ok")
        b.cbranch(ok, good, fail)
        b.position_at_end(good)
        need = b.load(self.slot(regs, u.I64, 0), typ=u.I64)
        cap = b.load(cap_var, typ=u.I64)
        grow = self.fn.append_basic_block(f"k{self.pos}.grow")
        done = self.fn.append_basic_block(f"k{self.pos}.grown")
        b.cbranch(b.icmp_signed(">", need, cap), grow, done)
        b.position_at_end(grow)
        b.call(self.free, [b.load(ws_var, typ=u.PTR)])
        size = b.and_(b.add(need, _i64(63)), _i64(-64))
        p = b.call(self.alloc, [_i64(64), size])
        b.store(p, ws_var)
        b.store(size, cap_var)
        b.cbranch(b.icmp_unsigned("==", p, ir.Constant(u.PTR, None)), fail, done)  # out of memory
        b.position_at_end(done)

    def workspace_vars(self):
        b = self.b
        ws_var = self.entry_alloca(u.PTR, 1, f"k{self.pos}.ws")
        cap_var = self.entry_alloca(u.I64, 1, f"k{self.pos}.cap")
        b.store(ir.Constant(u.PTR, None), ws_var)
        b.store(_i64(0), cap_var)
        return ws_var, cap_var

    def arrays(self, nested):
        hp = nested.hp
        return (self.entry_alloca(u.I64, hp.n_dims, f"k{self.pos}.dims"),
                self.entry_alloca(u.PTR, len(nested.kp.inputs), f"k{self.pos}.ins"),
                self.entry_alloca(u.PTR, len(nested.kp.outputs), f"k{self.pos}.outs"),
                self.entry_alloca(u.I64, hp.n_regs, f"k{self.pos}.regs"))


def _split(flat, lengths):
    out, i = [], 0
    for n in lengths:
        out.append(tuple(flat[i:i + n]))
        i += n
    return out


def emit_loop(hp, pos, k, nested) -> None:
    e = _Emit(hp, pos)
    b = e.b
    (body,) = nested
    attrs, params = dict(k.attrs), dict(k.params)
    n_seqs, n_rec, n_nitsot, _, taps = scan_layout(attrs, len(k.args))
    n_out = n_rec + n_nitsot
    store = attrs["store"] or ("all",) * n_out
    vals = hp.kp.values
    steps = e.reg(k.args[0].scalar)
    seqs = [a.value for a in k.args[1:1 + n_seqs]]
    inits = [a.value for a in k.args[1 + n_seqs:1 + n_seqs + n_rec]]
    nonseqs = [a.value for a in k.args[1 + n_seqs + n_rec:]]
    results = list(k.writes[:n_out])
    extra = list(k.writes[n_out:])
    rings = {}
    for i in range(n_rec):
        if store[i] == "last":
            rings[i] = extra.pop(0)
    cond_v, count_v = (extra[0], extra[1]) if attrs["until"] else (None, None)
    out_dims = _split(params["out_dims"], [len(vals[w].dims) - (store[j] == "all") for j, w in enumerate(results)])
    row_bytes = [b.mul(e.numel(d), _i64(np.dtype(vals[w].dtype).itemsize)) for d, w in zip(out_dims, results)]
    dims, ins, outs, regs = e.arrays(body)
    for i, d in enumerate(params["body_dims"]):
        e.put(dims, u.I64, i, e.reg(d))
    n_tap = sum(len(tp) for tp in taps)
    for j, v in enumerate(nonseqs):
        e.put(ins, u.PTR, n_seqs + n_tap + j, hp.ptr(v))
    ws_var, cap_var = e.workspace_vars()
    fail = e.fail_block(ws_var)
    for i, r in rings.items():
        L = -taps[i][0]
        e.copy(hp.ptr(r), hp.ptr(inits[i]), b.mul(row_bytes[i], _i64(L)))
    expected = [d for d in params["out_dims"]]
    per_step = bool(body.kp.shape.value_inputs)
    if not per_step:
        e.plan(body, dims, ins, regs, fail, ws_var, cap_var, expected)
    count_var = e.entry_alloca(u.I64, 1, f"k{pos}.count")
    b.store(steps, count_var)
    t_var = e.entry_alloca(u.I64, 1, f"k{pos}.t")
    b.store(_i64(0), t_var)
    head = e.fn.append_basic_block(f"k{pos}.head")
    step = e.fn.append_basic_block(f"k{pos}.step")
    done = e.fn.append_basic_block(f"k{pos}.done")
    b.branch(head)
    b.position_at_end(head)
    t = b.load(t_var, typ=u.I64)
    b.cbranch(b.icmp_signed("<", t, steps), step, done)
    b.position_at_end(step)
    for j, v in enumerate(seqs):
        size = np.dtype(vals[v].dtype).itemsize
        off = b.mul(t, b.mul(e.reg(params["seq_stride"][j]), _i64(size)))
        e.put(ins, u.PTR, j, e.byte_ptr(hp.ptr(v), off))
    slot = n_seqs
    for i, tp in enumerate(taps):
        L = -tp[0]
        for tau in tp:
            if i in rings:
                row = b.urem(b.add(t, _i64(L + tau)), _i64(L + 1))
                p = e.byte_ptr(hp.ptr(rings[i]), b.mul(row, row_bytes[i]))
            else:
                idx = b.add(t, _i64(tau))
                from_out = e.byte_ptr(hp.ptr(results[i]), b.mul(idx, row_bytes[i]))
                from_init = e.byte_ptr(hp.ptr(inits[i]), b.mul(b.add(idx, _i64(L)), row_bytes[i]))
                p = b.select(b.icmp_signed(">=", idx, _i64(0)), from_out, from_init)
            e.put(ins, u.PTR, slot, p)
            slot += 1
    for j, w in enumerate(results):
        if store[j] == "all":
            p = e.byte_ptr(hp.ptr(w), b.mul(t, row_bytes[j]))
        elif j in rings:
            L = -taps[j][0]
            row = b.urem(b.add(t, _i64(L)), _i64(L + 1))
            p = e.byte_ptr(hp.ptr(rings[j]), b.mul(row, row_bytes[j]))
        else:
            p = hp.ptr(w)
        e.put(outs, u.PTR, j, p)
    if cond_v is not None:
        e.put(outs, u.PTR, n_out, hp.ptr(cond_v))
    if per_step:
        e.plan(body, dims, ins, regs, fail, ws_var, cap_var, expected)
    rc = b.call(body.run, [ins, outs, b.load(ws_var, typ=u.PTR), regs])
    e.unless_zero(rc, fail, "run")
    nxt = b.add(t, _i64(1))
    b.store(nxt, t_var)
    if cond_v is not None:
        stop = u.load_value(b, hp.ptr(cond_v), "bool")
        brk = e.fn.append_basic_block(f"k{pos}.until")
        b.cbranch(stop, brk, head)
        b.position_at_end(brk)
        b.store(nxt, count_var)
        b.branch(done)
    else:
        b.branch(head)
    b.position_at_end(done)
    count = b.load(count_var, typ=u.I64)
    for i, r in rings.items():
        L = -taps[i][0]
        row = b.urem(b.add(count, _i64(L - 1)), _i64(L + 1))
        e.copy(hp.ptr(results[i]), e.byte_ptr(hp.ptr(r), b.mul(row, row_bytes[i])), row_bytes[i])
    if count_v is not None:
        u.store_value(b, count, hp.ptr(count_v), "int64")
    b.call(e.free, [b.load(ws_var, typ=u.PTR)])


def emit_branch(hp, pos, k, nested) -> None:
    e = _Emit(hp, pos)
    b = e.b
    params = dict(k.params)
    c = k.args[0]
    if c.value is None:
        r = c.scalar
        x = e.reg(r)
        if isinstance(r, float) or (isinstance(r, str) and hp.types[reg_index(r)] == "f64"):
            x = b.bitcast(x, u.F64)
        taken = truth(b, x)
    else:
        dtype = hp.kp.values[c.value].dtype
        x = u.load_value(b, hp.ptr(c.value), dtype)
        if dtype == "bool":
            taken = x
        elif x.type in (u.F32, u.F64) or isinstance(x.type, (ir.FloatType, ir.DoubleType, ir.HalfType)):
            taken = b.fcmp_unordered("!=", x, ir.Constant(x.type, 0.0))
        else:
            taken = b.icmp_signed("!=", x, ir.Constant(x.type, 0))
    ws_var, cap_var = e.workspace_vars()
    fail = e.fail_block(ws_var)
    then_b, else_b = e.fn.append_basic_block(f"k{pos}.then"), e.fn.append_basic_block(f"k{pos}.else")
    merge = e.fn.append_basic_block(f"k{pos}.merged")
    b.cbranch(taken, then_b, else_b)
    # (the entry-block loads of registers and pointers are made before either side uses them)
    body_dims = [e.reg(d) for d in params["body_dims"]]
    ptrs_in = [hp.ptr(a.value) for a in k.args[1:]]
    ptrs_out = [hp.ptr(w) for w in k.writes]
    for blk, side in zip((then_b, else_b), nested):
        b.position_at_end(blk)
        dims, ins, outs, regs = e.arrays(side)
        for i, d in enumerate(body_dims):
            e.put(dims, u.I64, i, d)
        for i, p in enumerate(ptrs_in):
            e.put(ins, u.PTR, i, p)
        for i, p in enumerate(ptrs_out):
            e.put(outs, u.PTR, i, p)
        e.plan(side, dims, ins, regs, fail, ws_var, cap_var, list(params["out_dims"]))
        rc = b.call(side.run, [ins, outs, b.load(ws_var, typ=u.PTR), regs])
        e.unless_zero(rc, fail, "run")
        b.branch(merge)
    b.position_at_end(merge)
    b.call(e.free, [b.load(ws_var, typ=u.PTR)])


def emit_control(hp, pos, k, nested) -> None:
    (emit_loop if k.kind == "loop" else emit_branch)(hp, pos, k, nested)


__all__ = ["CONTROL_KINDS", "prepare", "link", "emit_control"]
