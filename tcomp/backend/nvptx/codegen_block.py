"""Block-level kernels: reductions and softmax rows (tree reduction in block memory) and the
shared-memory tiled, register-blocked matmul.

Each is a *block program* (see ``target.py``): phases separated by barriers, so the CPU grid
emulator runs the very same per-thread code one phase at a time.  Reductions accumulate in
the op's result dtype after casting each element to it (the reference interpreter's
``astype`` then reduce); ``prod`` keeps "saw a zero" and "saw a non-finite" flags so that a
zero factor gives 0 (nan with an inf/nan), as the reference defines it, whatever the
order; arg-reductions carry (value, index) pairs and break ties and NaNs like NumPy (the
first index wins; NaN beats every number).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from tcomp.backend import mathlib
from tcomp.backend.cpu import irutil as u
from tcomp.backend.cpu.scalar import cast, emit_elemwise
from tcomp.ir import dtypes as dt

from .codegen import unravel
from .target import BLOCK

_I64 = u.I64
TILE = 64      # output tile edge of a matmul block
TK = 16        # K step of a matmul tile
REG = 4        # register block edge per thread (TILE / REG = 16 threads per edge)


def _c(v):
    return ir.Constant(_I64, v)


def _if(b, cond, fn) -> None:
    then = b.append_basic_block("if.then")
    done = b.append_basic_block("if.done")
    b.cbranch(cond, then, done)
    b.position_at_end(then)
    fn()
    b.branch(done)
    b.position_at_end(done)


def _mem(ty):
    return u.I8 if ty == u.I1 else ty


def _st(b, v, ptr):
    b.store(b.zext(v, u.I8) if v.type == u.I1 else v, ptr)


def _ld(b, ptr, ty):
    v = b.load(ptr, typ=_mem(ty))
    return b.icmp_unsigned("!=", v, ir.Constant(u.I8, 0)) if ty == u.I1 else v


def _strided_acc(b, start, stop, init, step):
    """``acc = init; for r in range(start, stop, BLOCK): acc = step(r, acc)`` via phis."""
    pre = b.block
    head, body, done = (b.append_basic_block(n) for n in ("acc.head", "acc.body", "acc.done"))
    b.branch(head)
    b.position_at_end(head)
    r = b.phi(_I64)
    r.add_incoming(start, pre)
    phis = []
    for v in init:
        p = b.phi(v.type)
        p.add_incoming(v, pre)
        phis.append(p)
    b.cbranch(b.icmp_signed("<", r, stop), body, done)
    b.position_at_end(body)
    new = step(r, list(phis))
    end = b.block
    r.add_incoming(b.add(r, _c(BLOCK)), end)
    for p, v in zip(phis, new):
        p.add_incoming(v, end)
    b.branch(head)
    b.position_at_end(done)
    return phis


class Monoid:
    """A reduction's accumulator: component types, identity, lift (element, flat index), combine, finish."""

    def __init__(self, b, op, in_dtype, out_dtype, count):
        self.b, self.op, self.ind, self.outd, self.count = b, op, in_dtype, out_dtype, count
        if op in ("argmax", "argmin"):
            self.types = [u.value_type(in_dtype), _I64]
        elif op == "prod" and dt.is_float(out_dtype):
            self.types = [u.value_type(out_dtype), u.I1, u.I1]
        else:
            self.types = [u.value_type(out_dtype)]

    def identity(self):
        op, d = self.op, self.outd
        if op in ("argmax", "argmin"):
            return [ir.Constant(self.types[0], 0 if not dt.is_float(self.ind) else 0.0), _c(-1)]
        if op in ("sum", "mean"):
            return [u.const(d, 0)]
        if op == "prod":
            one = [u.const(d, 1)]
            return one + [ir.Constant(u.I1, 0)] * 2 if dt.is_float(d) else one
        if d == "bool":
            return [ir.Constant(u.I1, 0 if op == "max" else 1)]
        if dt.is_float(d):
            return [u.const(d, float("-inf") if op == "max" else float("inf"))]
        info = np.iinfo(d)
        return [u.const(d, int(info.min if op == "max" else info.max))]

    def lift(self, x, r):
        b = self.b
        if self.op in ("argmax", "argmin"):
            return [x, r]
        x = cast(b, x, self.ind, self.outd)
        if self.op == "prod" and dt.is_float(self.outd):
            zero = b.fcmp_ordered("==", x, ir.Constant(x.type, 0.0))
            finite = b.fcmp_ordered("<", u.call_intrinsic(b, "fabs", x), ir.Constant(x.type, float("inf")))
            return [b.select(zero, ir.Constant(x.type, 1.0), x), zero, b.not_(finite)]
        return [x]

    def combine(self, a, c):
        b, op, d = self.b, self.op, self.outd
        if op in ("sum", "mean"):
            return [emit_elemwise(b, "add", {}, [a[0], c[0]], [d, d], d)]
        if op == "prod":
            p = emit_elemwise(b, "mul", {}, [a[0], c[0]], [d, d], d)
            return [p, b.or_(a[1], c[1]), b.or_(a[2], c[2])] if dt.is_float(d) else [p]
        if op in ("max", "min"):
            return [emit_elemwise(b, "maximum" if op == "max" else "minimum", {}, [a[0], c[0]], [d, d], d)]
        (v1, i1), (v2, i2) = a, c
        k = dt.kind(self.ind)
        if k == "f":
            n1, n2 = b.fcmp_unordered("uno", v1, v1), b.fcmp_unordered("uno", v2, v2)
            better = b.fcmp_ordered(">" if op == "argmax" else "<", v2, v1)
            better = b.or_(better, b.and_(n2, b.not_(n1)))
            equal = b.or_(b.fcmp_ordered("==", v1, v2), b.and_(n1, n2))
        else:
            cmp = b.icmp_signed if k == "i" else b.icmp_unsigned
            better = cmp(">" if op == "argmax" else "<", v2, v1)
            equal = b.icmp_unsigned("==", v1, v2)
        valid2 = b.icmp_signed(">=", i2, _c(0))
        take = b.or_(b.icmp_signed("<", i1, _c(0)),
                     b.and_(valid2, b.or_(better, b.and_(equal, b.icmp_signed("<", i2, i1)))))
        return [b.select(take, v2, v1), b.select(take, i2, i1)]

    def finish(self, a):
        b, d = self.b, self.outd
        if self.op in ("argmax", "argmin"):
            return a[1]
        if self.op == "mean":
            return b.fdiv(a[0], cast(b, u.i64(self.count), "int64", d))
        if self.op == "prod" and dt.is_float(d):
            nan, zero = u.const(d, float("nan")), u.const(d, 0.0)
            return b.select(a[1], b.select(a[2], nan, zero), a[0])
        return a[0]


