"""The scan rewrites that take work out of the loops (``passes/autodiff_scan_pushout.py``,
``passes/autodiff_scan.py``'s stored results, ``passes/scan_opt.py``'s product push-out):

* the backward loop reads the forward's stored states instead of recomputing the step;
* the non-sequences' per-step products (``x_t^T d_t``, ``h_{t-1}^T d_t``, vector outer
  products) are summed after the loop by one product over the stacked rows;
* ``x_t W`` for every step is one product before the loop (not for ``until`` loops).

Values are checked against BPTT written here in NumPy and against finite differences, on
the reference backend and on the cpu backend; the structure of the optimized graph shows
that the rewrites happened (one product per step left in each loop of the Elman RNN).
"""
from __future__ import annotations

import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.testing import verify_grad


@pytest.fixture(autouse=True, params=["reference", "cpu"])
def backend(request, monkeypatch):
    monkeypatch.setattr(tcomp.config, "backend", request.param)
    return request.param


def _loops(f):
    """(forward scan bodies, backward scan bodies) of a compiled function's optimized graph
    (a backward loop keeps its accumulators as last values)."""
    g = f.optimized
    fwd, back = [], []
    for n in g.nodes():
        if g.op(n) == "scan":
            (back if "last" in (g.attrs(n)["store"] or ()) else fwd).append(g.attrs(n)["body"].graph)
    return fwd, back


def _count(bg, name):
    """Nodes of op ``name`` in a body, inside fused kernels too."""
    n = 0
    for v in bg.nodes():
        if bg.op(v) == name:
            n += 1
        elif bg.op(v) == "fused":
            n += sum(1 for step in bg.attrs(v)["body"] if step[0] == name)
    return n


def _elman(x, h0, W, U, b, **kw):
    hs, _ = tcomp.scan(lambda xt, h, W, U, b: T.tanh(T.dot(xt, W) + T.dot(h, U) + b), sequences=x,
                       outputs_info=h0, non_sequences=[W, U, b], **kw)
    return hs


def _np_bptt(x, h0, W, U, b, C, k=-1):
    """cost = sum(C * hs): its gradients by BPTT over the last k steps (Theano's truncation:
    the rows before them and, unless every step is backpropagated, h0 get zero)."""
    steps = len(x)
    hs, h = [], h0
    for t in range(steps):
        h = np.tanh(x[t] @ W + h @ U + b)
        hs.append(h)
    first = 0 if k == -1 else max(0, steps - k)
    gW, gU, gb, gx = np.zeros_like(W), np.zeros_like(U), np.zeros_like(b), np.zeros_like(x)
    gh = np.zeros_like(h0)
    for t in range(steps - 1, first - 1, -1):
        d = (C[t] + gh) * (1 - hs[t] ** 2)
        prev = hs[t - 1] if t else h0
        gW += x[t].T @ d
        gU += prev.T @ d
        gb += d.sum(0)
        gx[t] = d @ W.T
        gh = d @ U.T
    gh0 = gh if first == 0 else np.zeros_like(h0)
    return [gW, gU, gb, gh0, gx]


def _rnn_data(steps, batch=3, n_in=4, hidden=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((steps, batch, n_in)), rng.standard_normal((batch, hidden)) * 0.5,
            rng.standard_normal((n_in, hidden)) * 0.5, rng.standard_normal((hidden, hidden)) * 0.5,
            rng.standard_normal(hidden) * 0.1, rng.standard_normal((steps, batch, hidden))]


