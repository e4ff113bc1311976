"""Theano's modes (FAST_RUN, FAST_COMPILE, DebugMode, Mode objects) and tcomp.config:
validated options, warn flags, TCOMP_FLAGS / THEANO_FLAGS, and help(tcomp.function)."""
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp import config, function
from tcomp.mode import DebugCompiled, DebugMode, DebugModeError, Mode, get_mode
from tcomp.passes import PASSES
from tcomp.passes.manager import register_pass

X = np.linspace(-2, 2, 12).reshape(4, 3).astype("float32")


def _model():
    x = T.matrix("x")
    W = tcomp.shared(np.linspace(-1, 1, 6).reshape(3, 2).astype("float32"), "W")
    h = T.tanh(T.dot(x, W) + 0.5)
    h.name = "h"
    return x, W, h


def _numpy_model(x, W):
    return np.tanh(x @ W + 0.5)


@pytest.mark.parametrize("mode", ["FAST_RUN", "FAST_COMPILE", "DebugMode", "DEBUG_MODE", "Mode", "default",
                                  "fast_compile", Mode(linker="py"), Mode(optimizer="None"),
                                  Mode(linker="cvm", optimizer="merge"), Mode(optimizer=["canonicalize", "cse"]),
                                  DebugMode(optimizer="fast_compile"), Mode().excluding("fuse_elementwise")])
def test_every_mode_computes_the_same(mode):
    x, W, h = _model()
    f = function([x], [h, T.grad(h.sum(), W)], mode=mode)
    out, gW = f(X)
    np.testing.assert_allclose(out, _numpy_model(X, W.get_value()), rtol=1e-5, atol=1e-6)
    want_gW = X.T @ (1 - _numpy_model(X, W.get_value()) ** 2)
    np.testing.assert_allclose(gW, want_gW, rtol=1e-4, atol=1e-5)


def test_modes_choose_pipeline_and_backend():
    x, W, h = _model()
    assert function([x], h, mode=Mode(linker="py")).backend == "reference"
    assert function([x], h, mode="FAST_RUN", backend="reference").backend == "reference"
    assert [r.name for r in function([x], h, mode="FAST_COMPILE").pass_report.records] == ["canonicalize", "dce"]
    assert function([x], h, mode=Mode(optimizer="None")).pass_report.records == []
    fused = function([x], h, mode="FAST_RUN").optimized
    unfused = function([x], h, mode=Mode().excluding("fuse_elementwise")).optimized
    assert any(fused.op(n) == "fused" for n in fused.nodes())
    assert not any(unfused.op(n) == "fused" for n in unfused.nodes())
    assert isinstance(function([x], h, mode="DebugMode").compiled, DebugCompiled)
    assert tcomp.compile.mode.get_mode("FAST_COMPILE").pipeline == "fast_compile"
    assert isinstance(tcomp.compile.DebugMode(), Mode) and tcomp.compile.DebugMode is DebugMode


def test_mode_errors():
    with pytest.raises(ValueError, match="unknown mode 'FAST'.*FAST_RUN"):
        get_mode("FAST")
    with pytest.raises(ValueError, match="unknown linker"):
        Mode(linker="cuda")
    with pytest.raises(ValueError, match="unknown optimizer"):
        Mode(optimizer="o9")
    with pytest.raises(ValueError, match="unknown pass name"):
        Mode(optimizer=["no_such_pass"])
    with pytest.raises(ValueError, match="unknown pass name"):
        Mode().excluding("fusion_typo")


def test_config_mode_and_optimizer_are_used(monkeypatch):
    x, W, h = _model()
    monkeypatch.setattr(config, "mode", "FAST_COMPILE")
    assert [r.name for r in function([x], h).pass_report.records] == ["canonicalize", "dce"]
    monkeypatch.setattr(config, "mode", "Mode")
    monkeypatch.setattr(config, "optimizer", "None")
    assert function([x], h).pass_report.records == []
    monkeypatch.setattr(config, "mode", "DebugMode")
    assert isinstance(function([x], h).compiled, DebugCompiled)


