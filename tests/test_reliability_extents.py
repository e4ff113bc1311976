"""Equal-looking types are not equal extents (issue 9, defect 1).

Two anonymous ``?`` dims are unrelated sizes at run time, so every transformation that lets
one loop, buffer or write serve two values (sibling/consumer merging and extra results in
fusion, in-place writes, exact-size reuse, donation, dropping an alloc) must prove the
extents equal (``tcomp.passes.extents``) or not apply.  Results are compared with NumPy
written independently, or with the reference interpreter on the unoptimized graph.
"""
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.backend.cpu import compile_graph
from tcomp.ir import Graph, TensorType, evaluate
from tcomp.passes import fuse_elementwise, plan_memory
from tcomp.passes.extents import Extents, same_extent

WIDE = 3_000_000  # a loop over the narrow result's extent writing the wide one would overflow the heap


def _multi_output_kernels(graph):
    return [n for n in graph.nodes() if graph.op(n) == "fused" and graph.attrs(n).get("outputs")]


@pytest.mark.parametrize("order", ["mul_first", "sub_first"])
@pytest.mark.parametrize("wide", ["y", "z"])
def test_siblings_with_unrelated_anonymous_dims_are_not_merged(order, wide):
    """The reproduction: ``x * z`` and ``x - y`` are both ``f32[?, ?]`` but their columns are
    ``z``'s and ``y``'s.  Used to segfault (one kernel looped over one result's extent)."""
    x = T.col("x")
    y, z = T.matrix("y"), T.matrix("z")
    outs = [x * z, x - y] if order == "mul_first" else [x - y, x * z]
    f = tcomp.function([x, y, z], outs)
    rng = np.random.default_rng(9)
    xv = rng.standard_normal((3, 1)).astype("float32")
    narrow = rng.standard_normal((3, 1)).astype("float32")
    big = rng.random((3, WIDE), dtype=np.float32) - np.float32(0.5)
    yv, zv = (big, narrow) if wide == "y" else (narrow, big)
    got = f(xv, yv, zv)
    want = [xv * zv, xv - yv] if order == "mul_first" else [xv - yv, xv * zv]
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_array_equal(g, w)  # one float32 op each: exact
    assert not _multi_output_kernels(f.optimized)


def test_siblings_with_provably_equal_extents_still_merge():
    """Static dims, one named dim, or anonymous dims read from one operand: still one kernel."""
    rng = np.random.default_rng(1)
    cases = [
        (T.col("x", shape=(3, 1)), T.matrix("y", shape=(3, 5)), T.matrix("z", shape=(3, 5))),
        (T.col("x", shape=("n", 1)), T.matrix("y", shape=("n", "m")), T.matrix("z", shape=("n", "m"))),
    ]
    for x, y, z in cases:
        f = tcomp.function([x, y, z], [T.exp(x * z), T.tanh(x - y)])
        assert len(_multi_output_kernels(f.optimized)) == 1, f.optimized
        xv, yv, zv = (rng.standard_normal(s).astype("float32") for s in [(3, 1), (3, 5), (3, 5)])
        a, b = f(xv, yv, zv)
        np.testing.assert_allclose(a, np.exp(xv * zv), rtol=1e-5)
        np.testing.assert_allclose(b, np.tanh(xv - yv), rtol=1e-5, atol=1e-6)
    # anonymous, but both results read y without broadcasting: its extents are theirs
    x, y = T.col("x"), T.matrix("y")
    f = tcomp.function([x, y], [T.exp(x * y), T.tanh(x - y)])
    assert len(_multi_output_kernels(f.optimized)) == 1, f.optimized
    xv, yv = rng.standard_normal((4, 1)).astype("float32"), rng.standard_normal((4, 6)).astype("float32")
    a, b = f(xv, yv)
    np.testing.assert_allclose(a, np.exp(xv * yv), rtol=1e-5)
    np.testing.assert_allclose(b, np.tanh(xv - yv), rtol=1e-5, atol=1e-6)


def test_reduction_sibling_with_unrelated_extent():
    """A reducing group and an elementwise sibling over unrelated ``?`` columns."""
    x, y, z = T.col("x"), T.matrix("y"), T.matrix("z")
    f = tcomp.function([x, y, z], [T.sum(T.exp(x * z), axis=1), x - y])
    rng = np.random.default_rng(2)
    xv = rng.standard_normal((3, 1)).astype("float32")
    yv = rng.standard_normal((3, 200_000)).astype("float32")
    zv = rng.standard_normal((3, 2)).astype("float32")
    s, d = f(xv, yv, zv)
    np.testing.assert_allclose(s, np.exp(xv * zv).sum(axis=1), rtol=1e-5)
    np.testing.assert_array_equal(d, xv - yv)
    assert not _multi_output_kernels(f.optimized)


