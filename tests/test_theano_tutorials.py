"""Theano's documentation tutorial (doc/tutorial/*.txt: adding, examples, gradients,
conditions, shape_info, aliasing, modes, broadcasting, debug_faq, printing_drawing), each
program written with ``import tcomp as theano`` / ``import tcomp.tensor as T`` and otherwise
Theano's calls, checked against the results the tutorial prints (Theano's answers).

Theano's default floatX is float64 and the tutorial relies on it (``T.row()`` fed an int64
``np.arange``, ``T.matrix`` fed ``rand()``); tcomp's default is float32, so every test runs
with ``config.floatX = 'float64'``, as a Theano user's programs would have run.  Long
training loops are shortened (the full 10000-step run is in test_stabilize_handwritten).
"""
import numpy as np
import pytest

import tcomp as theano
import tcomp.tensor as T
from tcomp import In, function, pp, shared


@pytest.fixture(autouse=True)
def theano_defaults():
    with theano.config.change_flags(floatX="float64"):
        yield


# -- adding.txt ---------------------------------------------------------------------------------

def test_adding_two_scalars():
    x = T.dscalar("x")
    y = T.dscalar("y")
    z = x + y
    f = function([x, y], z)
    assert f(2, 3) == 5.0 and np.asarray(f(2, 3)).shape == ()
    np.testing.assert_allclose(f(16.3, 12.1), 28.4)
    assert x.type == T.dscalar and T.dscalar("q").type is T.dscalar
    assert pp(z) in ("(x + y)", "x + y")


def test_adding_two_matrices():
    x = T.dmatrix("x")
    y = T.dmatrix("y")
    f = function([x, y], x + y)
    want = np.array([[11.0, 22.0], [33.0, 44.0]])
    np.testing.assert_array_equal(f([[1, 2], [3, 4]], [[10, 20], [30, 40]]), want)
    np.testing.assert_array_equal(f(np.array([[1, 2], [3, 4]]), np.array([[10, 20], [30, 40]])), want)


# -- examples.txt -------------------------------------------------------------------------------

def test_logistic_function():
    x = T.dmatrix("x")
    logistic = function([x], 1 / (1 + T.exp(-x)))
    want = np.array([[0.5, 0.73105858], [0.26894142, 0.11920292]])
    np.testing.assert_allclose(logistic([[0, 1], [-1, -2]]), want, rtol=1e-7)
    logistic2 = function([x], (1 + T.tanh(x / 2)) / 2)
    np.testing.assert_allclose(logistic2([[0, 1], [-1, -2]]), want, rtol=1e-7)


def test_computing_more_than_one_thing():
    a, b = T.dmatrices("a", "b")
    diff = a - b
    f = function([a, b], [diff, abs(diff), diff ** 2])
    d, ad, d2 = f([[1, 1], [1, 1]], [[0, 1], [2, 3]])
    np.testing.assert_array_equal(d, [[1.0, 0.0], [-1.0, -2.0]])
    np.testing.assert_array_equal(ad, [[1.0, 0.0], [1.0, 2.0]])
    np.testing.assert_array_equal(d2, [[1.0, 0.0], [1.0, 4.0]])


def test_default_value_for_an_argument():
    x, y = T.dscalars("x", "y")
    f = function([x, In(y, value=1)], x + y)
    assert f(33) == 34.0 and f(33, 2) == 35.0
    x, y, w = T.dscalars("x", "y", "w")
    f = function([x, In(y, value=1), In(w, value=2, name="w_by_name")], (x + y) * w)
    assert [f(33), f(33, 2), f(33, 0, 1), f(33, w_by_name=1), f(33, w_by_name=1, y=0)] == [68, 70, 33, 34, 33]


