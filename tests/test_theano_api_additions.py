"""Theano names a program copied from Theano's documentation uses: gammaln/psi/gamma,
round modes, leaky relu, max_and_argmax, mgrid/ogrid, theano.clone.  References are
mpmath (special functions) and NumPy written here."""
import mpmath
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T

POS = np.concatenate([np.linspace(0.02, 12, 41), [1e-4, 0.5, 1.0, 2.0, 7.99, 8.0, 8.01, 55.5, 1e4]])
NEG = np.array([-0.5, -1.3, -2.7, -5.5, -9.25, -0.001])


def _ref(fn, v):
    return np.array([float(fn(mpmath.mpf(float(a)))) for a in v])


@pytest.mark.parametrize("name, ref", [
    ("gammaln", lambda a: mpmath.log(abs(mpmath.gamma(a)))),
    ("psi", mpmath.digamma),
    ("gamma", mpmath.gamma),
])
def test_special_functions_match_mpmath(name, ref):
    x = T.dvector("x")
    f = tcomp.function([x], getattr(T, name)(x))
    v = np.concatenate([POS[POS < 150] if name == "gamma" else POS, NEG])
    want = _ref(ref, v)
    np.testing.assert_allclose(f(v), want, rtol=1e-11, atol=1e-12)


def test_gammaln_float32_and_int_input():
    y = T.fvector("y")
    v = POS.astype("float32")
    got = tcomp.function([y], T.gammaln(y))(v)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _ref(mpmath.loggamma, v.astype("float64")), rtol=2e-6, atol=1e-5)
    i = T.ivector("i")
    out = T.gammaln(i)
    assert out.dtype == tcomp.config.floatX
    np.testing.assert_allclose(tcomp.function([i], out)(np.arange(1, 7, dtype="int32")),
                               np.log([1, 1, 2, 6, 24, 120]), atol=1e-5)


def test_gammaln_poles_are_inf():
    x = T.dvector("x")
    got = tcomp.function([x], T.gammaln(x))(np.array([0.0, -1.0, -3.0]))
    assert np.isposinf(got).all()


def test_gammaln_gradient_is_psi_and_psi_gradient_is_trigamma():
    x = T.dvector("x")
    v = np.concatenate([POS[:30], NEG[:4]])
    g1 = tcomp.function([x], T.grad(T.gammaln(x).sum(), x))(v)
    np.testing.assert_allclose(g1, _ref(mpmath.digamma, v), rtol=1e-10, atol=1e-10)
    g2 = tcomp.function([x], T.grad(T.psi(x).sum(), x))(v)
    np.testing.assert_allclose(g2, _ref(lambda a: mpmath.polygamma(1, a), v), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("mode, ref", [
    (None, np.round),
    ("half_to_even", np.round),
    ("half_away_from_zero", lambda v: np.sign(v) * np.floor(np.abs(v) + 0.5)),
])
def test_round_modes(mode, ref):
    x = T.vector("x")
    v = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.4, -0.6, 3.7], "float32")
    np.testing.assert_array_equal(tcomp.function([x], T.round(x, mode=mode))(v), ref(v))


def test_round_rejects_unknown_mode():
    with pytest.raises(ValueError, match="half_to_even"):
        T.round(T.vector("x"), mode="up")


def test_leaky_relu_and_its_gradient():
    x = T.vector("x")
    v = np.array([-2.0, -0.5, 0.25, 3.0], "float32")
    f = tcomp.function([x], [T.nnet.relu(x, 0.1), T.grad(T.nnet.relu(x, 0.1).sum(), x), T.nnet.relu(x)])
    leaky, grad, plain = f(v)
    np.testing.assert_allclose(leaky, np.where(v > 0, v, 0.1 * v), rtol=1e-6)
    np.testing.assert_allclose(grad, np.where(v > 0, 1.0, 0.1), rtol=1e-6)
    np.testing.assert_allclose(plain, np.maximum(v, 0))
    a = T.scalar("a")
    got = tcomp.function([x, a], T.nnet.relu(x, a))(v, np.float32(0.3))
    np.testing.assert_allclose(got, np.where(v > 0, v, 0.3 * v), rtol=1e-6)


def test_max_and_argmax():
    x = T.matrix("x")
    v = np.random.default_rng(0).standard_normal((4, 5)).astype("float32")
    for axis in (0, 1, None):
        mx, am = tcomp.function([x], T.max_and_argmax(x, axis=axis))(v)
        np.testing.assert_array_equal(mx, v.max(axis=axis))
        np.testing.assert_array_equal(am, v.argmax(axis=axis))


def test_mgrid_ogrid_static_and_symbolic():
    for got, want in zip(tcomp.function([], T.mgrid[0:3, 1:7:2])(), np.mgrid[0:3, 1:7:2]):
        np.testing.assert_array_equal(got, want)
    o = tcomp.function([], T.ogrid[0:3, 0:4])()
    w = np.ogrid[0:3, 0:4]
    assert [a.shape for a in o] == [a.shape for a in w]
    for got, want in zip(o, w):
        np.testing.assert_array_equal(got, want)
    n = T.iscalar("n")
    g = tcomp.function([n], T.mgrid[0:n, 0:2])(np.int32(4))
    for got, want in zip(g, np.mgrid[0:4, 0:2]):
        np.testing.assert_array_equal(got, want)
    lin = tcomp.function([], T.mgrid[0:1:5j])()
    np.testing.assert_allclose(lin, np.mgrid[0:1:5j], rtol=1e-6)
    with pytest.raises(TypeError, match="slices"):
        T.mgrid[3]


def test_clone_replaces_and_leaves_the_original():
    x, y = T.vector("x"), T.vector("y")
    w = tcomp.shared(np.float32(2.0), name="w")
    z = T.tanh(x) * w + x
    z2 = tcomp.clone(z, replace={x: y * 3})
    v = np.array([0.1, -0.4, 1.2], "float32")
    np.testing.assert_allclose(tcomp.function([y], z2)(v), np.tanh(3 * v) * 2 + 3 * v, rtol=1e-6)
    np.testing.assert_allclose(tcomp.function([x], z)(v), np.tanh(v) * 2 + v, rtol=1e-6)
    a, b = tcomp.clone([z, x * 2], replace=[(x, y)])
    got = tcomp.function([y], [a, b])(v)
    np.testing.assert_allclose(got[1], 2 * v)
    fresh = tcomp.clone(z, share_inputs=False)
    inputs = [v_ for v_ in tcomp.trace._postorder([fresh], lambda q: q) if v_.op == "input"]
    assert x not in inputs and w in inputs
    with pytest.raises(TypeError, match="strict"):
        tcomp.clone(z, replace={x: T.matrix("m")})
    widened = tcomp.clone(z, replace={x: T.dvector("d")}, strict=False)
    assert widened.dtype == "float64"
