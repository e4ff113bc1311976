"""Shared-variable updates written in place by the CPU backend (donated inputs): every
case is compared with the same updates run on the reference backend, and where donation
is unsafe (an output returns the old value, a transposed read, overlapping storages, a swap)
the results must still be right."""
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T


def _pair(make):
    """Build the same function twice (cpu, reference) over separate shared variables."""
    return make("cpu"), make("reference")


def _run_both(make, calls, args=()):
    (fc, sc), (fr, sr) = _pair(make)
    for _ in range(calls):
        oc, orf = fc(*args), fr(*args)
        for a, b in zip(oc, orf):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        for a, b in zip(sc, sr):
            np.testing.assert_allclose(a.get_value(), b.get_value(), rtol=1e-5, atol=1e-6)
    return fc, sc


def test_sgd_updates_write_into_shared_storage():
    rng = np.random.default_rng(0)
    W0 = rng.standard_normal((16, 8)).astype("float32")
    b0 = rng.standard_normal(8).astype("float32")
    x_val = rng.standard_normal((4, 16)).astype("float32")

    def make(backend):
        W, b = tcomp.shared(W0, "W"), tcomp.shared(b0, "b")
        x = T.matrix("x")
        cost = T.sum(T.tanh(T.dot(x, W) + b) ** 2)
        gW, gb = T.grad(cost, [W, b])
        f = tcomp.function([x], [cost], updates=[(W, W - 0.1 * gW), (b, b - 0.1 * gb)], backend=backend)
        return f, (W, b)

    fc, (W, b) = _run_both(make, 3, (x_val,))
    storages = [W.get_value(borrow=True), b.get_value(borrow=True)]
    fc(x_val)
    assert fc.compiled.last_call_memory["donated_updates"] == 2
    assert W.get_value(borrow=True) is storages[0] and b.get_value(borrow=True) is storages[1]


def test_output_of_old_value_blocks_donation():
    def make(backend):
        a = tcomp.shared(np.arange(6, dtype="float32"), "a")
        f = tcomp.function([], [a * 1, a], updates=[(a, a * 2 + 1)], backend=backend)
        return f, (a,)

    fc, _ = _run_both(make, 3)
    assert fc.compiled.last_call_memory["donated_updates"] == 0


def test_swap_updates_stay_correct():
    def make(backend):
        a = tcomp.shared(np.arange(5, dtype="float64"), "a")
        b = tcomp.shared(np.arange(5, dtype="float64") * 10, "b")
        f = tcomp.function([], [], updates=[(a, b + 1), (b, a - 1)], backend=backend)
        return f, (a, b)

    _run_both(make, 4)


def test_transposed_read_of_the_old_value():
    rng = np.random.default_rng(1)
    M0 = rng.standard_normal((6, 6)).astype("float32")

    def make(backend):
        m = tcomp.shared(M0, "m")
        f = tcomp.function([], [], updates=[(m, T.tanh(m + m.T))], backend=backend)
        return f, (m,)

    _run_both(make, 3)


def test_old_value_read_by_a_later_matmul():
    rng = np.random.default_rng(2)
    W0 = rng.standard_normal((8, 8)).astype("float32")
    x_val = rng.standard_normal((3, 8)).astype("float32")

    def make(backend):
        W = tcomp.shared(W0, "W")
        x = T.matrix("x")
        h = T.dot(x, W)
        f = tcomp.function([x], [T.dot(h, W.T), h], updates=[(W, W * 0.5 + 1)], backend=backend)
        return f, (W,)

    _run_both(make, 3, (x_val,))


def test_shared_variables_borrowing_one_array():
    base = np.arange(4, dtype="float32")

    def make(backend):
        arr = base.copy()
        a, b = tcomp.shared(arr, "a", borrow=True), tcomp.shared(arr, "b", borrow=True)
        f = tcomp.function([], [], updates=[(a, a + 1), (b, b * 3)], backend=backend)
        return f, (a, b)

    (fc, (a, b)), (fr, (ra, rb)) = _pair(make)
    if a.get_value(borrow=True) is not b.get_value(borrow=True):
        pytest.skip("shared() copied the borrowed array")
    for _ in range(2):
        fc()
        fr()
        np.testing.assert_array_equal(a.get_value(), ra.get_value())
        np.testing.assert_array_equal(b.get_value(), rb.get_value())
    assert fc.compiled.last_call_memory["donated_updates"] == 0


def test_memory_plan_reports_donation():
    from tcomp.passes import plan_memory

    W = tcomp.shared(np.ones((4, 4), "float32"), "W")
    x = T.matrix("x")
    f = tcomp.function([x], [T.sum(T.dot(x, W))], updates=[(W, W - 0.1 * x[:4, :4])], backend="reference")
    g = f.optimized
    plan = plan_memory(g, donate={1: 1})
    assert plan.donated == {g.outputs[1]: g.inputs[1]}
    assert "donated" in str(plan)
