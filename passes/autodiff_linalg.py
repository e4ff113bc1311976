"""VJP rules for the dense linear algebra ops of ``ir/ops/linalg_decomp.py``.

The standard reverse-mode formulas (Giles 2008, "Collected matrix derivative results"),
written with tcomp's own ops so that they batch and differentiate again:

* ``matrix_inverse``: Y = A^-1, dA = -Y^T G Y^T.
* ``det``: dA = g det(A) A^-T (a singular A has no inverse: the gradient raises there, as
  Theano's does); log|det|: dA = g A^-T; its sign: zero.
* ``solve``: x = A^-1 b, db = A^-T g (one more solve), dA = -db x^T.
* ``solve_triangular``: the same with the transposed triangular solve, and dA kept to the
  triangle the op reads (strictly, with ``unit_diagonal``): the other entries do not change
  the result, so their gradient is 0 (finite differences agree).
* ``cholesky``: Murray 2016 ("Differentiation of the Cholesky decomposition", eq. 10, as in
  PyTensor): with Phi(X) the lower triangle of X with its diagonal halved,
  S = L^-T Phi(L^T Lbar) L^-1 and dA = tril(S + S^T) - diag(S): lower triangular, because
  the op reads only the lower triangle (``lower=False``: the transposed problem).
"""
from __future__ import annotations

from .autodiff import const, label, match_type, op, register_vjp


def _t(g, v):
    n = g.type(v).ndim
    return op(g, "dimshuffle", v, pattern=tuple(range(n - 2)) + (n - 1, n - 2))


def _outer(g, u, v):
    """u[..., :, None] * v[..., None, :] (batched outer product of two vectors)."""
    k = g.type(u).ndim - 1
    lead = tuple(range(k))
    col = op(g, "dimshuffle", u, pattern=lead + (k, "x"))
    return op(g, "mul", col, op(g, "dimshuffle", v, pattern=lead + ("x", k)))


def _rows_cols(g, like):
    """int64 (n, 1) row and (1, n) column indices of ``like``'s last two (square) axes."""
    n = op(g, "shape", like, axis=g.type(like).ndim - 1)
    r = op(g, "arange", const(g, 0, "int64"), n, const(g, 1, "int64"), dtype="int64")
    return op(g, "dimshuffle", r, pattern=(0, "x")), op(g, "dimshuffle", r, pattern=("x", 0))


def _triangle(g, v, like, lower, strict):
    """``v`` with the entries outside the (strictly) lower/upper triangle set to 0."""
    i, j = _rows_cols(g, like)
    cmp = ("gt" if strict else "ge") if lower else ("lt" if strict else "le")
    keep = op(g, cmp, i, j)
    return op(g, "where", keep, v, const(g, 0, g.type(v).dtype))


def _finish(g, v, ref):
    return match_type(g, v, ref)


@register_vjp("matrix_inverse")
def _matrix_inverse(ctx):
    g = ctx.graph
    (a,) = ctx.operands
    yt = _t(g, ctx.node)
    return [_finish(g, op(g, "neg", op(g, "matmul", yt, op(g, "matmul", ctx.cotangent, yt))), a)]


@register_vjp("det")
def _det(ctx):
    """det: g det A^-T; log|det|: g A^-T; the sign is piecewise constant (zero gradient)."""
    g = ctx.graph
    (a,) = ctx.operands
    mode = ctx.attrs["mode"]
    if mode == "sign":
        return [None]
    k = g.type(ctx.node).ndim
    weight = op(g, "mul", ctx.cotangent, ctx.node) if mode == "det" else ctx.cotangent
    scale = op(g, "dimshuffle", weight, pattern=tuple(range(k)) + ("x", "x"))
    return [_finish(g, op(g, "mul", scale, _t(g, op(g, "matrix_inverse", a))), a)]


def _solve_grads(ctx, gb, x, transposed):
    """(dA, db) from db = the cotangent's back-solve: dA = -db x^T (-x db^T when the op
    solved with A^T)."""
    g = ctx.graph
    a, b = ctx.operands
    vec = g.type(b).ndim == g.type(a).ndim - 1
    if vec:
        prod = _outer(g, x, gb) if transposed else _outer(g, gb, x)
    else:
        prod = op(g, "matmul", x, _t(g, gb)) if transposed else op(g, "matmul", gb, _t(g, x))
    return op(g, "neg", prod)


