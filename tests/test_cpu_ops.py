"""Every op of the table x every dtype it accepts, compiled by the CPU backend and compared
with the reference interpreter (``tcomp.ir.evaluate``).

``CASES`` maps each non-source op to a builder ``(graph, dtype, rng) -> input arrays`` that
adds the op (several attribute variants where the lowering branches) to a fresh graph.
``test_every_op_has_a_case`` fails when an op is added to the table without a CPU test.
"""
import numpy as np
import pytest
from conftest import ALL_DTYPES, TOLERANCES

from tcomp.backend.cpu import compile_graph
from tcomp.ir import OPS, Constant, Graph, TensorType, evaluate
from tcomp.ir import dtypes as dt
from tcomp.ir.ops.elementwise import ELEMWISE_BINARY, ELEMWISE_UNARY


def values(rng, dtype, shape, special=False, integral=False):
    """Random values; ``special`` mixes in zeros, negatives and (floats) nan/inf/large values;
    ``integral`` floats hold small integers, so sums are exact in any order (matmul)."""
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dt.is_float(dtype) and integral:
        return rng.integers(-6, 7, shape).astype(dtype)
    if dt.is_float(dtype):
        v = rng.uniform(-4, 4, shape)
        if special and v.size >= 8:
            flat = v.reshape(-1)
            flat[:8] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -3e9, 0.5]
        return v.astype(dtype)
    lo = 0 if dtype == "uint8" else -6
    v = rng.integers(lo, 7, shape)
    if special and v.size >= 2:
        info = np.iinfo(dtype)
        v = v.astype(dtype)
        v.reshape(-1)[:2] = [info.min, info.max]
        return v
    return v.astype(dtype)


def compare(got, want, what=""):
    assert len(got) == len(want)
    for k, (a, w) in enumerate(zip(got, want)):
        assert a.dtype == w.dtype, f"{what} output {k}: dtype {a.dtype} vs {w.dtype}"
        assert a.shape == w.shape, f"{what} output {k}: shape {a.shape} vs {w.shape}"
        rtol, atol = TOLERANCES[w.dtype.name]
        if dt.is_float(w.dtype.name):
            np.testing.assert_allclose(a, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"{what} output {k}")
        else:
            np.testing.assert_array_equal(a, w, err_msg=f"{what} output {k}")


def run_both(g, inputs, what=""):
    want = evaluate(g, inputs)
    got = compile_graph(g)(inputs)
    compare(got, want, what)


# -- builders: each adds outputs to g and returns the input values --------------------------


def _unary(op):
    def build(g, d, rng):
        x = g.add_input(TensorType(d, ("n", 5)), name="x")
        s = g.add_input(TensorType(d, ()), name="s")
        g.outputs = [g.add_node(op, [x]), g.add_node(op, [s])]
        v = values(rng, d, (3, 5), special=True)
        if op in ("sin", "cos") and d != "bool":
            # mathlib's trig range reduction covers |x| < ~1e4; huge arguments are its own test's topic
            v[np.abs(v.astype("float64")) > 1e4] = 1
        return [v, values(rng, d, ())]
    return build


def _binary(op):
    def build(g, d, rng):
        a = g.add_input(TensorType(d, ("n", 5)), name="a")
        b = g.add_input(TensorType(d, (5,)), name="b")
        c = g.add_input(TensorType(d, (1, 5)), name="c")
        k = g.add_constant(np.array(3, dtype=d) if d != "bool" else np.array(True))
        g.outputs = [g.add_node(op, [a, b]), g.add_node(op, [c, a]), g.add_node(op, [a, k])]
        av = values(rng, d, (4, 5), special=True)
        return [av, values(rng, d, (5,)), values(rng, d, (1, 5))]
    return build


def _where(g, d, rng):
    c = g.add_input(TensorType("bool", (3, 1)), name="c")
    a = g.add_input(TensorType(d, (3, 4)), name="a")
    b = g.add_input(TensorType(d, (4,)), name="b")
    f = g.add_input(TensorType("float32", ()), name="f")
    g.outputs = [g.add_node("where", [c, a, b]), g.add_node("where", [a, b, f])]
    return [values(rng, "bool", (3, 1)), values(rng, d, (3, 4)), values(rng, d, (4,)), np.array(0.5, "float32")]