def test_shared_variables_accumulator_and_givens():
    state = shared(0)
    inc = T.iscalar("inc")
    accumulator = function([inc], state, updates=[(state, state + inc)])
    assert state.get_value() == 0 and state.get_value().dtype == np.int64
    assert accumulator(1) == 0 and state.get_value() == 1
    assert accumulator(300) == 1 and state.get_value() == 301
    state.set_value(-1)
    assert accumulator(3) == -1 and state.get_value() == 2
    decrementor = function([inc], state, updates=[(state, state - inc)])
    assert decrementor(2) == 2 and state.get_value() == 0
    fn_of_state = state * 2 + inc
    foo = T.scalar(dtype=state.dtype)
    skip_shared = function([inc, foo], fn_of_state, givens=[(state, foo)])
    assert skip_shared(1, 3) == 7
    assert state.get_value() == 0


def test_copying_functions():
    state = shared(0)
    inc = T.iscalar("inc")
    accumulator = function([inc], state, updates=[(state, state + inc)])
    assert accumulator(10) == 0 and state.get_value() == 10
    new_state = shared(0)
    new_accumulator = accumulator.copy(swap={state: new_state})
    assert new_accumulator(100) == 0 and new_state.get_value() == 100
    assert state.get_value() == 10
    null_accumulator = accumulator.copy(delete_updates=True)
    assert null_accumulator(9000) == 10 and state.get_value() == 10


def _streams():
    from tcomp.tensor.shared_randomstreams import RandomStreams

    srng = RandomStreams(seed=234)
    rv_u = srng.uniform((2, 2))
    rv_n = srng.normal((2, 2))
    return srng, rv_u, rv_n


def test_random_numbers_brief_example():
    srng, rv_u, rv_n = _streams()
    f = function([], rv_u)
    g = function([], rv_n, no_default_updates=True)  # not updating rv_n.rng
    nearly_zeros = function([], rv_u + rv_u - 2 * rv_u)
    f_val0, f_val1 = f(), f()
    assert not np.array_equal(f_val0, f_val1)
    assert ((0 <= f_val0) & (f_val0 < 1)).all()
    g_val0, g_val1 = g(), g()
    np.testing.assert_array_equal(g_val0, g_val1)
    np.testing.assert_allclose(nearly_zeros(), 0, atol=1e-12)
    srng.seed(902340)  # seeds rv_u and rv_n with different seeds each
    a = f()
    srng.seed(902340)
    np.testing.assert_array_equal(f(), a)


def test_random_numbers_seeding_one_variable():
    srng, rv_u, rv_n = _streams()
    f = function([], rv_u)
    rng_val = rv_u.rng.get_value(borrow=True)  # get the rng for rv_u
    rng_val.seed(89234)  # seeds the generator
    rv_u.rng.set_value(rng_val, borrow=True)  # assign back seeded rng
    a = f()
    rng_val = rv_u.rng.get_value(borrow=True)
    rng_val.seed(89234)
    rv_u.rng.set_value(rng_val, borrow=True)
    np.testing.assert_array_equal(f(), a)


def test_random_numbers_sharing_streams_between_functions():
    srng, rv_u, rv_n = _streams()
    f = function([], rv_u)
    nearly_zeros = function([], rv_u + rv_u - 2 * rv_u)
    state_after_v0 = rv_u.rng.get_value().get_state()
    nearly_zeros()  # this affects rv_u's generator
    v1 = f()
    rng = rv_u.rng.get_value(borrow=True)
    rng.set_state(state_after_v0)
    rv_u.rng.set_value(rng, borrow=True)
    v2 = f()  # v2 != v1
    v3 = f()  # v3 == v1
    assert not np.array_equal(v1, v2)
    np.testing.assert_array_equal(v1, v3)


def test_copying_random_state_between_graphs():
    from tcomp.sandbox.rng_mrg import MRG_RandomStreams
    from tcomp.tensor.shared_randomstreams import RandomStreams

    class Graph:
        def __init__(self, seed=123):
            self.rng = RandomStreams(seed)
            self.y = self.rng.uniform(size=(1,))

    g1 = Graph(seed=123)
    f1 = theano.function([], g1.y)
    g2 = Graph(seed=987)
    f2 = theano.function([], g2.y)
    assert f1() != f2()  # by default, the two functions are out of sync

    def copy_random_state(g1, g2):
        if isinstance(g1.rng, MRG_RandomStreams):
            g2.rng.rstate = g1.rng.rstate
        for (su1, su2) in zip(g1.rng.state_updates, g2.rng.state_updates):
            su2[0].set_value(su1[0].get_value())

    copy_random_state(g1, g2)
    np.testing.assert_array_equal(f1(), f2())  # the tutorial prints the same number twice


