"""``tcomp bench``: tcomp's CPU backend against NumPy, both measured in the same run.

Each case builds an IR graph, compiles it once (compile time is printed too), checks the
result against NumPy, then reports the best of N wall-clock times per call for both and
the ratio (NumPy time / tcomp time: > 1 means tcomp is faster).  Best-of-N, because the
minimum is the least noisy estimate of what the code costs on an otherwise idle machine.

Memory-bound cases also print effective bandwidth (bytes read + written per call / time),
next to a copy baseline measured in the same run (NumPy ``np.copyto`` into a preallocated
array, and tcomp's ``-a``, a one-read one-write kernel), so one can say how close the fused
elementwise kernel is to what the memory system delivers.

Thread counts, and how the peers are limited: ``--threads 1,2`` measures every case once
per count N, each count in its own child process (``bench_affinity.py``) whose CPU mask
holds N CPUs, set before the interpreter starts, with ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS`` and the like, XLA's flags, threadpoolctl (BLAS) and
``torch.set_num_threads`` at N and ``tcomp.config.num_threads = N``: every library in a row
runs on the same N CPUs, so a row compares like with like.  (A library's own thread knob is
not enough: ``jax.jit``'s "1-thread" MLP step used 1.74 CPUs with XLA's
``intra_op_parallelism_threads=1``.)  When N is more than the CPUs this process may use,
the row's ``cpu`` column shows the CPUs with a ``!`` and a note says the row is
oversubscribed.  Without ``--threads`` everything runs in this process with its defaults
(all CPUs); ``--unpinned`` keeps the old in-process way (tcomp at N, peers unlimited).

GEMM and the MLP step, where both tcomp and NumPy's OpenBLAS run threads, are timed in
separate blocks with a pause before each (OpenBLAS's idle workers spin ~0.1 s after a call
and take a core from whatever runs next), the pair of blocks three times so both see the
machine's load alike; interleaving single calls made the 2-thread GEMM 256/512 rows read
0.68x/0.53x of BLAS from that interference alone.  In a full (not ``--quick``) pinned run
every timing of every library starts after such a pause (:data:`SETTLE_S`), and the other
array cases time NumPy, tcomp, jax and torch in turn, three rounds (:func:`in_rounds`).
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _graph_elementwise(n):
    from tcomp.ir import Graph, TensorType

    g = Graph()
    a, b, c = (g.add_input(TensorType("float32", (n,)), name=k) for k in "abc")
    g.outputs = [g.add_node("add", [g.add_node("mul", [a, b]), g.add_node("mul", [c, g.add_node("tanh", [a])])])]
    return g


def _graph_floor(n):
    """``a*b + c``: the fused case's bytes (three reads, one write) with almost no compute."""
    from tcomp.ir import Graph, TensorType

    g = Graph()
    a, b, c = (g.add_input(TensorType("float32", (n,)), name=k) for k in "abc")
    g.outputs = [g.add_node("add", [g.add_node("mul", [a, b]), c])]
    return g


def _graph_negate(n):
    from tcomp.ir import Graph, TensorType

    g = Graph()
    a = g.add_input(TensorType("float32", (n,)), name="a")
    g.outputs = [g.add_node("neg", [a])]
    return g


def _graph_softmax(rows, cols):
    from tcomp.ir import Graph, TensorType

    g = Graph()
    x = g.add_input(TensorType("float32", (rows, cols)), name="x")
    g.outputs = [g.add_node("softmax", [x], {"axis": 1})]
    return g


def _graph_sum(rows, cols, axis=(1,)):
    from tcomp.ir import Graph, TensorType

    g = Graph()
    x = g.add_input(TensorType("float32", (rows, cols)), name="x")
    g.outputs = [g.add_node("sum", [x], {"axis": axis})]
    return g


def _graph_matmul(n):
    from tcomp.ir import Graph, TensorType

    g = Graph()
    a = g.add_input(TensorType("float32", (n, n)), name="a")
    b = g.add_input(TensorType("float32", (n, n)), name="b")
    g.outputs = [g.add_node("matmul", [a, b])]
    return g