def _cast(g, d, rng):
    x = g.add_input(TensorType(d, (4, 4)), name="x")
    g.outputs = [g.add_node("cast", [x], {"dtype": t}) for t in ALL_DTYPES]
    v = values(rng, d, (4, 4), special=True)
    if dt.is_float(d):
        v.reshape(-1)[8:12] = [300.7, -129.5, 2.0 ** 31, -(2.0 ** 63)]
    return [v]


def _reduction(op):
    def build(g, d, rng):
        x = g.add_input(TensorType(d, (3, None, 5)), name="x")
        outs = []
        for axis in [(), (0,), (1,), (2,), (0, 2), (1, 2), (0, 1, 2)]:
            for keep in (False, True):
                outs.append(g.add_node(op, [x], {"axis": axis, "keepdims": keep}))
        g.outputs = outs
        return [values(rng, d, (3, 4, 5))]
    return build


def _nnet(op):
    def build(g, d, rng):
        x = g.add_input(TensorType(d, (3, None)), name="x")
        extra = {"keepdims": True} if op == "logsumexp" else {}
        y = g.add_input(TensorType(d, (2, None, 70)), name="y")  # middle axis: chunked column path
        g.outputs = [g.add_node(op, [x], {"axis": 1}), g.add_node(op, [x], {"axis": 0, **extra}),
                     g.add_node(op, [y], {"axis": 1}), g.add_node(op, [y], {"axis": 0})]
        return [values(rng, d, (3, 6), special=True), values(rng, d, (2, 5, 70))]
    return build


def _dot(g, d, rng):
    a = g.add_input(TensorType(d, (3, None)), name="a")
    b = g.add_input(TensorType(d, (None, 5)), name="b")
    v = g.add_input(TensorType(d, (None,)), name="v")
    g.outputs = [g.add_node("dot", [a, b]), g.add_node("dot", [a, v]), g.add_node("dot", [v, b]),
                 g.add_node("dot", [v, v])]
    return [values(rng, d, (3, 4)), values(rng, d, (4, 5)), values(rng, d, (4,))]


def _matmul(g, d, rng):
    a = g.add_input(TensorType(d, (2, 1, 3, 300)), name="a")
    b = g.add_input(TensorType(d, (4, 300, 270)), name="b")
    v = g.add_input(TensorType(d, (300,)), name="v")
    p = g.add_input(TensorType(d, (None, 50)), name="p")  # register-blocked path + row/column remainders
    q = g.add_input(TensorType(d, (50, None)), name="q")
    qt = g.add_node("dimshuffle", [g.add_input(TensorType(d, (None, 50)), name="r")], {"pattern": (1, 0)})
    lp = g.add_input(TensorType(d, (13, 300)), name="lp")  # a transposed B packed over two k blocks
    lt = g.add_node("dimshuffle", [g.add_input(TensorType(d, (37, 300)), name="lq")], {"pattern": (1, 0)})
    g.outputs = [g.add_node("matmul", [a, b]), g.add_node("matmul", [v, b]), g.add_node("matmul", [a, v]),
                 g.add_node("matmul", [p, q]), g.add_node("matmul", [p, qt]), g.add_node("matmul", [lp, lt])]
    return [values(rng, d, (2, 1, 3, 300), integral=True), values(rng, d, (4, 300, 270), integral=True),
            values(rng, d, (300,), integral=True), values(rng, d, (13, 50), integral=True),
            values(rng, d, (50, 37), integral=True), values(rng, d, (37, 50), integral=True),
            values(rng, d, (13, 300), integral=True), values(rng, d, (37, 300), integral=True)]


