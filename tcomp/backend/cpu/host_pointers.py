"""Kernel calls of ``run`` whose data pointers come from a constant table (one call each).

Why: a kernel of a deep gradient takes dozens of pointers (its results and every leaf of a
fused body), and ``run`` computed each one in place (a register load and a ``gep`` off the
workspace, once per kernel call): a 5000-step chain gradient's ``run`` was 65,000 lines,
and emitting, printing and compiling it was most of the backend's time.  Such a call is
now three calls: the parameter-table fill (``HostProgram._fill_from_table``), ``fill_ptrs``
over a constant table of pointer recipes (below), and ``<kernel>.tab(ptrs, params)``, a
per-kernel-function wrapper that loads the pointers from the array and calls the kernel.
A kernel with at most :data:`DIRECT_PTRS` pointers is called as before.

A recipe is three i64 words ``(flags, a, off)``: the root is ``inputs[a]`` (flags & 3 = 0),
``outputs[a]`` (1), ``workspace + a`` bytes (2) or ``consts[a]`` (3: the module's constants,
a ``[C x ptr]`` table); ``a`` is register ``regs[a]`` when flags & 4; the view offset
``off`` (elements; register ``regs[off]`` when flags & 8) is shifted left by ``flags >> 4``
(log2 of the element size) and added.  The same recipes as ``HostProgram.ptr``.
"""
from __future__ import annotations

from llvmlite import ir

from tcomp.ir import dtypes as dt

from . import irutil as u
from .host_plan import reg_index

#: kernels with more data pointers than this get them from a table
DIRECT_PTRS = 8
_KINDS = {"input": 0, "output": 1, "buffer": 2, "constant": 3}


def _ref(hp, r):
    """(is_register, word) of a DimRef: a register's slot in ``regs``, or the literal."""
    if isinstance(r, str):
        return 1, hp.n_host + reg_index(r)
    return 0, int(r)


def recipe(hp, v: int) -> list:
    """The three words of value ``v``'s data pointer."""
    val = hp.kp.values[v]
    s = val.storage
    shift, off_reg, off = 0, 0, 0
    if s.kind == "view":
        off_reg, off = _ref(hp, s.offset)
        shift = dt.itemsize(val.dtype).bit_length() - 1
        val = hp.kp.values[s.base]
        s = val.storage
        v = val.id
    kind = _KINDS[s.kind]
    if s.kind == "buffer":
        a_reg, a = _ref(hp, hp.kp.buffers[s.index].offset)
    elif s.kind == "constant":
        a_reg, a = 0, hp.const_slot(v)
    else:
        a_reg, a = 0, int(s.index)
    return [kind | (a_reg << 2) | (off_reg << 3) | (shift << 4), a, off]


def fill_fn(module: ir.Module, symbol: str) -> ir.Function:
    """``fill_ptrs(dst, inputs, outputs, ws, regs, consts, tbl, n)``: ``dst[i]`` = the
    pointer of recipe ``i`` of ``tbl`` (see the module docstring)."""
    name = f"{symbol}_fill_ptrs"
    if name in module.globals:
        return module.globals[name]
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [u.PTR] * 7 + [u.I64]), name=name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    fn.attributes.add("nounwind")
    dst, inputs, outputs, ws, regs, consts, tbl, n = fn.args
    entry = fn.append_basic_block("entry")
    loop, done = fn.append_basic_block("loop"), fn.append_basic_block("done")
    roots = [fn.append_basic_block(k) for k in ("in", "out", "ws", "const")]
    join = fn.append_basic_block("join")
    b = ir.IRBuilder(entry)
    zero = ir.Constant(u.I64, 0)
    b.cbranch(b.icmp_signed(">", n, zero), loop, done)
    b.position_at_end(loop)
    i = b.phi(u.I64)
    i.add_incoming(zero, entry)

    def word(k):
        at = b.add(b.mul(i, ir.Constant(u.I64, 3)), ir.Constant(u.I64, k))
        return b.load(b.gep(tbl, [at], source_etype=u.I64, inbounds=True), typ=u.I64)

    def maybe_reg(w, bit):
        is_reg = b.icmp_signed("!=", b.and_(flags, ir.Constant(u.I64, bit)), zero)
        at = b.select(is_reg, w, zero)
        return b.select(is_reg, b.load(b.gep(regs, [at], source_etype=u.I64, inbounds=True), typ=u.I64), w)

    flags, a, off = word(0), word(1), word(2)
    a = maybe_reg(a, 4)
    off = b.shl(maybe_reg(off, 8), b.lshr(flags, ir.Constant(u.I64, 4)))
    sw = b.switch(b.and_(flags, ir.Constant(u.I64, 3)), roots[3])
    for k in range(3):
        sw.add_case(ir.Constant(u.I64, k), roots[k])
    got = []
    for k, (bb, arr) in enumerate(zip(roots, (inputs, outputs, None, consts))):
        b.position_at_end(bb)
        if arr is None:
            p = b.gep(ws, [a], source_etype=u.I8)
        else:
            p = b.load(b.gep(arr, [a], source_etype=u.PTR, inbounds=True), typ=u.PTR)
        got.append((p, bb))
        b.branch(join)
    b.position_at_end(join)
    base = b.phi(u.PTR)
    for p, bb in got:
        base.add_incoming(p, bb)
    b.store(b.gep(base, [off], source_etype=u.I8), b.gep(dst, [i], source_etype=u.PTR, inbounds=True))
    nxt = b.add(i, ir.Constant(u.I64, 1))
    i.add_incoming(nxt, join)
    b.cbranch(b.icmp_signed("<", nxt, n), loop, done)
    b.position_at_end(done)
    b.ret_void()
    return fn


def wrapper(module: ir.Module, kfn, nptr: int) -> ir.Function:
    """``i32 <kfn>.tab(ptr ptrs, ptr params)``: ``kfn(ptrs[0], ..., ptrs[nptr-1], params)``."""
    name = f"{kfn.name}.tab"
    if name in module.globals:
        return module.globals[name]
    w = ir.Function(module, ir.FunctionType(u.I32, [u.PTR, u.PTR]), name=name)
    w.linkage = "internal"
    w.attributes.add("noinline")  # inlined, every load would be back in ``run``
    ptrs, params = w.args
    b = ir.IRBuilder(w.append_basic_block("entry"))
    args = [b.load(b.gep(ptrs, [ir.Constant(u.I64, k)], source_etype=u.PTR, inbounds=True), typ=u.PTR)
            for k in range(nptr)]
    b.ret(b.call(kfn, args + [params]))
    return w


def emit_call(hp, kfn, values: list, params, ptr_array):
    """Call ``kfn`` with the pointers of ``values`` (from a recipe table) and ``params``;
    returns the call's i32."""
    b = hp._b
    entries = []
    for v in values:
        entries += recipe(hp, v)
    gv = hp.constant_table(hp._ptables, "ptab", entries)
    inputs, outputs, ws = hp._args
    b.call(fill_fn(hp.module, hp.symbol),
           [ptr_array, inputs, outputs, ws, hp._regs, hp.const_table(), gv, ir.Constant(u.I64, len(values))])
    return b.call(wrapper(hp.module, kfn, len(values)), [ptr_array, params])


__all__ = ["DIRECT_PTRS", "recipe", "fill_fn", "wrapper", "emit_call"]
