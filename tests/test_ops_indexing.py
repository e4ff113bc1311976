"""Indexing through the DSL (``x[...]``, ``T.set_subtensor``, ``T.inc_subtensor``) against
the same key applied by NumPy: basic slices with static and symbolic bounds, negative
steps, ints, newaxis, advanced integer arrays (incl. NumPy's placement rule for
non-adjacent ones), mixed slice + array keys, out-of-bounds errors, and updates whose
repeated advanced indices accumulate (``inc``) or take one of the values (``set``)."""
import numpy as np
import pytest
from conftest import TEST_DTYPES, check_result, compile_fn, rand_array

import tcomp.tensor as T


@pytest.mark.parametrize("dtype", TEST_DTYPES)
def test_basic_static_slices_and_ints(dtype, backend, rng):
    x = T.tensor("x", dtype=dtype, shape=(None, None, 4))
    s = T.tensor("s", dtype=dtype, shape=(6, 5))
    keys = [np.s_[1:3], np.s_[:, ::2], np.s_[::-1], np.s_[-2:], np.s_[1:-1, 2], np.s_[2], np.s_[-1, -1, -1],
            np.s_[..., 1], np.s_[None, 1], np.s_[:, None, :, 3], np.s_[::-2, 1:, ::-3], np.s_[5:], np.s_[3:1],
            np.s_[:, 0, 1:3]]
    outs = [x[k] for k in keys] + [s[::-1, 1::2], s[4], s[-6:-1:2, -1]]
    assert outs[-3].type.shape == (6, 2) and outs[-1].type.shape == (3,)
    f = compile_fn([x, s], outs, backend, expect_ops={"subtensor"})
    xv, sv = rand_array(rng, dtype, (3, 5, 4)), rand_array(rng, dtype, (6, 5))
    wants = [xv[k] for k in keys] + [sv[::-1, 1::2], sv[4], sv[-6:-1:2, -1]]
    for i, (got, want) in enumerate(zip(f(xv, sv), wants)):
        check_result(got, want, dtype, f"x[{(keys + ['s1', 's2', 's3'])[i]}]")


def test_symbolic_bounds_and_steps(backend, rng):
    x = T.dmatrix("x")
    i, j = T.iscalar("i"), T.lscalar("j")
    st = T.lscalar("st")
    outs = [x[i:j], x[i], x[:, i:], x[::st], x[j:i:st, i], x[-j], x[i, j], x[:j, ::st]]
    f = compile_fn([x, i, j, st], outs, backend, expect_ops={"subtensor"})
    xv = rng.standard_normal((7, 6))
    for iv, jv, sv in [(1, 4, 1), (2, 5, -1), (0, 5, 2), (-3, -1, -2), (5, 1, -1), (-6, 3, 3)]:
        got = f(xv, np.int32(iv), np.int64(jv), np.int64(sv))
        wants = [xv[iv:jv], xv[iv], xv[:, iv:], xv[::sv], xv[jv:iv:sv, iv], xv[-jv], xv[iv, jv], xv[:jv, ::sv]]
        for k, (g, w) in enumerate(zip(got, wants)):
            check_result(g, w, "float64", f"case {k} with i={iv} j={jv} step={sv}")
    with pytest.raises(ValueError, match="step"):
        f(xv, np.int32(0), np.int64(1), np.int64(0))


