"""GEMM epilogue fusion (passes/fusion_gemm.py, backend/cpu/kernels_gemm_epilogue.py): a
``fused`` kernel that starts with a matrix product, against NumPy float64 written here, the
reference interpreter on the optimized graph, and the unfused compile (``exclude``).

Sizes cover every path of the GEMM runtime with an epilogue: packed (one and several KC
blocks, C^T computed when C is narrower than a micro-tile), narrow C (<= 16 columns or
rows), the no-packing loop, matrix-vector (M or N is 1) and empty dims; operands
transposed (dimshuffle views) and strided (slices); float32 and float64; 1 and 2 threads;
in-place and donated results over an operand the epilogue reads.
"""
import numpy as np
import pytest
from conftest import accumulation_tol

import tcomp
import tcomp.tensor as T
from tcomp.backend.cpu import kernels_gemm as KG
from tcomp.ir import evaluate
from tcomp.ir.ops.fused import CONTRACTIONS
from tcomp.passes.fusion_gemm import split_products
from tcomp.passes.manager import PIPELINES

#: the default pipeline fuses cheap epilogues only (passes/fusion_gemm.CHEAP_STEPS); the functions
#: here ask for every epilogue to be fused (tanh, sigmoid too)
EPILOGUE = tcomp.Mode(optimizer=PIPELINES["gemm_epilogue"])


def _fn(*args, **kwargs):
    return tcomp.function(*args, mode=EPILOGUE, **kwargs)

SIZES = [(1, 1, 1), (1, 40, 70), (70, 40, 1), (5, 7, 3), (3, 0, 5), (0, 4, 6), (37, 300, 10), (200, 300, 40),
         (130, 600, 90), (64, 17, 129), (300, 7, 300),
         # the non-packed paths' chunks (kernels_gemm_tiles.SCRATCH): several row chunks of a narrow C and of
         # a narrow C^T, column chunks of a wide row (and of its transpose) on the no-packing loop
         (2000, 40, 10), (10, 40, 2000), (2, 3, 5000), (5000, 3, 2),
         # the in-place kernel's (kernels_gemm_small) chunks of C's rows: few rows, few rows of a narrow C^T,
         # one KC block and N <= 256 (tall), rows wider than a chunk
         (16, 128, 128), (16, 40, 300), (2000, 100, 50), (8, 3, 3000)]


def _products(fn):
    g = fn.optimized
    return [n for n in g.nodes() if g.op(n) == "fused" and g.attrs(n)["body"][0][0] in CONTRACTIONS]


def _sig(v):
    return 1 / (1 + np.exp(-v))


def _build(dtype, ta, tb):
    x, w = T.matrix("x", dtype=dtype), T.matrix("w", dtype=dtype)
    b, r = T.vector("b", dtype=dtype), T.matrix("r", dtype=dtype)
    z = T.dot(x.T if ta else x, w.T if tb else w)
    outs = [T.nnet.relu(z + b), T.tanh(z) * 0.5 + r, T.nnet.sigmoid(z * 2.0), z + b]
    return [x, w, b, r], outs


def _want(xv, wv, bv, rv, ta, tb):
    z = (xv.T if ta else xv).astype("float64") @ (wv.T if tb else wv).astype("float64")
    return [np.maximum(z + bv, 0), np.tanh(z) * 0.5 + rv, _sig(z * 2.0), z + bv]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True)])
def test_epilogues_against_numpy(dtype, ta, tb):
    ins, outs = _build(dtype, ta, tb)
    fns = [_fn(ins, o, on_unused_input="ignore") for o in outs]  # one product each: absorbed
    assert all(len(_products(f)) == 1 for f in fns)
    rng = np.random.default_rng(3)
    for m, k, n in SIZES:
        xv = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
        wv = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
        bv, rv = rng.standard_normal(n).astype(dtype), rng.standard_normal((m, n)).astype(dtype)
        for f, want in zip(fns, _want(xv, wv, bv, rv, ta, tb)):
            got = f(xv, wv, bv, rv)
            np.testing.assert_allclose(got, want, err_msg=f"{m}x{k}x{n}", **accumulation_tol(dtype, max(k, 1), 1.0))


