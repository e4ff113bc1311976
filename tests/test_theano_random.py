"""Random streams as in Theano: tensor/symbolic parameters with broadcasting, symbolic and
inferred sizes, choice / permutation / multinomial / random_integers, seeding and resetting
streams through ``srng.seed``, ``rv.rng`` and ``srng.state_updates``, Theano's module paths,
and the MRG streams' signatures.  Statistics are checked with fixed seeds against bounds
computed from the distributions (means within a few standard errors, chi-square), and the
cpu backend against the reference interpreter draw for draw."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.sandbox.rng_mrg import MRG_RandomStreams
from tcomp.tensor.shared_randomstreams import RandomStreams


def chi2_ok(counts, probs) -> bool:
    """Pearson's statistic below df + 6 sqrt(2 df) (far in the tail for a correct sampler)."""
    counts = np.asarray(counts, float)
    expected = counts.sum() * np.asarray(probs, float)
    keep = expected > 0
    assert counts[~keep].sum() == 0, "a zero-probability category was drawn"
    stat = float((((counts - expected) ** 2)[keep] / expected[keep]).sum())
    df = int(keep.sum()) - 1
    return stat < df + 6 * math.sqrt(2 * df)


def mean_ok(sample, mean, var, z=5.0) -> bool:
    return abs(float(np.mean(sample)) - mean) < z * math.sqrt(var / np.size(sample))


def test_module_paths():
    assert RandomStreams is tcomp.RandomStreams
    assert issubclass(MRG_RandomStreams, RandomStreams)


def test_uniform_with_tensor_bounds_broadcasts_and_infers_size():
    srng = RandomStreams(1)
    lo, hi = T.dcol("lo"), T.drow("hi")
    u_inferred = srng.uniform(low=lo, high=hi)  # size None: the broadcast shape (2, 3)
    u_big = srng.uniform((20000, 2, 3), low=lo, high=hi)
    f = tcomp.function([lo, hi], [u_inferred, u_big])
    l0, h0 = np.array([[-1.0], [2.0]]), np.array([[3.0, 4.0, 5.0]])
    a, b = f(l0, h0)
    assert a.shape == (2, 3) and a.dtype == np.float64 and b.shape == (20000, 2, 3)
    assert (b >= l0).all() and (b < h0).all()
    for i in range(2):
        for j in range(3):
            w = h0[0, j] - l0[i, 0]
            assert mean_ok(b[:, i, j], (l0[i, 0] + h0[0, j]) / 2, w * w / 12)
    with pytest.raises(ValueError, match="broadcast"):
        srng.uniform((5,), low=lo, high=hi)


def test_normal_with_tensor_avg_and_std():
    srng = RandomStreams(2)
    avg, std = T.dvector("avg"), T.dvector("std")
    n = srng.normal((40000, 3), avg=avg, std=std)
    z = tcomp.function([avg, std], n)(np.array([0.0, 5.0, -2.0]), np.array([1.0, 0.5, 3.0]))
    for j, (m, s) in enumerate([(0.0, 1.0), (5.0, 0.5), (-2.0, 3.0)]):
        assert mean_ok(z[:, j], m, s * s)
        assert abs(z[:, j].std() / s - 1) < 0.03


def test_binomial_with_tensor_p_and_n():
    srng = RandomStreams(3)
    p, n = T.dvector("p"), T.lvector("n")
    b1 = srng.binomial((30000, 3), n=1, p=p)
    b5 = srng.binomial((30000, 3), n=5, p=p)
    bn = srng.binomial((30000, 3), n=n, p=0.3 + T.zeros_like(p))  # per-column n
    f = tcomp.function([p, n], [b1, b5, bn])
    p0, n0 = np.array([0.1, 0.5, 0.9]), np.array([1, 4, 7])
    r1, r5, rn = f(p0, n0)
    assert r1.dtype == np.int64 and set(np.unique(r1)) <= {0, 1}
    for j in range(3):
        assert mean_ok(r1[:, j], p0[j], p0[j] * (1 - p0[j]))
        assert mean_ok(r5[:, j], 5 * p0[j], 5 * p0[j] * (1 - p0[j]))
        assert r5[:, j].max() <= 5 and rn[:, j].max() <= n0[j]
        assert mean_ok(rn[:, j], n0[j] * 0.3, n0[j] * 0.21)
        assert abs(r5[:, j].var() / (5 * p0[j] * (1 - p0[j])) - 1) < 0.06


