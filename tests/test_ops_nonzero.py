"""``T.nonzero``/``flatnonzero``/``nonzero_values`` and boolean-mask indexing ``x[mask]`` (the
op "flatnonzero", whose result length is data) against NumPy on both backends, the gradient
of ``x[mask]`` (a scatter back), and the errors.

``CPU_CASES`` and ``ROUND_TRIP_BUILDERS`` are this op's rows in tests/test_cpu_ops.py and
tests/test_ir_text.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import compile_fn

import tcomp
import tcomp.tensor as T
from tcomp.ir import Graph, TensorType
from tcomp.testing import verify_grad


def test_nonzero_family_against_numpy(backend):
    w, v = T.dmatrix("w"), T.ivector("v")
    b3 = T.tensor("b3", "bool", (None, None, None))
    outs = [*T.nonzero(w), T.flatnonzero(w), T.nonzero_values(w), w[(w > 0.5).nonzero()], w[w > 0.5],
            T.nonzero(w, return_matrix=True), *v.nonzero(), v.nonzero_values(), v[v < 0], T.flatnonzero(b3),
            *T.nonzero(b3)]
    f = compile_fn([w, v, b3], outs, backend, expect_ops=["flatnonzero"])
    by_row = compile_fn([w], [w[:, w[0] > 0.5], w[w[:, 0] > 0.5]], backend)
    rng = np.random.default_rng(0)
    for shape in ((4, 5), (1, 7), (3, 0), (0, 2)):
        W = rng.random(shape)
        W[W < 0.3] = 0.0
        if W.size:
            W.reshape(-1)[0] = np.nan   # nan is nonzero (and not > 0.5)
        V = rng.integers(-2, 3, 9).astype("int32")
        B3 = rng.random((2, 3, 4)) < 0.4
        want = [*np.nonzero(W), np.flatnonzero(W), W[W != 0], W[(W > 0.5).nonzero()], W[W > 0.5],
                np.array(np.nonzero(W)), *np.nonzero(V), V[V != 0], V[V < 0], np.flatnonzero(B3), *np.nonzero(B3)]
        got = f(W, V, B3)
        if W.size:
            want += [W[:, W[0] > 0.5], W[W[:, 0] > 0.5]]
            got += by_row(W)
        for k, (g, e) in enumerate(zip(got, want)):
            assert g.shape == e.shape, (k, g.shape, e.shape)
            assert g.dtype == (e.dtype if e.dtype != np.intp else np.int64), (k, g.dtype, e.dtype)
            np.testing.assert_array_equal(g, e, err_msg=f"output {k} for shape {shape}")


def test_masked_updates_and_gradient(backend):
    x, m = T.dmatrix("x"), T.tensor("m", "bool", (None, None))
    y = T.set_subtensor(x[m], 0.0)
    z = T.inc_subtensor(x[x > 0], 1.0)
    g = T.grad((x[m] ** 2).sum() + x[x > 0].sum(), x)
    f = compile_fn([x, m], [y, z, g], backend)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3, 4))
    M = rng.random((3, 4)) < 0.5
    Y, Z = X.copy(), X.copy()
    Y[M] = 0.0
    Z[X > 0] += 1.0
    got = f(X, M)
    np.testing.assert_array_equal(got[0], Y)
    np.testing.assert_array_equal(got[1], Z)
    np.testing.assert_allclose(got[2], 2 * X * M + (X > 0), rtol=1e-12)


def test_masked_gradient_matches_finite_differences():
    mask = np.array([[True, False, True], [False, True, True]])
    verify_grad(lambda a: a[T.constant(mask)] * T.arange(4), [np.random.default_rng(2).standard_normal((2, 3))],
                rng=3)
    # (the zeros stay zeros under the finite-difference steps: the count is fixed)
    keep = T.constant(np.array([1.0, 0.0, 1.0, 1.0]))
    verify_grad(lambda a: T.nonzero_values(a * keep) ** 2, [np.array([0.5, 0.7, -2.0, 1.5])], rng=3)


def test_shared_variable_update_with_a_mask():
    """A training-style update through a mask (a staged native call with updates)."""
    w = tcomp.shared(np.array([0.2, 0.9, -0.4, 0.7]), "w")
    step = tcomp.function([], w[w > 0.5].sum(), updates=[(w, T.set_subtensor(w[w > 0.5], 0.5))])
    assert step() == pytest.approx(1.6)
    np.testing.assert_array_equal(w.get_value(), [0.2, 0.5, -0.4, 0.5])
    assert step() == 0.0


def test_bad_masks():
    x = T.tensor("x", "float64", (3, 4))
    with pytest.raises(IndexError, match="boolean index of shape \\(5,\\)"):
        x[np.ones(5, bool)]
    with pytest.raises(IndexError, match="boolean index"):
        x[T.tensor("m", "bool", (3, 5))]
    with pytest.raises(ValueError, match="at least one dimension"):
        T.nonzero(T.dscalar("s"))
    with pytest.raises(TypeError, match="integer scalar"):
        tcomp.tensor.variable.apply("flatnonzero", [x, T.dscalar("c")])


def test_a_wrong_count_is_an_error_not_a_write(backend):
    """The op's count operand must be the number of nonzeros (never written past)."""
    x, c = T.dvector("x"), T.lscalar("c")
    f = compile_fn([x, c], tcomp.tensor.variable.apply("flatnonzero", [x, c]), backend)
    np.testing.assert_array_equal(f(np.array([0.0, 2.0, 3.0]), 2), [1, 2])
    for bad in (1, 3):
        with pytest.raises(ValueError, match="count|nonzero"):
            f(np.array([0.0, 2.0, 3.0]), bad)