def test_multi_output_strided_operands_two_threads_and_the_interpreter(monkeypatch):
    """relu(z) and z from one kernel, x a strided slice; 2 threads give 1 thread's bits."""
    x, w, b = T.matrix("x"), T.matrix("w"), T.vector("b")
    z = T.dot(x[::2], w) + b
    f = _fn([x, w, b], [T.nnet.relu(z), z])
    assert len(_products(f)) == 1
    rng = np.random.default_rng(4)
    xv, wv, bv = (rng.standard_normal(s).astype("float32") for s in ((260, 333), (333, 70), (70,)))
    want = (xv[::2].astype("float64") @ wv) + bv
    old = tcomp.config.num_threads
    try:
        tcomp.config.num_threads = 1
        one = f(xv, wv, bv)
        tcomp.config.num_threads = 2
        two = f(xv, wv, bv)
    finally:
        tcomp.config.num_threads = old
    tol = accumulation_tol("float32", 333, 1.0)
    np.testing.assert_allclose(one[1], want, **tol)
    np.testing.assert_allclose(one[0], np.maximum(want, 0), **tol)
    for a, c in zip(one, two):
        np.testing.assert_array_equal(a, c)
    for a, c in zip(evaluate(f.optimized, [xv, wv, bv]), (np.maximum(want, 0), want)):
        np.testing.assert_allclose(a, c, **tol)
    split = split_products(f.optimized.copy())
    assert not [n for n in split.nodes() if split.op(n) == "fused" and split.attrs(n)["body"][0][0] in CONTRACTIONS]
    for a, c in zip(evaluate(split, [xv, wv, bv]), one):
        np.testing.assert_allclose(a, c, **tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m,n,batch", [(120, 70, 40), (90, 50, 700), (64, 8, 700), (33, 1, 300), (1, 40, 300),
                                          (1200, 10, 40), (10, 700, 40), (20, 64, 40), (300, 64, 40)])
def test_in_place_sgd_update(dtype, m, n, batch):
    """W - lr * (h.T @ d) written over W (a donated shared variable) while the epilogue reads
    W: one KC block (final sums through a stack buffer), several (partial sums in a malloc'd
    buffer, not in W), narrow products (in several chunks of the stack buffer, C and C^T
    computed) and matrix-vector products."""
    rng = np.random.default_rng(5)
    w0 = rng.standard_normal((m, n)).astype(dtype)
    W = tcomp.shared(w0.copy(), "W")
    h, d = T.matrix("h", dtype=dtype, shape=(batch, m)), T.matrix("d", dtype=dtype, shape=(batch, n))
    step = _fn([h, d], [], updates=[(W, W - 0.01 * T.dot(h.T, d))])
    assert len(_products(step)) == 1
    assert "may be written into" in step.dump("kernels")
    hv, dv = rng.standard_normal((batch, m)).astype(dtype), rng.standard_normal((batch, n)).astype(dtype)
    want = w0.astype("float64")
    for _ in range(2):
        step(hv, dv)
        want = want - 0.01 * (hv.T.astype("float64") @ dv)
    np.testing.assert_allclose(W.get_value(), want, **accumulation_tol(dtype, batch, 1.0))


def test_not_absorbed_where_the_product_is_needed_or_broadcast():
    x, w, xr, y = T.matrix("x"), T.matrix("w"), T.matrix("xr", shape=(1, None)), T.matrix("y")
    z = T.dot(x, w)
    assert not _products(_fn([x, w], [T.exp(z), z]))  # the product is also an output
    f = _fn([xr, w, y], T.dot(xr, w) + y)  # a (1, n) product broadcast over rows
    assert not _products(f)
    rng = np.random.default_rng(6)
    xv, wv, yv = rng.standard_normal((1, 5)), rng.standard_normal((5, 4)), rng.standard_normal((3, 4))
    np.testing.assert_allclose(f(*(v.astype("float32") for v in (xv, wv, yv))), xv @ wv + yv, rtol=1e-5, atol=1e-5)
    assert not _products(_fn([x, w], T.exp(T.dot(x, w)).sum(axis=1)))  # a reduction
    xi, wi = T.imatrix("xi"), T.imatrix("wi")
    assert not _products(_fn([xi, wi], T.dot(xi, wi) + 1))  # not the float GEMM
    f = _fn([x, w], T.exp(T.dot(x, w)), exclude=["fuse_gemm_epilogue_all"])
    assert not _products(f)


