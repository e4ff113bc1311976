"""Variables behave as in Theano: truth value, eval, type objects and constants, plural
constructors, broadcast patterns / specify_shape, and tag.test_value with
config.compute_test_value.  Values are checked against NumPy."""
import pickle
import warnings

import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.ir import TensorType as IRTensorType

# -- truth value ----------------------------------------------------------------------------


def test_variables_are_true_as_in_theano():
    W = tcomp.shared(np.zeros(3), "W")
    x = T.dvector("x")
    for v in (W, x, x + 1, T.dot(x, W), T.eq(x, 0), T.lt(x, 0)):
        assert bool(v) is True
        assert not (not v)
    W_or_none = None
    if not W_or_none:  # Theano code's "if W is not given" test keeps working
        W_or_none = W
    assert W_or_none is W


@pytest.mark.parametrize("build", [lambda x: x < 0, lambda x: x <= 0, lambda x: x > 0, lambda x: x >= 0,
                                   lambda x: 0 < x])
def test_comparison_results_refuse_a_truth_value(build):
    x = T.dscalar("x")
    with pytest.raises(TypeError, match="^Variables do not support boolean operations."):
        if build(x):
            pass


def test_chained_comparison_refuses():
    a, b, c = T.dscalars("a", "b", "c")
    with pytest.raises(TypeError, match="Variables do not support boolean operations"):
        a < b < c  # noqa: B015 - the point: Python calls bool(a < b)


