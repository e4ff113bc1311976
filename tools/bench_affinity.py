"""Fair thread counts for benchmarks: run a block of measurements in a child process that may
use only N CPUs, so tcomp and every peer (NumPy's BLAS, ``jax.jit``, PyTorch) get the same N.

Why a child process and a CPU mask, not only thread-count settings: a library's own knob does
not bound what it uses.  XLA's ``intra_op_parallelism_threads`` left ``jax.jit``'s "1-thread"
MLP step using 1.74 CPUs; OpenBLAS and OpenMP pools are sized when the library loads.  A CPU
affinity mask set before the interpreter starts (``preexec_fn``) binds them all, and the
thread settings (environment variables read at load time, then :func:`limit_libraries` in the
child: threadpoolctl for BLAS, ``torch.set_num_threads``) keep their pools from
oversubscribing the N CPUs.

When N is more than the CPUs this process may use, the child gets all of them and
:func:`cpus_for` reports fewer CPUs than threads; the bench says so in the row.

Use: ``rows = run_pinned(n, [sys.executable, "-m", "pkg.mod", ...])`` where the child calls
:func:`child_setup` first and writes its JSON result to the file named by
``$TCOMP_BENCH_OUT`` (:func:`write_result`).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

#: environment variables thread pools read when their library loads
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "TCOMP_NUM_THREADS")
OUT_ENV = "TCOMP_BENCH_OUT"
THREADS_ENV = "TCOMP_BENCH_THREADS"


def available_cpus() -> list:
    """The CPUs this process may run on, sorted."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def cpus_for(n: int) -> list:
    """The first ``n`` available CPUs (all of them when ``n`` is more)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be an int >= 1, got {n!r}")
    return available_cpus()[:n]


def child_env(n: int, base=None) -> dict:
    """``base`` (default ``os.environ``) with every thread-pool variable set to ``n``, OpenMP
    workers told to sleep when idle, and XLA's CPU pool sized to ``n``."""
    env = dict(os.environ if base is None else base)
    for k in _THREAD_ENV:
        env[k] = str(n)
    env[THREADS_ENV] = str(n)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    xla = env.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in xla:
        env["XLA_FLAGS"] = (xla + f" --xla_cpu_multi_thread_eigen={'false' if n == 1 else 'true'}"
                            f" intra_op_parallelism_threads={n}").strip()
    return env


def pin_current_process(n: int) -> list:
    """Restrict this process to :func:`cpus_for` ``(n)``; call before importing any library
    with a thread pool (their pools are sized when they load).  Returns the CPUs."""
    cpus = cpus_for(n)
    os.sched_setaffinity(0, cpus)
    return cpus


def limit_libraries(n: int) -> None:
    """Limit the thread pools already loaded in this process to ``n`` threads: BLAS and
    OpenMP through threadpoolctl (when installed), PyTorch (when imported) and tcomp."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    import tcomp

    tcomp.config.num_threads = n


def child_setup() -> int | None:
    """In a child started by :func:`run_pinned`: the thread count it was started for (None
    outside one), with the libraries loaded so far limited to it."""
    n = os.environ.get(THREADS_ENV)
    if not n:
        return None
    limit_libraries(int(n))
    return int(n)


def write_result(value) -> None:
    """In a child: hand ``value`` (JSON-serializable) back to :func:`run_pinned`."""
    with open(os.environ[OUT_ENV], "w") as f:
        json.dump(value, f)


def run_pinned(n: int, argv: list, timeout: float = 3600):
    """Run ``argv`` in a child process limited to ``n`` threads on :func:`cpus_for` ``(n)``;
    returns what the child passed to :func:`write_result`.  The child's stdout and stderr
    are copied to this process's stderr (its result travels in a file, not mixed with them)."""
    cpus = cpus_for(n)
    fd, path = tempfile.mkstemp(prefix="tcomp-bench-", suffix=".json")
    os.close(fd)
    try:
        env = child_env(n)
        env[OUT_ENV] = path
        proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout, preexec_fn=lambda: os.sched_setaffinity(0, cpus))
        if proc.stdout:
            sys.stderr.write(proc.stdout)
        if proc.returncode:
            raise RuntimeError(f"benchmark child for {n} thread(s) failed with exit code {proc.returncode}: "
                               f"{' '.join(argv)}")
        with open(path) as f:
            return json.load(f)
    finally:
        os.unlink(path)


__all__ = ["available_cpus", "cpus_for", "child_env", "pin_current_process", "limit_libraries", "child_setup",
           "write_result", "run_pinned"]
