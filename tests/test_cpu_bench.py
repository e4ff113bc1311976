"""``tcomp bench`` runs end to end (results checked against NumPy inside) and reports every case."""
import pytest

from tcomp.tools import bench


def test_bench_quick_runs_and_reports_every_case(capsys):
    assert bench.main(["--quick", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    for case in ("elementwise", "copy", "memory floor", "softmax", "sum over axis 1", "sum (full)", "matmul", "conv2d",
                 "call x+y*z", "digits MLP step"):
        assert case in out
    assert "GB/s" in out
    rows = bench.run(quick=True, repeat=1, with_peers=False)
    assert all(r["tcomp_ms"] > 0 and r["numpy_ms"] > 0 for r in rows)
    assert all(r["max_err"] < 1e-3 for r in rows if r["max_err"] is not None)


@pytest.mark.slow  # the whole quick bench twice more (~20 s): the first test covers the table
def test_bench_threads_option_gives_one_row_per_thread_count(capsys):
    assert bench.main(["--quick", "--repeat", "1", "--threads", "1,2", "--no-peers"]) == 0
    out = capsys.readouterr().out
    assert "1 thread(s)" in out and "2 thread(s)" in out
    rows = bench.run(quick=True, repeat=1, threads=(1, 2), with_peers=False)
    assert [r["threads"] for r in rows if r["case"].startswith("copy")] == [1, 2]
    assert all(r["tcomp_gbs"] > 0 for r in rows if r["case"].startswith(("copy", "elementwise")))


def test_pinned_child_runs_on_n_cpus_with_every_thread_setting():
    """bench_affinity.run_pinned: the child's CPU mask holds min(N, available) CPUs before
    any import, and the thread-pool variables say N (what makes a --threads row fair)."""
    import sys

    from tcomp.tools import bench_affinity as A

    script = ("import os, json; from tcomp.tools import bench_affinity as A; A.write_result("
              "{'cpus': sorted(os.sched_getaffinity(0)), 'omp': os.environ['OMP_NUM_THREADS'], "
              "'blas': os.environ['OPENBLAS_NUM_THREADS'], 'xla': os.environ['XLA_FLAGS']})")
    avail = A.available_cpus()
    for n in (1, len(avail) + 1):
        got = A.run_pinned(n, [sys.executable, "-c", script])
        assert got["cpus"] == avail[:n]
        assert got["omp"] == got["blas"] == str(n)
        assert f"intra_op_parallelism_threads={n}" in got["xla"]
    with pytest.raises(ValueError, match="threads"):
        A.cpus_for(0)


def test_scaling_lines_divide_the_one_thread_time_and_put_the_copy_first():
    rows = [{"case": c, "size": "n", "threads": t, "tcomp_ms": ms, "floor_ms": fl}
            for c, t, ms, fl in (("elementwise", 1, 9.0, 7.0), ("elementwise", 2, 6.0, 5.6), ("copy (x)", 1, 4.0, None),
                                 ("copy (x)", 2, 3.2, None), ("matmul", 2, 1.0, None))]
    lines = bench.format_scaling(rows)
    assert lines[1] == "scaling, copy (x) n: 2 threads = 1.25x 1 thread (the memory system's own scaling)"
    assert lines[2].startswith("scaling, elementwise n: 2 threads = 1.50x 1 thread (its memory floor a*b + c: 1.25x;")
    assert len(lines) == 3  # matmul has no 1-thread row
    assert bench.format_scaling(rows[:1]) == []
