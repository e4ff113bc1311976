"""``T.nlinalg.eigh``/``svd``/``qr``/``pinv``/``norm`` (ord 2, -2, 'nuc') and
``T.slinalg.eigvalsh`` (ops "eigh", "svd", "qr") against ``np.linalg`` on both backends, their gradients against finite
differences, and bad operands.

Vectors are compared after the sign convention written out here (each eigenvector and each
row of vt with its largest-magnitude entry positive, u's columns following vt's rows), on
matrices with well-separated eigenvalues/singular values, where the vectors are unique up to
that sign.  ``AUTODIFF_CASES``, ``CPU_CASES`` and ``ROUND_TRIP_BUILDERS`` are these ops' rows
in the shared table tests.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import compile_fn

import tcomp.tensor as T
from tcomp.ir import Graph, TensorType
from tcomp.testing import verify_grad

TOL = {"float32": {"rtol": 1e-4, "atol": 1e-5}, "float64": {"rtol": 1e-9, "atol": 1e-11}}


def _positive_largest(rows):
    """Flip each row (last axis) so that its first largest-magnitude entry is positive."""
    out = rows.copy()
    for idx in np.ndindex(rows.shape[:-1]):
        r = rows[idx]
        if r.size and r[np.argmax(np.abs(r))] < 0:
            out[idx] = -r
    return out


def _symmetric(rng, n, dtype, batch=()):
    a = rng.standard_normal(batch + (n, n))
    return (a + np.swapaxes(a, -1, -2)).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_eigh_and_svd_against_numpy(backend, dtype):
    rng = np.random.default_rng(0)
    a, r = T.matrix("a", dtype), T.matrix("r", dtype)
    w, v = T.nlinalg.eigh(a)
    wu, vu = T.nlinalg.eigh(a, UPLO="U")
    u, s, vt = T.nlinalg.svd(r, full_matrices=False)
    outs = [w, v, wu, vu, u, s, vt, T.nlinalg.svd(r, compute_uv=False), T.slinalg.eigvalsh(a, None),
            T.nlinalg.pinv(r), T.nlinalg.norm(r, 2), T.nlinalg.norm(r, -2), T.nlinalg.norm(r, "nuc")]
    f = compile_fn([a, r], outs, backend, expect_ops=["eigh", "svd"])
    for n, shape in ((5, (7, 4)), (4, (3, 6)), (1, (1, 1)), (6, (5, 5))):
        A = _symmetric(rng, n, dtype)
        Au = np.triu(A) + np.tril(rng.standard_normal((n, n)), -1).astype(dtype)   # only the upper is read
        R = rng.standard_normal(shape).astype(dtype)
        A64, R64 = A.astype("float64"), R.astype("float64")
        W, V = np.linalg.eigh(A64)
        V = np.swapaxes(_positive_largest(V.T), 0, 1)
        U, S, VT = np.linalg.svd(R64, full_matrices=False)
        VTn = _positive_largest(VT)
        Un = U * np.sign(np.sum(VTn * VT, axis=1))[None, :]
        want = [W, V, W, V, Un, S, VTn, S, W, np.linalg.pinv(R64), S[0], S[-1], S.sum()]
        got = f(np.tril(A) + np.triu(np.full((n, n), 9.0, dtype), 1), R)
        got_upper = f(Au, R)
        got[2:4] = got_upper[2:4]
        for k, (g, e) in enumerate(zip(got, want)):
            g = np.asarray(g)
            assert g.dtype == dtype and g.shape == np.shape(e), (k, g.dtype, g.shape, np.shape(e))
            np.testing.assert_allclose(g, e, **TOL[dtype], err_msg=f"output {k} for n={n}, r {shape}")


def _positive_r(q, r):
    """NumPy's reduced QR with R's diagonal made non-negative (the unique factors)."""
    k = r.shape[-2]
    sign = np.where(np.diagonal(r[..., :, :k], axis1=-2, axis2=-1) < 0, -1.0, 1.0)
    return q * sign[..., None, :], r * sign[..., :, None]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_qr_against_numpy(backend, dtype):
    rng = np.random.default_rng(6)
    x, x3 = T.matrix("x", dtype), T.tensor3("x3", dtype)
    f = compile_fn([x, x3], [*T.nlinalg.qr(x), T.nlinalg.qr(x, mode="r"), *T.nlinalg.qr(x3)], backend,
                   expect_ops=["qr"])
    for shape in ((6, 4), (3, 5), (4, 4), (1, 1), (0, 3)):
        X, X3 = rng.standard_normal(shape).astype(dtype), rng.standard_normal((2,) + shape).astype(dtype)
        q, r = _positive_r(*np.linalg.qr(X.astype("float64")))
        q3, r3 = _positive_r(*np.linalg.qr(X3.astype("float64")))
        for k, (g, e) in enumerate(zip(f(X, X3), [q, r, r, q3, r3])):
            assert g.dtype == dtype and g.shape == e.shape, (k, g.shape, e.shape)
            np.testing.assert_allclose(g, e, **TOL[dtype], err_msg=f"output {k} for {shape}")


def test_batched_and_empty(backend):
    rng = np.random.default_rng(1)
    a, r = T.dtensor3("a"), T.dtensor3("r")
    f = compile_fn([a, r], [T.nlinalg.eigh(a)[0], T.nlinalg.svd(r, compute_uv=False),
                            T.nlinalg.svd(r, full_matrices=False)[2]], backend)
    for batch, n, shape in ((3, 4, (5, 2)), (0, 3, (2, 3)), (2, 0, (0, 3))):
        A, R = _symmetric(rng, n, "float64", (batch,)), rng.standard_normal((batch,) + shape)
        w, s, vt = f(A, R)
        np.testing.assert_allclose(w, np.linalg.eigvalsh(A), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(s, np.linalg.svd(R, compute_uv=False), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(vt, _positive_largest(np.linalg.svd(R, full_matrices=False)[2]), rtol=1e-9,
                                   atol=1e-11)


def test_reconstruction_of_rank_deficient_and_graded_matrices(backend):
    """Jacobi keeps small singular values accurate; a rank-deficient matrix reconstructs."""
    r = T.dmatrix("r")
    u, s, vt = T.nlinalg.svd(r, full_matrices=False)
    f = compile_fn([r], [u, s, vt], backend)
    rng = np.random.default_rng(2)
    q1, _ = np.linalg.qr(rng.standard_normal((6, 4)))
    q2, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    graded = q1 @ np.diag([1.0, 1e-3, 1e-6, 1e-9]) @ q2
    low_rank = rng.standard_normal((6, 2)) @ rng.standard_normal((2, 4))
    for m in (graded, low_rank):
        U, S, VT = f(m)
        np.testing.assert_allclose((U * S) @ VT, m, atol=1e-12)
        np.testing.assert_allclose(S, np.linalg.svd(m, compute_uv=False), rtol=1e-8, atol=1e-14)


def test_qr_modes_and_wide_gradient():
    with pytest.raises(ValueError, match="mode"):
        T.nlinalg.qr(T.dmatrix("m"), mode="complete")
    with pytest.raises(ValueError, match="mode"):
        T.nlinalg.qr(T.dmatrix("m"), mode="raw")
    q, r = T.nlinalg.qr(T.tensor("sq", "float64", (3, 3)), mode="complete")   # square: complete == reduced
    assert q.type.shape == (3, 3)
    wide = T.tensor("wide", "float64", (2, 4))
    with pytest.raises(TypeError, match="rows >= columns.*wide"):
        T.grad(T.nlinalg.qr(wide)[1].sum(), wide)


def test_bad_operands():
    with pytest.raises(ValueError, match="full_matrices"):
        T.nlinalg.svd(T.dmatrix("m"))
    with pytest.raises(ValueError, match="square.*q"):
        T.nlinalg.eigh(T.tensor("q", "float64", (2, 3)))
    with pytest.raises(ValueError, match="UPLO"):
        T.nlinalg.eigh(T.dmatrix("m"), UPLO="X")
    with pytest.raises(ValueError, match="generalized"):
        T.slinalg.eigvalsh(T.dmatrix("m"), T.dmatrix("b"))
    with pytest.raises(ValueError, match="matrix"):
        T.nlinalg.svd(T.dvector("v"), compute_uv=False)
    for fn in (lambda m: T.nlinalg.svd(m, compute_uv=False), T.nlinalg.eigh, T.nlinalg.qr, T.nlinalg.pinv):
        with pytest.raises(TypeError, match="float.*imat"):
            fn(T.imatrix("imat"))
    u, s, vt = T.nlinalg.svd(T.tensor("sq", "float64", (3, 3)))   # square: full == reduced
    assert u.type.shape == (3, 3) and vt.type.shape == (3, 3)


@pytest.mark.parametrize("case", ["v_upper", "u_wide", "vt_wide", "pinv", "nuc", "q", "r_square"]
                         + [pytest.param(c, marks=pytest.mark.slow) for c in ("w", "v", "s", "u", "vt")])
def test_gradients_match_finite_differences(case):
    rng = np.random.default_rng(3)
    sym = _symmetric(rng, 4, "float64")
    tall, wide = rng.standard_normal((5, 3)), rng.standard_normal((3, 5))
    fns = {"w": (lambda x: T.nlinalg.eigh(x)[0], sym), "v": (lambda x: T.nlinalg.eigh(x)[1], sym),
           "v_upper": (lambda x: T.nlinalg.eigh(x, "U")[1], sym),
           "s": (lambda x: T.nlinalg.svd(x, compute_uv=False), tall),
           "u": (lambda x: T.nlinalg.svd(x, full_matrices=False)[0], tall),
           "vt": (lambda x: T.nlinalg.svd(x, full_matrices=False)[2], tall),
           "u_wide": (lambda x: T.nlinalg.svd(x, full_matrices=False)[0], wide),
           "vt_wide": (lambda x: T.nlinalg.svd(x, full_matrices=False)[2], wide),
           "pinv": (T.nlinalg.pinv, tall), "nuc": (lambda x: T.nlinalg.norm(x, "nuc"), wide),
           "q": (lambda x: T.nlinalg.qr(x)[0], tall), "r_square": (lambda x: T.nlinalg.qr(x, mode="r"), sym)}
    fn, point = fns[case]
    verify_grad(fn, [point], rng=4)


# -- rows of the shared op tables --------------------------------------------------------------

def _fd_case(op, shape, attrs):
    def build():
        rng = np.random.default_rng(5)
        g = Graph()
        x = g.add_input(TensorType("float64", shape), "x")
        v = _symmetric(rng, shape[-1], "float64") if op == "eigh" else rng.standard_normal(shape)
        return g, g.add_node(op, [x], attrs), [v]
    return build


AUTODIFF_CASES = {
    "eigh": [_fd_case("eigh", (3, 3), {"part": "values"}), _fd_case("eigh", (3, 3), {"part": "vectors"}),
             _fd_case("eigh", (3, 3), {"part": "vectors", "lower": False})],
    "svd": [_fd_case("svd", (4, 3), {"part": "s"}), _fd_case("svd", (4, 3), {"part": "u"}),
            _fd_case("svd", (3, 4), {"part": "vt"})],
    "qr": [_fd_case("qr", (4, 3), {"part": "q"}), _fd_case("qr", (3, 3), {"part": "r"})],
}


def _cpu_case(op, attrs):
    def build(g, d, rng):
        if op == "eigh":
            a = g.add_input(TensorType(d, ("n", "n")), name="a")
            g.outputs = [g.add_node(op, [a], attrs)]
            return [_symmetric(rng, 5, d)]
        r = g.add_input(TensorType(d, (None, 3)), name="r")
        g.outputs = [g.add_node(op, [r], attrs)]
        return [rng.standard_normal((6, 3)).astype(d)]
    return build


CPU_CASES = {"eigh": _cpu_case("eigh", {"part": "vectors"}), "svd": _cpu_case("svd", {"part": "u"}),
             "qr": _cpu_case("qr", {"part": "q"})}


def _round_trip(op, attrs):
    def build(rng):
        g = Graph()
        a = g.add_input(TensorType("float32", (None, None)), "a")
        g.outputs = [g.add_node(op, [a], attrs)]
        return g, [_symmetric(rng, 3, "float32")]
    return build


ROUND_TRIP_BUILDERS = {"eigh": _round_trip("eigh", {"part": "vectors", "lower": False}),
                       "svd": _round_trip("svd", {"part": "vt"}), "qr": _round_trip("qr", {"part": "r"})}