def test_cuda_backend_refuses_at_compile_time():
    x = T.dvector("x")
    with pytest.raises(TypeError, match="nvptx backend: kernel kind 'nonzero'"):
        tcomp.function([x], x[x > 0], backend="cuda")


# -- rows of the shared op tables --------------------------------------------------------------

def _cpu_case(g, d, rng):
    x = g.add_input(TensorType(d, (None, 3)), name="x")
    s = g.add_input(TensorType(d, ()), name="s")
    outs = []
    for v in (x, s):
        nz = g.add_node("neq", [v, g.add_constant(np.zeros((), d))])
        ones = g.add_node("cast", [nz], {"dtype": "int64"})
        count = g.add_node("sum", [ones], {"axis": tuple(range(g.type(v).ndim))})
        outs.append(g.add_node("flatnonzero", [v, count]))
    g.outputs = outs
    xv = rng.integers(0, 2, (4, 3)).astype(d)
    if d.startswith("float"):
        xv[0, 0] = np.nan
    return [xv, np.asarray(rng.integers(0, 2), dtype=d)]


CPU_CASES = {"flatnonzero": _cpu_case}


def _round_trip(rng):
    g = Graph()
    x = g.add_input(TensorType("float32", (None,)), "x")
    c = g.add_input(TensorType("int64", ()), "c")
    g.outputs = [g.add_node("flatnonzero", [x, c])]
    return g, [np.array([0.0, 1.5, 0.0, -2.0], "float32"), np.array(2, "int64")]


ROUND_TRIP_BUILDERS = {"flatnonzero": _round_trip}


def test_a_mask_inside_a_scan_body_is_refused_clearly():
    v = T.dmatrix("v")
    ys, _ = tcomp.scan(lambda r: r[r > 0].sum(), sequences=[v])
    with pytest.raises(TypeError, match="loop or branch body.*x\\[mask\\]"):
        tcomp.function([v], ys)
    f = tcomp.function([v], ys, backend="reference")
    np.testing.assert_allclose(f(np.array([[1.0, -2, 3], [-1, -1, 5]])), [4.0, 5.0])
