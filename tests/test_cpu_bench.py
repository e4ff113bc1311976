"""``tcomp bench`` runs end to end (results checked against NumPy inside) and reports every case."""
import pytest

from tcomp.tools import bench


def test_bench_quick_runs_and_reports_every_case(capsys):
    assert bench.main(["--quick", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    for case in ("elementwise", "copy", "softmax", "sum over axis 1", "sum (full)", "matmul", "conv2d",
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
