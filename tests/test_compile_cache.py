"""The persistent compile cache (tcomp/runtime/cache.py): hits and misses, across processes,
concurrent writers, bad entries rebuilt and never loaded, LRU eviction, TCOMP_CACHE=0 and
``tcomp cache info|clear``.  Every test uses its own cache directory (tmp_path)."""
from __future__ import annotations

import ctypes
import json
import os
import pathlib
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tcomp
from tcomp.runtime import cache, engine

MAGIC = b"TCOMPOB1"  # the entry layout, as the module docstring specifies it

#: one tiny module per test (its own symbol): a + 3*b on int64
ADD_IR = textwrap.dedent("""\
    define i64 @{name}(i64 %a, i64 %b) {{
      %t = mul i64 %b, 3
      %r = add i64 %a, %t
      ret i64 %r
    }}
    """)
FN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)


@pytest.fixture
def cache_dir(tmp_path):
    """The cache on, in a fresh directory, for this test only."""
    with tcomp.config.change_flags(cache=True, cache_dir=str(tmp_path / "cache"), cache_max_bytes=0):
        yield tmp_path / "cache"
    cache._overrides.clear()  # back to the environment (conftest's session directory)


def _load(name: str):
    text = ADD_IR.format(name=name)
    lib = engine.load(text, cache_key=engine.ir_key(text))
    return lib, FN(lib.address(name))(10, 4)


def _entries(folder) -> list:
    objs = folder / "objects"
    return sorted(p for p in objs.iterdir() if p.name.endswith(".tco")) if objs.exists() else []


def _header(path):
    data = path.read_bytes()
    assert data[:8] == MAGIC
    (n,) = struct.unpack("<I", data[8:12])
    return json.loads(data[12:12 + n]), 12 + n, data


# -- in one process ------------------------------------------------------------------------------

def test_miss_then_hit_links_the_stored_object(cache_dir):
    lib, r = _load("tc_hit")
    assert r == 10 + 3 * 4 and not lib.from_cache
    (entry,) = _entries(cache_dir)
    head, start, data = _header(entry)
    assert head["key"] == entry.name[:-4] and head["cpu"] == cache.identity()["cpu"]
    assert sum(s for _, s in head["sections"]) == len(data) - start
    lib2, r2 = _load("tc_hit")
    assert lib2.from_cache and r2 == r
    assert "define" in lib2.llvm_ir and "@tc_hit" in lib2.llvm_ir  # the optimized IR is kept too


def test_key_covers_content_settings_and_cpu(monkeypatch, cache_dir):
    base = cache.make_key("x", opt_level=3)
    assert cache.make_key("y", opt_level=3) != base
    assert cache.make_key("x", opt_level=2) != base
    other = dict(cache.identity(), cpu="some-other-cpu")
    monkeypatch.setattr(cache, "_identity", [other])
    assert cache.make_key("x", opt_level=3) != base


@pytest.mark.parametrize("damage", ["truncate", "payload", "header_cpu", "magic", "empty"])
def test_bad_entry_is_rebuilt_not_loaded(cache_dir, damage):
    name = f"tc_bad_{damage}"
    _load(name)
    (entry,) = _entries(cache_dir)
    head, start, data = _header(entry)
    if damage == "truncate":
        entry.write_bytes(data[:len(data) - 100])
    elif damage == "payload":  # one flipped bit in the object: the checksum fails
        pos = start + 50
        entry.write_bytes(data[:pos] + bytes([data[pos] ^ 1]) + data[pos + 1:])
    elif damage == "header_cpu":  # an entry another CPU wrote under this name
        head["cpu"] = "not-" + head["cpu"]
        h = json.dumps(head).encode()
        entry.write_bytes(MAGIC + struct.pack("<I", len(h)) + h + data[start:])
    elif damage == "magic":
        entry.write_bytes(b"XXXXXXXX" + data[8:])
    else:
        entry.write_bytes(b"")
    lib, r = _load(name)
    assert not lib.from_cache and r == 22  # compiled again, not loaded
    (again,) = _entries(cache_dir)
    assert again.read_bytes() == data  # the rebuilt entry replaced the bad one
    assert _load(name)[0].from_cache


def test_lookup_of_a_bad_entry_deletes_it(cache_dir):
    _load("tc_del")
    (entry,) = _entries(cache_dir)
    entry.write_bytes(entry.read_bytes()[:-1])
    assert cache.lookup(entry.name[:-4]) is None
    assert not entry.exists()


