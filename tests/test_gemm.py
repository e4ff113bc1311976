"""The packed GEMM (tcomp/backend/cpu/kernels_gemm.py) against NumPy float64 products.

Each function is compiled once with symbolic dims and called over many sizes, so the
awkward sizes (edge tiles of every width, KC blocks of unequal depth, empty dims) cost
calls, not compiles.  References are float64 products of the same inputs; tolerances
grow with the inner dimension (``accumulation_tol``).
"""
import re

import numpy as np
import pytest
from conftest import accumulation_tol

import tcomp
import tcomp.tensor as T
from tcomp.backend.cpu import compile_graph
from tcomp.backend.cpu import kernels_gemm as KG
from tcomp.ir import Graph, TensorType

AWKWARD = (1, 2, 3, 5, 7, 15, 16, 17, 31, 33, 63, 65, 127, 129, 255, 257)
RECT = [(1, 300, 7), (7, 1, 300), (300, 7, 1), (65, 257, 33), (129, 17, 255), (2, 513, 3), (257, 2, 129),
        (0, 5, 7), (5, 0, 7), (5, 7, 0), (0, 0, 0), (40, 0, 300), (300, 1, 300), (3, 1000, 70)]


def _graph(dtype, ta=False, tb=False, a_shape=("m", "k"), b_shape=("k", "n")):
    """a @ b with a, b given as their transposes (a dimshuffle view: a strided operand) when asked."""
    g = Graph()
    a = g.add_input(TensorType(dtype, tuple(reversed(a_shape)) if ta else a_shape), name="a")
    b = g.add_input(TensorType(dtype, tuple(reversed(b_shape)) if tb else b_shape), name="b")
    if ta:
        a = g.add_node("dimshuffle", [a], {"pattern": (1, 0)})
    if tb:
        b = g.add_node("dimshuffle", [b], {"pattern": (1, 0)})
    g.outputs = [g.add_node("matmul", [a, b])]
    return g


def _check(got, a, b, dtype, what):
    want = np.matmul(a.astype("float64"), b.astype("float64"))
    k = a.shape[-1]
    assert got.dtype.name == dtype and got.shape == want.shape, what
    np.testing.assert_allclose(got, want, err_msg=what, **accumulation_tol(dtype, max(k, 1), 1.0))


def _uniform(rng, shape, dtype):
    return rng.uniform(-1, 1, shape).astype(dtype)


@pytest.fixture
def one_thread():
    before = tcomp.config.num_threads
    tcomp.config.num_threads = 1
    yield
    tcomp.config.num_threads = before


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uses_packed_kernel(dtype):
    """The module declares its driver (symbolic dims: every path); the driver's library
    declares the components it calls; the process's GEMM runtime defines them, the packed
    micro-kernel inside the packed product's library (one copy per process, not per module);
    the ahead-of-time form defines the driver and everything it calls in one module."""
    f = compile_graph(_graph(dtype))
    text = f.llvm_ir_unoptimized
    assert "tcomp_ukr_" not in text and f"declare void @\"{KG.DRIVER_PREFIX}" in text
    (driver,) = re.findall(r'declare void @"(' + KG.DRIVER_PREFIX + r'[^"]+)"', text)
    cfg = KG.Config(dtype)
    lib = KG.runtime_ir([text], jit=True)
    assert f'define void @"{driver}"' in lib
    for kind in ("gemm", "gemv", "narrow_rows", "narrow_cols", "small"):
        assert f'declare void @"{KG._COMPONENTS[kind][0](cfg)}"' in lib, kind
    runtime = KG.runtime_ir([text])
    assert "tcomp_ukr_" in runtime and "tcomp_gemv_" in runtime and KG.runtime_ir(["define void @f()"]) is None
    assert f'define void @"{driver}"' in runtime and "declare void @\"tcomp_" not in runtime


