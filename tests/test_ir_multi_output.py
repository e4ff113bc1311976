"""Multi-output ``fused`` kernels and layout steps in the IR: TupleType, get_output, the new
``outputs`` / ``epilogue`` attrs and leading layout steps (types, validation, reference impl
vs NumPy), printer/parser and JSON round trips, the structural hash, the verifier and the
interpreter."""
import numpy as np
import pytest

from tcomp.ir import (
    Constant,
    Graph,
    TensorType,
    TupleType,
    evaluate,
    format_graph,
    from_json,
    parse_graph,
    to_json,
    verify,
)
from tcomp.ir.ops import get_op
from tcomp.ir.ops.fused import is_layout_step, pre_epilogue_type, result_types, step_types

RNG = np.random.default_rng(7)
F32 = "float32"


def T(*shape, dtype=F32):
    return TensorType(dtype, shape)


def rand(*shape, dtype=F32):
    return RNG.normal(size=shape).astype(dtype)


def attrs(body, **kw):
    return get_op("fused").normalize_attrs({"body": body, **kw})


# -- TupleType ------------------------------------------------------------------------------

def test_tuple_type_is_hashable_and_has_no_tensor_fields():
    t = TupleType((T("n", 3), T("n", dtype="float64")))
    assert t == TupleType([T("n", 3), T("n", dtype="float64")]) and hash(t) == hash(TupleType(t.elements))
    assert str(t) == "(f32[n, 3], f64[n])"
    for field in ("dtype", "shape", "ndim", "size", "is_static", "broadcastable"):
        with pytest.raises(AttributeError, match="get_output"):
            getattr(t, field)


@pytest.mark.parametrize("bad,exc", [((T(3),), ValueError), ((), ValueError), ((T(3), "f32"), TypeError),
                                     (T(3), TypeError)])
def test_tuple_type_rejects_bad_elements(bad, exc):
    with pytest.raises(exc, match="TupleType|at least 2"):
        TupleType(bad)


# -- the fused op ---------------------------------------------------------------------------

def test_normalize_attrs_fills_new_defaults():
    a = get_op("fused").normalize_attrs({"body": (("exp", (), ("$0",)),)})
    assert a["outputs"] == () and a["epilogue"] == ()


def test_reduced_kernel_with_unreduced_extra_output_and_epilogue_matches_numpy():
    g = Graph()
    x, b = g.add_input(T("n", 3), "x"), g.add_input(T(3), "b")
    body = (("add", (), ("$0", "$1")), ("tanh", (), ("%0",)))
    k = g.add_node("fused", [x, b], {"body": body, "reduce": "sum", "axis": (1,), "outputs": (1,),
                                     "epilogue": (("reshape", (("shape", (-1, 1)),)),)})
    assert g.type(k) == TupleType((T(None, 1), T("n", 3)))
    a = g.attrs(k)
    assert result_types(a, [T("n", 3), T(3)]) == [T(None, 1), T("n", 3)]
    assert pre_epilogue_type(a, [T("n", 3), T(3)]) == T("n")
    g.outputs = [g.add_node("get_output", [k], {"index": i}) for i in (0, 1)]
    verify(g)
    xv, bv = rand(5, 3), rand(3)
    y = np.tanh(xv + bv)
    got = evaluate(g, [xv, bv])
    np.testing.assert_allclose(got[1], y, rtol=1e-6)
    np.testing.assert_allclose(got[0], y.sum(axis=1).reshape(-1, 1), rtol=1e-5)
    assert got[0].dtype == np.float32 and got[0].shape == (5, 1)


def test_two_elementwise_results():
    g = Graph()
    x, w = g.add_input(T(4, 5)), g.add_input(T(5))
    body = (("mul", (), ("$0", "$1")), ("exp", (), ("%0",)), ("constant", (("value", Constant(np.float32(2))),), ()),
            ("mul", (), ("%0", "%2")))
    k = g.add_node("fused", [x, w], {"body": body, "outputs": (1,)})
    assert g.type(k) == TupleType((T(4, 5), T(4, 5)))
    assert result_types(g.attrs(k), [T(4, 5), T(5)]) == [T(4, 5), T(4, 5)]
    g.outputs = [g.add_node("get_output", [k], {"index": 1}), g.add_node("get_output", [k], {"index": 0})]
    xv, wv = rand(4, 5), rand(5)
    e, twice = evaluate(g, [xv, wv])
    np.testing.assert_allclose(e, np.exp(xv * wv), rtol=1e-6)
    np.testing.assert_array_equal(twice, (xv * wv) * np.float32(2))


