"""CPU backend runtime behaviour: strided inputs, call-time checks, bounds errors from
native code, thread safety, aligned outputs, dumps and visible SIMD vectorization."""
import re
import threading

import llvmlite.binding as llvm
import numpy as np
import pytest
from conftest import TOLERANCES

from tcomp.backend.cpu import compile_graph
from tcomp.ir import Graph, TensorType, evaluate
from tcomp.runtime.buffers import aligned_empty, is_aligned


def _close(got, want):
    rtol, atol = TOLERANCES[want.dtype.name]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def _expr_graph():
    """sum over axis 0 of x*y + exp(x) - broadcasting y, one inline chain, two outputs."""
    g = Graph()
    x = g.add_input(TensorType("float32", ("n", "m")), name="x")
    y = g.add_input(TensorType("float32", (1, "m")), name="y")
    e = g.add_node("add", [g.add_node("mul", [x, y]), g.add_node("exp", [x])])
    g.outputs = [e, g.add_node("sum", [e], {"axis": (0,)})]
    return g


@pytest.mark.parametrize("layout", ["transposed", "negative", "step", "fortran"])
def test_strided_inputs(layout):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((12, 10)).astype("float32")
    x = {"transposed": base.T[:6, :7], "negative": base[::-1, ::-1][:5, :7],
         "step": base[::2, 1::3], "fortran": np.asfortranarray(base[:4, :7])}[layout]
    y = rng.standard_normal((1, x.shape[1])).astype("float32")[:, ::-1]
    g = _expr_graph()
    f = compile_graph(g)
    for got, want in zip(f([x, y]), evaluate(g, [x, y])):
        _close(got, want)


def test_views_of_views_and_strided_copies():
    """Transposes and slices become views; a reshape of a strided view copies."""
    g = Graph()
    x = g.add_input(TensorType("int32", (4, None)), name="x")
    t = g.add_node("dimshuffle", [x], {"pattern": (1, 0)})
    s = g.add_node("subtensor", [t], {"index": (("s", None, None, -1),)})
    r = g.add_node("reshape", [s], {"shape": (-1,)})
    g.outputs = [r, s, g.add_node("add", [s, s])]
    f = compile_graph(g)
    xv = np.arange(24, dtype="int32").reshape(4, 6)
    for got, want in zip(f([xv]), evaluate(g, [xv])):
        np.testing.assert_array_equal(got, want)
    outs = f([xv])
    assert not np.shares_memory(outs[1], xv), "a view output must not alias the caller's input"


def test_outputs_are_aligned_and_fresh():
    g = _expr_graph()
    f = compile_graph(g)
    x = np.ones((3, 5), "float32")
    y = np.ones((1, 5), "float32")
    a, b = f([x, y])
    assert is_aligned(a) and is_aligned(b)
    a2, _ = f([x, y])
    assert not np.shares_memory(a, a2)
    assert is_aligned(aligned_empty((0, 3), "float64"))


def test_input_output_passthrough_is_a_copy():
    g = Graph()
    x = g.add_input(TensorType("float64", (3,)), name="x")
    g.outputs = [x, x]
    f = compile_graph(g)
    xv = np.arange(3.0)
    a, b = f([xv])
    np.testing.assert_array_equal(a, xv)
    assert not np.shares_memory(a, xv) and not np.shares_memory(a, b)
    assert is_aligned(a) and is_aligned(b)


# -- call-time checks -------------------------------------------------------------------------


def test_wrong_argument_count():
    f = compile_graph(_expr_graph())
    with pytest.raises(TypeError, match="takes 2 inputs"):
        f([np.ones((2, 2), "float32")])


def test_wrong_dtype_names_the_input():
    f = compile_graph(_expr_graph())
    with pytest.raises(TypeError, match=r"input 'x': expected dtype float32, got float64"):
        f([np.ones((2, 3)), np.ones((1, 3), "float32")])