def test_elman_rnn_loops_do_one_product_per_step_and_match_numpy_bptt():
    x, h0, W, U, b = T.dtensor3("x"), T.dmatrix("h0"), T.dmatrix("W"), T.dmatrix("U"), T.dvector("b")
    C = T.dtensor3("C")
    cost = (_elman(x, h0, W, U, b) * C).sum()
    f = tcomp.function([x, h0, W, U, b, C], T.grad(cost, [W, U, b, h0, x]))
    fwd, back = _loops(f)
    assert len(fwd) == 1 and len(back) == 1
    assert _count(fwd[0], "dot") == 1                              # x_t W went before the loop
    assert _count(back[0], "dot") == 1 and _count(back[0], "tanh") == 0  # d_t U^T; h_t is read, not recomputed
    data = _rnn_data(7)
    for got, want in zip(f(*data), _np_bptt(*data)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k", [1, 3, 7, 20])
def test_truncated_bptt_with_the_products_pushed_out(k):
    x, h0, W, U, b = T.dtensor3("x"), T.dmatrix("h0"), T.dmatrix("W"), T.dmatrix("U"), T.dvector("b")
    C = T.dtensor3("C")
    cost = (_elman(x, h0, W, U, b, truncate_gradient=k) * C).sum()
    f = tcomp.function([x, h0, W, U, b, C], T.grad(cost, [W, U, b, h0, x]))
    data = _rnn_data(7, seed=k)
    for got, want in zip(f(*data), _np_bptt(*data, k=k)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_zero_steps_give_zero_gradients():
    """The stacked rows are a state with a known row shape: zero steps give a product over
    zero rows, zeros, where a not-fed-back output's shape would be unknown."""
    x, h0, W, U, b = T.dtensor3("x"), T.dmatrix("h0"), T.dmatrix("W"), T.dmatrix("U"), T.dvector("b")
    cost = _elman(x, h0, W, U, b).sum() + h0.sum()
    f = tcomp.function([x, h0, W, U, b], T.grad(cost, [W, U, b, h0]))
    x0, h0v, Wv, Uv, bv, _ = _rnn_data(1)
    gW, gU, gb, gh0 = f(x0[:0], h0v, Wv, Uv, bv)
    assert gW.shape == Wv.shape and gU.shape == Uv.shape and gb.shape == bv.shape
    assert not gW.any() and not gU.any() and not gb.any()
    np.testing.assert_array_equal(gh0, np.ones_like(h0v))


def test_vector_rows_and_weights_on_either_side_of_the_product():
    """dot(x_t, W), dot(U, h), dot(W2, x_t): the vector outer products and the products with
    the weight first are pushed out too (one product per step left: U h)."""
    rng = np.random.default_rng(1)
    xv = rng.standard_normal((5, 3))

    def rnn(W, U, W2, V, b):
        hs, _ = tcomp.scan(lambda xt, h, W, U, W2, V, b: T.tanh(T.dot(xt, W) + T.dot(U, h) + T.dot(W2, xt) + b) * V,
                           sequences=T.constant(xv), outputs_info=T.zeros(4, "float64"),
                           non_sequences=[W, U, W2, V, b])
        return (hs ** 2).sum()

    pt = [rng.standard_normal((3, 4)), rng.standard_normal((4, 4)) * 0.5, rng.standard_normal((4, 3)),
          rng.standard_normal(4), rng.standard_normal(4)]
    verify_grad(rnn, pt, rng=0, backend=tcomp.config.backend)
    args = [T.dmatrix(), T.dmatrix(), T.dmatrix(), T.dvector(), T.dvector()]
    f = tcomp.function(args, T.grad(rnn(*args), args))
    _, back = _loops(f)
    assert _count(back[0], "dot") == 1


def test_matrix_rows_with_the_weight_first_and_a_term_left_in_the_loop():
    """h_t = tanh(W x_t + U h_{t-1} + sum(W) h_{t-1}) with x_t of shape (n, batch): W's
    product term goes out, its sum(W) term stays summed in the loop."""
    rng = np.random.default_rng(2)
    xm = rng.standard_normal((4, 3, 2))

    def rnn(W, U):
        hs, _ = tcomp.scan(lambda xt, h, W, U: T.tanh(T.dot(W, xt) + T.dot(U, h) + 0.1 * T.sum(W) * h),
                           sequences=T.constant(xm), outputs_info=T.zeros((5, 2), "float64"), non_sequences=[W, U])
        return (hs ** 2).sum()

    verify_grad(rnn, [rng.standard_normal((5, 3)), rng.standard_normal((5, 5)) * 0.5], rng=0,
                backend=tcomp.config.backend)


def test_forward_product_push_out_with_taps_backwards_and_fewer_steps():
    """x_{t-2} W + x_t W2 over the 4 steps n_steps allows, x read backwards: only the rows
    the loop reads are multiplied before it."""
    rng = np.random.default_rng(3)
    xv, Wv, W2v, Uv = (rng.standard_normal(s) for s in [(9, 2, 3), (3, 4), (3, 4), (4, 4)])
    h0v = rng.standard_normal((2, 4))
    x, W, W2, U, h0 = T.dtensor3("x"), T.dmatrix("W"), T.dmatrix("W2"), T.dmatrix("U"), T.dmatrix("h0")
    hs, _ = tcomp.scan(lambda xm2, xt, h, W, W2, U: T.tanh(T.dot(xm2, W) + T.dot(xt, W2) + T.dot(h, U)),
                       sequences=dict(input=x, taps=[-2, 0]), outputs_info=h0, non_sequences=[W, W2, U],
                       n_steps=4, go_backwards=True)
    f = tcomp.function([x, W, W2, U, h0], hs)
    (body,), _ = _loops(f)
    assert _count(body, "dot") == 1
    xr, h, want = xv[::-1], h0v, []
    for t in range(4):
        h = np.tanh(xr[t] @ Wv + xr[t + 2] @ W2v + h @ Uv)
        want.append(h)
    np.testing.assert_allclose(f(xv, Wv, W2v, Uv, h0v), np.stack(want), rtol=1e-12)

    def cost(W, W2, U):
        out, _ = tcomp.scan(lambda xm2, xt, h, W, W2, U: T.tanh(T.dot(xm2, W) + T.dot(xt, W2) + T.dot(h, U)),
                            sequences=dict(input=T.constant(xv), taps=[-2, 0]), outputs_info=T.constant(h0v),
                            non_sequences=[W, W2, U], n_steps=4, go_backwards=True)
        return (out ** 2).sum()

    verify_grad(cost, [Wv, W2v, Uv * 0.5], rng=0, backend=tcomp.config.backend)


def test_until_keeps_the_product_in_the_loop():
    """A loop that stops early must not multiply rows of steps that never run."""
    rng = np.random.default_rng(4)
    xv, Wv, Uv = rng.standard_normal((10, 2, 3)), rng.standard_normal((3, 4)), rng.standard_normal((4, 4)) * 0.3
    x, W, U = T.dtensor3("x"), T.dmatrix("W"), T.dmatrix("U")

    def step(xt, h, W, U):
        new = T.tanh(T.dot(xt, W) + T.dot(h, U))
        return new, tcomp.until(T.sum(new) > 1.5)

    hs, _ = tcomp.scan(step, sequences=x, outputs_info=T.zeros((2, 4), "float64"), non_sequences=[W, U])
    f = tcomp.function([x, W, U], hs)
    (body,), _ = _loops(f)
    assert _count(body, "dot") == 2
    h, want = np.zeros((2, 4)), []
    for t in range(10):
        h = np.tanh(xv[t] @ Wv + h @ Uv)
        want.append(h)
        if h.sum() > 1.5:
            break
    np.testing.assert_allclose(f(xv, Wv, Uv), np.stack(want), rtol=1e-12)


def test_product_with_a_constant_matrix_goes_before_the_loop():
    rng = np.random.default_rng(5)
    Wc, xv, Uv = rng.standard_normal((3, 4)), rng.standard_normal((5, 2, 3)), rng.standard_normal((4, 4)) * 0.3
    x, U = T.dtensor3("x"), T.dmatrix("U")
    hs, _ = tcomp.scan(lambda xt, h, U: T.tanh(T.dot(xt, T.constant(Wc)) + T.dot(h, U)), sequences=x,
                       outputs_info=T.zeros((2, 4), "float64"), non_sequences=U)
    f = tcomp.function([x, U], hs)
    (body,), _ = _loops(f)
    assert _count(body, "dot") == 1
    h, want = np.zeros((2, 4)), []
    for t in range(5):
        h = np.tanh(xv[t] @ Wc + h @ Uv)
        want.append(h)
    np.testing.assert_allclose(f(xv, Uv), np.stack(want), rtol=1e-12)