def _logistic_regression(steps, lr, floatX_cast, test_values=False):
    """The "real example" (examples.txt) and its modes.txt / printing_drawing.txt variant."""
    rng = np.random.RandomState(1234)
    N, feats = 400, 784
    fx = theano.config.floatX
    D = (rng.randn(N, feats), rng.randint(size=N, low=0, high=2))
    if floatX_cast:
        D = (D[0].astype(fx), D[1].astype(fx))
    x = T.matrix("x")
    y = T.vector("y")
    w = theano.shared(rng.randn(feats).astype(fx) if floatX_cast else rng.randn(feats), name="w")
    b = theano.shared(np.asarray(0., dtype=fx) if floatX_cast else 0., name="b")
    if test_values:
        x.tag.test_value = D[0]
        y.tag.test_value = D[1]
    p_1 = 1 / (1 + T.exp(-T.dot(x, w) - b))  # probability that target = 1
    prediction = p_1 > 0.5  # the prediction thresholded
    xent = -y * T.log(p_1) - (1 - y) * T.log(1 - p_1)  # cross-entropy loss function
    cost = xent.mean() + 0.01 * (w ** 2).sum()  # the cost to minimize
    gw, gb = T.grad(cost, [w, b])
    train = theano.function(inputs=[x, y], outputs=[prediction, xent],
                            updates=((w, w - lr * gw), (b, b - lr * gb)), name="train")
    predict = theano.function(inputs=[x], outputs=prediction, name="predict")
    err = None
    for _ in range(steps):
        pred, err = train(D[0], D[1])
    return D, predict, prediction, err


def test_logistic_regression_example():
    D, predict, _, err = _logistic_regression(steps=300, lr=0.1, floatX_cast=False)
    assert np.isfinite(err).all()
    # the tutorial's run ends with "prediction on D" equal to "target values for D"
    assert (predict(D[0]) == D[1]).mean() >= 0.99


# -- gradients.txt ------------------------------------------------------------------------------

def test_gradient_of_x_squared():
    x = T.dscalar("x")
    gy = T.grad(x ** 2, x)
    assert "x" in pp(gy)
    f = function([x], gy)
    assert f(4) == 8.0
    np.testing.assert_allclose(f(94.2), 188.4)


def test_gradient_of_logistic():
    x = T.dmatrix("x")
    s = T.sum(1 / (1 + T.exp(-x)))
    dlogistic = function([x], T.grad(s, x))
    np.testing.assert_allclose(dlogistic([[0, 1], [-1, -2]]), [[0.25, 0.19661193], [0.19661193, 0.10499359]],
                               rtol=1e-7)


def test_jacobian_and_hessian_with_scan():
    x = T.dvector("x")
    y = x ** 2
    J, updates = theano.scan(lambda i, y, x: T.grad(y[i], x), sequences=T.arange(y.shape[0]), non_sequences=[y, x])
    f = function([x], J, updates=updates)
    np.testing.assert_array_equal(f([4, 4]), [[8.0, 0.0], [0.0, 8.0]])
    cost = y.sum()
    gy = T.grad(cost, x)
    H, updates = theano.scan(lambda i, gy, x: T.grad(gy[i], x), sequences=T.arange(gy.shape[0]),
                             non_sequences=[gy, x])
    f = function([x], H, updates=updates)
    np.testing.assert_array_equal(f([4, 4]), [[2.0, 0.0], [0.0, 2.0]])


def test_rop_of_dot():
    W, V = T.dmatrix("W"), T.dmatrix("V")
    x = T.dvector("x")
    y = T.dot(x, W)
    JV = T.Rop(y, W, V)
    f = theano.function([W, V, x], JV)
    np.testing.assert_array_equal(f([[1, 1], [1, 1]], [[2, 2], [2, 2]], [0, 1]), [2.0, 2.0])


