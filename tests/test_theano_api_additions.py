"""Theano names a program copied from Theano's documentation uses: gammaln/psi/gamma,
round modes, leaky relu, max_and_argmax, mgrid/ogrid, theano.clone.  References are
mpmath (special functions) and NumPy written here."""
import mpmath
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.testing import verify_grad

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


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_psi_poles_are_scipys(backend):
    """SciPy's digamma: -inf at +0, +inf at -0, nan at the negative integers and -inf."""
    x = T.dvector("x")
    v = np.array([0.0, -0.0, -1.0, -2.0, -7.0, -1e20, -np.inf, np.inf])
    got = tcomp.function([x], T.psi(x), backend=backend)(v)
    np.testing.assert_array_equal(got, [-np.inf, np.inf] + [np.nan] * 5 + [np.inf])


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


def test_elementwise_more_against_numpy():
    x, y = T.vector("x"), T.vector("y")
    v = np.array([-1.2, -0.3, 0.0, 0.4, 1.1, 89.0], "float32")
    w = np.array([-1.2, -0.3000001, 1.0, 0.4, 1.2, np.inf], "float32")
    f = tcomp.function([x, y], [T.tan(x), T.deg2rad(x), T.rad2deg(x), T.isclose(x, y), T.allclose(x, x),
                                T.largest(x, y, 0.5), T.smallest(x, y), T.ptp(x)])
    got = f(v, w)
    want = [np.tan(v), np.deg2rad(v), np.rad2deg(v), np.isclose(v, w), np.allclose(v, v),
            np.maximum(np.maximum(v, w), 0.5), np.minimum(v, w), np.ptp(v)]
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=2e-6)
    inf = np.array([np.inf, -np.inf, np.nan], "float32")
    np.testing.assert_array_equal(tcomp.function([x, y], T.isclose(x, y, equal_nan=True))(inf, inf),
                                  np.isclose(inf, inf, equal_nan=True))


def test_choose_modes():
    i = T.ivector("i")
    a = np.array([0, 1, 2, 1, 0], "int32")
    choices = [np.arange(5), np.arange(5) * 10, np.arange(5) * 100]
    got = tcomp.function([i], T.choose(i, choices))(a)
    np.testing.assert_array_equal(got, np.choose(a, choices))
    bad = np.array([3, -1, 5, 1, 0], "int32")
    for mode in ("clip", "wrap"):
        np.testing.assert_array_equal(tcomp.function([i], T.choose(i, choices, mode=mode))(bad),
                                      np.choose(bad, choices, mode=mode))


def test_shape_helpers():
    m = T.matrix("m")
    v = np.arange(6, dtype="float32").reshape(2, 3)
    got = tcomp.function([m], [T.shape_padleft(m), T.shape_padright(m, 2), T.shape_padaxis(m, 1),
                               T.horizontal_stack(m, m), T.vertical_stack(m, m, m)])(v)
    want = [v[None], v[:, :, None, None], v[:, None], np.hstack([v, v]), np.vstack([v, v, v])]
    for g, r in zip(got, want):
        np.testing.assert_array_equal(g, r)
    assert T.get_scalar_constant_value(T.as_tensor(3)) == 3
    with pytest.raises(T.NotScalarConstantError):
        T.get_scalar_constant_value(m)
    with pytest.raises(TypeError, match="matrices"):
        T.horizontal_stack(m, T.vector("v"))


