"""The op table of the differential fuzzer: for every public ``tcomp.tensor`` entry point it
exercises, how to build the expression (``build``), what NumPy says it computes (``oracle``),
how far a correct implementation may drift from that (``noise``), and the source line a
reproduction prints (``src``).

The oracle is written from tcomp's documented semantics (README, the DSL docstrings and the
op docs: JAX's promotion lattice with weak Python scalars, Theano's "only static 1 dims
broadcast", int division/mod by zero gives 0, float->int casts truncate and send
nan/inf/out-of-range to 0, negative integer powers, split ties), never by calling tcomp's
reference interpreter or the op table's implementations, so the two can disagree.

Float ops are computed in float64 and rounded to their dtype (a correctly rounded answer).
``noise`` gives, per op, the relative error in units of the dtype's eps and an optional
absolute error array: the checker re-evaluates the whole graph with every float result
perturbed by that much and derives each output's tolerance (and which discrete results are
stable) from how far the perturbed runs move, so cancellation, division by a tiny value or
a comparison of two almost-equal floats does not count as a mismatch, while an off-by-one
element or a wrong dtype still does.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

F32, F64 = "float32", "float64"
INTS = ("int8", "int16", "int32", "int64", "uint8")
FLOATS = (F32, F64)
FLOATX = F32
DEFAULT_INT = "int64"


class OracleError(Exception):
    """NumPy (or tcomp's documented rules) reject this computation: tcomp must raise too."""

    def __init__(self, kind, msg):
        super().__init__(f"{kind.__name__}: {msg}")
        self.kind = kind


# -- dtypes (JAX's lattice as tcomp documents it; written here independently) ----------

def kind(d):
    return "b" if d == "bool" else "f" if d in FLOATS else "u" if d == "uint8" else "i"


def bits(d):
    return np.dtype(d).itemsize * 8


def promote(*ds):
    out = ds[0]
    for d in ds[1:]:
        out = _promote2(out, d)
    return out


def _promote2(a, b):
    if a == b:
        return a
    ka, kb = kind(a), kind(b)
    if ka == "b":
        return b
    if kb == "b":
        return a
    if "f" in (ka, kb):
        if ka == kb:
            return a if bits(a) >= bits(b) else b
        return a if ka == "f" else b
    if ka == kb:
        return a if bits(a) >= bits(b) else b
    s, u = (a, b) if ka == "i" else (b, a)
    return f"int{min(max(bits(s), 2 * bits(u)), 64)}"


def weak_result(strong, value):
    """dtype of ``tensor(strong) op python_scalar(value)``."""
    rank = {"b": 0, "i": 1, "u": 1, "f": 2}
    wk = "b" if isinstance(value, bool) else "i" if isinstance(value, int) else "f"
    if rank[wk] > rank[kind(strong)]:
        return DEFAULT_INT if wk == "i" else FLOATX
    return strong


def floaty(d):
    return d if d in FLOATS else FLOATX


def eps(d):
    return float(np.finfo(d).eps)


def f64(x):
    return np.asarray(x).astype(F64)


def as_dtype(x, d):
    with np.errstate(all="ignore"):
        return np.asarray(x).astype(d)


# -- broadcasting (Theano: only a statically-1 dim broadcasts) -------------------------

def bcast_types(*tshapes):
    """Static result shape; None where the rule would reject at build time."""
    nd = max(len(s) for s in tshapes)
    pad = [(1,) * (nd - len(s)) + tuple(s) for s in tshapes]
    out = []
    for ax in range(nd):
        r = 1
        for s in pad:
            d = s[ax]
            if d == 1:
                continue
            if r == 1:
                r = d
            elif isinstance(r, int) and isinstance(d, int) and r != d:
                return None
            elif not isinstance(r, int):
                r = d if isinstance(d, int) else r
        out.append(r)
    return tuple(out)


def check_runtime_bcast(tshapes, shapes):
    """Raise OracleError(ValueError) where sizes differ on a dim no operand has static 1."""
    nd = max(len(s) for s in shapes)
    pt = [(1,) * (nd - len(t)) + tuple(t) for t in tshapes]
    ps = [(1,) * (nd - len(s)) + tuple(s) for s in shapes]
    for ax in range(nd):
        sizes = {s[ax] for t, s in zip(pt, ps) if t[ax] != 1}
        if len(sizes) > 1:
            raise OracleError(ValueError, f"sizes {sorted(sizes)} meet on axis {ax} (symbolic dims do not broadcast)")


def bcast_vals(vals, tshapes):
    check_runtime_bcast(tshapes, [v.shape for v in vals])
    return np.broadcast_arrays(*vals)


# -- elementwise unary -------------------------------------------------------------------

def _erf(x):
    return np.vectorize(math.erf, otypes=[F64])(x) if x.size else x


def _sigmoid(x):
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


FLOAT_UNARY = {
    "exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1, "sqrt": np.sqrt, "tanh": np.tanh,
    "sin": np.sin, "cos": np.cos, "erf": _erf, "sigmoid": _sigmoid,
    "softplus": lambda x: np.logaddexp(0.0, x),
}
EXACT_FLOAT_UNARY = {"sqrt"}
NUMERIC_UNARY = {
    "neg": np.negative, "abs": np.abs, "sign": np.sign, "floor": np.floor, "ceil": np.ceil, "round": np.round,
    "relu": lambda x: np.maximum(x, np.zeros((), x.dtype)),
}
#: the T functions used for each unary op (several spellings of the same op)
UNARY_SPELLINGS = {
    "neg": ["T.neg({0})", "-{0}"], "abs": ["T.abs({0})", "abs({0})", "T.abs_({0})"],
    "sigmoid": ["T.sigmoid({0})", "T.nnet.sigmoid({0})"], "relu": ["T.relu({0})", "T.nnet.relu({0})"],
    "softplus": ["T.softplus({0})", "T.nnet.softplus({0})"], "logical_not": ["T.logical_not({0})"],
}


def unary_dtype(op, d):
    if op in FLOAT_UNARY:
        return floaty(d)
    if op == "logical_not":
        return "bool"
    return d


def unary_oracle(op, x):
    d = unary_dtype(op, x.dtype.name)
    with np.errstate(all="ignore"):
        if op == "logical_not":
            return x == 0
        if op in FLOAT_UNARY:
            return as_dtype(FLOAT_UNARY[op](f64(x)), d)
        return as_dtype(NUMERIC_UNARY[op](x), d)


def unary_noise(op, x, out):
    if op in ("sin", "cos"):
        big = np.abs(f64(x)) > 1e5  # documented accuracy range of tcomp's sin/cos
        return 4, np.where(big, 4.0, 0.0)
    if op in FLOAT_UNARY:
        return (1 if op in EXACT_FLOAT_UNARY else 4), None
    return 0, None


# -- elementwise binary ---------------------------------------------------------------

ARITH = ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "maximum", "minimum")
COMPARE = ("eq", "neq", "lt", "le", "gt", "ge")
LOGIC = ("logical_and", "logical_or", "logical_xor")
BINARY_SPELLINGS = {
    "add": ["T.add({0}, {1})", "{0} + {1}"], "sub": ["T.sub({0}, {1})", "{0} - {1}"],
    "mul": ["T.mul({0}, {1})", "{0} * {1}"], "truediv": ["T.true_div({0}, {1})", "{0} / {1}", "T.divide({0}, {1})"],
    "floordiv": ["T.floor_div({0}, {1})", "{0} // {1}"], "mod": ["T.mod({0}, {1})", "{0} % {1}"],
    "pow": ["T.pow({0}, {1})", "{0} ** {1}"], "maximum": ["T.maximum({0}, {1})"], "minimum": ["T.minimum({0}, {1})"],
    "eq": ["T.eq({0}, {1})"], "neq": ["T.neq({0}, {1})"], "lt": ["T.lt({0}, {1})", "{0} < {1}"],
    "le": ["T.le({0}, {1})", "{0} <= {1}"], "gt": ["T.gt({0}, {1})", "{0} > {1}"],
    "ge": ["T.ge({0}, {1})", "{0} >= {1}"],
    # (T.and_/&, T.or_/|, T.xor/^ are bitwise on integer tensors, as in Theano and NumPy)
    "logical_and": ["T.logical_and({0}, {1})"], "logical_or": ["T.logical_or({0}, {1})"],
    "logical_xor": ["T.logical_xor({0}, {1})"],
}


