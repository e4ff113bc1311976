"""``T.signal.downsample``: Theano <= 0.8's pooling module, which many tutorials import
(``downsample.max_pool_2d(input, ds, ignore_border)``); ``ignore_border=None`` means False
there, as in Theano."""
from __future__ import annotations

from .pool import max_pool_2d_same_size, pool_2d


def max_pool_2d(input, ds, ignore_border=None, st=None, padding=(0, 0), mode="max"):
    """Pool the last two axes of ``input`` with windows ``ds`` (stride ``st``, default ``ds``)."""
    return pool_2d(input, ws=ds, ignore_border=ignore_border, stride=st, pad=padding, mode=mode)


__all__ = ["max_pool_2d", "max_pool_2d_same_size"]
