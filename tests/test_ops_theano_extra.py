"""Issue 16's missing ops (``tcomp.tensor.extra``, ``T.nlinalg``, ``T.nnet`` additions and the
new elementwise IR ops) against NumPy written here, on every backend.

References are NumPy evaluated in float64 and rounded to the dtype tcomp promises (ints and
bools to floatX for float functions, JAX's lattice).  Shapes include 0-sized and symbolic
dims; axes include None and negative ones.  Gradients go through ``tcomp.testing.verify_grad``.
"""
import numpy as np
import pytest
from conftest import TEST_DTYPES, check_result, compile_fn, rand_array

import tcomp
import tcomp.tensor as T
from tcomp.testing import verify_grad

SHAPES = [((), ()), ((None,), (5,)), ((None, 3), (4, 3)), ((None, 3), (0, 3)), (("n", 2, 2), (2, 2, 2))]


def _float_dtype(dtype):
    return dtype if dtype in ("float32", "float64") else "float32"


def _domain(lo, hi, specials=()):
    def make(rng, dtype, shape):
        if dtype == "bool":
            return rng.random(shape) < 0.5
        if dtype in ("float32", "float64"):
            v = rng.uniform(lo, hi, shape).astype(dtype)
            if v.size >= len(specials) and specials:
                v.reshape(-1)[:len(specials)] = specials
            return v
        low = max(int(np.ceil(lo)), 0) if dtype == "uint8" else int(np.ceil(lo))
        return rng.integers(low, max(int(hi), low + 1), shape).astype(dtype)
    return make


_SP = (np.nan, np.inf, -np.inf, 0.0, -0.0)

#: op -> (build, NumPy reference on float64 (or on the raw input for bool results), values, IR op or None)
UNARY = {
    "arctan": (T.arctan, np.arctan, _domain(-20, 20, _SP), "arctan"),
    "log2": (T.log2, np.log2, _domain(0, 70, (0.0, 1.0, 8.0, np.inf, 0.25)), "log2"),
    "log10": (T.log10, np.log10, _domain(0, 70, (0.0, 1.0, 10.0, np.inf, 1000.0)), "log10"),
    "exp2": (T.exp2, np.exp2, _domain(-30, 30, (0.0, -0.0, 3.0, np.inf, -np.inf)), "exp2"),
    "isnan": (T.isnan, np.isnan, _domain(-5, 5, _SP), "isnan"),
    "isinf": (T.isinf, np.isinf, _domain(-5, 5, _SP), "isinf"),
    "arcsin": (T.arcsin, np.arcsin, _domain(-1.2, 1.2, (1.0, -1.0, -0.0, np.nan, 2.0)), "arctan2"),
    "arccos": (T.arccos, np.arccos, _domain(-1.2, 1.2, (1.0, -1.0, -0.0, np.nan, 2.0)), "arctan2"),
    "arcsinh": (T.arcsinh, np.arcsinh, _domain(-9, 9, (1e30, -1e30, -0.0, np.inf, np.nan)), None),
    "arccosh": (T.arccosh, np.arccosh, _domain(0, 9, (1.0, 0.5, 1e30, np.inf, np.nan)), None),
    "arctanh": (T.arctanh, np.arctanh, _domain(-1.1, 1.1, (1.0, -1.0, -0.0, 1.5, np.nan)), None),
    "cosh": (T.cosh, np.cosh, _domain(-9, 9, (85.0, -89.0, np.inf, -0.0, np.nan)), None),
    "sinh": (T.sinh, np.sinh, _domain(-9, 9, (85.0, -89.0, -np.inf, -0.0, 1e-30)), None),
}


#: the compositions (no IR op of their own) sweep fewer dtypes: ints all take the same path
_FEW_DTYPES = ("bool", "int32", "float32", "float64")


@pytest.mark.parametrize("dtype", TEST_DTYPES)
@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_extra(op, dtype, backend, rng):
    build, ref, make, ir_op = UNARY[op]
    if ir_op is None and dtype not in _FEW_DTYPES:
        pytest.skip("compositions: int8/int64/uint8 convert to floatX as int32 does")
    xs = [T.tensor(f"x{i}", dtype=dtype, shape=s) for i, (s, _) in enumerate(SHAPES)]
    outs = [build(x) for x in xs]
    want_dtype = "bool" if op in ("isnan", "isinf") else _float_dtype(dtype)
    assert all(o.dtype == want_dtype for o in outs), [o.dtype for o in outs]
    f = compile_fn(xs, outs, backend, expect_ops={ir_op} if ir_op else ())
    values = [make(rng, dtype, vs) for _, vs in SHAPES]
    for (ts, vs), v, got in zip(SHAPES, values, f(*values)):
        arg = v if want_dtype == "bool" else v.astype("float64")
        with np.errstate(all="ignore"):
            want = np.asarray(ref(arg))
        check_result(got, want, want_dtype, f"{op}({dtype}{list(ts)}) value shape {vs}")


