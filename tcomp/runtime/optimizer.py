"""LLVM optimization and code generation in a small pool of helper processes.

Why processes: llvmlite's new-pass-manager binding leaks about 100 KiB per module it
optimizes (measured with llvmlite 0.50 / LLVM 22: ~32 KiB per ``getModulePassManager()``,
the rest per ``run``, whether or not the PassBuilder, TargetMachine or context are reused;
``LLVMPY_CreatePassBuilder`` also never frees its ``PassInstrumentationCallbacks``).  A
long-running program that compiles functions as it goes would grow without bound even
though tcomp frees every function's native code.  So the parse / O3 / ``emit_object`` step
runs in ``_optimizer_worker.py`` (plain Python + llvmlite, no tcomp import); this process
only links the objects into its JIT (``engine.py``).  A worker is restarted when it has
grown by :data:`RECYCLE_BYTES`, which bounds the leak; a module that crashes LLVM kills
a worker, not the user's program.

Why a pool: a big program is compiled as several modules (``host_program.emit_parts``:
its kernels in groups, handed on as they are emitted, its ``plan``/``run`` entries apart)
and the parts are independent until they are linked, so :func:`submit` hands each to an
idle worker (up to :func:`max_workers`, one per usable CPU, at most :data:`MAX_WORKERS`;
the longest waiting job first, :func:`estimate`) and :func:`result` waits for one; this
process meanwhile emits the next part.  A worker is started when a part finds none idle
(:func:`prestart` starts them ahead, without waiting for them: their start-up overlaps
the emission of the first part).

Set ``TCOMP_JIT_OPTIMIZER=inprocess`` to optimize in this process instead (the workers are
also skipped, with one warning, when one cannot be started): :func:`submit` then returns
None and the caller compiles in process.  ``TCOMP_JIT_WORKERS=N`` bounds the pool.  The
workers are private to the process that started them: a forked child starts its own (the
pool's lock and state are renewed in the child).
"""
from __future__ import annotations

import atexit
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_optimizer_worker.py")
#: a worker is replaced once its resident memory has grown this much since it started
RECYCLE_BYTES = 64 << 20
#: the most worker processes one process keeps
MAX_WORKERS = 4

_cond = threading.Condition(threading.Lock())
_workers: list = []     # every live worker of this process (busy ones have .job set)
_queue: list = []       # submitted jobs no worker has taken yet (the largest is taken first)
_pumping = [False]      # whether a thread is waiting in select() for the busy workers
_wake = [None]          # (read fd, write fd): a submission wakes the thread in select()
_disabled = os.environ.get("TCOMP_JIT_OPTIMIZER", "").strip().lower() == "inprocess"
#: how many worker processes this process has started (tests)
started = 0
#: modules the workers compiled for this process and their CPU seconds (``tcomp inspect``, tuning)
stats = {"jobs": 0, "cpu_seconds": 0.0}


class OptimizerDied(RuntimeError):
    """The optimizer process exited while compiling a module (LLVM aborted on it)."""


