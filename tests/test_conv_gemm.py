"""conv2d and its gradients on the CPU backend as im2col + packed GEMM
(tcomp/backend/cpu/kernels_conv_gemm.py): against the naive NumPy loop of
test_conv_pool_random (forward), the adjoint identities <gy, conv(x, w)> = <gx, x> = <gw, w>
with float64 NumPy sums, and the direct kernels (ints keep them); every padding, stride,
dilation and flip case there, float32 and float64, a strided input view, 2 threads and
mixed dtypes (which keep the direct kernels)."""
import numpy as np
import pytest
from test_conv_pool_random import CONV_CASES, naive_conv2d

import tcomp
import tcomp.tensor as T
from tcomp.backend.cpu import compile_graph
from tcomp.ir import Graph, TensorType

TOL = {"float32": dict(rtol=2e-4, atol=2e-4), "float64": dict(rtol=1e-10, atol=1e-10)}


def _one_op(op, arrays, attrs):
    g = Graph()
    ins = [g.add_input(TensorType(a.dtype.name, a.shape), f"in{i}") for i, a in enumerate(arrays)]
    g.outputs = [g.add_node(op, ins, attrs)]
    return compile_graph(g)(list(arrays))[0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("xs,ws,pad,stride,dil", CONV_CASES)
def test_forward_and_gradients(xs, ws, pad, stride, dil, flip, dtype):
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    attrs = {"pad": pad, "stride": stride, "dilation": dil, "filter_flip": flip}
    y = _one_op("conv2d", [x, w], attrs)
    np.testing.assert_allclose(y, naive_conv2d(x, w, pad, stride, dil, flip), **TOL[dtype])
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = _one_op("conv2d_grad_input", [gy, w], dict(attrs, input_shape=xs[2:]))
    gw = _one_op("conv2d_grad_filters", [x, gy], dict(attrs, filter_shape=ws[2:]))
    assert gx.shape == x.shape and gw.shape == w.shape
    ref = float(np.sum(naive_conv2d(x, w, pad, stride, dil, flip) * gy))
    for got, v in ((gx, x), (gw, w)):
        np.testing.assert_allclose(float(np.sum(got.astype("float64") * v)), ref, **TOL[dtype])


def test_lenet_sizes_strided_input_two_threads_and_the_grad():
    """A LeNet-2-like layer through T.nnet.conv2d and T.grad, x a transposed view; 1 and 2
    threads give the same bits; mixed dtypes still run (direct kernels)."""
    rng = np.random.default_rng(8)
    xt, w, gy = T.tensor4("xt"), T.tensor4("w", shape=(7, 6, 3, 3)), T.tensor4("gy")
    x = xt.dimshuffle(1, 0, 2, 3)  # (N, C, H, W) read through strides
    y = T.nnet.conv2d(x, w, border_mode="half", subsample=(2, 1))
    gx, gw = T.grad((y * gy).sum(), [xt, w])
    f = tcomp.function([xt, w, gy], [y, gx, gw])
    xv = rng.standard_normal((6, 5, 13, 12)).astype("float32")  # (C, N, H, W)
    wv = rng.standard_normal((7, 6, 3, 3)).astype("float32")
    want_y = naive_conv2d(xv.transpose(1, 0, 2, 3), wv, (1, 1), (2, 1), (1, 1), True)
    gyv = rng.standard_normal(want_y.shape).astype("float32")
    old = tcomp.config.num_threads
    try:
        tcomp.config.num_threads = 1
        one = f(xv, wv, gyv)
        tcomp.config.num_threads = 2
        two = f(xv, wv, gyv)
    finally:
        tcomp.config.num_threads = old
    np.testing.assert_allclose(one[0], want_y, **TOL["float32"])
    ref = float(np.sum(want_y * gyv))
    np.testing.assert_allclose(float(np.sum(one[1].astype("float64") * xv)), ref, rtol=1e-4)
    np.testing.assert_allclose(float(np.sum(one[2].astype("float64") * wv)), ref, rtol=1e-4)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    xi, wf = T.itensor4("xi"), T.tensor4("wf")  # mixed dtypes: the direct kernel
    fi = tcomp.function([xi, wf], T.nnet.conv2d(xi, wf))
    a, b = rng.integers(-3, 3, (2, 2, 6, 5)).astype("int32"), rng.standard_normal((3, 2, 2, 2)).astype("float32")
    np.testing.assert_allclose(fi(a, b), naive_conv2d(a, b, (0, 0), (1, 1), (1, 1), True), **TOL["float32"])