def test_wrong_rank_and_static_dim():
    f = compile_graph(_expr_graph())
    with pytest.raises(ValueError, match=r"input 'x': expected rank 2"):
        f([np.ones(3, "float32"), np.ones((1, 3), "float32")])
    with pytest.raises(ValueError, match=r"input 'y'.*axis 0"):
        f([np.ones((2, 3), "float32"), np.ones((2, 3), "float32")])


def test_named_dims_must_agree():
    f = compile_graph(_expr_graph())
    with pytest.raises(ValueError, match=r"symbolic dim 'm' is 4 here but 3"):
        f([np.ones((2, 3), "float32"), np.ones((1, 4), "float32")])


def test_symbolic_dims_never_broadcast():
    g = Graph()
    a = g.add_input(TensorType("float32", (None, 3)), name="a")
    b = g.add_input(TensorType("float32", (None, 3)), name="b")
    g.outputs = [g.add_node("add", [a, b])]
    f = compile_graph(g)
    with pytest.raises(ValueError, match="never broadcasts"):
        f([np.ones((1, 3), "float32"), np.ones((4, 3), "float32")])
    with pytest.raises(ValueError):
        f([np.ones((2, 3), "float32"), np.ones((4, 3), "float32")])


def test_out_of_bounds_advanced_index_raises_index_error():
    g = Graph()
    x = g.add_input(TensorType("float32", (None,)), name="x")
    i = g.add_input(TensorType("int64", (None,)), name="i")
    y = g.add_input(TensorType("float32", ()), name="y")
    g.outputs = [g.add_node("subtensor", [x, i], {"index": (("a", "$1"),)}),
                 g.add_node("inc_subtensor", [x, y, i], {"index": (("a", "$2"),)})]
    f = compile_graph(g)
    xv = np.arange(5, dtype="float32")
    got = f([xv, np.array([4, -5, 0]), np.array(1, "float32")])
    np.testing.assert_array_equal(got[0], [4, 0, 0])
    for bad in ([5], [-6], [0, 1 << 40]):
        with pytest.raises(IndexError, match="out of bounds"):
            f([xv, np.array(bad), np.array(1, "float32")])


def test_out_of_bounds_scalar_index_raises_before_native_code():
    g = Graph()
    x = g.add_input(TensorType("float32", (None, 2)), name="x")
    k = g.add_input(TensorType("int64", ()), name="k")
    g.outputs = [g.add_node("subtensor", [x, k], {"index": (("i", "$1"),)})]
    f = compile_graph(g)
    np.testing.assert_array_equal(f([np.ones((3, 2), "float32"), np.array(-3)])[0], [1, 1])
    with pytest.raises(IndexError, match="out of bounds"):
        f([np.ones((3, 2), "float32"), np.array(3)])


def test_bad_reshape_size_is_a_value_error():
    g = Graph()
    x = g.add_input(TensorType("float32", (None,)), name="x")
    g.outputs = [g.add_node("reshape", [x], {"shape": (3, -1)})]
    f = compile_graph(g)
    assert f([np.ones(6, "float32")])[0].shape == (3, 2)
    with pytest.raises(ValueError, match="reshape"):
        f([np.ones(7, "float32")])


def test_empty_reduction_of_max_is_a_value_error():
    g = Graph()
    x = g.add_input(TensorType("float32", (None,)), name="x")
    g.outputs = [g.add_node("max", [x], {"axis": (0,)})]
    f = compile_graph(g)
    with pytest.raises(ValueError, match="zero-size"):
        f([np.ones(0, "float32")])


# -- threads ------------------------------------------------------------------------------------


def test_concurrent_calls_from_threads():
    g = Graph()
    a = g.add_input(TensorType("float64", (None, 64)), name="a")
    b = g.add_input(TensorType("float64", (64, 32)), name="b")
    g.outputs = [g.add_node("softmax", [g.add_node("matmul", [a, b])], {"axis": 1})]
    f = compile_graph(g)
    rng = np.random.default_rng(3)
    jobs = [(rng.standard_normal((n, 64)), rng.standard_normal((64, 32))) for n in (50, 70, 90, 110) * 4]
    results = [None] * len(jobs)
    errors = []

    def work(k):
        try:
            for _ in range(5):
                results[k] = f(list(jobs[k]))[0]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for (av, bv), got in zip(jobs, results):
        _close(got, evaluate(g, [av, bv])[0])


