"""Buffer reuse in the native program (the one memory planner, ``passes/memory.py``, run by
``passes/lower_kernels.py``): graphs built to stress liveness (long chains, diamonds, values
read late, views of dying buffers, outputs that are intermediates, repeated outputs) must
give the reference interpreter's results, and reuse must actually happen (fewer distinct
buffers than kernels on a chain).  The graphs are compiled unfused (one kernel per node) so
that there is something to reuse."""
import ctypes
import functools
import importlib
import os
import threading

import numpy as np
import pytest

from tcomp.backend.cpu.native_function import NativeFunction
from tcomp.ir import Graph, TensorType, evaluate
from tcomp.passes.memory import assign_storage

lowering = importlib.import_module("tcomp.passes.lower_kernels")  # the module (the package exports the function)


def compile_graph(g):
    return NativeFunction(g, fuse=False)


def _check(g, inputs, rtol=1e-5, monkeypatch=None):
    """Compare with the reference interpreter (float32 tolerance: long chains of polynomial
    transcendentals drift a few ulps) and, when ``monkeypatch`` is given, bit for bit with
    the same kernels run without buffer reuse (a reuse bug corrupts values, rounding cannot)."""
    fn = compile_graph(g)
    want = evaluate(g, inputs)
    got = fn(inputs)
    assert len(got) == len(want)
    for k, (a, w) in enumerate(zip(got, want)):
        assert a.dtype == w.dtype and a.shape == w.shape, f"output {k}: {a.dtype}{a.shape} vs {w.dtype}{w.shape}"
        np.testing.assert_allclose(a, w, rtol=rtol, atol=1e-6, err_msg=f"output {k}")
    if monkeypatch is not None:
        with monkeypatch.context() as m:
            m.setattr(lowering, "assign_storage", functools.partial(assign_storage, reuse=False))
            base_fn = compile_graph(g)
            base = base_fn(inputs)
        stats = base_fn.last_call_memory
        assert stats["intermediate_bytes_with_reuse"] == stats["intermediate_bytes_without_reuse"]
        for k, (a, b) in enumerate(zip(got, base)):
            np.testing.assert_array_equal(a, b, err_msg=f"output {k}: reuse changed the result")
    return fn, got


def _storage_of(kp, v):
    """(kind, index) of the memory value ``v`` lives in (a view's root's)."""
    st = kp.values[v].storage
    if st.kind == "view":
        st = kp.values[st.base].storage
    return st.kind, st.index


def _buffer_of_node(fn, node):
    kp = fn.program
    (v,) = [x.id for x in kp.values if x.node == node and x.storage.kind != "view"]
    return _storage_of(kp, v)


def _step(g, x):
    """tanh(x) + 0.5 * x: x has two readers, so it is stored by a kernel (never inlined)."""
    half = g.add_constant(np.float32(0.5))
    return g.add_node("add", [g.add_node("tanh", [x]), g.add_node("mul", [x, half])])


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype("float32")


def test_long_chain_reuses_buffers(monkeypatch):
    g = Graph()
    x = g.add_input(TensorType("float32", (64, 33)), name="x")
    v = x
    for _ in range(30):
        v = _step(g, v)
    g.outputs = [v]
    fn, _ = _check(g, [_rand(np.random.default_rng(0), 64, 33)], monkeypatch=monkeypatch)
    stats = fn.last_call_memory
    assert stats["kernels"] >= 30
    assert stats["buffers"] <= 3 < stats["kernels"]
    assert stats["intermediate_bytes_with_reuse"] < stats["intermediate_bytes_without_reuse"] / 10


