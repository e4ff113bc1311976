"""Differential test: random expression DAGs compiled by the CPU backend vs the reference
interpreter.

Graphs mix random ops and dtypes, broadcasting (static 1 dims), named and anonymous
symbolic dims, views (transpose, slices) and strided inputs.  Tolerances come from
``conftest.TOLERANCES`` (one table); the absolute part is scaled by the largest finite
magnitude in the graph so cancellation (``exp(a) - exp(a)*b``) does not count as error.
Ops whose result jumps (floor, comparisons, float->int casts, argmax, ...) only take float
operands that both sides compute bit-exactly (inputs and correctly rounded ops), so a
1-ulp difference in a transcendental cannot flip them.

CI runs ``TCOMP_HYPOTHESIS_EXAMPLES`` graphs (default 300) with ``derandomize=True``.
"""
import os

import numpy as np
from conftest import TOLERANCES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcomp.backend.cpu import compile_graph
from tcomp.ir import Graph, TensorType, evaluate
from tcomp.ir import dtypes as dt
from tcomp.ir.ops.elementwise import ELEMWISE_BINARY, ELEMWISE_UNARY

EXAMPLES = int(os.environ.get("TCOMP_HYPOTHESIS_EXAMPLES", "300"))
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "float32", "float64")
#: float ops that round exactly like NumPy (IEEE basic ops, exact libm-free fmod)
EXACT_FLOAT = {"neg", "abs", "add", "sub", "mul", "truediv", "sqrt", "maximum", "minimum", "where", "cast",
               "relu", "floor", "ceil", "round", "sign", "floordiv", "mod", "dimshuffle", "subtensor",
               "concatenate"}
#: ops whose output jumps with tiny input changes: their float operands must be exact
DISCRETE = {"floor", "ceil", "round", "sign", "eq", "neq", "lt", "le", "gt", "ge", "floordiv", "mod", "cast",
            "argmax", "argmin", "logical_and", "logical_or", "logical_xor", "logical_not", "where", "argsort",
            "isnan", "isinf"}
REDUCTIONS = ("sum", "prod", "max", "min", "mean", "argmax", "argmin")


class Builder:
    def __init__(self, data):
        self.data = data
        self.g = Graph()
        self.exact = {}

    def draw(self, strategy):
        return self.data.draw(strategy)

    def add(self, op, operands, attrs=None):
        """Add a node if the op's type rule accepts it; None otherwise."""
        if op in DISCRETE and any(dt.is_float(self.g.type(o).dtype) and not self.exact[o] for o in operands):
            return None
        if op in ("set_subtensor", "inc_subtensor") and dt.is_int(self.g.type(operands[0]).dtype) \
                and dt.is_float(self.g.type(operands[1]).dtype) and not self.exact[operands[1]]:
            return None  # float -> int assignment truncates: a jump
        if op == "truediv" and not self.exact[operands[1]]:
            return None  # dividing by a value from cancellation amplifies 1-ulp differences without bound
        try:
            n = self.g.add_node(op, operands, attrs or {})
        except (TypeError, ValueError):
            return None
        t = self.g.type(n)
        self.exact[n] = all(self.exact[o] for o in operands) and (op in EXACT_FLOAT or not dt.is_float(t.dtype))
        return n


def _input_shape(b: Builder, base, k):
    """The type shape and run-time shape of input ``k`` over the base shape."""
    nd = b.draw(st.integers(0, len(base)))
    dims, sizes = [], []
    for axis in range(len(base) - nd, len(base)):
        size = base[axis]
        kind = b.draw(st.sampled_from(["static", "named", "anon", "one"]))
        if kind == "one":
            dims.append(1)
            sizes.append(1)
        elif kind == "static" or size == 1:
            dims.append(size)
            sizes.append(size)
        else:
            dims.append(f"d{axis}" if kind == "named" else None)
            sizes.append(size)
    return tuple(dims), tuple(sizes)


def _value(rng, dtype, shape, layout):
    big = tuple(2 * s + 1 for s in shape)
    if dtype == "bool":
        v = rng.random(big) < 0.5
    elif dt.is_float(dtype):
        v = rng.uniform(-3, 3, big).astype(dtype)
    else:
        lo = 0 if dtype == "uint8" else -5
        v = rng.integers(lo, 6, big).astype(dtype)
    full = tuple(slice(0, s) for s in shape)
    if layout == "contiguous" or not shape:
        return np.array(v[full])  # (np.ascontiguousarray would make a rank-0 value rank 1)
    if layout == "step":
        return v[tuple(slice(0, 2 * s, 2) for s in shape)]
    if layout == "reversed":
        return v[tuple(slice(s - 1, None, -1) if s else slice(0, 0) for s in shape)]
    return np.asfortranarray(v[full])


