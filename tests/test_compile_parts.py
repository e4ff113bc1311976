"""A program compiled as several modules at once (``HostProgram.emit_parts``,
``split_module``, the optimizer pool, ``engine.load`` of parts): the same values as NumPy
with every path forced on (kernel groups, the entries apart at O0/FastISel, pointers from
recipe tables), errors raised from the split code, the parts cached as one entry, and
concurrent compiles from several threads."""
from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.backend.cpu import host_pointers, host_program, native_function
from tcomp.runtime import engine, optimizer


@pytest.fixture
def forced(monkeypatch):
    """Split every program (two kernel groups), entries in their own fast module, every
    kernel's pointers from a table; compiled, never taken from the compile cache."""
    monkeypatch.setenv("TCOMP_JIT_WORKERS", "2")
    monkeypatch.setattr(native_function, "SPLIT_MIN_KERNELS", 1)
    monkeypatch.setattr(host_program, "SPLIT_MIN_COST", 0)
    monkeypatch.setattr(host_program, "HOST_FAST_MIN", 0)
    monkeypatch.setattr(host_pointers, "DIRECT_PTRS", 0)
    with tcomp.config.change_flags(cache=False):
        yield


def _program(c: float):
    """Several kernels: a matmul, a reduction, a gather, ten sibling outputs of one fused
    kernel (> 8 pointers) reading a strided view and a constant, and an output copy."""
    x, y, w = T.matrix("x"), T.matrix("y"), T.matrix("w")
    idx = T.ivector("idx")
    k = T.constant((np.arange(12, dtype="float32").reshape(3, 4) * c).astype("float32"))
    v = y[:, ::2]  # (3, 4) strided view of a (3, 8) input
    siblings = [x * c + v, x - v * 2, T.exp(-x * x) * v, T.maximum(x, v) + k, (x + k) * (v - c),
                T.tanh(x) - k, x * x * c, v * k + 1, abs(x - k), T.minimum(v, k) * x]
    h = T.tanh(T.dot(x, w) + c)
    outs = siblings + [h, h.sum(axis=1), x[idx], x]
    return [x, y, w, idx], outs


def _reference(c, xv, yv, wv, iv):
    x, v = xv.astype("float64"), yv.astype("float64")[:, ::2]
    k = np.arange(12, dtype="float64").reshape(3, 4) * c
    siblings = [x * c + v, x - v * 2, np.exp(-x * x) * v, np.maximum(x, v) + k, (x + k) * (v - c),
                np.tanh(x) - k, x * x * c, v * k + 1, np.abs(x - k), np.minimum(v, k) * x]
    h = np.tanh(x @ wv.astype("float64") + c)
    return siblings + [h, h.sum(axis=1), x[iv], x]


def _data(seed):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1, 1, (3, 4)).astype("float32"), rng.uniform(-1, 1, (3, 8)).astype("float32"),
            rng.uniform(-1, 1, (4, 5)).astype("float32"), np.array([2, 0, 1, 2], dtype="int32"))


def _check(f, c, seed=0):
    args = _data(seed)
    got = f(*args)
    want = _reference(c, *args)
    assert len(got) == len(want)
    for k, (a, r) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, r, rtol=2e-5, atol=2e-6, err_msg=f"output {k}")


def test_split_program_gives_numpys_values(forced):
    c = 0.625
    ins, outs = _program(c)
    f = tcomp.function(ins, outs)
    parts = f.compiled.native.library._ir
    assert len(parts) >= 3  # two kernel groups and the entries
    _check(f, c)
    _check(f, c, seed=1)
    # the one-module text (AOT's, llvm_ir_unoptimized) is still a whole valid module
    import llvmlite.binding as llvm

    text = f.compiled.llvm_ir_unoptimized
    llvm.parse_assembly(text).verify()
    assert "_fill_ptrs" in text  # the kernels' pointers came from recipe tables
    assert "define" in f.compiled.dump("llvm")


def test_kernels_handed_on_as_they_are_emitted(forced, monkeypatch):
    """A module per kernel (``Splitter.flush`` after each), the entries apart: NumPy's
    values, and a run that raises a kernel's bounds error."""
    monkeypatch.setattr(host_program, "FLUSH_MIN_INSTRUCTIONS", 1)
    c = 0.75
    ins, outs = _program(c)
    f = tcomp.function(ins, outs)
    assert len(f.compiled.native.library._ir) >= 5
    _check(f, c, seed=7)
    xv, yv, wv, _ = _data(7)
    with pytest.raises(IndexError):
        f(xv, yv, wv, np.array([0, 3], dtype="int32"))


