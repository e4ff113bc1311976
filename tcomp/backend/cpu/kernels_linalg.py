"""CPU kernels of the dense linear algebra ops (kind 'linalg'): ``cholesky``, ``solve``,
``solve_triangular``, ``matrix_inverse``, ``det`` (here) and ``eigh``, ``svd``, ``qr``
(``kernels_spectral.py``), batched over leading axes.

:func:`lower_linalg` loops over the batch (split across the thread pool when it is large,
each chunk with its own scratch) and calls one of a few routines per contiguous row-major
matrix, emitted once per module and dtype as internal LLVM functions:

``lu``       right-looking LU with partial pivoting (LAPACK's getf2: the row of the largest
             |pivot| is swapped up, multipliers scaled by the pivot's reciprocal); a zero
             pivot sets ``info`` and skips its elimination step, as getf2 does.
``lusolve``  the permutation, then forward (unit lower) and backward (upper) substitution
             on a right-hand-side block of k columns, row by row: the inner loops run over
             the k contiguous columns (vectorized).
``chol``     Cholesky-Banachiewicz, row by row: each entry is one dot product of two
             contiguous row prefixes (``reassoc`` so LLVM vectorizes it); fails unless
             every pivot is in (0, inf), so any nan/inf of the lower triangle fails too.
``trsm``     triangular solve with the matrix read through its two strides (transposing
             is swapping them, so ``trans`` and strided views cost nothing), fails on a zero
             diagonal entry.

Unblocked loops, vectorized along the inner axis but without cache blocking: on one core
they match LAPACK (OpenBLAS) up to n = 256 and are 1.4-2.3x slower at n = 512 for LU,
faster for Cholesky and triangular solves (``python -m tcomp.tools.bench_linalg``, loaded
2-core machine, 2026-12-01).  Scratch memory (the LU copy, pivots) is ``malloc``ed per call
(per chunk), as the GEMM's pack buffers are (``kernels_gemm.py``), and freed before returning.

Errors: every matrix of the range is processed (a failed one computes nan/inf, never
traps); the kernel then returns its error code when one failed (or scratch could not be
allocated), and the host raises ``np.linalg.LinAlgError`` with the op's text
(:func:`native_error`; the AOT entry returns TCOMP_ERR_LINALG with the same message).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from tcomp.ir.ops.linalg_decomp import FAILURES

from . import irutil as u
from .kctx import KernelCtx
from .kernels_gemm_ir import _libc
from .scalar import emit_elemwise

I32, I64 = u.I32, u.I64
FAST = ("reassoc", "contract")


#: op -> (exception class, text) of a kernel that returned its error code; other kernels'
#: only failure is an index array out of bounds (IndexError)
NATIVE_ERRORS = {**{op: (np.linalg.LinAlgError, text) for op, text in FAILURES.items()},
                 "flatnonzero": (ValueError, "count differs from the number of nonzero elements")}


def native_error(kernel) -> Exception:
    """The exception of a kernel that returned its error code (``LinAlgError`` for the
    linear algebra kernels), raised by the host with the kernel's label."""
    cls, text = NATIVE_ERRORS.get(kernel.op, (IndexError, "index out of bounds"))
    return cls(f"{kernel.label}: {text} (checked in native code)")


def _c(v):
    return ir.Constant(I64, v)


def _fast(v):
    v.flags.extend(FAST)
    return v


class _Mat:
    """Element access of a row-major matrix: ``ptr[i * rs + j * cs]``."""

    def __init__(self, b, ptr, ft, rs, cs=None):
        self.b, self.ptr, self.ft, self.rs, self.cs = b, ptr, ft, rs, cs

    def addr(self, i, j):
        b = self.b
        off = b.add(b.mul(i, self.rs), j if self.cs is None else b.mul(j, self.cs))
        return b.gep(self.ptr, [off], source_etype=self.ft, inbounds=True)

    def load(self, i, j):
        return self.b.load(self.addr(i, j), typ=self.ft)

    def store(self, v, i, j):
        self.b.store(v, self.addr(i, j))


def _function(module, name, ret, args):
    """(function, builder, args) for a new internal routine, or (function, None, None) when
    the module already has it."""
    if name in module.globals:
        return module.globals[name], None, None
    fn = ir.Function(module, ir.FunctionType(ret, args), name=name)
    fn.linkage = "internal"
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    return fn, b, fn.args


