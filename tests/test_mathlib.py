"""tcomp's vectorizable math library: ulp error against high-precision NumPy references,
exact special values, scalar == explicit-vector results, and the IR restriction (no libm, only
intrinsics that NVPTX can select).  Kernels are JIT-compiled through the one process-wide
engine (tcomp.runtime.engine)."""
from __future__ import annotations

import re

import numpy as np
import pytest
from llvmlite import ir

from tcomp.backend.mathlib import ALLOWED_INTRINSICS, SUPPORTED_UNARY, emit_atan2, emit_pow, emit_unary
from tcomp.backend.mathlib_accuracy import (
    BINARY,
    build_kernel_module,
    compile_kernel,
    measure,
    measure_ulp_table,
    random_floats,
    reference,
    sample_atan2,
    sample_inputs,
    sample_pow,
    ulp_errors,
)

UNARY = sorted(SUPPORTED_UNARY)
DTYPES = ["float32", "float64"]
MAX_ULP = 4.0
_KERNELS: dict = {}


def kernel(func, dtype, width=1):
    key = (func, dtype, width)
    if key not in _KERNELS:
        _KERNELS[key] = compile_kernel(func, dtype, width)[0]
    return _KERNELS[key]


def _bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def test_supported_set():
    assert SUPPORTED_UNARY == {"exp", "log", "log1p", "expm1", "tanh", "sigmoid", "softplus", "erf", "sin",
                               "cos", "sqrt", "arctan", "log2", "log10", "exp2"}
    assert BINARY == ("pow", "arctan2")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("func", UNARY + list(BINARY))
def test_max_ulp_error(func, dtype):
    """Dense grid + random bit patterns (subnormals, huge, negative) + specials, vs reference."""
    err = measure(func, dtype, 1, n=100_000)[0]
    assert err <= MAX_ULP, f"{func} {dtype}: max error {err:.2f} ulp"


def test_measure_ulp_table_covers_everything():
    """The table the bench/README quote: every function, both dtypes, within the bound."""
    table = measure_ulp_table(n=4000)
    assert set(table) == {(f, d) for f in UNARY + list(BINARY) for d in DTYPES}
    assert max(table.values()) <= MAX_ULP, table


@pytest.mark.parametrize("dtype,width", [("float32", 8), ("float64", 4)])
@pytest.mark.parametrize("func", UNARY + list(BINARY))
def test_vector_body_matches_scalar(func, dtype, width):
    """The explicit <N x T> body gives bit-identical results to the scalar loop."""
    args = sample_pow(dtype, 8000) if func == "pow" else sample_atan2(dtype, 8000) if func == "arctan2" else \
        (sample_inputs(func, dtype, 8000),)
    a = kernel(func, dtype, 1)(*args)
    b = kernel(func, dtype, width)(*args)
    same = (_bits(a) == _bits(b)) | (np.isnan(a) & np.isnan(b))
    assert same.all(), f"{func} {dtype}: lanes differ at {args[0][~same][:5]}"


def _exact_reference(func, dtype, x):
    with np.errstate(over="ignore"):
        return reference(func, dtype, x).astype(dtype)


EDGE = [0.0, -0.0, np.inf, -np.inf, np.nan]
SATURATING = [1e4, -1e4, 1e30, -1e30]        # results are exactly 0, +-1, inf or x itself
EXTRA = {"log": [-1.0, -1e-30, 1.0], "sqrt": [-1.0, 1.0, 4.0] + SATURATING, "log1p": [-1.0, -2.0, -1e-30],
         "expm1": [-50.0] + SATURATING, "exp": [-200.0, -1000.0, 1000.0] + SATURATING,
         "tanh": SATURATING, "sigmoid": SATURATING, "softplus": SATURATING, "erf": SATURATING,
         "arctan": SATURATING + [1.0, -1.0], "log2": [-1.0, -1e-30, 1.0, 2.0, 0.5, 1024.0],
         "log10": [-1.0, -1e-30, 1.0, 10.0, 100.0, 1000.0, 0.1],
         "exp2": [-200.0, -1100.0, 1100.0, 3.0, -3.0, 10.0] + SATURATING}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("func", UNARY)
