"""Compute kernels: elementwise (with inlined producers), ``fused``, reductions, the
softmax family and dot/matmul.

Loop shapes are chosen so the innermost loop walks contiguous memory and LLVM's loop
vectorizer can widen it: elementwise nests collapse to one flat loop when nothing
broadcasts; reductions over the last axis accumulate in a register with ``reassoc`` (so
they become vector partial sums), reductions over leading axes accumulate into the output
row instead; matmul is an i-k-j loop tiled over k and j so a B tile stays in L2.
"""
from __future__ import annotations

from llvmlite import ir

from tcomp.ir import dtypes as dt
from tcomp.ir.ops.fused import pre_epilogue_type, step_types
from tcomp.ir.ops.registry import get_op

from . import irutil as u
from . import kernels_stream as S
from . import parallel as P
from .kctx import FLAT, KernelCtx, expression_leaves, flat_ok
from .scalar import _while, cast, emit_elemwise

#: fast-math flags of float reductions: ``reassoc`` lets LLVM vectorize them; no ``nsz``, so
#: the sign of a zero product stays IEEE's (NumPy's): prod([-0., -1., -1.]) is -0.0
FAST = ("reassoc", "contract")


def _fast(v):
    if isinstance(v.type, (ir.FloatType, ir.DoubleType)) and hasattr(v, "flags"):
        v.flags.extend(FAST)
    return v


# -- elementwise ---------------------------------------------------------------------------


def elemwise_leaves(prog, n):
    ops = prog.g.operands(n)
    return expression_leaves(prog, ops[:1] if prog.g.op(n) == "alloc" else ops)


def lower_elemwise(ctx: KernelCtx) -> None:
    prog, g, n, b = ctx.prog, ctx.g, ctx.n, ctx.b
    t = g.type(n)
    is_alloc = g.op(n) == "alloc"
    roots = g.operands(n)[:1] if is_alloc else g.operands(n)

    def value(idx):
        memo: dict = {}
        if is_alloc:
            src = roots[0]
            sidx = ctx.bidx(src, t, idx)
            if not isinstance(idx, tuple):
                sidx = ctx.runtime_bcast(ctx.dims(src), sidx)
            return ctx.value(src, sidx, memo)
        return ctx.value(n, idx, memo, root=True)

    def point(idx):
        ctx.out.store(b, value(idx), idx)

    # alloc broadcasts run-time size-1 symbolic dims (np.broadcast_to), so only a static copy is flat
    if (not is_alloc or (t.is_static and g.type(roots[0]).shape == t.shape)) and flat_ok(prog, n, roots):
        parallel_flat(ctx, lambda i: value((FLAT, i)), "e")
    else:
        parallel_nest(ctx, point, tiled=t.ndim >= 2 and any(prog.layout[leaf] == "strided" for leaf in ctx.leaves))


def parallel_flat(ctx: KernelCtx, value, name: str) -> None:
    """``out[i] = value(i)`` as one flat loop over the output's elements, split across threads
    when it is large; chunks start at multiples of ALIGN elements.  An output that may be
    larger than the last-level cache is written with streaming stores (kernels_stream.py)."""
    b = ctx.b
    n = u.numel(b, ctx.out.dims)

    def point(i):
        u.store_value(b, value(i), u.gep(b, ctx.out.ptr, ctx.out.dtype, i), ctx.out.dtype)

    def normal(lo, hi):
        u.for_range(b, hi, point, start=lo, name=name)

    def chunk(lo, hi):
        if S.wanted(n, ctx.out.dtype):
            S.emit_chunk(ctx, lo, hi, value, normal, name)
        else:
            normal(lo, hi)
    if isinstance(n, int) and n < P.MIN_PER_THREAD * 2:
        chunk(0, n)
        return
    P.parallel_for(ctx, n, chunk, align=P.ALIGN)