def test_special_values_exact(backend):
    """The edge cases the issue names, written down independently of NumPy."""
    x = T.dvector("x")
    inf, nan = np.inf, np.nan
    cases = [
        (T.arctanh, [1.0, -1.0, 2.0, -0.0], [inf, -inf, nan, -0.0]),
        (T.arccosh, [0.5, 1.0, -3.0, -1e30, inf], [nan, 0.0, nan, nan, inf]),
        (T.arcsinh, [-0.0, inf, -inf], [-0.0, inf, -inf]),
        (T.sinh, [-0.0, inf, -inf, 800.0], [-0.0, inf, -inf, inf]),
        (T.cosh, [0.0, inf, -inf, -800.0], [1.0, inf, inf, inf]),
        (T.log2, [1024.0, 2.0 ** -1070, 0.0, -1.0], [10.0, -1070.0, -inf, nan]),
        (T.exp2, [10.0, -1074.0, -1075.0, 1024.0], [1024.0, 2.0 ** -1074, 0.0, inf]),
        (T.log10, [1e-3, 1.0, 1e22], [-3.0, 0.0, 22.0]),
        (T.arctan, [inf, -inf], [np.pi / 2, -np.pi / 2]),
        (T.arcsin, [1.0, -1.0, 1.5], [np.pi / 2, -np.pi / 2, nan]),
        (T.arccos, [1.0, -1.0, -1.5], [0.0, np.pi, nan]),
    ]
    for fn, xs, want in cases:
        got = compile_fn([x], fn(x), backend)(np.array(xs))
        np.testing.assert_array_equal(got, np.array(want), err_msg=fn.__name__)
        ok = ~np.isnan(np.array(want))
        assert np.array_equal(np.signbit(got[ok]), np.signbit(np.array(want)[ok])), fn.__name__


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_composition_accuracy_in_ulp(dtype):
    """The stable formulas stay within 4 ulp of a long-double NumPy reference (measured max:
    2.7 ulp), near 0, near the domain ends, in the bulk and near overflow."""
    from tcomp.backend.mathlib_accuracy import ulp_errors

    rng = np.random.default_rng(5)
    big = 88.0 if dtype == "float32" else 709.0
    doms = {"cosh": (-big, big), "sinh": (-big, big), "arcsinh": (-1e6, 1e6), "arccosh": (1.0, 1e6),
            "arctanh": (-1.0, 1.0), "arcsin": (-1.0, 1.0), "arccos": (-1.0, 1.0)}
    x = T.vector("x", dtype)
    for name, (lo, hi) in doms.items():
        tiny = np.exp(rng.uniform(-30, 0, 3000))
        v = np.concatenate([rng.uniform(lo, hi, 3000), lo + tiny, hi - tiny, np.sign(rng.uniform(-1, 1, 3000)) * tiny,
                            rng.uniform(-3, 3, 3000)])
        v = v[(v >= lo) & (v <= hi)].astype(dtype)
        got = tcomp.function([x], getattr(T, name)(x), backend="cpu")(v)
        with np.errstate(divide="ignore"):                    # arctanh(+-1) = +-inf
            err = ulp_errors(got, getattr(np, name)(v.astype(np.longdouble)), dtype)
        assert err.max() <= 4.0, (name, dtype, float(err.max()), v[np.argmax(err)])


def test_isnan_isinf_of_ints_and_bools_are_false(backend):
    xs = [T.ivector("i"), T.tensor("b", "bool", (None,)), T.tensor("u", "uint8", (None,))]
    f = compile_fn(xs, [T.isnan(x) for x in xs] + [T.isinf(x) for x in xs], backend, expect_ops={"isnan", "isinf"})
    vals = [np.array([0, -5, 2 ** 31 - 1], "int32"), np.array([True, False]), np.array([0, 255], "uint8")]
    for got, v in zip(f(*vals), vals + vals):
        assert got.dtype == np.bool_ and got.shape == v.shape and not got.any()


@pytest.mark.parametrize("da,db", [("float32", "float32"), ("float64", "float32"), ("int32", "float32"),
                                   ("int8", "int64"), ("bool", "float64")])
def test_arctan2(da, db, backend, rng):
    y = T.tensor("y", da, (None, 3))
    x = T.tensor("x", db, (1, 3))
    s = T.tensor("s", db, ())
    f = compile_fn([y, x, s], [T.arctan2(y, x), T.arctan2(y, s), T.arctan2(y, 2.0)], backend,
                   expect_ops={"arctan2"})
    vy, vx, vs = rand_array(rng, da, (4, 3)), rand_array(rng, db, (1, 3)), rand_array(rng, db, ())
    # JAX's lattice: an int with a float32 gives float32; two ints give floatX
    floats = [d for d in (da, db) if d in ("float32", "float64")]
    want_dtype = ("float64" if "float64" in floats else "float32") if floats else "float32"
    outs = f(vy, vx, vs)
    wants = [np.arctan2(vy.astype("f8"), vx.astype("f8")), np.arctan2(vy.astype("f8"), vs.astype("f8")),
             np.arctan2(vy.astype("f8"), 2.0)]
    w3 = da if da in ("float32", "float64") else "float32"
    for got, want, d in zip(outs, wants, [want_dtype, want_dtype, w3]):
        check_result(got, want, d, f"arctan2({da}, {db})")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_arctan2_signed_zeros_and_infinities(dtype, backend):
    vals = np.array([0.0, -0.0, 2.0, -2.0, np.inf, -np.inf, np.nan], dtype)
    gy, gx = (g.ravel() for g in np.meshgrid(vals, vals))
    y, x = T.vector("y", dtype), T.vector("x", dtype)
    got = compile_fn([y, x], T.arctan2(y, x), backend)(gy, gx)
    want = np.arctan2(gy.astype("float64"), gx.astype("float64")).astype(dtype)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    fin = ~np.isnan(want)
    assert np.array_equal(np.signbit(got[fin]), np.signbit(want[fin]))
    # NumPy's own float32 atan2 (the reference backend) is one ulp off at (2, 2); the CPU
    # backend gives the correctly rounded value, which is what float64 rounded to float32 gives
    np.testing.assert_array_max_ulp(got[fin], want[fin], maxulp=1 if backend == "reference" else 0)


