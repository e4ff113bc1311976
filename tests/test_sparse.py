"""tcomp.sparse (Theano's theano.sparse) against SciPy and NumPy: construction, to and fro,
products both ways, structured ops, reductions, gradients (dense operand and the structured
gradient of the stored values, checked by hand-written NumPy formulas and finite
differences), and Theano's tutorial examples with only the import changed."""
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T

sp = pytest.importorskip("scipy.sparse")
from tcomp import sparse  # noqa: E402


def _rand(m, n, density, fmt, seed, dtype="float32"):
    a = sp.random(m, n, density=density, format=fmt, dtype=dtype, random_state=seed)
    a.data[:] = np.random.default_rng(seed).uniform(0.5, 2.0, a.nnz) * np.where(np.arange(a.nnz) % 2, 1, -1)
    return a


def test_theano_tutorial_examples():
    # doc/tutorial/sparse.txt, with `import tcomp as theano`
    theano = tcomp
    x = sparse.csc_matrix(name="x", dtype="int64")
    data, indices, indptr, shape = sparse.csm_properties(x)
    y = sparse.CSR(data, indices, indptr, shape)
    f = theano.function([x], y)
    a = sp.csc_matrix(np.asarray([[0, 1, 1], [0, 0, 0], [1, 0, 0]]))
    out = f(a)
    assert sp.isspmatrix_csr(out)
    np.testing.assert_array_equal(out.toarray(), [[0, 0, 1], [1, 0, 0], [1, 0, 0]])

    x = sparse.csc_matrix(name="x", dtype="float32")
    y = sparse.structured_add(x, 2)
    f = theano.function([x], y)
    a = sp.csc_matrix(np.asarray([[0, 0, -1], [0, -2, 1], [3, 0, 0]], dtype="float32"))
    np.testing.assert_array_equal(f(a).toarray(), [[0, 0, 1], [0, 0, 3], [5, 0, 0]])

    x = sparse.csr_matrix("x")
    y = T.matrix("y")
    f = theano.function([x, y], sparse.dot(x, y))
    a = sp.coo_matrix(([1] * 4, (range(4), [0, 1, 1, 0])), dtype=np.float32)
    b = np.array([[10, 11], [12, 13]], dtype=np.float32)
    np.testing.assert_array_equal(f(a, b), a.toarray() @ b)


def test_to_and_fro_with_empty_rows_and_columns():
    fmt = "csc"
    a = sp.csr_matrix(np.array([[0, 0, 0, 0], [1.5, 0, 0, -2], [0, 0, 0, 0], [0, 3, 0, 0], [0, 0, 0, 0]],
                               dtype="float32")).asformat(fmt)
    x = sparse.matrix(fmt, "x", dtype="float32")
    d = sparse.dense_from_sparse(x)
    back = sparse.csr_from_dense(d)
    back_c = sparse.csc_from_dense(d)
    f = tcomp.function([x], [d, x.toarray() * 2, back, back_c])
    dense, twice, r, c = f(a)
    np.testing.assert_array_equal(dense, a.toarray())
    np.testing.assert_array_equal(twice, 2 * a.toarray())
    for m, want in ((r, "csr"), (c, "csc")):
        assert m.format == want
        np.testing.assert_array_equal(m.toarray(), a.toarray())
        np.testing.assert_array_equal(m.indptr, a.asformat(want).indptr)


def test_theano_op_classes():
    x = sparse.csc_matrix("x", "float64")
    d, i, p, s = sparse.CSMProperties()(x)
    y = sparse.CSM("csr")(d, i, p, s)  # Theano's CSM(format)(...) spelling: the transpose
    z = sparse.DenseFromSparse()(x)
    a = sp.csc_matrix(np.array([[0, 1.0], [2, 0]]))
    ry, rz = tcomp.function([x], [y, z])(a)
    np.testing.assert_array_equal(ry.toarray(), a.T.toarray())
    np.testing.assert_array_equal(rz, a.toarray())
    assert x.broadcastable == (False, False) and x.ndim == 2 and x.type == sparse.csc_dmatrix


