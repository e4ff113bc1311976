"""``tcomp.tensor.shared_randomstreams``: Theano's module path of ``RandomStreams``
(``from theano.tensor.shared_randomstreams import RandomStreams``)."""
from tcomp.random import RandomStreams, RandomVariable  # noqa: F401

__all__ = ["RandomStreams", "RandomVariable"]
