"""conv2d / pool2d / random ops: type rules, NumPy references against naive loops,
gradient ops against finite differences and adjoint identities, Philox against the
published Random123 known-answer vectors."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from tcomp.ir import Graph, TensorType, evaluate
from tcomp.ir.ops.random import philox4x32

RNG = np.random.default_rng(1234)


def run_op(op, arrays, attrs, types=None):
    """Build a one-op graph over fresh inputs and evaluate it with the reference interpreter."""
    g = Graph()
    types = types or [TensorType(a.dtype.name, a.shape) for a in arrays]
    ins = [g.add_input(t, f"in{i}") for i, t in enumerate(types)]
    out = g.add_node(op, ins, attrs)
    g.outputs.append(out)
    return evaluate(g, arrays)[0], g.type(out)


def infer(op, types, attrs):
    g = Graph()
    ins = [g.add_input(t) for t in types]
    return g.type(g.add_node(op, ins, attrs))


# -- conv2d: naive loop reference -----------------------------------------------------------

def naive_conv2d(x, w, pad, stride, dilation, flip):
    if flip:
        w = w[:, :, ::-1, ::-1]
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    n, c, hp, wp = xp.shape
    o, _, kh, kw = w.shape
    oh = (hp - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wp - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n, o, oh, ow), dtype=np.float64)
    for b, f, i, j in itertools.product(range(n), range(o), range(oh), range(ow)):
        acc = 0.0
        for ch, a, bb in itertools.product(range(c), range(kh), range(kw)):
            acc += float(xp[b, ch, i * stride[0] + a * dilation[0], j * stride[1] + bb * dilation[1]]) * \
                float(w[f, ch, a, bb])
        y[b, f, i, j] = acc
    return y


CONV_CASES = [
    # x shape, w shape, pad, stride, dilation
    ((2, 3, 7, 6), (4, 3, 3, 2), (0, 0), (1, 1), (1, 1)),
    ((1, 2, 8, 9), (3, 2, 3, 3), (1, 2), (2, 1), (1, 1)),
    ((2, 1, 9, 7), (2, 1, 2, 3), (2, 1), (2, 3), (2, 1)),
    ((1, 2, 5, 5), (2, 2, 3, 3), (2, 2), (1, 1), (1, 1)),   # 'full'
    ((1, 3, 10, 8), (2, 3, 3, 2), (1, 0), (3, 2), (2, 3)),
    ((2, 2, 4, 4), (3, 2, 1, 1), (0, 0), (2, 2), (1, 1)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("xs,ws,pad,stride,dil", CONV_CASES)
def test_conv2d_matches_naive_loop(xs, ws, pad, stride, dil, flip, dtype):
    x = RNG.standard_normal(xs).astype(dtype)
    w = RNG.standard_normal(ws).astype(dtype)
    attrs = {"pad": pad, "stride": stride, "dilation": dil, "filter_flip": flip}
    y, t = run_op("conv2d", [x, w], attrs)
    want = naive_conv2d(x, w, pad, stride, dil, flip)
    assert t.dtype == dtype and t.shape == want.shape and y.dtype == dtype
    tol = 1e-4 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("xs,ws,pad,stride,dil", CONV_CASES)
def test_conv2d_grad_ops_are_exact_transposes(xs, ws, pad, stride, dil):
    """<gy, conv(x, w)> == <grad_input(gy, w), x> == <grad_filters(x, gy), w> for random x, w, gy."""
    x = RNG.standard_normal(xs)
    w = RNG.standard_normal(ws)
    attrs = {"pad": pad, "stride": stride, "dilation": dil, "filter_flip": True}
    y, _ = run_op("conv2d", [x, w], attrs)
    gy = RNG.standard_normal(y.shape)
    gx, tx = run_op("conv2d_grad_input", [gy, w], dict(attrs, input_shape=xs[2:]))
    gw, tw = run_op("conv2d_grad_filters", [x, gy], dict(attrs, filter_shape=ws[2:]))
    assert tx.shape == xs and tw.shape == ws
    lhs = np.vdot(gy, y)
    np.testing.assert_allclose(np.vdot(gx, x), lhs, rtol=1e-10)
    np.testing.assert_allclose(np.vdot(gw, w), lhs, rtol=1e-10)


def _fd_grad(f, v, eps=1e-6):
    g = np.zeros_like(v)
    flat, gflat = v.reshape(-1), g.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        hi = f()
        flat[k] = old - eps
        lo = f()
        flat[k] = old
        gflat[k] = (hi - lo) / (2 * eps)
    return g


@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("xs,ws,pad,stride,dil", CONV_CASES[1:3])
def test_conv2d_grad_ops_match_finite_differences(xs, ws, pad, stride, dil, flip):
    x = RNG.standard_normal(xs)
    w = RNG.standard_normal(ws)
    attrs = {"pad": pad, "stride": stride, "dilation": dil, "filter_flip": flip}
    y0, _ = run_op("conv2d", [x, w], attrs)
    gy = RNG.standard_normal(y0.shape)
    loss = lambda: float(np.vdot(gy, naive_conv2d(x, w, pad, stride, dil, flip)))
    gx, _ = run_op("conv2d_grad_input", [gy, w], dict(attrs, input_shape=xs[2:]))
    gw, _ = run_op("conv2d_grad_filters", [x, gy], dict(attrs, filter_shape=ws[2:]))
    np.testing.assert_allclose(gx, _fd_grad(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gw, _fd_grad(loss, w), rtol=1e-6, atol=1e-7)


def test_conv2d_grad_ops_take_symbolic_sizes_from_operands():
    x = RNG.standard_normal((1, 2, 9, 8))
    w = RNG.standard_normal((3, 2, 3, 2))
    attrs = {"pad": (1, 0), "stride": (2, 2), "dilation": (1, 1)}
    y, _ = run_op("conv2d", [x, w], attrs)
    gy = RNG.standard_normal(y.shape)
    h = np.array(9, dtype="int64")
    want, _ = run_op("conv2d_grad_input", [gy, w], dict(attrs, input_shape=(9, 8)))
    got, t = run_op("conv2d_grad_input", [gy, w, h], dict(attrs, input_shape=(None, 8)),
                    types=[TensorType("float64", (1, 3, None, None)), TensorType("float64", w.shape),
                           TensorType("int64", ())])
    assert t.shape == (1, 2, None, 8)
    np.testing.assert_array_equal(got, want)
    kh = np.array(3, dtype="int32")
    wantw, _ = run_op("conv2d_grad_filters", [x, gy], dict(attrs, filter_shape=(3, 2)))
    gotw, tw = run_op("conv2d_grad_filters", [x, gy, kh], dict(attrs, filter_shape=(None, 2)))
    assert tw.shape == (3, 2, None, 2)
    np.testing.assert_array_equal(gotw, wantw)


def test_conv2d_type_inference():
    f32 = lambda *s: TensorType("float32", s)
    assert infer("conv2d", [f32(2, 3, 8, 8), f32(5, 3, 3, 3)], {}).shape == (2, 5, 6, 6)
    assert infer("conv2d", [f32(None, 3, "h", 8), f32(5, 3, 3, 3)], {"pad": (1, 1)}).shape == (None, 5, None, 8)
    t = infer("conv2d", [TensorType("int32", (1, 1, 5, 5)), TensorType("float64", (1, 1, 2, 2))],
              {"stride": (2, 2)})
    assert t == TensorType("float64", (1, 1, 2, 2))
    assert infer("conv2d", [f32(1, 1, 7, 7), f32(1, 1, 3, 3)], {"dilation": (3, 3)}).shape == (1, 1, 1, 1)


@pytest.mark.parametrize("types,attrs,exc,words", [
    ([(1, 3, 8, 8), (2, 4, 3, 3)], {}, ValueError, "channels"),
    ([(1, 3, 4, 4), (2, 3, 5, 3)], {}, ValueError, "larger than the padded input"),
    ([(1, 3, 4, 4), (2, 3, 3, 3)], {"dilation": (2, 2)}, ValueError, "larger than the padded input"),
    ([(3, 4, 4), (2, 3, 3, 3)], {}, ValueError, "must be 4-d"),
    ([(1, 3, 4, 4), (2, 3, 3, 3)], {"stride": (0, 1)}, ValueError, "stride"),
    ([(1, 3, 4, 4), (2, 3, 3, 3)], {"pad": (1,)}, ValueError, "pad"),
])
def test_conv2d_errors(types, attrs, exc, words):
    with pytest.raises(exc, match=words):
        infer("conv2d", [TensorType("float32", s) for s in types], attrs)


def test_conv2d_int_operands_rejected_and_runtime_channel_check():
    with pytest.raises(TypeError, match="float"):
        infer("conv2d", [TensorType("int32", (1, 1, 4, 4)), TensorType("int32", (1, 1, 2, 2))], {})
    with pytest.raises(ValueError, match="channels"):
        run_op("conv2d", [np.zeros((1, 2, 4, 4)), np.zeros((1, 3, 2, 2))], {},
               types=[TensorType("float64", (1, None, 4, 4)), TensorType("float64", (1, None, 2, 2))])


def test_conv2d_grad_input_checks_output_size():
    with pytest.raises(ValueError, match="gives 3 outputs"):
        infer("conv2d_grad_input", [TensorType("float32", (1, 2, 4, 4)), TensorType("float32", (2, 1, 3, 3))],
              {"input_shape": (5, 6)})


# -- pool2d: naive reference following Theano's Pool.perform --------------------------------

def theano_out(v, k, s, ignore_border):
    if ignore_border:
        return max((v - k) // s + 1, 0)
    if s >= k:
        return (v - 1) // s + 1
    return max(0, (v - 1 - k + s) // s) + 1


def naive_pool(x, ws, stride, pad, mode, ignore_border):
    """Loop over every output pixel, regions clipped exactly as Theano's Pool.perform does."""
    mode = "average_exc_pad" if mode == "average" else mode
    hp, wp = x.shape[-2] + 2 * pad[0], x.shape[-1] + 2 * pad[1]
    y = np.zeros(x.shape[:-2] + (hp, wp), dtype=np.float64)
    y[..., pad[0]:hp - pad[0], pad[1]:wp - pad[1]] = x
    oh, ow = theano_out(hp, ws[0], stride[0], ignore_border), theano_out(wp, ws[1], stride[1], ignore_border)
    out = np.zeros(x.shape[:-2] + (oh, ow))

    def region(j, axis, full):
        start = j * stride[axis]
        end = min(start + ws[axis], full)
        if mode != "average_inc_pad":
            start, end = max(start, pad[axis]), min(end, full - pad[axis])
        return slice(start, end)

    for lead in np.ndindex(*x.shape[:-2]):
        for i, j in itertools.product(range(oh), range(ow)):
            patch = y[lead][region(i, 0, hp), region(j, 1, wp)]
            out[lead + (i, j)] = {"max": np.max, "sum": np.sum}.get(mode, np.mean)(patch)
    return out


