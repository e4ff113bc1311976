"""LLVM optimization and code generation in a helper process.

Why a process: llvmlite's new-pass-manager binding leaks about 100 KiB per module it
optimizes (measured with llvmlite 0.50 / LLVM 22: ~32 KiB per ``getModulePassManager()``,
the rest per ``run``, whether or not the PassBuilder, TargetMachine or context are reused;
``LLVMPY_CreatePassBuilder`` also never frees its ``PassInstrumentationCallbacks``).  A
long-running program that compiles functions as it goes would grow without bound even
though tcomp frees every function's native code.  So the parse / O3 / ``emit_object`` step
runs in ``_optimizer_worker.py`` (plain Python + llvmlite, no tcomp import); this process
only links the object into its JIT (``engine.py``).  The worker is restarted when it has
grown by :data:`RECYCLE_BYTES`, which bounds the leak; a module that crashes LLVM kills
the worker, not the user's program.

Set ``TCOMP_JIT_OPTIMIZER=inprocess`` to optimize in this process instead (the worker is
also skipped, with one warning, when it cannot be started).  Callers serialize requests
(the engine lock); the worker is private to the process that started it (a forked child
starts its own).
"""
from __future__ import annotations

import atexit
import os
import pickle
import struct
import subprocess
import sys
import threading
import warnings

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_optimizer_worker.py")
#: the worker is replaced once its resident memory has grown this much since it started
RECYCLE_BYTES = 64 << 20

_lock = threading.Lock()
_worker = None
_disabled = os.environ.get("TCOMP_JIT_OPTIMIZER", "").strip().lower() == "inprocess"
#: how many worker processes this process has started (tests)
started = 0


class OptimizerDied(RuntimeError):
    """The optimizer process exited while compiling a module (LLVM aborted on it)."""


class _Worker:
    def __init__(self, cpu: str, features: str):
        global started
        self.owner = os.getpid()
        self.proc = subprocess.Popen([sys.executable, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     close_fds=True)
        started += 1
        try:
            self._send((cpu, features))
            ready = self._receive()
        except OSError:
            ready = None
        if ready is None or ready[0] != "ready":
            self.close()
            raise OSError("the LLVM optimizer process did not start")
        self.base_rss = self.rss = ready[1]

    def _send(self, obj) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.write(struct.pack("<Q", len(data)) + data)
        self.proc.stdin.flush()

    def _receive(self):
        out = self.proc.stdout
        head = out.read(8)
        if len(head) < 8:
            return None
        (size,) = struct.unpack("<Q", head)
        data = out.read(size)
        return pickle.loads(data) if len(data) == size else None

    def request(self, llvm_ir: str, level: int, loop_unrolling: bool):
        try:
            self._send((llvm_ir, level, loop_unrolling))
            reply = self._receive()
        except (BrokenPipeError, OSError):
            reply = None
        if reply is None:
            code = self.proc.poll()
            self.close()
            raise OptimizerDied(f"the LLVM optimizer process exited (status {code}) while compiling this module")
        self.rss = reply[-1]
        return reply

    @property
    def worn_out(self) -> bool:
        return self.rss - self.base_rss > RECYCLE_BYTES

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


def compile_module(llvm_ir: str, level: int, loop_unrolling: bool, cpu: str, features: str):
    """``(optimized_ir, object_bytes, declared_symbols, defined_functions)``, or None when
    the worker is disabled or cannot run (the caller then optimizes in process).  Raises
    RuntimeError for a module LLVM rejects, :class:`OptimizerDied` if LLVM aborted."""
    global _worker, _disabled
    if _disabled:
        return None
    with _lock:
        for attempt in (1, 2):  # a worker that died (killed, or LLVM aborted) gets one fresh retry
            if _worker is not None and (_worker.owner != os.getpid() or _worker.worn_out
                                        or _worker.proc.poll() is not None):
                old, _worker = _worker, None
                old.close()
            if _worker is None:
                try:
                    _worker = _Worker(cpu, features)
                except OSError as exc:
                    _disabled = True
                    warnings.warn(f"tcomp: cannot start the LLVM optimizer process ({exc}); optimizing in this "
                                  "process (its memory grows by ~100 KiB per compiled function)", RuntimeWarning,
                                  stacklevel=3)
                    return None
            try:
                reply = _worker.request(llvm_ir, level, loop_unrolling)
                break
            except OptimizerDied:
                _worker = None
                if attempt == 2:
                    raise
    if reply[0] == "ok":
        return reply[1:5]
    _, kind, message, _ = reply
    raise RuntimeError(f"{message}" if kind == "RuntimeError" else f"{kind}: {message}")


def worker_rss() -> int | None:
    """Resident bytes of the optimizer process after its last compile (None: not running)."""
    w = _worker
    return None if w is None else w.rss


@atexit.register
def _shutdown() -> None:
    global _worker
    with _lock:
        if _worker is not None:
            _worker.close()
            _worker = None
