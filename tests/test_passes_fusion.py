"""Elementwise fusion and the ``fused`` op: kernel structure, exact agreement with the
unfused graph in the reference interpreter, and the op's own type/validation rules."""
import numpy as np
import pytest

from tcomp.ir import Constant, Graph, TensorType, evaluate
from tcomp.ir.ops.fused import format_body, step_types
from tcomp.ir.verify import verify
from tcomp.passes import fuse_elementwise

RNG = np.random.default_rng(1)


def const(g, value, dtype):
    return g.add_constant(Constant(np.array(value, dtype=dtype)))


def fuse(g):
    h = fuse_elementwise(g.copy())
    verify(h)
    assert [g.type(o) for o in g.outputs] == [h.type(o) for o in h.outputs]
    return h


def kernels(h):
    return [n for n in h.nodes() if h.op(n) == "fused"]


def exact(g, h, inputs):
    for w, v in zip(evaluate(g, inputs), evaluate(h, inputs)):
        assert w.dtype == v.dtype and w.shape == v.shape
        np.testing.assert_array_equal(w, v)


def test_chain_with_broadcast_and_inlined_scalar_constant():
    g = Graph()
    a = g.add_input(TensorType("float32", ("n", 3)))
    b = g.add_input(TensorType("float32", (1, 3)))
    t = g.add_node("mul", [g.add_node("add", [a, b]), const(g, 2.0, "float32")])
    t = g.add_node("tanh", [g.add_node("exp", [t])])
    g.outputs = [t]
    h = fuse(g)
    (k,) = kernels(h)
    assert h.outputs == [k] and h.operands(k) == [a, b]
    body = h.attrs(k)["body"]
    assert [s[0] for s in body] == ["add", "constant", "mul", "exp", "tanh"]
    assert body[0][2] == ("$0", "$1") and body[2][2] == ("%0", "%1") and body[-1][2] == ("%3",)
    hash(h.attrs(k)["body"])
    assert "tanh(%3)" in format_body(h.attrs(k))
    exact(g, h, [RNG.normal(size=(4, 3)).astype("float32"), RNG.normal(size=(1, 3)).astype("float32")])


def test_dag_diamond_fuses_into_one_kernel():
    g = Graph()
    x = g.add_input(TensorType("float64", (5,)))
    c = g.add_node("mul", [x, x])
    d = g.add_node("add", [g.add_node("exp", [c]), g.add_node("log", [c])])
    g.outputs = [d]
    h = fuse(g)
    (k,) = kernels(h)
    assert len(h) == 2 and h.operands(k) == [x]
    assert [s[0] for s in h.attrs(k)["body"]] == ["mul", "exp", "log", "add"]
    exact(g, h, [RNG.uniform(0.1, 2, 5)])


def test_shared_intermediate_is_an_extra_result():
    g = Graph()
    x = g.add_input(TensorType("float32", (4,)))
    shared = g.add_node("exp", [g.add_node("neg", [x])])
    out1 = g.add_node("sqrt", [g.add_node("abs", [shared])])
    out2 = g.add_node("sum", [shared], {"axis": (0,)})  # a second, non-elementwise consumer
    g.outputs = [out1, out2, shared]
    h = fuse(g)
    (k,) = kernels(h)
    # one loop: sqrt(abs(.)) is the primary result, the shared exp an extra one read by the sum
    assert [s[0] for s in h.attrs(k)["body"]] == ["neg", "exp", "abs", "sqrt"] and h.attrs(k)["outputs"] == (1,)
    assert [h.op(o) for o in h.outputs] == ["get_output", "sum", "get_output"]
    assert [h.attrs(o)["index"] for o in (h.outputs[0], h.outputs[2])] == [0, 1]
    assert h.operands(h.outputs[1]) == [h.outputs[2]]
    exact(g, h, [RNG.normal(size=4).astype("float32")])


def test_trailing_reduction_fuses():
    g = Graph()
    a = g.add_input(TensorType("float32", (3, "m")))
    b = g.add_input(TensorType("float32", (3, "m")))
    d = g.add_node("sub", [a, b])
    sq = g.add_node("mul", [d, d])
    g.outputs = [g.add_node("sum", [sq], {"axis": (1,), "keepdims": False})]
    h = fuse(g)
    (k,) = kernels(h)
    assert h.outputs == [k] and len(h) == 3
    attrs = h.attrs(k)
    assert attrs["reduce"] == "sum" and attrs["axis"] == (1,) and attrs["keepdims"] is False
    assert [s[0] for s in attrs["body"]] == ["sub", "mul"]
    exact(g, h, [RNG.normal(size=(3, 7)).astype("float32"), RNG.normal(size=(3, 7)).astype("float32")])