def _np_softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def cases(quick: bool):
    rng = np.random.default_rng(0)
    n = 1 << (22 if quick else 24)
    a, b, c = (rng.standard_normal(n).astype("float32") for _ in range(3))
    yield ("elementwise a*b + c*tanh(a)", f"{n} f32", _graph_elementwise(n), [a, b, c],
           lambda a, b, c: a * b + c * np.tanh(a), 16 * n)
    dst = np.empty_like(a)
    # the NumPy side is the bandwidth baseline: np.copyto into a preallocated array; tcomp's
    # -a reads and writes the same bytes (its output is a fresh buffer per call, as always)
    yield ("copy (np.copyto | tcomp -a)", f"{n} f32", _graph_negate(n), [a],
           (lambda a: np.copyto(dst, a), lambda a: -a), 8 * n)
    small = 1 << 16
    yield ("elementwise a*b + c*tanh(a)", f"{small} f32", _graph_elementwise(small), [a[:small], b[:small], c[:small]],
           lambda a, b, c: a * b + c * np.tanh(a), 16 * small)
    r = 1024 if quick else 4096
    x = rng.standard_normal((r, 1024)).astype("float32")
    yield ("row softmax", f"{r}x1024 f32", _graph_softmax(r, 1024), [x], _np_softmax, 0)
    s = rng.standard_normal((r, 4096)).astype("float32")
    yield ("sum over axis 1", f"{r}x4096 f32", _graph_sum(r, 4096), [s], lambda s: s.sum(axis=1), 0)
    yield ("sum (full)", f"{r}x4096 f32", _graph_sum(r, 4096, axis=(0, 1)), [s], lambda s: s.sum(), 0)
    for m in (256, 512) if quick else (256, 512, 1024, 2048):  # a 7th field: flops per call
        ma, mb = (rng.standard_normal((m, m)).astype("float32") for _ in range(2))
        yield ("gemm (matmul)", f"{m}x{m} @ {m}x{m} f32", _graph_matmul(m), [ma, mb], lambda a, b: a @ b, 0,
               2 * m ** 3)


#: seconds :func:`best_of` sleeps before it times (set in a pinned child of a full run): an idle
#: pool of the library timed before (OpenBLAS, XLA's, tcomp's) may still spin and take a core
SETTLE_S = 0.0


def in_rounds(calls: dict, repeat: int, rounds: int) -> dict:
    """Best seconds per call of each of ``calls`` (name -> function): ``rounds`` rounds, each
    timing every function in turn (best of ``repeat``), so a burst of load elsewhere on the
    machine hits one round of each, not all of one library's calls."""
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for k, fn in calls.items():
            best[k] = min(best[k], best_of(fn, repeat))
    return best


def best_of(fn, repeat: int) -> float:
    if SETTLE_S:
        time.sleep(SETTLE_S)
        fn()  # after the pause, one untimed call wakes the library's threads (and the idle CPU)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(quick: bool = False, repeat: int = 0, threads=(None,), with_peers: bool = True, pin: bool = True
        ) -> list[dict]:
    """One row per case and thread count; ``jax_ms``/``torch_ms`` where those are installed
    (``bench_peers.py``).

    ``threads``: ``(None,)`` measures in this process with everything at its defaults
    (tcomp's ``num_threads``, every peer's own pool: all the CPUs this process may use).  A
    list of counts measures each count N in a child process whose CPU mask holds N CPUs and
    whose BLAS, OpenMP, PyTorch and tcomp pools are set to N (``bench_affinity.py``), so each
    row compares every library at the same N; ``pin=False`` measures them in this process,
    tcomp at N and the peers unlimited (the old, unfair way)."""
    repeat = repeat or (3 if quick else 10)
    if threads == (None,) or not pin:
        rows = []
        for k, nt in enumerate(threads):
            rows.extend(_run_block(quick, repeat, nt, with_peers, compile_rows=not quick and k == len(threads) - 1))
        return _case_major(rows)
    import json
    import sys

    from . import bench_affinity

    rows = []
    for k, nt in enumerate(threads):
        spec = {"quick": quick, "repeat": repeat, "threads": nt, "with_peers": with_peers,
                "compile_rows": not quick and k == len(threads) - 1}
        rows.extend(bench_affinity.run_pinned(nt, [sys.executable, "-m", "tcomp.tools.bench", "--block",
                                                   json.dumps(spec)]))
    return _case_major(rows)


