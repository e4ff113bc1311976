"""Theano names added as compositions (tcomp/tensor/array_more.py, xlogx.py), each checked
against NumPy, with finite-difference gradients where they are differentiable."""
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.gradient import verify_grad

RNG = np.random.default_rng(20261201)


def test_tri_tril_triu_match_numpy():
    m = T.dtensor3("m")
    x = RNG.standard_normal((2, 4, 6))
    f = tcomp.function([m], [T.tril(m), T.triu(m, 1), T.tril(m, -2), T.triu(m, -1)])
    for got, want in zip(f(x), [np.tril(x), np.triu(x, 1), np.tril(x, -2), np.triu(x, -1)]):
        np.testing.assert_array_equal(got, want)
    n = T.lscalar("n")
    np.testing.assert_array_equal(tcomp.function([n], T.tri(n, 5, 1))(3), np.tri(3, 5, 1))
    verify_grad(lambda a: T.tril(a, 1), [RNG.standard_normal((3, 4))], rng=np.random.default_rng(1))


def test_split_pieces_and_gradient():
    v, sz = T.dvector("v"), T.lvector("sz")
    pieces = T.split(v, sz, 3)
    cost = sum((p ** 2).sum() * (i + 1) for i, p in enumerate(pieces))
    f = tcomp.function([v, sz], pieces + [T.grad(cost, v)])
    x = RNG.standard_normal(7)
    *got, g = f(x, np.array([2, 4, 1]))
    for a, b in zip(got, np.split(x, [2, 6])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(g, 2 * x * np.repeat([1, 2, 3], [2, 4, 1]))
    # sizes that do not tile the axis raise instead of giving wrong pieces
    for bad in ([2, 4, 0], [2, 4, 2], [2, 6, -1], [7, 0, 0, 0]):
        with pytest.raises(ValueError, match="reshape"):
            f(x, np.array(bad))
    with pytest.raises(TypeError, match="splits_size"):
        T.split(v, T.dvector("s"), 2)


def test_stacklists_and_batched_tensordot():
    a, b = T.dscalars("a", "b")
    np.testing.assert_array_equal(tcomp.function([a, b], T.stacklists([[a, b], [b, a]]))(1, 2), [[1, 2], [2, 1]])
    X, Y = T.dtensor3("X"), T.dtensor4("Y")
    x, y = RNG.standard_normal((3, 4, 5)), RNG.standard_normal((3, 4, 5, 2))
    f = tcomp.function([X, Y], T.batched_tensordot(X, Y, [[1, 2], [1, 2]]))
    np.testing.assert_allclose(f(x, y), np.einsum("bij,bijk->bk", x, y))
    Y3 = T.dtensor3("Y3")
    y3 = RNG.standard_normal((3, 5, 2))
    np.testing.assert_allclose(tcomp.function([X, Y3], T.batched_tensordot(X, Y3, 1))(x, y3),
                               np.einsum("bij,bjk->bik", x, y3))
    with pytest.raises(ValueError, match="batch axis"):
        T.batched_tensordot(X, Y, [[0], [0]])


def test_compress_bartlett_unique():
    c, m = T.bvector("c"), T.dmatrix("m")
    x = RNG.standard_normal((4, 3))
    cond = np.array([1, 0, 1], "int8")
    f = tcomp.function([c, m], [T.extra_ops.compress(c, m, axis=1), T.extra_ops.compress(c, m)])
    got = f(cond, x)
    np.testing.assert_array_equal(got[0], np.compress(cond, x, axis=1))
    np.testing.assert_array_equal(got[1], np.compress(cond, x))
    M = T.lscalar("M")
    fb = tcomp.function([M], T.extra_ops.bartlett(M))
    for k in (0, 1, 2, 5, 8):
        np.testing.assert_allclose(fb(k), np.bartlett(k))
    iv = T.lvector("iv")
    f = tcomp.function([iv], list(T.extra_ops.Unique(True, True, True)(iv)))
    for data in (np.array([3, 1, 3, 2, 1, 1, 7]), np.array([5]), np.zeros(0, "int64")):
        want = np.unique(data, return_index=True, return_inverse=True, return_counts=True)
        for got_part, want_part in zip(f(data), want):
            np.testing.assert_array_equal(got_part, np.ravel(want_part))


def test_renamed_elementwise_and_scalar_conversions():
    v, a = T.dvector("v"), T.dscalar("a")
    x = np.array([0.5, 1.5, -2.5, 4.0])
    f = tcomp.function([v, a], [T.inv(v), T.second(v, a), T.int_div(v, 2), T.power(v, 2), T.iround(v),
                                T.scalar_from_tensor(a) + T.tensor_from_scalar(2.0)])
    got = f(x, 3.0)
    for g, w in zip(got, [1 / x, np.full(4, 3.0), x // 2, x ** 2, np.round(x).astype("int64"), 5.0]):
        np.testing.assert_array_equal(g, w)
    assert got[4].dtype == np.int64
    with pytest.raises(TypeError, match="0-d"):
        T.scalar_from_tensor(v)


def test_xlogx_values_and_finite_gradient_at_zero():
    v, w = T.dvector("v"), T.dvector("w")
    x = np.array([0.0, 0.5, 2.0])
    y = np.array([0.0, 3.0, 0.25])
    f = tcomp.function([v, w], [T.xlogx.xlogx(v), T.xlogx.xlogy0(v, w), T.grad(T.xlogx.xlogx(v).sum(), v)])
    a, b, g = f(x, y)
    np.testing.assert_allclose(a, [0.0, 0.5 * np.log(0.5), 2 * np.log(2.0)])
    np.testing.assert_allclose(b, [0.0, 0.5 * np.log(3.0), 2 * np.log(0.25)])
    assert np.isfinite(g).all()
    np.testing.assert_allclose(g[1:], np.log(x[1:]) + 1)
    verify_grad(T.xlogx.xlogx, [np.array([0.3, 1.7])], rng=np.random.default_rng(2))


def test_linalg_op_classes_take_theanos_constructor_arguments():
    from tcomp.tensor.nlinalg import SVD, Det, ExtractDiag, MatrixInverse
    from tcomp.tensor.slinalg import Cholesky, Solve

    a, b = T.dmatrix("a"), T.dmatrix("b")
    x, y = np.array([[4.0, 1.0], [1.0, 3.0]]), np.array([[1.0], [2.0]])
    f = tcomp.function([a, b], [Cholesky()(a), Cholesky(lower=False)(a), Solve("symmetric")(a, b),
                                Solve(A_structure="lower_triangular")(a, b), MatrixInverse()(a),
                                SVD(full_matrices=False, compute_uv=False)(a), Det()(a), ExtractDiag(offset=1)(a)])
    want = [np.linalg.cholesky(x), np.linalg.cholesky(x).T, np.linalg.solve(x, y), np.linalg.solve(np.tril(x), y),
            np.linalg.inv(x), np.linalg.svd(x, compute_uv=False), np.linalg.det(x), np.diag(x, 1)]
    for got, w in zip(f(x, y), want):
        np.testing.assert_allclose(got, w, rtol=1e-10)
    with pytest.raises(TypeError, match="unexpected keyword"):
        Cholesky(upper=True)
    with pytest.raises(ValueError, match="A_structure"):
        Solve("banded")(a, b)


def test_numpy_style_methods_and_reduction_dtypes():
    x, v = T.dmatrix("x"), T.lvector("v")
    a, iv = np.arange(12.0).reshape(3, 4) - 5, np.array([2, 0, 1])
    cases = [(x.size, np.int64(12)), (x.clip(0, 1), a.clip(0, 1)), (x.round(), np.round(a)),
             (x.swapaxes(0, 1), a.swapaxes(0, 1)), (x.take(v, axis=1), a.take(iv, axis=1)),
             (x.take(v), a.take(iv)), (x.copy(name="c"), a), (x.dot(x.T), a @ a.T),
             (x.zeros_like(), np.zeros_like(a)), (x.ones_like(dtype="int32"), np.ones_like(a, "int32"))]
    f = tcomp.function([x, v], [c[0] for c in cases])
    for got, (_, want) in zip(f(a, iv), cases):
        np.testing.assert_array_equal(got, want)
        assert np.asarray(got).dtype == np.asarray(want).dtype
    assert x.copy(name="c").name == "c" and x.name == "x"
    b = T.bvector("b")
    data = np.array([100, 100, 100], "int8")
    g = tcomp.function([b], [b.sum(dtype="int64"), T.mean(b, dtype="float64"), b.prod(acc_dtype="int64"),
                             T.sum(b.astype("float64"), dtype="float32")])
    s, m, p, f32 = g(data)
    assert s == 300 and s.dtype == np.int64
    assert m == 100.0 and m.dtype == np.float64
    assert p == 10 ** 6
    assert f32 == 300.0 and f32.dtype == np.float32
