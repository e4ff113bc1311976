"""The kernel program (tcomp.passes.lower_kernels): its shape program gives the reference
interpreter's shapes and the Python planner's errors (same class, same text), its NumPy
interpreter gives the reference interpreter's outputs through the workspace layout, views
and buffer assignment, and it round-trips through JSON with a hash stable across processes.

Oracles: ``tcomp.ir.evaluate`` (values, shapes, and which inputs are refused: the same
exception class; the shape program's text names the variable and the expected and actual
shapes), no LLVM is built here.
"""
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import test_cpu_hypothesis as H
import test_passes_random as PR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tcomp
import tcomp.tensor as T
from tcomp.examples.mlp import build_classifier_step, build_mse_mlp
from tcomp.ir import Graph, TensorType, evaluate
from tcomp.passes import optimize
from tcomp.passes.kernel_interpreter import run_program, verify_memory
from tcomp.passes.kernel_program import evaluate_shape_program, from_json, resolve
from tcomp.passes.lower_kernels import lower_kernels


def reference_error(g, arrays):
    """What the reference interpreter raises for these inputs (None if nothing)."""
    try:
        evaluate(g, list(arrays))
    except (ValueError, IndexError) as e:
        return e
    return None


def program_error(p, arrays):
    try:
        evaluate_shape_program(p.shape, arrays)
    except (ValueError, IndexError) as e:
        return e
    return None


def assert_same_error(p, g, arrays):
    want, got = reference_error(g, arrays), program_error(p, arrays)
    assert (want is None) == (got is None), f"reference: {want!r}, shape program: {got!r}"
    if want is not None:
        family = IndexError if isinstance(want, IndexError) else ValueError
        assert isinstance(got, family) and str(got), (want, got)
    return want


def assert_shapes_match(p, g, arrays):
    """Every value's dims (from the shape program) equal the reference interpreter's shapes."""
    every = evaluate(g, arrays, return_all=True)
    regs = evaluate_shape_program(p.shape, arrays)
    for v in p.values:
        if v.node in every and not isinstance(every[v.node], tuple):
            assert resolve(v.dims, regs) == every[v.node].shape, f"v{v.id} (%{v.node})\n{p}"
    return every


def assert_outputs_match(p, g, arrays, exact=True, **kw):
    want = evaluate(g, arrays)
    got = run_program(p, arrays, **kw)
    for k, (a, w) in enumerate(zip(got, want)):
        assert a.dtype == w.dtype and a.shape == w.shape, f"output {k}"
        if exact:
            np.testing.assert_array_equal(a, w, err_msg=f"output {k}")
        else:
            np.testing.assert_allclose(a, w, rtol=2e-5, atol=1e-6, err_msg=f"output {k}")
    return got


# -- a symbolic dim and a value-dependent shape ----------------------------------------------------

def _reshape_fn():
    x, n = T.matrix("x"), T.lscalar("n")
    y = T.reshape(x, (n, -1)) * 2 + x.shape[0]
    return tcomp.function([x, n], [y, T.sum(y, axis=1), y.T[1:]], backend="reference")


def test_reshape_by_a_scalar_input_matches_the_reference():
    f = _reshape_fn()
    p = lower_kernels(f.optimized)
    X = np.arange(12, dtype="float32").reshape(3, 4)
    for n in (2, 3, 1, 12):
        arrays = [X, np.int64(n)]
        assert_shapes_match(p, f.optimized, arrays)
        assert_outputs_match(p, f.optimized, arrays)
    assert p.shape.value_inputs == (1,)
    assert any(k.kind == "scalar" for k in p.kernels)  # x.shape[0] read as a tensor by the fused kernel


@pytest.mark.parametrize("n", [5, -3, 0, -1])
def test_bad_reshape_targets_give_the_planners_errors(n):
    f = _reshape_fn()
    p = lower_kernels(f.optimized)
    assert assert_same_error(p, f.optimized, [np.zeros((3, 4), "float32"), np.int64(n)]) is not None