def test_special_values_exact(func, dtype):
    """inf, -inf, nan, signed zeros, overflow/underflow and out-of-domain inputs: the result is
    exactly NumPy's (sign of zero included)."""
    x = np.array(EDGE + EXTRA.get(func, []), dtype=dtype)
    y = kernel(func, dtype)(x)
    want = _exact_reference(func, dtype, x)
    assert np.array_equal(np.isnan(y), np.isnan(want)), (func, x, y, want)
    ok = ~np.isnan(want)
    assert np.array_equal(y[ok], want[ok]), (func, x[ok], y[ok], want[ok])
    assert np.array_equal(np.signbit(y[ok]), np.signbit(want[ok])), (func, x[ok], y[ok], want[ok])


@pytest.mark.parametrize("dtype", DTYPES)
def test_named_special_values(dtype):
    """The semantics the issue spells out, written down independently of any reference."""
    inf, nan = np.inf, np.nan
    cases = {
        "log": [(0.0, -inf), (-0.0, -inf), (-1.0, nan), (inf, inf), (1.0, 0.0)],
        "log1p": [(-1.0, -inf), (-2.0, nan), (-0.0, -0.0), (inf, inf)],
        "exp": [(-inf, 0.0), (inf, inf), (1e5, inf), (-1e5, 0.0), (-0.0, 1.0)],
        "expm1": [(-inf, -1.0), (inf, inf), (-0.0, -0.0), (-1e5, -1.0)],
        "tanh": [(inf, 1.0), (-inf, -1.0), (-0.0, -0.0), (50.0, 1.0), (-50.0, -1.0)],
        "sigmoid": [(inf, 1.0), (-inf, 0.0), (1e5, 1.0), (-1e5, 0.0), (0.0, 0.5)],
        "softplus": [(inf, inf), (-inf, 0.0), (1e5, 1e5), (-1e5, 0.0)],
        "erf": [(inf, 1.0), (-inf, -1.0), (-0.0, -0.0), (10.0, 1.0), (-10.0, -1.0)],
        "sin": [(inf, nan), (-inf, nan), (-0.0, -0.0), (0.0, 0.0)],
        "cos": [(inf, nan), (-inf, nan), (0.0, 1.0), (-0.0, 1.0)],
        "sqrt": [(-1.0, nan), (-0.0, -0.0), (inf, inf)],
        "arctan": [(inf, np.pi / 2), (-inf, -np.pi / 2), (-0.0, -0.0), (1.0, np.pi / 4), (-1.0, -np.pi / 4)],
        "log2": [(0.0, -inf), (-1.0, nan), (inf, inf), (1.0, 0.0), (8.0, 3.0), (0.125, -3.0), (2.0 ** -140, -140.0)],
        "log10": [(0.0, -inf), (-1.0, nan), (inf, inf), (1.0, 0.0), (10.0, 1.0), (1000.0, 3.0), (1e-5, -5.0)],
        "exp2": [(-inf, 0.0), (inf, inf), (0.0, 1.0), (-0.0, 1.0), (3.0, 8.0), (-2.0, 0.25), (1e5, inf), (-1e5, 0.0)],
    }
    for func, pairs in cases.items():
        x = np.array([p[0] for p in pairs] + [nan], dtype=dtype)
        want = np.array([p[1] for p in pairs] + [nan], dtype=dtype)
        y = kernel(func, dtype)(x)
        assert np.array_equal(y, want, equal_nan=True), (func, x, y, want)
        assert np.array_equal(np.signbit(y[~np.isnan(y)]), np.signbit(want[~np.isnan(want)])), (func, x, y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pow_special_grid_matches_numpy(dtype):
    """C99/NumPy pow special cases: 0, -0, +-1, +-inf, nan bases/exponents, odd/even/non-integer
    exponents with negative bases.  Results must agree in class (nan, inf, zero and their signs)
    and within 1 ulp elsewhere."""
    vals = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 2.5, -2.5, np.inf, -np.inf, np.nan,
                     1e10, -1e10, 1e-10], dtype=dtype)
    a, b = (g.ravel() for g in np.meshgrid(vals, vals))
    y = kernel("pow", dtype)(a, b)
    with np.errstate(all="ignore"):
        want = np.power(a, b)
    assert np.array_equal(np.isnan(y), np.isnan(want)), [(a[i], b[i], y[i], want[i])
                                                          for i in np.flatnonzero(np.isnan(y) != np.isnan(want))]
    fin = ~np.isnan(want)
    assert np.array_equal(np.signbit(y[fin]), np.signbit(want[fin]))
    assert np.array_equal(np.isinf(y[fin]), np.isinf(want[fin]))
    assert np.array_equal(y[fin] == 0, want[fin] == 0)
    assert ulp_errors(y[fin], reference("pow", dtype, a[fin], b[fin]), dtype).max() <= 1.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_arctan2_special_grid_matches_numpy(dtype):
    """C99 atan2 on signed zeros, infinities and nan in every combination: the exact value
    (signs of zeros included) where NumPy's is a multiple of pi/4 or zero, <= 1 ulp elsewhere."""
    vals = np.array([0.0, -0.0, 1.0, -1.0, 3.5, -3.5, 1e-30, -1e-30, np.inf, -np.inf, np.nan], dtype=dtype)
    y, x = (g.ravel() for g in np.meshgrid(vals, vals))
    got = kernel("arctan2", dtype)(y, x)
    want = np.arctan2(y, x)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    fin = ~np.isnan(want)
    assert np.array_equal(np.signbit(got[fin]), np.signbit(want[fin]))
    assert ulp_errors(got[fin], reference("arctan2", dtype, y[fin], x[fin]), dtype).max() <= 1.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_pow_integer_exponents_of_negative_bases_are_exact(dtype):
    a = np.array([-2.0, -2.0, -3.0, -0.5, -10.0, -1.0, -1.0, -4.0], dtype=dtype)
    b = np.array([3.0, 4.0, 5.0, -3.0, 7.0, 1e9 + 1, 1e9, -2.0], dtype=dtype)
    y = kernel("pow", dtype)(a, b)
    assert np.array_equal(y, np.power(a, b))


