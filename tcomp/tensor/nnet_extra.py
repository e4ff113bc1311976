"""More of Theano's ``T.nnet`` activations and losses, as compositions of existing ops (so
each gets fusion, native lowering and its gradient from its parts)."""
from __future__ import annotations

from tcomp.ir import dtypes as dt

from . import basic as B
from .variable import as_variable


def _float(x):
    x = as_variable(x, "x")
    return x if dt.is_float(x.dtype) else B.cast(x, "floatX")


def elu(x, alpha=1.0):
    """x for x > 0, alpha * expm1(x) otherwise (expm1 of x clamped to <= 0: the unselected branch
    never overflows, so the gradient stays finite for large x; at 0 the gradient is alpha)."""
    x = _float(x)
    pos = B.gt(x, 0)
    return B.where(pos, x, B.mul(alpha, B.expm1(B.where(pos, 0.0, x))))


SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def selu(x):
    """Klambauer et al.'s self-normalizing unit: scale * elu(x, alpha) with their constants."""
    return B.mul(SELU_SCALE, elu(x, SELU_ALPHA))


def sigmoid_binary_crossentropy(output, target):
    """binary_crossentropy(sigmoid(output), target) for real-valued ``output``, computed stably
    as softplus(output) - target * output (no log of a rounded-to-0 or 1 sigmoid)."""
    o = _float(output)
    return B.sub(B.softplus(o), B.mul(target, o))


def softsign(x):
    """x / (1 + |x|)."""
    x = _float(x)
    return B.true_div(x, B.add(1.0, B.abs(x)))


def ultra_fast_sigmoid(x):
    """Theano's piecewise approximation of the sigmoid (max error ~0.02): with h = x/2,
    z = 1.5h/(1+|h|) up to |h| = 1.7, a line up to 3, then 0.99505475368673, sign restored;
    result 0.5 z + 0.5."""
    x = _float(x)
    h = B.mul(0.5, x)
    neg = B.lt(h, 0)
    a = B.where(neg, B.neg(h), h)              # |h| with gradient 1 at 0
    f = B.where(B.lt(a, 1.7), B.true_div(B.mul(1.5, a), B.add(1.0, a)),
                B.where(B.lt(a, 3.0), B.add(0.935409070603099, B.mul(0.0458812946797165, B.sub(a, 1.7))),
                        0.99505475368673))
    z = B.where(neg, B.neg(f), f)
    return B.add(B.mul(0.5, z), 0.5)


def _check_1hot(x, y_idx, what):
    x = as_variable(x, "x")
    y_idx = as_variable(y_idx, "y_idx")
    if x.ndim != 2:
        raise ValueError(f"{what}: x must be a matrix (batch, classes), got {x.describe()}")
    if y_idx.ndim != 1 or not dt.is_int(y_idx.dtype):
        raise TypeError(f"{what}: y_idx must be an integer vector of class indices, got {y_idx.describe()}")
    return x, y_idx


def crossentropy_softmax_argmax_1hot_with_bias(x, b, y_idx):
    """(nll, softmax(x + b), argmax(x + b, axis=1)), nll[i] = -log softmax(x + b)[i, y_idx[i]]
    (computed through log_softmax: no overflow, no log(0))."""
    x, y_idx = _check_1hot(x, y_idx, "crossentropy_softmax_argmax_1hot_with_bias")
    z = B.add(x, b)
    nll = B.neg(B.log_softmax(z, axis=1)[B.arange(y_idx.shape[0]), y_idx])
    return nll, B.softmax(z, axis=1), B.argmax(z, axis=1)


def crossentropy_softmax_1hot_with_bias(x, b, y_idx):
    return crossentropy_softmax_argmax_1hot_with_bias(x, b, y_idx)[:2]


def crossentropy_softmax_1hot(x, y_idx):
    """Theano's crossentropy_softmax_1hot: (nll, softmax(x)) for integer labels ``y_idx``."""
    x, y_idx = _check_1hot(x, y_idx, "crossentropy_softmax_1hot")
    nll = B.neg(B.log_softmax(x, axis=1)[B.arange(y_idx.shape[0]), y_idx])
    return nll, B.softmax(x, axis=1)


def crossentropy_categorical_1hot(coding_dist, true_one_of_n):
    """Theano's crossentropy_categorical_1hot: -log(coding_dist[i, true_one_of_n[i]]) per row
    (rewritten through log_softmax when coding_dist is a softmax: no log(0))."""
    p, y = _check_1hot(coding_dist, true_one_of_n, "crossentropy_categorical_1hot")
    return B.neg(B.log(p[B.arange(y.shape[0]), y]))


def softmax_with_bias(x, b):
    """Theano's softmax_with_bias: softmax over the rows of x + b."""
    return B.softmax(B.add(as_variable(x, "x"), b), axis=-1)


def h_softmax(x, batch_size, n_outputs, n_classes, n_outputs_per_class, W1, b1, W2, b2, target=None):
    """Theano's two-level hierarchical softmax: p(y) = p(class(y)) * p(y | class(y)), with
    ``W1`` (n_hidden, n_classes), ``b1`` (n_classes,), ``W2`` (n_classes, n_hidden,
    n_outputs_per_class), ``b2`` (n_classes, n_outputs_per_class).  Without ``target``: every
    output's probability, (batch, n_outputs); with integer ``target`` (batch,): only the
    targets' probabilities, (batch,), computing one class's softmax per row."""
    from .extra import batched_dot, tensordot

    x = _float(x)
    W1, b1, W2, b2 = (as_variable(v, n) for v, n in ((W1, "W1"), (b1, "b1"), (W2, "W2"), (b2, "b2")))
    class_probs = B.softmax(B.add(B.dot(x, W1), b1))
    if target is None:
        scores = B.add(tensordot(x, W2, axes=[[1], [1]]), b2)  # (batch, n_classes, n_per)
        probs = B.mul(B.dimshuffle(class_probs, (0, 1, "x")), B.softmax(scores))
        return B.reshape(probs, (B.shape_i(x, 0), n_classes * n_outputs_per_class))[:, :n_outputs]
    target = as_variable(target, "target")
    cls, idx = target // n_outputs_per_class, target % n_outputs_per_class
    rows = B.arange(B.shape_i(x, 0))
    scores = B.add(batched_dot(x, W2[cls]), b2[cls])  # (batch, n_per): each row's own class
    return B.mul(class_probs[rows, cls], B.softmax(scores)[rows, idx])
