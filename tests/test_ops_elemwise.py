"""Elementwise ops through the DSL against NumPy expressions written here.

Each (op, dtype) compiles one function whose outputs apply the op to inputs of several
shape kinds (scalar, vector, matrix, 3-d with static dims, named symbolic dims, empty), so
one compile covers every shape.  References are computed in float64 (float results) or
in the result's integer dtype, then rounded to the result dtype tcomp promises.
"""
import math

import numpy as np
import pytest
from conftest import ALL_DTYPES, TEST_DTYPES, check_result, compile_fn, rand_array

import tcomp.tensor as T

#: (type shape, value shape) pairs one unary function covers
UNARY_SHAPES = [
    ((), ()),
    ((None,), (5,)),
    ((None, None), (3, 4)),
    ((2, None, 4), (2, 3, 4)),
    (("n", 3), (4, 3)),
    ((None, 3), (0, 3)),
]

# -- unary ---------------------------------------------------------------------------------

_erf64 = np.vectorize(math.erf, otypes=["float64"])


def _halves(rng, dtype, shape):
    """Values with many exact halves, to pin down floor/ceil/round (half to even)."""
    if dtype in ("float32", "float64"):
        return (rng.integers(-12, 13, shape) / 4).astype(dtype)
    return rand_array(rng, dtype, shape)


def _domain(low, high):
    def make(rng, dtype, shape):
        if dtype == "bool":
            return rng.random(shape) < 0.5
        if dtype in ("float32", "float64"):
            return rng.uniform(low, high, shape).astype(dtype)
        lo = max(math.ceil(low), 0) if dtype == "uint8" else math.ceil(low)
        return rng.integers(lo, max(int(high), lo + 1), shape).astype(dtype)
    return make


_ANY = _domain(-5, 5)

# result kind: "same" (dtype kept, bool rejected), "float" (ints/bools -> float32), "bool"
# reference gets the input as float64 for "float" ops and unchanged otherwise.
UNARY = {
    "neg": (lambda x: -x, lambda x: np.subtract(np.zeros((), x.dtype), x), "same", _ANY),
    "abs": (lambda x: abs(x), lambda x: np.where(x < 0, -x, x), "same", _ANY),
    "sign": (T.sign, lambda x: (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype), "same", _ANY),
    "floor": (T.floor, lambda x: np.floor(x) if x.dtype.kind == "f" else x, "same", _halves),
    "ceil": (T.ceil, lambda x: -np.floor(-x) if x.dtype.kind == "f" else x, "same", _halves),
    "round": (T.round, lambda x: np.rint(x) if x.dtype.kind == "f" else x, "same", _halves),
    "relu": (T.nnet.relu, lambda x: np.where(x > 0, x, np.zeros((), x.dtype)), "same", _ANY),
    "exp": (T.exp, np.exp, "float", _ANY),
    "log": (T.log, np.log, "float", _domain(0.1, 9)),
    "log1p": (T.log1p, np.log1p, "float", _domain(-0.9, 9)),
    "expm1": (T.expm1, np.expm1, "float", _ANY),
    "sqrt": (T.sqrt, lambda x: x ** 0.5, "float", _domain(0, 9)),
    "tanh": (T.tanh, lambda x: 1 - 2 / (np.exp(2 * x) + 1), "float", _ANY),
    "sigmoid": (T.nnet.sigmoid, lambda x: 1 / (1 + np.exp(-x)), "float", _ANY),
    "softplus": (T.nnet.softplus, lambda x: np.log1p(np.exp(x)), "float", _ANY),
    "sin": (T.sin, np.sin, "float", _ANY),
    "cos": (T.cos, np.cos, "float", _ANY),
    "erf": (T.erf, _erf64, "float", _ANY),
    "logical_not": (T.logical_not, lambda x: x == 0, "bool", _ANY),  # (~x of ints is bitwise)
}


def unary_result_dtype(kind, dtype):
    if kind == "same":
        return dtype
    if kind == "bool":
        return "bool"
    return dtype if dtype in ("float32", "float64") else "float32"


