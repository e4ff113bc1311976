"""The ``scan`` rows of ``tcomp bench``: an Elman RNN through ``tcomp.scan`` on the cpu backend.

``h_t = tanh(x_t W + h_{t-1} U + b)`` over ``steps`` steps (batch 16, hidden 128, input
128, float32), cost ``sum(h) / steps``; forward (every ``h_t``) and forward + backward (the
cost and its gradients with respect to ``W``, ``U``, ``b``: backpropagation through time,
the backward loop another native loop).  Baselines in the same run: a Python loop over
NumPy (forward, and BPTT written by hand), and ``jax.lax.scan`` (jitted, ``jax.grad``,
``block_until_ready``, float32) when JAX is installed.  Every tcomp and jax result is
checked against the NumPy one first.

Fairness: the three are called in turn, round after round, best of N each (the machine's
load hits them alike).  Under ``tcomp bench --threads N`` they run in its child process
limited to N CPUs (``bench_affinity.py``: a CPU mask set before JAX starts, XLA's and
BLAS's thread settings), so XLA's and BLAS's pools get the cores tcomp's pool gets and no
more; ``rows(isolate=True)`` does the same for these rows alone.
"""
from __future__ import annotations

import os
import time

import numpy as np


def _np_forward(x, h0, W, U, b):
    h, hs = h0, []
    for t in range(x.shape[0]):
        h = np.tanh(x[t] @ W + h @ U + b)
        hs.append(h)
    return np.stack(hs)


def _np_grad(x, h0, W, U, b):
    hs = _np_forward(x, h0, W, U, b)
    steps = x.shape[0]
    gW, gU, gb = np.zeros_like(W), np.zeros_like(U), np.zeros_like(b)
    gh = np.zeros_like(h0)
    for t in range(steps - 1, -1, -1):
        gh = gh + np.float32(1.0 / steps)
        ga = gh * (1 - hs[t] * hs[t])
        prev = hs[t - 1] if t else h0
        gW += x[t].T @ ga
        gU += prev.T @ ga
        gb += ga.sum(0)
        gh = ga @ U.T
    return hs.sum() / steps, gW, gU, gb


def _tcomp_functions():
    import tcomp
    import tcomp.tensor as T

    x, h0 = T.tensor3("x"), T.matrix("h0")
    W, U, b = T.matrix("W"), T.matrix("U"), T.vector("b")
    hs, _ = tcomp.scan(lambda xt, h, W, U, b: T.tanh(T.dot(xt, W) + T.dot(h, U) + b), sequences=x,
                       outputs_info=h0, non_sequences=[W, U, b])
    cost = hs.sum() / x.shape[0].astype("float32")
    fwd = tcomp.function([x, h0, W, U, b], hs, backend="cpu")
    grad = tcomp.function([x, h0, W, U, b], [cost] + T.grad(cost, [W, U, b]), backend="cpu")
    return fwd, grad


def _jax_functions():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None

    def forward(x, h0, W, U, b):
        def step(h, xt):
            h = jnp.tanh(xt @ W + h @ U + b)
            return h, h
        return jax.lax.scan(step, h0, x)[1]

    def cost(W, U, b, x, h0):
        return forward(x, h0, W, U, b).sum() / x.shape[0]

    fwd = jax.jit(forward)
    vg = jax.jit(jax.value_and_grad(cost, argnums=(0, 1, 2)))
    def fwd_grad(x, h0, W, U, b):
        value, grads = jax.block_until_ready(vg(W, U, b, x, h0))
        return (value,) + tuple(grads)

    return lambda *a: fwd(*a).block_until_ready(), fwd_grad


