"""Full reductions on the cpu backend (kernels_reduce.py): blocked, segmented, multi-threaded.

Accuracy is checked against float64 NumPy with tolerances a single running float32
accumulator fails on long vectors (shown in the test itself); results must have the same
bits for 1 and 2 threads (the segments are fixed, not the thread count)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tcomp
import tcomp.tensor as T


def _fn(outputs, x):
    return tcomp.function([x], outputs, backend="cpu")


@pytest.fixture
def threads():
    before = tcomp.config.num_threads
    yield
    tcomp.config.num_threads = before


def test_float32_sum_of_2_24_ones_plus_small_values_keeps_pairwise_accuracy(threads):
    n = (1 << 24) + (1 << 20)
    a = np.ones(n, "float32")
    a[::3] += np.float32(2.0 ** -8)
    want = a.astype("float64").sum()
    tol = 1e-6 * want
    # a single float32 accumulator, added one element after another, stalls at 2^24
    naive = np.cumsum(a, dtype="float32")[-1]
    assert abs(float(naive) - want) > 100 * tol
    x = T.fvector("x")
    f = _fn([x.sum(), x.mean(), (x * 2).sum()], x)
    for nt in (1, 2):
        tcomp.config.num_threads = nt
        s, m, s2 = f(a)
        assert s.dtype == np.float32
        assert abs(float(s) - want) < tol, (nt, float(s), want)
        assert abs(float(m) - want / n) < 1e-6 * want / n
        assert abs(float(s2) - 2 * want) < 2 * tol


def test_float32_full_sum_of_a_matrix_is_as_accurate_as_numpy_and_thread_count_independent(threads):
    rng = np.random.default_rng(3)
    a = (rng.standard_normal((3000, 2500)) + 3).astype("float32")  # an offset: rounding errors add up
    want = a.astype("float64").sum()
    numpy_err = abs(float(a.sum()) - want)
    x = T.fmatrix("x")
    f = _fn([x.sum(), T.sum(T.exp(x * 0.1)), x.max(), x.min()], x)
    got = {}
    for nt in (1, 2):
        tcomp.config.num_threads = nt
        got[nt] = f(a)
        s, se, mx, mn = got[nt]
        assert abs(float(s) - want) <= max(4 * numpy_err, 1e-7 * abs(want)), (float(s), want, numpy_err)
        want_e = np.exp(a.astype("float64") * 0.1).sum()
        assert abs(float(se) - want_e) < 1e-6 * want_e
        assert mx == a.max() and mn == a.min()
    for g1, g2 in zip(got[1], got[2]):
        assert g1.tobytes() == g2.tobytes()  # the same bits for any thread count


def test_float64_sum_is_compensated():
    rng = np.random.default_rng(4)
    a = rng.standard_normal(1 << 20) * 1e3 + 1e6
    x = T.dvector("x")
    got = float(_fn(x.sum(), x)(a))
    want = math.fsum(a.tolist())
    assert abs(got - want) <= 1e-14 * abs(want)


@pytest.mark.parametrize("shape,view", [((2100, 700), "transpose"), ((5, 3000), "transpose"),
                                        ((7, 40, 60), "transpose"), ((9000,), "stride"),
                                        ((300, 70), "stride"), ((3, 50, 3000), "stride")])
def test_full_reductions_of_strided_operands(threads, shape, view):
    """Operands that cannot be read flat: rows are blocks of the last axis at each index of
    the leading ones (unravelled for rank 3), or of the whole of a rank-1 operand."""
    rng = np.random.default_rng(5)
    a = rng.uniform(0.999, 1.001, shape).astype("float32")  # a product of 1.5M of them stays finite
    x = T.tensor("x", "float32", (None,) * len(shape))
    y = x.T if view == "transpose" else x[::2]
    f = _fn([y.sum(), y.mean(), y.max(), y.min(), (y * y).prod()], x)
    v = a.T if view == "transpose" else a[::2]
    v64 = v.astype("float64")
    for nt in (1, 2):
        tcomp.config.num_threads = nt
        s, m, mx, mn, p = f(a)
        np.testing.assert_allclose(s, v64.sum(), rtol=1e-6)
        np.testing.assert_allclose(m, v64.mean(), rtol=1e-6)
        assert mx == v.max() and mn == v.min()
        np.testing.assert_allclose(p, np.prod((v * v).astype("float64")), rtol=1e-3)


@pytest.mark.parametrize("where", [0, 5000, 99999])
def test_large_prod_with_one_zero_among_overflowing_factors_is_zero(threads, where):
    a = np.full(100000, 1e10, "float32")
    a[where] = 0
    x = T.fvector("x")
    f = _fn([T.prod(x), T.prod(x * 2)], x)
    for nt in (1, 2):
        tcomp.config.num_threads = nt
        for got in f(a):
            assert got == 0 and not np.signbit(got)
    a[where + 1 if where < 99999 else 0] = np.inf  # a zero and an inf: nan
    assert all(np.isnan(g) for g in f(a))
    b = np.full(100000, 1e10, "float32")
    b[7] = -np.inf  # inf, no zero
    assert f(b)[0] == -np.inf


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "bool"])
def test_integer_and_bool_full_reductions(threads, dtype):
    rng = np.random.default_rng(6)
    a = rng.integers(0, 200, (700, 30)).astype(dtype)
    x = T.tensor("x", dtype, (None, None))
    f = _fn([x.sum(), x.max(), x.min()], x)
    for nt in (1, 2):
        tcomp.config.num_threads = nt
        s, mx, mn = f(a)
        assert s == np.sum(a, dtype=s.dtype) and mx == a.max() and mn == a.min()


def test_empty_and_symbolic_sizes():
    x = T.fvector("x")
    f = _fn([x.sum(), x.prod()], x)
    s, p = f(np.zeros(0, "float32"))
    assert s == 0 and p == 1
    g = _fn([x.sum(), x.prod(), x.max()], x)
    for n in (1, 2048, 2049, 4097, 64 * 2048 + 5):
        a = np.linspace(-1, 1, n).astype("float32")
        s, p, mx = g(a)
        np.testing.assert_allclose(s, a.astype("float64").sum(), atol=1e-6 * np.abs(a).sum())
        np.testing.assert_allclose(p, np.prod(a.astype("float64")), atol=1e-30)
        assert mx == a.max()


@pytest.mark.parametrize("shape,transpose", [((300000,), False), ((700, 900), True), ((30, 40, 500), False)])
def test_fused_full_reduction_with_an_elementwise_output(threads, shape, transpose):
    """A fused kernel storing exp(y / 2) at every point while summing it: each segment's
    chunk stores its own elements exactly once."""
    x = T.tensor("x", "float32", (None,) * len(shape))
    y = x.T if transpose else x
    e = T.exp(y * 0.5)
    f = _fn([e, e.sum(), (y * y).max()], x)
    a = np.random.default_rng(7).standard_normal(shape).astype("float32")
    v = (a.T if transpose else a).astype("float64")
    want = np.exp(v * 0.5)
    for nt in (1, 2):
        tcomp.config.num_threads = nt
        got_e, got_s, got_m = f(a)
        np.testing.assert_allclose(got_e, want, rtol=1e-6)
        np.testing.assert_allclose(got_s, want.sum(), rtol=1e-6)
        assert got_m == np.float32((v * v).max())