def test_single_result_kernel_is_unchanged_by_the_new_attrs():
    body = (("exp", (), ("$0",)),)
    assert result_types(attrs(body), [T(2, 3)]) == [T(2, 3)]
    g = Graph()
    x = g.add_input(T(2, 3))
    k = g.add_node("fused", [x], {"body": body, "reduce": "max", "axis": (0,)})
    assert g.type(k) == T(3)
    g.outputs = [k]
    xv = rand(2, 3)
    np.testing.assert_array_equal(evaluate(g, [xv])[0], np.exp(xv).max(axis=0))


def test_leading_layout_steps_match_numpy():
    """A transposed operand and a reshaped operand read inside the loop."""
    g = Graph()
    a, b, c = g.add_input(T(3, "n")), g.add_input(T(6)), g.add_input(T("n", 3))
    body = (("dimshuffle", (("pattern", (1, 0)),), ("$0",)),
            ("reshape", (("shape", (2, 3)),), ("$1",)),
            ("add", (), ("%0", "$2")),
            ("mul", (), ("%2", "%1")),
            ("dimshuffle", (("pattern", ("x", 0)),), ("$1",)))
    with pytest.raises(ValueError, match="step 4 .*layout step.*cannot be the last"):
        step_types(body, [T(3, "n"), T(6), T("n", 3)])
    body = body[:4]
    # (the mul meets n and 2 on axis 0: the type rule keeps the static 2)
    assert step_types(body, [T(3, "n"), T(6), T("n", 3)]) == [T("n", 3), T(2, 3), T("n", 3), T(2, 3)]
    assert [is_layout_step(s) for s in body] == [True, True, False, False]
    k = g.add_node("fused", [a, b, c], {"body": body})
    g.outputs = [k]
    av, bv, cv = rand(3, 2), rand(6), rand(2, 3)
    np.testing.assert_array_equal(evaluate(g, [av, bv, cv])[0], (av.T + cv) * bv.reshape(2, 3))


def test_epilogue_dimshuffle_inserting_an_axis():
    g = Graph()
    x, y = g.add_input(T("n", 4)), g.add_input(T("n", 4))
    k = g.add_node("fused", [x, y], {"body": (("mul", (), ("$0", "$1")),),
                                     "epilogue": (("dimshuffle", (("pattern", (0, "x", 1)),)),)})
    assert g.type(k) == T("n", 1, 4)
    g.outputs = [k]
    xv, yv = rand(3, 4), rand(3, 4)
    np.testing.assert_array_equal(evaluate(g, [xv, yv])[0], (xv * yv)[:, None, :])


ADD = ("add", (), ("$0", "$1"))
EXP = ("exp", (), ("%0",))


@pytest.mark.parametrize("extra,match", [
    ({"outputs": (1,)}, "outputs entry 1 is the last step"),
    ({"outputs": (5,)}, "outputs entry 5 is not a step index"),
    ({"outputs": (0, 0), "reduce": "sum", "axis": (0,)}, "more than once"),
    ({"outputs": [0]}, "outputs must be a tuple"),
    ({"epilogue": (("dimshuffle", (("pattern", (1, 0)),)),)}, "epilogue entry 0 .*reorders axes"),
    ({"epilogue": (("exp", ()),)}, "epilogue entry 0 must be"),
    ({"epilogue": (("reshape", (("shape", (None, 3)),)),)}, "epilogue entry 0 \\(reshape\\).*fully given"),
    ({"epilogue": (("reshape", (("shape", (7,)),)),)}, "epilogue entry 0 \\(reshape\\).*cannot reshape"),
])
def test_bad_outputs_and_epilogues_are_named(extra, match):
    g = Graph()
    x, y = g.add_input(T(2, 3)), g.add_input(T(2, 3))
    with pytest.raises(ValueError, match=match):
        g.add_node("fused", [x, y], {"body": (ADD, EXP), **extra})


