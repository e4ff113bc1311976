"""``tcomp demo``: build a small model and print its IR, then train logistic regression and
an MLP on scikit-learn's 8x8 digits and report step time and test accuracy."""
from __future__ import annotations

import numpy as np

from .mlp import build_mse_mlp


def show_small_model(backend) -> None:
    train, predict, _ = build_mse_mlp(8, 16, 2, lr=0.1, backend=backend)
    print("== a tanh MLP 8-16-2 with a hand-written MSE gradient: the IR tcomp compiles ==")
    print(train.dump("optimized"))
    x = np.random.default_rng(0).uniform(-1, 1, (4, 8)).astype("float32")
    print("predict(x[:4]) =")
    print(np.array2string(predict(x), precision=4))


def main(args=None) -> int:
    from . import digits

    backend = getattr(args, "backend", None)
    quick = bool(getattr(args, "quick", False))
    epochs = getattr(args, "epochs", None)
    show_small_model(backend)
    print()
    print("== digits (scikit-learn's bundled 8x8 images): T.grad + SGD updates ==")
    results = digits.main(backend=backend, epochs=epochs, quick=quick)
    mlp = results["mlp"]["test_accuracy"]
    print(f"MLP test accuracy {100 * mlp:.2f}%")
    return 0
