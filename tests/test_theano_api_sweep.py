"""The Theano API sweep's fixes (names and arguments a Theano program uses that tcomp lacked
or treated differently), each checked against NumPy/SciPy written independently.  All the
value checks share one compiled function, so the file stays fast."""
import numpy as np
import pytest
from conftest import compile_fn

import tcomp
import tcomp.tensor as T
from tcomp.ir import Graph, TensorType

RNG = np.random.default_rng(7)
A_VAL = RNG.standard_normal((3, 4))
B_VAL = RNG.standard_normal((3, 4))
F_VAL = RNG.standard_normal((3, 4)).astype("float32")
I_VAL = RNG.integers(-7, 8, (3, 4)).astype("int32")
J_VAL = RNG.integers(1, 6, (3, 4)).astype("int32")
P_VAL = np.array([2, 0, 3, 1], "int32")
R_VAL = np.array([1, 0, 3, 2], "int32")
T3_VAL = RNG.standard_normal((2, 3, 4))
V_VAL = RNG.standard_normal(4)


def _np_inc(a, idx, y):
    a = a.copy()
    np.add.at(a, idx, y)
    return a


def _np_set(a, idx, y):
    a = a.copy()
    a[idx] = y
    return a


def _cases(A, B, F, I, J, p, r, t3, v):
    """(name, tcomp expression, NumPy reference) for every fixed behaviour."""
    n = np.arange(4)
    perms = np.stack([P_VAL, R_VAL, P_VAL])
    return [
        ("shape", T.shape(t3), np.array(T3_VAL.shape)),
        ("prod(shape)", T.prod(T.shape(A)), np.array(12)),
        ("prod(x.shape) (a tuple: stacked)", T.prod(t3.shape), np.array(24)),
        ("as_tensor_variable([sym, 2])", T.as_tensor_variable([A.shape[1], 2]), np.array([4, 2])),
        ("as_tensor_variable([v, 2v])", T.as_tensor_variable([v, v * 2]), np.stack([V_VAL, 2 * V_VAL])),
        ("stack(*tensors)", T.stack(v, v * 2), np.stack([V_VAL, V_VAL * 2])),
        ("stack(list, axis positional)", T.stack([v, v * 2], 1), np.stack([V_VAL, V_VAL * 2], 1)),
        ("as_tensor_variable ndim pad", T.as_tensor_variable(v, ndim=2) + A, V_VAL[None] + A_VAL),
        ("as_tensor_variable ndim drop", T.as_tensor_variable(T.shape_padleft(v), ndim=1), V_VAL),
        ("reshape ndim", T.reshape(A, (2, 6), ndim=2), A_VAL.reshape(2, 6)),
        ("reshape symbolic vector", T.reshape(A, T.shape(A)[::-1], ndim=2), A_VAL.reshape(4, 3)),
        ("x.reshape(vec, ndim)", A.reshape(T.shape(t3)[1:], 2), A_VAL.reshape(3, 4)),
        ("flatten outdim", T.flatten(t3, outdim=2), T3_VAL.reshape(2, 12)),
        ("x.flatten outdim", t3.flatten(outdim=2), T3_VAL.reshape(2, 12)),
        ("x.ravel", t3.ravel(), T3_VAL.ravel()),
        ("sum Theano positional dtype", T.sum(I, 0, "float64"), I_VAL.sum(0, dtype="float64")),
        ("sum Theano positional keepdims", T.sum(A, 1, "float32", True), A_VAL.sum(1, keepdims=True).astype("f4")),
        ("x.sum Theano positional", I.sum(1, "int32", True), I_VAL.sum(1, dtype="int32", keepdims=True)),
        ("prod Theano positional", T.prod(J, 0, "int32"), J_VAL.prod(0, dtype="int32")),
        ("mean Theano positional", T.mean(A, 0, "float32", False, True), A_VAL.mean(0, keepdims=True).astype("f4")),
        ("sum acc_dtype keeps dtype", T.sum(F, axis=0, acc_dtype="float64"), F_VAL.astype("f8").sum(0).astype("f4")),
        ("var corrected two-pass", T.var(A, axis=1, corrected=True), np.var(A_VAL, 1)),
        ("std corrected ddof", T.std(A, axis=0, ddof=1, corrected=True), np.std(A_VAL, 0, ddof=1)),
        ("repeat symbolic counts", T.repeat(v, p), np.repeat(V_VAL, P_VAL)),
        ("repeat symbolic axis", T.extra_ops.repeat(A, p, axis=1), np.repeat(A_VAL, P_VAL, 1)),
        ("swapaxes", T.swapaxes(t3, 0, 2), np.swapaxes(T3_VAL, 0, 2)),
        ("take", T.take(A, p[:2], axis=1), np.take(A_VAL, P_VAL[:2], 1)),
        ("take flat", T.take(A, p), np.take(A_VAL, P_VAL)),
        ("inverse_permutation", T.inverse_permutation(p), np.argsort(P_VAL).astype("int32")),
        ("inverse_permutation rows", T.inverse_permutation(T.stack([p, r])),
         np.argsort(np.stack([P_VAL, R_VAL]), 1).astype("int32")),
        ("permute_row_elements", T.permute_row_elements(A, p), A_VAL[:, P_VAL]),
        ("permute_row_elements per row", T.permute_row_elements(A, T.stack([p, r, p])),
         np.take_along_axis(A_VAL, perms, 1)),
        ("permute_row_elements inverse", T.permute_row_elements(v, p, inverse=1),
         _np_set(np.zeros(4), P_VAL, V_VAL)),
        ("trunc", T.trunc(A * 3), np.trunc(A_VAL * 3)),
        ("trunc int", T.trunc(I), I_VAL),
        ("real/imag/conj", T.real(A) + T.conj(A) + T.imag(A) + A.conj() + A.real + A.imag, 4 * A_VAL),
        ("tensor_copy", T.tensor_copy(A), A_VAL),
        ("ceil_intdiv", T.ceil_intdiv(I, J), -(-I_VAL // J_VAL)),
        ("divmod", T.divmod(I, J)[1], np.divmod(I_VAL, J_VAL)[1]),
        ("divmod() builtin", divmod(I, J)[0], np.divmod(I_VAL, J_VAL)[0]),
        ("divmod float rdivmod", divmod(7.5, A + 3)[1], np.divmod(7.5, A_VAL + 3)[1]),
        ("add variadic", T.add(A, B, A), 2 * A_VAL + B_VAL),
        ("mul variadic", T.mul(A, B, 2.0), A_VAL * B_VAL * 2),
        ("inc_subtensor set_instead_of_inc", T.inc_subtensor(v[1:3], 5.0, set_instead_of_inc=True),
         _np_set(V_VAL, slice(1, 3), 5.0)),
        ("inc_subtensor inplace kwargs", T.inc_subtensor(v[p], 1.0, inplace=False, tolerate_inplace_aliasing=True),
         _np_inc(V_VAL, P_VAL, 1.0)),
        ("set_subtensor inplace kw", T.set_subtensor(A[1, :], 0.0, inplace=False), _np_set(A_VAL, 1, 0.0)),
        ("cpu_contiguous", T.extra_ops.cpu_contiguous(A.T), A_VAL.T),
        ("T.bincount", T.bincount(p, minlength=5), np.bincount(P_VAL, minlength=5)),
        ("T.fill_diagonal", T.fill_diagonal(A, 0.0), A_VAL * (1 - np.eye(3, 4))),
        ("T.fill_diagonal_offset", T.fill_diagonal_offset(A, 0.0, 1), A_VAL * (1 - np.eye(3, 4, 1))),
        ("T.bartlett", T.bartlett(5), np.bartlett(5)),
        ("T.unravel_index", T.unravel_index(p, (2, 2))[1], np.unravel_index(P_VAL, (2, 2))[1]),
        ("T.ravel_multi_index", T.ravel_multi_index((p % 2, p), (2, 4)),
         np.ravel_multi_index((P_VAL % 2, P_VAL), (2, 4))),
        ("x.ptp", A.ptp(axis=1), np.ptp(A_VAL, 1)),
        ("x.fill", A.fill(2.5), np.full((3, 4), 2.5)),
        ("x.compress", v.compress(p > 1), V_VAL[P_VAL > 1]),
        ("x.searchsorted", T.sort(v).searchsorted(A[0]), np.searchsorted(np.sort(V_VAL), A_VAL[0])),
        ("x.choose", (p % 2).choose([v, v * 2]), np.choose(P_VAL % 2, [V_VAL, V_VAL * 2])),
        ("nnet.softmax_graph", T.nnet.softmax_graph(A), np.exp(A_VAL) / np.exp(A_VAL).sum(1, keepdims=True)),
        ("nnet.softmax_op", T.nnet.softmax_op(A), np.exp(A_VAL) / np.exp(A_VAL).sum(1, keepdims=True)),
        ("nnet.softmax_op vector: a row", T.nnet.softmax_op(v), (np.exp(V_VAL) / np.exp(V_VAL).sum())[None]),
        ("nnet.softmax_graph vector", T.nnet.softmax_graph(v), np.exp(V_VAL) / np.exp(V_VAL).sum()),
        ("nnet.confusion_matrix", T.nnet.confusion_matrix(p, (p + 1) % 4)[0],
         np.array([[(a == i) & (b == j) for i, j in [(i, j) for i in n for j in n]]
                   for a, b in zip(P_VAL, (P_VAL + 1) % 4)]).sum(0).reshape(4, 4).astype("int64")),
        ("nnet.confusion_matrix order", T.nnet.confusion_matrix(p * 2, p)[1], np.unique(np.r_[P_VAL * 2, P_VAL])),
        ("nnet.prepend_0_to_each_row", T.nnet.prepend_0_to_each_row(A), np.c_[np.zeros(3), A_VAL]),
        ("nnet.prepend_1_to_each_row", T.nnet.prepend_1_to_each_row(I), np.c_[np.ones(3, "int32"), I_VAL]),
        ("nnet.prepend_scalar_to_each_row", T.nnet.prepend_scalar_to_each_row(2.5, A), np.c_[np.full(3, 2.5), A_VAL]),
        ("nnet.batch_normalization mode", T.nnet.bn.batch_normalization(A, v, v, A.mean(0), A.std(0), mode="high_mem"),
         (A_VAL - A_VAL.mean(0)) / A_VAL.std(0) * V_VAL + V_VAL),
        ("grad_scale", T.grad(T.sum(tcomp.gradient.grad_scale(A, 0.5) * B), A), 0.5 * B_VAL),
        ("grad through symbolic repeat", T.grad(T.sum(T.repeat(v, p) ** 2), v), 2 * V_VAL * P_VAL),
        ("T.consider_constant", T.grad(T.sum(A * T.consider_constant(A)), A), A_VAL),
    ]


def test_sweep_fixes_match_numpy():
    A, B, F = T.dmatrix("A"), T.dmatrix("B"), T.fmatrix("F")
    I, J = T.imatrix("I"), T.imatrix("J")
    p, r, t3, v = T.ivector("p"), T.ivector("r"), T.dtensor3("t3"), T.dvector("v")
    cases = _cases(A, B, F, I, J, p, r, t3, v)
    f = tcomp.function([A, B, F, I, J, p, r, t3, v], [c[1] for c in cases], on_unused_input="ignore")
    got = f(A_VAL, B_VAL, F_VAL, I_VAL, J_VAL, P_VAL, R_VAL, T3_VAL, V_VAL)
    for (name, _, want), g in zip(cases, got):
        want = np.asarray(want)
        assert g.shape == want.shape, (name, g.shape, want.shape)
        assert g.dtype == want.dtype, (name, g.dtype, want.dtype)
        np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-9, err_msg=name)


def test_var_corrected_is_more_accurate_on_offset_data():
    """The corrected two-pass variance removes the rounding error of the mean: float32 data
    with a large offset, against the float64 variance."""
    x = T.fvector("x")
    f = tcomp.function([x], [T.var(x, corrected=True), T.var(x)])
    data = (1e4 + np.random.default_rng(3).standard_normal(4096)).astype("float32")
    exact = np.var(data.astype("float64"))
    corrected, plain = f(data)
    assert abs(corrected - exact) <= abs(plain - exact) + 1e-6 * exact
    np.testing.assert_allclose(corrected, exact, rtol=1e-3)


def test_subgraph_grad_matches_full_grad():
    """Theano's chained subgraph_grad over two pieces gives the full gradient."""
    x, w1, w2 = T.dvector("x"), T.dvector("w1"), T.dvector("w2")
    h = T.tanh(x * w1)
    cost = T.sum((h * w2) ** 2)
    (g2,), (gh,) = tcomp.gradient.subgraph_grad(wrt=[w2], end=[h], cost=cost)
    (g1,), _ = tcomp.gradient.subgraph_grad(wrt=[w1], end=[x], start={h: gh})
    f = tcomp.function([x, w1, w2], [g1, g2])
    xv, w1v, w2v = RNG.standard_normal(5), RNG.standard_normal(5), RNG.standard_normal(5)
    hv = np.tanh(xv * w1v)
    dh = 2 * hv * w2v ** 2
    g1v, g2v = f(xv, w1v, w2v)
    np.testing.assert_allclose(g2v, 2 * hv ** 2 * w2v, rtol=1e-12)
    np.testing.assert_allclose(g1v, dh * (1 - hv ** 2) * xv, rtol=1e-12)


def test_bad_arguments_raise_clearly():
    A, v = T.dmatrix("A"), T.dvector("v")
    with pytest.raises(ValueError, match="ndim=3"):
        T.reshape(A, (2, 6), ndim=3)
    with pytest.raises(ValueError, match="ndim=1 and outdim=2"):
        T.flatten(A, ndim=1, outdim=2)
    with pytest.raises(ValueError, match="not broadcastable"):
        T.as_tensor_variable(A, ndim=1)
    with pytest.raises(ValueError, match="ddof must be an int"):
        T.var(A, 0, True)
    with pytest.raises(TypeError, match="integer vector"):
        T.repeat(v, T.dvector("c"))
    with pytest.raises(TypeError, match="integer tensor"):
        T.inverse_permutation(v)
    with pytest.raises(TypeError, match="integer tensor"):
        T.ceil_intdiv(v, 2)
    with pytest.raises(ValueError, match="only known at run time"):
        T.get_vector_length(v)
    with pytest.raises(ValueError, match="mode must be"):
        T.nnet.batch_normalization(A, v, v, v, v, mode="fast")
    with pytest.raises(TypeError, match="use T.stack"):
        T.as_tensor_variable([v, A])
    with pytest.raises(ValueError, match="op=True"):
        T.mean(A, 0, "float64", True)
    assert T.get_vector_length(T.shape(A)) == 2
    assert T.get_vector_length(T.stack([v[0], v[1], v[2]])) == 3
    assert T.constant(3.0).get_scalar_constant_value() == 3.0


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint8", "bool"])
def test_bitwise_ops(dtype, backend):
    """``&``, ``|``, ``^``, ``~`` and Theano's and_/or_/xor/invert/bitwise_* on integer tensors
    are NumPy's bitwise ops ("bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not"), on
    bools the logical ones; floats keep their truthiness (logical)."""
    x, y = T.tensor("x", dtype, (None, 4)), T.tensor("y", dtype, (4,))
    is_int = dtype != "bool"
    outs = [x & y, x | y, x ^ y, ~x, T.and_(x, y), T.bitwise_or(x, y), T.xor(y, x), T.bitwise_not(y), T.invert(x)]
    if is_int:
        outs += [x & 5, 3 | y, x ^ -1 if dtype != "uint8" else x ^ 1]
    expect = ["bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not"] if is_int else []
    f = compile_fn([x, y], outs, backend, expect_ops=expect)
    info = np.iinfo(dtype) if is_int else None
    rng = np.random.default_rng(11)
    lo, hi = (info.min, info.max) if is_int else (0, 1)
    xv = rng.integers(lo, hi, (3, 4), endpoint=True).astype(dtype)
    yv = rng.integers(lo, hi, 4, endpoint=True).astype(dtype)
    wants = [np.bitwise_and(xv, yv), np.bitwise_or(xv, yv), np.bitwise_xor(xv, yv), np.invert(xv),
             np.bitwise_and(xv, yv), np.bitwise_or(xv, yv), np.bitwise_xor(yv, xv), np.invert(yv), np.invert(xv)]
    if is_int:
        wants += [xv & np.array(5, dtype), np.array(3, dtype) | yv,
                  xv ^ np.array(-1 if dtype != "uint8" else 1).astype(dtype)]
    for i, (g, w) in enumerate(zip(f(xv, yv), wants)):
        assert g.dtype == w.dtype, (i, g.dtype, w.dtype)
        np.testing.assert_array_equal(g, w, err_msg=f"output {i}")


def test_bitwise_rejects_floats_and_mixed_stays_integral():
    i, m = T.ivector("i"), T.dvector("m")
    with pytest.raises(TypeError, match="integer and bool tensors only"):
        tcomp.tensor.variable.apply("bitwise_not", [m])
    f = tcomp.function([i, m], [i & (m > 0), (m > 0) | (m < -1), ~(m > 0)])
    iv, mv = np.array([5, -3, 7, 2], "int32"), np.array([1.0, -2.0, 0.5, -0.5])
    a, b, c = f(iv, mv)
    np.testing.assert_array_equal(a, iv & (mv > 0))
    assert a.dtype == np.int32
    np.testing.assert_array_equal(b, (mv > 0) | (mv < -1))
    np.testing.assert_array_equal(c, ~(mv > 0))


def _bitwise_round_trip(op):
    def build(rng):
        g = Graph()
        a = g.add_input(TensorType("int32", (None, 3)), "a")
        b = g.add_input(TensorType("int16", (1, 3)), "b")
        g.outputs = [g.add_node(op, [a, b]) if op != "bitwise_not" else g.add_node(op, [a]), a]
        return g, [rng.integers(-100, 100, (4, 3)).astype("int32"), rng.integers(-100, 100, (1, 3)).astype("int16")]
    return build


#: this file's rows in tests/test_ir_text.py's round-trip table
ROUND_TRIP_BUILDERS = {op: _bitwise_round_trip(op)
                       for op in ("bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not")}


def test_batch_normalization_train_running_averages_and_layouts():
    """Theano 1.0's batch_normalization_train/test: spatial axes on a 4-d input, parameters of
    the non-normalized rank, running averages (variance unbiased by m / (m - 1))."""
    rng = np.random.default_rng(5)
    xv = rng.standard_normal((4, 3, 2, 5)) * 2 + 1
    gv, bv, rmv, rvv = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal(3), rng.uniform(1, 2, 3)
    x = T.dtensor4("x")
    g, b, rm, rv = T.dvector("g"), T.dvector("b"), T.dvector("rm"), T.dvector("rv")
    out, mean, invstd, new_rm, new_rv = T.nnet.bn.batch_normalization_train(
        x, g, b, axes="spatial", epsilon=1e-4, running_average_factor=0.3, running_mean=rm, running_var=rv)
    test_out = T.nnet.batch_normalization_test(x, g, b, rm, rv, axes=(0, 2, 3))
    out2, mean2, _ = T.nnet.batch_normalization_train(x, g.dimshuffle("x", 0, "x", "x"), b.dimshuffle("x", 0, "x", "x"),
                                                      axes=(0, 2, 3))
    f = tcomp.function([x, g, b, rm, rv], [out, mean, invstd, new_rm, new_rv, test_out, out2, mean2])
    got = f(xv, gv, bv, rmv, rvv)
    ax = (0, 2, 3)
    m, v = xv.mean(ax), xv.var(ax)
    bc = (None, slice(None), None, None)
    want_out = (xv - m[bc]) * gv[bc] / np.sqrt(v[bc] + 1e-4) + bv[bc]
    n = xv.size / 3
    wants = [want_out, m, 1 / np.sqrt(v + 1e-4), rmv * 0.7 + m * 0.3, rvv * 0.7 + n / (n - 1) * v * 0.3,
             (xv - rmv[bc]) * gv[bc] / np.sqrt(rvv[bc] + 1e-4) + bv[bc], want_out, m[bc]]
    for i, (gt, w) in enumerate(zip(got, wants)):
        assert gt.shape == w.shape, (i, gt.shape, w.shape)
        np.testing.assert_allclose(gt, w, rtol=1e-10, atol=1e-12, err_msg=f"output {i}")
    with pytest.raises(ValueError, match="both running_mean and running_var"):
        T.nnet.batch_normalization_train(x, g, b, running_mean=rm)
    with pytest.raises(ValueError, match="gamma must have rank"):
        T.nnet.batch_normalization_train(x, T.dmatrix("g2"), b, axes="spatial")


def test_polygamma_and_tri_gamma_match_scipy_and_differentiate():
    special = pytest.importorskip("scipy.special")
    x = T.dvector("x")
    xs = np.r_[np.linspace(0.05, 30, 60), -np.linspace(0.05, 6.9, 40), [0.0, -2.0, 1e-6, 1e4]]
    outs = [T.tri_gamma(x), T.polygamma(2, x), T.polygamma(3, x), T.polygamma(0, x),
            T.grad(T.sum(T.tri_gamma(x[:60])), x)[:60]]
    got = tcomp.function([x], outs)(xs)
    wants = [special.polygamma(1, xs), special.polygamma(2, xs), special.polygamma(3, xs), special.psi(xs),
             special.polygamma(2, xs[:60])]
    for i, (g, w) in enumerate(zip(got, wants)):
        fin = np.isfinite(w)
        if i == 3:   # psi: T.psi's own accuracy and pole convention
            fin &= np.abs(xs - np.round(xs)) > 1e-9
        np.testing.assert_allclose(g[fin], w[fin], rtol=1e-12, atol=0, err_msg=f"output {i}")
        if i != 3:   # (T.psi gives -inf at the negative poles, scipy nan)
            np.testing.assert_array_equal(g[~np.isfinite(w)], w[~np.isfinite(w)], err_msg=f"poles {i}")
    with pytest.raises(TypeError, match="non-negative Python int"):
        T.polygamma(1.5, x)


def test_shared_broadcastable():
    """Theano's ``shared(value, broadcastable=...)``: True dims are static 1 (they broadcast),
    False dims may change with set_value."""
    b = tcomp.shared(np.arange(3.0).reshape(1, 3), "b", broadcastable=(True, False))
    c = tcomp.shared(np.zeros((1, 3)), "c", broadcastable=(False, False))
    assert b.broadcastable == (True, False) and c.broadcastable == (False, False)
    c.set_value(np.ones((2, 5)))
    assert c.get_value().shape == (2, 5)
    with pytest.raises(ValueError, match="expected shape"):
        b.set_value(np.ones((2, 3)))
    with pytest.raises(ValueError, match="rank 2"):
        tcomp.shared(np.zeros((1, 3)), broadcastable=(True,))
    x = T.dmatrix("x")
    np.testing.assert_array_equal(tcomp.function([x], x + b)(np.ones((4, 3))), np.ones((4, 3)) + np.arange(3.0))


def test_theano_nnet_module_paths():
    from tcomp.tensor.nnet.nnet import confusion_matrix, crossentropy_softmax_1hot, softmax  # noqa: F401
    from tcomp.tensor.nnet.sigm import hard_sigmoid, sigmoid, softplus, ultra_fast_sigmoid  # noqa: F401

    assert softmax is T.nnet.softmax and hard_sigmoid is T.nnet.hard_sigmoid


def test_bessel_i0_i1_match_scipy_with_gradients():
    special = pytest.importorskip("scipy.special")
    x = T.dvector("x")
    xs = np.r_[np.linspace(-30, 30, 241), [0.0, 7.999, 8.0, 8.001, 100.0, 700.0, 1e-300, np.inf, -np.inf, np.nan]]
    n = 241
    f = tcomp.function([x], [T.i0(x), T.i1(x), T.grad(T.sum(T.i0(x[:n])), x)[:n], T.grad(T.sum(T.i1(x[:n])), x)[:n]])
    got = f(xs)
    wants = [special.i0(xs), special.i1(xs), special.i1(xs[:n]), special.ivp(1, xs[:n])]
    for i, (g, w) in enumerate(zip(got, wants)):
        np.testing.assert_allclose(g, w, rtol=4e-15, atol=0, equal_nan=True, err_msg=f"output {i}")
    xf = T.fvector("xf")
    vf = np.array([-3.0, 0.5, 20.0, 89.5], "float32")  # 89.5: exp(x) alone would overflow float32
    g0, g1 = tcomp.function([xf], [T.i0(xf), T.i1(xf)])(vf)
    assert g0.dtype == np.float32
    np.testing.assert_allclose(g0, special.i0(vf.astype("f8")), rtol=2e-6)
    np.testing.assert_allclose(g1, special.i1(vf.astype("f8")), rtol=2e-6)


def test_undefined_grad():
    x, y = T.dvector("x"), T.dvector("y")
    z = tcomp.gradient.undefined_grad(x) * 2 + y
    np.testing.assert_array_equal(T.grad(T.sum(z), y).eval({y: np.ones(2), x: np.ones(2)}), np.ones(2))
    np.testing.assert_array_equal(z.eval({y: np.ones(2), x: np.full(2, 3.0)}), np.full(2, 7.0))
    with pytest.raises(TypeError, match="undefined_grad with respect to its input 0 is undefined"):
        T.grad(T.sum(z), x)


def test_plural_constructor_splits_one_string():
    """Theano's ``a, b, c, d = scalars('abcd')`` (the stacklists doc example): one string of
    several characters gives one variable per character; one name gives one variable."""
    a, b, c, d = T.dscalars("abcd")
    assert [v.name for v in (a, b, c, d)] == ["a", "b", "c", "d"]
    assert T.dmatrices("x").name == "x" and len(T.matrices("x", "yz")) == 2
    f = tcomp.function([a, b, c, d], T.stacklists([[a, b], [c, d]]))
    np.testing.assert_array_equal(f(1, 2, 3, 4), [[1.0, 2.0], [3.0, 4.0]])


def test_function_input_cuts_the_graph():
    """Theano's neighbours doc example: ``theano.function([neibs], neibs2images(neibs, ...))``
    with ``neibs`` computed from ``images``."""
    from tcomp.tensor.nnet.neighbours import images2neibs, neibs2images

    images = T.dtensor4("images")
    neibs = images2neibs(images, neib_shape=(5, 5))
    im_val = np.arange(100.0).reshape((1, 1, 10, 10))
    neibs_val = tcomp.function([images], neibs)(im_val)
    want = im_val.reshape(2, 5, 2, 5).transpose(0, 2, 1, 3).reshape(4, 25)
    np.testing.assert_array_equal(neibs_val, want)
    inv_window = tcomp.function([neibs], neibs2images(neibs, (5, 5), im_val.shape))
    np.testing.assert_array_equal(inv_window(neibs_val), im_val)
    x = T.dvector("x")
    h = T.tanh(x)
    f = tcomp.function([h, x], h * 2 + x)
    np.testing.assert_allclose(f(np.array([0.5, 1.0]), np.array([1.0, 2.0])), [2.0, 4.0])
    with pytest.raises(ValueError, match="also replaced by givens"):
        tcomp.function([h], h * 2, givens={h: x})


def test_gradient_error_classes():
    x, y = T.dvector("x"), T.dvector("y")
    with pytest.raises(tcomp.gradient.DisconnectedInputError, match="does not depend"):
        T.grad(T.sum(x), y)
    with pytest.raises(tcomp.gradient.NullTypeGradError, match="undefined"):
        T.grad(T.sum(tcomp.gradient.undefined_grad(x)), x)
    assert issubclass(tcomp.gradient.DisconnectedInputError, ValueError)
    assert issubclass(tcomp.gradient.NullTypeGradError, TypeError)


def test_more_theano_module_paths():
    import tcomp.gof.graph as graph
    from tcomp.tensor.sort import argsort, sort, topk  # noqa: F401
    from tcomp.tensor.subtensor import inc_subtensor, set_subtensor  # noqa: F401

    assert callable(T.sort) and sort is T.sort and set_subtensor is T.set_subtensor
    x, y = T.dvector("x"), T.dvector("y")
    w = tcomp.shared(np.ones(2), "w")
    h = T.tanh(x * w)
    cost = T.sum(h + 2.0 * y)
    found = graph.inputs([cost])
    assert [v for v in found if v is x or v is y or v is w] == [x, w, y]
    assert all(not v.inputs for v in found)
    assert graph.inputs([cost], blockers=[h]) == [h] + [v for v in found if v not in (x, w)]
    between = graph.variables([x], [cost])
    assert x in between and h in between and cost in between