def parallel_nest(ctx: KernelCtx, point, tiled: bool) -> None:
    """C-order loops over the output (tiled when a strided operand is read), the outermost
    loop (tile rows for a tiled rank-2 nest) split across threads when the output is large.
    Loop bounds inside the split are re-read from ``ctx`` because they run in the worker."""
    b = ctx.b
    dims = ctx.out.dims
    total = u.numel(b, dims)
    if not dims or (isinstance(total, int) and total < P.MIN_PER_THREAD * 2):
        if tiled:
            tiled_nest(b, dims, point)
        else:
            u.loop_nest(b, dims, point, name="e")
        return
    if tiled and len(dims) == 2:
        P.parallel_for(ctx, _ceil_div(b, dims[0], TILE), lambda lo, hi: tiled_rows(
            b, ctx.out.dims, point, [], lo, hi), work=total)
        return

    def rows(lo, hi):
        inner = ctx.out.dims[1:]

        def one(i):
            if tiled:
                tiled_nest(b, inner, lambda idx: point([i] + idx))
            else:
                u.loop_nest(b, inner, lambda idx: point([i] + idx), name="e")
        u.for_range(b, hi, one, start=lo, name="e0")
    P.parallel_for(ctx, dims[0], rows, work=total)


TILE = 32


def tiled_rows(b, dims, body, lead, lo, hi) -> None:
    """Tile rows ``[lo, hi)`` of the last two axes of ``dims`` (see :func:`tiled_nest`)."""
    def tile_i(it):
        i0 = b.mul(it, ir.Constant(u.I64, TILE))
        i1 = _min(b, b.add(i0, ir.Constant(u.I64, TILE)), u.i64(dims[-2]))

        def tile_j(jt):
            j0 = b.mul(jt, ir.Constant(u.I64, TILE))
            j1 = _min(b, b.add(j0, ir.Constant(u.I64, TILE)), u.i64(dims[-1]))
            u.for_range(b, i1, lambda i: u.for_range(b, j1, lambda j: body(lead + [i, j]), start=j0, name="tj"),
                        start=i0, name="ti")
        u.for_range(b, _ceil_div(b, dims[-1], TILE), tile_j, name="tjt")
    u.for_range(b, hi, tile_i, start=lo, name="tit")


def tiled_nest(b, dims, body) -> None:
    """C-order loops with the last two axes in TILE x TILE blocks: a transposed operand then
    reuses the cache lines of a block instead of missing once per element."""
    u.loop_nest(b, dims[:-2], lambda lead: tiled_rows(b, dims, body, lead, 0, _ceil_div(b, dims[-2], TILE)),
                name="tl")


# -- reductions (also the tail of a fused kernel) --------------------------------------------


def _identity(op, dtype):
    k = dt.kind(dtype)
    if op in ("sum", "mean"):  # +0.0 like NumPy's add.reduce: a sum of -0.0s is +0.0 there too
        return u.const(dtype, 0)
    if op == "prod":
        return u.const(dtype, 1)
    big = op == "min"
    if k == "f":
        return u.const(dtype, float("inf") if big else float("-inf"))
    if k == "b":
        return u.const(dtype, big)
    import numpy as np

    info = np.iinfo(dtype)
    return u.const(dtype, info.max if big else info.min)


def _combine(b, op, acc, x, dtype):
    k = dt.kind(dtype)
    if op in ("sum", "mean"):
        return _fast(b.fadd(acc, x)) if k == "f" else b.add(acc, x)
    if op == "prod":
        return _fast(b.fmul(acc, x)) if k == "f" else b.mul(acc, x)
    return emit_elemwise(b, "maximum" if op == "max" else "minimum", {}, [acc, x], [dtype, dtype], dtype)


def _prod_flags(b, x, is_zero):
    """Two i32 flags of one float factor of a prod: it is 0; it is inf or nan.  (Kept apart:
    LLVM's loop vectorizer gives up on one or-reduction of both packed into bits.)"""
    nonfinite = b.fcmp_unordered(">=", u.call_intrinsic(b, "fabs", x), ir.Constant(x.type, float("inf")))
    return [b.zext(is_zero, u.I32), b.zext(nonfinite, u.I32)]


def _prod_finish(b, has_zero, nonfinite, p):
    """A float prod from ``p``, the product of its non-zero factors, and the or of their
    flags: 0 if a factor is 0 (even where ``p`` overflowed: a vectorized or sequential
    product would form inf * 0 = nan there), nan if a 0 meets an inf or nan, else ``p``."""
    zero = b.select(b.trunc(nonfinite, u.I1), ir.Constant(p.type, float("nan")),
                    u.call_intrinsic(b, "copysign", ir.Constant(p.type, 0.0), p))
    return b.select(b.trunc(has_zero, u.I1), zero, p)


