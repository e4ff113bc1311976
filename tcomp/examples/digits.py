"""Logistic regression and an MLP on scikit-learn's bundled 8x8 digits, written the way the
Theano tutorials wrote them: shared datasets, a minibatch index, ``givens``, NLL through
advanced indexing, L1/L2 terms, ``T.grad`` and SGD ``updates``."""
from __future__ import annotations

import sys
import time

import numpy as np

import tcomp
import tcomp.tensor as T


def load_digits(seed=0):
    """(train_x, train_y, test_x, test_y): pixels scaled to [0, 1], 80/20 split."""
    try:
        from sklearn.datasets import load_digits as sk_load
    except ImportError as exc:  # pragma: no cover - the examples extra installs it
        raise SystemExit("the digits demo needs scikit-learn: pip install -e '.[examples]'") from exc
    d = sk_load()
    x = (d.data / 16.0).astype("float32")
    y = d.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_train = int(0.8 * len(x))
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def progress(epoch, epochs, done, total, extra="", stream=sys.stdout, width=30):
    """A one-line progress bar per epoch (redrawn in place on a terminal, printed once when done otherwise)."""
    if done != total and not stream.isatty():
        return
    filled = int(width * done / total)
    bar = "#" * filled + "-" * (width - filled)
    stream.write(f"\r  epoch {epoch + 1:3d}/{epochs} [{bar}] {extra}")
    if done == total:
        stream.write("\n")
    stream.flush()


class Model:
    """Parameters, a symbolic output distribution and the NLL for a minibatch."""

    def __init__(self, kind, n_in, n_out, n_hidden=64, seed=0):
        rng = np.random.default_rng(seed)
        x = T.matrix("x")
        self.x = x
        if kind == "logreg":
            self.W = tcomp.shared(np.zeros((n_in, n_out), "float32"), "W")
            self.b = tcomp.shared(np.zeros(n_out, "float32"), "b")
            self.params = [self.W, self.b]
            self.weights = [self.W]
            self.p_y = T.nnet.softmax(T.dot(x, self.W) + self.b)
        elif kind == "mlp":
            bound = np.sqrt(6.0 / (n_in + n_hidden))
            W1 = tcomp.shared(rng.uniform(-bound, bound, (n_in, n_hidden)).astype("float32"), "W1")
            b1 = tcomp.shared(np.zeros(n_hidden, "float32"), "b1")
            W2 = tcomp.shared(np.zeros((n_hidden, n_out), "float32"), "W2")
            b2 = tcomp.shared(np.zeros(n_out, "float32"), "b2")
            self.params = [W1, b1, W2, b2]
            self.weights = [W1, W2]
            h = T.tanh(T.dot(x, W1) + b1)
            self.p_y = T.nnet.softmax(T.dot(h, W2) + b2)
        else:
            raise ValueError(f"unknown model {kind!r}")
        self.y_pred = T.argmax(self.p_y, axis=1)

    def nll(self, y):
        return -T.mean(T.log(self.p_y)[T.arange(y.shape[0]), y])

    def errors(self, y):
        return T.mean(T.neq(self.y_pred, y))


def train(kind, epochs=30, batch_size=32, lr=0.1, l1=0.0, l2=1e-4, backend=None, seed=0, verbose=True):
    """Train one model; returns dict(test_accuracy, step_us, compile_s)."""
    tx, ty, vx, vy = load_digits(seed)
    train_x, train_y = tcomp.shared(tx, "train_x"), tcomp.shared(ty, "train_y")
    test_x, test_y = tcomp.shared(vx, "test_x"), tcomp.shared(vy, "test_y")
    model = Model(kind, tx.shape[1], 10, seed=seed)
    y = T.ivector("y")
    index = T.lscalar("index")
    cost = model.nll(y)
    cost = cost + l1 * sum(abs(W).sum() for W in model.weights) + l2 * sum((W ** 2).sum() for W in model.weights)
    grads = T.grad(cost, model.params)
    updates = [(p, p - lr * g) for p, g in zip(model.params, grads)]
    t0 = time.perf_counter()
    step = tcomp.function([index], cost, updates=updates, backend=backend, name=f"{kind}_step",
                          givens={model.x: train_x[index * batch_size:(index + 1) * batch_size],
                                  y: train_y[index * batch_size:(index + 1) * batch_size]})
    test = tcomp.function([], model.errors(y), givens={model.x: test_x, y: test_y}, backend=backend)
    compile_s = time.perf_counter() - t0
    n_batches = len(tx) // batch_size
    step_time = 0.0
    for epoch in range(epochs):
        losses = []
        for i in range(n_batches):
            t = time.perf_counter()
            losses.append(float(step(i)))
            step_time += time.perf_counter() - t
            if verbose and (i % 8 == 0 or i == n_batches - 1):
                progress(epoch, epochs, i + 1, n_batches, f"loss {np.mean(losses):.4f}")
    acc = 1.0 - float(test())
    return {"test_accuracy": acc, "step_us": 1e6 * step_time / (epochs * n_batches), "compile_s": compile_s}


def main(backend=None, epochs=None, quick=False) -> dict:
    results = {}
    plan = [("logreg", 20, 0.5), ("mlp", 40, 0.2)]
    for kind, default_epochs, lr in plan:
        e = epochs or (3 if quick else default_epochs)
        print(f"-- {kind}: {e} epochs, minibatch 32, SGD lr {lr} --")
        r = train(kind, epochs=e, lr=lr, backend=backend)
        print(f"   compiled in {r['compile_s']:.2f} s; step {r['step_us']:.0f} us; "
              f"test accuracy {100 * r['test_accuracy']:.2f}%")
        results[kind] = r
    return results