def test_chain_of_matmuls_with_shrinking_and_growing_sizes(monkeypatch):
    rng = np.random.default_rng(1)
    g = Graph()
    x = g.add_input(TensorType("float32", (16, 40)), name="x")
    dims = [40, 8, 64, 3, 50, 16, 40]
    ws = [g.add_input(TensorType("float32", (a, b)), name=f"w{i}") for i, (a, b) in enumerate(zip(dims, dims[1:]))]
    v = x
    for w in ws:
        v = _step(g, g.add_node("dot", [v, w]))
    g.outputs = [v]
    inputs = [_rand(rng, 16, 40)] + [_rand(rng, a, b) * 0.3 for a, b in zip(dims, dims[1:])]
    fn, _ = _check(g, inputs, rtol=1e-4, monkeypatch=monkeypatch)
    assert fn.last_call_memory["buffers"] < fn.last_call_memory["kernels"]


def test_value_used_late_and_diamonds(monkeypatch):
    rng = np.random.default_rng(2)
    g = Graph()
    x = g.add_input(TensorType("float32", (32, 32)), name="x")
    early = _step(g, x)
    v = early
    for _ in range(8):  # diamonds: two branches of the same value joined again
        a = _step(g, v)
        b = g.add_node("exp", [g.add_node("neg", [g.add_node("mul", [v, v])])])
        b2 = g.add_node("mul", [b, g.add_constant(np.float32(1.0))])
        v = _step(g, g.add_node("add", [a, b2]))
    late = g.add_node("sub", [v, early])  # early's buffer must survive the whole chain
    total = g.add_node("sum", [g.add_node("mul", [late, early])], {"axis": (0, 1), "keepdims": False})
    g.outputs = [late, total]
    _check(g, [_rand(rng, 32, 32)], rtol=1e-3, monkeypatch=monkeypatch)  # late - early cancels


@pytest.mark.parametrize("kind", ["transpose", "reshape", "slice", "broadcast"])
def test_views_of_dying_buffers(kind, monkeypatch):
    """A view is the last reader of its source: the source must live until the view's readers ran."""
    rng = np.random.default_rng(3)
    g = Graph()
    x = g.add_input(TensorType("float32", (24, 24)), name="x")
    w = g.add_input(TensorType("float32", (24, 24)), name="w")
    v = x
    for i in range(6):
        s = _step(g, v)
        if kind == "transpose":
            view = g.add_node("dimshuffle", [s], {"pattern": (1, 0)})
            v = g.add_node("dot", [view, w])  # matmul reads the strided view directly
        elif kind == "reshape":
            r = g.add_node("reshape", [s], {"shape": (48, 12)})
            r = _step(g, r)
            v = g.add_node("reshape", [r], {"shape": (24, 24)})
        elif kind == "slice":
            half = g.add_node("subtensor", [s], {"index": (("s", None, None, 2),)})  # 12 x 24 view
            v = g.add_node("concatenate", [half, g.add_node("neg", [half])], {"axis": 0})
        else:
            row = g.add_node("subtensor", [s], {"index": (("i", i),)})  # a row of s, broadcast over s
            v = g.add_node("add", [g.add_node("dimshuffle", [row], {"pattern": ("x", 0)}), s])
        v = _step(g, g.add_node("mul", [v, g.add_constant(np.float32(0.2))]))
    g.outputs = [v]
    _check(g, [_rand(rng, 24, 24), _rand(rng, 24, 24)], rtol=1e-4, monkeypatch=monkeypatch)


def test_outputs_that_are_intermediates_and_repeated_outputs(monkeypatch):
    rng = np.random.default_rng(4)
    g = Graph()
    x = g.add_input(TensorType("float32", (20, 30)), name="x")
    a = _step(g, x)
    b = _step(g, a)
    c = _step(g, b)
    d = _step(g, c)
    t = g.add_node("dimshuffle", [b], {"pattern": (1, 0)})
    r = g.add_node("reshape", [c], {"shape": (-1,)})
    g.outputs = [b, d, b, t, r, x, d]
    fn, got = _check(g, [_rand(rng, 20, 30)], monkeypatch=monkeypatch)
    keep = [o.copy() for o in got]
    ptrs = [o.__array_interface__["data"][0] for o in got]
    assert len(set(ptrs)) == len(ptrs)  # every output has its own storage
    for o in got:
        assert o.flags.c_contiguous and o.flags.writeable
    again = fn([_rand(rng, 20, 30)])  # a second call must not touch the first call's results
    for o, k in zip(got, keep):
        np.testing.assert_array_equal(o, k)
    assert not any(np.shares_memory(a, b) for a in again for b in got)