def max_workers() -> int:
    """The pool's bound: ``TCOMP_JIT_WORKERS``, else the CPUs this process may run on (at
    most :data:`MAX_WORKERS`)."""
    env = os.environ.get("TCOMP_JIT_WORKERS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_WORKERS))


#: about how long LLVM takes per character of a module's text at each IR level (code
#: generation at 3; FastISel takes ~0.3 of it): microseconds, measured on the MLP step's
#: modules (znver4: O0 0.5-0.9, O1 1.3, O3 2.0-2.3, a 93,000-character O3 module 0.17 s).
#: Only the order of the queue uses it (the longest job first)
US_PER_CHAR = {0: 0.6, 1: 1.3, 2: 1.8, 3: 2.2}
#: at O2/O3 a loop costs at least about this much (the vectorizers' work on it): the GEMM
#: runtime's 2,300-character no-packing loop (4 phis) takes 30 ms at O3; estimated by its
#: size alone it was queued last and ended a first compile's LLVM work alone on one CPU
US_PER_LOOP = 7500


def estimate(size: int, level: int, codegen_level: int = 3, loops: int = 0) -> float:
    """About how many microseconds of CPU a module of ``size`` characters takes (``loops``:
    its phi instructions, about its loops)."""
    us = size * US_PER_CHAR[max(0, min(level, 3))]
    if level >= 2:
        us = max(us, loops * US_PER_LOOP)
    return us * (0.3 if codegen_level == 0 else 1.0)


class Job:
    """One module to compile; :func:`result` gives its ``(optimized_ir, object, declared,
    defined)``."""

    __slots__ = ("request", "reply", "tries", "done", "weight")

    def __init__(self, request):
        self.request, self.reply, self.tries, self.done = request, None, 0, False
        text, level, _, codegen_level = request
        loops = text.count(" phi ") if level >= 2 else 0
        self.weight = estimate(len(text), level, codegen_level, loops)  # about its LLVM time


class _Forked:
    """What :class:`_Worker` uses of ``subprocess.Popen``, for a worker that another worker
    forked (``siblings`` of :func:`_spawn`): not this process's child, so its pid comes with
    its start-up message and whether it still runs is asked with ``kill(pid, 0)`` (its
    parent reaps it)."""

    def __init__(self, to_fd: int, from_fd: int):
        self.stdin = os.fdopen(to_fd, "wb", buffering=0)
        self.stdout = os.fdopen(from_fd, "rb", buffering=0)
        self.pid = None
        self.returncode = None

    def poll(self):
        if self.returncode is None and self.pid is not None:
            try:
                os.kill(self.pid, 0)
                with open(f"/proc/{self.pid}/stat", "rb") as f:  # a zombie (its parent gone too) is gone
                    if f.read().rsplit(b")", 1)[-1].split()[:1] == [b"Z"]:
                        self.returncode = -1
            except ProcessLookupError:
                self.returncode = -1
            except OSError:  # no /proc: kill(pid, 0) said it runs
                pass
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.pid is not None and self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("tcomp optimizer worker", timeout)
            time.sleep(0.002)
        return self.returncode

    def kill(self) -> None:
        if self.pid is not None and self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass


def _spawn(siblings: int):
    """A new worker process and ``siblings`` more that it forks once it has loaded llvmlite:
    a list of Popen-like objects (the first a Popen).  Why: starting one costs ~60 ms of CPU
    (half of it loading libllvmlite), which a first compile spent twice while it emitted its
    program on the same two cores; a fork of a started one costs ~2 ms."""
    pairs, ours = [], []
    try:
        for _ in range(siblings):
            to_r, to_w = os.pipe()
            from_r, from_w = os.pipe()
            pairs.append((to_r, from_w))
            ours.append((to_w, from_r))
        args = [sys.executable, WORKER]
        if pairs:
            args += ["--siblings", ";".join(f"{a},{b}" for a, b in pairs)]
        # unbuffered: select() on the pipe must see every byte not yet read (no read-ahead)
        first = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, bufsize=0,
                                 pass_fds=[fd for pair in pairs for fd in pair])
    except OSError:
        for fd in [fd for pair in pairs + ours for fd in pair]:
            os.close(fd)
        raise
    for a, b in pairs:  # the siblings' ends: theirs only
        os.close(a)
        os.close(b)
    return [first] + [_Forked(to_w, from_r) for to_w, from_r in ours]


