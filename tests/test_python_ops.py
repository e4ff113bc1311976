"""Python ops (tcomp.Op, tcomp.Apply, as_op, OpFromGraph): Theano's "Extending Theano" tutorial.

Every result is checked against NumPy written here; gradients against finite differences
(verify_grad).  On the CPU backend a graph with Python ops runs as native stages split at
each call (tcomp/backend/cpu/python_stages.py); most tests run on 'cpu' and 'reference'.
"""
import copy
import pickle

import numpy as np
import pytest

import tcomp as theano
import tcomp.tensor as T
from tcomp.ir import Graph
from tcomp.ir.types import TensorType
from tcomp.testing import verify_grad

BACKENDS = ["cpu", "reference"]


class DoubleOp(theano.Op):
    """The tutorial's op, itypes/otypes form."""
    __props__ = ()
    itypes = [T.dmatrix]
    otypes = [T.dmatrix]

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = inputs[0] * 2

    def infer_shape(self, fgraph, node, input_shapes):
        return input_shapes

    def grad(self, inputs, output_grads):
        return [output_grads[0] * 2]


class DoubleMake(theano.Op):
    """The tutorial's op, make_node form (any dtype and rank), counting its calls."""
    __props__ = ()

    def __init__(self):
        self.calls = 0

    def make_node(self, x):
        x = T.as_tensor_variable(x)
        return theano.Apply(self, [x], [x.type()])

    def perform(self, node, inputs, output_storage):
        self.calls += 1
        (x,) = inputs
        output_storage[0][0] = x * 2


class SumProd(theano.Op):
    """Two outputs of different dtypes; Theano's older infer_shape(node, shapes) signature."""

    def make_node(self, a, b):
        a, b = T.as_tensor_variable(a), T.as_tensor_variable(b)
        return theano.Apply(self, [a, b], [a.type(), T.lvector()])

    def perform(self, node, inputs, output_storage):
        a, b = inputs
        output_storage[0][0] = a + b
        output_storage[1][0] = np.array([a.size, b.size], dtype="int64")

    def infer_shape(self, node, shapes):
        return [shapes[0], (2,)]

    def grad(self, inputs, output_grads):
        return [output_grads[0], output_grads[0]]


def _rng():
    return np.random.default_rng(1234)