def _row_step(b, op, in_dtype, acc_dtype, float_prod, x, accs):
    """One element ``x`` into a row's vectorizable accumulators (a float prod: the product of
    the non-zero factors and the two flags of :func:`_prod_flags`)."""
    x = cast(b, x, in_dtype, acc_dtype)
    if float_prod:  # two vectorizable reductions: the non-zero product, the flags
        is_zero = b.fcmp_ordered("==", x, ir.Constant(x.type, 0.0))
        # a zero factor counts as +-1, so the product keeps the sign of the zero
        x_nz = b.select(is_zero, u.call_intrinsic(b, "copysign", ir.Constant(x.type, 1.0), x), x)
        flags = [b.or_(a, f) for a, f in zip(accs[1:], _prod_flags(b, x, is_zero))]
        return [_combine(b, op, accs[0], x_nz, acc_dtype)] + flags
    return [_combine(b, op, accs[0], x, acc_dtype)]


def emit_reduction(ctx: KernelCtx, op: str, axes, in_dtype: str, in_dims: list, val, dims_fn=None,
                   flat: bool = False) -> None:
    """Reduce ``val(idx)`` (values of ``in_dtype`` over ``in_dims``) into ``ctx.out``.

    ``dims_fn()`` re-reads ``in_dims`` in the current function: given, a large reduction over
    the last axis splits its output rows across threads (parallel.py).  ``flat``: ``val``
    also takes ``(FLAT, i)``, the C-order linear index (a full reduction then reads in blocks
    of the flattening: kernels_reduce.py)."""
    b, out = ctx.b, ctx.out
    od = out.dtype
    keepdims = out.ndim == len(in_dims)
    kept = [a for a in range(len(in_dims)) if a not in axes]
    red_dims = [in_dims[a] for a in axes]
    acc_dtype = od if op != "mean" else od
    float_prod = op == "prod" and dt.kind(acc_dtype) == "f"

    def out_idx(kidx):
        if keepdims:
            full, it = [], iter(kidx)
            for a in range(len(in_dims)):
                full.append(next(it) if a in kept else 0)
            return full
        return kidx

    def full_idx(kidx, ridx):
        full, ki, ri = [], iter(kidx), iter(ridx)
        for a in range(len(in_dims)):
            full.append(next(ri) if a in axes else next(ki))
        return full

    def finish(v):
        if op == "mean":
            count = u.numel(b, red_dims)
            v = b.fdiv(v, b.sitofp(u.i64(count), v.type))
        return v

    if op in ("argmax", "argmin"):
        # two passes: a vectorizable max/min, then the first position holding it (np.argmax's
        # tie and NaN rules: the first NaN if any, since maximum/minimum propagate NaN)
        extreme = "max" if op == "argmax" else "min"

        def row(kidx):
            def step(ridx, accs):
                return [_combine(b, extreme, accs[0], val(full_idx(kidx, ridx)), in_dtype)]
            (m,) = u.nested_reduction(b, red_dims, [_identity(extreme, in_dtype)], step)
            total = u.i64(u.numel(b, red_dims))

            def unflatten(i):
                if len(red_dims) == 1:
                    return [i]
                ridx, rest = [], i
                for d in reversed(red_dims):
                    if d == 1:
                        ridx.append(ir.Constant(u.I64, 0))
                        continue
                    ridx.append(b.srem(rest, u.i64(d)))
                    rest = b.sdiv(rest, u.i64(d))
                return list(reversed(ridx))

            def differs(vals):
                i = vals[0]
                inside = b.icmp_signed("<", i, total)
                x = val(full_idx(kidx, unflatten(b.select(inside, i, ir.Constant(u.I64, 0)))))
                if dt.kind(in_dtype) == "f":
                    same = b.or_(b.fcmp_ordered("==", x, m), b.and_(b.fcmp_unordered("uno", x, x),
                                                                    b.fcmp_unordered("uno", m, m)))
                else:
                    same = b.icmp_unsigned("==", x, m)
                return b.and_(inside, b.not_(same))
            (first,) = _while(b, [ir.Constant(u.I64, 0)], differs,
                              lambda vals: [b.add(vals[0], ir.Constant(u.I64, 1))], "find")
            out.store(b, first, out_idx(kidx))
        u.loop_nest(b, [in_dims[a] for a in kept], row, name="o")
        return

    if not kept:
        from . import kernels_reduce

        if kernels_reduce.wanted(op, in_dims):
            kernels_reduce.emit_full_reduction(ctx, op, in_dtype, acc_dtype, in_dims, val, dims_fn, flat, out_idx([]))
            return
    last_reduced = not in_dims or (len(in_dims) - 1) in axes
    if last_reduced or not kept:
        def rows(lo, hi, dims_now):
            """Output rows [lo, hi) of the first kept axis (all rows when lo is None)."""
            red = [dims_now[a] for a in axes]

            def row(kidx):
                def step(ridx, accs):
                    return _row_step(b, op, in_dtype, acc_dtype, float_prod, val(full_idx(kidx, ridx)), accs)
                init = [_identity(op, acc_dtype)] + [ir.Constant(u.I32, 0)] * (2 if float_prod else 0)
                res, *flags = u.nested_reduction(b, red, init, step)
                if float_prod:
                    res = _prod_finish(b, *flags, res)
                if op == "mean":
                    res = b.fdiv(res, b.sitofp(u.i64(u.numel(b, red)), res.type))
                ctx.out.store(b, res, out_idx(kidx))
            kept_dims = [dims_now[a] for a in kept]
            if lo is None:
                u.loop_nest(b, kept_dims, row, name="o")
                return
            u.for_range(b, hi, lambda i0: u.loop_nest(b, kept_dims[1:], lambda rest: row([i0] + rest), name="o"),
                        start=lo, name="o0")
        total = u.numel(b, in_dims)
        if dims_fn is None or not kept or (isinstance(total, int) and total < P.MIN_PER_THREAD * 2):
            rows(None, None, in_dims)
        else:
            # whole rows per thread, each summed in the one-thread order: same bits for any thread count
            P.parallel_for(ctx, in_dims[kept[0]], lambda lo, hi: rows(lo, hi, dims_fn()), work=total)
        return

    # the last axis is kept: accumulate whole output rows so the inner loop is contiguous
    u.for_range(b, u.numel(b, out.dims), lambda i: u.store_value(
        b, u.const(od, 0) if float_prod else _identity(op, acc_dtype), u.gep(b, out.ptr, od, i), od), name="z")
    if float_prod:
        # a float prod first or-s its factors' flags into the rows (as floats 0..3), turns
        # them into the rows' start values (1, or the final 0 / nan), then multiplies: 0
        # times the finite factors of such a row stays 0
        def flag_point(idx):
            o = out.addr(b, out_idx([idx[a] for a in kept]))
            x = cast(b, val(idx), in_dtype, acc_dtype)
            is_zero = b.fcmp_ordered("==", x, ir.Constant(x.type, 0.0))
            has_zero, nonfinite = _prod_flags(b, x, is_zero)
            f = b.or_(b.fptosi(u.load_value(b, o, od), u.I32), b.or_(has_zero, b.shl(nonfinite, ir.Constant(u.I32, 1))))
            u.store_value(b, b.sitofp(f, x.type), o, od)
        u.loop_nest(b, in_dims, flag_point, name="f")

        def start(i):
            o = u.gep(b, out.ptr, od, i)
            flags = b.fptosi(u.load_value(b, o, od), u.I32)
            nonfinite = b.lshr(flags, ir.Constant(u.I32, 1))
            u.store_value(b, _prod_finish(b, flags, nonfinite, _identity(op, acc_dtype)), o, od)
        u.for_range(b, u.numel(b, out.dims), start, name="s")

    def acc_point(idx):
        kidx = [idx[a] for a in kept]
        o = out.addr(b, out_idx(kidx))
        x = cast(b, val(idx), in_dtype, acc_dtype)
        u.store_value(b, _combine(b, op, u.load_value(b, o, od), x, acc_dtype), o, od)
    u.loop_nest(b, in_dims, acc_point, name="a")
    if op == "mean":
        u.for_range(b, u.numel(b, out.dims), lambda i: u.store_value(
            b, finish(u.load_value(b, u.gep(b, out.ptr, od, i), od)), u.gep(b, out.ptr, od, i), od), name="m")


