"""Multi-threaded CPU kernels (tcomp/backend/cpu/parallel.py): large elementwise loops split
across threads give results bit-identical to one thread and close to the reference
interpreter, for flat, broadcasting and strided loops with odd sizes (chunk remainders);
calls from several Python threads at once stay correct; small loops start no thread."""
import threading

import numpy as np
import pytest
from conftest import TOLERANCES

import tcomp
import tcomp.tensor as T
from tcomp.backend.cpu import compile_graph
from tcomp.backend.cpu import parallel as P
from tcomp.ir import Graph, TensorType, evaluate

BIG = 2 * P.MIN_PER_THREAD  # the smallest size two threads may split


@pytest.fixture(autouse=True)
def _restore_threads():
    before = tcomp.config.num_threads
    yield
    tcomp.config.num_threads = before


def _run(f, inputs, threads):
    tcomp.config.num_threads = threads
    return [np.array(o) for o in f(inputs)]


def _check(g, inputs, thread_counts=(2, 3, 4)):
    """Threads 1 vs many: same bits; both close to the reference interpreter."""
    f = compile_graph(g)
    assert P.POOL_SYMBOL in f.llvm_ir_unoptimized
    one = _run(f, inputs, 1)
    for nt in thread_counts:
        many = _run(f, inputs, nt)
        for a, b in zip(one, many):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes(), f"{nt} threads differ from 1 thread"
    for got, want in zip(one, evaluate(g, inputs)):
        rtol, atol = TOLERANCES[want.dtype.name]
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return f


def _fused_graph(shape):
    g = Graph()
    a, b, c = (g.add_input(TensorType("float32", shape), name=k) for k in "abc")
    g.outputs = [g.add_node("add", [g.add_node("mul", [a, b]), g.add_node("mul", [c, g.add_node("tanh", [a])])])]
    return g


@pytest.mark.parametrize("shape", [(None,), (BIG + 13,)])
def test_flat_elementwise_odd_size(shape):
    n = BIG * 2 + 77  # not a multiple of the chunk alignment, nor of the thread count
    g = _fused_graph(shape if shape == (None,) else (n,))
    rng = np.random.default_rng(0)
    _check(g, [rng.standard_normal(n).astype("float32") for _ in range(3)])


def test_flat_float64_and_int_outputs():
    g = Graph()
    x = g.add_input(TensorType("float64", (None,)), name="x")
    k = g.add_input(TensorType("int32", (None,)), name="k")
    g.outputs = [g.add_node("exp", [g.add_node("sin", [x])]),
                 g.add_node("mul", [k, g.add_node("add", [k, g.add_constant(np.int32(3))])])]
    rng = np.random.default_rng(1)
    n = BIG + 1001
    _check(g, [rng.standard_normal(n), rng.integers(-1000, 1000, n).astype("int32")])


def test_broadcasting_rows_odd_dims():
    g = Graph()
    x = g.add_input(TensorType("float32", ("n", "m")), name="x")
    y = g.add_input(TensorType("float32", (1, "m")), name="y")
    z = g.add_input(TensorType("float32", ("n", 1)), name="z")
    g.outputs = [g.add_node("add", [g.add_node("mul", [x, y]), g.add_node("exp", [z])])]
    rng = np.random.default_rng(2)
    n, m = 517, 263  # 135971 elements > BIG; 517 rows split unevenly
    assert n * m >= BIG
    _check(g, [rng.standard_normal((n, m)).astype("float32"), rng.standard_normal((1, m)).astype("float32"),
               rng.standard_normal((n, 1)).astype("float32")])


def test_broadcasting_rank3_fewer_rows_than_threads_per_chunk():
    g = Graph()
    x = g.add_input(TensorType("float32", (None, None, None)), name="x")
    v = g.add_input(TensorType("float32", (None,)), name="v")
    g.outputs = [g.add_node("maximum", [x, v])]
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal((3, 301, 251)).astype("float32")  # 3 outer rows for up to 4 threads
    _check(g, [x0, rng.standard_normal(251).astype("float32")])


@pytest.mark.parametrize("rank", [2, 3])
def test_strided_operands(rank):
    """A stepped slice is a strided view read by a tiled nest: rank 2 splits tile rows,
    rank 3 the leading axis."""
    g = Graph()
    if rank == 2:
        x = g.add_input(TensorType("float32", (None, None)), name="x")
        view = g.add_node("subtensor", [x], {"index": (("s", None, None, 2), ("s", 1, None, None))})
        xv = np.random.default_rng(4).standard_normal((2 * 411 + 1, 333)).astype("float32")
    else:
        x = g.add_input(TensorType("float32", (None, None, None)), name="x")
        view = g.add_node("subtensor", [x], {"index": (("s", None, None, None), ("s", None, None, 2),
                                                       ("s", None, None, -1))})
        xv = np.random.default_rng(4).standard_normal((5, 2 * 97 + 1, 301)).astype("float32")
    g.outputs = [g.add_node("tanh", [g.add_node("mul", [view, view])])]
    f = _check(g, [xv])
    assert f.prog.layout[view] == "strided"


