"""Numerical stabilization: rewrite formulas that overflow or cancel into stable ops.

Users write sigmoids, softpluses and softmaxes out by hand (Theano's own logistic-regression
tutorial does: ``p = 1 / (1 + exp(-dot(x, w) - b))`` and ``log(p)``, ``log(1 - p)``).  Left as
written, ``exp`` overflows, ``1 - p`` cancels to 0 and ``log`` gives ``-inf``, and the gradient
divides by it: training ends in nan.  Each rule replaces such a formula by an op of the table
that computes the same function without the intermediate overflow/cancellation:

* ``1 / (1 + exp(-x))`` and ``exp(x) / (1 + exp(x))`` -> ``sigmoid(x)``;
  ``1 - sigmoid(x)`` -> ``sigmoid(-x)``;
* ``log(sigmoid(x))`` -> ``-softplus(-x)``; ``log(1 - sigmoid(x))`` -> ``-softplus(x)``;
  ``log(1 + exp(x))`` and ``log1p(exp(x))`` -> ``softplus(x)``;
* ``log(softmax(x))`` -> ``log_softmax(x)``; also ``log(subtensor(softmax(x), idx))`` ->
  ``subtensor(log_softmax(x), idx)`` (log is elementwise and commutes with selection);
* ``log(1 + x)`` -> ``log1p(x)``, ``log(1 - x)`` -> ``log1p(-x)`` (float results only: an
  integer ``1 + x`` may wrap before the log); ``exp(x) - 1`` -> ``expm1(x)``;
* ``log(sum(exp(x), axes))`` -> ``logsumexp(x)`` (one ``logsumexp`` per axis, innermost
  first: ``log sum_ij exp x_ij = lse_i(lse_j(x_ij))``, exact and stable), and the
  max-subtracted form ``log(sum(exp(x - m), axes)) + m`` with ``m = max(x, axes)`` likewise;
* ``exp(x) / sum(exp(x), axes, keepdims)`` (also max-subtracted, and with the reduced axes
  re-inserted by a dimshuffle or, for leading axes, by broadcasting) -> ``softmax(x, a)`` for
  one axis, ``exp(x - logsumexp(x, axes, keepdims))`` for several.

"Every equivalent spelling": the matchers accept either operand order, ``a - b`` as well as
``a + (-b)``, ``-1 * x`` / ``0 - x`` as negation, and constants that are Python scalars,
0-d or broadcast constant tensors, possibly behind a ``cast``/``alloc``/``dimshuffle``/
``reshape`` (:func:`const_scalar`), and an ``exp``/``sigmoid`` operand behind a broadcast or
float cast (:func:`through`).  ``T.grad`` runs this pass on the forward graph before
differentiating (without canonicalize), so the matchers cannot rely on canonical order.

Rules apply in one topological sweep (operands before users) and each looks a bounded number
of nodes up the graph, so the pass is linear in graph size and never recurses on depth: a
hand-written sigmoid becomes ``sigmoid`` before the ``log`` above it is visited, which then
becomes ``-softplus``.  A rule computes in the replaced node's dtype (a strong float64
constant around a float32 ``x`` casts ``x`` first) and broadcasts its result to the node's
exact type, or does not fire.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from tcomp.ir import Constant, Graph, TensorType
from tcomp.ir import dtypes as dt

from .rewrite import apply_rules

#: ops a constant may hide behind (value-preserving up to the cast, which is applied)
_CONST_WRAPPERS = ("cast", "alloc", "dimshuffle", "reshape")


# -- matching helpers ---------------------------------------------------------------------

def const_scalar(g: Graph, node: int, expect=None) -> Optional[float]:
    """The one value of a constant whose elements are all equal, looking through at most four
    casts/allocs/dimshuffles/reshapes; None for anything else (or an empty constant).  With
    ``expect``, a constant whose first element differs is rejected without a scan (a large
    weight constant is not compared element by element for every rule that looks at it)."""
    casts = []
    for _ in range(5):
        op = g.op(node)
        if op == "constant":
            break
        if op not in _CONST_WRAPPERS:
            return None
        if op == "cast":
            casts.append(g.attrs(node)["dtype"])
        node = g.operands(node)[0]
    else:
        return None
    v = np.asarray(g.attrs(node)["value"].value)
    if v.size == 0:
        return None
    with np.errstate(all="ignore"):
        for d in reversed(casts):
            v = v.astype(d)
    first = v.flat[0]
    if expect is not None and first != expect:
        return None
    if v.size > 1 and (v.flat[-1] != first or not np.all(v == first)):
        return None
    return first.item()


def _is_const(g: Graph, node: int, value) -> bool:
    c = const_scalar(g, node, value)
    return c is not None and c == value


def _one_plus(g: Graph, node: int) -> Optional[tuple[int, bool]]:
    """For ``1 + x`` (either order) return (x, False); for ``1 - x`` or ``1 + (-x)`` return
    (x, True); else None."""
    op = g.op(node)
    if op not in ("add", "sub"):
        return None
    a, b = g.operands(node)
    if op == "sub":
        return (b, True) if _is_const(g, a, 1) else None
    for one, x in ((b, a), (a, b)):
        if _is_const(g, one, 1):
            if g.op(x) == "neg" and dt.is_float(g.type(x).dtype):  # an int neg wraps: not -x
                return g.operands(x)[0], True
            return x, False
    return None


def negated(g: Graph, z: int) -> int:
    """A node equal to ``-z``, reusing z's structure where it is a negation already:
    ``-(-a) = a``, ``-(a - b) = b - a``, ``-(-a - b) = a + b``, ``-(0 - a) = a``,
    ``-(-1 * a) = a``, ``-c`` folded for a constant."""
    op = g.op(z)
    if op == "neg":
        return g.operands(z)[0]
    if op == "sub":
        a, b = g.operands(z)
        if _is_const(g, a, 0):
            return b
        if g.op(a) == "neg" and dt.is_float(g.type(a).dtype):
            return g.add_node("add", [g.operands(a)[0], b])
        return g.add_node("sub", [b, a])
    if op == "mul":
        a, b = g.operands(z)
        for c, x in ((a, b), (b, a)):
            if _is_const(g, c, -1):
                return x
    if op == "constant":
        v = np.asarray(g.attrs(z)["value"].value)
        if v.dtype.kind in "fi":
            return g.add_constant(Constant(np.negative(v)))
    return g.add_node("neg", [z])


def negated_in(g: Graph, z: int, want: TensorType) -> int:
    """``-z`` computed in float: an int or bool ``z`` (the operand of an ``exp``/``sigmoid``
    that promotes it) is cast to ``want``'s dtype first, since negating it in its own dtype
    wraps (uint8 ``-1`` is 255) or is rejected (bool)."""
    if not dt.is_float(g.type(z).dtype) and dt.is_float(want.dtype):
        z = g.add_node("cast", [z], {"dtype": want.dtype})
    return negated(g, z)


def through(g: Graph, node: int) -> int:
    """``node`` with up to three broadcasts (an ``alloc``'s value, a ``dimshuffle`` that only
    inserts broadcast dims) and float-to-float casts peeled off: elementwise formulas commute
    with them, and a rule's result is broadcast/cast back by :func:`fit`.  (A rewritten
    operand often comes back wrapped this way, e.g. a sigmoid broadcast to a constant's shape.)"""
    for _ in range(3):
        op = g.op(node)
        if op == "alloc":
            pass
        elif op == "dimshuffle":
            kept = [p for p in g.attrs(node)["pattern"] if p != "x"]
            if kept != list(range(len(kept))):
                return node
        elif op == "cast":
            inner = g.operands(node)[0]
            if not (dt.is_float(g.type(inner).dtype) and dt.is_float(g.type(node).dtype)):
                return node
        else:
            return node
        node = g.operands(node)[0]
    return node


