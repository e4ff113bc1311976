"""tcomp.testing.verify_grad: passes on correct gradients (float64 and float32, scalar and
tensor outputs), and catches a deliberately wrong VJP rule with a GradientError."""
from __future__ import annotations

import numpy as np
import pytest

import tcomp.tensor as T
from tcomp.passes import autodiff
from tcomp.testing import GradientError, verify_grad


def test_mlp_layer_float64():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), rng.standard_normal(2)
    verify_grad(lambda x, w, b: T.tanh(T.dot(x, w) + b), [x, w, b], rng=rng)


def test_softmax_cross_entropy_scalar_output():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((3, 5))
    target = np.eye(5)[[0, 3, 1]]
    verify_grad(lambda z: -T.sum(T.log_softmax(z, axis=1) * T.constant(target)), [logits], rng=2)


def test_float32_uses_looser_defaults():
    rng = np.random.default_rng(3)
    x = rng.uniform(0.5, 2.0, (2, 3)).astype("float32")
    y = rng.standard_normal((2, 3)).astype("float32")
    verify_grad(lambda x, y: T.sqrt(x) * T.sigmoid(y) + x / (y * y + 1), [x, y], rng=rng)


def test_wrong_rule_is_caught(monkeypatch):
    """A VJP for sin that returns ct * sin(x) instead of ct * cos(x) must fail."""
    def wrong_sin(ctx):
        g = ctx.graph
        (x,) = ctx.operands
        return [g.add_node("mul", [ctx.cotangent, g.add_node("sin", [x])])]

    monkeypatch.setitem(autodiff.VJP_RULES, "sin", wrong_sin)
    x = np.array([0.3, 1.1, -0.4])
    with pytest.raises(GradientError) as info:
        verify_grad(lambda x: T.sin(x), [x], rng=0)
    err = info.value
    assert isinstance(err, AssertionError)
    assert err.arg == 0 and err.abs_err > 1e-2 and err.rel_err > 1e-2
    assert "max abs error" in str(err) and "argument 0" in str(err)


def test_tolerances_are_honoured(monkeypatch):
    """A rule off by 1e-3 relative passes with rel_tol=1e-2 and fails with the default."""
    def slightly_wrong_exp(ctx):
        g = ctx.graph
        scale = g.add_constant(np.float64(1.001))
        return [g.add_node("mul", [g.add_node("mul", [ctx.cotangent, ctx.node]), scale])]

    monkeypatch.setitem(autodiff.VJP_RULES, "exp", slightly_wrong_exp)
    x = np.array([0.2, -0.3])
    verify_grad(T.exp, [x], rng=0, rel_tol=1e-2, abs_tol=1e-2)
    with pytest.raises(GradientError):
        verify_grad(T.exp, [x], rng=0)


def test_bad_point_values():
    with pytest.raises(TypeError, match="dtype int64"):
        verify_grad(lambda x: x * 2.0, [np.arange(3)])
    with pytest.raises(TypeError, match="list of NumPy arrays"):
        verify_grad(lambda x: x * 2.0, np.ones(3))


CPU_CASES = {
    "mlp": (lambda x, w, b: T.tanh(T.dot(x, w) + b), [(3, 2), (2, 4), (4,)]),
    "log_softmax": (lambda x: T.log_softmax(x, axis=1), [(3, 5)]),
    "prod_max": (lambda x: T.prod(x, axis=1) + T.max(x, axis=1), [(3, 4)]),
    "slices_concat": (lambda x, y: T.concatenate([x[1:, ::2], T.exp(y)], axis=0), [(3, 4), (1, 2)]),
    "where_matmul": (lambda a, b: T.where(a > 0, T.matmul(a, b), T.sin(a)), [(2, 2, 3), (3, 3)]),
}


@pytest.mark.parametrize("case", sorted(CPU_CASES))
def test_verify_grad_through_cpu_backend(case):
    """The gradient graphs compile and run on the LLVM CPU backend too."""
    fn, shapes = CPU_CASES[case]
    rng = np.random.default_rng(4)
    verify_grad(fn, [rng.standard_normal(s) for s in shapes], rng=rng, backend="cpu")


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_random_draws_stay_fixed_across_evaluations(backend):
    """A dropout-style mask from RandomStreams is one draw for every finite difference:
    verify_grad compiles without default updates (else the mask changes per call)."""
    import tcomp

    srng = tcomp.RandomStreams(7)
    mask = srng.uniform((4, 3))

    def fn(x):
        return T.sum(T.tanh(x) * mask)

    x0 = np.random.default_rng(0).standard_normal((4, 3))
    verify_grad(fn, [x0], rng=0, backend=backend)
