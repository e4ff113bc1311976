"""``tcomp.scan`` (the ``"scan"`` op): Theano's documented examples with only the import
changed, recurrent networks trained through it, BPTT against finite differences, the IR
forms of nested graphs, and the ``scan_opt`` rewrites.  Every test runs on the reference
backend and on the cpu backend (native loops: ``passes/lower_loops.py``).

Expected values come from NumPy loops written here, from Theano's documentation, or from
finite differences; never from tcomp itself.
"""
from __future__ import annotations

import numpy as np
import pytest

import tcomp as theano  # Theano's examples below run with only this import changed
import tcomp.tensor as T
from tcomp.ir import evaluate, format_graph, from_json, parse_graph, to_json, verify
from tcomp.ir.ops.control import Body
from tcomp.testing import verify_grad
from tcomp.trace import build_graph


@pytest.fixture(autouse=True, params=["reference", "cpu"])
def backend(request, monkeypatch):
    """Every test runs on the reference backend and on the cpu backend's native loops."""
    monkeypatch.setattr(theano.config, "backend", request.param)
    monkeypatch.setattr(theano.config, "native_program", True)
    return request.param


def _scan_nodes(graph):
    return [n for n in graph.nodes() if graph.op(n) == "scan"]


# -- Theano's documented examples (doc/library/scan.txt, doc/tutorial/gradients.txt) --------

def test_power_by_looping():
    k = T.iscalar("k")
    A = T.vector("A")
    result, updates = theano.scan(fn=lambda prior_result, A: prior_result * A, outputs_info=T.ones_like(A),
                                  non_sequences=A, n_steps=k)
    final_result = result[-1]
    power = theano.function(inputs=[A, k], outputs=final_result, updates=updates)
    np.testing.assert_allclose(power(range(10), 2), np.arange(10.0) ** 2)
    np.testing.assert_allclose(power(range(10), 4), np.arange(10.0) ** 4)
    # "scan is smart enough to notice this and not waste memory saving them"
    (node,) = _scan_nodes(power.optimized)
    assert power.optimized.attrs(node)["store"] == ("last",)


def test_polynomial():
    coefficients = theano.tensor.vector("coefficients")
    x = T.scalar("x")
    max_coefficients_supported = 10000
    components, updates = theano.scan(fn=lambda coefficient, power, free_variable:
                                      coefficient * (free_variable ** power),
                                      outputs_info=None,
                                      sequences=[coefficients, theano.tensor.arange(max_coefficients_supported)],
                                      non_sequences=x)
    polynomial = components.sum()
    calculate_polynomial = theano.function(inputs=[coefficients, x], outputs=polynomial)
    test_coefficients = np.asarray([1, 0, 2], dtype=np.float32)
    assert calculate_polynomial(test_coefficients, 3) == pytest.approx(1.0 * (3 ** 0) + 0.0 * (3 ** 1) + 2.0 * 3 ** 2)