# -- DebugMode ----------------------------------------------------------------------------------

def test_debugmode_accepts_a_training_step_with_random_and_stabilized_math():
    x, W, h = _model()
    srng = tcomp.RandomStreams(seed=1)
    noisy = h * srng.binomial(h.shape, p=0.8, dtype="float32")
    loss = T.log(1 + T.exp(noisy)).mean() + T.nnet.softmax(h).max() - T.log(T.nnet.sigmoid(-100 * x)).sum()
    step = function([x], loss, updates=[(W, W - 0.1 * T.grad(loss, W))], mode="DebugMode")
    for _ in range(3):
        assert np.isfinite(step(X))


@pytest.fixture
def bad_pass():
    """A deliberately wrong pass: every tanh becomes a sigmoid (same id, same type)."""
    def swap_tanh(g):
        for n in g.nodes():
            if g.op(n) == "tanh":
                g.nx.nodes[n]["op"] = "sigmoid"
        return g
    register_pass("test_bad_tanh", swap_tanh)
    yield "test_bad_tanh"
    del PASSES["test_bad_tanh"]


def test_debugmode_names_the_node_a_pass_broke(bad_pass):
    x, W, h = _model()
    out = (h * 2).sum()
    f = function([x], out, mode=DebugMode(optimizer=["canonicalize", bad_pass, "cse", "dce"]))
    with pytest.raises(DebugModeError) as err:
        f(X)
    msg = str(err.value)
    assert "tanh(" in msg and "variable 'h'" in msg and "test_theano_modes_config.py" in msg
    assert f"first wrong after pass {bad_pass!r} (pass 2 of 4)" in msg
    plain = function([x], out, mode=Mode(optimizer=["canonicalize", bad_pass]))  # no check: wrong silently
    assert not np.isclose(plain(X), 2 * _numpy_model(X, W.get_value()).sum())


def test_debugmode_outputs_only(bad_pass):
    x, W, h = _model()
    f = function([x], h.sum(), mode=DebugMode(optimizer=[bad_pass], check_intermediates=False))
    with pytest.raises(DebugModeError, match="changed output 0"):
        f(X)


def test_debugmode_blames_the_backend_and_catches_writes_into_arguments():
    x, W, h = _model()
    f = function([x], [h, h.sum()], mode="DebugMode")
    inner = f.compiled.inner

    def off_by_one(arrays):
        results = list(inner(arrays))
        results[1] = results[1] + 1
        return results
    f.compiled.inner = off_by_one
    with pytest.raises(DebugModeError, match=r"output 1 computed by the 'cpu' backend differs(.|\n)*sum\("):
        f(X)

    def scribbles(arrays):
        results = inner(arrays)
        arrays[0][0, 0] = 42
        return results
    f.compiled.inner = scribbles
    with pytest.raises(DebugModeError, match="wrote into argument 'x'"):
        f(X.copy())


def test_debugmode_tolerances():
    from tcomp.mode import mismatch

    m = DebugMode()
    assert mismatch(np.float32([1.0, 2.0]), np.float32([1.00001, 2.0]), m) is None
    assert "differ" in mismatch(np.float32([1.0]), np.float32([1.01]), m)
    assert mismatch(np.float64([1.0]), np.float64([1.0 + 1e-9]), m) is None
    assert "differ" in mismatch(np.float64([1.0]), np.float64([1.0 + 1e-6]), m)
    assert mismatch(np.float32([5.0]), np.float32([np.inf]), m) is None  # stabilized overflow
    assert "differ" in mismatch(np.float32([np.inf]), np.float32([5.0]), m)
    assert "element(s) differ" in mismatch(np.int32([1, 2]), np.int32([1, 3]), m)
    assert "shape" in mismatch(np.zeros(2), np.zeros(3), m)
    assert mismatch(np.float32([1.0]), np.float32([1.01]), DebugMode(rtol=0.1)) is None