def _same_value(g: Graph, a: int, b: int) -> bool:
    """``a`` and ``b`` are the same node or the same unary op of the same operand (un-CSE'd
    ``exp(x)`` written twice)."""
    a, b = through(g, a), through(g, b)
    if a == b:
        return True
    return (g.op(a) == g.op(b) and g.op(a) in ("exp", "neg") and g.operands(a) == g.operands(b))


def fit(g: Graph, node: int, want: TensorType) -> Optional[int]:
    """``node`` brought to type ``want`` exactly: cast, leading broadcast dims added by a
    dimshuffle, a static broadcast by an alloc; None when that cannot be done exactly."""
    t = g.type(node)
    if not isinstance(t, TensorType):
        return None
    if t.dtype != want.dtype:
        node = g.add_node("cast", [node], {"dtype": want.dtype})
    if t.ndim < want.ndim:
        pad = want.ndim - t.ndim
        node = g.add_node("dimshuffle", [node], {"pattern": ("x",) * pad + tuple(range(t.ndim))})
    t = g.type(node)
    if t.ndim != want.ndim:
        return None
    if t.shape != want.shape and want.is_static:
        try:
            node = g.add_node("alloc", [node], {"shape": want.shape})
        except (TypeError, ValueError):
            return None
    return node if g.type(node) == want else None


