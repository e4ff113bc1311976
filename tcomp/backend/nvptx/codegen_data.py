"""Indexing, scan, sort and random kernels for the grid: gather, set/inc_subtensor,
cumsum/cumprod, argsort (by ranks), random_uniform/normal/binomial.

``gather`` is pointwise over the selection.  Index *arrays* are read, normalized (negative
counts from the end) and bounds-checked per element; a bad one stores the kernel's position
+ 1 in the program's error word (the ``ERROR_SLOT`` pointer) and reads nothing, and the host
raises the CPU backend's ``IndexError`` after the call.

``update`` is one block: its threads copy ``x`` into the result, barrier, then scatter.
Without advanced indices every selected element is a distinct target, so all threads
scatter; with advanced indices repeated targets must apply in order (``set``: the last
wins; ``inc``: ``np.add.at`` accumulates), so one thread scatters serially: exact, slow
for large scatters (a sort-by-target or atomics variant is the next step).

``cumulative`` is pointwise over the rows (all dims but ``axis``): each thread scans its
row in order, so the sums round exactly as NumPy's sequential ``cumsum`` does.
"""
from __future__ import annotations

from llvmlite import ir

from tcomp.backend.cpu import irutil as u
from tcomp.backend.cpu.scalar import cast, emit_elemwise, numpy_astype
from tcomp.ir import dtypes as dt
from tcomp.ir.ops.indexing import is_ref, ref_index

from .codegen import _emit_pointwise, unravel

#: the pseudo value id of the program's error word (an int32 the host zeroes before a call)
ERROR_SLOT = -1
_I64 = u.I64


def _c(v):
    return ir.Constant(_I64, v)


def _runtime_bcast(b, dims, idx):
    return [i if isinstance(d, int) else b.select(b.icmp_signed("==", d, _c(1)), _c(0), i)
            for d, i in zip(dims, idx)]


class IndexMap:
    """Selection index -> element index of ``x`` (NumPy's basic + advanced rules)."""

    def __init__(self, ctx, x_value, first_operand):
        k = ctx.k
        self.ctx = ctx
        self.index = tuple(dict(k.attrs)["index"])
        self.pairs = k.param("index")
        self.x_dims = [ctx.kb.dim(d) for d in ctx.value(x_value).dims]
        index = self.index
        self.has_adv = any(e[0] == "a" for e in index)
        adv_axes = [j for j, e in enumerate(index) if e[0] == "a" or (e[0] == "i" and self.has_adv)]
        self.arrays = {j: k.args[ref_index(e[1])].value for j, e in enumerate(index) if e[0] == "a" and is_ref(e[1])}
        self.nb = max([ctx.value(a).ndim for a in self.arrays.values()], default=0)
        contiguous = bool(adv_axes) and adv_axes == list(range(adv_axes[0], adv_axes[0] + len(adv_axes)))
        before = sum(1 for e in index[:adv_axes[0]] if e[0] == "s") if adv_axes else 0
        self.at = before if contiguous else 0
        del first_operand

    def source(self, idx, fail):
        """Element index of ``x``; ``fail(cond)`` records an out-of-bounds index array entry."""
        ctx, b, kb = self.ctx, self.ctx.b, self.ctx.kb
        if self.has_adv:
            bi = idx[self.at:self.at + self.nb]
            rest = idx[:self.at] + idx[self.at + self.nb:]
        else:
            bi, rest = [], list(idx)
        it = iter(rest)
        src = []
        for j, e in enumerate(self.index):
            start, step = kb.dim(self.pairs[2 * j]), kb.dim(self.pairs[2 * j + 1])
            if e[0] == "s":
                src.append(b.add(u.i64(start), b.mul(u.i64(step), next(it))))
            elif e[0] == "i" or not is_ref(e[1]):
                src.append(u.i64(start))
            else:
                av = ctx.value(self.arrays[j])
                ref = ctx.ref(self.arrays[j])
                off = self.nb - av.ndim
                aidx = [_c(0) if (isinstance(d, int) and d == 1) else bi[off + a] for a, d in enumerate(av.dims)]
                aidx = _runtime_bcast(b, ref.dims, aidx)
                v = cast(b, ref.load(b, aidx), av.dtype, "int64")
                d = u.i64(self.x_dims[j])
                v = b.select(b.icmp_signed("<", v, _c(0)), b.add(v, d), v)
                bad = b.or_(b.icmp_signed("<", v, _c(0)), b.icmp_signed(">=", v, d))
                fail(bad)
                src.append(b.select(bad, _c(0), v))
        src.extend(it)
        return src


def _fail_fn(ctx):
    b = ctx.b
    err = ctx.kb.ptr(ERROR_SLOT)

    def fail(bad):
        then = b.append_basic_block("oob")
        done = b.append_basic_block("oob.done")
        b.cbranch(bad, then, done)
        b.position_at_end(then)
        b.store(ir.Constant(u.I32, ctx.k_index + 1), err)
        b.branch(done)
        b.position_at_end(done)
    return fail