def reduce_leaves(prog, n):
    return expression_leaves(prog, prog.g.operands(n))


def lower_reduce(ctx: KernelCtx) -> None:
    g, n = ctx.g, ctx.n
    (x,) = g.operands(n)
    attrs = g.attrs(n)
    xt = g.type(x)

    def val(idx):
        return ctx.value(x, idx, {})
    emit_reduction(ctx, g.op(n), tuple(attrs["axis"]), xt.dtype, ctx.dims(x), val, lambda: ctx.dims(x),
                   flat=flat_ok(ctx.prog, x, [x]))


# -- fused -----------------------------------------------------------------------------------


def fused_leaves(prog, n):
    return [o for o in prog.g.operands(n) if not prog.is_scalar_const(o)]


def lower_fused(ctx: KernelCtx) -> None:
    """One loop nest over the iteration space (the last body step's shape) evaluating every
    step per point; leading layout steps read their operand through a permuted / re-raveled
    index, extra ``outputs`` are stored at the point, the primary is stored or reduced, and
    an epilogue only relabels the primary's (C-order) bytes."""
    g, n, b, prog = ctx.g, ctx.n, ctx.b, ctx.prog
    attrs = g.attrs(n)
    body = attrs["body"]
    ops = g.operands(n)
    stypes = step_types(body, [g.type(o) for o in ops])
    it = stypes[-1]
    extra = tuple(attrs.get("outputs", ()))
    dims_of = _fused_param_dims(ctx, n, stypes)
    if prog.needs_iteration_dims(n):
        def iteration_dims():
            return dims_of("it")
        if attrs.get("epilogue"):
            pre = pre_epilogue_type(attrs, [g.type(o) for o in ops])

            def primary_view(ptr):
                dims = iteration_dims()
                if attrs["reduce"] is not None:
                    axes = tuple(attrs["axis"])
                    dims = [1 if a in axes else d for a, d in enumerate(dims) if attrs["keepdims"] or a not in axes]
                return u.TensorRef(ptr, pre.dtype, dims, u.contiguous_strides(b, dims))
            ctx.primary_view = primary_view
            ctx.bind(ctx.fn)
        it_dims = iteration_dims()
    else:
        iteration_dims = None
        it_dims = ctx.out.dims

    def load_layout(j, o, idx):
        op, sattrs, _ = body[j]
        if isinstance(idx, tuple):  # flat: a reshape to the iteration shape of a contiguous operand
            return ctx.load_leaf(o, idx)
        sidx = ctx.bidx(stypes[j], it, idx)
        if op == "dimshuffle":
            src = [ir.Constant(u.I64, 0)] * g.type(o).ndim
            for a, p in enumerate(dict(sattrs)["pattern"]):
                if p != "x":
                    src[p] = sidx[a]
            return ctx.load_leaf(o, src)
        linear = u.TensorRef(None, stypes[j].dtype, [], u.contiguous_strides(b, dims_of(j))).offset(b, sidx)
        if prog.layout[o] == "contig":
            return ctx.load_leaf(o, (FLAT, u.i64(linear)))
        return ctx.load_leaf(o, _unravel(b, u.i64(linear), ctx.dims(o)))

    def step_value(j, idx, memo):
        """Body step ``j`` at the point; its operands (earlier steps) are already in ``memo``."""
        op, sattrs, refs = body[j]
        sattrs = dict(sattrs)
        if op == "constant":
            c = sattrs["value"].value
            return u.const(c.dtype.name, c.item())
        if op in ("dimshuffle", "reshape"):
            o = ops[int(refs[0][1:])]
            if prog.is_scalar_const(o):
                return u.const(g.type(o).dtype, g.attrs(o)["value"].value.item())
            return load_layout(j, o, idx)
        args, dts = [], []
        for r in refs:
            k = int(r[1:])
            if r[0] == "$":
                o = ops[k]
                if prog.is_scalar_const(o):
                    args.append(u.const(g.type(o).dtype, g.attrs(o)["value"].value.item()))
                else:
                    args.append(ctx.load_leaf(o, ctx.bidx(o, it, idx)))
                dts.append(g.type(o).dtype)
            else:
                args.append(memo[k])
                dts.append(stypes[k].dtype)
        return emit_elemwise(b, op, get_op(op).normalize_attrs(sattrs), args, dts, stypes[j].dtype)

    # the steps the primary and the extra results need, in body order (refs point backwards,
    # so one forward sweep evaluates every step after its operands: no recursion on depth)
    needed = _needed_steps(body, [len(body) - 1, *extra])

    def store(ref, v, idx):
        if isinstance(idx, tuple):
            u.store_value(b, v, u.gep(b, ref.ptr, ref.dtype, idx[1]), ref.dtype)
        else:
            ref.store(b, v, idx)

    def val(idx):
        memo: dict = {}
        for j in needed:
            memo[j] = step_value(j, idx, memo)
        for k, j in enumerate(extra):  # extra results have the iteration shape: stored at the point
            store(ctx.outs[1 + k], memo[j], idx)
        return memo[len(body) - 1]

    if attrs["reduce"] is not None:
        emit_reduction(ctx, attrs["reduce"], tuple(attrs["axis"]), it.dtype, it_dims, val, iteration_dims,
                       flat=_fused_flat_ok(prog, g, body, ops, stypes, it))
        return
    if _fused_flat_ok(prog, g, body, ops, stypes, it):
        parallel_flat(ctx, lambda i: val((FLAT, i)), "f")
    else:
        parallel_nest(ctx, lambda idx: store(ctx.out, val(idx), idx), tiled=False)