def _in_dtype(g: Graph, x: int, want: TensorType) -> int:
    """``x`` cast to the float dtype the replaced node computed in (so the stable op runs at
    the same precision as the naive formula did)."""
    if g.type(x).dtype != want.dtype:
        return g.add_node("cast", [x], {"dtype": want.dtype})
    return x


def _unary_in(g: Graph, op: str, x: int, want: TensorType) -> Optional[int]:
    if not dt.is_float(want.dtype):
        return None
    return fit(g, g.add_node(op, [_in_dtype(g, x, want)]), want)


def _neg_softplus(g: Graph, x: int, want: TensorType) -> Optional[int]:
    if not dt.is_float(want.dtype):
        return None
    sp = g.add_node("softplus", [_in_dtype(g, x, want)])
    return fit(g, g.add_node("neg", [sp]), want)


# -- sigmoid and softplus -----------------------------------------------------------------

def _reciprocal_of(g: Graph, node: int) -> Optional[int]:
    """For ``1 / d`` or ``d ** -1`` return d."""
    op = g.op(node)
    if op == "truediv":
        a, b = g.operands(node)
        return b if _is_const(g, a, 1) else None
    if op == "pow":
        a, b = g.operands(node)
        return a if _is_const(g, b, -1) else None
    return None


def sigmoid_rule(g, node):
    """``1 / (1 + exp(z))`` -> ``sigmoid(-z)``; ``exp(x) / (1 + exp(x))`` -> ``sigmoid(x)``."""
    want = g.type(node)
    den = _reciprocal_of(g, node)
    if den is not None:
        m = _one_plus(g, den)
        if m is None or m[1] or g.op(through(g, m[0])) != "exp":
            return None
        return _unary_in(g, "sigmoid", negated_in(g, g.operands(through(g, m[0]))[0], want), want)
    if g.op(node) != "truediv":
        return None
    num, den = g.operands(node)
    m = _one_plus(g, den)
    num = through(g, num)
    if g.op(num) != "exp" or m is None or m[1] or not _same_value(g, num, m[0]):
        return None
    return _unary_in(g, "sigmoid", g.operands(num)[0], want)


def one_minus_sigmoid_rule(g, node):
    """``1 - sigmoid(x)`` (also ``1 + (-sigmoid(x))``) -> ``sigmoid(-x)``: no cancellation
    where sigmoid(x) rounds to 1."""
    m = _one_plus(g, node)
    if m is None or not m[1] or g.op(through(g, m[0])) != "sigmoid":
        return None
    want = g.type(node)
    return _unary_in(g, "sigmoid", negated_in(g, g.operands(through(g, m[0]))[0], want), want)


def log_sigmoid_rule(g, node):
    """``log(sigmoid(x))`` -> ``-softplus(-x)``; ``log(1 - sigmoid(x))`` -> ``-softplus(x)``."""
    (s,) = g.operands(node)
    want = g.type(node)
    if g.op(through(g, s)) == "sigmoid":
        return _neg_softplus(g, negated_in(g, g.operands(through(g, s))[0], want), want)
    m = _one_plus(g, s)
    if m is None or not m[1] or g.op(through(g, m[0])) != "sigmoid":
        return None
    return _neg_softplus(g, g.operands(through(g, m[0]))[0], want)


def softplus_rule(g, node):
    """``log(1 + exp(x))`` -> ``softplus(x)``; for a ``log1p`` node, ``log1p(exp(x))``."""
    (s,) = g.operands(node)
    if g.op(node) == "log1p":
        e = s
    else:
        m = _one_plus(g, s)
        if m is None or m[1]:
            return None
        e = m[0]
    e = through(g, e)
    if g.op(e) != "exp":
        return None
    return _unary_in(g, "softplus", g.operands(e)[0], g.type(node))


# -- log1p, expm1, log_softmax ------------------------------------------------------------

def log_softmax_rule(g, node):
    (x,) = g.operands(node)
    if g.op(x) == "softmax":
        (inner,) = g.operands(x)
        return g.add_node("log_softmax", [inner], g.attrs(x))
    if g.op(x) == "subtensor" and g.op(g.operands(x)[0]) == "softmax":
        sm, *index_operands = g.operands(x)
        ls = g.add_node("log_softmax", g.operands(sm), g.attrs(sm))
        return g.add_node("subtensor", [ls] + index_operands, g.attrs(x))
    return None


