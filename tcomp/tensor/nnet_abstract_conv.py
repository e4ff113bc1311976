"""``T.nnet.abstract_conv``: Theano's gradient-of-convolution helpers, used for transposed
("deconvolution") layers: ``conv2d_grad_wrt_inputs`` / ``conv2d_grad_wrt_weights``, and
``conv2d_transpose`` (``T.nnet.conv2d_transpose``).

Each is the vector-Jacobian product of ``T.nnet.conv2d`` taken by the autodiff pass (an
``Lop`` at a zeros stand-in of the declared shape, whose value never matters), so its
semantics are exactly the adjoint of the forward convolution with the same arguments."""
from __future__ import annotations

import numpy as np

from . import basic as B
from .nnet import conv2d
from .variable import as_variable


def _dims(shape, what, fill=None):
    if shape is None or len(shape) != 4:
        raise ValueError(f"{what} must be a 4-tuple, got {shape!r}")
    return tuple(fill[i] if d is None and fill is not None and fill[i] is not None else d for i, d in enumerate(shape))


def conv2d_grad_wrt_inputs(output_grad, filters, input_shape, filter_shape=None, border_mode="valid",
                           subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1), num_groups=1):
    """The gradient of ``conv2d(input, filters, ...)`` with respect to an input of
    ``input_shape`` (batch may be None: taken from ``output_grad``), at ``output_grad``."""
    from tcomp.gradient import Lop

    gy = as_variable(output_grad, "output_grad")
    w = as_variable(filters, "filters")
    shape = _dims(input_shape, "conv2d_grad_wrt_inputs: input_shape", fill=(B.shape_i(gy, 0), None, None, None))
    if any(d is None for d in shape):
        raise ValueError(f"conv2d_grad_wrt_inputs: input_shape {input_shape!r} needs its channel and spatial sizes")
    x = B.zeros(shape, dtype=gy.dtype)
    y = conv2d(x, w, input_shape=None, filter_shape=filter_shape, border_mode=border_mode, subsample=subsample,
               filter_flip=filter_flip, filter_dilation=filter_dilation, num_groups=num_groups)
    return Lop(y, x, gy)


def conv2d_grad_wrt_weights(input, output_grad, filter_shape, input_shape=None, border_mode="valid",
                            subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1), num_groups=1):
    """The gradient of ``conv2d(input, filters, ...)`` with respect to filters of
    ``filter_shape``, at ``output_grad``."""
    from tcomp.gradient import Lop

    x = as_variable(input, "input")
    gy = as_variable(output_grad, "output_grad")
    shape = _dims(filter_shape, "conv2d_grad_wrt_weights: filter_shape")
    if any(d is None for d in shape):
        raise ValueError(f"conv2d_grad_wrt_weights: filter_shape {filter_shape!r} must be fully given")
    w = B.zeros(shape, dtype=gy.dtype)
    y = conv2d(x, w, input_shape=input_shape, border_mode=border_mode, subsample=subsample, filter_flip=filter_flip,
               filter_dilation=filter_dilation, num_groups=num_groups)
    return Lop(y, w, gy)


def conv2d_transpose(input, filters, output_shape, filter_shape=None, border_mode="valid", input_dilation=(1, 1),
                     filter_flip=True, filter_dilation=(1, 1), num_groups=1):
    """Theano's ``conv2d_transpose``: the transpose of a convolution with stride
    ``input_dilation``, producing ``output_shape``."""
    return conv2d_grad_wrt_inputs(input, filters, output_shape, filter_shape=filter_shape, border_mode=border_mode,
                                  subsample=input_dilation, filter_flip=filter_flip, filter_dilation=filter_dilation,
                                  num_groups=num_groups)


__all__ = ["conv2d", "conv2d_grad_wrt_inputs", "conv2d_grad_wrt_weights", "conv2d_transpose"]


def causal_conv1d(input, filters, filter_shape, input_shape=None, subsample=1, filter_flip=True,
                  filter_dilation=1, num_groups=1):
    """Theano's causal 1-d convolution of (batch, channels, time) input with (out, in, width)
    filters: the input is padded on the left by (width - 1) * dilation, so output step t sees
    input steps <= t only.  A conv2d over a unit height."""
    x = as_variable(input, "input")
    w = as_variable(filters, "filters")
    if x.ndim != 3 or w.ndim != 3:
        raise ValueError(f"causal_conv1d: input and filters must be 3-d, got {x.describe()} and {w.describe()}")
    width = filter_shape[2] if isinstance(filter_shape, (tuple, list)) and len(filter_shape) == 3 else None
    if not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"causal_conv1d: filter_shape must give a static filter width, got {filter_shape!r}")
    dilation = int(filter_dilation[0] if isinstance(filter_dilation, (tuple, list)) else filter_dilation)
    stride = int(subsample[0] if isinstance(subsample, (tuple, list)) else subsample)
    left = (int(width) - 1) * dilation
    x4 = x.dimshuffle(0, 1, "x", 2)
    if left:
        zeros = B.zeros((B.shape_i(x, 0), B.shape_i(x, 1), 1, left), dtype=x.dtype)
        x4 = B.concatenate([zeros, x4], axis=3)
    y = conv2d(x4, w.dimshuffle(0, 1, "x", 2), filter_shape=None, border_mode="valid", subsample=(1, stride),
               filter_flip=filter_flip, filter_dilation=(1, dilation), num_groups=num_groups)
    return y[:, :, 0, :]