@register_vjp("solve")
def _solve(ctx):
    g = ctx.graph
    a, b = ctx.operands
    gb = op(g, "solve", _t(g, a), ctx.cotangent)
    ga = _finish(g, _solve_grads(ctx, gb, ctx.node, False), a) if ctx.wants[0] else None
    return [ga, _finish(g, gb, b)]


@register_vjp("solve_triangular")
def _solve_triangular(ctx):
    g = ctx.graph
    a, b = ctx.operands
    at = ctx.attrs
    gb = op(g, "solve_triangular", a, ctx.cotangent, lower=at["lower"], trans=not at["trans"],
            unit_diagonal=at["unit_diagonal"])
    ga = None
    if ctx.wants[0]:
        full = _solve_grads(ctx, gb, ctx.node, at["trans"])
        ga = _finish(g, _triangle(g, full, a, at["lower"], at["unit_diagonal"]), a)
    return [ga, _finish(g, gb, b)]


@register_vjp("cholesky")
def _cholesky(ctx):
    g = ctx.graph
    (a,) = ctx.operands
    low, lbar = ctx.node, ctx.cotangent
    if not ctx.attrs["lower"]:   # U = L^T: the lower problem of A^T (the op read A's upper triangle)
        low, lbar = _t(g, low), _t(g, lbar)
    d = g.type(low).dtype
    i, j = _rows_cols(g, low)
    zero, half = const(g, 0, d), const(g, 0.5, d)

    def phi(x):  # lower triangle, diagonal halved
        return op(g, "where", op(g, "gt", i, j), x, op(g, "where", op(g, "eq", i, j), op(g, "mul", x, half), zero))

    def solve_lt(y):  # L^-T y
        return op(g, "solve_triangular", low, y, lower=True, trans=True, unit_diagonal=False)

    p = phi(op(g, "matmul", _t(g, low), lbar))
    s = solve_lt(_t(g, solve_lt(_t(g, p))))                     # L^-T P L^-1
    grad = op(g, "where", op(g, "gt", i, j), op(g, "add", s, _t(g, s)), op(g, "where", op(g, "eq", i, j), s, zero))
    if not ctx.attrs["lower"]:
        grad = _t(g, grad)
    return [_finish(g, grad, a)]


# -- eigh and svd (ir/ops/linalg_spectral.py) -------------------------------------------------------

def _row_of(g, v):
    """v[..., None, :] (a vector broadcast along rows: scales a matrix's columns)."""
    k = g.type(v).ndim - 1
    return op(g, "dimshuffle", v, pattern=tuple(range(k)) + ("x", k))


def _col_of(g, v):
    """v[..., :, None] (scales a matrix's rows)."""
    k = g.type(v).ndim - 1
    return op(g, "dimshuffle", v, pattern=tuple(range(k)) + (k, "x"))


def _off_diagonal_inverse(g, v):
    """F[..., i, j] = 1 / (v_j - v_i) off the diagonal, 0 on it (repeated values: inf, as in
    every framework: the vectors are not differentiable there)."""
    i, j = _rows_cols(g, v)
    d = g.type(v).dtype
    diag = op(g, "eq", i, j)
    # the diagonal divides by 1, not 0: where's unselected branch still gets a (zero)
    # cotangent, and 0 * (-1/0**2) would be nan in the second derivative
    diff = op(g, "where", diag, const(g, 1, d), op(g, "sub", _row_of(g, v), _col_of(g, v)))
    return op(g, "where", diag, const(g, 0, d), op(g, "truediv", const(g, 1, d), diff))


def _triangle_of_symmetric(g, grad, lower):
    """The gradient w.r.t. the triangle an op reads of the symmetric matrix it mirrors from it:
    G_ij + G_ji off the diagonal, G_ii on it, 0 in the other triangle."""
    i, j = _rows_cols(g, grad)
    zero = const(g, 0, g.type(grad).dtype)
    inside = op(g, "gt" if lower else "lt", i, j)
    return op(g, "where", inside, op(g, "add", grad, _t(g, grad)), op(g, "where", op(g, "eq", i, j), grad, zero))


