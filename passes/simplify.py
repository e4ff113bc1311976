"""Algebraic simplification.

The rules and why each is exact (results equal bit for bit unless noted):

* ``x * 1``, ``x / 1``, ``x - 0``, ``x + 0`` -> ``x`` (with a cast/broadcast where the op
  promoted or broadcast ``x``: the binary ops compute in the promoted dtype, so the cast
  reproduces them).  ``x + 0`` turns ``-0.0`` into ``+0.0``, which compares equal.
* **x * 0 is rewritten to 0 only for integer x.**  For floats it is kept: ``nan * 0`` and
  ``inf * 0`` are nan, and ``-1.0 * 0`` is ``-0.0``.  Likewise ``x - x -> 0`` only for
  integers (``inf - inf`` is nan).  The zeros are an alloc, which cannot carry a named
  symbolic dim, so a result of type ``[n, 2]`` keeps its multiply (static or anonymous dims
  are rewritten).
* ``-(-x)`` -> ``x`` (negation is exact, also wrapping ints: ``-(-MIN) == MIN``).
* ``log(exp(x))`` -> ``x`` for float ``x``: equal where ``exp`` does not overflow, and
  where it does the naive form gives ``inf`` and the rewrite the true value.
* ``exp(log(x))`` -> ``x`` only where ``x`` is known non-negative (or nan): a float result of
  ``exp``, ``abs``, ``sqrt``, ``sigmoid``, ``softplus``, ``relu``, ``softmax``; for negative
  ``x`` the naive form is nan, so it is not valid in general.
* ``x[:, :]`` (all full slices) -> ``x``.
* ``reshape(reshape(x))`` -> one reshape; ``dimshuffle(dimshuffle(x))`` -> one dimshuffle
  with the composed pattern; identity reshapes/transposes vanish.
* ``alloc(x)`` to ``x``'s own type -> ``x`` when its extents provably stay x's (static or
  named dims, or ``?`` dims read back from ``shape(x)``: an alloc to another value's ``?`` dims
  broadcasts a run-time 1 like NumPy); ``alloc(alloc(x))`` -> one alloc.
* ``sum(alloc(v), axes)`` -> ``sum(v)`` over the axes ``v`` really has, times the number of
  copies (``c * n`` is also more accurate than adding ``n`` copies of ``c``), when every other
  summed axis provably keeps ``v``'s extent (same rule as above).  Known edge:
  when a symbolic broadcast dim is 0 at run time and ``v`` holds inf/nan, the rewrite gives
  nan where the empty sum gives 0 (a static 0 dim is not rewritten).
* ``cast(cast(x, a), b)`` -> ``cast(x, b)`` when ``x.dtype -> a`` is lossless (every value
  of ``x.dtype`` is exactly representable in ``a``): int8 -> int32 -> int64 is int8 -> int64,
  but float -> int -> float is kept (it truncates).  A cast to the same dtype vanishes.
  int -> float -> int is folded only when ``x.dtype -> b`` is lossless too: a float -> int
  cast sends out-of-range values to 0, an int -> int cast wraps them.

* ``where(c, a, b)`` with a constant ``c`` whose elements are all true (all false) -> ``a``
  (``b``), cast and broadcast to the result's type (``T.grad`` of ``x ** 2`` leaves
  ``where(2 == 0, 0, ...)``).
* ``x ** 1`` -> ``x`` and ``x ** 2`` -> ``x * x`` for a constant exponent (IEEE pow is exact
  there, and both round once).  ``x ** 0.5`` -> ``sqrt(x)`` only for a 0-d exponent: NumPy's
  ``a ** 0.5`` *is* ``sqrt`` (-0.0 for -0.0, nan for -inf; the reference backend follows it),
  while C's pow, and NumPy's ``np.power`` with an array of 0.5s, give +0.0 and inf there.
* ``shape(elementwise(a, b), i)`` -> ``shape(a, i')`` (Theano's shape lifting:
  ``(x ** 2).shape`` does not compute the pow): symbolic dims never broadcast, so an operand
  with a symbolic dim there has the result's extent.

A rule that drops an operand (the unselected ``where`` branch and condition, the constant
exponent, the elementwise op under ``shape``) fires only when that drops no run-time check:
at each axis the operands' dims (static 1s aside) are one static int, one name (names are
checked once per call) or one operand's anonymous dim.  (The op checks that unrelated dims
agree; without it a mismatch would pass silently.)

Every rewrite keeps the node's exact TensorType; the driver rejects any that would not.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from tcomp.ir import Constant, Graph, TensorType, get_op
from tcomp.ir import dtypes as dt

from .canonicalize import cast_to_same, identity_dimshuffle
from .rewrite import apply_rules, filled_like, fit_type, is_const_filled

NONNEGATIVE_OPS = ("exp", "abs", "sqrt", "sigmoid", "softplus", "relu", "softmax")


def _identity_operand(g: Graph, node: int, x: int) -> Optional[int]:
    """``x`` brought to ``node``'s type, for rules whose result equals ``x`` up to promotion."""
    return fit_type(g, x, g.type(node), shape_ref=None)


