"""The classic Theano first program: an MLP with a hand-written gradient and SGD updates.

Kept deliberately in Theano's style (shared parameters, ``updates``, ``givens`` over a
shared dataset with a minibatch index) so a Theano user recognizes every line.
"""
from __future__ import annotations

import numpy as np

import tcomp
import tcomp.tensor as T


def build_mse_mlp(n_in, n_hidden, n_out, lr=0.1, seed=0, backend=None):
    """A tanh MLP regressor with mean-squared error; gradients written out by hand.

    Returns (train_step, predict, params).
    """
    rng = np.random.default_rng(seed)
    W1 = tcomp.shared((rng.standard_normal((n_in, n_hidden)) / np.sqrt(n_in)).astype("float32"), "W1")
    b1 = tcomp.shared(np.zeros(n_hidden, "float32"), "b1")
    W2 = tcomp.shared((rng.standard_normal((n_hidden, n_out)) / np.sqrt(n_hidden)).astype("float32"), "W2")
    b2 = tcomp.shared(np.zeros(n_out, "float32"), "b2")
    x, y = T.matrix("x"), T.matrix("y")
    h = T.tanh(T.dot(x, W1) + b1)
    out = T.dot(h, W2) + b2
    n = T.cast(x.shape[0], "float32")
    cost = T.mean(T.sum((out - y) ** 2, axis=1))
    # backprop by hand: d cost / d out = 2 (out - y) / n
    g_out = 2 * (out - y) / n
    g_W2 = T.dot(h.T, g_out)
    g_b2 = g_out.sum(axis=0)
    g_h = T.dot(g_out, W2.T) * (1 - h * h)
    g_W1 = T.dot(x.T, g_h)
    g_b1 = g_h.sum(axis=0)
    updates = [(p, p - lr * g) for p, g in ((W1, g_W1), (b1, g_b1), (W2, g_W2), (b2, g_b2))]
    train = tcomp.function([x, y], cost, updates=updates, name="mse_train_step", backend=backend)
    predict = tcomp.function([x], out, name="predict", backend=backend)
    return train, predict, (W1, b1, W2, b2)


def classifier_weights(sizes=(784, 512, 512, 10), seed=0) -> list:
    """He-initialized weight matrices of :func:`build_classifier_step` (float32)."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype("float32")
            for n_in, n_out in zip(sizes[:-1], sizes[1:])]


def build_classifier_step(sizes=(784, 512, 512, 10), batch=128, lr=0.01, seed=0, backend=None, weights=None,
                          **compile_kwargs):
    """An MLP classifier training step (relu hidden layers, softmax cross-entropy via
    T.grad, SGD updates) with a static batch size, so every buffer has a static size.
    ``weights``: the matrices from :func:`classifier_weights` (made from ``seed`` if None;
    ``tcomp bench`` makes them before it times the graph's building and compiling).

    Returns (step function, (x, y) symbolic inputs, params).
    """
    weights = classifier_weights(sizes, seed) if weights is None else weights
    x = T.matrix("x", shape=(batch, sizes[0]))
    y = T.ivector("y", shape=(batch,))
    params, h = [], x
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = tcomp.shared(weights[i], f"W{i}")
        b = tcomp.shared(np.zeros(n_out, "float32"), f"b{i}")
        params += [W, b]
        a = T.dot(h, W) + b
        h = T.nnet.relu(a) if i < len(sizes) - 2 else a
    p_y = T.nnet.softmax(h)
    cost = -T.mean(T.log(p_y)[T.arange(y.shape[0]), y])
    grads = T.grad(cost, params)
    step = tcomp.function([x, y], cost, updates=[(p, p - lr * g) for p, g in zip(params, grads)],
                          backend=backend, name="mlp_step", **compile_kwargs)
    return step, (x, y), params