def _case_major(rows) -> list:
    """Rows grouped by case (in first-seen order), thread counts in order within a case."""
    order = {}
    for r in rows:
        order.setdefault((r["case"], r["size"]), len(order))
    return sorted(rows, key=lambda r: order[(r["case"], r["size"])])  # stable: threads keep their order


def _run_block(quick: bool, repeat: int, nt, with_peers: bool, compile_rows: bool) -> list:
    """Every case at ``tcomp.config.num_threads = nt`` (None: as it is), in this process."""
    import os

    import tcomp
    from tcomp.backend.cpu import compile_graph

    from . import bench_affinity, bench_peers

    before = tcomp.config.num_threads
    rows = []
    try:
        if nt is not None:
            tcomp.config.num_threads = nt
        nt = tcomp.config.num_threads
        cpus = len(bench_affinity.available_cpus())
        pinned = os.environ.get(bench_affinity.THREADS_ENV) is not None
        for name, size, graph, inputs, np_fn, nbytes, *flops in cases(quick):
            np_time, np_check = np_fn if isinstance(np_fn, tuple) else (np_fn, np_fn)
            t0 = time.perf_counter()
            f = compile_graph(graph, name="bench")
            compile_s = time.perf_counter() - t0
            want = np_check(*inputs)
            scale = max(1.0, float(np.abs(want).max()))
            got = f(inputs)[0]
            err = float(np.abs(got.astype("float64") - want).max()) / scale
            if err > 1e-3:
                raise AssertionError(f"bench case {name!r}: tcomp differs from NumPy (max scaled error {err:.2e})")
            calls = bench_peers.array_peer_calls(name, inputs, want) if with_peers else {}
            peers = dict.fromkeys(("jax_ms", "torch_ms")) if with_peers else {}
            if flops:  # GEMM: against NumPy's BLAS with as many threads, in separate timing blocks
                t_tc, t_np = _blas_blocks(lambda: f(inputs), lambda: np_time(*inputs), repeat, nt)
                peers.update({k: v * 1e3 for k, v in in_rounds(calls, repeat, 1 if quick else 2).items()})
            else:
                calls = {"numpy": lambda: np_time(*inputs), "tcomp": lambda: f(inputs), **calls}
                if name.startswith("elementwise") and len(inputs[0]) >= FLOOR_MIN:
                    calls["floor_ms"] = _floor_call(inputs)
                t = in_rounds(calls, repeat, 1 if quick else 3)
                t_np, t_tc = t.pop("numpy"), t.pop("tcomp")
                peers.update({k: v * 1e3 for k, v in t.items()})
            rows.append({**peers, "case": name, "size": size, "threads": nt,
                         "tcomp_ms": t_tc * 1e3, "numpy_ms": t_np * 1e3, "speedup": t_np / t_tc,
                         "compile_ms": compile_s * 1e3, "max_err": err,
                         "tcomp_gbs": nbytes / t_tc / 1e9 if nbytes else None,
                         "numpy_gbs": nbytes / t_np / 1e9 if nbytes else None,
                         "tcomp_gflops": flops[0] / t_tc / 1e9 if flops else None,
                         "numpy_gflops": flops[0] / t_np / 1e9 if flops else None})
        from .bench_scan import rows as scan_rows  # the Elman RNN through tcomp.scan (tools/bench_scan.py)

        rows.extend(scan_rows(quick, repeat))
        rows.extend(bench_peers.conv_rows(quick, repeat, nt))
        rows.extend(bench_peers.step_rows(quick, repeat, nt))
        if compile_rows:
            rows.extend(bench_peers.compile_rows(nt))
    finally:
        tcomp.config.num_threads = before
    for r in rows:  # every peer limited to ``nt`` threads on ``cpus`` CPUs (pinned), or unlimited
        r.update(cpus=cpus, peers_limited=pinned, threads=nt)
    return rows


#: elementwise cases of at least this many elements are timed with their memory floor
FLOOR_MIN = 1 << 20


def _floor_call(inputs):
    """One call of tcomp's ``a*b + c`` on the fused case's inputs: the same bytes read and
    written with almost no compute, timed in the same rounds as the case itself, so the two
    see the same memory bandwidth (on this VM it swings ~20% within minutes)."""
    from tcomp.backend.cpu import compile_graph

    a, b, c = inputs
    ff = compile_graph(_graph_floor(len(a)), name="bench_floor")
    np.testing.assert_allclose(ff(inputs)[0], a * b + c, rtol=1e-5, atol=1e-5)
    return lambda: ff(inputs)


