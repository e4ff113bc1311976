"""Streaming (non-temporal) stores of flat elementwise kernels (``kernels_stream.py``), with
the threshold lowered so that small arrays take the path: results against NumPy for odd
lengths (a head before the first 64-byte boundary, whole blocks, a tail), static and
symbolic sizes, float32/float64/int/bool outputs, 1 and 2 threads, an in-place update of a
shared variable whose storage is not line-aligned, and a fused kernel with an extra result
(against the reference interpreter); the IR and assembly of a large kernel hold the
non-temporal store and its fence, a small static one holds neither."""
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.backend.cpu import compile_graph
from tcomp.backend.cpu import kernels_stream as S
from tcomp.ir import Graph, TensorType, evaluate
from tcomp.passes import fuse_elementwise

pytestmark = pytest.mark.skipif(not S.enabled(), reason="streaming stores are emitted on x86-64 hosts only")

MIN = S.BLOCK_BYTES  # bytes: the lowered threshold (one block)
RNG_SEED = 7


@pytest.fixture
def streaming(monkeypatch):
    """The lowered threshold, symbolic sizes included; no persistent compile cache (its key
    is computed once per process)."""
    monkeypatch.setattr(S, "MIN_BYTES", MIN)
    monkeypatch.setattr(S, "SYMBOLIC", True)
    before = tcomp.config.cache
    tcomp.config.cache = False
    yield
    tcomp.config.cache = before


def _at_threads(fn):
    """``fn()`` at 1 and at 2 threads (the pool splits loops of >= 2^16 elements)."""
    before = tcomp.config.num_threads
    try:
        for nt in (1, 2):
            tcomp.config.num_threads = nt
            fn(nt)
    finally:
        tcomp.config.num_threads = before


def _inputs(rng, n, dtype):
    if dtype.startswith("float"):
        return [rng.standard_normal(n).astype(dtype) for _ in range(3)]
    return [rng.integers(-1000, 1000, n).astype(dtype) for _ in range(3)]


def _graph(n, dtype):
    g = Graph()
    a, b, c = (g.add_input(TensorType(dtype, (n,)), name=k) for k in "abc")
    g.outputs = [g.add_node("add", [g.add_node("mul", [a, b]), c])]
    return g


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int16"])
def test_static_kernels_stream_and_match_numpy(streaming, dtype):
    rng = np.random.default_rng(RNG_SEED)
    es = np.dtype(dtype).itemsize
    # one block + a tail; several blocks + a tail; two threads' chunks, each with a tail
    for n in (S.BLOCK_BYTES // es + 3, 7 * S.BLOCK_BYTES // es + 29, (1 << 16) + 4099):
        assert n * es >= MIN
        f = compile_graph(_graph(n, dtype))
        assert "!nontemporal" in f.llvm_ir_unoptimized
        a, b, c = _inputs(rng, n, dtype)
        want = a * b + c  # NumPy in the same dtype (integers wrap alike)

        def check(nt):
            got = f([a, b, c])[0]
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want, err_msg=f"{dtype} n={n} threads={nt}")
        _at_threads(check)


@pytest.mark.parametrize("dtype", ["float64", "int32"])
def test_symbolic_sizes_either_side_of_the_threshold(streaming, dtype):
    """One kernel, sizes picked at run time: below the threshold the plain loop, above it
    the blocks; inputs that are views at odd offsets."""
    x, y = T.vector("x", dtype=dtype), T.vector("y", dtype=dtype)
    f = tcomp.function([x, y], x * y - y)
    text = f.compiled.llvm_ir_unoptimized
    assert "!nontemporal" in text and '@"kf_' in text  # the outlined point loop
    rng = np.random.default_rng(RNG_SEED + 1)
    es = np.dtype(dtype).itemsize
    for n in (1, 5, MIN // es - 1, MIN // es, MIN // es + 17, (1 << 16) + 333):
        base = _inputs(rng, n + 3, dtype)
        a, b = base[0][3:], base[1][1:n + 1]

        def check(nt):
            np.testing.assert_array_equal(f(a, b), a * b - b, err_msg=f"n={n} threads={nt}")
        _at_threads(check)


def test_bool_output(streaming):
    n = (1 << 16) + 71
    g = Graph()
    a, b = (g.add_input(TensorType("float32", (n,)), name=k) for k in "ab")
    g.outputs = [g.add_node("gt", [a, b])]
    f = compile_graph(g)
    assert "!nontemporal" in f.llvm_ir_unoptimized
    rng = np.random.default_rng(RNG_SEED + 2)
    x, y = (rng.standard_normal(n).astype("float32") for _ in range(2))
    _at_threads(lambda nt: np.testing.assert_array_equal(f([x, y])[0], x > y, err_msg=f"threads={nt}"))


def test_in_place_update_of_an_unaligned_shared_storage(streaming):
    """``v <- v * 2 + 1`` written over ``v``'s own storage, which starts 4 bytes past a line
    boundary: a head of plain stores, streamed blocks read before they are overwritten, a tail."""
    n = (1 << 16) + 1001
    rng = np.random.default_rng(RNG_SEED + 3)
    start = rng.standard_normal(n).astype("float32")
    raw = np.empty(n + 16, dtype="float32")
    off = next(k for k in range(16) if (raw[k:].ctypes.data % 64) == 4)
    storage = raw[off:off + n]
    storage[...] = start
    v = tcomp.shared(storage, "v", borrow=True)
    assert v.get_value(borrow=True).ctypes.data % 64 == 4
    f = tcomp.function([], [], updates=[(v, v * 2 + 1)])
    want = start.copy()

    def step(nt):
        nonlocal want
        f()
        want = want * np.float32(2) + np.float32(1)
        np.testing.assert_array_equal(v.get_value(borrow=True), want, err_msg=f"threads={nt}")
    _at_threads(step)
    assert f.compiled.last_call_memory["donated_updates"] == 1
    assert v.get_value(borrow=True).ctypes.data == storage.ctypes.data  # it was written in place


def test_fused_kernel_with_an_extra_result(streaming):
    """``z = x * w`` feeding ``exp(z)`` and ``z * 2``: one kernel, the extra result stored at
    the point (plain stores) and the primary streamed; against the reference interpreter."""
    g = Graph()
    x, w = g.add_input(TensorType("float32", ("n",)), "x"), g.add_input(TensorType("float32", ("n",)), "w")
    z = g.add_node("mul", [x, w])
    two = g.add_constant(np.array(2.0, dtype="float32"))
    g.outputs = [g.add_node("exp", [z]), g.add_node("mul", [z, two])]
    h = fuse_elementwise(g.copy())
    (k,) = [m for m in h.nodes() if h.op(m) == "fused"]
    assert h.attrs(k)["outputs"]
    f = compile_graph(h)
    assert "!nontemporal" in f.llvm_ir_unoptimized
    rng = np.random.default_rng(RNG_SEED + 4)
    for n in (3, 2000, (1 << 16) + 77):
        inputs = [rng.standard_normal(n).astype("float32") for _ in range(2)]
        want = evaluate(g, inputs)

        def check(nt):
            for got, ref in zip(f(inputs), want):
                np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-6, err_msg=f"n={n} threads={nt}")
        _at_threads(check)