def test_random_integers_inclusive_and_uniform():
    srng = RandomStreams(4)
    lo = T.lscalar("lo")
    r = srng.random_integers((20000,), low=lo, high=lo + 5)
    out = tcomp.function([lo], r)(np.int64(-2))
    assert out.min() == -2 and out.max() == 3
    assert chi2_ok(np.bincount(out + 2, minlength=6), np.full(6, 1 / 6))
    with pytest.raises(ValueError, match="low <= high"):
        srng.random_integers((3,), 5, 4)


def test_symbolic_and_vector_sizes_and_ndim():
    srng = RandomStreams(5)
    x = T.dmatrix("x")
    k = T.lscalar("k")
    shape_vec = T.lvector("s", shape=(2,))
    f = tcomp.function([x, k, shape_vec], [srng.uniform(x.shape), srng.normal((k, 2)),
                                           srng.binomial(shape_vec, p=0.5), srng.uniform(k)])
    a, b, c, d = f(np.zeros((3, 4)), np.int64(5), np.array([2, 6]))
    assert a.shape == (3, 4) and b.shape == (5, 2) and c.shape == (2, 6) and d.shape == (5,)
    with pytest.raises(ValueError, match="ndim"):
        srng.uniform((2, 3), ndim=3)
    with pytest.raises(TypeError, match="static length"):
        srng.uniform(T.lvector("v"))


def test_choice_with_and_without_replacement():
    srng = RandomStreams(6)
    p = T.dvector("p")
    items = T.dvector("items")
    outs = [srng.choice((30000,), a=4), srng.choice((30000,), a=4, p=p),
            srng.choice((4,), a=4, replace=False), srng.choice((2,), a=items),
            srng.choice((3,), a=3, replace=False, p=p[:3])]
    f = tcomp.function([p, items], outs)
    p0 = np.array([0.1, 0.2, 0.0, 0.7])
    firsts, seconds = np.zeros(3), np.zeros(3)
    for call in range(300):
        u, w, perm, picked, wo = f(p0, np.array([10.0, 20.0, 30.0]))
        assert sorted(perm) == [0, 1, 2, 3] and sorted(wo) == [0, 1, 2]
        assert set(picked) <= {10.0, 20.0, 30.0}
        firsts[wo[0]] += 1
        seconds[wo[1]] += 1
    assert chi2_ok(np.bincount(u, minlength=4), np.full(4, 0.25))
    assert chi2_ok(np.bincount(w, minlength=4), p0)
    # sequential sampling without replacement over weights (.1, .2, 0) + the zero weight last
    q = np.array([0.1, 0.2, 0.0]) / 0.3
    second = [sum(q[i] * q[j] / (1 - q[i]) for i in range(3) if i != j and q[i] < 1) for j in range(3)]
    assert firsts[2] == 0 and seconds[2] == 0
    assert chi2_ok(firsts, q) and chi2_ok(seconds, second)
    with pytest.raises(ValueError, match="distinct"):
        srng.choice((5,), a=4, replace=False)


def test_permutation_is_uniform():
    srng = RandomStreams(7)
    perms = tcomp.function([], srng.permutation((6000,), n=5))()
    assert perms.shape == (6000, 5)
    assert (np.sort(perms, axis=1) == np.arange(5)).all()
    assert chi2_ok(np.bincount(perms[:, 0], minlength=5), np.full(5, 0.2))
    assert chi2_ok(np.bincount(perms[:, 3], minlength=5), np.full(5, 0.2))
    single = tcomp.function([], srng.permutation(n=7))()
    assert sorted(single) == list(range(7))