def test_flushed_definition_shared_by_a_later_module():
    """A worker flushed with the first kernel is called by a kernel emitted after the
    flush (structurally equal kernels share their parallel worker): the later module
    declares it, the flushed one keeps it (hidden), and the linked library computes what
    the functions say."""
    import ctypes

    from llvmlite import ir

    from tcomp.backend.cpu.split_module import Splitter

    i64 = ir.IntType(64)
    m = ir.Module(name="flush_test")

    def fn(name, body, linkage="internal", attrs=()):
        f = ir.Function(m, ir.FunctionType(i64, [i64]), name=name)
        f.linkage = linkage
        for a in attrs:
            f.attributes.add(a)
        b = ir.IRBuilder(f.append_basic_block("entry"))
        b.ret(body(b, f.args[0]))
        return f

    worker = fn("kw_1", lambda b, x: b.add(b.mul(x, x), ir.Constant(i64, 3)), attrs=("noinline",))
    k1 = fn("k1", lambda b, x: b.mul(b.call(worker, [x]), ir.Constant(i64, 2)))
    sp = Splitter(m)
    assert sp.flush(10 ** 6) is None  # too little code: nothing handed on yet
    first = sp.flush(1)
    assert first is not None and 'define hidden i64 @"kw_1"' in first
    assert sp.flush(1) is None  # nothing new
    helper = fn("sq", lambda b, x: b.mul(x, x), attrs=("alwaysinline",))
    k2 = fn("k2", lambda b, x: b.sub(b.call(worker, [x]), b.call(helper, [x])))
    rest = sp.kernel_parts(1, hold_one=False)
    assert len(rest) == 1 and 'declare i64 @"kw_1"(i64)' in rest[0] and 'define internal i64 @"sq"' in rest[0]
    fn("run", lambda b, x: b.add(b.call(k1, [x]), b.call(k2, [x])), linkage="external")
    host = sp.host_part()
    assert '"kw_1"' not in host and 'declare i64 @"k1"(i64)' in host
    parts = [engine.Part(t, 3, False, 3) for t in (first, rest[0])] + [engine.Part(host, 0, False, 0)]
    lib = engine.load(lambda: parts, exports=["run"])
    run = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(lib.address("run"))
    for x in (0, 5, -7, 1000):
        w = x * x + 3
        assert run(x) == 2 * w + (w - x * x)


def test_remembered_text_is_the_functions():
    """``split_module.remember``: the header is printed afresh (a linkage change after the
    body was kept shows), and a function given more code since is printed whole."""
    from llvmlite import ir

    from tcomp.backend.cpu import split_module

    i64 = ir.IntType(64)
    m = ir.Module(name="memo_test")
    f = ir.Function(m, ir.FunctionType(i64, [i64]), name="k")
    f.linkage = "internal"
    b = ir.IRBuilder(f.append_basic_block("entry"))
    b.ret(b.add(f.args[0], ir.Constant(i64, 1)))
    split_module.remember(f, str(f).split("\n", 1)[1])
    f.linkage = "hidden"
    assert split_module._text(f) == str(f) and "hidden" in str(f)
    g = ir.Function(m, ir.FunctionType(i64, [i64]), name="g")
    b = ir.IRBuilder(g.append_basic_block("entry"))
    x = b.mul(g.args[0], g.args[0])
    split_module.remember(g, "stale\n")
    b.ret(x)  # one instruction more than when remembered
    assert split_module._text(g) == str(g)


def test_split_program_raises_the_errors_of_one_module(forced):
    c = 0.875
    ins, outs = _program(c)
    f = tcomp.function(ins, outs)
    xv, yv, wv, iv = _data(2)
    with pytest.raises(ValueError):  # a shape check of plan (x and y[:, ::2] differ)
        f(xv, np.zeros((3, 6), "float32"), wv, iv)
    with pytest.raises(IndexError):  # a bounds check of a kernel called through its table
        f(xv, yv, wv, np.array([0, 3], dtype="int32"))
    _check(f, c, seed=3)  # and it still runs


