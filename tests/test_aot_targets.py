"""Ahead-of-time targets (portable x86-64 levels, a cross object for AArch64) and the
``tcomp aot`` / ``tcomp inspect LIB`` commands."""
from __future__ import annotations

import platform
import shutil
import subprocess

import numpy as np
import pytest

import tcomp
import tcomp.aot as aot
import tcomp.tensor as T
from tcomp.aot.build import elf_header, read_manifest

CC = shutil.which("cc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc): ahead-of-time export links with it")
X86 = platform.machine().lower() in ("x86_64", "amd64")


def _fn():
    x = T.matrix("x")
    w = tcomp.shared(np.linspace(-1, 1, 12).astype("float32").reshape(4, 3), "w")
    return tcomp.function([x], T.tanh(T.dot(x, w)).sum(axis=1) + T.exp(x).max(), name="f"), w


@needs_cc
@pytest.mark.skipif(not X86, reason="x86-64 targets link only on an x86-64 machine")
@pytest.mark.parametrize("target", ["x86-64-v3", "x86-64"])
def test_portable_x86_targets(tmp_path, monkeypatch, target):
    monkeypatch.setattr(tcomp.config, "native_program", True)
    f, w = _fn()
    lib_path = str(tmp_path / f"lib{target.replace('-', '_')}.so")
    aot.export(f, lib_path, target=target)
    info = read_manifest(lib_path)
    assert info["target"]["cpu"] == target and info["target"]["triple"].startswith("x86_64")
    x = np.random.default_rng(3).standard_normal((5, 4)).astype("float32")
    got = aot.load(lib_path)(x)
    want = np.tanh(x.astype("float64") @ w.get_value()).sum(axis=1) + np.exp(x.astype("float64")).max()
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(got, f(x), rtol=1e-6, atol=1e-6)


