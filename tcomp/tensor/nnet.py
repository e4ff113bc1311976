"""``T.nnet``: Theano's neural-network helpers."""
from __future__ import annotations

import numpy as np

from tcomp.ir import dtypes as dt

from . import basic as B
from .variable import apply, as_variable

sigmoid = B.sigmoid
relu = B.relu
softplus = B.softplus
softmax = B.softmax
log_softmax = B.log_softmax
logsumexp = B.logsumexp


def categorical_crossentropy(coding_dist, true_dist):
    """Per-row cross-entropy.  ``true_dist`` is either integer class indices (vector) or a
    one-hot/probability matrix, as in Theano."""
    p = as_variable(coding_dist, "coding_dist")
    t = as_variable(true_dist, "true_dist")
    if dt.is_int(t.dtype):
        if t.ndim != p.ndim - 1:
            raise ValueError(f"categorical_crossentropy: integer targets {t.describe()} must have one dim "
                             f"fewer than {p.describe()}")
        return -B.log(p[B.arange(t.shape[0]), t])
    return -B.sum(t * B.log(p), axis=-1)


def binary_crossentropy(output, target):
    o = as_variable(output, "output")
    return -(target * B.log(o) + (1 - target) * B.log(1 - o))


def hard_sigmoid(x):
    return B.clip(0.2 * as_variable(x) + 0.5, 0, 1)


# -- convolution, pooling, normalization, dropout ---------------------------------------

def _pair(value, what):
    if isinstance(value, (int, np.integer)):
        return (int(value), int(value))
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")
    return pair


def conv2d(input, filters, input_shape=None, filter_shape=None, border_mode="valid", subsample=(1, 1),
           filter_flip=True, filter_dilation=(1, 1)):
    """Theano's ``conv2d`` on NCHW input and (out, in, kh, kw) filters.

    ``border_mode``: 'valid', 'full', 'half'/'same' (output = input size for odd kernels at
    stride 1), an int, or a pair (ph, pw).  ``input_shape``/``filter_shape`` are accepted for
    Theano compatibility; the static shapes of the variables already carry that information.
    """
    x = as_variable(input, "input")
    w = as_variable(filters, "filters")
    if w.ndim != 4:
        raise ValueError(f"conv2d: filters must be 4-d (out, in, kh, kw), got {w.describe()}")
    dil = _pair(filter_dilation, "filter_dilation")
    kh, kw = w.type.shape[2], w.type.shape[3]
    if isinstance(border_mode, str):
        if border_mode == "valid":
            pad = (0, 0)
        elif border_mode in ("full", "half", "same"):
            if not (isinstance(kh, int) and isinstance(kw, int)):
                raise ValueError(f"conv2d: border_mode={border_mode!r} needs static kernel sizes, got {w.describe()}")
            if border_mode == "full":
                pad = (dil[0] * (kh - 1), dil[1] * (kw - 1))
            else:
                pad = (dil[0] * (kh // 2), dil[1] * (kw // 2))
        else:
            raise ValueError(f"conv2d: unknown border_mode {border_mode!r}")
    else:
        pad = _pair(border_mode, "border_mode")
    attrs = {"pad": pad, "stride": _pair(subsample, "subsample"), "dilation": dil, "filter_flip": bool(filter_flip)}
    return apply("conv2d", [x, w], attrs)


def pool_2d(input, ws=(2, 2), ignore_border=True, stride=None, pad=(0, 0), mode="max"):
    """Theano's ``pool_2d`` over the last two axes; mode 'max', 'sum', 'average_inc_pad',
    'average_exc_pad' (or 'average', an alias of the latter)."""
    x = as_variable(input, "input")
    attrs = {"ws": _pair(ws, "ws"), "stride": None if stride is None else _pair(stride, "stride"),
             "pad": _pair(pad, "pad"), "mode": "average_exc_pad" if mode == "average" else mode,
             "ignore_border": bool(ignore_border)}
    return apply("pool2d", [x], attrs)


def batch_normalization(inputs, gamma, beta, mean, std):
    """Theano's ``bn.batch_normalization``: ``(inputs - mean) * (gamma / std) + beta``."""
    return (as_variable(inputs) - mean) * (gamma / std) + beta


def batch_normalization_train(inputs, gamma, beta, axes="per-activation", epsilon=1e-4):
    """Normalize with the batch statistics; returns (out, mean, invstd) like Theano's
    ``bn.batch_normalization_train`` (means/invstd keep the reduced axes as size 1)."""
    x = as_variable(inputs, "inputs")
    if axes == "per-activation":
        axes = (0,)
    elif axes == "spatial":
        axes = (0,) + tuple(range(2, x.ndim))
    mean = B.mean(x, axis=axes, keepdims=True)
    var = B.mean(B.sqr(x - mean), axis=axes, keepdims=True)
    invstd = 1.0 / B.sqrt(var + epsilon)
    return (x - mean) * invstd * gamma + beta, mean, invstd


def batch_normalization_test(inputs, gamma, beta, mean, var, epsilon=1e-4):
    return (as_variable(inputs) - mean) / B.sqrt(var + epsilon) * gamma + beta


def dropout(x, p, srng):
    """Inverted dropout: zero each element with probability ``p`` and scale the rest by
    1/(1-p), drawing the mask from ``srng`` (a ``tcomp.RandomStreams``); new mask per call."""
    x = as_variable(x, "x")
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if p == 0:
        return x
    mask = srng.binomial(x.shape, p=1 - p, dtype=x.dtype)
    return x * mask * (1.0 / (1 - p))


from .nnet_extra import (  # noqa: E402,F401
    crossentropy_softmax_1hot,
    crossentropy_softmax_1hot_with_bias,
    crossentropy_softmax_argmax_1hot_with_bias,
    elu,
    softsign,
    ultra_fast_sigmoid,
)
