"""The CUDA runtime (``backend='cuda'``): a clear error at call time without a driver; with
one, every op and the MLP training step on the GPU against the reference interpreter
(skipped here until a machine with an NVIDIA GPU runs the suite)."""
import numpy as np
import pytest
import test_cpu_ops as C
from nvptx_cases import OPS, lowered, op_case

import tcomp
import tcomp.tensor as T
from tcomp.backend.nvptx import driver
from tcomp.backend.nvptx.runtime import CudaCompiled
from tcomp.examples.mlp import build_classifier_step
from tcomp.ir import evaluate

HAS_GPU = driver.available()
gpu = pytest.mark.skipif(not HAS_GPU, reason="no CUDA driver/GPU on this machine")


@pytest.mark.skipif(HAS_GPU, reason="a CUDA driver is present")
def test_no_driver_is_a_clear_error_at_call_time():
    x = T.vector("x")
    f = tcomp.function([x], T.exp(x) * 2, backend="cuda")  # compiling needs no GPU
    assert ".entry" in f.dump("ptx")
    with pytest.raises(driver.CudaUnavailable, match="libcuda.so.1|cuInit"):
        f(np.ones(3, "float32"))


def test_memory_pool_reuses_exact_sizes():
    class FakeDevice:
        def __init__(self):
            self.n = 0

        def alloc(self, nbytes):
            self.n += 1
            return 4096 * self.n

    pool = driver.MemoryPool(FakeDevice())
    a = pool.get(100)
    pool.put(a, 100)
    assert pool.get(100) == a and pool.get(100) != a and pool.allocated == 200


@gpu
@pytest.mark.parametrize("op", OPS)
def test_every_op_on_the_gpu(op):
    for d in ("float32", "int32", "float64", "bool"):
        case = op_case(op, d)
        if case is None or not lowered(case[2]):
            continue
        g, ins, _ = case
        C.compare(CudaCompiled(g)(ins), evaluate(g, ins), f"{op} {d} on the GPU")


@gpu
def test_mlp_training_step_on_the_gpu():
    step, _, _ = build_classifier_step(sizes=(784, 256, 128, 10), batch=64, backend="reference")
    cuda = CudaCompiled(step.optimized, donate=step.donations)
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((64, 784)).astype("float32"), rng.integers(0, 10, 64).astype("int32")]
    arrays += [s.get_value() for s in step.shared_inputs]
    for a, w in zip(cuda(arrays), evaluate(step.optimized, arrays)):
        np.testing.assert_allclose(a, w, rtol=2e-4, atol=2e-5)
    before = cuda.pool.allocated
    cuda(arrays)
    assert cuda.pool.allocated == before  # the second call allocates nothing