def separable_conv2d(input, depthwise_filters, pointwise_filters, num_channels, input_shape=None,
                     depthwise_filter_shape=None, pointwise_filter_shape=None, border_mode="valid",
                     subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1)):
    """Theano's depthwise-separable convolution: each of the ``num_channels`` input channels is
    convolved with its own (depth_multiplier, 1, kh, kw) filters (``depthwise_filters`` is
    (num_channels * depth_multiplier, 1, kh, kw)), then a 1x1 ``pointwise_filters``
    (out, num_channels * depth_multiplier, 1, 1) convolution mixes the channels."""
    depthwise = conv2d(input, depthwise_filters, input_shape=input_shape, filter_shape=depthwise_filter_shape,
                       border_mode=border_mode, subsample=subsample, filter_flip=filter_flip,
                       filter_dilation=filter_dilation, num_groups=int(num_channels))
    return conv2d(depthwise, pointwise_filters, filter_shape=pointwise_filter_shape, border_mode="valid",
                  subsample=(1, 1), filter_flip=filter_flip)


def bilinear_kernel_1D(ratio, normalize=True, dtype=None):
    """The 1-d kernel [1, 2, ..., ratio, ..., 2, 1] (divided by ``ratio`` when ``normalize``)
    that upsamples by ``ratio`` with linear interpolation (``dtype``: floatX by default)."""
    r = int(ratio)
    half = np.arange(1, r + 1, dtype="float64")
    kern = np.concatenate([half, half[-2::-1]])
    return as_variable(np.asarray(kern / r if normalize else kern, dtype=dtype or _floatx()))


def bilinear_kernel_2D(ratio, normalize=True, dtype=None):
    """The outer product of two :func:`bilinear_kernel_1D` kernels."""
    k = bilinear_kernel_1D(ratio, normalize, dtype)
    return k.dimshuffle(0, "x") * k.dimshuffle("x", 0)


def _floatx():
    from tcomp import config

    return config.floatX


def bilinear_upsampling(input, ratio=None, frac_ratio=None, batch_size=None, num_input_channels=None,
                        use_1D_kernel=True):
    """Theano's bilinear upsampling of (batch, channels, rows, cols) by the integer ``ratio``:
    the rows and columns are edge-padded by one, then a transposed convolution with the
    bilinear kernel and stride ``ratio`` gives (rows * ratio, cols * ratio).  As in Theano,
    an even ratio repeats the last row/column once more than the first."""
    if frac_ratio is not None:
        raise ValueError("bilinear_upsampling: frac_ratio is not supported; give an integer ratio")
    if not isinstance(ratio, (int, np.integer)) or ratio < 1:
        raise ValueError(f"bilinear_upsampling: ratio must be a positive int, got {ratio!r}")
    x = as_variable(input, "input")
    if x.ndim != 4:
        raise ValueError(f"bilinear_upsampling: input must be 4-d (batch, channels, rows, cols), got {x.describe()}")
    r = int(ratio)
    rows, cols = B.shape_i(x, 2), B.shape_i(x, 3)
    flat = B.reshape(x, (B.shape_i(x, 0) * B.shape_i(x, 1), 1, rows, cols))
    padded = B.concatenate([flat[:, :, :1], flat, flat[:, :, -1:]], axis=2)
    padded = B.concatenate([padded[:, :, :, :1], padded, padded[:, :, :, -1:]], axis=3)
    pad = 2 * r - (r - 1) // 2 - 1
    k = bilinear_kernel_1D(r, dtype=x.dtype)
    size = 2 * r - 1
    if use_1D_kernel:
        up_rows = conv2d_grad_wrt_inputs(padded, k.dimshuffle("x", "x", 0, "x"), (None, 1, rows * r, cols + 2),
                                         filter_shape=(1, 1, size, 1), border_mode=(pad, 0), subsample=(r, 1))
        out = conv2d_grad_wrt_inputs(up_rows, k.dimshuffle("x", "x", "x", 0), (None, 1, rows * r, cols * r),
                                     filter_shape=(1, 1, 1, size), border_mode=(0, pad), subsample=(1, r))
    else:
        k2 = bilinear_kernel_2D(r, dtype=x.dtype)
        out = conv2d_grad_wrt_inputs(padded, k2.dimshuffle("x", "x", 0, 1), (None, 1, rows * r, cols * r),
                                     filter_shape=(1, 1, size, size), border_mode=(pad, pad), subsample=(r, r))
    return B.reshape(out, (B.shape_i(x, 0), B.shape_i(x, 1), rows * r, cols * r))