@pytest.mark.parametrize("dtype", TEST_DTYPES)
@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary(op, dtype, backend, rng):
    build, ref, kind, make = UNARY[op]
    xs = [T.tensor(f"x{i}", dtype=dtype, shape=s) for i, (s, _) in enumerate(UNARY_SHAPES)]
    if kind == "same" and dtype == "bool":
        with pytest.raises(TypeError, match=op):
            build(xs[0])
        return
    outs = [build(x) for x in xs]
    want_dtype = unary_result_dtype(kind, dtype)
    assert all(o.dtype == want_dtype for o in outs), [o.dtype for o in outs]
    f = compile_fn(xs, outs, backend, expect_ops={op})
    values = [make(rng, dtype, vs) for _, vs in UNARY_SHAPES]
    for (ts, vs), v, got in zip(UNARY_SHAPES, values, f(*values)):
        arg = v.astype("float64") if kind == "float" else v
        with np.errstate(all="ignore"):
            want = np.asarray(ref(arg))
        check_result(got, want, want_dtype, f"{op}({dtype}{list(ts)}) value shape {vs}")


def test_unary_special_float_values(backend):
    """inf/nan/signed zero behave as IEEE/NumPy say (the CPU backend's polynomials must agree)."""
    x = T.dvector("x")
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-300, 700.0, -750.0])
    outs = [T.exp(x), T.tanh(x), T.nnet.sigmoid(x), T.nnet.softplus(x), abs(x), T.nnet.relu(x)]
    f = compile_fn([x], outs, backend, expect_ops={"exp", "tanh", "sigmoid", "softplus", "abs", "relu"})
    with np.errstate(all="ignore"):
        wants = [np.exp(special), np.tanh(special),
                 np.where(special >= 0, 1 / (1 + np.exp(-special)), np.exp(special) / (1 + np.exp(special))),
                 np.maximum(special, 0) + np.log1p(np.exp(-np.abs(special))), np.fabs(special),
                 np.where(special > 0, special, 0.0)]
    wants[5][4] = np.nan  # relu(nan) is nan (NumPy's maximum propagates it)
    for name, got, want in zip(["exp", "tanh", "sigmoid", "softplus", "abs", "relu"], f(special), wants):
        check_result(got, want, "float64", name)


def test_sigmoid_softplus_extremes_float32(backend):
    """Large |x| must not overflow to nan/inf in float32 (stable formulations)."""
    x = T.fvector("x")
    v = np.array([-200, -90, -20, 0, 20, 90, 200], "float32")
    f = compile_fn([x], [T.nnet.sigmoid(x), T.nnet.softplus(x)], backend)
    sig, sp = f(v)
    v64 = v.astype("float64")
    check_result(sig, np.exp(-np.logaddexp(0, -v64)), "float32", "sigmoid")
    check_result(sp, np.logaddexp(0, v64), "float32", "softplus")
    assert np.isfinite(sp).all() and np.isfinite(sig).all()


# -- binary --------------------------------------------------------------------------------

#: (a type shape, a value shape, b type shape, b value shape)
BINARY_SHAPES = [
    ((None, None), (3, 4), (None, None), (3, 4)),
    ((), (), (None, None), (3, 4)),            # scalar with matrix
    ((1, None), (1, 4), (None, None), (3, 4)),  # T.row-style static 1 broadcasts
    ((None, 1), (3, 1), (1, None), (1, 4)),     # col with row -> (3, 4)
    ((None,), (4,), (None, None), (3, 4)),      # rank broadcast
    (("n", 3), (5, 3), ("n", 3), (5, 3)),       # named symbolic dims
    ((2, None, 4), (2, 3, 4), (None, 1), (3, 1)),
    ((None, 3), (0, 3), (1, 3), (1, 3)),        # empty result
    ((), (), (), ()),
]


def _nonzero(make):
    def run(rng, dtype, shape):
        v = make(rng, dtype, shape)
        if dtype != "bool":
            v = np.where(v == 0, np.ones((), dtype), v)
        return v
    return run


def _pow_base(rng, dtype, shape):
    if dtype in ("float32", "float64"):
        return rng.uniform(0.5, 3, shape).astype(dtype)
    return _domain(-3, 4)(rng, dtype, shape)


def _pow_exp(rng, dtype, shape):
    if dtype in ("float32", "float64"):
        return rng.uniform(-2, 2, shape).astype(dtype)
    return _domain(0, 4)(rng, dtype, shape)


def _floor_div_ref(a, b):
    return np.floor(a.astype("float64") / b.astype("float64"))


def _mod_ref(a, b):
    a64, b64 = a.astype("float64"), b.astype("float64")
    return a64 - np.floor(a64 / b64) * b64