def test_static_dims_declare_only_their_paths():
    """With static dims a kernel's driver has only the paths its product can take: the MLP
    step's products never link gemv or the epilogue paths; each declaration has the type
    of the function its library defines."""
    import llvmlite.binding as llvm

    cfg = KG.Config("float32")
    names = {k: KG._COMPONENTS[k][0](cfg) for k in ("gemm", "small", "gemv", "narrow_rows", "narrow_cols", "epi")}
    cases = {(128, 784, 512): {"gemm", "small"}, (128, 512, 10): {"gemm", "small", "narrow_rows", "narrow_cols"},
             (1, 300, 200): {"gemv", "small"}, (4, 5, 6): {"small"}}
    for (m, k, n), want in cases.items():
        text = compile_graph(_graph("float32", a_shape=(m, k), b_shape=(k, n))).llvm_ir_unoptimized
        (driver,) = re.findall(r'declare void @"(' + KG.DRIVER_PREFIX + r'[^"]+)"', text)
        lib_text = KG.runtime_ir([text], jit=True)
        got = {kind for kind, name in names.items() if f'declare void @"{name}"' in lib_text}
        assert got == want, (m, k, n)
        lib, program = llvm.parse_assembly(lib_text), llvm.parse_assembly(text)
        assert str(lib.get_function(driver).type) == str(program.get_function(driver).type)
        runtime = llvm.parse_assembly(KG.runtime_ir([lib_text]))
        for kind in want:
            assert str(runtime.get_function(names[kind]).type) == str(lib.get_function(names[kind]).type), kind


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_awkward_square_and_rectangular(dtype, rng, one_thread):
    f = compile_graph(_graph(dtype))
    for n in AWKWARD:
        a, b = _uniform(rng, (n, n), dtype), _uniform(rng, (n, n), dtype)
        _check(f([a, b])[0], a, b, dtype, f"{n}x{n}")
    for m, k, n in RECT:
        a, b = _uniform(rng, (m, k), dtype), _uniform(rng, (k, n), dtype)
        _check(f([a, b])[0], a, b, dtype, f"({m},{k})@({k},{n})")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ta,tb", [(True, False), (False, True), (True, True)])