def test_tcomp_function_pipeline_1_vs_2_threads():
    """Through tcomp.function (passes, fusion) with a transposed operand and a broadcast row."""
    a, b = T.matrix("a"), T.matrix("b")
    r = T.vector("r")
    f = tcomp.function([a, b, r], T.tanh(a) * b.T + r * a)
    rng = np.random.default_rng(5)
    n, m = 389, 401
    av, bv, rv = (rng.standard_normal(s).astype("float32") for s in ((n, m), (m, n), (m,)))
    tcomp.config.num_threads = 1
    one = np.array(f(av, bv, rv))
    tcomp.config.num_threads = 2
    two = np.array(f(av, bv, rv))
    assert one.tobytes() == two.tobytes()
    np.testing.assert_allclose(one, np.tanh(av) * bv.T + rv * av, rtol=1e-5, atol=1e-5)


def test_small_static_loops_start_no_thread():
    g = _fused_graph((1000,))
    assert P.POOL_SYMBOL not in compile_graph(g).llvm_ir_unoptimized


def test_below_threshold_at_run_time_matches():
    """A symbolic size decides at call time: small calls take the one-thread path."""
    g = _fused_graph((None,))
    f = compile_graph(g)
    rng = np.random.default_rng(6)
    for n in (0, 1, 63, BIG - 1):
        xs = [rng.standard_normal(n).astype("float32") for _ in range(3)]
        assert _run(f, xs, 1)[0].tobytes() == _run(f, xs, 4)[0].tobytes()
        np.testing.assert_allclose(_run(f, xs, 4)[0], evaluate(g, xs)[0], rtol=1e-5, atol=1e-6)


def test_concurrent_python_threads_with_native_threads():
    g = _fused_graph((None,))
    f = compile_graph(g)
    rng = np.random.default_rng(7)
    jobs = [[rng.standard_normal(BIG + 17 * k).astype("float32") for _ in range(3)] for k in range(6)]
    tcomp.config.num_threads = 1
    want = [f(j)[0].tobytes() for j in jobs]
    tcomp.config.num_threads = 2
    results, errors = [None] * len(jobs), []

    def work(k):
        try:
            for _ in range(4):
                results[k] = f(jobs[k])[0].tobytes()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert results == want


def test_num_threads_setting_is_checked():
    with pytest.raises(ValueError, match="num_threads"):
        tcomp.config.num_threads = 0
    with pytest.raises(TypeError, match="num_threads"):
        tcomp.config.num_threads = "2"
    tcomp.config.num_threads = 10_000
    assert tcomp.config.num_threads == P.MAX_THREADS


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
def test_softmax_rows_split_across_threads(op):
    """Softmax family over the last axis: whole rows per thread, so bits do not depend on threads."""
    g = Graph()
    x = g.add_input(TensorType("float32", (None, None)), name="x")
    attrs = {"axis": 1, "keepdims": True} if op == "logsumexp" else {"axis": 1}
    g.outputs = [g.add_node(op, [x], attrs)]
    _check(g, [np.random.default_rng(8).standard_normal((1031, 131)).astype("float32") * 4])


def test_softmax_rank3_strided_input_rows_split():
    g = Graph()
    x = g.add_input(TensorType("float64", (None, None, None)), name="x")
    view = g.add_node("subtensor", [x], {"index": (("s", None, None, None), ("s", None, None, -1),
                                                   ("s", None, None, 2))})
    g.outputs = [g.add_node("softmax", [view], {"axis": 2})]
    _check(g, [np.random.default_rng(9).standard_normal((3, 211, 2 * 241 + 1))])


@pytest.mark.parametrize("op,axis,dtype", [("sum", (2,), "float32"), ("max", (1, 2), "float32"),
                                           ("mean", (1, 2), "float64"), ("sum", (2,), "int32"),
                                           ("prod", (0, 2), "float32")])
def test_last_axis_reductions_rows_split(op, axis, dtype):
    """Reductions that include the last axis: whole output rows per thread, summed in the
    one-thread order, so the bits do not depend on the thread count."""
    g = Graph()
    x = g.add_input(TensorType(dtype, (None, None, None)), name="x")
    y = g.add_input(TensorType(dtype, (None, None, None)), name="y")
    g.outputs = [g.add_node(op, [g.add_node("mul", [x, y])], {"axis": axis})]
    rng = np.random.default_rng(10)
    shape = (7, 131, 149)
    if dtype == "int32":
        xs = [rng.integers(-50, 50, shape).astype(dtype) for _ in range(2)]
    else:
        xs = [(rng.standard_normal(shape) * (0.2 if op == "prod" else 1)).astype(dtype) + (1 if op == "prod" else 0)
              for _ in range(2)]
    _check(g, xs)


def test_fused_reduction_through_tcomp_function():
    x, y = T.matrix("x"), T.matrix("y")
    f = tcomp.function([x, y], T.sum(T.exp(x) * y, axis=1))
    rng = np.random.default_rng(11)
    xv, yv = (rng.standard_normal((1201, 337)).astype("float32") for _ in range(2))
    tcomp.config.num_threads = 1
    one = np.array(f(xv, yv))
    tcomp.config.num_threads = 2
    assert np.array(f(xv, yv)).tobytes() == one.tobytes()
    np.testing.assert_allclose(one, (np.exp(xv) * yv).sum(axis=1), rtol=1e-4, atol=1e-4)
