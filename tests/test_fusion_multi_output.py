"""Fusion into multi-output kernels, leading layout steps and epilogues: the graph before and
after (kernel counts, ``outputs``, ``epilogue``, body steps), nothing computed twice, no
cycles, exact agreement with the unfused graph in the reference interpreter, and the CPU
backend on the fused graph."""
import numpy as np
import pytest

import tcomp.backend.cpu as cpu
from tcomp.ir import Constant, Graph, TensorType, evaluate, get_op
from tcomp.ir.verify import verify
from tcomp.passes import fuse_elementwise, optimize

RNG = np.random.default_rng(3)
F32 = "float32"
cpu_multi_output = pytest.mark.skipif(not getattr(cpu, "SUPPORTS_MULTI_OUTPUT", False),
                                      reason="tcomp.backend.cpu does not lower multi-output/layout kernels yet "
                                             "(no SUPPORTS_MULTI_OUTPUT = True)")


def T(*shape, dtype=F32):
    return TensorType(dtype, shape)


def rand(*shape):
    return RNG.normal(size=shape).astype(F32)


def const(g, value):
    return g.add_constant(Constant(np.array(value, dtype=F32)))


def elementwise_count(h):
    """Elementwise ops computed: plain nodes plus kernel body steps (constants and layout excluded)."""
    n = 0
    for v in h.nodes():
        if h.op(v) == "fused":
            n += sum(1 for s in h.attrs(v)["body"] if get_op(s[0]).kind == "elemwise")
        elif get_op(h.op(v)).kind == "elemwise":
            n += 1
    return n


def fuse(g, inputs):
    """Fuse a copy; check types, verifier, no recomputation and exact results; return it."""
    h = fuse_elementwise(g.copy())
    verify(h)
    assert [g.type(o) for o in g.outputs] == [h.type(o) for o in h.outputs]
    assert elementwise_count(h) == elementwise_count(g)
    for w, v in zip(evaluate(g, inputs), evaluate(h, inputs)):
        assert w.dtype == v.dtype and w.shape == v.shape
        np.testing.assert_array_equal(v, w)
    return h


def kernels(h):
    return [n for n in h.nodes() if h.op(n) == "fused"]


def body_ops(h, k):
    return [s[0] for s in h.attrs(k)["body"]]


@cpu_multi_output
@pytest.mark.parametrize("case", ["returned_and_reduced", "two_results", "siblings", "leading", "epilogue_reshape",
                                  "epilogue_dimshuffle"])
def test_cpu_backend_runs_the_fused_graphs(case):
    g, inputs = CASES[case]()
    h = fuse_elementwise(g.copy())
    got = cpu.compile_graph(h)(inputs)
    for w, v in zip(evaluate(g, inputs), got):
        assert w.dtype == v.dtype and w.shape == v.shape
        np.testing.assert_allclose(v, w, rtol=2e-5, atol=2e-6)


# -- multi-output ---------------------------------------------------------------------------

def returned_and_reduced():
    g = Graph()
    x, b = g.add_input(T("n", 5), "x"), g.add_input(T(5), "b")
    y = g.add_node("tanh", [g.add_node("add", [x, b])])
    g.outputs = [y, g.add_node("sum", [y], {"axis": (1,)})]
    return g, [rand(3, 5), rand(5)]


def test_value_returned_and_reduced_is_one_kernel():
    g, inputs = returned_and_reduced()
    h = fuse(g, inputs)
    (k,) = kernels(h)
    a = h.attrs(k)
    assert body_ops(h, k) == ["add", "tanh"] and a["reduce"] == "sum" and a["outputs"] == (1,)
    assert [h.op(o) for o in h.outputs] == ["get_output", "get_output"]
    assert [h.attrs(o)["index"] for o in h.outputs] == [1, 0]  # y is the extra result, the sum the primary
    assert len(h) == 2 + 1 + 2


def two_results():
    g = Graph()
    x, w = g.add_input(T(4, 6)), g.add_input(T(6))
    z = g.add_node("mul", [x, w])
    g.outputs = [g.add_node("exp", [z]), g.add_node("mul", [z, const(g, 2.0)])]
    return g, [rand(4, 6), rand(6)]


