"""tcomp.function: updates, givens, shared variables, argument handling, and the classic
Theano MLP, checked against NumPy computations written here."""
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.examples.mlp import build_mse_mlp

# the ``backend`` fixture (conftest.py) runs each test on every available backend


def test_single_and_multiple_outputs(backend):
    x = T.matrix("x")
    f = tcomp.function([x], x * 2, backend=backend)
    g = tcomp.function([x], [x + 1, x.sum()], backend=backend)
    a = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_allclose(f(a), a * 2)
    out = g(a)
    assert isinstance(out, list) and len(out) == 2
    np.testing.assert_allclose(out[0], a + 1)
    np.testing.assert_allclose(out[1], a.sum())


def test_updates_see_old_values_and_commit_together(backend):
    a = tcomp.shared(np.float32(1.0), "a")
    b = tcomp.shared(np.float32(10.0), "b")
    f = tcomp.function([], [a, b], updates=[(a, b), (b, a)], backend=backend)  # swap
    out = f()
    assert out == [1.0, 10.0]
    assert a.get_value() == 10.0 and b.get_value() == 1.0
    f()
    assert a.get_value() == 1.0 and b.get_value() == 10.0


def test_updates_as_dict_and_in_place(backend):
    w = tcomp.shared(np.ones(3, "float32"), "w")
    storage = w.get_value(borrow=True)
    x = T.vector("x")
    f = tcomp.function([x], (w * x).sum(), updates={w: w + x}, backend=backend)
    assert f(np.array([1, 2, 3], "float32")) == pytest.approx(6.0)
    np.testing.assert_allclose(w.get_value(), [2, 3, 4])
    assert w.get_value(borrow=True) is storage  # written in place


def test_shared_get_set_value_copies():
    v = np.zeros(2, "float32")
    s = tcomp.shared(v)
    v[0] = 5
    assert s.get_value()[0] == 0
    got = s.get_value()
    got[1] = 7
    assert s.get_value()[1] == 0
    s.set_value(np.array([1, 2], "float32"))
    np.testing.assert_allclose(s.get_value(), [1, 2])
    with pytest.raises(ValueError, match="shape"):
        s.set_value(np.zeros(3, "float32"))


def test_givens_minibatch_of_shared_dataset(backend):
    data = np.arange(40, dtype="float32").reshape(10, 4)
    train_x = tcomp.shared(data, "train_x")
    x = T.matrix("x")
    i = T.lscalar("i")
    bs = 3
    f = tcomp.function([i], x.sum(axis=1), givens={x: train_x[i * bs:(i + 1) * bs]}, backend=backend)
    for k in range(3):
        np.testing.assert_allclose(f(k), data[k * bs:(k + 1) * bs].sum(axis=1))


