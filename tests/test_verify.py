"""The verifier catches each broken invariant and names the node (%id) and its op."""
from __future__ import annotations

import numpy as np
import pytest

from tcomp.ir import Constant, Graph, TensorType, verify

T = TensorType


def small():
    """x, y inputs; e = exp(x); a = add(e, y); s = sum(a, axis=0)."""
    g = Graph()
    x = g.add_input(T("float32", (3,)), "x")
    y = g.add_input(T("float32", (3,)), "y")
    e = g.add_node("exp", [x])
    a = g.add_node("add", [e, y])
    s = g.add_node("sum", [a], {"axis": (0,)})
    g.outputs = [s, a]
    return g, dict(x=x, y=y, e=e, a=a, s=s)


def expect(g, *fragments):
    with pytest.raises(ValueError) as exc:
        verify(g)
    msg = str(exc.value)
    for f in fragments:
        assert f in msg, msg
    return msg


def test_valid_graphs_pass():
    g, _ = small()
    assert verify(g) is None
    c = Graph()
    c.outputs = [c.add_constant(np.array([1.0, np.nan]))]
    verify(c)
    verify(Graph())


def test_cycle():
    g, n = small()
    # make exp consume add: exp -> add -> exp
    for u, v, k in list(g.nx.in_edges(n["e"], keys=True)):
        g.nx.remove_edge(u, v, key=k)
    g.nx.add_edge(n["a"], n["e"], arg=0)
    expect(g, "cycle", f"%{n['e']} (exp)", f"%{n['a']} (add)")


def test_unknown_op():
    g, n = small()
    g.nx.nodes[n["e"]]["op"] = "frobnicate"
    expect(g, f"%{n['e']}", "unknown op 'frobnicate'")


def test_wrong_arity():
    g, n = small()
    g.nx.add_edge(n["y"], n["e"], arg=1)
    expect(g, f"%{n['e']} (exp)", "arity", "takes 1 operands, got 2")


def test_missing_operand_is_wrong_arity():
    g, n = small()
    for u, v, k, d in list(g.nx.in_edges(n["a"], keys=True, data=True)):
        if d["arg"] == 1:
            g.nx.remove_edge(u, v, key=k)
    expect(g, f"%{n['a']} (add)", "arity")


@pytest.mark.parametrize("args", [(0, 2), (0, 0), (1, 2), (0, None)])
def test_operand_positions_must_be_0_to_n_minus_1(args):
    g, n = small()
    edges = sorted(g.nx.in_edges(n["a"], keys=True, data=True), key=lambda e: e[3]["arg"])
    for (u, v, k, _), arg in zip(edges, args):
        g.nx.edges[u, v, k]["arg"] = arg
    expect(g, f"%{n['a']} (add)", "operand positions")


def test_stored_type_differs_from_inferred():
    g, n = small()
    g.nx.nodes[n["a"]]["type"] = T("float64", (3,))
    expect(g, f"%{n['a']} (add)", "stored type f64[3] differs from inferred f32[3]")


def test_stale_type_after_rewire():
    g, n = small()
    z = g.add_input(T("float32", (4,)), "z")
    g.set_operand(n["a"], 1, z)  # add(f32[3], f32[4]) no longer type checks
    expect(g, f"%{n['a']} (add)", "type inference fails")


def test_unknown_attr_key():
    g, n = small()
    g.attrs(n["s"])["bogus"] = 1
    expect(g, f"%{n['s']} (sum)", "unknown attribute", "bogus", "axis")


def test_missing_attr_key():
    g, n = small()
    del g.attrs(n["s"])["keepdims"]
    expect(g, f"%{n['s']} (sum)", "missing attribute", "keepdims")


def test_bad_attr_value_fails_inference():
    g, n = small()
    g.attrs(n["s"])["axis"] = (5,)
    expect(g, f"%{n['s']} (sum)", "out of range")


def test_inputs_must_be_input_nodes():
    g, n = small()
    g.inputs.append(n["e"])
    expect(g, f"%{n['e']}", "exp", "not an input node")


def test_input_node_missing_from_inputs():
    g, n = small()
    g.inputs.remove(n["y"])
    expect(g, f"%{n['y']} (input)", "missing from graph.inputs")


def test_duplicate_inputs():
    g, n = small()
    g.inputs.append(n["x"])
    expect(g, f"%{n['x']}", "more than once")


def test_input_not_in_graph():
    g, _ = small()
    g.inputs.append(77)
    expect(g, "%77", "not a node")


def test_output_not_in_graph():
    g, _ = small()
    g.outputs.append(99)
    expect(g, "output %99", "not a node")


def test_constant_value_must_match_type():
    g = Graph()
    c = g.add_constant(np.array([1, 2], dtype="int32"))
    g.outputs = [c]
    g.nx.nodes[c]["type"] = T("int32", (3,))
    expect(g, f"%{c} (constant)", "value has type i32[2]")
    g.attrs(c)["value"] = np.array([1, 2, 3], dtype="int32")
    expect(g, f"%{c} (constant)", "must be a Constant")
    g.attrs(c)["value"] = Constant(np.array([1, 2, 3], dtype="int32"))
    verify(g)


def test_type_field_must_be_a_tensor_type():
    g, n = small()
    g.nx.nodes[n["e"]]["type"] = "f32[3]"
    expect(g, f"%{n['e']} (exp)", "TensorType")