# -- scans and sorting ------------------------------------------------------------------------

_ACC = {"bool": "int64", "int8": "int64", "int32": "int64", "uint8": "int64", "int64": "int64",
        "float32": "float32", "float64": "float64"}


@pytest.mark.parametrize("dtype", TEST_DTYPES)
def test_cumsum_cumprod(dtype, backend, rng):
    x = T.tensor("x", dtype, (None, 3, None))
    outs = [T.cumsum(x), T.cumsum(x, axis=0), x.cumsum(axis=-1), T.cumsum(x, 1), T.cumprod(x), x.cumprod(axis=0),
            T.cumprod(x, axis=-2), T.cumsum(x.dimshuffle(2, 0, 1), axis=0)]
    f = compile_fn([x], outs, backend, expect_ops={"cumsum", "cumprod"})
    for shape in [(2, 3, 4), (0, 3, 2), (3, 3, 1)]:
        v = rand_array(rng, dtype, shape, -3, 4)
        acc = _ACC[dtype]
        va = v.astype(acc)
        wants = [np.cumsum(va), np.cumsum(va, 0), np.cumsum(va, -1), np.cumsum(va, 1), np.cumprod(va),
                 np.cumprod(va, 0), np.cumprod(va, -2), np.cumsum(va.transpose(2, 0, 1), 0)]
        for i, (g, w) in enumerate(zip(f(v), wants)):
            check_result(g, w, acc, f"output {i} {dtype} {shape}")


def test_cumsum_is_sequential_like_numpy(backend):
    """Floats add in NumPy's order (left to right), so the results are bit-identical."""
    x = T.fvector("x")
    v = np.random.default_rng(3).standard_normal(1000).astype("float32") * np.float32(1e4)
    got = compile_fn([x], T.cumsum(x), backend)(v)
    assert got.tobytes() == np.cumsum(v).tobytes()


@pytest.mark.parametrize("dtype", TEST_DTYPES)
def test_sort_argsort(dtype, backend, rng):
    x = T.tensor("x", dtype, (None, None))
    outs = [T.argsort(x), T.argsort(x, axis=0), x.argsort(axis=None), T.sort(x), x.sort(axis=0), T.sort(x, None),
            T.sort(x, axis=-2), x.argsort(kind="quicksort")]
    f = compile_fn([x], outs, backend, expect_ops={"argsort"})
    for shape in [(3, 7), (0, 4), (4, 0), (1, 1), (2, 300)]:
        v = rand_array(rng, dtype, shape, -3, 3)                 # many ties
        if dtype in ("float32", "float64") and v.size >= 6:
            v.reshape(-1)[:6] = [np.nan, -0.0, 0.0, np.inf, -np.inf, np.nan]
        wants = [np.argsort(v, kind="stable"), np.argsort(v, 0, kind="stable"), np.argsort(v, None, kind="stable"),
                 np.sort(v, kind="stable"), np.sort(v, 0, kind="stable"), np.sort(v, None, kind="stable"),
                 np.sort(v, -2, kind="stable"), np.argsort(v, kind="stable")]
        for i, (g, w) in enumerate(zip(f(v), wants)):
            np.testing.assert_array_equal(g, w, err_msg=f"output {i} {dtype} {shape}")
            assert g.dtype == w.dtype, (i, g.dtype, w.dtype)
            if dtype in ("float32", "float64"):          # stable: -0.0 and 0.0 keep their order
                assert np.array_equal(np.signbit(g), np.signbit(w)), i


def test_extra_ops_namespace(backend, rng):
    x = T.matrix("x")
    f = compile_fn([x], [T.extra_ops.diff(x), T.extra_ops.diff(x, 2, axis=0), T.extra_ops.diff(x, 0),
                         T.extra_ops.cumsum(x, 1), T.extra_ops.repeat(x, 2, 0)], backend)
    v = rng.standard_normal((4, 5)).astype("float32")
    for g, w in zip(f(v), [np.diff(v), np.diff(v, 2, 0), v, np.cumsum(v, 1), np.repeat(v, 2, 0)]):
        check_result(g, w, "float32")
    verify_grad(lambda a: T.extra_ops.diff(a, 2), [rng.standard_normal((3, 5))], rng=rng)


