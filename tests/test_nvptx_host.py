"""The CUDA backend's host side without a GPU: reductions split across blocks (two passes,
deterministic) in the grid emulator, and ``tcomp.function(backend='cuda')`` run end to end
over :class:`EmulatedDevice` (the driver's interface over host memory, kernels built for the
emulator): shared variables resident on the device between calls, the memory pool, updates
adopted on the device, ``get_value``/``set_value`` and CPU functions sharing the variables,
errors leaving shared values unchanged; ``config.device`` and ``cuda_arch``.  The GPU
versions of the end-to-end tests run where a driver is present."""
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.backend.nvptx import driver, host
from tcomp.backend.nvptx.emulator import EmulatedDevice, EmulatedProgram
from tcomp.backend.nvptx.runtime import CudaCompiled, use_device
from tcomp.examples.mlp import build_classifier_step
from tcomp.ir import evaluate
from tcomp.passes.lower_kernels import lower_kernels

HAS_GPU = driver.available()
gpu = pytest.mark.skipif(not HAS_GPU, reason="no CUDA driver/GPU on this machine")


def _program(inputs, out):
    f = tcomp.function(inputs, out, backend="reference")
    return f.optimized, lower_kernels(f.optimized, f.donations)


# -- reductions across blocks ------------------------------------------------------------------