def test_outputs_are_fresh_across_calls():
    g = Graph()
    x = g.add_input(TensorType("float32", (8, 8)), name="x")
    v = x
    for _ in range(5):
        v = _step(g, v)
    mid = v
    for _ in range(5):
        v = _step(g, v)
    g.outputs = [mid, v]
    fn = compile_graph(g)
    x1, x2 = np.ones((8, 8), "float32"), np.full((8, 8), -2.0, "float32")
    r1 = fn([x1])
    keep = [o.copy() for o in r1]
    r2 = fn([x2])
    for o, k in zip(r1, keep):
        np.testing.assert_array_equal(o, k)
    for a, w in zip(r2, evaluate(g, [x2])):
        np.testing.assert_allclose(a, w, rtol=1e-5)


def test_mixed_dtypes_share_by_byte_size(monkeypatch):
    rng = np.random.default_rng(5)
    g = Graph()
    x = g.add_input(TensorType("float64", (16, 16)), name="x")
    v = x
    for i in range(6):
        v = _step(g, v)
        f32 = g.add_node("cast", [v], {"dtype": "float32"})
        f32 = _step(g, f32)
        i32 = g.add_node("cast", [g.add_node("mul", [f32, g.add_constant(np.float32(10.0))])], {"dtype": "int32"})
        i32 = g.add_node("add", [i32, i32])
        v = g.add_node("add", [v, g.add_node("cast", [i32], {"dtype": "float64"})])
        v = g.add_node("mul", [v, g.add_constant(np.float64(0.01))])
    g.outputs = [v]
    _check(g, [rng.standard_normal((16, 16))], monkeypatch=monkeypatch)


def test_symbolic_shapes_replan_per_shape():
    g = Graph()
    x = g.add_input(TensorType("float32", ("n", None)), name="x")
    v = x
    for _ in range(6):
        v = _step(g, v)
    s = g.add_node("sum", [v], {"axis": (1,), "keepdims": False})
    g.outputs = [s, v]
    fn = compile_graph(g)
    rng = np.random.default_rng(6)
    for shape in [(3, 5), (40, 7), (1, 1), (0, 4), (17, 0)]:
        xv = _rand(rng, *shape)
        for a, w in zip(fn([xv]), evaluate(g, [xv])):
            np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-6)


def test_no_kernel_writes_a_buffer_it_reads(monkeypatch):
    """The noalias promise: a kernel's buffer is never one its leaves live in (but for the
    one leaf an in-place kernel overwrites, emitted without noalias)."""
    g = Graph()
    x = g.add_input(TensorType("float32", (10, 10)), name="x")
    v = x
    for _ in range(12):
        v = _step(g, g.add_node("dot", [v, g.add_node("dimshuffle", [v], {"pattern": (1, 0)})]))
        v = g.add_node("mul", [v, g.add_constant(np.float32(0.05))])
    g.outputs = [v]
    fn, _ = _check(g, [_rand(np.random.default_rng(7), 10, 10)], rtol=1e-4, monkeypatch=monkeypatch)
    kp = fn.program
    checked = 0
    for k in kp.kernels:
        for w in k.writes:
            for r in k.reads:
                if _storage_of(kp, w)[0] == "buffer" and (w, r) not in k.may_alias:  # in place: no noalias
                    assert _storage_of(kp, w) != _storage_of(kp, r), f"{k.label} writes the buffer it reads"
                    checked += 1
    assert checked > 12