def _dimshuffle(g, d, rng):
    x = g.add_input(TensorType(d, (3, 1, 4)), name="x")
    t = g.add_node("dimshuffle", [x], {"pattern": (2, "x", 0)})
    g.outputs = [t, g.add_node("dimshuffle", [x], {"pattern": (0, 2, "x")}), g.add_node("neg" if d != "bool" else
                                                                                        "logical_not", [t])]
    return [values(rng, d, (3, 1, 4))]


def _reshape(g, d, rng):
    x = g.add_input(TensorType(d, (None, 4)), name="x")
    n = g.add_node("shape", [x], {"axis": 0})
    t = g.add_node("dimshuffle", [x], {"pattern": (1, 0)})
    g.outputs = [g.add_node("reshape", [x], {"shape": (2, -1)}), g.add_node("reshape", [x, n], {"shape": (4, None)}),
                 g.add_node("reshape", [t], {"shape": (-1,)})]
    return [values(rng, d, (6, 4))]


def _alloc(g, d, rng):
    x = g.add_input(TensorType(d, (4,)), name="x")
    s = g.add_input(TensorType("int64", ()), name="s")
    g.outputs = [g.add_node("alloc", [x], {"shape": (3, 4)}), g.add_node("alloc", [x, s], {"shape": (None, 2, 4)})]
    return [values(rng, d, (4,)), np.array(3)]


def _concatenate(g, d, rng):
    a = g.add_input(TensorType(d, (2, None)), name="a")
    b = g.add_input(TensorType(d, (3, None)), name="b")
    c = g.add_input(TensorType("bool", (1, None)), name="c")
    g.outputs = [g.add_node("concatenate", [a, b, c], {"axis": 0}),
                 g.add_node("concatenate", [b, g.add_node("dimshuffle", [b], {"pattern": (0, 1)})], {"axis": 1})]
    return [values(rng, d, (2, 4)), values(rng, d, (3, 4)), values(rng, "bool", (1, 4))]


def _stack(g, d, rng):
    a = g.add_input(TensorType(d, (2, 3)), name="a")
    b = g.add_input(TensorType(d, (2, 3)), name="b")
    g.outputs = [g.add_node("stack", [a, b], {"axis": k}) for k in range(3)]
    return [values(rng, d, (2, 3)), values(rng, d, (2, 3))]


def _shape(g, d, rng):
    x = g.add_input(TensorType(d, (None, 3)), name="x")
    g.outputs = [g.add_node("shape", [x], {"axis": 0}), g.add_node("shape", [x], {"axis": 1})]
    return [values(rng, d, (5, 3))]


def _arange(g, d, rng):
    if d == "bool":
        lo, hi, st = g.add_constant(0), g.add_constant(2), g.add_constant(1)
        g.outputs = [g.add_node("arange", [lo, hi, st], {"dtype": d})]
        return []
    lo = g.add_input(TensorType("int64", ()), name="lo")
    hi = g.add_input(TensorType("int64", ()), name="hi")
    st = g.add_input(TensorType("int64", ()), name="st")
    outs = [g.add_node("arange", [lo, hi, st], {"dtype": d})]
    if dt.is_float(d):
        f = [g.add_constant(np.array(v, "float64")) for v in (0.1, 2.05, 0.3)]
        outs.append(g.add_node("arange", f, {"dtype": d}))
    g.outputs = outs
    return [np.array(10), np.array(-2), np.array(-3)]


def _subtensor(g, d, rng):
    x = g.add_input(TensorType(d, (5, None, 4)), name="x")
    i = g.add_input(TensorType("int64", (None,)), name="i")
    j = g.add_input(TensorType("int32", (2, 1)), name="j")
    k = g.add_input(TensorType("int64", ()), name="k")
    outs = [g.add_node("subtensor", [x], {"index": (("s", 4, None, -2), ("i", 1))}),
            g.add_node("subtensor", [x, k], {"index": (("s", 1, "$1", None),)}),
            g.add_node("subtensor", [x, i], {"index": (("a", "$1"),)}),
            g.add_node("subtensor", [x, i, j], {"index": (("s", None, None, 2), ("a", "$1"), ("a", "$2"))}),
            g.add_node("subtensor", [x, i, j], {"index": (("a", "$1"), ("s", None, None, None), ("a", "$2"))}),
            g.add_node("subtensor", [x, j], {"index": (("i", -1), ("a", "$1"))}),
            g.add_node("subtensor", [x, k], {"index": (("i", 2), ("i", "$1"), ("i", -1))})]  # a 0-d view
    g.outputs = outs
    return [values(rng, d, (5, 6, 4)), np.array([0, -1, 3]), np.array([[1], [-2]], "int32"), np.array(4)]