def test_extra_ops_against_numpy():
    i = T.ivector("i")
    a = np.array([0, 1, 1, 3, 7, 3], "int32")
    eo = T.extra_ops
    f = tcomp.function([i], [eo.bincount(i), eo.bincount(i, minlength=10), eo.to_one_hot(i, 8)])
    got = f(a)
    np.testing.assert_array_equal(got[0], np.bincount(a))
    np.testing.assert_array_equal(got[1], np.bincount(a, minlength=10))
    np.testing.assert_array_equal(got[2], np.eye(8, dtype="float32")[a])
    np.testing.assert_array_equal(tcomp.function([i], eo.bincount(i))(np.zeros(0, "int32")), np.bincount([]))
    w = T.vector("w")
    wv = np.linspace(0.5, 3, 6).astype("float32")
    np.testing.assert_allclose(tcomp.function([i, w], eo.bincount(i, weights=w))(a, wv), np.bincount(a, wv), rtol=1e-6)
    m = T.matrix("m")
    mv = np.arange(12, dtype="float32").reshape(3, 4)
    fd = tcomp.function([m], [eo.fill_diagonal(m, 5.0), eo.fill_diagonal_offset(m, -1.0, 1)])(mv)
    ref = mv.copy()
    np.fill_diagonal(ref, 5.0)
    np.testing.assert_array_equal(fd[0], ref)
    ref = mv.copy()
    ref[np.arange(3), np.arange(1, 4)] = -1
    np.testing.assert_array_equal(fd[1], ref)
    s, q = T.vector("s"), T.vector("q")
    sv, qv = np.array([1, 2, 2, 3, 5], "float32"), np.array([0, 2, 2.5, 9, 1], "float32")
    for side in ("left", "right"):
        np.testing.assert_array_equal(tcomp.function([s, q], eo.searchsorted(s, q, side=side))(sv, qv),
                                      np.searchsorted(sv, qv, side=side))
    flat = np.array([0, 5, 7, 11], "int32")
    for order in ("C", "F"):
        coords = tcomp.function([i], list(eo.unravel_index(i, (3, 4), order=order)))(flat)
        for g, r in zip(coords, np.unravel_index(flat, (3, 4), order=order)):
            np.testing.assert_array_equal(g, r)
        back = tcomp.function([i], eo.ravel_multi_index(eo.unravel_index(i, (3, 4), order=order), (3, 4),
                                                        order=order))(flat)
        np.testing.assert_array_equal(back, flat)


def test_topk_family_and_gradient():
    m = T.matrix("m")
    v = np.random.default_rng(1).standard_normal((3, 7)).astype("float32")
    big, idx = tcomp.function([m], list(T.topk_and_argtopk(m, 3)))(v)
    np.testing.assert_array_equal(big, -np.sort(-v, axis=-1)[:, :3])
    np.testing.assert_array_equal(np.take_along_axis(v, idx, -1), big)
    small = tcomp.function([m], T.topk(m, -2, axis=0))(v)
    np.testing.assert_array_equal(small, np.sort(v, axis=0)[:2])
    g = tcomp.function([m], T.grad(T.topk(m, 2).sum(), m))(v)
    want = np.zeros_like(v)
    np.put_along_axis(want, np.argsort(v, axis=-1)[:, -2:], 1.0, -1)
    np.testing.assert_array_equal(g, want)
    with pytest.raises(ValueError, match="kth"):
        T.topk(m, 0)


def test_selu_and_sigmoid_binary_crossentropy():
    x, t = T.vector("x"), T.vector("t")
    v = np.array([-30.0, -1.0, 0.0, 0.5, 40.0], "float32")
    tv = np.array([0.0, 1.0, 0.5, 1.0, 0.0], "float32")
    sel, bce = tcomp.function([x, t], [T.nnet.selu(x), T.nnet.sigmoid_binary_crossentropy(x, t)])(v, tv)
    a, s = 1.6732632423543772, 1.0507009873554805
    np.testing.assert_allclose(sel, s * np.where(v > 0, v, a * np.expm1(v)), rtol=1e-6)
    v64 = v.astype("float64")
    ref = -(tv * -np.logaddexp(0, -v64) + (1 - tv) * -np.logaddexp(0, v64))
    np.testing.assert_allclose(bce, ref, rtol=1e-5)


