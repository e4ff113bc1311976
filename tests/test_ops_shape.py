"""Shape ops through the DSL against NumPy: dimshuffle (.T, transpose, 'x'), reshape/flatten,
alloc (T.alloc, zeros, ones, fill, broadcast_to, *_like), concatenate, stack, shape, arange.

Symbolic sizes (``x.shape[i]``, ``T.lscalar``) are exercised next to static ones, since a
backend must read them at run time."""
import numpy as np
import pytest
from conftest import TEST_DTYPES, check_result, compile_fn, rand_array

import tcomp.tensor as T


@pytest.mark.parametrize("dtype", TEST_DTYPES)
def test_dimshuffle_and_transpose(dtype, backend, rng):
    x = T.tensor("x", dtype=dtype, shape=(2, None, 4))
    r = T.tensor("r", dtype=dtype, shape=(1, None))
    m = T.tensor("m", dtype=dtype, shape=("n", 3))
    s = T.tensor("s", dtype=dtype, shape=())
    outs = [x.T, x.dimshuffle(2, 0, 1), x.dimshuffle("x", 0, "x", 1, 2), r.dimshuffle(1), r.dimshuffle(1, "x", 0),
            m.T, T.transpose(x, (1, 0, 2)), x.transpose(0, 2, 1), s.dimshuffle("x", "x")]
    assert [o.type.shape for o in outs[:4]] == [(4, None, 2), (4, 2, None), (1, 2, 1, None, 4), (None,)]
    assert outs[5].type.shape == (3, "n")
    f = compile_fn([x, r, m, s], outs, backend, expect_ops={"dimshuffle"})
    xv, rv, mv, sv = (rand_array(rng, dtype, sh) for sh in [(2, 3, 4), (1, 5), (4, 3), ()])
    wants = [xv.transpose(2, 1, 0), np.moveaxis(xv, 2, 0), xv[None, :, None], rv[0],
             rv.T[:, :, None].transpose(0, 2, 1), mv.T, xv.swapaxes(0, 1), xv.swapaxes(1, 2), np.reshape(sv, (1, 1))]
    for i, (got, want) in enumerate(zip(f(xv, rv, mv, sv), wants)):
        check_result(got, want, dtype, f"dimshuffle case {i}")


def test_dimshuffle_errors():
    x = T.matrix("x", shape=(None, 3))
    with pytest.raises(ValueError, match="dimshuffle"):
        x.dimshuffle(1)  # axis 0 is not broadcastable: cannot drop it
    with pytest.raises(ValueError, match="dimshuffle"):
        x.dimshuffle(0, 0)


@pytest.mark.parametrize("dtype", ["bool", "int8", "int64", "uint8", "float32", "float64"])
def test_reshape_and_flatten(dtype, backend, rng):
    x = T.tensor("x", dtype=dtype, shape=(4, 6))
    y = T.tensor("y", dtype=dtype, shape=(None, None, None))
    e = T.tensor("e", dtype=dtype, shape=(None, 3))
    n = T.lscalar("n")
    outs = [x.reshape((2, 12)), x.reshape((3, -1)), T.reshape(x, (2, 2, 2, 3)), x.flatten(),
            y.reshape((y.shape[0] * y.shape[1], y.shape[2])), y.reshape((-1,)), y.reshape((n, -1)),
            y.flatten(2), y.flatten(3), y.flatten(1), e.reshape((-1,)), e.reshape((3, e.shape[0])),
            x.reshape(24)]
    assert outs[1].type.shape == (3, 8) and outs[7].ndim == 2
    f = compile_fn([x, y, e, n], outs, backend, expect_ops={"reshape"})
    xv, yv, ev = rand_array(rng, dtype, (4, 6)), rand_array(rng, dtype, (2, 3, 5)), rand_array(rng, dtype, (0, 3))
    wants = [xv.reshape(2, 12), xv.reshape(3, 8), xv.reshape(2, 2, 2, 3), xv.ravel(), yv.reshape(6, 5), yv.ravel(),
             yv.reshape(5, 6), yv.reshape(2, 15), yv, yv.ravel(), ev.ravel(), ev.reshape(3, 0), xv.ravel()]
    for i, (got, want) in enumerate(zip(f(xv, yv, ev, np.int64(5)), wants)):
        check_result(got, want, dtype, f"reshape case {i}")
    with pytest.raises(ValueError):
        f(xv, yv, ev, np.int64(7))  # 30 elements do not split into rows of 7


def test_reshape_errors():
    x = T.matrix("x", shape=(4, 6))
    with pytest.raises(ValueError, match="reshape"):
        x.reshape((5, -1))
    with pytest.raises(ValueError, match="-1"):
        x.reshape((-1, -1))
    with pytest.raises(TypeError, match="integer scalar"):
        x.reshape((T.scalar("f"), 6))
    with pytest.raises(ValueError, match="flatten"):
        x.flatten(3)