def _update(op):
    def build(g, d, rng):
        x = g.add_input(TensorType(d, (5, 4)), name="x")
        y = g.add_input(TensorType(d, (4,)), name="y")
        i = g.add_input(TensorType("int64", (None,)), name="i")
        g.outputs = [g.add_node(op, [x, y, i], {"index": (("a", "$2"),)}),
                     g.add_node(op, [x, y], {"index": (("s", 1, None, 2),)}),
                     g.add_node(op, [x, y], {"index": (("i", -1),)})]
        return [values(rng, d, (5, 4)), values(rng, d, (4,)), np.array([0, 2, 0, -1])]
    return build


def _fused(g, d, rng):
    a = g.add_input(TensorType(d, (3, None)), name="a")
    b = g.add_input(TensorType(d, (None,)), name="b")
    body = (("maximum", (), ("$0", "$1")), ("constant", (("value", Constant(2, d)),), ()),
            ("mul", (), ("%0", "%1")) if d != "bool" else ("logical_xor", (), ("%0", "%1")),
            ("cast", (("dtype", "float32"),), ("%2",)), ("exp", (), ("%3",)))
    g.outputs = [g.add_node("fused", [a, b], {"body": body}),
                 g.add_node("fused", [a, b], {"body": body, "reduce": "sum", "axis": (1,)}),
                 g.add_node("fused", [a, b], {"body": body, "reduce": "max", "axis": (0,), "keepdims": True})]
    return [values(rng, d, (3, 4)), values(rng, d, (4,))]


def _get_output(g, d, rng):
    """Multi-output fused kernels (the only producers of get_output), with layout steps."""
    a = g.add_input(TensorType(d, (3, None)), name="a")
    b = g.add_input(TensorType(d, (None,)), name="b")
    body = (("dimshuffle", (("pattern", ("x", 0)),), ("$1",)), ("maximum", (), ("$0", "%0")),
            ("constant", (("value", Constant(2, d)),), ()),
            ("mul", (), ("%1", "%2")) if d != "bool" else ("logical_xor", (), ("%1", "%2")),
            ("cast", (("dtype", "float32"),), ("%3",)), ("exp", (), ("%4",)))
    plain = g.add_node("fused", [a, b], {"body": body, "outputs": (1, 3)})
    reduced = g.add_node("fused", [a, b], {"body": body, "reduce": "sum", "axis": (1,), "outputs": (5, 1),
                                           "epilogue": (("dimshuffle", (("pattern", (0, "x")),)),)})
    g.outputs = [g.add_node("get_output", [k], {"index": i}) for k in (plain, reduced) for i in range(3)]
    return [values(rng, d, (3, 4)), values(rng, d, (4,))]


def _conv(op):
    def build(g, d, rng):
        if op == "conv2d":
            x = g.add_input(TensorType(d, (2, 3, 7, 6)), name="x")
            w = g.add_input(TensorType(d, (4, 3, 3, 2)), name="w")
            g.outputs = [g.add_node(op, [x, w], {"pad": (1, 0), "stride": (2, 1)})]
            return [values(rng, d, (2, 3, 7, 6), integral=True), values(rng, d, (4, 3, 3, 2), integral=True)]
        if op == "conv2d_grad_input":
            gy = g.add_input(TensorType(d, (2, 4, 5, 5)), name="gy")
            w = g.add_input(TensorType(d, (4, 3, 3, 2)), name="w")
            g.outputs = [g.add_node(op, [gy, w], {"input_shape": (7, 6)})]
            return [values(rng, d, (2, 4, 5, 5), integral=True), values(rng, d, (4, 3, 3, 2), integral=True)]
        x = g.add_input(TensorType(d, (2, 3, 7, 6)), name="x")
        gy = g.add_input(TensorType(d, (2, 4, 5, 5)), name="gy")
        g.outputs = [g.add_node(op, [x, gy], {"filter_shape": (3, 2)})]
        return [values(rng, d, (2, 3, 7, 6), integral=True), values(rng, d, (2, 4, 5, 5), integral=True)]
    return build