class _Worker:
    def __init__(self, cpu: str, features: str, proc=None):
        global started
        self.owner = os.getpid()
        self.job = None
        self.ready = False  # its ("ready", rss, pid) message is read before its first reply
        self.proc = _spawn(0)[0] if proc is None else proc
        started += 1
        self.base_rss = self.rss = 0
        try:
            self._send((cpu, features))
        except OSError:
            self.close()
            raise OSError("the LLVM optimizer process did not start") from None

    def _send(self, obj) -> None:
        body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        data = memoryview(struct.pack("<Q", len(body)) + body)
        fd = self.proc.stdin.fileno()
        while data:
            data = data[os.write(fd, data):]

    def _read(self, n: int) -> bytes:
        fd, parts = self.proc.stdout.fileno(), []
        while n:
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                break
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def _receive(self):
        head = self._read(8)
        if len(head) < 8:
            return None
        (size,) = struct.unpack("<Q", head)
        data = self._read(size)
        return pickle.loads(data) if len(data) == size else None

    def pending(self) -> bool:
        """Whether bytes are waiting on the worker's pipe (without blocking)."""
        return bool(select.select([self.proc.stdout], [], [], 0)[0])

    def start_job(self, job: Job) -> bool:
        """Send ``job``; False when the worker is gone (the job stays unsent)."""
        try:
            self._send(job.request)
        except (BrokenPipeError, OSError):
            return False
        self.job = job
        return True

    def finish_job(self):
        """The busy job's reply (called when its pipe is readable); None when the worker
        died, ``_NOT_YET`` when what came was its start-up message and the reply is still
        to come (the caller must not block on it: it holds the pool's lock)."""
        try:
            if not self.ready:
                hello = self._receive()
                if hello is None or hello[0] != "ready":
                    return None
                self.ready, self.base_rss = True, hello[1]
                if isinstance(self.proc, _Forked):
                    self.proc.pid = hello[2]
                if not self.pending():
                    return _NOT_YET
            reply = self._receive()
        except (OSError, pickle.UnpicklingError, EOFError):
            reply = None
        if reply is not None:
            self.rss = reply[-1]
        return reply

    @property
    def worn_out(self) -> bool:
        return self.ready and self.rss - self.base_rss > RECYCLE_BYTES

    def close(self) -> None:
        if self.owner != os.getpid():  # a forked child's copy: drop our pipe ends, the parent keeps its own
            for pipe in (self.proc.stdin, self.proc.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass
            self.proc.returncode = 0  # not our child: never wait for it
            return
        try:
            self.proc.stdin.close()
        except OSError:  # already broken (the process died)
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


_host_cpu: list = []  # (cpu name, features) of the engine's target machine


def _host():
    """The host CPU name and features (cached: read under the pool's lock, which must never
    wait for the engine's lock: a thread holding that one may be waiting for the pool)."""
    if not _host_cpu:
        from . import engine

        engine.target_machine()
        _host_cpu[:] = engine._host
    return _host_cpu


def _new_worker(siblings: int = 0):
    """A fresh worker (appended to the pool, with ``siblings`` more forked from it: see
    :func:`_spawn`), or None when none can be started (the pool is then disabled for this
    process, with a warning)."""
    global _disabled
    try:
        procs = _spawn(siblings)
    except OSError as exc:
        _disabled = True
        warnings.warn(f"tcomp: cannot start the LLVM optimizer process ({exc}); optimizing in this "
                      "process (its memory grows by ~100 KiB per compiled function)", RuntimeWarning, stacklevel=4)
        return None
    made = []
    for proc in procs:
        try:
            made.append(_Worker(*_host(), proc=proc))
        except OSError:  # (closed by _Worker; its job goes to another)
            continue
    if not made:
        return None
    _workers.extend(made)
    return made[0]


def _retire(w) -> None:
    if w in _workers:
        _workers.remove(w)
    w.close()


def _dispatch() -> None:
    """Hand queued jobs to idle workers, starting workers up to the bound (lock held)."""
    pid = os.getpid()
    for w in [w for w in _workers if w.owner != pid or (w.job is None and (w.worn_out or w.proc.poll() is not None))]:
        _retire(w)
    while _queue:
        idle = next((w for w in _workers if w.job is None), None)
        if idle is None:
            if len(_workers) >= max_workers():
                return
            idle = _new_worker()
            if idle is None:
                return
        # the longest job first (a retry before any): the longest job started last is what a
        # compile waits for at the end (a first compile queues the runtime libraries ahead of
        # the program's own O3 module, which takes the longest; 2 CPUs finished them, then it)
        job = max(_queue, key=lambda j: (j.tries, j.weight))
        _queue.remove(job)
        if not idle.start_job(job):
            _queue.insert(0, job)
            _retire(idle)


def prestart(count: int = 1) -> None:
    """Start workers so that ``count`` are alive (at most the bound), without waiting for
    them to be ready: a compile that follows finds them started."""
    if _disabled:
        return
    _host()  # before the pool's lock (see _host)
    with _cond:
        _dispatch()  # also drops a forked parent's or dead workers
        while not _disabled and len(_workers) < min(count, max_workers()):
            if _new_worker(siblings=min(count, max_workers()) - len(_workers) - 1) is None:
                return


def start_ahead() -> None:
    """The first compile of this process is coming (called before its graph passes): start
    two workers now (:func:`prestart`; the second forked from the first), so that their
    start-up (~60 ms of CPU) overlaps the passes instead of the program's emission (the MLP
    step cold: 0.366 -> 0.321 s median, 12 pairs).  Nothing once a worker has been started
    in this process: later compiles find them running or start them as before."""
    if started == 0 and not _disabled:
        prestart(2)


def submit(llvm_ir: str, level: int, loop_unrolling: bool, codegen_level: int = 3):
    """Queue one module for a worker; returns a :class:`Job`, or None when the workers are
    disabled or cannot run (the caller then optimizes in process)."""
    if _disabled:
        return None
    job = Job((llvm_ir, level, loop_unrolling, codegen_level))
    _host()  # before the pool's lock (see _host)
    with _cond:
        _queue.append(job)
        _dispatch()
        if _disabled:
            _queue.remove(job)
            return None
        if _pumping[0] and _wake[0] is not None:
            os.write(_wake[0][1], b"x")  # the thread in select() must watch the newly busy worker
    return job


#: the reply of a job whose workers never came up (the caller compiles it in process)
_FALLBACK = ("fallback",)
#: ``finish_job``: only the worker's start-up message had come
_NOT_YET = ("not yet",)


def _complete(w, reply) -> None:
    """Record worker ``w``'s reply to its job (lock held)."""
    global _disabled
    job, w.job = w.job, None
    if reply is None:  # the worker died: one fresh retry, then the error
        code = w.proc.poll()
        never_ready = not w.ready
        _retire(w)
        job.tries += 1
        if job.tries < 2:
            _queue.insert(0, job)
            return
        if never_ready:  # twice a worker that exited before it was ready: no pool in this process
            _disabled = True
            warnings.warn(f"tcomp: the LLVM optimizer process exits at start (status {code}); optimizing in "
                          "this process (its memory grows by ~100 KiB per compiled function)", RuntimeWarning,
                          stacklevel=2)
            for other in _queue:
                other.reply, other.done = _FALLBACK, True
            _queue.clear()
            job.reply = _FALLBACK
        else:
            job.reply = OptimizerDied(f"the LLVM optimizer process exited (status {code}) while compiling "
                                      "this module")
    else:
        job.reply = reply
        if reply[0] == "ok":
            stats["jobs"] += 1
            stats["cpu_seconds"] += reply[5]
    job.done = True


def _pump() -> None:
    """Wait until some busy worker answers and record it (lock held; released while
    waiting).  One thread waits in select() at a time; the others wait on the condition."""
    if _pumping[0]:
        _cond.wait(0.1)
        return
    busy = [w for w in _workers if w.job is not None and w.owner == os.getpid()]
    if not busy:
        _cond.wait(0.05)
        return
    if _wake[0] is None:
        _wake[0] = os.pipe()
    wake_r = _wake[0][0]
    _pumping[0] = True
    _cond.release()
    try:
        ready, _, _ = select.select([w.proc.stdout for w in busy] + [wake_r], [], [])
    finally:
        _cond.acquire()
        _pumping[0] = False
    if wake_r in ready:
        os.read(wake_r, 4096)
    for w in busy:
        if w.proc.stdout in ready and w.job is not None:
            reply = w.finish_job()
            if reply is not _NOT_YET:
                _complete(w, reply)
    _dispatch()
    _cond.notify_all()


def result(job: Job):
    """``(optimized_ir, object_bytes, declared_symbols, defined_functions)`` of a submitted
    job (``optimized_ir`` None when its level was 0), or None when no worker could start
    (compile it in process).  Raises RuntimeError for a module LLVM rejects,
    :class:`OptimizerDied` if LLVM aborted on it twice."""
    with _cond:
        while not job.done:
            _dispatch()
            if _disabled and job in _queue:  # the pool went away with this job queued
                _queue.remove(job)
                return None
            if not job.done:
                _pump()
    reply = job.reply
    if reply is _FALLBACK:
        return None
    if isinstance(reply, Exception):
        raise reply
    if reply[0] == "ok":
        return reply[1:5]
    _, kind, message, _ = reply
    raise RuntimeError(f"{message}" if kind == "RuntimeError" else f"{kind}: {message}")


def compile_module(llvm_ir: str, level: int, loop_unrolling: bool, cpu: str = "", features: str = "",
                   codegen_level: int = 3):
    """One module, waited for: ``(optimized_ir, object_bytes, declared_symbols,
    defined_functions)``, or None when the workers are disabled (see :func:`result`).
    ``cpu``/``features`` are the engine's (kept for older callers; the pool reads them)."""
    job = submit(llvm_ir, level, loop_unrolling, codegen_level)
    if job is None:
        return None
    out = result(job)
    if out is None:
        return None
    return (llvm_ir if out[0] is None else out[0],) + tuple(out[1:])


def worker_rss() -> int | None:
    """Resident bytes of the most recently used worker after its last compile (None: none
    running)."""
    live = [w for w in _workers if w.ready]
    return None if not live else live[-1].rss


def workers() -> int:
    """How many worker processes this process has alive (tests)."""
    with _cond:
        return len([w for w in _workers if w.owner == os.getpid()])


def _after_fork_in_child() -> None:
    global _cond
    _cond = threading.Condition(threading.Lock())
    for w in list(_workers):
        w.close()  # the parent's: only our pipe ends are dropped
    _workers.clear()
    _queue.clear()
    _pumping[0] = False
    if _wake[0] is not None:
        for fd in _wake[0]:
            try:
                os.close(fd)
            except OSError:
                pass
        _wake[0] = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _shutdown() -> None:
    with _cond:
        for w in list(_workers):
            _retire(w)
