"""Run-time assertions (Theano's T.opt.Assert / assert_op), Python ops' owner.op, nested
calls from a Python op's perform (re-entrant shared-variable locks), and tcomp.typed_list,
against NumPy and Python lists."""
import threading

import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.raise_op import CheckAndRaise
from tcomp.tensor.opt import Assert, assert_op


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_assert_op_passes_value_and_raises_at_call_time(backend):
    x = T.dvector("x")
    y = assert_op(x, T.all(x > 0)) * 2
    f = tcomp.function([x], y, backend=backend)
    np.testing.assert_array_equal(f(np.array([1.0, 2.0])), [2.0, 4.0])
    with pytest.raises(AssertionError, match="Assert failed"):
        f(np.array([1.0, -2.0]))
    z = Assert("x must be short and positive")(x, x.shape[0] < 3, T.all(x > 0))
    g = tcomp.function([x], z.sum(), backend=backend)
    assert g([1.0, 2.0]) == 3.0
    with pytest.raises(AssertionError, match=r"short and positive \(condition 1 of 2 is false\)"):
        g([1.0, 2.0, 3.0])
    with pytest.raises(AssertionError, match=r"condition 2 of 2"):
        g([1.0, -2.0])


def test_assert_gradient_shape_constants_and_errors():
    x = T.dmatrix("x")
    checked = assert_op(x, T.eq(x.shape[0], x.shape[1]))
    assert checked.type == x.type  # infer_shape keeps the dims
    g = T.grad(T.sum(checked ** 2), x)
    v = np.arange(4.0).reshape(2, 2)
    np.testing.assert_array_equal(tcomp.function([x], g)(v), 2 * v)
    assert assert_op(x, True, np.int8(1)) is x  # constant-true conditions are decided at build time
    with pytest.raises(TypeError, match="float"):
        assert_op(x, x.sum())
    with pytest.raises(TypeError, match="at least one condition"):
        assert_op(x)
    c = CheckAndRaise(ValueError, "negative input")
    h = tcomp.function([x], c(x, T.all(x >= 0)).sum())
    with pytest.raises(ValueError, match="negative input"):
        h(-v)
    assert isinstance(checked.owner.op, Assert) and checked.owner.op == assert_op


def test_grad_through_a_checked_integer_index():
    i, v = T.lscalar("i"), T.dvector("v")
    j = assert_op(i, T.ge(i, 0))  # an integer result of a Python op: no gradient, but T.grad goes on
    g = tcomp.function([v, i], T.grad(v[j] * 3, v))
    np.testing.assert_array_equal(g([1.0, 2.0], 1), [0.0, 3.0])
    with pytest.raises(AssertionError):
        g([1.0, 2.0], -1)


def test_python_op_owner_op_is_the_instance():
    class Double(tcomp.Op):
        itypes, otypes = [T.dvector], [T.dvector]

        def perform(self, node, inputs, out):
            out[0][0] = 2 * inputs[0]

    op = Double()
    x = T.dvector("x")
    y = op(x)
    assert y.owner.op is op and y.owner.inputs == [x] and y.owner.outputs == [y]

    @tcomp.compile.ops.as_op(itypes=[T.dvector], otypes=[T.dvector, T.dvector])
    def split(v):
        return v + 1, v - 1

    a, b = split(x)
    assert b.owner.op is split and b.owner.inputs == [x]