@register_vjp("eigh")
def _eigh(ctx):
    """A = V diag(w) V^T: dA = V (diag(gw) + F o (V^T gV)) V^T, F_ij = 1/(w_j - w_i)."""
    g = ctx.graph
    (a,) = ctx.operands
    lower = ctx.attrs["lower"]
    vecs = op(g, "eigh", a, part="vectors", lower=lower)
    if ctx.attrs["part"] == "values":
        inner = op(g, "mul", _row_of(g, ctx.cotangent), vecs)      # V diag(gw)
        grad = op(g, "matmul", inner, _t(g, vecs))
    else:
        w = op(g, "eigh", a, part="values", lower=lower)
        f = _off_diagonal_inverse(g, w)
        inner = op(g, "mul", f, op(g, "matmul", _t(g, vecs), ctx.cotangent))
        grad = op(g, "matmul", vecs, op(g, "matmul", inner, _t(g, vecs)))
    return [_finish(g, _triangle_of_symmetric(g, grad, lower), a)]


@register_vjp("svd")
def _svd(ctx):
    """The reduced SVD's VJP (Townsend 2016, "Differentiating the singular value
    decomposition"), one part at a time (the parts are separate nodes; contributions add):
    s: U diag(gs) V^T; u: U (F o (U^T gU - gU^T U)) S V^T + (gU - U U^T gU) S^-1 V^T;
    vt (gV = gvt^T): U S (F o (V^T gV - gV^T V)) V^T + U S^-1 (gvt - gvt V V^T),
    F_ij = 1/(s_j^2 - s_i^2); zero or repeated singular values give inf/nan (as elsewhere)."""
    g = ctx.graph
    (a,) = ctx.operands
    ct, part = ctx.cotangent, ctx.attrs["part"]
    uu, vt = op(g, "svd", a, part="u"), op(g, "svd", a, part="vt")
    if part == "s":
        return [_finish(g, op(g, "matmul", op(g, "mul", uu, _row_of(g, ct)), vt), a)]
    s = op(g, "svd", a, part="s")
    d = g.type(s).dtype
    f = _off_diagonal_inverse(g, op(g, "mul", s, s))
    inv_s = op(g, "truediv", const(g, 1, d), s)
    if part == "u":
        utg = op(g, "matmul", _t(g, uu), ct)
        core = op(g, "mul", op(g, "mul", f, op(g, "sub", utg, _t(g, utg))), _row_of(g, s))
        rest = op(g, "mul", op(g, "sub", ct, op(g, "matmul", uu, utg)), _row_of(g, inv_s))
        grad = op(g, "add", op(g, "matmul", op(g, "matmul", uu, core), vt), op(g, "matmul", rest, vt))
    else:
        vg = op(g, "matmul", vt, _t(g, ct))                          # V^T gV = vt gvt^T
        core = op(g, "mul", _col_of(g, s), op(g, "mul", f, op(g, "sub", vg, _t(g, vg))))
        rest = op(g, "mul", _col_of(g, inv_s), op(g, "sub", ct, op(g, "matmul", _t(g, vg), vt)))
        grad = op(g, "matmul", uu, op(g, "add", op(g, "matmul", core, vt), rest))
    return [_finish(g, grad, a)]


@register_vjp("qr")
def _qr(ctx):
    """A = QR (m >= n, R square and nonsingular; Seeger et al. 2017, "Auto-differentiating
    linear algebra"): M = R gR^T - gQ^T Q, dA = (gQ + Q copyltu(M)) R^-T, copyltu(M) the
    symmetric matrix with M's lower triangle; one part at a time (the other's cotangent is 0).
    A wide matrix (m < n) has no square R: refused when its shape says so, else the
    triangular solve's square check fails when the gradient runs."""
    g = ctx.graph
    (a,) = ctx.operands
    m, n = g.type(a).shape[-2:]
    if isinstance(m, int) and isinstance(n, int) and m < n:
        raise TypeError(f"autodiff: the gradient of qr needs rows >= columns (a square R), got {g.type(a)} "
                        f"({label(g, a)})")
    q, r = op(g, "qr", a, part="q"), op(g, "qr", a, part="r")
    ct = ctx.cotangent
    if ctx.attrs["part"] == "q":
        mm = op(g, "neg", op(g, "matmul", _t(g, ct), q))
    else:
        mm = op(g, "matmul", r, _t(g, ct))
    i, j = _rows_cols(g, mm)
    sym = op(g, "where", op(g, "ge", i, j), mm, _t(g, mm))
    x = op(g, "matmul", q, sym)
    if ctx.attrs["part"] == "q":
        x = op(g, "add", ct, x)
    grad = _t(g, op(g, "solve_triangular", r, _t(g, x), lower=False, trans=False, unit_diagonal=False))
    return [_finish(g, grad, a)]