def _needed_steps(body, roots) -> list:
    """Indices of the body steps ``roots`` depend on (themselves included), ascending."""
    need = set(roots)
    for j in range(len(body) - 1, -1, -1):
        if j in need:
            need.update(int(r[1:]) for r in body[j][2] if r[0] == "%")
    return sorted(need)


def _fused_param_dims(ctx, n, stypes):
    """``dims_of("it")`` / ``dims_of(j)``: the iteration dims / reshape step ``j``'s dims,
    static ints or loaded from the kernel's extra parameters (see Program.fused_dims_layout)."""
    prog = ctx.prog
    offsets, off = {}, prog.extra_off.get(n, 0)
    for key, shape in prog.fused_dims_layout(n):
        offsets[key] = (off, shape)
        off += len(shape)

    cache: dict = {}

    def dims_of(key):
        """Loaded once per function, in its entry block, so the loads dominate every use."""
        if (ctx.fn, key) not in cache:
            start, shape = offsets[key]
            with ctx.b.goto_block(ctx.fn.entry_basic_block):
                cache[ctx.fn, key] = [d if isinstance(d, int) else ctx.param(start + a) for a, d in enumerate(shape)]
        return cache[ctx.fn, key]
    return dims_of


def _fused_flat_ok(prog, g, body, ops, stypes, it) -> bool:
    """One flat loop is exact when every operand is read at the point's own linear index:
    contiguous, full rank without broadcast dims, or rank 0; a leading reshape qualifies
    when its operand is contiguous and the step has the iteration shape; a dimshuffle never."""
    def full(t):
        return t.ndim == it.ndim and not any(d == 1 and c != 1 for d, c in zip(t.shape, it.shape))
    for j, (op, _sattrs, refs) in enumerate(body):
        for r in refs:
            if r[0] != "$":
                continue
            o = ops[int(r[1:])]
            if prog.is_scalar_const(o):
                continue
            if op == "dimshuffle":
                return False
            if prog.layout[o] != "contig":
                return False
            if op == "reshape":
                if not full(stypes[j]):
                    return False
            elif g.type(o).ndim != 0 and not full(g.type(o)):
                return False
    return True


