"""Shape rules of the dense linear algebra ops (``ir/ops/linalg_decomp.py``): the run-time
checks of what their type rule can only assume for symbolic dims (square matrices, b's rows
and batch dims equal to a's) and the result dims; and of ``flatnonzero``, whose length is a
host value (``ir/ops/nonzero.py``)."""
from __future__ import annotations

from .shape_program import TUP, TY, I


def _square(r, n, name, t, s):
    b = r.b
    b.check(b.eq(s[-1], s[-2]), "ShapeError",
            [f"{r.describe(n)}: {name}: expected square matrices, got ", TY(t.dtype, s), " (", I(s[-2]), " x ",
             I(s[-1]), ")"])


def _one(name, batch_only=False):
    def rule(r, n, attrs, gtypes, shapes):
        s = tuple(shapes[0])
        _square(r, n, name, gtypes[0], s)
        return s[:-2] if batch_only else s
    return rule


def _solve(name):
    def rule(r, n, attrs, gtypes, shapes):
        b = r.b
        sa, sb = tuple(shapes[0]), tuple(shapes[1])
        _square(r, n, name, gtypes[0], sa)
        k = len(sa) - 2
        same = [b.eq(x, y) for x, y in zip(sa[:-1], sb[:k + 1])]
        b.check(b.all_of(same), "ShapeError",
                [f"{r.describe(n)}: {name}: b ", TUP(sb), " does not match a ", TUP(sa),
                 " (same batch dims, and as many rows as a)"])
        return sb
    return rule


def _flatnonzero(r, n, attrs, gtypes, shapes):
    """The length is the ``count`` operand's register (a host value, ir/ops/nonzero.py)."""
    b = r.b
    count = b.cast(r.value(r.g.operands(n)[1]), "int64")
    b.check(b.le(0, count), "ShapeError", [f"{r.describe(n)}: negative count of nonzeros ", I(count)])
    return (count,)


def _eigh(r, n, attrs, gtypes, shapes):
    s = tuple(shapes[0])
    _square(r, n, "eigh", gtypes[0], s)
    return s[:-1] if attrs["part"] == "values" else s


def _svd(r, n, attrs, gtypes, shapes):
    b = r.b
    s = tuple(shapes[0])
    m, c = s[-2], s[-1]
    k = b.select(b.lt(m, c), m, c)
    return s[:-2] + {"s": (k,), "u": (m, k), "vt": (k, c)}[attrs["part"]]


def _qr(r, n, attrs, gtypes, shapes):
    b = r.b
    s = tuple(shapes[0])
    m, c = s[-2], s[-1]
    k = b.select(b.lt(m, c), m, c)
    return s[:-2] + ((m, k) if attrs["part"] == "q" else (k, c))


RULES = {"eigh": _eigh, "svd": _svd, "qr": _qr, "flatnonzero": _flatnonzero, "cholesky": _one("cholesky"),
         "matrix_inverse": _one("matrix_inverse"), "det": _one("det", True), "solve": _solve("solve"),
         "solve_triangular": _solve("solve_triangular")}