def test_multinomial_counts():
    srng = RandomStreams(8)
    pv = T.dmatrix("pv")
    m1 = srng.multinomial(n=10, pvals=pv)  # size None: pvals.shape[:-1]
    m2 = srng.multinomial((20000,), n=1, pvals=[0.2, 0.3, 0.5])
    a, b = tcomp.function([pv], [m1, m2])(np.array([[0.5, 0.5, 0.0], [0.1, 0.1, 0.8]]))
    assert a.shape == (2, 3) and (a.sum(axis=1) == 10).all() and a[0, 2] == 0
    assert b.shape == (20000, 3) and (b.sum(axis=1) == 1).all()
    assert chi2_ok(b.sum(axis=0), [0.2, 0.3, 0.5])
    p0 = np.array([[0.5, 0.5, 0.0], [0.1, 0.1, 0.8]])
    many = tcomp.function([pv], srng.multinomial((5000, 2), n=4, pvals=pv))(p0)
    assert chi2_ok(many[:, 1].sum(axis=0), [0.1, 0.1, 0.8])


def test_poisson_matches_the_pmf():
    srng = RandomStreams(10)
    lam = T.dvector("lam")
    a, b = tcomp.function([lam], [srng.poisson((20000,), lam=3.5), srng.poisson((20000, 3), lam=lam)])(
        np.array([0.0, 1.0, 40.0]))
    pmf = [math.exp(-3.5) * 3.5 ** k / math.factorial(k) for k in range(10)]
    counts = np.bincount(np.minimum(a, 10), minlength=11)
    assert chi2_ok(counts, pmf + [1 - sum(pmf)])
    assert (b[:, 0] == 0).all()
    for j, m in ((1, 1.0), (2, 40.0)):
        assert mean_ok(b[:, j], m, m) and abs(b[:, j].var() / m - 1) < 0.06
    with pytest.raises(ValueError, match="lam"):
        srng.poisson((3,), lam=-1.0)


def test_mrg_streams_signatures():
    srng = MRG_RandomStreams(seed=234)
    pv = T.dmatrix("pv")
    oh = srng.multinomial(pvals=pv)
    ch = srng.choice(size=2, a=None, replace=False, p=pv)
    bi = srng.binomial(size=(20000,), p=0.25)
    tn = srng.normal((40000,), avg=1.0, std=2.0, truncate=True, dtype="float64")
    u = srng.uniform((3, 4))
    f = tcomp.function([pv], [oh, ch])
    p0 = np.array([[0.98, 0.01, 0.01], [0.01, 0.49, 0.50]])
    onehots = np.zeros((2, 3))
    for _ in range(200):
        o, c = f(p0)
        assert (o.sum(axis=1) == 1).all() and c.shape == (2, 2) and (c[:, 0] != c[:, 1]).all()
        onehots += o
    b, t, uu = tcomp.function([], [bi, tn, u])()
    assert chi2_ok(onehots[1], p0[1]) and uu.dtype == np.float32 and uu.shape == (3, 4)
    assert mean_ok(b, 0.25, 0.25 * 0.75)
    # a standard normal cut at +-2 has variance 1 - 4 phi(2) / (Phi(2) - Phi(-2))
    phi2 = math.exp(-2) / math.sqrt(2 * math.pi)
    var = 1 - 4 * phi2 / math.erf(2 / math.sqrt(2))
    assert t.min() >= 1 - 4 and t.max() <= 1 + 4
    assert mean_ok(t, 1.0, 4 * var) and abs(t.var() / (4 * var) - 1) < 0.03
    with pytest.raises(ValueError, match="size"):
        srng.multinomial(size=(2,), pvals=pv)


def test_reproducible_per_seed_and_seed_restarts_streams():
    def build(seed):
        srng = RandomStreams(seed)
        return srng, tcomp.function([], [srng.uniform((5,)), srng.normal((3,)), srng.choice((4,), a=10)])

    s1, f1 = build(42)
    first = f1()
    second = f1()
    _, f2 = build(42)
    for a, b in zip(first, f2()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], second[0])
    assert not np.array_equal(first[0], build(43)[1]()[0])
    s1.seed(43)  # re-seeded: the draws of a fresh RandomStreams(43), from its start
    _, f3 = build(43)
    for a, b in zip(f1(), f3()):
        np.testing.assert_array_equal(a, b)
    s1.seed(42)
    np.testing.assert_array_equal(f1()[0], first[0])


