"""``T.signal``: Theano's signal-processing package path: ``pool`` (``pool_2d``,
``max_pool_2d_same_size``), ``downsample`` (the older ``max_pool_2d``) and ``conv`` (plain
2-d convolution of images and stacks of images)."""
from . import conv, downsample, pool  # noqa: F401