def _tree(kb, shared, mono):
    """Phases halving ``BLOCK`` partial accumulators in block memory down to element 0."""
    phases = []
    s = BLOCK // 2
    while s >= 1:
        def phase(row, loops, s=s):
            b = kb.b

            def step():
                at = [kb.shared_at(sh, t, kb.tid) for sh, t in zip(shared, mono.types)]
                oth = [kb.shared_at(sh, t, b.add(kb.tid, _c(s))) for sh, t in zip(shared, mono.types)]
                new = mono.combine([_ld(b, p, t) for p, t in zip(at, mono.types)],
                                   [_ld(b, p, t) for p, t in zip(oth, mono.types)])
                for v, p in zip(new, at):
                    _st(b, v, p)
            _if(b, b.icmp_unsigned("<", kb.tid, _c(s)), step)
        phases.append(phase)
        s //= 2
    return phases


#: the ptrs-table slot of a call's scratch memory (partial results of split reductions)
SCRATCH_SLOT = -2
#: the params-table entry of a split reduction's part count (chosen by the host per call)
PARTS_PARAM = "@parts"
#: bytes per partial-result slot in scratch (every accumulator component fits in 8)
SLOT_BYTES = 8


def gen_reduction(ctx, op, axes, in_dtype, in_dims, val, out_value=None):
    """Reduce ``val(idx)`` over ``axes`` of ``in_dims``.

    ``ctx.reduce_mode`` picks one of the three kernels :func:`generate` makes of a reduction:
    ``full`` (one block per output element: enough when there are many rows), ``partial``
    (the reduced range of each row cut into ``@parts`` contiguous parts, one block each; a
    block's tree result goes to scratch) and ``combine`` (one block per row reduces its
    parts, in part order, and finishes).  The host launches ``full``, or ``partial`` then
    ``combine`` when a few long rows would leave the GPU idle (``host.split_parts``): no
    atomics, so a result depends only on the shapes, never on scheduling (deterministic)."""
    kb, b = ctx.kb, ctx.b
    mode = getattr(ctx, "reduce_mode", "full")
    out_value = ctx.k.writes[0] if out_value is None else out_value
    odt = ctx.value(out_value).dtype
    dims = [kb.dim(d) for d in in_dims]
    kept = [d for a, d in enumerate(dims) if a not in axes]
    red = [d for a, d in enumerate(dims) if a in axes]
    R = u.i64(u.numel(b, red)) if red else _c(1)
    rows = u.i64(u.numel(b, kept)) if kept else _c(1)
    mono = Monoid(b, op, in_dtype, odt, R)
    shared = [kb.shared(u.I8 if t == u.I1 else t, BLOCK) for t in mono.types]
    G = u.i64(kb.dim(PARTS_PARAM)) if mode != "full" else _c(1)
    nslots = b.mul(rows, G)

    def slot(c, vrow):
        """Scratch address of component ``c`` of partial ``vrow`` (row * G + part)."""
        off = b.mul(b.add(b.mul(_c(c), nslots), vrow), _c(SLOT_BYTES))
        return b.gep(kb.ptr(SCRATCH_SLOT), [off], source_etype=u.I8, inbounds=True)

    def accumulate(row, lo, hi):
        kidx = unravel(b, row, kept)

        def step(r, acc):
            ridx = unravel(b, r, red)
            it_k, it_r = iter(kidx), iter(ridx)
            idx = [next(it_r) if a in axes else next(it_k) for a in range(len(dims))]
            return mono.combine(acc, mono.lift(val(idx), r))
        acc = _strided_acc(b, b.add(lo, kb.tid), hi, mono.identity(), step)
        for v, sh, t in zip(acc, shared, mono.types):
            _st(b, v, kb.shared_at(sh, t, kb.tid))

    def first(row, loops):
        if mode == "full":
            accumulate(row, _c(0), R)
        elif mode == "partial":
            r, part = b.udiv(row, G), b.urem(row, G)
            chunk = b.udiv(b.add(R, b.sub(G, _c(1))), G)
            lo = b.mul(part, chunk)
            hi = b.add(lo, chunk)
            accumulate(r, lo, b.select(b.icmp_signed("<", hi, R), hi, R))
        else:
            base = b.mul(row, G)
            acc = _strided_acc(b, kb.tid, G, mono.identity(),
                               lambda j, a: mono.combine(a, [_ld(b, slot(c, b.add(base, j)), t)
                                                             for c, t in enumerate(mono.types)]))
            for v, sh, t in zip(acc, shared, mono.types):
                _st(b, v, kb.shared_at(sh, t, kb.tid))

    def write(row, loops):
        def store():
            acc = [_ld(b, kb.shared_at(sh, t, 0), t) for sh, t in zip(shared, mono.types)]
            if mode == "partial":
                for c, v in enumerate(acc):
                    _st(b, v, slot(c, row))
            else:
                u.store_value(b, mono.finish(acc), u.gep(b, kb.ptr(out_value), odt, row), odt)
        _if(b, b.icmp_unsigned("==", kb.tid, _c(0)), store)

    kb.blocks(nslots if mode == "partial" else rows, [first, *_tree(kb, shared, mono), write])
    ctx.split = (tuple(d for a, d in enumerate(in_dims) if a in axes), len(mono.types))
    return ("rows", tuple(d for a, d in enumerate(in_dims) if a not in axes))


