"""``tcomp.sandbox``: where Theano kept ``rng_mrg.MRG_RandomStreams`` (so that
``from theano.sandbox.rng_mrg import MRG_RandomStreams`` works with the import changed)."""
from . import rng_mrg  # noqa: F401
