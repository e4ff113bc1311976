"""Softmax, log_softmax and logsumexp kernels (split from kernels.py).

Over the last axis each row is computed whole (max, sum of exp, write) by one thread, and
large inputs split their rows across threads (parallel.py); over a non-last axis of
contiguous memory the columns are processed in chunks with stack accumulators.
"""
from __future__ import annotations

from llvmlite import ir

from . import irutil as u
from . import parallel as P
from .kctx import KernelCtx
from .kernels import _ceil_div, _fast, _min
from .scalar import cast

# -- softmax, log_softmax, logsumexp ------------------------------------------------------------


def lower_softmax(ctx: KernelCtx) -> None:
    from tcomp.backend import mathlib

    g, n, b = ctx.g, ctx.n, ctx.b
    op = g.op(n)
    (x,) = g.operands(n)
    axis = g.attrs(n)["axis"]
    od = g.type(n).dtype
    xr = ctx.refs[x]
    xd = g.type(x).dtype
    dims = xr.dims
    outer = [a for a in range(len(dims)) if a != axis]
    keepdims = op != "logsumexp" or g.attrs(n)["keepdims"]
    trailing = dims[axis + 1:]
    if ctx.prog.layout[x] == "contig" and trailing and not all(d == 1 for d in trailing):
        _softmax_columns(ctx, op, x, axis, od, mathlib)
        return

    def rows(lo, hi):
        """Rows [lo, hi) of the first non-softmax axis; refs re-read: this may run in a worker."""
        xr = ctx.refs[x]
        dims = xr.dims

        def full(oidx, i):
            f, it = [], iter(oidx)
            for a in range(len(dims)):
                f.append(i if a == axis else next(it))
            return f

        def load(oidx, i):
            return cast(b, xr.load(b, full(oidx, i)), xd, od)

        def row(oidx):
            (m,) = u.reduction_loop(b, dims[axis], [u.const(od, float("-inf"))],
                                    lambda i, a: [u.call_intrinsic(b, "maximum", a[0], load(oidx, i))], name="mx")
            inf = u.const(od, float("inf"))
            finite = b.fcmp_ordered("<", u.call_intrinsic(b, "fabs", m), inf)
            m = b.select(finite, m, u.const(od, 0.0))
            (s,) = u.reduction_loop(b, dims[axis], [u.const(od, 0.0)], lambda i, a: [_fast(b.fadd(
                a[0], mathlib.emit_unary(b, "exp", b.fsub(load(oidx, i), m))))], name="sm")
            ls = mathlib.emit_unary(b, "log", s)
            if op == "logsumexp":
                oi = full(oidx, 0) if keepdims else oidx
                ctx.out.store(b, b.fadd(ls, m), oi)
                return
            if op == "log_softmax":
                # (x - m) - log(s), in the reference's order: x - (m + log s) would round m + log s
                # and lose the tiny log-probabilities of the largest entries
                u.for_range(b, dims[axis], lambda i: ctx.out.store(b, b.fsub(b.fsub(load(oidx, i), m), ls),
                                                                   full(oidx, i)), name="w")
            else:
                inv = b.fdiv(u.const(od, 1.0), s)
                mw = _write_shift(b, od, m, s)
                u.for_range(b, dims[axis], lambda i: ctx.out.store(
                    b, b.fmul(mathlib.emit_unary(b, "exp", b.fsub(load(oidx, i), mw)), inv), full(oidx, i)), name="w")

        if not outer:
            row([])
            return
        u.for_range(b, hi, lambda i0: u.loop_nest(b, [dims[a] for a in outer[1:]], lambda rest: row([i0] + rest),
                                                  name="o"), start=lo, name="o0")
    if not outer:
        rows(0, 1)
        return
    # rows are independent and each is computed whole by one thread: same bits for any thread count
    total = u.numel(b, dims)
    if isinstance(total, int) and total < P.MIN_PER_THREAD * 2:
        rows(0, dims[outer[0]])
    else:
        P.parallel_for(ctx, dims[outer[0]], rows, work=total)


SOFTMAX_CHUNK = 64

#: the largest finite value of each float dtype (see _write_shift)
_FINITE_MAX = {"float32": 3.4028234663852886e38, "float64": 1.7976931348623157e308}