def test_pow_large_exponent_near_one_float64():
    """Double-word log keeps the error bound for big |b| with a near 1 (|b log a| <= 700)."""
    rng = np.random.default_rng(7)
    b = rng.uniform(-1e6, 1e6, 20000)
    a = 1 + rng.uniform(-1, 1, 20000) * (700 / np.abs(b))
    y = kernel("pow", "float64")(a, b)
    assert ulp_errors(y, reference("pow", "float64", a, b), "float64").max() <= MAX_ULP


@pytest.mark.parametrize("dtype,limit", [("float32", 1e6), ("float64", 1e15)])
@pytest.mark.parametrize("func", ["sin", "cos"])
def test_trig_domain_and_bounded_beyond(func, dtype, limit):
    """Within the documented domain the ulp bound holds; beyond it, output stays in [-1, 1]."""
    rng = np.random.default_rng(11)
    x = random_floats(rng, dtype, 50000, -limit, limit)
    y = kernel(func, dtype)(x)
    assert ulp_errors(y, reference(func, dtype, x), dtype).max() <= MAX_ULP
    big = random_floats(rng, dtype, 50000, -float(np.finfo(dtype).max), float(np.finfo(dtype).max))
    yb = kernel(func, dtype)(big)
    assert np.all(np.abs(yb) <= 1.0)


def test_subnormal_inputs_and_outputs():
    """Gradual underflow: exp into subnormals, log/sqrt of subnormals, identity-like functions."""
    for dtype in DTYPES:
        fi = np.finfo(dtype)
        tiny = np.array([fi.smallest_subnormal, 3 * fi.smallest_subnormal, fi.smallest_normal / 3,
                         -fi.smallest_subnormal], dtype=dtype)
        for func in ["log", "sqrt", "expm1", "log1p", "tanh", "sin", "erf"]:
            x = np.abs(tiny) if func in ("log", "sqrt") else tiny
            y = kernel(func, dtype)(x)
            assert ulp_errors(y, reference(func, dtype, x), dtype).max() <= MAX_ULP, (func, dtype, x, y)
        lo = -87.5 if dtype == "float32" else -708.5
        x = np.linspace(lo - 15, lo, 2000).astype(dtype)   # results below the smallest normal
        y = kernel("exp", dtype)(x)
        assert np.any((y > 0) & (y < fi.smallest_normal))
        assert ulp_errors(y, reference("exp", dtype, x), dtype).max() <= MAX_ULP