def mul_one(g, node):
    a, b = g.operands(node)
    for x, c in ((a, b), (b, a)):
        if is_const_filled(g, c, 1):
            return _identity_operand(g, node, x)
    return None


def mul_zero_int(g, node):
    t = g.type(node)
    if not dt.is_int(t.dtype):
        return None
    a, b = g.operands(node)
    for x, c in ((a, b), (b, a)):
        if is_const_filled(g, c, 0) and g.type(x).ndim == t.ndim:
            return filled_like(g, 0, t, x)
    return None


def add_zero(g, node):
    a, b = g.operands(node)
    for x, c in ((a, b), (b, a)):
        if is_const_filled(g, c, 0):
            return _identity_operand(g, node, x)
    return None


def sub_zero(g, node):
    a, b = g.operands(node)
    if is_const_filled(g, b, 0):
        return _identity_operand(g, node, a)
    return None


def sub_self_int(g, node):
    a, b = g.operands(node)
    t = g.type(node)
    if a == b and dt.is_int(t.dtype) and g.type(a).ndim == t.ndim:
        return filled_like(g, 0, t, a)
    return None


def div_one(g, node):
    a, b = g.operands(node)
    if is_const_filled(g, b, 1):
        return _identity_operand(g, node, a)
    return None


def double_neg(g, node):
    (x,) = g.operands(node)
    if g.op(x) == "neg":
        return g.operands(x)[0]
    return None


def log_exp(g, node):
    (x,) = g.operands(node)
    if g.op(x) != "exp":
        return None
    (inner,) = g.operands(x)
    if not dt.is_float(g.type(inner).dtype):
        return None
    return _identity_operand(g, node, inner)


def exp_log(g, node):
    (x,) = g.operands(node)
    if g.op(x) != "log":
        return None
    (inner,) = g.operands(x)
    if g.op(inner) in NONNEGATIVE_OPS and dt.is_float(g.type(inner).dtype):
        return _identity_operand(g, node, inner)
    return None


def reshape_reshape(g, node):
    x = g.operands(node)[0]
    if g.op(x) != "reshape":
        return None
    inner = g.operands(x)[0]
    return g.add_node("reshape", [inner] + g.operands(node)[1:], g.attrs(node))


def identity_reshape(g, node):
    x = g.operands(node)[0]
    t = g.type(node)
    if t.is_static and g.type(x) == t:
        return x
    return None


def identity_subtensor(g, node):
    """``x[:, :]`` (left by ``x[:, None]``, which is this plus a dimshuffle) -> ``x``."""
    if len(g.operands(node)) != 1:
        return None
    x = g.operands(node)[0]
    full = all(e[0] == "s" and e[1] in (None, 0) and e[2] is None and e[3] in (None, 1)
               for e in g.attrs(node)["index"])
    return x if full and g.type(x) == g.type(node) else None


