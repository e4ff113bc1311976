"""``tcomp.ifelse.ifelse`` (the ``"ifelse"`` op): laziness, several outputs, gradients, use
inside ``scan``, and the IR forms.  Reference backend; expected values from NumPy."""
from __future__ import annotations

import numpy as np
import pytest

import tcomp as theano
import tcomp.tensor as T
from tcomp.ifelse import IfElse, ifelse
from tcomp.ir import evaluate
from tcomp.testing import verify_grad


@pytest.fixture(autouse=True, params=["reference", "cpu"])
def backend(request, monkeypatch):
    """Every test runs on the reference backend and on the cpu backend's native loops."""
    monkeypatch.setattr(theano.config, "backend", request.param)
    monkeypatch.setattr(theano.config, "native_program", True)
    return request.param


def test_theano_tutorial_ifelse_vs_switch():
    a, b = T.scalars("a", "b")
    x, y = T.matrices("x", "y")
    z_switch = T.switch(T.lt(a, b), T.mean(x), T.mean(y))
    z_lazy = ifelse(T.lt(a, b), T.mean(x), T.mean(y))
    f_switch = theano.function([a, b, x, y], z_switch)
    f_lazyifelse = theano.function([a, b, x, y], z_lazy)
    val1, val2 = np.float32(0.0), np.float32(1.0)
    big_mat1 = np.ones((100, 100), "float32")
    big_mat2 = np.full((100, 100), 2.0, "float32")
    assert f_switch(val1, val2, big_mat1, big_mat2) == 1.0 == f_lazyifelse(val1, val2, big_mat1, big_mat2)
    assert f_lazyifelse(val2, val1, big_mat1, big_mat2) == 2.0


def test_lazy_branches_and_several_outputs():
    """Only the taken branch runs: the other one would raise (an out-of-bounds index)."""
    c, x = T.iscalar("c"), T.vector("x")
    i = T.iscalar("i")
    outs = ifelse(T.gt(c, 0), [x[i] * 2, x.sum()], [x[0] - 1, x.max()])
    f = theano.function([c, x, i], outs)
    xv = np.array([1.0, 5.0, 3.0], "float32")
    np.testing.assert_allclose(f(1, xv, 1), [10.0, 9.0])
    np.testing.assert_allclose(f(0, xv, 99), [0.0, 5.0])  # x[99] is never computed
    with pytest.raises(IndexError):
        f(1, xv, 99)
    g = f.traced
    (node,) = [n for n in g.nodes() if g.op(n) == "ifelse"]
    then_ops = {g.attrs(node)["then_body"].graph.op(n) for n in g.attrs(node)["then_body"].graph.nodes()}
    assert {"subtensor", "sum"} <= then_ops  # the branch's work lives in the branch


def test_shared_part_is_computed_once_outside():
    x = T.vector("x")
    common = T.exp(x)
    out = ifelse(T.gt(x.sum(), 0), common * 2, common - 1)
    g = theano.function([x], out).traced
    (node,) = [n for n in g.nodes() if g.op(n) == "ifelse"]
    assert any(g.op(o) == "exp" for o in g.operands(node))


def test_gradient_through_ifelse():
    rng = np.random.default_rng(0)
    for flag in (1.0, -1.0):
        verify_grad(lambda a, x, y: ifelse(T.gt(a, 0), T.tanh(x) * y, x * x - y), [np.float64(flag),
                    rng.standard_normal(4), rng.standard_normal(4)], rng=0, backend=theano.config.backend)
    x = T.dvector("x")
    gx = T.grad(ifelse(T.gt(x[0], 0), (x ** 2).sum(), x.sum()), x)
    f = theano.function([x], gx)
    np.testing.assert_allclose(f([1.0, 2.0]), [2.0, 4.0])
    np.testing.assert_allclose(f([-1.0, 2.0]), [1.0, 1.0])


def test_ifelse_inside_scan_and_ifelse_op_object():
    x = T.vector("x")
    out, _ = theano.scan(lambda v, acc: ifelse(T.gt(v, 0), acc + v, acc * 0.5), sequences=x,
                         outputs_info=T.constant(np.float32(1.0)))
    f = theano.function([x], out)
    xv = np.array([1.0, -2.0, 3.0, -1.0], "float32")
    acc, want = 1.0, []
    for v in xv:
        acc = acc + v if v > 0 else acc * 0.5
        want.append(acc)
    np.testing.assert_allclose(f(xv), want)
    a, b = IfElse(2)(T.gt(x.sum(), 0), x, x * 2, -x, x * 3)
    fa = theano.function([x], [a, b])
    np.testing.assert_allclose(fa(np.ones(2, "float32")), [[1, 1], [2, 2]])
    np.testing.assert_allclose(fa(-np.ones(2, "float32")), [[1, 1], [-3, -3]])


def test_optimized_branches_and_errors():
    x = T.vector("x")
    out = ifelse(T.gt(x.sum(), 0), T.tanh(x * 2 + 1), T.exp(x) * 3)
    f = theano.function([x], out)
    g = f.optimized
    (node,) = [n for n in g.nodes() if g.op(n) == "ifelse"]
    assert any(g.attrs(node)["then_body"].graph.op(n) == "fused" for n in g.attrs(node)["then_body"].graph.nodes())
    xv = np.array([0.5, -0.25], "float32")
    np.testing.assert_allclose(f(xv), evaluate(f.traced, [xv])[0], rtol=1e-6)
    np.testing.assert_allclose(f(xv), np.tanh(xv * 2 + 1), rtol=1e-6)
    with pytest.raises(TypeError, match="same dtype and rank"):
        ifelse(T.gt(x.sum(), 0), x, T.matrix("m"))
    with pytest.raises(ValueError, match="then branch has 2"):
        ifelse(T.gt(x.sum(), 0), [x, x], [x])
    with pytest.raises(TypeError, match="scalar"):
        ifelse(x, x, x)
