"""Theano's older spellings that tutorials still use: the LeNet tutorial's convolution +
pooling layer in both its newer (``conv2d(filter_shape=, input_shape=)``,
``pool.pool_2d(ds=)``) and older (``conv.conv2d(image_shape=)``,
``downsample.max_pool_2d``) forms, ``pool_2d``'s ``ds``/``st``/``padding``,
``max_pool_2d_same_size``, conv2d's shape hints, ``filter_flip`` and ``num_groups``, all
against NumPy; and ``@tcomp.jit``'s weak Python scalars."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import tcomp
import tcomp.tensor as T
from tcomp.tensor.nnet import conv, conv2d
from tcomp.tensor.signal import downsample, pool


def np_conv(x, w, pad=(0, 0), stride=(1, 1), flip=True):
    """NCHW x (O, C, kh, kw) w, zero padding, a true convolution when ``flip``."""
    if flip:
        w = w[:, :, ::-1, ::-1]
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    win = sliding_window_view(xp, w.shape[2:], axis=(2, 3))[:, :, ::stride[0], ::stride[1]]
    return np.einsum("ncijkl,ockl->noij", win, w)


def np_pool(x, ws, stride=None, ignore_border=True, mode="max"):
    """Pool the last two axes; partial border windows (ignore_border=False) are clipped."""
    stride = stride or ws
    h, w = x.shape[-2:]
    if ignore_border:
        oh, ow = (h - ws[0]) // stride[0] + 1, (w - ws[1]) // stride[1] + 1
    else:
        oh, ow = (h - 1) // stride[0] + 1, (w - 1) // stride[1] + 1
    out = np.empty(x.shape[:-2] + (oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            patch = x[..., i * stride[0]:i * stride[0] + ws[0], j * stride[1]:j * stride[1] + ws[1]]
            out[..., i, j] = patch.max(axis=(-2, -1)) if mode == "max" else patch.mean(axis=(-2, -1))
    return out


class LeNetConvPoolLayer:
    """The Deep Learning Tutorials' LeNet layer, as written there (newer or older Theano API)."""

    def __init__(self, rng, input, filter_shape, image_shape, poolsize=(2, 2), old_api=False):
        assert image_shape[1] == filter_shape[1]
        self.input = input
        fan_in = np.prod(filter_shape[1:])
        fan_out = filter_shape[0] * np.prod(filter_shape[2:]) // np.prod(poolsize)
        W_bound = np.sqrt(6.0 / (fan_in + fan_out))
        self.W = tcomp.shared(np.asarray(rng.uniform(low=-W_bound, high=W_bound, size=filter_shape),
                                         dtype=tcomp.config.floatX), borrow=True)
        b_values = np.zeros((filter_shape[0],), dtype=tcomp.config.floatX)
        self.b = tcomp.shared(value=b_values, borrow=True)
        if old_api:
            conv_out = conv.conv2d(input=input, filters=self.W, filter_shape=filter_shape, image_shape=image_shape)
            pooled_out = downsample.max_pool_2d(input=conv_out, ds=poolsize, ignore_border=True)
        else:
            conv_out = conv2d(input=input, filters=self.W, filter_shape=filter_shape, input_shape=image_shape)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                pooled_out = pool.pool_2d(input=conv_out, ds=poolsize, ignore_border=True)
        self.output = T.tanh(pooled_out + self.b.dimshuffle("x", 0, "x", "x"))
        self.params = [self.W, self.b]


@pytest.mark.parametrize("old_api", [False, True])
def test_lenet_layers_forward_and_training(old_api, backend):
    rng = np.random.RandomState(23455)
    batch_size = 4
    x, y = T.matrix("x"), T.ivector("y")
    layer0_input = x.reshape((batch_size, 1, 12, 12))
    layer0 = LeNetConvPoolLayer(rng, layer0_input, image_shape=(batch_size, 1, 12, 12), filter_shape=(3, 1, 3, 3),
                                old_api=old_api)
    layer1 = LeNetConvPoolLayer(rng, layer0.output, image_shape=(batch_size, 3, 5, 5), filter_shape=(4, 3, 2, 2),
                                old_api=old_api)
    Wl = tcomp.shared(np.zeros((16, 3), tcomp.config.floatX), "Wl")
    p_y = T.nnet.softmax(T.dot(layer1.output.flatten(2), Wl))
    cost = -T.mean(T.log(p_y)[T.arange(y.shape[0]), y])
    params = layer1.params + layer0.params + [Wl]
    grads = T.grad(cost, params)
    train = tcomp.function([x, y], [cost, layer1.output], updates=[(p, p - 0.1 * g) for p, g in zip(params, grads)],
                           backend=backend)
    data = np.random.default_rng(0).standard_normal((batch_size, 144)).astype("float32")
    labels = np.array([0, 1, 2, 1], "int32")
    w0, w1 = layer0.W.get_value(), layer1.W.get_value()
    first, out = train(data, labels)
    h0 = np.tanh(np_pool(np_conv(data.reshape(4, 1, 12, 12).astype("float64"), w0), (2, 2)))
    h1 = np.tanh(np_pool(np_conv(h0, w1), (2, 2)))
    np.testing.assert_allclose(out, h1, rtol=1e-4, atol=1e-5)
    assert first == pytest.approx(np.log(3), rel=1e-5)
    for _ in range(30):
        last, _ = train(data, labels)
    assert np.isfinite(last) and last < first