def _var(b, init, typ=I64):
    with b.goto_block(b.function.entry_basic_block):
        slot = b.alloca(typ)
    b.store(init, slot)
    return slot


def _down(b, n, body, name):
    """for (i = n - 1; i >= 0; --i) body(i)."""
    u.for_range(b, n, lambda t: body(b.sub(b.sub(n, _c(1)), t)), name=name)


def _axpy_row(b, dst, src, scale, k, name, ft):
    """dst[0:k] -= scale * src[0:k] (pointers to rows)."""
    def step(j):
        pd = b.gep(dst, [j], source_etype=ft, inbounds=True)
        ps = b.gep(src, [j], source_etype=ft, inbounds=True)
        b.store(_fast(b.fsub(b.load(pd, typ=ft), _fast(b.fmul(scale, b.load(ps, typ=ft))))), pd)
    u.for_range(b, k, step, name=name)


def _row(b, ptr, i, ld, ft):
    return b.gep(ptr, [b.mul(i, ld)], source_etype=ft, inbounds=True)


def _swap_rows(b, base, i, j, length, ft):
    """Swap rows ``i`` and ``j`` (``length`` entries, row stride ``length``) of ``base``."""
    ri, rj = _row(b, base, i, length, ft), _row(b, base, j, length, ft)

    def step(k):
        x = b.gep(ri, [k], source_etype=ft, inbounds=True)
        y = b.gep(rj, [k], source_etype=ft, inbounds=True)
        vx, vy = b.load(x, typ=ft), b.load(y, typ=ft)
        b.store(vy, x)
        b.store(vx, y)
    u.for_range(b, length, step, name="rswap")


def _lu(module, ft, dname):
    """i32 lu(A, piv, n): A = P L U in place, piv[k] the row swapped with row k."""
    fn, b, args = _function(module, f"tcomp_la_lu_{dname}", I32, [u.PTR, u.PTR, I64])
    if b is None:
        return fn
    a_ptr, piv, n = args
    A = _Mat(b, a_ptr, ft, n)
    info = _var(b, ir.Constant(I32, 0), I32)
    fabs = lambda v: u.call_intrinsic(b, "fabs", v)  # noqa: E731

    def column(k):
        def pick(i, acc):
            p, best = acc
            v = fabs(A.load(i, k))
            better = b.fcmp_ordered(">", v, best)
            return [b.select(better, i, p), b.select(better, v, best)]
        first = b.add(k, _c(1))
        # the search runs over rows k+1..n-1 (offset i + k + 1), starting from row k
        p, _ = u.reduction_loop(b, b.sub(n, first), [k, fabs(A.load(k, k))],
                                lambda t, acc: pick(b.add(t, first), acc), name="piv")
        b.store(p, b.gep(piv, [k], source_etype=I64, inbounds=True))
        with b.if_then(b.icmp_signed("!=", p, k)):
            def swap(j):
                x, y = A.load(k, j), A.load(p, j)
                A.store(y, k, j)
                A.store(x, p, j)
            u.for_range(b, n, swap, name="swap")
        akk = A.load(k, k)
        zero = b.fcmp_ordered("==", akk, ir.Constant(ft, 0.0))
        with b.if_else(zero) as (singular, regular):
            with singular:
                b.store(ir.Constant(I32, 1), info)
            with regular:
                r = b.fdiv(ir.Constant(ft, 1.0), akk)
                rest = b.sub(n, first)
                krow = b.gep(_row(b, a_ptr, k, n, ft), [first], source_etype=ft, inbounds=True)

                def eliminate(t):
                    i = b.add(t, first)
                    lik = b.fmul(A.load(i, k), r)
                    A.store(lik, i, k)
                    irow = b.gep(_row(b, a_ptr, i, n, ft), [first], source_etype=ft, inbounds=True)
                    _axpy_row(b, irow, krow, lik, rest, "upd", ft)
                u.for_range(b, rest, eliminate, name="elim")

    u.for_range(b, n, column, name="col")
    b.ret(b.load(info))
    return fn


