"""Stabilization: each rewrite's structure, agreement with the naive graph on tame inputs,
and an input where the naive graph overflows or loses precision in the reference
interpreter while the rewritten one stays right (checked against float64/closed forms)."""
import math

import numpy as np

from tcomp.ir import Constant, Graph, TensorType, evaluate
from tcomp.ir.verify import verify
from tcomp.passes import canonicalize, cse, stabilize


def const(g, value, dtype):
    return g.add_constant(Constant(np.array(value, dtype=dtype)))


def live_ops(g):
    return sorted(g.op(n) for n in g.nodes())


def stab(g):
    h = stabilize(cse(canonicalize(g.copy())))
    verify(h)
    assert [g.type(o) for o in g.outputs] == [h.type(o) for o in h.outputs]
    return h


def agree(g, h, inputs, rtol=1e-5, atol=1e-6):
    for w, v in zip(evaluate(g, inputs), evaluate(h, inputs)):
        np.testing.assert_allclose(v, w, rtol=rtol, atol=atol)


def unary(dtype, shape, build):
    g = Graph()
    x = g.add_input(TensorType(dtype, shape))
    g.outputs = [build(g, x)]
    return g


def softmax_rows(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_log_softmax():
    g = unary("float32", (2, 3), lambda g, x: g.add_node("log", [g.add_node("softmax", [x], {"axis": 1})]))
    h = stab(g)
    assert live_ops(h) == ["input", "log_softmax"]
    agree(g, h, [np.array([[0.1, 0.2, 0.3], [1, 2, 3]], "float32")])
    x = np.array([[0.0, 200.0, -200.0], [1, 2, 3]], "float32")
    naive, good = evaluate(g, [x])[0], evaluate(h, [x])[0]
    assert np.isinf(naive[0, 2])  # softmax underflows to 0, log gives -inf
    np.testing.assert_allclose(good[0], [-200.0, 0.0, -400.0], rtol=1e-6)


def _xent_graph(select_first: bool):
    """-log(softmax(x))[arange(n), y] (select after log) or -log(softmax(x)[arange(n), y])."""
    g = Graph()
    x = g.add_input(TensorType("float32", ("n", 4)))
    y = g.add_input(TensorType("int64", ("n",)))
    n = g.add_node("shape", [x], {"axis": 0})
    ar = g.add_node("arange", [const(g, 0, "int64"), n, const(g, 1, "int64")])
    sm = g.add_node("softmax", [x], {"axis": 1})
    index = {"index": (("a", "$1"), ("a", "$2"))}
    if select_first:
        picked = g.add_node("log", [g.add_node("subtensor", [sm, ar, y], index)])
    else:
        picked = g.add_node("subtensor", [g.add_node("log", [sm]), ar, y], index)
    g.outputs = [g.add_node("neg", [picked])]
    return g


def test_crossentropy_select_both_orders():
    x = np.array([[0.0, 1.0, 2.0, 3.0], [100.0, -100.0, 0.0, 1.0]], "float32")
    y = np.array([3, 1])
    for select_first in (True, False):
        g = _xent_graph(select_first)
        h = stab(g)
        ops = live_ops(h)
        assert "log_softmax" in ops and "softmax" not in ops and "log" not in ops
        naive, good = evaluate(g, [x, y])[0], evaluate(h, [x, y])[0]
        assert np.isinf(naive[1])
        ref = -(x.astype("float64") - np.log(np.exp(x.astype("float64")).sum(axis=1, keepdims=True)))[[0, 1], y]
        np.testing.assert_allclose(good, ref, rtol=1e-5)


def test_log1p_and_log_one_minus():
    g = unary("float32", (3,), lambda g, x: g.add_node("log", [g.add_node("add", [const(g, 1.0, "float32"), x])]))
    h = stab(g)
    assert live_ops(h) == ["input", "log1p"]
    x = np.array([1e-10, 0.5, -0.5], "float32")
    naive, good = evaluate(g, [x])[0], evaluate(h, [x])[0]
    assert naive[0] == 0.0 and abs(good[0] - 1e-10) < 1e-16  # 1 + 1e-10 rounds to 1 in float32
    agree(g, h, [x])
    g2 = unary("float64", (2,), lambda g, x: g.add_node("log", [g.add_node("sub", [const(g, 1.0, "float64"), x])]))
    h2 = stab(g2)
    assert live_ops(h2) == ["input", "log1p", "neg"]
    x2 = np.array([1e-20, 0.25])
    assert evaluate(g2, [x2])[0][0] == 0.0 and evaluate(h2, [x2])[0][0] == -1e-20


def test_log1p_not_for_integer_add():
    g = unary("int32", (2,), lambda g, x: g.add_node("log", [g.add_node("add", [x, const(g, 1, "int32")])]))
    h = stab(g)
    assert "log1p" not in live_ops(h)  # int32 1 + x may wrap before the log


def test_expm1():
    g = unary("float32", (3,), lambda g, x: g.add_node("sub", [g.add_node("exp", [x]), const(g, 1.0, "float32")]))
    h = stab(g)
    assert live_ops(h) == ["expm1", "input"]
    x = np.array([1e-9, 1.0, -2.0], "float32")
    naive, good = evaluate(g, [x])[0], evaluate(h, [x])[0]
    assert naive[0] == 0.0 and abs(good[0] - 1e-9) < 1e-15
    agree(g, h, [x])


def test_log_sigmoid_and_log_one_minus_sigmoid():
    g = unary("float32", (3,), lambda g, x: g.add_node("log", [g.add_node("sigmoid", [x])]))
    h = stab(g)
    assert live_ops(h) == ["input", "neg", "neg", "softplus"]
    x = np.array([-200.0, 0.3, 50.0], "float32")
    naive, good = evaluate(g, [x])[0], evaluate(h, [x])[0]
    assert np.isinf(naive[0])
    np.testing.assert_allclose(good, [-200.0, math.log(1 / (1 + math.exp(-0.3))), -math.exp(-50)], rtol=1e-5)

    def one_minus(g, x):
        return g.add_node("log", [g.add_node("sub", [const(g, 1.0, "float32"), g.add_node("sigmoid", [x])])])
    g2 = unary("float32", (3,), one_minus)
    h2 = stab(g2)
    assert live_ops(h2) == ["input", "neg", "softplus"]
    x2 = np.array([40.0, 0.3, -3.0], "float32")
    naive, good = evaluate(g2, [x2])[0], evaluate(h2, [x2])[0]
    assert np.isinf(naive[0])
    np.testing.assert_allclose(good, -np.logaddexp(0, x2.astype("float64")), rtol=1e-5)


def test_logsumexp_single_axis():
    def build(g, x):
        s = g.add_node("sum", [g.add_node("exp", [x])], {"axis": (1,), "keepdims": False})
        return g.add_node("log", [s])
    g = unary("float32", (2, 3), build)
    h = stab(g)
    assert live_ops(h) == ["input", "logsumexp"] and h.attrs(h.outputs[0])["axis"] == 1
    x = np.array([[1000.0, 1000.0, 0.0], [0.1, 0.2, 0.3]], "float32")
    naive, good = evaluate(g, [x])[0], evaluate(h, [x])[0]
    assert np.isinf(naive[0])
    np.testing.assert_allclose(good[0], 1000 + math.log(2), rtol=1e-6)
    agree(g, h, [x[1:].repeat(2, axis=0)])


def test_logsumexp_two_axes_is_two_single_axis_ops():
    def build(g, x):
        s = g.add_node("sum", [g.add_node("exp", [x])], {"axis": (0, 1)})
        return g.add_node("log", [s])
    g = unary("float32", (2, 3), build)
    h = stab(g)
    assert live_ops(h) == ["input", "logsumexp", "logsumexp"]
    x = np.array([[80.0, 90.0, 0.0], [-5.0, 89.0, 1.0]], "float32")
    assert np.isinf(evaluate(g, [x])[0])
    x64 = x.astype("float64")
    np.testing.assert_allclose(evaluate(h, [x])[0], x64.max() + np.log(np.exp(x64 - x64.max()).sum()), rtol=1e-6)


def test_logsumexp_max_subtracted_form():
    def build(g, x):
        m = g.add_node("max", [x], {"axis": (1,), "keepdims": True})
        s = g.add_node("sum", [g.add_node("exp", [g.add_node("sub", [x, m])])], {"axis": (1,), "keepdims": True})
        return g.add_node("add", [g.add_node("log", [s]), g.add_node("max", [x], {"axis": (1,), "keepdims": True})])
    g = unary("float64", (2, 3), build)
    h = stab(g)
    assert live_ops(h) == ["input", "logsumexp"]
    x = np.array([[-np.inf, -np.inf, -np.inf], [1.0, 2.0, 3.0]])
    naive, good = evaluate(g, [x])[0], evaluate(h, [x])[0]
    assert np.isnan(naive[0, 0])  # -inf - -inf
    assert good[0, 0] == -np.inf
    np.testing.assert_allclose(good[1], naive[1])


def test_hand_written_softmax():
    def build(g, x):
        e = g.add_node("exp", [x])
        return g.add_node("truediv", [e, g.add_node("sum", [e], {"axis": (1,), "keepdims": True})])
    g = unary("float32", (2, 3), build)
    h = stab(g)
    assert live_ops(h) == ["input", "softmax"]
    x = np.array([[1000.0, 0.0, -5.0], [0.1, 0.2, 0.3]], "float32")
    naive, good = evaluate(g, [x])[0], evaluate(h, [x])[0]
    assert np.isnan(naive[0, 0])  # inf / inf
    np.testing.assert_allclose(good, softmax_rows(x.astype("float64")), rtol=1e-6, atol=1e-30)


def test_hand_written_softmax_with_dimshuffle_and_max_shift_then_log():
    def build(g, x):
        m = g.add_node("dimshuffle", [g.add_node("max", [x], {"axis": (0,)})], {"pattern": ("x", 0)})
        e = g.add_node("exp", [g.add_node("sub", [x, m])])
        s = g.add_node("dimshuffle", [g.add_node("sum", [e], {"axis": (0,)})], {"pattern": ("x", 0)})
        return g.add_node("log", [g.add_node("truediv", [e, s])])
    g = unary("float32", (3, 2), build)
    h = stab(g)
    assert live_ops(h) == ["input", "log_softmax"] and h.attrs(h.outputs[0])["axis"] == 0
    x = np.array([[0.0, 1.0], [-150.0, 2.0], [3.0, 3.0]], "float32")
    naive, good = evaluate(g, [x])[0], evaluate(h, [x])[0]
    assert np.isinf(naive[1, 0])  # exp(-150) underflows in float32 before the log
    ref = softmax_rows(x.T.astype("float64")).T
    np.testing.assert_allclose(good[[0, 2]], np.log(ref)[[0, 2]], rtol=1e-5)
    np.testing.assert_allclose(good[1, 0], -153.0 - math.log(1 + math.exp(-3.0)), rtol=1e-6)


def test_softmax_pattern_needs_same_exp():
    # exp(x) / sum(exp(y)) is not a softmax
    g = Graph()
    x = g.add_input(TensorType("float32", (2, 3)))
    y = g.add_input(TensorType("float32", (2, 3)))
    s = g.add_node("sum", [g.add_node("exp", [y])], {"axis": (1,), "keepdims": True})
    g.outputs = [g.add_node("truediv", [g.add_node("exp", [x]), s])]
    assert "softmax" not in live_ops(stab(g))
