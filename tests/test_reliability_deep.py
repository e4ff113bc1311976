"""Issue 9, defect 3: deep and wide graphs.

A 5000-step chain ``e = tanh(e) + 1`` used to raise RecursionError in the CPU backend (and
at 250 steps without fusion), and with the limit raised it compiled in quadratic time (one
giant kernel).  Here: nothing recurses on graph depth (these graphs are far deeper than
Python's default recursion limit of 1000), one fused kernel / one inlined expression is
bounded in size, identical kernels are emitted once, and compile time grows linearly.

References are NumPy loops written here (the gradient by hand), or the reference
interpreter for the IR round trips.
"""
from __future__ import annotations

import gc
import sys
import time

import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp import ir

DEPTH = 5000
X = np.linspace(-2.0, 2.0, 37).astype("float32")


def _chain(x, n):
    e = x
    for _ in range(n):
        e = T.tanh(e) + 1
    return e


def _numpy_chain(x, n):
    e = x.astype("float64")
    for _ in range(n):
        e = np.tanh(e) + 1
    return e


def test_recursion_limit_is_below_the_depth():
    # the tests below prove "no recursion on depth" only while the limit is the default one
    assert sys.getrecursionlimit() < DEPTH


def test_deep_chain_forward():
    x = T.vector("x")
    f = tcomp.function([x], _chain(x, DEPTH))
    np.testing.assert_allclose(f(X), _numpy_chain(X, DEPTH), rtol=2e-5, atol=2e-6)


def test_deep_chain_forward_unfused():
    x = T.vector("x")
    f = tcomp.function([x], _chain(x, DEPTH), exclude=["fuse_elementwise"])
    np.testing.assert_allclose(f(X), _numpy_chain(X, DEPTH), rtol=2e-5, atol=2e-6)


def test_deep_chain_gradient():
    """d/dx of sum(e_N) with e_{i+1} = e_i + c tanh(e_i): the product of 1 + c (1 - tanh(e_i)^2)
    stays far from 0 and inf, so every step of the backward chain matters."""
    c = 0.001
    x = T.vector("x")
    e = x
    for _ in range(DEPTH):
        e = e + c * T.tanh(e)
    f = tcomp.function([x], [e, T.grad(e.sum(), x)])
    got_e, got_g = f(X)
    ev, g = X.astype("float64"), np.ones(X.shape)
    ts = []
    for _ in range(DEPTH):
        t = np.tanh(ev)
        ts.append(t)
        ev = ev + c * t
    for t in reversed(ts):
        g = g * (1 + c * (1 - t * t))
    assert g.max() > 100 and g.min() > 1.01  # the test is not vacuous
    np.testing.assert_allclose(got_e, ev, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_g, g, rtol=1e-3)


@pytest.mark.slow
def test_deep_chain_gradient_of_the_issue_chain():
    """The issue's chain: its gradient is a product of 5000 factors 1 - tanh^2 < 0.1 (0 in
    float32 and float64 alike); the point is that it compiles and runs."""
    x = T.vector("x")
    e = _chain(x, DEPTH)
    f = tcomp.function([x], T.grad(e.sum(), x))
    g = np.ones(X.shape)
    ev = X.astype("float64")
    ts = []
    for _ in range(DEPTH):
        ts.append(np.tanh(ev))
        ev = ts[-1] + 1
    for t in reversed(ts):
        g = g * (1 - t * t)
    np.testing.assert_allclose(f(X), g, atol=1e-30)


def test_deep_graph_text_json_hash_interpreter():
    x = T.vector("x")
    e = _chain(x, DEPTH)
    f = tcomp.function([x], e, backend="reference")
    want = _numpy_chain(X, DEPTH)
    for g in (f.traced, f.optimized):  # 10001 nodes deep; 2 * DEPTH / MAX_FUSED_BODY kernels
        ir.verify(g)
        h = ir.structural_hash(g)
        back = ir.parse_graph(ir.format_graph(g))
        assert ir.structural_hash(back) == h
        assert ir.structural_hash(ir.from_json(ir.to_json(g))) == h
        np.testing.assert_allclose(ir.evaluate(back, [X])[0], want, rtol=2e-5, atol=2e-6)
    g = f.optimized
    assert ir.structural_hash(ir.parse_graph(ir.format_graph(g, readable=True))) == g.structural_hash()
    assert f.optimized.structural_hash() != f.traced.structural_hash()
    from tcomp import printing

    assert printing.debugprint(e, file="str", depth=20).count("tanh") == 10  # (the full tree is quadratic text)
    assert "tanh" in printing.pp(e, stage="traced")