def gen_gather(ctx):
    k = ctx.k
    x = k.args[0].value
    m = IndexMap(ctx, x, 1)
    xr, out = ctx.ref(x), ctx.ref(k.writes[0])
    fail = _fail_fn(ctx)

    def point(idx):
        out.store(ctx.b, xr.load(ctx.b, m.source(idx, fail)), idx)
    return _emit_pointwise(ctx, ctx.value(k.writes[0]).dims, point)


def gen_update(ctx):
    k, kb, b = ctx.k, ctx.kb, ctx.b
    x, y = k.args[0].value, k.args[1].value
    xv, yv = ctx.value(x), ctx.value(y)
    xd = xv.dtype
    xr, yr, out = ctx.ref(x), ctx.ref(y), ctx.ref(k.writes[0])
    m = IndexMap(ctx, x, 2)
    fail = _fail_fn(ctx)
    odims = out.dims
    n_out = u.i64(u.numel(b, odims)) if odims else _c(1)
    sel = [kb.dim(d) for d in k.param("selection")]
    n_sel = u.i64(u.numel(b, sel)) if sel else _c(1)
    serial = m.has_adv

    def block_loop(n, body, threads=True):
        start = kb.tid if threads else _c(0)
        step = _c(kb.block) if threads else _c(1)
        from .target import _strided_loop

        _strided_loop(b, start, n, step, body)

    def copy(row, loops):
        block_loop(n_out, lambda i: (lambda idx: out.store(b, xr.load(b, idx), idx))(unravel(b, i, odims)))

    def scatter(row, loops):
        def one(i):
            idx = unravel(b, i, sel)
            yoff = len(sel) - yv.ndim
            yidx = [_c(0) if (isinstance(d, int) and d == 1) else idx[yoff + a] for a, d in enumerate(yv.dims)]
            val = numpy_astype(b, yr.load(b, _runtime_bcast(b, yr.dims, yidx)), yv.dtype, xd)
            addr = out.addr(b, m.source(idx, fail))
            if k.op == "inc_subtensor":
                cur = u.load_value(b, addr, xd)
                if xd == "bool":
                    val = b.or_(cur, val)
                elif dt.is_float(xd):
                    val = b.fadd(cur, val)
                else:
                    val = b.add(cur, val)
            u.store_value(b, val, addr, xd)
        if serial:
            then = b.append_basic_block("serial")
            done = b.append_basic_block("serial.done")
            b.cbranch(b.icmp_unsigned("==", kb.tid, _c(0)), then, done)
            b.position_at_end(then)
            block_loop(n_sel, one, threads=False)
            b.branch(done)
            b.position_at_end(done)
        else:
            block_loop(n_sel, one)

    kb.blocks(_c(1), [copy, scatter])
    return ("rows", ())


def gen_cumulative(ctx):
    k, b = ctx.k, ctx.b
    axis = dict(k.attrs)["axis"]
    xv = ctx.value(k.args[0].value)
    xr, out = ctx.ref(k.args[0].value), ctx.ref(k.writes[0])
    odt = ctx.value(k.writes[0]).dtype
    op = "add" if k.op == "cumsum" else "mul"
    rows = list(xv.dims[:axis]) + list(xv.dims[axis + 1:])
    L = u.i64(xr.dims[axis])

    acc = ctx.kb._at_entry().alloca(u.value_type(odt))

    def point(ridx):
        b.store(u.const(odt, 0 if op == "add" else 1), acc)

        def step(j):
            idx = ridx[:axis] + [j] + ridx[axis:]
            v = cast(b, xr.load(b, idx), xv.dtype, odt)
            r = emit_elemwise(b, op, {}, [b.load(acc), v], [odt, odt], odt)
            b.store(r, acc)
            out.store(b, r, idx)
        u.for_range(b, L, step, name="scan")
    return _emit_pointwise(ctx, rows, point)