def test_pool_2d_old_argument_names_match_new_ones():
    X = T.dtensor4("X")
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = [pool.pool_2d(X, ds=(3, 2), st=(2, 2), ignore_border=True),
               pool.pool_2d(X, ds=(2, 2), ignore_border=False, mode="average_exc_pad"),
               T.nnet.pool_2d(X, ds=(2, 2), padding=(1, 1), ignore_border=True, mode="sum"),
               downsample.max_pool_2d(X, (2, 3), True)]
    new = [pool.pool_2d(X, ws=(3, 2), stride=(2, 2), ignore_border=True),
           pool.pool_2d(X, ws=(2, 2), ignore_border=False, mode="average_exc_pad"),
           T.nnet.pool_2d(X, ws=(2, 2), pad=(1, 1), ignore_border=True, mode="sum")]
    r_old = tcomp.function([X], old, backend="reference")(x)
    r_new = tcomp.function([X], new, backend="reference")(x)
    for a, b in zip(r_old, r_new):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(r_old[0], np_pool(x, (3, 2), (2, 2)))
    np.testing.assert_allclose(r_old[1], np_pool(x, (2, 2), ignore_border=False, mode="mean"))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    np.testing.assert_allclose(r_old[2], np_pool(xp, (2, 2), mode="mean") * 4)
    np.testing.assert_allclose(r_old[3], np_pool(x, (2, 3)))
    with pytest.warns(DeprecationWarning, match="ds"):
        pool.pool_2d(X, ds=(2, 2), ignore_border=True)
    with pytest.raises(ValueError, match="not both"):
        pool.pool_2d(X, ws=(2, 2), ds=(3, 3), ignore_border=True)


def test_downsample_default_ignore_border_is_false_with_a_warning():
    X = T.dtensor4("X")
    with pytest.warns(UserWarning, match="ignore_border"):
        y = downsample.max_pool_2d(X, (2, 2))
    x = np.random.default_rng(2).standard_normal((1, 1, 5, 5))
    out = tcomp.function([X], y, backend="reference")(x)
    assert out.shape == (1, 1, 3, 3)
    np.testing.assert_allclose(out, np_pool(x, (2, 2), ignore_border=False))


def test_max_pool_2d_same_size(backend):
    X = T.dtensor4("X")
    x = np.random.default_rng(3).standard_normal((2, 2, 5, 6))
    x[0, 0, 0, 0] = x[0, 0, 0, 1] = 9.0  # a tie: both kept
    out = tcomp.function([X], pool.max_pool_2d_same_size(X, (2, 3)), backend=backend)(x)
    want = np.zeros_like(x)
    for i in range(2):
        for j in range(2):
            patch = x[:, :, 2 * i:2 * i + 2, 3 * j:3 * j + 3]
            m = patch.max(axis=(2, 3), keepdims=True)
            want[:, :, 2 * i:2 * i + 2, 3 * j:3 * j + 3] = np.where(patch == m, patch, 0)
    np.testing.assert_array_equal(out, want)


def test_conv2d_shape_hints_flip_full_and_groups(backend):
    X, Wt = T.dtensor4("X"), T.dtensor4("W")  # symbolic kernel sizes: 'full' needs the hint
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 4, 6, 5)), rng.standard_normal((6, 4, 3, 2))
    full = T.nnet.conv2d(X, Wt, filter_shape=(6, 4, 3, 2), border_mode="full")
    corr = T.nnet.conv2d(X, Wt, image_shape=(2, 4, 6, 5), filter_flip=False, subsample=(2, 1))
    old_full = conv.conv2d(X, Wt, None, (6, 4, 3, 2), border_mode="full", subsample=(2, 2))
    wg = rng.standard_normal((6, 2, 3, 3))
    Wg = T.dtensor4("Wg")
    grouped = T.nnet.conv2d(X, Wg, num_groups=2, border_mode="half", filter_shape=(6, 2, 3, 3))
    f = tcomp.function([X, Wt, Wg], [full, corr, old_full, grouped], backend=backend)
    a, b, c, d = f(x, w, wg)
    np.testing.assert_allclose(a, np_conv(x, w, pad=(2, 1)), rtol=1e-10)
    np.testing.assert_allclose(b, np_conv(x, w, stride=(2, 1), flip=False), rtol=1e-10)
    np.testing.assert_allclose(c, np_conv(x, w, pad=(2, 1), stride=(2, 2)), rtol=1e-10)
    want = np.concatenate([np_conv(x[:, :2], wg[:3], pad=(1, 1)), np_conv(x[:, 2:], wg[3:], pad=(1, 1))], axis=1)
    np.testing.assert_allclose(d, want, rtol=1e-10)
    with pytest.raises(ValueError, match="input_shape"):
        T.nnet.conv2d(T.dtensor4("s", shape=(2, 4, 6, 5)), Wt, input_shape=(2, 3, 6, 5))
    # kernel sizes known only at run time: the input is padded in the graph (tests/test_nnet_more.py)
    assert T.nnet.conv2d(X, Wt, border_mode="full").ndim == 4
    with pytest.raises(ValueError, match="border_mode"):
        conv.conv2d(X, Wt, border_mode="half")
    with pytest.raises(TypeError, match="unexpected"):
        conv.conv2d(X, Wt, bogus=1)
    assert conv.conv2d(X, Wt, unroll_batch=4).ndim == 4  # ConvOp's tuning keywords are accepted


