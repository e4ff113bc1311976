"""The pass manager: pipelines, exclude, verify_each, print_after, time_passes, errors; and
the full default pipeline on an MLP-like graph against the reference interpreter."""
import io

import numpy as np
import pytest

from tcomp.ir import Constant, Graph, TensorType, evaluate
from tcomp.passes import PASSES, PIPELINES, PassManager, optimize


def const(g, value, dtype):
    return g.add_constant(Constant(np.array(value, dtype=dtype)))


def mlp_graph():
    """x -> tanh(x W1 + b1) * 1 -> softmax by hand -> cross-entropy through a select."""
    g = Graph()
    x = g.add_input(TensorType("float32", ("n", 8)), "x")
    w1 = g.add_input(TensorType("float32", (8, 16)), "W1")
    b1 = g.add_input(TensorType("float32", (16,)), "b1")
    w2 = g.add_input(TensorType("float32", (16, 4)), "W2")
    b2 = g.add_input(TensorType("float32", (4,)), "b2")
    y = g.add_input(TensorType("int64", ("n",)), "y")
    h = g.add_node("dot", [x, w1])
    h = g.add_node("add", [h, g.add_node("dimshuffle", [b1], {"pattern": ("x", 0)})])
    h = g.add_node("mul", [g.add_node("tanh", [h]), const(g, 1.0, "float32")])
    z = g.add_node("add", [g.add_node("dot", [h, w2]), g.add_node("dimshuffle", [b2], {"pattern": ("x", 0)})])
    e = g.add_node("exp", [z])
    p = g.add_node("truediv", [e, g.add_node("sum", [g.add_node("exp", [z])], {"axis": (1,), "keepdims": True})])
    n = g.add_node("shape", [x], {"axis": 0})
    rows = g.add_node("arange", [const(g, 0, "int64"), n, const(g, 1, "int64")])
    picked = g.add_node("subtensor", [p, rows, y], {"index": (("a", "$1"), ("a", "$2"))})
    loss = g.add_node("neg", [g.add_node("mean", [g.add_node("log", [picked])], {"axis": (0,)})])
    sq = g.add_node("mul", [w1, w1])
    l2 = g.add_node("mul", [g.add_node("sum", [sq], {"axis": (0, 1)}), const(g, 1e-3, "float32")])
    g.outputs = [g.add_node("add", [loss, l2]), p]
    return g


def mlp_inputs(n=5, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return [(scale * rng.normal(size=(n, 8))).astype("float32"), rng.normal(size=(8, 16)).astype("float32"),
            rng.normal(size=16).astype("float32"), (scale * rng.normal(size=(16, 4))).astype("float32"),
            rng.normal(size=4).astype("float32"), rng.integers(0, 4, n)]


def test_default_pipeline_on_mlp_matches_interpreter_and_shrinks():
    g = mlp_graph()
    h = optimize(g, verify_each=True)
    rep = optimize.last_report
    assert [r.name for r in rep.records] == list(PIPELINES["default"])
    assert rep.records[0].nodes_before == len(g) and rep.records[-1].nodes_after == len(h) < len(g)
    ops = [h.op(n) for n in h.nodes()]
    assert "log_softmax" in ops and "softmax" in ops and "fused" in ops and "log" not in ops
    for w, v in zip(evaluate(g, mlp_inputs()), evaluate(h, mlp_inputs())):
        np.testing.assert_allclose(v, w, rtol=1e-5, atol=1e-6)
    # large logits: the naive loss overflows, the optimized one does not
    big = mlp_inputs(scale=60.0, seed=2)
    naive, good = evaluate(g, big)[0], evaluate(h, big)[0]
    assert not np.isfinite(naive) and np.isfinite(good)
    assert len(g) == len(mlp_graph())  # the caller's graph is untouched


def test_fast_compile_is_minimal():
    g = mlp_graph()
    h = optimize(g, mode="fast_compile")
    assert [r.name for r in optimize.last_report.records] == list(PIPELINES["fast_compile"])
    assert "fused" not in [h.op(n) for n in h.nodes()]
    for w, v in zip(evaluate(g, mlp_inputs()), evaluate(h, mlp_inputs())):
        np.testing.assert_array_equal(v, w)


def test_exclude_print_after_and_time_passes():
    g = mlp_graph()
    out = io.StringIO()
    h = optimize(g, exclude=("fuse_elementwise", "stabilize"), print_after=("cse",), time_passes=True, stream=out)
    text = out.getvalue()
    assert text.count("graph after cse") == 2 and "graph after dce" not in text
    assert "total" in text and "nodes before" in text
    ops = [h.op(n) for n in h.nodes()]
    assert "fused" not in ops and "log_softmax" not in ops
    names = [r.name for r in optimize.last_report.records]
    assert "stabilize" not in names and "fuse_elementwise" not in names


def test_print_after_all_prints_every_pass():
    out = io.StringIO()
    optimize(mlp_graph(), print_after_all=True, stream=out)
    assert out.getvalue().count("; *** graph after") == len(PIPELINES["default"])


@pytest.mark.parametrize("kwargs", [{"exclude": ("cse", "nope")}, {"print_after": ("fold",)}, {"mode": "O3"}])
def test_unknown_names_list_valid_ones(kwargs):
    with pytest.raises(ValueError) as err:
        optimize(mlp_graph(), **kwargs)
    msg = str(err.value)
    if "mode" in kwargs:
        assert "'default'" in msg and "'fast_compile'" in msg
    else:
        assert "'canonicalize'" in msg and "'fuse_elementwise'" in msg


def test_custom_pipeline_and_verify_each_catches_a_broken_pass():
    from tcomp.passes.manager import register_pass

    def break_types(g):
        n = next(n for n in g.nodes() if g.op(n) == "tanh")
        g.nx.nodes[n]["type"] = TensorType("float64", g.type(n).shape)
        return g

    if "test_break_types" not in PASSES:
        register_pass("test_break_types", break_types)
    try:
        pm = PassManager(["canonicalize", "test_break_types", "dce"], verify_each=True)
        with pytest.raises(ValueError, match="after pass 'test_break_types'"):
            pm.run(mlp_graph())
        pm = PassManager(["canonicalize", "dce"])
        pm.run(mlp_graph())
        assert [r.name for r in pm.report.records] == ["canonicalize", "dce"]
        assert "canonicalize" in str(pm.report)
    finally:
        PASSES.pop("test_break_types", None)
