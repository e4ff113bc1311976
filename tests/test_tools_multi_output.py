"""``tcomp dump`` / ``tcomp inspect`` on graphs with multi-output kernels: tuple types print
and parse back, and a multi-output kernel counts as one kernel (get_output is not one)."""
import argparse

import numpy as np

from tcomp.ir import Graph, TensorType, evaluate, parse_graph
from tcomp.passes import fuse_elementwise
from tcomp.tools import dump
from tcomp.tools.inspect_cmd import kernels_per_call, multi_output_kernels


def _graph():
    g = Graph()
    x, w = g.add_input(TensorType("float32", (4, 6)), "x"), g.add_input(TensorType("float32", (6,)), "w")
    z = g.add_node("mul", [x, w])
    e = g.add_node("exp", [z])
    g.outputs = [e, g.add_node("sum", [e], {"axis": (1,)}), g.add_node("neg", [z])]
    return g


def test_multi_output_kernel_counts_once():
    g = _graph()
    assert kernels_per_call(g) == 4
    h = fuse_elementwise(g.copy())
    (k,) = [n for n in h.nodes() if h.op(n) == "fused"]
    n_results = len(h.attrs(k)["outputs"]) + 1
    assert n_results >= 2 and sum(1 for n in h.nodes() if h.op(n) == "get_output") == n_results
    assert kernels_per_call(h) == 1
    assert multi_output_kernels(h) == (1, n_results)


def test_dump_prints_tuple_types_that_parse_back(capsys):
    assert dump.main(argparse.Namespace(example="mlp", backend="reference", stage="optimized")) == 0
    text = capsys.readouterr().out
    g = parse_graph(text)
    tuple_nodes = [n for n in g.nodes() if g.op(n) == "fused" and g.attrs(n)["outputs"]]
    assert tuple_nodes, "the MLP training step should have a multi-output kernel"
    assert all(f": {g.type(n)}" in text and str(g.type(n)).startswith("(f32[") for n in tuple_nodes)


def test_text_of_fused_graph_evaluates_like_the_graph():
    g = _graph()
    h = parse_graph(str(fuse_elementwise(g.copy())))
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(4, 6)).astype("float32"), rng.normal(size=6).astype("float32")]
    for w, v in zip(evaluate(g, inputs), evaluate(h, inputs)):
        np.testing.assert_array_equal(v, w)