def test_threads_share_no_buffers():
    g = Graph()
    x = g.add_input(TensorType("float32", (64, 64)), name="x")
    v = x
    for _ in range(10):
        v = _step(g, v)
    g.outputs = [v]
    fn = compile_graph(g)
    rng = np.random.default_rng(8)
    xs = [_rand(rng, 64, 64) for _ in range(4)]
    wants = [evaluate(g, [a])[0] for a in xs]
    errors = []

    def work(k):
        for _ in range(20):
            got = fn([xs[k]])[0]
            if not np.allclose(got, wants[k], rtol=1e-5, atol=1e-6):
                errors.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_mlp_step_allocates_less():
    from tcomp.examples.mlp import build_classifier_step

    step, _, _ = build_classifier_step(batch=128, backend="cpu")
    rng = np.random.default_rng(9)
    x = rng.standard_normal((128, 784)).astype("float32")
    y = rng.integers(0, 10, 128).astype("int32")
    step(x, y)
    stats = step.compiled.last_call_memory
    assert step.compiled.bytes_allocated_per_call() == stats  # static shapes: known without inputs
    assert stats["buffers"] < stats["kernels"]
    assert stats["intermediate_bytes_with_reuse"] < stats["intermediate_bytes_without_reuse"]
    # every SGD update (3 weights, 3 biases) is written into its shared variable's storage
    assert stats["donated_updates"] == 6


def test_bytes_allocated_per_call_needs_inputs_for_symbolic_shapes():
    g = Graph()
    x = g.add_input(TensorType("float32", ("n", 4)), name="x")
    g.outputs = [_step(g, _step(g, x))]
    fn = compile_graph(g)
    with pytest.raises(ValueError, match="not all static"):
        fn.bytes_allocated_per_call()
    stats = fn.bytes_allocated_per_call([np.zeros((5, 4), "float32")])
    assert stats["output_bytes"] == 5 * 4 * 4


def test_inplace_elementwise_overwrites_dying_operand(monkeypatch):
    rng = np.random.default_rng(10)
    g = Graph()
    x = g.add_input(TensorType("float32", (40, 40)), name="x")
    w = g.add_input(TensorType("float32", (40, 40)), name="w")
    m = g.add_node("dot", [x, w])  # a kernel's buffer, read only by the next node
    e = g.add_node("add", [g.add_node("tanh", [m]), g.add_node("mul", [m, m])])  # in place over m
    s = g.add_node("dot", [e, w])
    rev = g.add_node("subtensor", [s], {"index": (("s", None, None, -1),)})  # a view of s, rows reversed
    sq = g.add_node("add", [s, rev])  # s also read at other rows through the view: never in place
    g.outputs = [g.add_node("sub", [sq, x]), e]
    fn, _ = _check(g, [_rand(rng, 40, 40), _rand(rng, 40, 40) * 0.2], rtol=1e-4, monkeypatch=monkeypatch)
    assert fn._inplace, "expected an in-place elementwise kernel"
    for k, leaf in fn._inplace.items():
        assert _buffer_of_node(fn, k) == _buffer_of_node(fn, leaf)
    assert m in fn._inplace.values() and s not in fn._inplace.values()
    header = [ln for ln in fn.llvm_ir_unoptimized.splitlines() if ln.startswith("define")
              and ("@\"k" in ln or " @k" in ln)]
    # in-place kernels keep noalias on the result too (kctx.py: each load of the overwritten
    # leaf feeds only the store at its own index; without it the vectorizer's overlap check fails)
    assert header and all("noalias" in ln.split(",")[0] for ln in header)