def test_consumer_merge_through_a_shared_value_keeps_working():
    """Phase 1 extra results and consumer merging on anonymous dims that come from one place."""
    x, y = T.matrix("x"), T.matrix("y")
    a = T.exp(x) * y          # needed twice: an extra result of the kernel computing b
    b = T.tanh(a) + x
    f = tcomp.function([x, y], [a, b, T.sum(b, axis=0)])
    rng = np.random.default_rng(3)
    xv, yv = (rng.standard_normal((5, 7)).astype("float32") for _ in range(2))
    av, bv, sv = f(xv, yv)
    wa = np.exp(xv) * yv
    wb = np.tanh(wa) + xv
    np.testing.assert_allclose(av, wa, rtol=1e-5)
    np.testing.assert_allclose(bv, wb, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sv, wb.sum(axis=0), rtol=1e-4, atol=1e-5)
    assert _multi_output_kernels(f.optimized)


def test_fusion_pass_on_ir_graph_keeps_unrelated_siblings_apart():
    g = Graph()
    x = g.add_input(TensorType("float32", (None, 1)), name="x")
    y = g.add_input(TensorType("float32", (None, None)), name="y")
    z = g.add_input(TensorType("float32", (None, None)), name="z")
    g.outputs = [g.add_node("exp", [g.add_node("mul", [x, z])]), g.add_node("tanh", [g.add_node("sub", [x, y])])]
    fused = fuse_elementwise(g.copy())
    assert not _multi_output_kernels(fused)
    vals = [np.ones((2, 1), "float32"), np.full((2, 9), 0.5, "float32"), np.full((2, 4), 2.0, "float32")]
    for got, want in zip(evaluate(fused, vals), evaluate(g, vals)):
        np.testing.assert_array_equal(got, want)


def test_planner_refuses_a_multi_output_kernel_of_two_extents():
    """The backstop: a hand-built kernel whose results differ at run time raises, never writes
    out of bounds (the type checks pass: both results are f32[?, ?])."""
    g = Graph()
    x = g.add_input(TensorType("float32", (None, 1)), name="x")
    y = g.add_input(TensorType("float32", (None, None)), name="y")
    z = g.add_input(TensorType("float32", (None, None)), name="z")
    body = (("mul", (), ("$0", "$1")), ("sub", (), ("$0", "$2")))
    k = g.add_node("fused", [x, z, y], {"body": body, "outputs": (0,)})
    g.outputs = [g.add_node("get_output", [k], {"index": 0}), g.add_node("get_output", [k], {"index": 1})]
    f = compile_graph(g)
    with pytest.raises(ValueError, match="one extent"):
        f([np.ones((3, 1), "float32"), np.zeros((3, WIDE), "float32"), np.ones((3, 1), "float32")])
    same = [np.ones((3, 1), "float32"), np.zeros((3, 4), "float32"), np.ones((3, 4), "float32")]
    for got, want in zip(f(same), [same[0] - same[1], same[0] * same[2]]):
        np.testing.assert_array_equal(got, want)


def test_same_extent_and_extents_analysis():
    f32 = TensorType
    assert same_extent(f32("float32", (3, "n")), f32("float32", (3, "n")))
    assert not same_extent(f32("float32", (None, 3)), f32("float32", (None, 3)))
    assert not same_extent(f32("float32", (3,)), f32("float32", (3, 1)))
    g = Graph()
    x = g.add_input(TensorType("float32", (None, 1)), name="x")
    y = g.add_input(TensorType("float32", (None, None)), name="y")
    z = g.add_input(TensorType("float32", (None, None)), name="z")
    w = g.add_input(TensorType("float32", (None, 4)), name="w")
    a = g.add_node("mul", [x, z])
    b = g.add_node("sub", [x, y])
    c = g.add_node("exp", [y])
    s = g.add_node("sum", [c], {"axis": (1,), "keepdims": True})
    t = g.add_node("dimshuffle", [y], {"pattern": (1, 0)})
    d = g.add_node("dot", [t, w])                                  # (y cols, 4); y rows == w rows
    zeros = g.add_node("alloc", [g.add_constant(np.float32(0)), g.add_node("shape", [z], {"axis": 0}),
                                 g.add_node("shape", [z], {"axis": 1})], {"shape": (None, None)})
    e = g.add_node("add", [zeros, z])
    g.outputs = [a, b, c, s, d, e]
    ext = Extents(g)
    assert not ext.same(a, b) and ext.same_dim(a, 0, b, 0)     # rows are x's, columns unrelated
    assert ext.same(b, c) and ext.same(b, y) and ext.same(a, z)
    assert ext.same_dim(s, 0, y, 0) and ext.key(s, 1) == ext.key(x, 1)
    assert ext.same_dim(d, 0, y, 1) and ext.same_dim(w, 0, y, 0)
    assert ext.same(zeros, z) and ext.same(e, z) and not ext.same(zeros, y)


