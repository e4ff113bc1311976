"""The random choices of the differential fuzzer: which op, which operands, which shapes.

Every proposal is a :class:`fuzz_graphs.Step`; :meth:`Gen.add` builds it through tcomp's
public API and through the NumPy oracle.  A step tcomp rejects at build time is dropped and
counted (``features['build_reject']``: the generator aims at valid graphs, so the summary
lists these for review); a step the oracle rejects (an out-of-bounds index, a symbolic dim
of size 1 meeting a larger one, a max over a zero-size symbolic axis) ends the graph as an
*error graph* some of the time: tcomp must then raise at call time too.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
from fuzz_graphs import DTYPE_WEIGHTS, DTYPES, LAYOUTS, Graph, Step, oracle, random_value, src
from fuzz_ops import (
    ARITH,
    BINARY_SPELLINGS,
    COMPARE,
    F64,
    FLOAT_UNARY,
    LOGIC,
    NUMERIC_UNARY,
    UNARY_SPELLINGS,
    OracleError,
    bcast_types,
    binary_dtype,
    check_runtime_bcast,
    kind,
)

import tcomp.tensor as T

_PREFIX = {"int8": "b", "int16": "w", "int32": "i", "int64": "l", "float32": "f", "float64": "d"}
_RANK_NAME = {0: "scalar", 1: "vector", 2: "matrix", 3: "tensor3", 4: "tensor4"}
VALUE_FAMILIES = {"unary": 12, "binary": 14, "binary_scalar": 8, "switch": 4, "clip": 2, "cast": 5, "reduce": 10,
                  "nnet": 4, "dot": 5, "dimshuffle": 5, "reshape": 4, "flatten": 2, "subtensor": 10, "update": 6,
                  "concat": 4, "broadcast_to": 2, "like": 1, "shape": 1, "sqr": 1, "pattern": 6}
GRAD_FAMILIES = {"unary": 12, "binary": 12, "binary_scalar": 6, "switch": 3, "clip": 2, "reduce": 8, "nnet": 4,
                 "dot": 5, "dimshuffle": 4, "reshape": 3, "flatten": 1, "subtensor": 8, "update": 5, "concat": 4,
                 "broadcast_to": 2, "sqr": 1, "pattern": 3}
GRAD_UNARY = ("exp", "log", "log1p", "expm1", "sqrt", "tanh", "sin", "cos", "erf", "sigmoid", "softplus", "neg",
              "abs", "relu")


class Gen:
    def __init__(self, seed, mode):
        self.rng = np.random.default_rng([seed, 20261201])
        self.g = Graph(seed=seed, mode=mode)
        self.vars, self.vals, self.tshapes = [], [], []
        self.ns = {"T": T, "np": np, "nan": float("nan"), "inf": float("inf")}
        self.feat = Counter()
        self.g.features = {"ops": Counter(), "build_reject": Counter(), "feat": self.feat}
        self.error = None

    # -- helpers -----------------------------------------------------------------
    def r(self):
        return self.rng.random()

    def choice(self, seq, p=None):
        seq = list(seq)
        if p is not None:
            p = np.asarray(p, float)
            p = p / p.sum()
        return seq[int(self.rng.choice(len(seq), p=p))]

    def name(self, i):
        return f"x{i}" if self.g.steps[i].op == "input" else f"v{i}"

    def add(self, step, allow_error=False, label=None):
        """Build ``step``; its id, or None when tcomp or the oracle rejects it."""
        i = len(self.g.steps)
        self.g.steps.append(step)
        names = [self.name(k) for k in range(i + 1)]
        try:
            var = eval(src(step, names), self.ns)  # noqa: S307 - generated source
        except (TypeError, ValueError, IndexError, OverflowError) as e:
            self.g.steps.pop()
            self.g.features["build_reject"][f"{label or step.op}: {type(e).__name__}: {str(e)[:90]}"] += 1
            return None
        try:
            val = oracle(step, self.vals, self.tshapes)
        except OracleError as e:
            if allow_error and self.error is None and self.r() < 0.5:
                self.error = e
            else:
                self.g.steps.pop()
                return None
            val = None
        if val is not None and (var.dtype != val.dtype.name or var.ndim != val.ndim or any(
                isinstance(d, int) and d != s for d, s in zip(var.type.shape, val.shape))):
            self.g.features.setdefault("type_mismatch", []).append(
                f"step {i} {src(step, names)}: tcomp type {var.type}, NumPy {val.dtype.name}{list(val.shape)}")
        self.ns[names[i]] = var
        self.vars.append(var)
        self.vals.append(val)
        self.tshapes.append(var.type.shape)
        self.g.features["ops"][label or step.op] += 1
        return i

    def nodes(self, pred=None, grad=None):
        grad = self.g.mode == "grad" if grad is None else grad
        out = []
        for i, v in enumerate(self.vars):
            if grad and v.dtype != F64:
                continue
            if pred is None or pred(i):
                out.append(i)
        return out

    def pick(self, pred=None):
        c = self.nodes(pred)
        if not c:
            return None
        w = np.arange(1, len(c) + 1, dtype=float) ** 1.5  # prefer recent nodes: deeper graphs
        return self.choice(c, w)

    def dtype(self):
        if self.g.mode == "grad":
            return F64
        return self.choice(DTYPES, DTYPE_WEIGHTS)

    def sym_dims(self, shape, static_prob=0.4):
        """A type shape for a run-time shape: static, named (n<size>: one name per size) or anonymous."""
        out = []
        for s in shape:
            u = self.r()
            if s == 1 and u < 0.5:
                out.append(1)
            elif u < static_prob:
                out.append(int(s))
            elif u < static_prob + 0.3:
                out.append(f"n{s}")
            else:
                out.append(None)
        return tuple(out)

    # -- inputs --------------------------------------------------------------------
    def new_input(self, shape, tshape=None, dtype=None, profile=None, label="input"):
        dtype = dtype or self.dtype()
        shape = tuple(int(s) for s in shape)
        tshape = self.sym_dims(shape) if tshape is None else tuple(tshape)
        i = len(self.g.steps)
        nm = f"x{i}"
        if profile is None:
            profile = "grad" if self.g.mode == "grad" else self.choice(
                ["plain", "special", "int_valued", "wide"], [6, 1, 1, 2])
        value = random_value(self.rng, dtype, shape, profile)
        ctor = self.ctor(nm, dtype, tshape)
        layout = self.choice(LAYOUTS) if len(shape) else "c"
        self.feat[f"layout:{layout}"] += 1
        self.feat[f"dtype:{dtype}"] += 1
        if 0 in shape:
            self.feat["zero-size input"] += 1
        for d in tshape:
            self.feat["dim:" + ("static1" if d == 1 else "static" if isinstance(d, int) else
                                "named" if isinstance(d, str) else "anon")] += 1
        return self.add(Step("input", [], {"ctor": ctor, "value": value, "layout": layout, "dtype": dtype}),
                        label=label)

    def ctor(self, nm, dtype, tshape):
        nd = len(tshape)
        pre = _PREFIX.get(dtype)
        if all(d is None for d in tshape) and nd in _RANK_NAME and self.r() < 0.6:
            self.feat["ctor:" + _RANK_NAME[nd]] += 1
            if pre and self.r() < 0.6:
                return f"T.{pre}{_RANK_NAME[nd]}('{nm}')"
            return f"T.{_RANK_NAME[nd]}('{nm}', dtype='{dtype}')"
        if nd == 2 and tshape in ((1, None), (None, 1)) and self.r() < 0.7:
            which = "row" if tshape[0] == 1 else "col"
            self.feat["ctor:" + which] += 1
            if pre and self.r() < 0.5:
                return f"T.{pre}{which}('{nm}')"
            return f"T.{which}('{nm}', dtype='{dtype}')"
        if all(d in (1, None) for d in tshape) and nd and self.r() < 0.6:
            self.feat["ctor:broadcastable"] += 1
            return f"T.tensor('{nm}', dtype='{dtype}', broadcastable={tuple(d == 1 for d in tshape)!r})"
        self.feat["ctor:shape"] += 1
        return f"T.tensor('{nm}', dtype='{dtype}', shape={tshape!r})"

    def base_shape(self):
        nd = self.choice([0, 1, 2, 3, 4], [1, 3, 4, 2, 0.4])
        shape = [self.choice([0, 1, 2, 3, 4, 5], [0.4, 2, 3, 3, 2, 1.5]) for _ in range(nd)]
        if nd and self.r() < 0.12:  # one longer dim: vector loop bodies plus remainders, blocked kernels
            shape[int(self.rng.integers(0, nd))] = int(self.choice([8, 13, 17, 33, 64]))
            self.feat["long dim"] += 1
        return tuple(shape)

    def partner_shape(self, shape, tshape):
        """A run-time and type shape that broadcasts with (shape, tshape) under Theano's rule."""
        nd = len(shape)
        r = self.choice(range(nd + 1)) if nd and self.r() < 0.5 else nd
        out, tout = [], []
        for s, t in zip(shape[nd - r:], tshape[nd - r:]):
            if self.r() < 0.25 and s != 1:
                out.append(1)
                tout.append(1)
            else:
                out.append(s)
                tout.append(t if t == 1 else self.sym_dims((s,))[0] if self.r() < 0.5 else t)
        if nd and self.r() < 0.1:  # an extra leading dim
            lead = self.choice([1, 2, 3])
            out.insert(0, lead)
            tout.insert(0, self.sym_dims((lead,))[0])
        return tuple(out), tuple(tout)

    def compatible(self, i, j):
        ti, tj = self.tshapes[i], self.tshapes[j]
        if bcast_types(ti, tj) is None:
            return False
        try:
            check_runtime_bcast([ti, tj], [self.vals[i].shape, self.vals[j].shape])
        except OracleError:
            return False
        return True

    def scalar_for(self, d):
        """A Python scalar that fits dtype ``d`` (weak typing)."""
        k = kind(d)
        u = self.r()
        if self.g.mode == "grad":  # (no 1e10: x + 1e10 leaves finite differences nothing to measure)
            return float(self.choice([0.5, -1.5, 2.0, 3.0, 1e-3, -0.25, 10.0, 0.0]))
        if k == "f" and u < 0.6 or u < 0.2:
            return float(self.choice([0.5, -1.5, 2.0, 3.0, 1e-3, -0.25, 10.0, 0.0, 1e10]))
        if u < 0.3:
            return bool(self.r() < 0.5)
        if k == "u":
            return int(self.choice([0, 1, 2, 3, 7, 255]))
        if k == "i":
            info = np.iinfo(d)
            return int(self.choice([0, 1, -1, 2, 3, -3, 5, int(info.max), int(info.min)]))
        return int(self.choice([0, 1, -1, 2, 3, -2]))

    def operand_like(self, x, grad_ok=True):
        """A node, fresh input, scalar constant or T.constant that broadcasts with ``x``."""
        u = self.r()
        cands = [j for j in self.nodes() if self.compatible(x, j)]
        if cands and u < 0.45:
            return self.choice(cands)
        shape, tshape = self.partner_shape(self.vals[x].shape, self.tshapes[x])
        if u < 0.55 and self.g.mode != "grad":
            value = random_value(self.rng, self.dtype(), shape, "plain")
            return self.add(Step("const", [], {"value": value}), label="T.constant")
        return self.new_input(shape, tshape)

    def int_scalar_operand(self, value, axis_node=None, axis=None):
        """A symbolic integer scalar equal to ``value``: an input or ``x.shape[axis] + k``."""
        if axis_node is not None and self.r() < 0.4:
            off = value - self.vals[axis_node].shape[axis]
            return self.add(Step("shape", [axis_node], {"axis": axis, "offset": int(off)}), label="x.shape[i]")
        d = self.choice(["int64", "int32", "int8"]) if -128 <= value < 128 else "int64"
        i = len(self.g.steps)
        ctor = self.choice([f"T.scalar('x{i}', dtype='{d}')", f"T.{_PREFIX[d]}scalar('x{i}')"])
        return self.add(Step("input", [], {"ctor": ctor, "value": np.asarray(value, d), "layout": "c", "dtype": d}),
                        label="int scalar input")

    # -- op proposals ------------------------------------------------------------------
    def p_unary(self):
        x = self.pick()
        if x is None:
            return None
        d = self.vars[x].dtype
        if self.g.mode == "grad":
            op = self.choice(GRAD_UNARY)
            v = self.vals[x]
            if v.size and (op in ("log", "sqrt") and v.min() < 0.05 or op == "log1p" and v.min() < -0.9
                           or op in ("exp", "expm1") and v.max() > 30):
                op = "tanh"
        else:
            ops = list(FLOAT_UNARY) + ["logical_not"] + ([] if d == "bool" else list(NUMERIC_UNARY))
            op = self.choice(ops)
            v = self.vals[x]
            if op in ("sin", "cos") and v.size and np.max(np.abs(np.where(np.isfinite(v), v, 0))) > 1e5:
                op = "tanh"  # tcomp documents sin/cos accuracy for |x| <= 1e6 only
        sp = self.choice(range(len(UNARY_SPELLINGS.get(op, [0]))))
        return self.add(Step("unary", [x], {"op": op, "sp": sp}), label=op)

    def p_binary(self):
        x = self.pick()
        if x is None:
            return None
        y = self.operand_like(x)
        if y is None:
            return None
        if self.r() < 0.5:
            x, y = y, x
        dx, dy = self.vars[x].dtype, self.vars[y].dtype
        if self.g.mode == "grad":
            op = self.choice(["add", "sub", "mul", "truediv", "pow", "maximum", "minimum"])
            vy, vx = self.vals[y], self.vals[x]
            if op == "truediv" and vy.size and np.abs(vy).min() < 0.2 or op == "pow" and vx.size and vx.min() < 0.2:
                op = "mul"
        else:
            ops = list(ARITH) + list(COMPARE) + list(LOGIC)
            if dx == dy == "bool":
                ops = ["maximum", "minimum"] + list(COMPARE) + list(LOGIC)
            op = self.choice(ops)
        sp = self.choice(range(len(BINARY_SPELLINGS[op])))
        return self.add(Step("binary", [x, y], {"op": op, "sp": sp}), label=op)

    def p_binary_scalar(self):
        x = self.pick()
        if x is None:
            return None
        d = self.vars[x].dtype
        s = self.scalar_for(d)
        if self.g.mode == "grad":
            op = self.choice(["add", "sub", "mul", "truediv", "pow", "maximum", "minimum"])
            side = self.choice("lr")
            if op in ("truediv", "pow") and side == "l" or op == "truediv" and s == 0.0:
                side, s = "r", 1.5
            if op == "pow":
                vx = self.vals[x]
                if vx.size and vx.min() < 0.2:
                    s = 2.0
        else:
            op = self.choice(list(ARITH) + list(COMPARE) + list(LOGIC))
            side = self.choice("lr")
            if d == "bool" and isinstance(s, bool) and binary_dtype(op, d, d) == "bool" and op in ARITH \
                    and op not in ("maximum", "minimum"):
                s = 2
        sp = self.choice(range(len(BINARY_SPELLINGS[op])))
        return self.add(Step("binary_scalar", [x], {"op": op, "scalar": s, "side": side, "sp": sp}),
                        label=f"{op} (scalar)")

    def p_sqr(self):
        x = self.pick(lambda i: self.vars[i].dtype != "bool")
        return None if x is None else self.add(Step("sqr", [x], {}), label="sqr")

    def p_switch(self):
        x = self.pick()
        if x is None:
            return None
        if self.g.mode == "grad":
            y = self.operand_like(x)
            if y is None:
                return None
            c = self.add(Step("binary", [x, y], {"op": self.choice(["lt", "gt", "ge"]), "sp": 0}))
        else:
            c = self.pick(lambda i: self.compatible(i, x)) if self.r() < 0.5 else self.operand_like(x)
        if c is None:
            return None
        args, p = [c], {"fn": self.choice(["switch", "where"])}
        d = self.vars[x].dtype
        for k in ("a_scalar", "b_scalar"):
            if self.r() < 0.3 and (k == "a_scalar" or p.get("a_scalar") is None):
                p[k] = self.scalar_for(d)
            else:
                j = x if not args[1:] else self.operand_like(x)
                if j is None or not self.compatible(j, c):
                    return None
                args.append(j)
        return self.add(Step("switch", args, p), label="switch")

    def p_clip(self):
        x = self.pick()
        if x is None:
            return None
        d = self.vars[x].dtype
        lo, hi = sorted([self.scalar_for(d), self.scalar_for(d)], key=float)
        if isinstance(lo, bool) or isinstance(hi, bool):
            lo, hi = 0, 1
        return self.add(Step("clip", [x], {"lo": lo, "hi": hi}), label="clip")

    def p_cast(self):
        x = self.pick()
        if x is None:
            return None
        return self.add(Step("cast", [x], {"dtype": self.choice(DTYPES), "sp": int(self.r() < 0.4)}), label="cast")

    def _axis(self, nd, single=False):
        if nd == 0:
            return None
        u = self.r()
        if single or u < 0.5:
            return int(self.choice(range(-nd, nd)))
        if u < 0.7:
            return None
        axes = [a for a in range(nd) if self.r() < 0.5]
        self.rng.shuffle(axes)
        return tuple(a - nd if self.r() < 0.3 else a for a in axes)

    def p_reduce(self):
        x = self.pick()
        if x is None:
            return None
        if self.g.mode == "grad":
            op = self.choice(["sum", "prod", "mean", "max", "min"])
        else:
            op = self.choice(["sum", "prod", "max", "min", "mean", "argmax", "argmin"])
        axis = self._axis(self.vars[x].ndim)
        p = {"op": op, "axis": axis, "keepdims": bool(self.r() < 0.4), "sp": int(self.r() < 0.3)}
        nd = self.vars[x].ndim
        if op in ("max", "min", "argmax", "argmin") and any(
                self.tshapes[x][a % nd] == 0 for a in (range(nd) if axis is None else np.atleast_1d(axis))):
            p["op"] = "sum"
        return self.add(Step("reduce", [x], p), allow_error=True, label=op)

    def p_nnet(self):
        x = self.pick(lambda i: self.vars[i].ndim > 0)
        if x is None:
            return None
        op = self.choice(["softmax", "log_softmax", "logsumexp"])
        p = {"op": op, "axis": self._axis(self.vars[x].ndim, single=True), "keepdims": bool(self.r() < 0.3),
             "sp": int(self.r() < 0.5)}
        return self.add(Step("nnet", [x], p), allow_error=True, label=op)

    def p_dot(self):
        x = self.pick(lambda i: 1 <= self.vars[i].ndim <= 3 and self.vars[i].dtype != "bool")
        if x is None:
            return None
        sh, ts = self.vals[x].shape, self.tshapes[x]
        nd = len(sh)
        left = nd == 3 or self.r() < 0.6  # x is the left operand
        k, tk = (sh[-1], ts[-1]) if left else (sh[0], ts[0])
        tk2 = tk if tk == 1 or self.r() < 0.5 else self.sym_dims((k,))[0]
        m = int(self.choice([0, 1, 2, 3, 4], [0.2, 1, 1, 1, 1]))
        tm = self.sym_dims((m,))[0]
        if nd == 3:
            fn = self.choice(["matmul", "@", "dot"])
            u = self.r()
            shape, tshape = ((sh[0], k, m), (ts[0], tk2, tm)) if u < 0.4 else ((1, k, m), (1, tk2, tm)) \
                if u < 0.55 else ((k, m), (tk2, tm)) if u < 0.8 else ((k,), (tk2,))
        else:
            fn = self.choice(["dot", "matmul", "@"])
            vec = self.r() < 0.3
            if left:
                shape, tshape = ((k,), (tk2,)) if vec else ((k, m), (tk2, tm))
            else:
                shape, tshape = ((k,), (tk2,)) if vec else ((m, k), (tm, tk2))
        dtype = self.dtype() if self.g.mode == "grad" else \
            self.choice(["int8", "int32", "int64", "uint8", "float32", "float64"], [1, 1, 1, 1, 4, 3])
        y = self.new_input(shape, tshape, dtype=dtype)
        if y is None:
            return None
        return self.add(Step("dot", [x, y] if left else [y, x], {"fn": fn}), label=f"dot:{fn}")

    def p_dimshuffle(self):
        x = self.pick(lambda i: self.vars[i].ndim > 0)
        if x is None:
            return None
        nd = self.vars[x].ndim
        u = self.r()
        if u < 0.2:
            return self.add(Step("dimshuffle", [x], {"fn": "T", "pattern": list(range(nd))[::-1]}), label=".T")
        perm = list(self.rng.permutation(nd))
        if u < 0.4:
            return self.add(Step("dimshuffle", [x], {"fn": "transpose", "pattern": [int(a) for a in perm]}),
                            label="transpose")
        perm = [int(a) for a in perm if not (self.tshapes[x][a] == 1 and self.r() < 0.5)]
        for _ in range(self.choice([0, 1, 2])):
            perm.insert(int(self.rng.integers(0, len(perm) + 1)), "x")
        return self.add(Step("dimshuffle", [x], {"fn": "dimshuffle", "pattern": perm}), label="dimshuffle")

    def p_reshape(self):
        x = self.pick()
        if x is None:
            return None
        sh = self.vals[x].shape
        n = int(np.prod(sh))
        nd = len(sh)
        u = self.r()
        if u < 0.25 or n == 0 and u < 0.5:
            shape = [-1] if n else [0]
        elif u < 0.45 and nd:
            shape = [("s", 0, 0), -1] if sh[0] else [("s", 0, 0)] + list(sh[1:])
        elif u < 0.6:
            shape = [1, -1] if n else [1, 0]
        elif u < 0.7 and n:
            shape = [-1, 1]
        else:
            f = [d for d in range(1, n + 1) if n % d == 0] if n else [0]
            a = int(self.choice(f))
            shape = [a, n // a] if n else [0, self.choice([1, 2])]
            if n and self.r() < 0.5:
                b = int(self.choice([d for d in range(1, n // a + 1) if (n // a) % d == 0]))
                shape = [a, b, n // a // b]
            if n and self.r() < 0.3:
                shape[int(self.rng.integers(0, len(shape)))] = -1
        if self.r() < 0.03 and n:  # an error graph: the wrong number of elements
            shape = [n + 1]
        return self.add(Step("reshape", [x], {"shape": shape, "sp": int(self.r() < 0.4)}), allow_error=True,
                        label="reshape")

    def p_flatten(self):
        x = self.pick()
        if x is None:
            return None
        nd = self.vars[x].ndim
        return self.add(Step("flatten", [x], {"ndim": int(self.rng.integers(1, max(nd, 1) + 1))}), label="flatten")

    def p_like(self):
        x = self.pick()
        return None if x is None else self.add(Step("like", [x], {"fn": self.choice(["zeros_like", "ones_like"])}),
                                               label="zeros/ones_like")

    def p_shape(self):
        x = self.pick(lambda i: self.vars[i].ndim > 0)
        if x is None:
            return None
        return self.add(Step("shape", [x], {"axis": int(self.rng.integers(0, self.vars[x].ndim)),
                                            "offset": int(self.choice([0, 0, -1, 2]))}), label="x.shape[i]")

    def p_broadcast_to(self):
        x = self.pick()
        if x is None:
            return None
        sh, ts = self.vals[x].shape, self.tshapes[x]
        shape, tshape = [], []
        for s, t in zip(sh, ts):
            if t == 1 and self.r() < 0.6:
                s = int(self.choice([1, 2, 3]))
            if t != 1 and (self.r() < 0.3 or not isinstance(t, int)):
                shape.append(("s", 0, len(shape)))
                tshape.append(None)
            else:
                shape.append(int(s))
                tshape.append(int(s))
        lead = [int(self.choice([1, 2, 3])) for _ in range(self.choice([0, 0, 1, 2]))]
        p = {"shape": lead + shape, "tshape": tuple(lead + tshape)}
        p["shape"] = [(e[0], e[1], e[2] + 0) if isinstance(e, tuple) else e for e in p["shape"]]
        return self.add(Step("broadcast_to", [x], p), allow_error=True, label="broadcast_to")

    def p_concat(self):
        stack = self.r() < 0.35
        x = self.pick(lambda i: self.vars[i].ndim > 0 or stack)
        if x is None:
            return None
        sh, ts = self.vals[x].shape, self.tshapes[x]
        nd = len(sh)
        axis = int(self.rng.integers(0, nd + 1 if stack else nd))
        args = [x]
        for _ in range(self.choice([1, 1, 2])):
            shape, tshape = list(sh), list(ts)
            if not stack:
                shape[axis] = int(self.choice([0, 1, 2, 3], [0.5, 2, 2, 1]))
                tshape[axis] = self.sym_dims((shape[axis],))[0]
            for a in range(nd):
                if a != axis or stack:
                    tshape[a] = ts[a] if self.r() < 0.5 else self.sym_dims((sh[a],))[0]
            if self.r() < 0.3:
                cands = [j for j in self.nodes() if self.vals[j].shape == tuple(sh)]
                if cands:
                    args.append(self.choice(cands))
                    continue
            j = self.new_input(shape, tshape)
            if j is None:
                return None
            args.append(j)
        self.rng.shuffle(args)
        axis = axis - (nd + 1 if stack else nd) if self.r() < 0.3 else axis
        return self.add(Step("concat", [int(a) for a in args], {"fn": "stack" if stack else "concatenate",
                                                                "axis": axis}), label="stack" if stack else "concat")

    def p_pattern(self):
        from fuzz_patterns import p_pattern
        return p_pattern(self)

    def p_subtensor(self):
        from fuzz_index import p_subtensor
        return p_subtensor(self)

    def p_update(self):
        from fuzz_index import p_update
        return p_update(self)


def _ancestors(g, i):
    seen, stack = set(), [i]
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        stack.extend(g.steps[k].args)
    return seen


def generate_graph(seed, mode=None):
    """One random graph; ``mode`` 'value', 'grad' or None (a quarter are grad graphs)."""
    rng = np.random.default_rng([seed, 7])
    mode = mode or ("grad" if rng.random() < 0.25 else "value")
    gen = Gen(seed, mode)
    base = gen.base_shape()
    for _ in range(gen.choice([1, 2, 3], [2, 3, 2])):
        shape, tshape = gen.partner_shape(base, gen.sym_dims(base))
        gen.new_input(shape, tshape)
    fams = GRAD_FAMILIES if mode == "grad" else VALUE_FAMILIES
    names, weights = list(fams), list(fams.values())
    want = int(gen.rng.integers(3, 15))
    made, tries = 0, 0
    while made < want and tries < 4 * want and gen.error is None:
        tries += 1
        fam = gen.choice(names, weights)
        if getattr(gen, "p_" + fam)() is not None:
            made += 1
    g = gen.g
    last = len(g.steps) - 1
    if gen.error is not None:
        g.outputs = [last]
        g.features["error"] = str(gen.error)
        g.vars, g.vals = gen.vars, gen.vals
        return g
    inner = [i for i, s in enumerate(g.steps) if s.op != "input" and i != last]
    extra = [int(i) for i in gen.rng.choice(inner, size=min(len(inner), gen.choice([0, 1, 2, 3])), replace=False)] \
        if inner else []
    g.outputs = [last] + extra
    if gen.r() < 0.05:
        g.outputs.append(0)  # an output that is an input
    if mode == "grad":
        outs = [o for o in g.outputs if gen.vars[o].dtype == F64 and g.steps[o].op != "input"]
        if outs:
            o = outs[0]
            w = gen.add(Step("const", [], {"value": gen.rng.uniform(-1, 1, gen.vals[o].shape)}), label="grad weight")
            m = None if w is None else gen.add(Step("binary", [o, w], {"op": "mul", "sp": 1}), label="grad cost mul")
            cost = gen.add(Step("reduce", [m], {"op": "sum", "axis": None, "keepdims": False, "sp": 0}),
                           label="grad cost sum") if m is not None else None
            if cost is not None:
                anc = _ancestors(g, cost)
                wrt = [i for i in g.inputs() if i in anc and gen.vars[i].dtype == F64]
                if wrt:
                    g.grad = {"cost": cost, "wrt": wrt}
                    g.outputs.append(cost)
                    g.features["ops"]["T.grad"] += 1
    g.vars, g.vals = gen.vars, gen.vals
    return g