def gen_random(ctx):
    """random_uniform / normal / binomial: the CPU backend's Philox-4x32-10 per flat output
    index and its recipes (``backend/cpu/kernels_random.py``: the same IR helpers), so the
    same seed and counter give the same draws on both backends."""
    import math

    import numpy as np

    from tcomp.backend import mathlib
    from tcomp.backend.cpu.kernels_random import _u24, _u53, philox

    k, kb, b = ctx.k, ctx.kb, ctx.b
    attrs = dict(k.attrs)
    od = ctx.value(k.writes[0]).dtype
    seed_v, ctr_v = k.args[0].value, k.args[1].value
    sv, cv = ctx.value(seed_v), ctx.value(ctr_v)
    sref, cref = ctx.ref(seed_v), ctx.ref(ctr_v)
    out = ctx.ref(k.writes[0])
    c64, c32 = _c, (lambda v: ir.Constant(u.I32, v & 0xFFFFFFFF))

    def key_and_counter():
        if sv.ndim == 0:
            s = cast(b, sref.load(b, []), sv.dtype, "int64")
            key = (b.trunc(s, u.I32), b.trunc(b.lshr(s, c64(32)), u.I32))
        else:
            key = tuple(b.trunc(cast(b, sref.load(b, [c64(j)]), sv.dtype, "int64"), u.I32) for j in range(2))
        c = cast(b, cref.load(b, []), cv.dtype, "int64")
        return key, (b.trunc(c, u.I32), b.trunc(b.lshr(c, c64(32)), u.I32))

    def store(i, v):
        u.store_value(b, v, u.gep(b, out.ptr, od, i), od)

    op = k.op
    if op == "random_uniform":
        lo, hi = np.dtype(od).type(attrs["low"]), np.dtype(od).type(attrs["high"])
        below = float(np.nextafter(hi, np.dtype(od).type(-np.inf)))
        vt = u.value_type(od)

    def body(i):
        key, (c_lo, c_hi) = key_and_counter()

        def words(block):
            return philox(b, (b.trunc(i, u.I32), c32(block) if isinstance(block, int) else block, c_lo, c_hi), key)
        if op == "random_uniform":
            w = words(0)
            uu = _u24(b, w[0]) if od == "float32" else _u53(b, w[0], w[1])
            r = b.fadd(ir.Constant(vt, float(lo)), b.fmul(ir.Constant(vt, float(hi - lo)), uu))
            store(i, b.select(b.fcmp_ordered(">=", r, ir.Constant(vt, float(hi))), ir.Constant(vt, below), r))
        elif op == "random_normal":
            w0, w1, w2, w3 = words(0)
            u1 = b.fsub(ir.Constant(u.F64, 1.0), _u53(b, w0, w1))
            u2 = _u53(b, w2, w3)
            rad = u.call_intrinsic(b, "sqrt", b.fmul(ir.Constant(u.F64, -2.0), mathlib.emit_unary(b, "log", u1)))
            z = b.fmul(rad, mathlib.emit_unary(b, "cos", b.fmul(ir.Constant(u.F64, 2.0 * math.pi), u2)))
            r = b.fadd(ir.Constant(u.F64, float(attrs["mean"])), b.fmul(ir.Constant(u.F64, float(attrs["std"])), z))
            store(i, cast(b, r, "float64", od))
        else:
            trials = int(attrs["n"])
            threshold = min(math.floor(float(attrs["p"]) * 4294967296.0), 1 << 32)

            def block(j, accs):
                w = words(b.trunc(j, u.I32))
                cnt = accs[0]
                for t in range(4):
                    ok = b.icmp_signed("<", b.add(b.mul(j, c64(4)), c64(t)), c64(trials))
                    hit = b.icmp_unsigned("<", b.zext(w[t], u.I64), c64(threshold))
                    cnt = b.add(cnt, b.zext(b.and_(ok, hit), u.I64))
                return [cnt]
            (count,) = u.reduction_loop(b, (trials + 3) // 4, [c64(0)], block, name="bt")
            store(i, cast(b, count, "int64", od) if od != "bool" else b.icmp_unsigned("!=", count, c64(0)))
    dims = ctx.value(k.writes[0]).dims
    odims = [kb.dim(d) for d in dims]
    kb.pointwise(u.numel(b, odims) if odims else 1, body)
    return ("prod", tuple(dims))


def gen_argsort(ctx):
    """Stable argsort along ``axis`` by ranks: each thread takes one element, counts the
    elements of its row that sort before it (smaller, or equal and earlier; NaN after every
    number, NaNs equal; -0.0 == 0.0 as NumPy compares) and writes its index at that rank.
    The ranks of a row are a permutation, so every output slot is written exactly once."""
    k, b = ctx.k, ctx.b
    axis = dict(k.attrs)["axis"]
    xv = ctx.value(k.args[0].value)
    xr, out = ctx.ref(k.args[0].value), ctx.ref(k.writes[0])
    kind = dt.kind(xv.dtype)
    L = u.i64(xr.dims[axis])

    def less(a, c):
        if kind == "f":
            return b.or_(b.fcmp_ordered("<", a, c), b.and_(b.fcmp_ordered("==", a, a), b.fcmp_unordered("uno", c, c)))
        if kind == "b":
            return b.and_(b.not_(a), c)
        return (b.icmp_signed if kind == "i" else b.icmp_unsigned)("<", a, c)

    def point(idx):
        j = idx[axis]
        v = xr.load(b, idx)

        def step(r, accs):
            m = r[0]
            w = xr.load(b, idx[:axis] + [m] + idx[axis + 1:])
            tie = b.and_(b.not_(less(w, v)), b.not_(less(v, w)))
            before = b.or_(less(w, v), b.and_(tie, b.icmp_signed("<", m, j)))
            return [b.add(accs[0], b.zext(before, _I64))]
        (rank,) = u.nested_reduction(b, [L], [_c(0)], step, name="rk")
        out.store(b, j, idx[:axis] + [rank] + idx[axis + 1:])
    return _emit_pointwise(ctx, xv.dims, point)


GENERATORS = {"argsort": gen_argsort, "gather": gen_gather, "update": gen_update, "cumulative": gen_cumulative,
              "random": gen_random}

__all__ = ["GENERATORS", "ERROR_SLOT", "IndexMap"]
