"""Every op's kernel program compiles to PTX in this process (LLVM aborts the whole process
on an intrinsic NVPTX cannot select, so merely finishing proves none is emitted) and, where
the CUDA toolkit's ptxas is installed, the PTX assembles for sm_80 and sm_90; so does the
MLP training step, and ``fn.dump('ptx')`` / ``tcomp dump --stage ptx`` work without a GPU."""
import subprocess
import sys

import pytest
from nvptx_cases import OPS, lowered, op_case

import tcomp
import tcomp.tensor as T
from tcomp.backend.nvptx.codegen import generate
from tcomp.backend.nvptx.target import emit_ptx, find_ptxas, ptxas
from tcomp.examples.mlp import build_classifier_step
from tcomp.passes.lower_kernels import lower_kernels

ARCHS = ("sm_80", "sm_90")


def _nvptx_or_skip():
    import llvmlite.binding as llvm

    from tcomp.backend.nvptx.target import nvptx_machine

    llvm.initialize_all_targets()
    try:
        nvptx_machine("sm_80")
    except RuntimeError as e:
        pytest.skip(str(e))


def _assemble(ptx, tmp_path):
    if find_ptxas() is None:
        return False
    for arch in ARCHS:
        ptxas(ptx[arch], arch, tmp_path)
    return True


def _ptx_of(p):
    module, specs = generate(p, "gpu")
    text = str(module)
    return {arch: emit_ptx(text, arch) for arch in ARCHS}, specs


def _check_op(op, dtypes, tmp_path):
    _nvptx_or_skip()
    done = 0
    for d in dtypes:
        case = op_case(op, d)
        if case is None or not lowered(case[2]):
            continue
        ptx, specs = _ptx_of(case[2])
        for arch in ARCHS:
            assert f".target {arch}" in ptx[arch]
            assert "call." not in ptx[arch], f"{op} {d}: PTX calls a function (a libcall)"
            for s in specs:
                assert f".entry {s.name}" in ptx[arch]
        _assemble(ptx, tmp_path)
        done += 1
    if not done:
        pytest.skip(f"{op}: no dtype lowered by the nvptx backend")


@pytest.mark.parametrize("op", OPS)
def test_every_op_assembles(op, tmp_path):
    _check_op(op, ("float32",), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("op", OPS)
def test_every_op_every_dtype_assembles(op, tmp_path):
    _check_op(op, ("bool", "int8", "int16", "int32", "int64", "uint8", "float64"), tmp_path)


def test_mlp_training_step_assembles(tmp_path):
    _nvptx_or_skip()
    step, _, _ = build_classifier_step(sizes=(784, 256, 128, 10), batch=64, backend="reference")
    ptx, specs = _ptx_of(lower_kernels(step.optimized, step.donations))
    assert len(specs) > 20
    if not _assemble(ptx, tmp_path):
        pytest.skip("ptxas not installed: PTX generated but not assembled")


def test_split_reduction_kernels_assemble(tmp_path):
    """A reduction's module also holds its two-pass form (partials, then the combine)."""
    _nvptx_or_skip()
    x = T.matrix("x")
    f = tcomp.function([x], [T.argmax(x, axis=1), (x * x).sum(), x.prod(axis=0)], backend="reference")
    p = lower_kernels(f.optimized, f.donations)
    ptx, specs = _ptx_of(p)
    split = [s for s in specs if s.split]
    assert len(split) == 3
    for s in split:
        for arch in ARCHS:
            assert f".entry {s.split[0].name}" in ptx[arch] and f".entry {s.split[1].name}" in ptx[arch]
    _assemble(ptx, tmp_path)


def test_dump_ptx_without_a_gpu():
    _nvptx_or_skip()
    x = T.matrix("x")
    f = tcomp.function([x], T.nnet.softmax(T.dot(x, x.T)).sum(axis=1), backend="cuda")
    assert f.dump_stages()[-2:] == ("llvm", "ptx")
    assert ".entry" in f.dump("ptx") and "nvvm.annotations" in f.dump("llvm")


def test_cli_dump_stage_ptx():
    _nvptx_or_skip()
    res = subprocess.run([sys.executable, "-m", "tcomp", "dump", "--backend", "cuda", "--stage", "ptx"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert ".target sm_" in res.stdout and ".entry" in res.stdout