def binary_dtype(op, da, db):
    d = promote(da, db)
    if op in COMPARE or op in LOGIC:
        return "bool"
    if op == "truediv":
        return floaty(d)
    return d


def _int_pow(a, b):
    neg = b < 0
    r = np.power(a, np.where(neg, 0, b).astype(b.dtype))
    odd = (b % 2) != 0
    special = np.where(a == 1, 1, np.where(a == -1, np.where(odd, -1, 1), 0)).astype(a.dtype)
    return np.where(neg, special, r)


def binary_oracle(op, a, b, out_dtype):
    """``a``/``b`` already broadcast; computed in the promoted dtype as tcomp documents."""
    with np.errstate(all="ignore"):
        if op in LOGIC:
            fa, fb = a != 0, b != 0
            return {"logical_and": fa & fb, "logical_or": fa | fb, "logical_xor": fa ^ fb}[op]
        c = promote(a.dtype.name, b.dtype.name)
        if op == "truediv":
            c = floaty(c)
        a, b = as_dtype(a, c), as_dtype(b, c)
        if op in COMPARE:
            f = {"eq": np.equal, "neq": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
                 "ge": np.greater_equal}[op]
            return f(a, b)
        if c in FLOATS:
            f = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide,
                 "floordiv": np.floor_divide, "mod": np.mod, "pow": np.power, "maximum": np.maximum,
                 "minimum": np.minimum}[op]
            if op in ("add", "sub", "mul", "truediv", "pow"):
                return as_dtype(f(f64(a), f64(b)), c)
            return f(a, b)
        # integers (wrap like NumPy) and bool (maximum/minimum only)
        if op == "floordiv":
            return np.where(b == 0, 0, np.floor_divide(a, np.where(b == 0, 1, b).astype(c))).astype(c)
        if op == "mod":
            return np.where(b == 0, 0, np.mod(a, np.where(b == 0, 1, b).astype(c))).astype(c)
        if op == "pow":
            return _int_pow(a, b).astype(c)
        f = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "maximum": np.maximum,
             "minimum": np.minimum}[op]
        return f(a, b).astype(c)


