"""The entries of /work/notes/fuzz_findings.md (the differential fuzzer's open classes) that are
fixed, one test each, checked against NumPy/SciPy formulas written here on both backends."""
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T

BACKENDS = ["reference", "cpu"]


def _bits_equal(got, want):
    """Equal values, nan where nan, and the same sign of every zero."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


# -- F2 / F6: softmax family over a zero-size axis --------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(3, 0), (0, 3), (0, 0)], ids=str)
def test_softmax_family_over_an_empty_axis(backend, shape):
    x = T.matrix("x")
    f = tcomp.function([x], [T.nnet.softmax(x), T.nnet.log_softmax(x), T.logsumexp(x, axis=1),
                             T.logsumexp(x, axis=0, keepdims=True), T.softmax(x, axis=0)], backend=backend)
    a = np.zeros(shape, "float32")
    sm, lsm, lse1, lse0, sm0 = f(a)
    for got in (sm, lsm, sm0):
        _bits_equal(got, np.zeros(shape, "float32"))
    # scipy.special.logsumexp of nothing is -inf: log of an empty sum
    _bits_equal(lse1, _np_logsumexp(a, 1, False))
    _bits_equal(lse0, _np_logsumexp(a, 0, True))


def _np_logsumexp(a, axis, keepdims):
    with np.errstate(divide="ignore"):
        return np.log(np.exp(a.astype("float64")).sum(axis=axis, keepdims=keepdims)).astype(a.dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_over_a_middle_empty_axis_and_many_rows(backend):
    """The column kernel (non-last axis) and the row kernel with many rows (threads)."""
    y = T.tensor("y", dtype="float32", shape=(None, None, None))
    f = tcomp.function([y], [T.softmax(y, axis=1), T.logsumexp(y, axis=1)], backend=backend)
    sm, lse = f(np.zeros((2, 0, 3), "float32"))
    assert sm.shape == (2, 0, 3)
    _bits_equal(lse, np.full((2, 3), -np.inf, "float32"))
    m = T.matrix("m")
    g = tcomp.function([m], [T.logsumexp(m, axis=1), T.logsumexp(m, axis=0)], backend=backend)
    r1, r0 = g(np.zeros((300_000, 0), "float32"))
    _bits_equal(r1, np.full(300_000, -np.inf, "float32"))
    assert r0.shape == (0,)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_log_sum_exp_of_an_empty_axis_stays_minus_inf(backend, dtype):
    """F6: stabilize rewrites log(sum(exp(x))) to logsumexp; an empty sum is 0, log 0 = -inf."""
    x = T.tensor("x", dtype=dtype, shape=(1, 0, None))
    f = tcomp.function([x], T.log(T.sum(T.exp(x), axis=None, keepdims=True)), backend=backend)
    got = f(np.zeros((1, 0, 2), dtype))
    assert got.dtype.kind == "f"
    _bits_equal(got, np.full((1, 1, 1), -np.inf, got.dtype))


# -- F3: cast(cast(x, float), int) ------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_int_through_float_to_narrower_int_is_not_folded(backend):
    """A float -> int cast sends out-of-range values to 0 (ir/ops/elementwise.py), an int ->
    int cast wraps: int32 -3 through float64 to uint8 is 0, not 253."""
    x = T.iscalar("x")
    f = tcomp.function([x], [T.cast(x, "float64").astype("uint8"), T.cast(x, "float64").astype("int64"),
                             T.cast(x, "float32").astype("int8")], backend=backend)
    for v, want in ((-3, (0, -3, -3)), (200, (200, 200, 0)), (5, (5, 5, 5))):
        got = f(np.int32(v))
        assert [int(g) for g in got] == list(want), (v, got)
        assert [g.dtype.name for g in got] == ["uint8", "int64", "int8"]
    u = T.tensor("u", dtype="uint8", shape=(None,))
    g = tcomp.function([u], T.cast(u, "float32").astype("int8"), backend=backend)
    np.testing.assert_array_equal(g(np.array([5, 127, 128, 255], "uint8")), np.array([5, 127, 0, 0], "int8"))


# -- F5: stabilize negating an unsigned/bool operand -------------------------------------------

def _log_sigmoid(x):
    x = np.asarray(x, "float64")
    return -np.logaddexp(0, -x)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["uint8", "bool", "int8"])
def test_log_sigmoid_of_int_input_negates_after_the_float_cast(backend, dtype):
    vals = {"uint8": [3, 0, 200, 255], "bool": [1, 0], "int8": [-128, -3, 0, 127]}[dtype]
    a = np.array(vals, dtype)
    x = T.tensor("x", dtype=dtype, shape=(None,))
    f = tcomp.function([x], [T.log(T.nnet.sigmoid(x)), T.log(1 - T.nnet.sigmoid(x)), 1 - T.nnet.sigmoid(x),
                             1 / (1 + T.exp(-T.cast(x, "float32")))], backend=backend)
    ls, l1ms, oms, sig = f(a)
    xf = a.astype("float64")
    np.testing.assert_allclose(ls, _log_sigmoid(xf), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(l1ms, _log_sigmoid(-xf), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(oms, 1 / (1 + np.exp(xf)), rtol=2e-6, atol=1e-30)
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-xf)), rtol=2e-6, atol=1e-30)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigmoid_of_int_exp_and_wrapping_int_negation(backend):
    """``1 / (1 + exp(z))`` with an int z becomes sigmoid(-float(z)); ``log(1 + (-u))`` with a
    uint8 u keeps the user's wrapped ``-u`` (NumPy: -uint8(3) = 253), not ``log1p(-u)``."""
    z = T.tensor("z", dtype="uint8", shape=(None,))
    a = np.array([3, 0, 200], "uint8")
    f = tcomp.function([z], [1 / (1 + T.exp(z)), T.log(1.0 + (-z))], backend=backend)
    sig, lg = f(a)
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(a.astype("float64"))), rtol=2e-6, atol=1e-30)
    np.testing.assert_allclose(lg, np.log(1.0 + (-a).astype("float64")), rtol=2e-6)