def _step(b: Builder, nodes):
    g = b.g
    kind = b.draw(st.sampled_from(["unary", "binary", "binary", "where", "cast", "reduce", "nnet", "view",
                                   "concat", "matmul", "reshape", "alloc", "gather", "update", "arange", "stack"]))
    pick = st.sampled_from(nodes)
    x = b.draw(pick)
    t = g.type(x)
    if kind == "unary":
        return b.add(b.draw(st.sampled_from(ELEMWISE_UNARY)), [x])
    if kind == "binary":
        return b.add(b.draw(st.sampled_from(ELEMWISE_BINARY)), [x, b.draw(pick)])
    if kind == "where":
        return b.add("where", [x, b.draw(pick), b.draw(pick)])
    if kind == "cast":
        return b.add("cast", [x], {"dtype": b.draw(st.sampled_from(DTYPES))})
    if kind == "reduce":
        axes = tuple(a for a in range(t.ndim) if b.draw(st.booleans()))
        return b.add(b.draw(st.sampled_from(REDUCTIONS)), [x], {"axis": axes, "keepdims": b.draw(st.booleans())})
    if kind == "nnet":
        if t.ndim == 0:
            return None
        op = b.draw(st.sampled_from(["softmax", "log_softmax", "logsumexp", "cumsum", "cumprod", "argsort"]))
        return b.add(op, [x], {"axis": b.draw(st.integers(0, t.ndim - 1))})
    if kind == "view":
        if t.ndim == 0:
            return None
        if b.draw(st.booleans()):
            perm = list(b.draw(st.permutations(range(t.ndim))))
            if b.draw(st.booleans()):
                perm.insert(b.draw(st.integers(0, len(perm))), "x")
            return b.add("dimshuffle", [x], {"pattern": tuple(perm)})
        start = b.draw(st.sampled_from([None, 0, 1, -1]))
        step = b.draw(st.sampled_from([None, 1, 2, -1]))
        return b.add("subtensor", [x], {"index": (("s", start, None, step),)})
    if kind == "concat":
        if t.ndim == 0:
            return None
        return b.add("concatenate", [x, b.draw(pick)], {"axis": b.draw(st.integers(0, t.ndim - 1))})
    if kind == "reshape":
        return b.add("reshape", [x], {"shape": b.draw(st.sampled_from([(-1,), (1, -1), (-1, 1)]))})
    if kind == "alloc":
        return b.add("alloc", [x], {"shape": (b.draw(st.integers(1, 3)),) + tuple(
            d if isinstance(d, int) else 1 for d in t.shape)})
    if kind in ("gather", "update"):
        if t.ndim == 0:
            return None
        size = t.shape[0] if isinstance(t.shape[0], int) else 1
        idx_dtype = b.draw(st.sampled_from(["int64", "int32", "uint8"]))
        low = 0 if idx_dtype == "uint8" else -size
        idx = g.add_constant(np.array(b.draw(st.lists(st.integers(low, max(size - 1, 0)), min_size=1, max_size=4)),
                                      dtype=idx_dtype))
        b.exact[idx] = True
        if kind == "gather":
            return b.add("subtensor", [x, idx], {"index": (("a", "$1"),)})
        op = b.draw(st.sampled_from(["set_subtensor", "inc_subtensor"]))
        return b.add(op, [x, b.draw(pick), idx], {"index": (("a", "$2"),)})
    if kind == "arange":
        if t.ndim == 0:
            return None
        n = b.add("shape", [x], {"axis": b.draw(st.integers(0, t.ndim - 1))})
        zero, one = g.add_constant(np.array(0)), g.add_constant(np.array(1))
        b.exact[zero] = b.exact[one] = True
        return b.add("arange", [zero, n, one], {"dtype": b.draw(st.sampled_from(["int32", "int64", "float32"]))})
    if kind == "stack":
        return b.add("stack", [x, b.draw(pick)], {"axis": b.draw(st.integers(0, t.ndim))})
    y = b.draw(pick)
    if dt.is_float(t.dtype) or dt.is_float(g.type(y).dtype):
        if not (b.exact[x] and b.exact[y]):
            return None
    return b.add("matmul", [x, y])


def _compare(got, want, scale, what, loosest):
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} vs {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    # a float64 result computed from a float32 intermediate is only float32-accurate
    rtol, atol = TOLERANCES[loosest if dt.is_float(want.dtype.name) and loosest else want.dtype.name]
    if dt.is_float(want.dtype.name):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol + rtol * scale, equal_nan=True, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(st.data())
def test_random_graphs_match_reference(data):
    b = Builder(data)
    g = b.g
    base = tuple(data.draw(st.lists(st.integers(1, 4), min_size=0, max_size=3)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    inputs, values = [], []
    for k in range(data.draw(st.integers(1, 3))):
        dims, sizes = _input_shape(b, base, k)
        dtype = data.draw(st.sampled_from(DTYPES))
        n = g.add_input(TensorType(dtype, dims), name=f"in{k}")
        b.exact[n] = True
        inputs.append(n)
        values.append(_value(rng, dtype, sizes, data.draw(st.sampled_from(["contiguous", "step", "reversed",
                                                                           "fortran"]))))
    nodes = list(inputs)
    want_ops = data.draw(st.integers(1, 8))
    for _ in range(3 * want_ops):  # a step the type rules reject is retried with new choices
        n = _step(b, nodes)
        if n is not None:
            nodes.append(n)
        if len(nodes) - len(inputs) >= want_ops:
            break
    extra = [n for n in nodes[len(inputs):-1] if data.draw(st.booleans())]
    g.outputs = [nodes[-1]] + extra
    g.remove_dead()  # the reference evaluates dead nodes too (and may raise on them)
    try:
        every = evaluate(g, values, return_all=True)
    except (ValueError, IndexError) as e:
        f = compile_graph(g)
        try:
            f(values)
        except type(e) if not isinstance(e, ValueError) else ValueError:
            return
        raise AssertionError(f"the reference raised {e!r} but the compiled graph did not")
    want = [every[o] for o in g.outputs]
    finite = [np.abs(v[np.isfinite(v)]).max(initial=0.0) for v in every.values() if dt.is_float(v.dtype.name)]
    scale = float(max(finite, default=0.0))
    loosest = "float32" if any(g.type(n).dtype == "float32" for n in g.nodes()) else None
    got = compile_graph(g)(values)
    for k, (a, w) in enumerate(zip(got, want)):
        _compare(a, w, scale, f"output {k} of\n{g}", loosest)
