"""``T.nlinalg.matrix_inverse``/``det`` and ``T.slinalg.cholesky``/``solve``/``solve_triangular``
(ops "matrix_inverse", "det", "cholesky", "solve", "solve_triangular") against NumPy's
``np.linalg`` written out here, on both backends; their gradients against finite
differences; the errors (singular / not positive definite matrices, bad operands).

The case tables at the end (``AUTODIFF_CASES``, ``CPU_CASES``, ``ROUND_TRIP_BUILDERS``) are
the rows these ops add to tests/test_autodiff_ops.py, tests/test_cpu_ops.py and
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

TOL = {"float32": {"rtol": 2e-4, "atol": 2e-5}, "float64": {"rtol": 1e-9, "atol": 1e-11}}


def _well_conditioned(rng, shape, dtype):
    """Random matrices with a dominant diagonal (condition numbers near 1-10)."""
    n = shape[-1]
    return (rng.uniform(-1, 1, shape) + n * np.eye(n)).astype(dtype)


def _spd(rng, shape, dtype):
    a = rng.standard_normal(shape)
    return (a @ np.swapaxes(a, -1, -2) + shape[-1] * np.eye(shape[-1])).astype(dtype)


def _check(got, want, dtype):
    got = np.asarray(got)
    assert got.dtype == dtype and got.shape == np.shape(want), (got.dtype, got.shape, np.shape(want))
    np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matrix_ops_against_numpy(backend, dtype):
    rng = np.random.default_rng(0)
    a, s = T.matrix("a", dtype), T.matrix("s", dtype)
    bm, bv = T.matrix("bm", dtype), T.vector("bv", dtype)
    outs = [T.nlinalg.matrix_inverse(a), T.nlinalg.det(a), T.slinalg.solve(a, bm), T.slinalg.solve(a, bv),
            T.slinalg.cholesky(s), T.slinalg.cholesky(s, lower=False),
            T.slinalg.solve_triangular(a, bm, lower=True), T.slinalg.solve_triangular(a, bv),
            T.slinalg.solve_triangular(a, bm, lower=True, trans=1), T.slinalg.solve_triangular(a, bm, trans="T"),
            T.slinalg.solve_triangular(a, bv, lower=True, unit_diagonal=True),
            T.slinalg.solve(s, bm, assume_a="pos"), T.slinalg.solve(s, bv, assume_a="pos", lower=True),
            T.slinalg.solve(a, bm, A_structure="lower_triangular"), T.slinalg.solve(a, bm, transposed=True),
            T.slinalg.solve_symmetric(s, bv), *T.nlinalg.slogdet(a), *T.nlinalg.slogdet(-a * 40)]
    f = compile_fn([a, s, bm, bv], outs, backend,
                   expect_ops=["matrix_inverse", "det", "solve", "cholesky", "solve_triangular"])
    for n in (1, 3, 17):
        A, S = _well_conditioned(rng, (n, n), dtype), _spd(rng, (n, n), dtype)
        BM, BV = rng.standard_normal((n, 4)).astype(dtype), rng.standard_normal(n).astype(dtype)
        A64, S64, BM64, BV64 = (x.astype("float64") for x in (A, S, BM, BV))
        lo, up = np.tril(A64), np.triu(A64)
        unit = np.tril(A64, -1) + np.eye(n)
        want = [np.linalg.inv(A64), np.linalg.det(A64), np.linalg.solve(A64, BM64), np.linalg.solve(A64, BV64),
                np.linalg.cholesky(S64), np.linalg.cholesky(S64).T,
                np.linalg.solve(lo, BM64), np.linalg.solve(up, BV64),
                np.linalg.solve(lo.T, BM64), np.linalg.solve(up.T, BM64), np.linalg.solve(unit, BV64),
                np.linalg.solve(S64, BM64), np.linalg.solve(S64, BV64), np.linalg.solve(lo, BM64),
                np.linalg.solve(A64.T, BM64), np.linalg.solve(S64, BV64), *np.linalg.slogdet(A64),
                *np.linalg.slogdet(-A64 * 40)]   # (det(-40 A) overflows float32 for n = 17)
        for k, (g, w) in enumerate(zip(f(A, S, BM, BV), want)):
            _check(g, w, dtype)


def test_batched_and_empty(backend):
    """Leading axes are batches (np.linalg's gufunc rule); zero-size matrices and batches work."""
    rng = np.random.default_rng(1)
    a, s, b = T.dtensor3("a"), T.dtensor3("s"), T.dtensor3("b")
    v = T.dmatrix("v")
    outs = [T.nlinalg.matrix_inverse(a), T.nlinalg.det(a), T.slinalg.solve(a, b), T.slinalg.solve(a, v),
            T.slinalg.cholesky(s), T.slinalg.solve_triangular(a, b, lower=True)]
    f = compile_fn([a, s, b, v], outs, backend)
    for batch, n in ((3, 5), (2, 0), (0, 4)):
        A, S = _well_conditioned(rng, (batch, n, n), "float64"), _spd(rng, (batch, n, n), "float64")
        B, V = rng.standard_normal((batch, n, 2)), rng.standard_normal((batch, n))
        want = [np.linalg.inv(A), np.linalg.det(A), np.linalg.solve(A, B), np.linalg.solve(A, V[..., None])[..., 0],
                np.linalg.cholesky(S), np.linalg.solve(np.tril(A), B)]
        for g, w in zip(f(A, S, B, V), want):
            _check(g, w, "float64")


def test_cholesky_reads_one_triangle(backend):
    """Like LAPACK's potrf, the other triangle is never read (garbage there changes nothing)."""
    rng = np.random.default_rng(2)
    s = T.dmatrix("s")
    lower = compile_fn([s], T.slinalg.cholesky(s), backend)
    upper = compile_fn([s], T.slinalg.cholesky(s, lower=False), backend)
    S = _spd(rng, (6, 6), "float64")
    _check(lower(np.tril(S) + np.triu(np.full((6, 6), np.nan), 1)), np.linalg.cholesky(S), "float64")
    _check(upper(np.triu(S) + np.tril(np.full((6, 6), np.nan), -1)), np.linalg.cholesky(S).T, "float64")


def test_singular_and_indefinite_matrices_raise(backend):
    a, b = T.dmatrix("a"), T.dvector("b")
    inv = compile_fn([a], T.nlinalg.matrix_inverse(a), backend)
    det = compile_fn([a], T.nlinalg.det(a), backend)
    sol = compile_fn([a, b], T.slinalg.solve(a, b), backend)
    chol = compile_fn([a], T.slinalg.cholesky(a), backend)
    tri = compile_fn([a, b], T.slinalg.solve_triangular(a, b, lower=True), backend)
    sing = np.array([[1.0, 2.0], [2.0, 4.0]])
    with pytest.raises(np.linalg.LinAlgError, match="[Ss]ingular"):
        inv(sing)
    with pytest.raises(np.linalg.LinAlgError, match="[Ss]ingular"):
        sol(sing, np.ones(2))
    assert float(det(sing)) == 0.0
    sign, logabs = compile_fn([a], list(T.nlinalg.slogdet(a)), backend)(sing)
    assert float(sign) == 0.0 and float(logabs) == -np.inf
    for bad in (np.array([[1.0, 2.0], [2.0, 1.0]]), np.array([[-1.0, 0.0], [0.0, 1.0]]),
                np.array([[1.0, 0.0], [np.nan, 1.0]]), np.array([[np.inf, 0.0], [0.0, 1.0]])):
        with pytest.raises(np.linalg.LinAlgError, match="positive definite"):
            chol(bad)
    with pytest.raises(np.linalg.LinAlgError, match="[Ss]ingular"):
        tri(np.array([[1.0, 0.0], [3.0, 0.0]]), np.ones(2))
    # the function still works after a failed call
    np.testing.assert_allclose(inv(np.eye(2) * 2), np.eye(2) / 2)


def test_bad_operands_are_refused_when_the_graph_is_built():
    x = T.imatrix("xi")
    with pytest.raises(TypeError, match="float.*xi"):
        T.nlinalg.matrix_inverse(x)
    with pytest.raises(TypeError, match="float"):
        T.slinalg.solve(x, T.dvector("b"))
    with pytest.raises(ValueError, match="rank >= 2.*v"):
        T.nlinalg.det(T.dvector("v"))
    with pytest.raises(ValueError, match="square.*r"):
        T.slinalg.cholesky(T.tensor("r", "float64", (2, 3)))
    a = T.tensor("a", "float64", (3, 3))
    with pytest.raises(ValueError, match="rows"):
        T.slinalg.solve(a, T.tensor("b", "float64", (4,)))
    with pytest.raises(ValueError, match="rank"):
        T.slinalg.solve(a, T.dtensor3("b3"))
    with pytest.raises(ValueError, match="structure"):
        T.slinalg.solve(a, T.dvector("b"), assume_a="banded")
    with pytest.raises(ValueError, match="trans"):
        T.slinalg.solve_triangular(a, T.dvector("b"), trans="X")
    # mixed float dtypes promote, as NumPy does
    assert T.slinalg.solve(T.fmatrix("f"), T.dvector("d")).dtype == "float64"


def test_shapes_are_checked_when_the_function_runs(backend):
    a, b = T.dmatrix("a"), T.dmatrix("b")
    f = compile_fn([a, b], [T.slinalg.solve(a, b)], backend)
    with pytest.raises(ValueError, match="square"):
        f(np.ones((2, 3)), np.ones((2, 1)))
    with pytest.raises(ValueError, match="does not match|rows"):
        f(np.eye(3), np.ones((2, 1)))


def test_cuda_backend_refuses_at_compile_time():
    a = T.dmatrix("a")
    with pytest.raises(TypeError, match="nvptx backend: kernel kind 'linalg'.*matrix_inverse"):
        tcomp.function([a], T.nlinalg.matrix_inverse(a), backend="cuda")


# -- gradients -----------------------------------------------------------------------------------

_B = np.random.default_rng(3).standard_normal((4, 2))


def _slow(*cases):
    """Cases whose op-level VJP tests/test_autodiff_ops.py already checks (reference backend):
    through the DSL on the CPU backend in the slow step only."""
    return [pytest.param(c, marks=pytest.mark.slow) for c in cases]


@pytest.mark.parametrize("case", ["logdet", "det_batched", "chol_upper", "pos_solve", "tri_upper_trans"]
                         + _slow("inv", "det", "solve", "solve_vec", "tri_lower", "tri_unit", "chol"))
def test_gradients_match_finite_differences(case):
    rng = np.random.default_rng(4)
    A = _well_conditioned(rng, (4, 4), "float64")
    b = T.constant(_B)
    fns = {"inv": T.nlinalg.matrix_inverse, "det": T.nlinalg.det, "logdet": lambda a: T.nlinalg.slogdet(a)[1],
           "solve": lambda a: T.slinalg.solve(a, b), "solve_vec": lambda a: T.slinalg.solve(a, b[:, 0]),
           "tri_lower": lambda a: T.slinalg.solve_triangular(a, b, lower=True),
           "tri_upper_trans": lambda a: T.slinalg.solve_triangular(a, b, trans=1),
           "tri_unit": lambda a: T.slinalg.solve_triangular(a, b, lower=True, unit_diagonal=True),
           "chol": T.slinalg.cholesky, "chol_upper": lambda a: T.slinalg.cholesky(a, lower=False),
           "pos_solve": lambda a: T.slinalg.solve(a, b, assume_a="pos")}
    if case == "det_batched":
        verify_grad(T.nlinalg.det, [_well_conditioned(rng, (2, 3, 3), "float64")], rng=5)
        return
    point = _spd(rng, (4, 4), "float64") if case in ("chol", "chol_upper", "pos_solve") else A
    verify_grad(fns[case], [point], rng=5)


def test_gradient_wrt_b_and_second_order():
    rng = np.random.default_rng(6)
    A = _well_conditioned(rng, (3, 3), "float64")
    verify_grad(lambda a, b: T.slinalg.solve(a, b), [A, rng.standard_normal((3, 2))], rng=7)
    verify_grad(lambda a, b: T.slinalg.solve_triangular(a, b, lower=True), [A, rng.standard_normal(3)], rng=7)
    # d det / dA again (through matrix_inverse's rule)
    verify_grad(lambda a: T.grad(T.nlinalg.det(a), a).sum(), [A], rng=8)


# -- rows of the shared op tables --------------------------------------------------------------

def _fd_case(op, shapes, attrs=None, spd=False):
    def build():
        rng = np.random.default_rng(9)
        g = Graph()
        ins = [g.add_input(TensorType("float64", s), f"x{k}") for k, s in enumerate(shapes)]
        vals = [(_spd if spd else _well_conditioned)(rng, shapes[0], "float64")]
        vals += [rng.standard_normal(s) for s in shapes[1:]]
        return g, g.add_node(op, ins, attrs or {}), vals
    return build


AUTODIFF_CASES = {
    "matrix_inverse": [_fd_case("matrix_inverse", [(3, 3)])],
    "det": [_fd_case("det", [(3, 3)]), _fd_case("det", [(2, 2, 2)]), _fd_case("det", [(3, 3)], {"mode": "logabs"}),
            _fd_case("det", [(3, 3)], {"mode": "sign"})],
    "solve": [_fd_case("solve", [(3, 3), (3, 2)]), _fd_case("solve", [(2, 3, 3), (2, 3)])],
    "solve_triangular": [_fd_case("solve_triangular", [(3, 3), (3, 2)]),
                         _fd_case("solve_triangular", [(3, 3), (3,)], {"lower": False, "trans": True}),
                         _fd_case("solve_triangular", [(3, 3), (3, 2)], {"unit_diagonal": True})],
    "cholesky": [_fd_case("cholesky", [(3, 3)], spd=True),
                 _fd_case("cholesky", [(2, 3, 3)], {"lower": False}, spd=True)],
}


def _cpu_case(op, attrs=None, spd=False, rhs=None):
    """A symbolic-size and a static batched case of ``op`` (float dtypes only: the type rule
    refuses the others, which the table test skips)."""
    def build(g, d, rng):
        a = g.add_input(TensorType(d, ("n", "n")), name="a")
        a3 = g.add_input(TensorType(d, (2, 4, 4)), name="a3")
        ins = [a, a3]
        make = _spd if spd else _well_conditioned
        vals = [make(rng, (5, 5), d), make(rng, (2, 4, 4), d)]
        if rhs is None:
            g.outputs = [g.add_node(op, [a], attrs or {}), g.add_node(op, [a3], attrs or {})]
        else:
            b = g.add_input(TensorType(d, ("n", 3)), name="b")
            b3 = g.add_input(TensorType(d, (2, 4)), name="b3")
            ins += [b, b3]
            vals += [rng.standard_normal((5, 3)).astype(d), rng.standard_normal((2, 4)).astype(d)]
            g.outputs = [g.add_node(op, [a, b], attrs or {}), g.add_node(op, [a3, b3], attrs or {})]
        return vals
    return build


CPU_CASES = {"matrix_inverse": _cpu_case("matrix_inverse"), "det": _cpu_case("det", {"mode": "logabs"}),
             "cholesky": _cpu_case("cholesky", {"lower": False}, spd=True), "solve": _cpu_case("solve", rhs=True),
             "solve_triangular": _cpu_case("solve_triangular", {"trans": True}, rhs=True)}


def _round_trip(op, attrs=None, rhs=False):
    def build(rng):
        g = Graph()
        a = g.add_input(TensorType("float32", (None, None)), "a")
        ins = [a] + ([g.add_input(TensorType("float32", (None, 2)), "b")] if rhs else [])
        g.outputs = [g.add_node(op, ins, attrs or {})]
        vals = [_well_conditioned(rng, (3, 3), "float32")] + ([rng.standard_normal((3, 2)).astype("float32")]
                                                              if rhs else [])
        return g, vals
    return build


ROUND_TRIP_BUILDERS = {"matrix_inverse": _round_trip("matrix_inverse"), "det": _round_trip("det", {"mode": "logabs"}),
                       "cholesky": _round_trip("cholesky", {"lower": False}), "solve": _round_trip("solve", rhs=True),
                       "solve_triangular": _round_trip("solve_triangular",
                                                       {"lower": False, "trans": True, "unit_diagonal": True},
                                                       rhs=True)}


def test_aot_library_reports_a_singular_matrix(tmp_path):
    """The C entry returns TCOMP_ERR_LINALG with the JIT's message; the loader raises LinAlgError."""
    from tcomp import aot

    a, b = T.dmatrix("a"), T.dvector("b")
    f = tcomp.function([a, b], T.slinalg.solve(a, b))
    lib = aot.load(aot.export({"solve": f}, str(tmp_path / "libsolve.so"))["library"])
    A = np.eye(3) * 2
    np.testing.assert_allclose(lib(A, np.ones(3)), np.full(3, 0.5))
    with pytest.raises(np.linalg.LinAlgError) as aot_err:
        lib(np.zeros((3, 3)), np.ones(3))
    with pytest.raises(np.linalg.LinAlgError) as jit_err:
        f(np.zeros((3, 3)), np.ones(3))
    assert str(aot_err.value) == str(jit_err.value)


def test_large_batches_split_across_threads_give_the_same_results():
    """A batch big enough for the thread pool: every matrix checked, 1 thread == 2 threads
    bit for bit, and one singular matrix in the middle still raises."""
    rng = np.random.default_rng(7)
    a = T.dtensor3("a")
    outs = [T.nlinalg.matrix_inverse(a), T.nlinalg.det(a), T.nlinalg.qr(a)[1]]
    A = _well_conditioned(rng, (2048, 6, 6), "float64")
    results = []
    saved = tcomp.config.num_threads
    try:
        for nt in (1, 2):
            tcomp.config.num_threads = nt
            f = tcomp.function([a], outs)
            results.append(f(A))
        singular = A.copy()
        singular[1500] = 0.0
        with pytest.raises(np.linalg.LinAlgError, match="singular"):
            f(singular)
    finally:
        tcomp.config.num_threads = saved
    np.testing.assert_allclose(results[0][0], np.linalg.inv(A), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(results[0][1], np.linalg.det(A), rtol=1e-10)
    for x, y in zip(results[0], results[1]):
        assert x.tobytes() == y.tobytes()


def test_tensorinv_tensorsolve_lstsq_kron_matrix_power():
    """Theano's compositions of the ops above against NumPy's functions of the same names
    (cpu backend only: compositions of ops both backends are tested on above)."""
    backend = "cpu"
    rng = np.random.default_rng(8)
    a4, b2, a, bm, bv = T.dtensor4("a4"), T.dmatrix("b2"), T.dmatrix("a"), T.dmatrix("bm"), T.dvector("bv")
    x, y, sq = T.dmatrix("x"), T.dtensor3("y"), T.dmatrix("sq")
    outs = [T.nlinalg.tensorinv(a4), T.nlinalg.tensorsolve(a4, b2), *T.nlinalg.lstsq(a, bm),
            *T.nlinalg.lstsq(a, bv, rcond=-1)[:2], T.slinalg.kron(x, x), T.slinalg.kron(x, y),
            T.nlinalg.matrix_power(sq, 5), T.nlinalg.matrix_power(sq, 0), T.nlinalg.matrix_dot(x, x.T, x)]
    f = compile_fn([a4, b2, a, bm, bv, x, y, sq], outs, backend)
    A4 = (rng.standard_normal((6, 6)) + 6 * np.eye(6)).reshape(2, 3, 2, 3)
    B2, BM, BV = rng.standard_normal((2, 3)), rng.standard_normal((6, 2)), rng.standard_normal(6)
    X, Y, SQ = rng.standard_normal((2, 3)), rng.standard_normal((2, 2, 2)), rng.standard_normal((3, 3))
    for A in (rng.standard_normal((6, 3)), np.c_[BM, BM[:, :1]]):   # full column rank, then rank 2 of 3
        got = f(A4, B2, A, BM, BV, X, Y, SQ)
        want = [np.linalg.tensorinv(A4), np.linalg.tensorsolve(A4, B2), *np.linalg.lstsq(A, BM),
                *np.linalg.lstsq(A, BV, rcond=None)[:2], np.kron(X, X), np.kron(X, Y),
                np.linalg.matrix_power(SQ, 5), np.eye(3), X @ X.T @ X]
        for k, (g, w) in enumerate(zip(got, want)):
            assert np.shape(g) == np.shape(w), (k, np.shape(g), np.shape(w))
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-10, err_msg=f"output {k}")


def _expm_taylor(a, terms=40):
    """An independent reference: Taylor series of a / 2^k (norm <= 1/2), squared k times."""
    k = max(0, int(np.ceil(np.log2(max(np.abs(a).sum(axis=0).max(), 1e-300) * 2))))
    x = a / 2.0 ** k
    out, term = np.eye(len(a)), np.eye(len(a))
    for j in range(1, terms):
        term = term @ x / j
        out = out + term
    for _ in range(k):
        out = out @ out
    return out


def test_expm():
    """(cpu backend only: a composition of solve, dot and scan, each tested on both)"""
    backend = "cpu"
    rng = np.random.default_rng(9)
    a, f32 = T.dmatrix("a"), T.fmatrix("f")
    f = compile_fn([a, f32], [T.slinalg.expm(a), T.slinalg.expm(f32)], backend)
    sym = rng.standard_normal((4, 4))
    sym = sym + sym.T
    w, v = np.linalg.eigh(sym)
    nilpotent = np.triu(rng.standard_normal((3, 3)), 1)
    cases = [(sym, (v * np.exp(w)) @ v.T), (nilpotent, np.eye(3) + nilpotent + nilpotent @ nilpotent / 2),
             (np.zeros((2, 2)), np.eye(2))]
    cases += [(m, _expm_taylor(m)) for m in (rng.standard_normal((5, 5)) * s for s in (0.01, 1.0, 8.0))]
    for m, want in cases:
        got, got32 = f(m, m.astype("float32"))
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12 * np.abs(want).max())
        np.testing.assert_allclose(got32, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    verify_grad(T.slinalg.expm, [rng.standard_normal((3, 3))], rng=10)