POOL_CONFIGS = [{"mode": "max"}, {"mode": "sum"}, {"mode": "average_inc_pad"}, {"mode": "average_exc_pad"},
                {"ws": (3, 2), "stride": (2, 1), "pad": (1, 1), "mode": "average_inc_pad"},
                {"ws": (3, 2), "stride": (2, 1), "pad": (1, 1), "mode": "average_exc_pad"},
                {"ws": (3, 3), "stride": (2, 2), "ignore_border": False, "mode": "max"},
                {"ws": (3, 3), "stride": (2, 2), "ignore_border": False, "mode": "average_exc_pad"},
                {"ws": (2, 3), "stride": (1, 2), "pad": (1, 0), "mode": "max"}]


def _pool(op):
    def build(g, d, rng):
        x = g.add_input(TensorType(d, (2, 7, 6)), name="x")
        xv = values(rng, d, (2, 7, 6), integral=dt.is_float(d))  # integral: many ties for max
        if dt.is_float(d):
            xv[1, 3, 3] = np.nan
        if op == "pool2d":
            g.outputs = [g.add_node(op, [x], cfg) for cfg in POOL_CONFIGS]
            return [xv]
        ins, outs = [xv], []
        for k, cfg in enumerate(POOL_CONFIGS):
            pooled = g.type(g.add_node("pool2d", [x], cfg))
            shape = pooled.shape if op == "pool2d_grad" else (2, 7, 6)
            gi = g.add_input(TensorType(d, shape), name=f"g{k}")
            outs.append(g.add_node(op, [x, gi], cfg))
            ins.append(values(rng, d, shape))
        g.outputs = outs
        return ins
    return build


RANDOM_ATTRS = {"random_uniform": {"low": -2.0, "high": 3.0}, "random_normal": {"mean": 1.0, "std": 2.0},
                "random_binomial": {"n": 7, "p": 0.3}}


def _random(op):
    def build(g, d, rng):
        seed = g.add_input(TensorType("int64", ()), name="seed")
        key = g.add_input(TensorType("int32", (2,)), name="key")
        ctr = g.add_input(TensorType("int16", ()), name="ctr")
        rows = g.add_input(TensorType("int64", ()), name="rows")
        extra = RANDOM_ATTRS[op] if (op != "random_binomial" or d != "bool") else {"n": 1, "p": 0.6}
        g.outputs = [g.add_node(op, [seed, ctr], {"shape": (3, 4), "dtype": d}),
                     g.add_node(op, [key, ctr, rows], {"shape": (None, 257), "dtype": d, **extra})]
        return [np.array(-(2 ** 40) - 17), np.array([7, -3], "int32"), np.array(-5, "int16"), np.array(9)]
    return build


def _scan_sort(op):
    """cumsum/cumprod/argsort over every axis, of a contiguous input and of a transposed view
    (strided loads); small integer values, so argsort meets ties (and nan/inf/-0.0 for floats)."""
    def build(g, d, rng):
        x = g.add_input(TensorType(d, (3, None, 5)), name="x")
        xt = g.add_node("dimshuffle", [x], {"pattern": (2, 0, 1)})
        e = g.add_input(TensorType(d, (None, 4)), name="e")
        g.outputs = [g.add_node(op, [x], {"axis": a}) for a in range(3)] + \
            [g.add_node(op, [xt], {"axis": a}) for a in (0, 2)] + [g.add_node(op, [e], {"axis": 0})]
        v = values(rng, d, (3, 4, 5), special=True, integral=True)
        if dt.is_float(d):
            v.reshape(-1)[:5] = [np.nan, np.inf, -np.inf, 0.0, -0.0]
        return [v, values(rng, d, (0, 4))]
    return build


