"""The CPU backend's persistent thread pool (tcomp/backend/cpu/threadpool.py, parallel.py).

Checked here: results at 1/2/4 threads are bit-identical and match NumPy; the workers are
started once and reused (the process's thread count stays flat across calls and thread
settings); several Python threads calling the same and different compiled functions at
once; a forked child (multiprocessing's 'fork', also while another thread of the parent is
inside a parallel loop) calls compiled functions without waiting for workers it does not
have; a parallel loop nested in another one runs inline; the ahead-of-time copy of the pool
(``parallel.runtime_ir()``) works inside a shared library next to the JIT's own pool.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import TOLERANCES

import tcomp
from tcomp.backend.cpu import compile_graph
from tcomp.backend.cpu import parallel as P
from tcomp.ir import Graph, TensorType

BIG = 4 * P.MIN_PER_THREAD + 333  # large enough for 4 threads, not a multiple of anything


@pytest.fixture(autouse=True)
def _restore_threads():
    """Each test may set num_threads; up to 16 threads even on fewer CPUs (the pool caps a
    loop at the usable CPUs by default: these tests want several workers, oversubscribed)."""
    before = tcomp.config.num_threads
    cap = P.set_thread_cap(P.MAX_THREADS)
    yield
    tcomp.config.num_threads = before
    P.set_thread_cap(cap)


def _fused(dtype="float32"):
    g = Graph()
    a, b, c = (g.add_input(TensorType(dtype, (None,)), name=k) for k in "abc")
    g.outputs = [g.add_node("add", [g.add_node("mul", [a, b]), g.add_node("mul", [c, g.add_node("tanh", [a])])])]
    return g


def _np_fused(a, b, c):
    a64, b64, c64 = (x.astype("float64") for x in (a, b, c))
    return (a64 * b64 + c64 * np.tanh(a64)).astype(a.dtype)


def _rowsum():
    g = Graph()
    x = g.add_input(TensorType("float32", (None, None)), name="x")
    g.outputs = [g.add_node("sum", [g.add_node("exp", [x])], {"axis": (1,)})]
    return g


def _matmul():
    g = Graph()
    a = g.add_input(TensorType("float32", (None, None)), name="a")
    b = g.add_input(TensorType("float32", (None, None)), name="b")
    g.outputs = [g.add_node("tanh", [g.add_node("matmul", [a, b])])]
    return g


def _inputs(seed=0, n=BIG):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype("float32") for _ in range(3)]


def _call(f, xs, threads=None):
    if threads is not None:
        tcomp.config.num_threads = threads
    return [np.array(o) for o in f(xs)]


def _threads_in_process() -> int:
    return len(os.listdir("/proc/self/task"))


pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")


def test_one_two_four_threads_bit_identical_and_match_numpy():
    f, fs, fm = compile_graph(_fused()), compile_graph(_rowsum()), compile_graph(_matmul())
    assert P.POOL_SYMBOL in f.llvm_ir_unoptimized
    xs = _inputs(1)
    rng = np.random.default_rng(2)
    xr = rng.standard_normal((1031, 257)).astype("float32")
    am, bm = (rng.standard_normal((300, 300)).astype("float32") / 8 for _ in range(2))
    ref = {}
    for nt in (1, 2, 4):
        got = (_call(f, xs, nt)[0], _call(fs, [xr])[0], _call(fm, [am, bm])[0])
        if nt == 1:
            ref = got
        for r, g in zip(ref, got):
            assert r.tobytes() == g.tobytes(), f"{nt} threads differ from 1 thread"
    rtol, atol = TOLERANCES["float32"]
    np.testing.assert_allclose(ref[0], _np_fused(*xs), rtol=rtol, atol=atol)
    np.testing.assert_allclose(ref[1], np.exp(xr.astype("float64")).sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(ref[2], np.tanh(am.astype("float64") @ bm), rtol=1e-4, atol=1e-5)


def test_workers_started_once_and_num_threads_changes_between_calls():
    f = compile_graph(_fused())
    xs = _inputs(3)
    want = _call(f, xs, 1)[0].tobytes()
    _call(f, xs, 4)  # starts up to three workers (once per process)
    count = _threads_in_process()
    for nt in (2, 1, 4, 3, 1, 4, 2) * 3:
        assert _call(f, xs, nt)[0].tobytes() == want, nt
    assert _threads_in_process() == count  # no thread per call: the same workers every time
    small = [x[:1000] for x in xs]  # below the cost model's threshold: on the calling thread
    np.testing.assert_allclose(_call(f, small, 4)[0], _np_fused(*small), rtol=2e-5, atol=2e-6)


def test_concurrent_python_threads_same_and_different_functions():
    """Python threads share one pool: whoever finds it busy runs its loop inline; nothing
    deadlocks and no call sees another call's chunks."""
    fns = [compile_graph(_fused()), compile_graph(_rowsum()), compile_graph(_matmul())]
    rng = np.random.default_rng(4)
    jobs = []
    for k in range(9):
        kind = k % 3
        if kind == 0:
            xs = _inputs(10 + k, BIG + 101 * k)
        elif kind == 1:
            xs = [rng.standard_normal((600 + 7 * k, 229)).astype("float32")]
        else:
            xs = [rng.standard_normal((200 + k, 190)).astype("float32") / 8,
                  rng.standard_normal((190, 170 + k)).astype("float32") / 8]
        jobs.append((kind, xs))
    tcomp.config.num_threads = 1
    want = [fns[kind](xs)[0].tobytes() for kind, xs in jobs]
    tcomp.config.num_threads = 4
    before = P.pool_stats()
    results, errors = [[] for _ in jobs], []
    start = threading.Barrier(len(jobs))

    def work(k):
        kind, xs = jobs[k]
        try:
            start.wait()
            for _ in range(5):
                results[k].append(fns[kind](xs)[0].tobytes())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a call never returned"
    assert not errors, errors
    for k, got in enumerate(results):
        assert got == [want[k]] * 5, k
    d = {k: v - before[k] for k, v in P.pool_stats().items()}
    assert d["dispatched"] + d["inline"] >= 1
    # every chunk posted to a worker ran exactly once: by the worker or taken back by the caller
    assert d["posted"] == d["worker_pieces"] + d["taken_back"], d


