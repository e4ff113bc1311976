"""``tcomp demo``: build a small model, print its IR, train it and evaluate it."""
from __future__ import annotations

import time

import numpy as np

from .mlp import build_mse_mlp


def main(args=None) -> int:
    backend = getattr(args, "backend", None)
    quick = bool(getattr(args, "quick", False))
    epochs = getattr(args, "epochs", None) or (20 if quick else 200)
    rng = np.random.default_rng(0)
    # A smooth regression target: y = sin(x W) with a fixed random W.
    X = rng.uniform(-1, 1, size=(256, 8)).astype("float32")
    W_true = rng.standard_normal((8, 2)).astype("float32")
    Y = np.sin(X @ W_true).astype("float32")
    train, predict, _ = build_mse_mlp(8, 32, 2, lr=0.1, backend=backend)
    print("== tcomp demo: tanh MLP 8-32-2, mean squared error, SGD updates ==")
    print(f"backend: {train.backend}")
    print("-- optimized IR of the training step --")
    print(train.dump("optimized"))
    first = float(np.mean(np.sum((predict(X) - Y) ** 2, axis=1)))
    t0 = time.perf_counter()
    for _ in range(epochs):
        for i in range(0, len(X), 32):
            train(X[i:i + 32], Y[i:i + 32])
    dt = time.perf_counter() - t0
    last = float(np.mean(np.sum((predict(X) - Y) ** 2, axis=1)))
    steps = epochs * (len(X) // 32)
    print(f"trained {epochs} epochs ({steps} steps) in {dt:.2f} s ({1e6 * dt / steps:.0f} us/step)")
    print(f"mse before {first:.4f} -> after {last:.4f}")
    return 0 if last < first else 1
