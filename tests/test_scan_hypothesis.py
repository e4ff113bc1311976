"""Random loop bodies through the whole pipeline (scan_opt, fusion inside the body) against
the same computation unrolled step by step into a plain graph evaluated by the reference
interpreter; the gradients (BPTT) against the unrolled graph's gradients.

A body is a random expression tree over the step's leaves (sequence rows at their taps,
state values at their taps, a non-sequence, an outer value captured implicitly, a
constant); the new state is ``tanh`` of one tree (bounded, so long loops stay finite) and a
second tree is an output that is not fed back.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tcomp
import tcomp.tensor as T
from tcomp.ir import evaluate
from tcomp.trace import build_graph

UNARY = ["tanh", "sin", "cos", "sigmoid", "neg"]
BINARY = ["add", "sub", "mul", "maximum"]
LEAVES = ["x0", "x1", "h1", "h2", "w", "v", "c"]

trees = st.recursive(st.sampled_from(LEAVES),
                     lambda kids: st.one_of(st.tuples(st.sampled_from(UNARY), kids),
                                            st.tuples(st.sampled_from(BINARY), kids, kids)),
                     max_leaves=6)


def build(tree, env):
    if isinstance(tree, str):
        return env[tree]
    if len(tree) == 2:
        x = build(tree[1], env)
        return {"tanh": T.tanh, "sin": T.sin, "cos": T.cos, "sigmoid": T.nnet.sigmoid, "neg": lambda a: -a}[tree[0]](x)
    a, b = build(tree[1], env), build(tree[2], env)
    return {"add": a + b, "sub": a - b, "mul": a * b, "maximum": T.maximum(a, b)}[tree[0]]


@pytest.fixture(autouse=True, params=["reference", "cpu"])
def backend(request, monkeypatch):
    """The reference backend, and the cpu backend's native loops (passes/lower_loops.py)."""
    monkeypatch.setattr(tcomp.config, "backend", request.param)
    monkeypatch.setattr(tcomp.config, "native_program", True)


#: TCOMP_SCAN_EXAMPLES=400 for a longer search (15 per backend keeps the README suite under its budget)
@settings(max_examples=int(os.environ.get("TCOMP_SCAN_EXAMPLES", "15")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(state_tree=trees, out_tree=trees, steps=st.integers(1, 5), two_state_taps=st.booleans(),
       two_seq_taps=st.booleans(), last_only=st.booleans(), use_out=st.booleans(), backwards=st.booleans(),
       branchy=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_random_body_matches_unrolled(state_tree, out_tree, steps, two_state_taps, two_seq_taps, last_only, use_out,
                                      backwards, branchy, seed):
    """``branchy``: the new state is an ``ifelse`` between the two trees inside the body, and
    ``T.switch`` (which computes both) in the unrolled graph."""
    rng = np.random.default_rng(seed)
    n = 3
    x, h0, w, v = T.dmatrix("x"), T.dmatrix("h0"), T.dvector("w"), T.dvector("v")
    lead = 1 if two_seq_taps else 0
    L = 2 if two_state_taps else 1
    vv = T.exp(v * 0.5)  # an outer value the body reads without being passed it

    def step(*args):
        args = list(args)
        x1 = args.pop(0) if two_seq_taps else None
        x0 = args.pop(0)
        h2 = args.pop(0) if two_state_taps else None
        h1 = args.pop(0)
        (wv,) = args
        env = {"x0": x0, "x1": x0 if x1 is None else x1, "h1": h1, "h2": h1 if h2 is None else h2, "w": wv,
               "v": vv, "c": T.constant(0.5, dtype="float64")}
        new = T.tanh(build(state_tree, env)) * T.ones_like(h1)
        out = build(out_tree, env) * T.ones_like(h1)
        if branchy:
            new = tcomp.ifelse.ifelse(T.gt(T.sum(x0), 0), new, T.tanh(out))
        return [new, out]

    (hs, ys), _ = tcomp.scan(step, sequences=dict(input=x, taps=[-1, 0] if two_seq_taps else [0]),
                             outputs_info=[dict(initial=h0, taps=[-2, -1]) if two_state_taps else h0[0], None],
                             non_sequences=w, go_backwards=backwards)
    result = hs[-1] if last_only else hs
    if use_out:
        result = result.sum() + (ys * 2).sum()
    # the same computation unrolled into a plain graph
    xs = x[::-1] if backwards else x
    hist = [h0[i] for i in range(L)]
    h_rows, y_rows = [], []
    for t in range(steps):
        env = {"x0": xs[t + lead], "x1": xs[t], "h1": hist[-1], "h2": hist[-2] if two_state_taps else hist[-1],
               "w": w, "v": vv, "c": T.constant(0.5, dtype="float64")}
        h_new = T.tanh(build(state_tree, env)) * T.ones_like(hist[-1])
        y_rows.append(build(out_tree, env) * T.ones_like(hist[-1]))
        if branchy:
            h_new = T.switch(T.gt(T.sum(env["x0"]), 0), h_new, T.tanh(y_rows[-1]))
        h_rows.append(h_new)
        hist.append(h_new)
    unrolled = h_rows[-1] if last_only else T.stack(h_rows)
    if use_out:
        unrolled = unrolled.sum() + (T.stack(y_rows) * 2).sum()
    values = [rng.standard_normal((steps + lead, n)), rng.standard_normal((L, n)), rng.standard_normal(n),
              rng.standard_normal(n)]
    inputs = [x, h0, w, v]
    f = tcomp.function(inputs, result, on_unused_input="ignore")
    ref_graph, _, _ = build_graph(inputs, [unrolled])
    want = evaluate(ref_graph, values)[0]
    np.testing.assert_allclose(f(*values), want, rtol=1e-9, atol=1e-12)
    # gradients: BPTT through the scan vs the unrolled graph's
    proj = T.constant(rng.standard_normal(np.shape(want)))
    cost_s, cost_u = (result * proj).sum(), (unrolled * proj).sum()
    gs = tcomp.function(inputs, T.grad(cost_s, inputs, disconnected_inputs="ignore"), on_unused_input="ignore")
    gu_graph, _, _ = build_graph(inputs, T.grad(cost_u, inputs, disconnected_inputs="ignore"))
    for got, exp in zip(gs(*values), evaluate(gu_graph, values)):
        np.testing.assert_allclose(got, exp, rtol=1e-8, atol=1e-10)