# -- F4: the sign of a zero product ------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_product_keeps_its_sign(backend):
    v = T.fvector("v")
    f = tcomp.function([v], [T.prod(v), 1 / T.prod(v), T.sum(v)], backend=backend)
    for vals in ([-0.0, -1, -1], [-0.0, -0.0], [0.0, -0.0], [-0.0] * 1000, [-0.0, -1.0] + [1e30] * 40,
                 [2.0, -0.0] + [3.0] * 97, [1e-30] * 3 + [-1.0]):
        a = np.array(vals, "float32")
        p, inv, s = f(a)
        with np.errstate(all="ignore"):
            # the sign of a zero product is the xor of the factors' signs (float64 does not
            # overflow on these, so its product is the exact answer up to rounding)
            want_p = np.float32(np.prod(a.astype("float64")))
            _bits_equal(p, want_p)
            _bits_equal(inv, np.float32(1) / want_p)
        _bits_equal(s, np.sum(a))  # NumPy's sum of -0.0s is +0.0 (it starts at +0.0)
    m = T.matrix("m")
    g = tcomp.function([m], [T.prod(m, axis=1), T.prod(m, axis=0), T.prod(m * 2, axis=0)], backend=backend)
    a = np.array([[-1, -1, -0.0], [-0.0, -0.0, 1], [-0.0, 1, 1]], "float32")
    r1, r0, r02 = g(a)
    _bits_equal(r1, np.prod(a, axis=1))
    _bits_equal(r0, np.prod(a, axis=0))
    _bits_equal(r02, np.prod(a * 2, axis=0))


# -- F1: float32 sin/cos of large arguments ------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_sin_cos_of_large_arguments(backend):
    """The findings' values (1.76e9 gave exactly 1.0), within 2 float32 ulp of float64 NumPy."""
    x = T.fvector("x")
    f = tcomp.function([x], [T.sin(x), T.cos(x)], backend=backend)
    a = np.array([1759997757, 1e9, 1e10, 3e12, 4.9e14, -2.5e14], "float32")
    s, c = f(a)
    for got, want in ((s, np.sin(a.astype("float64"))), (c, np.cos(a.astype("float64")))):
        np.testing.assert_allclose(got, want.astype("float32"), rtol=0, atol=2 * np.spacing(np.float32(1)))


