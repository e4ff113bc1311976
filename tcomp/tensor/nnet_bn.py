"""``T.nnet.bn``: Theano's batch-normalization module path (``T.nnet.bn.batch_normalization``)."""
from .nnet import batch_normalization, batch_normalization_test, batch_normalization_train  # noqa: F401

__all__ = ["batch_normalization", "batch_normalization_train", "batch_normalization_test"]