def _np_conv3d(x, w, pad, stride, dil, flip):
    """Direct NumPy conv3d (a loop over output positions)."""
    if flip:
        w = w[:, :, ::-1, ::-1, ::-1]
    x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad])
    ks = w.shape[2:]
    out_sz = [(x.shape[2 + i] - dil[i] * (ks[i] - 1) - 1) // stride[i] + 1 for i in range(3)]
    out = np.zeros((x.shape[0], w.shape[0], *out_sz))
    for d in range(out_sz[0]):
        for h in range(out_sz[1]):
            for c in range(out_sz[2]):
                patch = x[:, :, d * stride[0]:d * stride[0] + dil[0] * (ks[0] - 1) + 1:dil[0],
                          h * stride[1]:h * stride[1] + dil[1] * (ks[1] - 1) + 1:dil[1],
                          c * stride[2]:c * stride[2] + dil[2] * (ks[2] - 1) + 1:dil[2]]
                out[:, :, d, h, c] = np.einsum("bcijk,fcijk->bf", patch, w)
    return out


@pytest.mark.parametrize("border_mode, pad, stride, dil, flip", [
    ("valid", (0, 0, 0), (1, 1, 1), (1, 1, 1), True),
    ("full", (1, 2, 1), (1, 1, 1), (1, 1, 1), True),
    ("half", (1, 1, 1), (2, 1, 2), (1, 1, 1), False),
    ((1, 0, 1), (1, 0, 1), (1, 2, 1), (2, 1, 1), True),
])
def test_conv3d_against_numpy_and_its_gradient(border_mode, pad, stride, dil, flip):
    rng = np.random.default_rng(5)
    xv = rng.standard_normal((2, 3, 6, 7, 5))
    wv = rng.standard_normal((4, 3, 2, 3, 2))
    x = T.dtensor5("x") if hasattr(T, "dtensor5") else T.tensor5("x", dtype="float64")
    w = tcomp.shared(wv, name="w")
    y = T.nnet.conv3d(x, w, border_mode=border_mode, subsample=stride, filter_dilation=dil, filter_flip=flip)
    got = tcomp.function([x], y)(xv)
    np.testing.assert_allclose(got, _np_conv3d(xv, wv, pad, stride, dil, flip), rtol=1e-10, atol=1e-10)
    if border_mode == "valid":
        verify_grad(
            lambda a: T.nnet.conv3d(a, T.constant(wv[:, :, :, :2, :2]), filter_flip=flip), [xv[:1, :, :3, :3, :3]],
            rng=np.random.RandomState(0))


def _mp(fn, values, dps=400):
    with mpmath.workdps(dps):
        return np.array([float(fn(mpmath.mpf(float(a)))) for a in values])


def test_erfc_erfcx_against_mpmath():
    x = T.dvector("x")
    v = np.concatenate([np.linspace(-6, 6, 97), [0.4999999, 0.5, 0.5000001, 9.5, 20.0, 26.5, 1e3, -27.0]])
    erfc, erfcx = tcomp.function([x], [T.erfc(x), T.erfcx(x)])(v)
    np.testing.assert_allclose(erfc, _mp(mpmath.erfc, v), rtol=1e-13, atol=0)
    np.testing.assert_allclose(erfcx, _mp(lambda a: mpmath.exp(a * a) * mpmath.erfc(a), v), rtol=1e-13)
    edge = tcomp.function([x], [T.erfc(x), T.erfcx(x)])(np.array([np.inf, -np.inf, 30.0]))
    np.testing.assert_array_equal(edge[0], [0.0, 2.0, 0.0])
    assert edge[1][0] == 0 and np.isposinf(edge[1][1])
    g = tcomp.function([x], T.grad(T.erfc(x).sum(), x))(v[:97])
    np.testing.assert_allclose(g, -2 / np.sqrt(np.pi) * np.exp(-v[:97] ** 2), rtol=1e-12, atol=1e-300)


def test_erfinv_erfcinv_against_mpmath():
    x = T.dvector("x")
    y = np.concatenate([np.linspace(-0.999, 0.999, 81), [1 - 1e-10, -(1 - 1e-15), 1e-300, 0.0, 0.5, 0.5000001]])
    want = _mp(lambda a: mpmath.erfinv(a), y)
    np.testing.assert_allclose(tcomp.function([x], T.erfinv(x))(y), want, rtol=1e-13, atol=1e-300)
    z = np.concatenate([np.geomspace(1e-300, 1, 40), np.linspace(0.01, 1.99, 21)])
    np.testing.assert_allclose(tcomp.function([x], T.erfcinv(x))(z), _mp(lambda a: mpmath.erfinv(1 - a), z),
                               rtol=1e-13, atol=1e-300)
    edges = tcomp.function([x], [T.erfinv(x), T.erfcinv(x)])(np.array([1.0, -1.0, 2.0, 0.0, 1.5, -0.5]))
    np.testing.assert_allclose(edges[0], [np.inf, -np.inf, np.nan, 0.0, np.nan, float(mpmath.erfinv(-0.5))],
                               rtol=1e-13)
    np.testing.assert_allclose(edges[1], [0.0, np.nan, -np.inf, np.inf, float(mpmath.erfinv(-0.5)), np.nan],
                               rtol=1e-13)
    g = tcomp.function([x], T.grad(T.erfinv(x).sum(), x))(y[:81])
    np.testing.assert_allclose(g, np.sqrt(np.pi) / 2 * np.exp(want[:81] ** 2), rtol=1e-12)
    f = T.fvector("f")
    got = tcomp.function([f], T.erfinv(f))(y[:81].astype("float32"))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want[:81], rtol=1e-5, atol=1e-6)