def test_split_matches_one_module(monkeypatch):
    """Two kernel groups (the entries in the lighter one, at O3) against the same program as
    one module; by default a program of this little kernel code is one module (its entries
    with the kernels when they are few: HOST_FAST_MIN)."""
    monkeypatch.setenv("TCOMP_JIT_WORKERS", "2")
    monkeypatch.setattr(host_program, "HOST_FAST_MIN", 1 << 30)
    with tcomp.config.change_flags(cache=False):
        c = 1.125
        ins, outs = _program(c)
        whole = tcomp.function(ins, outs)
        assert len(whole.compiled.native.library._ir) == 1  # less code than SPLIT_MIN_COST
        monkeypatch.setattr(host_program, "SPLIT_MIN_COST", 0)
        ins, outs = _program(c + 2 ** -10)
        split = tcomp.function(ins, outs)
        assert len(split.compiled.native.library._ir) == 2
    args = _data(4)
    for a, b in zip(split(*args), whole(*args)):
        assert a.shape == b.shape and a.dtype == b.dtype
    _check(split, c + 2 ** -10, seed=4)
    _check(whole, c, seed=4)


def test_split_program_is_one_cache_entry(monkeypatch, tmp_path):
    monkeypatch.setenv("TCOMP_JIT_WORKERS", "2")
    monkeypatch.setattr(host_program, "HOST_FAST_MIN", 0)
    monkeypatch.setattr(host_program, "SPLIT_MIN_COST", 0)
    with tcomp.config.change_flags(cache=True, cache_dir=str(tmp_path)):
        c = 1.375
        ins, outs = _program(c)
        f = tcomp.function(ins, outs)
        n = len(f.compiled.native.library._ir)
        assert n >= 2 and not f.compiled.native.library.from_cache
        del f
        gc.collect()
        hits = engine.cache_stats["hits"]
        ins, outs = _program(c)
        g = tcomp.function(ins, outs)
        lib = g.compiled.native.library
        assert lib.from_cache and engine.cache_stats["hits"] == hits + 1 and len(lib._ir) == n
        _check(g, c, seed=5)
        assert "define" in lib.llvm_ir  # the parts' optimized IR, linked into one module
    from tcomp.runtime import cache

    cache._overrides.clear()


def test_concurrent_compiles_share_the_pool(forced):
    """Four threads compile different split programs at once through a pool of two."""
    results, errors = {}, []

    def work(k):
        try:
            c = 1.5 + k / 8
            ins, outs = _program(c)
            f = tcomp.function(ins, outs)
            _check(f, c, seed=k)
            results[k] = True
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert sorted(results) == [0, 1, 2, 3]
    assert optimizer.workers() <= 2


def test_split_program_in_process(forced, monkeypatch):
    """``TCOMP_JIT_OPTIMIZER=inprocess``: the parts are compiled here, with their pipelines."""
    monkeypatch.setattr(optimizer, "_disabled", True)
    c = 2.25
    ins, outs = _program(c)
    _check(tcomp.function(ins, outs), c, seed=6)


FORK_SCRIPT = """\
import os, sys
import numpy as np
import tcomp, tcomp.tensor as T
from tcomp.backend.cpu import kernels_gemm as KG
from tcomp.runtime import engine
cfg = KG.Config("float32")
name = KG._COMPONENTS["gemm"][0](cfg)
with KG._runtime_lock:  # as a parent thread building the packed product's library does
    KG._runtime_locks.setdefault(name, __import__("threading").Lock()).acquire()
    with engine._prefetch_lock:
        engine._prefetching.add(name)
        pid = os.fork()
        if pid == 0:  # the child: the locks of threads it does not have are renewed
            x, y = T.matrix("x", shape=(70, 300)), T.matrix("y", shape=(300, 90))
            f = tcomp.function([x, y], T.dot(x, y))
            a = np.arange(70 * 300, dtype="float32").reshape(70, 300) / 7e3
            b = np.arange(300 * 90, dtype="float32").reshape(300, 90) / 9e3
            err = np.abs(f(a, b) - a.astype("float64") @ b).max()
            os._exit(0 if err < 1e-3 else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_forked_child_builds_what_a_parent_thread_was_building(tmp_path):
    """A child forked while a thread of its parent held a GEMM library's build lock (and
    the library was on its way) builds the library itself: no deadlock on a lock whose
    holder it does not have, and NumPy's product."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, TCOMP_CACHE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", FORK_SCRIPT], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
