"""``T.nnet``: Theano's neural-network helpers."""
from __future__ import annotations

from tcomp.ir import dtypes as dt

from . import basic as B
from .variable import as_variable

sigmoid = B.sigmoid
relu = B.relu
softplus = B.softplus
softmax = B.softmax
log_softmax = B.log_softmax
logsumexp = B.logsumexp


def categorical_crossentropy(coding_dist, true_dist):
    """Per-row cross-entropy.  ``true_dist`` is either integer class indices (vector) or a
    one-hot/probability matrix, as in Theano."""
    p = as_variable(coding_dist, "coding_dist")
    t = as_variable(true_dist, "true_dist")
    if dt.is_int(t.dtype):
        if t.ndim != p.ndim - 1:
            raise ValueError(f"categorical_crossentropy: integer targets {t.describe()} must have one dim "
                             f"fewer than {p.describe()}")
        return -B.log(p[B.arange(t.shape[0]), t])
    return -B.sum(t * B.log(p), axis=-1)


def binary_crossentropy(output, target):
    o = as_variable(output, "output")
    return -(target * B.log(o) + (1 - target) * B.log(1 - o))


def hard_sigmoid(x):
    return B.clip(0.2 * as_variable(x) + 0.5, 0, 1)