POOL_CASES = [
    # x shape, ws, stride, pad, ignore_border
    ((2, 3, 6, 6), (2, 2), None, (0, 0), True),
    ((2, 3, 5, 7), (2, 2), None, (0, 0), False),
    ((1, 2, 7, 6), (3, 2), (2, 1), (0, 0), True),
    ((1, 2, 7, 6), (3, 2), (2, 1), (0, 0), False),
    ((3, 8, 9), (3, 3), (2, 2), (1, 2), True),
    ((4, 5), (2, 3), (3, 1), (1, 1), True),
    ((2, 1, 5, 5), (3, 3), (1, 1), (2, 0), True),
    ((1, 1, 4, 5), (2, 2), (3, 3), (0, 0), False),
]
POOL_MODES = ["max", "sum", "average_inc_pad", "average_exc_pad", "average"]


@pytest.mark.parametrize("mode", POOL_MODES)
@pytest.mark.parametrize("xs,ws,stride,pad,ib", POOL_CASES)
def test_pool2d_matches_naive_loop(xs, ws, stride, pad, ib, mode):
    for dtype in ("float32", "float64"):
        x = RNG.standard_normal(xs).astype(dtype)
        attrs = {"ws": ws, "stride": stride, "pad": pad, "mode": mode, "ignore_border": ib}
        y, t = run_op("pool2d", [x], attrs)
        want = naive_pool(x, ws, stride or ws, pad, mode, ib)
        assert t.shape == want.shape and y.dtype == dtype
        np.testing.assert_allclose(y, want, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-6)