def test_two_consumers_of_an_intermediate_are_one_kernel_with_two_results():
    g, inputs = two_results()
    h = fuse(g, inputs)
    (k,) = kernels(h)
    assert body_ops(h, k) == ["mul", "exp", "constant", "mul"] and h.attrs(k)["outputs"] == (1,)
    assert {h.attrs(o)["index"] for o in h.outputs} == {0, 1}
    assert h.operands(k) == g.inputs


def siblings():
    g = Graph()
    x, y = g.add_input(T("n", 4)), g.add_input(T("n", 4))
    a = g.add_node("exp", [g.add_node("add", [x, y])])        # a two-op kernel ...
    b = g.add_node("log1p", [g.add_node("abs", [x])])         # ... and another, sharing x
    c = g.add_node("neg", [y])                                # a plain node sharing y
    g.outputs = [a, b, c]
    return g, [rand(3, 4), rand(3, 4)]


def test_siblings_sharing_an_operand_merge():
    g, inputs = siblings()
    h = fuse(g, inputs)
    (k,) = kernels(h)
    assert sorted(body_ops(h, k)) == sorted(["add", "exp", "abs", "log1p", "neg"])
    assert len(h.attrs(k)["outputs"]) == 2 and sorted(h.operands(k)) == sorted(g.inputs)