def test_lru_eviction_keeps_recent_and_just_stored(cache_dir):
    blob = b"\x01" * 1000
    keys = [cache.make_key(f"entry{k}") for k in range(4)]
    for k, key in enumerate(keys):
        assert cache.store(key, {"obj": blob})
        os.utime(_entries_path(key), ns=(10 ** 18 + k * 10 ** 9,) * 2)  # stored in order 0, 1, 2, 3
    assert cache.lookup(keys[0]) is not None  # a hit: entry 0 becomes the most recently used
    size = _entries_path(keys[0]).stat().st_size
    with tcomp.config.change_flags(cache_max_bytes=3 * size):
        cache.store(cache.make_key("entry4"), {"obj": blob})
    left = {p.name[:-4] for p in _entries(cache_dir)}
    # over the bound by two entries: the two least recently used (1 and 2) went
    assert left == {keys[0], keys[3], cache.make_key("entry4")}


def test_bound_holds_over_many_stores(cache_dir):
    blob = b"\x02" * 4000
    with tcomp.config.change_flags(cache_max_bytes=20000):
        for k in range(40):
            cache.store(cache.make_key(f"many{k}"), {"obj": blob})
    sizes = [p.stat().st_size for p in _entries(cache_dir)]
    assert sum(sizes) <= 20000 and len(sizes) >= 3
    assert _entries_path(cache.make_key("many39")).exists()  # the newest survives


def _entries_path(key):
    return pathlib.Path(cache.objects_dir()) / (key + ".tco")


def test_stale_temporary_files_are_removed_by_eviction(cache_dir):
    cache.store(cache.make_key("a"), {"obj": b"a"})
    objs = cache_dir / "objects"
    stale, fresh = objs / "dead.tco.tmp.1.aa", objs / "live.tco.tmp.2.bb"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (1, 1))
    assert cache.info()["temporary_files"] == 2
    cache.evict(1 << 30)
    assert not stale.exists() and fresh.exists()


def test_cache_off_stores_nothing(cache_dir):
    with tcomp.config.change_flags(cache=False):
        lib, r = _load("tc_off")
    assert r == 22 and not lib.from_cache and _entries(cache_dir) == []


def test_config_validation():
    with pytest.raises(ValueError, match="cache_max_bytes"):
        tcomp.config.cache_max_bytes = -1
    with pytest.raises(ValueError, match="cache_max_bytes"):
        tcomp.config.cache_max_bytes = "lots"
    with pytest.raises(ValueError, match="config.cache "):
        tcomp.config.cache = "maybe"
    with pytest.raises(TypeError, match="cache_dir"):
        tcomp.config.cache_dir = 3
    with tcomp.config.change_flags(cache_max_bytes="64M"):
        assert tcomp.config.cache_max_bytes == 64 << 20


