"""Pushing the non-sequences' per-step gradient products out of the backward loop.

The backward loop of a scan (``autodiff_scan.py``) sums, per float non-sequence ``W``, its
per-step cotangent: for ``h_t = tanh(x_t W + h_{t-1} U + b)`` that is ``x_t^T d_t`` and
``h_{t-1}^T d_t`` (``d_t`` the pre-activation cotangent), an outer product of two per-step
values computed every step and added into a ``W``-sized accumulator.  The sum over steps of
such a product is one matrix product over the stacked rows (the classic scan push-out;
PyTensor and JAX's transpose of scan do versions of it):

    sum_t x_t^T d_t = X^T D,   X = reshape(x, (steps * batch, n_in)), D the same for d

so the loop only stores ``d_t`` (a row per step, as large as a state row) and one GEMM
after the loop does the rest, instead of ``steps`` small rank-``batch`` updates.

What is matched: a term of the accumulated cotangent (the expression is split at
same-typed ``add`` nodes) that is ``dot(X, Y)`` where each side is a body value, maybe
under a ``dimshuffle`` (the transposes and the vector outer products the ``dot`` VJP
makes), one side a row of a sequence of the backward loop (the forward's sequences, state
taps, stored results, output cotangents: their stacked rows exist outside) and the other a
value computed in the body, which the loop then stacks.  Every other term stays summed in
the loop.  The stacked value is carried as a recurrent state with ``store="all"`` whose
initial buffer is zeros of its row shape (derived from the sequence's and the
non-sequence's dims): its result is the stacked rows, and, unlike a non-fed-back output,
its shape is known when the loop runs zero steps (then the product is over zero rows: 0).
The value pushed out is the same sum, evaluated in another order (float rounding may
differ in the last bits).
"""
from __future__ import annotations

from tcomp.ir import Constant, Graph, TensorType

I64 = "int64"


def const(g: Graph, value, dtype: str) -> int:
    return g.add_constant(Constant(value, dtype))


def op(g: Graph, name: str, *operands: int, **attrs) -> int:
    return g.add_node(name, operands, attrs)


def split_terms(bg: Graph, v: int) -> list:
    """``v`` as the list of its terms: split at ``add`` nodes whose operands have ``v``'s type
    (no broadcasting), left to right."""
    out, stack = [], [v]
    t = bg.type(v)
    while stack:
        x = stack.pop()
        if bg.op(x) == "add" and all(bg.type(o) == t for o in bg.operands(x)):
            stack.extend(reversed(bg.operands(x)))
        else:
            out.append(x)
    return out


def _retyped(bg: Graph, v: int) -> int:
    """``v``'s operand when ``v`` is a reshape that only retypes it (``match_type``: the same
    rank, each dim the operand's static extent or read back from it); else ``v``."""
    if bg.op(v) != "reshape":
        return v
    x, dims = bg.operands(v)[0], iter(bg.operands(v)[1:])
    have = bg.type(x).shape
    if len(have) != len(bg.attrs(v)["shape"]):
        return v
    for axis, d in enumerate(bg.attrs(v)["shape"]):
        if d is None:
            n = next(dims)
            ok = ((bg.op(n) == "shape" and bg.operands(n) == [x] and bg.attrs(n)["axis"] == axis)
                  or (bg.op(n) == "constant" and isinstance(have[axis], int)
                      and int(bg.attrs(n)["value"].value) == have[axis]))
        else:
            ok = d == have[axis]
        if not ok:
            return v
    return x


def _side(bg: Graph, v: int):
    """(base, dimshuffle pattern or None) of a dot operand."""
    if bg.op(v) == "dimshuffle":
        return bg.operands(v)[0], tuple(bg.attrs(v)["pattern"])
    return v, None