def _write_shift(b, od, m, s):
    """What softmax subtracts before its final exp: the row max ``m``, except where the sum
    ``s`` is +inf, which happens only when the row holds +inf (``m`` was then replaced by 0).
    There the answer is exp(x - m - log s): 0 for every finite x, nan for +inf (the reference
    backend's formula); exp(x - m) * (1 / s) would give inf * 0 = nan wherever exp(x)
    overflows, so finite entries shift by the largest finite value instead (exp <= 1 there,
    times 1/s = 0) and +inf still gives nan (fuzzer seed 708369)."""
    big = b.fcmp_ordered("==", s, u.const(od, float("inf")))
    return b.select(big, u.const(od, _FINITE_MAX[od]), m)


def _softmax_columns(ctx: KernelCtx, op, x, axis, od, mathlib) -> None:
    """Softmax family over a non-last axis of contiguous memory: x viewed as (P, A, T); for a
    chunk of up to SOFTMAX_CHUNK trailing positions, running max and sum live in two small
    stack arrays and every pass walks contiguous rows of T (vectorized), instead of one
    strided column at a time."""
    b = ctx.b
    xr, xd = ctx.refs[x], ctx.g.type(x).dtype
    dims = xr.dims
    P = u.numel(b, dims[:axis])
    A = dims[axis]
    T = u.numel(b, dims[axis + 1:])
    et = u.value_type(od)
    with b.goto_block(ctx.fn.entry_basic_block):
        m_buf = b.alloca(et, size=ir.Constant(u.I64, SOFTMAX_CHUNK), name="m")
        s_buf = b.alloca(et, size=ir.Constant(u.I64, SOFTMAX_CHUNK), name="s")

    def cell(buf, t):
        return b.gep(buf, [t], source_etype=et)

    def per_p(p):
        def per_chunk(ck):
            t0 = b.mul(ck, ir.Constant(u.I64, SOFTMAX_CHUNK))
            tc = _min(b, ir.Constant(u.I64, SOFTMAX_CHUNK), b.sub(u.i64(T), t0))

            def xoff(a, t):  # flat offset of x[p, a, t0 + t] (also of out for softmax/log_softmax)
                return b.add(b.mul(b.add(b.mul(p, u.i64(A)), a), u.i64(T)), b.add(t0, t))

            def load(a, t):
                return cast(b, u.load_value(b, u.gep(b, xr.ptr, xd, xoff(a, t)), xd), xd, od)

            def each_t(fn):
                u.for_range(b, tc, fn, name="t")

            each_t(lambda t: (b.store(u.const(od, float("-inf")), cell(m_buf, t)),
                              b.store(u.const(od, 0.0), cell(s_buf, t))))
            u.for_range(b, A, lambda a: each_t(lambda t: b.store(u.call_intrinsic(
                b, "maximum", b.load(cell(m_buf, t), typ=et), load(a, t)), cell(m_buf, t))), name="a")

            def fix_m(t):
                m = b.load(cell(m_buf, t), typ=et)
                finite = b.fcmp_ordered("<", u.call_intrinsic(b, "fabs", m), u.const(od, float("inf")))
                b.store(b.select(finite, m, u.const(od, 0.0)), cell(m_buf, t))
            each_t(fix_m)

            def add_exp(a, t):
                m = b.load(cell(m_buf, t), typ=et)
                e = mathlib.emit_unary(b, "exp", b.fsub(load(a, t), m))
                b.store(b.fadd(b.load(cell(s_buf, t), typ=et), e), cell(s_buf, t))
            u.for_range(b, A, lambda a: each_t(lambda t: add_exp(a, t)), name="a")
            out = ctx.out
            if op == "logsumexp":
                def write_lse(t):
                    m = b.load(cell(m_buf, t), typ=et)
                    v = b.fadd(mathlib.emit_unary(b, "log", b.load(cell(s_buf, t), typ=et)), m)
                    off = b.add(b.mul(p, u.i64(T)), b.add(t0, t))
                    u.store_value(b, v, u.gep(b, out.ptr, od, off), od)
                each_t(write_lse)
                return

            def write(a, t):
                m = b.load(cell(m_buf, t), typ=et)
                ssum = b.load(cell(s_buf, t), typ=et)
                if op == "log_softmax":
                    v = b.fsub(b.fsub(load(a, t), m), mathlib.emit_unary(b, "log", ssum))
                else:
                    v = b.fdiv(mathlib.emit_unary(b, "exp", b.fsub(load(a, t), _write_shift(b, od, m, ssum))), ssum)
                u.store_value(b, v, u.gep(b, out.ptr, od, xoff(a, t)), od)
            u.for_range(b, A, lambda a: each_t(lambda t: write(a, t)), name="a")
        u.for_range(b, _ceil_div(b, T, SOFTMAX_CHUNK), per_chunk, name="ck")
    u.for_range(b, P, per_p, name="p")
