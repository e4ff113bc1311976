"""Reductions, softmax-family (nnet) ops and dot/matmul through the DSL against NumPy.

References are computed in float64 (or int64 for integer results, so fixed-width
wraparound is reproduced by the final cast) and rounded to the dtype tcomp promises:
sum/prod of small ints and bools accumulate in int64, mean of ints is floatX, arg-reductions
are int64, softmax of ints is floatX.
"""
import numpy as np
import pytest
from conftest import FLOAT_DTYPES, TEST_DTYPES, check_result, compile_fn, rand_array

import tcomp.tensor as T

# -- reductions ------------------------------------------------------------------------------


def _sum_dtype(d):
    return d if d in ("int64", "float32", "float64") else "int64"


def _mean_dtype(d):
    return d if d in FLOAT_DTYPES else "float32"


def _wide(x):
    return x.astype("float64") if x.dtype.kind in "f" else x.astype("int64")


def _arg_ref(fn):
    """arg-reduction over several axes: the index into those axes flattened in C order."""
    def run(x, axes, keepdims):
        rest = [i for i in range(x.ndim) if i not in axes]
        size = int(np.prod([x.shape[i] for i in axes]))
        moved = np.transpose(x, rest + list(axes)).reshape([x.shape[i] for i in rest] + [size])
        r = fn(moved, axis=-1)
        if keepdims:
            r = r.reshape([1 if i in axes else x.shape[i] for i in range(x.ndim)])
        return r
    return run


def _np_reduce(fn, widen=True):
    def run(x, axes, keepdims):
        if not axes:
            return _wide(x) if widen else x
        return fn(_wide(x) if widen else x, axis=tuple(axes), keepdims=keepdims)
    return run


# op -> (DSL builder(x, axis, keepdims), reference(x, axes, keepdims), result dtype rule, allows empty axis)
REDUCTIONS = {
    "sum": (lambda x, a, k: x.sum(axis=a, keepdims=k), _np_reduce(np.sum), _sum_dtype, True),
    "prod": (lambda x, a, k: T.prod(x, axis=a, keepdims=k), _np_reduce(np.prod), _sum_dtype, True),
    "max": (lambda x, a, k: T.max(x, axis=a, keepdims=k), _np_reduce(np.max, widen=False), lambda d: d, False),
    "min": (lambda x, a, k: x.min(axis=a, keepdims=k), _np_reduce(np.min, widen=False), lambda d: d, False),
    "mean": (lambda x, a, k: T.mean(x, axis=a, keepdims=k),
             _np_reduce(lambda x, axis, keepdims: np.mean(x.astype("float64"), axis=axis, keepdims=keepdims)),
             _mean_dtype, True),
    "argmax": (lambda x, a, k: x.argmax(axis=a, keepdims=k), _arg_ref(np.argmax), lambda d: "int64", False),
    "argmin": (lambda x, a, k: T.argmin(x, axis=a, keepdims=k), _arg_ref(np.argmin), lambda d: "int64", False),
}

#: (type shape, value shape, axis as the user writes it, keepdims)
REDUCE_CASES = [
    ((2, None, 4), (2, 3, 4), None, False),
    ((2, None, 4), (2, 3, 4), 0, False),
    ((2, None, 4), (2, 3, 4), 1, True),
    ((2, None, 4), (2, 3, 4), -1, False),
    ((2, None, 4), (2, 3, 4), (0, 2), False),
    ((2, None, 4), (2, 3, 4), (2, 0), True),
    ((None,), (7,), 0, False),
    ((None,), (7,), None, True),
    (("n", 3), (5, 3), 0, False),
    ((None, 3), (0, 3), 1, False),   # empty result
    ((1, None), (1, 6), 1, True),
]
#: reductions over an empty axis (only where the op has an identity)
EMPTY_AXIS_CASES = [((None, 3), (0, 3), 0, False), ((2, None), (2, 0), None, False)]