def test_pool2d_int_max_and_int_average():
    x = RNG.integers(-50, 50, (2, 5, 5)).astype("int32")
    y, t = run_op("pool2d", [x], {"ws": (2, 2), "ignore_border": False})
    assert t.dtype == "int32"
    np.testing.assert_array_equal(y, naive_pool(x, (2, 2), (2, 2), (0, 0), "max", False))
    y, t = run_op("pool2d", [x], {"ws": (2, 2), "mode": "average"})
    assert t.dtype in ("float32", "float64")
    np.testing.assert_allclose(y, naive_pool(x, (2, 2), (2, 2), (0, 0), "average", True), rtol=1e-6)


@pytest.mark.parametrize("mode", POOL_MODES)
@pytest.mark.parametrize("xs,ws,stride,pad,ib", POOL_CASES)
def test_pool2d_grad_matches_finite_differences(xs, ws, stride, pad, ib, mode):
    x = RNG.permutation(np.prod(xs)).reshape(xs).astype(np.float64) * 0.1  # distinct values: no max ties
    attrs = {"ws": ws, "stride": stride, "pad": pad, "mode": mode, "ignore_border": ib}
    y, _ = run_op("pool2d", [x], attrs)
    gy = RNG.standard_normal(y.shape)
    gx, t = run_op("pool2d_grad", [x, gy], attrs)
    assert t.shape == xs
    loss = lambda: float(np.vdot(gy, naive_pool(x, ws, stride or ws, pad, mode, ib)))
    np.testing.assert_allclose(gx, _fd_grad(loss, x, eps=1e-4), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("mode", POOL_MODES)
@pytest.mark.parametrize("xs,ws,stride,pad,ib", POOL_CASES[2:6])
def test_pool2d_grad_grad_is_transpose_of_grad(xs, ws, stride, pad, ib, mode):
    x = RNG.standard_normal(xs)
    attrs = {"ws": ws, "stride": stride, "pad": pad, "mode": mode, "ignore_border": ib}
    y, _ = run_op("pool2d", [x], attrs)
    gy = RNG.standard_normal(y.shape)
    g = RNG.standard_normal(xs)
    gx, _ = run_op("pool2d_grad", [x, gy], attrs)
    gg, t = run_op("pool2d_grad_grad", [x, g], attrs)
    assert t.shape == y.shape
    np.testing.assert_allclose(np.vdot(gx, g), np.vdot(gy, gg), rtol=1e-10)


def test_pool2d_max_grad_first_max_wins_on_ties():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 2:, 2:] = [[1.0, 3.0], [3.0, 3.0]]
    gy = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    gx, _ = run_op("pool2d_grad", [x, gy], {"ws": (2, 2)})
    want = np.zeros((1, 1, 4, 4))
    want[0, 0, 0, 0], want[0, 0, 0, 2], want[0, 0, 2, 0], want[0, 0, 2, 3] = 1.0, 2.0, 3.0, 4.0
    np.testing.assert_array_equal(gx, want)