def _digest(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _child_call(conn, f, xs, threads):
    try:
        tcomp.config.num_threads = threads
        outs = [_digest(f(xs)[0]) for _ in range(3)]
        conn.send(("ok", outs, len(os.listdir("/proc/self/task"))))
    except BaseException as e:  # noqa: BLE001 - sent to the parent
        conn.send(("error", repr(e), 0))
    finally:
        conn.close()


def _run_child(f, xs, threads=2):
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child_call, args=(there, f, xs, threads))
    p.start()
    there.close()
    ok = here.poll(120)
    got = here.recv() if ok else None
    p.join(timeout=30)
    if p.is_alive():
        p.kill()
    assert ok, "the forked child hung (waiting for workers it does not have?)"
    return got, p.exitcode


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this platform")
def test_fork_child_after_parent_used_the_pool():
    f = compile_graph(_fused())
    xs = _inputs(5)
    want = _digest(_call(f, xs, 1)[0])
    assert _digest(_call(f, xs, 2)[0]) == want  # the parent's workers exist now
    (status, outs, nthreads), code = _run_child(f, xs, 2)
    assert status == "ok" and code == 0, outs
    assert outs == [want] * 3
    assert _digest(_call(f, xs, 2)[0]) == want  # the parent's pool is unaffected


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this platform")
def test_fork_while_another_thread_holds_the_pool():
    """A fork taken while a parent thread is inside a parallel loop copies a held pool lock;
    the child takes it over instead of running single-threaded or hanging."""
    f = compile_graph(_fused())
    xs = _inputs(6, 16 * BIG)  # long loops: the busy thread holds the pool most of the time
    want = _digest(_call(f, xs, 1)[0])
    tcomp.config.num_threads = 2
    stop = threading.Event()
    busy_errors = []

    def busy():
        try:
            while not stop.is_set():
                f(xs)
        except Exception as e:  # noqa: BLE001 - reported below
            busy_errors.append(e)
    t = threading.Thread(target=busy)
    t.start()
    try:
        for _ in range(2):
            (status, outs, _), code = _run_child(f, xs, 2)
            assert status == "ok" and code == 0, outs
            assert outs == [want] * 3
    finally:
        stop.set()
        t.join(timeout=60)
    assert not busy_errors, busy_errors


