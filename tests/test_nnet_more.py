"""T.nnet.abstract_conv.causal_conv1d / separable_conv2d, T.nnet.conv3d2d.conv3d and
T.signal.pool.pool_3d against direct NumPy loops written from Theano's definitions."""
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.gradient import verify_grad
from tcomp.tensor.nnet import abstract_conv, conv3d2d
from tcomp.tensor.signal import pool

RNG = np.random.default_rng(7)


def _corr1d(x, w, dilation):
    """valid 1-d correlation, (B, C, T) with (O, C, K)."""
    k = w.shape[2]
    t_out = x.shape[2] - dilation * (k - 1)
    out = np.zeros((x.shape[0], w.shape[0], t_out))
    for j in range(k):
        out += np.einsum("bct,oc->bot", x[:, :, j * dilation:j * dilation + t_out], w[:, :, j])
    return out


@pytest.mark.parametrize("flip,dilation", [(True, 1), (False, 2)])
def test_causal_conv1d_sees_only_the_past(flip, dilation):
    x, w = RNG.standard_normal((2, 3, 9)), RNG.standard_normal((4, 3, 3))
    X, W = T.dtensor3("X"), T.dtensor3("W")
    f = tcomp.function([X, W], abstract_conv.causal_conv1d(X, W, (4, 3, 3), filter_flip=flip,
                                                         filter_dilation=dilation))
    padded = np.concatenate([np.zeros((2, 3, 2 * dilation)), x], axis=2)
    want = _corr1d(padded, w[:, :, ::-1] if flip else w, dilation)
    got = f(x, w)
    assert got.shape == (2, 4, 9)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    later = x.copy()
    later[:, :, 5:] += 1.0  # changing steps >= 5 leaves outputs < 5 alone
    np.testing.assert_allclose(f(later, w)[:, :, :5], got[:, :, :5])


def test_separable_conv2d_matches_depthwise_then_pointwise():
    c, mult, out = 3, 2, 4
    x = RNG.standard_normal((2, c, 6, 5))
    dw = RNG.standard_normal((c * mult, 1, 3, 2))
    pw = RNG.standard_normal((out, c * mult, 1, 1))
    X, D, P = T.dtensor4("X"), T.dtensor4("D"), T.dtensor4("P")
    f = tcomp.function([X, D, P], abstract_conv.separable_conv2d(X, D, P, c, filter_flip=False))
    depth = np.zeros((2, c * mult, 4, 4))
    for ch in range(c * mult):
        src = ch // mult
        for i in range(3):
            for j in range(2):
                depth[:, ch] += x[:, src, i:i + 4, j:j + 4] * dw[ch, 0, i, j]
    want = np.einsum("bchw,oc->bohw", depth, pw[:, :, 0, 0])
    np.testing.assert_allclose(f(x, dw, pw), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["valid", "full"])
def test_conv3d2d_is_a_flipped_spatiotemporal_convolution(mode):
    s = RNG.standard_normal((2, 5, 3, 4, 4))      # Ns, Ts, C, Hs, Ws
    fl = RNG.standard_normal((2, 2, 3, 2, 3))     # Nf, Tf, C, Hf, Wf
    S, F = T.TensorType("float64", (None,) * 5)("S"), T.TensorType("float64", (2, 2, 3, 2, 3))("F")
    f = tcomp.function([S, F], conv3d2d.conv3d(S, F, border_mode=mode))
    fk = fl[:, ::-1, :, ::-1, ::-1]
    ph, pw = (1, 2) if mode == "full" else (0, 0)
    sp = np.pad(s, ((0, 0), (0, 0), (0, 0), (ph, ph), (pw, pw)))
    to, ho, wo = 5 - 2 + 1, sp.shape[3] - 1, sp.shape[4] - 2
    want = np.zeros((2, to, 2, ho, wo))
    for t in range(2):
        for i in range(2):
            for j in range(3):
                want += np.einsum("btchw,oc->btohw", sp[:, t:t + to, :, i:i + ho, j:j + wo], fk[:, t, :, i, j])
    np.testing.assert_allclose(f(s, fl), want, rtol=1e-12, atol=1e-12)


