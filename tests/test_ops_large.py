"""Sizes and layouts the tiny per-op cases miss: odd lengths past any SIMD width (vector
bodies plus remainder loops), wide input ranges for the transcendentals, large reductions
and matmuls, and non-contiguous / Fortran-ordered / overlapping input arrays (the entry
point must accept or copy them, never read them as if they were C-contiguous).

Sums use integer-valued floats where possible: every partial sum is exact in float32, so
any summation order must give exactly NumPy's answer; real-valued sums use
``conftest.accumulation_tol``."""
import math

import numpy as np
import pytest
from conftest import accumulation_tol, check_result, compile_fn, rand_array

import tcomp.tensor as T


def _loguniform(rng, lo, hi, n):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def _wide_inputs(op, rng, dtype, n):
    """Inputs over most of each function's useful range (no overflow of the result)."""
    big_exp = 80.0 if dtype == "float32" else 700.0
    if op == "exp":
        v = rng.uniform(-big_exp, big_exp, n)
    elif op in ("log", "sqrt"):
        v = _loguniform(rng, 1e-30, 1e30, n)
    elif op == "log1p":
        v = np.concatenate([rng.uniform(-0.999, 10, n // 2), rng.uniform(-1e-5, 1e-5, n - n // 2)])
    elif op == "expm1":
        v = np.concatenate([rng.uniform(-30, 30, n // 2), rng.uniform(-1e-5, 1e-5, n - n // 2)])
    elif op in ("sin", "cos"):
        v = rng.uniform(-50, 50, n)
    elif op in ("sigmoid", "softplus", "tanh"):
        v = rng.uniform(-60, 60, n)
    else:  # erf
        v = rng.uniform(-6, 6, n)
    return v.astype(dtype)


_REFS = {
    "exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1, "sqrt": np.sqrt, "sin": np.sin,
    "cos": np.cos, "tanh": np.tanh, "sigmoid": lambda x: np.exp(-np.logaddexp(0, -x)),
    "softplus": lambda x: np.logaddexp(0, x),
    "erf": np.vectorize(math.erf, otypes=["float64"]),
}
_BUILD = {"exp": T.exp, "log": T.log, "log1p": T.log1p, "expm1": T.expm1, "sqrt": T.sqrt, "sin": T.sin, "cos": T.cos,
          "tanh": T.tanh, "sigmoid": T.nnet.sigmoid, "softplus": T.nnet.softplus, "erf": T.erf}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_transcendentals_wide_range_odd_length(dtype, backend, rng):
    n = 1037  # odd, past any vector width: exercises vector body and remainder
    x = T.tensor("x", dtype=dtype, shape=(None,))
    ops = sorted(_BUILD)
    f = compile_fn([x], [_BUILD[op](x) for op in ops], backend, expect_ops=set(ops))
    for op_index, op in enumerate(ops):
        v = _wide_inputs(op, rng, dtype, n)
        got = f(v)[op_index]
        check_result(got, _REFS[op](v.astype("float64")), dtype, f"{op} over a wide range ({dtype})")


@pytest.mark.parametrize("dtype", ["int32", "float32", "float64"])
def test_binary_broadcast_large(dtype, backend, rng):
    a = T.tensor("a", dtype=dtype, shape=(None, None))
    r = T.tensor("r", dtype=dtype, shape=(1, None))
    c = T.tensor("c", dtype=dtype, shape=(None, 1))
    outs = [a + r, a * c - r, T.maximum(a, c), a < r, (a // c) + (a % c), r + c]
    f = compile_fn([a, r, c], outs, backend)
    av, rv = rand_array(rng, dtype, (37, 129), -50, 50), rand_array(rng, dtype, (1, 129), -50, 50)
    cv = rand_array(rng, dtype, (37, 1), 1, 9)
    a64, r64, c64 = av.astype("float64"), rv.astype("float64"), cv.astype("float64")
    wants = [a64 + r64, a64 * c64 - r64, np.maximum(a64, c64), a64 < r64,
             np.floor(a64 / c64) + (a64 - np.floor(a64 / c64) * c64), r64 + c64]
    for k, (got, want) in enumerate(zip(f(av, rv, cv), wants)):
        check_result(got, want, "bool" if k == 3 else dtype, f"large broadcast case {k}")


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32", "float64"])
def test_large_reductions_exact(dtype, backend, rng):
    """Integer-valued data: every partial sum is exact, so any order must match exactly."""
    x = T.tensor("x", dtype=dtype, shape=(None, None))
    outs = [x.sum(), x.sum(axis=0), x.sum(axis=1), x.max(axis=0), x.min(axis=1), x.argmax(axis=1), x.argmin(),
            T.mean(x, axis=0)]
    f = compile_fn([x], outs, backend)
    xv = rng.integers(-100, 100, (67, 131)).astype(dtype)
    x64 = xv.astype("float64")
    wide = "float64" if dtype.startswith("float") else "int64"
    wants = [x64.sum(), x64.sum(axis=0), x64.sum(axis=1), x64.max(axis=0), x64.min(axis=1), xv.argmax(axis=1),
             xv.argmin(), x64.mean(axis=0)]
    dtypes = [wide if wide == "int64" else dtype] * 3 + [dtype, dtype, "int64", "int64",
                                                         dtype if wide == "float64" else "float32"]
    for k, (got, want, d) in enumerate(zip(f(xv), wants, dtypes)):
        check_result(got, want, d, f"large reduction case {k}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_reductions_real_valued(dtype, backend, rng):
    x = T.tensor("x", dtype=dtype, shape=(None, None))
    f = compile_fn([x], [x.sum(axis=0), x.sum(axis=1), x.mean(), T.prod(x, axis=1), T.logsumexp(x, axis=0)],
                   backend)
    xv = rng.uniform(0.98, 1.02, (67, 131)).astype(dtype)
    x64 = xv.astype("float64")
    s0, s1, m, p, lse = f(xv)
    np.testing.assert_allclose(s0, x64.sum(axis=0), **accumulation_tol(dtype, 67, 1.02))
    np.testing.assert_allclose(s1, x64.sum(axis=1), **accumulation_tol(dtype, 131, 1.02))
    np.testing.assert_allclose(m, x64.mean(), **accumulation_tol(dtype, 67 * 131, 1.02 / (67 * 131)))
    np.testing.assert_allclose(p, x64.prod(axis=1), rtol=float(np.finfo(dtype).eps) * 131 * 4)
    mx = x64.max(axis=0)
    np.testing.assert_allclose(lse, mx + np.log(np.exp(x64 - mx).sum(axis=0)), **accumulation_tol(dtype, 67, 1.0))
    assert [a.dtype.name for a in (s0, s1, m, p, lse)] == [dtype] * 5


@pytest.mark.parametrize("dtype", ["int32", "float32", "float64"])
def test_large_matmul_and_dot(dtype, backend, rng):
    a = T.tensor("a", dtype=dtype, shape=(None, None))
    b = T.tensor("b", dtype=dtype, shape=(None, None))
    t = T.tensor("t", dtype=dtype, shape=(None, None, None))
    v = T.tensor("v", dtype=dtype, shape=(None,))
    outs = [T.dot(a, b), t @ b, T.dot(a, v), T.dot(v, b)]
    f = compile_fn([a, b, t, v], outs, backend, expect_ops={"dot", "matmul"})
    # integer-valued operands: exact products and sums in every dtype, whatever the order
    av, bv = rng.integers(-8, 8, (65, 33)).astype(dtype), rng.integers(-8, 8, (33, 47)).astype(dtype)
    tv, vv = rng.integers(-8, 8, (3, 17, 33)).astype(dtype), rng.integers(-8, 8, (33,)).astype(dtype)
    a64, b64, t64, v64 = (z.astype("float64") for z in (av, bv, tv, vv))
    wants = [a64 @ b64, np.einsum("bij,jk->bik", t64, b64), a64 @ v64, v64 @ b64]
    for k, (got, want) in enumerate(zip(f(av, bv, tv, vv), wants)):
        check_result(got, want, dtype, f"large matmul case {k}")


def test_large_softmax(backend, rng):
    x = T.fmatrix("x")
    f = compile_fn([x], [T.nnet.softmax(x), T.nnet.log_softmax(x, axis=0)], backend)
    xv = rng.uniform(-30, 30, (17, 1025)).astype("float32")
    sm, lsm = f(xv)
    x64 = xv.astype("float64")
    e = np.exp(x64 - x64.max(axis=1, keepdims=True))
    check_result(sm, e / e.sum(axis=1, keepdims=True), "float32", "softmax rows of 1025")
    m0 = x64.max(axis=0, keepdims=True)
    check_result(lsm, x64 - m0 - np.log(np.exp(x64 - m0).sum(axis=0, keepdims=True)), "float32", "log_softmax axis 0")


def test_non_contiguous_and_fortran_inputs(backend, rng):
    x = T.dmatrix("x")
    y = T.dmatrix("y")
    v = T.dvector("v")
    outs = [x + y, T.dot(x, y.T), x.sum(axis=1), T.exp(v), x[1:, ::2] * 2]
    f = compile_fn([x, y, v], outs, backend)
    base = rng.standard_normal((9, 14))
    xs = base[::2, ::2]                  # strided view (5, 7)
    yf = np.asfortranarray(rng.standard_normal((5, 7)))
    vt = base[:, 3]                      # column: stride of 14 elements
    wants = [xs + yf, xs @ yf.T, xs.sum(axis=1), np.exp(vt), xs[1:, ::2] * 2]
    for k, (got, want) in enumerate(zip(f(xs, yf, vt), wants)):
        check_result(got, want, "float64", f"non-contiguous case {k}")
    same = rng.standard_normal((4, 4))
    got = f(same, same, same[0])        # one buffer passed for several inputs
    check_result(got[0], same + same, "float64", "aliased inputs")
    check_result(got[1], same @ same.T, "float64", "aliased inputs dot")
    bcast = np.broadcast_to(np.arange(3.0), (4, 3))  # zero strides
    check_result(f(bcast, bcast, bcast[0])[0], bcast * 2, "float64", "zero-stride input")


def test_outputs_are_fresh_writeable_arrays(backend, rng):
    x = T.dvector("x")
    f = compile_fn([x], [x * 1.0, x.sum()], backend)
    xv = rng.standard_normal(6)
    a, s = f(xv)
    b, _ = f(xv)
    assert isinstance(a, np.ndarray) and isinstance(s, np.ndarray) and s.shape == ()
    a[0] = 123.0  # the caller owns the results: writing one must not change another call's result
    assert b[0] == xv[0] and xv[0] != 123.0