def gen_reduce(ctx):
    k = ctx.k
    attrs = dict(k.attrs)
    src = ctx.ref(k.args[0].value)
    in_dtype = ctx.value(k.args[0].value).dtype
    return gen_reduction(ctx, k.op, tuple(attrs["axis"]), in_dtype, list(ctx.value(k.args[0].value).dims),
                         lambda idx: src.load(ctx.b, idx))


# -- softmax rows ------------------------------------------------------------------------------

def gen_softmax(ctx):
    """softmax / log_softmax / logsumexp over one axis: max, sum of exp(x - m), then the row
    (m replaced by 0 where it is not finite, as the reference does)."""
    k, kb, b = ctx.k, ctx.kb, ctx.b
    attrs = dict(k.attrs)
    axis = attrs["axis"]
    xv = ctx.value(k.args[0].value)
    src = ctx.ref(k.args[0].value)
    odt = ctx.value(k.writes[0]).dtype
    ty = u.value_type(odt)
    dims = [kb.dim(d) for d in xv.dims]
    L = u.i64(dims[axis])
    kept = dims[:axis] + dims[axis + 1:]
    rows = u.i64(u.numel(b, kept)) if kept else _c(1)
    out_ptr = kb.ptr(k.writes[0])
    ostrides = u.contiguous_strides(b, dims)
    mx = Monoid(b, "max", odt, odt, L)
    sm = Monoid(b, "sum", odt, odt, L)
    shm, shs = kb.shared(ty, BLOCK), kb.shared(ty, BLOCK)

    def idx_of(row, j):
        kidx = unravel(b, row, kept)
        return kidx[:axis] + [j] + kidx[axis:]

    def x_at(row, j):
        return cast(b, src.load(b, idx_of(row, j)), xv.dtype, odt)

    def shift():
        m = b.load(kb.shared_at(shm, ty, 0), typ=ty)
        finite = b.fcmp_ordered("<", u.call_intrinsic(b, "fabs", m), ir.Constant(ty, float("inf")))
        return b.select(finite, m, ir.Constant(ty, 0.0))

    def pmax(row, loops):
        acc = _strided_acc(b, kb.tid, L, mx.identity(), lambda j, a: mx.combine(a, [x_at(row, j)]))
        b.store(acc[0], kb.shared_at(shm, ty, kb.tid))

    def psum(row, loops):
        m = shift()
        acc = _strided_acc(b, kb.tid, L, sm.identity(),
                           lambda j, a: sm.combine(a, [mathlib.emit_unary(b, "exp", b.fsub(x_at(row, j), m))]))
        b.store(acc[0], kb.shared_at(shs, ty, kb.tid))

    def write(row, loops):
        m = shift()
        lse = mathlib.emit_unary(b, "log", b.load(kb.shared_at(shs, ty, 0), typ=ty))
        if k.op == "logsumexp":
            _if(b, b.icmp_unsigned("==", kb.tid, _c(0)),
                lambda: b.store(b.fadd(lse, m), u.gep(b, out_ptr, odt, row)))
            return

        def one(j, a):
            s = b.fsub(x_at(row, j), m)
            r = b.fsub(s, lse)
            if k.op == "softmax":
                r = mathlib.emit_unary(b, "exp", r)
            off = u.TensorRef(None, odt, [], ostrides).offset(b, idx_of(row, j))
            u.store_value(b, r, u.gep(b, out_ptr, odt, off), odt)
            return a
        _strided_acc(b, kb.tid, L, [], one)

    kb.blocks(rows, [pmax, *_tree(kb, [shm], mx), psum, *_tree(kb, [shs], sm), write])
    return ("rows", tuple(d for a, d in enumerate(xv.dims) if a != axis))