def match_term(bg: Graph, term: int, seq_rows: dict, stackable):
    """``(x_side, y_side)`` when ``term`` is ``dot(X, Y)`` with one side a sequence row (a
    key of ``seq_rows``) and the other a sequence row or a ``stackable`` body value; each
    side is ``(base, pattern)``.  None otherwise."""
    term = _retyped(bg, term)
    if bg.op(term) != "dot" or len(bg.operands(term)) != 2:
        return None
    sides = [_side(bg, o) for o in bg.operands(term)]
    kinds = []
    for base, pattern in sides:
        if base in seq_rows:
            kinds.append("seq")
        elif stackable(base):
            kinds.append("stack")
        else:
            return None
        if pattern is not None:
            nd = bg.type(base).ndim
            kept = [p for p in pattern if p != "x"]
            if sorted(kept) != list(range(nd)):  # (an axis dropped: not handled)
                return None
    if "seq" not in kinds:
        return None
    return tuple(sides)


# -- outer-graph builders --------------------------------------------------------------------

# An outer dim is a node id (an int64 scalar node) or, when static, a 1-tuple ``(extent,)``
# (node ids are ints too).

def _dim(g: Graph, v: int, axis: int):
    d = g.type(v).shape[axis]
    return (d,) if isinstance(d, int) else op(g, "shape", v, axis=axis)


def _static(d) -> bool:
    return isinstance(d, tuple)


def _mul(g: Graph, a, b):
    if _static(a) and _static(b):
        return (a[0] * b[0],)
    a = const(g, a[0], I64) if _static(a) else a
    b = const(g, b[0], I64) if _static(b) else b
    return op(g, "mul", a, b)


def _attr(dims) -> tuple:
    return tuple(d[0] if _static(d) else None for d in dims)


def _reshape(g: Graph, v: int, dims) -> int:
    attr = _attr(dims)
    if g.type(v).shape == attr:
        return v
    return g.add_node("reshape", [v] + [d for d in dims if not _static(d)], {"shape": attr})


def _operand_dims(base_dims, pattern):
    return list(base_dims) if pattern is None else [(1,) if p == "x" else base_dims[p] for p in pattern]


def stacked_dims(g: Graph, bg: Graph, term: int, sides, which: int, seq_dims, w: int) -> list:
    """The row dims of the stacked base of side ``which`` of ``term`` (outer dims, see
    above): its contraction axis from the other side (a sequence row of dims ``seq_dims``),
    its free axis from the dims of ``w`` (the non-sequence, which has the term's shape)."""
    x, y = bg.operands(term)
    nd = bg.type(x if which == 0 else y).ndim
    other = _operand_dims(seq_dims, sides[1 - which][1])
    w_nd = g.type(w).ndim
    if which == 0:  # X = pattern(R), shape ([W dim 0],) + (k,)
        dims = ([_dim(g, w, 0)] if nd == 2 else []) + [other[0]]
    else:  # Y = pattern(R), shape (k,) + ([W's last dim],)
        dims = [other[-1]] + ([_dim(g, w, w_nd - 1)] if nd == 2 else [])
    pattern = sides[which][1]
    if pattern is None:
        return dims
    out = [None] * len([p for p in pattern if p != "x"])
    for i, p in enumerate(pattern):
        if p != "x":
            out[p] = dims[i]
    return out


def _flatten(g: Graph, stacked: int, pattern, first: bool) -> int:
    """``sum_t dot(X_t, Y_t)`` needs X as ``(a, T*k)`` (or ``(T*k,)``) and Y as
    ``(T*k, b)`` (or ``(T*k,)``), ``stacked`` the ``(T, *row)`` rows of the side's base."""
    t = _dim(g, stacked, 0)
    nd = g.type(stacked).ndim - 1
    row = [_dim(g, stacked, 1 + i) for i in range(nd)]
    if first and nd in (1, 2) and pattern in ((1, 0), (0, "x")) and len(pattern) == 2:
        # X = base^T (or base[:, None]): the transpose of the row-major flattening, a view
        flat = _reshape(g, stacked, [_mul(g, t, row[0]), row[1]] if nd == 2 else [t, row[0]])
        return op(g, "dimshuffle", flat, pattern=(1, 0))
    if pattern is not None:
        stacked = op(g, "dimshuffle", stacked, pattern=(0,) + tuple(p if p == "x" else p + 1 for p in pattern))
        row = _operand_dims(row, pattern)
    if len(row) == 1:
        return _reshape(g, stacked, [_mul(g, t, row[0])])
    if first:  # (T, a, k) -> (a, T, k) -> (a, T*k)
        moved = op(g, "dimshuffle", stacked, pattern=(1, 0, 2))
        return _reshape(g, moved, [row[0], _mul(g, t, row[1])])
    return _reshape(g, stacked, [_mul(g, t, row[0]), row[1]])


