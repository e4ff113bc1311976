"""Theano's function API: In/Out, no_default_updates, Function.copy, pickling/deepcopy of a
compiled function, get_value/set_value/strict as Theano's TensorType.filter defines them.
Expected values are plain arithmetic or NumPy, never tcomp's own output."""
import copy
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp import In, Out, function, shared


@pytest.fixture(params=["cpu", "reference"])
def backend(request, monkeypatch):
    monkeypatch.setattr(tcomp.config, "backend", request.param)
    return request.param


# -- In -----------------------------------------------------------------------------------------

def test_in_defaults_positional_and_keyword(backend):
    x, y, w = T.dscalars("x", "y", "w")
    f = function([x, In(y, value=1), In(w, value=2, name="w_by_name")], (x + y) * w)
    assert f(33) == (33 + 1) * 2
    assert f(33, 2) == (33 + 2) * 2
    assert f(33, 0, 1) == 33
    assert f(33, w_by_name=1) == 34
    assert f(33, w_by_name=1, y=0) == 33
    assert f(x=33) == 68


def test_in_argument_errors(backend):
    x, y = T.dscalars("x", "y")
    f = function([x, In(y, value=1.5)], x * y)
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        f(1, z=2)
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        f(1, x=2)
    with pytest.raises(TypeError, match="missing argument.*x"):
        f(y=2)
    with pytest.raises(TypeError, match="takes 2 arguments, got 3"):
        f(1, 2, 3)
    with pytest.raises(TypeError, match="symbolic variable"):
        In(x, value=y)
    with pytest.raises(ValueError, match="needs a value"):
        In(x, update=x + 1)
    with pytest.raises(TypeError, match="symbolic variable or tcomp.In"):
        function([x, 3], x)
    g = function([x, In(y, name="why")], x - y)
    assert g(5, why=2) == 3
    with pytest.raises(TypeError, match="unexpected keyword argument 'y'"):
        g(5, y=2)  # the In's name replaces the variable's, as in Theano
    t1, t2 = T.dscalar("t"), T.dscalar("t")
    twins = function([t1, t2], t1 - t2)
    assert twins(3, 1) == 2
    with pytest.raises(TypeError, match="several inputs are named 't'"):
        twins(1, t=2)


def test_in_strict_and_allow_downcast(backend):
    x = T.fvector("x")
    f = function([In(x, strict=True)], x * 2)
    np.testing.assert_allclose(f(np.array([1, 2], "float32")), [2, 4])
    with pytest.raises(TypeError, match="strict.*float32"):
        f([1.0, 2.0])
    with pytest.raises(TypeError, match="strict.*float32"):
        f(np.array([1, 2], "float64"))
    g = function([In(x, allow_downcast=True)], x * 2)
    out = g(np.array([0.1, 1e300], "float64"))
    assert out.dtype == np.float32
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(out, np.array([0.1, 1e300], "float64").astype("float32") * 2)
    h = function([In(x, allow_downcast=False)], x * 2)
    with pytest.raises(TypeError, match="float32"):
        h(np.array([0.1], "float64"))


def test_in_with_update_keeps_a_state(backend):
    x, s = T.dscalar("x"), T.dscalar("s")
    f = function([x, In(s, value=1.0, update=s * 2)], s + x)
    assert [float(f(0)) for _ in range(3)] == [1.0, 2.0, 4.0]
    assert f(0.5, s=10.0) == 10.5  # an explicit value replaces the state first
    assert f(0) == 20.0
    g = function([x, In(s, value=3.0, update=s + x, implicit=True)], s)
    assert g(1) == 3.0 and g(1) == 4.0
    with pytest.raises(TypeError, match="implicit"):
        g(1, s=0.0)


def test_out_borrow_returns_fresh_arrays(backend):
    x = T.dvector("x")
    f = function([x], [Out(x * 2, borrow=True), Out(x + 1)])
    a = f(np.array([1.0, 2.0]))
    b = f(np.array([5.0, 6.0]))
    np.testing.assert_array_equal(a[0], [2, 4])  # the first result was not overwritten
    np.testing.assert_array_equal(b[1], [6, 7])
    single = function([x], Out(x.sum()))
    assert single(np.array([1.0, 2.0])) == 3.0


# -- no_default_updates -----------------------------------------------------------------------

