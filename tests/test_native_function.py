"""The native-program call path (``tcomp.config.native_program``): results against NumPy and
the reference interpreter, the same exceptions as the Python planner's path, odd input
layouts, ``trust_input``, donation and calls from several threads."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.backend.cpu.native_function import NativeFunction
from tcomp.runtime.buffers import is_aligned


@pytest.fixture
def native(monkeypatch):
    monkeypatch.setattr(tcomp.config, "native_program", True)


def _xyz(**kw):
    x, y, z = T.fvector("x"), T.fvector("y"), T.fvector("z")
    return tcomp.function([x, y, z], x + y * z, **kw)


def test_elementwise_and_odd_layouts(native):
    f = _xyz()
    assert isinstance(f.compiled, NativeFunction)
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(7).astype("float32") for _ in range(3))
    np.testing.assert_allclose(f(a, b, c), a + b * c, rtol=1e-6)
    big = np.zeros(14, "float32")[::2]  # strided
    swapped = b.astype(">f4")           # byte-swapped
    raw = np.zeros(7 * 4 + 1, np.uint8)[1:].view("float32")  # misaligned
    raw[:] = c
    out = f(big, swapped, raw)
    np.testing.assert_allclose(out, b * c, rtol=1e-6)
    assert is_aligned(out) and not np.shares_memory(out, raw)


def _error(fn, *args):
    with pytest.raises(Exception) as info:
        fn(*args)
    return type(info.value), str(info.value)


@pytest.mark.parametrize("bad", ["dtype", "rank", "broadcast", "count"])
def test_errors_are_the_reference_backends_and_name_the_variable(bad):
    a = np.ones(3, "float32")
    args = {"dtype": (a, a, np.ones(3)), "rank": (a, a, np.ones((3, 1), "float32")),
            "broadcast": (a, a, np.ones(4, "float32")), "count": (a, a)}[bad]
    got = []
    for backend in ("reference", "cpu"):
        x, y, z = T.fvector("x"), T.fvector("y"), T.fvector("z")
        got.append(_error(tcomp.function([x, y, z], x + y * z, backend=backend), *args))
    (ref_type, _), (cpu_type, msg) = got
    assert issubclass(cpu_type, TypeError if ref_type is TypeError else ValueError), got
    want = {"count": ["z"], "broadcast": ["z", "(3,)", "(4,)"]}.get(bad, ["'z'"])
    assert all(w in msg for w in want), msg


def test_value_dependent_shapes_and_index_errors(native):
    x, n, i = T.matrix("x"), T.iscalar("n"), T.ivector("i")
    r = T.reshape(x, (n, -1))
    f = tcomp.function([x, n, i], [r.sum(axis=1), r[i], T.arange(n) * 2])
    xv = np.arange(12, dtype="float32").reshape(3, 4)
    for k in (1, 2, 3, 6):
        s, g, ar = f(xv, np.int32(k), np.array([0, -1], "int32"))
        want = xv.reshape(k, -1)
        np.testing.assert_array_equal(s, want.sum(axis=1))
        np.testing.assert_array_equal(g, want[[0, -1]])
        np.testing.assert_array_equal(ar, np.arange(k) * 2)
    with pytest.raises(ValueError, match="reshape"):
        f(xv, np.int32(5), np.array([0], "int32"))
    with pytest.raises(IndexError, match="index out of bounds"):
        f(xv, np.int32(2), np.array([2], "int32"))
    # the same output shapes as the call before (the guessed shapes fit: plan and run in one call)
    f(xv, np.int32(2), np.array([0, 1], "int32"))
    with pytest.raises(IndexError, match=r"subtensor: index out of bounds"):
        f(xv, np.int32(2), np.array([0, 2], "int32"))
    g = _xyz()
    for n in (3, 5, 3, 3, 0, 3):  # shapes change and come back
        a = np.arange(n, dtype="float32")
        np.testing.assert_array_equal(g(a, a, a), a + a * a)


def test_trust_input(native):
    f = _xyz(trust_input=True)
    a = np.arange(3, dtype="float32")
    np.testing.assert_array_equal(f(a, a, a), a + a * a)
    # still checked natively: a wrong dtype is converted or refused, never misread
    with pytest.raises(TypeError, match="expected dtype float32"):
        f(a, a, np.arange(3.0))
    with pytest.raises(ValueError):
        f(a, a, np.ones(4, "float32"))


def test_donated_update_and_threads(native):
    W = tcomp.shared(np.ones((4, 3), "float32"), "W")
    x = T.matrix("x")
    step = tcomp.function([x], T.dot(x, W).sum(), updates=[(W, W - 0.5 * T.grad(T.dot(x, W).sum(), W))])
    storage = W.get_value(borrow=True)
    xv = np.full((2, 4), 0.25, "float32")
    step(xv)
    np.testing.assert_allclose(W.get_value(), 1 - 0.5 * xv.sum(axis=0)[:, None] * np.ones((1, 3)), rtol=1e-6)
    assert W.get_value(borrow=True) is storage  # written in place
    assert step.compiled.last_call_memory["donated_updates"] == 1

    f = _xyz()
    rng = np.random.default_rng(1)
    data = [tuple(rng.standard_normal(n).astype("float32") for _ in range(3)) for n in (5, 50, 500, 5000)]
    errors = []

    def work(k):
        try:
            for _ in range(50):
                a, b, c = data[k % len(data)]
                np.testing.assert_allclose(f(a, b, c), a + b * c, rtol=1e-6)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_without_the_object_layout_shims(native):
    """Where the CPython/NumPy object layouts differ, the calls go through ``a.ctypes``."""
    x, n = T.matrix("x"), T.iscalar("n")
    f = tcomp.function([x, n], T.exp(T.reshape(x, (n, -1))).sum(axis=1))
    c = f.compiled
    c._py_plan = c._py_run = c._quick = None
    xv = np.arange(12, dtype="float32").reshape(3, 4).T / 10  # not C-contiguous
    (out,) = c([xv, np.int32(4)])
    np.testing.assert_allclose(out, np.exp(xv.reshape(4, -1)).sum(axis=1), rtol=1e-6)
    assert is_aligned(out)
    with pytest.raises(ValueError, match="reshape"):
        c([xv, np.int32(5)])


def test_multi_output_kernel_of_two_run_time_extents_is_refused(native):
    """The shape program carries the planner's backstop: results of one multi-output kernel
    that differ at run time raise before ``run`` writes out of bounds."""
    from tcomp.backend.cpu import compile_graph
    from tcomp.ir import Graph, TensorType

    g = Graph()
    x = g.add_input(TensorType("float32", (None, 1)), name="x")
    y = g.add_input(TensorType("float32", (None, None)), name="y")
    z = g.add_input(TensorType("float32", (None, None)), name="z")
    k = g.add_node("fused", [x, z, y], {"body": (("mul", (), ("$0", "$1")), ("sub", (), ("$0", "$2"))),
                                         "outputs": (0,)})
    g.outputs = [g.add_node("get_output", [k], {"index": 0}), g.add_node("get_output", [k], {"index": 1})]
    f = compile_graph(g)
    with pytest.raises(ValueError, match="one extent"):
        f([np.ones((3, 1), "float32"), np.zeros((3, 5000), "float32"), np.ones((3, 1), "float32")])


def test_function_converts_what_the_native_shim_declines():
    """Lists, numbers and safely castable arrays convert as on the reference backend; a lossy
    cast raises the same error class."""
    a = np.arange(3, dtype="float32")
    results = []
    for backend in ("reference", "cpu"):
        f = _xyz(backend=backend)
        got = [f([1, 2, 3], a, np.arange(3, dtype="int8")), f(a, [2.0, 2.0, 2.0], a), f(a[::-1], a, a)]
        results.append((got, _error(f, a, a, np.arange(3.0))[0]))
    for x, y in zip(results[0][0], results[1][0]):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(results[1][0][2], a[::-1] + a * a)
    assert results[0][1] == results[1][1]


def test_shapes_computed_by_kernels_run_as_a_chain_of_programs(native):
    """``arange(max(n))`` sizes a tensor from data: the shape program cannot reduce, so the
    function runs the reduction as a first program and the rest with its value as an input;
    a second data-dependent size on top of the first makes a third program."""
    from tcomp.backend.cpu.staged import StagedFunction

    n = T.ivector("n")
    a = T.arange(T.max(n))
    b = T.zeros((T.sum(a),), dtype="int32") + T.max(n)
    f = tcomp.function([n], [a * 2, b])
    ref = tcomp.function([n], [a * 2, b], backend="reference")
    assert isinstance(f.compiled, StagedFunction) and len(f.compiled.stages) == 3
    assert f.dump("kernels").count("# stage") == 3
    for data in ([3, 1, 2], [5], [0, -2]):
        nv = np.asarray(data, "int32")
        top = max(int(nv.max()), 0)
        want = [np.arange(top) * 2, np.full(top * (top - 1) // 2, nv.max(), "int32")]
        for got, r, w in zip(f(nv), ref(nv), want):
            np.testing.assert_array_equal(got, w)
            np.testing.assert_array_equal(r, w)
            assert got.dtype == r.dtype