def test_accumulation_into_a_scalar():
    up_to = T.iscalar("up_to")

    def accumulate_by_adding(arange_val, sum_to_date):
        return sum_to_date + arange_val
    seq = T.arange(up_to)
    outputs_info = T.as_tensor_variable(np.asarray(0, seq.dtype))
    scan_result, scan_updates = theano.scan(fn=accumulate_by_adding, outputs_info=outputs_info, sequences=seq)
    triangular_sequence = theano.function(inputs=[up_to], outputs=scan_result)
    np.testing.assert_array_equal(triangular_sequence(15), [n * (n + 1) // 2 for n in range(15)])


def test_set_value_at_position():
    location = T.imatrix("location")
    values = T.vector("values")
    output_model = T.matrix("output_model")

    def set_value_at_position(a_location, a_value, output_model):
        zeros = T.zeros_like(output_model)
        zeros_subtensor = zeros[a_location[0], a_location[1]]
        return T.set_subtensor(zeros_subtensor, a_value)

    result, updates = theano.scan(fn=set_value_at_position, outputs_info=None, sequences=[location, values],
                                  non_sequences=output_model)
    assign_values_at_positions = theano.function(inputs=[location, values, output_model], outputs=result)
    test_locations = np.asarray([[1, 1], [2, 3]], dtype=np.int32)
    test_values = np.asarray([42, 50], dtype=np.float32)
    want = np.zeros((2, 5, 5), np.float32)
    want[0, 1, 1], want[1, 2, 3] = 42, 50
    np.testing.assert_array_equal(assign_values_at_positions(test_locations, test_values, np.zeros((5, 5), "f4")),
                                  want)


def test_rnn_with_several_taps():
    rng = np.random.default_rng(0)
    n_in, n_hid, n_out = 2, 3, 2
    mats = {k: theano.shared(rng.standard_normal(s).astype("float32") * 0.5, k) for k, s in
            [("W", (n_hid, n_hid)), ("W_in_1", (n_in, n_hid)), ("W_in_2", (n_in, n_hid)),
             ("W_feedback", (n_out, n_hid)), ("W_out", (n_hid, n_out))]}
    W, W_in_1, W_in_2, W_feedback, W_out = mats.values()

    def oneStep(u_tm4, u_t, x_tm3, x_tm1, y_tm1, W, W_in_1, W_in_2, W_feedback, W_out):  # noqa: N802
        x_t = T.tanh(theano.dot(x_tm1, W) + theano.dot(u_t, W_in_1) + theano.dot(u_tm4, W_in_2)
                     + theano.dot(y_tm1, W_feedback))
        y_t = theano.dot(x_tm3, W_out)
        return [x_t, y_t]

    u = T.matrix()
    x0 = T.matrix()
    y0 = T.vector()
    ([x_vals, y_vals], updates) = theano.scan(fn=oneStep, sequences=dict(input=u, taps=[-4, -0]),
                                              outputs_info=[dict(initial=x0, taps=[-3, -1]), y0],
                                              non_sequences=[W, W_in_1, W_in_2, W_feedback, W_out])
    f = theano.function([u, x0, y0], [x_vals, y_vals], updates=updates)
    uv = rng.standard_normal((9, n_in)).astype("float32")
    x0v = rng.standard_normal((3, n_hid)).astype("float32")
    y0v = rng.standard_normal(n_out).astype("float32")
    got_x, got_y = f(uv, x0v, y0v)
    m = {k: v.get_value() for k, v in mats.items()}
    xs, ys = list(x0v), [y0v]
    for t in range(4, 9):  # u[0] plays u[-4]: the loop starts at u[4]
        x_t = np.tanh(xs[-1] @ m["W"] + uv[t] @ m["W_in_1"] + uv[t - 4] @ m["W_in_2"] + ys[-1] @ m["W_feedback"])
        ys.append(xs[-3] @ m["W_out"])
        xs.append(x_t)
    np.testing.assert_allclose(got_x, np.array(xs[3:]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_y, np.array(ys[1:]), rtol=1e-5, atol=1e-6)


def test_gibbs_sampling_draws_fresh_numbers_per_step():
    rng = np.random.default_rng(1)
    n_vis, n_hid = 64, 8
    W = theano.shared(np.zeros((n_vis, n_hid), theano.config.floatX))
    bvis = theano.shared(np.zeros(n_vis, theano.config.floatX))
    bhid = theano.shared(np.zeros(n_hid, theano.config.floatX))
    trng = T.shared_randomstreams.RandomStreams(1234)

    def OneStep(vsample):  # noqa: N802
        hmean = T.nnet.sigmoid(theano.dot(vsample, W) + bhid)
        hsample = trng.binomial(size=hmean.shape, n=1, p=hmean)
        vmean = T.nnet.sigmoid(theano.dot(hsample, W.T) + bvis)
        return trng.binomial(size=vsample.shape, n=1, p=vmean, dtype=theano.config.floatX)

    sample = theano.tensor.vector()
    values, updates = theano.scan(OneStep, outputs_info=sample, n_steps=10)
    gibbs10 = theano.function([sample], values[-1], updates=updates)
    chain = theano.function([sample], values, updates=updates)
    v0 = (rng.random(n_vis) < 0.5).astype("float32")
    steps = chain(v0)
    assert steps.shape == (10, n_vis) and set(np.unique(steps)) <= {0.0, 1.0}
    # p = 0.5 everywhere: every step draws new numbers (64 equal coin flips would be 2**-64)
    assert all(not np.array_equal(steps[t], steps[t + 1]) for t in range(9))
    assert 0.3 < steps.mean() < 0.7
    a, b = gibbs10(v0), gibbs10(v0)
    assert not np.array_equal(a, b), "the updates must advance the random stream between calls"
    # a deterministic chain (saturated probabilities) against NumPy
    W.set_value(np.full((n_vis, n_hid), 0.0, "float32"))
    bhid.set_value(np.full(n_hid, 50.0, "float32"))  # every hidden unit on
    bvis.set_value(np.where(np.arange(n_vis) % 2 == 0, 50.0, -50.0).astype("float32"))
    np.testing.assert_array_equal(gibbs10(v0), (np.arange(n_vis) % 2 == 0).astype("float32"))


def test_shared_variable_updated_inside_the_loop():
    a = theano.shared(1)
    values, updates = theano.scan(lambda: {a: a + 1}, n_steps=10)
    b = a + 1
    c = updates[a] + 1
    f = theano.function([], [b, c], updates=updates)
    assert [int(v) for v in f()] == [2, 12] and int(a.get_value()) == 11
    assert [int(v) for v in f()] == [12, 22] and int(a.get_value()) == 21
    a.set_value(1)
    g = theano.function([], [b, c])  # without the updates a never changes
    assert [int(v) for v in g()] == [2, 12] and [int(v) for v in g()] == [2, 12] and int(a.get_value()) == 1


def test_shared_accumulator_and_output():
    total = theano.shared(np.float32(0.0), "total")
    x = T.vector("x")
    squares, updates = theano.scan(lambda v: (v * v, {total: total + v}), sequences=x)
    f = theano.function([x], squares, updates=updates)
    xv = np.array([1.0, 2.0, 3.0], "float32")
    np.testing.assert_allclose(f(xv), xv ** 2)
    assert float(total.get_value()) == 6.0
    f(xv)
    assert float(total.get_value()) == 12.0


def test_until():
    def power_of_2(previous_power, max_value):
        return previous_power * 2, theano.scan_module.until(previous_power * 2 > max_value)

    max_value = T.scalar()
    values, _ = theano.scan(power_of_2, outputs_info=T.constant(1.), non_sequences=max_value, n_steps=1024)
    f = theano.function([max_value], values)
    np.testing.assert_array_equal(f(45), [2.0, 4.0, 8.0, 16.0, 32.0, 64.0])
    np.testing.assert_array_equal(f(0.5), [2.0])
    assert theano.until is theano.scan_module.until


def test_jacobian_and_hessian_by_scan():
    x = T.dvector("x")
    y = x ** 2
    J, updates = theano.scan(lambda i, y, x: T.grad(y[i], x), sequences=T.arange(y.shape[0]), non_sequences=[y, x])
    f = theano.function([x], J, updates=updates)
    np.testing.assert_array_equal(f([4, 4]), [[8, 0], [0, 8]])
    cost = y.sum()
    gy = T.grad(cost, x)
    H, updates = theano.scan(lambda i, gy, x: T.grad(gy[i], x), sequences=T.arange(gy.shape[0]),
                             non_sequences=[gy, x])
    f = theano.function([x], H, updates=updates)
    np.testing.assert_array_equal(f([4, 4]), [[2, 0], [0, 2]])


def test_jacobian_and_hessian_of_symbolic_length():
    x = T.dvector("x")
    W = T.dmatrix("W")
    xv = np.array([0.5, -1.0, 2.0])
    Wv = np.arange(9.0).reshape(3, 3) / 10
    J = theano.function([x, W], T.jacobian(T.tanh(T.dot(W, x)), x))(xv, Wv)
    np.testing.assert_allclose(J, (1 - np.tanh(Wv @ xv) ** 2)[:, None] * Wv, rtol=1e-12)
    Jx, JW = theano.function([x, W], T.jacobian(T.dot(W, x) ** 2, [x, W]))(xv, Wv)
    z = Wv @ xv
    np.testing.assert_allclose(Jx, 2 * z[:, None] * Wv, rtol=1e-12)
    want_w = np.zeros((3, 3, 3))
    for i in range(3):
        want_w[i, i] = 2 * z[i] * xv
    np.testing.assert_allclose(JW, want_w, rtol=1e-12)
    H = theano.function([x], T.hessian(T.sum(x ** 3) + x[0] * x[1], x))(xv)
    want = np.diag(6 * xv)
    want[0, 1] = want[1, 0] = 1
    np.testing.assert_allclose(H, want, rtol=1e-12)


# -- map / reduce / foldl / foldr, directions and lengths ------------------------------------

def test_map_reduce_fold():
    x = T.vector("x")
    xv = np.array([1.0, 2.0, 3.0, 4.0], "float32")
    sq, _ = theano.map(lambda v: v * v, sequences=x)
    np.testing.assert_allclose(theano.function([x], sq)(xv), xv ** 2)
    s0 = T.constant(np.float32(0))
    total, _ = theano.reduce(lambda v, acc: acc * 2 + v, sequences=x, outputs_info=s0)
    left, _ = theano.foldl(lambda v, acc: acc * 2 + v, sequences=x, outputs_info=s0)
    right, _ = theano.foldr(lambda v, acc: acc * 2 + v, sequences=x, outputs_info=s0)
    f = theano.function([x], [total, left, right])
    lv = rv = 0.0
    for v in xv:
        lv = lv * 2 + v
    for v in xv[::-1]:
        rv = rv * 2 + v
    assert [float(r) for r in f(xv)] == [lv, lv, rv]


def test_go_backwards_and_shortest_length():
    x, y = T.vector("x"), T.vector("y")
    out, _ = theano.scan(lambda a, b: a - b, sequences=[x, y], go_backwards=True)
    xv, yv = np.arange(5.0, dtype="float32"), np.arange(3.0, dtype="float32") * 10
    np.testing.assert_allclose(theano.function([x, y], out)(xv, yv), xv[::-1][:3] - yv[::-1])
    n = T.iscalar("n")
    out, _ = theano.scan(lambda a: a * 2, sequences=x, n_steps=n)
    np.testing.assert_allclose(theano.function([x, n], out)(xv, 2), xv[:2] * 2)
    np.testing.assert_allclose(theano.function([x, n], out)(xv, 50), xv * 2)


def test_several_outputs_and_nitsot_order():
    x = T.vector("x")
    h0 = T.scalar("h0")
    (doubled, running, neg), _ = theano.scan(lambda v, h: [v * 2, h + v, -v], sequences=x,
                                             outputs_info=[None, h0, None])
    f = theano.function([x, h0], [doubled, running, neg])
    xv = np.array([1.0, 2.0, 4.0], "float32")
    d, r, n = f(xv, 10)
    np.testing.assert_allclose(d, xv * 2)
    np.testing.assert_allclose(r, 10 + np.cumsum(xv))
    np.testing.assert_allclose(n, -xv)


def test_bad_uses_raise_clear_errors():
    x = T.vector("x")
    with pytest.raises(ValueError, match="n_steps"):
        theano.scan(lambda: T.constant(1.0))
    with pytest.raises(TypeError, match="same dtype and rank"):
        theano.scan(lambda h: T.cast(h, "float64"), outputs_info=T.constant(np.float32(0)), n_steps=3)
    with pytest.raises(ValueError, match="outputs_info"):
        theano.scan(lambda v: [v, v], sequences=x, outputs_info=[None])
    with pytest.raises(ValueError, match="strict"):
        W = T.vector("W")
        theano.scan(lambda v: v * W, sequences=x, strict=True)


# -- gradients ----------------------------------------------------------------------------

def _elman(x, y, Wx, Wh, b, w_out):
    """An Elman RNN reading a sequence of 2-vectors; predicts y from the last state."""
    h0 = T.zeros_like(T.dot(x[0], Wx))  # (batch, hidden)
    hs, _ = theano.scan(lambda xt, h: T.tanh(T.dot(xt, Wx) + T.dot(h, Wh) + b), sequences=x, outputs_info=h0)
    pred = T.dot(hs[-1], w_out)
    return T.mean((pred - y) ** 2)


def test_elman_rnn_gradients_pass_verify_grad():
    rng = np.random.default_rng(3)
    xv = rng.standard_normal((5, 4, 2))  # time, batch, features
    yv = rng.standard_normal(4)
    pt = [rng.standard_normal((2, 3)) * 0.5, rng.standard_normal((3, 3)) * 0.5, rng.standard_normal(3) * 0.1,
          rng.standard_normal(3)]
    verify_grad(lambda Wx, Wh, b, w: _elman(T.constant(xv), T.constant(yv), Wx, Wh, b, w), pt, rng=0,
                backend=theano.config.backend)


def test_elman_rnn_learns_to_add():
    """Sum of a sequence of numbers (the second feature marks the numbers to add)."""
    rng = np.random.default_rng(4)
    n_hid = 8
    params = [theano.shared((rng.standard_normal(s) * 0.3).astype("float32"), name) for name, s in
              [("Wx", (2, n_hid)), ("Wh", (n_hid, n_hid)), ("b", (n_hid,)), ("w_out", (n_hid,))]]
    x, y = T.tensor3("x"), T.vector("y")
    cost = _elman(x, y, *params)
    grads = T.grad(cost, params)
    train = theano.function([x, y], cost, updates=[(p, p - 0.1 * g) for p, g in zip(params, grads)])
    seq = rng.uniform(0, 0.5, (6, 32, 1)).astype("float32")
    mark = (rng.random((6, 32, 1)) < 0.5).astype("float32")
    xv = np.concatenate([seq, mark], axis=2)
    yv = (seq * mark).sum(axis=(0, 2)).astype("float32")
    losses = [float(train(xv, yv)) for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def test_truncate_gradient():
    """h_t = a h_{t-1} + x_t, cost = h_T: BPTT over the last k steps only."""
    x, a, h0 = T.dvector("x"), T.dscalar("a"), T.dscalar("h0")
    xv, av, hv = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 0.5, 2.0
    steps = len(xv)
    for k in (-1, 2, 5, 9):
        hs, _ = theano.scan(lambda xt, h, a: a * h + xt, sequences=x, outputs_info=h0, non_sequences=a,
                            truncate_gradient=k)
        gx, ga, gh = theano.function([x, a, h0], T.grad(hs[-1], [x, a, h0]))(xv, av, hv)
        kk = steps if k == -1 else min(k, steps)
        hist = [hv]
        for t in range(steps):
            hist.append(av * hist[-1] + xv[t])
        want_x = np.array([av ** (steps - 1 - t) if t >= steps - kk else 0.0 for t in range(steps)])
        want_a = sum(hist[t] * av ** (steps - 1 - t) for t in range(steps - kk, steps))
        want_h = av ** steps if kk == steps else 0.0
        np.testing.assert_allclose(gx, want_x, rtol=1e-12, err_msg=f"k={k}")
        assert ga == pytest.approx(want_a, rel=1e-12) and gh == pytest.approx(want_h, rel=1e-12, abs=0)


def test_grad_through_taps_and_until_matches_finite_differences():
    rng = np.random.default_rng(5)

    def fn(x, x0, w):
        outs, _ = theano.scan(lambda xm1, xt, hm2, hm1, w: [T.tanh(hm1 * w + hm2 * xt) + xm1, T.sin(hm1) * xt],
                              sequences=dict(input=x, taps=[-1, 0]),
                              outputs_info=[dict(initial=x0, taps=[-2, -1]), None], non_sequences=w)
        return outs[0].sum() + (outs[1] ** 2).sum()

    verify_grad(fn, [rng.standard_normal((6, 3)), rng.standard_normal((2, 3)), rng.standard_normal(3)], rng=0,
                backend=theano.config.backend)

    def fn_until(h0, w):
        hs, _ = theano.scan(lambda h, w: (h * w + 0.1, theano.until(T.sum(h) > 100)), outputs_info=h0,
                            non_sequences=w, n_steps=4)
        return hs
    verify_grad(fn_until, [rng.standard_normal(3), rng.standard_normal(3)], rng=0, backend=theano.config.backend)


def test_nested_scan_and_its_gradient():
    def fn(m, v):
        def outer_step(row, acc):
            inner, _ = theano.scan(lambda e, s: s * e + 1.0, sequences=row, outputs_info=T.constant(1.0, dtype=
                                   "float64"))
            return acc + inner[-1] * v
        out, _ = theano.scan(outer_step, sequences=m, outputs_info=T.zeros_like(v))
        return out[-1]

    rng = np.random.default_rng(6)
    mv, vv = rng.standard_normal((3, 4)) * 0.5, rng.standard_normal(2)
    m, v = T.dmatrix("m"), T.dvector("v")
    got = theano.function([m, v], fn(m, v))(mv, vv)
    want = np.zeros(2)
    for row in mv:
        s = 1.0
        for e in row:
            s = s * e + 1.0
        want = want + s * vv
    np.testing.assert_allclose(got, want, rtol=1e-12)
    verify_grad(fn, [mv, vv], rng=0, backend=theano.config.backend)


# -- the IR: text, JSON, hash, verifier; and the cpu backend's refusal ---------------------------

def build_scan_graph(rng=None):
    """A scan with sequence taps, a two-tap state, an output not fed back and until; inputs."""
    x, x0, w = T.matrix("x"), T.matrix("x0"), T.vector("w")
    outs, _ = theano.scan(lambda xm1, xt, hm2, hm1, w: [T.tanh(hm1 * w + hm2) + xt - xm1, T.sum(hm1),
                                                        theano.until(T.sum(hm1) > 1e6)],
                          sequences=dict(input=x, taps=[-1, 0]), outputs_info=[dict(initial=x0, taps=[-2, -1]),
                                                                               None], non_sequences=w)
    g, _, _ = build_graph([x, x0, w], outs)
    rng = rng or np.random.default_rng(0)
    return g, [rng.standard_normal((5, 3)).astype("float32"), rng.standard_normal((2, 3)).astype("float32"),
               rng.standard_normal(3).astype("float32")]


def build_ifelse_graph(rng=None):
    a, x, y = T.scalar("a"), T.vector("x"), T.vector("y")
    outs = theano.ifelse.ifelse(T.gt(a, 0), [T.exp(x) * y, x.sum()], [x - y, T.max(y)])
    g, _, _ = build_graph([a, x, y], outs)
    rng = rng or np.random.default_rng(0)
    return g, [np.float32(0.5), rng.standard_normal(3).astype("float32"), rng.standard_normal(3).astype("float32")]


#: round-trip builders for tests/test_ir_text.py (graph, inputs)
ROUND_TRIP_BUILDERS = {"scan": build_scan_graph, "ifelse": build_ifelse_graph}


def test_text_and_json_round_trips_and_hash():
    g, inputs = build_scan_graph()
    text = format_graph(g)
    assert "body = graph(" in text
    g2 = parse_graph(text)
    assert format_graph(g2) == text and g2.structural_hash() == g.structural_hash()
    g3 = from_json(to_json(g))
    assert format_graph(g3) == text and g3.structural_hash() == g.structural_hash()
    for got, want in zip(evaluate(g2, inputs), evaluate(g, inputs)):
        np.testing.assert_array_equal(got, want)
    # renumbering and intermediate names do not change the hash; the body's content does
    assert g.renumbered().structural_hash() == g.structural_hash()
    (n,) = _scan_nodes(g)
    body = g.attrs(n)["body"].graph.copy()
    add = [m for m in body.nodes() if body.op(m) == "add"][0]
    body.nx.nodes[add]["op"] = "sub"
    g4 = g.copy()
    g4.attrs(n)["body"] = Body(body)
    assert g4.structural_hash() != g.structural_hash()


def test_optimized_graph_with_fused_body_round_trips():
    v = T.vector("v")
    out, _ = theano.scan(lambda e, s: T.tanh(s * e + 1) * 2, sequences=v, outputs_info=T.constant(np.float32(0)))
    f = theano.function([v], out[-1])
    g = f.optimized
    (n,) = _scan_nodes(g)
    assert any(g.attrs(n)["body"].graph.op(m) == "fused" for m in g.attrs(n)["body"].graph.nodes())
    for readable in (False, True):
        text = format_graph(g, readable=readable)
        assert format_graph(parse_graph(text), readable=readable) == text
    vv = np.array([0.5, -1.0, 2.0], "float32")
    s = 0.0
    for e in vv:
        s = np.tanh(s * e + 1) * 2
    assert f(vv) == pytest.approx(s, rel=1e-6)


def test_verifier_checks_nested_graphs():
    g, _ = build_scan_graph()
    verify(g)
    (n,) = _scan_nodes(g)
    body = g.attrs(n)["body"].graph.copy()
    t = [m for m in body.nodes() if body.op(m) == "tanh"][0]
    body.nx.nodes[t]["type"] = body.type(t).with_dtype("float64")
    g.attrs(n)["body"] = Body(body)
    with pytest.raises(ValueError, match="nested graph 'body'"):
        verify(g)


def test_cuda_backend_refuses_loops_at_compile_time():
    """The cpu backend lowers loops and branches (tests/test_scan_cpu.py); the cuda one not yet."""
    from tcomp.compile import _reject_control_flow

    x = T.vector("x")
    out, _ = theano.scan(lambda v: v * 2, sequences=x)
    with pytest.raises(TypeError, match="scan is not yet lowered by the cuda backend"):
        _reject_control_flow(build_graph([x], [out])[0], "cuda")
    y = theano.ifelse.ifelse(T.gt(x.sum(), 0), x, -x)
    with pytest.raises(TypeError, match="ifelse is not yet lowered by the cuda backend"):
        _reject_control_flow(build_graph([x], [y])[0], "cuda")


# -- scan_opt ---------------------------------------------------------------------------------

def test_scan_opt_hoists_invariants_drops_dead_outputs_and_keeps_results():
    x, W, h0 = T.matrix("x"), T.matrix("W"), T.vector("h0")
    (hs, unused), _ = theano.scan(lambda xt, h: [T.tanh(T.dot(h, T.exp(W) * 2) + xt), T.sin(xt)], sequences=x,
                                  outputs_info=[h0, None])
    f = theano.function([x, h0, W], hs[-1])
    g = f.optimized
    (n,) = _scan_nodes(g)
    body = g.attrs(n)["body"].graph
    body_ops = {body.op(m) for m in body.nodes()}
    assert "exp" not in body_ops and not any(
        "exp" in str(body.attrs(m).get("body", "")) for m in body.nodes() if body.op(m) == "fused")
    assert "sin" not in body_ops and len(body.outputs) == 1  # the unused output is gone
    assert g.attrs(n)["store"] == ("last",)
    rng = np.random.default_rng(7)
    xv, hv, Wv = (rng.standard_normal(s).astype("float32") for s in [(4, 3), (3,), (3, 3)])
    h = hv.astype("float64")
    for t in range(4):
        h = np.tanh(h @ (np.exp(Wv) * 2) + xv[t])
    np.testing.assert_allclose(f(xv, hv, Wv), h, rtol=1e-5)
    np.testing.assert_allclose(f(xv, hv, Wv), evaluate(f.traced, [xv, hv, Wv])[0], rtol=1e-6)


def test_unused_scan_is_removed():
    from tcomp.passes import optimize

    x = T.vector("x")
    out, _ = theano.scan(lambda v: v * 2, sequences=x)
    g, _, _ = build_graph([x], [x + 1, out])
    g.outputs = g.outputs[:1]
    assert _scan_nodes(g) and not _scan_nodes(optimize(g))


# -- finite-difference cases for tests/test_autodiff_ops.py (graph, out node, float64 inputs) -------

def _fd_scan_case():
    x, x0, w = T.dmatrix("x"), T.dmatrix("x0"), T.dvector("w")
    hs, _ = theano.scan(lambda xt, hm2, hm1, w: T.tanh(hm1 * w) + hm2 * xt, sequences=x,
                        outputs_info=dict(initial=x0, taps=[-2, -1]), non_sequences=w)
    g, _, _ = build_graph([x, x0, w], [hs])
    rng = np.random.default_rng(8)
    return g, g.outputs[0], [rng.standard_normal((4, 3)), rng.standard_normal((2, 3)), rng.standard_normal(3)]


def _fd_ifelse_case(flag):
    def build():
        a, x, y = T.dscalar("a"), T.dvector("x"), T.dvector("y")
        out = theano.ifelse.ifelse(T.gt(a, 0), T.exp(x) * y, T.sin(x - y))
        g, _, _ = build_graph([a, x, y], [out])
        rng = np.random.default_rng(9)
        return g, g.outputs[0], [np.float64(flag), rng.standard_normal(3), rng.standard_normal(3)]
    return build


AUTODIFF_CASES = {"scan": [_fd_scan_case], "ifelse": [_fd_ifelse_case(1.0), _fd_ifelse_case(-1.0)]}


def test_rbm_cd1_through_scan_lowers_reconstruction_cost():
    """Theano's RBM tutorial recipe: a Gibbs chain in scan, the free-energy gradient with the
    chain's end held constant, the random streams' updates passed along."""
    rng = np.random.default_rng(10)
    n_vis, n_hid = 16, 6
    patterns = np.array([[1, 0] * 8, [0, 1] * 8, [1] * 8 + [0] * 8], "float32")
    data = patterns[rng.integers(0, 3, 60)]
    W = theano.shared((rng.standard_normal((n_vis, n_hid)) * 0.1).astype("float32"), "W")
    hbias = theano.shared(np.zeros(n_hid, "float32"), "hbias")
    vbias = theano.shared(np.zeros(n_vis, "float32"), "vbias")
    srng = T.shared_randomstreams.RandomStreams(42)

    def free_energy(v):
        return -T.dot(v, vbias) - T.sum(T.nnet.softplus(T.dot(v, W) + hbias), axis=1)

    def gibbs_vhv(v):
        h_mean = T.nnet.sigmoid(T.dot(v, W) + hbias)
        h = srng.binomial(size=h_mean.shape, n=1, p=h_mean, dtype="float32")
        v_mean = T.nnet.sigmoid(T.dot(h, W.T) + vbias)
        return [v_mean, srng.binomial(size=v_mean.shape, n=1, p=v_mean, dtype="float32")]

    x = T.matrix("x")
    (v_means, v_samples), updates = theano.scan(gibbs_vhv, outputs_info=[None, x], n_steps=1)
    chain_end = v_samples[-1]
    cost = T.mean(free_energy(x)) - T.mean(free_energy(chain_end))
    params = [W, hbias, vbias]
    gparams = T.grad(cost, params, consider_constant=[chain_end])
    for p, gp in zip(params, gparams):
        updates[p] = p - 0.1 * gp
    recon = T.mean(T.sum((x - v_means[-1]) ** 2, axis=1))
    train = theano.function([x], recon, updates=updates)
    costs = [float(train(data)) for _ in range(40)]
    assert np.mean(costs[-5:]) < 0.85 * np.mean(costs[:5]), costs[::8]  # (seeds 10-14: 0.68-0.80)


def test_lstm_gradients_pass_verify_grad():
    rng = np.random.default_rng(11)
    n_in, n_hid = 2, 3
    xv = rng.standard_normal((4, n_in))

    def lstm_cost(Wx, Wh, b):
        def step(xt, h, c):
            z = T.dot(xt, Wx) + T.dot(h, Wh) + b
            i, f, o = (T.nnet.sigmoid(z[k * n_hid:(k + 1) * n_hid]) for k in range(3))
            g = T.tanh(z[3 * n_hid:])
            c_new = f * c + i * g
            return [o * T.tanh(c_new), c_new]
        zeros = T.zeros((n_hid,), dtype="float64")
        (hs, cs), _ = theano.scan(step, sequences=T.constant(xv), outputs_info=[zeros, zeros])
        return T.sum(hs ** 2) + T.sum(cs[-1])

    verify_grad(lstm_cost, [rng.standard_normal((n_in, 4 * n_hid)) * 0.5, rng.standard_normal((n_hid, 4 * n_hid))
                            * 0.5, rng.standard_normal(4 * n_hid) * 0.1], rng=0, backend=theano.config.backend)


def test_structural_hash_is_stable_across_processes():
    import os
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    code = (f"import sys; sys.path.insert(0, {here!r}); import test_scan as t; g, _ = t.build_scan_graph(); "
            "h, _ = t.build_ifelse_graph(); print(g.structural_hash(), h.structural_hash())")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout.split()
            for seed in (1, 2)]
    assert runs[0] == runs[1]
    assert runs[0] == [build_scan_graph()[0].structural_hash(), build_ifelse_graph()[0].structural_hash()]


def test_body_pipeline_honours_exclude():
    x, h0 = T.matrix("x"), T.vector("h0")
    hs, _ = theano.scan(lambda xt, h: T.tanh(h * 2 + xt), sequences=x, outputs_info=h0)

    def body_ops(f):
        (n,) = _scan_nodes(f.optimized)
        body = f.optimized.attrs(n)["body"].graph
        return {body.op(m) for m in body.nodes()}
    assert "fused" in body_ops(theano.function([x, h0], hs[-1]))
    assert "fused" not in body_ops(theano.function([x, h0], hs[-1], exclude=["fuse_elementwise"]))


def test_gradient_through_random_draws_inside_the_loop():
    """Dropout inside an RNN step: the backward loop recomputes each step with that step's
    random state, so it sees the same masks as the forward loop (finite differences agree;
    no default updates, so every call draws the same numbers)."""
    rng = np.random.default_rng(12)
    srng = theano.RandomStreams(3)
    xv = rng.standard_normal((5, 4))
    W, h0 = T.dmatrix("W"), T.dvector("h0")

    def step(xt, h):
        mask = srng.binomial(size=(4,), p=0.5, dtype="float64")
        return T.tanh(T.dot(W, h * mask) + xt)
    hs, _ = theano.scan(step, sequences=T.constant(xv), outputs_info=h0)
    cost = T.sum(hs ** 2)
    f_cost = theano.function([W, h0], cost, no_default_updates=True)
    f_grad = theano.function([W, h0], T.grad(cost, [W, h0]), no_default_updates=True)
    Wv, hv = rng.standard_normal((4, 4)) * 0.5, rng.standard_normal(4)
    gW, gh = f_grad(Wv, hv)
    eps = 1e-6
    for arr, g, other in ((Wv, gW, None), (hv, gh, None)):
        num = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + eps
            plus = f_cost(Wv, hv)
            arr[idx] = old - eps
            minus = f_cost(Wv, hv)
            arr[idx] = old
            num[idx] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-7)
    h, plain = hv, 0.0  # the masks really drop units: the cost is not the mask-free one
    for t in range(5):
        h = np.tanh(Wv @ h + xv[t])
        plain += (h ** 2).sum()
    assert abs(f_cost(Wv, hv) - plain) > 1e-3


def test_lstm_learns_to_add():
    """The sum task of the Elman test, with an LSTM (two recurrent outputs: h and c)."""
    rng = np.random.default_rng(13)
    n_hid = 6
    Wx = theano.shared((rng.standard_normal((2, 4 * n_hid)) * 0.3).astype("float32"), "Wx")
    Wh = theano.shared((rng.standard_normal((n_hid, 4 * n_hid)) * 0.3).astype("float32"), "Wh")
    b = theano.shared(np.zeros(4 * n_hid, "float32"), "b")
    w_out = theano.shared((rng.standard_normal(n_hid) * 0.3).astype("float32"), "w_out")
    params = [Wx, Wh, b, w_out]
    x, y = T.tensor3("x"), T.vector("y")

    def step(xt, h, c):
        z = T.dot(xt, Wx) + T.dot(h, Wh) + b
        i, f, o = (T.nnet.sigmoid(z[:, k * n_hid:(k + 1) * n_hid]) for k in range(3))
        c_new = f * c + i * T.tanh(z[:, 3 * n_hid:])
        return [o * T.tanh(c_new), c_new]
    zeros = T.zeros_like(T.dot(x[0], Wx)[:, :n_hid])  # (batch, hidden)
    (hs, cs), _ = theano.scan(step, sequences=x, outputs_info=[zeros, zeros])
    cost = T.mean((T.dot(hs[-1], w_out) - y) ** 2)
    train = theano.function([x, y], cost, updates=[(p, p - 0.2 * g) for p, g in zip(params, T.grad(cost, params))])
    seq = rng.uniform(0, 0.5, (5, 32, 1)).astype("float32")
    mark = (rng.random((5, 32, 1)) < 0.5).astype("float32")
    xv, yv = np.concatenate([seq, mark], axis=2), (seq * mark).sum(axis=(0, 2)).astype("float32")
    losses = [float(train(xv, yv)) for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0], losses[::10]