@pytest.mark.parametrize("func", ["sin", "cos"])
def test_float32_trig_ulp_up_to_5e14(func):
    """The README's domain: random bit patterns in [-5e14, 5e14] and the floats nearest to
    k*pi/2 (where the reduction cancels most), <= 1.5 ulp against float64 NumPy."""
    from tcomp.backend.mathlib_accuracy import compile_kernel, random_floats, reference, ulp_errors

    rng = np.random.default_rng(21)
    k = rng.integers(1, 2 ** 47, 20000).astype(np.float64)
    near = (k * (np.pi / 2)).astype(np.float32)
    x = np.concatenate([random_floats(rng, "float32", 40000, -5e14, 5e14), near,
                        np.nextafter(near, np.float32(np.inf))])
    kernel, _ = compile_kernel(func, "float32", 8)
    x = x[: len(x) // 8 * 8]
    assert ulp_errors(kernel(x), reference(func, "float32", x), "float32").max() <= 1.5


# -- F7: an out-of-bounds index array where the selection is empty --------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_bounds_index_is_an_error_even_when_the_selection_is_empty(backend):
    """NumPy checks every index even when another axis makes the result empty."""
    a = np.zeros((2, 3, 2))
    for index in ((slice(0, 0), [0, 3]), (slice(-5, -5), [-1, 0, -3, 3], -1)):
        with pytest.raises(IndexError):
            a[index]
        x = T.tensor3("x", dtype="float64")
        with pytest.raises(IndexError):
            tcomp.function([x], x[index], backend=backend)(a)
    x = T.tensor3("x", dtype="float64")
    with pytest.raises(IndexError):
        tcomp.function([x], T.set_subtensor(x[0:0, [0, 3]], 1.0), backend=backend)(a)
    f = tcomp.function([x], [x[0:0, [0, -3]], T.inc_subtensor(x[0:0, [2, 1]], 1.0)], backend=backend)
    got, inc = f(a)
    assert got.shape == a[0:0, [0, -3]].shape
    np.testing.assert_array_equal(inc, a)


@pytest.mark.parametrize("backend", BACKENDS)
def test_index_arrays_that_broadcast_to_nothing_check_no_bounds(backend):
    """NumPy's other half of the rule: ``x[[], [3]]`` is empty and checks nothing (fuzzer seed
    20559), for reads, set_subtensor and inc_subtensor."""
    a = np.zeros((2, 2))
    x, i, j = T.dmatrix("x"), T.lvector("i"), T.lvector("j")
    f = tcomp.function([x, i, j], [x[i, j], T.set_subtensor(x[i, j], 1.0), T.inc_subtensor(x[i, j], 1.0)],
                       backend=backend)
    for iv, jv in (([], [3]), ([3], []), ([], [-9])):
        iv, jv = np.array(iv, "int64"), np.array(jv, "int64")
        got, set_, inc = f(a, iv, jv)
        assert got.shape == a[iv, jv].shape == (0,)
        np.testing.assert_array_equal(set_, a)
        np.testing.assert_array_equal(inc, a)
    with pytest.raises(IndexError):
        f(a, np.array([0], "int64"), np.array([3], "int64"))


# -- F8: softmax of a row holding +inf, where exp of another entry overflows -------------------

def _softmax_of_infinite_rows(a, axis):
    """The reference formula exp(x - m - log(sum(exp(x - m)))), m the max (0 when not finite),
    for rows without nan: a row holding +inf gives nan there and 0 at every other entry."""
    x = a.astype("float64")
    posinf = np.isposinf(x)
    has_inf = posinf.any(axis=axis, keepdims=True)
    safe = np.where(has_inf, 0.0, x)
    e = np.exp(safe - safe.max(axis=axis, keepdims=True))
    soft = e / e.sum(axis=axis, keepdims=True)
    return np.where(has_inf, np.where(posinf, np.nan, 0.0), soft).astype(a.dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("axis", [1, 0])
def test_softmax_of_a_row_with_inf_gives_zero_for_finite_entries(backend, dtype, axis):
    """cpu gave nan for 728 in softmax([0, inf, 728]) (exp(728) = inf times 1/sum = 0) but 0 for
    the 0 beside it; now 0 for every finite entry, on the row and the column kernels (fuzzer
    seed 708369)."""
    inf = np.inf
    big = 3e38 if dtype == "float32" else 1.7e308
    rows = np.array([[0.0, inf, 728.1], [inf, inf, 1.0], [-inf, 5.0, 2.0], [big, -big, inf], [1.0, 2.0, 3.0],
                     [800.0, 900.0, inf]], dtype)
    a = rows if axis == 1 else np.ascontiguousarray(rows.T)
    x = T.tensor("x", dtype=dtype, shape=(None, None))
    got = tcomp.function([x], T.softmax(x, axis=axis), backend=backend)(a)
    want = _softmax_of_infinite_rows(a, axis)
    np.testing.assert_array_equal(got[np.isnan(want)], want[np.isnan(want)])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stabilized_before_a_static_shape_is_folded(backend):
    """Fuzz seed 3200077: ``log(1 - sigmoid(n - 1))`` of a static length n = 33 was folded in
    float32 before the stabilizer ran (sigmoid(32) -> 1, log(0) = -inf); it is -softplus(32)."""
    x = T.tensor("x", dtype="uint8", shape=(33,))
    y = T.log(1 - T.nnet.sigmoid(x.shape[0] - 1))
    got = tcomp.function([x], y, backend=backend)(np.zeros(33, "uint8"))
    np.testing.assert_allclose(got, -np.logaddexp(0.0, 32.0), rtol=1e-6)
