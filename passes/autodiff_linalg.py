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

from .autodiff import const, match_type, op, register_vjp


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
