"""Accuracy measurement for :mod:`tcomp.backend.mathlib`: JIT test kernels, input sweeps,
high-precision references and ulp errors.  Used by tests/test_mathlib.py and by the bench /
README (``measure_ulp_table()``), so the numbers quoted anywhere come from one place.

References: float32 results are compared with NumPy's float64 functions (rounding is done by
the ulp measure); float64 results with NumPy's ``longdouble`` (x87 80-bit, 11 extra bits)
functions, and erf in float64 with mpmath when it is installed (NumPy has no erf).
"""
from __future__ import annotations

import ctypes
import itertools
import math

import numpy as np
from llvmlite import ir

from .mathlib import SUPPORTED_UNARY, emit_atan2, emit_pow, emit_unary

_counter = itertools.count()
_I64 = ir.IntType(64)
_LLTYPE = {"float32": ir.FloatType(), "float64": ir.DoubleType()}
_CTYPE = {"float32": ctypes.c_float, "float64": ctypes.c_double}
#: the two-argument functions (measured over their own sweeps)
BINARY = ("pow", "arctan2")
_EMIT_BINARY = {"pow": emit_pow, "arctan2": emit_atan2}


def build_kernel_module(func: str, dtype: str, width: int, name: str) -> ir.Module:
    """``void name(T* in0, [T* in1,] T* out, i64 n)``: out[i] = func(in...[i]) for i < n,
    ``width`` lanes per iteration (an explicit ``<width x T>`` body when width > 1; n must then
    be a multiple of width)."""
    el = _LLTYPE[dtype]
    vt = ir.VectorType(el, width) if width > 1 else el
    arity = 2 if func in BINARY else 1
    align = 4 if dtype == "float32" else 8          # numpy buffers are only element-aligned
    module = ir.Module(name=name)
    ptr = el.as_pointer()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr] * (arity + 1) + [_I64]), name)
    entry = fn.append_basic_block("entry")
    loop = fn.append_basic_block("loop")
    done = fn.append_basic_block("done")
    b = ir.IRBuilder(entry)
    n = fn.args[-1]
    b.cbranch(b.icmp_signed(">", n, ir.Constant(_I64, 0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(_I64)
    i.add_incoming(ir.Constant(_I64, 0), entry)
    vals = []
    for k in range(arity):
        p = b.gep(fn.args[k], [i])
        if width > 1:
            p = b.bitcast(p, vt.as_pointer())
        vals.append(b.load(p, align=align))
    res = _EMIT_BINARY[func](b, *vals) if func in BINARY else emit_unary(b, func, vals[0])
    p = b.gep(fn.args[arity], [i])
    if width > 1:
        p = b.bitcast(p, vt.as_pointer())
    b.store(res, p, align=align)
    nxt = b.add(i, ir.Constant(_I64, width))
    i.add_incoming(nxt, loop)
    b.cbranch(b.icmp_signed("<", nxt, n), loop, done)
    b.position_at_end(done)
    b.ret_void()
    return module


def compile_kernel(func: str, dtype: str, width: int = 1):
    """JIT ``func`` through the process-wide engine; returns (numpy callable, module IR text)."""
    from tcomp.runtime.engine import compile_ir, function_address

    name = f"tcomp_mathlib_kernel_{func}_{dtype}_w{width}_{next(_counter)}"
    module = build_kernel_module(func, dtype, width, name)
    text = str(module)
    compile_ir(text)
    ct = _CTYPE[dtype]
    arity = 2 if func in BINARY else 1
    proto = ctypes.CFUNCTYPE(None, *([ctypes.POINTER(ct)] * (arity + 1)), ctypes.c_int64)
    cfn = proto(function_address(name))

    def call(*arrays):
        arrays = [np.ascontiguousarray(a, dtype=dtype) for a in arrays]
        n = arrays[0].size
        padded = -(-n // width) * width
        ins = [np.resize(a, padded) if padded != n else a for a in arrays]
        out = np.empty(padded, dtype=dtype)
        cfn(*[a.ctypes.data_as(ctypes.POINTER(ct)) for a in ins], out.ctypes.data_as(ctypes.POINTER(ct)),
            ctypes.c_int64(padded))
        return out[:n]

    call.keep_alive = cfn
    return call, text


# ----------------------------------------------------------------------------------------------
# references and ulp errors
# ----------------------------------------------------------------------------------------------
def _erf_ref(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float32":
        return np.vectorize(math.erf, otypes=[np.float64])(x.astype(np.float64))
    import mpmath

    mpmath.mp.prec = 128
    out = np.empty(x.size, dtype=np.longdouble)
    for i, v in enumerate(x.astype(np.float64)):
        if v == 0.0:                   # mpmath has no signed zero; erf(-0.0) = -0.0
            out[i] = v
            continue
        if not math.isfinite(v):
            out[i] = v if math.isnan(v) else math.copysign(1.0, v)
            continue
        r = mpmath.erf(mpmath.mpf(v))
        hi = float(r)
        out[i] = np.longdouble(hi) + np.longdouble(float(r - hi))
    return out


def reference(func: str, dtype: str, *xs: np.ndarray):
    """High-precision reference as a float64/longdouble array (see module docstring)."""
    hp = np.float64 if dtype == "float32" else np.longdouble
    xs = [x.astype(hp) for x in xs]
    x = xs[0]
    with np.errstate(all="ignore"):
        if func == "erf":
            return _erf_ref(x, dtype)
        if func == "pow":
            return np.power(x, xs[1])
        if func == "arctan2":
            return np.arctan2(x, xs[1])
        if func == "sigmoid":
            return 1 / (1 + np.exp(-x))
        if func == "softplus":
            return np.logaddexp(hp(0), x)
        return getattr(np, func)(x)


def ulp_errors(y: np.ndarray, ref: np.ndarray, dtype: str) -> np.ndarray:
    """|y - ref| in units of the last place of ``dtype`` at ref (subnormal spacing below the
    normal range).  Where ref rounds to inf/nan in ``dtype``, y must match it exactly (0 or inf)."""
    fi = np.finfo(dtype)
    with np.errstate(all="ignore"):
        ref_r = ref.astype(dtype)
        special = ~np.isfinite(ref_r)
        same = (y == ref_r) | (np.isnan(y) & np.isnan(ref_r))
        refl = ref.astype(np.longdouble)
        _, e = np.frexp(np.abs(refl))
        e = np.maximum(e.astype(np.int64) - 1, int(fi.minexp))
        ulp = np.ldexp(np.longdouble(1), e - int(fi.nmant))
        err = np.abs(y.astype(np.longdouble) - refl) / ulp
        err = np.where(np.isfinite(y), err, np.inf)
        err = np.where(special, np.where(same, 0.0, np.inf), err)
    return err.astype(np.float64)


# ----------------------------------------------------------------------------------------------
# input sweeps
# ----------------------------------------------------------------------------------------------
def random_floats(rng: np.random.Generator, dtype: str, n: int, lo: float, hi: float) -> np.ndarray:
    """Floats with uniformly random bit patterns (so every binade, subnormals included, is hit)
    restricted to [lo, hi]."""
    it = np.uint32 if dtype == "float32" else np.uint64
    bits = rng.integers(0, np.iinfo(it).max, size=4 * n, dtype=it, endpoint=True)
    x = bits.view(dtype)
    x = x[np.isfinite(x) & (x >= lo) & (x <= hi)]
    return x[:n]


SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5, 2.0]


def sample_inputs(func: str, dtype: str, n: int = 200_000, seed: int = 0) -> np.ndarray:
    """The sweep for one function: dense grid over the interesting range, random bit patterns
    over the whole domain (tiny, huge, subnormal, negative) and the special values."""
    rng = np.random.default_rng(seed)
    f32 = dtype == "float32"
    big = float(np.finfo(dtype).max)
    dom = {
        "exp": (-105.0, 90.0) if f32 else (-746.0, 710.0),
        "expm1": (-105.0, 90.0) if f32 else (-746.0, 710.0),
        "log": (0.0, big), "sqrt": (0.0, big), "log1p": (-1.0, big),
        "tanh": (-big, big), "sigmoid": (-big, big), "softplus": (-big, big), "erf": (-big, big),
        "sin": (-1e5, 1e5) if f32 else (-1e9, 1e9), "cos": (-1e5, 1e5) if f32 else (-1e9, 1e9),
        "arctan": (-big, big), "log2": (0.0, big), "log10": (0.0, big),
        "exp2": (-152.0, 130.0) if f32 else (-1077.0, 1026.0),
    }[func]
    grid = {"exp": (-30, 30), "expm1": (-3, 3), "log": (0, 4), "sqrt": (0, 4), "log1p": (-1, 3),
            "tanh": (-10, 10), "sigmoid": (-40, 40), "softplus": (-40, 40), "erf": (-6, 6),
            "sin": (-20, 20), "cos": (-20, 20), "arctan": (-8, 8), "log2": (0, 4), "log10": (0, 4),
            "exp2": (-30, 30)}[func]
    with np.errstate(over="ignore", invalid="ignore"):
        wide = np.linspace(dom[0] / 2, dom[1] / 2, n // 8, dtype=np.float64) * 2
    wide = wide[np.isfinite(wide)].astype(dtype)
    parts = [np.linspace(*grid, n // 2, dtype=dtype), wide,
             random_floats(rng, dtype, n // 2, *dom),
             np.array(SPECIALS, dtype=dtype)]
    return np.concatenate(parts)


def sample_pow(dtype: str, n: int = 200_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) pairs: moderate bases/exponents, bases near 1 with large exponents, negative bases
    with integer exponents, results near over/underflow, and the C99 special-value grid."""
    rng = np.random.default_rng(seed)
    f32 = dtype == "float32"
    q = n // 4
    a1 = np.exp(rng.uniform(-5, 5, q)).astype(dtype)
    b1 = rng.uniform(-15, 15, q).astype(dtype)
    a2 = (1 + rng.uniform(-0.01, 0.01, q)).astype(dtype)
    b2 = rng.uniform(-1e3, 1e3, q).astype(dtype)
    a3 = -np.exp(rng.uniform(-3, 3, q)).astype(dtype)
    b3 = rng.integers(-20, 21, q).astype(dtype)
    lim = 88.0 if f32 else 709.0
    a4 = np.exp(rng.uniform(-40, 40, q)).astype(dtype)
    b4 = (rng.uniform(-1.05, 1.05, q) * lim / np.log(a4.astype(np.float64))).astype(dtype)
    sp = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, np.inf, -np.inf, np.nan, 1e-30, -7.0],
                  dtype=dtype)
    ga, gb = np.meshgrid(sp, np.array([0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 0.5, -0.5, 2.5, np.inf, -np.inf,
                                       np.nan, 1e10, -1e10], dtype=dtype))
    a = np.concatenate([a1, a2, a3, a4, ga.ravel()])
    b = np.concatenate([b1, b2, b3, b4, gb.ravel()])
    return a, b


def sample_atan2(dtype: str, n: int = 200_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) pairs: every quadrant at random angles and radii, near-axis and near-diagonal
    ratios, wildly different magnitudes, and the C99 grid of zeros, infinities and nan."""
    rng = np.random.default_rng(seed)
    q = n // 3
    ang = rng.uniform(-np.pi, np.pi, q)
    rad = np.exp(rng.uniform(-20, 20, q))
    y1, x1 = (rad * np.sin(ang)).astype(dtype), (rad * np.cos(ang)).astype(dtype)
    y2 = random_floats(rng, dtype, q, -float(np.finfo(dtype).max), float(np.finfo(dtype).max))
    x2 = random_floats(rng, dtype, y2.size, -float(np.finfo(dtype).max), float(np.finfo(dtype).max))
    y2 = y2[:x2.size]
    x3 = rng.uniform(-4, 4, q).astype(dtype)
    y3 = (x3 * (1 + rng.uniform(-1e-3, 1e-3, q))).astype(dtype)
    sp = np.array([0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 1e-30, -1e-30, np.inf, -np.inf, np.nan], dtype=dtype)
    gy, gx = np.meshgrid(sp, sp)
    return np.concatenate([y1, y2, y3, gy.ravel()]), np.concatenate([x1, x2, x3, gx.ravel()])


def measure(func: str, dtype: str, width: int = 1, n: int = 200_000) -> tuple[float, np.ndarray, np.ndarray]:
    """(max ulp error, inputs, outputs) of ``func`` over its sweep."""
    kernel, _ = compile_kernel(func, dtype, width)
    if func == "pow":
        args = sample_pow(dtype, n)
    elif func == "arctan2":
        args = sample_atan2(dtype, n)
    elif func == "erf" and dtype == "float64":
        args = (sample_inputs(func, dtype, n // 20),)        # mpmath reference is slow
    else:
        args = (sample_inputs(func, dtype, n),)
    y = kernel(*args)
    err = ulp_errors(y, reference(func, dtype, *args), dtype)
    return float(err.max()), args, y


def measure_ulp_table(n: int = 200_000) -> dict[tuple[str, str], float]:
    """{(func, dtype): max ulp error} for every unary function, pow and arctan2, both precisions."""
    table = {}
    for func in sorted(SUPPORTED_UNARY) + list(BINARY):
        for dtype in ("float32", "float64"):
            table[(func, dtype)] = measure(func, dtype, 1, n)[0]
    return table


if __name__ == "__main__":  # python -m tcomp.backend.mathlib_accuracy
    for (func, dtype), e in measure_ulp_table().items():
        print(f"{func:10s} {dtype:8s} {e:8.3f}")
