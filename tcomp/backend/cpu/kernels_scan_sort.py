"""Kernels for ``cumsum``/``cumprod`` (kind 'cumulative') and ``argsort`` (kind 'argsort').

Cumulative: one loop nest over the result in C order; each element is its input combined with the
previous element along the axis (already written, since C order visits it first), so the
additions/multiplications happen in NumPy's sequential order (bit-identical for floats), and
for a non-last axis the inner loop runs over contiguous lanes.

Argsort: per lane (every index of the other axes) the int64 result row is filled with
0..n-1 and sorted in place on the key (x[i], i): comparing the position too makes the order
total, so an in-place, unstable O(n log n) algorithm (introsort: quicksort, heapsort past a
depth limit, a final insertion sort) gives exactly NumPy's stable argsort (equal values,
-0.0 and 0.0 included, keep their order; nan compares above everything and nans keep their
order).  No scratch memory but a fixed stack of ranges, no recursion, no libc.
"""
from __future__ import annotations

from llvmlite import ir

from tcomp.ir import dtypes as dt

from . import irutil as u
from . import parallel as P
from .kctx import KernelCtx
from .scalar import cast


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


#: partitions at most this long are left to the final insertion sort
SMALL = 16
#: quicksort levels before a range falls back to heapsort (>= 2 log2 of any row length)
DEPTH = 96
#: explicit stack entries (lo, hi, depth): the larger part is pushed, so <= log2(n) + 1 live
STACK = 66


class _Row:
    """One lane's row of the result (indices into x's row along the axis) and its keys."""

    def __init__(self, ctx, b, x, axis, lidx):
        self.b, self.out, self.xr, self.axis, self.lidx = b, ctx.out, ctx.refs[x], axis, lidx
        self.less_keys = _less(b, ctx.g.type(x).dtype)

    def full(self, i):
        idx = list(self.lidx)
        idx.insert(self.axis, i)
        return idx

    def pos(self, i):
        return self.out.load(self.b, self.full(i))

    def put(self, i, p):
        self.out.store(self.b, p, self.full(i))

    def key(self, p):
        return self.xr.load(self.b, self.full(p))

    def less(self, p, q):
        """(x[p], p) < (x[q], q): the total order that makes any sort NumPy's stable argsort."""
        return self.less_keys(self.key(p), p, self.key(q), q)


def _var(b, entry, name, init=None):
    with b.goto_block(entry):
        slot = b.alloca(u.I64, name=name)
    if init is not None:
        b.store(u.i64(init), slot)
    return slot


def _heapsort(b, row, entry, lo, hi):
    """Heapsort of row[lo:hi] (the fallback for ranges quicksort splits badly)."""
    one, two = ir.Constant(u.I64, 1), ir.Constant(u.I64, 2)
    count = b.sub(hi, lo)
    root_v = _var(b, entry, "hroot")
    done_v = _var(b, entry, "hdone")

    def sift(root0, end):
        b.store(root0, root_v)
        b.store(ir.Constant(u.I64, 0), done_v)

        def cond():
            child = b.add(b.mul(b.load(root_v), two), one)
            return b.and_(b.icmp_signed("==", b.load(done_v), ir.Constant(u.I64, 0)),
                          b.icmp_signed("<", child, end))

        def step():
            root = b.load(root_v)
            child = b.add(b.mul(root, two), one)
            right = b.add(child, one)
            has_right = b.icmp_signed("<", right, end)
            right = b.select(has_right, right, child)        # never read past the heap
            pc, pr = row.pos(b.add(lo, child)), row.pos(b.add(lo, right))
            child = b.select(b.and_(has_right, row.less(pc, pr)), right, child)
            pc, proot = row.pos(b.add(lo, child)), row.pos(b.add(lo, root))
            swap = row.less(proot, pc)
            row.put(b.add(lo, root), b.select(swap, pc, proot))
            row.put(b.add(lo, child), b.select(swap, proot, pc))
            b.store(child, root_v)
            b.store(b.zext(b.not_(swap), u.I64), done_v)

        u.while_loop(b, cond, step, "sift")

    half = b.sdiv(count, two)
    u.for_range(b, half, lambda k: sift(b.sub(b.sub(half, one), k), count), name="heapify")

    def pop(k):
        end = b.sub(b.sub(count, one), k)                  # count-1 down to 1
        first, last = row.pos(lo), row.pos(b.add(lo, end))
        row.put(lo, last)
        row.put(b.add(lo, end), first)
        sift(ir.Constant(u.I64, 0), end)

    u.for_range(b, b.sub(count, one), pop, name="pop")