def test_pool2d_type_inference_and_errors():
    f = lambda *s: TensorType("float32", s)
    assert infer("pool2d", [f(2, 3, 7, 7)], {"ws": (2, 2)}).shape == (2, 3, 3, 3)
    assert infer("pool2d", [f(2, 3, 7, 7)], {"ws": (2, 2), "ignore_border": False}).shape == (2, 3, 4, 4)
    assert infer("pool2d", [f(None, "h", 7)], {"ws": (2, 3), "stride": (1, 1)}).shape == (None, None, 5)
    assert infer("pool2d", [f(1, 1)], {"ws": (2, 2)}).shape == (0, 0)
    with pytest.raises(ValueError, match="smaller than the window"):
        infer("pool2d", [f(4, 4)], {"ws": (2, 2), "pad": (2, 0)})
    with pytest.raises(ValueError, match="ignore_border=True"):
        infer("pool2d", [f(4, 4)], {"ws": (2, 2), "pad": (1, 0), "ignore_border": False})
    with pytest.raises(ValueError, match="mode"):
        infer("pool2d", [f(4, 4)], {"mode": "median"})
    with pytest.raises(ValueError, match="at least 2 dims"):
        infer("pool2d", [f(4)], {})
    with pytest.raises(ValueError, match="does not match"):
        infer("pool2d_grad", [f(1, 4, 4), f(1, 3, 2)], {})
    with pytest.raises(TypeError, match="float"):
        infer("pool2d_grad", [TensorType("int32", (4, 4)), f(2, 2)], {})