def _unravel(b, linear, dims) -> list:
    """C-order multi-index of ``linear`` in ``dims``."""
    idx, rest = [], linear
    for d in reversed(dims):
        d = u.i64(d)
        idx.append(b.srem(rest, d))
        rest = b.sdiv(rest, d)
    return list(reversed(idx))


# -- dot / matmul --------------------------------------------------------------------------------

TILE_K = 128
TILE_N = 256


def _as_matrix(ref: u.TensorRef, side: str) -> u.TensorRef:
    """View a rank-1 operand as (1, K) (left) or (K, 1) (right)."""
    if ref.ndim != 1:
        return ref
    if side == "a":
        return u.TensorRef(ref.ptr, ref.dtype, [1] + ref.dims, [0] + ref.strides)
    return u.TensorRef(ref.ptr, ref.dtype, ref.dims + [1], ref.strides + [0])


def lower_matmul(ctx: KernelCtx) -> None:
    g, n, b = ctx.g, ctx.n, ctx.b
    a_node, b_node = g.operands(n)
    od = g.type(n).dtype
    A = _as_matrix(ctx.refs[a_node], "a")
    B = _as_matrix(ctx.refs[b_node], "b")
    M, K = A.dims[-2], A.dims[-1]
    N = B.dims[-1]
    batch_nd = max(A.ndim, B.ndim) - 2
    out = ctx.out
    # the output viewed with the rank-1 axes restored (both size 1, so strides are moot)
    out_dims = out.dims[:batch_nd] + [M, N]
    C = u.TensorRef(out.ptr, od, out_dims, u.contiguous_strides(b, out_dims))
    ad, bd = A.dtype, B.dtype
    is_f = dt.is_float(od)
    zero = u.const(od, 0)

    def batch_idx(ref, bidx):
        off = batch_nd - (ref.ndim - 2)
        return ctx.runtime_bcast(ref.dims[:-2], [0 if ref.dims[a] == 1 else bidx[off + a] for a in range(ref.ndim - 2)])

    def scalar_tiles(bidx, Ab, Bb, i_lo, i_hi, j_lo, j_hi):
        """C[i_lo:i_hi, j_lo:j_hi] += A @ B, i-k-j order tiled over k and j (any dtype/layout)."""
        def tile_j(jt):
            j0 = b.add(u.i64(j_lo), b.mul(jt, ir.Constant(u.I64, TILE_N)))
            j1 = _min(b, b.add(j0, ir.Constant(u.I64, TILE_N)), u.i64(j_hi))

            def tile_k(kt):
                k0 = b.mul(kt, ir.Constant(u.I64, TILE_K))
                k1 = _min(b, b.add(k0, ir.Constant(u.I64, TILE_K)), u.i64(K))

                def row(i):
                    def kk(k):
                        aik = cast(b, A.load(b, Ab + [i, k]), ad, od)

                        def jj(j):
                            c_addr = C.addr(b, bidx + [i, j])
                            bkj = cast(b, B.load(b, Bb + [k, j]), bd, od)
                            c = u.load_value(b, c_addr, od)
                            r = _fast(b.fadd(c, _fast(b.fmul(aik, bkj)))) if is_f else b.add(c, b.mul(aik, bkj))
                            u.store_value(b, r, c_addr, od)
                        u.for_range(b, j1, jj, start=j0, name="j")
                    u.for_range(b, k1, kk, start=k0, name="k")
                u.for_range(b, i_hi, row, start=i_lo, name="i")
            u.for_range(b, _ceil_div(b, K, TILE_K), tile_k, name="kt")
        u.for_range(b, _ceil_div(b, b.sub(u.i64(j_hi), u.i64(j_lo)), TILE_N), tile_j, name="jt")

    # register-blocked float microkernel: MR rows x NV vectors of C live in registers over all of K
    use_micro = is_f and ad == od and bd == od and B.strides[-1] == 1 and B.dims[-1] != 1 and A.dims[-2] != 1
    W = 8 if od == "float32" else 4
    MR, NV = 6, 2
    NR = W * NV
    vt = ir.VectorType(u.value_type(od), W)

    def fma_rows(i0, k, Ab, bv, accs):
        """One k step of the MR x (NV*W) register block: broadcast A[i0+r, k] and FMA it with
        the NV vectors of B's row k into the accumulators."""
        undef = ir.Constant(vt, ir.Undefined)
        splat = ir.Constant(ir.VectorType(u.I32, W), [0] * W)
        out = []
        for r in range(MR):
            a = A.load(b, Ab + [b.add(i0, ir.Constant(u.I64, r)), k])
            av = b.shuffle_vector(b.insert_element(undef, a, ir.Constant(u.I32, 0)), undef, splat)
            for v in range(NV):
                out.append(u.call_intrinsic(b, "fma", av, bv[v], accs[r * NV + v]))
        return out

    def micro(bidx, Ab, Bb, M_main, N_main):
        def block_j(jb):  # j outer: the K x NR panel of B stays in cache across all row blocks
            j0 = b.mul(jb, ir.Constant(u.I64, NR))

            def block_i(ib):
                i0 = b.mul(ib, ir.Constant(u.I64, MR))
                init = [ir.Constant(vt, [0.0] * W) for _ in range(MR * NV)]

                def step(k, accs):
                    bv = [b.load(B.addr(b, Bb + [k, b.add(j0, ir.Constant(u.I64, v * W))]), typ=vt,
                                 align=dt.itemsize(od)) for v in range(NV)]
                    return fma_rows(i0, k, Ab, bv, accs)
                accs = u.reduction_loop(b, K, init, step, name="mk")
                for r in range(MR):
                    for v in range(NV):
                        ci = [b.add(i0, ir.Constant(u.I64, r)), b.add(j0, ir.Constant(u.I64, v * W))]
                        addr = C.addr(b, bidx + ci)
                        b.store(accs[r * NV + v], addr, align=dt.itemsize(od))
            u.for_range(b, b.sdiv(u.i64(M_main), ir.Constant(u.I64, MR)), block_i, name="ib")
        u.for_range(b, b.sdiv(u.i64(N_main), ir.Constant(u.I64, NR)), block_j, name="jb")

    # a strided B (e.g. W.T from autodiff) is packed, KC x NR at a time, into a stack panel first
    packed = is_f and ad == od and bd == od and not use_micro and B.dims[-1] != 1 and A.dims[-2] != 1
    KC = 256
    if packed:
        et = u.value_type(od)
        with b.goto_block(ctx.fn.entry_basic_block):
            panel = b.alloca(et, size=ir.Constant(u.I64, KC * NR), name="panel")
        use_micro = True

    def micro_packed(bidx, Ab, Bb, M_main, N_main):
        def block_j(jb):
            j0 = b.mul(jb, ir.Constant(u.I64, NR))

            def block_k(kb):
                k0 = b.mul(kb, ir.Constant(u.I64, KC))
                k1 = _min(b, b.add(k0, ir.Constant(u.I64, KC)), u.i64(K))
                kc = b.sub(k1, k0)

                def pack_j(jj):
                    def pack_k(k):
                        v = B.load(b, Bb + [k, b.add(j0, jj)])
                        slot = b.add(b.mul(b.sub(k, k0), ir.Constant(u.I64, NR)), jj)
                        b.store(v, b.gep(panel, [slot], source_etype=et))
                    u.for_range(b, k1, pack_k, start=k0, name="pk")
                u.for_range(b, NR, pack_j, name="pj")

                def block_i(ib):
                    i0 = b.mul(ib, ir.Constant(u.I64, MR))

                    def c_addr(r, v):
                        ci = [b.add(i0, ir.Constant(u.I64, r)), b.add(j0, ir.Constant(u.I64, v * W))]
                        return C.addr(b, bidx + ci)
                    init = [b.load(c_addr(r, v), typ=vt, align=dt.itemsize(od)) for r in range(MR) for v in range(NV)]

                    def step(kk, accs):
                        row = b.mul(kk, ir.Constant(u.I64, NR))
                        bv = [b.load(b.gep(panel, [b.add(row, ir.Constant(u.I64, v * W))], source_etype=et),
                                     typ=vt, align=dt.itemsize(od)) for v in range(NV)]
                        k = b.add(k0, kk)
                        return fma_rows(i0, k, Ab, bv, accs)
                    accs = u.reduction_loop(b, kc, init, step, name="mk")
                    for r in range(MR):
                        for v in range(NV):
                            b.store(accs[r * NV + v], c_addr(r, v), align=dt.itemsize(od))
                u.for_range(b, b.sdiv(u.i64(M_main), ir.Constant(u.I64, MR)), block_i, name="ib")
            u.for_range(b, _ceil_div(b, K, KC), block_k, name="kb")
        u.for_range(b, b.sdiv(u.i64(N_main), ir.Constant(u.I64, NR)), block_j, name="jb")

    def one_batch(bidx):
        Ab, Bb = batch_idx(A, bidx), batch_idx(B, bidx)
        u.loop_nest(b, [M, N], lambda ij: C.store(b, zero, bidx + ij), name="z")
        if not use_micro:
            scalar_tiles(bidx, Ab, Bb, 0, M, 0, N)
            return
        m_main = b.sub(u.i64(M), b.srem(u.i64(M), ir.Constant(u.I64, MR)))
        n_main = b.sub(u.i64(N), b.srem(u.i64(N), ir.Constant(u.I64, NR)))
        (micro_packed if packed else micro)(bidx, Ab, Bb, m_main, n_main)
        scalar_tiles(bidx, Ab, Bb, m_main, M, 0, N)
        scalar_tiles(bidx, Ab, Bb, 0, m_main, n_main, N)
    u.loop_nest(b, out.dims[:batch_nd], one_batch, name="bt")


def _min(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def _ceil_div(b, x, k: int):
    if isinstance(x, int):
        return -(-x // k)
    return b.sdiv(b.add(x, ir.Constant(u.I64, k - 1)), ir.Constant(u.I64, k))


# compiled.py reads K.lower_softmax
from .kernels_softmax import SOFTMAX_CHUNK, lower_softmax  # noqa: E402, F401
