"""``T.signal.conv``: Theano's plain 2-D convolution of single images or stacks of them
(``signal.conv.conv2d``), unlike ``T.nnet.conv2d``, which sums over input channels."""
from __future__ import annotations

from .. import basic as B
from ..nnet import conv2d as _nnet_conv2d
from ..nnet_conv import _TUNING
from ..variable import as_variable


def conv2d(input, filters, image_shape=None, filter_shape=None, border_mode="valid", subsample=(1, 1), **kargs):
    """Convolve ``input`` (rows, cols) or (images, rows, cols) with ``filters`` (rows, cols)
    or (filters, rows, cols); the result is ([images,] [filters,] rows', cols').  The shape
    hints are checked against the variables; ``kargs`` (ConvOp's tuning keywords) are unused."""
    unknown = sorted(set(kargs) - set(_TUNING))
    if unknown:
        raise TypeError(f"signal.conv.conv2d: unexpected keyword argument(s) {', '.join(unknown)}")
    x = as_variable(input, "input")
    w = as_variable(filters, "filters")
    if x.ndim not in (2, 3):
        raise ValueError(f"signal.conv.conv2d: input must be 2-d or 3-d, got {x.describe()}")
    if w.ndim not in (2, 3):
        raise ValueError(f"signal.conv.conv2d: filters must be 2-d or 3-d, got {w.describe()}")
    if border_mode not in ("valid", "full"):
        raise ValueError(f"signal.conv.conv2d: border_mode must be 'valid' or 'full', got {border_mode!r}")
    x4 = B.reshape(x, (-1, 1, B.shape_i(x, x.ndim - 2), B.shape_i(x, x.ndim - 1)))
    w4 = B.reshape(w, (-1, 1, B.shape_i(w, w.ndim - 2), B.shape_i(w, w.ndim - 1)))
    hints = {}
    if image_shape is not None:
        if len(image_shape) != x.ndim:
            raise ValueError(f"signal.conv.conv2d: image_shape {image_shape} does not match {x.describe()}")
        hints["input_shape"] = (None, 1) + tuple(image_shape[-2:])
    if filter_shape is not None:
        if len(filter_shape) != w.ndim:
            raise ValueError(f"signal.conv.conv2d: filter_shape {filter_shape} does not match {w.describe()}")
        hints["filter_shape"] = (None, 1) + tuple(filter_shape[-2:])
    out = _nnet_conv2d(x4, w4, border_mode=border_mode, subsample=subsample, filter_flip=True, **hints)
    keep = ([B.shape_i(x, 0)] if x.ndim == 3 else []) + ([B.shape_i(w, 0)] if w.ndim == 3 else [])
    return B.reshape(out, tuple(keep) + (B.shape_i(out, 2), B.shape_i(out, 3)))


__all__ = ["conv2d"]