def test_cheap_epilogue_pipeline_fuses_cheap_epilogues_only():
    """The cost rule (passes/fusion_gemm.CHEAP_STEPS): PIPELINES['gemm_epilogue_cheap']
    absorbs a bias + relu, a backward mask and a scaled update, not a tanh or sigmoid epilogue
    (those measured slower fused at 2 threads); ``exclude`` turns it off, and the default
    pipeline fuses none; results match NumPy either way."""
    cheap_mode = tcomp.Mode(optimizer=PIPELINES["gemm_epilogue_cheap"])
    x, w, b, a = T.matrix("x"), T.matrix("w"), T.vector("b"), T.matrix("a")
    z = T.dot(x, w)
    cheap = [T.nnet.relu(z + b), T.where(0 < a, z, 0), a - 0.5 * z]
    costly = [T.tanh(z + b), T.nnet.sigmoid(z)]
    rng = np.random.default_rng(9)
    xv, wv, bv, av = (rng.standard_normal(s).astype("float32") for s in ((40, 30), (30, 70), (70,), (40, 70)))
    zv = xv.astype("float64") @ wv
    want = [np.maximum(zv + bv, 0), np.where(av > 0, zv, 0), av - 0.5 * zv, np.tanh(zv + bv), _sig(zv)]
    for o, wo, fused in zip(cheap + costly, want, [True] * 3 + [False] * 2):
        f = tcomp.function([x, w, b, a], o, on_unused_input="ignore", mode=cheap_mode)
        assert bool(_products(f)) == fused, o
        off = tcomp.function([x, w, b, a], o, on_unused_input="ignore", exclude=["fuse_gemm_epilogue"],
                             mode=cheap_mode)
        assert not _products(off)
        default = tcomp.function([x, w, b, a], o, on_unused_input="ignore")
        assert not _products(default)
        for g in (f, off, default):
            np.testing.assert_allclose(g(xv, wv, bv, av), wo, **accumulation_tol("float32", 30, 1.0))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dimshuffled_operands_in_the_epilogue(dtype):
    """A column bias ``c[:, None]`` and a mask of broadcast aranges (the triangular-solve and
    Cholesky gradients make these) are dimshuffle steps of the reader: the epilogue reads the
    operand through the permuted index (it once raised "no scalar lowering for unary op
    'dimshuffle'", and then such products stayed unfused)."""
    x, y, c = T.matrix("x", dtype=dtype), T.matrix("y", dtype=dtype), T.vector("c", dtype=dtype)
    i = T.arange(x.shape[1])
    tri = _fn([x, y], T.switch(T.ge(i.dimshuffle(0, "x"), i.dimshuffle("x", 0)), -T.dot(x, y), 0))
    col = _fn([x, y, c], T.tanh(T.dot(x, y) + c.dimshuffle(0, "x")))
    assert len(_products(tri)) == 1 and len(_products(col)) == 1
    rng = np.random.default_rng(7)
    for m in (3, 70, 260):  # the no-packing loop, then packed
        xv, yv = rng.standard_normal((2, m, m)).astype(dtype)
        want = xv.astype("float64") @ yv
        np.testing.assert_allclose(tri(xv, yv), np.tril(-want), **accumulation_tol(dtype, m, 1.0))
        cv = rng.standard_normal(m).astype(dtype)
        np.testing.assert_allclose(col(xv, yv, cv), np.tanh(want + cv[:, None]), **accumulation_tol(dtype, m, 1.0))


def test_gradients_through_fused_products():
    """T.grad of a two-layer net whose forward and backward products carry epilogues (bias,
    tanh, relu, the backward masks), against the gradients written out in NumPy."""
    x, w1, b1, w2 = T.matrix("x"), T.matrix("w1"), T.vector("b1"), T.matrix("w2")
    h = T.tanh(T.dot(x, w1) + b1)
    z = T.nnet.relu(T.dot(h, w2))
    cost = (z * z).sum() * 0.5
    f = _fn([x, w1, b1, w2], [cost] + T.grad(cost, [x, w1, b1, w2]))
    assert len(_products(f)) >= 2
    rng = np.random.default_rng(8)
    xv, w1v, b1v, w2v = (rng.standard_normal(s).astype("float32") * 0.3 for s in ((50, 70), (70, 90), (90,), (90, 20)))
    x64, w164, w264 = (v.astype("float64") for v in (xv, w1v, w2v))
    hv = np.tanh(x64 @ w164 + b1v)
    zv = np.maximum(hv @ w264, 0)
    gz = zv  # d cost / dz; relu' is 1 where z > 0 (zv is 0 elsewhere)
    gw2 = hv.T @ gz
    gh = (gz @ w264.T) * (1 - hv * hv)
    want = [0.5 * (zv * zv).sum(), gh @ w164.T, x64.T @ gh, gh.sum(0), gw2]
    for got, w in zip(f(xv, w1v, b1v, w2v), want):
        np.testing.assert_allclose(got, w, **accumulation_tol("float32", 90, 1.0))


def test_driver_settings_in_the_tag():
    cfg = KG.Config("float32")
    assert f"_e{cfg.EW}_" in cfg.tag and cfg.EB <= cfg.EW and cfg.EW % cfg.NR == 0 and cfg.EB % cfg.NR == 0