# ------------------------------------------------------------------------------------------------
# IR restrictions
# ------------------------------------------------------------------------------------------------
_CALL = re.compile(r"call [^@]*@\"?([\w.]+)\"?\(")


@pytest.mark.parametrize("dtype,width", [("float32", 1), ("float32", 8), ("float64", 1), ("float64", 4)])
def test_emitted_ir_calls_only_allowed_intrinsics(dtype, width):
    allowed = tuple(name + "." for name in ALLOWED_INTRINSICS)
    for func in UNARY + list(BINARY):
        text = str(build_kernel_module(func, dtype, width, f"tcomp_mathlib_irscan_{func}_{dtype}_{width}"))
        defined = set(re.findall(r"define [^@]*@\"?([\w.]+)\"?\(", text))
        for callee in _CALL.findall(text):
            assert callee.startswith(allowed) or (callee.startswith("tcomp.") and callee in defined), \
                f"{func} {dtype} x{width}: call to {callee}"
        for name in defined - {f"tcomp_mathlib_irscan_{func}_{dtype}_{width}"}:
            line = next(ln for ln in text.splitlines() if ln.startswith("define") and name in ln)
            assert "internal" in line and "alwaysinline" in text, line
        assert not re.search(r"\b(nnan|ninf|fast)\b", text), f"{func}: forbidden fast-math flag"


def test_optimized_kernel_has_no_libm_call_and_is_vectorized():
    """After O3 the helpers are inlined: no call to any non-intrinsic remains, and the scalar
    loop was vectorized (vector types appear in the optimized IR)."""
    from tcomp.runtime.engine import compile_ir

    for func in ["exp", "tanh", "sin", "erf", "pow"]:
        name = f"tcomp_mathlib_optcheck_{func}"
        mod = compile_ir(str(build_kernel_module(func, "float32", 1, name)))
        opt = str(mod)
        assert not [c for c in _CALL.findall(opt) if not c.startswith("llvm.")], func
        body = opt[opt.index(f"@{name}("):]
        assert re.search(r"<\d+ x float>", body), f"{func}: loop not vectorized"


def test_functions_are_get_or_create_per_module():
    module = ir.Module(name="tcomp_mathlib_dedupe")
    fn = ir.Function(module, ir.FunctionType(ir.FloatType(), [ir.FloatType()]), "f")
    b = ir.IRBuilder(fn.append_basic_block())
    # softplus calls exp (also called directly) and log1p, which calls log: one definition each
    v = emit_unary(b, "softplus", emit_unary(b, "exp", fn.args[0]))
    b.ret(emit_unary(b, "exp", emit_unary(b, "tanh", v)))
    names = [g.name for g in module.global_values if g.name.startswith("tcomp.")]
    assert sorted(names) == ["tcomp.exp.f32", "tcomp.log.f32", "tcomp.log1p.f32", "tcomp.softplus.f32",
                             "tcomp.tanh.f32"]


def test_bad_arguments_raise_clear_errors():
    module = ir.Module(name="tcomp_mathlib_errors")
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ir.IntType(32), ir.FloatType(), ir.DoubleType()]), "g")
    b = ir.IRBuilder(fn.append_basic_block())
    with pytest.raises(ValueError, match="unknown function 'gamma'"):
        emit_unary(b, "gamma", fn.args[1])
    with pytest.raises(TypeError, match="expected float/double"):
        emit_unary(b, "exp", fn.args[0])
    with pytest.raises(TypeError, match="base has type float but exponent has type double"):
        emit_pow(b, fn.args[1], fn.args[2])
    with pytest.raises(TypeError, match="y has type float but x has type double"):
        emit_atan2(b, fn.args[1], fn.args[2])