def binary_noise(op, a, b, out):
    if out.dtype.name not in FLOATS:
        return 0, None
    if op == "pow":
        return 4, None
    return 1, None


# -- reductions ---------------------------------------------------------------------------

def reduce_dtype(op, d):
    if op in ("sum", "prod"):
        return DEFAULT_INT if d == "bool" or d in INTS and d != "int64" else d
    if op == "mean":
        return floaty(d)
    if op in ("argmax", "argmin"):
        return "int64"
    return d


def norm_axes(axis, nd):
    if axis is None:
        return tuple(range(nd))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(a % nd for a in axes))


def reduce_oracle(op, x, axis, keepdims):
    axes = norm_axes(axis, x.ndim)
    d = reduce_dtype(op, x.dtype.name)
    if op in ("max", "min", "argmax", "argmin") and any(x.shape[a] == 0 for a in axes):
        raise OracleError(ValueError, f"{op} over a zero-size axis")
    with np.errstate(all="ignore"):
        if op in ("argmax", "argmin"):
            rest = [i for i in range(x.ndim) if i not in axes]
            m = np.transpose(x, rest + list(axes))
            m = m.reshape(m.shape[:len(rest)] + (int(np.prod([x.shape[a] for a in axes])),))
            r = (np.argmax if op == "argmax" else np.argmin)(m, axis=-1)
            if keepdims:
                r = r.reshape(tuple(1 if i in axes else x.shape[i] for i in range(x.ndim)))
            return r.astype("int64")
        if not axes:
            return as_dtype(x, d).copy()
        if op in ("max", "min"):
            return (np.max if op == "max" else np.min)(x, axis=axes, keepdims=keepdims)
        if d in FLOATS:
            f = {"sum": np.sum, "prod": np.prod, "mean": np.mean}[op]
            with warnings.catch_warnings():  # the mean of an empty axis is nan, as tcomp's
                warnings.simplefilter("ignore", RuntimeWarning)
                return as_dtype(f(f64(x), axis=axes, keepdims=keepdims), d)
        f = {"sum": np.sum, "prod": np.prod}[op]
        return f(as_dtype(x, d), axis=axes, keepdims=keepdims).astype(d)