def test_compiles_from_threads():
    errors = []

    def work():
        try:
            g = _expr_graph()
            f = compile_graph(g)
            x, y = np.ones((2, 3), "float32"), np.ones((1, 3), "float32")
            _close(f([x, y])[1], evaluate(g, [x, y])[1])
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


# -- dumps and vectorization ------------------------------------------------------------------


def test_dump_stages():
    f = compile_graph(_expr_graph(), name="demo")
    assert "define" in f.dump("llvm") and "tcomp_demo" in f.dump("llvm")
    assert "tcomp_demo" in f.dump("asm")
    with pytest.raises(ValueError):
        f.dump("ptx")


def test_no_libm_calls_in_generated_code():
    g = Graph()
    x = g.add_input(TensorType("float64", (None,)), name="x")
    outs = [g.add_node(op, [x]) for op in ("exp", "log", "log1p", "expm1", "tanh", "sigmoid", "softplus", "erf",
                                           "sin", "cos")]
    outs += [g.add_node("pow", [x, x]), g.add_node("mod", [x, x]), g.add_node("softmax", [x], {"axis": 0})]
    g.outputs = outs
    ir_text = compile_graph(g).dump("llvm")
    declared = [line for line in ir_text.splitlines() if line.startswith("declare")]
    # the thread pool's entry (multi-threaded loops, parallel.py) is the only non-intrinsic
    assert all("@llvm." in line or "tcomp_cpu_parallel" in line for line in declared), declared


def _has_avx2():
    return "+avx2" in llvm.get_host_cpu_features().flatten().split(",")


@pytest.mark.skipif(not _has_avx2(), reason="needs an x86-64 host with AVX2")
@pytest.mark.parametrize("kind", ["elementwise", "reduction"])
def test_float32_loops_are_simd(kind):
    g = Graph()
    a = g.add_input(TensorType("float32", (None, None)), name="a")
    b = g.add_input(TensorType("float32", (None, None)), name="b")
    if kind == "elementwise":
        g.outputs = [g.add_node("add", [g.add_node("mul", [a, b]), g.add_node("tanh", [a])])]
    else:
        g.outputs = [g.add_node("sum", [g.add_node("mul", [a, b])], {"axis": (1,)})]
    f = compile_graph(g)
    # at least 8 float32 lanes: 8 on AVX2 hosts, 16 where LLVM picks AVX-512
    assert re.search(r"<(8|16|32) x float>", f.dump("llvm"))
    asm = f.dump("asm")
    assert ("ymm" in asm or "zmm" in asm) and ("vfmadd" in asm or "vaddps" in asm or "vmulps" in asm)


def test_numpy_runtime_broadcasting_where_the_reference_allows_it():
    """alloc, set/inc_subtensor values, matmul batches and index arrays broadcast a run-time
    size-1 symbolic dim like NumPy (the reference runs NumPy there); elementwise ops do not."""
    g = Graph()
    x = g.add_input(TensorType("float32", (None, 3)), name="x")
    y = g.add_input(TensorType("float32", (None,)), name="y")
    i = g.add_input(TensorType("int64", (None,)), name="i")
    j = g.add_input(TensorType("int64", (None, None)), name="j")
    a = g.add_input(TensorType("float32", (None, 2, 3)), name="a")
    w = g.add_input(TensorType("float32", (None, 3, 2)), name="w")
    g.outputs = [g.add_node("alloc", [x], {"shape": (4, 3)}),
                 g.add_node("inc_subtensor", [x, y, i], {"index": (("a", "$2"),)}),
                 g.add_node("subtensor", [x, i, j], {"index": (("a", "$1"), ("a", "$2"))}),
                 g.add_node("matmul", [a, w])]
    f = compile_graph(g)
    rng = np.random.default_rng(5)
    vals = [rng.standard_normal((1, 3)).astype("float32"), np.array([2.0], "float32"), np.array([0, 0]),
            np.array([[0], [2], [1]]), rng.standard_normal((1, 2, 3)).astype("float32"),
            rng.standard_normal((4, 3, 2)).astype("float32")]
    for got, want in zip(f(vals), evaluate(g, vals)):
        _close(got, want)