def test_graph_plan_never_donates_or_overwrites_across_unrelated_anonymous_dims():
    g = Graph()
    p = g.add_input(TensorType("float32", (None, None)), name="p")
    q = g.add_input(TensorType("float32", (None, None)), name="q")
    two = g.add_constant(np.float32(2))
    unrelated = g.add_node("mul", [q, two])       # f32[?, ?] like p, but q's extents
    related = g.add_node("mul", [p, two])
    g.outputs = [unrelated, related]
    plan = plan_memory(g, {0: 0, 1: 0})
    assert unrelated not in plan.donated and plan.donated.get(related) == p
    # in place: only over an operand whose extents are proven (static or named) equal
    g2 = Graph()
    u = g2.add_input(TensorType("float32", (None, None)), name="u")
    a = g2.add_node("exp", [u])
    b = g2.add_node("tanh", [a])
    g2.outputs = [g2.add_node("sum", [b], {"axis": (0, 1)})]
    assert plan_memory(g2).inplace == {}


def test_cpu_reuse_and_in_place_across_unrelated_anonymous_dims():
    """Values of equal types but different run-time sizes in one call: a dead narrow buffer
    serving a wide value must grow, no in-place write is taken between them, and the results
    are NumPy's."""
    g = Graph()
    x = g.add_input(TensorType("float32", (None, None)), name="x")
    y = g.add_input(TensorType("float32", (None, None)), name="y")
    half = g.add_constant(np.float32(0.5))

    def step(v):  # two readers: stored by a kernel, never inlined
        return g.add_node("add", [g.add_node("tanh", [v]), g.add_node("mul", [v, half])])
    a = step(x)                                       # x's size, dies below
    sa = g.add_node("sum", [a], {"axis": (0, 1)})
    b = step(y)                                       # y's size: may take a's buffer only if it fits
    c = step(b)
    g.outputs = [g.add_node("add", [sa, g.add_node("sum", [c], {"axis": (0, 1)})]), c]
    f = compile_graph(g)
    rng = np.random.default_rng(4)
    for xs, ys in [((2, 3), (50, 70)), ((50, 70), (2, 3)), ((7, 1), (1, 7))]:
        xv, yv = rng.standard_normal(xs).astype("float32"), rng.standard_normal(ys).astype("float32")

        def step_np(v):
            return np.tanh(v) + v * np.float32(0.5)
        cw = step_np(step_np(yv))
        total, cv = f([xv, yv])
        np.testing.assert_allclose(cv, cw, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(total, step_np(xv).sum() + cw.sum(), rtol=1e-4, atol=1e-4)
    ext = Extents(f.prog.g)
    assert all(ext.same(k, leaf) for k, leaf in f._inplace.items())  # in place only over proven extents


def test_broadcast_to_an_anonymous_shape_is_not_dropped():
    """``broadcast_to(x, y.shape)`` with ``x, y: f32[?, ?]``: the alloc only looks useless (equal
    types); NumPy broadcasts a run-time 1 of x, and so must the optimized function."""
    x, y = T.matrix("x"), T.matrix("y")
    f = tcomp.function([x, y], T.broadcast_to(x, y.shape))
    xv = np.arange(4, dtype="float32").reshape(1, 4)
    got = f(xv, np.zeros((3, 4), "float32"))
    np.testing.assert_array_equal(got, np.broadcast_to(xv, (3, 4)))
    # alloc of x to its own shape is still dropped
    g = tcomp.function([x], T.broadcast_to(x, x.shape) * 2)
    assert "alloc" not in str(g.optimized)


def test_extents_through_shape_ops_and_matmul():
    g = Graph()
    a = g.add_input(TensorType("float32", (None, None, None)), name="a")
    b = g.add_input(TensorType("float32", (None, None, None)), name="b")
    c = g.add_input(TensorType("float32", (None, None)), name="c")
    m = g.add_node("matmul", [a, b])                       # batch may broadcast a run-time 1
    cat = g.add_node("concatenate", [c, c], {"axis": 0})  # columns are c's, rows are not
    st = g.add_node("stack", [c, c], {"axis": 1})
    row = g.add_node("subtensor", [c, g.add_constant(np.int64(0))], {"index": (("i", "$1"),)})
    part = g.add_node("subtensor", [c], {"index": (("s", 1, None, None),)})
    n = g.add_node("shape", [c], {"axis": 0})
    idx = g.add_node("arange", [g.add_constant(np.int64(0)), n, g.add_constant(np.int64(1))], {"dtype": "int64"})
    flat = g.add_node("reshape", [c, n], {"shape": (None, -1)})
    g.outputs = [m, cat, st, row, part, idx, flat]
    ext = Extents(g)
    assert ext.same_dim(m, 1, a, 1) and ext.same_dim(m, 2, b, 2) and ext.same_dim(a, 2, b, 1)
    assert not ext.same_dim(m, 0, a, 0) and not ext.same_dim(m, 0, b, 0)
    assert ext.same_dim(cat, 1, c, 1) and not ext.same_dim(cat, 0, c, 0)
    assert ext.same_dim(st, 0, c, 0) and ext.same_dim(st, 2, c, 1) and ext.key(st, 1) == ("static", 2)
    assert ext.same_dim(row, 0, c, 1)
    assert ext.same_dim(part, 1, c, 1) and not ext.same_dim(part, 0, c, 0)
    assert ext.same_dim(idx, 0, c, 0) and ext.same_dim(flat, 0, c, 0) and not ext.same_dim(flat, 1, c, 1)


def test_anonymous_batch_mlp_keeps_its_multi_output_kernels():
    """Fusion is not weaker than needed: the classifier step with an anonymous batch dim (its
    extents all come from x's rows) keeps the two multi-output kernels of the static one."""
    from tcomp.examples.mlp import build_classifier_step

    counts = []
    for batch in (128, None):
        step, _, _ = build_classifier_step(sizes=(12, 8, 8, 3), batch=batch, backend="reference")
        counts.append(len(_multi_output_kernels(step.optimized)))
    assert counts == [2, 2]


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_sum_of_broadcast_over_an_anonymous_dim_counts_the_copies(axis):
    """``sum(broadcast_to(x, y.shape))`` with ``x: f32[1, ?]`` holding one column: the alloc
    broadcasts it over y's columns too, so the sum may not drop those copies."""
    x, y = T.row("x"), T.matrix("y")
    f = tcomp.function([x, y], T.sum(T.broadcast_to(x, y.shape), axis=axis))
    xv = np.full((1, 1), 2.0, "float32")
    got = f(xv, np.zeros((3, 4), "float32"))
    np.testing.assert_array_equal(got, np.broadcast_to(xv, (3, 4)).sum(axis=axis))
    xv = np.arange(4, dtype="float32").reshape(1, 4)  # no run-time broadcast of the columns
    np.testing.assert_array_equal(f(xv, np.zeros((3, 4), "float32")), np.broadcast_to(xv, (3, 4)).sum(axis=axis))
    # provably kept extents (a named dim): still rewritten to a scaled sum of x, no alloc left
    c, m = T.row("c", shape=(1, "n")), T.matrix("m", shape=(None, "n"))
    assert "alloc" not in str(tcomp.function([c, m], T.sum(T.broadcast_to(c, m.shape))).optimized)


def test_donated_update_of_another_run_time_shape_gets_its_own_storage():
    """``W <- sum(W) + V`` with ``W, V: f32[?, ?]``: the update has V's extents.  Written into
    W's storage when the shapes match in this call, never when they differ (that would write
    200000 floats into 6), and the graph-level plan cannot prove it at all."""
    W = tcomp.shared(np.ones((2, 3), "float32"), "W", shape=(None, None))
    V = T.matrix("V")
    f = tcomp.function([V], T.sum(W), updates=[(W, T.sum(W) + V)])
    assert f.donations and not plan_memory(f.optimized, f.donations).donated
    v = np.arange(200_000, dtype="float32").reshape(400, 500)
    assert f(v) == 6.0
    np.testing.assert_array_equal(W.get_value(), v + np.float32(6))
    assert f.compiled.last_call_memory["donated_updates"] == 0
    old = W.get_value().copy()
    f(np.ones((400, 500), "float32"))
    np.testing.assert_allclose(W.get_value(), np.full((400, 500), 1.0 + old.sum(dtype=np.float64)), rtol=1e-5)
    assert f.compiled.last_call_memory["donated_updates"] == 1


def test_a_dead_node_proves_nothing():
    """``(x*z) + (x-y)`` would prove the columns equal, but only if it runs: dead, it is removed
    before the backend plans any shape, so fusion may not rely on it."""
    g = Graph()
    x = g.add_input(TensorType("float32", (None, 1)), name="x")
    y = g.add_input(TensorType("float32", (None, None)), name="y")
    z = g.add_input(TensorType("float32", (None, None)), name="z")
    a, b = g.add_node("exp", [g.add_node("mul", [x, z])]), g.add_node("tanh", [g.add_node("sub", [x, y])])
    dead = g.add_node("add", [a, b])
    g.outputs = [a, b]
    assert not Extents(g).same(a, b)
    g.outputs = [a, b, dead]
    assert Extents(g).same(a, b)