_NESTED_IR = r"""
declare i32 @tcomp_cpu_parallel(ptr, ptr, i64, i64, i64, i64)

define internal i32 @inner(ptr %argv, i64 %lo, i64 %hi) {
entry:
  %out = load ptr, ptr %argv
  %rp = getelementptr i64, ptr %argv, i64 1
  %r = load i64, ptr %rp
  %cp = getelementptr i64, ptr %argv, i64 2
  %cols = load i64, ptr %cp
  %base = mul i64 %r, %cols
  br label %head
head:
  %j = phi i64 [ %lo, %entry ], [ %j1, %body ]
  %more = icmp slt i64 %j, %hi
  br i1 %more, label %body, label %done
body:
  %idx = add i64 %base, %j
  %p = getelementptr i64, ptr %out, i64 %idx
  %v0 = mul i64 %r, 1000
  %v = add i64 %v0, %j
  %old = load i64, ptr %p
  %new = add i64 %old, %v
  store i64 %new, ptr %p
  %j1 = add i64 %j, 1
  br label %head
done:
  ret i32 0
}

; every row of the outer loop runs an inner parallel loop over its columns
define internal i32 @outer(ptr %argv, i64 %lo, i64 %hi) {
entry:
  %inner_argv = alloca i64, i64 3
  %out = load ptr, ptr %argv
  %cp = getelementptr i64, ptr %argv, i64 1
  %cols = load i64, ptr %cp
  %tp = getelementptr i64, ptr %argv, i64 2
  %nt = load i64, ptr %tp
  store ptr %out, ptr %inner_argv
  %icp = getelementptr i64, ptr %inner_argv, i64 2
  store i64 %cols, ptr %icp
  br label %head
head:
  %r = phi i64 [ %lo, %entry ], [ %r1, %body ]
  %rc = phi i32 [ 0, %entry ], [ %rc1, %body ]
  %more = icmp slt i64 %r, %hi
  br i1 %more, label %body, label %done
body:
  %irp = getelementptr i64, ptr %inner_argv, i64 1
  store i64 %r, ptr %irp
  %c = call i32 @tcomp_cpu_parallel(ptr @inner, ptr %inner_argv, i64 %cols, i64 %nt, i64 1, i64 3)
  %rc1 = or i32 %rc, %c
  %r1 = add i64 %r, 1
  br label %head
done:
  ret i32 %rc
}

define i32 @tcomp_test_nested(ptr %out, i64 %rows, i64 %cols, i64 %nt) {
entry:
  %argv = alloca i64, i64 3
  store ptr %out, ptr %argv
  %cp = getelementptr i64, ptr %argv, i64 1
  store i64 %cols, ptr %cp
  %tp = getelementptr i64, ptr %argv, i64 2
  store i64 %nt, ptr %tp
  %rc = call i32 @tcomp_cpu_parallel(ptr @outer, ptr %argv, i64 %rows, i64 %nt, i64 1, i64 2)
  ret i32 %rc
}
"""


def _nested_expected(rows, cols):
    return (np.arange(rows, dtype="int64")[:, None] * 1000 + np.arange(cols, dtype="int64")[None, :])


def _check_nested(fn, rows=37, cols=1001):
    import ctypes

    for nt in (0, 1, 2, 4, 16):  # 0: treated as 1
        out = np.zeros((rows, cols), dtype="int64")  # += in the body: a chunk run twice would show
        rc = fn(out.ctypes.data_as(ctypes.c_void_p), rows, cols, nt)
        assert rc == 0
        np.testing.assert_array_equal(out, _nested_expected(rows, cols))


def test_nested_parallel_loop_runs_inline():
    import ctypes

    from tcomp.runtime import engine

    lib = engine.load(_NESTED_IR, exports=["tcomp_test_nested"])
    proto = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)
    _check_nested(proto(lib.address("tcomp_test_nested")))