def _lusolve(module, ft, dname):
    """void lusolve(LU, piv, B, n, k): B (n x k) = A^-1 B from lu's factors."""
    fn, b, args = _function(module, f"tcomp_la_lusolve_{dname}", ir.VoidType(), [u.PTR, u.PTR, u.PTR, I64, I64])
    if b is None:
        return fn
    lu, piv, bp, n, k = args
    LU = _Mat(b, lu, ft, n)

    def permute(r):
        p = b.load(b.gep(piv, [r], source_etype=I64, inbounds=True), typ=I64)
        with b.if_then(b.icmp_signed("!=", p, r)):
            _swap_rows(b, bp, r, p, k, ft)

    u.for_range(b, n, permute, name="perm")

    def forward(i):
        ri = _row(b, bp, i, k, ft)
        u.for_range(b, i, lambda p: _axpy_row(b, ri, _row(b, bp, p, k, ft), LU.load(i, p), k, "fw", ft), name="fwp")

    u.for_range(b, n, forward, name="fwd")

    def backward(i):
        ri = _row(b, bp, i, k, ft)
        u.for_range(b, n, lambda p: _axpy_row(b, ri, _row(b, bp, p, k, ft), LU.load(i, p), k, "bw", ft),
                    start=b.add(i, _c(1)), name="bwp")
        d = LU.load(i, i)

        def scale(j):
            x = b.gep(ri, [j], source_etype=ft, inbounds=True)
            b.store(b.fdiv(b.load(x, typ=ft), d), x)
        u.for_range(b, k, scale, name="bdiv")

    _down(b, n, backward, "bwd")
    b.ret_void()
    return fn


def _chol(module, ft, dname):
    """i32 chol(A, n): the lower triangle of A replaced by its Cholesky factor, the upper zeroed."""
    fn, b, args = _function(module, f"tcomp_la_chol_{dname}", I32, [u.PTR, I64])
    if b is None:
        return fn
    a_ptr, n = args
    A = _Mat(b, a_ptr, ft, n)
    info = _var(b, ir.Constant(I32, 0), I32)
    zero = ir.Constant(ft, 0.0)

    def row(i):
        def entry(j):
            (dot,) = u.reduction_loop(b, j, [zero], lambda p, acc: [_fast(b.fadd(acc[0], _fast(
                b.fmul(A.load(i, p), A.load(j, p)))))], name="dot")
            s = b.fsub(A.load(i, j), dot)
            with b.if_else(b.icmp_signed("<", j, i)) as (off, diag):
                with off:
                    A.store(b.fdiv(s, A.load(j, j)), i, j)
                with diag:
                    ok = b.and_(b.fcmp_ordered(">", s, zero), b.fcmp_ordered("<", s, ir.Constant(ft, float("inf"))))
                    with b.if_then(b.not_(ok)):
                        b.store(ir.Constant(I32, 1), info)
                    A.store(u.call_intrinsic(b, "sqrt", s), i, j)
        u.for_range(b, b.add(i, _c(1)), entry, name="ent")
        u.for_range(b, n, lambda j: A.store(zero, i, j), start=b.add(i, _c(1)), name="zero")

    u.for_range(b, n, row, name="row")
    b.ret(b.load(info))
    return fn


def _trsm(module, ft, dname, lower, unit):
    """i32 trsm(A, rs, cs, B, n, k): B (n x k) = T^-1 B, T the lower/upper triangle of A
    (A[i, j] at i * rs + j * cs), 1 when a diagonal entry is 0 (unless ``unit``)."""
    name = f"tcomp_la_trsm_{dname}_{'l' if lower else 'u'}{'1' if unit else 'n'}"
    fn, b, args = _function(module, name, I32, [u.PTR, I64, I64, u.PTR, I64, I64])
    if b is None:
        return fn
    a_ptr, rs, cs, bp, n, k = args
    A = _Mat(b, a_ptr, ft, rs, cs)
    info = _var(b, ir.Constant(I32, 0), I32)

    def solve_row(i):
        ri = _row(b, bp, i, k, ft)

        def elim(p):
            _axpy_row(b, ri, _row(b, bp, p, k, ft), A.load(i, p), k, "ax", ft)
        if lower:
            u.for_range(b, i, elim, name="lp")
        else:
            u.for_range(b, n, elim, start=b.add(i, _c(1)), name="up")
        if not unit:
            d = A.load(i, i)
            with b.if_then(b.fcmp_ordered("==", d, ir.Constant(ft, 0.0))):
                b.store(ir.Constant(I32, 1), info)

            def scale(j):
                x = b.gep(ri, [j], source_etype=ft, inbounds=True)
                b.store(b.fdiv(b.load(x, typ=ft), d), x)
            u.for_range(b, k, scale, name="div")

    if lower:
        u.for_range(b, n, solve_row, name="fwd")
    else:
        _down(b, n, solve_row, "bwd")
    b.ret(b.load(info))
    return fn