def test_inplace_never_applies_to_broadcast_reads(monkeypatch):
    """A (1, 30) value broadcast over 20 rows is never overwritten in place; two anonymous
    dims are checked equal by ``plan`` (they never broadcast), so in place is exact there."""
    rng = np.random.default_rng(11)
    g = Graph()
    x = g.add_input(TensorType("float32", (1, 30)), name="x")
    y = g.add_input(TensorType("float32", (20, 30)), name="y")
    z = g.add_input(TensorType("float32", (None, 30)), name="z")
    u = g.add_input(TensorType("float32", (None, 30)), name="u")
    r = _step(g, x)  # (1, 30) kernel, dies where it is broadcast over 20 rows
    big = g.add_node("add", [r, y])
    a = _step(g, z)
    b = g.add_node("add", [a, g.add_node("exp", [u])])
    g.outputs = [_step(g, big), _step(g, b)]
    fn, _ = _check(g, [_rand(rng, 1, 30), _rand(rng, 20, 30), _rand(rng, 20, 30), _rand(rng, 20, 30)],
                   monkeypatch=monkeypatch)
    assert r not in fn._inplace.values()
    assert a in fn._inplace.values()
    with pytest.raises(ValueError, match="never broadcasts"):
        fn([_rand(rng, 1, 30), _rand(rng, 20, 30), _rand(rng, 1, 30), _rand(rng, 20, 30)])


# -- the cache of large output buffers (tcomp.runtime.buffers) -------------------------------------
# An output of >= buffers.LARGE bytes is a view of a leased cached block; the block is reused
# only once no array that views it is alive.  Values are checked against NumPy computed
# independently (2*x + 1 is exact in float32).  The threshold is lowered to 1 MiB here (small
# tests); functions compiled after the fixture read it.

LARGE_N = 1 << 19  # 2 MiB of float32: leased


def _affine_fn(shape=(LARGE_N,)):
    g = Graph()
    x = g.add_input(TensorType("float32", shape), name="x")
    two, one = g.add_constant(np.float32(2.0)), g.add_constant(np.float32(1.0))
    g.outputs = [g.add_node("add", [g.add_node("mul", [x, two]), one])]
    return compile_graph(g)


@pytest.fixture
def buffer_cache(monkeypatch):
    from tcomp.runtime import buffers

    monkeypatch.setattr(buffers, "LARGE", 1 << 20)
    before = buffers.cache_limit()
    buffers.set_cache_limit(64 << 20)
    buffers.clear_cache()
    yield buffers
    buffers.set_cache_limit(before)
    buffers.clear_cache()


def _owner(a):
    """The object at the end of ``a``'s chain of bases (what owns its memory)."""
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a


def test_large_outputs_kept_alive_keep_their_values(buffer_cache):
    fn = _affine_fn()
    rng = np.random.default_rng(21)
    xs = [_rand(rng, LARGE_N) for _ in range(6)]
    kept = []
    for k, x in enumerate(xs):
        out = fn([x])[0]
        assert out.ctypes.data % 64 == 0 and out.flags.c_contiguous and out.flags.writeable
        assert isinstance(_owner(out), ctypes.Array)  # a leased block
        if k % 2:
            kept.append((x, out))
        else:
            kept.append((x, out[100:].reshape(-1, 4)))  # only a view survives: it keeps the block
        del out
        fn([xs[0]])  # a dropped result's block goes back and is reused at once
    for x, out in kept:
        want = (2 * x + 1) if out.ndim == 1 else (2 * x + 1)[100:].reshape(-1, 4)
        np.testing.assert_array_equal(out, want)
    assert not any(np.shares_memory(a, b) for i, (_, a) in enumerate(kept) for _, b in kept[i + 1:])
    assert buffer_cache.cache_stats()["hits"] >= 5


def test_a_dropped_output_block_is_reused(buffer_cache):
    fn = _affine_fn((512, 1024))
    x = np.ones((512, 1024), "float32")
    first = fn([x])[0]
    addr = first.ctypes.data
    del first
    again = fn([x])[0]
    assert again.ctypes.data == addr  # the same pages: nothing to fault in
    np.testing.assert_array_equal(again, np.full((512, 1024), 3.0, "float32"))


