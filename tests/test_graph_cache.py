"""The graph-level compile cache (tcomp/runtime/graph_cache.py, ir/digest.py): a traced graph
compiled before goes straight to its kernel program.  A hit must give what a cold compile
gives; anything that could change the program must miss; bad entries are rebuilt; shared
variables, updates, random streams and givens bind to *this* function's objects.  Every
test uses its own cache directory; results are checked against NumPy."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.ir.digest import Undigestable, graph_digest
from tcomp.runtime import cache, graph_cache


@pytest.fixture
def cache_dir(tmp_path):
    with tcomp.config.change_flags(cache=True, cache_dir=str(tmp_path / "cache"), cache_max_bytes=0):
        yield tmp_path / "cache"
    cache._overrides.clear()


def _graph_entries(folder) -> list:
    objs = folder / "objects"
    return sorted(p for p in objs.iterdir() if p.name.startswith(cache.GRAPH_PREFIX)) if objs.exists() else []


def _layer(seed=0, lr=0.1, name="W"):
    """A tiny training step: tanh layer, squared error, SGD update of W and b (shared)."""
    rng = np.random.default_rng(seed)
    W = tcomp.shared(rng.standard_normal((4, 3)).astype("float32"), name)
    b = tcomp.shared(np.zeros(3, "float32"), "b")
    x, y = T.matrix("x", shape=(5, 4)), T.matrix("y", shape=(5, 3))
    h = T.tanh(T.dot(x, W) + b)
    cost = ((h - y) ** 2).mean()
    gW, gb = T.grad(cost, [W, b])
    f = tcomp.function([x, y], cost, updates=[(W, W - lr * gW), (b, b - lr * gb)])
    return f, W, b


def _numpy_step(W, b, xv, yv, lr):
    W, b, xv, yv = (a.astype("float64") for a in (W, b, xv, yv))
    h = np.tanh(xv @ W + b)
    cost = ((h - yv) ** 2).mean()
    dh = 2 * (h - yv) / h.size * (1 - h ** 2)
    return cost, W - lr * xv.T @ dh, b - lr * dh.sum(0)


def _data(seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((5, 4)).astype("float32"), rng.standard_normal((5, 3)).astype("float32")


def test_hit_skips_the_passes_and_matches_numpy(cache_dir):
    xv, yv = _data()
    f1, W1, b1 = _layer()
    assert f1.graph_cache_hit is False and len(_graph_entries(cache_dir)) == 1
    f2, W2, b2 = _layer()
    assert f2.graph_cache_hit is True and f2._optimized is None  # no pass ran
    assert f2.compile_seconds["passes"] == 0.0 and f2.compile_seconds["graph_cache"] > 0
    for f, W, b in ((f1, W1, b1), (f2, W2, b2)):
        w0, b0 = W.get_value(), b.get_value()
        cost = f(xv, yv)
        want, w_want, b_want = _numpy_step(w0, b0, xv, yv, 0.1)
        np.testing.assert_allclose(cost, want, rtol=2e-5)
        np.testing.assert_allclose(W.get_value(), w_want, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(b.get_value(), b_want, rtol=2e-5, atol=2e-6)
    # the hit's optimized graph and pass report are made on first use, as the cold compile's
    assert str(f2.optimized) == str(f1.optimized)
    assert [r.name for r in f2.pass_report.records] == [r.name for r in f1.pass_report.records]
    assert f2.dump("kernels") == f1.dump("kernels")


def test_hit_binds_this_functions_shared_variables(cache_dir):
    """Two models of the same structure with different weights: the hit reads and updates its
    own shared variables, never the first model's, and reads their values at call time."""
    xv, yv = _data()
    f1, W1, b1 = _layer(seed=0)
    f2, W2, b2 = _layer(seed=5)
    assert f2.graph_cache_hit is True
    w1_before = W1.get_value()
    W2.set_value(np.full((4, 3), 0.25, "float32"))  # after the compile: must be what the call reads
    w0, b0 = W2.get_value(), b2.get_value()
    cost = f2(xv, yv)
    want, w_want, b_want = _numpy_step(w0, b0, xv, yv, 0.1)
    np.testing.assert_allclose(cost, want, rtol=2e-5)
    np.testing.assert_allclose(W2.get_value(), w_want, rtol=2e-5, atol=2e-6)
    np.testing.assert_array_equal(W1.get_value(), w1_before)  # the first model is untouched
    f1(xv, yv)
    np.testing.assert_array_equal(W2.get_value(), w_want.astype("float32"))  # and the reverse holds