@pytest.mark.parametrize("depth", [None, 0, 2])
def test_argsort_kernel_paths(depth, monkeypatch):
    """The CPU kernel's introsort on long rows of every shape of input, with the quicksort
    depth limit forced low so that its heapsort fallback runs too (0: heapsort only)."""
    from tcomp.backend.cpu import kernels_scan_sort

    if depth is not None:
        monkeypatch.setattr(kernels_scan_sort, "DEPTH", depth)
    x = T.fvector("x")
    f = tcomp.function([x], T.argsort(x), backend="cpu")
    rng = np.random.default_rng(11)
    for n in [2, 3, 17, 33, 1000, 4099]:
        base = rng.standard_normal(n).astype("float32")
        cases = {"random": base, "sorted": np.sort(base), "reversed": np.sort(base)[::-1].copy(),
                 "equal": np.zeros(n, "float32"), "few": rng.integers(0, 3, n).astype("float32"),
                 "nan": np.where(np.arange(n) % 3 == 0, np.nan, base).astype("float32"),
                 "organ": np.concatenate([np.arange(n // 2), np.arange(n - n // 2)[::-1]]).astype("float32")}
        for name, v in cases.items():
            np.testing.assert_array_equal(f(v), np.argsort(v, kind="stable"), err_msg=f"{name} n={n}")


@pytest.mark.parametrize("threads", [1, 3])
def test_argsort_rows_on_threads(threads, monkeypatch):
    """Large inputs sort their rows on several threads (each row by one thread): NumPy's
    result for any thread count."""
    monkeypatch.setattr(tcomp.config, "num_threads", threads)
    m = T.matrix("m")
    f = tcomp.function([m], [T.argsort(m, axis=1), T.argsort(m, axis=0)], backend="cpu")
    assert "tcomp_cpu_parallel" in f.dump("llvm")      # the threaded path (the pool) is compiled in
    v = np.random.default_rng(4).integers(0, 40, (300, 500)).astype("float32")     # > 2 * MIN_PER_THREAD
    a1, a0 = f(v)
    np.testing.assert_array_equal(a1, np.argsort(v, axis=1, kind="stable"))
    np.testing.assert_array_equal(a0, np.argsort(v, axis=0, kind="stable"))


def test_sort_errors():
    with pytest.raises(ValueError, match="out of range for the scalar"):
        T.sort(T.scalar("s"))
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        T.argsort(T.matrix("m"), axis=2)
    with pytest.raises(ValueError, match="order="):
        T.argsort(T.vector("v"), order="f")


# -- linear algebra -------------------------------------------------------------------------

def test_outer_tensordot_batched_dot(backend, rng):
    a, b = T.vector("a"), T.matrix("b")
    t3, t4 = T.tensor3("t3"), T.tensor4("t4")
    m, n = T.matrix("m"), T.matrix("n")
    outs = [T.outer(a, b), T.tensordot(t3, t4, axes=2), T.tensordot(t3, b, axes=[[0], [1]]),
            T.tensordot(a, a, axes=0), T.tensordot(b, b, axes=([0, 1], [0, 1])),
            T.batched_dot(t3, t3.dimshuffle(0, 2, 1)), T.batched_dot(m, n), T.batched_dot(t3, m)]
    f = compile_fn([a, b, t3, t4, m, n], outs, backend, expect_ops={"dot", "matmul"})
    for p, q, r, s in [(3, 2, 4, 5), (0, 2, 0, 3), (1, 1, 1, 1), (2, 0, 3, 0)]:
        va = rng.standard_normal(q * 2).astype("float32")
        vb = rng.standard_normal((2, p)).astype("float32")
        v3 = rng.standard_normal((p, r, s)).astype("float32")
        v4 = rng.standard_normal((r, s, 2, 3)).astype("float32")
        vm = rng.standard_normal((p, s)).astype("float32")
        vn = rng.standard_normal((p, s)).astype("float32")
        wants = [np.outer(va, vb), np.tensordot(v3, v4, 2), np.tensordot(v3, vb, [[0], [1]]), np.tensordot(va, va, 0),
                 np.tensordot(vb, vb, ([0, 1], [0, 1])), np.matmul(v3, v3.transpose(0, 2, 1)), (vm * vn).sum(1),
                 np.matmul(v3, vm[:, :, None])[..., 0]]
        for i, (g, w) in enumerate(zip(f(va, vb, v3, v4, vm, vn), wants)):
            check_result(g, w, "float32", f"output {i} sizes {(p, q, r, s)}")
    f2 = compile_fn([b, a, t4, t3], [T.tensordot(b, a, axes=[[-1], [0]]), T.batched_dot(t4, t3)], backend)
    vb, va = rng.standard_normal((3, 4)).astype("float32"), rng.standard_normal(4).astype("float32")
    v4, v3 = rng.standard_normal((2, 3, 4, 5)).astype("float32"), rng.standard_normal((2, 5, 6)).astype("float32")
    g1, g2 = f2(vb, va, v4, v3)
    check_result(g1, vb.astype("f8") @ va, "float32")
    check_result(g2, np.einsum("bijk,bkl->bijl", v4.astype("f8"), v3), "float32")


def test_linalg_errors():
    with pytest.raises(ValueError, match="axis 1 of .* does not match"):
        T.tensordot(T.tensor("a", shape=(2, 3)), T.tensor("b", shape=(4, 2)), axes=[[1], [0]])
    with pytest.raises(ValueError, match="2 axes of a but 1 axes of b"):
        T.tensordot(T.matrix("a"), T.matrix("b"), axes=[[0, 1], [0]])
    with pytest.raises(ValueError, match="batched_dot"):
        T.batched_dot(T.vector("a"), T.matrix("b"))
    with pytest.raises(ValueError, match="identity_like: x must be a matrix"):
        T.identity_like(T.vector("v"))
    with pytest.raises(ValueError, match="diag: v must be a vector or a matrix"):
        T.diag(T.tensor3("t"))
    with pytest.raises(TypeError, match="eye: n must be an int or an integer scalar variable"):
        T.eye(2.5)
    with pytest.raises(TypeError, match="eye: m must be an integer scalar"):
        T.eye(2, T.scalar("f"))
    with pytest.raises(ValueError, match="join: cannot join scalars"):
        T.join(0, T.scalar("a"), T.scalar("b"))
    with pytest.raises(ValueError, match="tile: negative repetition"):
        T.tile(T.vector("v"), (-1,))
    with pytest.raises(TypeError, match="roll: shift must be an int"):
        T.roll(T.vector("v"), 1.5)
    with pytest.raises(TypeError, match="norm: L must be a number"):
        T.vector("v").norm("fro")


def test_eye_identity_like_diag_trace(backend, rng):
    n = T.lscalar("n")
    x = T.matrix("x")
    v = T.vector("v")
    k = T.iscalar("k")
    outs = [T.eye(n), T.eye(n, 3, 1, dtype="int32"), T.eye(2, n, -1), T.identity_like(x), T.diag(v), T.diag(v, -2),
            T.diag(x), T.diag(x, 1), T.diagonal(x, -1), T.trace(x), T.trace(x, 1), x.trace(),
            T.nlinalg.extract_diag(x), T.nlinalg.alloc_diag(v, k), T.diagonal(x, k)]
    f = compile_fn([n, x, v, k], outs, backend)
    for nn, shape, vl, kk in [(4, (3, 5), 3, 1), (0, (0, 2), 0, -1), (1, (1, 1), 1, 0), (3, (4, 2), 2, -3)]:
        vx = rng.standard_normal(shape).astype("float32")
        vv = rng.standard_normal(vl).astype("float32")
        got = f(nn, vx, vv, kk)
        wants = [np.eye(nn), np.eye(nn, 3, 1, dtype="int32"), np.eye(2, nn, -1), np.eye(*shape), np.diag(vv),
                 np.diag(vv, -2), np.diag(vx), np.diag(vx, 1), np.diagonal(vx, -1), np.trace(vx), np.trace(vx, 1),
                 np.trace(vx), np.diagonal(vx), np.diag(vv, kk), np.diagonal(vx, kk)]
        for i, (g, w) in enumerate(zip(got, wants)):
            want_dtype = "int32" if i == 1 else "float32"
            check_result(g, w, want_dtype, f"output {i} n={nn} shape={shape} k={kk}")
    t3 = T.tensor3("t3")
    f3 = compile_fn([t3], [T.diagonal(t3, 1, 2, 0), t3.diagonal(0, -1, -2), T.trace(t3)], backend)
    v3 = rng.standard_normal((3, 4, 5)).astype("float32")
    g = f3(v3)
    check_result(g[0], np.diagonal(v3, 1, 2, 0), "float32")
    check_result(g[1], np.diagonal(v3, 0, -1, -2), "float32")
    check_result(g[2], np.trace(v3), "float32")
    xi = T.imatrix("xi")
    gi = compile_fn([xi], T.trace(xi), backend)(np.arange(9, dtype="int32").reshape(3, 3))
    assert gi.dtype == np.int64 and gi == 12


# -- logic, statistics, norms -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", ("bool", "int8", "uint8", "float32", "float64"))
def test_any_all(dtype, backend, rng):
    x = T.tensor("x", dtype, (None, 3, None))
    axes = [None, 0, -1, (0, 2), 1]
    outs = [fn(x, axis=a, keepdims=kd) for fn in (T.any, T.all) for a in axes for kd in (False, True)]
    outs += [x.any(), x.all(axis=-2)]
    f = compile_fn([x], outs, backend)
    for shape in [(2, 3, 4), (0, 3, 2), (2, 3, 0)]:
        v = rand_array(rng, dtype, shape, -1, 2)
        if dtype in ("float32", "float64") and v.size:
            v.reshape(-1)[0] = np.nan
        wants = [fn(v, axis=a, keepdims=kd) for fn in (np.any, np.all) for a in axes for kd in (False, True)]
        wants += [np.any(v), np.all(v, axis=-2)]
        for g, w in zip(f(v), wants):
            check_result(g, w, "bool", f"{dtype} {shape}")


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_var_std(dtype, backend, rng):
    x = T.tensor("x", dtype, (None, 4))
    outs = [T.var(x), T.var(x, axis=0), T.std(x, axis=-1, keepdims=True), x.var(axis=1, ddof=1),
            T.std(x, corrected=True), x.std(), T.var(x, 0, 1), x.std(1, 0, True)]     # Theano's (axis, ddof, keepdims)
    f = compile_fn([x], outs, backend)
    v = rand_array(rng, dtype, (5, 4))
    vf = v.astype("float64")
    wants = [np.var(vf), np.var(vf, 0), np.std(vf, -1, keepdims=True), np.var(vf, 1, ddof=1), np.std(vf),  # corrected
             np.std(vf), np.var(vf, 0, ddof=1), np.std(vf, 1, keepdims=True)]
    for g, w in zip(f(v), wants):
        check_result(g, w, _float_dtype(dtype))


def test_norms(backend, rng):
    x, v = T.matrix("x"), T.vector("v")
    vi = T.ivector("vi")
    outs = [x.norm(2), x.norm(1, axis=0), v.norm(3), v.norm(np.inf), v.norm(-np.inf), v.norm(0), x.norm(2, axis=-1),
            T.nlinalg.norm(v), T.nlinalg.norm(v, 1), T.nlinalg.norm(v, np.inf), T.nlinalg.norm(x),
            T.nlinalg.norm(x, "fro"), T.nlinalg.norm(x, 1), T.nlinalg.norm(x, -1), T.nlinalg.norm(x, np.inf),
            T.nlinalg.norm(x, -np.inf), T.nlinalg.norm(vi), vi.norm(1)]
    f = compile_fn([x, v, vi], outs, backend)
    vx = rng.standard_normal((3, 4)).astype("float32")
    vv = np.array([0.5, -2.0, 0.0, 1.5], "float32")
    vvi = np.array([3, -4], "int32")
    LA = np.linalg
    wants = [np.sqrt((vx.astype("f8") ** 2).sum()), np.abs(vx).sum(0), LA.norm(vv, 3), LA.norm(vv, np.inf),
             LA.norm(vv, -np.inf), LA.norm(vv, 0), LA.norm(vx, 2, axis=-1), LA.norm(vv), LA.norm(vv, 1),
             LA.norm(vv, np.inf), LA.norm(vx), LA.norm(vx, "fro"), LA.norm(vx, 1), LA.norm(vx, -1),
             LA.norm(vx, np.inf), LA.norm(vx, -np.inf), 5.0, 7.0]
    for i, (g, w) in enumerate(zip(f(vx, vv, vvi), wants)):
        check_result(g, w, "float32", f"norm output {i}")
    # (matrix ord 2, -2 and 'nuc' go through the SVD: tests/test_ops_spectral.py)
    with pytest.raises(ValueError, match="invalid norm order"):
        T.nlinalg.norm(v, "fro")


# -- shapes -----------------------------------------------------------------------------------

def test_squeeze_join_roll(backend, rng):
    x = T.tensor("x", shape=(1, None, 1, 3))
    a = T.matrix("a")
    s = T.iscalar("s")
    v = T.vector("v")
    outs = [T.squeeze(x), x.squeeze(axis=0), T.squeeze(x, (-2, 0)), T.join(1, [a]), T.roll(v, 2), T.roll(v, -7),
            T.roll(a, 1, axis=0), T.roll(a, s, axis=-1), T.roll(a, s), T.roll(v, s)]
    f = compile_fn([x, a, s, v], outs, backend)
    for n, shift in [(4, 1), (0, 3), (1, -2)]:
        vx = rng.standard_normal((1, n, 1, 3)).astype("float32")
        va = rng.standard_normal((n, 3)).astype("float32")
        vv = rng.standard_normal(5).astype("float32")
        # only the broadcastable (static 1) dims go, as in Theano: a run-time size 1 stays
        wants = [np.squeeze(vx, (0, 2)), np.squeeze(vx, 0), np.squeeze(vx, (-2, 0)), va, np.roll(vv, 2),
                 np.roll(vv, -7), np.roll(va, 1, 0), np.roll(va, shift, -1), np.roll(va, shift), np.roll(vv, shift)]
        for i, (g, w) in enumerate(zip(f(vx, va, shift, vv), wants)):
            check_result(g, w, "float32", f"output {i} n={n}")
    st = T.tensor("st", shape=(5, 3))                         # static sizes: two slices concatenated
    fs = compile_fn([st], [T.roll(st, 2, 0), T.roll(st, -1, -1), T.roll(st, 7), T.roll(st, 10, 0)], backend)
    vs = rng.standard_normal((5, 3)).astype("float32")
    for g, w in zip(fs(vs), [np.roll(vs, 2, 0), np.roll(vs, -1, -1), np.roll(vs, 7), np.roll(vs, 10, 0)]):
        check_result(g, w, "float32")
    b = T.matrix("b")
    fj = compile_fn([a, b], [T.join(0, a, b), T.join(-1, a, a, a)], backend, expect_ops={"concatenate"})
    va, vb = rng.standard_normal((2, 3)).astype("float32"), rng.standard_normal((0, 3)).astype("float32")
    g = fj(va, vb)
    check_result(g[0], np.concatenate([va, vb]), "float32")
    check_result(g[1], np.concatenate([va, va, va], -1), "float32")
    with pytest.raises(ValueError, match="not broadcastable"):
        T.squeeze(x, 1)


def test_tile_repeat(backend, rng):
    v, m = T.vector("v"), T.matrix("m")
    r = T.lscalar("r")
    im = T.imatrix("im")
    outs = [T.tile(v, 3), T.tile(v, (2, 2)), T.tile(m, (2, 1)), T.tile(m, (1, 2, 3)), T.tile(m, (r, 2)),
            T.tile(m, 1, ndim=3), T.repeat(v, 2), T.repeat(m, 3), T.repeat(m, 2, axis=-1), m.repeat(r, axis=0),
            T.repeat(m, [1, 0, 2], axis=1), T.repeat(im, 2, axis=0), T.repeat(m, [2], axis=0)]
    f = compile_fn([v, m, r, im], outs, backend, expect_ops={"alloc"})
    for rows, rep in [(2, 3), (0, 2), (1, 0)]:
        vv = rng.standard_normal(4).astype("float32")
        vm = rng.standard_normal((rows, 3)).astype("float32")
        vim = rng.integers(-5, 5, (rows, 2)).astype("int32")
        wants = [np.tile(vv, 3), np.tile(vv, (2, 2)), np.tile(vm, (2, 1)), np.tile(vm, (1, 2, 3)),
                 np.tile(vm, (rep, 2)), np.tile(vm, (1, 1, 1)), np.repeat(vv, 2), np.repeat(vm, 3),
                 np.repeat(vm, 2, -1), np.repeat(vm, rep, 0), np.repeat(vm, [1, 0, 2], 1), np.repeat(vim, 2, 0),
                 np.repeat(vm, [2], 0)]
        for i, (g, w) in enumerate(zip(f(vv, vm, rep, vim), wants)):
            check_result(g, w, "int32" if i == 11 else "float32", f"output {i} rows={rows} rep={rep}")
    # per-element repeats on a symbolic axis are checked against the axis length at run time
    fr = compile_fn([v], T.repeat(v, [1, 2, 3]), backend)
    np.testing.assert_array_equal(fr(np.array([1, 2, 3], "float32")), [1, 2, 2, 3, 3, 3])
    with pytest.raises(Exception):
        fr(np.array([1, 2, 3, 4], "float32"))
    with pytest.raises(ValueError, match="3 repeats for axis 0 of size 2"):
        T.repeat(T.tensor("w", shape=(2,)), [1, 2, 3])
    with pytest.raises(TypeError, match="repeats must be an integer vector"):
        T.repeat(v, T.fvector("c"))


# -- nnet -------------------------------------------------------------------------------------

def _ufs_reference(x):
    """Theano's UltraFastScalarSigmoid, transcribed."""
    h = 0.5 * x
    a = np.abs(h)
    z = np.where(a < 1.7, 1.5 * a / (1 + a), np.where(a < 3, 0.935409070603099 + 0.0458812946797165 * (a - 1.7),
                                                        0.99505475368673))
    return 0.5 * np.where(h < 0, -z, z) + 0.5


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nnet_activations(dtype, backend, rng):
    x = T.matrix("x", dtype)
    outs = [T.nnet.elu(x), T.nnet.elu(x, 0.5), T.nnet.softsign(x), T.nnet.hard_sigmoid(x),
            T.nnet.ultra_fast_sigmoid(x)]
    f = compile_fn([x], outs, backend)
    v = rng.uniform(-8, 8, (4, 5)).astype(dtype)
    v[0, :3] = [0.0, 200.0, -200.0]
    vf = v.astype("float64")
    wants = [np.where(vf > 0, vf, np.expm1(vf)), np.where(vf > 0, vf, 0.5 * np.expm1(vf)), vf / (1 + np.abs(vf)),
             np.clip(0.2 * vf + 0.5, 0, 1), _ufs_reference(vf)]
    for g, w in zip(f(v), wants):
        check_result(g, w, dtype)
    assert np.abs(f(v)[4] - 1 / (1 + np.exp(-vf))).max() < 0.03


@pytest.mark.parametrize("label_dtype", ["int32", "int64", "uint8"])
def test_crossentropy_softmax_1hot_and_integer_labels(label_dtype, backend, rng):
    x, b = T.matrix("x"), T.vector("b")
    y = T.tensor("y", label_dtype, (None,))
    nll, sm = T.nnet.crossentropy_softmax_1hot(x, y)
    nll_b, sm_b, am = T.nnet.crossentropy_softmax_argmax_1hot_with_bias(x, b, y)
    cce = T.nnet.categorical_crossentropy(T.nnet.softmax(x), y)
    c1h = T.nnet.crossentropy_categorical_1hot(T.nnet.softmax_with_bias(x, b), y)
    f = compile_fn([x, b, y], [nll, sm, nll_b, sm_b, am, cce, c1h], backend)
    vx = (rng.standard_normal((5, 4)) * 3).astype("float32")
    vx[0] = [300.0, -300.0, 0.0, 1.0]                       # no overflow, no log(0)
    vb = rng.standard_normal(4).astype("float32")
    vy = np.array([1, 1, 3, 2, 1], label_dtype)            # row 0's label has logit -300: p underflows to 0

    def log_softmax(z):
        z = z.astype("float64")
        m = z.max(1, keepdims=True)
        return z - m - np.log(np.exp(z - m).sum(1, keepdims=True))

    ls, lsb = log_softmax(vx), log_softmax(vx + vb)
    wants = [-ls[np.arange(5), vy], np.exp(ls), -lsb[np.arange(5), vy], np.exp(lsb), np.argmax(vx + vb, 1),
             -ls[np.arange(5), vy], -lsb[np.arange(5), vy]]
    got = f(vx, vb, vy)
    for i, (g, w) in enumerate(zip(got, wants)):
        check_result(g, w, "int64" if i == 4 else "float32", f"output {i}")
    assert np.isfinite(got[0]).all() and np.isfinite(got[5]).all() and np.isfinite(got[6]).all()
    with pytest.raises(TypeError, match="y_idx must be an integer vector"):
        T.nnet.crossentropy_softmax_1hot(x, T.vector("yf"))


# -- gradients --------------------------------------------------------------------------------

_GRAD_CASES = {
    "arctan": (T.arctan, (-3, 3)), "log2": (T.log2, (0.2, 3)), "log10": (T.log10, (0.2, 3)), "exp2": (T.exp2, (-3, 3)),
    "arcsin": (T.arcsin, (-0.9, 0.9)), "arccos": (T.arccos, (-0.9, 0.9)), "arcsinh": (T.arcsinh, (-3, 3)),
    "arccosh": (T.arccosh, (1.1, 4)), "arctanh": (T.arctanh, (-0.9, 0.9)), "cosh": (T.cosh, (-3, 3)),
    "sinh": (T.sinh, (-3, 3)), "elu": (T.nnet.elu, (-3, 3)), "softsign": (T.nnet.softsign, (-3, 3)),
    "ultra_fast_sigmoid": (T.nnet.ultra_fast_sigmoid, (-9, 9)),
    "norm2": (lambda x: x.norm(2), (-3, 3)), "norm3": (lambda x: T.norm(x, 3, axis=0), (0.5, 3)),
    "var": (lambda x: T.var(x, axis=-1), (-3, 3)), "std": (lambda x: x.std(ddof=1), (-3, 3)),
    "tile": (lambda x: T.tile(x, (2, 3)), (-3, 3)), "repeat": (lambda x: T.repeat(x, 2, axis=0), (-3, 3)),
    "repeat_list": (lambda x: T.repeat(x, [2, 0, 1], axis=1), (-3, 3)),
    "roll": (lambda x: T.roll(x, 1, axis=-1), (-3, 3)), "trace": (T.trace, (-3, 3)), "diag": (T.diag, (-3, 3)),
    "squeeze": (lambda x: T.squeeze(x.dimshuffle("x", 0, 1)), (-3, 3)),
    "outer": (lambda x: T.outer(x, x[0]), (-3, 3)),
    "tensordot": (lambda x: T.tensordot(x, x, axes=[[0], [0]]), (-3, 3)),
    "batched_dot": (lambda x: T.batched_dot(x, x), (-3, 3)),
    "cumsum": (lambda x: T.cumsum(x, axis=1), (-3, 3)), "cumsum_flat": (T.cumsum, (-3, 3)),
    "cumprod": (lambda x: T.cumprod(x, axis=0), (0.5, 2)), "sort": (lambda x: T.sort(x, axis=0), (-3, 3)),
    "sort_flat": (lambda x: T.sort(x, axis=None), (-3, 3)),
    "arctan2": (lambda x: T.arctan2(x, x[::-1] + 4.0), (-3, 3)),
    "join": (lambda x: T.join(1, x, T.exp(x)), (-3, 3)), "diagonal": (lambda x: T.diagonal(x, 1), (-3, 3)),
    "hard_sigmoid": (T.nnet.hard_sigmoid, (-2, 2)),
    "nlinalg_norm_1": (lambda x: T.nlinalg.norm(x, 1), (-3, 3)),
    "nlinalg_norm_fro": (lambda x: T.nlinalg.norm(x, "fro"), (-3, 3)),
    "crossentropy_softmax_1hot": (lambda x: T.nnet.crossentropy_softmax_1hot(x, np.array([2, 0], "int32"))[0],
                                  (-3, 3)),
    "categorical_crossentropy_int": (
        lambda x: T.nnet.categorical_crossentropy(T.nnet.softmax(x), np.array([1, 2], "int64")), (-3, 3)),
}


def test_cumprod_gradient_is_exact_at_zeros(backend):
    """Theano divides by x (inf/nan at zeros); tcomp's gradient is the exact sum of products."""
    x = T.dmatrix("x")
    v = np.array([[1.5, 0.0, 2.0, 0.0, 3.0], [0.0, 2.0, 1.0, 0.5, 0.0], [1.0, 2.0, 3.0, -1.0, 0.5]])
    r = np.random.default_rng(2).standard_normal((3, 5))
    got = tcomp.function([x], T.grad(T.sum(T.cumprod(x, axis=1) * r), x), backend=backend)(v)
    want = np.zeros_like(v)
    for row in range(3):
        for j in range(5):
            for k in range(j, 5):
                want[row, j] += r[row, k] * np.prod([v[row, i] for i in range(k + 1) if i != j])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(_GRAD_CASES))
def test_gradients(name):
    fn, (lo, hi) = _GRAD_CASES[name]
    rng = np.random.default_rng(7)
    pt = rng.uniform(lo, hi, (2, 3))
    if name in ("arcsinh", "sinh", "elu", "softsign", "ultra_fast_sigmoid"):
        pt[0, 0] = 0.0                        # odd functions through |x|: the gradient at 0 is f'(0)
    verify_grad(fn, [pt], rng=rng)


def test_odd_function_gradients_at_zero(backend):
    x = T.dscalar("x")
    fns = [T.sinh, T.arcsinh, T.arctanh, T.arctan, T.arcsin, T.nnet.softsign, T.nnet.elu]
    f = tcomp.function([x], [T.grad(fn(x), x) for fn in fns], backend=backend)
    np.testing.assert_allclose(f(0.0), [1.0] * len(fns), rtol=1e-12)


def test_gradients_stay_finite_at_extremes(backend):
    """Unselected branches are clamped, so large inputs give finite gradients, not nan."""
    x = T.dvector("x")
    cost = T.sum(T.nnet.elu(x)) + T.sum(T.arcsinh(x)) + T.sum(T.arccosh(T.abs(x) + 2)) + T.sum(T.sinh(x * 1e-300)) \
        + T.sum(T.nnet.ultra_fast_sigmoid(x)) + T.sum(T.arctan(x))
    g = tcomp.function([x], T.grad(cost, x), backend=backend)(np.array([1e3, -1e3, 1e300, -1e300, 0.0]))
    assert np.isfinite(g).all(), g