def test_ir_and_assembly(streaming, monkeypatch):
    """A large static kernel: the NT store, its fence, and ``vmovnt*`` in the host assembly;
    below the threshold (and at the default one for 2^16 elements) no extra code at all."""
    big = compile_graph(_graph(1 << 16, "float32"))
    text = big.llvm_ir_unoptimized
    assert "!nontemporal" in text and "fence seq_cst" in text
    assert "vmovnt" in big.dump("asm")
    small = compile_graph(_graph(MIN // 4 - 16, "float32"))
    assert "nontemporal" not in small.llvm_ir_unoptimized and "fence" not in small.llvm_ir_unoptimized
    monkeypatch.setattr(S, "MIN_BYTES", None)
    monkeypatch.delenv("TCOMP_STREAM_MIN_BYTES", raising=False)
    assert S.min_bytes() >= 1 << 20  # the last-level cache
    default = compile_graph(_graph((1 << 16) + 1, "float32"))
    assert "nontemporal" not in default.llvm_ir_unoptimized
    monkeypatch.setattr(S, "MIN_BYTES", MIN)
    monkeypatch.setattr(S, "SYMBOLIC", False)  # the default: symbolic sizes keep the plain loop
    x = T.vector("x")
    assert "nontemporal" not in tcomp.function([x], T.exp(x) * 3).compiled.llvm_ir_unoptimized


def test_settings_are_part_of_the_codegen_key(monkeypatch):
    monkeypatch.setattr(S, "MIN_BYTES", 1 << 20)
    k1 = S.codegen_key()
    monkeypatch.setattr(S, "MIN_BYTES", 1 << 21)
    assert S.codegen_key() != k1
    k2 = S.codegen_key()
    monkeypatch.setattr(S, "SYMBOLIC", not S.SYMBOLIC)
    assert S.codegen_key() != k2
    monkeypatch.setenv("TCOMP_STREAM_STORES", "0")
    assert not S.enabled() and S.codegen_key() == "nt-off" and not S.wanted(1 << 30, "float32")
    monkeypatch.setattr(S, "MIN_BYTES", None)
    monkeypatch.setenv("TCOMP_STREAM_MIN_BYTES", "lots")
    with pytest.raises(ValueError, match="TCOMP_STREAM_MIN_BYTES"):
        S.min_bytes()


@pytest.mark.parametrize("target", ["aarch64-linux-gnu", "x86-64"])
def test_streamed_kernel_text_compiles_for_the_ahead_of_time_targets(streaming, target):
    """The ahead-of-time export compiles the JIT's text for other targets: the streaming path
    is generic IR (a vector store with ``!nontemporal``, ``fence seq_cst``), no x86 intrinsic,
    so it compiles for AArch64 (``stnp``, ``dmb ish``) and for baseline x86-64 (SSE2: the line
    store split into ``movntps xmm``, the fence a locked instruction)."""
    import llvmlite.binding as llvm

    from tcomp.aot import build
    from tcomp.runtime._optimizer_worker import optimize_module

    text = compile_graph(_graph(1 << 16, "float32")).llvm_ir_unoptimized
    assert "!nontemporal" in text and "llvm.x86" not in text
    t = build.resolve_target(target)
    tm = build.target_machine(t)
    mod = llvm.parse_assembly(text)
    mod.triple, mod.data_layout = tm.triple, str(tm.target_data)
    optimize_module(mod, tm, 3, False)
    asm = tm.emit_assembly(mod)
    assert ("stnp" in asm and "dmb" in asm) if t.arch == "aarch64" else ("movntps" in asm and "lock" in asm)