def _reduce_values(op, rng, dtype, shape):
    if op == "prod":  # small magnitudes so float32 and int64 products stay exact-ish
        if dtype in FLOAT_DTYPES:
            return rng.uniform(0.5, 1.5, shape).astype(dtype)
        if dtype == "bool":
            return rng.random(shape) < 0.8
        choices = np.array([1, 2, 3] if dtype == "uint8" else [-2, -1, 1, 2])
        return rng.choice(choices, shape).astype(dtype)
    if dtype in FLOAT_DTYPES:
        return rand_array(rng, dtype, shape)
    return rand_array(rng, dtype, shape, -3, 3)  # narrow range: many ties for argmax/argmin


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # mean over an empty axis is nan (0/0)
@pytest.mark.parametrize("dtype", TEST_DTYPES)
@pytest.mark.parametrize("op", sorted(REDUCTIONS))
def test_reduction(op, dtype, backend, rng):
    build, ref, rule, allows_empty = REDUCTIONS[op]
    cases = REDUCE_CASES + (EMPTY_AXIS_CASES if allows_empty else [])
    xs = [T.tensor(f"x{i}", dtype=dtype, shape=c[0]) for i, c in enumerate(cases)]
    outs = [build(x, c[2], c[3]) for x, c in zip(xs, cases)]
    want_dtype = rule(dtype)
    assert all(o.dtype == want_dtype for o in outs), [o.dtype for o in outs]
    f = compile_fn(xs, outs, backend, expect_ops={op})
    values = [_reduce_values(op, rng, dtype, c[1]) for c in cases]
    for c, v, got in zip(cases, values, f(*values)):
        axes = tuple(range(v.ndim)) if c[2] is None else tuple(
            sorted(a % v.ndim for a in ((c[2],) if isinstance(c[2], int) else c[2])))
        with np.errstate(all="ignore"):
            want = np.asarray(ref(v, axes, c[3]))
        check_result(got, want, want_dtype, f"{op}({dtype}{list(c[0])} value {c[1]}, axis={c[2]}, keepdims={c[3]})")


def test_max_of_static_empty_axis_is_a_build_error():
    x = T.matrix("x", shape=(0, 3))
    with pytest.raises(ValueError, match="max"):
        T.max(x, axis=0)
    with pytest.raises(ValueError, match="argmin"):
        x.argmin(axis=0)


def test_reduction_bad_axis_names_variable():
    x = T.tensor3("volume")
    with pytest.raises(ValueError, match="volume"):
        x.sum(axis=3)
    with pytest.raises(ValueError, match="repeated"):
        x.mean(axis=(1, -2))


def test_var_std_and_float_nan_in_max(backend):
    x = T.dmatrix("x")
    f = compile_fn([x], [T.var(x, axis=0), T.std(x), T.max(x, axis=1)], backend)
    v = np.array([[1.0, 2.0, 4.0], [3.0, 5.0, np.nan]])
    var, std, mx = f(v)
    check_result(var, np.array([1.0, 2.25, np.nan]), "float64", "var")
    check_result(std, np.array(np.nan), "float64", "std")
    check_result(mx, np.array([4.0, np.nan]), "float64", "max propagates nan")


# -- softmax family ----------------------------------------------------------------------------

def _softmax_ref(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _logsumexp_ref(x, axis, keepdims):
    m = x.max(axis=axis, keepdims=True)
    r = m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))
    return r if keepdims else np.squeeze(r, axis=axis)


#: (type shape, value shape, axis, keepdims for logsumexp)
SOFTMAX_CASES = [
    ((None, None), (3, 5), -1, False),
    ((None, None), (3, 5), 0, True),
    ((None,), (6,), 0, False),
    ((2, None, 4), (2, 3, 4), 1, False),
    (("n", 4), (3, 4), 1, True),
    ((None, 1), (4, 1), 1, False),  # size-1 axis: softmax 1, logsumexp == x
    ((None, 3), (0, 3), 1, False),  # empty
]


@pytest.mark.parametrize("dtype", ["int8", "int32", "uint8", "bool", "float32", "float64"])
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
def test_softmax_family(op, dtype, backend, rng):
    xs = [T.tensor(f"x{i}", dtype=dtype, shape=c[0]) for i, c in enumerate(SOFTMAX_CASES)]
    if op == "softmax":
        outs = [T.nnet.softmax(x, axis=c[2]) for x, c in zip(xs, SOFTMAX_CASES)]
    elif op == "log_softmax":
        outs = [T.nnet.log_softmax(x, axis=c[2]) for x, c in zip(xs, SOFTMAX_CASES)]
    else:
        outs = [T.logsumexp(x, axis=c[2], keepdims=c[3]) for x, c in zip(xs, SOFTMAX_CASES)]
    want_dtype = dtype if dtype in FLOAT_DTYPES else "float32"
    assert all(o.dtype == want_dtype for o in outs)
    f = compile_fn(xs, outs, backend, expect_ops={op})
    values = [rand_array(rng, dtype, c[1]) for c in SOFTMAX_CASES]
    for c, v, got in zip(SOFTMAX_CASES, values, f(*values)):
        x = v.astype("float64")
        axis = c[2] % x.ndim
        if op == "softmax":
            want = _softmax_ref(x, axis)
        elif op == "log_softmax":
            want = np.log(_softmax_ref(x, axis))
        else:
            want = _logsumexp_ref(x, axis, c[3])
        check_result(got, want, want_dtype, f"{op}({dtype}{list(c[0])}, axis={c[2]})")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_softmax_family_is_stable_for_large_inputs(dtype, backend):
    x = T.tensor("x", dtype=dtype, shape=(None, None))
    f = compile_fn([x], [T.nnet.softmax(x), T.nnet.log_softmax(x), T.logsumexp(x, axis=1)], backend)
    v = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1002.0, -1001.0]], dtype)
    sm, lsm, lse = f(v)
    shifted = v.astype("float64") - v.astype("float64").max(axis=1, keepdims=True)
    want_sm = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    check_result(sm, want_sm, dtype, "softmax")
    check_result(lsm, np.log(want_sm), dtype, "log_softmax")
    check_result(lse, v.astype("float64").max(axis=1) + np.log(np.exp(shifted).sum(axis=1)), dtype, "logsumexp")