def dimshuffle_dimshuffle(g, node):
    (x,) = g.operands(node)
    if g.op(x) != "dimshuffle":
        return None
    (inner,) = g.operands(x)
    p1 = tuple(g.attrs(x)["pattern"])
    p2 = tuple(g.attrs(node)["pattern"])
    composed = tuple("x" if p == "x" else p1[p] for p in p2)
    return g.add_node("dimshuffle", [inner], {"pattern": composed})


def useless_alloc(g, node):
    """alloc(x) -> x only when the alloc provably keeps x's extents: equal types, and each
    anonymous dim of x is the alloc's dim read from ``shape(x)`` at that axis.  (An alloc to
    another value's ``?`` dims broadcasts a run-time 1 of x like NumPy: equal types are not
    equal extents.)"""
    x = g.operands(node)[0]
    if g.type(x) != g.type(node):
        return None
    dims = iter(g.operands(node)[1:])
    for axis, (d, want) in enumerate(zip(g.type(x).shape, g.attrs(node)["shape"])):
        src = next(dims) if want is None else None
        if d is None and not (src is not None and g.op(src) == "shape" and g.operands(src)[0] == x
                              and g.attrs(src)["axis"] == axis):
            return None
    return x


def alloc_alloc(g, node):
    x = g.operands(node)[0]
    if g.op(x) != "alloc":
        return None
    inner = g.operands(x)[0]
    return g.add_node("alloc", [inner] + g.operands(node)[1:], g.attrs(node))


def sum_of_alloc(g, node):
    """sum(alloc(v, S), A) = sum(v', A_real) * prod(S[A_bcast]), v' = v padded to rank(S)."""
    x = g.operands(node)[0]
    if g.op(x) != "alloc":
        return None
    v, dims = g.operands(x)[0], g.operands(x)[1:]
    vt, xt, want = g.type(v), g.type(x), g.type(node)
    axes, keepdims = tuple(g.attrs(node)["axis"]), g.attrs(node)["keepdims"]
    pad = xt.ndim - vt.ndim
    vshape = (1,) * pad + vt.shape
    bcast = [a for a in axes if vshape[a] == 1 and xt.shape[a] != 1]
    if not bcast:
        return None
    # the number of copies: static dims multiply here, symbolic ones at run time
    shape_attr = tuple(g.attrs(x)["shape"])
    dim_of = {}
    it = iter(dims)
    for axis, d in enumerate(shape_attr):
        if d is None:
            dim_of[axis] = next(it)
    # every other axis must provably keep v's extent: alloc broadcasts a run-time 1 of an
    # anonymous dim of v (NumPy), so sum(v) over it would miss the copies.  A summed axis that
    # is not proven stops the rewrite; a kept one forces the re-broadcast below.
    unproven = [a for a in range(xt.ndim) if a not in bcast and not _keeps_extent(g, v, a - pad, vshape[a],
                                                                                 xt.shape[a], dim_of.get(a))]
    if any(a in axes for a in unproven):
        return None
    static = 1
    runtime = []
    for a in bcast:
        if isinstance(xt.shape[a], int):
            static *= xt.shape[a]
        elif a in dim_of:
            runtime.append(dim_of[a])
        else:
            return None
    if pad:
        v = g.add_node("dimshuffle", [v], {"pattern": ("x",) * pad + tuple(range(vt.ndim))})
    if static == 0:
        return None  # an empty sum is 0 even for inf/nan v, while inf * 0 is nan
    # reduce the broadcast axes of v' too (they have size 1): the result rank then matches
    s = g.add_node("sum", [v], {"axis": axes, "keepdims": keepdims})
    count = g.add_constant(_int64(static))
    for d in runtime:
        count = g.add_node("mul", [count, d])
    count = g.add_node("cast", [count], {"dtype": g.type(s).dtype})
    scaled = g.add_node("mul", [s, count])
    if g.type(scaled) == want and not unproven:
        return scaled
    # broadcast back over the kept axes v did not have, reusing the alloc's own dim operands
    attr, operands = [], []
    for axis, d in enumerate(shape_attr):
        if axis in axes:
            if keepdims:
                attr.append(1)
        else:
            attr.append(d)
            if d is None:
                operands.append(dim_of[axis])
    out = g.add_node("alloc", [scaled] + operands, {"shape": tuple(attr)})
    return out if g.type(out) == want else fit_type(g, scaled, want)


