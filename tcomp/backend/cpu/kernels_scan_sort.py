"""Kernels for ``cumsum``/``cumprod`` (kind 'cumulative') and ``argsort`` (kind 'argsort').

Cumulative: one loop nest over the result in C order; each element is its input combined with the
previous element along the axis (already written, since C order visits it first), so the
additions/multiplications happen in NumPy's sequential order (bit-identical for floats), and
for a non-last axis the inner loop runs over contiguous lanes.

Argsort: per lane (every index of the other axes) the int64 result row is filled with
0..n-1 and heapsorted in place on the key (x[i], i): comparing the position too makes the
order total, so an in-place, unstable O(n log n) algorithm gives exactly NumPy's stable
argsort (equal values, -0.0 and 0.0 included, keep their order; nan compares above
everything and nans keep their order).  No scratch memory, no recursion, no libc.
"""
from __future__ import annotations

from llvmlite import ir

from tcomp.ir import dtypes as dt

from . import irutil as u
from .kctx import KernelCtx
from .scalar import _while, cast


def lower_cumulative(ctx: KernelCtx) -> None:
    g, n, b = ctx.g, ctx.n, ctx.b
    (x,) = g.operands(n)
    axis = g.attrs(n)["axis"]
    od, xd = g.type(n).dtype, g.type(x).dtype
    xr, out = ctx.refs[x], ctx.out
    is_float = dt.is_float(od)
    mul = g.op(n) == "cumprod"
    zero, one = ir.Constant(u.I64, 0), ir.Constant(u.I64, 1)

    def body(idx):
        v = cast(b, xr.load(b, idx), xd, od)
        i = idx[axis]
        first = b.icmp_signed("==", i, zero)
        prev_idx = list(idx)
        prev_idx[axis] = b.select(first, zero, b.sub(i, one))
        prev = out.load(b, prev_idx)          # the unselected value at i == 0 is never used
        if is_float:
            comb = b.fmul(prev, v) if mul else b.fadd(prev, v)
        else:
            comb = b.mul(prev, v) if mul else b.add(prev, v)
        out.store(b, b.select(first, v, comb), idx)

    u.loop_nest(b, out.dims, body, name="s")


def _less(b, xd):
    """``less((a, i), (c, j))``: a < c, nan above every number, ties broken by position."""
    kind = dt.kind(xd)

    def less(a, i, c, j):
        by_pos = b.icmp_signed("<", i, j)
        if kind == "f":
            a_nan, c_nan = b.fcmp_unordered("uno", a, a), b.fcmp_unordered("uno", c, c)
            lt = b.or_(b.fcmp_ordered("<", a, c), b.and_(c_nan, b.not_(a_nan)))
            eq = b.or_(b.fcmp_ordered("==", a, c), b.and_(a_nan, c_nan))
        else:
            cmp = b.icmp_signed if kind == "i" else b.icmp_unsigned
            lt, eq = cmp("<", a, c), b.icmp_unsigned("==", a, c)
        return b.or_(lt, b.and_(eq, by_pos))
    return less


def lower_argsort(ctx: KernelCtx) -> None:
    g, n, b = ctx.g, ctx.n, ctx.b
    (x,) = g.operands(n)
    axis = g.attrs(n)["axis"]
    xd = g.type(x).dtype
    xr, out = ctx.refs[x], ctx.out
    dims = out.dims
    length = u.i64(dims[axis])
    lane_dims = [d for a, d in enumerate(dims) if a != axis]
    less = _less(b, xd)
    one, two = ir.Constant(u.I64, 1), ir.Constant(u.I64, 2)

    def lane(lidx):
        def full(i):
            idx = list(lidx)
            idx.insert(axis, i)
            return idx

        def pos(i):                             # result row element i (an index into x's row)
            return out.load(b, full(i))

        def key(p):
            return xr.load(b, full(p))

        u.for_range(b, length, lambda i: out.store(b, i, full(i)), name="init")

        def sift(root0, end):
            """Sift the heap entry at root0 down within [0, end) (a max-heap on the key)."""
            def cond(vals):
                root, done = vals
                child = b.add(b.mul(root, two), one)
                return b.and_(b.not_(done), b.icmp_signed("<", child, end))

            def step(vals):
                root, _done = vals
                child = b.add(b.mul(root, two), one)
                right = b.add(child, one)
                has_right = b.icmp_signed("<", right, end)
                right = b.select(has_right, right, child)     # never read past the heap
                pc, pr = pos(child), pos(right)
                child = b.select(b.and_(has_right, less(key(pc), pc, key(pr), pr)), right, child)
                pc, proot = pos(child), pos(root)
                swap = less(key(proot), proot, key(pc), pc)
                out.store(b, b.select(swap, pc, proot), full(root))
                out.store(b, b.select(swap, proot, pc), full(child))
                return [child, b.not_(swap)]

            _while(b, [root0, ir.Constant(u.I1, 0)], cond, step, "sift")

        half = b.sdiv(length, two)
        u.for_range(b, half, lambda k: sift(b.sub(b.sub(half, one), k), length), name="heapify")

        def pop(k):
            end = b.sub(b.sub(length, one), k)      # length-1 down to 1
            first, last = pos(ir.Constant(u.I64, 0)), pos(end)
            out.store(b, last, full(ir.Constant(u.I64, 0)))
            out.store(b, first, full(end))
            sift(ir.Constant(u.I64, 0), end)

        u.for_range(b, b.sub(length, one), pop, name="pop")

    if lane_dims:
        u.loop_nest(b, lane_dims, lane, name="lane")
    else:
        lane([])
