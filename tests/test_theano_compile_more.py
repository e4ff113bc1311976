"""NanGuardMode, gradient.numeric_grad, misc.pkl_utils and Theano's compile module paths."""
import io
import zipfile

import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.compile.nanguardmode import NanGuardMode
from tcomp.gradient import numeric_grad
from tcomp.misc import pkl_utils


def test_nanguardmode_passes_clean_calls_and_names_the_first_bad_node():
    x = T.dmatrix("x")
    w = tcomp.shared(np.ones((2, 2)), name="w")
    y = T.log(x) * 2
    f = tcomp.function([x], (y + 1).sum(), updates=[(w, w + x)], mode=NanGuardMode(True, True, True))
    assert f(np.ones((2, 2))) == 4.0
    with pytest.raises(AssertionError, match=r"output 0 contains NaN(.|\n)*log"):
        f(-np.ones((2, 2)))
    with pytest.raises(AssertionError, match="input 'x' contains NaN"):
        f(np.full((2, 2), np.nan))
    g = tcomp.function([x], x * 1e6, mode=NanGuardMode(big_is_error=True))
    with pytest.raises(AssertionError, match="larger than"):
        g(np.full((2, 2), 1e5))
    quiet = tcomp.function([x], T.log(x), mode=NanGuardMode(nan_is_error=False, inf_is_error=False,
                                                              big_is_error=False))
    assert np.isnan(quiet(-np.ones((1, 1)))).all()


def test_nanguardmode_checks_updates():
    w = tcomp.shared(np.ones(3), name="w")
    x = T.dvector("x")
    f = tcomp.function([x], x.sum(), updates=[(w, w / x)], mode=NanGuardMode())
    f(np.ones(3))
    with pytest.raises(AssertionError, match="update 0 contains inf"):
        f(np.array([1.0, 0.0, 1.0]))


def test_numeric_grad_matches_the_analytic_gradient():
    a, b = T.dvector("a"), T.dmatrix("b")
    cost = (T.dot(b, a) ** 2).sum()
    f = tcomp.function([a, b], cost)
    rng = np.random.default_rng(5)
    pa, pb = rng.standard_normal(3), rng.standard_normal((2, 3))
    ng = numeric_grad(f, [pa, pb])
    r = pb @ pa
    want = [2 * pb.T @ r, 2 * np.outer(r, pa)]
    for got, w in zip(ng.gf, want):
        np.testing.assert_allclose(got, w, rtol=1e-6, atol=1e-8)
    arg, pos, abs_err, rel_err = ng.max_err(want, 1e-5, 1e-5)
    assert abs_err < 1e-5
    wrong = [want[0], want[1] + np.array([[0, 0, 0.5], [0, 0, 0]])]
    assert ng.max_err(wrong, 1e-5, 1e-5)[:2] == (1, 2)
    single = numeric_grad(tcomp.function([a], (a ** 3).sum()), pa)
    np.testing.assert_allclose(single.gf, 3 * pa ** 2, rtol=1e-6)


def test_pkl_utils_round_trip_keeps_arrays_readable_by_numpy():
    w = tcomp.shared(np.arange(6.0).reshape(2, 3), name="w")
    x = T.dmatrix("x")
    f = tcomp.function([x], T.dot(x, w))
    buf = io.BytesIO()
    pkl_utils.dump({"w": w, "f": f, "a": np.ones(3, "float32")}, buf)
    buf.seek(0)
    back = pkl_utils.load(buf)
    np.testing.assert_array_equal(back["w"].get_value(), np.arange(6.0).reshape(2, 3))
    assert back["a"].dtype == np.float32
    np.testing.assert_array_equal(back["f"](np.ones((1, 2))), [[3.0, 5.0, 7.0]])
    buf.seek(0)
    archive = zipfile.ZipFile(buf)
    arrays = [np.load(archive.open(n)) for n in archive.namelist() if n.endswith(".npy")]
    assert any(a.shape == (2, 3) for a in arrays)
    with pytest.raises(ValueError, match="pkl"):
        other = io.BytesIO()
        with zipfile.ZipFile(other, "w") as z:
            z.writestr("x", b"1")
        other.seek(0)
        pkl_utils.load(other)


def test_theano_compile_paths():
    import tcomp.compile.function_module as function_module
    from tcomp.compile.sharedvalue import SharedVariable, shared

    assert function_module.Function is tcomp.Function
    assert isinstance(shared(np.zeros(2)), SharedVariable)
    assert tcomp.compile.nanguardmode.NanGuardMode is NanGuardMode


def test_profile_counts_calls_and_reports_compile_phases():
    import pickle

    x = T.dvector("x")
    f = tcomp.function([x], (x ** 2).sum(), profile=True, rebuild_strict=True, accept_inplace=False)
    for _ in range(5):
        assert f(np.ones(4)) == 4.0
    assert f.profile.call_count == 5 and f.profile.call_time > 0
    out = io.StringIO()
    f.profile.summary(file=out)
    assert "5 calls" in out.getvalue() and "passes" in out.getvalue()
    assert tcomp.function([x], x + 1).profile is None
    with tcomp.config.change_flags(profile=True):
        g = tcomp.function([x], x + 1)
    g(np.ones(2))
    assert g.profile.call_count == 1
    h = pickle.loads(pickle.dumps(f))
    np.testing.assert_array_equal(h(np.ones(3)), 3.0)
    assert h.profile.call_count == 1
    assert isinstance(f.profile, tcomp.ProfileStats)
    with pytest.raises(ValueError, match="profile"):
        tcomp.config.profile = "maybe"


def test_variable_classes_for_isinstance_checks():
    from tcomp.tensor.sharedvar import TensorSharedVariable
    from tcomp.tensor.var import TensorConstant, TensorVariable

    x = T.dmatrix("x")
    assert isinstance(x, TensorVariable) and isinstance(x, tcomp.Variable) and isinstance(x, tcomp.gof.Variable)
    assert isinstance(T.constant(1.0), TensorConstant)
    assert isinstance(tcomp.shared(np.zeros(2)), TensorSharedVariable)
    assert callable(T.var)  # T.var stays the variance function


def test_theano_config_options_without_effect_are_accepted_and_checked():
    config = tcomp.config
    with config.change_flags(exception_verbosity="high", allow_gc=False, cxx="", openmp=True,
                             openmp_elemwise_minsize=1000, on_opt_error="raise"):
        assert config.exception_verbosity == "high" and config.allow_gc is False and config.openmp is True
        x = T.dvector("x")
        np.testing.assert_array_equal(tcomp.function([x], x * 2)(np.ones(2)), [2.0, 2.0])
    assert config.allow_gc is True
    with pytest.raises(ValueError, match="exception_verbosity"):
        config.exception_verbosity = "medium"
    with pytest.raises(ValueError, match="allow_gc"):
        config.allow_gc = "maybe"
    with pytest.raises(AttributeError, match="no option"):
        config.exception_verbositty = "high"


def test_theano_compile_module_paths():
    from tcomp.compile.function import function
    from tcomp.compile.io import In, Out
    from tcomp.compile.mode import Mode, get_mode

    assert function is tcomp.function and tcomp.compile.function is tcomp.function
    assert (In, Out, Mode) == (tcomp.In, tcomp.Out, tcomp.Mode) and get_mode("FAST_RUN").optimizer == "fast_run"
    assert tcomp.compile.shared is tcomp.shared and tcomp.compile.SharedVariable is tcomp.SharedVariable