def test_fused_kernels_are_bounded():
    from tcomp.passes.fusion import MAX_FUSED_BODY

    x = T.vector("x")
    e = _chain(x, 1000)
    fused = tcomp.function([x], e)
    bodies = [len(fused.optimized.attrs(n)["body"]) for n in fused.optimized.nodes()
              if fused.optimized.op(n) == "fused"]
    assert len(bodies) >= 2000 // MAX_FUSED_BODY
    assert max(bodies) <= MAX_FUSED_BODY + 1  # members plus the inlined constant 1
    program = getattr(fused.compiled, "program", None)
    if program is not None:  # the native program: one kernel per fused body
        assert len(program.kernels) == len(bodies)
    unfused = tcomp.function([x], e, exclude=["fuse_elementwise"])
    np.testing.assert_allclose(unfused(X), fused(X), rtol=1e-6)


def test_thousand_outputs():
    """1000 different small expressions of 8 shared inputs (each pair of inputs under 16
    expression forms), returned as 1000 outputs."""
    xs = [T.vector(f"x{i}") for i in range(8)]
    rng = np.random.default_rng(3)
    vals = [rng.uniform(0.5, 1.5, 11).astype("float32") for _ in xs]
    v64 = [v.astype("float64") for v in vals]
    forms = [  # each written once for T and for NumPy (``M``)
        lambda M, a, b: a + b, lambda M, a, b: a * b - a, lambda M, a, b: M.maximum(a, b) * 2,
        lambda M, a, b: (a - b) ** 2, lambda M, a, b: a / b, lambda M, a, b: M.tanh(a) * b,
        lambda M, a, b: M.exp(-a * b), lambda M, a, b: (a * b).sum(), lambda M, a, b: (a + b).max(),
        lambda M, a, b: M.sqrt(a + b), lambda M, a, b: M.log(a) - b, lambda M, a, b: M.where(a > b, a, -b),
        lambda M, a, b: a * 3 + b * 0.5, lambda M, a, b: M.sin(a) + b, lambda M, a, b: (a - b).mean(),
        lambda M, a, b: abs(a - 1) * b,
    ]
    outs, refs = [], []
    for i in range(1000):
        p, q, k = i % 8, (i // 8) % 8, (i // 64) % 16
        outs.append(forms[k](T, xs[p], xs[q]))
        refs.append(forms[k](np, v64[p], v64[q]))
    f = tcomp.function(xs, outs)
    got = f(*vals)
    assert len(got) == 1000
    for i, (a, r) in enumerate(zip(got, refs)):
        np.testing.assert_allclose(a, r, rtol=3e-5, atol=3e-6, err_msg=f"output {i}")


def _graph(ins, outs, exclude=()):
    from tcomp.compile import optimize
    from tcomp.trace import build_graph

    g = build_graph(ins, outs)
    g = g[0] if isinstance(g, tuple) else g
    return optimize(g, exclude=exclude)[0]


def _mixed(n):
    m, w = T.matrix("m"), T.matrix("w")
    z = m
    for i in range(n):
        k = i % 4
        if k == 0:
            z = T.dot(z, w) * 0.5
        elif k == 1:
            z = T.tanh(z) - z.mean(axis=1, keepdims=True)
        elif k == 2:
            z = T.concatenate([z[:, :2], T.exp(-z[:, 2:] ** 2)], axis=1)
        else:
            z = T.set_subtensor(z[0], z[1] * 0.9).T.T + 0.1
    loss = (z ** 2).sum()
    return [m, w], [loss] + T.grad(loss, [m, w])


@pytest.mark.parametrize("case", ["chain", "chain_unfused", "chain_grad", "mixed", "mixed_unfused"])
def test_kernel_templates_change_nothing(case):
    """Reusing an emitted kernel for a node of the same signature gives exactly the module of
    emitting every kernel (and check mode re-emits each hit and compares)."""
    from tcomp.backend.cpu import templates
    from tcomp.backend.cpu.host_program import HostProgram
    from tcomp.passes.lower_kernels import _Lowering

    x = T.vector("x")
    if case.startswith("chain"):
        e = _chain(x, 400)
        ins, outs = [x], [T.grad(e.sum(), x)] if case == "chain_grad" else [e]
    else:
        ins, outs = _mixed(24)
    g = _graph(ins, outs, ("fuse_elementwise",) if case.endswith("unfused") else ())
    built = {}
    saved = templates.REUSE, templates.CHECK
    try:
        for reuse, check in ((False, False), (True, False), (True, True)):
            templates.REUSE, templates.CHECK = reuse, check
            low = _Lowering(g, None)
            built[reuse, check] = HostProgram(low.finish(), low.g).emit()
    finally:
        templates.REUSE, templates.CHECK = saved
    assert built[True, False] == built[False, False]
    assert built[True, True] == built[False, False]


def test_mixed_deep_graph_matches_reference():
    ins, outs = _mixed(200)
    rng = np.random.default_rng(0)
    mv = rng.standard_normal((3, 4)).astype("float32")
    wv = (rng.standard_normal((4, 4)) * 0.5).astype("float32")
    want = tcomp.function(ins, outs, backend="reference")(mv, wv)
    got = tcomp.function(ins, outs)(mv, wv)
    for a, r in zip(got, want):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5)


