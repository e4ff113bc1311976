"""Shared test settings: per-dtype tolerances, the backends under test, and small helpers.

Tolerances live here, in one table, so that every test compares a backend against NumPy
with the same per-dtype precision (a float32 result is checked against a float64 NumPy
computation rounded to float32; integers and bools must match exactly).

The backend list is ``reference`` plus ``cpu`` as soon as ``tcomp.backend.cpu`` provides
``compile_graph``.  A cpu package that exists but fails to import is an error, not a skip:
a broken backend must not turn its tests green.  ``TCOMP_TEST_BACKENDS=reference,cpu``
overrides the detection (e.g. to run one backend only).
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest

import tcomp

# The suite never writes into the user's compile cache (~/.cache/tcomp): it runs with the
# cache on (as a fresh CI machine does) in a directory of its own, removed at exit; the
# subprocesses tests start inherit it.
_CACHE_DIR = tempfile.mkdtemp(prefix="tcomp-test-cache-")
os.environ["TCOMP_CACHE_DIR"] = _CACHE_DIR
atexit.register(shutil.rmtree, _CACHE_DIR, True)

#: dtype of a result -> (rtol, atol) against a float64 NumPy reference rounded to that dtype.
TOLERANCES = {
    "float32": (2e-5, 2e-6),
    "float64": (1e-10, 1e-12),
    "int8": (0, 0), "int16": (0, 0), "int32": (0, 0), "int64": (0, 0), "uint8": (0, 0),
    "bool": (0, 0),
}


def accumulation_tol(dtype: str, n_terms: int, max_abs: float) -> dict:
    """Tolerance for a float sum/dot of ``n_terms`` values of magnitude <= ``max_abs``: a
    backend may add in any order (vectorized, ``reassoc``), so its rounding error grows like
    eps * sqrt(n) * sum|x| <= eps * n**1.5 * max|x| (checked against a float64 reference)."""
    rtol, atol = TOLERANCES[dtype]
    eps = float(np.finfo(dtype).eps)
    return {"rtol": rtol, "atol": max(atol, eps * n_terms ** 1.5 * max_abs)}


ALL_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "float32", "float64")
#: the dtypes every per-op test sweeps (int16 is exercised by the promotion tests)
TEST_DTYPES = ("bool", "int8", "int32", "int64", "uint8", "float32", "float64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8")
FLOAT_DTYPES = ("float32", "float64")


def _cpu_backend_available() -> bool:
    """True when the LLVM CPU backend exposes ``compile_graph`` (it is being written
    concurrently; before it lands only the reference backend runs)."""
    import tcomp.backend.cpu as cpu  # an ImportError *inside* the backend propagates

    return hasattr(cpu, "compile_graph")


def detect_backends() -> list[str]:
    override = os.environ.get("TCOMP_TEST_BACKENDS")
    if override:
        return [b.strip() for b in override.split(",") if b.strip()]
    return ["reference"] + (["cpu"] if _cpu_backend_available() else [])


BACKENDS = detect_backends()


def pytest_report_header(config):
    note = "" if "cpu" in BACKENDS else " (tcomp.backend.cpu has no compile_graph yet)"
    return f"tcomp backends under test: {', '.join(BACKENDS)}{note}"


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Every test taking ``backend`` runs once per available backend."""
    return request.param


# -- helpers shared by the per-op test modules ------------------------------------------

def traced_ops(f) -> set:
    """Op names in a compiled function's traced graph (before any optimization)."""
    g = f.traced
    return {g.op(n) for n in g.nodes()}


def compile_fn(inputs, outputs, backend, expect_ops=(), **kwargs):
    """``tcomp.function`` that also checks the DSL really produced the ops under test, so a
    test cannot pass without exercising the op it claims to cover."""
    f = tcomp.function(inputs, outputs, backend=backend, **kwargs)
    missing = set(expect_ops) - traced_ops(f)
    assert not missing, f"the traced graph lacks ops {sorted(missing)}; it has {sorted(traced_ops(f))}"
    return f


def tol(dtype: str) -> dict:
    rtol, atol = TOLERANCES[dtype]
    return {"rtol": rtol, "atol": atol}


def check_result(got, want, dtype: str, what: str = "") -> None:
    """``got`` must be an ndarray of exactly ``dtype`` and ``want``'s shape, equal within the
    dtype's tolerance (NaNs in the same places count as equal)."""
    got = np.asarray(got)
    with np.errstate(over="ignore", invalid="ignore"):  # e.g. a float64 reference beyond float32's range
        want = np.asarray(want).astype(dtype)
    assert got.dtype.name == dtype, f"{what}: result dtype {got.dtype.name}, expected {dtype}"
    assert got.shape == want.shape, f"{what}: result shape {got.shape}, expected {want.shape}"
    if dtype in ("float32", "float64"):
        np.testing.assert_allclose(got, want, equal_nan=True, err_msg=what, **tol(dtype))
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def rand_array(rng, dtype: str, shape, low=-5, high=5) -> np.ndarray:
    """Random values of ``dtype`` in [low, high) (uint8 and bool clipped to their range)."""
    shape = tuple(shape)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype in FLOAT_DTYPES:
        return rng.uniform(low, high, shape).astype(dtype)
    lo = max(low, 0) if dtype == "uint8" else low
    hi = max(high, lo + 1)
    return rng.integers(lo, hi, shape).astype(dtype)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
