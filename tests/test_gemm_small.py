"""The in-place GEMM path (tcomp/backend/cpu/kernels_gemm_small.py) against NumPy float64
products: few rows of C (M <= MAX_ROWS), tall narrow products (N <= WIDE_N) one KC block
deep or with a small C, with neither operand packed.

The functions have symbolic dims (every driver path is compiled once) and are called over
sizes that are not multiples of the 4-row x 4-vector block, so the overlapping edge blocks,
the rows clamped to a share's last, the k-loop's odd tail and the scalar path of shares
narrower than a vector are all reached; transposed and strided operands; inside a scan
body against the reference interpreter.
"""
import numpy as np
import pytest
from conftest import accumulation_tol

import tcomp
import tcomp.tensor as T
from tcomp.backend.cpu import compile_graph
from tcomp.backend.cpu import kernels_gemm as KG
from tcomp.backend.cpu import kernels_gemm_small as KS
from tcomp.ir import Graph, TensorType


def _graph(dtype, ta=False, a_shape=("m", "k"), b_shape=("k", "n")):
    g = Graph()
    a = g.add_input(TensorType(dtype, tuple(reversed(a_shape)) if ta else a_shape), name="a")
    b = g.add_input(TensorType(dtype, b_shape), name="b")
    if ta:
        a = g.add_node("dimshuffle", [a], {"pattern": (1, 0)})
    g.outputs = [g.add_node("matmul", [a, b])]
    return g


def _check(got, a, b, dtype, what):
    want = a.astype("float64") @ b.astype("float64")
    assert got.dtype.name == dtype and got.shape == want.shape, what
    np.testing.assert_allclose(got, want, err_msg=what, **accumulation_tol(dtype, max(a.shape[-1], 1), 1.0))


def _uniform(rng, shape, dtype):
    return rng.uniform(-1, 1, shape).astype(dtype)


@pytest.fixture
def one_thread():
    before = tcomp.config.num_threads
    tcomp.config.num_threads = 1
    yield
    tcomp.config.num_threads = before