# -- nnet helpers built from the ops -------------------------------------------------------------

def test_crossentropies(backend, rng):
    p = T.dmatrix("p")
    y = T.lvector("y")
    onehot = T.dmatrix("onehot")
    o, t = T.dvector("o"), T.dvector("t")
    outs = [T.nnet.categorical_crossentropy(p, y), T.nnet.categorical_crossentropy(p, onehot),
            T.nnet.binary_crossentropy(o, t)]
    f = compile_fn([p, y, onehot, o, t], outs, backend, expect_ops={"subtensor", "arange", "log"})
    logits = rng.standard_normal((4, 5))
    pv = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    yv = np.array([0, 4, 2, 2])
    ohv = np.eye(5)[yv]
    ov, tv = rng.uniform(0.05, 0.95, 6), rng.uniform(0, 1, 6)
    ce_int, ce_hot, bce = f(pv, yv, ohv, ov, tv)
    want = np.array([-np.log(pv[i, yv[i]]) for i in range(4)])
    check_result(ce_int, want, "float64", "categorical_crossentropy int targets")
    check_result(ce_hot, want, "float64", "categorical_crossentropy one-hot")
    check_result(bce, -(tv * np.log(ov) + (1 - tv) * np.log(1 - ov)), "float64", "binary_crossentropy")


def test_crossentropy_int_targets_out_of_range_raise(backend):
    p = T.dmatrix("p")
    y = T.lvector("y")
    f = compile_fn([p, y], T.nnet.categorical_crossentropy(p, y), backend)
    with pytest.raises(IndexError):
        f(np.full((2, 3), 1 / 3), np.array([0, 3]))


# -- dot / matmul ---------------------------------------------------------------------------------

#: (a type shape, a value shape, b type shape, b value shape); T.dot of rank <= 2 operands
DOT_CASES = [
    ((None,), (4,), (None,), (4,)),              # vector . vector -> scalar
    ((None, None), (3, 4), (None,), (4,)),       # matrix . vector
    ((None,), (4,), (None, None), (4, 5)),       # vector . matrix
    ((None, None), (3, 4), (None, None), (4, 5)),
    (("m", "k"), (2, 6), ("k", 3), (6, 3)),      # named dims
    ((None, 0), (3, 0), (0, None), (0, 2)),      # empty inner dim: zeros
    ((None, None), (0, 4), (None, None), (4, 3)),  # empty rows
    ((1, None), (1, 4), (None, 1), (4, 1)),
]

#: batched matmul cases (NumPy matmul rules, only static 1 batch dims broadcast)
MATMUL_CASES = [
    ((2, None, 4), (2, 3, 4), (4, None), (4, 5)),
    ((None, None, None), (2, 3, 4), (None, None, None), (2, 4, 5)),
    ((1, 3, 4), (1, 3, 4), (5, 4, 2), (5, 4, 2)),    # static-1 batch broadcasts
    ((None,), (4,), (2, None, None), (2, 4, 5)),       # vector @ batch
    ((2, None, None), (2, 3, 4), (None,), (4,)),       # batch @ vector
    ((None,), (3,), (None,), (3,)),
    ((2, 1, None, None), (2, 1, 3, 4), (3, None, None), (3, 4, 2)),  # 4-d with 3-d
]


def _dot_ref(a, b):
    """Sums of products written out (int64 for ints, so the final cast reproduces wraparound)."""
    wide = "float64" if a.dtype.kind == "f" or b.dtype.kind == "f" else "int64"
    a, b = a.astype(wide), b.astype(wide)
    if a.ndim == 1 and b.ndim == 1:
        return (a * b).sum()
    if b.ndim == 1:
        return (a * b[None, :]).sum(axis=1)
    if a.ndim == 1:
        return (a[:, None] * b).sum(axis=0)
    return (a[:, :, None] * b[None, :, :]).sum(axis=1)