@pytest.mark.parametrize("dtype", TEST_DTYPES)
def test_alloc_family(dtype, backend, rng):
    n = T.lscalar("n")
    v = T.tensor("v", dtype=dtype, shape=())
    r = T.tensor("r", dtype=dtype, shape=(1, None))
    x = T.tensor("x", dtype=dtype, shape=(None, None))
    outs = [T.alloc(v, n, 3), T.alloc(r, 2, n, 4), T.broadcast_to(r, (n, r.shape[1])), T.zeros((n, 2), dtype=dtype),
            T.ones(x.shape, dtype=dtype), T.zeros_like(x), T.ones_like(x), T.fill(x, v), T.alloc(v, 2, 3),
            T.alloc(v, n, 0)]
    assert [o.dtype for o in outs] == [dtype] * len(outs)
    assert outs[0].type.shape == (None, 3) and outs[8].type.shape == (2, 3)
    f = compile_fn([n, v, r, x], outs, backend, expect_ops={"alloc"})
    vv, rv, xv = rand_array(rng, dtype, ()), rand_array(rng, dtype, (1, 4)), rand_array(rng, dtype, (3, 5))
    wants = [np.full((5, 3), vv), np.tile(rv, (2, 5, 1)), np.repeat(rv, 5, axis=0), np.zeros((5, 2)), np.ones((3, 5)),
             np.zeros((3, 5)), np.ones((3, 5)), np.full((3, 5), vv), np.full((2, 3), vv), np.zeros((5, 0))]
    for i, (got, want) in enumerate(zip(f(np.int64(5), vv, rv, xv), wants)):
        check_result(got, want, dtype, f"alloc case {i}")
    g = compile_fn([n, v], T.alloc(v, n, 2), backend)
    check_result(g(np.int64(0), vv), np.zeros((0, 2)), dtype, "alloc to zero rows")


def test_alloc_errors(backend):
    with pytest.raises(ValueError, match="alloc"):
        T.alloc(T.matrix("m", shape=(2, 3)), 4, 3)  # 2 cannot broadcast to 4
    with pytest.raises(TypeError, match="integer scalar"):
        T.alloc(T.scalar("s"), T.dscalar("n"))
    v, m = T.vector("v"), T.lscalar("m")
    f = compile_fn([v, m], T.alloc(v, m, 4), backend)
    with pytest.raises(ValueError):
        f(np.ones(3, "float32"), np.int64(2))  # symbolic dim 3 != 4 and never broadcasts


@pytest.mark.parametrize("dtype", TEST_DTYPES)
def test_concatenate(dtype, backend, rng):
    a = T.tensor("a", dtype=dtype, shape=(None, 3))
    b = T.tensor("b", dtype=dtype, shape=(2, 3))
    c = T.tensor("c", dtype=dtype, shape=(None, None))
    e = T.tensor("e", dtype=dtype, shape=(None, 3))
    v = T.tensor("v", dtype=dtype, shape=(None,))
    t = T.tensor("t", dtype=dtype, shape=(2, None, 2))
    outs = [T.concatenate([a, b]), T.concatenate([a, b, e], axis=0), T.concatenate([c, a], axis=1),
            T.concatenate([b, b], axis=-1), T.concatenate([v, v, v]), T.concatenate([t, t], axis=1),
            T.concatenate([a])]
    assert outs[3].type.shape == (2, 6)
    f = compile_fn([a, b, c, e, v, t], outs, backend, expect_ops={"concatenate"})
    av, bv, cv = rand_array(rng, dtype, (4, 3)), rand_array(rng, dtype, (2, 3)), rand_array(rng, dtype, (4, 2))
    ev, vv, tv = rand_array(rng, dtype, (0, 3)), rand_array(rng, dtype, (5,)), rand_array(rng, dtype, (2, 3, 2))
    wants = [np.vstack([av, bv]), np.vstack([av, bv, ev]), np.hstack([cv, av]), np.hstack([bv, bv]),
             np.hstack([vv, vv, vv]), np.dstack([tv.transpose(0, 2, 1)] * 2).transpose(0, 2, 1), av]
    for i, (got, want) in enumerate(zip(f(av, bv, cv, ev, vv, tv), wants)):
        check_result(got, want, dtype, f"concatenate case {i}")
    with pytest.raises(ValueError):
        f(av, bv, rand_array(rng, dtype, (3, 2)), ev, vv, tv)  # run-time row mismatch on axis 0


