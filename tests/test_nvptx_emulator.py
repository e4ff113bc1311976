"""The CPU grid emulator: the NVPTX kernel bodies (same generator, host triple, block and
thread ids from loops, block memory and barriers emulated by running each phase for all
threads) run every op's kernel program and the MLP training step; results are compared
with the reference interpreter (``tcomp.ir.evaluate``)."""
import numpy as np
import pytest
import test_cpu_ops as C
from conftest import TEST_DTYPES
from nvptx_cases import NOT_LOWERED_KINDS, OPS, lowered, op_case

from tcomp.backend.nvptx.codegen import supported_kinds
from tcomp.backend.nvptx.emulator import EmulatedProgram
from tcomp.examples.mlp import build_classifier_step, build_mse_mlp
from tcomp.ir import evaluate
from tcomp.passes.lower_kernels import KERNEL_KINDS, lower_kernels


def _check(op, dtype, nblocks=3):
    case = op_case(op, dtype)
    if case is None:
        pytest.skip(f"{op} does not take {dtype}")
    g, ins, p = case
    if not lowered(p):
        with pytest.raises(TypeError, match="is not lowered yet"):
            EmulatedProgram(p)
        return
    C.compare(EmulatedProgram(p, nblocks=nblocks)(ins), evaluate(g, ins), f"{op} {dtype}")


@pytest.mark.parametrize("op", OPS)
def test_every_op_float32(op):
    _check(op, "float32")


@pytest.mark.parametrize("op", ["mod", "floordiv", "pow", "argmax", "dot", "inc_subtensor", "cumsum", "cast"])
def test_integer_and_bool_dtypes(op):
    for d in ("int32", "bool"):
        case = op_case(op, d)
        if case is not None:
            _check(op, d, nblocks=1)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", TEST_DTYPES)
@pytest.mark.parametrize("op", OPS)
def test_every_op_every_dtype(op, dtype):
    _check(op, dtype)


def test_every_kernel_kind_is_lowered_or_listed():
    kinds = set(KERNEL_KINDS.values()) | {"elemwise", "reduce", "scalar", "copy", "transpose"}
    assert kinds - NOT_LOWERED_KINDS == set(supported_kinds()) & kinds
    assert not (NOT_LOWERED_KINDS & set(supported_kinds()))


def _classifier_arrays(step, batch, rng):
    arrays = [rng.standard_normal((batch, 16)).astype("float32"), rng.integers(0, 4, batch).astype("int32")]
    return arrays + [s.get_value() for s in step.shared_inputs]


@pytest.mark.parametrize("nblocks", [5])
def test_mlp_training_step(nblocks):
    step, _, _ = build_classifier_step(sizes=(16, 12, 12, 4), batch=8, backend="reference")
    p = lower_kernels(step.optimized, step.donations)
    arrays = _classifier_arrays(step, 8, np.random.default_rng(1))
    got = EmulatedProgram(p, nblocks=nblocks)(arrays)
    for a, w in zip(got, evaluate(step.optimized, arrays)):
        np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-6)


def test_symbolic_batch_larger_than_a_tile():
    """A batch of 150 rows: several 64-row matmul tiles with ragged edges, reductions over
    more elements than a block has threads."""
    train, _, _ = build_mse_mlp(5, 70, 3, backend="reference")
    p = lower_kernels(train.optimized, train.donations)
    rng = np.random.default_rng(0)
    for batch in (1, 150):
        arrays = [rng.standard_normal((batch, 5)).astype("float32"), rng.standard_normal((batch, 3)).astype("float32")]
        arrays += [s.get_value() for s in train.shared_inputs]
        got = EmulatedProgram(p, nblocks=2)(arrays)
        for a, w in zip(got, evaluate(train.optimized, arrays)):
            np.testing.assert_allclose(a, w, rtol=1e-4, atol=1e-5)


def test_out_of_bounds_index_array_raises_the_cpu_message():
    step, _, _ = build_classifier_step(sizes=(16, 12, 12, 4), batch=8, backend="reference")
    p = lower_kernels(step.optimized, step.donations)
    arrays = _classifier_arrays(step, 8, np.random.default_rng(1))
    arrays[1][3] = 7
    with pytest.raises(IndexError, match=r"inc_subtensor: index out of bounds \(checked in native code\)"):
        EmulatedProgram(p)(arrays)


def test_shape_checks_come_from_the_shape_program():
    step, _, _ = build_classifier_step(sizes=(16, 12, 12, 4), batch=8, backend="reference")
    p = lower_kernels(step.optimized, step.donations)
    arrays = _classifier_arrays(step, 8, np.random.default_rng(1))
    arrays[0] = arrays[0][:, :5].copy()
    with pytest.raises(ValueError, match="input 'x': expected f32"):
        EmulatedProgram(p)(arrays)


@pytest.mark.parametrize("op,dtype", [("random_uniform", "float32"), ("random_uniform", "float64"),
                                      ("random_binomial", "int32"), ("random_binomial", "bool")])
def test_random_streams_are_bit_exact(op, dtype):
    """Same Philox counters as the CPU backend and the reference: same seed, same bits."""
    g, ins, p = op_case(op, dtype)
    for got, want in zip(EmulatedProgram(p)(ins), evaluate(g, ins)):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("build", ["_conv_step", "_random_streams", "_indexing", "_minibatch_givens"])
def test_programs_of_example_functions(build):
    """tests/test_kernel_program.py's example functions (a conv net training step, random
    streams, indexing with scalar and array indices, givens): outputs and their errors."""
    import test_kernel_program as KP

    f, good, bad = getattr(KP, build)()
    g = f.optimized
    p = lower_kernels(g, f.donations)
    shared = [s.get_value() for s in f.shared_inputs]
    em = EmulatedProgram(p)
    for a, w in zip(em(good + shared), evaluate(g, good + shared)):
        np.testing.assert_allclose(a, w, rtol=1e-4, atol=1e-5)
    for arrays in bad:
        with pytest.raises((ValueError, IndexError)) as got:
            em(arrays + shared)
        with pytest.raises(type(got.value)) as want:
            evaluate(g, arrays + shared)
        assert type(got.value) is type(want.value)
