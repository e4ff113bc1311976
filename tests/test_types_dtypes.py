"""dtype promotion against JAX's documented table, TensorType, and broadcast_shapes.

The expected promotion table is transcribed from JAX's "Type promotion semantics" page
(https://docs.jax.dev/en/latest/type_promotion.html), restricted to tcomp's dtypes, with
JAX's short names: b1 bool, u1 uint8, i1 int8, i2 int16, i4 int32, i8 int64, f4 float32,
f8 float64; i*/f* are weak Python ints/floats, which tcomp materializes as int64 and
floatX when nothing strong fixes the dtype.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcomp.ir import TensorType
from tcomp.ir import dtypes as dt
from tcomp.ir.types import broadcast_shapes, dims_may_match, merge_dims, shape_str

JAX = {"b1": "bool", "u1": "uint8", "i1": "int8", "i2": "int16", "i4": "int32", "i8": "int64",
       "f4": "float32", "f8": "float64"}
COLS = ["b1", "u1", "i1", "i2", "i4", "i8", "f4", "f8", "i*", "f*"]
# rows/columns exactly as in JAX's binary promotion table (subset)
TABLE = """
b1  b1 u1 i1 i2 i4 i8 f4 f8 i* f*
u1  u1 u1 i2 i2 i4 i8 f4 f8 u1 f*
i1  i1 i2 i1 i2 i4 i8 f4 f8 i1 f*
i2  i2 i2 i2 i2 i4 i8 f4 f8 i2 f*
i4  i4 i4 i4 i4 i4 i8 f4 f8 i4 f*
i8  i8 i8 i8 i8 i8 i8 f4 f8 i8 f*
f4  f4 f4 f4 f4 f4 f4 f4 f8 f4 f4
f8  f8 f8 f8 f8 f8 f8 f8 f8 f8 f8
"""


def _expected():
    out = {}
    for line in TABLE.strip().splitlines():
        row, *cells = line.split()
        for col, cell in zip(COLS, cells):
            out[row, col] = cell
    return out


EXPECTED = _expected()


def _materialize(short):
    return {"i*": dt.DEFAULT_INT, "f*": dt.canonical("floatX")}.get(short) or JAX[short]


@pytest.mark.parametrize("a, b", [(a, b) for a in JAX for b in JAX])
def test_strong_promotion_matches_jax_table(a, b):
    assert dt.promote_types(JAX[a], JAX[b]) == JAX[EXPECTED[a, b]]


@pytest.mark.parametrize("a, weak", [(a, w) for a in JAX for w in ("i*", "f*")])
def test_weak_scalar_promotion_matches_jax_table(a, weak):
    got = dt.promote_with_weak([JAX[a]], [weak[0]])
    assert got == _materialize(EXPECTED[a, weak])


def test_named_examples():
    assert dt.promote_types("int8", "uint8") == "int16"
    assert dt.promote_types("int32", "float32") == "float32"  # not NumPy's float64
    assert np.promote_types("int32", "float32") == np.float64  # the trap tcomp avoids
    assert dt.promote_types("float32", "float64") == "float64"
    for x in dt.ALL_DTYPES:
        assert dt.promote_types("bool", x) == x
    assert dt.promote_with_weak(["uint8"], ["i"]) == "uint8"
    assert dt.promote_with_weak(["int16"], ["f"]) == dt.canonical("floatX")
    assert dt.promote_with_weak(["float64"], ["f"]) == "float64"
    assert dt.promote_with_weak(["int8"], ["b"]) == "int8"
    assert dt.promote_with_weak(["bool"], ["i"]) == dt.DEFAULT_INT
    assert dt.promote_with_weak([], ["i", "f"]) == dt.canonical("floatX")
    assert dt.promote_with_weak([], ["b"]) == "bool"
    assert [dt.weak_scalar_kind(v) for v in (True, 3, 2.5, np.float32(1))] == ["b", "i", "f", "f"]


def test_promotion_is_a_lattice_join():
    """Commutative, associative, idempotent: the order operands appear in never matters."""
    for a, b in itertools.product(dt.ALL_DTYPES, repeat=2):
        assert dt.promote_types(a, b) == dt.promote_types(b, a)
    for a, b, c in itertools.product(dt.ALL_DTYPES, repeat=3):
        assert dt.promote_types(a, dt.promote_types(b, c)) == dt.promote_types(dt.promote_types(a, b), c)
    for a in dt.ALL_DTYPES:
        assert dt.promote_types(a, a) == a


def test_promotion_errors():
    with pytest.raises(ValueError):
        dt.promote_types()
    with pytest.raises(TypeError, match="complex64"):
        dt.promote_types("float32", "complex64")
    with pytest.raises(ValueError):
        dt.promote_with_weak([], [])
    with pytest.raises(TypeError):
        dt.weak_scalar_kind("3")


def test_canonical_names():
    assert dt.canonical("f32") == "float32"
    assert dt.canonical(np.int16) == "int16"
    assert dt.canonical(np.dtype("uint8")) == "uint8"
    assert dt.canonical(bool) == "bool"
    for bad in ("float16", "uint16", "complex128", "nonsense"):
        with pytest.raises(TypeError):
            dt.canonical(bad)


# -- TensorType ---------------------------------------------------------------------------------

def test_tensor_type_printing():
    assert str(TensorType("float32", (None, "batch", 3))) == "f32[?, batch, 3]"
    assert str(TensorType("int64", ())) == "i64[]"
    assert str(TensorType("bool", (1,))) == "bool[1]"
    assert repr(TensorType("u8", (0, 2))) == "u8[0, 2]"
    assert shape_str((None, "n", 4)) == "[?, n, 4]"


def test_tensor_type_fields():
    t = TensorType("f64", (2, np.int64(3), "n"))
    assert t.dtype == "float64" and t.shape == (2, 3, "n") and type(t.shape[1]) is int
    assert t.ndim == 3 and not t.is_static and t.size is None
    assert t.broadcastable == (False, False, False)
    s = TensorType("int8", (1, 4))
    assert s.is_static and s.size == 4 and s.broadcastable == (True, False)
    assert s == TensorType(np.int8, [1, 4]) and hash(s) == hash(TensorType("i8", (1, 4)))
    assert s.with_dtype("float32") == TensorType("float32", (1, 4))
    assert s.with_shape((None,)) == TensorType("int8", (None,))


@pytest.mark.parametrize("shape, exc", [((-1,), ValueError), ((True,), TypeError), ((2.0,), TypeError)])
def test_tensor_type_rejects_bad_dims(shape, exc):
    with pytest.raises(exc):
        TensorType("float32", shape)


# -- broadcast_shapes ------------------------------------------------------------------------------

@pytest.mark.parametrize("shapes, want", [
    (((2, 1), (1, 3)), (2, 3)),
    (((2, 3, 4), (4,)), (2, 3, 4)),
    (((), (5,)), (5,)),
    (((None, 3), (1,)), (None, 3)),
    ((("n",), (1,)), ("n",)),
    ((("n",), (None,)), ("n",)),
    (((None,), ("n",)), ("n",)),
    (((None,), (5,)), (5,)),
    ((("n", 1), (1, "m")), ("n", "m")),
    (((0,), (1,)), (0,)),
    ((), ()),
])
def test_broadcast_shapes(shapes, want):
    assert broadcast_shapes(*shapes) == want


def test_broadcast_conflict_names_shapes_and_axis():
    with pytest.raises(ValueError) as exc:
        broadcast_shapes((2, 3), (4,), what="operands of add")
    msg = str(exc.value)
    assert "operands of add" in msg and "[2, 3]" in msg and "[4]" in msg and "3 vs 4" in msg
    with pytest.raises(ValueError):
        broadcast_shapes((0,), (2,))


def test_symbolic_dims_never_broadcast_but_may_match():
    # a symbolic dim meeting a static one takes the static size (checked at run time)
    assert broadcast_shapes((None,), (3,)) == (3,)
    assert merge_dims("n", 4) == 4 and merge_dims(None, "n") == "n"
    assert dims_may_match(None, 3) and dims_may_match("n", "m") and not dims_may_match(2, 3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), max_size=4), min_size=1, max_size=4))
def test_static_broadcast_matches_numpy(shapes):
    shapes = [tuple(s) for s in shapes]
    try:
        want = np.broadcast_shapes(*shapes)
    except ValueError:
        with pytest.raises(ValueError):
            broadcast_shapes(*shapes)
        return
    assert broadcast_shapes(*shapes) == want
