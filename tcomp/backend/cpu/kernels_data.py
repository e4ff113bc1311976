"""Data-movement kernels: concatenate, stack, arange, strided copy (reshape of a view),
advanced indexing (gather) and set/inc_subtensor (scatter).

Index parameters that are scalars (integer indices, normalized slice starts and steps)
were computed and bounds-checked in Python and arrive in the parameter array; index
*arrays* are tensors read here, each element normalized (negative counts from the end)
and bounds-checked, failing with the kernel's error code instead of touching memory.
"""
from __future__ import annotations

from llvmlite import ir

from tcomp.ir import dtypes as dt
from tcomp.ir.ops.indexing import is_ref, ref_index

from . import irutil as u
from .kctx import KernelCtx
from .scalar import cast, numpy_astype


def direct_leaves(prog, n):
    g = prog.g
    op = g.op(n)
    ops = g.operands(n)
    if op in ("subtensor", "set_subtensor", "inc_subtensor"):
        first = 1 if op == "subtensor" else 2
        arrays = [ops[ref_index(e[1])] for e in g.attrs(n)["index"] if e[0] == "a" and is_ref(e[1])]
        out = list(ops[:first]) + arrays
    elif op in ("arange",):
        out = []
    elif op == "reshape":
        out = ops[:1]
    else:
        out = list(ops)
    seen, res = set(), []
    for o in out:
        if o not in seen:
            seen.add(o)
            res.append(o)
    return res


def conv_leaves(prog, n):
    """The two tensor operands of a conv gradient (its dim operands are host values)."""
    return direct_leaves(prog, n)[:2]


def lower_concat(ctx: KernelCtx) -> None:
    g, n, b = ctx.g, ctx.n, ctx.b
    axis = g.attrs(n)["axis"]
    od = g.type(n).dtype
    offset = 0
    for o in g.operands(n):
        src = ctx.refs[o]
        off = offset

        def body(idx, src=src, off=off):
            dst = list(idx)
            dst[axis] = u.add(b, dst[axis], off)
            ctx.out.store(b, cast(b, src.load(b, idx), src.dtype, od), dst)
        u.loop_nest(b, src.dims, body, name="c")
        offset = u.add(b, offset, src.dims[axis])


def lower_stack(ctx: KernelCtx) -> None:
    g, n, b = ctx.g, ctx.n, ctx.b
    axis = g.attrs(n)["axis"]
    od = g.type(n).dtype
    for j, o in enumerate(g.operands(n)):
        src = ctx.refs[o]

        def body(idx, src=src, j=j):
            ctx.out.store(b, cast(b, src.load(b, idx), src.dtype, od), idx[:axis] + [j] + idx[axis:])
        u.loop_nest(b, src.dims, body, name="s")


def lower_arange(ctx: KernelCtx) -> None:
    """NumPy's fill: ``out[i] = start + i * delta`` in the output dtype, where ``start`` and
    ``delta = (start + step) - start`` were rounded to that dtype by the planner."""
    g, n, b = ctx.g, ctx.n, ctx.b
    od = g.type(n).dtype
    off = ctx.prog.extra_off[n]
    vt = u.value_type(od)

    def param_value(k):
        raw = ctx.param(off + k)
        if dt.is_float(od):
            v = b.bitcast(raw, u.F64)
            return v if od == "float64" else b.fptrunc(v, vt)
        return raw
    start, delta = param_value(0), param_value(1)

    def body(i):
        if dt.is_float(od):
            v = b.fadd(start, b.fmul(b.sitofp(i, vt), delta))
        else:
            v = b.add(start, b.mul(i, delta))
            if od == "bool":
                v = b.icmp_unsigned("!=", v, ir.Constant(u.I64, 0))
            else:
                v = b.trunc(v, vt) if vt.width < 64 else v
        ctx.out.store(b, v, [i])
    u.for_range(b, ctx.out.dims[0], body, name="ar")