def test_set_subtensor_converts_like_numpy_assignment():
    """Assigning floats into an int tensor is NumPy's astype (nan/out of range -> INT_MIN on x86)."""
    g = Graph()
    x = g.add_input(TensorType("int32", (6,)), name="x")
    y = g.add_input(TensorType("float32", (6,)), name="y")
    z = g.add_input(TensorType("int8", (6,)), name="z")
    full = (("s", None, None, None),)
    g.outputs = [g.add_node("set_subtensor", [x, y], {"index": full}),
                 g.add_node("set_subtensor", [z, y], {"index": full})]
    yv = np.array([np.nan, 1e10, -3.7, 2.9, -1e10, 300.5], "float32")
    xv, zv = np.zeros(6, "int32"), np.zeros(6, "int8")
    for got, want in zip(compile_graph(g)([xv, yv, zv]), evaluate(g, [xv, yv, zv])):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", [(0, 4), (3, 0)])
def test_zero_size_values(shape):
    g = Graph()
    x = g.add_input(TensorType("float32", (None, None)), name="x")
    w = g.add_input(TensorType("float32", (None, 7)), name="w")
    c = g.add_input(TensorType("float32", (None, 3, 5, 5)), name="c")
    k = g.add_input(TensorType("float32", (2, 3, 3, 3)), name="k")
    g.outputs = [g.add_node("sum", [x], {"axis": (1,)}), g.add_node("matmul", [x, w]),
                 g.add_node("concatenate", [x, x], {"axis": 0}), g.add_node("prod", [x], {"axis": (0, 1)}),
                 g.add_node("conv2d", [c, k]), g.add_node("pool2d", [c], {"mode": "average_exc_pad"})]
    vals = [np.ones(shape, "float32"), np.ones((shape[1], 7), "float32"), np.ones((0, 3, 5, 5), "float32"),
            np.ones((2, 3, 3, 3), "float32")]
    for got, want in zip(compile_graph(g)(vals), evaluate(g, vals)):
        _close(got, want)
    s = Graph()
    y = s.add_input(TensorType("float32", (None, None)), name="y")
    s.outputs = [s.add_node("softmax", [y], {"axis": 1})]
    # also over an empty axis: an empty result like JAX's softmax (fuzz_findings F2)
    assert compile_graph(s)([np.ones(shape, "float32")])[0].shape == shape


def test_identical_kernels_are_emitted_once():
    """Nodes with the same structure share one kernel (compile time stays flat in depth)."""
    g = Graph()
    h = g.add_input(TensorType("float32", (None, 8)), name="x")
    w = g.add_input(TensorType("float32", (8, 8)), name="w")
    for _ in range(6):
        z = g.add_node("tanh", [g.add_node("matmul", [h, w])])
        h = g.add_node("add", [z, g.add_node("sum", [z], {"axis": (1,), "keepdims": True})])
    g.outputs = [h]
    f = compile_graph(g)
    lines = f.llvm_ir_unoptimized.splitlines()
    defined = [line for line in lines if line.startswith('define internal i32 @"k') and '@"kw_' not in line]
    assert len(defined) == 4, defined  # matmul, tanh, sum, add
    # their multi-threaded loop bodies (parallel.py) are shared the same way: at most one per kernel kind
    # (the native program's GEMM threads itself)
    assert 3 <= len([line for line in lines if line.startswith('define internal i32 @"kw_')]) <= 4
    xv = np.random.default_rng(0).standard_normal((5, 8)).astype("float32")
    wv = np.random.default_rng(1).standard_normal((8, 8)).astype("float32") / 4
    _close(f([xv, wv])[0], evaluate(g, [xv, wv])[0])