def test_symbolic_dims_and_checks_like_the_planner():
    x = T.matrix("x", shape=("m", None))
    y = T.matrix("y", shape=(None, 3))
    z = T.vector("z", shape=("m",))
    out = (x + y) * z.dimshuffle(0, "x")
    f = tcomp.function([x, y, z], [out, T.max(out, axis=0)], backend="reference")
    g = f.optimized
    p = lower_kernels(g)
    good = [np.ones((2, 3), "float32"), np.ones((2, 3), "float32"), np.ones(2, "float32")]
    assert_outputs_match(p, g, good)
    bad = [
        [np.ones((2, 3), "float32"), np.ones((2, 4), "float32"), np.ones(2, "float32")],  # static dim
        [np.ones((2, 3), "float32"), np.ones((2, 3), "float32"), np.ones(3, "float32")],  # named dim
        [np.ones((2, 3), "float32"), np.ones((1, 3), "float32"), np.ones(2, "float32")],  # never broadcast
        [np.ones((2, 3), "float32"), np.ones((4, 3), "float32"), np.ones(2, "float32")],  # do not broadcast
        [np.ones((0, 3), "float32"), np.ones((0, 3), "float32"), np.ones(0, "float32")],  # max over empty axis
    ]
    for arrays in bad:
        assert assert_same_error(p, g, arrays) is not None


def test_index_bounds_slice_steps_and_arange_like_the_planner():
    x, i, s = T.vector("x"), T.lscalar("i"), T.lscalar("s")
    f = tcomp.function([x, i, s], [x[i] * 2, x[1::s] + 1, T.arange(i) * 1.5], backend="reference")
    g = f.optimized
    p = lower_kernels(g)
    X = np.arange(5, dtype="float32")
    for iv, sv in [(1, 2), (-2, -1), (4, 3), (0, -2)]:
        assert_outputs_match(p, g, [X, np.int64(iv), np.int64(sv)])
    for iv, sv in [(5, 1), (-6, 1), (1, 0)]:
        assert assert_same_error(p, g, [X, np.int64(iv), np.int64(sv)]) is not None


def test_mse_mlp_with_a_symbolic_batch():
    train, predict, params = build_mse_mlp(5, 7, 3, backend="reference")
    rng = np.random.default_rng(0)
    for f in (train, predict):
        p = lower_kernels(f.optimized, f.donations)
        for batch in (1, 6):
            arrays = [rng.standard_normal((batch, 5)).astype("float32")]
            if f is train:
                arrays.append(rng.standard_normal((batch, 3)).astype("float32"))
            arrays += [s.get_value() for s in f.shared_inputs]
            assert_shapes_match(p, f.optimized, arrays)
            assert_outputs_match(p, f.optimized, arrays)
            assert_outputs_match(p, f.optimized, [a.copy() for a in arrays], donate=True)


def test_mlp_training_step_with_donated_updates():
    step, _, params = build_classifier_step(sizes=(16, 12, 12, 4), batch=8, backend="reference")
    p = lower_kernels(step.optimized, step.donations)
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((8, 16)).astype("float32"), rng.integers(0, 4, 8).astype("int32")]
    arrays += [s.get_value() for s in step.shared_inputs]
    assert_outputs_match(p, step.optimized, arrays)
    donated = [o for o in p.outputs if o.donates is not None]
    assert len(donated) == 6  # every SGD update written into its shared variable's storage
    copies = [a.copy() for a in arrays]
    got = assert_outputs_match(p, step.optimized, copies, donate=True)
    for o, r in zip(p.outputs, got):
        if o.donates is not None:
            assert r is copies[o.donates]
    # intermediates reuse buffers: the workspace is smaller than one buffer per value
    values = [v for v in p.values if v.storage.kind == "buffer"]
    one_each = sum(int(np.prod(v.dims)) * np.dtype(v.dtype).itemsize for v in values)
    assert p.workspace < one_each
    # one kernel per computed node that is not a view (fusion is the only fusion)
    g = step.optimized
    views = {v.node for v in p.values if v.storage.kind == "view"}
    computed = {n for n in g.nodes() if g.op(n) not in ("input", "constant", "get_output", "shape")} - views
    nodes = [k.node for k in p.kernels if k.kind != "scalar"]
    assert len(nodes) == len(set(nodes)) and set(nodes) == computed