def _blas_blocks(ours, theirs, repeat: int, threads: int) -> tuple:
    """Best-of times of ``ours`` and ``theirs``, each timed in its own block of ``repeat``
    calls with a pause before it (so neither runs while the other's idle threads spin), the
    two blocks run three times in alternation (so both see the machine's load alike); NumPy's BLAS
    limited to ``threads`` (threadpoolctl, when installed; else BLAS runs with its own default)."""
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(threads, user_api="blas")
    except ImportError:
        limit = contextlib.nullcontext()
    from .bench_native import PAUSE_S  # OpenBLAS's workers spin ~0.1 s after a call, tcomp's 0.1 ms

    with limit:
        a = b = float("inf")
        for _ in range(3):
            if not SETTLE_S:
                time.sleep(PAUSE_S)
            a = min(a, best_of(ours, repeat))
            if not SETTLE_S:
                time.sleep(PAUSE_S)
            b = min(b, best_of(theirs, repeat))
    return a, b


def format_rows(rows) -> str:
    head = (f"{'case':36} {'size':20} {'thr':>3} {'cpu':>3} {'tcomp ms':>10} {'numpy ms':>10} {'numpy/tcomp':>12} "
            f"{'jax ms':>9} {'torch ms':>9} {'tcomp GB/s':>10} {'numpy GB/s':>10} {'compile ms':>11}")
    lines = [head, "-" * len(head)]

    def num(v, width=10, digits=1):
        return f"{v:{width}.{digits}f}" if v is not None else f"{'-':>{width}}"
    for r in rows:
        cpu = f"{r['cpus']}{'!' if r['cpus'] < r['threads'] else ''}" if r.get("peers_limited") else "all"
        lines.append(f"{r['case']:36} {r['size']:20} {r['threads']:3d} {cpu:>3} {r['tcomp_ms']:10.3f} "
                     f"{num(r['numpy_ms'], 10, 3)} {num(r['speedup'], 12, 2)} {num(r.get('jax_ms'), 9, 3)} "
                     f"{num(r.get('torch_ms'), 9, 3)} {num(r['tcomp_gbs'])} {num(r['numpy_gbs'])} "
                     f"{r['compile_ms']:11.1f}")
        if r.get("tcomp_trust_ms") is not None:
            lines.append(f"{'  (trust_input=True)':36} {'':20} {r['threads']:3d} {'':3} {r['tcomp_trust_ms']:10.3f}")
    short = sorted({(r["threads"], r["cpus"]) for r in rows if r.get("peers_limited") and r["cpus"] < r["threads"]})
    for t, c in short:
        lines.append(f"!: {t} threads on only {c} CPU(s) (all this process may use): the {t}-thread rows "
                     f"share {c} CPU(s), every library oversubscribed alike")
    lines.append("cpu: CPUs every library was limited to (a CPU mask); 'all': tcomp at 'thr' threads, "
                 "the peers with their own pools" if not all(r.get("peers_limited") for r in rows) else
                 "cpu: CPUs every library (tcomp, NumPy's BLAS, jax.jit, PyTorch) was limited to, by a CPU mask "
                 "and its thread settings")
    for r in rows:
        if r.get("tcomp_gflops"):
            lines.append(f"{r['case']} {r['size']}, {r['threads']} thread(s): tcomp {r['tcomp_gflops']:.1f} GFLOP/s, "
                         f"NumPy/BLAS {r['numpy_gflops']:.1f} GFLOP/s ({r['speedup']:.2f}x)")
    from .bench_scan import format_scan_rows

    lines.extend(format_scan_rows(rows))
    copies = {r["threads"]: r for r in rows if r["case"].startswith("copy")}
    if copies:
        np_copy = next(iter(copies.values()))["numpy_gbs"]
        lines.append(f"GB/s = bytes read + written per call / time; copy baselines: np.copyto {np_copy:.1f} GB/s "
                     f"(1 thread), tcomp -a " + ", ".join(f"{r['tcomp_gbs']:.1f} GB/s ({t} thr)"
                                                         for t, r in copies.items()))
        for r in rows:
            if r["case"].startswith("elementwise") and r["threads"] in copies:
                same = copies[r["threads"]]["tcomp_gbs"]
                lines.append(f"elementwise, {r['threads']} thread(s): {r['tcomp_gbs']:.1f} GB/s = "
                             f"{100 * r['tcomp_gbs'] / np_copy:.0f}% of np.copyto, "
                             f"{100 * r['tcomp_gbs'] / same:.0f}% of tcomp's copy with as many threads")
    for r in rows:
        if r.get("floor_ms"):
            lines.append(f"elementwise {r['size']}, {r['threads']} thread(s): {r['tcomp_ms']:.2f} ms; its memory "
                         f"floor (tcomp's a*b + c: the same bytes, timed in the same rounds) {r['floor_ms']:.2f} ms")
    lines.extend(format_scaling(rows))
    return "\n".join(lines)