def _pow_ref(a, b):
    if a.dtype.kind == "f":
        return a.astype("float64") ** b.astype("float64")
    return np.array([int(x) ** int(y) for x, y in np.broadcast(a, b)], dtype="int64").reshape(
        np.broadcast(a, b).shape)


# op -> (DSL builder, reference(a, b) on arrays of the promoted dtype, result kind, a maker, b maker)
# result kinds: "arith" (promoted dtype; bool rejected), "minmax" (promoted, bool allowed),
# "div" (float), "bool" (comparisons/logical).
BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b, "arith", _ANY, _ANY),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, "arith", _ANY, _ANY),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, "arith", _ANY, _ANY),
    "truediv": (lambda a, b: a / b, lambda a, b: a.astype("float64") / b.astype("float64"), "div", _ANY,
                _nonzero(_ANY)),
    "floordiv": (lambda a, b: a // b, _floor_div_ref, "arith", _ANY, _nonzero(_ANY)),
    "mod": (lambda a, b: a % b, _mod_ref, "arith", _ANY, _nonzero(_ANY)),
    "pow": (lambda a, b: a ** b, _pow_ref, "arith", _pow_base, _pow_exp),
    "maximum": (T.maximum, lambda a, b: np.where(a > b, a, b), "minmax", _ANY, _ANY),
    "minimum": (T.minimum, lambda a, b: np.where(a < b, a, b), "minmax", _ANY, _ANY),
    "eq": (T.eq, lambda a, b: a == b, "bool", _ANY, _ANY),
    "neq": (T.neq, lambda a, b: a != b, "bool", _ANY, _ANY),
    "lt": (lambda a, b: a < b, lambda a, b: a < b, "bool", _ANY, _ANY),
    "le": (lambda a, b: a <= b, lambda a, b: a <= b, "bool", _ANY, _ANY),
    "gt": (lambda a, b: a > b, lambda a, b: a > b, "bool", _ANY, _ANY),
    "ge": (lambda a, b: a >= b, lambda a, b: a >= b, "bool", _ANY, _ANY),
    "logical_and": (T.logical_and, lambda a, b: (a != 0) & (b != 0), "bool", _ANY, _ANY),
    "logical_or": (T.logical_or, lambda a, b: (a != 0) | (b != 0), "bool", _ANY, _ANY),
    "logical_xor": (T.logical_xor, lambda a, b: (a != 0) != (b != 0), "bool", _ANY, _ANY),
}


def _binary_result_dtype(kind, dtype):
    if kind == "bool":
        return "bool"
    if kind == "div":
        return dtype if dtype in ("float32", "float64") else "float32"
    return dtype


def _with_ties(rng, a, b):
    """Make some b elements equal to a so comparisons see ties."""
    if a.shape == b.shape and a.size:
        mask = rng.random(a.shape) < 0.3
        b = np.where(mask, a, b).astype(b.dtype)
    return b


@pytest.mark.parametrize("dtype", TEST_DTYPES)
@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary(op, dtype, backend, rng):
    build, ref, kind, make_a, make_b = BINARY[op]
    a_vars = [T.tensor(f"a{i}", dtype=dtype, shape=s[0]) for i, s in enumerate(BINARY_SHAPES)]
    b_vars = [T.tensor(f"b{i}", dtype=dtype, shape=s[2]) for i, s in enumerate(BINARY_SHAPES)]
    if kind == "arith" and dtype == "bool":
        with pytest.raises(TypeError, match=op):
            build(a_vars[0], b_vars[0])
        return
    outs = [build(a, b) for a, b in zip(a_vars, b_vars)]
    want_dtype = _binary_result_dtype(kind, dtype)
    assert all(o.dtype == want_dtype for o in outs), [o.dtype for o in outs]
    f = compile_fn(a_vars + b_vars, outs, backend, expect_ops={op})
    a_vals = [make_a(rng, dtype, s[1]) for s in BINARY_SHAPES]
    b_vals = [make_b(rng, dtype, s[3]) for s in BINARY_SHAPES]
    if kind in ("bool", "minmax"):
        b_vals = [_with_ties(rng, a, b) for a, b in zip(a_vals, b_vals)]
    results = f(*a_vals, *b_vals)
    for shapes, a, b, got in zip(BINARY_SHAPES, a_vals, b_vals, results):
        with np.errstate(all="ignore"):
            want = np.asarray(ref(a, b))
        check_result(got, want, want_dtype, f"{op}({dtype}{list(shapes[0])}, {dtype}{list(shapes[2])})")