def test_split_policy():
    assert host.split_parts(1, 100) == 1                       # short: one block per row
    assert host.split_parts(host.TARGET_BLOCKS, 10 ** 7) == 1  # rows alone fill the GPU
    assert host.split_parts(1, 9000) == -(-9000 // host.MIN_PART)
    assert host.split_parts(3, 10 ** 8) == -(-host.TARGET_BLOCKS // 3)
    assert host.split_parts(1, 10 ** 9) == min(host.TARGET_BLOCKS, host.MAX_PARTS)
    assert host.split_parts(0, 10 ** 6) == 1


REDUCTIONS = [
    ("sum", lambda x: x.sum()), ("sum_axis1", lambda x: x.sum(axis=1)), ("mean", lambda x: x.mean(axis=1)),
    ("max", lambda x: x.max(axis=1)), ("min", lambda x: x.min()), ("prod", lambda x: (x * 0.001 + 1).prod(axis=1)),
    ("argmax", lambda x: T.argmax(x, axis=1)), ("argmin", lambda x: T.argmin(x.reshape((-1,)))),
    ("fused", lambda x: T.sqr(x * 2 - 1).sum(axis=1)), ("any", lambda x: T.any(x > 3.5, axis=1)),
]


@pytest.mark.parametrize("name,fn", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
def test_reductions_split_across_blocks(name, fn):
    """Rows of 9001 elements (5 parts of <= 2048, the last ragged) reduced in two passes,
    equal to the reference; the bits do not depend on the grid size (no atomics)."""
    x = T.matrix("x")
    g, p = _program([x], fn(x))
    a = np.random.default_rng(3).standard_normal((3, 9001)).astype("float32")
    if name in ("argmax", "argmin"):
        a[1, 17] = a[1, 8999] = a.max() + 1  # ties: the first index wins
        a[2, 4000] = np.nan                   # NaN beats every number
    want = evaluate(g, [a])
    runs = []
    em = EmulatedProgram(p)
    for nblocks in (1, 4, 7):
        em.nblocks = nblocks
        got = em([a])
        assert any(n.endswith("_part") for n in em.last_launches), em.last_launches
        for u, w in zip(got, want):
            assert u.dtype == w.dtype and u.shape == w.shape
            np.testing.assert_allclose(u, w, rtol=2e-5, atol=1e-5)
        runs.append(got[0].tobytes())
    assert runs[0] == runs[1] == runs[2]


def test_many_rows_use_the_one_pass_kernel_and_empty_rows_give_the_identity():
    x = T.matrix("x")
    g, p = _program([x], [x.sum(axis=1), x.max(axis=0)])
    a = np.random.default_rng(0).standard_normal((600, 40)).astype("float32")
    em = EmulatedProgram(p)
    for u, w in zip(em([a]), evaluate(g, [a])):
        np.testing.assert_allclose(u, w, rtol=1e-5, atol=1e-5)
    assert not any(n.endswith(("_part", "_comb")) for n in em.last_launches)
    g, p = _program([x], x.sum(axis=1))
    e = np.zeros((4, 0), "float32")
    np.testing.assert_array_equal(EmulatedProgram(p)([e])[0], evaluate(g, [e])[0])


# -- tcomp.function(backend='cuda') over the emulated device --------------------------------------

SIZES = (16, 12, 12, 4)


def _batches(n, rng):
    return [(rng.standard_normal((8, 16)).astype("float32"), rng.integers(0, 4, 8).astype("int32")) for _ in range(n)]


def test_mlp_training_step_matches_the_cpu_backend_with_resident_parameters():
    cpu, _, pc = build_classifier_step(sizes=SIZES, batch=8, backend="cpu")
    cuda, _, pg = build_classifier_step(sizes=SIZES, batch=8, backend="cuda")
    assert ".entry" in cuda.dump("ptx")
    dev = EmulatedDevice(max_blocks=5)
    with use_device(dev):
        for k, (x, y) in enumerate(_batches(4, np.random.default_rng(0))):
            np.testing.assert_allclose(cuda(x, y), cpu(x, y), rtol=1e-5, atol=1e-6)
            if k == 0:
                first = dev.allocations
                assert all(not p._device.host_current for p in pg)  # updates stayed on the device
        assert dev.allocations == first  # the pool: later calls allocate nothing
        for a, b in zip(pc, pg):
            np.testing.assert_allclose(b.get_value(), a.get_value(), rtol=1e-5, atol=1e-6)
        assert all(p._device.host_current and p._device.device_current for p in pg)
    assert {n for n, _ in dev.launches} >= {s.name for s in cuda.compiled.specs if s.kind == "tiles"}


def test_set_value_get_value_and_cpu_functions_share_the_variable():
    w = tcomp.shared(np.arange(6, dtype="float32"), "w")
    x = T.vector("x")
    gpu_step = tcomp.function([x], (w * x).sum(), updates=[(w, w * 2 + x)], backend="cuda")
    cpu_step = tcomp.function([], [], updates=[(w, w - 1)], backend="cpu")
    ones = np.ones(6, "float32")
    with use_device(EmulatedDevice()):
        assert gpu_step(ones) == pytest.approx(15.0)
        np.testing.assert_array_equal(w.get_value(borrow=True), np.arange(6) * 2 + 1)  # copied back
        cpu_step()  # reads the fetched value, updates the host copy: the device copy is stale
        assert gpu_step(ones) == pytest.approx(float((np.arange(6) * 2).sum()))
        w.set_value(np.full(6, 3, "float32"))
        assert gpu_step(ones) == pytest.approx(18.0)
        np.testing.assert_array_equal(w.get_value(), np.full(6, 7))


def test_an_update_may_change_the_shape():
    s = tcomp.shared(np.arange(3, dtype="float32"), "s", shape=(None,))
    grow = tcomp.function([], s.sum(), updates=[(s, T.concatenate([s, s + 10]))], backend="cuda")
    with use_device(EmulatedDevice()):
        assert grow() == pytest.approx(3.0)
        assert grow() == pytest.approx(3.0 + 33.0)
        np.testing.assert_array_equal(s.get_value(), [0, 1, 2, 10, 11, 12, 10, 11, 12, 20, 21, 22])


def test_a_failing_call_leaves_shared_values_unchanged():
    table = tcomp.shared(np.zeros(5, "float32"), "table")
    i = T.ivector("i")
    bump = tcomp.function([i], table[i].sum(), updates=[(table, T.inc_subtensor(table[i], 1.0))], backend="cuda")
    with use_device(EmulatedDevice()):
        bump(np.array([1, 3], "int32"))
        with pytest.raises(IndexError, match="index out of bounds"):
            bump(np.array([0, 9], "int32"))
        np.testing.assert_array_equal(table.get_value(), [0, 1, 0, 1, 0])
        with pytest.raises(ValueError):
            tcomp.function([i], table[i] + T.ones(3), backend="cuda")(np.array([0, 1], "int32"))


def test_shape_values_read_from_a_resident_variable():
    """A shape program that loads a shared variable's value (a reshape target) fetches it."""
    n = tcomp.shared(np.array(2, "int64"), "n")
    x = T.vector("x")
    f = tcomp.function([x], x.reshape((n, -1)).sum(axis=1), updates=[(n, n + 1)], backend="cuda")
    with use_device(EmulatedDevice()):
        np.testing.assert_array_equal(f(np.arange(6, dtype="float32")), [3, 12])
        np.testing.assert_array_equal(f(np.arange(6, dtype="float32")), [1, 5, 9])


# -- config.device and cuda_arch --------------------------------------------------------------------

def test_config_device_cuda_makes_cuda_the_default_backend():
    x = T.vector("x")
    with tcomp.config.change_flags(device="cuda"):
        f = tcomp.function([x], T.exp(x))
        ref = tcomp.function([x], T.exp(x), mode=tcomp.Mode(linker="py"))
    assert f.backend == "cuda" and ref.backend == "reference"
    assert tcomp.function([x], T.exp(x)).backend == tcomp.config.backend
    with use_device(EmulatedDevice()):
        np.testing.assert_allclose(f(np.linspace(-2, 2, 7).astype("float32")),
                                   np.exp(np.linspace(-2, 2, 7)).astype("float32"), rtol=2e-6)


def test_cuda_arch():
    x = T.vector("x")
    assert ".target sm_90" in tcomp.function([x], x * 2, backend="cuda", cuda_arch="sm_90").dump("ptx")
    if not HAS_GPU:
        assert ".target sm_80" in tcomp.function([x], x * 2, backend="cuda").dump("ptx")
    with pytest.raises(ValueError, match="cuda_arch must be one of"):
        tcomp.function([x], x * 2, backend="cuda", cuda_arch="sm_99")
    with pytest.raises(ValueError, match="applies to backend='cuda' only"):
        tcomp.function([x], x * 2, backend="cpu", cuda_arch="sm_80")


@pytest.mark.skipif(HAS_GPU, reason="a CUDA driver is present")
def test_config_device_cuda_without_a_driver_fails_at_call_time_only():
    x = T.vector("x")
    with tcomp.config.change_flags(device="cuda"):
        f = tcomp.function([x], x + 1)
    assert ".entry" in f.dump("ptx")
    with pytest.raises(driver.CudaUnavailable, match="libcuda.so.1|cuInit"):
        f(np.ones(2, "float32"))


# -- on a GPU ----------------------------------------------------------------------------------------

@gpu
def test_mlp_training_step_resident_on_the_gpu():
    cpu, _, pc = build_classifier_step(sizes=(784, 256, 128, 10), batch=64, backend="cpu")
    cuda, _, pg = build_classifier_step(sizes=(784, 256, 128, 10), batch=64, backend="cuda")
    rng = np.random.default_rng(0)
    for k in range(3):
        x = rng.standard_normal((64, 784)).astype("float32")
        y = rng.integers(0, 10, 64).astype("int32")
        np.testing.assert_allclose(cuda(x, y), cpu(x, y), rtol=1e-4, atol=1e-5)
        if k == 0:
            before = cuda.compiled.pool.allocated
    assert cuda.compiled.pool.allocated == before
    for a, b in zip(pc, pg):
        np.testing.assert_allclose(b.get_value(), a.get_value(), rtol=1e-4, atol=1e-5)


@gpu
@pytest.mark.parametrize("name,fn", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
def test_split_reductions_on_the_gpu(name, fn):
    x = T.matrix("x")
    g, _ = _program([x], fn(x))
    a = np.random.default_rng(3).standard_normal((3, 100_001)).astype("float32")
    got = CudaCompiled(g)([a])
    for u, w in zip(got, evaluate(g, [a])):
        np.testing.assert_allclose(u, w, rtol=1e-4, atol=1e-4)
    assert got[0].tobytes() == CudaCompiled(g)([a])[0].tobytes()


def test_bench_runs_on_the_emulator_and_skips_cleanly_without_a_gpu(capsys):
    from tcomp.backend.nvptx import bench

    assert bench.main(["--emulate", "--sizes", "16,12,4", "--batch", "8", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "the CUDA step matches the CPU backend's" in out and "resident" in out and "cpu" in out
    if not HAS_GPU:
        assert bench.main([]) == 0
        assert "no CUDA driver/GPU here" in capsys.readouterr().out


def test_shapes_computed_by_kernels_run_as_a_chain_of_cuda_programs():
    from tcomp.backend.cpu.staged import StagedFunction

    n = T.ivector("n")
    a = T.arange(T.max(n))
    b = T.zeros((T.sum(a),), dtype="int32") + T.max(n)
    f = tcomp.function([n], [a * 2, b], backend="cuda")
    assert isinstance(f.compiled, StagedFunction) and len(f.compiled.stages) == 3
    assert f.dump("ptx").count(".version") == 3
    with use_device(EmulatedDevice()):
        for data in ([3, 1, 2], [5], [0, -2]):
            nv = np.asarray(data, "int32")
            top = max(int(nv.max()), 0)
            got = f(nv)
            np.testing.assert_array_equal(got[0], np.arange(top) * 2)
            np.testing.assert_array_equal(got[1], np.full(top * (top - 1) // 2, nv.max(), "int32"))