def test_lop_and_hessian_times_vector():
    W = T.dmatrix("W")
    v = T.dvector("v")
    x = T.dvector("x")
    y = T.dot(x, W)
    VJ = T.Lop(y, W, v)
    f = theano.function([v, x], VJ)  # the later page's form (W is not needed)
    np.testing.assert_array_equal(f([2, 2], [0, 1]), [[0.0, 0.0], [2.0, 2.0]])
    x, v = T.dvector("x"), T.dvector("v")
    gy = T.grad(T.sum(x ** 2), x)
    f = theano.function([x, v], T.grad(T.sum(gy * v), x))
    np.testing.assert_array_equal(f([4, 4], [2, 2]), [4.0, 4.0])
    f = theano.function([x, v], T.Rop(gy, x, v))
    np.testing.assert_array_equal(f([4, 4], [2, 2]), [4.0, 4.0])


# -- conditions.txt -----------------------------------------------------------------------------

def _conditions(lazy):
    from tcomp.ifelse import ifelse

    a, b = T.scalars("a", "b")
    x, y = T.matrices("x", "y")
    z = (ifelse if lazy else T.switch)(T.lt(a, b), T.mean(x), T.mean(y))
    f = theano.function([a, b, x, y], z, mode=theano.Mode(linker="vm"))
    val1, val2 = 0., 1.
    big_mat1, big_mat2 = np.ones((100, 10)), np.full((100, 10), 3.0)  # the page's 10000x1000 only times it
    assert f(val1, val2, big_mat1, big_mat2) == 1.0
    assert f(val2, val1, big_mat1, big_mat2) == 3.0


def test_switch():
    _conditions(lazy=False)


def test_lazy_ifelse():
    _conditions(lazy=True)


# -- shape_info.txt -----------------------------------------------------------------------------

def test_shape_information():
    x = theano.tensor.matrix("x")
    f = theano.function([x], (x ** 2).shape)
    assert [int(v) for v in f(np.ones((5, 4)))] == [5, 4]
    y = theano.tensor.matrix("y")
    z = theano.tensor.join(0, x, y)
    xv, yv = np.random.rand(5, 4), np.random.rand(3, 3)
    # Theano returns [8, 4] for z.shape here ("DOES NOT RAISE AN ERROR AS SHOULD BE"); tcomp checks
    f = theano.function([x, y], z.shape)
    with pytest.raises(ValueError, match="concatenate"):
        f(xv, yv)
    f = theano.function([x, y], z)
    with pytest.raises(ValueError, match="concatenate"):  # "Raises a dimensions mismatch error."
        f(xv, yv)


# -- aliasing.txt -------------------------------------------------------------------------------

def test_aliasing_and_borrow():
    np_array = np.ones(2, dtype="float32")
    s_default = theano.shared(np_array)
    s_false = theano.shared(np_array, borrow=False)
    s_true = theano.shared(np_array, borrow=True)
    np_array += 1  # now it is an array of 2.0 s
    np.testing.assert_array_equal(s_default.get_value(), [1.0, 1.0])
    np.testing.assert_array_equal(s_false.get_value(), [1.0, 1.0])
    np.testing.assert_array_equal(s_true.get_value(), [2.0, 2.0])
    s = theano.shared(np_array)
    v_false = s.get_value(borrow=False)
    v_true = s.get_value(borrow=True)
    v_internal = s.get_value(borrow=True, return_internal_type=True)
    assert v_true is v_internal and v_false is not v_true
    s.set_value(v_true * 3, borrow=True)  # the page's some_inplace_fn pattern
    np.testing.assert_array_equal(s.get_value(), [6.0, 6.0])
    x = theano.tensor.matrix()
    f = theano.function([theano.In(x, borrow=True)], theano.Out(2 * x, borrow=True))
    np.testing.assert_array_equal(f([[1.0, 2.0]]), [[2.0, 4.0]])


# -- modes.txt ----------------------------------------------------------------------------------

def test_debugmode_example():
    x = T.dvector("x")
    f = theano.function([x], 10 * x, mode="DebugMode")
    for v in (5, 0, 7):
        np.testing.assert_array_equal(f([v]), [10.0 * v])