def test_integer_floordiv_mod_follow_python_signs_and_zero_divisor(backend):
    """Integer // and % round toward -inf (Python/NumPy, not C); a zero divisor gives 0."""
    a, b = T.ivector("a"), T.ivector("b")
    f = compile_fn([a, b], [a // b, a % b], backend, expect_ops={"floordiv", "mod"})
    av = np.array([7, -7, 7, -7, 0, 5, -128, 9], "int32")
    bv = np.array([2, 2, -2, -2, 3, 0, 3, -4], "int32")
    q, r = f(av, bv)
    want_q = [7 // 2, -7 // 2, 7 // -2, -7 // -2, 0, 0, -128 // 3, 9 // -4]
    want_r = [7 % 2, -7 % 2, 7 % -2, -7 % -2, 0, 0, -128 % 3, 9 % -4]
    check_result(q, np.array(want_q), "int32", "floordiv")
    check_result(r, np.array(want_r), "int32", "mod")


def test_float_mod_sign_follows_divisor(backend):
    a, b = T.dvector("a"), T.dvector("b")
    f = compile_fn([a, b], a % b, backend, expect_ops={"mod"})
    av, bv = np.array([5.5, -5.5, 5.5, -5.5]), np.array([2.0, 2.0, -2.0, -2.0])
    check_result(f(av, bv), np.array([5.5 - 2 * 2, -5.5 + 3 * 2, 5.5 - 3 * 2, -5.5 + 2 * 2]), "float64", "mod")


def test_integer_pow_negative_exponent(backend):
    """tcomp defines int ** negative int as the truncated value: 0, except bases 1 and -1."""
    a, b = T.lvector("a"), T.lvector("b")
    f = compile_fn([a, b], a ** b, backend, expect_ops={"pow"})
    av = np.array([2, 1, -1, -1, 3, 0, -2], "int64")
    bv = np.array([-1, -5, -3, -2, 0, 2, 3], "int64")
    check_result(f(av, bv), np.array([0, 1, -1, 1, 1, 0, -8]), "int64", "pow")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_pow_negative_bases_and_special_exponents(dtype, backend):
    """Negative bases with integral exponents are real (x**2, x**3, x**-1); with fractional
    exponents they are nan; x**0 is 1 even for 0 and nan bases (C99 pow / NumPy).  (-inf)**0.5
    is not checked: NumPy itself gives nan (0-d exponent, its sqrt shortcut) or inf (C pow)."""
    x = T.tensor("x", dtype=dtype, shape=(None,))
    outs = [x ** 2, x ** 3, x ** 0.5, 2 ** x, x ** -1, x ** 0, x ** -2.0]
    assert all(o.dtype == dtype for o in outs)
    f = compile_fn([x], outs, backend, expect_ops={"pow"})
    v = np.array([-2.0, -0.5, 0.0, 1.5, -3.0, np.inf, -np.inf, np.nan], dtype)
    with np.errstate(all="ignore"):
        wants = [v * v, v * v * v, np.sqrt(v), np.exp2(v.astype("float64")), 1 / v, np.ones_like(v), 1 / (v * v)]
    for name, got, want in zip(["x**2", "x**3", "x**0.5", "2**x", "x**-1", "x**0", "x**-2.0"], f(v), wants):
        keep = v != -np.inf if name == "x**0.5" else slice(None)
        check_result(got[keep], want[keep], dtype, name)


def test_integer_wraparound(backend):
    """Fixed-width integer arithmetic wraps (two's complement), as NumPy and C do."""
    a, b = T.bvector("a"), T.bvector("b")
    u = T.vector("u", dtype="uint8")
    f = compile_fn([a, b, u], [a + b, a * b, -a, u - 1, a ** 5], backend)
    av = np.array([100, -100, 127], "int8")
    bv = np.array([100, -100, 2], "int8")
    s, p, n, d, pw = f(av, bv, np.array([0, 5], "uint8"))
    check_result(pw, np.array([(100 ** 5 + 128) % 256 - 128, ((-100) ** 5 + 128) % 256 - 128,
                               (127 ** 5 + 128) % 256 - 128]), "int8", "pow")
    check_result(s, np.array([200 - 256, -200 + 256, 129 - 256]), "int8", "add")
    check_result(p, np.array([(10000 + 128) % 256 - 128, (10000 + 128) % 256 - 128, (254 + 128) % 256 - 128]),
                 "int8", "mul")
    check_result(n, np.array([-100, 100, -127]), "int8", "neg")
    check_result(d, np.array([255, 4]), "uint8", "sub")


def test_truediv_by_zero_gives_ieee(backend):
    a, b = T.ivector("a"), T.ivector("b")
    f = compile_fn([a, b], a / b, backend, expect_ops={"truediv"})
    got = f(np.array([1, -1, 0], "int32"), np.array([0, 0, 0], "int32"))
    check_result(got, np.array([np.inf, -np.inf, np.nan]), "float32", "truediv")


# -- promotion ------------------------------------------------------------------------------

#: (a dtype, b dtype) -> result of a + b, written out from JAX's lattice (not computed).
PROMOTION = {
    ("int8", "uint8"): "int16",
    ("int16", "uint8"): "int16",
    ("int32", "uint8"): "int32",
    ("uint8", "int64"): "int64",
    ("uint8", "uint8"): "uint8",
    ("int8", "int64"): "int64",
    ("int8", "int32"): "int32",
    ("bool", "int8"): "int8",
    ("bool", "uint8"): "uint8",
    ("bool", "float64"): "float64",
    ("int8", "float32"): "float32",
    ("int32", "float32"): "float32",
    ("int64", "float32"): "float32",
    ("uint8", "float64"): "float64",
    ("float32", "float64"): "float64",
    ("int16", "float32"): "float32",
}


@pytest.mark.parametrize("pair", sorted(PROMOTION), ids=lambda p: f"{p[0]}+{p[1]}")
def test_mixed_dtype_promotion(pair, backend, rng):
    da, db = pair
    want = PROMOTION[pair]
    a, b = T.tensor("a", dtype=da, shape=(None, 3)), T.tensor("b", dtype=db, shape=(1, 3))
    outs = [a + b, b * a, T.maximum(a, b), a / b, a < b]
    assert [o.dtype for o in outs] == [want, want, want, want if want.startswith("float") else "float32", "bool"]
    f = compile_fn([a, b], outs, backend)
    av, bv = rand_array(rng, da, (4, 3)), rand_array(rng, db, (1, 3))
    bv = np.where(bv == 0, np.ones((), db), bv)
    s, p, m, q, lt = f(av, bv)
    a64, b64 = av.astype("float64"), bv.astype("float64")
    check_result(s, a64 + b64, want, "add")
    check_result(p, a64 * b64, want, "mul")
    check_result(m, np.where(a64 > b64, a64, b64), want, "maximum")
    check_result(q, a64 / b64, q.dtype.name if want.startswith("float") else "float32", "truediv")
    check_result(lt, a64 < b64, "bool", "lt")


#: (tensor dtype, Python scalar, op) -> result dtype: Python scalars are weak.
WEAK = [
    ("int8", 1, "add", "int8"),
    ("int8", 1.5, "add", "float32"),
    ("uint8", 3, "mul", "uint8"),
    ("int32", 2, "truediv", "float32"),
    ("int64", 2.0, "sub", "float32"),
    ("float64", 1.5, "add", "float64"),
    ("float32", 2, "mul", "float32"),
    ("float64", 3, "truediv", "float64"),
    ("bool", 1, "add", "int64"),
    ("bool", 0.5, "mul", "float32"),
    ("int8", 2, "pow", "int8"),
    ("int16", 3, "mod", "int16"),
    ("int8", 1, "lt", "bool"),
]

_PY_OPS = {"add": (lambda x, s: x + s, lambda x, s: s + x), "sub": (lambda x, s: x - s, lambda x, s: s - x),
           "mul": (lambda x, s: x * s, lambda x, s: s * x), "truediv": (lambda x, s: x / s, lambda x, s: s / x),
           "pow": (lambda x, s: x ** s, lambda x, s: s ** x), "mod": (lambda x, s: x % s, lambda x, s: s % x),
           "lt": (lambda x, s: x < s, lambda x, s: s < x)}


@pytest.mark.parametrize("dtype,scalar,op,want", WEAK, ids=lambda v: str(v))
def test_weak_python_scalars(dtype, scalar, op, want, backend, rng):
    x = T.tensor("x", dtype=dtype, shape=(None,))
    fwd, rev = _PY_OPS[op]
    outs = [fwd(x, scalar), rev(x, scalar)]
    assert [o.dtype for o in outs] == [want, want]
    f = compile_fn([x], outs, backend, expect_ops={op})
    xv = _domain(1, 4)(rng, dtype, (6,))
    if dtype == "bool":
        xv = np.array([True, False, True, True, False, True])
    got_f, got_r = f(xv)
    x64 = xv.astype("float64")
    check_result(got_f, fwd(x64, float(scalar)), want, f"x {op} {scalar}")
    with np.errstate(divide="ignore"):
        want_r = rev(x64, float(scalar))
    if op == "mod":  # scalar % 0 is 0 for ints in tcomp; xv has no zeros except bool False
        want_r = np.where(x64 == 0, 0, want_r)
    check_result(got_r, want_r, want, f"{scalar} {op} x")


def test_weak_scalar_overflow_is_an_error():
    with pytest.raises(OverflowError, match="int8"):
        T.bvector("x") + 300
    with pytest.raises(OverflowError, match="uint8"):
        T.vector("u", dtype="uint8") * -1


# -- where / switch / clip ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", TEST_DTYPES)
def test_switch_and_where(dtype, backend, rng):
    c = T.tensor("c", dtype="bool", shape=(None, 1))
    ci = T.tensor("ci", dtype="int32", shape=(None, None))  # non-bool condition: nonzero is true
    a = T.tensor("a", dtype=dtype, shape=(1, None))
    b = T.tensor("b", dtype=dtype, shape=(None, None))
    s0 = T.tensor("s0", dtype="bool", shape=())
    outs = [T.switch(c, a, b), T.where(ci, b, a), T.switch(s0, a, b), T.switch(c, a, 0)]
    weak_dtype = "int64" if dtype == "bool" else dtype  # a weak int lifts bool to the default int
    assert [o.dtype for o in outs] == [dtype] * 3 + [weak_dtype]
    f = compile_fn([c, ci, a, b, s0], outs, backend, expect_ops={"where"})
    cv = rng.random((3, 1)) < 0.5
    civ = rng.integers(-1, 2, (3, 4)).astype("int32")
    av, bv = rand_array(rng, dtype, (1, 4)), rand_array(rng, dtype, (3, 4))
    for s in (True, False):
        r0, r1, r2, r3 = f(cv, civ, av, bv, np.bool_(s))
        check_result(r0, np.where(np.broadcast_to(cv, (3, 4)), np.broadcast_to(av, (3, 4)), bv), dtype, "switch")
        check_result(r1, np.where(civ != 0, bv, np.broadcast_to(av, (3, 4))), dtype, "where int cond")
        check_result(r2, np.broadcast_to(av, (3, 4)) if s else bv, dtype, "switch scalar cond")
        check_result(r3, np.where(np.broadcast_to(cv, (3, 4)), np.broadcast_to(av, (3, 4)), 0), weak_dtype,
                     "switch weak zero")


def test_switch_promotes(backend, rng):
    c = T.bvector("c")
    a, b = T.bvector("a"), T.fvector("b")
    outs = [T.switch(T.gt(c, 0), a, b), T.switch(T.gt(c, 0), a, 1.5), T.switch(T.gt(c, 0), 2, a)]
    assert [o.dtype for o in outs] == ["float32", "float32", "int8"]
    f = compile_fn([c, a, b], outs, backend)
    cv, av, bv = (np.array([1, -1, 0], "int8"), np.array([5, 6, 7], "int8"), np.array([.5, .25, .125], "float32"))
    r0, r1, r2 = f(cv, av, bv)
    check_result(r0, np.array([5, .25, .125]), "float32", "switch int8/float32")
    check_result(r1, np.array([5, 1.5, 1.5]), "float32", "switch int8/1.5")
    check_result(r2, np.array([2, 6, 7]), "int8", "switch 2/int8")


@pytest.mark.parametrize("dtype", ["int8", "int32", "uint8", "float32", "float64"])
def test_clip(dtype, backend, rng):
    x = T.tensor("x", dtype=dtype, shape=(None, None))
    lo = T.tensor("lo", dtype=dtype, shape=(1, None))
    outs = [T.clip(x, 1, 3), T.clip(x, lo, 4)]
    assert [o.dtype for o in outs] == [dtype, dtype]
    f = compile_fn([x, lo], outs, backend, expect_ops={"maximum", "minimum"})
    xv = rand_array(rng, dtype, (3, 5), -6, 7)
    lov = rand_array(rng, dtype, (1, 5), 0, 3)
    r0, r1 = f(xv, lov)
    x64 = xv.astype("float64")
    check_result(r0, np.minimum(np.maximum(x64, 1), 3), dtype, "clip(x, 1, 3)")
    check_result(r1, np.minimum(np.maximum(x64, lov.astype("float64")), 4), dtype, "clip(x, lo, 4)")


# -- cast -----------------------------------------------------------------------------------

def _cast_ref(v, dst):
    """Independent statement of tcomp's cast: float -> int truncates toward zero, and
    nan/inf/out-of-range give 0; int -> narrower int wraps; anything -> bool is != 0."""
    if dst == "bool":
        return v != 0
    if v.dtype.kind == "f" and np.dtype(dst).kind in "iu":
        info = np.iinfo(dst)
        out = []
        for x in v.ravel().tolist():
            ok = math.isfinite(x) and info.min <= math.trunc(x) <= info.max
            out.append(math.trunc(x) if ok else 0)
        return np.array(out, dtype="int64").reshape(v.shape)
    if v.dtype.kind in "biu" and np.dtype(dst).kind in "iu":
        bits = 8 * np.dtype(dst).itemsize
        out = [int(x) % (1 << bits) for x in v.ravel().tolist()]
        if np.dtype(dst).kind == "i":
            out = [x - (1 << bits) if x >= 1 << (bits - 1) else x for x in out]
        return np.array(out, dtype="int64").reshape(v.shape)
    return v.astype("float64") if v.dtype != np.float64 else v


_CAST_SAMPLES = {
    "bool": np.array([True, False, True, True]),
    "int8": np.array([-128, -1, 0, 1, 127, 100], "int8"),
    "int16": np.array([-300, -1, 0, 255, 256, 32767], "int16"),
    "int32": np.array([-70000, -129, 300, 0, 1, 2 ** 31 - 1], "int32"),
    "int64": np.array([-(2 ** 40), -1, 0, 1, 257, 2 ** 33 + 5], "int64"),
    "uint8": np.array([0, 1, 127, 128, 255, 200], "uint8"),
    "float32": np.array([-3.7, -0.5, 0.0, 0.9, 2.5, 127.9, 300.2, -129.5, np.nan, np.inf, 1e10], "float32"),
    "float64": np.array([-3.7, -0.5, 0.0, 0.9, 2.5, 255.9, 256.0, -1e300, np.nan, -np.inf, 1e-320, 3e38 * 10]),
}


@pytest.mark.parametrize("src", ALL_DTYPES)
def test_cast(src, backend):
    x = T.tensor("x", dtype=src, shape=(None,))
    dsts = [d for d in ALL_DTYPES if d != src]
    outs = [T.cast(x, d) if i % 2 else x.astype(d) for i, d in enumerate(dsts)]
    assert [o.dtype for o in outs] == dsts
    assert T.cast(x, src) is x  # casting to the same dtype adds no node
    f = compile_fn([x], outs, backend, expect_ops={"cast"})
    v = _CAST_SAMPLES[src]
    for d, got in zip(dsts, f(v)):
        with np.errstate(all="ignore"):
            want = _cast_ref(v, d)
        check_result(got, want, d, f"cast {src} -> {d} of {v.tolist()}")


def test_cast_bad_dtype():
    with pytest.raises(TypeError, match="complex128"):
        T.cast(T.vector("x"), "complex128")


def test_runtime_shape_mismatch_raises(backend):
    """Symbolic dims never broadcast: a mismatch at run time is an error, never garbage."""
    a, b = T.vector("a"), T.vector("b")
    f = compile_fn([a, b], a + b, backend)
    with pytest.raises(ValueError):
        f(np.ones(3, "float32"), np.ones(1, "float32"))
    m = T.matrix("m", shape=("n", 2))
    v = T.vector("v", shape=("n",))
    g = compile_fn([m, v], m.sum(axis=1) + v, backend)
    with pytest.raises(ValueError):
        g(np.ones((3, 2), "float32"), np.ones(4, "float32"))
    check_result(g(np.ones((3, 2), "float32"), np.ones(3, "float32")), np.full(3, 3.0), "float32", "named dims")