def test_runtime_ir_defines_what_kernels_import():
    """``runtime_ir()`` defines every non-intrinsic symbol a compiled function imports (beyond
    libc), hidden, so an ahead-of-time library keeps its own pool and cell."""
    import llvmlite.binding as llvm

    from tcomp.runtime import engine

    engine.target_machine()
    f = compile_graph(_fused())
    mod = llvm.parse_assembly(f.llvm_ir_unoptimized)
    imported = {g.name for g in mod.global_variables if g.is_declaration}
    imported |= {fn.name for fn in mod.functions if fn.is_declaration and not fn.name.startswith("llvm.")}
    assert {P.CELL_SYMBOL, P.POOL_SYMBOL} <= imported
    rt = llvm.parse_assembly(P.runtime_ir())
    rt.verify()
    defined = {g.name: g for g in rt.global_variables if not g.is_declaration}
    defined.update({fn.name: fn for fn in rt.functions if not fn.is_declaration})
    libc = {"memcpy", "memset", "malloc", "free", "posix_memalign", "aligned_alloc"}
    assert imported - libc <= set(defined), imported - set(defined)
    for name in (P.CELL_SYMBOL, P.POOL_SYMBOL):
        assert defined[name].visibility == llvm.Visibility.hidden and defined[name].linkage == llvm.Linkage.external


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) to link a shared library")
def test_ahead_of_time_copy_in_a_shared_library(tmp_path):
    """The AOT runtime linked into a shared library: its own (hidden) pool and cell run the
    nested test next to this process's JIT pool; the library sets its own thread count."""
    import ctypes

    from tcomp.backend.cpu.host_program import emit_object

    setter = ("\ndefine i64 @tcomp_test_set_threads(i64 %n) {\n  store i64 %n, ptr @tcomp_cpu_num_threads\n"
              "  %v = load i64, ptr @tcomp_cpu_num_threads\n  ret i64 %v\n}\n"
              "@tcomp_cpu_num_threads = external global i64\n")
    (tmp_path / "rt.o").write_bytes(emit_object(P.runtime_ir()))
    (tmp_path / "k.o").write_bytes(emit_object(_NESTED_IR + setter))
    so = tmp_path / "libnested.so"
    subprocess.run(["cc", "-shared", "-o", str(so), str(tmp_path / "k.o"), str(tmp_path / "rt.o"), "-lpthread"],
                   check=True, capture_output=True, text=True)
    nm = shutil.which("nm")
    if nm:
        exported = subprocess.run([nm, "-D", "--defined-only", str(so)], check=True, capture_output=True,
                                  text=True).stdout
        assert "tcomp_test_nested" in exported
        assert P.POOL_SYMBOL not in exported and P.CELL_SYMBOL not in exported  # hidden: its own copy
    lib = ctypes.CDLL(str(so))
    lib.tcomp_test_set_threads.restype = ctypes.c_int64
    assert lib.tcomp_test_set_threads(ctypes.c_int64(4)) == 4
    fn = lib.tcomp_test_nested
    fn.restype = ctypes.c_int32
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
    _check_nested(fn)
    test_nested_parallel_loop_runs_inline()  # the JIT's pool still works next to it


_CACHED_SCRIPT = r"""
import numpy as np, tcomp
from tcomp.backend.cpu import compile_graph
from tcomp.runtime import engine
from tcomp.ir import Graph, TensorType
g = Graph()
a, b, c = (g.add_input(TensorType("float32", (None,)), name=k) for k in "abc")
g.outputs = [g.add_node("add", [g.add_node("mul", [a, b]), g.add_node("mul", [c, g.add_node("tanh", [a])])])]
f = compile_graph(g)
rng = np.random.default_rng(0)
xs = [rng.standard_normal(%d).astype("float32") for _ in range(3)]
assert tcomp.config.num_threads == 3, tcomp.config.num_threads  # TCOMP_NUM_THREADS
assert np.array(f(xs)[0]).tobytes() == np.array(f(xs)[0]).tobytes()
tcomp.config.num_threads = 1
one = np.array(f(xs)[0]).tobytes()
tcomp.config.num_threads = 4
assert np.array(f(xs)[0]).tobytes() == one
print("hits", engine.cache_stats["hits"])
"""


def test_cached_kernel_object_links_to_the_pool():
    """A process that takes a kernel's object from the compile cache (no kernel IR made)
    still finds the pool: the engine makes it on first link (``symbol_providers``); the
    thread count starts at ``TCOMP_NUM_THREADS``."""
    script = _CACHED_SCRIPT % BIG
    env = dict(os.environ, TCOMP_CACHE="1", TCOMP_NUM_THREADS="3")
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
            for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    if os.environ.get("TCOMP_CACHE", "1") != "0":
        assert int(runs[1].stdout.split()[-1]) > 0  # the second process linked cached objects