def _keeps_extent(g, v, axis, vd, xd, dim) -> bool:
    """alloc(v) keeps v's dim ``vd`` (axis ``axis`` of v, < 0 for a padded one) as ``xd``: the
    same static or named dim, or an anonymous one read back as ``shape(v)[axis]``."""
    if isinstance(vd, (int, str)):
        return vd == xd
    return (axis >= 0 and dim is not None and g.op(dim) == "shape" and g.operands(dim)[0] == v
            and g.attrs(dim)["axis"] == axis)


def _int64(v):
    return Constant(np.array(v, dtype="int64"))


LOSSLESS_FLOAT = {"float32": ("bool", "int8", "int16", "uint8"),
                  "float64": ("bool", "int8", "int16", "int32", "uint8", "float32")}


def lossless(src: str, dst: str) -> bool:
    """True when every value of dtype ``src`` is exactly representable in ``dst``."""
    if src == dst or src == "bool":
        return True
    ks, kd = dt.kind(src), dt.kind(dst)
    if kd == "f":
        return src in LOSSLESS_FLOAT[dst]
    if kd == "b" or ks == "f":
        return False
    bs, bd = dt.itemsize(src), dt.itemsize(dst)
    if ks == kd:
        return bd >= bs
    return ks == "u" and kd == "i" and bd > bs


def cast_cast(g, node):
    (x,) = g.operands(node)
    if g.op(x) != "cast":
        return None
    (inner,) = g.operands(x)
    src, mid, dst = g.type(inner).dtype, g.type(x).dtype, g.type(node).dtype
    if not lossless(src, mid):
        return None
    if dt.kind(mid) == "f" and dt.kind(dst) in "iu" and dt.kind(src) in "iu" and not lossless(src, dst):
        # float -> int sends out-of-range values to 0 while int -> int wraps: int32 -3 through
        # float64 to uint8 is 0, directly it is 253
        return None
    if g.type(inner).dtype == g.type(node).dtype:
        return inner
    return g.add_node("cast", [inner], g.attrs(node))


# -- where with a constant condition, small powers, shape lifting ------------------------------

def _aligned(t: TensorType, want: TensorType, axis: int):
    """``t``'s dim at result axis ``axis`` (NumPy aligns from the right), or 1 past its rank."""
    off = want.ndim - t.ndim
    return t.shape[axis - off] if axis >= off else 1


def _drops_no_check(g: Graph, node: int) -> bool:
    """Replacing elementwise ``node`` by a value of its extents loses no run-time size check:
    at every axis its operands' dims other than static 1s are all one static int, one name
    (names are checked once per call) or one operand's own anonymous dim."""
    want = g.type(node)
    for axis in range(want.ndim):
        keys = set()
        for o in set(g.operands(node)):
            d = _aligned(g.type(o), want, axis)
            if d != 1:
                keys.add(d if d is not None else ("anon", o))
        if len(keys) > 1:
            return False
    return True