# -- config -------------------------------------------------------------------------------------

def test_config_validates_names_and_values(monkeypatch):
    with pytest.raises(AttributeError, match="no option 'floatx'.*floatX"):
        config.floatx = "float64"
    for name, value, choice in [("floatX", "float16", "float64"), ("mode", "FAST_RUNN", "FAST_RUN"),
                                ("optimizer", "fast", "fast_run"), ("backend", "gpu", "cpu"),
                                ("compute_test_value", "loud", "raise")]:
        with pytest.raises(ValueError, match=choice):
            setattr(config, name, value)
    for gpu in ("cuda", "gpu0"):  # Theano's spellings of CUDA device 0 (tests/test_nvptx_runtime.py uses it)
        config.device = gpu
        assert config.device == "cuda"
    with pytest.raises(ValueError, match="other GPUs and OpenCL devices are not supported"):
        config.device = "cuda1"
    config.device = "cpu"
    monkeypatch.setattr(config, "floatX", "64")  # Theano's shorthand
    assert config.floatX == "float64" and T.matrix().dtype == "float64"


def test_warn_flags():
    assert config.warn.sum_sum_bug is True
    with config.change_flags(warn__sum_sum_bug=False, floatX="float64"):
        assert config.warn.sum_sum_bug is False and config.floatX == "float64"
    assert config.warn.sum_sum_bug is True and config.floatX == "float32"
    config.warn.ignore_bug_before = "all"
    config.warn.ignore_bug_before = "0.9"
    with pytest.raises(ValueError, match="ignore_bug_before"):
        config.warn.ignore_bug_before = "banana"
    with pytest.raises(AttributeError, match="no flag 'sum_bug'"):
        config.warn.sum_bug = False
    with pytest.raises(ValueError, match="boolean"):
        config.warn.round = "maybe"
    with pytest.raises(AttributeError, match="namespace"):
        config.warn = None


def _run_with_env(code, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("TCOMP_FLAGS", "THEANO_FLAGS")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=120)


def test_flags_from_the_environment():
    code = ("import tcomp, tcomp.tensor as T; c = tcomp.config; "
            "print(c.floatX, c.mode, c.warn.round, T.matrix().dtype)")
    res = _run_with_env(code, TCOMP_FLAGS="floatX=float64,mode=FAST_COMPILE,warn.round=False")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["float64", "FAST_COMPILE", "False", "float64"]
    bad = _run_with_env(code, TCOMP_FLAGS="floatX=float64,modee=FAST_RUN")
    assert bad.returncode != 0 and "TCOMP_FLAGS: tcomp.config has no option 'modee'" in bad.stderr
    theano = _run_with_env(code, THEANO_FLAGS="floatX=float64,device=opencl0:0,lib.cnmem=0.8")
    assert theano.returncode == 0, theano.stderr
    assert theano.stdout.split()[0] == "float64"
    assert "ignoring 'device=opencl0:0'" in theano.stderr and "ignoring 'lib.cnmem=0.8'" in theano.stderr
    both = _run_with_env(code, TCOMP_FLAGS="mode=FAST_RUN", THEANO_FLAGS="floatX=float64")
    assert both.stdout.split()[:2] == ["float32", "FAST_RUN"]  # THEANO_FLAGS only when TCOMP_FLAGS is unset


# -- help(tcomp.function) -----------------------------------------------------------------------

def test_help_documents_every_argument():
    doc = inspect.getdoc(tcomp.function)
    documented = {line.strip() for line in doc.splitlines() if line.startswith(" " * 0) and line.strip()}
    for name in inspect.signature(tcomp.function).parameters:
        assert name in documented, f"help(tcomp.function) does not document {name!r}"
    for name in ("In", "Out", "DebugMode"):
        assert name in doc
    assert "value" in inspect.getdoc(tcomp.In) and "borrow" in inspect.getdoc(tcomp.Out)
