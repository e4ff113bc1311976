"""``T.signal``: Theano's signal-processing package path: ``pool`` (``pool_2d``,
``max_pool_2d_same_size``) and ``downsample`` (the older ``max_pool_2d``)."""
from . import downsample, pool  # noqa: F401