CASES = {op: _unary(op) for op in ELEMWISE_UNARY}
CASES.update({op: _binary(op) for op in ELEMWISE_BINARY})
CASES.update({op: _reduction(op) for op in ("sum", "prod", "max", "min", "mean", "argmax", "argmin")})
CASES.update({op: _nnet(op) for op in ("softmax", "log_softmax", "logsumexp")})
CASES.update({op: _conv(op) for op in ("conv2d", "conv2d_grad_input", "conv2d_grad_filters")})
CASES.update({op: _pool(op) for op in ("pool2d", "pool2d_grad", "pool2d_grad_grad")})
CASES.update({op: _random(op) for op in ("random_uniform", "random_normal", "random_binomial")})
CASES.update({op: _scan_sort(op) for op in ("cumsum", "cumprod", "argsort")})
CASES.update({"where": _where, "cast": _cast, "dot": _dot, "matmul": _matmul, "dimshuffle": _dimshuffle,
              "reshape": _reshape, "alloc": _alloc, "concatenate": _concatenate, "stack": _stack,
              "shape": _shape, "arange": _arange, "subtensor": _subtensor, "set_subtensor": _update("set_subtensor"),
              "inc_subtensor": _update("inc_subtensor"), "fused": _fused, "get_output": _get_output})
from test_ops_linalg import CPU_CASES as _LINALG_CASES  # noqa: E402 - cholesky, solve, det, ...

CASES.update(_LINALG_CASES)
from test_ops_nonzero import CPU_CASES as _NONZERO_CASES  # noqa: E402

CASES.update(_NONZERO_CASES)
from test_ops_spectral import CPU_CASES as _SPECTRAL_CASES  # noqa: E402

CASES.update(_SPECTRAL_CASES)


@pytest.mark.parametrize("op,dtype", [("random_uniform", "float32"), ("random_uniform", "float64"),
                                      ("random_binomial", "int32"), ("random_binomial", "bool")])
def test_random_streams_are_bit_exact(op, dtype):
    """The integer stream and the uniform recipe are exact, so the bits must match."""
    g = Graph()
    inputs = _random(op)(g, dtype, None)
    for got, want in zip(compile_graph(g)(inputs), evaluate(g, inputs)):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()


#: ops the CPU backend does not lower, and why; compiling one raises a clear TypeError at compile time
NOT_LOWERED: dict = {}
#: ops whose nested graphs make a per-dtype random case meaningless; where their cpu tests are
TESTED_ELSEWHERE = {
    "scan": "tests/test_scan_cpu.py, and tests/test_scan.py / test_scan_hypothesis.py on both backends",
    "ifelse": "tests/test_scan_cpu.py, and tests/test_ifelse.py on both backends",
    "py_call": "tests/test_python_ops.py (a user's Python op between native stages)",
}


def test_every_op_has_a_case():
    from tcomp.compile import CPU_NOT_LOWERED

    assert set(NOT_LOWERED) == set(CPU_NOT_LOWERED)
    missing = sorted(op for op, d in OPS.items() if not d.source and op not in CASES and op not in NOT_LOWERED
                     and op not in TESTED_ELSEWHERE)
    assert not missing, f"ops without a CPU backend test case: {missing}"


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("op", sorted(CASES))
def test_op_matches_reference(op, dtype):
    # a seed fixed by the op and dtype names (hash() of a str differs per process)
    rng = np.random.default_rng(list((op + "/" + dtype).encode()))
    g = Graph()
    try:
        inputs = CASES[op](g, dtype, rng)
    except TypeError as e:  # the op's type rule rejects this dtype
        pytest.skip(f"{op} does not accept {dtype}: {e}")
    run_both(g, inputs, f"{op}[{dtype}]")
