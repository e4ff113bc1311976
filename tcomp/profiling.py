"""Theano's function profiling: ``tcomp.function(..., profile=True)`` (or
``tcomp.config.profile = True``) gives the function a :class:`ProfileStats` in ``fn.profile``
that counts its calls and their wall time; ``fn.profile.summary()`` prints them with the
compile phases (trace, passes, backend) and the native program's size and memory.

Per-op times, which Theano's summary lists, do not exist here: the native program runs fused
kernels with no per-op boundary to time (``tcomp bench`` and ``perf`` are the tools for that).
A profiled function's class is :class:`ProfiledFunction`, so unprofiled calls pay nothing.
Also importable as ``tcomp.compile.profiling``."""
from __future__ import annotations

import sys
import threading
import time

from .function import Function


class ProfileStats:
    """Call count and wall time of one compiled function (thread-safe)."""

    def __init__(self, fn=None, name=None):
        self.name = name or (fn.name if fn is not None else "fn")
        self.fn = fn
        self.call_count = 0
        self.call_time = 0.0
        self.max_call_time = 0.0
        self._lock = threading.Lock()

    @property
    def compile_time(self) -> float:
        return sum(self.fn.compile_seconds.values()) if self.fn is not None else 0.0

    def record(self, seconds: float) -> None:
        with self._lock:
            self.call_count += 1
            self.call_time += seconds
            self.max_call_time = max(self.max_call_time, seconds)

    def summary(self, file=sys.stdout, n_ops_to_print=None, n_apply_to_print=None):
        """Print the figures (Theano's signature; the n_* arguments change nothing)."""
        print(self.text(), file=file)

    def text(self) -> str:
        lines = [f"Function profiling: {self.name!r}"]
        if self.fn is not None:
            cs = self.fn.compile_seconds
            lines.append(f"  Compile time: {self.compile_time:.4f} s (trace {cs['trace']:.4f}, passes "
                         f"{cs['passes']:.4f}, backend {cs['backend']:.4f})")
        mean = self.call_time / self.call_count if self.call_count else 0.0
        lines.append(f"  Time in {self.call_count} calls to Function.__call__: {self.call_time:.6f} s "
                     f"(mean {mean * 1e6:.1f} us, max {self.max_call_time * 1e6:.1f} us)")
        memory = getattr(getattr(self.fn, "compiled", None), "last_call_memory", None)
        if isinstance(memory, dict):
            lines.append(f"  Native program: {memory.get('kernels')} kernels, {memory.get('buffers')} buffers; "
                         f"last call: {memory.get('intermediate_bytes_with_reuse')} intermediate bytes, "
                         f"{memory.get('output_bytes')} output bytes")
        return "\n".join(lines)


class ProfiledFunction(Function):
    """A :class:`~tcomp.Function` that records each call in ``self.profile``.  Its copies and
    unpickled versions are profiled afresh (their own ProfileStats)."""

    def __init__(self, *args, **kwargs):  # a copy or an unpickled function (tcomp/rebuild.py)
        super().__init__(*args, **kwargs)
        self.profile = ProfileStats(self)

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return Function.__call__(self, *args, **kwargs)
        finally:
            self.profile.record(time.perf_counter() - t0)


def attach(fn: Function, profile) -> Function:
    """Turn profiling on for ``fn`` (``profile``: True, or a ProfileStats to fill)."""
    stats = profile if isinstance(profile, ProfileStats) else ProfileStats(fn)
    stats.fn = fn
    fn.__class__ = ProfiledFunction
    fn.profile = stats
    return fn


__all__ = ["ProfileStats", "ProfiledFunction"]