def _det_of_lu(b, lu_buf, piv, size, ft, dtype, mode):
    """det (the product of U's diagonal, negated per row swap), or slogdet's sign (the same
    with each entry's sign) or log|det| (the sum of log|u_ii|, tcomp's own log)."""
    L = _Mat(b, lu_buf, ft, size)
    zero, one = ir.Constant(ft, 0.0), ir.Constant(ft, 1.0)

    def step(i, acc):
        p = b.load(b.gep(piv, [i], source_etype=I64, inbounds=True), typ=I64)
        d = L.load(i, i)
        if mode == "logabs":
            return [b.fadd(acc[0], emit_elemwise(b, "log", {}, [u.call_intrinsic(b, "fabs", d)], [dtype], dtype))]
        if mode == "sign":
            d = b.select(b.fcmp_ordered(">", d, zero), one,
                         b.select(b.fcmp_ordered("<", d, zero), ir.Constant(ft, -1.0), d))
        v = b.fmul(acc[0], d)
        return [b.select(b.icmp_signed("!=", p, i), b.fneg(v), v)]
    (out,) = u.reduction_loop(b, size, [zero if mode == "logabs" else one], step, name="det")
    return out


# -- the kernels ----------------------------------------------------------------------------------

def _copy_in(b, ref, bidx, dst, rows, cols, ft, transpose=False, vector=False):
    """dst (rows x cols, contiguous) = the matrix ``ref[bidx]`` (or its transpose; a vector
    ``ref[bidx]`` as one column)."""
    D = _Mat(b, dst, ft, cols)

    def elem(i, j):
        idx = bidx + ([i] if vector else [j, i] if transpose else [i, j])
        D.store(ref.load(b, idx), i, j)
    u.for_range(b, rows, lambda i: u.for_range(b, cols, lambda j: elem(i, j), name="cj"), name="ci")


def _unravel(b, flat, dims) -> list:
    """The index (C order) of position ``flat`` in ``dims``."""
    idx = []
    for d in reversed(dims):
        d = u.i64(d)
        idx.append(b.srem(flat, d))
        flat = b.sdiv(flat, d)
    return idx[::-1]


def lower_linalg(ctx: KernelCtx) -> None:
    """One loop over the batch (the leading axes) calling the op's routine per matrix; a
    large batch is split across the thread pool (``parallel.py``), each chunk with its own
    scratch, so every matrix is computed by the same instructions whatever the thread count.
    A matrix that fails (singular, not positive definite) or scratch that cannot be
    allocated makes the kernel return its error code after the whole range ran."""
    from . import parallel as P

    g, n, b = ctx.g, ctx.n, ctx.b
    op = g.op(n)
    a = g.operands(n)[0]
    if op in ("eigh", "svd", "qr"):
        from .kernels_spectral import plan_qr, plan_spectral

        plan = plan_qr if op == "qr" else plan_spectral
    else:
        plan = _plan_decomposition

    def rows(lo, hi):
        """Matrices [lo, hi) of the batch; everything read through ctx (this may be a worker)."""
        b = ctx.b
        status = _var(b, ir.Constant(I32, 0), I32)
        nbytes, one = plan(ctx)

        def fail_on(rc):
            b.store(b.or_(b.load(status), rc), status)

        batch = ctx.refs[a].dims[:-2]
        if nbytes is None:
            u.for_range(b, hi, lambda f: one(_unravel(b, f, batch), None, fail_on), start=lo, name="batch")
        else:
            malloc, free = _libc(b.module)
            scratch = b.call(malloc, [nbytes])
            ok = b.icmp_unsigned("!=", b.ptrtoint(scratch, I64), _c(0))
            with b.if_else(ok) as (run, fail):
                with run:
                    u.for_range(b, hi, lambda f: one(_unravel(b, f, batch), scratch, fail_on), start=lo, name="batch")
                with fail:
                    b.store(ir.Constant(I32, 1), status)
            b.call(free, [scratch])
        ctx.fail_if(b.icmp_signed("!=", b.load(status), ir.Constant(I32, 0)))

    dims = ctx.refs[a].dims
    nbatch = u.numel(b, dims[:-2])
    if isinstance(nbatch, int) and nbatch < 2:
        rows(_c(0), _c(nbatch))
        return
    big = u.i64(dims[-1]) if op != "svd" and op != "qr" else b.add(u.i64(dims[-1]), u.i64(dims[-2]))
    work = b.mul(u.i64(nbatch), b.mul(b.mul(big, big), big))   # ~ flops: a chunk must repay its scratch
    P.parallel_for(ctx, nbatch, rows, work=work, pieces=1)