def _broadcast_as(g: Graph, x: int, node: int) -> Optional[int]:
    """``x`` (an operand of elementwise ``node``, or a value of its extents) cast and broadcast
    to ``node``'s type; symbolic dims are read from an operand that has a symbolic dim there
    (it is the result's extent: symbolic dims never broadcast)."""
    want = g.type(node)
    if g.type(x).dtype != want.dtype:
        x = g.add_node("cast", [x], {"dtype": want.dtype})
    t = g.type(x)
    if t == want:
        return x
    attr, dims = [], []
    for axis, d in enumerate(want.shape):
        if isinstance(d, int):
            attr.append(d)
            continue
        src = next((o for o in [x] + list(g.operands(node))
                    if not isinstance(_aligned(g.type(o), want, axis), int)), None)
        if src is None:
            return None
        attr.append(None)
        dims.append(g.add_node("shape", [src], {"axis": axis - (want.ndim - g.type(src).ndim)}))
    out = g.add_node("alloc", [x] + dims, {"shape": tuple(attr)})
    return out if g.type(out) == want else None


def where_const(g, node):
    from .stabilize import const_scalar

    c, a, b = g.operands(node)
    v = const_scalar(g, c)
    if v is None or not _drops_no_check(g, node):
        return None
    return _broadcast_as(g, a if v else b, node)


def pow_small(g, node):
    """``x ** 1``, ``x ** 2`` (any constant exponent), ``x ** 0.5`` (a 0-d one: NumPy's
    ``a ** 0.5`` is its ``sqrt``, -0.0 and nan for -inf included, and the reference backend
    follows NumPy, while C's pow gives +0.0 and inf there)."""
    from .stabilize import const_scalar

    x, e = g.operands(node)
    p = const_scalar(g, e)
    want = g.type(node)
    if p not in (0.5, 1, 2) or isinstance(p, bool) or dt.kind(want.dtype) not in "iuf":
        return None
    if p == 0.5 and not (g.type(e).ndim == 0 and dt.is_float(want.dtype)):
        return None
    if not _drops_no_check(g, node):
        return None
    if p == 1:
        return _broadcast_as(g, x, node)
    xc = x if g.type(x).dtype == want.dtype else g.add_node("cast", [x], {"dtype": want.dtype})
    return _broadcast_as(g, g.add_node("sqrt", [xc]) if p == 0.5 else g.add_node("mul", [xc, xc]), node)


def shape_of_elemwise(g, node):
    """``shape(f(a, b), i)`` -> ``shape(a, i')`` for elementwise ``f`` when every operand dim
    at ``i`` that is not a static 1 is the same name or the same operand's dim (so ``f``'s own
    check that they agree is not lost); a static result dim is a constant then."""
    (x,) = g.operands(node)
    if get_op(g.op(x)).kind != "elemwise":
        return None
    t, axis = g.type(x), g.attrs(node)["axis"]
    keys, src = set(), None
    for o in set(g.operands(x)):
        d = _aligned(g.type(o), t, axis)
        if d == 1:
            continue
        keys.add(d if d is not None else ("anon", o))
        if d is None or (isinstance(d, str) and src is None):
            src = o
    if len(keys) > 1:
        return None
    d = t.shape[axis]
    if isinstance(d, int):
        return g.add_constant(_int64(d))
    if src is None:
        return None
    return g.add_node("shape", [src], {"axis": axis - (t.ndim - g.type(src).ndim)})


RULES = {
    "mul": [mul_one, mul_zero_int],
    "add": [add_zero],
    "sub": [sub_zero, sub_self_int],
    "truediv": [div_one],
    "neg": [double_neg],
    "log": [log_exp],
    "exp": [exp_log],
    "reshape": [identity_reshape, reshape_reshape],
    "dimshuffle": [identity_dimshuffle, dimshuffle_dimshuffle],
    "alloc": [useless_alloc, alloc_alloc],
    "sum": [sum_of_alloc],
    "cast": [cast_to_same, cast_cast],
    "subtensor": [identity_subtensor],
    "where": [where_const],
    "pow": [pow_small],
    "shape": [shape_of_elemwise],
}


def simplify(graph: Graph) -> Graph:
    """Apply the algebraic rules to ``graph`` in place; returns it."""
    apply_rules(graph, RULES)
    return graph