@pytest.mark.parametrize("dtype", ["bool", "int8", "int32", "uint8", "float32", "float64"])
def test_advanced_indexing(dtype, backend, rng):
    x = T.tensor("x", dtype=dtype, shape=(None, None))
    t = T.tensor("t", dtype=dtype, shape=(None, None, None))
    y = T.ivector("y")
    idx = T.lvector("idx")
    idx2 = T.tensor("idx2", dtype="int8", shape=(None, None))
    outs = [x[T.arange(x.shape[0]), y], x[idx], x[idx, 1:3], x[1:3, idx], t[:, idx], x[[0, 2, 2]], x[idx2],
            x[np.array([-1, 0])], x[idx, 0], t[1, idx], t[idx, :, y], t[idx, y], t[:, idx, y]]
    f = compile_fn([x, t, y, idx, idx2], outs, backend, expect_ops={"subtensor", "arange"})
    xv, tv = rand_array(rng, dtype, (4, 5)), rand_array(rng, dtype, (3, 4, 5))
    yv = np.array([3, 0, -1, 2], "int32")
    iv = np.array([2, 0, 2, -1], "int64")  # repeats and a negative index
    i2 = np.array([[0, 1], [3, -2], [1, 1]], "int8")
    wants = [xv[np.arange(4), yv], xv[iv], xv[iv, 1:3], xv[1:3, iv], tv[:, iv], xv[[0, 2, 2]], xv[i2],
             xv[[-1, 0]], xv[iv, 0], tv[1, iv],
             tv[iv, :, yv],   # non-adjacent advanced indices: the broadcast index dims move to the front
             tv[iv, yv], tv[:, iv, yv]]
    assert wants[10].shape == (4, 4) and wants[12].shape == (3, 4)
    for k, (g, w) in enumerate(zip(f(xv, tv, yv, iv, i2), wants)):
        check_result(g, w, dtype, f"advanced case {k}")
    with pytest.raises((ValueError, IndexError)):  # idx and y lengths must broadcast at run time
        f(xv, tv, yv, iv[:3], i2)


def test_advanced_index_shapes_and_errors(backend):
    x = T.matrix("x", shape=(4, 5))
    idx = T.lvector("idx")
    assert x[idx, 1:3].type.shape == (None, 2)
    assert x[1:3, idx].type.shape == (2, None)
    with pytest.raises(TypeError, match="integer"):
        x[T.vector("fidx")]
    # a boolean mask is its nonzero() index vectors (tests/test_ops_nonzero.py)
    assert x[T.vector("mask", dtype="bool")].type.shape == (None, 5)
    with pytest.raises(TypeError, match="integer scalar"):
        x[T.scalar("bmask", dtype="bool")]
    with pytest.raises(TypeError, match="integer scalar"):
        x[T.scalar("fpos")]
    with pytest.raises(ValueError, match="out of bounds"):
        x[4]  # static index past a static dim is a build-time error
    with pytest.raises(IndexError, match="too many"):
        x[0, 0, 0]


def test_out_of_bounds_raise_index_error(backend):
    x = T.dmatrix("x")
    i = T.lscalar("i")
    idx = T.lvector("idx")
    xv = np.arange(12.0).reshape(3, 4)
    f_int = compile_fn([x, i], x[i], backend)
    f_adv = compile_fn([x, idx], x[idx], backend)
    f_static = compile_fn([x], x[:, 7], backend)
    f_set = compile_fn([x, idx], T.set_subtensor(x[idx], 1.0), backend)
    f_inc = compile_fn([x, idx], T.inc_subtensor(x[:, idx], 1.0), backend)
    check_result(f_int(xv, np.int64(-3)), xv[-3], "float64", "x[-3]")
    for call in (lambda: f_int(xv, np.int64(3)), lambda: f_int(xv, np.int64(-4)),
                 lambda: f_adv(xv, np.array([0, 3])), lambda: f_adv(xv, np.array([-4])),
                 lambda: f_static(xv), lambda: f_set(xv, np.array([5])), lambda: f_inc(xv, np.array([0, 4]))):
        with pytest.raises(IndexError):
            call()


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint8", "float32", "float64"])
def test_set_and_inc_subtensor(dtype, backend, rng):
    x = T.tensor("x", dtype=dtype, shape=(None, None))
    v = T.tensor("v", dtype=dtype, shape=(None,))
    w = T.tensor("w", dtype=dtype, shape=(None, 1))
    idx = T.lvector("idx")
    i = T.lscalar("i")
    outs = [T.set_subtensor(x[1:3], w[1:3]), T.inc_subtensor(x[:, ::2], 2), T.set_subtensor(x[i], v),
            T.inc_subtensor(x[idx], v), T.set_subtensor(x[idx, 0], 7), T.inc_subtensor(x[:, idx], w),
            T.inc_subtensor(x[::-1, i], v[:4]), T.set_subtensor(x[i:, i], 0)]
    assert all(o.dtype == dtype for o in outs)
    f = compile_fn([x, v, w, idx, i], outs, backend, expect_ops={"set_subtensor", "inc_subtensor"})
    xv = rand_array(rng, dtype, (4, 5), 0, 5)
    vv, wv = rand_array(rng, dtype, (5,), 0, 5), rand_array(rng, dtype, (4, 1), 0, 5)
    iv = np.array([2, 0, 2, -4], "int64")  # 2 appears twice and -4 is index 0 again
    xv_before = xv.copy()

    def updated(fn):
        out = xv.astype("int64" if xv.dtype.kind in "iu" else "float64")
        fn(out)
        return out

    def set_rows(o):
        o[1:3] = wv[1:3]

    def inc_strided(o):
        o[:, ::2] += 2

    def set_row_i(o):
        o[1] = vv

    def inc_rows(o):  # repeated indices accumulate: one addition per occurrence
        for r in iv:
            o[r] += vv

    def set_rows_col0(o):
        for r in iv:
            o[r, 0] = 7

    def inc_cols(o):
        for c in iv:
            o[:, c] += wv[:, 0]

    def inc_reversed(o):
        o[::-1, 1] += vv[:4]

    def set_tail(o):
        o[1:, 1] = 0

    wants = [updated(fn) for fn in (set_rows, inc_strided, set_row_i, inc_rows, set_rows_col0, inc_cols,
                                    inc_reversed, set_tail)]
    for k, (g, want) in enumerate(zip(f(xv, vv, wv, iv, np.int64(1)), wants)):
        check_result(g, want, dtype, f"update case {k}")
    np.testing.assert_array_equal(xv, xv_before)  # updates are functional: the input is untouched