def test_theano_module_paths_import():
    import tcomp.tensor.nnet.bn as bn
    import tcomp.tensor.nnet.conv as conv_mod
    from tcomp.tensor.signal.downsample import max_pool_2d  # noqa: F401
    from tcomp.tensor.signal.pool import pool_2d  # noqa: F401

    assert conv_mod is T.nnet.conv and bn.batch_normalization is T.nnet.batch_normalization
    assert T.signal.pool is pool


def test_jit_python_scalars_are_weak(backend):
    @tcomp.jit(backend=backend)
    def scale(x, s):
        return x * s + s

    x32 = np.arange(4, dtype="float32")
    out = scale(x32, 2.0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, x32 * 2 + 2)
    np.testing.assert_allclose(scale(x32, 0.5), x32 * 0.5 + 0.5)  # same compiled function
    assert len(scale.cache) == 1
    assert scale(np.arange(4, dtype="int8"), 3).dtype == np.int8  # weak int
    assert scale(np.arange(4, dtype="int32"), 1.5).dtype == np.dtype(tcomp.config.floatX)  # int array, float scalar
    assert scale(np.arange(4, dtype="float64"), 2).dtype == np.float64
    assert scale(np.float32(1.0), np.float64(2.0)).dtype == np.float64  # NumPy scalars are strong
    with pytest.raises(OverflowError, match="int8"):
        scale(np.arange(4, dtype="int8"), 1000)


def test_signal_conv2d_of_images_and_stacks():
    from tcomp.tensor.signal import conv as sconv

    rng = np.random.default_rng(5)
    imgs, filt = rng.standard_normal((3, 7, 6)), rng.standard_normal((2, 3, 2))
    I3, F3, I2, F2 = T.dtensor3("I3"), T.dtensor3("F3"), T.dmatrix("I2"), T.dmatrix("F2")
    outs = [sconv.conv2d(I3, F3, image_shape=(3, 7, 6), filter_shape=(2, 3, 2)),
            sconv.conv2d(I2, F2, border_mode="full", filter_shape=(3, 2)), sconv.conv2d(I3, F2, subsample=(2, 1))]
    a, b, c = tcomp.function([I3, F3, I2, F2], outs, backend="reference")(imgs, filt, imgs[0], filt[1])
    assert a.shape == (3, 2, 5, 5) and b.shape == (9, 7) and c.shape == (3, 3, 5)
    np.testing.assert_allclose(a, np_conv(imgs[:, None], filt[:, None]), rtol=1e-10)
    np.testing.assert_allclose(b, np_conv(imgs[None, :1], filt[None, 1:2], pad=(2, 1))[0, 0], rtol=1e-10)
    np.testing.assert_allclose(c, np_conv(imgs[:, None], filt[None, 1:2], stride=(2, 1))[:, 0], rtol=1e-10)


def test_abstract_conv_gradients_are_adjoints_of_conv2d():
    """<conv2d(x, w), g> = <x, grad_wrt_inputs(g, w)> = <w, grad_wrt_weights(x, g)>, with the
    forward convolution computed by NumPy."""
    from tcomp.tensor.nnet import abstract_conv

    rng = np.random.default_rng(6)
    x, w, g = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal((2, 4, 4, 4))
    G, W, X = T.dtensor4("G"), T.dtensor4("W"), T.dtensor4("X")
    gi = abstract_conv.conv2d_grad_wrt_inputs(G, W, (None, 3, 7, 6), filter_shape=(4, 3, 3, 2), border_mode="half",
                                              subsample=(2, 2))
    gw = abstract_conv.conv2d_grad_wrt_weights(X, G, (4, 3, 3, 2), border_mode="half", subsample=(2, 2))
    tr = T.nnet.conv2d_transpose(G, W, (2, 3, 7, 6), filter_shape=(4, 3, 3, 2), border_mode="half",
                                 input_dilation=(2, 2))
    a, b, c = tcomp.function([G, W, X], [gi, gw, tr], backend="reference")(g, w, x)
    forward = np_conv(x, w, pad=(1, 1), stride=(2, 2))
    assert a.shape == x.shape and b.shape == w.shape
    np.testing.assert_allclose(np.sum(forward * g), np.sum(x * a), rtol=1e-10)
    np.testing.assert_allclose(np.sum(forward * g), np.sum(w * b), rtol=1e-10)
    np.testing.assert_array_equal(a, c)