def test_changes_miss(cache_dir):
    x = T.vector("x")
    xv = np.linspace(-1, 1, 7).astype("float32")

    def build(expr_of, **kw):
        f = tcomp.function([x], expr_of(x), **kw)
        return f, f(xv)

    f, _ = build(lambda v: T.tanh(v) * 2)
    assert f.graph_cache_hit is False
    f, _ = build(lambda v: T.tanh(v) * 2)
    assert f.graph_cache_hit is True
    for variant, expect in ((lambda v: T.tanh(v) * 3, np.tanh(xv.astype("float64")) * 3),  # a constant
                            (lambda v: T.sinh(v) * 2, np.sinh(xv.astype("float64")) * 2)):  # an op
        f, got = build(variant)
        assert f.graph_cache_hit is False
        np.testing.assert_allclose(got, expect, rtol=2e-5)
    for kw in ({"exclude": ["fuse_elementwise"]}, {"mode": "FAST_COMPILE"}):  # the pass pipeline
        f, got = build(lambda v: T.tanh(v) * 2, **kw)
        assert f.graph_cache_hit is False, kw
        np.testing.assert_allclose(got, np.tanh(xv.astype("float64")) * 2, rtol=2e-5)
    y = T.vector("y")  # the same expression over an input of another name
    f = tcomp.function([y], T.tanh(y) * 2)
    assert f.graph_cache_hit is False
    f = tcomp.function([x], T.tanh(x) * 2, pass_options={"verify_each": True})  # instrumented: not cached
    assert f.graph_cache_hit is None


def test_donations_are_part_of_the_key(cache_dir):
    """One traced graph, compiled once with the second output as an update of ``w`` (written
    in place) and once as a plain output: two programs, each right."""
    w = tcomp.shared(np.arange(4, dtype="float32"), "w")
    f = tcomp.function([], [w * 2], updates=[(w, w * 2)])
    g = tcomp.function([], [w * 2, w * 2])
    assert f.graph_cache_hit is False and g.graph_cache_hit is False
    assert str(f.traced) == str(g.traced) and f.donations != g.donations
    np.testing.assert_array_equal(g()[1], np.arange(4) * 2)
    np.testing.assert_array_equal(f()[0], np.arange(4) * 2)
    np.testing.assert_array_equal(w.get_value(), np.arange(4) * 2)


def test_user_pass_is_not_cached(cache_dir, monkeypatch):
    from tcomp.passes import manager

    def my_pass(g):
        return g
    monkeypatch.setitem(manager.PASSES, "my_pass", manager.Pass("my_pass", my_pass))
    x = T.vector("x")
    f = tcomp.function([x], x + 1, mode=tcomp.Mode(optimizer=("canonicalize", "my_pass", "dce")))
    assert f.graph_cache_hit is None
    # a tcomp pass replaced in the registry by other code is not tcomp's own either
    monkeypatch.setitem(manager.PASSES, "cse", manager.Pass("cse", my_pass))
    assert graph_cache.key_for(f.traced, backend="cpu", pipeline="default") is None
    np.testing.assert_array_equal(f(np.ones(3, "float32")), 2)


