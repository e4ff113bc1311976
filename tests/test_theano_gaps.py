"""Gaps found walking Theano's tutorials (gradients, shape_info, printing_drawing, library
printing pages): the optimized gradient of x**2, shape lifting, inputs used only through a
static shape, and the printing names (pprint, Print, pydotprint keywords, f.maker.fgraph).
Values are checked against NumPy; printed text against the format Theano documents."""
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp import printing

BACKENDS = ["reference", "cpu"]


def _ops(f):
    return [a.op for a in f.maker.fgraph.toposort()]


# -- (a) where with a constant condition, x ** 1, x ** 2 ---------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_of_square_is_two_x(backend):
    """Theano's gradients tutorial: ``pp(f.maker.fgraph.outputs[0])`` is ``(2.0 * x)``."""
    x = T.dscalar("x")
    f = tcomp.function([x], T.grad(x ** 2, x), backend=backend)
    assert printing.pp(f.maker.fgraph.outputs[0]) in ("x * 2.0", "2.0 * x")
    assert _ops(f) == ["mul"]
    assert f(4) == 8.0 and np.allclose(f(94.2), 188.4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_where_with_constant_condition_folds(backend):
    x = T.tensor("x", dtype="float32", shape=(None, 3))
    cond_true = T.constant(np.ones((1, 3), bool))       # broadcast along rows
    cond_false = T.constant(np.zeros((), bool))
    outs = [T.switch(cond_true, x, 0.5), T.switch(cond_false, 0.5, x * 3), T.switch(cond_true, 1.0, x)]
    f = tcomp.function([x], outs, backend=backend)
    assert "where" not in _ops(f)
    a = np.arange(6, dtype="float32").reshape(2, 3) - 2
    got = f(a)
    want = [np.where(np.ones((1, 3), bool), a, np.float32(0.5)), np.where(False, np.float32(0.5), a * 3),
            np.where(np.ones((1, 3), bool), np.float32(1.0), a)]
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("backend", BACKENDS)
def test_where_folding_keeps_the_size_check_of_the_dropped_branch(backend):
    """where(true, a, b) with unrelated anonymous dims: the op checks a and b agree, so it stays."""
    a, b = T.vector("a"), T.vector("b")
    f = tcomp.function([a, b], T.switch(T.constant(True), a, b), backend=backend)
    assert "where" in _ops(f)
    with pytest.raises(ValueError):
        f(np.ones(3, "float32"), np.ones(4, "float32"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "uint8"])
def test_small_constant_powers(backend, dtype):
    x = T.tensor("x", dtype=dtype, shape=(None,))
    one, two = (1.0, 2.0) if dtype.startswith("float") else (1, 2)
    f = tcomp.function([x], [x ** one, x ** two], backend=backend)
    assert "pow" not in _ops(f)
    if dtype.startswith("float"):
        a = np.array([-0.0, 0.0, -1.5, np.inf, -np.inf, np.nan, 3e19, 1e-30], dtype)
    else:
        a = np.array([0, 1, 7, 200, 255, 100, 3, 16], dtype) if dtype == "uint8" else \
            np.array([0, -1, 7, -46341, 46341, 100000, 3, 16], dtype)
    got1, got2 = f(a)
    with np.errstate(all="ignore"):
        for got, want in ((got1, np.power(a, a.dtype.type(one))), (got2, np.power(a, a.dtype.type(two)))):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    x3 = T.tensor("x3", dtype=dtype, shape=(3,))  # a broadcast constant exponent: static extents
    g = tcomp.function([x3], x3 ** T.constant(np.full(3, two, dtype)), backend=backend)
    assert "pow" not in _ops(g)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(g(a[:3]), np.power(a[:3], np.full(3, two, dtype)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_sqrt_power_follows_numpy(backend):
    """NumPy's ``a ** 0.5`` is ``sqrt(a)`` (-0.0 for -0.0, nan for -inf), where C's pow gives
    +0.0 and inf; ``x ** 0.5`` becomes sqrt, so both backends give NumPy's answer.  An array
    exponent of 0.5s stays a pow (``np.power`` with an array is C's pow)."""
    x = T.dvector("x")
    f = tcomp.function([x], x ** 0.5, backend=backend)
    assert _ops(f) == ["sqrt"]
    a = np.array([-0.0, -np.inf, 4.0, 2.0, -1.0, np.inf, 1e-310])
    with np.errstate(invalid="ignore"):
        want = a ** 0.5
    got = f(a)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    v = T.tensor("v", dtype="float64", shape=(2,))
    g = tcomp.function([v], v ** T.constant(np.full(2, 0.5)), backend=backend)
    assert "pow" in _ops(g)


# -- (b) shape of an elementwise result -----------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_shape_of_elementwise_is_the_operands_shape(backend):
    """Theano's shape_info tutorial: ``(x ** 2).shape`` compiles to Shape_i of x, no pow."""
    x = T.matrix("x")
    f = tcomp.function([x], (x ** 2).shape, backend=backend)
    assert _ops(f) == ["shape", "shape", "stack"]  # one int64 vector, as Theano's MakeVector
    assert [int(v) for v in f(np.ones((5, 4), "float32"))] == [5, 4]
    v = T.vector("v")
    g = tcomp.function([x, v], (T.exp(x) * 2 + v).shape, backend=backend)
    ops = _ops(g)
    assert "exp" not in ops  # axis 0 comes from x alone; axis 1 pairs x with v and keeps their check
    assert [int(d) for d in g(np.ones((5, 4), "float32"), np.ones(4, "float32"))] == [5, 4]
    with pytest.raises(ValueError):
        g(np.ones((5, 4), "float32"), np.ones(3, "float32"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_shape_lifting_keeps_the_check_between_unrelated_dims(backend):
    x, y = T.matrix("x"), T.matrix("y")
    f = tcomp.function([x, y], (x + y).shape, backend=backend)
    assert "add" in _ops(f)
    with pytest.raises(ValueError):
        f(np.ones((2, 3), "float32"), np.ones((3, 2), "float32"))


# -- (c) an input used only through a static shape ------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_specify_shape_then_shape_uses_the_input(backend):
    """Theano's shape_info tutorial compiles this; the result is the constant (2, 2)."""
    x = T.matrix("x")
    f = tcomp.function([x], (T.specify_shape(x, (2, 2)) ** 2).shape, backend=backend)
    assert [int(v) for v in f(np.ones((2, 2), "float32"))] == [2, 2]
    assert _ops(f) == []
    with pytest.raises((TypeError, ValueError), match="'x'.*rank 2"):
        f(np.ones(2, "float32"))  # the input is still checked against its type
    with pytest.raises(ValueError, match="not used"):
        tcomp.function([x], T.constant(3.0), backend=backend)


# -- (d) printing names -----------------------------------------------------------------------

def _logistic_prediction():
    x = T.matrix("x")
    w = tcomp.shared(np.zeros(3, "float32"), name="w")
    b = tcomp.shared(np.float32(0), name="b")
    p_1 = 1 / (1 + T.exp(-T.dot(x, w) - b))
    return x, w, b, p_1 > 0.5


def test_pprint_is_the_pretty_printer():
    x, w, b, prediction = _logistic_prediction()
    text = printing.pprint(prediction)
    assert text == printing.pp(prediction)
    assert "exp" in text and "0.5" in text and "x @ w" in text


def test_pydotprint_accepts_theano_styling_keywords(tmp_path):
    x, w, b, prediction = _logistic_prediction()
    predict = tcomp.function([x], prediction)
    out = tmp_path / "logreg_pydotprint_predict.dot"
    path = printing.pydotprint(predict, outfile=str(out), var_with_name_simple=True)
    assert path == str(out) and out.read_text().startswith("digraph")
    printing.pydotprint(prediction, outfile=str(tmp_path / "pred.dot"), var_with_name_simple=True, compact=True)
    with pytest.raises(TypeError, match="no_such_option"):
        printing.pydotprint(predict, outfile=str(out), no_such_option=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_print_op_prints_on_each_call(backend, capsys):
    """The library printing page: ``hello world __str__ = [ 1.  2.  3.]`` (NumPy's str)."""
    x = T.dvector()
    hello_world_op = printing.Print("hello world")
    printed_x = hello_world_op(x)
    f = tcomp.function([x], printed_x, backend=backend)
    r = f([1, 2, 3])
    np.testing.assert_array_equal(r, [1.0, 2.0, 3.0])
    assert capsys.readouterr().out == f"hello world __str__ = {np.array([1.0, 2.0, 3.0])}\n"
    f([4, 5])
    assert capsys.readouterr().out == f"hello world __str__ = {np.array([4.0, 5.0])}\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_print_attrs_order_and_gradient(backend, capsys):
    x = T.dvector("x")
    a = printing.Print("a", attrs=("shape",))(x * 2)
    b = printing.Print("b", attrs=("sum", "__str__"))(a + 1)
    cost = T.sum(b ** 2)
    f = tcomp.function([x], [cost, T.grad(cost, x)], backend=backend)
    v = np.array([1.0, -2.0])
    c, g = f(v)
    want_b = v * 2 + 1
    assert np.isclose(c, np.sum(want_b ** 2)) and np.allclose(g, 4 * want_b)
    # a prints before b, which depends on it; a method attr is called
    assert capsys.readouterr().out == f"a shape = (2,)\nb sum = {want_b.sum()}\nb __str__ = {want_b}\n"
    seen = []
    h = tcomp.function([x], printing.Print("m", global_fn=lambda op, value: seen.append((op.message, value)))(x),
                       backend=backend)
    h(v)
    assert seen[0][0] == "m" and np.array_equal(seen[0][1], v) and capsys.readouterr().out == ""


@pytest.mark.parametrize("backend", BACKENDS)
def test_maker_fgraph(backend):
    x, w, b, prediction = _logistic_prediction()
    y = T.vector("y")
    xent = -y * T.log(1 / (1 + T.exp(-T.dot(x, w) - b)))
    train = tcomp.function([x, y], [prediction, xent.mean()], updates=[(b, b - 0.1)], backend=backend)
    fg = train.maker.fgraph
    assert fg.inputs[:2] == [x, y] and set(fg.inputs[2:]) == {w, b}
    assert len(fg.outputs) == 3  # two outputs and the update, as in Theano
    nodes = fg.toposort()
    assert nodes and all(hasattr(n, "op") and hasattr(n, "inputs") and hasattr(n, "outputs") for n in nodes)
    position = {id(n.outputs[0]): i for i, n in enumerate(nodes)}
    for i, n in enumerate(nodes):  # operands first
        assert all(position.get(id(v), -1) < i for v in n.inputs)
    assert "dot" in [n.op for n in nodes] or "matmul" in [n.op for n in nodes]
    text = printing.pp(fg.outputs[2])
    assert "b" in text and "0.1" in text
    assert train.maker.fgraph is fg and fg.variables >= set(fg.inputs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_modes_tutorial_tells_the_cpu_from_the_op_classes(backend):
    """Theano's modes tutorial prints 'Used the cpu' when an op of class Gemv/CGemv/Gemm/CGemm
    is in ``train.maker.fgraph.toposort()``; the ops still compare equal to tcomp's names."""
    rng = np.random.default_rng(0)
    x, y = T.matrix("x"), T.vector("y")
    w = tcomp.shared(rng.standard_normal(5).astype("float32"), name="w")
    b = tcomp.shared(np.float32(0), name="b")
    p_1 = 1 / (1 + T.exp(-T.dot(x, w) - b))
    xent = -y * T.log(p_1) - (1 - y) * T.log(1 - p_1)
    cost = xent.mean() + 0.01 * (w ** 2).sum()
    gw, gb = T.grad(cost, [w, b])
    train = tcomp.function([x, y], [p_1 > 0.5, xent], updates={w: w - 0.01 * gw, b: b - 0.01 * gb}, name="train",
                           backend=backend)
    nodes = train.maker.fgraph.toposort()
    assert any(n.op.__class__.__name__ in ["Gemv", "CGemv", "Gemm", "CGemm"] for n in nodes)
    assert "dot" in [n.op for n in nodes] and all(isinstance(n.op, str) for n in nodes)
    m = T.matrix("m")
    g = tcomp.function([x, m], T.nnet.softmax(T.dot(x, m)), backend=backend)
    assert [type(n.op).__name__ for n in g.maker.fgraph.toposort()] == ["CGemm", "Softmax"]


def test_host_computed_multi_output_kernel_gives_all_its_results():
    """Shape lifting lets fusion put ``lam = lo * 4`` into the max kernel that poisson's draw
    count needs on the host; the host then runs the whole kernel, and its elementwise result
    must be a host value too (it had no buffer: KeyError).  Same draws as the reference."""
    from tcomp import RandomStreams

    lo = T.dmatrix("lo")
    a = np.arange(6.0).reshape(2, 3) / 6
    got = [tcomp.function([lo], RandomStreams(0).poisson(size=lo.shape, lam=lo * 4), backend=b)(a)
           for b in BACKENDS]
    np.testing.assert_array_equal(got[0], got[1])
    assert got[1].shape == (2, 3)