def test_reduction_of_returned_value_returns_it_too():
    g = Graph()
    a = g.add_input(TensorType("float32", (3,)))
    e = g.add_node("exp", [g.add_node("neg", [a])])
    s = g.add_node("max", [e], {"axis": (0,)})
    g.outputs = [s, e]
    h = fuse(g)
    (k,) = kernels(h)
    attrs = h.attrs(k)
    assert attrs["reduce"] == "max" and attrs["outputs"] == (1,) and len(attrs["body"]) == 2
    assert [h.attrs(o)["index"] for o in h.outputs] == [0, 1]
    exact(g, h, [RNG.normal(size=3).astype("float32")])


def test_mixed_dtypes_cast_and_where():
    g = Graph()
    i = g.add_input(TensorType("int8", (6,)))
    f = g.add_input(TensorType("float32", (6,)))
    s = g.add_node("add", [i, const(g, 100, "int8")])  # wraps in int8, must stay so in the kernel
    c = g.add_node("cast", [s], {"dtype": "float32"})
    w = g.add_node("where", [g.add_node("gt", [f, const(g, 0.0, "float32")]), c, f])
    g.outputs = [w]
    h = fuse(g)
    (k,) = kernels(h)
    assert len(h.attrs(k)["body"]) == 6
    exact(g, h, [np.array([-128, -1, 0, 27, 28, 127], "int8"), RNG.normal(size=6).astype("float32")])


def test_single_op_is_left_alone_and_non_elementwise_splits():
    g = Graph()
    x = g.add_input(TensorType("float32", (2, 2)))
    e = g.add_node("exp", [x])
    m = g.add_node("dot", [e, x])
    g.outputs = [g.add_node("neg", [m])]
    h = fuse(g)
    assert kernels(h) == []
    exact(g, h, [RNG.normal(size=(2, 2)).astype("float32")])


def test_graph_output_inside_chain_is_an_extra_result():
    g = Graph()
    x = g.add_input(TensorType("float32", (3,)))
    a = g.add_node("exp", [g.add_node("neg", [x])])
    b = g.add_node("log1p", [g.add_node("abs", [a])])
    g.outputs = [b, a]
    h = fuse(g)
    (k,) = kernels(h)
    assert h.attrs(k)["outputs"] == (1,) and [h.attrs(o)["index"] for o in h.outputs] == [0, 1]
    exact(g, h, [RNG.normal(size=3).astype("float32")])


def test_fused_op_type_rules_and_errors():
    f32 = TensorType("float32", (2, 3))
    body = (("exp", (), ("$0",)), ("add", (), ("%0", "$1")))
    assert [str(t) for t in step_types(body, [f32, TensorType("float32", (3,))])] == ["f32[2, 3]", "f32[2, 3]"]
    g = Graph()
    a = g.add_input(f32)
    with pytest.raises(ValueError, match="unused"):
        g.add_node("fused", [a, a], {"body": (("exp", (), ("$0",)),)})
    with pytest.raises(ValueError, match="earlier step"):
        g.add_node("fused", [a], {"body": (("add", (), ("$0", "%0")),)})
    with pytest.raises(ValueError, match="not elementwise"):
        g.add_node("fused", [a], {"body": (("sum", (("axis", (0,)), ("keepdims", False)), ("$0",)),)})
    with pytest.raises(ValueError, match="reduce"):
        g.add_node("fused", [a], {"body": (("exp", (), ("$0",)),), "reduce": "argmax", "axis": (0,)})
    with pytest.raises(TypeError):
        g.add_node("fused", [a], {"body": (("add", (), ("$0",)),)})
    k = g.add_node("fused", [a], {"body": (("exp", (), ("$0",)),), "reduce": "max", "axis": (0, 1), "keepdims": True})
    assert g.type(k) == TensorType("float32", (1, 1))
    x = RNG.normal(size=(2, 3)).astype("float32")
    g.outputs = [k]
    np.testing.assert_array_equal(evaluate(g, [x])[0], np.exp(x).max(keepdims=True))
