"""``T.nnet.conv``: Theano's old convolution module, ``conv.conv2d(input, filters,
image_shape=None, filter_shape=None, border_mode='valid', subsample=(1, 1))`` (the
signature of Theano <= 0.8 and of the LeNet tutorial's older versions): a true
convolution (filters flipped) with border modes 'valid' and 'full'."""
from __future__ import annotations

from .nnet import conv2d as _conv2d

#: ConvOp's tuning keywords: accepted and unused (tcomp chooses its own loop schedule)
_TUNING = ("unroll_batch", "unroll_kern", "unroll_patch", "openmp", "verbose", "version", "direction_hint",
           "imshp_logical", "kshp_logical", "kshp_logical_top_aligned")


def conv2d(input, filters, image_shape=None, filter_shape=None, border_mode="valid", subsample=(1, 1), **kargs):
    """Convolve a minibatch (batch, channels, rows, cols) with filters (n, channels, kh, kw)."""
    unknown = sorted(set(kargs) - set(_TUNING))
    if unknown:
        raise TypeError(f"conv.conv2d: unexpected keyword argument(s) {', '.join(unknown)}")
    if border_mode not in ("valid", "full"):
        raise ValueError(f"conv.conv2d: border_mode must be 'valid' or 'full', got {border_mode!r}")
    return _conv2d(input, filters, input_shape=image_shape, filter_shape=filter_shape, border_mode=border_mode,
                   subsample=subsample, filter_flip=True)


__all__ = ["conv2d"]