def test_iteration_over_static_length_only():
    v = T.dvector("v", shape=(3,))
    parts = list(v)
    assert len(parts) == 3
    f = tcomp.function([v], parts, backend="reference")
    np.testing.assert_array_equal(f(np.array([1.0, 2.0, 3.0])), [1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="not iterable"):
        list(T.dvector("w"))


# -- eval -------------------------------------------------------------------------------------

def test_eval_with_values_and_cache():
    x, y = T.dscalars("x", "y")
    z = x + 2 * y
    assert z.eval({x: 1.0, y: 3.0}) == 7.0
    assert z.eval({y: 0.5, x: 1.0}) == 2.0  # same input set, other order: one compiled function
    assert len(z._fn_cache) == 1
    assert z.eval({"x": 2.0, "y": 1.0}) == 4.0  # names resolve to the inputs
    assert len(z._fn_cache) == 1
    m = T.dmatrix("m")
    s = 1 / (1 + T.exp(-m))
    mv = np.array([[0.0, 1.0], [-1.0, 2.0]])
    np.testing.assert_allclose(s.eval({m: mv}), 1 / (1 + np.exp(-mv)), rtol=1e-12)


def test_eval_without_inputs_uses_constants_and_shared():
    W = tcomp.shared(np.arange(6.0).reshape(2, 3), "W")
    np.testing.assert_allclose((W * 2).sum(axis=0).eval(), (np.arange(6.0).reshape(2, 3) * 2).sum(axis=0))
    assert (T.constant(2.0) + 3).eval() == 5.0


def test_eval_ambiguous_name_raises():
    a, b = T.dscalar("a"), T.dscalar("a")
    with pytest.raises(ValueError, match="named 'a'"):
        (a + b).eval({"a": 1.0})


# -- type objects -----------------------------------------------------------------------------

PATTERNS = {"scalar": (), "vector": (False,), "matrix": (False, False), "row": (True, False), "col": (False, True),
            "tensor3": (False,) * 3, "tensor4": (False,) * 4, "tensor5": (False,) * 5}
DTYPES = {"b": "int8", "w": "int16", "i": "int32", "l": "int64", "f": "float32", "d": "float64"}


@pytest.mark.parametrize("prefix", list(DTYPES))
@pytest.mark.parametrize("kind", list(PATTERNS))
def test_type_constants_are_callable_types(prefix, kind):
    t = getattr(T, prefix + kind)
    assert isinstance(t, T.TensorType) and isinstance(t, IRTensorType)
    assert t.dtype == DTYPES[prefix] and t.broadcastable == PATTERNS[kind]
    x = t("x")
    assert x.name == "x" and x.type is t
    assert T.TensorType(DTYPES[prefix], PATTERNS[kind]) == t
    assert hash(T.TensorType(DTYPES[prefix], PATTERNS[kind])) == hash(t)
    assert T.TensorType(DTYPES[prefix], PATTERNS[kind])("y").type is t
    assert pickle.loads(pickle.dumps(t)) is t


def test_type_reprs_are_theanos():
    assert repr(T.dscalar) == "TensorType(float64, scalar)"
    assert repr(T.fmatrix) == "TensorType(float32, matrix)"
    assert repr(T.ivector) == "TensorType(int32, vector)"
    assert repr(T.drow) == "TensorType(float64, row)"
    assert repr(T.dcol) == "TensorType(float64, col)"
    assert repr(T.dtensor3) == "TensorType(float64, 3D)"
    assert repr(T.TensorType("float64", (False, True, False))) == "TensorType(float64, (False, True, False))"
    assert repr(T.dvector("v", shape=(3,)).type) == "TensorType(float64, shape=[3])"


def test_types_compare_with_ir_types_both_ways():
    ir = IRTensorType("float64", (None, None))
    assert ir == T.dmatrix and T.dmatrix == ir and not (ir != T.dmatrix)
    assert hash(ir) == hash(T.dmatrix)
    assert {ir: 1}[T.dmatrix] == 1
    assert T.dmatrix != T.fmatrix and T.dmatrix != IRTensorType("float64", (None, 1))


def test_result_and_shared_types_are_interned():
    a, b = T.dmatrices("a", "b")
    assert (a + b).type is T.dmatrix and T.dot(a, b).type is T.dmatrix
    assert T.sum(a).type is T.dscalar
    assert T.matrix("m", dtype="float64").type is T.dmatrix
    assert tcomp.shared(np.zeros(3)).type is tcomp.shared(np.ones(3)).type


def test_tensor_type_from_shape_and_theano_tensor_function():
    t = T.TensorType("float32", shape=(None, 784))
    assert t.shape == (None, 784) and t("x").type.shape == (None, 784)
    x = T.tensor("float64", (False, True), name="x")
    assert x.name == "x" and x.type is T.dcol
    assert T.tensor("y", "float32", ndim=2).type is T.fmatrix
    assert T.dvector("z", shape=(3,)).type.shape == (3,)


def test_filter_as_theano():
    assert T.dmatrix.filter([[1, 2]]).dtype == np.float64
    assert T.fvector.filter(np.arange(3, dtype="int8")).dtype == np.float32
    with pytest.raises(TypeError, match="loss of precision"):
        T.fvector.filter(np.ones(2))
    assert T.fvector.filter(np.ones(2), allow_downcast=True).dtype == np.float32
    with pytest.raises(TypeError, match="rank 1"):
        T.fvector.filter(np.ones((2, 2), "float32"))
    with pytest.raises(TypeError):
        T.ivector.filter([1.5])
    with pytest.raises(TypeError):
        T.fvector.filter(np.ones(2, "float32").astype("float64"), strict=True)
    assert T.dvector.is_valid_value(np.ones(2)) and not T.dvector.is_valid_value(np.ones(2, "float32"))


# -- plural constructors --------------------------------------------------------------------

PLURALS = {"scalars": "scalar", "vectors": "vector", "matrices": "matrix", "rows": "row", "cols": "col",
           "tensor3s": "tensor3", "tensor4s": "tensor4", "tensor5s": "tensor5"}


@pytest.mark.parametrize("prefix", ["", *DTYPES])
@pytest.mark.parametrize("plural", list(PLURALS))
def test_plural_constructors(prefix, plural):
    make = getattr(T, prefix + plural)
    a, b = make("a", "b")
    assert (a.name, b.name) == ("a", "b") and a is not b
    dtype = DTYPES[prefix] if prefix else tcomp.config.floatX
    assert a.dtype == dtype and a.broadcastable == PATTERNS[PLURALS[plural]]
    three = make(3)
    assert len(three) == 3 and all(v.name is None and v.dtype == dtype for v in three)
    single = make("x")
    assert single.name == "x" and single.type == a.type
    with pytest.raises(TypeError):
        make(1.5)


# -- broadcast patterns and specify_shape ------------------------------------------------------

@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_addbroadcast_and_unbroadcast(backend):
    x = T.dmatrix("x")
    r = T.addbroadcast(x, 0)
    assert r.broadcastable == (True, False)
    m = T.dmatrix("m")
    f = tcomp.function([x, m], r + m, backend=backend)
    xv, mv = np.array([[1.0, 2.0]]), np.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(f(xv, mv), xv + mv)
    with pytest.raises(ValueError):
        f(np.ones((2, 2)), mv)  # dim 0 is not 1 at run time
    u = T.unbroadcast(T.drow("row"), 0)
    assert u.broadcastable == (False, False)
    g = tcomp.function([u.inputs[0]], u * 2, backend=backend)
    np.testing.assert_array_equal(g(np.array([[1.0, 3.0]])), [[2.0, 6.0]])
    p = T.patternbroadcast(x, (False, True))
    assert p.broadcastable == (False, True)
    assert T.addbroadcast(r, 0) is r and T.unbroadcast(x, 1) is x


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_specify_shape(backend):
    x = T.dmatrix("x")
    n = T.lscalar("n")
    s = T.specify_shape(x, (3, 4))
    assert s.type.shape == (3, 4)
    assert T.specify_shape(x, (n, 1)).broadcastable == (False, True)
    f = tcomp.function([x], s * 2, backend=backend)
    xv = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(f(xv), xv * 2)
    for bad in (np.ones((3, 5)), np.ones((4, 4))):
        with pytest.raises(ValueError):
            f(bad)
    with pytest.raises(ValueError, match="specify_shape"):
        T.specify_shape(x, (3,))
    with pytest.raises(ValueError):
        T.specify_shape(T.dvector("v", shape=(3,)), (4,))  # a static mismatch fails at build time


# -- test values ------------------------------------------------------------------------------

@pytest.fixture
def test_value_mode():
    old = tcomp.config.compute_test_value

    def set_mode(mode):
        tcomp.config.compute_test_value = mode
    yield set_mode
    tcomp.config.compute_test_value = old


def test_compute_test_value_raise_catches_shape_errors_at_build_time(test_value_mode):
    test_value_mode("raise")
    rng = np.random.default_rng(0)
    x, W = T.dmatrix("x"), T.dmatrix("W")
    xv, wv = rng.standard_normal((5, 10)), rng.standard_normal((10, 20))
    x.tag.test_value = xv
    W.tag.test_value = wv
    h = T.tanh(T.dot(x, W))
    np.testing.assert_allclose(h.tag.test_value, np.tanh(xv @ wv), rtol=1e-12)
    np.testing.assert_allclose(h.get_test_value(), np.tanh(xv @ wv), rtol=1e-12)
    V = T.dmatrix("V")
    V.tag.test_value = rng.standard_normal((15, 3))
    with pytest.raises(ValueError, match=r"test value of dot"):
        T.dot(h, V)  # 20 vs 15: the types alone cannot tell, the test values can
    b = T.dvector("b")
    b.tag.test_value = np.ones(7)
    with pytest.raises(ValueError, match="test value of add"):
        h + b
    W2 = tcomp.shared(np.ones((20, 2)), "W2")
    np.testing.assert_allclose(T.dot(h, W2).tag.test_value, np.tanh(xv @ wv) @ np.ones((20, 2)), rtol=1e-12)
    with pytest.raises(ValueError, match=r"input 0 \(y: f64\[\?\]\) of add has no test value"):
        T.dvector("y") + 1


def test_compute_test_value_warn_ignore_off(test_value_mode):
    y = T.dvector("y")
    test_value_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        z = y + 1
    assert any("no test value" in str(w.message) for w in caught)
    assert "test_value" not in vars(z.tag)
    test_value_mode("ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        z = y + 1
    y.tag.test_value = np.array([1.0, 2.0])
    np.testing.assert_array_equal((y * 3).tag.test_value, [3.0, 6.0])
    test_value_mode("off")
    assert "test_value" not in vars((y * 3).tag)


def test_compute_test_value_setting_is_validated(test_value_mode):
    with pytest.raises(ValueError, match="compute_test_value"):
        tcomp.config.compute_test_value = "on"
    assert tcomp.config.compute_test_value == "off"


def test_test_value_is_checked_against_the_type():
    f = T.fmatrix("f")
    f.tag.test_value = np.full((2, 2), 0.1)  # float64 rounded to float32 (Theano's docs assign rand())
    assert f.tag.test_value.dtype == np.float32 and f.tag.test_value[0, 0] == np.float32(0.1)
    i = T.imatrix("i")
    with pytest.raises(TypeError, match="loss of precision"):
        i.tag.test_value = np.ones((2, 2))
    with pytest.raises(TypeError, match="loss of precision"):
        i.tag.test_value = np.ones((2, 2), "int64")
    with pytest.raises(TypeError, match="rank 2"):
        f.tag.test_value = np.ones(3, "float32")
    f.tag.test_value = [[1, 2]]
    assert f.tag.test_value.dtype == np.float32
    f.tag.note = "anything"  # the tag is a scratchpad
    assert f.tag.note == "anything"


def test_pickle_and_deepcopy_of_an_evaluated_expression():
    import copy

    x = T.dvector("x")
    y = (x + 1) * 2
    np.testing.assert_array_equal(y.eval({x: np.ones(2)}), [4.0, 4.0])
    for z in (pickle.loads(pickle.dumps(y)), copy.deepcopy(y)):
        assert z.type is T.dvector and z._fn_cache is None
        np.testing.assert_array_equal(z.eval({z.inputs[0].inputs[0]: np.arange(2.0)}), [2.0, 4.0])


def test_owner_as_theano():
    x = T.dvector("x")
    W = tcomp.shared(np.ones(2), "W")
    assert x.owner is None and W.owner is None and T.constant(1.0).owner is None
    y = x * W
    assert y.owner.op == "mul" and y.owner.inputs == [x, W] and y.owner.outputs == [y] and y.owner.nin == 2