def test_aarch64_cross_object(tmp_path, monkeypatch):
    monkeypatch.setattr(tcomp.config, "native_program", True)
    f, _ = _fn()
    paths = aot.export(f, str(tmp_path / "libarm.so"), target="aarch64-linux-gnu")
    assert sorted(paths) == ["header", "object", "source"]
    data = open(paths["object"], "rb").read()
    h = elf_header(data)
    assert h == {"class": 64, "little_endian": True, "type": 1, "machine": 183}  # ET_REL, EM_AARCH64
    info = read_manifest(paths["object"])
    assert info["target"]["triple"].startswith("aarch64") and info["functions"][0]["name"] == "arm"
    assert "int arm(const float *x, int64_t x_dim0, int64_t x_dim1, float *out0, int64_t out0_count);" in \
        open(paths["header"]).read()
    assert '#include "libarm.h"' in open(paths["source"]).read()
    if CC is not None:  # the generated C is warning-free (compiled for this machine: it is portable C)
        r = subprocess.run([CC, "-c", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
                            "-o", str(tmp_path / "entries.o"), paths["source"]], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_unknown_target_and_state(tmp_path):
    f, _ = _fn()
    with pytest.raises(ValueError, match="x86-64-v3"):
        aot.export(f, str(tmp_path / "libx.so"), target="x86-65")
    with pytest.raises(ValueError, match="state must be 'embedded' or 'external'"):
        aot.export(f, str(tmp_path / "libx.so"), state="shared")


def test_functions_that_are_not_one_program_are_refused(tmp_path):
    """A scan with until (results trimmed after run) and a shape computed by a kernel (two
    programs) cannot be one C entry: a clear error, not silently untrimmed outputs."""
    x = T.vector("x")
    vals, _ = tcomp.scan(lambda a: (a * 2, tcomp.scan_module.until(a > 10)), outputs_info=x[0], n_steps=10)
    with pytest.raises(TypeError, match="until"):
        aot.export(tcomp.function([x], vals), str(tmp_path / "libu.so"))
    n = T.ivector("n")
    with pytest.raises(TypeError, match="chain of native programs"):
        aot.export(tcomp.function([n], T.arange(T.max(n))), str(tmp_path / "libs.so"))


MODULE = """
import numpy as np
import tcomp
import tcomp.tensor as T

def build():
    x = T.vector("x")
    return tcomp.function([x], (x * 2 + 1).sum())
"""


@needs_cc
def test_cli_aot_and_inspect(tmp_path, capsys, monkeypatch):
    from tcomp.tools.cli import main

    monkeypatch.setattr(tcomp.config, "native_program", True)
    (tmp_path / "model.py").write_text(MODULE)
    out = tmp_path / "libmodel.so"
    assert main(["aot", f"{tmp_path / 'model.py'}:build", "-o", str(out)]) == 0
    assert (tmp_path / "libmodel.h").exists()
    capsys.readouterr()
    assert aot.load(str(out))(np.arange(3, dtype="float32")) == 9.0
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "libmodel.so: tcomp" in text and '"library": "model"' in text

    (tmp_path / "broken.py").write_text("import numpy\nraise RuntimeError('boom in the model')\n")
    assert main(["aot", f"{tmp_path / 'broken.py'}:build", "-o", str(tmp_path / "libb.so")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "boom in the model" in err
    assert main(["inspect", str(tmp_path / "model.py")]) == 2
    assert "not a tcomp library" in capsys.readouterr().err


@needs_cc
def test_value_dependent_shapes_and_named_dims(tmp_path, monkeypatch):
    """A reshape by an int input (the shape query reads its value) and a named dim shared by
    two inputs (one size parameter; plan checks the arrays agree)."""
    monkeypatch.setattr(tcomp.config, "native_program", True)
    x, n = T.matrix("x"), T.iscalar("n")
    r = T.reshape(x, (n, -1))
    a = T.tensor("a", dtype="float32", shape=("batch", 3))
    b = T.tensor("b", dtype="float32", shape=("batch",))
    f = tcomp.function([x, n], [T.exp(r * 0.5).sum(axis=1), T.tanh(r)], name="f")
    g = tcomp.function([a, b], (a * b[:, None]).sum(axis=1), name="g")
    paths = aot.export({"f": f, "g": g}, str(tmp_path / "libdyn.so"))
    text = open(paths["header"]).read()
    assert "int f_shapes(int64_t x_dim0, int64_t x_dim1, const int32_t *n, int64_t *out_dims, " \
           "size_t *workspace_bytes);" in text
    assert "int g(const float *a, int64_t batch, const float *b, float *out0, int64_t out0_count);" in text
    lib = aot.load(paths["library"])
    xv = np.random.default_rng(1).standard_normal((3, 4)).astype("float32")
    for got, want in zip(lib["f"](xv, np.int32(2)), f(xv, np.int32(2))):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    av, bv = np.ones((5, 3), "float32"), np.arange(5, dtype="float32")
    np.testing.assert_array_equal(lib["g"](av, bv), bv * 3)
    for fn, jit, args in [("f", f, (xv, np.int32(5))), ("g", g, (av, bv[:4]))]:
        with pytest.raises(ValueError) as want:
            jit(*args)
        with pytest.raises(ValueError) as got:
            lib[fn](*args)
        assert str(got.value) == str(want.value)


@needs_cc
def test_concurrent_calls_with_parallel_loops(tmp_path, monkeypatch):
    """Two Python threads call one library (ctypes releases the GIL) whose loop is large
    enough to run on its thread pool; every result is right."""
    import ctypes
    import threading

    monkeypatch.setattr(tcomp.config, "native_program", True)
    v = T.vector("v")
    f = tcomp.function([v], T.exp(v) * 2 - v, name="big")
    lib_path = str(tmp_path / "libbig.so")
    aot.export(f, lib_path)
    fn = aot.load(lib_path)
    assert ctypes.CDLL(lib_path).big_set_num_threads(2) == 0
    xs = [np.random.default_rng(k).standard_normal(1 << 19).astype("float32") for k in range(2)]
    wants = [f(x) for x in xs]
    bad = []

    def work(k):
        for _ in range(20):
            if not np.array_equal(fn(xs[k]), wants[k]):
                bad.append(k)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []
    np.testing.assert_allclose(wants[0], np.exp(xs[0].astype("float64")) * 2 - xs[0], rtol=2e-6, atol=1e-6)


@needs_cc
def test_index_errors_found_while_running(tmp_path, monkeypatch):
    monkeypatch.setattr(tcomp.config, "native_program", True)
    x, i = T.vector("x"), T.ivector("i")
    m = T.bvector("m")
    f = tcomp.function([x, i, m], [x[i] * 2, T.eq(m, 1)], name="take")
    lib = aot.load(aot.export(f, str(tmp_path / "libtake.so"))["library"])
    xv, iv, mv = np.arange(5, dtype="float32"), np.array([4, 0, 2], "int32"), np.array([1, 0, 1], "int8")
    for got, want in zip(lib(xv, iv, mv), f(xv, iv, mv)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    with pytest.raises(IndexError) as want:
        f(xv, np.array([5], "int32"), mv)
    with pytest.raises(IndexError) as got:
        lib(xv, np.array([5], "int32"), mv)
    assert str(got.value) == str(want.value) and "index out of bounds" in str(got.value)


@needs_cc
def test_static_shapes_give_macros(tmp_path, monkeypatch):
    """All dims static: the header states the workspace bytes and output counts as macros,
    and they equal what the shape query computes."""
    import ctypes
    import re

    monkeypatch.setattr(tcomp.config, "native_program", True)
    x = T.tensor("x", dtype="float32", shape=(8, 16))
    f = tcomp.function([x], [T.nnet.softmax(T.exp(x) * 2).sum(axis=0), x.T * 3], name="st")
    paths = aot.export(f, str(tmp_path / "libst.so"))
    text = open(paths["header"]).read()
    macros = dict(re.findall(r"#define (ST_\w+) (\d+)", text))
    assert macros["ST_OUT0_COUNT"] == "16" and macros["ST_OUT1_COUNT"] == "128" and macros["ST_OUT_DIMS"] == "3"
    assert "int st_shapes(int64_t *out_dims, size_t *workspace_bytes);" in text
    lib = ctypes.CDLL(paths["library"])
    dims, ws = (ctypes.c_int64 * 3)(), ctypes.c_size_t(0)
    assert lib.st_shapes(dims, ctypes.byref(ws)) == 0
    assert list(dims) == [16, 16, 8] and ws.value == int(macros["ST_WORKSPACE_BYTES"])
    xv = np.random.default_rng(0).standard_normal((8, 16)).astype("float32")
    for got, want in zip(aot.load(paths["library"])(xv), f(xv)):
        np.testing.assert_array_equal(got, want)


def test_no_c_compiler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    f, _ = _fn()
    with pytest.raises(RuntimeError, match="no C compiler found"):
        aot.export(f, str(tmp_path / "libx.so"))