@pytest.mark.parametrize("body,match", [
    ((("constant", (("value", Constant(np.float32(1))),), ()), ("add", (), ("$0", "%0")), ("add", (), ("%1", "$1"))),
     "step 0 is a constant"),
    ((("dimshuffle", (("pattern", (1, 0)),), ("$0",)), ("add", (), ("%0", "$1"))), "step 0 is a dimshuffle"),
    ((("add", (), ("$0", "$1")), ("sum", (), ("%0",))), None),
])
def test_outputs_must_be_elementwise_steps(body, match):
    g = Graph()
    x, y = g.add_input(T(3, 3)), g.add_input(T(3, 3))
    with pytest.raises(ValueError, match=match or "not elementwise"):
        g.add_node("fused", [x, y], {"body": body, "outputs": (0,)})


def test_extra_output_must_have_the_iteration_space_shape():
    g = Graph()
    x, y = g.add_input(T(3)), g.add_input(T(2, 3))
    with pytest.raises(ValueError, match="outputs entry 0: step 0 has type f32\\[3\\], not the iteration space"):
        g.add_node("fused", [x, y], {"body": (("exp", (), ("$0",)), ("add", (), ("%0", "$1"))), "outputs": (0,)})
    # symbolic names must agree too: f32[?] is not the iteration space f32[n]
    g = Graph()
    x, y = g.add_input(T(None)), g.add_input(T("n"))
    with pytest.raises(ValueError, match="not the iteration space"):
        g.add_node("fused", [x, y], {"body": (("exp", (), ("$0",)), ("add", (), ("%0", "$1"))), "outputs": (0,)})


@pytest.mark.parametrize("step,match", [
    (("reshape", (("shape", (None,)),), ("$0",)), "step 0 \\(reshape\\).*fully given"),
    (("reshape", (("shape", (4,)),), ("$0",)), "step 0 \\(reshape of \\$0\\).*cannot reshape"),
    (("dimshuffle", (("pattern", (0,)),), ("$0",)), "step 0 \\(dimshuffle of \\$0\\).*cannot drop axis"),
    (("dimshuffle", (("pattern", (1, 0)),), ("%0",)), "step 0: a dimshuffle layout step takes exactly one kernel"),
    (("reshape", (("shape", (6,)),), ("$0", "$0")), "step 0: a reshape layout step takes exactly one"),
])
def test_bad_layout_steps_are_named(step, match):
    with pytest.raises(ValueError, match=match):
        step_types((step, ("exp", (), ("%0",))), [T(2, 3)])


def test_get_output_rejects_tensors_and_bad_indices():
    g = Graph()
    x = g.add_input(T(2))
    with pytest.raises(TypeError, match="get_output: the operand must be a multi-output kernel"):
        g.add_node("get_output", [x], {"index": 0})
    k = g.add_node("fused", [x], {"body": (("exp", (), ("$0",)), ("neg", (), ("%0",))), "outputs": (0,)})
    with pytest.raises(ValueError, match="index 2 out of range"):
        g.add_node("get_output", [k], {"index": 2})
    with pytest.raises(TypeError, match="index must be an int"):
        g.add_node("get_output", [k], {})
    with pytest.raises(TypeError, match="neg: operand %1 is a multi-output kernel"):
        g.add_node("neg", [k])


# -- text, JSON, hash -------------------------------------------------------------------------

def _multi_graph(order="ab", name_kernel=None):
    g = Graph()
    x, b = g.add_input(T("n", 3), "x"), g.add_input(T(3), "b")
    body = (("dimshuffle", (("pattern", ("x", 0)),), ("$1",)), ("add", (), ("$0", "%0")), ("tanh", (), ("%1",)),
            ("constant", (("value", Constant(np.float32(0.5))),), ()), ("mul", (), ("%2", "%3")))
    k = g.add_node("fused", [x, b], {"body": body, "reduce": "sum", "axis": (1,), "outputs": (2, 4),
                                     "epilogue": (("dimshuffle", (("pattern", (0, "x")),)),)}, name=name_kernel)
    outs = [g.add_node("get_output", [k], {"index": i}) for i in (0, 1)]
    g.outputs = outs if order == "ab" else outs[::-1]
    return g