def test_h_softmax_against_numpy():
    rng = np.random.default_rng(7)
    batch, n_hidden, n_classes, per, n_out = 5, 6, 3, 4, 11
    xv = rng.standard_normal((batch, n_hidden)).astype("float32")
    w1 = rng.standard_normal((n_hidden, n_classes)).astype("float32")
    b1 = rng.standard_normal(n_classes).astype("float32")
    w2 = rng.standard_normal((n_classes, n_hidden, per)).astype("float32")
    b2 = rng.standard_normal((n_classes, per)).astype("float32")
    yv = np.array([0, 10, 4, 7, 3], "int32")

    def softmax(a):
        e = np.exp(a - a.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    cls = softmax(xv @ w1 + b1)
    full = np.concatenate([cls[:, c:c + 1] * softmax(xv @ w2[c] + b2[c]) for c in range(n_classes)], axis=1)[:, :n_out]
    x, y = T.matrix("x"), T.ivector("y")
    params = [tcomp.shared(p) for p in (w1, b1, w2, b2)]
    all_probs = T.nnet.h_softmax(x, batch, n_out, n_classes, per, *params)
    picked = T.nnet.h_softmax(x, batch, n_out, n_classes, per, *params, target=y)
    got_all, got_picked = tcomp.function([x, y], [all_probs, picked])(xv, yv)
    np.testing.assert_allclose(got_all, full, rtol=1e-5)
    np.testing.assert_allclose(got_picked, full[np.arange(batch), yv], rtol=1e-5)
    verify_grad(lambda w: T.log(T.nnet.h_softmax(T.constant(xv.astype("float64")), batch, n_out, n_classes, per,
                                                 w1.astype("float64"), b1.astype("float64"), w, b2.astype("float64"),
                                                 target=T.constant(yv))).sum(),
                [w2.astype("float64")], rng=np.random.RandomState(0))


def _np_neibs(v, a, b, sa, sb):
    n, c, h, w = v.shape
    rows, cols = (h - a) // sa + 1, (w - b) // sb + 1
    return np.array([v[i, j, r * sa:r * sa + a, q * sb:q * sb + b].reshape(-1)
                     for i in range(n) for j in range(c) for r in range(rows) for q in range(cols)])


def test_images2neibs_and_back():
    from tcomp.tensor.nnet.neighbours import images2neibs, neibs2images

    x = T.tensor4("x")
    v = np.random.default_rng(2).standard_normal((2, 3, 6, 4)).astype("float32")
    for shape, step, mode in [((2, 2), None, "valid"), ((3, 2), (1, 1), "ignore_borders"),
                              ((4, 3), None, "ignore_borders")]:
        got = tcomp.function([x], images2neibs(x, shape, step, mode=mode))(v)
        np.testing.assert_array_equal(got, _np_neibs(v, *shape, *(step or shape)))
    np.testing.assert_array_equal(tcomp.function([x], neibs2images(images2neibs(x, (2, 2)), (2, 2), x.shape))(v), v)
    with pytest.raises(ValueError, match="reshape"):
        tcomp.function([x], images2neibs(x, (4, 3)))(v)  # 6x4 images are not covered by 4x3 blocks
    with pytest.raises(ValueError, match="static"):
        images2neibs(x, (2, 2), (1, 1))
    s = T.TensorType("float32", (2, 3, 6, 4))("s")
    np.testing.assert_array_equal(tcomp.function([s], images2neibs(s, (2, 2), (2, 1)))(v), _np_neibs(v, 2, 2, 2, 1))
    g = tcomp.function([x], T.grad((images2neibs(x, (3, 2), (1, 1), mode="ignore_borders") ** 2).sum(), x))(v)
    counts = np.zeros_like(v)
    for r in range(4):
        for q in range(3):
            counts[:, :, r:r + 3, q:q + 2] += 1
    np.testing.assert_allclose(g, 2 * v * counts, rtol=1e-6)
