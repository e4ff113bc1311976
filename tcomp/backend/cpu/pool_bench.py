"""``python -m tcomp.backend.cpu.pool_bench``: what a parallel call costs on the thread pool
(``threadpool.py``), next to NumPy in the same run.

Cases: the fused elementwise ``a*b + c*tanh(a)`` over 2^17 and 2^20 float32 elements (a
small call, ~56 us on one thread, where a per-call thread start cost more than it saved, and
one where any split pays) and float32 GEMM 256 and 512.  Each is timed at 1 and 2 threads
and with NumPy, interleaved, in three rounds; the best call of all rounds is printed (the
least noisy estimate on a shared machine) with the median of the 2-thread calls, and the
pool's counters say how many pieces the workers ran, how many the caller took back (a
worker the OS had not scheduled in time) and how often a worker moved off the caller's CPU.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _elementwise(n):
    from tcomp.ir import Graph, TensorType

    g = Graph()
    a, b, c = (g.add_input(TensorType("float32", (n,)), name=k) for k in "abc")
    g.outputs = [g.add_node("add", [g.add_node("mul", [a, b]), g.add_node("mul", [c, g.add_node("tanh", [a])])])]
    return g


def _matmul(n):
    from tcomp.ir import Graph, TensorType

    g = Graph()
    a = g.add_input(TensorType("float32", (n, n)), name="a")
    b = g.add_input(TensorType("float32", (n, n)), name="b")
    g.outputs = [g.add_node("matmul", [a, b])]
    return g


def _times(fn, reps):
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def run(scale: float = 1.0, rounds: int = 3) -> list[str]:
    import tcomp
    from tcomp.backend.cpu import compile_graph
    from tcomp.backend.cpu import parallel as P

    rng = np.random.default_rng(0)
    lines = []
    before = tcomp.config.num_threads
    try:
        for kind, n, reps in (("elementwise", 1 << 17, 400), ("elementwise", 1 << 20, 100),
                              ("gemm", 256, 200), ("gemm", 512, 40)):
            reps = max(3, int(reps * scale))
            if kind == "elementwise":
                xs = [rng.standard_normal(n).astype("float32") for _ in range(3)]
                f = compile_graph(_elementwise(n))

                def ref(xs=xs):
                    return xs[0] * xs[1] + xs[2] * np.tanh(xs[0])
            else:
                xs = [rng.standard_normal((n, n)).astype("float32") for _ in range(2)]
                f = compile_graph(_matmul(n))

                def ref(xs=xs):
                    return xs[0] @ xs[1]
            np.testing.assert_allclose(np.asarray(f(xs)[0]), ref(), rtol=1e-3, atol=1e-3)
            times = {1: [], 2: [], "numpy": []}
            s0 = P.pool_stats()
            for _ in range(rounds):
                for nt in (1, 2):
                    tcomp.config.num_threads = nt
                    f(xs)
                    times[nt] += _times(lambda: f(xs), reps)
                times["numpy"] += _times(ref, reps)
            s1 = P.pool_stats()
            one, two, npy = (min(times[k]) * 1e6 for k in (1, 2, "numpy"))
            med = float(np.median(times[2])) * 1e6
            lines.append(f"{kind} {n}: 1 thread {one:.1f} us, 2 threads {two:.1f} us (median {med:.1f}), "
                         f"NumPy {npy:.1f} us; 1t/2t {one / two:.2f}, NumPy/2t {npy / two:.2f}; worker pieces "
                         f"{s1['worker_pieces'] - s0['worker_pieces']}, taken back "
                         f"{s1['taken_back'] - s0['taken_back']}, moves off the caller's CPU "
                         f"{s1['moves'] - s0['moves']}")
    finally:
        tcomp.config.num_threads = before
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tcomp.backend.cpu.pool_bench", description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiply the calls per measurement (default 1)")
    args = p.parse_args(argv)
    for line in run(args.scale):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