def test_transposed_operands(dtype, ta, tb, rng, one_thread):
    f = compile_graph(_graph(dtype, ta, tb))
    for m, k, n in [(1, 5, 3), (17, 33, 65), (129, 257, 31), (70, 600, 90), (5, 1, 9), (0, 3, 4), (4, 0, 3)]:
        a, b = _uniform(rng, (m, k), dtype), _uniform(rng, (k, n), dtype)
        got = f([np.ascontiguousarray(a.T) if ta else a, np.ascontiguousarray(b.T) if tb else b])[0]
        _check(got, a, b, dtype, f"ta={ta} tb={tb} ({m},{k})@({k},{n})")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_narrow_outputs(dtype, ta, tb, rng, one_thread):
    """C with few columns (or rows): the narrow kernels (rows of A contiguous: 4x4 dot blocks;
    columns contiguous: 2W x 4 axpy blocks), both orientations, every block tail."""
    f = compile_graph(_graph(dtype, ta, tb))
    for m, k, n in [(128, 512, 10), (513, 129, 2), (77, 300, 16), (300, 77, 17), (70, 40, 5), (33, 1000, 3),
                    (10, 512, 128), (3, 257, 301), (16, 100, 100), (1000, 31, 7), (2, 8000, 9)]:
        a, b = _uniform(rng, (m, k), dtype), _uniform(rng, (k, n), dtype)
        got = f([np.ascontiguousarray(a.T) if ta else a, np.ascontiguousarray(b.T) if tb else b])[0]
        _check(got, a, b, dtype, f"narrow ta={ta} tb={tb} ({m},{k})@({k},{n})")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matrix_vector_and_vector_matrix(dtype, rng, one_thread):
    cases = [(("m", "k"), ("k",)), (("k",), ("k", "n")), (("k",), ("k",))]
    for a_shape, b_shape in cases:
        for ta in ([False, True] if len(a_shape) == 2 else [False]):
            for tb in ([False, True] if len(b_shape) == 2 else [False]):
                f = compile_graph(_graph(dtype, ta, tb, a_shape, b_shape))
                for m, k, n in [(1, 1, 1), (3, 7, 5), (65, 129, 33), (300, 257, 200), (4, 0, 3), (0, 4, 0)]:
                    ash = {"m": m, "k": k, "n": n}
                    a = _uniform(rng, [ash[d] for d in a_shape], dtype)
                    b = _uniform(rng, [ash[d] for d in b_shape], dtype)
                    got = f([np.ascontiguousarray(a.T) if ta else a, np.ascontiguousarray(b.T) if tb else b])[0]
                    _check(got, a, b, dtype, f"{a_shape}@{b_shape} ta={ta} tb={tb} m,k,n={m},{k},{n}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batched(dtype, rng, one_thread):
    cases = [(("b", "m", "k"), ("b", "k", "n"), [(3, 17, 33, 65), (2, 70, 90, 50), (4, 1, 9, 5), (0, 3, 4, 5)]),
             (("b", "m", "k"), ("k", "n"), [(3, 65, 20, 31), (2, 1, 50, 64)]),
             (("k",), ("b", "k", "n"), [(3, 1, 40, 70)]),
             ((1, "m", "k"), ("b", "k", "n"), [(5, 33, 17, 9)]),
             (("b", 1, "m", "k"), ("c", "k", "n"), [(2, 9, 31, 5)])]
    for a_shape, b_shape, sizes in cases:
        f = compile_graph(_graph(dtype, a_shape=a_shape, b_shape=b_shape))
        for bb, m, k, n in sizes:
            dims = {"b": bb, "c": 3, "m": m, "k": k, "n": n}
            a = _uniform(rng, [dims.get(d, d) for d in a_shape], dtype)
            b = _uniform(rng, [dims.get(d, d) for d in b_shape], dtype)
            _check(f([a, b])[0], a, b, dtype, f"{a.shape}@{b.shape}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_strided_views(dtype, rng, one_thread):
    a, b = T.matrix("a", dtype=dtype), T.matrix("b", dtype=dtype)
    outs = [T.dot(a[::2, 1::3], b[:, ::2][::3]), T.dot(a[1:, ::2].T, b.T[1:, ::-1]), T.dot(a[::3, 1], b.T[::3, ::2])]
    f = tcomp.function([a, b], outs, backend="cpu")
    for m, k in [(40, 90), (150, 200)]:
        av, bv = _uniform(rng, (m, k), dtype), _uniform(rng, (k, m), dtype)
        got = f(av, bv)
        _check(got[0], av[::2, 1::3], bv[:, ::2][::3], dtype, "slices")
        _check(got[1], av[1:, ::2].T, bv.T[1:, ::-1], dtype, "sliced transposes")
        _check(got[2], av[::3, 1], bv.T[::3, ::2], dtype, "column vector @ strided")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_two_threads_match_one(dtype, rng):
    """Large enough for the cost model to use 2 threads; each element is the same k-ordered
    sum whichever thread computes it, so the results are bit-identical (kernels_gemm docstring)."""
    f = compile_graph(_graph(dtype))
    fb = compile_graph(_graph(dtype, a_shape=("b", "m", "k"), b_shape=("b", "k", "n")))
    fv = compile_graph(_graph(dtype, a_shape=("m", "k"), b_shape=("k",)))
    fvt = compile_graph(_graph(dtype, ta=True, a_shape=("m", "k"), b_shape=("k",)))
    before = tcomp.config.num_threads
    try:
        cases = [(f, (300, 257), (257, 301)), (f, (129, 700), (700, 600)), (f, (600, 500), (500, 90)),
                 (fb, (2, 200, 130), (2, 130, 210)), (fv, (1100, 700), (700,)), (fvt, (700, 1100), (700,)),
                 (f, (3000, 700), (700, 10)), (f, (12, 900), (900, 2000))]
        for fn, a_sh, b_sh in cases:
            a, b = _uniform(rng, a_sh, dtype), _uniform(rng, b_sh, dtype)
            outs = []
            for nt in (1, 2):
                tcomp.config.num_threads = nt
                outs.append(fn([a, b])[0])
            a_ref = a.T if fn is fvt else a
            _check(outs[1], a_ref, b, dtype, f"2 threads {a_sh}@{b_sh}")
            np.testing.assert_array_equal(outs[0], outs[1], err_msg=f"1 vs 2 threads {a_sh}@{b_sh}")
    finally:
        tcomp.config.num_threads = before


def test_forced_256_bit(rng, monkeypatch, one_thread):
    monkeypatch.setattr(KG, "VECTOR_BITS", 256)
    assert "v256" in KG.codegen_key()
    for dtype in ("float32", "float64"):
        cfg = KG.Config(dtype)
        assert cfg.bits == 256 and cfg.NR == cfg.NV * 256 // (8 * cfg.es)
        # a graph no other test compiles (the native path's library cache is keyed by
        # codegen_key() too, so a shared graph would also be rebuilt)
        f = compile_graph(_graph(dtype, a_shape=(1, "m", "k"), b_shape=(1, "k", "n")))
        assert "_v256" in f.llvm_ir_unoptimized
        for m, k, n in [(17, 33, 65), (129, 300, 40)]:
            a, b = _uniform(rng, (1, m, k), dtype), _uniform(rng, (1, k, n), dtype)
            _check(f([a, b])[0], a, b, dtype, f"256-bit ({m},{k})@({k},{n})")


def test_vector_width_option_validated(monkeypatch):
    monkeypatch.setenv("TCOMP_GEMM_VECTOR_BITS", "300")
    with pytest.raises(ValueError, match="TCOMP_GEMM_VECTOR_BITS"):
        KG.host_vector_bits()
    monkeypatch.setenv("TCOMP_GEMM_VECTOR_BITS", "128")
    assert KG.host_vector_bits() == 128


def test_blocking_from_caches():
    l1, l2, l3 = KG._cache_sizes()
    assert 4096 <= l1 <= l2 <= max(l2, l3)
    for dtype in ("float32", "float64"):
        c = KG.Config(dtype)
        assert c.MC % c.MR == 0 and c.NC % c.NR == 0 and 64 <= c.KC <= 384


def test_concurrent_python_threads(rng):
    """Pack buffers are per call (malloc'd by each worker), so Python threads calling one
    compiled GEMM at once (ctypes releases the GIL) do not share scratch."""
    import threading

    f = compile_graph(_graph("float32"))
    pairs = [(_uniform(rng, (150, 260), "float32"), _uniform(rng, (260, 170), "float32")) for _ in range(4)]
    results, errors = [None] * 4, []

    def work(i):
        try:
            a, b = pairs[i]
            for _ in range(5):
                results[i] = f([a, b])[0]
        except Exception as e:  # reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for (a, b), got in zip(pairs, results):
        _check(got, a, b, "float32", "concurrent calls")


def test_component_libraries_call_each_other():
    """A JIT component library declares the components it falls back on (one copy per
    process); the ahead-of-time form defines every one it needs in its one module."""
    cfg = KG.Config("float32")
    rows, small = KG._COMPONENTS["narrow_rows"][0](cfg), KG._COMPONENTS["small"][0](cfg)
    jit = KG.runtime_ir([f'declare void @"{rows}"('], jit=True)
    aot = KG.runtime_ir([f'declare void @"{rows}"('], visibility="hidden")
    assert f'declare void @"{small}"' in jit and f'define void @"{rows}"' in jit
    assert f'define internal void @"{small}"' in aot and f'define hidden void @"{rows}"' in aot


def test_module_with_its_own_copies(monkeypatch, rng, one_thread):
    """``SHARED_RUNTIME = False``: the module defines its driver and every component the
    driver calls (no GEMM library linked), with NumPy's products."""
    monkeypatch.setattr(KG, "SHARED_RUNTIME", False)
    for a_shape, b_shape in ((("m", "k"), ("k", "n")), ((70, 300), (300, 90))):
        f = compile_graph(_graph("float32", a_shape=a_shape, b_shape=b_shape))
        text = f.llvm_ir_unoptimized
        assert "tcomp_ukr_" in text and f'declare void @"{KG.DRIVER_PREFIX}' not in text
        a, b = _uniform(rng, (70, 300), "float32"), _uniform(rng, (300, 90), "float32")
        _check(f([a, b])[0], a, b, "float32", f"own copies {a_shape}")