def test_no_default_updates(backend):
    srng = tcomp.RandomStreams(seed=234)
    rv_u, rv_n = srng.uniform((2, 2)), srng.normal((2, 2))
    f = function([], rv_u)
    g = function([], rv_n, no_default_updates=True)
    assert not np.array_equal(f(), f())
    np.testing.assert_array_equal(g(), g())
    both = function([], [rv_u, rv_n], no_default_updates=[srng.counters[1]])
    u0, n0 = both()
    u1, n1 = both()
    assert not np.array_equal(u0, u1)
    np.testing.assert_array_equal(n0, n1)
    nearly_zeros = function([], rv_u + rv_u - 2 * rv_u)
    np.testing.assert_allclose(nearly_zeros(), 0, atol=1e-6)  # one draw per call, used three times
    with pytest.raises(TypeError, match="no_default_updates"):
        function([], rv_u, no_default_updates="yes")
    with pytest.raises(TypeError, match="not a shared variable"):
        function([], rv_u, no_default_updates=[rv_u])


# -- copy ---------------------------------------------------------------------------------------

def test_copy_swap_and_delete_updates(backend):
    state = shared(0)
    inc = T.iscalar("inc")
    accumulator = function([inc], state, updates=[(state, state + inc)], name="acc")
    accumulator(10)
    assert state.get_value() == 10
    new_state = shared(0)
    new_accumulator = accumulator.copy(swap={state: new_state})
    assert new_accumulator(100) == 0
    assert new_state.get_value() == 100 and state.get_value() == 10
    null_accumulator = accumulator.copy(delete_updates=True)
    assert null_accumulator(9000) == 10
    assert state.get_value() == 10
    assert accumulator.copy().name == "acc copy" and accumulator.copy(name="b").name == "b"
    same = copy.copy(accumulator)  # Theano: __copy__ is copy(): it shares the state
    same(5)
    assert state.get_value() == 15
    with pytest.raises(ValueError, match="not found"):
        accumulator.copy(swap={shared(1): new_state})
    with pytest.raises(TypeError, match="type must be the same"):
        accumulator.copy(swap={state: shared(np.zeros(2))})


def test_copy_keeps_in_defaults_and_other_shared(backend):
    W = shared(np.ones(3), "W")
    b = shared(np.zeros(3), "b")
    x, lr = T.dvector("x"), T.dscalar("lr")
    step = function([x, In(lr, value=0.5)], (W * x).sum(), updates=[(W, W - lr * x), (b, b + 1)])
    W2 = shared(np.full(3, 2.0), "W2")
    step2 = step.copy(swap={W: W2})
    assert step2(np.array([1.0, 2.0, 3.0])) == 12.0
    np.testing.assert_allclose(W2.get_value(), [1.5, 1.0, 0.5])
    np.testing.assert_allclose(W.get_value(), [1, 1, 1])
    np.testing.assert_allclose(b.get_value(), [1, 1, 1])  # b is still shared with the original


# -- pickling and deepcopy ----------------------------------------------------------------------

def _trained_logistic(backend):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((40, 5))
    Y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype("float64")
    w = shared(np.zeros(5), "w")
    b = shared(0.0, "b")
    x, y = T.dmatrix("x"), T.dvector("y")
    p_1 = 1 / (1 + T.exp(-T.dot(x, w) - b))
    xent = -y * T.log(p_1) - (1 - y) * T.log(1 - p_1)
    cost = xent.mean() + 0.01 * (w ** 2).sum()
    gw, gb = T.grad(cost, [w, b])
    train = function([x, In(y, name="target")], [p_1 > 0.5, cost], updates=[(w, w - 0.1 * gw), (b, b - 0.1 * gb)])
    for _ in range(20):
        train(X, Y)
    return train, X, Y, w


