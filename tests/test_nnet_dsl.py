"""T.nnet conv2d / pool_2d / batch normalization / dropout and RandomStreams, through the DSL,
against NumPy loops written here."""
import numpy as np
import pytest
from conftest import BACKENDS

import tcomp
import tcomp.tensor as T


@pytest.fixture(autouse=True, params=BACKENDS)
def default_backend(request, monkeypatch):
    """Every test here runs with each available backend as tcomp.config.backend."""
    monkeypatch.setattr(tcomp.config, "backend", request.param)
    return request.param

def naive_conv(x, w, pad, stride=(1, 1), dilation=(1, 1), flip=True):
    if flip:
        w = w[:, :, ::-1, ::-1]
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * pad[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    patch = xp[:, :, i * stride[0] + a * dilation[0], j * stride[1] + b * dilation[1]]
                    out[:, :, i, j] += patch @ w[:, :, a, b].T
    return out


@pytest.mark.parametrize("border_mode,pad", [("valid", (0, 0)), ("full", (2, 1)), ("half", (1, 1)),
                                             ((1, 2), (1, 2)), (1, (1, 1))])
def test_conv2d_border_modes(border_mode, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5))
    w = rng.standard_normal((4, 3, 3, 2))
    X, W = T.tensor4("x", dtype="float64"), T.tensor4("w", dtype="float64", shape=(4, 3, 3, 2))
    f = tcomp.function([X, W], T.nnet.conv2d(X, W, border_mode=border_mode))
    np.testing.assert_allclose(f(x, w), naive_conv(x, w, pad), rtol=1e-10, atol=1e-10)


def test_conv2d_stride_dilation_noflip():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 9, 8))
    w = rng.standard_normal((3, 2, 2, 3))
    X, W = T.tensor4("x", dtype="float64"), T.tensor4("w", dtype="float64")
    y = T.nnet.conv2d(X, W, subsample=(2, 1), filter_dilation=(2, 2), filter_flip=False)
    got = tcomp.function([X, W], y)(x, w)
    np.testing.assert_allclose(got, naive_conv(x, w, (0, 0), (2, 1), (2, 2), flip=False), rtol=1e-10)


def test_pool_2d_max_and_average():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 4)).astype("float32")
    X = T.tensor4("x")
    mx = tcomp.function([X], T.nnet.pool_2d(X, (2, 2)))(x)
    av = tcomp.function([X], T.nnet.pool_2d(X, (3, 2), mode="average"))(x)
    np.testing.assert_allclose(mx, x.reshape(2, 3, 3, 2, 2, 2).max(axis=(3, 5)))
    np.testing.assert_allclose(av, x.reshape(2, 3, 2, 3, 2, 2).mean(axis=(3, 5)), rtol=1e-6)


def test_batch_normalization_train_and_inference():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 5)).astype("float64") * 3 + 1
    g, b = rng.standard_normal(5), rng.standard_normal(5)
    X = T.dmatrix("x")
    G, B = T.dvector("g"), T.dvector("b")
    out, mean, invstd = T.nnet.batch_normalization_train(X, G, B, epsilon=1e-5)
    got, m, s = tcomp.function([X, G, B], [out, mean, invstd])(x, g, b)
    ref = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5) * g + b
    np.testing.assert_allclose(got, ref, rtol=1e-10)
    inf = T.nnet.batch_normalization(X, G, B, m, 1 / s)
    np.testing.assert_allclose(tcomp.function([X, G, B], inf)(x, g, b), ref, rtol=1e-10)


def test_random_streams_reproducible_and_fresh_per_call():
    def draws(seed):
        srng = tcomp.RandomStreams(seed)
        u = srng.uniform((1000,), low=-2, high=3)
        n = srng.normal((2000,), avg=1.0, std=2.0, dtype="float64")
        f = tcomp.function([], [u, n])
        return f(), f()

    (u1, n1), (u2, n2) = draws(42)
    (u1b, n1b), _ = draws(42)
    np.testing.assert_array_equal(u1, u1b)
    np.testing.assert_array_equal(n1, n1b)
    assert not np.array_equal(u1, u2)  # counter advanced between calls
    assert u1.dtype == "float32" and u1.min() >= -2 and u1.max() < 3
    assert abs(u1.mean() - 0.5) < 0.2
    assert abs(n1.mean() - 1.0) < 0.2 and abs(n1.std() - 2.0) < 0.2
    (u3, _), _ = draws(43)
    assert not np.array_equal(u1, u3)


def test_dropout_mask_and_scaling():
    srng = tcomp.RandomStreams(7)
    X = T.matrix("x")
    f = tcomp.function([X], T.nnet.dropout(X, 0.25, srng))
    x = np.ones((200, 50), "float32")
    a, b = f(x), f(x)
    assert set(np.unique(a)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((a == 0).mean() - 0.25) < 0.03
    assert not np.array_equal(a, b)
    assert abs(a.mean() - 1.0) < 0.05
