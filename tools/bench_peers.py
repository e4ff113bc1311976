"""The rest of ``tcomp bench``: peers (``jax.jit``, PyTorch) on the array cases, and the rows
that are not one graph: conv2d of a LeNet layer, the MLP training step, call overhead and
compile time cold and warm.

Every peer is optional: a column is empty when the library is not installed.  Peers run in
the same process and the same run as tcomp and NumPy.  Under ``tcomp bench --threads`` that
process is limited to the row's thread count (a CPU mask and each library's thread settings:
``bench_affinity.py``), so JAX, PyTorch and NumPy's BLAS get as many CPUs as tcomp; without
it they use their own defaults.  Each result is checked against NumPy before it is timed, so
a fast wrong answer cannot win.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def _jax():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None, None
    jax.config.update("jax_enable_x64", False)
    return jax, jnp


def _torch():
    # OpenMP workers that spin after each op would steal the cores from every later
    # measurement (NumPy's BLAS, tcomp's pool): they must sleep when idle
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError:
        return None
    import tcomp

    torch.set_num_threads(max(1, int(tcomp.config.num_threads)))
    return torch


def _best(fn, repeat):
    from .bench import best_of

    return best_of(fn, repeat)


def _check(name, got, want, tol=1e-3) -> float:
    got = np.asarray(got, dtype="float64")
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max()) / scale
    if err > tol:
        raise AssertionError(f"bench {name}: result differs from NumPy (max scaled error {err:.2e})")
    return err


def array_peers(case: str, inputs, want, repeat: int) -> dict:
    """``{'jax_ms': ..., 'torch_ms': ...}`` for one of ``bench.cases`` (missing peers: None)."""
    out = {"jax_ms": None, "torch_ms": None}
    for key, fn in array_peer_calls(case, inputs, want).items():
        out[key] = _best(fn, repeat) * 1e3
    return out


def array_peer_calls(case: str, inputs, want) -> dict:
    """``{'jax_ms': call, 'torch_ms': call}``: one timed call of each installed peer for one
    of ``bench.cases``, each checked against NumPy's ``want`` first (so the bench can time
    them in rounds with tcomp and NumPy)."""
    fns = _peer_functions(case)
    out = {}
    if fns is None:
        return out
    jax_fn, torch_fn = fns
    jax, jnp = _jax()
    if jax is not None and jax_fn is not None:
        jargs = [jnp.asarray(a) for a in inputs]
        f = jax.jit(lambda *a: jax_fn(jnp, *a))
        _check(f"{case} (jax)", f(*jargs).block_until_ready(), want)
        out["jax_ms"] = lambda: f(*jargs).block_until_ready()
    torch = _torch()
    if torch is not None and torch_fn is not None:
        targs = [torch.from_numpy(np.ascontiguousarray(a)) for a in inputs]
        with torch.no_grad():
            _check(f"{case} (torch)", torch_fn(torch, *targs).numpy(), want)

        def call():
            with torch.no_grad():
                torch_fn(torch, *targs)
        out["torch_ms"] = call
    return out


def _peer_functions(case: str):
    if case.startswith("elementwise"):
        return (lambda m, a, b, c: a * b + c * m.tanh(a)), (lambda t, a, b, c: a * b + c * t.tanh(a))
    if case.startswith("row softmax"):
        return (lambda m, x: _jax_softmax(m, x)), (lambda t, x: t.softmax(x, dim=1))
    if case == "sum over axis 1":
        return (lambda m, x: x.sum(axis=1)), (lambda t, x: x.sum(dim=1))
    if case == "sum (full)":
        return (lambda m, x: x.sum()), (lambda t, x: x.sum())
    if case.startswith("gemm"):
        return (lambda m, a, b: a @ b), (lambda t, a, b: a @ b)
    return None


def _jax_softmax(jnp, x):
    e = jnp.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# -- conv2d of a LeNet layer ---------------------------------------------------------------------

def _np_conv(x, w):
    """Valid 2-d correlation (Theano's conv2d flips the filters: we pass them pre-flipped)."""
    from numpy.lib.stride_tricks import sliding_window_view

    win = sliding_window_view(x, w.shape[2:], axis=(2, 3))  # b, c, oh, ow, kh, kw
    return np.einsum("bcijkl,fckl->bfij", win, w, optimize=True)


def conv_rows(quick: bool, repeat: int, threads: int) -> list:
    import tcomp
    import tcomp.tensor as T

    batch = 16 if quick else 64
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((batch, 1, 28, 28)).astype("float32")
    wv = (rng.standard_normal((20, 1, 5, 5)) * 0.2).astype("float32")
    x, w = T.tensor4("x"), T.tensor4("w")
    t0 = time.perf_counter()
    f = tcomp.function([x, w], T.nnet.conv2d(x, w), backend="cpu")
    compile_ms = (time.perf_counter() - t0) * 1e3
    flipped = wv[:, :, ::-1, ::-1].copy()
    want = _np_conv(xv.astype("float64"), flipped.astype("float64"))
    err = _check("conv2d", f(xv, wv), want)
    calls = {"tcomp": lambda: f(xv, wv), "numpy": lambda: _np_conv(xv, flipped)}
    jax, jnp = _jax()
    if jax is not None:
        from jax import lax

        jf = jax.jit(lambda a, k: lax.conv_general_dilated(a, k, (1, 1), "VALID"))
        ja, jk = jnp.asarray(xv), jnp.asarray(flipped)
        _check("conv2d (jax)", jf(ja, jk).block_until_ready(), want)
        calls["jax_ms"] = lambda: jf(ja, jk).block_until_ready()
    torch = _torch()
    if torch is not None:
        ta, tk = torch.from_numpy(xv), torch.from_numpy(flipped)
        with torch.no_grad():
            _check("conv2d (torch)", torch.nn.functional.conv2d(ta, tk).numpy(), want)

        def tconv():
            with torch.no_grad():
                torch.nn.functional.conv2d(ta, tk)
        calls["torch_ms"] = tconv
    from .bench import in_rounds

    t = in_rounds(calls, repeat, 1 if quick else 3)  # every library in turn, so load hits each alike
    t_tc, t_np = t.pop("tcomp"), t.pop("numpy")
    row = {"case": "conv2d LeNet layer 1", "size": f"{batch}x1x28x28 * 20x5x5", "threads": threads,
           "tcomp_ms": t_tc * 1e3, "numpy_ms": t_np * 1e3, "speedup": t_np / t_tc, "compile_ms": compile_ms,
           "tcomp_gbs": None, "numpy_gbs": None, "jax_ms": None, "torch_ms": None, "max_err": err}
    row.update({k: v * 1e3 for k, v in t.items()})
    return [row]


# -- the MLP training step, call overhead --------------------------------------------------------

def _jax_mlp_step(sizes, batch):
    jax, jnp = _jax()
    if jax is None:
        return None

    def loss(params, x, y):
        h = x
        for k in range(0, len(params) - 2, 2):
            h = jax.nn.relu(h @ params[k] + params[k + 1])
        logits = h @ params[-2] + params[-1]
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(batch), y])

    @jax.jit
    def step(params, x, y):
        c, g = jax.value_and_grad(loss)(params, x, y)
        return c, [p - 0.01 * d for p, d in zip(params, g)]
    return step


