"""CPU kernels of ``eigh``, ``svd`` and ``qr`` (kind 'linalg', ``ir/ops/linalg_spectral.py``;
``kernels_linalg.lower_linalg`` runs the batch, these give the scratch size and the code
per matrix).

Eigen and singular values by Jacobi methods, chosen because they are short, need no libm
and are accurate to working precision (Demmel and Veselic 1992), at the price of speed:
O(n^3) per sweep and ~6-12 sweeps, so they suit small and medium matrices (n up to ~100;
tools/bench_linalg.py):

``jacobi_eigh``  one-sided Jacobi (below) on A + ||A||_F I, a positive semidefinite matrix
                 with A's eigenvectors; the values are the Rayleigh quotients v^T A v.
``jacobi_svd``   one-sided (Hestenes) Jacobi: the k = min(m, n) columns of A (of A^T when
                 m < n), stored as contiguous rows, are rotated pairwise until every pair is
                 orthogonal to eps; the singular values are their norms, V the accumulated
                 rotations (60 sweeps at most).
``householder_qr``  LAPACK's geqr2 + org2r: reflectors applied to the trailing columns row by
                 row (vectorized), Q formed by applying them backwards to [I; 0].

Then values are sorted (selection sort, moving whole rows) and each vector's sign fixed as the
reference does (its largest-magnitude entry positive; R's diagonal non-negative).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from . import irutil as u
from .kernels_linalg import _axpy_row, _c, _copy_in, _down, _fast, _function, _Mat, _row, _swap_rows, _var

I32, I64 = u.I32, u.I64
SWEEPS = {"eigh": 50, "svd": 60}


def _dot(b, x, y, length, ft, name):
    zero = ir.Constant(ft, 0.0)

    def step(j, acc):
        px = b.gep(x, [j], source_etype=ft, inbounds=True)
        py = b.gep(y, [j], source_etype=ft, inbounds=True)
        return [_fast(b.fadd(acc[0], _fast(b.fmul(b.load(px, typ=ft), b.load(py, typ=ft)))))]
    return u.reduction_loop(b, length, [zero], step, name=name)[0]


def _rotate_rows(b, x, y, c, s, length, ft, name):
    """(x, y) <- (c x - s y, s x + c y) over ``length`` contiguous entries."""
    def step(j):
        px = b.gep(x, [j], source_etype=ft, inbounds=True)
        py = b.gep(y, [j], source_etype=ft, inbounds=True)
        vx, vy = b.load(px, typ=ft), b.load(py, typ=ft)
        b.store(b.fsub(b.fmul(c, vx), b.fmul(s, vy)), px)
        b.store(b.fadd(b.fmul(s, vx), b.fmul(c, vy)), py)
    u.for_range(b, length, step, name=name)


def _rotation(b, tau, ft):
    """(c, s) of t = sign(tau) / (|tau| + sqrt(1 + tau^2)) (sign(0) = 1)."""
    one = ir.Constant(ft, 1.0)
    sign = b.select(b.fcmp_ordered(">=", tau, ir.Constant(ft, 0.0)), one, ir.Constant(ft, -1.0))
    root = u.call_intrinsic(b, "sqrt", b.fadd(one, b.fmul(tau, tau)))
    t = b.fdiv(sign, b.fadd(u.call_intrinsic(b, "fabs", tau), root))
    c = b.fdiv(one, u.call_intrinsic(b, "sqrt", b.fadd(one, b.fmul(t, t))))
    return c, b.fmul(t, c)


def _sort_and_sign(b, vals, rows, n, length, ft, descending, others=()):
    """Selection sort of ``vals`` (n entries) moving row i of ``rows`` (n x length) and of each
    ``(buffer, row length)`` in ``others`` with it; then each row of ``rows`` gets the sign
    making its first largest |entry| positive (the rows of ``others`` follow)."""
    V = _Mat(b, vals, ft, _c(0), _c(1))

    def select(i):
        def pick(t, acc):
            j = b.add(t, b.add(i, _c(1)))
            better = b.fcmp_ordered(">" if descending else "<", V.load(_c(0), j), acc[1])
            return [b.select(better, j, acc[0]), b.select(better, V.load(_c(0), j), acc[1])]
        best, _ = u.reduction_loop(b, b.sub(n, b.add(i, _c(1))), [i, V.load(_c(0), i)], pick, name="sel")
        with b.if_then(b.icmp_signed("!=", best, i)):
            x, y = V.load(_c(0), i), V.load(_c(0), best)
            V.store(y, _c(0), i)
            V.store(x, _c(0), best)
            _swap_rows(b, rows, i, best, length, ft)
            for buf, ln in others:
                _swap_rows(b, buf, i, best, ln, ft)
    u.for_range(b, n, select, name="sort")

    R = _Mat(b, rows, ft, length)

    def sign(i):
        def pick(j, acc):
            v = u.call_intrinsic(b, "fabs", R.load(i, j))
            better = b.fcmp_ordered(">", v, acc[1])
            return [b.select(better, j, acc[0]), b.select(better, v, acc[1])]
        at, _ = u.reduction_loop(b, length, [_c(0), ir.Constant(ft, -1.0)], pick, name="big")
        with b.if_then(b.and_(b.icmp_signed("<", at, length),
                              b.fcmp_ordered("<", R.load(i, b.select(b.icmp_signed("<", at, length), at, _c(0))),
                                             ir.Constant(ft, 0.0)))):
            for buf, ln in ((rows, length),) + tuple(others):
                M = _Mat(b, buf, ft, ln)
                u.for_range(b, ln, lambda k, M=M: M.store(b.fneg(M.load(i, k)), i, k), name="neg")
    u.for_range(b, n, sign, name="sign")


def _eigh_routine(module, ft, dname, eps):
    """void jacobi_eigh(W, V, w, A, n): W holds the symmetric matrix (destroyed), A gets a
    copy; w = its eigenvalues (ascending), V's rows = the eigenvectors (sign-fixed).

    One-sided Jacobi on B = A + sigma I, sigma = ||A||_F >= |lambda| (so B is positive
    semidefinite with A's eigenvectors): the columns of B V are made orthogonal, so V
    diagonalizes B^2 and hence B and A (B >= 0: equal squares are equal values).  Every
    access is to contiguous rows, where the two-sided method must also write columns
    (5-8x slower here).  The values are the Rayleigh quotients v^T A v (accurate to
    eps ||A||, like LAPACK's), not ||B v|| - sigma."""
    fn, b, args = _function(module, f"tcomp_la_jacobi_eigh_{dname}", ir.VoidType(), [u.PTR] * 4 + [I64])
    if b is None:
        return fn
    wp, vp, vals, ap, n = args
    W, A = _Mat(b, wp, ft, n), _Mat(b, ap, ft, n)
    u.for_range(b, n, lambda i: u.for_range(b, n, lambda j: A.store(W.load(i, j), i, j), name="cj"), name="ci")
    sigma = u.call_intrinsic(b, "sqrt", _dot(b, wp, wp, b.mul(n, n), ft, "fro"))
    u.for_range(b, n, lambda i: W.store(b.fadd(W.load(i, i), sigma), i, i), name="shift")
    sign_v, _ = _svd_routine(module, ft, dname, eps)
    b.call(sign_v, [wp, vp, vals, n, n])
    Vv = _Mat(b, vals, ft, _c(0), _c(1))

    def rayleigh(i):   # v_i^T A v_i, with W's row i as the scratch A v_i
        vi = _row(b, vp, i, n, ft)
        wi = _row(b, wp, i, n, ft)
        u.for_range(b, n, lambda r: b.store(_dot(b, _row(b, ap, r, n, ft), vi, n, ft, "av"),
                                            b.gep(wi, [r], source_etype=ft, inbounds=True)), name="mv")
        Vv.store(_dot(b, vi, wi, n, ft, "rq"), _c(0), i)
    u.for_range(b, n, rayleigh, name="rq")
    _sort_and_sign(b, vals, vp, n, n, ft, descending=False)
    b.ret_void()
    return fn


def _svd_routine(module, ft, dname, eps):
    """void jacobi_svd(Wt, Vt, s, k, L): Wt (k x L) holds k columns as rows, Vt (k x k) gets
    the rotations; s = the row norms (descending) and Wt's rows divided by them; the rows of
    Wt (``sign_on_w``) or of Vt get the sign convention."""
    fns = []
    for sign_on_w in (False, True):
        name = f"tcomp_la_jacobi_svd_{dname}_{'w' if sign_on_w else 'v'}"
        fn, b, args = _function(module, name, ir.VoidType(), [u.PTR, u.PTR, u.PTR, I64, I64])
        fns.append(fn)
        if b is None:
            continue
        wp, vp, sp, k, length = args
        Vt = _Mat(b, vp, ft, k)
        zero = ir.Constant(ft, 0.0)
        u.for_range(b, k, lambda i: u.for_range(b, k, lambda j: Vt.store(
            b.uitofp(b.icmp_signed("==", i, j), ft), i, j), name="vj"), name="vi")
        sweep = _var(b, _c(0))
        rotated = _var(b, _c(1))

        def cond():
            return b.and_(b.icmp_signed("<", b.load(sweep), _c(SWEEPS["svd"])),
                          b.icmp_signed("!=", b.load(rotated), _c(0)))

        def one_sweep():
            b.store(_c(0), rotated)

            def pair(p, q):
                xp, xq = _row(b, wp, p, length, ft), _row(b, wp, q, length, ft)
                alpha, beta = _dot(b, xp, xp, length, ft, "al"), _dot(b, xq, xq, length, ft, "be")
                gamma = _dot(b, xp, xq, length, ft, "ga")
                big = b.fmul(ir.Constant(ft, eps), u.call_intrinsic(b, "sqrt", b.fmul(alpha, beta)))
                with b.if_then(b.fcmp_ordered(">", u.call_intrinsic(b, "fabs", gamma), big)):
                    zeta = b.fdiv(b.fsub(beta, alpha), b.fmul(ir.Constant(ft, 2.0), gamma))
                    c, s = _rotation(b, zeta, ft)
                    _rotate_rows(b, xp, xq, c, s, length, ft, "wr")
                    _rotate_rows(b, _row(b, vp, p, k, ft), _row(b, vp, q, k, ft), c, s, k, ft, "vr")
                    b.store(_c(1), rotated)
            u.for_range(b, k, lambda p: u.for_range(b, k, lambda q: pair(p, q), start=b.add(p, _c(1)), name="q"),
                        name="p")
            b.store(b.add(b.load(sweep), _c(1)), sweep)

        u.while_loop(b, cond, one_sweep, "sweep")
        S = _Mat(b, sp, ft, _c(0), _c(1))

        def norm(i):
            r = _row(b, wp, i, length, ft)
            sig = u.call_intrinsic(b, "sqrt", _dot(b, r, r, length, ft, "nrm"))
            S.store(sig, _c(0), i)
            inv = b.select(b.fcmp_ordered(">", sig, zero), b.fdiv(ir.Constant(ft, 1.0), sig), zero)
            R = _Mat(b, wp, ft, length)
            u.for_range(b, length, lambda j: R.store(b.fmul(R.load(i, j), inv), i, j), name="unit")
        u.for_range(b, k, norm, name="norms")
        if sign_on_w:
            _sort_and_sign(b, sp, wp, k, length, ft, descending=True, others=((vp, k),))
        else:
            _sort_and_sign(b, sp, vp, k, k, ft, descending=True, others=((wp, length),))
        b.ret_void()
    return fns


def plan_spectral(ctx):
    """(scratch bytes, one(bidx, scratch, fail_on)) of an eigh/svd kernel: copy in,
    decompose, copy the asked part out (``kernels_linalg.lower_linalg`` runs the batch)."""
    g, n, b = ctx.g, ctx.n, ctx.b
    op, attrs = g.op(n), g.attrs(n)
    (a,) = g.operands(n)
    aref, out = ctx.refs[a], ctx.out
    dtype = g.type(a).dtype
    ft = u.value_type(dtype)
    eps = float(np.finfo(dtype).eps)
    rows, cols = u.i64(aref.dims[-2]), u.i64(aref.dims[-1])
    es = np.dtype(dtype).itemsize
    if op == "eigh":
        k, length = cols, cols
    else:
        k = b.select(b.icmp_signed("<", rows, cols), rows, cols)
        length = b.select(b.icmp_signed("<", rows, cols), cols, rows)
    w_elems, v_elems = b.mul(k, length), b.mul(k, k)
    a_elems = v_elems if op == "eigh" else _c(0)   # eigh: a copy of A after the values
    nbytes = b.mul(b.add(b.add(b.add(w_elems, v_elems), a_elems), b.add(k, _c(16))), _c(es))

    def one(bidx, scratch, fail_on):
        wbuf = scratch
        vbuf = b.gep(scratch, [w_elems], source_etype=ft, inbounds=True)
        sbuf = b.gep(vbuf, [v_elems], source_etype=ft, inbounds=True)
        pout = out.addr(b, bidx + [0] * (out.ndim - len(bidx)))
        if op == "eigh":
            W = _Mat(b, wbuf, ft, k)
            lower = attrs["lower"]

            def sym(i, j):   # the triangle read, mirrored
                lo = b.icmp_signed(">=", i, j) if lower else b.icmp_signed("<=", i, j)
                ii, jj = b.select(lo, i, j), b.select(lo, j, i)
                W.store(aref.load(b, bidx + [ii, jj]), i, j)
            u.for_range(b, k, lambda i: u.for_range(b, k, lambda j: sym(i, j), name="cj"), name="ci")
            abuf = b.gep(sbuf, [b.add(k, _c(8))], source_etype=ft, inbounds=True)
            b.call(_eigh_routine(b.module, ft, dtype, eps), [wbuf, vbuf, sbuf, abuf, k])
            if attrs["part"] == "values":
                _copy_rows(b, sbuf, pout, _c(1), k, ft)
            else:   # vectors[i, j] = V[i, j] = row j of the V^T buffer
                _copy_transposed(b, vbuf, pout, k, k, ft)
            return
        tall = b.icmp_signed(">=", rows, cols)
        # Wt rows = the columns of A (m >= n) or of A^T, i.e. A's rows (m < n)
        with b.if_else(tall) as (then, other):
            with then:
                _copy_in(b, aref, bidx, wbuf, k, length, ft, transpose=True)
            with other:
                _copy_in(b, aref, bidx, wbuf, k, length, ft)
        sign_v, sign_w = _svd_routine(b.module, ft, dtype, eps)
        part = attrs["part"]
        with b.if_else(tall) as (then, other):
            with then:   # A = U S V^T with U's columns = Wt's rows, V^T = the Vt buffer
                b.call(sign_v, [wbuf, vbuf, sbuf, k, length])
                _svd_out(b, part, pout, sbuf, wbuf, vbuf, k, length, ft, tall=True)
            with other:  # A^T = U' S V'^T: u = V' (the Vt buffer, transposed), vt = U'^T (Wt)
                b.call(sign_w, [wbuf, vbuf, sbuf, k, length])
                _svd_out(b, part, pout, sbuf, wbuf, vbuf, k, length, ft, tall=False)

    return nbytes, one


def _copy_rows(b, src, dst, nrows, ncols, ft):
    S, D = _Mat(b, src, ft, ncols), _Mat(b, dst, ft, ncols)
    u.for_range(b, nrows, lambda i: u.for_range(b, ncols, lambda j: D.store(S.load(i, j), i, j), name="oj"), name="oi")


def _copy_transposed(b, src, dst, src_rows, src_cols, ft):
    """dst (src_cols x src_rows) = src^T."""
    S, D = _Mat(b, src, ft, src_cols), _Mat(b, dst, ft, src_rows)
    u.for_range(b, src_rows, lambda i: u.for_range(b, src_cols, lambda j: D.store(S.load(i, j), j, i), name="tj"),
                name="ti")


def _svd_out(b, part, pout, sbuf, wbuf, vbuf, k, length, ft, tall):
    if part == "s":
        _copy_rows(b, sbuf, pout, _c(1), k, ft)
    elif (part == "u") == tall:   # u from Wt (tall), or vt from Wt (wide)
        if part == "u":
            _copy_transposed(b, wbuf, pout, k, length, ft)
        else:
            _copy_rows(b, wbuf, pout, k, length, ft)
    elif part == "vt":            # tall: vt = the Vt buffer
        _copy_rows(b, vbuf, pout, k, k, ft)
    else:                         # wide: u = the Vt buffer transposed
        _copy_transposed(b, vbuf, pout, k, k, ft)


# -- QR (Householder) ------------------------------------------------------------------------------

def _householder_apply(b, W, v_col, tau, j, rows, c0, ncols, wbuf_row, ft):
    """W[j:rows, c0:c0+ncols] -= tau v (v^T W[j:rows, c0:...]), v = (1, W[j+1:, v_col]) stored
    below W's diagonal (LAPACK's layout); ``wbuf_row``: ncols of scratch."""
    zero = ir.Constant(ft, 0.0)
    u.for_range(b, ncols, lambda c: b.store(zero, b.gep(wbuf_row, [c], source_etype=ft, inbounds=True)), name="hz")

    def vi(i):
        return b.select(b.icmp_signed("==", i, j), ir.Constant(ft, 1.0), v_col(i))

    def acc(i):   # w += v_i W[i, c0:]
        v = vi(i)
        _axpy_row(b, wbuf_row, b.gep(W(i), [c0], source_etype=ft, inbounds=True), b.fneg(v), ncols, "hacc", ft)
    u.for_range(b, rows, acc, start=j, name="hrow")

    def upd(i):   # W[i, c0:] -= tau v_i w
        _axpy_row(b, b.gep(W(i), [c0], source_etype=ft, inbounds=True), wbuf_row, b.fmul(tau, vi(i)), ncols,
                  "hupd", ft)
    u.for_range(b, rows, upd, start=j, name="hrow2")


def _qr_routine(module, ft, dname):
    """void householder_qr(W, Q, tau, w, m, n): W (m x n) -> R in its upper triangle (the
    reflectors below), Q (m x k) formed from them, R's diagonal made non-negative."""
    fn, b, args = _function(module, f"tcomp_la_qr_{dname}", ir.VoidType(), [u.PTR] * 4 + [I64, I64])
    if b is None:
        return fn
    wp, qp, taup, scratch, m, n = args
    k = b.select(b.icmp_signed("<", m, n), m, n)
    W, Q = _Mat(b, wp, ft, n), _Mat(b, qp, ft, k)
    taus = _Mat(b, taup, ft, _c(0), _c(1))
    zero, one = ir.Constant(ft, 0.0), ir.Constant(ft, 1.0)

    def reflect(j):
        below = b.add(j, _c(1))
        (ss,) = u.reduction_loop(b, b.sub(m, below), [zero], lambda t, acc: [_fast(b.fadd(acc[0], _fast(b.fmul(
            W.load(b.add(t, below), j), W.load(b.add(t, below), j)))))], name="xn")
        alpha = W.load(j, j)
        tau = _var(b, zero, ft)
        with b.if_then(b.fcmp_ordered(">", ss, zero)):
            norm = u.call_intrinsic(b, "sqrt", b.fadd(b.fmul(alpha, alpha), ss))
            beta = b.select(b.fcmp_ordered(">=", alpha, zero), b.fneg(norm), norm)
            b.store(b.fdiv(b.fsub(beta, alpha), beta), tau)
            scale = b.fdiv(one, b.fsub(alpha, beta))
            u.for_range(b, b.sub(m, below), lambda t: W.store(b.fmul(W.load(b.add(t, below), j), scale),
                                                              b.add(t, below), j), name="vs")
            W.store(beta, j, j)
        t = b.load(tau)
        taus.store(t, _c(0), j)
        # the rest of the columns: W[j:, j+1:] <- H_j W[j:, j+1:]
        _householder_apply(b, lambda i: _row(b, wp, i, n, ft), lambda i: W.load(i, j), t, j, m, below,
                           b.sub(n, below), scratch, ft)

    u.for_range(b, k, reflect, name="refl")
    # Q = H_0 ... H_{k-1} [I; 0], applied from the last reflector
    u.for_range(b, m, lambda i: u.for_range(b, k, lambda c: Q.store(b.uitofp(b.icmp_signed("==", i, c), ft), i, c),
                                            name="qc"), name="qi")

    def back(j):
        _householder_apply(b, lambda i: _row(b, qp, i, k, ft), lambda i: W.load(i, j), taus.load(_c(0), j), j, m,
                           j, b.sub(k, j), scratch, ft)
    _down(b, k, back, "qback")
    # R's diagonal non-negative: negate row i of R and column i of Q
    def sign(i):
        with b.if_then(b.fcmp_ordered("<", W.load(i, i), zero)):
            u.for_range(b, n, lambda c: W.store(b.fneg(W.load(i, c)), i, c), start=i, name="rn")
            u.for_range(b, m, lambda r: Q.store(b.fneg(Q.load(r, i)), r, i), name="qn")
    u.for_range(b, k, sign, name="rsign")
    b.ret_void()
    return fn


def plan_qr(ctx):
    """(scratch bytes, one(bidx, scratch, fail_on)) of a qr kernel."""
    g, n, b = ctx.g, ctx.n, ctx.b
    (a,) = g.operands(n)
    aref, out = ctx.refs[a], ctx.out
    dtype = g.type(a).dtype
    ft = u.value_type(dtype)
    m, c = u.i64(aref.dims[-2]), u.i64(aref.dims[-1])
    k = b.select(b.icmp_signed("<", m, c), m, c)
    es = np.dtype(dtype).itemsize
    w_elems, q_elems = b.mul(m, c), b.mul(m, k)
    nbytes = b.mul(b.add(b.add(w_elems, q_elems), b.add(b.add(k, c), _c(16))), _c(es))
    part = g.attrs(n)["part"]

    def one(bidx, scratch, fail_on):
        wbuf = scratch
        qbuf = b.gep(wbuf, [w_elems], source_etype=ft, inbounds=True)
        tbuf = b.gep(qbuf, [q_elems], source_etype=ft, inbounds=True)
        vbuf = b.gep(tbuf, [k], source_etype=ft, inbounds=True)
        pout = out.addr(b, bidx + [0, 0])
        _copy_in(b, aref, bidx, wbuf, m, c, ft)
        b.call(_qr_routine(b.module, ft, dtype), [wbuf, qbuf, tbuf, vbuf, m, c])
        if part == "q":
            _copy_rows(b, qbuf, pout, m, k, ft)
        else:   # R = the upper triangle of W's first k rows
            W, R = _Mat(b, wbuf, ft, c), _Mat(b, pout, ft, c)
            u.for_range(b, k, lambda i: u.for_range(b, c, lambda j: R.store(
                b.select(b.icmp_signed(">=", j, i), W.load(i, j), ir.Constant(ft, 0.0)), i, j), name="rj"), name="ri")

    return nbytes, one

__all__ = ["plan_qr", "plan_spectral"]