# -- random: Philox known answers, distributions, reproducibility ----------------------------

# Random123 kat_vectors for philox4x32 (counter words, key words, expected), as published by
# D. E. Shaw Research (also in their fs123 core123/ut/ut_philox.cpp).
PHILOX_KAT = [
    (7, (0, 0, 0, 0), (0, 0), (0x5f6fb709, 0x0d893f64, 0x4f121f81, 0x4f730a48)),
    (7, (0xffffffff,) * 4, (0xffffffff, 0xffffffff), (0x5207ddc2, 0x45165e59, 0x4d8ee751, 0x8c52f662)),
    (7, (0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0x4dfccaba, 0x190a87f0, 0xc47362ba, 0xb6b5242a)),
    (10, (0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    (10, (0xffffffff,) * 4, (0xffffffff, 0xffffffff), (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    (10, (0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]


@pytest.mark.parametrize("rounds,ctr,key,want", PHILOX_KAT)
def test_philox4x32_known_answers(rounds, ctr, key, want):
    got = philox4x32(ctr, key, rounds)
    assert tuple(int(w) for w in got) == want
    # vectorized: the same counter broadcast over an array gives the same words everywhere
    many = philox4x32(tuple(np.full(5, c, dtype=np.uint64) for c in ctr), key, rounds)
    assert all(np.all(m == w) for m, w in zip(many, want))


def draw(op, shape, attrs=None, seed=42, counter=0, seed_dtype="int64", dims=None):
    arrays = [np.array(seed, dtype=seed_dtype), np.array(counter, dtype="int64")]
    arrays += [np.array(d, dtype="int64") for d in (dims or [])]
    out, t = run_op(op, arrays, dict(attrs or {}, shape=shape))
    assert t.shape == tuple(shape)
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_range_and_moments(dtype):
    u = draw("random_uniform", (400, 500), {"dtype": dtype, "low": -2.0, "high": 3.0})
    assert u.dtype == dtype
    assert u.min() >= -2.0 and u.max() < 3.0
    assert abs(u.mean() - 0.5) < 0.02
    assert abs(u.var() - 25 / 12) < 0.03
    # the bins of a histogram are filled evenly (no stuck bits)
    hist = np.histogram(u, bins=50, range=(-2, 3))[0]
    assert hist.min() > 0.9 * u.size / 50 and hist.max() < 1.1 * u.size / 50


def test_uniform_float32_from_top_24_bits_exactly():
    """The documented recipe, recomputed here from the raw Philox words."""
    u = draw("random_uniform", (3, 7), {"dtype": "float32"}, seed=(1 << 40) + 5, counter=(1 << 33) + 9)
    i = np.arange(21, dtype=np.uint64)
    w0 = philox4x32((i, 0, 9, 2), (5, 1 << 8))[0]
    want = (w0 >> 8).astype(np.float32) * np.float32(2.0 ** -24)
    np.testing.assert_array_equal(u.ravel(), want)


def test_normal_moments_and_box_muller_recipe():
    z = draw("random_normal", (200_000,), {"dtype": "float64", "mean": 1.5, "std": 2.0}, seed=7)
    assert abs(z.mean() - 1.5) < 0.02 and abs(z.std() - 2.0) < 0.02
    s = (z - 1.5) / 2.0
    assert abs(np.mean(s ** 3)) < 0.03 and abs(np.mean(s ** 4) - 3.0) < 0.06
    assert abs(np.mean(np.abs(s) < 1.0) - 0.6827) < 0.005
    z32 = draw("random_normal", (200_000,), {"dtype": "float32", "mean": 1.5, "std": 2.0}, seed=7)
    np.testing.assert_allclose(z32, z.astype(np.float32), rtol=0, atol=0)


@pytest.mark.parametrize("n,p,dtype", [(1, 0.3, "int64"), (5, 0.7, "int32"), (13, 0.25, "float32"), (1, 0.5, "bool")])
def test_binomial_moments(n, p, dtype):
    b = draw("random_binomial", (300, 400), {"n": n, "p": p, "dtype": dtype}, seed=11)
    assert b.dtype == dtype
    b = b.astype(np.float64)
    assert b.min() >= 0 and b.max() <= n and np.all(b == np.round(b))
    assert abs(b.mean() - n * p) < 0.01 * n + 0.005
    assert abs(b.var() - n * p * (1 - p)) < 0.03 * n * p * (1 - p) + 0.005


def test_binomial_extremes():
    assert draw("random_binomial", (1000,), {"n": 6, "p": 1.0}).tolist() == [6] * 1000
    assert draw("random_binomial", (1000,), {"n": 6, "p": 0.0}).tolist() == [0] * 1000
    assert draw("random_binomial", (10,), {"n": 0, "p": 0.5}).tolist() == [0] * 10


@pytest.mark.parametrize("op", ["random_uniform", "random_normal", "random_binomial"])
def test_reproducible_and_different_per_counter_and_seed(op):
    a = draw(op, (64,), seed=3, counter=10)
    np.testing.assert_array_equal(a, draw(op, (64,), seed=3, counter=10))
    np.testing.assert_array_equal(a, draw(op, (64,), seed=3, counter=10, seed_dtype="int32"))
    for other in (draw(op, (64,), seed=3, counter=11), draw(op, (64,), seed=4, counter=10),
                  draw(op, (64,), seed=3 + (1 << 32), counter=10)):
        assert np.mean(a != other) > (0.3 if op == "random_binomial" else 0.99)


def test_symbolic_shape_key_vector_and_prefix_property():
    g = Graph()
    seed = g.add_input(TensorType("int64", (2,)), "key")
    ctr = g.add_input(TensorType("int64", ()), "ctr")
    n = g.add_input(TensorType("int64", ()), "n")
    u = g.add_node("random_uniform", [seed, ctr, n], {"shape": (None, 3), "dtype": "float64"})
    assert g.type(u).shape == (None, 3)
    g.outputs.append(u)
    key = np.array([5, 1], dtype="int64")
    (a,) = evaluate(g, [key, np.array(2), np.array(4)])
    (b,) = evaluate(g, [key, np.array(2), np.array(6)])
    assert a.shape == (4, 3) and b.shape == (6, 3)
    # element i depends only on (key, counter, i): a smaller draw is a prefix of a larger one
    np.testing.assert_array_equal(a, b[:4])
    # the key vector (5, 1) is the same key as the scalar seed 5 + 2**32
    np.testing.assert_array_equal(a.ravel(), draw("random_uniform", (12,), {"dtype": "float64"},
                                                  seed=5 + (1 << 32), counter=2))


@pytest.mark.parametrize("op,types,attrs,exc,words", [
    ("random_uniform", [("float32", ()), ("int64", ())], {}, TypeError, "seed"),
    ("random_uniform", [("int64", (3,)), ("int64", ())], {}, TypeError, "seed"),
    ("random_uniform", [("int64", ()), ("int64", (2,))], {}, TypeError, "counter"),
    ("random_uniform", [("int64", ()), ("int64", ())], {"low": 1.0, "high": 1.0}, ValueError, "low < high"),
    ("random_uniform", [("int64", ()), ("int64", ())], {"dtype": "int32"}, TypeError, "dtype"),
    ("random_uniform", [("int64", ()), ("int64", ())], {"shape": (None, 2)}, ValueError, "dim operands"),
    ("random_normal", [("int64", ()), ("int64", ())], {"std": -1.0}, ValueError, "std"),
    ("random_binomial", [("int64", ()), ("int64", ())], {"p": 1.5}, ValueError, "p must be"),
    ("random_binomial", [("int64", ()), ("int64", ())], {"n": -1}, ValueError, "n must be"),
    ("random_binomial", [("int64", ()), ("int64", ())], {"n": 3, "dtype": "bool"}, TypeError, "bool"),
])
def test_random_errors(op, types, attrs, exc, words):
    with pytest.raises(exc, match=words):
        infer(op, [TensorType(d, s) for d, s in types], attrs)


# -- VJP rules through autodiff.grad, checked by finite differences --------------------------

def _autodiff():
    from tcomp.passes import autodiff, autodiff_conv  # noqa: F401  (registers the conv/pool rows)
    return autodiff


def _fd_graph(g, out, inputs, values, k, eps=1e-6):
    """Central finite differences of scalar node ``out`` with respect to input number ``k``."""
    h = Graph.copy(g)
    h.outputs = [out]
    base = [v.copy() for v in values]
    res = np.zeros_like(base[k])
    flat = base[k].reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        hi = evaluate(h, base)[0]
        flat[i] = old - eps
        lo = evaluate(h, base)[0]
        flat[i] = old
        res.reshape(-1)[i] = (hi - lo) / (2 * eps)
    return res


def _weighted_sum(g, v, rng):
    c = g.add_constant(rng.standard_normal([int(d) for d in g.type(v).shape]))
    return g.add_node("sum", [g.add_node("mul", [v, c])], {"axis": tuple(range(g.type(v).ndim))})


def _conv_net(attrs, pool_attrs, x_type, w_type, rng):
    g = Graph()
    x = g.add_input(x_type, "x")
    w = g.add_input(w_type, "w")
    y = g.add_node("tanh", [g.add_node("conv2d", [x, w], attrs)])
    if pool_attrs is not None:
        y = g.add_node("pool2d", [y], pool_attrs)
    return g, x, w, y


@pytest.mark.parametrize("attrs,pool_attrs", [
    ({"pad": (1, 0), "stride": (2, 1), "dilation": (1, 2)}, None),
    ({"pad": (1, 1)}, {"ws": (2, 2), "mode": "max"}),
    ({"stride": (1, 2), "filter_flip": False}, {"ws": (3, 2), "stride": (1, 1), "pad": (1, 1), "mode": "average"}),
    ({}, {"ws": (2, 2), "ignore_border": False, "mode": "average_inc_pad"}),
])
def test_grad_through_conv_and_pool_matches_finite_differences(attrs, pool_attrs):
    ad = _autodiff()
    rng = np.random.default_rng(5)
    xv, wv = rng.standard_normal((2, 2, 7, 6)), rng.standard_normal((3, 2, 3, 2))
    g, x, w, y = _conv_net(attrs, pool_attrs, TensorType("float64", xv.shape), TensorType("float64", wv.shape), rng)
    cost = _weighted_sum(g, y, rng)
    gx, gw = ad.grad(g, cost, [x, w])
    h = g.copy()
    h.outputs = [gx, gw]
    got_x, got_w = evaluate(h, [xv, wv])
    np.testing.assert_allclose(got_x, _fd_graph(g, cost, [x, w], [xv, wv], 0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got_w, _fd_graph(g, cost, [x, w], [xv, wv], 1), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("pool_attrs", [None, {"ws": (2, 2), "stride": (1, 1), "mode": "max"},
                                        {"ws": (2, 2), "mode": "average_exc_pad", "pad": (1, 1)}])
def test_second_order_grad_through_conv_and_pool(pool_attrs):
    """grad of <grad(cost, x), r> exercises the VJPs of the gradient ops themselves."""
    ad = _autodiff()
    rng = np.random.default_rng(8)
    xv, wv = rng.standard_normal((1, 2, 6, 6)), rng.standard_normal((2, 2, 2, 3))
    attrs = {"pad": (0, 1), "stride": (1, 1)}
    g, x, w, y = _conv_net(attrs, pool_attrs, TensorType("float64", xv.shape), TensorType("float64", wv.shape), rng)
    cost = g.add_node("sum", [g.add_node("mul", [y, y])], {"axis": tuple(range(4))})
    gx = ad.grad(g, cost, x)
    cost2 = _weighted_sum(g, gx, rng)
    ggx, ggw = ad.grad(g, cost2, [x, w])
    h = g.copy()
    h.outputs = [ggx, ggw]
    got_x, got_w = evaluate(h, [xv, wv])
    np.testing.assert_allclose(got_x, _fd_graph(g, cost2, [x, w], [xv, wv], 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_w, _fd_graph(g, cost2, [x, w], [xv, wv], 1), rtol=1e-5, atol=1e-6)


def test_grad_with_symbolic_shapes_and_mixed_dtypes():
    """Symbolic spatial dims become shape operands of the gradient ops; a float32 input
    convolved with float64 filters gets a float32 gradient."""
    ad = _autodiff()
    rng = np.random.default_rng(3)
    xv, wv = rng.standard_normal((2, 2, 7, 6)).astype("float32"), rng.standard_normal((3, 2, 3, 2))
    attrs, pool_attrs = {"pad": (1, 0), "stride": (2, 1)}, {"ws": (2, 2), "ignore_border": False}
    results = []
    for x_type in (TensorType("float32", xv.shape), TensorType("float32", ("n", 2, None, None))):
        g, x, w, y = _conv_net(attrs, pool_attrs, x_type, TensorType("float64", wv.shape), rng)
        cost = g.add_node("sum", [y], {"axis": tuple(range(4))})
        gx, gw = ad.grad(g, cost, [x, w])
        assert g.type(gx) == x_type and g.type(gw) == TensorType("float64", wv.shape)
        h = g.copy()
        h.outputs = [gx, gw]
        results.append(evaluate(h, [xv, wv]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12)


def test_random_ops_stop_the_gradient():
    ad = _autodiff()
    g = Graph()
    x = g.add_input(TensorType("float64", (4,)), "x")
    key = g.add_constant(np.array([1, 2], dtype="int64"))
    ctr = g.add_constant(np.array(0, dtype="int64"))
    u = g.add_node("random_uniform", [key, ctr], {"shape": (4,), "dtype": "float64"})
    cost = g.add_node("sum", [g.add_node("mul", [x, u])], {"axis": (0,)})
    gx = ad.grad(g, cost, x)
    h = g.copy()
    h.outputs = [gx, u]
    got, uv = evaluate(h, [np.zeros(4)])
    np.testing.assert_array_equal(got, uv)


def test_uniform_scaling_never_reaches_high():
    """The largest float32 uniform 1 - 2**-24 on [1, 2) rounds to 2.0 (ties to even); it must be clamped."""
    from tcomp.ir.ops.random import scale_uniform
    top = np.float32(1.0) - np.float32(2.0 ** -24)
    assert np.float32(1.0) + np.float32(1.0) * top == np.float32(2.0)  # the hazard is real
    r = scale_uniform(np.array([0.0, 0.5, top], dtype=np.float32), 1.0, 2.0, "float32")
    assert r.dtype == np.float32 and r.tolist() == [1.0, 1.5, float(np.nextafter(np.float32(2), np.float32(0)))]
    top64 = 1.0 - 2.0 ** -53
    assert scale_uniform(np.array([top64]), -1.0, 1.0, "float64")[0] < 1.0
