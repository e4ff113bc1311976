"""The ``scan`` rows of ``tcomp bench``: an Elman RNN through ``tcomp.scan`` on the cpu backend.

``h_t = tanh(x_t W + h_{t-1} U + b)`` over ``steps`` steps (batch 16, hidden 128, input
128, float32), cost ``sum(h) / steps``; forward (every ``h_t``) and forward + backward (the
cost and its gradients with respect to ``W``, ``U``, ``b``: backpropagation through time,
the backward loop another native loop).  Baselines in the same run: a Python loop over
NumPy (forward, and BPTT written by hand), and ``jax.lax.scan`` (jitted, ``jax.grad``) when
JAX is installed.  Every tcomp result is checked against the NumPy one first.
"""
from __future__ import annotations

import time

import numpy as np


def _best(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


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
    return (lambda *a: fwd(*a).block_until_ready(),
            lambda x, h0, W, U, b: jax.block_until_ready(vg(W, U, b, x, h0)))


def rows(quick: bool = False, repeat: int = 0, steps: int | None = None) -> list:
    import tcomp

    steps = steps or (100 if quick else 1000)
    repeat = repeat or (3 if quick else 5)
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
    out = []
    size = f"{steps} steps, {batch}x{hidden}"
    for name, ours, theirs, err, j in (("scan: Elman RNN forward", fwd, _np_forward, err_f, 0),
                                       ("scan: Elman RNN fwd+grad", grad, _np_grad, err_g, 1)):
        t_tc = _best(lambda: ours(*args), repeat)
        t_np = _best(lambda: theirs(*args), repeat)
        t_jax = None
        if jx is not None:
            jx[j](*args)  # compile
            t_jax = _best(lambda: jx[j](*args), repeat)
        out.append({"case": name, "size": size, "threads": tcomp.config.num_threads, "tcomp_ms": t_tc * 1e3,
                    "numpy_ms": t_np * 1e3, "speedup": t_np / t_tc, "compile_ms": compile_s * 1e3, "max_err": err,
                    "tcomp_gbs": None, "numpy_gbs": None, "tcomp_gflops": None, "numpy_gflops": None,
                    "steps": steps, "jax_ms": None if t_jax is None else t_jax * 1e3})
    return out


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


__all__ = ["rows", "format_scan_rows"]
