"""Random expression DAGs over ``tcomp.tensor`` (the public API, not the IR) with a NumPy
oracle, for the differential fuzzer (``tests/fuzz_run.py``, ``tests/test_fuzz_differential.py``).

A graph is a list of :class:`Step`: ``op`` is a family below, ``args`` earlier step ids,
``p`` every choice the generator made.  Each step's *source line* (``src``) is evaluated to
build the tcomp variable, so what a reproduction prints is exactly what ran; its oracle
(``ORACLE``) computes the NumPy value from the operands' values.  One seed fixes the graph
and its input values (``generate(seed)``), independent of batching.

Inputs come in every dtype, with static, named and anonymous symbolic dims, static-1
(broadcastable) dims from ``T.row``/``T.col``/``broadcastable=``, 0- and 1-sized dims, and
are passed transposed, strided, reversed (negative strides) or at an odd offset.  A quarter
of the graphs are *grad graphs* (float64, differentiable ops only) whose scalar cost is
differentiated with ``T.grad`` and checked against central finite differences.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from fuzz_ops import (
    BINARY_SPELLINGS,
    COMPARE,
    F64,
    FLOATS,
    UNARY_SPELLINGS,
    OracleError,
    as_dtype,
    bcast_vals,
    binary_noise,
    binary_oracle,
    cast_alternative,
    cast_oracle,
    cast_undefined,
    check_runtime_bcast,
    eps,
    f64,
    promote,
    reduce_noise,
    reduce_oracle,
    softmax_noise,
    softmax_oracle,
    unary_noise,
    unary_oracle,
    weak_result,
)

import tcomp.tensor as T

DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "float32", "float64")
DTYPE_WEIGHTS = (1, 2, 0.5, 2, 2, 2, 4, 3)
LAYOUTS = ("c", "c", "f", "step", "rev", "offset", "transposed")


@dataclass
class Step:
    op: str
    args: list
    p: dict


@dataclass
class Graph:
    seed: int
    steps: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    grad: dict | None = None        # {"cost": step id, "wrt": [input step ids]}
    mode: str = "value"
    features: dict = field(default_factory=dict)

    def inputs(self):
        return [i for i, s in enumerate(self.steps) if s.op == "input"]


# -- values and layouts ---------------------------------------------------------------------

def random_value(rng, dtype, shape, profile):
    if dtype == "bool":
        return np.array(rng.random(shape) < 0.5)
    if dtype in FLOATS:
        if profile == "grad":
            return np.array(rng.uniform(-2, 2, shape), dtype)
        v = np.array(rng.uniform(-3, 3, shape) if rng.random() < 0.5 else rng.standard_normal(shape) * 2, dtype)
        if profile == "special" and v.size:
            specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30, 1e-40, 88.8, -104.0], dtype)
            mask = rng.random(shape) < 0.25
            v[mask] = rng.choice(specials, size=int(mask.sum()))
        elif profile == "int_valued":
            v = np.array(np.round(v))
        return v
    info = np.iinfo(dtype)
    if profile == "wide":
        v = np.array(rng.integers(info.min, int(info.max) + 1, shape, dtype=dtype))
        if v.size:
            mask = rng.random(shape) < 0.3
            v[mask] = rng.choice(np.array([info.min, info.max, 0, 1, -1 if info.min < 0 else 2], dtype),
                                 size=int(mask.sum()))
        return v
    lo = 0 if dtype == "uint8" else -5
    return np.array(rng.integers(lo, 6, shape), dtype)


def layout_arg(value, layout):
    """The same values as ``value`` with another memory layout (the call's argument)."""
    v = np.asarray(value)
    if v.ndim == 0 or layout == "c":
        return np.array(v)
    if layout == "f":
        return np.asfortranarray(v)
    if layout == "step":
        big = np.zeros(tuple(2 * s for s in v.shape), v.dtype)
        big[tuple(slice(0, None, 2) for _ in v.shape)] = v
        return big[tuple(slice(0, None, 2) for _ in v.shape)]
    if layout == "rev":
        flipped = np.array(v[tuple(slice(None, None, -1) for _ in v.shape)])
        return flipped[tuple(slice(None, None, -1) for _ in v.shape)]
    if layout == "offset":
        flat = np.zeros(v.size + 1, v.dtype)
        flat[1:] = v.ravel()
        return flat[1:].reshape(v.shape)
    if layout == "transposed":
        return np.array(v.T).T
    raise ValueError(layout)


def lit(v):
    """A Python literal that round-trips the value (floats by repr)."""
    if isinstance(v, (list, tuple)):
        inner = ", ".join(lit(x) for x in v)
        return f"({inner},)" if isinstance(v, tuple) and len(v) == 1 else \
            (f"({inner})" if isinstance(v, tuple) else f"[{inner}]")
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
    return repr(v)


def array_src(a):
    a = np.asarray(a)
    if a.size == 0:
        return f"np.zeros({a.shape!r}, dtype='{a.dtype.name}')"
    return f"np.array({lit(a.tolist())}, dtype='{a.dtype.name}')"


# -- source lines (what builds the tcomp variable) -------------------------------------------

def _dim_src(entry, names):
    if isinstance(entry, tuple):  # ("s", argpos, axis): names[argpos].shape[axis]
        return f"{names[entry[1]]}.shape[{entry[2]}]"
    return str(entry)


def _tuple_src(items):
    return "()" if not items else f"({', '.join(items)},)"


def _key_src(key, names):
    parts = []
    for e in key:
        if e[0] == "none":
            parts.append("None")
        elif e[0] == "ell":
            parts.append("...")
        elif e[0] == "i":
            parts.append(_ref_src(e[1], names))
        elif e[0] == "s":
            b = ["" if v is None else _ref_src(v, names) for v in e[1:]]
            parts.append(f"{b[0]}:{b[1]}" + (f":{b[2]}" if e[3] is not None else ""))
        else:
            parts.append(_ref_src(e[1], names))
    return ", ".join(parts) + ("," if len(parts) == 1 else "")


def _ref_src(v, names):
    if isinstance(v, tuple) and v[0] == "$":
        return names[v[1]]
    if isinstance(v, np.ndarray):
        return array_src(v)
    if isinstance(v, list):
        return lit(v)
    return str(v)


def src(step, names):
    op, p = step.op, step.p
    a = [names[i] for i in step.args]
    if op == "input":
        return p["ctor"]
    if op == "const":
        return f"T.constant({array_src(p['value'])})"
    if op == "unary":
        return (UNARY_SPELLINGS.get(p["op"], [f"T.{p['op']}({{0}})"])[p.get("sp", 0)]).format(*a)
    if op == "binary":
        return BINARY_SPELLINGS[p["op"]][p.get("sp", 0)].format(*a)
    if op == "binary_scalar":
        s = lit(p["scalar"])
        sp = BINARY_SPELLINGS[p["op"]][p.get("sp", 0)]
        if sp.startswith("{0} ") and p["side"] == "l":
            s = f"({s})"
        return sp.format(*((a[0], s) if p["side"] == "r" else (s, a[0])))
    if op == "sqr":
        return f"T.sqr({a[0]})"
    if op == "switch":
        it = iter(a)
        parts = [next(it)] + [lit(p[k]) if p.get(k) is not None else next(it) for k in ("a_scalar", "b_scalar")]
        return f"T.{p.get('fn', 'switch')}({', '.join(parts)})"
    if op == "clip":
        return f"T.clip({a[0]}, {lit(p['lo'])}, {lit(p['hi'])})"
    if op == "cast":
        return f"{a[0]}.astype('{p['dtype']}')" if p.get("sp") else f"T.cast({a[0]}, '{p['dtype']}')"
    if op == "reduce":
        args = f"axis={lit(p['axis'])}" + (", keepdims=True" if p["keepdims"] else "")
        return f"{a[0]}.{p['op']}({args})" if p.get("sp") else f"T.{p['op']}({a[0]}, {args})"
    if op == "nnet":
        if p["op"] == "logsumexp":
            return f"T.logsumexp({a[0]}, axis={p['axis']}" + (", keepdims=True)" if p["keepdims"] else ")")
        return f"T.{'nnet.' if p.get('sp') else ''}{p['op']}({a[0]}, axis={p['axis']})"
    if op == "dot":
        return {"dot": "T.dot({0}, {1})", "matmul": "T.matmul({0}, {1})", "@": "({0} @ {1})"}[p["fn"]].format(*a)
    if op == "dimshuffle":
        if p["fn"] == "T":
            return f"{a[0]}.T"
        if p["fn"] == "transpose":
            return f"T.transpose({a[0]}, {lit(tuple(p['pattern']))})"
        return f"{a[0]}.dimshuffle({lit(tuple(p['pattern']))})"
    if op == "reshape":
        dims = _tuple_src([_dim_src(d, a) for d in p["shape"]])
        return f"{a[0]}.reshape({dims})" if p.get("sp") else f"T.reshape({a[0]}, {dims})"
    if op == "flatten":
        return f"T.flatten({a[0]}, {p['ndim']})"
    if op == "subtensor":
        return f"{a[0]}[{_key_src(p['key'], a)}]"
    if op in ("set_subtensor", "inc_subtensor"):
        y = lit(p["y_scalar"]) if p.get("y_scalar") is not None else a[1]
        return f"T.{op}({a[0]}[{_key_src(p['key'], a)}], {y})"
    if op == "concat":
        fn = "T.concatenate" if p["fn"] == "concatenate" else "T.stack"
        return f"{fn}([{', '.join(a)}], axis={p['axis']})"
    if op == "broadcast_to":
        return f"T.broadcast_to({a[0]}, {_tuple_src([_dim_src(d, a) for d in p['shape']])})"
    if op == "like":
        return f"T.{p['fn']}({a[0]})"
    if op == "shape":
        return f"({a[0]}.shape[{p['axis']}] + {p['offset']})" if p["offset"] else f"{a[0]}.shape[{p['axis']}]"
    raise KeyError(op)


# -- the oracle ------------------------------------------------------------------------------

def _key_value(key, vals):
    out = []
    for e in key:
        if e[0] == "none":
            out.append(None)
        elif e[0] == "ell":
            out.append(Ellipsis)
        elif e[0] == "s":
            out.append(slice(*(None if v is None else _ref_val(v, vals) for v in e[1:])))
        elif e[0] == "i":
            out.append(_ref_val(e[1], vals))
        else:
            v = e[1]
            arr = vals[v[1]] if isinstance(v, tuple) and v[0] == "$" else v
            out.append(np.asarray(arr).astype(np.intp))
    return tuple(out)


def _ref_val(v, vals):
    if isinstance(v, tuple) and v[0] == "$":
        return int(vals[v[1]])
    if isinstance(v, (np.ndarray, list)):
        return np.asarray(v)
    return v


def _getitem(x, key):
    try:
        with np.errstate(all="ignore"):
            return np.array(x[key])
    except IndexError as e:
        raise OracleError(IndexError, str(e)) from None


def _update(op, x, y, key):
    x = np.array(x)
    _getitem(x, key)  # bounds
    yv = cast_oracle(np.asarray(y), x.dtype.name) if isinstance(y, np.ndarray) else np.asarray(y, x.dtype)
    with np.errstate(all="ignore"):
        if op == "set_subtensor":
            x[key] = yv
        else:  # (values broadcast first: NumPy 2.4's add.at misreads broadcast values with 2-d indices)
            yb = np.broadcast_to(yv, x[key].shape)
            if x.dtype.name in FLOATS:
                acc = f64(x)
                np.add.at(acc, key, f64(yb))
                return as_dtype(acc, x.dtype.name)
            np.add.at(x, key, yb)
    return x


def _dims(shape_spec, vals):
    return tuple(vals[d[1]].shape[d[2]] if isinstance(d, tuple) else d for d in shape_spec)


def oracle(step, vals, tshapes):
    """The exact NumPy value of one step (OracleError where tcomp must raise)."""
    op, p = step.op, step.p
    a = [vals[i] for i in step.args]
    ts = [tshapes[i] for i in step.args]
    if op == "input":
        return p["value"]
    if op == "const":
        return p["value"]
    if op == "unary":
        return unary_oracle(p["op"], a[0])
    if op == "sqr":
        return binary_oracle("mul", a[0], a[0], a[0].dtype.name)
    if op == "binary":
        x, y = bcast_vals(a, ts)
        return binary_oracle(p["op"], x, y, None)
    if op == "binary_scalar":
        d = weak_result(a[0].dtype.name, p["scalar"])
        s = np.asarray(p["scalar"], d)
        pair = (a[0], s) if p["side"] == "r" else (s, a[0])
        return binary_oracle(p["op"], *np.broadcast_arrays(*pair), None)
    if op == "switch":
        rest = iter(zip(a[1:], ts[1:]))
        av, at = next(rest) if p.get("a_scalar") is None else (None, ())
        bv, bt = next(rest) if p.get("b_scalar") is None else (None, ())
        if av is None:
            av = np.asarray(p["a_scalar"], weak_result(bv.dtype.name, p["a_scalar"]))
        if bv is None:
            bv = np.asarray(p["b_scalar"], weak_result(av.dtype.name, p["b_scalar"]))
        d = promote(av.dtype.name, bv.dtype.name)
        c, av, bv = bcast_vals([a[0] != 0, av, bv], [ts[0], at, bt])
        return np.where(c, as_dtype(av, d), as_dtype(bv, d))
    if op == "clip":
        d = weak_result(weak_result(a[0].dtype.name, p["lo"]), p["hi"])
        x = as_dtype(a[0], d)
        with np.errstate(invalid="ignore"):
            return np.minimum(np.maximum(x, np.asarray(p["lo"], d)), np.asarray(p["hi"], d))
    if op == "cast":
        return cast_oracle(a[0], p["dtype"])
    if op == "reduce":
        return reduce_oracle(p["op"], a[0], p["axis"], p["keepdims"])
    if op == "nnet":
        r = softmax_oracle("logsumexp" if p["op"] == "logsumexp" else p["op"], a[0], p["axis"])
        if p["op"] == "logsumexp" and not p["keepdims"]:
            r = np.squeeze(r, axis=p["axis"])
        return r
    if op == "dot":
        x, y = a
        d = promote(x.dtype.name, y.dtype.name)
        x, y = as_dtype(x, d), as_dtype(y, d)
        if p["fn"] == "dot" and x.ndim <= 2 and y.ndim <= 2:
            if x.shape[-1] != y.shape[0]:
                raise OracleError(ValueError, "inner dims differ")
        try:
            with np.errstate(all="ignore"):
                if d in FLOATS:
                    return as_dtype(np.matmul(f64(x), f64(y)), d)
                return np.matmul(x, y).astype(d)
        except ValueError as e:
            raise OracleError(ValueError, str(e)) from None
    if op == "dimshuffle":
        x = a[0]
        pat = p["pattern"]
        kept = [q for q in pat if q != "x"]
        dropped = tuple(i for i in range(x.ndim) if i not in kept)
        y = np.squeeze(x, axis=dropped) if dropped else x
        order = sorted(kept)
        y = np.transpose(y, [order.index(q) for q in kept])
        return np.array(y.reshape(tuple(1 if q == "x" else x.shape[q] for q in pat)))
    if op == "reshape":
        try:
            return np.array(np.reshape(a[0], _dims(p["shape"], a)))
        except ValueError as e:
            raise OracleError(ValueError, str(e)) from None
    if op == "flatten":
        x = a[0]
        lead = x.shape[:p["ndim"] - 1]
        return np.array(x.reshape(lead + (int(np.prod(x.shape[len(lead):])),)))
    if op == "subtensor":
        return _getitem(a[0], _key_value(p["key"], a))
    if op in ("set_subtensor", "inc_subtensor"):
        y = np.asarray(p["y_scalar"]) if p.get("y_scalar") is not None else a[1]
        if p.get("y_scalar") is not None:
            y = np.asarray(p["y_scalar"], a[0].dtype)
        return _update(op, a[0], y, _key_value(p["key"], a))
    if op == "concat":
        d = promote(*(v.dtype.name for v in a))
        vs = [as_dtype(v, d) for v in a]
        try:
            f = np.concatenate if p["fn"] == "concatenate" else np.stack
            return f(vs, axis=p["axis"])
        except ValueError as e:
            raise OracleError(ValueError, str(e)) from None
    if op == "broadcast_to":
        shape = _dims(p["shape"], a)
        check_runtime_bcast([ts[0], p["tshape"]], [a[0].shape, shape])
        return np.array(np.broadcast_to(a[0], shape))
    if op == "like":
        return (np.zeros_like if p["fn"] == "zeros_like" else np.ones_like)(a[0])
    if op == "shape":
        return np.asarray(a[0].shape[p["axis"]] + p["offset"], "int64")
    raise KeyError(op)


def noise(step, vals, out):
    """(relative error in eps units, absolute error array or None) a correct backend may add."""
    op, p = step.op, step.p
    a = [vals[i] for i in step.args]
    if out.dtype.name not in FLOATS or op in ("input", "const", "cast", "dimshuffle", "reshape", "flatten",
                                                "subtensor", "set_subtensor", "concat", "broadcast_to", "like",
                                                "clip", "switch"):
        if op == "cast" and a[0].dtype.name == F64 and out.dtype.name == "float32":
            return 0.5, None
        if op == "inc_subtensor" and out.dtype.name in FLOATS:
            return 2, None
        return 0, None
    if op == "unary":
        return unary_noise(p["op"], a[0], out)
    if op in ("binary", "binary_scalar", "sqr"):
        return binary_noise(p.get("op", "mul"), None, None, out)
    if op == "reduce":
        return reduce_noise(p["op"], a[0], p["axis"], p["keepdims"], out)
    if op == "nnet":
        return softmax_noise(p["op"] if p["op"] != "logsumexp" else "logsumexp_k", a[0], p["axis"], out)
    if op == "dot":
        x, y = (np.abs(f64(v)) for v in a)
        k = a[0].shape[-1] if a[0].ndim else 1
        with np.errstate(all="ignore"):
            return 2, 2 * eps(out.dtype.name) * (k + 1) * np.matmul(x, y)
    if op == "inc_subtensor":
        return 2, None
    return 1, None


def _softplus(y, d):
    return as_dtype(np.logaddexp(0.0, f64(as_dtype(y, d))), d)


def stabilized(g, i, vals):
    """The exact value of a log over a pattern tcomp's stabilizer rewrites (log(sigmoid(y)),
    log(1 - sigmoid(y)), log(1 + exp(y)), log1p(exp(y)), log(softmax(y)), log(sum(exp(y)))) or
    simplify rewrites (log(exp(y)) for float y),
    where the step-by-step NumPy value overflows to -inf/inf but the math is finite; None
    for any other step."""
    s = g.steps[i]
    if s.op != "unary" or s.p["op"] not in ("log", "log1p") or g.steps[s.args[0]].op == "input":
        return None
    a = g.steps[s.args[0]]
    d = vals[s.args[0]].dtype.name
    if d not in FLOATS:
        return None

    def src_of(step, op):
        if step.op == "unary" and step.p["op"] == op:
            return vals[step.args[0]]
        return None
    with np.errstate(all="ignore"):
        y = src_of(a, "exp")
        if s.p["op"] == "log" and y is not None:
            # simplify's log(exp(y)) -> y: exact where exp(y) under/overflows; an int y is cast to
            # the exp's float dtype first (T.exp inserts that cast, so the rewrite sees a float)
            return as_dtype(y, d)
        if s.p["op"] == "log1p":
            y = src_of(a, "exp")
            return None if y is None else _softplus(y, d)
        if a.op == "binary_scalar" and a.p["op"] == "add" and a.p["scalar"] == 1:
            y = src_of(g.steps[a.args[0]], "exp")
            return None if y is None else _softplus(y, d)
        if a.op == "binary_scalar" and a.p["op"] == "sub" and a.p["scalar"] == 1 and a.p["side"] == "l":
            y = src_of(g.steps[a.args[0]], "sigmoid")
            return None if y is None else as_dtype(-f64(_softplus(y, d)), d)
        y = src_of(a, "sigmoid")
        if y is not None:
            return as_dtype(-f64(_softplus(-f64(as_dtype(y, d)), d)), d)
        if a.op == "nnet" and a.p["op"] == "softmax" and vals[a.args[0]].shape[a.p["axis"]]:
            return softmax_oracle("log_softmax", vals[a.args[0]], a.p["axis"])
        if a.op == "reduce" and a.p["op"] == "sum":
            y = src_of(g.steps[a.args[0]], "exp")
            if y is None:
                return None
            yf = f64(as_dtype(y, d))
            axes = tuple(range(yf.ndim)) if a.p["axis"] is None else tuple(np.atleast_1d(a.p["axis"]) % max(yf.ndim, 1))
            if not axes:
                return as_dtype(y, d)  # a sum over no axis: log(exp(y)), in the log's dtype
            if yf.size == 0:
                return None
            m = np.max(yf, axis=axes, keepdims=True)
            m = np.where(np.isfinite(m), m, 0)
            r = np.log(np.sum(np.exp(yf - m), axis=axes, keepdims=True)) + m
            return as_dtype(r if a.p["keepdims"] else np.squeeze(r, axis=axes), d)
    return None


def near_tie(step, vals, tshapes, devs):
    """Where a float comparison step compares operands closer than their error bounds (``devs``:
    each step's deviation in the perturbed runs), or None.  Two quantities equal in exact math
    but computed apart (``v8 > exp(log(v8))``, fuzzer seed 1007930) compare by their last-bit
    rounding, and the +1/-1 perturbed runs move both the same way, so the random run flips such
    results (``evaluate``'s ``flips``): not judged, like the sign of a zero."""
    if step.op not in ("binary", "binary_scalar") or step.p["op"] not in COMPARE or \
            len(set(step.args)) < len(step.args):  # x < x: one value on both sides, never a tie
        return None
    a = [vals[i] for i in step.args]
    da = [devs[i] for i in step.args]
    if step.op == "binary":
        x, y = bcast_vals(a, [tshapes[i] for i in step.args])
        dx, dy = np.broadcast_arrays(*da)
    else:
        sc = np.asarray(step.p["scalar"], weak_result(a[0].dtype.name, step.p["scalar"]))
        x, y = np.broadcast_arrays(a[0], sc)
        dx, dy = np.broadcast_arrays(da[0], 0.0)
        if step.p["side"] == "l":
            x, y = y, x
    d = promote(x.dtype.name, y.dtype.name)
    if d not in FLOATS:
        return None
    xf, yf = f64(as_dtype(x, d)), f64(as_dtype(y, d))
    with np.errstate(all="ignore"):
        slack = dx + dy
        return np.isfinite(xf) & np.isfinite(yf) & (slack > 0) & \
            (np.abs(xf - yf) <= slack + 2 * eps(d) * np.maximum(np.abs(xf), np.abs(yf)))


def deviations(exact, runs):
    """Per step, the largest finite |run - exact| of the perturbed ``runs`` (0 for non-floats)."""
    out = []
    for i, e in enumerate(exact):
        dev = np.zeros(np.shape(e))
        if e.dtype.name in FLOATS:
            ef = f64(e)
            with np.errstate(all="ignore"):
                for r in runs:
                    d = np.abs(f64(r[i]) - ef)
                    dev = np.maximum(dev, np.where(np.isfinite(d), d, 0.0))
        out.append(dev)
    return out


def ties_of(g, exact, runs):
    """{step id: mask} of the comparisons at a rounding tie (``near_tie``)."""
    ts = [v.type.shape for v in g.vars]
    devs = deviations(exact, runs)
    found = {}
    for i, s in enumerate(g.steps):
        t = near_tie(s, exact, ts, devs)
        if t is not None and t.any():
            found[i] = t
    return found


def stabilized_noise(g, i, vals, out):
    """``noise`` of a step whose value came from ``stabilized``: the rewritten op's error bound
    (log(softmax(y)) is log_softmax, with an absolute error of a few eps near 0, where a
    backend's float32 sum of exp may round to exactly 1: fuzz_findings F8), else None."""
    s = g.steps[i]
    a = g.steps[s.args[0]]
    if s.p["op"] == "log" and a.op == "nnet" and a.p["op"] == "softmax":
        return softmax_noise("log_softmax", vals[a.args[0]], a.p["axis"], out)
    return None


def evaluate(g: Graph, tshapes, noise_rng=None, override=None, snap=False, stable=True, direction=0,
             flips=None):
    """All step values; with ``noise_rng`` every float result is perturbed by its ``noise``.

    ``direction`` +1/-1 pushes every perturbation the same way (both sides of a threshold that
    a later floor/cast/comparison reads), 0 draws it at random.
    ``snap``: values within their absolute error of zero become exactly 0 (a backend may
    land there, and 0 is where ``0 // x`` or ``log`` jump).  ``override`` maps input step
    ids to replacement values (finite differences).  ``flips`` maps step ids to (mask, value):
    the masked elements take ``value`` (``ties_of``: the other answer of a tied comparison)."""
    vals = []
    for i, s in enumerate(g.steps):
        if override and i in override:
            vals.append(override[i])
            continue
        v = stabilized(g, i, vals) if stable else None
        stab = v is not None
        if v is None:
            v = oracle(s, vals, tshapes)
        if noise_rng is not None and v.dtype.name in FLOATS and v.size:
            k, absn = (stab and stabilized_noise(g, i, vals, v)) or noise(s, vals, v)
            if k or absn is not None:
                with np.errstate(all="ignore"):
                    u = np.full(v.shape, float(direction)) if direction else noise_rng.uniform(-1, 1, v.shape)
                    w = f64(v) * (1 + u * k * eps(v.dtype.name))
                    if absn is not None:
                        w = w + (u if direction else noise_rng.uniform(-1, 1, v.shape)) * absn
                        if snap:
                            w = np.where(np.abs(f64(v)) <= absn, 0.0, w)
                    v = np.where(np.isfinite(w) | ~np.isfinite(v), w, v).astype(v.dtype)
        if flips and i in flips:
            v = np.where(flips[i][0], flips[i][1], v)
        if noise_rng is not None and not direction and s.op == "cast":
            bad = cast_undefined(vals[s.args[0]], s.p["dtype"])  # don't-care elements (cast_undefined)
            if bad is not None and bad.any():
                v = np.where(bad, cast_alternative(s.p["dtype"]), v).astype(v.dtype)
        vals.append(np.asarray(v))
    return vals


# -- building ----------------------------------------------------------------------------------

NS_BASE = {"T": T, "np": np, "nan": float("nan"), "inf": float("inf")}


def names_for(g: Graph):
    return [f"x{i}" if s.op == "input" else f"v{i}" for i, s in enumerate(g.steps)]


def build_vars(g: Graph):
    """The tcomp variables of every step (evaluating each step's source line)."""
    ns = dict(NS_BASE)
    names = names_for(g)
    out = []
    for i, s in enumerate(g.steps):
        if s.op == "input":
            ns["_name"] = names[i]
        v = eval(src(s, names), ns)  # noqa: S307 - our own generated source
        ns[names[i]] = v
        out.append(v)
    return out


def generate(seed, mode=None):
    """The graph of ``seed`` (``mode``: 'value', 'grad' or None for the seed's own choice)."""
    from fuzz_gen import generate_graph

    return generate_graph(seed, mode)