def test_many_siblings_fill_kernels_of_bounded_result_count():
    from tcomp.passes.fusion import MAX_KERNEL_RESULTS

    g = Graph()
    x = g.add_input(T(3, 4))
    g.outputs = [g.add_node("exp", [g.add_node("add", [x, const(g, float(i))])]) for i in range(20)]
    h = fuse(g, [rand(3, 4)])
    counts = sorted(len(h.attrs(k)["outputs"]) + 1 for k in kernels(h))
    assert max(counts) == MAX_KERNEL_RESULTS and sum(counts) == 20
    assert len(counts) == -(-20 // MAX_KERNEL_RESULTS)


def test_siblings_with_different_iteration_spaces_stay_apart():
    g = Graph()
    x, v = g.add_input(T(4, 3)), g.add_input(T(3))
    a = g.add_node("exp", [g.add_node("add", [x, v])])      # iterates over [4, 3]
    b = g.add_node("tanh", [g.add_node("neg", [v])])        # iterates over [3]
    g.outputs = [a, b]
    h = fuse(g, [rand(4, 3), rand(3)])
    assert len(kernels(h)) == 2 and all(h.attrs(k)["outputs"] == () for k in kernels(h))


def test_siblings_that_would_form_a_cycle_stay_apart():
    """A = exp(x) + 1 feeds dot(A, W), which feeds B = tanh(x) * dot: merging A and B (they
    share x and the iteration space) would make the kernel consume its own result."""
    g = Graph()
    x, w = g.add_input(T(4, 4)), g.add_input(T(4, 4))
    a = g.add_node("add", [g.add_node("exp", [x]), const(g, 1.0)])
    d = g.add_node("dot", [a, w])
    b = g.add_node("mul", [g.add_node("tanh", [x]), d])
    g.outputs = [b, a]
    h = fuse(g, [rand(4, 4), rand(4, 4)])
    assert len(kernels(h)) == 2
    h.topo_order()  # no cycle


def test_reduction_whose_operand_is_needed_before_it_is_not_fused_with_it():
    """e feeds m = max(dot(e, W)) which feeds e * m summed: e as an extra result of the summing
    kernel would need the kernel's own output before it runs."""
    g = Graph()
    x, w = g.add_input(T(3, 3)), g.add_input(T(3, 3))
    e = g.add_node("exp", [g.add_node("neg", [x])])
    m = g.add_node("max", [g.add_node("dot", [e, w])], {"axis": (0, 1), "keepdims": False})
    s = g.add_node("sum", [g.add_node("mul", [e, m])], {"axis": (1,)})
    g.outputs = [s]
    h = fuse(g, [rand(3, 3), rand(3, 3)])
    h.topo_order()
    assert all(h.attrs(k)["outputs"] == () for k in kernels(h))


def test_extra_result_needs_the_iteration_space_shape():
    g = Graph()
    x, v = g.add_input(T(4, 3)), g.add_input(T(3))
    e = g.add_node("exp", [g.add_node("neg", [v])])            # [3], returned
    out = g.add_node("add", [x, e])                            # [4, 3]
    g.outputs = [out, e]
    h = fuse(g, [rand(4, 3), rand(3)])
    ks = kernels(h)
    assert len(ks) == 1 and h.attrs(ks[0])["outputs"] == () and h.outputs[1] == ks[0]
    assert body_ops(h, ks[0]) == ["neg", "exp"]  # e's kernel; the add stays a plain node


# -- layout steps ------------------------------------------------------------------------------

def leading():
    g = Graph()
    x, y, z = g.add_input(T(5, "n")), g.add_input(T("n", 5)), g.add_input(T(10))
    xt = g.add_node("dimshuffle", [x], {"pattern": (1, 0)})
    zr = g.add_node("reshape", [z], {"shape": (2, 5)})
    t = g.add_node("exp", [g.add_node("add", [xt, y])])
    g.outputs = [g.add_node("mul", [t, zr])]
    return g, [rand(5, 2), rand(2, 5), rand(10)]


def test_leading_transpose_and_reshape_are_absorbed():
    g, inputs = leading()
    h = fuse(g, inputs)
    (k,) = kernels(h)
    assert body_ops(h, k) == ["dimshuffle", "reshape", "add", "exp", "mul"]
    assert sorted(h.operands(k)) == g.inputs and len(h) == 4


def test_reshape_of_a_view_is_not_absorbed_but_dimshuffle_is():
    g = Graph()
    x, y = g.add_input(T(3, 4)), g.add_input(T(3))
    xt = g.add_node("dimshuffle", [x], {"pattern": (1, 0)})            # a strided view
    r = g.add_node("reshape", [xt], {"shape": (4, 3)})
    s = g.add_node("dimshuffle", [x], {"pattern": (1, 0)})
    g.outputs = [g.add_node("mul", [g.add_node("add", [r, y]), s])]
    h = fuse(g, [rand(3, 4), rand(3)])
    (k,) = kernels(h)
    assert body_ops(h, k) == ["dimshuffle", "add", "mul"]
    assert [h.op(o) for o in h.operands(k)] == ["input", "reshape", "input"]


def test_layout_step_absorbed_and_the_kernel_still_writes_in_place():
    """y has the result's type and is read at the written index: the planners still let the
    kernel overwrite y; x is re-laid out by the absorbed transpose and never overwritten."""
    from tcomp.passes import plan_memory

    g = Graph()
    x, z, w = g.add_input(T(3, 4)), g.add_input(T(4, 3)), g.add_input(T(3, 3))
    xt = g.add_node("dimshuffle", [x], {"pattern": (1, 0)})
    y = g.add_node("dot", [z, w])
    e = g.add_node("tanh", [g.add_node("exp", [g.add_node("add", [xt, y])])])
    g.outputs = [g.add_node("dot", [e, w])]  # e is a workspace buffer (an output is written in caller memory)
    h = fuse(g, [rand(3, 4), rand(4, 3), rand(3, 3)])
    k = next(n for n in kernels(h) if body_ops(h, n)[0] == "dimshuffle")
    assert body_ops(h, k) == ["dimshuffle", "add", "exp", "tanh"]
    assert h.op(h.operands(k)[1]) == "dot"
    assert plan_memory(h).inplace.get(k) == h.operands(k)[1]
    from tcomp.backend.cpu import compile_graph

    assert compile_graph(h)._inplace == {k: h.operands(k)[1]}


def test_layout_node_used_outside_is_not_absorbed():
    g = Graph()
    x, y = g.add_input(T(3, 4)), g.add_input(T(4, 3))
    xt = g.add_node("dimshuffle", [x], {"pattern": (1, 0)})
    g.outputs = [g.add_node("exp", [g.add_node("add", [xt, y])]), xt]
    h = fuse(g, [rand(3, 4), rand(4, 3)])
    (k,) = kernels(h)
    assert body_ops(h, k) == ["add", "exp"] and h.operands(k)[0] == xt


def epilogue_reshape():
    g = Graph()
    x = g.add_input(T("n", 6))
    s = g.add_node("sum", [g.add_node("tanh", [x])], {"axis": (1,)})
    g.outputs = [g.add_node("reshape", [s], {"shape": (-1, 1)})]
    return g, [rand(4, 6)]


def test_trailing_reshape_of_a_reduction_is_the_epilogue():
    g, inputs = epilogue_reshape()
    h = fuse(g, inputs)
    (k,) = kernels(h)
    assert h.outputs == [k] and len(h) == 2
    assert h.attrs(k)["epilogue"] == (("reshape", (("shape", (-1, 1)),)),)


def epilogue_dimshuffle():
    g = Graph()
    x, y = g.add_input(T("n", 6)), g.add_input(T("n", 6))
    p = g.add_node("mul", [g.add_node("exp", [x]), y])
    g.outputs = [g.add_node("dimshuffle", [p], {"pattern": (0, "x", 1)})]
    return g, [rand(3, 6), rand(3, 6)]


def test_trailing_axis_insertion_is_the_epilogue():
    g, inputs = epilogue_dimshuffle()
    h = fuse(g, inputs)
    (k,) = kernels(h)
    assert h.outputs == [k] and h.type(k) == T("n", 1, 6)
    assert h.attrs(k)["epilogue"] == (("dimshuffle", (("pattern", (0, "x", 1)),)),)


@pytest.mark.parametrize("variant", ["transpose", "primary_also_returned"])
def test_no_epilogue_when_order_changes_or_primary_is_needed(variant):
    g = Graph()
    x, y = g.add_input(T(3, 6)), g.add_input(T(3, 6))
    p = g.add_node("mul", [g.add_node("exp", [x]), y])
    if variant == "transpose":
        g.outputs = [g.add_node("dimshuffle", [p], {"pattern": (1, 0)})]
    else:
        g.outputs = [g.add_node("dimshuffle", [p], {"pattern": (0, "x", 1)}), p]
    h = fuse(g, [rand(3, 6), rand(3, 6)])
    (k,) = kernels(h)
    assert h.attrs(k)["epilogue"] == () and h.op(h.outputs[0]) == "dimshuffle"


CASES = {"returned_and_reduced": returned_and_reduced, "two_results": two_results, "siblings": siblings,
         "leading": leading, "epilogue_reshape": epilogue_reshape, "epilogue_dimshuffle": epilogue_dimshuffle}


def test_multi_output_kernel_through_the_pipeline():
    g, inputs = returned_and_reduced()
    h = optimize(g, verify_each=True)
    (k,) = kernels(h)
    assert h.attrs(k)["outputs"] and h.attrs(k)["reduce"] == "sum"
    for w, v in zip(evaluate(g, inputs), evaluate(h, inputs)):
        np.testing.assert_allclose(v, w, rtol=1e-6)


def test_fusion_is_deterministic():
    g, _ = siblings()
    texts = {str(fuse_elementwise(g.copy())) for _ in range(3)}
    assert len(texts) == 1


def _wide_graph(n):
    """n blocks: siblings sharing x, a chain returning every value, reductions of them."""
    g = Graph()
    x = g.add_input(T(8, 4))
    cur, outs = x, []
    for i in range(n):
        outs.append(g.add_node("exp", [g.add_node("add", [x, const(g, float(i % 5))])]))
        cur = g.add_node("tanh", [cur])
        outs.append(cur)
        if i % 3 == 0:
            outs.append(g.add_node("sum", [cur], {"axis": (1,)}))
    g.outputs = outs
    return g


@pytest.mark.slow
def test_fusion_time_is_near_linear():
    import time

    def timed(n):
        g = _wide_graph(n)
        t0 = time.perf_counter()
        fuse_elementwise(g)
        return time.perf_counter() - t0

    # best of 5, the two sizes interleaved so both see the same load (CI runs another test
    # process beside this one; alone the ratio is 12-16)
    small = large = float("inf")
    for _ in range(5):
        small, large = min(small, timed(200)), min(large, timed(2000))
    assert large < 25 * small, (small, large)
    h = fuse_elementwise(_wide_graph(300))
    verify(h)