def _interleaved(fns, repeat):
    """Best-of-``repeat`` time of each callable, called in turn round after round (so each
    sees the same machine load)."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def _measure(quick: bool, repeat: int, steps: int) -> list:
    import tcomp

    batch, hidden, n_in = 16, 128, 128
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, n_in)).astype("float32")
    h0 = np.zeros((batch, hidden), "float32")
    W = (rng.standard_normal((n_in, hidden)) * 0.1).astype("float32")
    U = (rng.standard_normal((hidden, hidden)) * 0.1).astype("float32")
    b = np.zeros(hidden, "float32")
    args = (x, h0, W, U, b)
    t0 = time.perf_counter()
    fwd, grad = _tcomp_functions()
    fwd(*args), grad(*args)
    compile_s = time.perf_counter() - t0
    want_f = _np_forward(*args)
    want_g = _np_grad(*args)
    err_f = float(np.abs(fwd(*args) - want_f).max())
    got_g = grad(*args)
    err_g = max(float(np.abs(np.asarray(a) - c).max() / max(1.0, float(np.abs(c).max())))
                for a, c in zip(got_g, want_g))
    if err_f > 1e-3 or err_g > 1e-3:
        raise AssertionError(f"bench scan: tcomp differs from NumPy (forward {err_f:.2e}, gradient {err_g:.2e})")
    jx = _jax_functions()
    if jx is not None:  # compiled, and checked against NumPy like tcomp
        jerr_f = float(np.abs(np.asarray(jx[0](*args)) - want_f).max())
        jerr_g = max(float(np.abs(np.asarray(a) - c).max() / max(1.0, float(np.abs(c).max())))
                     for a, c in zip(jx[1](*args), want_g))
        if jerr_f > 1e-3 or jerr_g > 1e-3:
            raise AssertionError(f"bench scan: jax differs from NumPy (forward {jerr_f:.2e}, gradient {jerr_g:.2e})")
    out = []
    size = f"{steps} steps, {batch}x{hidden}"
    for name, ours, theirs, err, j in (("scan: Elman RNN forward", fwd, _np_forward, err_f, 0),
                                       ("scan: Elman RNN fwd+grad", grad, _np_grad, err_g, 1)):
        fns = [lambda: ours(*args), lambda: theirs(*args)] + ([lambda: jx[j](*args)] if jx is not None else [])
        times = _interleaved(fns, repeat)
        t_tc, t_np = times[:2]
        t_jax = times[2] if jx is not None else None
        out.append({"case": name, "size": size, "threads": tcomp.config.num_threads, "tcomp_ms": t_tc * 1e3,
                    "numpy_ms": t_np * 1e3, "speedup": t_np / t_tc, "compile_ms": compile_s * 1e3, "max_err": err,
                    "tcomp_gbs": None, "numpy_gbs": None, "tcomp_gflops": None, "numpy_gflops": None,
                    "steps": steps, "jax_ms": None if t_jax is None else t_jax * 1e3,
                    "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None})
    return out


_CHILD = """
from tcomp.tools import bench_affinity
bench_affinity.child_setup()
import json, sys
from tcomp.tools.bench_scan import _measure
bench_affinity.write_result(_measure(*json.loads(sys.argv[1])))
"""


def rows(quick: bool = False, repeat: int = 0, steps: int | None = None, isolate: bool = False) -> list:
    """The scan rows at ``tcomp.config.num_threads`` threads: tcomp, the NumPy loop and jax
    called in turn, best of ``repeat`` rounds each, in this process (``tcomp bench`` calls
    this inside its pinned child under ``--threads``, and with every library at its
    defaults without).  ``isolate``: in a child process limited to that many CPUs and
    threads (``bench_affinity.run_pinned``: a CPU mask set before the interpreter starts,
    XLA's, BLAS's and tcomp's thread settings), so jax.jit's and BLAS's pools get the
    cores tcomp's pool gets, as ``tcomp bench --threads N`` does for a whole run."""
    import tcomp

    from . import bench_affinity

    steps = steps or (100 if quick else 1000)
    repeat = repeat or (3 if quick else 5)
    threads = int(tcomp.config.num_threads)
    inside = os.environ.get(bench_affinity.THREADS_ENV) == str(threads)
    if not isolate or inside or not hasattr(os, "sched_setaffinity"):
        return _measure(quick, repeat, steps)
    import json
    import sys

    return bench_affinity.run_pinned(threads, [sys.executable, "-c", _CHILD, json.dumps([quick, repeat, steps])])


def format_scan_rows(rows) -> list:
    lines = []
    for r in rows:
        if "steps" not in r:
            continue
        per = 1e3 * r["tcomp_ms"] / r["steps"]
        jax = (f", jax.lax.scan {1e3 * r['jax_ms'] / r['steps']:.1f} us/step "
               f"(jax/tcomp {r['jax_ms'] / r['tcomp_ms']:.2f}x)") if r.get("jax_ms") else ", jax not installed"
        lines.append(f"{r['case']} ({r['size']}): tcomp {per:.1f} us/step, NumPy loop "
                     f"{1e3 * r['numpy_ms'] / r['steps']:.1f} us/step ({r['speedup']:.2f}x){jax}")
    return lines


def main(argv=None) -> None:
    """``python -m tcomp.tools.bench_scan [--threads 1,2] [--repeat N] [--steps S]``: the scan
    rows alone, each thread count in its own child limited to that many CPUs (as
    ``tcomp bench --threads``), without the rest of the bench."""
    import argparse

    import tcomp

    p = argparse.ArgumentParser(prog="python -m tcomp.tools.bench_scan", description=main.__doc__)
    p.add_argument("--threads", default="1", help="comma-separated thread counts (default 1)")
    p.add_argument("--repeat", type=int, default=0, help="rounds, best of N (default 5)")
    p.add_argument("--steps", type=int, default=0, help="steps of the loop (default 1000)")
    a = p.parse_args(argv)
    before = tcomp.config.num_threads
    try:
        for nt in (int(t) for t in a.threads.split(",") if t.strip()):
            tcomp.config.num_threads = nt
            for line in format_scan_rows(rows(False, a.repeat, a.steps or None, isolate=True)):
                print(f"{nt} thread(s): {line}")
    finally:
        tcomp.config.num_threads = before


if __name__ == "__main__":
    main()


__all__ = ["rows", "format_scan_rows", "main"]
