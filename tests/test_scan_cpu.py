"""The cpu backend's native loops and branches (``passes/lower_loops.py``,
``tcomp/backend/cpu/host_loops.py``, ``control_function.py``): the corners that
tests/test_scan.py and test_ifelse.py (run on both backends) do not reach, each compared
with NumPy written here or with the reference backend.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.ifelse import ifelse
from tcomp.passes import kernel_program as kpm
from tcomp.passes.lower_kernels import lower_kernels


@pytest.fixture(autouse=True)
def native(monkeypatch):
    monkeypatch.setattr(tcomp.config, "native_program", True)


def both(inputs, outputs, **kw):
    return (tcomp.function(inputs, outputs, backend="cpu", **kw),
            tcomp.function(inputs, outputs, backend="reference", **kw))


def test_loop_kernel_holds_the_nested_program_in_text_json_and_hash():
    x, h0 = T.matrix("x"), T.vector("h0")
    hs, _ = tcomp.scan(lambda xt, h: T.tanh(h * 2 + xt), sequences=x, outputs_info=h0)
    y = ifelse(T.gt(x.sum(), 0), h0 * 2, h0 - 1)
    f = tcomp.function([x, h0], [hs, y], backend="cpu")
    kp = lower_kernels(f.optimized)
    kinds = [k.kind for k in kp.kernels]
    assert "loop" in kinds and "branch" in kinds
    loop = next(k for k in kp.kernels if k.kind == "loop")
    body = dict(loop.attrs)["program"]
    assert isinstance(body, kpm.KernelProgram) and any(k.op == "fused" for k in body.kernels)
    text = str(kp)
    assert "program:" in text and "then:" in text and "else:" in text and body.hash[:16] in text
    assert kpm.from_json(kp.to_json()) == kp
    assert kpm.program_hash(kpm.from_json(kp.to_json())) == kp.hash
    # a different body gives a different outer hash
    hs2, _ = tcomp.scan(lambda xt, h: T.tanh(h * 3 + xt), sequences=x, outputs_info=h0)
    g2 = tcomp.function([x, h0], [hs2, y], backend="reference").optimized
    assert lower_kernels(g2).hash != kp.hash


def test_deep_taps_last_value_ring_and_zero_steps():
    """taps [-3, -1] with only the last value used (a ring of 4 rows), for 0..6 steps."""
    h0, n = T.matrix("h0"), T.iscalar("n")
    hs, _ = tcomp.scan(lambda a, c: 0.5 * a + c * c, outputs_info=dict(initial=h0, taps=[-3, -1]), n_steps=n)
    f, r = both([h0, n], hs[-1])
    assert any(k.kind == "loop" and dict(k.attrs)["store"] == ("last",) for k in lower_kernels(f.optimized).kernels)
    init = np.array([[0.1, 0.2], [0.3, -0.4], [0.5, 0.6]], "float32")
    for steps in range(7):
        hist = list(init)
        for _ in range(steps):
            hist.append(0.5 * hist[-3] + hist[-1] * hist[-1])
        np.testing.assert_allclose(f(init, steps), hist[-1], rtol=1e-6)
        np.testing.assert_allclose(f(init, steps), r(init, steps), rtol=1e-6)


def test_sequence_taps_backwards_and_strided_sequences():
    x = T.matrix("x")
    y, _ = tcomp.scan(lambda a, b: a * 2 - b, sequences=dict(input=x.T, taps=[-2, 0]), go_backwards=True)
    f, r = both([x], y)
    xv = np.arange(12, dtype="float32").reshape(3, 4)
    xs = xv.T[::-1]
    want = np.stack([xs[t] * 2 - xs[t + 2] for t in range(len(xs) - 2)])
    np.testing.assert_allclose(f(xv), want)
    np.testing.assert_allclose(f(xv), r(xv))


def test_nitsot_outputs_and_zero_steps_errors_match_the_reference():
    x = T.matrix("x")
    s, _ = tcomp.scan(lambda row: row.sum(), sequences=x)            # a static () row
    m, _ = tcomp.scan(lambda row: row * 2, sequences=x)              # a ?-sized row
    f, r = both([x], [s, m])
    xv = np.arange(6, dtype="float32").reshape(2, 3)
    for got, want in zip(f(xv), [xv.sum(1), xv * 2]):
        np.testing.assert_allclose(got, want)
    f1, r1 = both([x], s)
    assert f1(np.zeros((0, 3), "float32")).shape == (0,)
    f2, r2 = both([x], m)
    with pytest.raises(ValueError, match="ran zero steps") as a:
        f2(np.zeros((0, 3), "float32"))
    with pytest.raises(ValueError) as b:
        r2(np.zeros((0, 3), "float32"))
    assert str(a.value) in str(b.value)


def test_body_index_error_names_the_step_like_the_reference():
    x, idx = T.vector("x"), T.ivector("idx")
    y, _ = tcomp.scan(lambda i, x: x[i] * 2, sequences=idx, non_sequences=x)
    f, r = both([x, idx], y)
    xv = np.array([1.0, 2.0, 3.0], "float32")
    np.testing.assert_allclose(f(xv, np.array([2, 0, -1], "int32")), [6.0, 2.0, 6.0])
    bad = np.array([0, 1, 7], "int32")
    with pytest.raises(IndexError) as a:
        f(xv, bad)
    with pytest.raises(IndexError) as b:
        r(xv, bad)
    assert "scan step 2" in str(a.value) and str(a.value) == str(b.value)


def test_recurrent_output_of_another_shape_is_refused_before_the_loop():
    h = T.vector("h")
    hs, _ = tcomp.scan(lambda a: T.concatenate([a, a]), outputs_info=h, n_steps=2)
    f, r = both([h], hs)
    with pytest.raises(ValueError, match="recurrent output 0 has shape") as a:
        f(np.ones(2, "float32"))
    with pytest.raises(ValueError) as b:
        r(np.ones(2, "float32"))
    assert str(a.value) == str(b.value)


def test_until_results_as_outputs_and_read_inside_the_graph():
    a, lim = T.scalar("a"), T.scalar("lim")
    ps, _ = tcomp.scan(lambda p: (p * 2, tcomp.until(p * 2 > lim)), outputs_info=a, n_steps=50)
    f, r = both([a, lim], ps)
    g, q = both([a, lim], [ps.sum(), ps.shape[0]])
    for av, lv in [(1.0, 40.0), (1.0, 0.5), (1.0, 1e30)]:
        want, p = [], av
        for _ in range(50):
            p *= 2
            want.append(p)
            if p > lv:
                break
        np.testing.assert_allclose(f(np.float32(av), np.float32(lv)), want, rtol=1e-6)
        total, count = g(np.float32(av), np.float32(lv))
        assert count == len(want)
        np.testing.assert_allclose(total, sum(want), rtol=1e-6)


def test_value_dependent_body_plans_per_step():
    """A body whose slice bounds come from the step's sequence value (the nested plan runs
    every step) and an output whose shape would depend on it (refused)."""
    x, idx = T.vector("x"), T.ivector("idx")
    y, _ = tcomp.scan(lambda i, x: x[i:i + 2].sum(), sequences=idx, non_sequences=x)
    f, r = both([x, idx], y)
    xv, iv = np.arange(5, dtype="float32"), np.array([0, 3, 4, 1], "int32")
    np.testing.assert_allclose(f(xv, iv), [xv[i:i + 2].sum() for i in iv])
    z, _ = tcomp.scan(lambda i, x: x[:i], sequences=idx, non_sequences=x)
    with pytest.raises(TypeError, match="depends on values computed inside the loop"):
        tcomp.function([x, idx], z, backend="cpu")


def test_ifelse_branches_of_different_shapes():
    x, c = T.vector("x"), T.iscalar("c")
    y = ifelse(T.gt(c, 0), x[:2], x)                     # the condition is an input: the plan loads it
    f, r = both([x, c], y)
    xv = np.arange(5, dtype="float32")
    np.testing.assert_allclose(f(xv, 1), xv[:2])
    np.testing.assert_allclose(f(xv, 0), xv)
    z = ifelse(T.gt(x.sum(), 3), x[:2], x * 2)           # computed by a kernel: a two-stage program
    g, q = both([x], z)
    np.testing.assert_allclose(g(xv), xv[:2])
    np.testing.assert_allclose(g(-xv), -xv * 2)


def test_shared_updates_returned_from_scan():
    acc = tcomp.shared(np.float32(0.0), "acc")
    x = T.vector("x")
    ys, upd = tcomp.scan(lambda v: (v * 2, {acc: acc + v}), sequences=x)
    f = tcomp.function([x], ys, updates=upd, backend="cpu")
    f(np.array([1, 2, 3], "float32"))
    f(np.array([4], "float32"))
    assert float(acc.get_value()) == 10.0


def test_bptt_on_cpu_matches_numpy():
    from tcomp.tools import bench_scan

    rows = bench_scan.rows(quick=True, repeat=1, steps=8)   # checks tcomp (and jax) against NumPy first
    assert [r["case"] for r in rows] == ["scan: Elman RNN forward", "scan: Elman RNN fwd+grad"]
    assert all(r["max_err"] < 1e-3 and r["tcomp_ms"] > 0 for r in rows)
    assert "us/step" in bench_scan.format_scan_rows(rows)[0]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU pinning is Linux-only")
def test_bench_scan_rows_measured_in_a_process_pinned_to_the_thread_count():
    from tcomp.tools import bench_scan

    old = tcomp.config.num_threads
    tcomp.config.num_threads = 1
    try:
        rows = bench_scan.rows(quick=True, repeat=1, steps=8, isolate=True)
    finally:
        tcomp.config.num_threads = old
    assert [r["threads"] for r in rows] == [1, 1] and [r["cpus"] for r in rows] == [1, 1]


def test_kernel_interpreter_runs_loops_and_branches_like_the_reference():
    """passes/kernel_interpreter.py over the same kernel programs (rings, taps, backwards
    sequences, until's count, branches): outputs equal the reference interpreter's."""
    from tcomp.ir import evaluate
    from tcomp.passes.kernel_interpreter import run_program

    x, h0, lim = T.matrix("x"), T.matrix("h0"), T.scalar("lim")
    hs, _ = tcomp.scan(lambda a, b, c, d: T.tanh(a + b) * c + d, sequences=dict(input=x, taps=[-1, 0]),
                       outputs_info=dict(initial=h0, taps=[-2, -1]), go_backwards=True)
    last, _ = tcomp.scan(lambda a, c, d: c * 0.5 + d * a, sequences=x, outputs_info=dict(initial=h0, taps=[-2, -1]))
    ps, _ = tcomp.scan(lambda p: (p * 2, tcomp.until(p.sum() > lim)), outputs_info=h0[0], n_steps=20)
    br = ifelse(T.gt(x.sum(), 0), x * 2, x - 1)
    rng = np.random.default_rng(0)
    vals = [rng.standard_normal((5, 3)).astype("float32"), rng.standard_normal((2, 3)).astype("float32"),
            np.float32(30.0)]
    g = tcomp.function([x, h0, lim], [hs, last[-1], ps, br], backend="reference").optimized
    want = evaluate(g, vals)
    got = run_program(lower_kernels(g), vals)
    count = int(got[-1])
    assert count == len(want[2])
    got[2] = got[2][:count]
    for a, b in zip(got[:4], want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_until_inside_a_body_is_refused_and_until_after_a_staged_value():
    x = T.vector("x")

    def outer(v):
        inner, _ = tcomp.scan(lambda p: (p * 2, tcomp.until(p > 4)), outputs_info=v, n_steps=10)
        return inner.sum()
    y, _ = tcomp.scan(outer, sequences=x)
    with pytest.raises(TypeError, match="until.*inside a loop"):
        tcomp.function([x], y, backend="cpu")
    # an until loop whose n_steps only a kernel computes (a two-stage program), its result an output
    a = T.scalar("a")
    n = T.cast(T.sum(x), "int64")
    ps, _ = tcomp.scan(lambda p: (p + 1, tcomp.until(p + 1 > a)), outputs_info=T.constant(np.float32(0)),
                       n_steps=n)
    f, r = both([x, a], ps)
    xv = np.array([3.0, 4.0], "float32")
    for av in (2.5, 100.0):
        np.testing.assert_allclose(f(xv, np.float32(av)), r(xv, np.float32(av)))