def format_scaling(rows) -> list:
    """``N threads / 1 thread`` of tcomp for every case measured at both, the copy row first,
    and a large elementwise case's memory floor beside it: a memory-bound case cannot run
    faster than the same bytes with no compute, so with N threads it scales past the
    floor's own scaling only by as much as it is compute-bound at one thread (on a VM whose
    memory bandwidth one core nearly saturates, that is well under N)."""
    one = {(r["case"], r["size"]): r for r in rows if r["threads"] == 1}
    out = []
    for r in sorted(rows, key=lambda r: not r["case"].startswith("copy")):
        base = one.get((r["case"], r["size"]))
        if r["threads"] > 1 and base:
            what = " (the memory system's own scaling)" if r["case"].startswith("copy") else ""
            if r.get("floor_ms") and base.get("floor_ms"):
                what = (f" (its memory floor a*b + c: {base['floor_ms'] / r['floor_ms']:.2f}x; the case can scale "
                        "past that only as far as it is compute-bound at 1 thread)")
            out.append(f"scaling, {r['case']} {r['size']}: {r['threads']} threads = "
                       f"{base['tcomp_ms'] / r['tcomp_ms']:.2f}x 1 thread{what}")
    return ["tcomp, N threads over 1 (time at 1 / time at N):"] + out if out else []


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="tcomp bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes and 3 repeats (a smoke run)")
    p.add_argument("--repeat", type=int, default=0, help="calls per measurement (best of N)")
    p.add_argument("--threads", default="", help="comma-separated tcomp.config.num_threads values, e.g. 1,2")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON list instead of a table")
    p.add_argument("--no-peers", action="store_true", help="skip jax.jit and PyTorch even where installed")
    p.add_argument("--unpinned", action="store_true",
                   help="with --threads: measure in this process, peers with their own thread counts (unfair)")
    p.add_argument("--block", default="", help=argparse.SUPPRESS)  # a child of run(): one thread count
    args = p.parse_args(argv)
    if args.block:
        return _child_block(args.block)
    try:
        threads = tuple(int(t) for t in args.threads.split(",")) if args.threads else (None,)
    except ValueError:
        p.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    import llvmlite.binding as llvm

    rows = run(args.quick, args.repeat, threads, with_peers=not args.no_peers, pin=not args.unpinned)
    if args.json:
        import json

        print(json.dumps({"host": llvm.get_host_cpu_name(), "numpy": np.__version__, "rows": rows}))
        return 0
    pinned = all(r.get("peers_limited") for r in rows)
    print(f"host: {llvm.get_host_cpu_name()}, NumPy {np.__version__}; best of "
          f"{args.repeat or (3 if args.quick else 10)} calls; jax/torch columns: '-' where not installed; "
          + ("each thread count in a child process on that many CPUs, every library limited to it"
             if pinned else "NumPy, jax and torch use their own thread pools (all CPUs)"))
    print(format_rows(rows))
    return 0


def _child_block(spec: str) -> int:
    """``--block SPEC``: the rows of one thread count, in a child of :func:`run` (``bench_affinity``)."""
    import json

    from . import bench_affinity

    global SETTLE_S
    from .bench_native import PAUSE_S

    spec = json.loads(spec)
    bench_affinity.child_setup()
    SETTLE_S = 0.0 if spec["quick"] else PAUSE_S  # each library timed after the last one's pool went idle
    bench_affinity.write_result(_run_block(spec["quick"], spec["repeat"], spec["threads"], spec["with_peers"],
                                           spec["compile_rows"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
