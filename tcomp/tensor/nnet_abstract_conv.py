"""``T.nnet.abstract_conv``: Theano's gradient-of-convolution helpers, used for transposed
("deconvolution") layers: ``conv2d_grad_wrt_inputs`` / ``conv2d_grad_wrt_weights``, and
``conv2d_transpose`` (``T.nnet.conv2d_transpose``).

Each is the vector-Jacobian product of ``T.nnet.conv2d`` taken by the autodiff pass (an
``Lop`` at a zeros stand-in of the declared shape, whose value never matters), so its
semantics are exactly the adjoint of the forward convolution with the same arguments."""
from __future__ import annotations

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