_LINALG_DTYPES = ["int8", "int32", "int64", "uint8", "float32", "float64"]


@pytest.mark.parametrize("dtype", _LINALG_DTYPES)
def test_dot(dtype, backend, rng):
    a_vars = [T.tensor(f"a{i}", dtype=dtype, shape=c[0]) for i, c in enumerate(DOT_CASES)]
    b_vars = [T.tensor(f"b{i}", dtype=dtype, shape=c[2]) for i, c in enumerate(DOT_CASES)]
    outs = [T.dot(a, b) for a, b in zip(a_vars, b_vars)]
    assert all(o.dtype == dtype for o in outs)
    f = compile_fn(a_vars + b_vars, outs, backend, expect_ops={"dot"})
    lo = 0 if dtype == "uint8" else -3
    a_vals = [rand_array(rng, dtype, c[1], lo, 4) for c in DOT_CASES]
    b_vals = [rand_array(rng, dtype, c[3], lo, 4) for c in DOT_CASES]
    for c, a, b, got in zip(DOT_CASES, a_vals, b_vals, f(*a_vals, *b_vals)):
        check_result(got, _dot_ref(a, b), dtype, f"dot({dtype}{list(c[0])}, {dtype}{list(c[2])})")


@pytest.mark.parametrize("dtype", _LINALG_DTYPES)
def test_matmul_batched(dtype, backend, rng):
    a_vars = [T.tensor(f"a{i}", dtype=dtype, shape=c[0]) for i, c in enumerate(MATMUL_CASES)]
    b_vars = [T.tensor(f"b{i}", dtype=dtype, shape=c[2]) for i, c in enumerate(MATMUL_CASES)]
    outs = [a @ b if i % 3 == 0 else T.matmul(a, b) if i % 3 == 1 else T.dot(a, b) if a.ndim > 2 or b.ndim > 2
            else a @ b for i, (a, b) in enumerate(zip(a_vars, b_vars))]
    assert all(o.dtype == dtype for o in outs)
    f = compile_fn(a_vars + b_vars, outs, backend, expect_ops={"matmul"})
    lo = 0 if dtype == "uint8" else -3
    a_vals = [rand_array(rng, dtype, c[1], lo, 4) for c in MATMUL_CASES]
    b_vals = [rand_array(rng, dtype, c[3], lo, 4) for c in MATMUL_CASES]
    for c, a, b, got in zip(MATMUL_CASES, a_vals, b_vals, f(*a_vals, *b_vals)):
        a2 = a if a.ndim > 1 else a[None]
        b2 = b if b.ndim > 1 else b[:, None]
        want = np.einsum("...ij,...jk->...ik", a2.astype("float64"), b2.astype("float64"))
        if a.ndim == 1:
            want = want[..., 0, :]
        if b.ndim == 1:
            want = want[..., 0]
        check_result(got, want, dtype, f"matmul({dtype}{list(c[0])}, {dtype}{list(c[2])})")


def test_dot_mixed_dtypes_and_errors(backend, rng):
    a, b = T.bmatrix("a"), T.fmatrix("b")
    out = T.dot(a, b)
    assert out.dtype == "float32"
    f = compile_fn([a, b], out, backend, expect_ops={"dot"})
    av, bv = rand_array(rng, "int8", (3, 4)), rand_array(rng, "float32", (4, 2))
    check_result(f(av, bv), av.astype("float64") @ bv.astype("float64"), "float32", "int8 . float32")
    with pytest.raises(TypeError, match="bool"):
        T.dot(T.matrix("m", dtype="bool"), T.matrix("n", dtype="bool"))
    with pytest.raises(TypeError, match="bool"):
        T.matrix("m", dtype="bool") @ T.matrix("n", dtype="bool")
    with pytest.raises(ValueError, match="inner"):
        T.dot(T.matrix("x", shape=(2, 3)), T.matrix("y", shape=(4, 2)))
    with pytest.raises(ValueError, match="matmul"):
        T.matrix("x", shape=(2, 3)) @ T.tensor3("y", shape=(2, 4, 2))
    with pytest.raises(ValueError, match="batch"):
        T.tensor3("x", shape=(2, 3, 4)) @ T.tensor3("y", shape=(3, 4, 2))
    g = compile_fn([a, b], T.dot(a, b), backend)
    with pytest.raises(ValueError):
        g(av, rand_array(rng, "float32", (5, 2)))  # run-time inner mismatch
