"""Theano's ``T.nnet.conv3d`` on NCDHW input and (out, in, kd, kh, kw) filters.

Built from ``conv2d``: for each of the kd filter planes, the input's depth slices that meet
it are folded into the batch and convolved in 2-d, and the kd results are summed.  So every
backend and autodiff have it, with conv2d's speed per plane.  Needs a static filter depth
(a shared variable's shape, or ``filter_shape=``).
"""
from __future__ import annotations

import numpy as np

from . import basic as B
from .variable import as_variable


def _triple(value, what):
    if isinstance(value, (int, np.integer)):
        return (int(value),) * 3
    out = tuple(int(v) for v in value)
    if len(out) != 3:
        raise ValueError(f"conv3d: {what} must be an int or three ints, got {value!r}")
    return out


def _padding(border_mode, ks, dil):
    if not isinstance(border_mode, str):
        return _triple(border_mode, "border_mode")
    if border_mode == "valid":
        return (0, 0, 0)
    if border_mode not in ("full", "half", "same"):
        raise ValueError(f"conv3d: unknown border_mode {border_mode!r}")
    if not all(isinstance(k, int) for k in ks):
        raise ValueError(f"conv3d: border_mode={border_mode!r} needs static kernel sizes (give filter_shape=)")
    if border_mode == "full":
        return tuple(d * (k - 1) for d, k in zip(dil, ks))
    return tuple(d * (k // 2) for d, k in zip(dil, ks))


def conv3d(input, filters, input_shape=None, filter_shape=None, border_mode="valid", subsample=(1, 1, 1),
           filter_flip=True, filter_dilation=(1, 1, 1), num_groups=1):
    """3-d convolution (a true convolution when ``filter_flip``, else correlation), with
    Theano's ``border_mode`` ('valid', 'full', 'half', an int or three), ``subsample``
    (strides) and ``filter_dilation``."""
    from .nnet import _shape_hint, conv2d

    x = as_variable(input, "input")
    w = as_variable(filters, "filters")
    if x.ndim != 5:
        raise ValueError(f"conv3d: input must be 5-d (batch, channels, depth, rows, cols), got {x.describe()}")
    if w.ndim != 5:
        raise ValueError(f"conv3d: filters must be 5-d (out, in, kd, kh, kw), got {w.describe()}")
    _shape_hint(x, input_shape, "input_shape")
    fhint = _shape_hint(w, filter_shape, "filter_shape")
    if fhint is not None and any(h is not None and not isinstance(d, int) for h, d in zip(fhint, w.type.shape)):
        from .type import specify_shape

        w = specify_shape(w, [h if h is not None else B.shape_i(w, i) for i, h in enumerate(fhint)])
    kd = w.type.shape[2]
    if not isinstance(kd, int):
        raise ValueError(f"conv3d: needs a static filter depth, got {w.describe()} (give filter_shape=)")
    dil = _triple(filter_dilation, "filter_dilation")
    stride = _triple(subsample, "subsample")
    pd, ph, pw = _padding(border_mode, w.type.shape[2:], dil)
    if pd:
        zeros = B.zeros((B.shape_i(x, 0), B.shape_i(x, 1), pd, B.shape_i(x, 3), B.shape_i(x, 4)), dtype=x.dtype)
        x = B.concatenate([zeros, x, zeros], axis=2)
    batch, depth = B.shape_i(x, 0), B.shape_i(x, 2)
    d_out = (depth - dil[0] * (kd - 1) - 1) // stride[0] + 1
    total = None
    for k in range(kd):
        start = k * dil[0]
        planes = x[:, :, start:start + (d_out - 1) * stride[0] + 1:stride[0]]  # (B, C, d_out, H, W)
        folded = B.reshape(planes.dimshuffle(0, 2, 1, 3, 4),
                           (batch * d_out, B.shape_i(x, 1), B.shape_i(x, 3), B.shape_i(x, 4)))
        plane = w[:, :, kd - 1 - k if filter_flip else k]
        y = conv2d(folded, plane, border_mode=(ph, pw), subsample=stride[1:], filter_flip=filter_flip,
                   filter_dilation=dil[1:], num_groups=num_groups)
        y = B.reshape(y, (batch, d_out, B.shape_i(y, 1), B.shape_i(y, 2), B.shape_i(y, 3))).dimshuffle(0, 2, 1, 3, 4)
        total = y if total is None else total + y
    return total