def test_state_save_restore_and_copy_between_graphs():
    """Theano's tutorial: save ``rv.rng``'s value, draw, restore it, draw again the same; and
    copy the state of one graph's streams into another's through ``state_updates``."""
    srng = RandomStreams(seed=234)
    rv_u = srng.uniform((2, 2))
    f = tcomp.function([], rv_u)
    nearly_zeros = tcomp.function([], rv_u + rv_u - 2 * rv_u)
    assert np.allclose(nearly_zeros(), 0)  # one draw per call, used three times
    saved = rv_u.rng.get_value()
    v1 = f()
    rv_u.rng.set_value(saved)
    np.testing.assert_array_equal(f(), v1)
    assert rv_u.update[0] is rv_u.rng and srng.state_updates[0][0] is rv_u.rng

    g1, g2 = RandomStreams(1), RandomStreams(2)
    d1, d2 = g1.normal((4,)), g2.normal((4,))
    f1, f2 = tcomp.function([], d1), tcomp.function([], d2)
    f1()
    for (su1, _), (su2, _) in zip(g1.state_updates, g2.state_updates):
        su2.set_value(su1.get_value())
    np.testing.assert_array_equal(f1(), f2())


@pytest.mark.parametrize("seed", [0, 9])
def test_cpu_draws_equal_reference_draws(seed):
    p, lo = T.dvector("p"), T.dmatrix("lo")

    def outputs():
        srng = RandomStreams(seed)
        return srng, [srng.uniform((64,), 0, 2), srng.uniform(low=lo, high=lo + 1), srng.binomial((9, 3), n=3, p=p),
                      srng.random_integers((50,), 2, 9), srng.choice((40,), a=6, p=T.concatenate([p, p])),
                      srng.choice((4,), a=6, replace=False), srng.permutation((3,), n=8),
                      srng.multinomial(n=6, pvals=lo * lo + 0.1), srng.normal((5, 3), avg=lo[0], std=p),
                      srng.poisson((7,), lam=2.5), srng.poisson(lam=lo * 4)]

    args = (np.array([0.2, 0.5, 0.7]), np.arange(6.0).reshape(2, 3) / 6)
    s_ref, outs_ref = outputs()
    s_cpu, outs_cpu = outputs()
    fr = tcomp.function([p, lo], outs_ref, backend="reference")
    fc = tcomp.function([p, lo], outs_cpu, backend="cpu")
    for _ in range(2):  # the counters advance the same way too
        for a, b in zip(fr(*args), fc(*args)):
            assert a.dtype == b.dtype and a.shape == b.shape
            if a.dtype.kind == "f":
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)  # normal: log/cos to a few ulp
            else:
                np.testing.assert_array_equal(a, b)


def test_theano_tutorial_using_random_numbers():
    """Theano's tutorial 'Using Random Numbers' (Brief Example, Seeding Streams, Sharing
    Streams Between Functions), with only the import changed."""
    from tcomp import function

    srng = RandomStreams(seed=234)
    rv_u = srng.uniform((2, 2))
    rv_n = srng.normal((2, 2))
    f = function([], rv_u)
    g = function([], rv_n, no_default_updates=True)  # not updating rv_n.rng
    nearly_zeros = function([], rv_u + rv_u - 2 * rv_u)
    f_val0, f_val1 = f(), f()
    assert not np.array_equal(f_val0, f_val1)
    np.testing.assert_array_equal(g(), g())
    assert np.allclose(nearly_zeros(), 0.0)

    rng_val = rv_u.rng.get_value(borrow=True)  # get the rng for rv_u
    rng_val.seed(89234)  # seeds the generator
    rv_u.rng.set_value(rng_val, borrow=True)  # assign back seeded rng
    a = f()
    rng_val = rv_u.rng.get_value(borrow=True)
    rng_val.seed(89234)
    rv_u.rng.set_value(rng_val, borrow=True)
    np.testing.assert_array_equal(f(), a)
    srng.seed(902340)  # seeds rv_u and rv_n with different seeds each

    state_after_v0 = rv_u.rng.get_value().get_state()
    nearly_zeros()  # this affects rv_u's generator
    v1 = f()
    rng = rv_u.rng.get_value(borrow=True)
    rng.set_state(state_after_v0)
    rv_u.rng.set_value(rng, borrow=True)
    v2 = f()  # v2 != v1
    v3 = f()  # v3 == v1
    assert not np.array_equal(v1, v2)
    np.testing.assert_array_equal(v1, v3)
