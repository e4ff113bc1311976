"""Optimizer workers forked by the first one (``optimizer._spawn``'s siblings, used by
``prestart(n)``): they compile like a started worker, a killed one (or one whose parent
worker was killed) is noticed and replaced, and the pool never waits on a dead one."""
from __future__ import annotations

import ctypes
import os
import signal

import pytest

from tcomp.runtime import engine, optimizer


def _text(name: str, k: int) -> str:
    return f'define i64 @"{name}"(i64 %a) {{\nentry:\n  %b = mul i64 %a, {k}\n  ret i64 %b\n}}\n'


def _compile(name: str, k: int) -> int:
    """Compile one module through the pool and call it: k * 7 (checked by the caller)."""
    lib = engine.load(_text(name, k), exports=[name])
    return ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(lib.address(name))(7)


@pytest.fixture
def fresh_pool(monkeypatch):
    """No workers of this process alive, a bound of two; the pool is emptied again after."""
    if optimizer._disabled:
        pytest.skip("the optimizer processes are disabled here")
    monkeypatch.setenv("TCOMP_JIT_WORKERS", "2")
    engine.target_machine()

    def empty():
        with optimizer._cond:
            for w in list(optimizer._workers):
                optimizer._retire(w)
    empty()
    yield
    empty()


def _forked():
    return [w for w in optimizer._workers if isinstance(w.proc, optimizer._Forked)]


def test_prestart_forks_the_second_worker(fresh_pool):
    started = optimizer.started
    optimizer.prestart(2)
    assert optimizer.workers() == 2 and optimizer.started == started + 2
    assert len(_forked()) == 1
    # two modules at once: both workers answer (the forked one with its pid)
    jobs = [optimizer.submit(_text(f"sib_{k}", k + 3), 0, False, 0) for k in range(2)]
    for job in jobs:
        assert optimizer.result(job) is not None
    sib = _forked()[0]
    assert sib.ready and sib.proc.pid and sib.proc.pid != os.getpid() and sib.proc.poll() is None
    assert [_compile(f"sib_call_{k}", k + 5) for k in range(3)] == [7 * (k + 5) for k in range(3)]


def test_killed_sibling_is_replaced(fresh_pool):
    optimizer.prestart(2)
    assert _compile("sib_before", 11) == 77
    jobs = [optimizer.submit(_text(f"sib_w{k}", 2), 0, False, 0) for k in range(2)]
    for job in jobs:
        optimizer.result(job)
    sib = _forked()[0]
    assert sib.ready
    os.kill(sib.proc.pid, signal.SIGKILL)
    sib.proc.wait(timeout=10)  # noticed gone (reaped by its parent worker)
    assert sib.proc.poll() is not None
    assert [_compile(f"sib_after_{k}", k + 2) for k in range(4)] == [7 * (k + 2) for k in range(4)]
    assert sib not in optimizer._workers


def test_sibling_outlives_its_parent_worker(fresh_pool):
    """The first worker killed: its forked sibling goes on compiling, and is seen gone
    once killed too (a zombie whose parent is gone counts as gone)."""
    optimizer.prestart(2)
    jobs = [optimizer.submit(_text(f"orphan_w{k}", 2), 0, False, 0) for k in range(2)]
    for job in jobs:
        optimizer.result(job)
    first = next(w for w in optimizer._workers if not isinstance(w.proc, optimizer._Forked))
    sib = _forked()[0]
    first.proc.kill()
    first.proc.wait()
    job = optimizer.submit(_text("orphan_solo", 9), 0, False, 0)
    assert optimizer.result(job) is not None
    assert sib.proc.poll() is None
    sib.proc.kill()
    sib.proc.wait(timeout=10)
    assert _compile("orphan_after", 6) == 42