def test_classic_theano_mlp_trains(backend):
    """The classic first program: MLP, MSE cost, hand-written gradient, SGD updates."""
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (64, 5)).astype("float32")
    Y = np.sin(X @ rng.standard_normal((5, 2))).astype("float32")
    train, predict, params = build_mse_mlp(5, 16, 2, lr=0.2, backend=backend)

    # one step checked against the same maths in NumPy
    W1, b1, W2, b2 = (p.get_value() for p in params)
    h = np.tanh(X @ W1 + b1)
    out = h @ W2 + b2
    expected_cost = np.mean(np.sum((out - Y) ** 2, axis=1))
    g_out = 2 * (out - Y) / len(X)
    g_h = (g_out @ W2.T) * (1 - h * h)
    cost = train(X, Y)
    np.testing.assert_allclose(cost, expected_cost, rtol=1e-5)
    np.testing.assert_allclose(params[2].get_value(), W2 - 0.2 * h.T @ g_out, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(params[0].get_value(), W1 - 0.2 * X.T @ g_h, rtol=1e-4, atol=1e-6)
    for _ in range(300):
        last = train(X, Y)
    assert last < 0.5 * expected_cost


def test_keyword_arguments_and_errors(backend):
    x, y = T.vector("x"), T.vector("y")
    f = tcomp.function([x, y], x - y, backend=backend)
    a, b = np.ones(2, "float32"), np.arange(2, dtype="float32")
    np.testing.assert_allclose(f(y=b, x=a), a - b)
    with pytest.raises(TypeError, match="missing argument.*y"):
        f(a)
    with pytest.raises(TypeError, match="unexpected keyword"):
        f(a, z=b)
    with pytest.raises(TypeError, match="takes 2 arguments"):
        f(a, b, a)


def test_call_time_dtype_rank_shape_errors_name_the_argument(backend):
    x = T.matrix("weights_in", shape=(None, 3))
    f = tcomp.function([x], x.sum(), backend=backend)
    with pytest.raises(TypeError, match="weights_in.*float32.*float64"):
        f(np.ones((2, 3), "float64"))
    with pytest.raises(ValueError, match="weights_in"):
        f(np.ones(3, "float32"))
    with pytest.raises(ValueError, match="weights_in"):
        f(np.ones((2, 4), "float32"))
    # a safe upcast is accepted, a lossy one only with allow_input_downcast
    assert f(np.ones((2, 3), "int8")) == 6
    g = tcomp.function([x], x.sum(), allow_input_downcast=True, backend=backend)
    assert g(np.ones((2, 3), "float64")) == 6


def test_named_symbolic_dims_must_agree(backend):
    a = T.vector("a", shape=("n",))
    b = T.vector("b", shape=("n",))
    f = tcomp.function([a, b], a * b, backend=backend)
    with pytest.raises(ValueError, match="'n'"):
        f(np.ones(3, "float32"), np.ones(4, "float32"))


def test_symbolic_dims_never_broadcast(backend):
    a, b = T.vector("a"), T.vector("b")
    f = tcomp.function([a, b], a + b, backend=backend)
    with pytest.raises(ValueError):
        f(np.ones(3, "float32"), np.ones(1, "float32"))


def test_unused_input(backend):
    x, y = T.vector("x"), T.vector("unused_y")
    with pytest.raises(ValueError, match="unused_y"):
        tcomp.function([x, y], x * 2, backend=backend)
    with pytest.warns(UserWarning, match="unused_y"):
        tcomp.function([x, y], x * 2, on_unused_input="warn", backend=backend)
    f = tcomp.function([x, y], x * 2, on_unused_input="ignore", backend=backend)
    np.testing.assert_allclose(f(np.ones(2, "float32"), np.ones(5, "float32")), [2, 2])


def test_input_that_is_not_a_root_variable():
    """As Theano, a computed variable as an input cuts the graph there: its value is given."""
    x = T.vector("x")
    y = x * 2
    y.name = "doubled"
    f = tcomp.function([y], y + 1)
    np.testing.assert_allclose(f(np.array([1.0, 5.0], "float32")), [2.0, 6.0])
    with pytest.raises(tcomp.MissingInputError, match="x"):
        tcomp.function([y], y + x)


def test_missing_input_is_named():
    x, hidden = T.vector("x"), T.vector("hidden")
    with pytest.raises(tcomp.MissingInputError, match="hidden"):
        tcomp.function([x], x + hidden)


def test_update_type_mismatch_is_rejected():
    w = tcomp.shared(np.zeros(3, "float32"), "w")
    with pytest.raises(TypeError, match="w.*float64"):
        tcomp.function([], [], updates=[(w, T.cast(w, "float64"))])
    with pytest.raises(TypeError, match="rank"):
        tcomp.function([], [], updates=[(w, w.sum())])
    with pytest.raises(ValueError, match="shape"):
        tcomp.function([], [], updates=[(w, T.zeros((4,)))])
    x = T.vector("x")
    with pytest.raises(TypeError, match="shared variable"):
        tcomp.function([x], [], updates=[(x, x + 1)])


def test_givens_type_mismatch():
    x = T.matrix("x")
    with pytest.raises(TypeError, match="x"):
        tcomp.function([], x.sum(), givens={x: T.vector("v")})


def test_shared_variable_as_explicit_input_rejected():
    w = tcomp.shared(np.zeros(2, "float32"), "w")
    with pytest.raises(TypeError, match="shared"):
        tcomp.function([w], w * 2)


def test_unknown_backend():
    x = T.vector("x")
    with pytest.raises(ValueError, match="unknown backend"):
        tcomp.function([x], x, backend="tpu")


def test_dump_stages_on_cpu():
    x = T.matrix("x")
    f = tcomp.function([x], T.exp(x).sum(axis=1), backend="cpu")
    assert "exp(" in f.dump("traced")
    assert "fused(" in f.dump("optimized") or "exp(" in f.dump("optimized")
    llvm = f.dump("llvm")
    assert "define" in llvm and "@llvm.exp" not in llvm  # tcomp's own exp, no libm/intrinsic call
    assert f.dump("asm").strip()
    with pytest.raises(ValueError):
        f.dump("ptx")
    r = tcomp.function([x], x + 1, backend="reference")
    with pytest.raises(ValueError, match="reference"):
        r.dump("llvm")


def test_a_shape_read_from_a_static_input_uses_it():
    """``T.zeros(x.shape)`` with x of static shape folds the dims to constants, but x is still
    used (as in Theano): no unused-input error, also through reshape and random sizes; a
    shape written as literals does not use x."""
    from tcomp.tensor.shared_randomstreams import RandomStreams

    x = T.matrix("x", shape=(2, 3))
    xv = np.ones((2, 3), "float32")
    np.testing.assert_array_equal(tcomp.function([x], T.zeros(x.shape) + 1)(xv), np.ones((2, 3)))
    np.testing.assert_array_equal(tcomp.function([x], T.reshape(T.arange(6), x.shape))(xv),
                                  np.arange(6).reshape(2, 3))
    assert tcomp.function([x], RandomStreams(1).uniform(x.shape))(xv).shape == (2, 3)
    with pytest.raises(ValueError, match="not used"):
        tcomp.function([x], T.zeros((2, 3)))