def _sort_row(b, row, entry, length, stack):
    """Introsort of one row: quicksort (Hoare partition around the middle element, iterative,
    the larger part pushed) down to ranges of SMALL, heapsort for ranges past DEPTH levels,
    then one insertion sort pass (each element moves at most SMALL places)."""
    one = ir.Constant(u.I64, 1)
    sp, lo_v, hi_v, d_v = (_var(b, entry, nm) for nm in ("sp", "lo", "hi", "depth"))
    i_v, j_v, stop_v = (_var(b, entry, nm) for nm in ("pi", "pj", "pstop"))

    def slot(k, f):
        return b.gep(stack, [b.add(b.mul(k, ir.Constant(u.I64, 3)), ir.Constant(u.I64, f))], source_etype=u.I64)

    def push(lo, hi, d):
        k = b.load(sp)
        for f, v in enumerate((lo, hi, d)):
            b.store(v, slot(k, f))
        b.store(b.add(k, one), sp)

    u.for_range(b, length, lambda i: row.put(i, i), name="init")
    b.store(ir.Constant(u.I64, 0), sp)
    push(ir.Constant(u.I64, 0), length, ir.Constant(u.I64, DEPTH))

    def pop_range():
        k = b.sub(b.load(sp), one)
        b.store(k, sp)
        for f, var in enumerate((lo_v, hi_v, d_v)):
            b.store(b.load(slot(k, f)), var)

        def big():
            return b.icmp_signed(">", b.sub(b.load(hi_v), b.load(lo_v)), ir.Constant(u.I64, SMALL))

        def split():
            lo, hi, d = b.load(lo_v), b.load(hi_v), b.load(d_v)
            with b.if_else(b.icmp_signed("==", d, ir.Constant(u.I64, 0))) as (fallback, partition):
                with fallback:
                    _heapsort(b, row, entry, lo, hi)
                    b.store(lo, hi_v)                          # done with this range
                with partition:
                    pivot = row.pos(b.add(lo, b.sdiv(b.sub(b.sub(hi, lo), one), ir.Constant(u.I64, 2))))
                    b.store(b.sub(lo, one), i_v)
                    b.store(hi, j_v)
                    b.store(ir.Constant(u.I64, 0), stop_v)

                    def hoare():
                        b.store(b.add(b.load(i_v), one), i_v)
                        u.while_loop(b, lambda: row.less(row.pos(b.load(i_v)), pivot),
                              lambda: b.store(b.add(b.load(i_v), one), i_v), "up")
                        b.store(b.sub(b.load(j_v), one), j_v)
                        u.while_loop(b, lambda: row.less(pivot, row.pos(b.load(j_v))),
                              lambda: b.store(b.sub(b.load(j_v), one), j_v), "down")
                        i, j = b.load(i_v), b.load(j_v)
                        stop = b.icmp_signed(">=", i, j)
                        with b.if_then(b.not_(stop)):
                            pi, pj = row.pos(i), row.pos(j)
                            row.put(i, pj)
                            row.put(j, pi)
                        b.store(b.zext(stop, u.I64), stop_v)

                    u.while_loop(b, lambda: b.icmp_signed("==", b.load(stop_v), ir.Constant(u.I64, 0)), hoare, "hoare")
                    # parts [lo, j + 1) and [j + 1, hi): push the larger, keep splitting the smaller
                    mid = b.add(b.load(j_v), one)
                    d1 = b.sub(d, one)
                    left_small = b.icmp_signed("<", b.sub(mid, lo), b.sub(hi, mid))
                    push(b.select(left_small, mid, lo), b.select(left_small, hi, mid), d1)
                    b.store(b.select(left_small, lo, mid), lo_v)
                    b.store(b.select(left_small, mid, hi), hi_v)
                    b.store(d1, d_v)

        u.while_loop(b, big, split, "split")

    u.while_loop(b, lambda: b.icmp_signed(">", b.load(sp), ir.Constant(u.I64, 0)), pop_range, "ranges")

    def insert(i):
        p = row.pos(i)
        b.store(i, j_v)

        def cond():
            j = b.load(j_v)
            pos_ok = b.icmp_signed(">", j, ir.Constant(u.I64, 0))
            # (the load at j - 1 = -1 is avoided: j - 1 is clamped to 0 and the test fails anyway)
            prev = row.pos(b.select(pos_ok, b.sub(j, one), ir.Constant(u.I64, 0)))
            return b.and_(pos_ok, row.less(p, prev))

        def shift():
            j = b.load(j_v)
            row.put(j, row.pos(b.sub(j, one)))
            b.store(b.sub(j, one), j_v)

        u.while_loop(b, cond, shift, "ins")
        row.put(b.load(j_v), p)

    u.for_range(b, length, insert, start=1, name="insertion")


def lower_argsort(ctx: KernelCtx) -> None:
    """Rows are independent and each is sorted whole by one thread (the same result for any
    thread count); large inputs split the first lane axis across threads (parallel.py)."""
    g, n, b = ctx.g, ctx.n, ctx.b
    (x,) = g.operands(n)
    axis = g.attrs(n)["axis"]

    def rows(lo, hi):
        """Lanes [lo, hi) of the first non-sorted axis; ctx re-read: this may run in a worker."""
        dims = ctx.out.dims
        length = u.i64(dims[axis])
        lane_dims = [d for a, d in enumerate(dims) if a != axis]
        entry = ctx.fn.entry_basic_block
        with b.goto_block(entry):
            stack = b.alloca(u.I64, size=ir.Constant(u.I64, 3 * STACK), name="ranges")

        def lane(lidx):
            _sort_row(b, _Row(ctx, b, x, axis, lidx), entry, length, stack)

        if not lane_dims:
            lane([])
            return
        u.for_range(b, hi, lambda i0: u.loop_nest(b, lane_dims[1:], lambda rest: lane([i0] + rest), name="lane"),
                    start=lo, name="lane0")

    dims = ctx.out.dims
    lane_dims = [d for a, d in enumerate(dims) if a != axis]
    total = u.numel(b, dims)
    if not lane_dims or (isinstance(total, int) and total < P.MIN_PER_THREAD * 2):
        rows(0, lane_dims[0] if lane_dims else 1)
    else:
        P.parallel_for(ctx, lane_dims[0], rows, work=total)