def _conv_step():
    rng = np.random.default_rng(0)
    x, y = T.tensor4("x"), T.ivector("y")
    W = tcomp.shared(rng.standard_normal((4, 1, 3, 3)).astype("float32"), "W")
    V = tcomp.shared(rng.standard_normal((36, 3)).astype("float32"), "V")
    h = T.nnet.pool_2d(T.nnet.relu(T.nnet.conv2d(x, W)), (2, 2), ignore_border=True)
    cost = T.nnet.categorical_crossentropy(T.nnet.softmax(T.dot(h.flatten(2), V)), y).mean()
    gW, gV = T.grad(cost, [W, V])
    f = tcomp.function([x, y], cost, updates=[(W, W - 0.1 * gW), (V, V - 0.1 * gV)], backend="reference")
    good = [rng.standard_normal((5, 1, 8, 8)).astype("float32"), rng.integers(0, 3, 5).astype("int32")]
    bad = [[np.zeros((5, 2, 8, 8), "float32"), good[1]], [np.zeros((5, 1, 2, 2), "float32"), good[1]],
           [np.zeros((5, 1, 10, 10), "float32"), good[1]]]  # channels, too small, 64 features for V's 36
    return f, good, bad


def _random_streams():
    srng = tcomp.RandomStreams(1)
    v = T.matrix("v")
    f = tcomp.function([v], [v * srng.binomial(v.shape, p=0.5), srng.normal((v.shape[0], 3))], backend="reference")
    return f, [np.ones((4, 6), "float32")], []


def _indexing():
    a, i, idx = T.matrix("a"), T.lscalar("i"), T.lvector("idx")
    f = tcomp.function([a, i, idx], [T.set_subtensor(a[i], a[0] * 2), T.inc_subtensor(a[idx], 1.0),
                                     a[i:, ::2].sum(), a[idx, i]], backend="reference")
    a0 = np.arange(20, dtype="float32").reshape(4, 5)
    return f, [a0, np.int64(2), np.array([0, 3, 3])], [[a0, np.int64(4), np.array([0])],
                                                       [a0, np.int64(-5), np.array([1])]]


def _minibatch_givens():
    rng = np.random.default_rng(2)
    data = tcomp.shared(rng.standard_normal((20, 3)).astype("float32"), "data")
    w = tcomp.shared(np.zeros(3, "float32"), "w")
    k, xx = T.lscalar("k"), T.matrix("xx")
    c = ((T.dot(xx, w) - 1) ** 2).mean()
    f = tcomp.function([k], c, updates=[(w, w - 0.1 * T.grad(c, w))], givens={xx: data[k * 4:(k + 1) * 4]},
                       backend="reference")
    return f, [np.int64(2)], []


@pytest.mark.parametrize("build", [_conv_step, _random_streams, _indexing, _minibatch_givens])
def test_programs_of_example_functions(build):
    f, good, bad = build()
    g = f.optimized
    p = lower_kernels(g, f.donations)
    shared = [s.get_value() for s in f.shared_inputs]
    assert_shapes_match(p, g, good + shared)
    assert_outputs_match(p, g, good + shared)
    assert_outputs_match(p, g, [a.copy() for a in good + shared], donate=True)
    for arrays in bad:
        assert assert_same_error(p, g, arrays + shared) is not None
    assert from_json(p.to_json()) == p


def test_dump_kernels_stage():
    f = _reshape_fn()
    text = f.dump("kernels")
    assert "shape program:" in text and "reshape: cannot reshape" in text and "kernels:" in text


# -- JSON, hash ----------------------------------------------------------------------------------

_HASH_SCRIPT = """
import tcomp, tcomp.tensor as T
from tcomp.examples.mlp import build_classifier_step
from tcomp.passes.lower_kernels import lower_kernels
step, _, _ = build_classifier_step(sizes=(16, 12, 4), batch=None or 8, backend="reference")
x, n = T.matrix("x"), T.lscalar("n")
f = tcomp.function([x, n], T.reshape(x, (n, -1)).sum(axis=0), backend="reference")
print(lower_kernels(step.optimized, step.donations).hash, lower_kernels(f.optimized).hash)
"""


def test_json_round_trip_and_hash_stable_across_processes():
    step, _, _ = build_classifier_step(sizes=(16, 12, 4), batch=8, backend="reference")
    p = lower_kernels(step.optimized, step.donations)
    q = from_json(p.to_json())
    assert q == p and q.hash == p.hash
    f = _reshape_fn()
    r = lower_kernels(f.optimized)
    assert from_json(r.to_json(indent=1)) == r
    runs = [subprocess.run([sys.executable, "-c", _HASH_SCRIPT], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(seed), "PATH": ""}).stdout.split() for seed in (1, 2)]
    assert runs[0] == runs[1] and len(runs[0]) == 2