def test_mode_constructors_of_the_table():
    x = T.dvector("x")
    for mode in (theano.compile.mode.Mode(linker="py", optimizer="fast_compile"),
                 theano.compile.mode.Mode(linker="cvm", optimizer="fast_run"), theano.compile.debugmode.DebugMode(),
                 "FAST_COMPILE", "FAST_RUN"):
        f = theano.function([x], T.exp(x) * 2, mode=mode)
        np.testing.assert_allclose(f([0.0, 1.0]), [2.0, 2 * np.e], rtol=1e-12)


def test_modes_exercise_float32():
    with theano.config.change_flags(floatX="float32"):
        D, predict, _, err = _logistic_regression(steps=1, lr=0.01, floatX_cast=True, test_values=True)
        D, predict, _, err_later = _logistic_regression(steps=150, lr=0.01, floatX_cast=True, test_values=True)
        assert err.dtype == np.float32 and np.isfinite(err_later).all()
        assert err_later.mean() < err.mean()  # the page's 10000 steps go on to fit the targets


# -- broadcasting.txt ---------------------------------------------------------------------------

def test_broadcasting_rows_and_columns():
    r = T.row()
    assert r.broadcastable == (True, False)
    mtr = T.matrix()
    assert mtr.broadcastable == (False, False)
    f_row = theano.function([r, mtr], [r + mtr])
    R = np.arange(3).reshape(1, 3)
    M = np.arange(9).reshape(3, 3)
    (out,) = f_row(R, M)
    np.testing.assert_array_equal(out, [[0.0, 2.0, 4.0], [3.0, 5.0, 7.0], [6.0, 8.0, 10.0]])
    c = T.col()
    assert c.broadcastable == (False, True)
    f_col = theano.function([c, mtr], [c + mtr])
    C = np.arange(3).reshape(3, 1)
    (out,) = f_col(C, M)
    np.testing.assert_array_equal(out, [[0.0, 1.0, 2.0], [4.0, 5.0, 6.0], [8.0, 9.0, 10.0]])


# -- debug_faq.txt ------------------------------------------------------------------------------

def test_test_values_point_at_the_faulty_line():
    old = theano.config.compute_test_value
    theano.config.compute_test_value = "warn"  # use 'warn' to activate this feature
    try:
        W1val = np.random.rand(2, 10, 10).astype(theano.config.floatX)
        W1 = theano.shared(W1val, "W1")
        W2val = np.random.rand(15, 20).astype(theano.config.floatX)
        W2 = theano.shared(W2val, "W2")
        x = T.matrix("x")
        x.tag.test_value = np.random.rand(5, 10)  # input which will be of shape (5, 10)
        func_of_W1 = W1.dimshuffle(2, 0, 1).flatten(2).T
        assert func_of_W1.get_test_value().shape == (20, 10)
        with pytest.raises(ValueError, match="5, 10.*20, 10|20, 10.*5, 10"):
            T.dot(x, func_of_W1)  # source of error: dot product of 5x10 with 20x10
        assert W2.get_value().shape == (15, 20)
    finally:
        theano.config.compute_test_value = old


# -- printing_drawing.txt -----------------------------------------------------------------------

def test_printing_the_logistic_regression(tmp_path):
    D, predict, prediction, _ = _logistic_regression(steps=0, lr=0.01, floatX_cast=True, test_values=True)
    text = pp(prediction)
    for part in ("x", "w", "b", "exp", "0.5"):
        assert part in text, (part, text)
    pre = theano.printing.debugprint(prediction, file="str")
    for part in ("gt", "exp", "x", "w", "b"):
        assert part in pre, (part, pre)
    post = theano.printing.debugprint(predict, file="str")
    assert "sigmoid" in post  # Theano's compiled graph likewise computes scalar_sigmoid
    assert "exp" not in post.replace("sigmoid", "")
    out = theano.printing.pydotprint(prediction, outfile=str(tmp_path / "logreg_pydotprint_prediction.dot"))
    assert "digraph" in open(out).read()
