"""The CPU lowering of ``fused`` kernels with several results, leading layout steps and an
epilogue (ir/ops/fused.py): every case against the reference interpreter, sizes large
enough that the loops split across threads, and each reduction path of emit_reduction."""
import numpy as np
import pytest

import tcomp
from tcomp.backend.cpu import compile_graph
from tcomp.ir import Graph, TensorType, evaluate


@pytest.fixture
def two_threads():
    old = tcomp.config.num_threads
    tcomp.config.num_threads = 2
    yield
    tcomp.config.num_threads = old


def _check(g, inputs, rtol=2e-6):
    got = compile_graph(g)(inputs)
    want = evaluate(g, inputs)
    for k, (a, w) in enumerate(zip(got, want)):
        assert a.dtype == w.dtype and a.shape == w.shape, f"output {k}: {a.dtype}{a.shape} vs {w.dtype}{w.shape}"
        np.testing.assert_allclose(a, w, rtol=rtol, atol=1e-6, err_msg=f"output {k}")
    return got


def _results(g, k, n):
    return [g.add_node("get_output", [k], {"index": i}) for i in range(n)]


TANH_SQ = (("add", (), ("$0", "$1")), ("tanh", (), ("%0",)), ("mul", (), ("%1", "%1")))


@pytest.mark.parametrize("shape", [(5, 7), (600, 500)])
def test_two_elementwise_results(shape, two_threads):
    g = Graph()
    x = g.add_input(TensorType("float32", (None, None)), name="x")
    y = g.add_input(TensorType("float32", (None, None)), name="y")
    k = g.add_node("fused", [x, y], {"body": TANH_SQ, "outputs": (1,)})
    g.outputs = _results(g, k, 2)
    rng = np.random.default_rng(0)
    xs, ys = (rng.standard_normal(shape).astype("float32") for _ in range(2))
    sq, th = _check(g, [xs, ys])
    np.testing.assert_allclose(th, np.tanh(xs + ys), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sq, np.tanh(xs + ys) ** 2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("axis,keepdims", [((1,), False), ((0,), True), ((0, 1), False)])
@pytest.mark.parametrize("shape", [(6, 9), (700, 400)])
def test_reduction_with_unreduced_results(axis, keepdims, shape, two_threads):
    g = Graph()
    x = g.add_input(TensorType("float64", shape), name="x")
    y = g.add_input(TensorType("float64", (shape[1],)), name="y")
    body = (("dimshuffle", (("pattern", ("x", 0)),), ("$1",)), ("add", (), ("$0", "%0")), ("tanh", (), ("%1",)),
            ("mul", (), ("%2", "%2")))
    k = g.add_node("fused", [x, y], {"body": body, "reduce": "sum", "axis": axis, "keepdims": keepdims,
                                     "outputs": (3, 2)})
    g.outputs = _results(g, k, 3)
    rng = np.random.default_rng(1)
    xs, ys = rng.standard_normal(shape), rng.standard_normal(shape[1])
    s, sq, th = _check(g, [xs, ys], rtol=1e-9)
    np.testing.assert_allclose(s, np.sum(np.tanh(xs + ys) ** 2, axis=axis, keepdims=keepdims), rtol=1e-9)


def test_transposed_operand_and_epilogue(two_threads):
    g = Graph()
    x = g.add_input(TensorType("float32", (300, 500)), name="x")
    y = g.add_input(TensorType("float32", (500, 300)), name="y")
    body = (("dimshuffle", (("pattern", (1, 0)),), ("$1",)), ("mul", (), ("$0", "%0")), ("exp", (), ("%1",)))
    k = g.add_node("fused", [x, y], {"body": body, "epilogue": (("reshape", (("shape", (-1,)),)),)})
    g.outputs = [k]
    rng = np.random.default_rng(2)
    xs, ys = rng.standard_normal((300, 500)).astype("float32"), rng.standard_normal((500, 300)).astype("float32")
    (got,) = _check(g, [xs, ys])
    np.testing.assert_allclose(got, np.exp(xs * ys.T).reshape(-1), rtol=1e-5)


@pytest.mark.parametrize("strided", [False, True])
def test_reshape_step_symbolic_and_strided(strided):
    g = Graph()
    x = g.add_input(TensorType("float32", (None, 6)), name="x")
    z = g.add_input(TensorType("float32", (None, 3)), name="z")
    src = g.add_node("subtensor", [x], {"index": (("s", None, None, 2),)}) if strided else x
    body = (("reshape", (("shape", (-1, 3)),), ("$0",)), ("sub", (), ("%0", "$1")), ("mul", (), ("%1", "%1")))
    k = g.add_node("fused", [src, z], {"body": body, "reduce": "sum", "axis": (1,), "outputs": (1,)})
    g.outputs = _results(g, k, 2)
    rng = np.random.default_rng(3)
    rows = 8
    xs = rng.standard_normal((rows, 6)).astype("float32")
    src_val = xs[::2] if strided else xs
    zs = rng.standard_normal((src_val.size // 3, 3)).astype("float32")
    s, d = _check(g, [xs, zs])
    np.testing.assert_allclose(d, src_val.reshape(-1, 3) - zs, rtol=1e-6)
    np.testing.assert_allclose(s, ((src_val.reshape(-1, 3) - zs) ** 2).sum(1), rtol=1e-5)


def test_unused_result_and_results_feeding_other_kernels():
    g = Graph()
    x = g.add_input(TensorType("float32", (16, 8)), name="x")
    w = g.add_input(TensorType("float32", (8, 4)), name="w")
    body = (("exp", (), ("$0",)), ("neg", (), ("%0",)), ("tanh", (), ("%1",)))
    k = g.add_node("fused", [x], {"body": body, "outputs": (0, 1)})
    t, e, _ = _results(g, k, 3)
    g.remove_node(_)  # the kernel still writes it: the backend gives it a buffer nobody reads
    g.outputs = [g.add_node("dot", [e, w]), g.add_node("add", [t, g.add_node("log", [e])])]
    rng = np.random.default_rng(4)
    _check(g, [rng.standard_normal((16, 8)).astype("float32"), rng.standard_normal((8, 4)).astype("float32")],
           rtol=2e-5)


def test_fused_function_end_to_end():
    """Through tcomp.function: the default pipeline fuses, the cpu backend runs it."""
    import tcomp.tensor as T

    x, b = T.matrix("x"), T.vector("b")
    y = T.tanh(x + b) * 2
    s = y.sum(axis=1).reshape((-1, 1))
    f = tcomp.function([x, b], [y, s])
    r = tcomp.function([x, b], [y, s], backend="reference", mode="fast_compile")
    rng = np.random.default_rng(5)
    xs, bs = rng.standard_normal((9, 4)).astype("float32"), rng.standard_normal(4).astype("float32")
    for a, w in zip(f(xs, bs), r(xs, bs)):
        np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-6)


def test_multi_output_kernel_computing_shapes_on_the_host():
    """A multi-output kernel over int scalars that shapes depend on runs in the planner."""
    from tcomp.ir import Constant

    g = Graph()
    x = g.add_input(TensorType("float32", (None, 6)), name="x")
    n = g.add_node("shape", [x], {"axis": 0})
    body = (("constant", (("value", Constant(2, "int64")),), ()), ("mul", (), ("$0", "%0")), ("add", (), ("%1", "$0")))
    k = g.add_node("fused", [n], {"body": body, "outputs": (1,)})
    three_n, two_n = _results(g, k, 2)
    g.outputs = [g.add_node("reshape", [x, two_n], {"shape": (None, -1)}),
                 g.add_node("reshape", [x, three_n], {"shape": (None, -1)})]
    xs = np.arange(4 * 6, dtype="float32").reshape(4, 6)
    a, b = _check(g, [xs])
    assert a.shape == (8, 3) and b.shape == (12, 2)


def test_in_place_over_an_operand_read_at_the_point_despite_a_layout_step():
    g = Graph()
    x = g.add_input(TensorType("float32", (64, 32)), name="x")
    b = g.add_input(TensorType("float32", (32,)), name="b")
    e = g.add_node("exp", [x])
    body = (("dimshuffle", (("pattern", ("x", 0)),), ("$1",)), ("add", (), ("$0", "%0")), ("tanh", (), ("%1",)))
    k = g.add_node("fused", [e, b], {"body": body})
    g.outputs = [g.add_node("sum", [k], {"axis": (1,)})]
    fn = compile_graph(g)
    assert fn._inplace == {k: e}
    rng = np.random.default_rng(6)
    _check(g, [rng.standard_normal((64, 32)).astype("float32"), rng.standard_normal(32).astype("float32")], rtol=1e-5)