def outer_product_sum(g: Graph, sides, stacked: list) -> int:
    """``sum_t dot(X_t, Y_t)`` as one ``dot`` of the flattened stacks (``stacked[i]``: the
    ``(T, *row)`` rows of side ``i``'s base, both in the same step order)."""
    x = _flatten(g, stacked[0], sides[0][1], True)
    y = _flatten(g, stacked[1], sides[1][1], False)
    return op(g, "dot", x, y)


def zeros_rows(g: Graph, dtype: str, dims) -> int:
    """Zeros of shape ``(1, *dims)`` (the initial buffer of a stacked value's state)."""
    return g.add_node("alloc", [const(g, 0, dtype)] + [d for d in dims if not _static(d)],
                      {"shape": (1,) + _attr(dims)})


def row_type(dtype: str, dims) -> TensorType:
    return TensorType(dtype, _attr(dims))


class PushOut:
    """The push-out plan of one backward loop: which terms of which non-sequence's
    cotangent go out, and the body values the loop stacks for them (``values``, carried as
    states of types ``state_types()`` from the initial buffers ``inits``).

    ``seq_rows``: body input -> its outer rows in forward step order; ``stackable(v)``:
    whether body value ``v`` may be stacked (not an invariant, not an accumulator)."""

    def __init__(self, g: Graph, bg: Graph, seq_rows: dict, stackable):
        self.g, self.bg, self.seq_rows, self.stackable = g, bg, seq_rows, stackable
        self.values: list = []
        self.inits: list = []
        self._types: list = []
        self._index: dict = {}
        self._terms: dict = {}

    def split(self, j: int, expr: int, w: int):
        """Take the pushable terms of ``expr`` (the step's cotangent of non-sequence ``j``,
        outer value ``w``); returns the sum of the other terms (``expr`` itself when none
        went), or None when every term went."""
        bg = self.bg
        terms = split_terms(bg, expr)
        rest = []
        for t in terms:
            product = _retyped(bg, t)
            sides = match_term(bg, product, self.seq_rows, self.stackable)
            if sides is None or not self._stack(product, sides, w):
                rest.append(t)
                continue
            self._terms.setdefault(j, []).append(sides)
        if len(rest) == len(terms):
            return expr
        if not rest:
            return None
        v = rest[0]
        for r in rest[1:]:
            v = op(bg, "add", v, r)
        return v

    def _stack(self, term: int, sides, w: int) -> bool:
        g, bg = self.g, self.bg
        for which in (0, 1):
            base = sides[which][0]
            if base in self.seq_rows or base in self._index:
                continue
            rows = self.seq_rows[sides[1 - which][0]]
            seq_dims = [_dim(g, rows, 1 + i) for i in range(g.type(rows).ndim - 1)]
            dims = stacked_dims(g, bg, term, sides, which, seq_dims, w)
            t = bg.type(base)
            if t.ndim != len(dims) or any(isinstance(a, int) and _static(b) and a != b[0]
                                          for a, b in zip(t.shape, dims)):
                return False
            self._index[base] = len(self.values)
            self.values.append(base)
            self._types.append(row_type(t.dtype, dims))
            self.inits.append(zeros_rows(g, t.dtype, dims))
        return True

    def state_types(self) -> list:
        return list(self._types)

    def outer_terms(self, j: int, stacked: list) -> list:
        """Non-sequence ``j``'s pushed-out terms as outer nodes (``stacked[k]``: the rows of
        ``values[k]`` in forward step order)."""
        out = []
        for sides in self._terms.get(j, []):
            rows = [self.seq_rows[b] if b in self.seq_rows else stacked[self._index[b]] for b, _ in sides]
            out.append(outer_product_sum(self.g, sides, rows))
        return out


__all__ = ["PushOut", "split_terms", "match_term", "stacked_dims", "outer_product_sum"]