def lower_transpose(ctx: KernelCtx) -> None:
    """A permuting dimshuffle copied into C order, in tiles (see ``kernels.tiled_nest``)."""
    from .kernels import tiled_nest

    g, n, b = ctx.g, ctx.n, ctx.b
    (src_node,) = ctx.leaves
    src = ctx.refs[src_node]
    pattern = g.attrs(n)["pattern"]

    def body(idx):
        sidx = [0] * src.ndim
        for pos, p in enumerate(pattern):
            if p != "x":
                sidx[p] = idx[pos]
        ctx.out.store(b, src.load(b, sidx), idx)
    if ctx.out.ndim >= 2:
        tiled_nest(b, ctx.out.dims, body)
    else:
        u.loop_nest(b, ctx.out.dims, body, name="tr")


def lower_copy(ctx: KernelCtx) -> None:
    """Reshape of strided memory: copy the source into C order (the buffer is then viewed)."""
    b = ctx.b
    (src_node,) = ctx.leaves
    src = ctx.refs[src_node]
    dst = u.TensorRef(ctx.out.ptr, src.dtype, src.dims, u.contiguous_strides(b, src.dims))
    u.loop_nest(b, src.dims, lambda idx: dst.store(b, src.load(b, idx), idx), name="cp")


# -- advanced indexing ----------------------------------------------------------------------------


class IndexMap:
    """Maps an index into the selection ``x[index]`` to an element offset of ``x``."""

    def __init__(self, ctx: KernelCtx, x: int, index, first_operand: int, sel_ndim: int):
        g = ctx.g
        self.ctx, self.index = ctx, tuple(index)
        self.xref = ctx.refs[x] if x in ctx.refs else ctx.out
        self.x_dims = ctx.dims(x)
        ops = g.operands(ctx.n)
        self.ops = ops
        has_adv = any(e[0] == "a" for e in index)
        adv_axes = [k for k, e in enumerate(index) if e[0] == "a" or (e[0] == "i" and has_adv)]
        self.arrays = {k: ops[ref_index(e[1])] for k, e in enumerate(index) if e[0] == "a" and is_ref(e[1])}
        self.nb = max([g.type(a).ndim for a in self.arrays.values()], default=0)
        out_positions, pos = [], 0
        for e in index:
            if e[0] == "s":
                pos += 1
            elif has_adv:
                out_positions.append(pos)
                pos += 1
        contiguous = bool(adv_axes) and adv_axes == list(range(adv_axes[0], adv_axes[0] + len(adv_axes)))
        slices_before = sum(1 for e in index[:adv_axes[0]] if e[0] == "s") if adv_axes else 0
        self.at = slices_before if contiguous else 0
        self.has_adv = has_adv
        self.sel_ndim = sel_ndim
        self.extra = ctx.prog.extra_off.get(ctx.n)

    def check_if_empty(self, sel_dims) -> None:
        """NumPy checks every index entry even when the selection is empty because a slice has
        length 0 (``x[0:0, [0, 3]]`` raises), but not when the index arrays broadcast to nothing
        (``x[[], [3]]`` is empty); the loop over an empty selection checks nothing, so in the
        first case only walk the index arrays and check each entry."""
        ctx, b = self.ctx, self.ctx.b
        if not self.arrays:
            return
        zero = ir.Constant(u.I64, 0)
        empty = b.icmp_signed("==", u.i64(u.numel(b, list(sel_dims))), zero)
        for arr in self.arrays.values():
            size = u.i64(u.numel(b, list(ctx.refs[arr].dims)))
            empty = b.and_(empty, b.icmp_signed("!=", size, zero))
        with b.if_then(empty, likely=False):
            for k, arr in self.arrays.items():
                ref, dtype, d = ctx.refs[arr], ctx.g.type(arr).dtype, u.i64(self.x_dims[k])

                def check(aidx, ref=ref, dtype=dtype, d=d):
                    v = cast(b, ref.load(b, aidx), dtype, "int64")
                    v = b.select(b.icmp_signed("<", v, ir.Constant(u.I64, 0)), b.add(v, d), v)
                    ctx.fail_if(b.or_(b.icmp_signed("<", v, ir.Constant(u.I64, 0)), b.icmp_signed(">=", v, d)))
                u.loop_nest(b, ref.dims, check, name="ck")

    def offset(self, idx: list):
        ctx, b = self.ctx, self.ctx.b
        if self.has_adv:
            bidx = idx[self.at:self.at + self.nb]
            rest = idx[:self.at] + idx[self.at + self.nb:]
        else:
            bidx, rest = [], list(idx)
        rest_it = iter(rest)
        src = []
        for k, e in enumerate(self.index):
            if e[0] == "s":
                start, step = ctx.param(self.extra + 2 * k), ctx.param(self.extra + 2 * k + 1)
                src.append(b.add(start, b.mul(step, next(rest_it))))
            elif e[0] == "i" or not is_ref(e[1]):
                src.append(ctx.param(self.extra + 2 * k))
            else:
                arr = self.arrays[k]
                t = ctx.g.type(arr)
                off = self.nb - t.ndim
                aidx = [0 if d == 1 else bidx[off + a] for a, d in enumerate(t.shape)]
                aidx = ctx.runtime_bcast(ctx.refs[arr].dims, aidx)
                v = ctx.refs[arr].load(b, aidx)
                v = cast(b, v, t.dtype, "int64")
                d = u.i64(self.x_dims[k])
                v = b.select(b.icmp_signed("<", v, ir.Constant(u.I64, 0)), b.add(v, d), v)
                bad = b.or_(b.icmp_signed("<", v, ir.Constant(u.I64, 0)), b.icmp_signed(">=", v, d))
                ctx.fail_if(bad)
                src.append(v)
        src.extend(rest_it)
        return src


