"""Hand-written sigmoid / softplus / logsumexp / softmax formulas, in many spellings, are
stabilized forward and in their gradients.

Each case is an overflow test: at inputs like +-1000 (float64) and +-100 (float32) the naive
formula gives inf/nan (checked, with the unoptimized ``fast_compile`` reference run), while
the compiled function (both backends) gives finite values equal to a stable NumPy formula
and finite gradients equal to the analytic ones.  The last tests run Theano's logistic
regression tutorial and compare it with the same algorithm written in NumPy.
"""
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.ir import Graph, TensorType
from tcomp.passes import stabilize

BIG = {"float64": 1000.0, "float32": 100.0}
TOL = {"float64": dict(rtol=1e-9, atol=1e-300), "float32": dict(rtol=2e-5, atol=1e-37)}


def sig(x):
    """sigmoid(x), stable (x float64)."""
    return np.exp(-np.logaddexp(0, -x))


def softplus(x):
    return np.logaddexp(0, x)


def one(dtype):
    return {"py": 1, "0d": T.constant(np.ones((), dtype)), "vec": T.constant(np.ones((1,), dtype)),
            "cast": T.cast(1, dtype)}


SIGMOID_SPELLINGS = {
    "1/(1+exp(-x))": lambda x, c: c / (c + T.exp(-x)),
    "1/(exp(-x)+1)": lambda x, c: c / (T.exp(-x) + c),
    "1/(1+exp(0-x))": lambda x, c: 1.0 / (1.0 + T.exp(0 - x)),
    "1/(1+exp(-1*x))": lambda x, c: 1 / (1 + T.exp(-1 * x)),
    "exp(x)/(1+exp(x))": lambda x, c: T.exp(x) / (c + T.exp(x)),
    "exp(x)/(exp(x)+1)": lambda x, c: T.exp(x) / (T.exp(x) + c),
    "(1+exp(-x))**-1": lambda x, c: (c + T.exp(-x)) ** -1,
}

# name -> (expression builder, stable NumPy value, analytic derivative), elementwise
ELEMENTWISE = {
    **{f"sigmoid {k}": (f, sig, lambda x: sig(x) * sig(-x)) for k, f in SIGMOID_SPELLINGS.items()},
    "1-sigmoid(x)": (lambda x, c: c - T.nnet.sigmoid(x), lambda x: sig(-x), lambda x: -sig(x) * sig(-x)),
    "1+(-sigmoid(x))": (lambda x, c: c + -T.nnet.sigmoid(x), lambda x: sig(-x), lambda x: -sig(x) * sig(-x)),
    "1-1/(1+exp(-x))": (lambda x, c: c - c / (c + T.exp(-x)), lambda x: sig(-x), lambda x: -sig(x) * sig(-x)),
    "log(sigmoid(x))": (lambda x, c: T.log(T.nnet.sigmoid(x)), lambda x: -softplus(-x), lambda x: sig(-x)),
    "log(1/(1+exp(-x)))": (lambda x, c: T.log(c / (c + T.exp(-x))), lambda x: -softplus(-x), lambda x: sig(-x)),
    "log(exp(x)/(1+exp(x)))": (lambda x, c: T.log(T.exp(x) / (T.exp(x) + c)), lambda x: -softplus(-x),
                               lambda x: sig(-x)),
    "log(1-sigmoid(x))": (lambda x, c: T.log(c - T.nnet.sigmoid(x)), lambda x: -softplus(x), lambda x: -sig(x)),
    "log(1-1/(1+exp(-x)))": (lambda x, c: T.log(1 - c / (1 + T.exp(-x))), lambda x: -softplus(x),
                             lambda x: -sig(x)),
    "log(1+exp(x))": (lambda x, c: T.log(c + T.exp(x)), softplus, sig),
    "log(exp(x)+1)": (lambda x, c: T.log(T.exp(x) + c), softplus, sig),
    "log(1+exp(-x))": (lambda x, c: T.log(1 + T.exp(-x)), lambda x: softplus(-x), lambda x: -sig(-x)),
    "log1p(exp(x))": (lambda x, c: T.log1p(T.exp(x)), softplus, sig),
}