def test_concatenate_promotes_and_checks(backend, rng):
    a, b = T.bmatrix("a"), T.fmatrix("b")
    out = T.concatenate([a, b], axis=1)
    assert out.dtype == "float32"
    f = compile_fn([a, b], out, backend)
    av, bv = rand_array(rng, "int8", (2, 3)), rand_array(rng, "float32", (2, 1))
    check_result(f(av, bv), np.hstack([av.astype("float64"), bv]), "float32", "concatenate int8/float32")
    with pytest.raises(ValueError, match="rank"):
        T.concatenate([T.matrix("m"), T.vector("v")])
    with pytest.raises(ValueError, match="concatenate"):
        T.concatenate([T.matrix("p", shape=(2, 3)), T.matrix("q", shape=(2, 4))], axis=0)


@pytest.mark.parametrize("dtype", TEST_DTYPES)
def test_stack(dtype, backend, rng):
    a = T.tensor("a", dtype=dtype, shape=(None, 3))
    b = T.tensor("b", dtype=dtype, shape=(None, 3))
    s, t = T.tensor("s", dtype=dtype, shape=()), T.tensor("t", dtype=dtype, shape=())
    outs = [T.stack([a, b]), T.stack([a, b, a], axis=1), T.stack([a, b], axis=-1), T.stack([s, t, s])]
    assert outs[0].type.shape == (2, None, 3) and outs[3].type.shape == (3,)
    f = compile_fn([a, b, s, t], outs, backend, expect_ops={"stack"})
    av, bv = rand_array(rng, dtype, (4, 3)), rand_array(rng, dtype, (4, 3))
    sv, tv = rand_array(rng, dtype, ()), rand_array(rng, dtype, ())
    wants = [np.array([av, bv]), np.array([av, bv, av]).transpose(1, 0, 2), np.array([av, bv]).transpose(1, 2, 0),
             np.array([sv, tv, sv])]
    for i, (got, want) in enumerate(zip(f(av, bv, sv, tv), wants)):
        check_result(got, want, dtype, f"stack case {i}")
    with pytest.raises(ValueError):
        f(av, rand_array(rng, dtype, (2, 3)), sv, tv)


def test_stack_promotes_and_checks():
    assert T.stack([T.bvector("a"), T.dvector("b")]).dtype == "float64"
    with pytest.raises(ValueError, match="stack"):
        T.stack([T.matrix("p", shape=(2, 3)), T.matrix("q", shape=(3, 3))])


def test_shape_op(backend, rng):
    x = T.tensor3("x", shape=(None, 2, "k"))
    s0, s1, s2 = x.shape
    assert s1.op == "constant" and s0.dtype == "int64"
    outs = [s0, s2, s0 * s2 + 1, T.cast(s0, "float32") / 2]
    f = compile_fn([x], outs, backend, expect_ops={"shape"})
    got = f(rand_array(rng, "float32", (5, 2, 7)))
    for g, want, d in zip(got, [5, 7, 36, 2.5], ["int64", "int64", "int64", "float32"]):
        check_result(g, np.array(want), d, "shape")
    check_result(f(np.zeros((0, 2, 3), "float32"))[0], np.array(0), "int64", "shape of empty")


def test_arange(backend):
    n, start, step = T.lscalar("n"), T.iscalar("start"), T.lscalar("step")
    lo, hi = T.dscalar("lo"), T.dscalar("hi")
    static = T.arange(5)
    assert static.op == "constant" and static.dtype == "int64"
    outs = [T.arange(n), T.arange(start, n), T.arange(n, start, step), T.arange(lo, hi, 0.5),
            T.arange(n, dtype="int32"), T.arange(start, 10, 3), static + n, T.arange(2, 7, 2),
            T.arange(n, 2.5), T.arange(T.cast(lo, "float32"), hi)]
    dtypes = ["int64", "int64", "int64", "float64", "int32", "int64", "int64", "int64", "float32", "float64"]
    assert [o.dtype for o in outs] == dtypes
    f = compile_fn([n, start, step, lo, hi], outs, backend, expect_ops={"arange"})
    got = f(np.int64(6), np.int32(-2), np.int64(-3), np.float64(-1.0), np.float64(1.2))
    wants = [list(range(6)), list(range(-2, 6)), list(range(6, -2, -3)), [-1.0, -0.5, 0.0, 0.5, 1.0],
             list(range(6)), list(range(-2, 10, 3)), [6, 7, 8, 9, 10], [2, 4, 6], [], [-1.0, 0.0, 1.0]]
    for i, (g, want, d) in enumerate(zip(got, wants, dtypes)):
        check_result(g, np.array(want), d, f"arange case {i}")
    empty = f(np.int64(-1), np.int32(3), np.int64(1), np.float64(2.0), np.float64(1.0))
    check_result(empty[0], np.zeros(0), "int64", "arange(-1)")
    check_result(empty[3], np.zeros(0), "float64", "arange(2.0, 1.0, 0.5)")
    with pytest.raises(TypeError, match="scalar"):
        T.arange(T.lvector("v"))