def _in_thread(fn, timeout=60):
    """Run ``fn`` in a thread; a hang fails the test instead of hanging the suite."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            out["error"] = exc
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "the nested call deadlocked"
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_perform_calling_a_function_that_updates_a_held_shared_variable():
    W = tcomp.shared(np.zeros(3), "W")
    bump = tcomp.function([], [], updates=[(W, W + 1)])

    class CallsBump(tcomp.Op):
        itypes, otypes = [T.dvector], [T.dvector]

        def perform(self, node, inputs, out):
            bump()  # the outer call holds W's lock (read or write)
            out[0][0] = inputs[0] + W.get_value()

    x = T.dvector("x")
    reads = tcomp.function([x], CallsBump()(x) + W)  # outer call reads W: the nested update upgrades
    np.testing.assert_array_equal(_in_thread(lambda: reads(np.ones(3))), [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(W.get_value(), [1.0, 1.0, 1.0])
    updates = tcomp.function([x], CallsBump()(x), updates=[(W, W * 10)])  # outer call updates W
    np.testing.assert_array_equal(_in_thread(lambda: updates(np.ones(3))), [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(W.get_value(), [20.0, 20.0, 20.0])
    # the locks are free again: another thread can update W
    _in_thread(bump)
    np.testing.assert_array_equal(W.get_value(), [21.0, 21.0, 21.0])


def test_nested_upgrade_refused_when_another_thread_reads():
    from tcomp.shared import acquire, release

    W = tcomp.shared(np.zeros(2), "W")
    other_has_it, done = threading.Event(), threading.Event()

    def other_reader():
        how = acquire(W._rw, False, "W")
        other_has_it.set()
        done.wait(30)
        release(W._rw, how)
    t = threading.Thread(target=other_reader, daemon=True)
    t.start()
    other_has_it.wait(30)
    how = acquire(W._rw, False, "W")  # this thread reads W too, then tries to update it
    try:
        with pytest.raises(RuntimeError, match="would deadlock"):
            acquire(W._rw, True, "W")
    finally:
        release(W._rw, how)
        done.set()
        t.join(30)
    W.set_value(np.ones(2))  # nothing is left held
    np.testing.assert_array_equal(W.get_value(), [1.0, 1.0])


# -- tcomp.typed_list ----------------------------------------------------------------------

def _same_lists(got, want):
    assert isinstance(got, list) and len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
        assert g.shape == np.shape(w)


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpu", marks=pytest.mark.slow)])
def test_typed_list_theano_example_and_list_methods(backend):
    """Every list method against Python's list (the method sweep compiles many staged
    programs on the CPU: slow there; the example, getitem and the next test run on the CPU)."""
    import tcomp.typed_list as TL

    tl = TL.TypedListType(T.fvector)()
    v = T.fvector()
    f = tcomp.function([tl, v], TL.append(tl, v))  # Theano's typed_list documentation
    _same_lists(f([[1, 2, 3], [4, 5]], [2]), [np.float32([1, 2, 3]), np.float32([4, 5]), np.float32([2])])

    tl, v, i = TL.TypedListType(T.fvector)("tl"), T.fvector("v"), T.lscalar("i")
    outs = [TL.length(tl), TL.length(tl), tl.insert(i, v), tl[1:], tl[::-2], tl.reverse(), tl.count(v), tl.remove(v),
            TL.extend(tl, tl), tl.append(v)[-1] * 2]
    g = tcomp.function([tl, v, i], outs, backend=backend)
    rng = np.random.default_rng(0)
    base = [rng.standard_normal(n).astype("float32") for n in (3, 0, 2, 1, 2)]
    base[3] = base[2][:1].copy()
    for lst, elem, k in ((base, base[2], -2), (base, np.float32([9]), 1), ([], np.float32([1, 2]), 0)):
        got = g(lst, elem, k)
        want_insert = list(lst)
        want_insert.insert(k, elem)
        want_removed = list(lst)
        hit = [j for j, a in enumerate(lst) if a.shape == elem.shape and np.array_equal(a, elem)]
        if hit:
            del want_removed[hit[0]]
        assert got[1] == len(lst) and got[6] == len(hit)
        _same_lists(got[2], want_insert)
        _same_lists(got[3], lst[1:])
        _same_lists(got[4], lst[::-2])
        _same_lists(got[5], lst[::-1])
        _same_lists(got[7], want_removed)
        _same_lists(got[8], lst + lst)
        np.testing.assert_array_equal(got[9], 2 * elem)
    item = tcomp.function([tl, i], tl[i])
    for k in (0, 2, -1, -5):
        np.testing.assert_array_equal(item(base, k), base[k])
    for lst, k in ((base, 5), (base, -6), ([], 0)):
        with pytest.raises(IndexError):
            item(lst, k)


def test_typed_list_of_matrices_index_nan_grad_and_scalars():
    import tcomp.typed_list as TL

    m, x = TL.TypedListType(T.dmatrix)("m"), T.dmatrix("x")
    nan = np.array([[np.nan, 1.0]])
    lst = [np.ones((2, 3)), nan.copy(), np.zeros((0, 2)), nan.copy()]
    f = tcomp.function([m, x], [m.ind(x), m.count(x)])
    assert [int(a) for a in f(lst, nan)] == [1, 2]  # NaN equals NaN, as Theano's values_eq
    assert tcomp.function([m, x], m.count(x))(lst, np.ones((3, 2))) == 0  # a transposed shape is not equal
    with pytest.raises(ValueError, match="not in the list"):
        f(lst, np.ones((3, 2)))
    cost = T.sum(TL.append(m, x)[-1] ** 2) + T.sum(m[0])
    gx = tcomp.function([m, x], T.grad(cost, x))
    xv = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(gx(lst, xv), 2 * xv)
    a, b = T.dscalar("a"), T.dscalar("b")
    sl = TL.make_list([a, b, a])
    h = tcomp.function([a, b], [sl, sl.count(a), sl[1]])
    got = h(1.5, 2.0)
    _same_lists(got[0], [1.5, 2.0, 1.5])
    assert got[1] == 2 and got[2] == 2.0
    with pytest.raises(TypeError, match="not an element"):
        TL.append(m, T.fmatrix("wrong"))
    with pytest.raises(ValueError, match="element 0"):
        tcomp.function([m], TL.length(m))([np.ones(3)])


def test_typed_list_read_in_a_scan_body():
    """Theano's typed_list scan example, the list reached from the body's closure (scan's
    non_sequences take tensors only)."""
    import tcomp.typed_list as TL

    a = TL.TypedListType(T.fvector)()
    n = TL.length(a)
    s, _ = tcomp.scan(fn=lambda i: a[i].sum(), sequences=[T.arange(n, dtype="int64")])
    f = tcomp.function([a], s)
    np.testing.assert_array_equal(f([[1, 2, 3], [4, 5]]), np.float32([6, 9]))