def _naive(x_var, expr, value):
    """The unoptimized formula in the reference interpreter (no passes but canonicalize)."""
    return tcomp.function([x_var], expr, backend="reference", mode="fast_compile")(value)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_spelling_is_stable(name, dtype, backend):
    build, value, deriv = ELEMENTWISE[name]
    big = BIG[dtype]
    xv = np.array([-big, -big / 4, -1.5, 0.0, 0.25, 3.0, big / 4, big], dtype)
    x = T.vector("x", dtype=dtype)
    consts = one(dtype)
    kind = sorted(consts)[sum(map(ord, name)) % len(consts)]  # vary the constant's spelling
    y = build(x, consts[kind])
    assert y.dtype == dtype
    naive = _naive(x, y, xv)
    assert not np.all(np.isfinite(naive)) or np.any(naive != value(xv.astype("float64")).astype(dtype))
    g = T.grad(y.sum(), x)
    f = tcomp.function([x], [y, g], backend=backend)
    out, grad = f(xv)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad)), (out, grad)
    x64 = xv.astype("float64")
    np.testing.assert_allclose(out, value(x64), **TOL[dtype])
    np.testing.assert_allclose(grad, deriv(x64), **TOL[dtype])


@pytest.mark.parametrize("kind", ["py", "0d", "vec", "cast"])
def test_constant_spellings_of_sigmoid(kind):
    xv = np.array([-1000.0, 0.5, 1000.0])
    x = T.vector("x", dtype="float64")
    c = one("float64")[kind]
    y = T.log(c - c / (c + T.exp(-x)))
    out, grad = tcomp.function([x], [y, T.grad(y.sum(), x)], backend="reference")(xv)
    np.testing.assert_allclose(out, -softplus(xv), rtol=1e-12)
    np.testing.assert_allclose(grad, -sig(xv), rtol=1e-12)


def test_strong_float64_constant_around_float32_computes_in_float64():
    x = T.vector("x", dtype="float32")
    y = T.constant(np.float64(1)) / (T.constant(np.float64(1)) + T.exp(-x))
    assert y.dtype == "float64"
    xv = np.array([-100.0, 0.1, 100.0], "float32")
    out = tcomp.function([x], y, backend="reference")(xv)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, sig(xv.astype("float64")), rtol=1e-12, atol=1e-300)


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _lse(x, axis, keepdims=False):
    m = x.max(axis=axis, keepdims=True)
    r = np.log(np.exp(x - m).sum(axis=axis, keepdims=True)) + m
    return r if keepdims else np.squeeze(r, axis=axis)


# name -> (builder, NumPy value, axes of the reduction); gradients checked analytically
LSE = {
    "log(sum(exp(x),1))": (lambda x: T.log(T.sum(T.exp(x), axis=1)), lambda x: _lse(x, 1), 1),
    "log(sum(exp(x),1,keepdims))": (lambda x: T.log(T.exp(x).sum(axis=1, keepdims=True)),
                                    lambda x: _lse(x, 1, True), 1),
    "log(sum(exp(x),0))": (lambda x: T.log(T.exp(x).sum(axis=0)), lambda x: _lse(x, 0), 0),
    "log(sum(exp(x)))": (lambda x: T.log(T.sum(T.exp(x))), lambda x: _lse(x, (0, 1)), (0, 1)),
    "max-shifted": (lambda x: T.log(T.exp(x - x.max(axis=1, keepdims=True)).sum(axis=1)) + x.max(axis=1),
                    lambda x: _lse(x, 1), 1),
    "max-shifted [:, None]": (lambda x: T.log(T.exp(x - x.max(axis=1)[:, None]).sum(axis=1)) + x.max(axis=1),
                              lambda x: _lse(x, 1), 1),
    "max-shifted keepdims, max first": (
        lambda x: x.max(axis=1, keepdims=True) + T.log(T.exp(x - x.max(axis=1, keepdims=True))
                                                       .sum(axis=1, keepdims=True)),
        lambda x: _lse(x, 1, True), 1),
}

