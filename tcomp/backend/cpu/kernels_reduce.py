"""Full reductions (every axis reduced: ``x.sum()``, ``mean``, ``max``, ``min``, ``prod``) in
blocks and fixed segments, multi-threaded.

Why not one loop with one carried accumulator (what ``kernels.emit_reduction`` does for a
row): LLVM vectorizes it with ``reassoc`` into 32-64 lane partial sums, so each lane adds
n/64 values one after another; a float32 sum of 2^24 values then errs by ~2^18 ulps of a
lane's sum (NumPy's pairwise sum: ~16 + log2(n) ulps), and the loop runs on one core.

Shape of the code: the operand's elements are split into *rows*: blocks of :data:`BLOCK`
consecutive elements (of the C-order flattening when the operand reads flat or has rank 1,
else of the last axis at one index of the leading axes, so a strided operand of any rank
splits evenly too).  Rows are
split into :data:`SEGMENTS` consecutive segments (a fixed count, not the thread count, so a
result has the same bits for any ``num_threads``).  A row is reduced with vectorizable
partial results (``reassoc``); rows are added into their segment's accumulator, a float64
for a float32 sum and a compensated (Neumaier) float64 pair for a float64 sum, so the error
stays in NumPy's class (a block's ~BLOCK/lanes ulps plus a few); prod, max, min and integer
sums combine in their own type.  Segments run in parallel (``parallel.parallel_for``), each
writing its accumulators to stack arrays of the kernel; the kernel then merges the segments
in order and stores the result.

A float prod keeps ``kernels``' zero rule: the product of the non-zero factors and two
or-ed flags (a zero; an inf or nan), finished by ``_prod_finish``: a zero anywhere gives
0 (nan with an inf or nan), even where the product of the other factors overflowed.
"""
from __future__ import annotations

from llvmlite import ir

from tcomp.ir import dtypes as dt

from . import irutil as u
from . import parallel as P
from .kctx import FLAT

#: elements per row block: 2048 float32 = 8 KiB, summed by ~64 vector lanes (~32 each)
BLOCK = 2048
#: segments of a full reduction (at most; fewer when there are fewer rows)
SEGMENTS = 64


def wanted(op: str, in_dims: list) -> bool:
    """True for a full reduction this module emits: a supported op over more than one block
    (smaller static ones keep the single loop: one block anyway, no scratch)."""
    if op not in ("sum", "mean", "max", "min", "prod") or not in_dims:
        return False
    total = 1
    for d in in_dims:
        if not isinstance(d, int):
            return True
        total *= d
    return total > BLOCK


class _Plan:
    """The accumulators of one op: per row (vectorizable) and per segment (wide/compensated)."""

    def __init__(self, b, op: str, in_dtype: str, acc_dtype: str):
        from .kernels import _identity

        self.b, self.op, self.in_dtype, self.acc_dtype = b, op, in_dtype, acc_dtype
        k = dt.kind(acc_dtype)
        self.float_prod = op == "prod" and k == "f"
        summing = op in ("sum", "mean") and k == "f"
        self.wide = summing and acc_dtype == "float32"
        self.comp = summing and acc_dtype == "float64"
        ident = _identity(op, acc_dtype)
        self.row_init = [ident] + [ir.Constant(u.I32, 0)] * (2 if self.float_prod else 0)
        if self.wide:
            self.seg_init = [ir.Constant(u.F64, 0.0)]
        elif self.comp:
            self.seg_init = [ir.Constant(u.F64, 0.0), ir.Constant(u.F64, 0.0)]
        else:
            self.seg_init = list(self.row_init)

    def row_step(self, x, accs):
        from .kernels import _row_step

        return _row_step(self.b, self.op, self.in_dtype, self.acc_dtype, self.float_prod, x, accs)

    def merge(self, accs, vals):
        """Segment accumulators ``accs`` with a row's results or another segment's ``vals``."""
        from .kernels import _combine, _fast

        b = self.b
        if self.wide:
            v = vals[0] if vals[0].type == u.F64 else b.fpext(vals[0], u.F64)
            return [b.fadd(accs[0], v)]
        if self.comp:
            s, c = accs
            x = vals[0]
            t = b.fadd(s, x)
            big = b.fcmp_ordered(">=", u.call_intrinsic(b, "fabs", s), u.call_intrinsic(b, "fabs", x))
            lost = b.select(big, b.fadd(b.fsub(s, t), x), b.fadd(b.fsub(x, t), s))
            c = b.fadd(c, lost)
            if len(vals) > 1:
                c = b.fadd(c, vals[1])
            return [t, c]
        if self.float_prod:
            return [_fast(b.fmul(accs[0], vals[0]))] + [b.or_(a, f) for a, f in zip(accs[1:], vals[1:])]
        return [_combine(b, self.op, accs[0], vals[0], self.acc_dtype)]

    def finish(self, accs, count):
        from .kernels import _prod_finish

        b = self.b
        if self.float_prod:
            return _prod_finish(b, accs[1], accs[2], accs[0])
        v = b.fadd(accs[0], accs[1]) if self.comp else accs[0]
        if self.op == "mean":
            v = b.fdiv(v, b.sitofp(u.i64(count), v.type))
        if self.wide:
            v = b.fptrunc(v, u.F32)
        return v