def log1p_rule(g, node):
    (s,) = g.operands(node)
    if not dt.is_float(g.type(s).dtype):
        return None
    m = _one_plus(g, s)
    if m is None:
        return None
    x, negate = m
    x = fit(g, _in_dtype(g, x, g.type(s)), g.type(s))  # the add computed in its promoted type
    if x is None:
        return None
    if negate:
        x = g.add_node("neg", [x])
    return g.add_node("log1p", [x])


def expm1_rule(g, node):
    """``exp(x) - 1`` (also ``exp(x) + (-1)``) -> ``expm1(x)``."""
    a, b = g.operands(node)
    if g.op(node) == "add":
        if g.op(through(g, a)) != "exp":
            a, b = b, a
        if not _is_const(g, b, -1):
            return None
    elif not _is_const(g, b, 1):
        return None
    a = through(g, a)
    if g.op(a) != "exp":
        return None
    return _unary_in(g, "expm1", g.operands(a)[0], g.type(node))


# -- logsumexp and softmax ----------------------------------------------------------------

def _axes(g: Graph, node: int) -> tuple:
    a = g.attrs(node)["axis"]
    return tuple(a) if isinstance(a, (tuple, list)) else (a,)


def _is_identity_subtensor(g: Graph, node: int) -> bool:
    """``x[:, :]`` (what ``x[:, None]`` leaves before its dimshuffle)."""
    if g.op(node) != "subtensor" or len(g.operands(node)) != 1:
        return False
    return all(e[0] == "s" and e[1] in (None, 0) and e[2] is None and e[3] in (None, 1)
               for e in g.attrs(node)["index"])


def _reshape_keeps(g: Graph, node: int, red: int, v: int, axes: tuple) -> bool:
    """``node = reshape(red, dims)`` (red a keepdims=False reduction of v over ``axes``) puts a
    1 at each reduced axis and v's own dim at each kept one: static and equal, ``-1`` (once),
    or ``shape(w, i)`` of v or of a node at most two operands below it, with v's rank."""
    attr = tuple(g.attrs(node)["shape"])
    nd = g.type(v).ndim
    if len(attr) != nd:
        return False
    near = {v}
    for w in list(near):
        for o in g.operands(w):
            near.add(o)
            near.update(g.operands(o))
    dim_operands = iter(g.operands(node)[1:])
    vshape = g.type(v).shape
    minus_one = 0
    for i, d in enumerate(attr):
        if d is None:
            o = next(dim_operands)
            ok = (i not in axes and g.op(o) == "shape" and g.attrs(o)["axis"] == i
                  and g.operands(o)[0] in near and g.type(g.operands(o)[0]).ndim == nd)
        elif i in axes:
            ok = d == 1
        elif d == -1:
            minus_one += 1
            ok = True
        else:
            ok = isinstance(vshape[i], int) and vshape[i] == d
        if not ok:
            return False
    return minus_one <= 1


def _reinserted(g: Graph, node: int, op: str, nd: int) -> Optional[tuple[int, int, tuple, bool]]:
    """If ``node`` is ``op(v, axes)`` (a reduction of a rank-``nd`` v) in a form that
    broadcasts against v like keepdims=True does, return (reduction, v, axes, keepdims_attr):
    keepdims; or keepdims=False over leading axes (NumPy aligns from the right); or
    keepdims=False followed by a dimshuffle that puts an 'x' at each reduced axis (leading
    ones optional; ``r[:, None]`` is an identity subtensor then that dimshuffle), or by a
    reshape to v's dims with 1 at the reduced axes (:func:`_reshape_keeps`)."""
    pattern = reshape = None
    if g.op(node) == "dimshuffle":
        pattern = tuple(g.attrs(node)["pattern"])
        node = g.operands(node)[0]
        if _is_identity_subtensor(g, node):
            node = g.operands(node)[0]
    elif g.op(node) == "reshape":
        reshape, node = node, g.operands(node)[0]
    if g.op(node) != op:
        return None
    axes, keep = _axes(g, node), bool(g.attrs(node)["keepdims"])
    v = g.operands(node)[0]
    if g.type(v).ndim != nd:
        return None
    if reshape is not None:
        return (node, v, axes, False) if not keep and _reshape_keeps(g, reshape, node, v, axes) else None
    if pattern is None:
        if keep or axes == tuple(range(len(axes))):
            return node, v, axes, keep
        return None
    if keep:
        return None
    kept = [i for i in range(nd) if i not in axes]
    off = nd - len(pattern)
    if off < 0 or any(i not in axes for i in range(off)):
        return None
    for pos, p in enumerate(pattern):
        axis = pos + off
        if p == "x":
            if axis not in axes:
                return None
        elif p >= len(kept) or kept[p] != axis:
            return None
    return node, v, axes, False