def test_set_subtensor_repeated_index_takes_one_of_the_values(backend):
    x, v = T.dvector("x"), T.dvector("v")
    idx = T.lvector("idx")
    f = compile_fn([x, v, idx], T.set_subtensor(x[idx], v), backend)
    got = f(np.zeros(3), np.array([1.0, 2.0, 3.0]), np.array([1, 1, 2]))
    assert got[0] == 0 and got[1] in (1.0, 2.0) and got[2] == 3.0


def test_update_errors():
    x = T.matrix("x", shape=(4, 5))
    with pytest.raises(TypeError, match="subtensor"):
        T.set_subtensor(x, 1.0)
    with pytest.raises(ValueError, match="set_subtensor"):
        T.set_subtensor(x[1:3], T.matrix("big", shape=(3, 5)))
    with pytest.raises(ValueError, match="inc_subtensor"):
        T.inc_subtensor(x[0], T.matrix("two_d", shape=(2, 5)))


def test_update_value_casts_to_target_dtype(backend):
    x = T.bvector("x")
    f = compile_fn([x], [T.set_subtensor(x[1:], 3), T.inc_subtensor(x[:2], np.array(5))], backend)
    a, b = f(np.array([1, 2, 3], "int8"))
    check_result(a, np.array([1, 3, 3]), "int8", "set with python int")
    check_result(b, np.array([6, 7, 3]), "int8", "inc with array")


def test_unit_step_leading_slices_stay_contiguous_views():
    """x[a:b], x[i] and x[i, a:b] of a C-contiguous array are C-contiguous, so a reshape of
    them is a view (no copy kernel); strided slices still reshape through a copy.  Values
    are checked against NumPy for both kinds."""
    import tcomp
    import tcomp.tensor as T

    x, i = T.dmatrix("x"), T.lscalar("i")
    a = np.random.default_rng(3).standard_normal((6, 4))
    views = {"rows": (x[1:4].reshape((12,)), a[1:4].reshape(12)),
             "row": (x[i].reshape((2, 2)), a[2].reshape(2, 2)),
             "tail": (x[-3:].flatten(), a[-3:].ravel()),
             "symbolic": (x[i:i + 2].reshape((8,)), a[2:4].reshape(8))}
    copies = {"cols": (x[:, 1:3].reshape((12,)), a[:, 1:3].reshape(12)),
              "step": (x[::2].reshape((12,)), a[::2].reshape(12)),
              "column": (x[:, 2].reshape((3, 2)), a[:, 2].reshape(3, 2))}
    for table, is_view in ((views, True), (copies, False)):
        for name, (expr, want) in table.items():
            f = tcomp.function([x, i], expr, on_unused_input="ignore")
            np.testing.assert_array_equal(f(a, 2), want, err_msg=name)
            assert ("reshape(" not in f.dump("kernels")) == is_view, name