SOFTMAX = {
    "exp/sum keepdims": (lambda x: T.exp(x) / T.exp(x).sum(axis=1, keepdims=True), 1),
    "exp/sum dimshuffle": (lambda x: T.exp(x) / T.exp(x).sum(axis=1).dimshuffle(0, "x"), 1),
    "exp/sum[:, None]": (lambda x: T.exp(x) / T.exp(x).sum(axis=1)[:, None], 1),
    "exp/sum.reshape((n, 1))": (lambda x: T.exp(x) / T.exp(x).sum(axis=1).reshape((x.shape[0], 1)), 1),
    "exp/sum.reshape((-1, 1))": (lambda x: T.exp(x) / T.exp(x).sum(axis=1).reshape((-1, 1)), 1),
    "exp/sum axis 0 broadcast": (lambda x: T.exp(x) / T.exp(x).sum(axis=0), 0),
    "exp/sum all axes": (lambda x: T.exp(x) / T.sum(T.exp(x)), (0, 1)),
    "max-shifted": (lambda x: T.exp(x - x.max(axis=1, keepdims=True))
                    / T.exp(x - x.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True), 1),
}


def _matrix_input(dtype):
    big = BIG[dtype]
    return np.array([[big, big - 1, -big, 0.5], [-big, -big + 2, -big - 1, -big], [0.1, -0.2, 0.3, 2.0]], dtype)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(LSE))
def test_logsumexp_spelling_is_stable(name, dtype, backend):
    build, value, axes = LSE[name]
    xv = _matrix_input(dtype)
    x = T.matrix("x", dtype=dtype)
    y = build(x)
    if "shifted" not in name:  # the max-shifted form is stable forward already
        assert not np.all(np.isfinite(_naive(x, y, xv)))
    out, grad = tcomp.function([x], [y, T.grad(y.sum(), x)], backend=backend)(xv)
    x64 = xv.astype("float64")
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(out, value(x64), **TOL[dtype])
    np.testing.assert_allclose(out, np.logaddexp.reduce(x64, axis=axes, keepdims=out.ndim == 2)
                               if not isinstance(axes, tuple) else np.logaddexp.reduce(x64.ravel()), **TOL[dtype])
    np.testing.assert_allclose(grad, _softmax(x64, axes), **TOL[dtype])


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(SOFTMAX))
def test_softmax_spelling_is_stable(name, dtype, backend):
    build, axes = SOFTMAX[name]
    xv = _matrix_input(dtype)
    x = T.matrix("x", dtype=dtype)
    y = build(x)
    if "shifted" not in name:
        assert not np.all(np.isfinite(_naive(x, y, xv)))
    weights = np.linspace(-1.0, 2.0, xv.size).reshape(xv.shape).astype(dtype)
    cost = (y * T.constant(weights)).sum()
    out, grad = tcomp.function([x], [y, T.grad(cost, x)], backend=backend)(xv)
    x64 = xv.astype("float64")
    s = _softmax(x64, axes)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(out, s, **TOL[dtype])
    w = weights.astype("float64")
    want = s * (w - (w * s).sum(axis=axes, keepdims=True))
    np.testing.assert_allclose(grad, want, rtol=TOL[dtype]["rtol"] * 10, atol=1e-6 if dtype == "float32" else 1e-13)


def test_vector_softmax_and_logsumexp_over_all():
    v = T.vector("v", dtype="float64")
    sm = T.exp(v) / T.exp(v).sum()
    lse = T.log(T.exp(v).sum())
    f = tcomp.function([v], [sm, lse, T.grad(lse, v)])
    vv = np.array([1000.0, 999.0, -1000.0])
    s, l_, gl = f(vv)
    np.testing.assert_allclose(s, _softmax(vv, 0), rtol=1e-12)
    np.testing.assert_allclose(l_, np.logaddexp.reduce(vv), rtol=1e-12)
    np.testing.assert_allclose(gl, _softmax(vv, 0), rtol=1e-12)


def test_rewrites_are_linear_and_iterative_on_deep_chains():
    """2000 nested hand-written sigmoids: no recursion on depth, each one recognized."""
    from tcomp.ir import Constant

    g = Graph()
    x = g.add_input(TensorType("float64", (3,)))
    one = g.add_constant(Constant(np.array(1.0)))
    cur = x
    depth = 2000
    for _ in range(depth):
        cur = g.add_node("truediv", [one, g.add_node("add", [one, g.add_node("exp", [g.add_node("neg", [cur])])])])
    g.outputs = [g.add_node("log", [cur])]
    h = stabilize(g)
    ops = [h.op(n) for n in h.nodes()]
    assert ops.count("sigmoid") == depth - 1 and ops.count("softplus") == 1 and "exp" not in ops


