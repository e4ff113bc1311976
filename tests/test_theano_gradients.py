"""Theano's gradient API: T.Lop / T.Rop, gradient.zero_grad / disconnected_grad / grad_clip,
T.grad(cost=None, known_grads=...), consider_constant, disconnected_inputs and
return_disconnected; checked against NumPy derivatives written by hand and against
finite differences (Rop against a Jacobian-vector product by central differences)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp import gradient

RNG = np.random.default_rng(11)


def _fd_jvp(fn, args, dirs, eps=1e-6):
    """(fn(args + eps*dirs) - fn(args - eps*dirs)) / (2 eps) in float64."""
    plus = fn(*[a + eps * d for a, d in zip(args, dirs)])
    minus = fn(*[a - eps * d for a, d in zip(args, dirs)])
    return (plus - minus) / (2 * eps)


def test_lop_is_a_vector_jacobian_product(backend):
    W, x, v = T.dmatrix("W"), T.dvector("x"), T.dvector("v")
    f = T.tanh(T.dot(W, x))
    gW, gx = T.Lop(f, [W, x], v)
    fn = tcomp.function([W, x, v], [gW, gx], backend=backend)
    w0, x0, v0 = RNG.standard_normal((3, 4)), RNG.standard_normal(4), RNG.standard_normal(3)
    d = v0 * (1 - np.tanh(w0 @ x0) ** 2)
    rw, rx = fn(w0, x0, v0)
    np.testing.assert_allclose(rw, np.outer(d, x0), rtol=1e-10)
    np.testing.assert_allclose(rx, w0.T @ d, rtol=1e-10)
    single = T.Lop(f, x, v)  # a single wrt gives a single result
    assert isinstance(single, T.Variable)


def test_rop_matches_finite_difference_jvp(backend):
    W, x = T.dmatrix("W"), T.dvector("x")
    VW, vx = T.dmatrix("VW"), T.dvector("vx")
    f = T.tanh(T.dot(W, x)) * T.exp(x[:3]) + T.sum(x ** 2)
    jv = T.Rop(f, [W, x], [VW, vx])
    fn = tcomp.function([W, x, VW, vx], jv, backend=backend)
    w0, x0 = RNG.standard_normal((3, 4)), RNG.standard_normal(4)
    dw, dx = RNG.standard_normal((3, 4)), RNG.standard_normal(4)

    def F(w, xx):
        return np.tanh(w @ xx) * np.exp(xx[:3]) + np.sum(xx ** 2)

    np.testing.assert_allclose(fn(w0, x0, dw, dx), _fd_jvp(F, [w0, x0], [dw, dx]), rtol=1e-6, atol=1e-8)


def test_rop_lists_identity_and_disconnected_outputs():
    x, y, v = T.dvector("x"), T.dvector("y"), T.dvector("v")
    out = T.Rop([x, T.sin(x), y * 2], x, v, disconnected_outputs="ignore")
    assert isinstance(out, list) and len(out) == 3
    fn = tcomp.function([x, y, v], out, backend="reference")
    x0, v0 = RNG.standard_normal(5), RNG.standard_normal(5)
    a, b, c = fn(x0, np.ones(5), v0)
    np.testing.assert_allclose(a, v0)
    np.testing.assert_allclose(b, np.cos(x0) * v0, rtol=1e-12)
    np.testing.assert_array_equal(c, np.zeros(5))
    with pytest.raises(ValueError, match="does not depend on any of the wrt"):
        T.Rop(y * 2, x, v)
    assert T.Rop(y * 2, x, v, disconnected_outputs="ignore", return_disconnected="None") is None
    with pytest.raises(ValueError, match="dims"):
        T.Rop(T.sin(x), x, T.dmatrix("m"))


def test_grad_with_cost_none_and_known_grads(backend):
    x, g = T.dvector("x"), T.dvector("g")
    y = x ** 3
    gx = T.grad(None, x, known_grads={y: g})
    x0, g0 = RNG.standard_normal(4), RNG.standard_normal(4)
    np.testing.assert_allclose(tcomp.function([x, g], gx, backend=backend)(x0, g0), 3 * x0 ** 2 * g0, rtol=1e-12)
    with pytest.raises(ValueError, match="known_grads"):
        T.grad(None, x)


def test_zero_grad_is_identity_forward_and_zero_backward(backend):
    x = T.dvector("x")
    z = gradient.zero_grad(x)
    cost = (z * T.sin(x)).sum()
    g = T.grad(cost, x)  # d/dx of c * sin(x) with c = x frozen
    x0 = RNG.standard_normal(6)
    fz, fg = tcomp.function([x], [z, g], backend=backend)(x0)
    np.testing.assert_array_equal(fz, x0)
    np.testing.assert_allclose(fg, x0 * np.cos(x0), rtol=1e-12)
    # reached only through zero_grad: connected, zero, no error (Theano's ZeroGrad)
    g0 = T.grad(gradient.zero_grad(x).sum(), x)
    np.testing.assert_array_equal(tcomp.function([x], g0, backend=backend)(x0), np.zeros(6))


def test_disconnected_grad_and_return_disconnected():
    x = T.dvector("x")
    d = gradient.disconnected_grad(x)
    g = T.grad((d * x ** 2).sum(), x)
    x0 = RNG.standard_normal(5)
    np.testing.assert_allclose(tcomp.function([x], g, backend="reference")(x0), 2 * x0 * x0, rtol=1e-12)
    with pytest.raises(ValueError, match="does not depend on x"):
        T.grad(d.sum(), x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gz = T.grad(d.sum(), x, disconnected_inputs="warn")
    assert any("does not depend" in str(w.message) for w in caught)
    np.testing.assert_array_equal(tcomp.function([x], gz, backend="reference")(x0), np.zeros(5))
    assert T.grad(d.sum(), x, disconnected_inputs="ignore", return_disconnected="None") is None
    dis = T.grad(d.sum(), [x], disconnected_inputs="ignore", return_disconnected="Disconnected")[0]
    assert isinstance(dis, gradient.DisconnectedType)
    with pytest.raises(ValueError, match="return_disconnected"):
        T.grad(d.sum(), x, return_disconnected="nothing")


def test_consider_constant_disconnects_what_lies_behind():
    x = T.dscalar("x")
    h = T.exp(x)
    with pytest.raises(ValueError, match="does not depend"):
        T.grad(T.sin(h), x, consider_constant=[h])
    g = T.grad(T.sin(h) * x, x, consider_constant=[h])
    assert tcomp.function([x], g, backend="reference")(0.5) == pytest.approx(np.sin(np.exp(0.5)))


def test_grad_clip_clips_the_incoming_gradient(backend):
    x, c = T.dvector("x"), T.dvector("c")
    y = gradient.grad_clip(x, -1.0, 1.0)
    g = T.grad((y * c).sum(), x)
    fn = tcomp.function([x, c], [y, g], backend=backend)
    x0, c0 = RNG.standard_normal(8), np.linspace(-3, 3, 8)
    fy, fg = fn(x0, c0)
    np.testing.assert_array_equal(fy, x0)
    np.testing.assert_allclose(fg, np.clip(c0, -1, 1))


def test_nested_grad_clips_against_numpy():
    """a = clip_g(x, .5), b = clip_g(4a, 1), cost = sum(3 b^2) + sum(a): the gradient of b
    (6b) is clipped to [-1, 1], carried into a (x4, plus 1 from the direct term), clipped to
    [-.5, .5], and carried into x."""
    x = T.dvector("x")
    a = gradient.grad_clip(x, -0.5, 0.5)
    b = gradient.grad_clip(4 * a, -1.0, 1.0)
    g = T.grad((3 * b ** 2).sum() + a.sum(), x)
    x0 = np.linspace(-0.3, 0.3, 7)
    gb = np.clip(6 * (4 * x0), -1, 1)
    want = np.clip(4 * gb + 1, -0.5, 0.5)
    np.testing.assert_allclose(tcomp.function([x], g, backend="reference")(x0), want, rtol=1e-12)
    with pytest.raises(ValueError, match="lower_bound"):
        gradient.grad_clip(x, 1.0, -1.0)


def test_grad_clip_inside_a_model_matches_finite_differences_when_inactive():
    """With bounds wide enough never to clip, the gradient is the true one (finite differences)."""
    W, x = T.dmatrix("W"), T.dvector("x")
    h = gradient.grad_clip(T.tanh(T.dot(W, x)), -1e6, 1e6)
    cost = (h ** 2).sum()
    fg = tcomp.function([W, x], T.grad(cost, W), backend="reference")
    w0, x0 = RNG.standard_normal((3, 4)), RNG.standard_normal(4)
    F = lambda w: np.sum(np.tanh(w @ x0) ** 2)  # noqa: E731
    num = np.zeros_like(w0)
    for idx in np.ndindex(w0.shape):
        e = np.zeros_like(w0)
        e[idx] = 1e-6
        num[idx] = (F(w0 + e) - F(w0 - e)) / 2e-6
    np.testing.assert_allclose(fg(w0, x0), num, rtol=1e-6, atol=1e-9)


def test_lop_known_grads_types_are_matched():
    """An eval point of another float dtype or with symbolic dims stands for the output."""
    x = tcomp.shared(np.arange(3.0), "x")
    f = x * 2.0  # f64[3]
    v = T.fvector("v")  # f32[?]
    gx = T.Lop(f, x, v)
    np.testing.assert_allclose(tcomp.function([v], gx, backend="reference")(np.ones(3, "float32")), 2 * np.ones(3))


def test_theano_tutorial_r_and_l_operators():
    """Theano's 'Derivatives in Theano' page (R-operator, L-operator, Hessian times a
    vector), with only the import changed, printing Theano's results."""
    import tcomp as theano

    W, V, x = T.dmatrix("W"), T.dmatrix("V"), T.dvector("x")
    y = T.dot(x, W)
    JV = T.Rop(y, W, V)
    f = theano.function([W, V, x], JV)
    np.testing.assert_array_equal(f([[1, 1], [1, 1]], [[2, 2], [2, 2]], [0, 1]), [2.0, 2.0])
    v = T.dvector("v")
    VJ = T.Lop(y, W, v)
    f = theano.function([v, x], VJ)  # W is not needed: the result is outer(x, v)
    np.testing.assert_array_equal(f([2, 2], [0, 1]), [[0.0, 0.0], [2.0, 2.0]])
    y = T.sum(x ** 2)
    gy = T.grad(y, x)
    vH = T.grad(T.sum(gy * v), x)
    np.testing.assert_array_equal(theano.function([x, v], vH)([4, 4], [2, 2]), [4.0, 4.0])
    Hv = T.Rop(gy, x, v)
    np.testing.assert_array_equal(theano.function([x, v], Hv)([4, 4], [2, 2]), [4.0, 4.0])


def test_theano_tutorial_jacobian_and_hessian_of_symbolic_length():
    """The 'Derivatives in Theano' page's Jacobian and Hessian of a dvector (length not
    static: computed through tcomp.scan, as Theano does; the cpu backend runs it as a native loop)."""
    x = T.dvector("x")
    y = x ** 2
    J = gradient.jacobian(y, x)
    np.testing.assert_array_equal(tcomp.function([x], J, backend="cpu")([4, 4]), [[8, 0], [0, 8]])
    cost = y.sum()
    H = gradient.hessian(cost, x)
    np.testing.assert_array_equal(tcomp.function([x], H, backend="cpu")([4, 4]), [[2, 0], [0, 2]])
    x0 = RNG.standard_normal(3)
    J3 = tcomp.function([x], T.jacobian(T.sin(x) * x.sum(), x), backend="cpu")(x0)
    np.testing.assert_allclose(J3, np.diag(np.cos(x0) * x0.sum()) + np.sin(x0)[:, None], rtol=1e-12)
