"""tcomp.scan_checkpoints: the same states (every N-th) and gradients as tcomp.scan, with less
memory for the gradient."""
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T

RNG = np.random.default_rng(21)


def _rnn():
    X, h0 = T.dtensor3("X"), T.dmatrix("h0")
    W = tcomp.shared(RNG.standard_normal((6, 6)) * 0.4, name="W")

    def step(x, h, W):
        return T.tanh(x + T.dot(h, W))

    return X, h0, W, step


@pytest.mark.parametrize("n,N", [(37, 8), (5, 10)])
def test_states_and_gradients_match_plain_scan(n, N):
    X, h0, W, step = _rnn()
    hs, _ = tcomp.scan(step, sequences=X, outputs_info=h0, non_sequences=W)
    hc, _ = tcomp.scan_checkpoints(step, sequences=[X], outputs_info=[h0], non_sequences=[W], save_every_N=N)
    cost_plain, cost_ckpt = (hs[-1] ** 2).sum(), (hc[-1] ** 2).sum()
    f = tcomp.function([X, h0], [hs, hc] + T.grad(cost_plain, [W, X, h0]) + T.grad(cost_ckpt, [W, X, h0]))
    x, h = RNG.standard_normal((n, 3, 6)), RNG.standard_normal((3, 6))
    every, blocks, *grads = f(x, h)
    g_plain, g_ckpt = grads[:3], grads[3:]
    picks = [min((k + 1) * N, n) - 1 for k in range(-(-n // N))]
    np.testing.assert_allclose(blocks, every[picks], rtol=1e-12)
    for a, b in zip(g_plain, g_ckpt):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_gradient_keeps_fewer_states():
    X, h0, W, step = _rnn()
    hs, _ = tcomp.scan(step, sequences=X, outputs_info=h0, non_sequences=W)
    hc, _ = tcomp.scan_checkpoints(step, sequences=[X], outputs_info=[h0], non_sequences=[W], save_every_N=20,
                                   no_padding=True)
    x, h = RNG.standard_normal((400, 3, 6)), np.zeros((3, 6))
    used = []
    for out in (hs, hc):
        f = tcomp.function([X, h0], T.grad((out[-1] ** 2).sum(), W))
        f(x, h)
        used.append(f.compiled.last_call_memory["intermediate_bytes_with_reuse"])
    assert used[1] * 3 < used[0], used


def test_rejects_what_it_cannot_do():
    X, h0, W, step = _rnn()
    with pytest.raises(ValueError, match="taps"):
        tcomp.scan_checkpoints(step, sequences=[X], outputs_info=[dict(initial=h0, taps=[-2])], non_sequences=[W])
    with pytest.raises(ValueError, match="save_every_N"):
        tcomp.scan_checkpoints(step, sequences=[X], outputs_info=[h0], non_sequences=[W], save_every_N=0)


def test_runs_the_smallest_of_n_steps_and_the_sequence_lengths_as_scan():
    X, Y, h0, n = T.dmatrix("X"), T.dmatrix("Y"), T.dvector("h0"), T.lscalar("n")

    def step(x, y, h):
        return T.tanh(x + y + h)

    hs, _ = tcomp.scan(step, sequences=[X, Y], outputs_info=h0, n_steps=n)
    hc, _ = tcomp.scan_checkpoints(step, sequences=[X, Y], outputs_info=[h0], n_steps=n, save_every_N=3)
    f = tcomp.function([X, Y, h0, n], [hs[-1], hc[-1]])
    for lx, ly, steps in ((10, 7, 20), (10, 10, 4), (9, 12, 100)):
        plain, blocked = f(RNG.standard_normal((lx, 2)), RNG.standard_normal((ly, 2)), np.zeros(2), steps)
        np.testing.assert_allclose(blocked, plain, rtol=1e-12)
