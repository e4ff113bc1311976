"""Minimized reproductions of failures the differential fuzzer (tests/fuzz_main.py) found,
checked against NumPy written here (never against tcomp itself)."""
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("fold", [False, True])
def test_inc_subtensor_2d_index_broadcast_values(backend, fold):
    # NumPy 2.4's np.add.at reads garbage when a 2-d index array meets values that need
    # broadcasting; the reference interpreter (and constant folding, which uses it) did so.
    idx = np.array([[0, -1, 0, -1], [0, -1, 0, -1]])
    x0 = np.array([-1], dtype="int64")
    y0 = np.array([1, 10, 100, 1000], dtype="int64")
    want = np.array([-1 + 2 * 1111], dtype="int64")
    if fold:
        out = T.inc_subtensor(T.constant(x0)[idx], T.constant(y0))
        got = tcomp.function([], out, backend=backend)()
    else:
        x, y = T.lvector("x"), T.lvector("y")
        got = tcomp.function([x, y], T.inc_subtensor(x[idx], y), backend=backend)(x0, y0)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_inc_subtensor_2d_index_float(backend):
    x = T.fvector("x")
    out = T.inc_subtensor(x[np.array([[0, 2], [0, 1]])], T.constant(np.array([1.0, 10.0], "float32")))
    got = tcomp.function([x], out, backend=backend)(np.zeros(3, "float32"))
    np.testing.assert_array_equal(got, np.array([2.0, 10.0, 10.0], "float32"))


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_empty_list_index(backend):
    # x[[]] is NumPy's empty integer index (np.asarray([]) alone would be float64)
    x = T.matrix("x")
    a = np.arange(6, dtype="float32").reshape(2, 3)
    f = tcomp.function([x], [x[[]], x[:, []], T.set_subtensor(x[[]], 1.0)], backend=backend)
    got = f(a)
    np.testing.assert_array_equal(got[0], a[[]])
    np.testing.assert_array_equal(got[1], a[:, []])
    np.testing.assert_array_equal(got[2], a)