def test_text_and_json_round_trip_keep_tuple_types_and_new_attrs():
    g = _multi_graph()
    verify(g)
    text = format_graph(g)
    assert ": (f32[n, 1], f32[n, 3], f32[n, 3])" in text and "outputs=(2, 4)" in text
    assert 'epilogue=(("dimshuffle", (("pattern", (0, "x")),)),)' in text
    g2 = parse_graph(text)
    assert format_graph(g2) == text and g2.type(2) == g.type(2)
    g3 = from_json(to_json(g))
    assert format_graph(g3) == text and g3.attrs(2) == g.attrs(2)
    xv, bv = rand(4, 3), rand(3)
    for w, v in zip(evaluate(g, [xv, bv]), evaluate(g3, [xv, bv])):
        np.testing.assert_array_equal(w, v)
    assert g2.structural_hash() == g.structural_hash() == g3.structural_hash()


def test_structural_hash_ignores_ids_and_kernel_names_but_sees_outputs():
    h = _multi_graph().structural_hash()
    assert _multi_graph(name_kernel="k").structural_hash() == h
    assert _multi_graph().renumbered().structural_hash() == h
    assert _multi_graph(order="ba").structural_hash() != h  # the graph outputs are swapped
    g = _multi_graph()
    a = dict(g.attrs(2))
    g.nx.nodes[2]["attrs"] = {**a, "outputs": (4, 2)}
    g.nx.nodes[2]["type"] = TupleType((T("n", 1), T("n", 3), T("n", 3)))
    verify(g)
    assert g.structural_hash() != h


def test_type_values_and_tuple_types_in_json_attrs_round_trip():
    t = TupleType((T(2), T("n", dtype="int64")))
    from tcomp.ir.serialize import _type_from_json, _type_to_json, _value_from_json, _value_to_json

    assert _type_from_json(_type_to_json(t), "here") == t
    assert _value_from_json(_value_to_json(t, "here"), "here") == t
    with pytest.raises(ValueError, match="a tuple type is"):
        _type_from_json({"elements": [_type_to_json(T(2))]}, "here")


@pytest.mark.parametrize("bad,match", [("(f32[2])", "at least 2"),
                                       ("(f32[2], (f32[2], f32[3]))", "elements are tensor")])
def test_parser_rejects_bad_tuple_types(bad, match):
    text = f"graph(%0: f32[2]) {{\n  %1 = exp(%0) : {bad}\n  return (%1)\n}}"
    with pytest.raises(ValueError, match=f"line 2: .*{match}"):
        parse_graph(text)


# -- verifier -----------------------------------------------------------------------------------

def test_verifier_rejects_a_tuple_graph_output():
    g = _multi_graph()
    g.outputs = [2]
    with pytest.raises(ValueError, match="%2 \\(fused\\) has tuple type .* is a graph output"):
        verify(g)
    text = format_graph(g)
    with pytest.raises(ValueError, match="line 2: .*graph output"):
        parse_graph(text)


def test_verifier_rejects_a_tuple_operand_of_another_op():
    g = _multi_graph()
    n = g.add_node("exp", [g.outputs[0]])
    g.nx.add_edge(2, n, arg=0)
    g.nx.remove_edge(g.outputs[0], n)
    g.outputs.append(n)
    with pytest.raises(ValueError, match="%2 \\(fused\\) has tuple type .* operand of %\\d+ \\(exp\\)"):
        verify(g)


def test_verifier_rejects_a_tuple_typed_input():
    g = Graph()
    g.nx.add_node(0, op="input", attrs={}, type=TupleType((T(2), T(2))), name=None)
    g.inputs = [0]
    g.outputs = [0]
    with pytest.raises(ValueError, match="source node's type must be a TensorType"):
        verify(g)
    with pytest.raises(TypeError, match="must be a TensorType"):
        Graph().add_input(TupleType((T(2), T(2))))


def test_unused_get_output_may_be_dropped():
    g = _multi_graph()
    g.outputs = g.outputs[:1]
    g.remove_dead()
    assert sum(1 for n in g.nodes() if g.op(n) == "get_output") == 1
    verify(g)
    xv, bv = rand(2, 3), rand(3)
    want = (np.tanh(xv + bv) * np.float32(0.5)).sum(axis=1)[:, None]
    np.testing.assert_allclose(evaluate(g, [xv, bv])[0], want, rtol=1e-5)


def test_interpreter_returns_all_values_with_tuples():
    g = _multi_graph()
    xv, bv = rand(2, 3), rand(3)
    values = evaluate(g, [xv, bv], return_all=True)
    assert isinstance(values[2], tuple) and len(values[2]) == 3
    np.testing.assert_array_equal(values[2][1], np.tanh(xv + bv))
