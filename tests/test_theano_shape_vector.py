"""``x.shape`` behaves as Theano's int64 shape vector in arithmetic, outputs and shapes, and
as a tuple for unpacking, ``len`` and concatenation with a tuple (tcomp/tensor/shape_tuple.py)."""
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T

A = np.arange(12, dtype="float32").reshape(3, 4)


def run(x, y, value=A):
    return tcomp.function([x], y, on_unused_input="ignore")(value)


@pytest.mark.parametrize("expr, want", [
    (lambda s: s, lambda s: s),
    (lambda s: s * 2, lambda s: s * 2),
    (lambda s: 2 * s, lambda s: 2 * s),
    (lambda s: s + 1, lambda s: s + 1),
    (lambda s: 10 - s, lambda s: 10 - s),
    (lambda s: s - 1, lambda s: s - 1),
    (lambda s: s // 2, lambda s: s // 2),
    (lambda s: s % 3, lambda s: s % 3),
    (lambda s: -s, lambda s: -s),
    (lambda s: s[::-1] * 3, lambda s: s[::-1] * 3),
    (lambda s: s * np.array([1, 5]), lambda s: s * np.array([1, 5])),
])
def test_shape_arithmetic_is_on_the_int64_vector(expr, want):
    x = T.matrix("x")
    got = run(x, expr(x.shape))
    np.testing.assert_array_equal(got, want(np.array(A.shape)))
    assert got.dtype == np.int64 and got.shape == (2,)


def test_static_shapes_give_the_same_vector():
    x = T.tensor(dtype="float32", shape=(3, 4), name="x")
    np.testing.assert_array_equal(run(x, x.shape * 2), [6, 8])


def test_tuple_behaviour_is_kept():
    x = T.matrix("x")
    n, m = x.shape
    assert len(x.shape) == 2
    np.testing.assert_array_equal(run(x, n * m), 12)
    cat = x.shape + (5,)
    assert len(cat) == 3 and isinstance(cat, tuple)
    np.testing.assert_array_equal(run(x, (1,) + x.shape), [1, 3, 4])
    np.testing.assert_array_equal(run(x, T.zeros(x.shape[:1] + (2,))).shape, (3, 2))


def test_symbolic_index_vector_attributes_and_empty_shape():
    x = T.matrix("x")
    i = T.iscalar("i")
    assert tcomp.function([x, i], x.shape[i])(A, 1) == 4
    assert x.shape.ndim == 1 and x.shape.dtype == "int64"
    np.testing.assert_array_equal(run(x, x.shape.prod()), 12)
    s = T.scalar("s")
    got = tcomp.function([s], s.shape, on_unused_input="ignore")(np.float32(1))
    assert got.shape == (0,) and got.dtype == np.int64


def test_shape_vectors_are_accepted_as_shapes():
    x = T.matrix("x")
    assert run(x, T.zeros(x.shape * 2)).shape == (6, 8)
    assert run(x, T.ones(T.shape(x))).shape == (3, 4)
    np.testing.assert_array_equal(run(x, x.reshape(x.shape[::-1])), A.reshape(4, 3))
    np.testing.assert_array_equal(run(x, x.reshape(x.shape.prod())), A.ravel())
    with pytest.raises(TypeError, match="dim 0 must be an integer scalar"):  # length unknown
        T.zeros(T.ivector("v"))


def test_several_outputs_with_a_shape():
    x = T.matrix("x")
    s, total = tcomp.function([x], [x.shape, x.sum()])(A)
    np.testing.assert_array_equal(s, A.shape)
    assert total == pytest.approx(A.sum())