def test_memory_verifier_catches_overlapping_live_values():
    step, _, _ = build_classifier_step(sizes=(16, 12, 12, 4), batch=8, backend="reference")
    p = lower_kernels(step.optimized, step.donations)
    regs = evaluate_shape_program(p.shape, [np.zeros((8, 16), "float32"), np.zeros(8, "int32")]
                                  + [s.get_value() for s in step.shared_inputs])
    verify_memory(p, regs)
    squashed = replace(p, buffers=tuple(replace(b, offset=0) for b in p.buffers))
    with pytest.raises(ValueError, match="over live"):
        verify_memory(squashed, regs)
    with pytest.raises(ValueError, match="not a tcomp.kernel_program"):
        from_json('{"format": "tcomp.graph"}')


# -- random graphs (tests/test_cpu_hypothesis.py's generator) ------------------------------------------

@settings(max_examples=int(H.EXAMPLES // 3) or 1, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(st.data())
def test_random_graphs(data):
    b = H.Builder(data)
    g = b.g
    base = tuple(data.draw(st.lists(st.integers(1, 4), min_size=0, max_size=3)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    values, shapes = [], []
    for k in range(data.draw(st.integers(1, 3))):
        dims, sizes = H._input_shape(b, base, k)
        dtype = data.draw(st.sampled_from(H.DTYPES))
        n = g.add_input(TensorType(dtype, dims), name=f"in{k}")
        b.exact[n] = True
        values.append(H._value(rng, dtype, sizes, data.draw(st.sampled_from(["contiguous", "step", "fortran"]))))
        shapes.append(sizes)
    nodes = list(g.inputs)
    want_ops = data.draw(st.integers(1, 8))
    for _ in range(3 * want_ops):
        n = H._step(b, nodes)
        if n is not None:
            nodes.append(n)
        if len(nodes) - len(g.inputs) >= want_ops:
            break
    extra = [n for n in nodes[len(g.inputs):-1] if data.draw(st.booleans())]
    g.outputs = [nodes[-1]] + extra
    g.remove_dead()
    # a wrong size on a symbolic axis, sometimes: the checks must fire like the planner's
    if data.draw(st.booleans()) and any(values[k].ndim for k in range(len(values))):
        k = data.draw(st.sampled_from([k for k in range(len(values)) if values[k].ndim]))
        shape = list(values[k].shape)
        shape[data.draw(st.integers(0, len(shape) - 1))] += data.draw(st.sampled_from([-1, 1]))
        if all(d >= 0 for d in shape):
            values[k] = np.zeros(shape, values[k].dtype)
    for graph in (g, optimize(g)):
        p = lower_kernels(graph)
        if assert_same_error(p, graph, values) is not None:
            continue
        try:
            want = evaluate(graph, values)
        except (ValueError, IndexError) as e:  # an index array out of bounds: raised inside its kernel
            with pytest.raises(type(e) if isinstance(e, IndexError) else (ValueError, IndexError)):
                run_program(p, values)
            continue
        verify_memory(p, evaluate_shape_program(p.shape, values))
        assert_shapes_match(p, graph, values)
        got = run_program(p, values)
        for a, w in zip(got, want):
            assert a.dtype == w.dtype and a.shape == w.shape
            np.testing.assert_array_equal(a, w)


@settings(max_examples=60, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(PR.random_graph(), st.integers(0, 2))
def test_random_fused_pipelines(case, wrong):
    """Multi-output kernels, leading layout steps and epilogues (tests/test_passes_random.py's
    graphs), optimized: exact against the reference on the same optimized graph; with a
    wrong symbolic size (``wrong`` > 0) the planner's error."""
    g, inputs = case
    h = optimize(g)
    p = lower_kernels(h)
    if wrong and any(a.ndim for a in inputs):
        k = next(k for k, a in enumerate(inputs) if a.ndim)
        inputs = list(inputs)
        inputs[k] = np.zeros(inputs[k].shape[:-1] + (inputs[k].shape[-1] + wrong,), inputs[k].dtype)
    if assert_same_error(p, h, inputs) is None:
        assert_shapes_match(p, h, inputs)
        assert_outputs_match(p, h, inputs)


def test_a_graph_with_an_unsupported_host_value_is_a_clear_error():
    g = Graph()
    x = g.add_input(TensorType("float32", (None,)), "x")
    v = g.add_input(TensorType("int64", (3,)), "v")
    s = g.add_node("sum", [v], {"axis": (0,)})
    g.outputs = [g.add_node("reshape", [x, s], {"shape": (None,)})]
    with pytest.raises(TypeError, match="shape program cannot compute"):
        lower_kernels(g)