def test_duplicates_add_up_and_explicit_constructor():
    data, ind, ptr = T.fvector("d"), T.ivector("i"), T.ivector("p")
    m, n = T.lscalar("m"), T.lscalar("n")
    s = sparse.CSR(data, ind, ptr, (m, n))
    f = tcomp.function([data, ind, ptr, m, n], s.toarray())
    d, i, p = np.array([1, 2, 4], "float32"), np.array([1, 1, 0], "int32"), np.array([0, 2, 2, 3], "int32")
    np.testing.assert_array_equal(f(d, i, p, 3, 2), sp.csr_matrix((d, i, p), shape=(3, 2)).toarray())


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_dot_both_ways_and_vectors(fmt):
    a = _rand(7, 5, 0.35, fmt, 1)
    rng = np.random.default_rng(2)
    x = sparse.matrix(fmt, "x", dtype="float32")
    y, yl, v, vl = T.fmatrix("y"), T.fmatrix("yl"), T.fvector("v"), T.fvector("vl")
    f = tcomp.function([x, y, yl, v, vl], [sparse.dot(x, y), sparse.dot(yl, x), sparse.structured_dot(x, v),
                                           sparse.dot(vl, x), T.dot(x, y)])
    Y, YL = rng.standard_normal((5, 3)).astype("float32"), rng.standard_normal((4, 7)).astype("float32")
    V, VL = rng.standard_normal(5).astype("float32"), rng.standard_normal(7).astype("float32")
    sy, yls, sv, vls, ty = f(a, Y, YL, V, VL)
    np.testing.assert_allclose(sy, a @ Y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(yls, YL @ a.toarray(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sv, a @ V, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(vls, VL @ a.toarray(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ty, a @ Y, rtol=1e-5, atol=1e-5)


def test_sparse_sparse_ops_and_transpose():
    a, b = _rand(5, 6, 0.4, "csr", 3), _rand(5, 6, 0.4, "csr", 4)
    c = _rand(6, 4, 0.4, "csc", 5)
    x, y = sparse.csr_matrix("x", "float32"), sparse.csr_matrix("y", "float32")
    z = sparse.csc_matrix("z", "float32")
    outs = [x + y, x - y, x * y, sparse.dot(x, z), x.T, sparse.transpose(z)]
    got = tcomp.function([x, y, z], outs)(a, b, c)
    want = [a + b, a - b, a.multiply(b), a @ c, a.T, c.T]
    for g, w in zip(got, want):
        assert sp.issparse(g)
        np.testing.assert_allclose(g.toarray(), w.toarray(), rtol=1e-5, atol=1e-6)
    assert got[4].format == "csc" and got[5].format == "csr"


def test_mixed_dense_arithmetic_and_structured_ops():
    a = _rand(4, 5, 0.5, "csr", 6)
    rng = np.random.default_rng(7)
    D = rng.standard_normal((4, 5)).astype("float32")
    r, c = rng.standard_normal(4).astype("float32"), rng.standard_normal(5).astype("float32")
    x, d = sparse.csr_matrix("x", "float32"), T.fmatrix("d")
    rv, cv = T.fvector("r"), T.fvector("c")
    outs = [sparse.add(x, d), d + x, sparse.sub(d, x), sparse.mul(x, d), x * 3, -x, sparse.row_scale(x, rv),
            sparse.col_scale(x, cv), sparse.structured_exp(x), sparse.sqr(x), sparse.structured_pow(x, 3),
            sparse.structured_maximum(x, 0.7), sparse.sp_ones_like(x), x / 2]
    got = tcomp.function([x, d, rv, cv], outs)(a, D, r, c)
    A, mask = a.toarray(), a.toarray() != 0
    want = [A + D, D + A, D - A, A * D, 3 * A, -A, r[:, None] * A, A * c[None, :], np.where(mask, np.exp(A), 0),
            A ** 2, A ** 3, np.where(mask, np.maximum(A, 0.7), 0), mask.astype("float32"), A / 2]
    for k, (g, w) in enumerate(zip(got, want)):
        g = g.toarray() if sp.issparse(g) else g
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=f"output {k}")
    assert sp.issparse(got[3]) and not sp.issparse(got[0])


def test_sums_indexing_and_diag():
    fmt = "csc"
    a = _rand(5, 4, 0.5, fmt, 8)
    x = sparse.matrix(fmt, "x", "float32")
    outs = [sparse.sp_sum(x), sparse.sp_sum(x, axis=0), sparse.sp_sum(x, axis=1), x[1, 2], x[-1, -1],
            x[1:4, 0:3], sparse.diag(x[0:4, 0:4])]
    got = tcomp.function([x], outs)(a)
    A = a.toarray()
    want = [A.sum(), A.sum(0), A.sum(1), A[1, 2], A[-1, -1], A[1:4, 0:3], np.diag(A[:4, :4])]
    for g, w in zip(got, want):
        g = g.toarray() if sp.issparse(g) else g
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_square_diagonal_stack_and_constants():
    v = T.fvector("v")
    a = _rand(3, 2, 0.6, "csr", 9)
    c = sparse.as_sparse_variable(a)
    outs = [sparse.square_diagonal(v), sparse.hstack([c, c]), sparse.vstack([c, c], format="csr"),
            sparse.sp_sum(c * v[:2])]
    vv = np.array([1, 2, 3], "float32")
    got = tcomp.function([v], outs)(vv)
    np.testing.assert_array_equal(got[0].toarray(), np.diag(vv))
    np.testing.assert_allclose(got[1].toarray(), sp.hstack([a, a]).toarray())
    np.testing.assert_allclose(got[2].toarray(), sp.vstack([a, a]).toarray())
    np.testing.assert_allclose(got[3], (a.toarray() * vv[:2]).sum(), rtol=1e-6)


def test_grad_dense_operand_and_structured_sparse_grad():
    a = _rand(6, 5, 0.4, "csr", 10, "float64")
    rng = np.random.default_rng(11)
    Wv = rng.standard_normal((5, 3))
    x, W = sparse.csr_matrix("x", "float64"), T.dmatrix("W")
    cost = T.sum(T.tanh(sparse.dot(x, W)))
    gW, gx = T.grad(cost, [W, x])
    assert sparse.is_sparse(gx)
    f = tcomp.function([x, W], [cost, gW, gx])
    c, gw, gxv = f(a, Wv)
    A = a.toarray()
    t = 1 - np.tanh(A @ Wv) ** 2
    np.testing.assert_allclose(gw, A.T @ t, rtol=1e-10)
    assert sp.isspmatrix_csr(gxv) and gxv.nnz == a.nnz  # structured: x's own pattern
    np.testing.assert_allclose(gxv.toarray(), (t @ Wv.T) * (A != 0), rtol=1e-10)
    single = T.grad(cost, x)  # a single wrt gives a single (sparse) gradient
    assert sparse.is_sparse(single) and single.format == "csr"
    # finite differences of the stored values
    eps, k = 1e-6, 3
    bumped = a.copy()
    bumped.data[k] += eps
    fd = (f(bumped, Wv)[0] - c) / eps
    np.testing.assert_allclose(gxv.data[k], fd, rtol=1e-4)


def test_grad_through_dense_times_sparse_and_mul():
    a = _rand(4, 6, 0.5, "csc", 12, "float64")
    rng = np.random.default_rng(13)
    Dv, Mv = rng.standard_normal((3, 4)), rng.standard_normal((4, 6))
    x, D, M = sparse.csc_matrix("x", "float64"), T.dmatrix("D"), T.dmatrix("M")
    cost = T.sum(sparse.dot(D, x) ** 2) + sparse.sp_sum(sparse.mul(x, M))
    gD, gM = T.grad(cost, [D, M])
    gD_v, gM_v = tcomp.function([x, D, M], [gD, gM])(a, Dv, Mv)
    A = a.toarray()
    np.testing.assert_allclose(gD_v, 2 * (Dv @ A) @ A.T, rtol=1e-10)
    np.testing.assert_allclose(gM_v, A, rtol=1e-10)


def test_reference_backend_and_eval():
    a = _rand(4, 3, 0.5, "csr", 14)
    x = sparse.csr_matrix("x", "float32")
    y = T.fmatrix("y")
    Y = np.ones((3, 2), "float32")
    f = tcomp.function([x, y], sparse.dot(x, y), backend="reference")
    np.testing.assert_allclose(f(a, Y), a @ Y, rtol=1e-6)
    np.testing.assert_allclose((x * 2).eval({x: a}).toarray(), 2 * a.toarray())


def test_argument_checks_and_conversions():
    x = sparse.csr_matrix("x", "float32")
    f = tcomp.function([x], sparse.sp_sum(x))
    a = _rand(3, 3, 0.5, "csc", 15)
    assert f(a) == pytest.approx(a.sum(), rel=1e-6)  # another format is converted, as Theano's filter does
    assert f(x=a.tocsr()) == pytest.approx(a.sum(), rel=1e-6)
    with pytest.raises(TypeError, match="x.data"):
        f(_rand(3, 3, 0.5, "csr", 15, "float64"))  # float64 data for a float32 input: a lossy cast
    with pytest.raises(TypeError, match="sparse"):
        sparse.structured_dot(T.fmatrix("d"), T.fmatrix("e"))
    with pytest.raises(ValueError, match="format"):
        sparse.matrix("coo", "x")
    with pytest.raises(ValueError, match="not used"):
        tcomp.function([x, sparse.csr_matrix("unused")], sparse.sp_sum(x))


def test_sparse_shared_variable_trains_with_structured_updates():
    a = _rand(5, 4, 0.5, "csr", 16, "float64")
    W = tcomp.shared(a, "W")
    assert isinstance(W, sparse.SparseVariable) and W.format == "csr"
    x = T.dmatrix("x")
    cost = T.sum(sparse.dot(W, x) ** 2)
    train = tcomp.function([x], cost, updates=[(W, W - 0.01 * T.grad(cost, W))])
    assert len(train.fn.updates) == 1  # only the values: the new value shares W's pattern
    X = np.random.default_rng(17).standard_normal((4, 2))
    D = a.toarray()
    c = train(X)
    np.testing.assert_allclose(c, np.sum((D @ X) ** 2), rtol=1e-12)
    G = (2 * (D @ X) @ X.T) * (D != 0)
    after = W.get_value()
    assert sp.isspmatrix_csr(after) and after.nnz == a.nnz
    np.testing.assert_allclose(after.toarray(), D - 0.01 * G, rtol=1e-12)
    W.set_value(sp.eye(3, format="csc"))  # another pattern and shape, converted to csr
    np.testing.assert_array_equal(tcomp.function([], W * 2)().toarray(), 2 * np.eye(3))
    with pytest.raises(TypeError, match="sparse"):
        tcomp.function([x], cost, updates=[(W, sparse.dot(W, x))])


def test_copy_swap_and_pickle_keep_the_sparse_signature():
    import pickle

    a, b = _rand(4, 3, 0.5, "csr", 18, "float64"), _rand(4, 3, 0.5, "csr", 19, "float64")
    W, W2 = tcomp.shared(a, "W"), tcomp.shared(b, "W2")
    y = T.dmatrix("y")
    f = tcomp.function([y], [sparse.dot(W, y), W * 2])
    Y = np.ones((3, 2))
    g = f.copy(swap={W: W2})
    np.testing.assert_allclose(g(Y)[0], b @ Y, rtol=1e-12)
    np.testing.assert_allclose(g(Y)[1].toarray(), 2 * b.toarray())
    h = pickle.loads(pickle.dumps(f))
    np.testing.assert_allclose(h(Y)[0], a @ Y, rtol=1e-12)
    assert sp.issparse(h(Y)[1])


def test_sparse_product_in_a_scan_body():
    a = _rand(4, 4, 0.5, "csr", 20)
    x, h0 = sparse.csr_matrix("x", "float32"), T.fvector("h0")
    s, _ = tcomp.scan(fn=lambda h: T.tanh(sparse.dot(x, h)), outputs_info=[h0], n_steps=3)
    v = np.ones(4, "float32")
    want = v
    for _ in range(3):
        want = np.tanh(a @ want)
    np.testing.assert_allclose(tcomp.function([x, h0], s[-1])(a, v), want, rtol=1e-5, atol=1e-6)


def test_verify_grad_sparse_and_random_inputs_with_unsorted_indices():
    vs, ms = sparse.sparse_random_inputs("csr", (4, 3), n=2, p=0.5, rng=0, explicit_zero=True,
                                         unsorted_indices=True)
    assert not ms[0].has_sorted_indices and ms[0].nnz >= 1
    f = tcomp.function(vs, sparse.dot(vs[0], vs[1].T.toarray()))
    np.testing.assert_allclose(f(*ms), ms[0] @ ms[1].T.toarray(), rtol=1e-12)
    W = np.random.default_rng(1).standard_normal((3, 2))
    sparse.verify_grad_sparse(lambda x, w: sparse.dot(x, w), [ms[0], W], structured=True, rng=0)
    sparse.verify_grad_sparse(sparse.structured_exp, [ms[0]], structured=True, rng=0)


def test_row_slices_without_dense_copy():
    a = _rand(7, 5, 0.4, "csr", 21, "float64")
    x, c, i = sparse.csr_matrix("x", "float64"), sparse.csc_matrix("c", "float64"), T.lscalar("i")
    f = tcomp.function([x, c, i], [x[i * 2:(i + 1) * 2], x[-3:], x[4:2], c[:, 1:3], x[-100:-5], x[1:3, 1:4]])
    for k in (0, 3, -2):
        got = f(a, a.tocsc(), k)
        want = [a[k * 2:(k + 1) * 2], a[-3:], a[4:2], a[:, 1:3], a[-100:-5], a[1:3, 1:4]]
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_array_equal(g.toarray(), w.toarray())
    assert [g.format for g in got] == ["csr", "csr", "csr", "csc", "csr", "csr"]


def test_minibatch_givens_from_a_sparse_dataset():
    """Theano's tutorial idiom, givens={x: X[i * n:(i + 1) * n]}, with a sparse X: logistic
    regression trained by SGD against the same steps in NumPy."""
    data = _rand(10, 6, 0.4, "csr", 22, "float64")
    labels = (np.arange(10) % 2).astype("int32")
    X, Y = tcomp.shared(data, "X"), tcomp.shared(labels, "Y")
    W = tcomp.shared(np.zeros((6, 2)), "W")
    index, x, y = T.lscalar("index"), sparse.csr_matrix("x", "float64"), T.ivector("y")
    p = T.nnet.softmax(sparse.dot(x, W))
    cost = -T.mean(T.log(p)[T.arange(y.shape[0]), y])
    train = tcomp.function([index], cost, updates=[(W, W - 0.5 * T.grad(cost, W))],
                           givens={x: X[index * 4:(index + 1) * 4], y: Y[index * 4:(index + 1) * 4]})
    Wn, D = np.zeros((6, 2)), data.toarray()
    for _ in range(2):
        for i in range(3):
            xb, yb = D[i * 4:(i + 1) * 4], labels[i * 4:(i + 1) * 4]
            z = xb @ Wn
            pr = np.exp(z - z.max(1, keepdims=True))
            pr /= pr.sum(1, keepdims=True)
            np.testing.assert_allclose(train(i), -np.mean(np.log(pr[np.arange(len(yb)), yb])), rtol=1e-10)
            pr[np.arange(len(yb)), yb] -= 1
            Wn -= 0.5 * xb.T @ pr / len(yb)
    np.testing.assert_allclose(W.get_value(), Wn, rtol=1e-10)


def test_pp_and_debugprint_of_sparse_functions_and_variables():
    x, y = sparse.csr_matrix("x", "float32"), T.fmatrix("y")
    f = tcomp.function([x, y], [sparse.dot(x, y), x * 2])
    assert "x.data" in tcomp.pp(f) and "x.data" in tcomp.printing.debugprint(f, file="str")
    assert tcomp.pp(x * 2).startswith("x.data * 2")


def test_mismatched_operand_shapes_raise_at_call_time():
    x, d, e, v = sparse.csr_matrix("x", "float64"), T.dmatrix("d"), T.dmatrix("e"), T.dvector("v")
    a = _rand(3, 4, 0.5, "csr", 23, "float64")
    f = tcomp.function([x, d, e, v], [sparse.dot(x, d), sparse.dot(e, x), sparse.row_scale(x, v)])
    good = [np.ones((4, 2)), np.ones((5, 3)), np.ones(3)]
    f(a, *good)
    for k, bad in ((0, np.ones((5, 2))), (0, np.ones((3, 2))), (1, np.ones((5, 4))), (2, np.ones(4))):
        args = list(good)
        args[k] = bad
        with pytest.raises(ValueError):
            f(a, *args)