def test_default_directory_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("TCOMP_CACHE_DIR", raising=False)
    monkeypatch.setattr(cache, "_overrides", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.directory() == str(tmp_path / "tcomp")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.directory() == os.path.join(os.path.expanduser("~"), ".cache", "tcomp")
    monkeypatch.setenv("TCOMP_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert cache.directory() == str(tmp_path / "elsewhere")


def test_cli_info_and_clear(cache_dir, capsys):
    from tcomp.tools.cli import main

    _load("tc_cli")
    assert main(["cache", "info", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["directory"] == str(cache_dir) and d["entries"] == 1 and d["bytes"] > 0 and d["enabled"]
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert str(cache_dir) in out and "entries:   1" in out
    assert main(["cache", "clear"]) == 0
    assert "removed 1 entry" in capsys.readouterr().out
    assert _entries(cache_dir) == []
    assert main(["cache", "nonsense"]) == 2


# -- across processes ------------------------------------------------------------------------------

SCRIPT = textwrap.dedent("""\
    import json, sys
    import numpy as np
    import tcomp, tcomp.tensor as T
    from tcomp.runtime import engine
    x, y = T.fmatrix("x"), T.fmatrix("y")
    f = tcomp.function([x, y], T.tanh(T.dot(x, y)) + 2 * x)
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((5, 5)).astype("float32"), rng.standard_normal((5, 5)).astype("float32")
    native = getattr(f.compiled, "native", None)
    emitted = None if native is None else native._text is not None
    out = f(a, b)
    print(json.dumps({"stats": engine.cache_stats, "emitted": emitted, "out": out.tolist(),
                      "want": (np.tanh(a.astype("float64") @ b) + 2 * a).tolist(),
                      "has_ir": "define" in f.compiled.dump("llvm")}))
    """)


def _spawn(folder, **env):
    e = dict(os.environ, TCOMP_CACHE_DIR=str(folder), **env)
    if "TCOMP_CACHE" not in env:
        e.pop("TCOMP_CACHE", None)
    return subprocess.Popen([sys.executable, "-c", SCRIPT], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _result(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    d = json.loads(out.strip().splitlines()[-1])
    np.testing.assert_allclose(d["out"], d["want"], rtol=2e-5, atol=2e-5)
    assert d["has_ir"]
    return d


def test_second_process_hits(tmp_path):
    cold = _result(_spawn(tmp_path))
    assert cold["stats"]["misses"] >= 1 and cold["stats"]["stores"] >= 1
    warm = _result(_spawn(tmp_path))
    assert warm["stats"]["misses"] == 0 and warm["stats"]["hits"] >= 1
    assert warm["out"] == cold["out"]  # the same object code: bit-identical results
    assert cold["emitted"] and warm["emitted"] is False  # a warm start made no IR at all


def test_concurrent_writers(tmp_path):
    procs = [_spawn(tmp_path) for _ in range(3)]
    results = [_result(p) for p in procs]
    assert all(r["out"] == results[0]["out"] for r in results)
    objs = tmp_path / "objects"
    assert not [p for p in objs.iterdir() if ".tmp." in p.name]  # every temporary was renamed
    for p in objs.iterdir():  # every entry is whole and valid
        assert p.name.endswith(".tco")
        head, start, data = _header(p)
        assert sum(s for _, s in head["sections"]) == len(data) - start
    warm = _result(_spawn(tmp_path))
    assert warm["stats"]["misses"] == 0


def test_env_cache_off(tmp_path):
    d = _result(_spawn(tmp_path, TCOMP_CACHE="0"))
    assert d["stats"] == {"hits": 0, "misses": 0, "stores": 0}
    assert not (tmp_path / "objects").exists()


MLP_SCRIPT = textwrap.dedent("""\
    import json, time
    import tcomp.backend.cpu.native_function  # imports are not compile time
    from tcomp.examples import mlp
    from tcomp.runtime import engine
    t = {}
    real = mlp.tcomp.function
    def timed(*a, **k):
        t0 = time.perf_counter()
        f = real(*a, **k)
        t["s"] = time.perf_counter() - t0
        return f
    mlp.tcomp.function = timed
    mlp.build_classifier_step()
    print(json.dumps({"seconds": t["s"], "stats": engine.cache_stats}))
    """)


@pytest.mark.slow
def test_warm_start_of_the_mlp_step_is_much_faster(tmp_path):
    """The MLP training step (784-512-512-10, batch 128) from graph to callable in a fresh
    process: a warm start links the cached objects (a ratio, not a time)."""
    env = dict(os.environ, TCOMP_CACHE_DIR=str(tmp_path))
    env.pop("TCOMP_CACHE", None)

    def run():
        out = subprocess.run([sys.executable, "-c", MLP_SCRIPT], env=env, capture_output=True, text=True,
                             timeout=600, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    cold, warm = run(), run()
    assert cold["stats"]["misses"] >= 1 and warm["stats"]["misses"] == 0
    assert warm["seconds"] < cold["seconds"] / 4, (cold, warm)


GEMM_SCRIPT = textwrap.dedent("""\
    import json
    import numpy as np
    import tcomp, tcomp.tensor as T
    from tcomp.backend.cpu import kernels_gemm as KG
    from tcomp.runtime import engine
    x, y = T.matrix("x", shape=(64, 512)), T.matrix("y", shape=(512, 520))
    f = tcomp.function([x, y], T.dot(x, y))
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((64, 512)).astype("float32"), rng.standard_normal((512, 520)).astype("float32")
    cfg = KG.Config("float32")
    print(json.dumps({"err": float(np.abs(f(a, b) - a.astype("float64") @ b).max()), "stats": engine.cache_stats,
                      "names": [KG._COMPONENTS[k][0](cfg) for k in KG._COMPONENTS]}))
    """)


def test_gemm_components_are_entries_of_their_own_and_rebuilt_when_corrupt(tmp_path):
    """Each GEMM runtime component a program uses is its own cache entry (a static 64x512 @
    512x520 product: the packed GEMM and the no-packing loop, no gemv); a corrupted one is
    compiled again in the next process, not loaded, and replaced."""
    env = dict(os.environ, TCOMP_CACHE_DIR=str(tmp_path))
    env.pop("TCOMP_CACHE", None)

    def run():
        out = subprocess.run([sys.executable, "-c", GEMM_SCRIPT], env=env, capture_output=True, text=True,
                             timeout=300, check=True).stdout
        d = json.loads(out.strip().splitlines()[-1])
        assert d["err"] < 2e-3
        return d
    first = run()
    by_symbol = {}
    for p in _entries(tmp_path):
        defined = [name for name in _header(p)[0]["meta"].get("defined", []) if name in first["names"]]
        assert len(defined) <= 1, defined  # one component per entry
        by_symbol.update({name: p for name in defined})
    gemm, small, gemv = first["names"][:3]
    assert gemm in by_symbol and small in by_symbol and gemv not in by_symbol
    good = by_symbol[gemm].read_bytes()
    head, start, _ = _header(by_symbol[gemm])
    pos = start + 64  # one flipped bit in the object: the checksum fails
    by_symbol[gemm].write_bytes(good[:pos] + bytes([good[pos] ^ 1]) + good[pos + 1:])
    again = run()
    assert again["stats"]["misses"] == 1 and again["stats"]["stores"] == 1  # the gemm component alone
    assert by_symbol[gemm].read_bytes() == good