@pytest.fixture
def no_compile_cache(monkeypatch):
    """Compile-time ratios compile every graph from scratch: with the persistent cache on (the
    native program stores its object code), a repeated ``small`` case would be a cache hit."""
    monkeypatch.setattr(tcomp.config, "cache", False)  # (undone to the value it had: same effect)


def _compile_seconds(build, repeats=1):
    best = float("inf")
    for _ in range(repeats):
        ins, out = build()
        # (the previous repeat's function must be gone: functions of one program share its loaded
        # code in-process, whatever the compile cache says, and a Function is freed by the cyclic
        # collector, which compiles pause)
        gc.collect()
        t = time.perf_counter()
        tcomp.function(ins, out)
        best = min(best, time.perf_counter() - t)
    return best


def _issue_chain(n, grad=False):
    def build():
        x = T.vector("x")
        e = _chain(x, n)
        return [x], T.grad(e.sum(), x) if grad else e
    return build


@pytest.mark.parametrize("grad", [False, True], ids=["forward", "gradient"])
def test_compile_time_is_linear_in_depth(grad, no_compile_cache):
    """4x the steps must cost well under 16x (quadratic) the compile time; 8x leaves room
    for a noisy shared machine."""
    _compile_seconds(_issue_chain(50, grad))  # warm up (mathlib, JIT helper)
    small = _compile_seconds(_issue_chain(250 if grad else 1000, grad), repeats=2)
    large = _compile_seconds(_issue_chain(1000 if grad else 4000, grad))
    assert large < 8 * small, (small, large)


def _irregular_chain(n, seed=0):
    """A chain whose steps differ (op and constant from a fixed-seed generator): no two fused
    kernels are alike, so every kernel is emitted and optimized by LLVM."""
    def build():
        rng = np.random.default_rng(seed)
        x = T.vector("x")
        e = x
        for _ in range(n):
            c = float(rng.uniform(0.1, 0.9))
            k = int(rng.integers(4))
            e = T.tanh(e) + c if k == 0 else T.sin(e) * c if k == 1 else e * c + T.exp(-e * e) if k == 2 \
                else T.sigmoid(e) - c
        return [x], e
    return build


@pytest.mark.slow
def test_compile_time_is_linear_for_distinct_kernels(no_compile_cache):
    _compile_seconds(_irregular_chain(50))
    small = _compile_seconds(_irregular_chain(300), repeats=2)
    large = _compile_seconds(_irregular_chain(1200))
    assert large < 8 * small, (small, large)


def _twin_kinds(a, b, i, k, t4, w4):
    """Two copies of one computation per kernel kind (so each kernel has a twin with the same
    signature) and variants that differ only in attributes or constants (which must not)."""
    from tcomp.random import RandomStreams

    srng = RandomStreams(7)
    outs = []
    for m, s in ((a, 1.0), (b, 1.0), (a, 2.0)):
        outs += [
            T.dot(m, m.T) * s, T.nnet.softmax(m * s), T.log_softmax(m + s, axis=0), T.logsumexp(m * s, axis=1),
            T.concatenate([m, m * s], axis=1), T.stack([m, m + s]), m[1:3] * s, m[i] + s, m[[0, 2]] * s,
            T.set_subtensor(m[1], m[0] * s), T.inc_subtensor(m[:, [1, 2]], m[:, :2] * s),
            T.reshape(m.T * s, (m.shape[0] * 4,)), m.T * s + T.tanh(m.T), T.arange(k) * s,
            m.sum(axis=0) * s, m.max(axis=1), m.argmax(axis=1), m.mean() * s, (m * s).prod(axis=0),
            T.nnet.conv2d(t4 * s, w4), T.nnet.pool_2d(t4 * s, ws=(2, 2)),
            srng.uniform(m.shape) * s,
        ]
    return outs