def test_idle_blocks_are_bounded(buffer_cache):
    buffer_cache.set_cache_limit(5 << 20)
    fn = _affine_fn()
    x = np.ones(LARGE_N, "float32")
    outs = [fn([x])[0] for _ in range(8)]  # 8 x 2 MiB, all alive
    del outs  # given back at once: only two fit under 5 MiB
    stats = buffer_cache.cache_stats()
    assert stats["idle_bytes"] <= 5 << 20
    assert stats["evicted"] + stats["dropped"] >= 6
    buffer_cache.set_cache_limit(1 << 20)  # smaller than a block: nothing kept
    assert buffer_cache.cache_stats()["idle_bytes"] == 0
    out = fn([x])[0]
    del out
    assert buffer_cache.cache_stats()["idle_bytes"] == 0


def test_cache_off_gives_plain_arrays(buffer_cache):
    buffer_cache.set_cache_limit(0)
    out = _affine_fn()([np.ones(LARGE_N, "float32")])[0]
    assert isinstance(_owner(out), np.ndarray)  # NumPy's own memory, not a leased block
    np.testing.assert_array_equal(out, np.full(LARGE_N, 3.0, "float32"))
    with pytest.raises(ValueError, match=">= 0"):
        buffer_cache.set_cache_limit(-1)
    with pytest.raises(TypeError, match="int"):
        buffer_cache.set_cache_limit(1.5)


def test_lease_dying_inside_the_cache_lock_is_freed(buffer_cache):
    """A garbage collection inside the cache's critical section may drop a lease on the
    thread that holds the lock: the block is freed, nothing deadlocks."""
    a = buffer_cache.aligned_empty((LARGE_N,), "float32")
    cache = buffer_cache._cache
    assert cache._enter()
    try:
        del a  # its __del__ runs here, on the lock's owner
    finally:
        cache._exit()
    assert buffer_cache.cache_stats()["idle_bytes"] == 0


def test_python_threads_share_the_cache_safely(buffer_cache):
    fn = _affine_fn()
    rng = np.random.default_rng(22)
    xs = [_rand(rng, LARGE_N) for _ in range(4)]
    wants = [2 * x + 1 for x in xs]
    errors = []

    def work(k):
        kept = []
        for i in range(12):
            out = fn([xs[k]])[0]
            if i % 3 == 0:
                kept.append(out)  # some live on while others go back to the cache
        for out in kept + [fn([xs[k]])[0]]:
            if not np.array_equal(out, wants[k]):
                errors.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert buffer_cache.cache_stats()["idle_bytes"] <= buffer_cache.cache_limit()


def _lease_in_child(conn, n):
    from tcomp.runtime import buffers

    try:
        a = buffers.aligned_empty((n,), "float32")
        a[:] = 1.5
        conn.send(("ok", float(a.sum())))
    except BaseException as e:  # noqa: BLE001 - sent to the parent
        conn.send(("error", repr(e)))
    finally:
        conn.close()


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="needs os.register_at_fork")
def test_fork_while_another_thread_holds_the_cache_lock(buffer_cache):
    import gc
    import multiprocessing

    cache = buffer_cache._cache
    held, release = threading.Event(), threading.Event()

    def hold():
        with cache._lock:
            held.set()
            release.wait(60)
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe(duplex=False)
    gc.collect()
    gc.disable()  # no lease of an earlier test dies (and waits for the lock) on this thread meanwhile
    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(30)
        p = ctx.Process(target=_lease_in_child, args=(there, LARGE_N))
        p.start()  # forked while ``hold`` owns the lock
    finally:
        release.set()
        t.join()
        gc.enable()
    there.close()
    ok = here.poll(60)
    got = here.recv() if ok else None
    p.join(timeout=30)
    if p.is_alive():
        p.kill()
    assert ok, "the child hung on the buffer cache's lock"
    assert got == ("ok", 1.5 * LARGE_N)