def test_pickled_function_runs_in_a_fresh_interpreter(backend, tmp_path):
    train, X, Y, w = _trained_logistic(backend)
    blob = pickle.dumps(train)
    (tmp_path / "fn.pkl").write_bytes(blob)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", Y)
    expected = train.copy(delete_updates=True)(X, Y)
    script = textwrap.dedent(f"""
        import pickle, sys
        import numpy as np
        f = pickle.loads(open({str(tmp_path / "fn.pkl")!r}, "rb").read())
        X, Y = np.load({str(tmp_path / "X.npy")!r}), np.load({str(tmp_path / "Y.npy")!r})
        pred, cost = f(X, target=Y)
        np.save({str(tmp_path / "pred.npy")!r}, pred)
        np.save({str(tmp_path / "cost.npy")!r}, cost)
        print(type(f).__module__, f.backend)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["tcomp.function", backend]
    np.testing.assert_array_equal(np.load(tmp_path / "pred.npy"), expected[0])
    np.testing.assert_allclose(np.load(tmp_path / "cost.npy"), expected[1], rtol=1e-12)


def test_pickle_keeps_sharing_and_deepcopy_is_independent(backend):
    W = shared(np.arange(3.0), "W")
    x = T.dvector("x")
    inc = function([x], W.sum(), updates=[(W, W + x)])
    read = function([], W * 2)
    inc2, read2 = pickle.loads(pickle.dumps([inc, read]))
    inc2(np.ones(3))
    np.testing.assert_allclose(read2(), (np.arange(3.0) + 1) * 2)  # both read the same unpickled W
    np.testing.assert_allclose(W.get_value(), np.arange(3.0))  # the original is untouched
    inc3 = copy.deepcopy(inc)
    inc3(np.ones(3))
    np.testing.assert_allclose(W.get_value(), np.arange(3.0))
    inc(np.ones(3))
    np.testing.assert_allclose(W.get_value(), np.arange(3.0) + 1)


def test_pickled_function_with_random_stream_and_state(backend):
    srng = tcomp.RandomStreams(seed=3)
    s = T.dscalar("s")
    u = srng.uniform((4,))
    f = function([In(s, value=1.0, update=s + 1)], u * s)
    f()
    g = pickle.loads(pickle.dumps(f))
    np.testing.assert_allclose(g(), f())  # same counter and same state continue identically


def test_shared_variable_pickles_without_its_lock(backend):
    W = shared(np.ones((2, 2), "float32"), "W", strict=True)
    W2 = pickle.loads(pickle.dumps(W))
    assert W2 is not W and W2.strict and W2.name == "W"
    f = function([], W2.sum(), updates=[(W2, W2 * 2)])
    assert f() == 4.0 and f() == 8.0
    with pytest.raises(TypeError, match="strict"):
        W2.set_value(np.ones((2, 2), "float64"))


# -- get_value / set_value / strict -------------------------------------------------------------

def test_get_value_flags():
    W = shared(np.ones(3, "float32"), "W")
    assert W.get_value(borrow=True) is W.get_value(borrow=True, return_internal_type=True)
    v = W.get_value(return_internal_type=True)
    assert isinstance(v, np.ndarray) and v is not W.get_value(borrow=True)


def test_set_value_follows_theano_filter():
    f32 = shared(np.zeros(2, "float32"), "f32")
    with pytest.raises(TypeError, match="cannot store a value of dtype float64"):
        f32.set_value(np.zeros(2, "float64"))
    with pytest.raises(TypeError, match="cannot store a value of dtype int32"):
        f32.set_value(np.zeros(2, "int32"))  # float32 cannot hold every int32
    f32.set_value(np.array([1, -2], "int16"))
    np.testing.assert_array_equal(f32.get_value(), [1, -2])
    with pytest.raises(TypeError, match="cannot store accurately"):
        f32.set_value([0.1, 0.2])  # a list is converted only without loss (the Python-float case is scalars)
    f32.set_value([0.5, 2.0])
    np.testing.assert_array_equal(f32.get_value(), [0.5, 2])
    f64 = shared(np.zeros(2), "f64")
    f64.set_value(np.array([1, 2], "int32"))
    f64.set_value(np.array([0.5, 1], "float32"))
    np.testing.assert_array_equal(f64.get_value(), [0.5, 1])
    i = shared(np.int64(0), "i")
    i.set_value(2.0)
    assert i.get_value() == 2
    with pytest.raises(TypeError, match="cannot store accurately value 1.5"):
        i.set_value(1.5)
    with pytest.raises(TypeError, match="cannot store accurately"):
        shared(np.zeros(1, "int8"), "b").set_value([300])
    down = shared(np.zeros(2, "float32"), "down", allow_downcast=True)
    down.set_value(np.array([0.1, 0.2], "float64"))
    np.testing.assert_array_equal(down.get_value(), np.array([0.1, 0.2], "float64").astype("float32"))


def test_float_scalar_into_floatx(monkeypatch):
    s = shared(np.float32(0), "s")
    s.set_value(0.1)  # a Python float into a floatX (float32) variable is allowed, as in Theano
    assert s.get_value() == np.float32(0.1)
    with pytest.raises(TypeError, match="cannot store accurately"):
        s.set_value(np.float64(0.1))  # a NumPy float64 scalar is not a Python float: lossless only


def test_shared_strict():
    with pytest.raises(TypeError, match="strict=True needs a NumPy array"):
        shared(0.5, "s", strict=True)
    with pytest.raises(TypeError, match="strict=True needs a NumPy array of dtype float32"):
        shared(np.zeros(2), "s", strict=True, dtype="float32")
    s = shared(np.zeros(2, "float32"), "s", strict=True)
    s.set_value(np.ones(2, "float32"))
    for bad in (np.ones(2, "int8"), [1.0, 2.0], np.ones(2, "float64")):
        with pytest.raises(TypeError, match="strict"):
            s.set_value(bad)
    np.testing.assert_array_equal(s.get_value(), [1, 1])


def test_function_without_outputs_returns_an_empty_list():
    f = tcomp.function([], [])
    assert f() == [] and f() == []
    c = tcomp.shared(np.float32(0), name="c")
    g = tcomp.function([], [], updates=[(c, c + 1)])
    assert g() == [] and g() == []
    assert c.get_value() == 2