def test_kernel_templates_on_every_kind():
    """Check mode re-emits every template hit and compares code and parameter slots; the
    values must match the reference interpreter (variants differing in a constant or an
    attribute must not share a kernel)."""
    from tcomp.backend.cpu import templates

    a, b, t4, w4 = T.matrix("a"), T.matrix("b"), T.tensor4("t4"), T.tensor4("w4")
    i, k = T.iscalar("i"), T.iscalar("k")
    ins = [a, b, i, k, t4, w4]
    outs = _twin_kinds(a, b, i, k, t4, w4)
    rng = np.random.default_rng(1)
    vals = [rng.standard_normal((4, 4)).astype("float32"), rng.standard_normal((4, 4)).astype("float32"),
            np.int32(2), np.int32(5), rng.standard_normal((2, 3, 6, 6)).astype("float32"),
            rng.standard_normal((2, 3, 3, 3)).astype("float32")]
    want = tcomp.function(ins, outs, backend="reference")(*vals)
    saved = templates.CHECK
    try:
        templates.CHECK = True
        checked = tcomp.function(ins, outs)(*vals)
    finally:
        templates.CHECK = saved
    got = tcomp.function(ins, outs)(*vals)
    per_copy = len(outs) // 3
    for j, (x, y, r) in enumerate(zip(got, checked, want)):
        if j % per_copy == per_copy - 1:  # a random stream: each function draws afresh
            assert x.shape == r.shape and 0 <= x.min() and x.max() < 2 * (1 + j // per_copy)
            continue
        np.testing.assert_array_equal(x, y, err_msg=f"output {j}")
        np.testing.assert_allclose(x, r, rtol=1e-4, atol=1e-5, err_msg=f"output {j}")


def test_many_pointer_kernels_on_threads():
    """Kernels with dozens of results and operands (a deep chain's gradient) called through
    their slot tables, on one and on two threads: same bits, NumPy's values."""
    c = 0.01
    x = T.vector("x")
    e = x
    for _ in range(300):
        e = e + c * T.tanh(e)
    f = tcomp.function([x], [e, T.grad(e.sum(), x)])
    prog = f.compiled.prog
    assert max(len(prog.results(n)) + len(f.compiled._leaves[n]) for n in prog.kernels()) > 32
    xv = np.linspace(-3, 3, 1 << 18).astype("float32")
    before = tcomp.config.num_threads
    try:
        tcomp.config.num_threads = 1
        one = f(xv)
        tcomp.config.num_threads = 2
        two = f(xv)
    finally:
        tcomp.config.num_threads = before
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    ev, g, ts = xv.astype("float64"), np.ones(xv.shape), []
    for _ in range(300):
        ts.append(np.tanh(ev))
        ev = ev + c * ts[-1]
    for t in reversed(ts):
        g = g * (1 + c * (1 - t * t))
    np.testing.assert_allclose(one[0], ev, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(one[1], g, rtol=1e-3)


@pytest.mark.slow
def test_thousand_outputs_distinct_constants():
    """1000 outputs that differ by a constant: no two kernels share code, so this is LLVM's
    time for ~300 distinct kernels."""
    x, y = T.vector("x"), T.vector("y")
    xv = np.linspace(-1.5, 1.5, 11).astype("float32")
    yv = np.linspace(0.5, 2.0, 11).astype("float32")
    x64, y64 = xv.astype("float64"), yv.astype("float64")
    outs, refs = [], []
    for i in range(1000):
        c = float(np.float32(0.001 * (i + 1)))
        form = [lambda M, a, b: M.sin(a * c) + b, lambda M, a, b: M.exp(-a * a * c) * b,
                lambda M, a, b: M.tanh(a - c) * (b + c), lambda M, a, b: (a + c) ** 2 - b,
                lambda M, a, b: (a * b + c).sum()][i % 5]
        outs.append(form(T, x, y))
        refs.append(form(np, x64, y64))
    got = tcomp.function([x, y], outs)(xv, yv)
    for i, (a, r) in enumerate(zip(got, refs)):
        np.testing.assert_allclose(a, r, rtol=3e-5, atol=3e-6, err_msg=f"output {i}")