_NVPTX_SCRIPT = r'''
import sys
import llvmlite.binding as llvm
from llvmlite import ir
from tcomp.backend.mathlib import SUPPORTED_UNARY, emit_atan2, emit_pow, emit_unary
llvm.initialize_all_targets()
llvm.initialize_all_asmprinters()
tm = llvm.Target.from_triple("nvptx64-nvidia-cuda").create_target_machine(cpu="sm_80", opt=3)
for i, ty in enumerate([ir.FloatType(), ir.DoubleType(), ir.VectorType(ir.FloatType(), 4)]):
    m = ir.Module(name="k")
    m.triple = "nvptx64-nvidia-cuda"
    for f in sorted(SUPPORTED_UNARY) + ["pow", "arctan2"]:
        fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [ty.as_pointer()]), "k_" + f)
        b = ir.IRBuilder(fn.append_basic_block())
        x = b.load(fn.args[0])
        two = {"pow": emit_pow, "arctan2": emit_atan2}
        b.store(two[f](b, x, x) if f in two else emit_unary(b, f, x), fn.args[0])
        b.ret_void()
    mod = llvm.parse_assembly(str(m))
    mod.verify()
    pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=3))
    pb.getModulePassManager().run(mod, pb)
    with open(sys.argv[1] + "/k%d.ptx" % i, "w") as fh:
        fh.write(tm.emit_assembly(mod))
'''


def test_nvptx_codegen_selects_everything(tmp_path):
    """The whole library lowers to PTX (LLVM aborts the process on an unselectable libcall, so
    this runs in a subprocess) and, where ptxas is installed, the PTX assembles."""
    import shutil
    import subprocess
    import sys

    import llvmlite.binding as llvm

    llvm.initialize_all_targets()
    try:
        llvm.Target.from_triple("nvptx64-nvidia-cuda")
    except RuntimeError:
        pytest.skip("llvmlite built without the NVPTX target")
    proc = subprocess.run([sys.executable, "-c", _NVPTX_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ptx = sorted(tmp_path.glob("*.ptx"))
    assert len(ptx) == 3
    for p in ptx:
        assert "call" not in p.read_text(), f"{p.name}: PTX contains a call"
    if shutil.which("ptxas"):
        for p in ptx:
            res = subprocess.run(["ptxas", "-arch=sm_80", str(p), "-o", str(p.with_suffix(".cubin"))],
                                 capture_output=True, text=True, timeout=120)
            assert res.returncode == 0, res.stderr[-2000:]


@pytest.mark.parametrize("dtype", DTYPES)
def test_tanh_dense_around_branch_and_saturation(dtype):
    """tanh switches from its odd polynomial to 1 - 2/(exp(2|x|) + 1) at |x| = 0.625 and clamps
    |x| where it rounds to 1: dense sweeps across both seams (and every reduction step k in
    between) stay within 2 ulp of the reference, symmetric in sign."""
    sat = 9.1 if dtype == "float32" else 19.1
    x = np.concatenate([np.linspace(0.55, 0.7, 20001), np.linspace(0.6, sat + 1.5, 40001),
                        np.linspace(sat - 0.2, sat + 1.2, 20001)]).astype(dtype)
    x = np.concatenate([x, -x])
    y = kernel("tanh", dtype)(x)
    assert ulp_errors(y, reference("tanh", dtype, x), dtype).max() <= 2.0
    assert np.array_equal(y[: x.size // 2], -y[x.size // 2:])
    assert np.all(np.abs(y) <= 1.0)


@pytest.mark.slow
def test_tanh_float32_exhaustive_where_it_is_not_trivial():
    """Every float32 in [2^-12, 10.5] (below, tanh x rounds to x or next to it; above, to 1):
    within 1.25 ulp of the float64 reference (1.21 measured), and odd (f(-x) == -f(x) bitwise)."""
    k = kernel("tanh", "float32", 8)
    lo, hi = (int(np.float32(v).view(np.uint32)) for v in (2.0 ** -12, 10.5))
    step = 1 << 23
    worst = 0.0
    for start in range(lo, hi, step):
        x = np.arange(start, min(start + step, hi), dtype=np.uint32).view(np.float32)
        y = k(x)
        worst = max(worst, float(ulp_errors(y, np.tanh(x.astype(np.float64)), "float32").max()))
        assert np.array_equal(_bits(k(-x)), _bits(-y))
    assert worst <= 1.25, worst
