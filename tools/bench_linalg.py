"""Dense linear algebra: tcomp's CPU kernels vs ``np.linalg`` (LAPACK) in the same run.

``python -m tcomp.tools.bench_linalg [--sizes 64,128,256,512] [--repeat N] [--dtype float64]``

Rows: ``matrix_inverse``, ``det``, ``solve`` (16 right-hand sides), ``cholesky``,
``solve_triangular`` (16 right-hand sides; NumPy's row is ``np.linalg.solve`` on the
triangle, LAPACK has no triangular solve in NumPy), and ``eigvalsh`` / ``svd`` (values only)
for the sizes up to 128 (Jacobi kernels: O(n^3) sweeps).  Each tcomp result is checked
against NumPy's first.  The two are called in turn, round after round, best of N each, so
the machine's load hits them alike; for a like-for-like single-core figure run it with
``OPENBLAS_NUM_THREADS=1 TCOMP_NUM_THREADS=1`` (tcomp's linalg kernels are single-threaded).
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _cases(n, dtype, rng):
    import tcomp
    import tcomp.tensor as T

    a, b = T.matrix("a", dtype), T.matrix("b", dtype)
    m = rng.standard_normal((n, n))
    spd = (m @ m.T + n * np.eye(n)).astype(dtype)
    gen = (m + n * np.eye(n)).astype(dtype)
    rhs = rng.standard_normal((n, 16)).astype(dtype)
    rows = [("matrix_inverse", tcomp.function([a], T.nlinalg.matrix_inverse(a)), np.linalg.inv, (gen,)),
            ("det", tcomp.function([a], T.nlinalg.det(a)), np.linalg.det, (gen / n,)),
            ("solve", tcomp.function([a, b], T.slinalg.solve(a, b)), np.linalg.solve, (gen, rhs)),
            ("cholesky", tcomp.function([a], T.slinalg.cholesky(a)), np.linalg.cholesky, (spd,)),
            ("solve_triangular", tcomp.function([a, b], T.slinalg.solve_triangular(a, b, lower=True)),
             lambda x, y: np.linalg.solve(np.tril(x), y), (gen, rhs))]
    if n <= 128:
        sym = (m + m.T).astype(dtype)
        rows += [("eigvalsh", tcomp.function([a], T.nlinalg.eigh(a)[0]), np.linalg.eigvalsh, (sym,)),
                 ("svd (values)", tcomp.function([a], T.nlinalg.svd(a, compute_uv=False)),
                  lambda x: np.linalg.svd(x, compute_uv=False), (gen,))]
    return rows


def run(sizes=(64, 128, 256, 512), repeat=7, dtype="float64") -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for n in sizes:
        for name, fn, ref, args in _cases(n, dtype, rng):
            np.testing.assert_allclose(fn(*args), ref(*args), rtol=1e-3 if dtype == "float32" else 1e-8,
                                       atol=1e-4 if dtype == "float32" else 1e-9)
            best_t, best_n = float("inf"), float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                fn(*args)
                t1 = time.perf_counter()
                ref(*args)
                t2 = time.perf_counter()
                best_t, best_n = min(best_t, t1 - t0), min(best_n, t2 - t1)
            out.append({"op": name, "n": n, "tcomp_ms": best_t * 1e3, "numpy_ms": best_n * 1e3,
                        "ratio": best_t / best_n})
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="64,128,256,512")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    args = p.parse_args(argv)
    rows = run(tuple(int(s) for s in args.sizes.split(",")), args.repeat, args.dtype)
    print(f"{'op':<18}{'n':>6}{'tcomp ms':>12}{'numpy ms':>12}{'ratio':>8}")
    for r in rows:
        print(f"{r['op']:<18}{r['n']:>6}{r['tcomp_ms']:>12.3f}{r['numpy_ms']:>12.3f}{r['ratio']:>8.2f}")


if __name__ == "__main__":
    main()