def test_corrupted_entry_is_rebuilt(cache_dir):
    x = T.vector("x")
    xv = np.linspace(0.5, 2, 9).astype("float32")
    tcomp.function([x], T.log(x) + x)
    (entry,) = _graph_entries(cache_dir)
    data = bytearray(entry.read_bytes())
    data[-3] ^= 0xFF  # a flipped payload byte: the checksum fails, the entry is deleted
    entry.write_bytes(bytes(data))
    f = tcomp.function([x], T.log(x) + x)
    assert f.graph_cache_hit is False
    np.testing.assert_allclose(f(xv), np.log(xv.astype("float64")) + xv, rtol=2e-5)
    (again,) = _graph_entries(cache_dir)  # stored afresh, whole
    assert cache.lookup(again.name[:-4]) is not None
    entry.write_bytes(bytes(data[:len(data) // 2]))  # truncated
    f = tcomp.function([x], T.log(x) + x)
    assert f.graph_cache_hit is False
    np.testing.assert_allclose(f(xv), np.log(xv.astype("float64")) + xv, rtol=2e-5)


def test_entry_of_another_layout_is_rejected(cache_dir):
    """A checksummed entry whose payload is not (kernel program, graph): deleted, rebuilt."""
    x = T.vector("x")
    xv = np.linspace(0.5, 2, 9).astype("float32")
    f = tcomp.function([x], T.sqrt(x) * 3)
    key = graph_cache.key_for(f.traced, backend="cpu", pipeline=f._pass_args["mode"], donations=f.donations)
    assert key is not None and cache.lookup(key) is not None
    cache.store(key, {"program": b"not a pickle"}, {"kind": "graph", "format": graph_cache.FORMAT, "hash": "0"})
    before = graph_cache.stats["rejected"]
    f = tcomp.function([x], T.sqrt(x) * 3)
    assert f.graph_cache_hit is False and graph_cache.stats["rejected"] == before + 1
    np.testing.assert_allclose(f(xv), np.sqrt(xv.astype("float64")) * 3, rtol=2e-5)
    assert tcomp.function([x], T.sqrt(x) * 3).graph_cache_hit is True  # the rebuilt entry serves


def test_hit_whose_object_was_evicted_compiles_the_cached_program(cache_dir):
    """The graph entry survives, the object entries are gone (the LRU bound took them): the
    unpickled kernel program is emitted and compiled afresh, and it computes the same."""
    from tcomp.backend.cpu import native_function

    x, y = T.matrix("x", shape=(3, 4)), T.vector("y", shape=(4,))
    xv = np.linspace(-1, 1, 12).astype("float32").reshape(3, 4)
    yv = np.linspace(0.5, 1.5, 4).astype("float32")
    f1 = tcomp.function([x, y], [T.exp(x * y).sum(axis=1), T.maximum(x, 0) - y])
    for p in (cache_dir / "objects").iterdir():
        if not p.name.startswith(cache.GRAPH_PREFIX):
            p.unlink()
    native_function._libraries.clear()  # (this process's loaded copy, shared by program hash)
    f2 = tcomp.function([x, y], [T.exp(x * y).sum(axis=1), T.maximum(x, 0) - y])
    assert f2.graph_cache_hit is True and not f2.compiled.native.library.from_cache
    x64, y64 = xv.astype("float64"), yv.astype("float64")
    for f in (f1, f2):
        a, b = f(xv, yv)
        np.testing.assert_allclose(a, np.exp(x64 * y64).sum(axis=1), rtol=2e-5)
        np.testing.assert_allclose(b, np.maximum(x64, 0) - y64, rtol=2e-5)


def test_random_streams_and_givens_from_a_hit(cache_dir):
    from tcomp.random import RandomStreams

    def draws():
        srng = RandomStreams(11)
        f = tcomp.function([], srng.uniform((6,)))
        return f, [f() for _ in range(3)]
    f1, a = draws()
    f2, b = draws()
    assert f2.graph_cache_hit is True
    for u, v in zip(a, b):  # same seed, same sequence; each call draws new numbers
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], a[1]) and all(((0 <= u) & (u < 1)).all() for u in a)

    data = np.arange(12, dtype="float32").reshape(6, 2)

    def batch_sum():
        d = tcomp.shared(data.copy(), "d")
        i, xb = T.lscalar("i"), T.matrix("xb", shape=(2, 2))
        return tcomp.function([i], (xb * 2).sum(), givens={xb: d[i * 2:(i + 1) * 2]})
    g1, g2 = batch_sum(), batch_sum()
    assert g2.graph_cache_hit is True
    for k in range(3):
        assert float(g2(k)) == float(g1(k)) == float(data[2 * k:2 * k + 2].sum() * 2)


def test_cache_off_and_info(cache_dir, capsys):
    x = T.vector("x")
    with tcomp.config.change_flags(cache=False):
        f = tcomp.function([x], x * 5)
    assert f.graph_cache_hit is None and _graph_entries(cache_dir) == []
    tcomp.function([x], x * 5)
    assert cache.info()["graph_entries"] == 1
    from tcomp.tools.cli import main

    assert main(["cache", "info"]) == 0
    assert "graphs:    1" in capsys.readouterr().out
    main(["cache", "clear"])
    assert _graph_entries(cache_dir) == []


def test_digest_is_exact():
    from tcomp.ir import Graph, TensorType

    def build(c, name="x", loc=None):
        g = Graph()
        x = g.add_input(TensorType("float64", (3,)), name)
        k = g.add_constant(np.float64(c))
        n = g.add_node("mul", [x, k])
        if loc:
            g.nx.nodes[n]["loc"] = loc
        g.outputs = [n]
        return g
    base = graph_digest(build(2.0))
    assert graph_digest(build(2.0, loc=("a.py", 3))) == base  # locations are not covered
    assert graph_digest(build(-2.0)) != base and graph_digest(build(2.0, "y")) != base
    assert graph_digest(build(0.0)) != graph_digest(build(-0.0))  # floats by their bits
    g = build(2.0)
    g.set_name(g.outputs[0], "out")
    assert graph_digest(g) != base  # an intermediate name counts
    g = build(2.0)
    g.nx.nodes[g.outputs[0]]["attrs"]["oops"] = object()
    with pytest.raises(Undigestable):
        graph_digest(g)


SCRIPT = textwrap.dedent("""\
    import json
    import numpy as np
    import tcomp, tcomp.tensor as T
    from tcomp.runtime import graph_cache
    rng = np.random.default_rng(3)
    W = tcomp.shared(rng.standard_normal((6, 4)).astype("float32"), "W")
    x = T.matrix("x", shape=(3, 6))
    h = T.nnet.relu(T.dot(x, W))
    cost = h.sum()
    f = tcomp.function([x], [cost, h], updates=[(W, W - 0.01 * T.grad(cost, W))])
    xv = rng.standard_normal((3, 6)).astype("float32")
    w0 = W.get_value().astype("float64")
    c, hv = f(xv)
    print(json.dumps({"hit": f.graph_cache_hit, "stats": graph_cache.stats, "c": float(c), "h": hv.tolist(),
                      "W": W.get_value().tolist(), "want_h": np.maximum(xv.astype("float64") @ w0, 0).tolist()}))
    """)


def test_warm_process_is_identical_to_cold(tmp_path):
    env = dict(os.environ, TCOMP_CACHE_DIR=str(tmp_path))
    env.pop("TCOMP_CACHE", None)
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    assert cold["hit"] is False and cold["stats"]["stores"] == 1
    assert warm["hit"] is True and warm["stats"]["hits"] == 1
    np.testing.assert_allclose(cold["h"], cold["want_h"], rtol=2e-5, atol=2e-6)
    assert warm["c"] == cold["c"] and warm["h"] == cold["h"] and warm["W"] == cold["W"]  # bit-identical