# -- matmul ---------------------------------------------------------------------------------------

def _matmul_layout(ctx):
    """(batch dims, M, N, K, A accessor, B accessor, C strides) with 1-d operands promoted
    and batch dims broadcast (stride 0 where an operand's batch dim is a static 1 or absent)."""
    k, kb, b = ctx.k, ctx.kb, ctx.b
    A, B = ctx.ref(k.args[0].value), ctx.ref(k.args[1].value)
    av, bv, ov = (ctx.value(x) for x in (k.args[0].value, k.args[1].value, k.writes[0]))
    a1, b1 = av.ndim == 1, bv.ndim == 1
    nb = ov.ndim - (0 if a1 else 1) - (0 if b1 else 1)
    odims = [kb.dim(d) for d in ov.dims]
    batch = ov.dims[:nb]
    ostr = u.contiguous_strides(b, odims)
    M = 1 if a1 else A.dims[-2]
    K = A.dims[-1]
    N = 1 if b1 else B.dims[-1]
    am, ak = (0, A.strides[0]) if a1 else (A.strides[-2], A.strides[-1])
    bk, bn = (B.strides[0], 0) if b1 else (B.strides[-2], B.strides[-1])
    cm = 0 if a1 else ostr[nb]
    cn = 0 if b1 else ostr[-1]

    def batch_strides(ref, val, core):
        bd = val.dims[:val.ndim - core]
        st = ref.strides[:val.ndim - core]
        out = [0] * nb
        for j in range(1, len(bd) + 1):
            out[nb - j] = 0 if (isinstance(bd[-j], int) and bd[-j] == 1) else st[-j]
        return out
    abs_ = batch_strides(A, av, 1 if a1 else 2)
    bbs = batch_strides(B, bv, 1 if b1 else 2)
    return (batch, M, N, K, (A, am, ak, abs_), (B, bk, bn, bbs), (ostr[:nb], cm, cn))