def _torch_mlp_step(torch, params):
    def step(x, y):
        h = x
        for k in range(0, len(params) - 2, 2):
            h = torch.relu(h @ params[k] + params[k + 1])
        cost = torch.nn.functional.cross_entropy(h @ params[-2] + params[-1], y)
        grads = torch.autograd.grad(cost, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= 0.01 * g
        return cost
    return step


def step_rows(quick: bool, repeat: int, threads: int) -> list:
    """The 784-512-512-10 step (batch 128) and call overhead, with peers."""
    from . import bench_native

    out = []
    for row in bench_native.rows(quick):
        out.append({"case": row["case"], "size": "", "threads": threads, "tcomp_ms": row["tcomp_us"] / 1e3,
                    "numpy_ms": row["numpy_us"] / 1e3, "speedup": row["numpy_us"] / row["tcomp_us"],
                    "compile_ms": 0.0, "tcomp_gbs": None, "numpy_gbs": None, "jax_ms": None, "torch_ms": None,
                    "max_err": None,  # the step's own tests compare it with NumPy; here it is only timed
                    "tcomp_trust_ms": row["tcomp_trust_us"] / 1e3 if "tcomp_trust_us" in row else None})
    sizes, batch = (784, 512, 512, 10), 128
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((batch, 784)).astype("float32")
    yv = rng.integers(0, 10, batch).astype("int32")
    params = []
    for a, b in zip(sizes, sizes[1:]):
        params += [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype("float32"), np.zeros(b, "float32")]
    row = next((r for r in out if r["case"].startswith("MLP step 784")), None)
    if row is None:
        return out
    number = max(repeat, 3)
    js = _jax_mlp_step(sizes, batch)
    if js is not None:
        _, jnp = _jax()
        jp, jx, jy = [jnp.asarray(p) for p in params], jnp.asarray(xv), jnp.asarray(yv)
        holder = [jp]

        def jstep():
            c, holder[0] = js(holder[0], jx, jy)
            c.block_until_ready()
        jstep()
        row["jax_ms"] = _best(jstep, number) * 1e3
    torch = _torch()
    if torch is not None:
        tp = [torch.from_numpy(p.copy()).requires_grad_() for p in params]
        tstep = _torch_mlp_step(torch, tp)
        tx, ty = torch.from_numpy(xv), torch.from_numpy(yv.astype("int64"))
        tstep(tx, ty)
        row["torch_ms"] = _best(lambda: tstep(tx, ty), number) * 1e3
    return out


# -- compile time, cold and warm -----------------------------------------------------------------

_COMPILE_SCRIPT = """
import json, time
import tcomp.backend.cpu.native_function  # imports are not compile time
from tcomp.examples import mlp
weights = mlp.classifier_weights()  # nor is making the weights' values (~12 ms of NumPy)
t0 = time.perf_counter()
step, _, _ = mlp.build_classifier_step(weights=weights)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


#: processes per compile row (cold, then warm on the cold run's cache), the median reported
COMPILE_RUNS = 3


def compile_rows(threads: int) -> list:
    """The MLP step from Python graph to callable in a fresh process: cold (empty compile
    cache) and warm (the objects the cold run stored), against ``jax.jit``'s first call.
    Each is the median of :data:`COMPILE_RUNS` processes (one cache folder per cold run):
    a single run of a few hundred ms is at the mercy of one scheduling hiccup."""
    cold, warm = [], []
    for _ in range(COMPILE_RUNS):
        with tempfile.TemporaryDirectory(prefix="tcomp-bench-cache-") as folder:
            env = dict(os.environ, TCOMP_CACHE_DIR=folder)
            env.pop("TCOMP_CACHE", None)
            for times in (cold, warm):
                out = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT], env=env, capture_output=True,
                                     text=True, timeout=600, check=True).stdout
                times.append(json.loads(out.strip().splitlines()[-1])["seconds"])
    times = [statistics.median(cold), statistics.median(warm)]
    jax_s = None
    js = _jax_mlp_step((784, 512, 512, 10), 128)
    if js is not None:
        _, jnp = _jax()
        rng = np.random.default_rng(0)
        params = [jnp.asarray(rng.standard_normal(s).astype("float32"))
                  for a, b in zip((784, 512, 512), (512, 512, 10)) for s in ((a, b), (b,))]
        t0 = time.perf_counter()
        js(params, jnp.zeros((128, 784), "float32"), jnp.zeros(128, "int32"))[0].block_until_ready()
        jax_s = time.perf_counter() - t0
    return [{"case": name, "size": f"MLP 784-512-512-10, median of {COMPILE_RUNS}", "threads": threads,
             "tcomp_ms": t * 1e3,
             "numpy_ms": None, "speedup": None, "compile_ms": t * 1e3, "tcomp_gbs": None, "numpy_gbs": None,
             "max_err": None,
             "jax_ms": jax_s * 1e3 if jax_s is not None and name.endswith("cold") else None, "torch_ms": None}
            for name, t in (("compile step, cold", times[0]), ("compile step, warm cache", times[1]))]


__all__ = ["array_peers", "array_peer_calls", "conv_rows", "step_rows", "compile_rows"]