def test_which_products_take_it():
    """By the static dims: few rows, or one KC block and narrow; B within half of L2; N at
    least a vector.  A static product that can take it declares the component."""
    cfg = KG.Config("float32")
    assert KS.static_applies(cfg, 16, 128, 128) and KS.static_applies(cfg, 4, cfg.W, 1)
    assert KS.static_applies(cfg, 16000, 128, 128)  # the bench scan's pushed-out x W
    assert not KS.static_applies(cfg, 3, 128, 128) and not KS.static_applies(cfg, 16, cfg.W - 1, 128)
    assert not KS.static_applies(cfg, 128, 512, 784) and not KS.static_applies(cfg, 1000, 1024, 128)
    assert KS.static_applies(cfg, 16, 128, 1 << 20) and KS.static_applies(cfg, 128, 128, 16000)  # KC-deep blocks
    assert not KS.static_applies(cfg, 16, 1024, 4096)  # a KC block of B beyond half of L2
    assert not KS.static_applies(cfg, 1000, 128, 1000)  # deep, and C beyond a quarter of L2
    assert KG.static_paths(cfg, 16, 128, 128) & KG.ROWS and not KG.static_paths(cfg, 128, 512, 784) & KG.ROWS
    name = KG._COMPONENTS["rows"][0](cfg)
    program = compile_graph(_graph("float32", a_shape=(16, 128), b_shape=(128, 128))).llvm_ir_unoptimized
    text = KG.runtime_ir([program], jit=True)  # the program's driver's library declares the components
    assert f'declare void @"{name}"' in text
    import llvmlite.binding as llvm  # the declaration's type is the one its library defines

    defined = llvm.parse_assembly(KG.runtime_ir([text])).get_function(name).type
    assert str(defined) == str(llvm.parse_assembly(text).get_function(name).type)
    program = compile_graph(_graph("float32", a_shape=(128, 784), b_shape=(784, 512))).llvm_ir_unoptimized
    assert name not in KG.runtime_ir([program], jit=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ta", [False, True])
def test_few_rows_odd_shapes(dtype, ta, rng, one_thread):
    f = compile_graph(_graph(dtype, ta))
    W = KG.Config(dtype).W
    for m in (4, 5, 7, 16, 31, 32):
        for n in (W, W + 1, 3 * W - 1, 4 * W, 4 * W + 3, 9 * W + 5):
            for k in (0, 1, 3, 128):
                a, b = _uniform(rng, (m, k), dtype), _uniform(rng, (k, n), dtype)
                got = f([np.ascontiguousarray(a.T) if ta else a, b])[0]
                _check(got, a, b, dtype, f"ta={ta} ({m},{k})@({k},{n})")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tall_one_block(dtype, rng, one_thread):
    f = compile_graph(_graph(dtype))
    ft = compile_graph(_graph(dtype, ta=True))
    kc = KG.Config(dtype).KC
    for m, k, n in [(33, 5, 17), (130, kc, 200), (257, 77, KS.WIDE_N), (600, 128, 64), (1001, 1, 33)]:
        a, b = _uniform(rng, (m, k), dtype), _uniform(rng, (k, n), dtype)
        _check(f([a, b])[0], a, b, dtype, f"({m},{k})@({k},{n})")
        _check(ft([np.ascontiguousarray(a.T), b])[0], a, b, dtype, f"transposed A ({m},{k})@({k},{n})")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_strided_views(dtype, rng, one_thread):
    """Rows of B contiguous but spaced (a column slice), A any strides (a reversed, stepped
    slice); B with strided columns goes to the other paths."""
    a, b = T.matrix("a", dtype=dtype), T.matrix("b", dtype=dtype)
    outs = [T.dot(a[::2, ::-1], b[1:, 3:70]), T.dot(a[1::3, 1:], b[2:, ::2]), T.dot(a[:20].T[:9], b[:20, 5:])]
    f = tcomp.function([a, b], outs, backend="cpu")
    av, bv = _uniform(rng, (40, 60), dtype), _uniform(rng, (61, 150), dtype)
    got = f(av, bv)
    _check(got[0], av[::2, ::-1], bv[1:, 3:70], dtype, "spaced rows of B")
    _check(got[1], av[1::3, 1:], bv[2:, ::2], dtype, "strided columns of B")
    _check(got[2], av[:20].T[:9], bv[:20, 5:], dtype, "transposed slice of A")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_two_threads_match_one(dtype, rng):
    """A tall product large enough for 2 threads: shares of rows (some not a multiple of the
    block), the same fma chain per element, so bit-identical to 1 thread."""
    f = compile_graph(_graph(dtype))
    before = tcomp.config.num_threads
    try:
        for m, k, n in [(3001, 128, 128), (2000, 64, 250)]:
            a, b = _uniform(rng, (m, k), dtype), _uniform(rng, (k, n), dtype)
            outs = []
            for nt in (1, 2):
                tcomp.config.num_threads = nt
                outs.append(f([a, b])[0])
            _check(outs[1], a, b, dtype, f"2 threads ({m},{k})@({k},{n})")
            np.testing.assert_array_equal(outs[0], outs[1])
    finally:
        tcomp.config.num_threads = before


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_in_a_scan_body(dtype, rng, monkeypatch, one_thread):
    """An Elman RNN step (5 x 37 state: the few-rows path; its x_t W pushed out of the loop
    as one tall product) matches the reference interpreter, forward and gradient."""
    monkeypatch.setattr(tcomp.config, "native_program", True)
    x, h0 = T.tensor3("x", dtype=dtype), T.matrix("h0", dtype=dtype)
    W, U = T.matrix("W", dtype=dtype), T.matrix("U", dtype=dtype)
    hs, _ = tcomp.scan(lambda xt, h, W, U: T.tanh(T.dot(xt, W) + T.dot(h, U)), sequences=x, outputs_info=h0,
                       non_sequences=[W, U])
    cost = hs.sum()
    outs = [hs] + T.grad(cost, [W, U])
    f = tcomp.function([x, h0, W, U], outs, backend="cpu")
    r = tcomp.function([x, h0, W, U], outs, backend="reference")
    args = (_uniform(rng, (9, 5, 23), dtype), _uniform(rng, (5, 37), dtype), _uniform(rng, (23, 37), dtype) * 0.3,
            _uniform(rng, (37, 37), dtype) * 0.3)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == "float32" else {"rtol": 1e-10, "atol": 1e-10}
    for got, want in zip(f(*args), r(*args)):
        np.testing.assert_allclose(got, want, **tol)


def test_forced_256_bit(rng, monkeypatch, one_thread):
    """AVX2-width code (W = 8 / 4 lanes): the blocks, the clamped and the scalar shares."""
    monkeypatch.setattr(KG, "VECTOR_BITS", 256)
    for dtype in ("float32", "float64"):
        W = KG.Config(dtype).W
        assert W * KG.Config(dtype).es == 32
        # (a graph no other test compiles: the function cache is keyed by codegen_key() too)
        f = compile_graph(_graph(dtype, a_shape=(1, "m", "k"), b_shape=(1, "k", "n")))
        assert "_v256" in f.llvm_ir_unoptimized
        for m, k, n in [(5, 33, W), (16, 128, 3 * W + 1), (300, 40, 9 * W + 3)]:
            a, b = _uniform(rng, (1, m, k), dtype), _uniform(rng, (1, k, n), dtype)
            _check(f([a, b])[0][0], a[0], b[0], dtype, f"256-bit ({m},{k})@({k},{n})")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_deep_k_blocks(dtype, rng):
    """B beyond half of L2: KC-deep blocks whose sums are carried in C (non-overlapping
    blocks, the last N % W columns scalar), tall ones too when C is small (the weight
    gradients of a scan, X^T @ dH); transposed A; 2 threads (shares of rows, or of columns
    of a narrow product computed as C^T) bit-identical to 1."""
    f = compile_graph(_graph(dtype))
    ft = compile_graph(_graph(dtype, ta=True))
    before = tcomp.config.num_threads
    try:
        for m, k, n in [(16, 1100, 500), (5, 4000, 37), (130, 1500, 100), (128, 2100, 128)]:
            a, b = _uniform(rng, (m, k), dtype), _uniform(rng, (k, n), dtype)
            assert KS.static_applies(KG.Config(dtype), m, n, k) and k * n * np.dtype(dtype).itemsize > 512 << 10
            outs = []
            for nt in (1, 2):
                tcomp.config.num_threads = nt
                outs += [f([a, b])[0], ft([np.ascontiguousarray(a.T), b])[0]]
            for o in outs:
                _check(o, a, b, dtype, f"({m},{k})@({k},{n})")
            np.testing.assert_array_equal(outs[0], outs[2])
            np.testing.assert_array_equal(outs[1], outs[3])
    finally:
        tcomp.config.num_threads = before