def _rows(b, dims, flat: bool, val):
    """``(nrows, row(r, plan) -> row results)`` over ``dims``: a row is a block of at most
    BLOCK consecutive elements of the flattening (``flat``, or rank 1), else of the last
    axis at one index of the leading axes (unravelled once per row)."""
    from .kernels import _unravel

    lead, last = ([], u.numel(b, dims)) if flat or len(dims) == 1 else (dims[:-1], dims[-1])
    per = _ceil_div(b, last, BLOCK)

    def row(r, plan):
        if lead:
            o, blk = b.udiv(r, u.i64(per)), b.urem(r, u.i64(per))
            head = [o] if len(lead) == 1 else _unravel(b, o, lead)
        else:
            head, blk = [], r
        lo = b.mul(blk, ir.Constant(u.I64, BLOCK))
        hi = _min(b, b.add(lo, ir.Constant(u.I64, BLOCK)), u.i64(last))

        def step(i, accs):
            j = b.add(lo, i)
            return plan.row_step(val((FLAT, j) if flat else head + [j]), accs)
        return u.reduction_loop(b, b.sub(hi, lo), plan.row_init, step, name="rb")
    return u.mul(b, u.numel(b, lead), per), row


def emit_full_reduction(ctx, op: str, in_dtype: str, acc_dtype: str, in_dims: list, val, dims_fn, flat: bool,
                        out_idx: list) -> None:
    """Reduce every element of ``val`` (over ``in_dims``; ``val((FLAT, i))`` works when
    ``flat``) into ``ctx.out`` at ``out_idx``.  ``dims_fn()`` re-reads the dims in a worker:
    without it the segments run on the calling thread."""
    b = ctx.b
    plan = _Plan(b, op, in_dtype, acc_dtype)
    with b.goto_block(ctx.fn.entry_basic_block):
        scratch = [b.alloca(v.type, size=ir.Constant(u.I64, SEGMENTS), name="seg") for v in plan.seg_init]

    def nseg_of(nrows):
        return _min(b, u.i64(nrows), ir.Constant(u.I64, SEGMENTS))

    def segments(lo, hi, *arrays):
        dims = dims_fn() if dims_fn is not None else in_dims
        nrows, row = _rows(b, dims, flat, val)
        nrows = u.i64(nrows)
        nseg = nseg_of(nrows)

        def one(k):
            first = b.udiv(b.mul(k, nrows), nseg)
            end = b.udiv(b.mul(b.add(k, ir.Constant(u.I64, 1)), nrows), nseg)
            accs = u.reduction_loop(b, b.sub(end, first), plan.seg_init,
                                    lambda i, accs: plan.merge(accs, row(b.add(first, i), plan)), name="rs")
            for a, v in zip(arrays, accs):
                b.store(v, b.gep(a, [k], source_etype=v.type, inbounds=True))
        u.for_range(b, hi, one, start=lo, name="seg")

    nrows, _ = _rows(b, in_dims, flat, val)
    nseg = nseg_of(nrows)
    if dims_fn is None:
        segments(ir.Constant(u.I64, 0), nseg, *scratch)
    else:
        P.parallel_for(ctx, nseg, segments, work=u.numel(b, in_dims), extra=scratch)

    def merge(k, accs):
        vals = [b.load(b.gep(a, [k], source_etype=v.type, inbounds=True), typ=v.type)
                for a, v in zip(scratch, plan.seg_init)]
        return plan.merge(accs, vals)
    accs = u.reduction_loop(b, nseg, plan.seg_init, merge, name="rm")
    ctx.out.store(b, plan.finish(accs, u.numel(b, in_dims)), out_idx)


def _ceil_div(b, x, k: int):
    if isinstance(x, int):
        return -(-x // k)
    return b.udiv(b.add(x, ir.Constant(u.I64, k - 1)), ir.Constant(u.I64, k))


def _min(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)