def test_pool_bench_smoke():
    """``python -m tcomp.backend.cpu.pool_bench`` (the docstring's figures): every case runs
    and checks its result against NumPy (3 calls each)."""
    from tcomp.backend.cpu import pool_bench

    lines = pool_bench.run(scale=0.0, rounds=1)
    assert [line.split(":")[0] for line in lines] == ["elementwise 131072", "elementwise 1048576", "gemm 256",
                                                      "gemm 512"]
    assert all("NumPy" in line and "taken back" in line for line in lines)


_ONCE_IR = r"""
declare i32 @tcomp_cpu_parallel(ptr, ptr, i64, i64, i64, i64)

define internal i32 @bump(ptr %argv, i64 %lo, i64 %hi) {
entry:
  %out = load ptr, ptr %argv
  br label %head
head:
  %j = phi i64 [ %lo, %entry ], [ %j1, %body ]
  %more = icmp slt i64 %j, %hi
  br i1 %more, label %body, label %done
body:
  %p = getelementptr i32, ptr %out, i64 %j
  %old = load i32, ptr %p
  %new = add i32 %old, 1
  store i32 %new, ptr %p
  %j1 = add i64 %j, 1
  br label %head
done:
  ret i32 0
}

define i32 @tcomp_test_once(ptr %out, i64 %stop, i64 %nt, i64 %pieces) {
entry:
  %argv = alloca i64, i64 1
  store ptr %out, ptr %argv
  %rc = call i32 @tcomp_cpu_parallel(ptr @bump, ptr %argv, i64 %stop, i64 %nt, i64 1, i64 %pieces)
  ret i32 %rc
}
"""


def _once_fn():
    import ctypes

    from tcomp.runtime import engine

    lib = engine.load(_ONCE_IR, exports=["tcomp_test_once"])
    proto = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)
    fn = proto(lib.address("tcomp_test_once"))
    fn._lib = lib
    return fn


def test_every_element_runs_once_across_piece_counts_and_sizes():
    """Loops with different piece counts back to back (a worker still claiming in the last
    loop's mailbox while the caller refills it), workers helping with the caller's chunk and
    the caller taking back theirs: each element's counter must equal the loops covering it."""
    import ctypes

    fn = _once_fn()
    rng = np.random.default_rng(11)
    out = np.zeros(200_003, dtype="int32")
    want = np.zeros_like(out)
    before = P.pool_stats()
    for k in range(400):
        stop = int(rng.integers(1, out.size + 1))
        nt, pieces = (2, 3, 4)[k % 3], (1, 4, 9, 5000)[k % 4]  # 5000: more than a chunk may have
        assert fn(out.ctypes.data_as(ctypes.c_void_p), stop, nt, pieces) == 0
        want[:stop] += 1
    np.testing.assert_array_equal(out, want)
    d = {k: v - before[k] for k, v in P.pool_stats().items()}
    assert d["dispatched"] == 400
    assert d["posted"] == d["worker_pieces"] + d["taken_back"], d


def _capped_child(conn, f, xs, cpus):
    try:
        os.sched_setaffinity(0, cpus)
        P.set_thread_cap(0)  # the default: as many threads as the mask has CPUs
        tcomp.config.num_threads = 4
        outs = [_digest(f(xs)[0]) for _ in range(3)]
        s = P.pool_stats()
        conn.send(("ok", outs, (s["workers"], s["cpus"])))
    except BaseException as e:  # noqa: BLE001 - sent to the parent
        conn.send(("error", repr(e), None))
    finally:
        conn.close()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods() or not hasattr(os, "sched_setaffinity"),
                    reason="needs fork and sched_setaffinity")
def test_threads_capped_at_the_cpus_of_the_mask():
    """num_threads above the usable CPUs does not oversubscribe them: a child restricted to
    one CPU starts no worker, one with two CPUs starts one (results bit-identical)."""
    f = compile_graph(_fused())
    xs = _inputs(12)
    want = _digest(_call(f, xs, 1)[0])
    mine = sorted(os.sched_getaffinity(0))
    ctx = multiprocessing.get_context("fork")
    for cpus in ([mine[0]], mine[:2]) if len(mine) >= 2 else ([mine[0]],):
        here, there = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_capped_child, args=(there, f, xs, cpus))
        p.start()
        there.close()
        assert here.poll(120), "the child hung"
        status, outs, info = here.recv()
        p.join(timeout=30)
        assert status == "ok", outs
        workers, seen = info
        assert outs == [want] * 3
        assert (workers, seen) == (len(cpus) - 1, len(cpus))