@pytest.mark.parametrize("backend", BACKENDS)
def test_double_op_itypes_form(backend):
    x = T.matrix(dtype="float64")
    f = theano.function([x], DoubleOp()(x), backend=backend)
    a = _rng().standard_normal((5, 4))
    np.testing.assert_array_equal(f(a), a * 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_double_op_make_node_form(backend):
    op = DoubleMake()
    x = T.fvector("x")
    y = op(x)
    assert y.dtype == "float32" and y.ndim == 1
    f = theano.function([x], y, backend=backend)
    a = np.arange(6, dtype="float32")
    np.testing.assert_array_equal(f(a), a * 2)
    assert op.calls == 1  # building and compiling never call perform


def test_inside_a_bigger_graph():
    """Native kernels before, between and after several Python calls; a shared-variable
    update through an op; several outputs; each perform once per application per call."""
    rng = _rng()
    W0 = rng.standard_normal((4, 3))
    W = theano.shared(W0.copy(), "W")
    x = T.dmatrix("x")
    op1, op2 = DoubleMake(), DoubleMake()
    h = op1(T.tanh(T.dot(x, W)))                  # GEMM + tanh before, op after
    u = op2(h + 1.0) * x.sum()                    # a second op fed by the first one's result
    v = T.exp(h).sum(axis=0)                      # the first result read again
    f = theano.function([x], [u, v, h], updates=[(W, W + DoubleOp()(W) * 0.5)])
    a = rng.standard_normal((2, 4))
    for step in range(2):
        Wv = W.get_value()
        hh = 2 * np.tanh(a @ Wv)
        got = f(a)
        np.testing.assert_allclose(got[0], 2 * (hh + 1.0) * a.sum(), rtol=1e-12)
        np.testing.assert_allclose(got[1], np.exp(hh).sum(axis=0), rtol=1e-12)
        np.testing.assert_allclose(got[2], hh, rtol=1e-12)
        np.testing.assert_allclose(W.get_value(), Wv * 2.0, rtol=1e-12)
    assert op1.calls == 2 and op2.calls == 2
    assert "stage 1 of" in f.dump("kernels")
    assert "py_call" in f.dump("optimized")


@pytest.mark.parametrize("backend", BACKENDS)
def test_multiple_outputs_and_infer_shape(backend):
    a, b = T.dmatrix("a"), T.dmatrix("b")
    s, n = SumProd()(a, b)
    assert n.type.shape == (2,) and n.dtype == "int64"
    assert len(DoubleOp()(a, return_list=True)) == 1
    f = theano.function([a, b], [s * 3, n + 1], backend=backend)
    A, B = _rng().standard_normal((2, 3)), np.ones((2, 3))
    got = f(A, B)
    np.testing.assert_allclose(got[0], (A + B) * 3)
    np.testing.assert_array_equal(got[1], [7, 7])


def test_infer_shape_gives_static_and_named_dims():
    x = T.TensorType("float64", shape=(3, "n"))("x")
    y = DoubleOp()(x)
    assert y.type.shape == (3, "n")
    z = DoubleOp()(T.dmatrix())
    assert z.type.shape == (None, None)
    assert DoubleMake()(x).type.shape == (3, "n")  # no infer_shape: x.type() keeps x's type


@pytest.mark.parametrize("backend", BACKENDS)
def test_as_op(backend):
    from tcomp.compile.ops import as_op

    @as_op(itypes=[T.dmatrix, T.dvector], otypes=[T.dmatrix])
    def add_row(m, v):
        return m + v[None, :]

    assert theano.compile.as_op is as_op
    from tcomp.compile.builders import OpFromGraph

    assert OpFromGraph is theano.OpFromGraph and theano.gof.Op is theano.Op and theano.gof.Apply is theano.Apply
    x, v = T.dmatrix("x"), T.dvector("v")
    f = theano.function([x, v], T.sqrt(add_row(x, v) ** 2), backend=backend)
    M, V = _rng().standard_normal((3, 2)), np.array([1.0, -2.0])
    np.testing.assert_allclose(f(M, V), np.abs(M + V))
    with pytest.raises(TypeError, match="add_row: input 1"):
        add_row(x, T.fvector())


class BadDtype(theano.Op):
    itypes = [T.dvector]
    otypes = [T.dvector]

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = inputs[0].astype("float32")


class BadRank(theano.Op):
    itypes = [T.dvector]
    otypes = [T.dvector]

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = inputs[0][:, None]


class NoOutput(theano.Op):
    itypes = [T.dvector]
    otypes = [T.dvector]

    def perform(self, node, inputs, output_storage):
        pass


class WritesInput(theano.Op):
    itypes = [T.dvector]
    otypes = [T.dvector]

    def perform(self, node, inputs, output_storage):
        inputs[0] *= 2
        output_storage[0][0] = inputs[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_outputs_raise(backend):
    x = T.dvector("x")
    a = np.ones(3)
    cases = [(BadDtype, TypeError, "BadDtype: output 0 has dtype float32"),
             (BadRank, TypeError, "BadRank: output 0 has rank 2"),
             (NoOutput, TypeError, "NoOutput: perform did not store output 0"),
             (WritesInput, ValueError, "WritesInput: perform wrote into one of its inputs")]
    for cls, exc, msg in cases:
        f = theano.function([x], T.exp(x) + cls()(x), backend=backend)
        with pytest.raises(exc, match=msg):
            f(a)
    np.testing.assert_array_equal(a, np.ones(3))


class ScalarSum(theano.Op):
    itypes = [T.dvector]
    otypes = [T.dscalar]

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = float(inputs[0].sum())  # a Python float for a rank-0 float64 result

    def grad(self, inputs, output_grads):
        return [T.ones_like(inputs[0]) * output_grads[0]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_scalar_result_and_cost(backend):
    x = T.dvector("x")
    c = ScalarSum()(x ** 2)
    f = theano.function([x], [c, T.grad(c, x)], backend=backend)
    got = f(np.arange(3.0))
    assert got[0] == 5.0
    np.testing.assert_array_equal(got[1], [0.0, 2.0, 4.0])


def test_never_folded_or_merged_unless_pure():
    op = DoubleMake()
    c = T.constant(np.arange(3.0))
    x = T.dvector("x")
    f = theano.function([x], [op(c) + x, op(c) * x])  # same instance, same (constant) operand
    assert op.calls == 0
    np.testing.assert_array_equal(f(np.ones(3))[1], np.arange(3.0) * 2)
    assert op.calls == 2  # two applications, two calls: not folded, not merged

    class PureDouble(DoubleMake):
        pure = True
    p = PureDouble()
    g = theano.function([x], [p(x) + 1, p(x) * 2])
    g(np.ones(3))
    assert p.calls == 1
    assert g.dump("optimized").count("py_call") == 1
    # different instances are never merged, even when equal by __props__
    q1, q2 = PureDouble(), PureDouble()
    assert q1 == q2
    h = theano.function([x], [q1(x), q2(x)])
    h(np.ones(3))
    assert q1.calls == 1 and q2.calls == 1


def test_grad_matches_finite_differences():
    rng = _rng()
    verify_grad(lambda a: T.sin(DoubleOp()(T.exp(a))), [rng.standard_normal((3, 2))], rng=rng)
    verify_grad(lambda a, b: T.tanh(SumProd()(a * b, a)[0]) * b,
                [rng.standard_normal((2, 2)), rng.standard_normal((2, 2))], rng=rng)
    # through two ops in a row and a gradient to a shared variable
    W = theano.shared(rng.standard_normal((3, 3)), "W")
    x = T.dmatrix("x")
    cost = (DoubleOp()(DoubleOp()(T.dot(x, W))) ** 2).sum()
    gW = T.grad(cost, W)
    X = rng.standard_normal((2, 3))
    got = theano.function([x], gW)(X)
    np.testing.assert_allclose(got, X.T @ (32 * (X @ W.get_value())), rtol=1e-12)


def test_grad_without_grad_method():
    op = DoubleMake()
    x = T.dvector("x")
    with pytest.raises(TypeError, match="Python op DoubleMake has no grad method"):
        T.grad(op(x).sum(), x)
    # not needed when nothing differentiated lies behind it
    y = T.dvector("y")
    g = T.grad((op(x) * y).sum(), y)
    np.testing.assert_array_equal(theano.function([x, y], g)(np.ones(2), np.ones(2)), [2.0, 2.0])
    with pytest.raises(TypeError, match="R_op is not used"):
        op.R_op([x], [x])


class HalfDefined(theano.Op):
    """Theano's idiom for an input without a gradient (an index, say)."""
    itypes = [T.dvector, T.dvector]
    otypes = [T.dvector]

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = inputs[0] * inputs[1]

    def grad(self, inputs, output_grads):
        from tcomp.gradient import grad_undefined

        return [output_grads[0] * inputs[1], grad_undefined(self, 1, inputs[1], "a scale")]


def test_grad_undefined_raises_only_when_needed():
    a, b = T.dvectors("a", "b")
    out = HalfDefined()(a, b).sum()
    ga = T.grad(out, a)
    np.testing.assert_array_equal(theano.function([a, b], ga)(np.ones(2), np.array([3.0, 4.0])), [3.0, 4.0])
    with pytest.raises(TypeError, match="op HalfDefined with respect to its input 1 is undefined: a scale"):
        T.grad(out, b)


def test_rop_through_the_ops_grad():
    m, v = T.dmatrices("m", "v")
    jv = T.Rop(T.sin(DoubleOp()(m)), m, v)
    A, V = _rng().standard_normal((2, 2)), _rng().standard_normal((2, 2))
    np.testing.assert_allclose(theano.function([m, v], jv)(A, V), np.cos(2 * A) * 2 * V)


@pytest.mark.parametrize("inline", [True, False])
def test_op_from_graph(inline):
    rng = _rng()
    x, y = T.dmatrices("x", "y")
    s = theano.shared(np.full((1, 1), 3.0), "s")
    op = theano.OpFromGraph([x, y], [x + y * s, T.tanh(x)], inline=inline)
    a, b = T.dmatrices("a", "b")
    p, q = op(a, b)
    cost = T.sum(T.sin(p)) + T.sum(q * a)
    ga, gb, gs = T.grad(cost, [a, b, s])
    f = theano.function([a, b], [p, q, ga, gb, gs])
    A, B = rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
    P = A + 3 * B
    got = f(A, B)
    np.testing.assert_allclose(got[0], P)
    np.testing.assert_allclose(got[1], np.tanh(A))
    np.testing.assert_allclose(got[2], np.cos(P) + (1 - np.tanh(A) ** 2) * A + np.tanh(A))
    np.testing.assert_allclose(got[3], 3 * np.cos(P))
    np.testing.assert_allclose(got[4], [[(np.cos(P) * B).sum()]])
    assert ("py_call" in f.dump("traced")) == (not inline)


@pytest.mark.parametrize("inline", [True, False])
def test_op_from_graph_grad_overrides(inline):
    x, y = T.dmatrices("x", "y")
    op = theano.OpFromGraph([x, y], [x * y], inline=inline,
                            grad_overrides=lambda ins, gs: [gs[0] * 10, None])
    a, b = T.dmatrices("a", "b")
    out = op(a, b)
    ga, gb = T.grad(out.sum(), [a, b], disconnected_inputs="ignore")
    f = theano.function([a, b], [out, ga, gb])
    A, B = np.full((2, 2), 2.0), np.full((2, 2), 5.0)
    got = f(A, B)
    np.testing.assert_array_equal(got[0], A * B)
    np.testing.assert_array_equal(got[1], np.full((2, 2), 10.0))
    np.testing.assert_array_equal(got[2], np.zeros((2, 2)))
    op2 = theano.OpFromGraph([x, y], [x * y], inline=inline,
                             grad_overrides=["default", lambda ins, gs: gs[0] * -1])
    ga, gb = T.grad(op2(a, b).sum(), [a, b])
    got = theano.function([a, b], [ga, gb])(A, B)
    np.testing.assert_array_equal(got[0], B)
    np.testing.assert_array_equal(got[1], -np.ones((2, 2)))


def test_copy_pickle_and_deepcopy():
    W = theano.shared(np.ones((2, 2)), "W")
    x = T.dmatrix("x")
    f = theano.function([x], DoubleOp()(x + W), updates=[(W, DoubleOp()(W))])
    a = np.eye(2)
    for g in (f.copy(), pickle.loads(pickle.dumps(f)), copy.deepcopy(f)):
        before = g.shared_inputs[0].get_value()
        np.testing.assert_array_equal(g(a), 2 * (a + before))
        np.testing.assert_array_equal(g.shared_inputs[0].get_value(), 2 * before)


def test_cuda_and_aot_refuse():
    import tcomp.aot

    x = T.dmatrix("x")
    with pytest.raises(TypeError, match="cuda backend cannot run Python op DoubleOp"):
        theano.function([x], DoubleOp()(x) + 1, backend="cuda")
    f = theano.function([x], DoubleOp()(x) + 1)
    with pytest.raises(TypeError, match="tcomp.aot.export: .* cannot run Python op DoubleOp"):
        tcomp.aot.export(f, "/nonexistent-dir/libpy.so")


def test_scan_body_with_a_python_op():
    x = T.dvector("x")
    ys, _ = theano.scan(lambda v: DoubleMake()(v) + 1, sequences=[x])
    a = np.arange(4.0)
    np.testing.assert_array_equal(theano.function([x], ys, backend="reference")(a), 2 * a + 1)
    with pytest.raises(TypeError, match="inside a scan or ifelse body"):
        theano.function([x], ys, backend="cpu")


def test_graph_text_and_hash_are_per_process():
    """The op prints by name and a token with a per-process salt: hashes of two processes
    never collide; in this process the text and JSON forms read back to the same op."""
    from tcomp.ir import evaluate, from_json, parse_graph, to_json
    from tcomp.ir.ops.pyop import PyOpRef, resolve

    g, inputs = _round_trip_graph(_rng())
    node = next(n for n in g.nodes() if g.op(n) == "py_call")
    ref = g.attrs(node)["op"]
    assert isinstance(ref, PyOpRef) and ref.startswith("DoubleOp#")
    for g2 in (parse_graph(str(g)), from_json(to_json(g))):
        assert g2.structural_hash() == g.structural_hash()
        np.testing.assert_array_equal(evaluate(g2, inputs)[0], evaluate(g, inputs)[0])
    with pytest.raises(TypeError, match="does not exist in this process"):
        resolve("DoubleOp#1.00000000")
    other = _round_trip_graph(_rng())[0]  # another instance of the same op: another hash
    assert other.structural_hash() != g.structural_hash()


_KEEP = []  # the ops of the round-trip graphs stay alive while the test module is loaded


def _round_trip_graph(rng):
    from tcomp.ir.ops.pyop import PyOpRef

    op = DoubleOp()
    _KEEP.append(op)
    g = Graph()
    x = g.add_input(TensorType("float64", ("n", 3)), "x")
    y = g.add_node("py_call", [x], {"op": PyOpRef(op), "outputs": (TensorType("float64", ("n", 3)),)})
    g.outputs = [g.add_node("neg", [y])]
    return g, [rng.standard_normal((2, 3))]


#: builders for tests/test_ir_text.py's round trip of every op
ROUND_TRIP_BUILDERS = {"py_call": _round_trip_graph}


def test_threads_share_a_function_with_python_ops():
    """Native stages release the GIL, perform runs under it: concurrent calls stay correct."""
    import threading

    x = T.dmatrix("x")
    f = theano.function([x], T.tanh(DoubleOp()(T.exp(x))).sum(axis=1))
    rng = _rng()
    data = [rng.standard_normal((8, 5)) for _ in range(4)]
    want = [np.tanh(2 * np.exp(d)).sum(axis=1) for d in data]
    errors = []

    def work(k):
        for _ in range(25):
            got = f(data[k])
            if not np.allclose(got, want[k], rtol=1e-12):
                errors.append(k)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_grad_through_a_python_op_in_a_scan_body_is_refused():
    x = T.dvector("x")
    ys, _ = theano.scan(lambda v: DoubleOp()(v[None, :])[0], sequences=[x[None, :]])
    with pytest.raises(TypeError, match="scan body uses Python op DoubleOp"):
        T.grad(ys.sum(), x)


def test_pickle_into_another_process(tmp_path):
    """The op objects travel in the pickle; the loading process gives them its own tokens,
    so the same graph hashes differently there (no cache key is shared across processes)."""
    import os
    import subprocess
    import sys

    x = T.dmatrix("x")
    f = theano.function([x], DoubleOp()(x) + 1)
    path = tmp_path / "f.pkl"
    path.write_bytes(pickle.dumps(f))
    here = os.path.dirname(os.path.abspath(__file__))
    code = (f"import sys, pickle, numpy as np; sys.path.insert(0, {here!r}); "
            f"f = pickle.loads(open({str(path)!r}, 'rb').read()); "
            "print(f(np.eye(2)).tolist()); print(f.traced.structural_hash())")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True,
                         timeout=120).stdout.split("\n")
    assert out[0] == str((np.eye(2) * 2 + 1).tolist())
    assert out[1] != f.traced.structural_hash()


def test_as_op_accepts_theanos_two_argument_infer_shape():
    """Theano's as_op calls infer_shape(node, input_shapes) (PyTensor adds fgraph first)."""
    from tcomp.compile.ops import as_op

    def out_shape(node, input_shapes):
        ashp, bshp = input_shapes
        return [ashp[:-1] + bshp[-1:]]

    @as_op(itypes=[T.fmatrix, T.fmatrix], otypes=[T.fmatrix], infer_shape=out_shape)
    def numpy_dot(a, b):
        return np.dot(a, b)

    a, b = T.fmatrix("a"), T.fmatrix("b")
    x, y = np.ones((2, 3), "float32"), np.arange(6, dtype="float32").reshape(3, 2)
    out = theano.function([a, b], numpy_dot(a, b))(x, y)
    np.testing.assert_array_equal(out, x @ y)