def lower_gather(ctx: KernelCtx) -> None:
    g, n, b = ctx.g, ctx.n, ctx.b
    x = g.operands(n)[0]
    m = IndexMap(ctx, x, g.attrs(n)["index"], 1, g.type(n).ndim)
    xr = ctx.refs[x]
    m.check_if_empty(ctx.out.dims)
    u.loop_nest(b, ctx.out.dims, lambda idx: ctx.out.store(b, xr.load(b, m.offset(idx)), idx), name="g")


def lower_update(ctx: KernelCtx) -> None:
    g, n, b = ctx.g, ctx.n, ctx.b
    op = g.op(n)
    x, y = g.operands(n)[:2]
    xd = g.type(x).dtype
    xr, yr = ctx.refs[x], ctx.refs[y]
    out = ctx.out
    u.loop_nest(b, out.dims, lambda idx: out.store(b, xr.load(b, idx), idx), name="cx")
    sel_off = ctx.prog.extra_off[n] + 2 * len(g.attrs(n)["index"])
    sel_t = ctx.prog.selection_type(n)
    sel_dims = [d if isinstance(d, int) else ctx.param(sel_off + a) for a, d in enumerate(sel_t.shape)]
    m = IndexMap(ctx, x, g.attrs(n)["index"], 2, len(sel_dims))
    m.xref = out
    m.check_if_empty(sel_dims)
    yt = g.type(y)

    def body(idx):
        yoff = len(sel_dims) - yt.ndim
        yidx = ctx.runtime_bcast(yr.dims, [0 if d == 1 else idx[yoff + a] for a, d in enumerate(yt.shape)])
        yv = numpy_astype(b, yr.load(b, yidx), yt.dtype, xd)
        addr = out.addr(b, m.offset(idx))
        if op == "inc_subtensor":
            cur = u.load_value(b, addr, xd)
            if xd == "bool":
                yv = b.or_(cur, yv)
            elif dt.is_float(xd):
                yv = b.fadd(cur, yv)
            else:
                yv = b.add(cur, yv)
        u.store_value(b, yv, addr, xd)
    u.loop_nest(b, sel_dims, body, name="u")