def _off(b, strides, idx):
    o = 0
    for s, i in zip(strides, idx):
        o = u.add(b, o, u.mul(b, i, s))
    return u.i64(o)


def gen_matmul(ctx):
    k, kb, b = ctx.k, ctx.kb, ctx.b
    odt = ctx.value(k.writes[0]).dtype
    ty = u.value_type(odt)
    batch, M, N, K, (A, am, ak, abs_), (B, bk, bn, bbs), (cbs, cm, cn) = _matmul_layout(ctx)
    adt, bdt = A.dtype, B.dtype
    bdims = [kb.dim(d) for d in batch]
    nbatch = u.i64(u.numel(b, bdims)) if bdims else _c(1)
    Mi, Ni, Ki = u.i64(M), u.i64(N), u.i64(K)
    ntm = b.udiv(b.add(Mi, _c(TILE - 1)), _c(TILE))
    ntn = b.udiv(b.add(Ni, _c(TILE - 1)), _c(TILE))
    tiles = b.mul(nbatch, b.mul(ntm, ntn))
    nk = b.udiv(b.add(Ki, _c(TK - 1)), _c(TK))
    sha, shb = kb.shared(ty, TILE * TK), kb.shared(ty, TK * TILE)
    acc = kb.private(ty, REG * REG)
    C = kb.ptr(k.writes[0])
    zero = u.const(odt, 0)

    def where(t):
        tn = b.urem(t, ntn)
        rest = b.udiv(t, ntn)
        tm = b.urem(rest, ntm)
        bi = unravel(b, b.udiv(rest, ntm), bdims)
        return bi, b.mul(tm, _c(TILE)), b.mul(tn, _c(TILE))

    def init(t, loops):
        for q in range(REG * REG):
            b.store(zero, acc(q))

    def load_tiles(t, loops):
        bi, m0, n0 = where(t)
        k0 = b.mul(loops[0], _c(TK))
        abase, bbase = _off(b, abs_, bi), _off(b, bbs, bi)
        for q in range(TILE * TK // BLOCK):
            e = b.add(kb.tid, _c(q * BLOCK))
            r, c = b.udiv(e, _c(TK)), b.urem(e, _c(TK))          # A tile: TILE rows x TK cols
            m, kk = b.add(m0, r), b.add(k0, c)
            ok = b.and_(b.icmp_signed("<", m, Mi), b.icmp_signed("<", kk, Ki))
            addr = u.gep(b, A.ptr, adt, b.add(abase, u.i64(u.add(b, u.mul(b, m, am), u.mul(b, kk, ak)))))
            v = _guarded_load(b, ok, addr, adt, odt)
            b.store(v, kb.shared_at(sha, ty, e))
            r2, c2 = b.udiv(e, _c(TILE)), b.urem(e, _c(TILE))    # B tile: TK rows x TILE cols
            kk2, n = b.add(k0, r2), b.add(n0, c2)
            ok2 = b.and_(b.icmp_signed("<", kk2, Ki), b.icmp_signed("<", n, Ni))
            addr2 = u.gep(b, B.ptr, bdt, b.add(bbase, u.i64(u.add(b, u.mul(b, kk2, bk), u.mul(b, n, bn)))))
            b.store(_guarded_load(b, ok2, addr2, bdt, odt), kb.shared_at(shb, ty, e))

    def compute(t, loops):
        ty_, tx = b.udiv(kb.tid, _c(TILE // REG)), b.urem(kb.tid, _c(TILE // REG))
        accs = [b.load(acc(q), typ=ty) for q in range(REG * REG)]
        for kk in range(TK):
            av = [b.load(kb.shared_at(sha, ty, b.add(b.mul(b.add(ty_, _c(16 * i)), _c(TK)), _c(kk))), typ=ty)
                  for i in range(REG)]
            bv = [b.load(kb.shared_at(shb, ty, b.add(_c(kk * TILE), b.add(tx, _c(16 * j)))), typ=ty)
                  for j in range(REG)]
            accs = [emit_elemwise(b, "add", {}, [accs[i * REG + j],
                                                 emit_elemwise(b, "mul", {}, [av[i], bv[j]], [odt, odt], odt)],
                                  [odt, odt], odt) for i in range(REG) for j in range(REG)]
        for q in range(REG * REG):
            b.store(accs[q], acc(q))

    def store(t, loops):
        bi, m0, n0 = where(t)
        cbase = _off(b, cbs, bi)
        ty_, tx = b.udiv(kb.tid, _c(TILE // REG)), b.urem(kb.tid, _c(TILE // REG))
        for i in range(REG):
            for j in range(REG):
                m = b.add(m0, b.add(ty_, _c(16 * i)))
                n = b.add(n0, b.add(tx, _c(16 * j)))
                ok = b.and_(b.icmp_signed("<", m, Mi), b.icmp_signed("<", n, Ni))

                def put(m=m, n=n, q=i * REG + j):
                    off = b.add(cbase, u.i64(u.add(b, u.mul(b, m, cm), u.mul(b, n, cn))))
                    u.store_value(b, b.load(acc(q), typ=ty), u.gep(b, C, odt, off), odt)
                _if(b, ok, put)

    kb.blocks(tiles, [init, ("loop", nk, [load_tiles, compute]), store])
    av, bv = ctx.value(k.args[0].value), ctx.value(k.args[1].value)
    return ("tiles", tuple(batch), 1 if av.ndim == 1 else av.dims[-2], 1 if bv.ndim == 1 else bv.dims[-1])


def _guarded_load(b, ok, addr, src_dtype, dst_dtype):
    """``ok ? cast(*addr) : 0`` without touching memory when not ``ok``."""
    pre = b.block
    then = b.append_basic_block("ld.then")
    done = b.append_basic_block("ld.done")
    b.cbranch(ok, then, done)
    b.position_at_end(then)
    v = cast(b, u.load_value(b, addr, src_dtype), src_dtype, dst_dtype)
    then_end = b.block
    b.branch(done)
    b.position_at_end(done)
    phi = b.phi(v.type)
    phi.add_incoming(v, then_end)
    phi.add_incoming(u.const(dst_dtype, 0), pre)
    return phi


__all__ = ["SCRATCH_SLOT", "PARTS_PARAM", "SLOT_BYTES", "gen_reduce", "gen_reduction", "gen_softmax", "gen_matmul",
           "TILE", "TK"]