def _pool3d_reference(x, ws, stride, pad, mode):
    """Theano's 3-d pooling with ignore_border=True, one window at a time."""
    value = -np.inf if mode == "max" else 0.0
    xp = np.pad(x, [(0, 0)] * (x.ndim - 3) + [(p, p) for p in pad], constant_values=value)
    inside = np.pad(np.ones(x.shape[-3:]), [(p, p) for p in pad])
    dims = [(xp.shape[x.ndim - 3 + a] - ws[a]) // stride[a] + 1 for a in range(3)]
    out = np.zeros(x.shape[:-3] + tuple(dims))
    for i in range(dims[0]):
        for j in range(dims[1]):
            for k in range(dims[2]):
                sl = (slice(i * stride[0], i * stride[0] + ws[0]), slice(j * stride[1], j * stride[1] + ws[1]),
                      slice(k * stride[2], k * stride[2] + ws[2]))
                win = xp[(Ellipsis,) + sl]
                if mode == "max":
                    out[..., i, j, k] = win.max(axis=(-3, -2, -1))
                elif mode == "sum":
                    out[..., i, j, k] = win.sum(axis=(-3, -2, -1))
                elif mode == "average_inc_pad":
                    out[..., i, j, k] = win.sum(axis=(-3, -2, -1)) / np.prod(ws)
                else:
                    out[..., i, j, k] = win.sum(axis=(-3, -2, -1)) / inside[sl].sum()
    return out


@pytest.mark.parametrize("mode,ws,stride,pad", [("max", (2, 2, 2), (2, 2, 2), (0, 0, 0)),
                                                ("sum", (2, 3, 2), (1, 2, 1), (0, 0, 0)),
                                                ("average_inc_pad", (3, 2, 2), (2, 1, 2), (1, 1, 0)),
                                                ("average_exc_pad", (3, 3, 2), (2, 2, 1), (1, 1, 1))])
def test_pool_3d_matches_windows(mode, ws, stride, pad):
    x = RNG.standard_normal((2, 3, 5, 6, 4))
    X = T.dtensor5("X")
    f = tcomp.function([X], pool.pool_3d(X, ws, ignore_border=True, stride=stride, pad=pad, mode=mode))
    np.testing.assert_allclose(f(x), _pool3d_reference(x, ws, stride, pad, mode), rtol=1e-12, atol=1e-12)


def test_pool_3d_and_causal_conv_gradients():
    verify_grad(lambda a: pool.pool_3d(a, (2, 2, 2), ignore_border=True, mode="average_exc_pad"),
                [RNG.standard_normal((1, 4, 4, 4))], rng=np.random.default_rng(3))
    verify_grad(lambda a, w: abstract_conv.causal_conv1d(a, w, (2, 2, 2)),
                [RNG.standard_normal((1, 2, 5)), RNG.standard_normal((2, 2, 2))], rng=np.random.default_rng(4))


def _upsample_axis(a, r, axis):
    """One axis of Theano's bilinear upsampling in NumPy: edge-pad by one, then scatter each
    value times the kernel [1..r..1]/r at stride r, and crop the padding."""
    a = np.moveaxis(a, axis, -1)
    padded = np.concatenate([a[..., :1], a, a[..., -1:]], axis=-1)
    kern = np.concatenate([np.arange(1, r + 1), np.arange(r - 1, 0, -1)]) / r
    pad = 2 * r - (r - 1) // 2 - 1
    full = np.zeros(a.shape[:-1] + (padded.shape[-1] * r + 2 * r,))
    for p in range(padded.shape[-1]):
        full[..., p * r:p * r + 2 * r - 1] += padded[..., p:p + 1] * kern
    return np.moveaxis(full[..., pad:pad + a.shape[-1] * r], -1, axis)


@pytest.mark.parametrize("ratio,one_d", [(2, True), (3, False)])
def test_bilinear_upsampling(ratio, one_d):
    x = RNG.standard_normal((2, 3, 4, 5))
    X = T.dtensor4("X")
    f = tcomp.function([X], abstract_conv.bilinear_upsampling(X, ratio, use_1D_kernel=one_d))
    got = f(x)
    assert got.shape == (2, 3, 4 * ratio, 5 * ratio)
    np.testing.assert_allclose(got, _upsample_axis(_upsample_axis(x, ratio, 2), ratio, 3), rtol=1e-12, atol=1e-12)
    # linear interpolation: a ramp stays a ramp (away from the clamped edges)
    ramp = np.broadcast_to(np.arange(4.0)[:, None], (1, 1, 4, 5)).copy()
    col = f(ramp)[0, 0, :, 0]
    steps = np.diff(col[ratio:-ratio])
    np.testing.assert_allclose(steps, 1.0 / ratio, rtol=1e-12)


def test_pool_op_object():
    x = RNG.standard_normal((2, 5, 6, 4))
    X = T.dtensor4("X")
    f = tcomp.function([X], [pool.Pool(ignore_border=True, mode="sum")(X, (2, 2)),
                             pool.Pool(ignore_border=True, ndim=3)(X, (2, 2, 2), (1, 2, 2))])
    s, m = f(x)
    np.testing.assert_allclose(s, x[:, :, :6, :4].reshape(2, 5, 3, 2, 2, 2).sum(axis=(3, 5)))
    np.testing.assert_allclose(m, _pool3d_reference(x[None], (2, 2, 2), (1, 2, 2), (0, 0, 0), "max")[0])


def test_nnet_softmax_of_a_vector_is_a_row_as_in_theano():
    """The deeplearning.net RNN-SLU tutorial's step returns softmax(vector) and indexes the
    stacked result as s[:, 0, :]."""
    v = T.dvector("v")
    h0 = T.dvector("h0")
    x = np.array([0.5, -1.0, 2.0])
    want = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    f = tcomp.function([v], [T.nnet.softmax(v), T.nnet.logsoftmax(v), T.nnet.softmax(v, axis=-1)])
    row, log_row, flat = f(x)
    assert row.shape == (1, 3) and log_row.shape == (1, 3) and flat.shape == (3,)
    np.testing.assert_allclose(row[0], want)
    np.testing.assert_allclose(log_row[0], np.log(want))
    W = T.dmatrix("W")

    def step(x_t, h_tm1):
        h_t = T.tanh(x_t + T.dot(h_tm1, W))
        return [h_t, T.nnet.softmax(h_t)]

    seq = T.dmatrix("seq")
    (h, s), _ = tcomp.scan(step, sequences=seq, outputs_info=[h0, None])
    probs = tcomp.function([seq, h0, W], s[:, 0, :])(RNG.standard_normal((4, 3)), np.zeros(3), np.eye(3) * 0.5)
    assert probs.shape == (4, 3)
    np.testing.assert_allclose(probs.sum(axis=1), np.ones(4))


def _conv2d_reference(x, w, pad, flip=True):
    """(B, C, H, W) with (O, C, kh, kw), zero padding ``pad``, stride 1."""
    if flip:
        w = w[:, :, ::-1, ::-1]
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    kh, kw = w.shape[2:]
    ho, wo = xp.shape[2] - kh + 1, xp.shape[3] - kw + 1
    out = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bchw,oc->bohw", xp[:, :, i:i + ho, j:j + wo], w[:, :, i, j])
    return out


@pytest.mark.parametrize("mode", ["half", "full"])
def test_conv2d_half_and_full_with_kernel_sizes_known_only_at_run_time(mode):
    X, W = T.dtensor4("X"), T.dtensor4("W")
    f = tcomp.function([X, W], T.nnet.conv2d(X, W, border_mode=mode))
    x = RNG.standard_normal((2, 3, 6, 5))
    for kh, kw in ((3, 3), (2, 5)):
        w = RNG.standard_normal((4, 3, kh, kw))
        pad = (kh - 1, kw - 1) if mode == "full" else (kh // 2, kw // 2)
        np.testing.assert_allclose(f(x, w), _conv2d_reference(x, w, pad), rtol=1e-12, atol=1e-12)
    verify_grad(lambda a, b: T.nnet.conv2d(a, b, border_mode=mode),
                [RNG.standard_normal((1, 2, 4, 4)), RNG.standard_normal((2, 2, 3, 2))], rng=np.random.default_rng(8))