def reduce_noise(op, x, axis, keepdims, out):
    if out.dtype.name not in FLOATS:
        return 0, None
    axes = norm_axes(axis, x.ndim)
    n = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    if op in ("max", "min"):
        return 0, None
    e = eps(out.dtype.name)
    with np.errstate(all="ignore"):
        if op == "prod":
            return 2 + 2 * n, None
        s = np.sum(np.abs(f64(x)), axis=axes, keepdims=keepdims) if axes else np.abs(f64(x))
        if op == "mean":
            s = s / max(n, 1)
        return 2, 2 * e * (n + 1) * s


# -- nnet ---------------------------------------------------------------------------------

def softmax_oracle(op, x, axis):
    d = floaty(x.dtype.name)
    # over a zero-size axis: an empty softmax and logsumexp = log(0) = -inf, like SciPy (the
    # max below is then 0; fuzz_findings F2)
    xf = f64(as_dtype(x, d))
    with np.errstate(all="ignore"):
        m = np.max(xf, axis=axis, keepdims=True) if xf.shape[axis] else np.zeros_like(xf.sum(axis, keepdims=True))
        m = np.where(np.isfinite(m), m, 0)
        s = np.log(np.sum(np.exp(xf - m), axis=axis, keepdims=True))
        if op == "softmax":
            r = np.exp(xf - m - s)
        elif op == "log_softmax":
            r = xf - m - s
        else:
            r = s + m
    return as_dtype(r, d)


def softmax_noise(op, x, axis, out):
    n = x.shape[axis]
    e = eps(out.dtype.name)
    if op == "softmax":
        return 4 + 2 * n, None
    if op == "logsumexp_k":
        return 4, e * (n + 4) * (np.abs(f64(out)) + 1)
    mag = np.abs(f64(out)) + np.max(np.abs(f64(x)), axis=axis, keepdims=True)
    return 4, e * (n + 4) * (mag + 1)


# -- cast, where ---------------------------------------------------------------------------

def cast_undefined(x, d):
    """Where a float -> int cast of ``x`` to ``d`` has no defined value, or None for none:
    nan, +-inf and values whose truncation is outside ``d``'s range.  NumPy leaves these
    platform-dependent (C undefined behaviour; x86 gives the minimum integer, other machines
    saturate), so the oracle treats them as don't-care: ``cast_oracle`` gives tcomp's
    documented 0 and ``evaluate``'s random perturbed run another value (``cast_alternative``),
    so neither the element nor anything computed from it is judged."""
    if kind(d) not in "iu" or x.dtype.name not in FLOATS:
        return None
    bits = np.iinfo(d).bits
    lo, hi = (-2.0 ** (bits - 1), 2.0 ** (bits - 1)) if kind(d) == "i" else (0.0, 2.0 ** bits)
    with np.errstate(all="ignore"):
        t = np.trunc(f64(x))
        return ~(np.isfinite(t) & (t >= lo) & (t < hi))  # (bounds exact in float64: 2**63 is out)


def cast_alternative(d):
    """A value that differs from ``cast_oracle``'s 0 for an undefined cast to ``d``."""
    info = np.iinfo(d)
    return info.min if info.min < 0 else info.max


def cast_oracle(x, d):
    s = x.dtype.name
    if d == s:
        return x
    with np.errstate(all="ignore"):
        if d == "bool":
            return x != 0
        bad = cast_undefined(x, d)
        if bad is not None:
            return np.where(bad, 0, np.trunc(f64(x))).astype(d)
        return x.astype(d)