def _is_max_of(g: Graph, m: int, x: int, axes: tuple, keepdims: bool) -> bool:
    """``m`` is ``max(x, axes)`` in a form that lines up with a ``sum(..., axes, keepdims)``
    of x: for keepdims, any form broadcasting like keepdims (:func:`_reinserted`); without,
    exactly the plain keepdims=False max (same rank and alignment)."""
    if not keepdims:
        return (g.op(m) == "max" and g.operands(m)[0] == x and _axes(g, m) == axes
                and not g.attrs(m)["keepdims"])
    r = _reinserted(g, m, "max", g.type(x).ndim)
    return r is not None and r[1] == x and r[2] == axes


def _exp_argument(g: Graph, e: int, axes: tuple) -> Optional[tuple[int, bool]]:
    """For ``exp(x)`` return (x, False); for ``exp(x - max(x, axes))`` return (x, True)."""
    if g.op(e) != "exp":
        return None
    (arg,) = g.operands(e)
    if g.op(arg) == "sub":
        x, m = g.operands(arg)
        if g.type(x) == g.type(arg) and _is_max_of(g, m, x, axes, True):
            return x, True
    return arg, False


def _sum_exp(g: Graph, s: int) -> Optional[tuple[int, tuple, bool, bool]]:
    """For ``sum(exp(...), axes)`` return (x, axes, keepdims, max_subtracted)."""
    if g.op(s) != "sum" or not _axes(g, s):
        return None
    axes = _axes(g, s)
    found = _exp_argument(g, g.operands(s)[0], axes)
    if found is None:
        return None
    return found[0], axes, bool(g.attrs(s)["keepdims"]), found[1]


def _logsumexp(g: Graph, x: int, axes: tuple, keepdims: bool, want: TensorType) -> Optional[int]:
    """logsumexp over ``axes``: one single-axis op per axis, last axis first (so the lower
    axis numbers stay valid when keepdims is False)."""
    if not dt.is_float(want.dtype):
        return None
    x = _in_dtype(g, x, want)
    for a in sorted(axes, reverse=True):
        x = g.add_node("logsumexp", [x], {"axis": a, "keepdims": keepdims})
    return fit(g, x, want)


def logsumexp_rule(g, node):
    (s,) = g.operands(node)
    found = _sum_exp(g, s)
    if found is None or found[3]:
        return None
    x, axes, keepdims, _ = found
    return _logsumexp(g, x, axes, keepdims, g.type(node))


def logsumexp_shifted_rule(g, node):
    """``log(sum(exp(x - m), axes)) + m2`` with m, m2 = max(x, axes) -> ``logsumexp``."""
    for lg, m2 in (g.operands(node), reversed(g.operands(node))):
        if g.op(lg) != "log":
            continue
        found = _sum_exp(g, g.operands(lg)[0])
        if found is None or not found[3]:
            continue
        x, axes, keepdims, _ = found
        if not _is_max_of(g, m2, x, axes, keepdims):
            continue
        return _logsumexp(g, x, axes, keepdims, g.type(node))
    return None


def softmax_rule(g, node):
    num, den = g.operands(node)
    nd = g.type(num).ndim
    r = _reinserted(g, den, "sum", nd)
    if r is None:
        return None
    s = r[0]
    found = _sum_exp(g, s)
    if found is None:
        return None
    x, axes, _, shifted = found
    if not _same_value(g, num, g.operands(s)[0]) and _exp_argument(g, num, axes) != (x, shifted):
        return None
    want = g.type(node)
    if not dt.is_float(want.dtype):
        return None
    x = _in_dtype(g, x, want)
    if len(axes) == 1:
        return fit(g, g.add_node("softmax", [x], {"axis": axes[0]}), want)
    lse = x
    for a in sorted(axes, reverse=True):
        lse = g.add_node("logsumexp", [lse], {"axis": a, "keepdims": True})
    return fit(g, g.add_node("exp", [g.add_node("sub", [x, lse])]), want)


RULES = {
    "log": [log_softmax_rule, log_sigmoid_rule, softplus_rule, log1p_rule, logsumexp_rule],
    "log1p": [softplus_rule],
    "sub": [one_minus_sigmoid_rule, expm1_rule],
    "add": [one_minus_sigmoid_rule, expm1_rule, logsumexp_shifted_rule],
    "truediv": [sigmoid_rule, softmax_rule],
    "pow": [sigmoid_rule],
}


def stabilize(graph: Graph) -> Graph:
    """Apply the stabilization rules to ``graph`` in place; returns it."""
    apply_rules(graph, RULES)
    return graph