# -- Theano's "A Real Example: Logistic Regression" ----------------------------------------

def _tutorial(steps, backend, rng):
    """The tutorial's program, with only the imports changed (and fewer steps)."""
    N, feats = 400, 784
    D = (rng.randn(N, feats), rng.randint(size=N, low=0, high=2))
    x = T.dmatrix("x")
    y = T.dvector("y")
    w = tcomp.shared(rng.randn(feats), name="w")
    b = tcomp.shared(0., name="b")
    p_1 = 1 / (1 + T.exp(-T.dot(x, w) - b))
    prediction = p_1 > 0.5
    xent = -y * T.log(p_1) - (1 - y) * T.log(1 - p_1)
    cost = xent.mean() + 0.01 * (w ** 2).sum()
    gw, gb = T.grad(cost, [w, b])
    train = tcomp.function(inputs=[x, y], outputs=[prediction, xent],
                           updates=((w, w - 0.1 * gw), (b, b - 0.1 * gb)), backend=backend)
    predict = tcomp.function(inputs=[x], outputs=prediction, backend=backend)
    for _ in range(steps):
        pred, err = train(D[0], D[1])
    return D, w.get_value(), b.get_value(), err, predict(D[0])


def _numpy_logreg(steps, rng):
    """The same algorithm in NumPy, written with np.logaddexp (stable by construction)."""
    N, feats = 400, 784
    X, Y = rng.randn(N, feats), rng.randint(size=N, low=0, high=2)
    w, b = rng.randn(feats), 0.0
    for _ in range(steps):
        z = X @ w + b
        xent = Y * np.logaddexp(0, -z) + (1 - Y) * np.logaddexp(0, z)
        gz = (np.exp(-np.logaddexp(0, -z)) - Y) / N
        w, b = w - 0.1 * (X.T @ gz + 0.02 * w), b - 0.1 * gz.sum()
    return w, b, xent


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_theano_logistic_regression_tutorial_trains(backend):
    steps = 200
    D, w, b, err, pred = _tutorial(steps, backend, np.random.RandomState(0))
    w_np, b_np, xent_np = _numpy_logreg(steps, np.random.RandomState(0))
    assert np.all(np.isfinite(err)) and np.all(np.isfinite(w)) and np.isfinite(b)
    np.testing.assert_allclose(w, w_np, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(err, xent_np, rtol=1e-7, atol=1e-12)
    acc = (pred == D[1]).mean()
    assert acc == ((D[0] @ w_np + b_np > 0) == D[1]).mean() and acc > 0.9


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_full_size_and_higher_rank_broadcast_constants(backend):
    """Constants of the input's own size, or of a higher rank, broadcast the result."""
    xv = np.array([-1000.0, -2.0, 0.0, 3.0, 1000.0])
    x = T.vector("x", dtype="float64")
    full = T.constant(np.ones(5))
    y1 = T.log(full - full / (full + T.exp(-x)))  # log(1 - sigmoid(x)), result type [5]
    grid = T.constant(np.ones((1, 1)))
    y2 = T.log(grid + T.exp(x))  # softplus(x) broadcast to [1, ?]
    assert y1.type.shape == (5,) and y2.type.shape == (1, None)
    f = tcomp.function([x], [y1, y2, T.grad(y1.sum() + y2.sum(), x)], backend=backend)
    a, b, g = f(xv)
    np.testing.assert_allclose(a, -softplus(xv), rtol=1e-12)
    np.testing.assert_allclose(b, softplus(xv)[None, :], rtol=1e-12)
    np.testing.assert_allclose(g, -sig(xv) + sig(xv), atol=1e-15)


@pytest.mark.slow
def test_theano_logistic_regression_tutorial_full_10000_steps():
    """The tutorial's own step count: Theano reaches ~100% training accuracy; so does tcomp,
    with the same cross-entropy as NumPy's np.logaddexp version of the algorithm."""
    D, w, b, err, pred = _tutorial(10000, "cpu", np.random.RandomState(0))
    w_np, b_np, xent_np = _numpy_logreg(10000, np.random.RandomState(0))
    assert np.all(np.isfinite(err)) and (pred == D[1]).mean() == 1.0
    np.testing.assert_allclose(err, xent_np, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(w, w_np, rtol=1e-7, atol=1e-9)
