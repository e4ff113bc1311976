"""T.nnet.ctc.ctc against a NumPy CTC written here (the alpha recursion in probability space,
loops over the batch) and its gradient against finite differences of that NumPy code."""
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T


def np_ctc(acts, labels, lengths):
    out = []
    for b in range(acts.shape[1]):
        a = acts[:lengths[b], b].astype(np.float64)
        p = np.exp(a - a.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        ext = [0]
        for v in labels[b]:
            if v >= 0:
                ext += [int(v), 0]
        alpha = np.zeros(len(ext))
        alpha[0] = p[0, 0]
        if len(ext) > 1:
            alpha[1] = p[0, ext[1]]
        for t in range(1, len(a)):
            new = np.zeros_like(alpha)
            for s in range(len(ext)):
                v = alpha[s] + (alpha[s - 1] if s >= 1 else 0.0)
                if s >= 2 and ext[s] != 0 and ext[s] != ext[s - 2]:
                    v += alpha[s - 2]
                new[s] = v * p[t, ext[s]]
            alpha = new
        out.append(-np.log(alpha[-1] + (alpha[-2] if len(ext) > 1 else 0.0)))
    return np.array(out)


CASE = (np.array([[1, 2, -1], [3, 3, 1], [4, -1, -1], [-1, -1, -1]], "int32"), np.array([7, 6, 3, 5], "int32"))


def _graph(dtype):
    a, labels, lengths = T.tensor3("a", dtype=dtype), T.imatrix("labels"), T.ivector("lengths")
    return a, labels, lengths, T.nnet.ctc.ctc(a, labels, lengths)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_ctc_matches_numpy(dtype, rtol):
    acts = np.random.default_rng(0).standard_normal((7, 4, 5)).astype(dtype)
    a, labels, lengths, cost = _graph(dtype)
    got = tcomp.function([a, labels, lengths], cost)(acts, *CASE)
    np.testing.assert_allclose(got, np_ctc(acts, *CASE), rtol=rtol)


def test_ctc_gradient_matches_finite_differences():
    acts = np.random.default_rng(1).standard_normal((7, 4, 5))
    a, labels, lengths, cost = _graph("float64")
    grad = tcomp.function([a, labels, lengths], T.grad(cost.sum(), a))(acts, *CASE)
    eps, num = 1e-6, np.zeros_like(acts)
    for idx in np.ndindex(acts.shape):
        d = np.zeros_like(acts)
        d[idx] = eps
        num[idx] = (np_ctc(acts + d, *CASE).sum() - np_ctc(acts - d, *CASE).sum()) / (2 * eps)
    np.testing.assert_allclose(grad, num, atol=1e-7)
    assert (grad[7 - 1:, 1] == 0).all()  # steps past an example's length get no gradient
    assert (grad[3:, 2] == 0).all()


def test_ctc_rejects_bad_arguments():
    with pytest.raises(TypeError, match="activations"):
        T.nnet.ctc.ctc(T.matrix("a"), T.imatrix("l"), T.ivector("n"))
    with pytest.raises(TypeError, match="labels"):
        T.nnet.ctc.ctc(T.tensor3("a"), T.matrix("l"), T.ivector("n"))
    with pytest.raises(TypeError, match="input_lengths"):
        T.nnet.ctc.ctc(T.tensor3("a"), T.imatrix("l"), T.vector("n"))
