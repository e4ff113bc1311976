"""Per-call cost of compiled functions, against NumPy in the same run (calls interleaved, best of
N rounds each, so machine load hits both alike).

``python -m tcomp.tools.bench_native [CASE...]`` with CASE among ``xyz`` (``x + y*z`` on three
3-element float32 vectors, with input checks and with ``trust_input``), ``digits`` (the
training step of ``tcomp demo``'s digits MLP, batch 32, against the same step written with
NumPy by hand) and ``mlp`` (784-512-512-10 step, batch 128, against hand NumPy); no CASE
runs all three.  Prints one JSON line per case; :func:`rows` gives the same figures to
``tcomp bench``.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

import tcomp
import tcomp.tensor as T

#: seconds between two libraries' timing blocks when both run threads (see :func:`interleaved`)
PAUSE_S = 0.2


def interleaved(fns, number, rounds, pause=0.0):
    """Best seconds per call of each function, measured in alternation; ``pause`` seconds of
    sleep before each function's turn let the previous one's idle threads stop spinning
    (OpenBLAS's spin ~0.1 s after a call and would take a core from a multi-threaded next one)."""
    best = [1e9] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            if pause:
                time.sleep(pause)
            t = time.perf_counter()
            for _ in range(number):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t) / number)
    return best


def _xyz():
    def mk(trust):
        x, y, z = T.fvector("x"), T.fvector("y"), T.fvector("z")
        return tcomp.function([x, y, z], x + y * z, trust_input=trust)
    checked, trusted = mk(False), mk(True)
    a, b, c = (np.full(3, v, "float32") for v in (1, 2, 3))
    np.testing.assert_array_equal(checked(a, b, c), a + b * c)
    r = interleaved([lambda: checked(a, b, c), lambda: trusted(a, b, c), lambda: np.add(a, np.multiply(b, c))],
                    300, 60)
    return {"case": "call x+y*z (3 f32)", "tcomp_us": r[0] * 1e6, "tcomp_trust_us": r[1] * 1e6,
            "numpy_us": r[2] * 1e6}


def _np_mlp_step(params, x, y, lr):
    """One SGD step of a relu MLP with softmax cross-entropy (``build_classifier_step``),
    written with NumPy by hand."""
    acts = [x]
    for k in range(0, len(params) - 2, 2):
        acts.append(np.maximum(acts[-1] @ params[k] + params[k + 1], 0))
    logits = acts[-1] @ params[-2] + params[-1]
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    d = p
    d[np.arange(len(y)), y] -= 1
    d /= len(y)
    for k in range(len(params) - 2, -1, -2):
        gw, gb = acts[k // 2].T @ d, d.sum(axis=0)
        if k:
            d = (d @ params[k].T) * (acts[k // 2] > 0)
        params[k] -= lr * gw
        params[k + 1] -= lr * gb


def in_blocks(fns, number, rounds, pause):
    """Best seconds of one call of each function: per round, each function's block of
    ``number`` calls after ``pause`` seconds of sleep.  A training step is long enough to time
    one call at a time, and a block keeps one library's threads (OpenBLAS spins after its calls)
    from running while the other's are timed, which alternating call by call did not."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            time.sleep(pause)
            fn()  # wakes the library's pool
            for _ in range(number):
                t = time.perf_counter()
                fn()
                best[i] = min(best[i], time.perf_counter() - t)
    return best


def _mlp(case):
    from tcomp.examples.mlp import build_classifier_step

    sizes, batch = ((64, 64, 10), 32) if case == "digits" else ((784, 512, 512, 10), 128)
    step, _, _ = build_classifier_step(sizes, batch=batch)
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((batch, sizes[0])).astype("float32")
    yv = rng.integers(0, sizes[-1], batch).astype("int32")
    params = []
    for a, b in zip(sizes, sizes[1:]):
        params += [(rng.standard_normal((a, b)) * 0.05).astype("float32"), np.zeros(b, "float32")]
    fns = [lambda: step(xv, yv), lambda: _np_mlp_step(params, xv, yv, 0.01)]
    if case == "digits":
        r = interleaved(fns, 20, 15)
    else:
        r = in_blocks(fns, 10, 3, PAUSE_S if tcomp.config.num_threads > 1 else 0.0)
    label = "digits MLP step 64-64-10, batch 32" if case == "digits" else "MLP step 784-512-512-10, batch 128"
    return {"case": label, "tcomp_us": r[0] * 1e6, "numpy_us": r[1] * 1e6}


CASES = {"xyz": _xyz, "digits": lambda: _mlp("digits"), "mlp": lambda: _mlp("mlp")}


def rows(quick: bool = False) -> list[dict]:
    """The call-overhead and step-time rows of ``tcomp bench``."""
    return [CASES[c]() for c in (("xyz", "digits") if quick else CASES)]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for case in argv or list(CASES):
        if case not in CASES:
            print(f"unknown case {case!r}; choose from {', '.join(CASES)}", file=sys.stderr)
            return 2
        row = CASES[case]()
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
