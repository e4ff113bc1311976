"""The DSL surface: constructors, operators, methods, and build-time errors naming variables."""
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T


def test_constructors_and_dtypes():
    assert T.matrix("x").dtype == "float32" and T.matrix("x").ndim == 2
    assert T.fmatrix("x").dtype == "float32"
    assert T.dmatrix("x").dtype == "float64"
    assert T.ivector("i").dtype == "int32" and T.ivector("i").ndim == 1
    assert T.lscalar("n").dtype == "int64" and T.lscalar("n").ndim == 0
    assert T.iscalar("n").dtype == "int32"
    assert T.tensor3("t").ndim == 3 and T.tensor4("t").ndim == 4
    assert T.row("r").broadcastable == (True, False)
    assert T.col("c").broadcastable == (False, True)
    assert T.matrix("m", shape=("n", 3)).type.shape == ("n", 3)
    assert T.vector("v", dtype="int8").dtype == "int8"


def test_floatx_config():
    old = tcomp.config.floatX
    try:
        tcomp.config.floatX = "float64"
        assert T.matrix("x").dtype == "float64"
    finally:
        tcomp.config.floatX = old


def test_promotion_follows_jax_lattice():
    i8, u8, i32, f32 = (T.vector(dtype=d) for d in ("int8", "uint8", "int32", "float32"))
    f64 = T.vector(dtype="float64")
    assert (i8 + u8).dtype == "int16"
    assert (i32 + f32).dtype == "float32"  # no silent float64
    assert (f32 + f64).dtype == "float64"
    assert (i8 + 1).dtype == "int8"  # weak Python int
    assert (i8 + 1.5).dtype == "float32"  # weak Python float lifts to floatX
    assert (f64 * 2.0).dtype == "float64"
    assert (i32 / i32).dtype == "float32"
    assert T.exp(i32).dtype == "float32"
    assert (i32 < 3).dtype == "bool"
    with pytest.raises(OverflowError, match="int8"):
        i8 + 1000


def test_methods_and_properties():
    x = T.matrix("x", shape=(4, 6))
    assert x.T.type.shape == (6, 4)
    assert x.reshape((2, 12)).type.shape == (2, 12)
    assert x.reshape((3, -1)).type.shape == (3, 8)
    assert x.flatten().type.shape == (24,)
    assert x.flatten(2).type.shape == (4, 6)
    assert x.dimshuffle("x", 1, 0).type.shape == (1, 6, 4)
    assert x.sum(axis=1).type.shape == (4,)
    assert x.mean(axis=0, keepdims=True).type.shape == (1, 6)
    assert x.argmax(axis=1).dtype == "int64"
    assert x.astype("int32").dtype == "int32"
    assert x[1:3].type.shape == (2, 6)
    assert x[:, ::-2].type.shape == (4, 3)
    assert x[0].type.shape == (6,)
    assert x[None, 1].type.shape == (1, 6)
    s0 = x.shape[0]
    assert s0.dtype == "int64"


def test_symbolic_truth_value_is_an_error():
    x = T.scalar("x")
    with pytest.raises(TypeError, match="truth value"):
        if x > 0:
            pass


def test_dot_shape_mismatch_names_variables():
    a = T.matrix("activations", shape=(None, 784))
    W = tcomp.shared(np.zeros((500, 10), "float32"), "W_out")
    with pytest.raises(ValueError, match=r"dot.*activations.*W_out"):
        T.dot(a, W)


def test_broadcast_conflict_names_variables():
    a = T.matrix("left", shape=(3, 4))
    b = T.matrix("right", shape=(3, 5))
    with pytest.raises(ValueError, match=r"left.*right"):
        a + b


def test_bad_reshape_and_axis():
    x = T.matrix("x", shape=(4, 6))
    with pytest.raises(ValueError, match="reshape"):
        x.reshape((5, 5))
    with pytest.raises(ValueError, match="axis 2.*x"):
        x.sum(axis=2)
    with pytest.raises(ValueError, match="dimshuffle"):
        x.dimshuffle(0)


def test_jit_traces_and_caches_per_signature():
    calls = []

    @tcomp.jit(backend="reference")
    def f(a, b):
        calls.append(1)
        return T.tanh(a) * b + 1

    a = np.linspace(-1, 1, 6, dtype="float32").reshape(2, 3)
    b = np.ones((1, 3), "float32")
    np.testing.assert_allclose(f(a, b), np.tanh(a) * b + 1, rtol=1e-6)
    np.testing.assert_allclose(f(a * 2, b), np.tanh(a * 2) * b + 1, rtol=1e-6)
    assert len(calls) == 1  # same signature: traced once
    f(a.astype("float64"), b)
    assert len(calls) == 2  # new dtype: traced again
    g = f.trace(a, b)
    assert [g.type(i).dtype for i in g.inputs] == ["float32", "float32"]
    assert g.type(g.inputs[1]).shape == (1, None)


def test_jit_multiple_outputs():
    @tcomp.jit(backend="reference")
    def stats(x):
        return x.sum(), x.max()

    a = np.array([1, 5, 2], "float32")
    s, m = stats(a)
    assert s == 8 and m == 5