def _plan_decomposition(ctx):
    """(scratch bytes or None, one(bidx, scratch, fail_on)) of the LU/Cholesky/triangular ops."""
    g, n, b = ctx.g, ctx.n, ctx.b
    op = g.op(n)
    operands = g.operands(n)
    a = operands[0]
    aref = ctx.refs[a]
    dtype = g.type(a).dtype
    ft, dname = u.value_type(dtype), dtype
    nd = g.type(a).ndim
    size = u.i64(aref.dims[-1])
    out = ctx.out
    nn = b.mul(size, size)
    es = np.dtype(dtype).itemsize
    nbytes = None
    if op in ("solve", "matrix_inverse", "det"):
        # the LU copy, then the pivots (i64, at an 8-byte aligned offset)
        nbytes = b.add(b.mul(b.add(nn, _c(1)), _c(es)), b.add(b.mul(size, _c(8)), _c(16)))

    def one(bidx, scratch, fail_on):
        if op == "det":
            pout = out.addr(b, bidx)
        else:
            pout = out.addr(b, bidx + [0] * (out.ndim - len(bidx)))
        if op == "cholesky":
            lower = g.attrs(n)["lower"]
            _copy_in(b, aref, bidx, pout, size, size, ft, transpose=not lower)
            fail_on(b.call(_chol(b.module, ft, dname), [pout, size]))
            if not lower:   # U = L^T, in place
                M = _Mat(b, pout, ft, size)

                def swap(i, j):
                    x, y = M.load(i, j), M.load(j, i)
                    M.store(y, i, j)
                    M.store(x, j, i)
                u.for_range(b, size, lambda i: u.for_range(b, i, lambda j: swap(i, j), name="tj"), name="ti")
            return
        if op == "solve_triangular":
            at = g.attrs(n)
            bop = operands[1]
            vector = g.type(bop).ndim == nd - 1
            k = _c(1) if vector else u.i64(ctx.refs[bop].dims[-1])
            _copy_in(b, ctx.refs[bop], bidx, pout, size, k, ft, vector=vector)
            rs, cs = u.i64(aref.strides[-2]), u.i64(aref.strides[-1])
            if at["trans"]:
                rs, cs = cs, rs
            lower = at["lower"] != at["trans"]
            ap = aref.addr(b, bidx + [0, 0])
            fail_on(b.call(_trsm(b.module, ft, dname, lower, at["unit_diagonal"]), [ap, rs, cs, pout, size, k]))
            return
        lu_buf = scratch
        piv = b.gep(scratch, [b.and_(b.add(b.mul(nn, _c(es)), _c(15)), _c(~7))], source_etype=u.I8, inbounds=True)
        _copy_in(b, aref, bidx, lu_buf, size, size, ft)
        info = b.call(_lu(b.module, ft, dname), [lu_buf, piv, size])
        if op == "det":
            b.store(_det_of_lu(b, lu_buf, piv, size, ft, dtype, g.attrs(n)["mode"]), pout)
            return
        fail_on(info)
        if op == "solve":
            bop = operands[1]
            vector = g.type(bop).ndim == nd - 1
            k = _c(1) if vector else u.i64(ctx.refs[bop].dims[-1])
            _copy_in(b, ctx.refs[bop], bidx, pout, size, k, ft, vector=vector)
        else:  # matrix_inverse: solve A X = I
            k = size
            M = _Mat(b, pout, ft, size)
            u.for_range(b, size, lambda i: u.for_range(b, size, lambda j: M.store(
                b.uitofp(b.icmp_signed("==", i, j), ft), i, j), name="ej"), name="ei")
        b.call(_lusolve(b.module, ft, dname), [lu_buf, piv, pout, size, k])

    return nbytes, one


__all__ = ["lower_linalg", "native_error"]
