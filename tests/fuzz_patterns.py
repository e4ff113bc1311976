"""Short chains that graph rewrites target (simplify, stabilize, canonicalize), so each
rewrite meets every dtype and shape the fuzzer makes: the rewrite must keep NumPy's value
(or, for the stabilizations, the exact math the oracle computes in ``stabilized``)."""
from __future__ import annotations

import numpy as np
from fuzz_graphs import DTYPES, Step


def p_pattern(gen):
    """Short chains that graph rewrites (simplify, stabilize, canonicalize) target, so
    the rewrites meet every dtype: log(sigmoid), log(1 - sigmoid), log(softmax),
    log(sum(exp)), exp(log), --x, x*1, x - x, x*0, cast(cast), reshape(reshape), ..."""
    x = gen.pick()
    if x is None:
        return None
    nd = gen.vars[x].ndim
    pat = gen.choice(["log_sigmoid", "log1m_sigmoid", "log_softmax", "log_sum_exp", "exp_log", "log_exp",
                       "neg_neg", "identity", "sub_self", "mul_zero", "cast_cast", "reshape_reshape",
                       "dimshuffle_dimshuffle", "sum_broadcast", "log1p_exp", "log_1p_exp"])
    gen.g.features["ops"]["pattern:" + pat] += 1

    def u(i, op):
        return None if i is None else gen.add(Step("unary", [i], {"op": op, "sp": 0}), label=op)

    def bs(i, op, scalar, side="r"):
        return None if i is None else gen.add(Step("binary_scalar", [i], {"op": op, "scalar": scalar,
                                                                            "side": side, "sp": 1}), label=op)
    if pat == "log_sigmoid":
        return u(u(x, "sigmoid"), "log")
    if pat == "log1m_sigmoid":
        return u(bs(u(x, "sigmoid"), "sub", 1, "l"), "log")
    if pat == "log_softmax" and nd:
        y = gen.add(Step("nnet", [x], {"op": "softmax", "axis": gen._axis(nd, single=True), "sp": 0}))
        return u(y, "log")
    if pat == "log_sum_exp":
        y = u(x, "exp")
        y = None if y is None else gen.add(Step("reduce", [y], {"op": "sum", "axis": gen._axis(nd),
                                                                "keepdims": bool(gen.r() < 0.5), "sp": 0}))
        return u(y, "log")
    if pat == "exp_log":
        return u(u(x, "log"), "exp")
    if pat == "log_exp":
        return u(u(x, "exp"), "log")
    if pat == "neg_neg" and gen.vars[x].dtype != "bool":
        return u(u(x, "neg"), "neg")
    if pat == "identity":
        op, sc = gen.choice([("mul", 1), ("add", 0), ("sub", 0), ("truediv", 1), ("mul", 1.0), ("add", 0.0)])
        return bs(x, op, sc, "r" if op in ("sub", "truediv") else gen.choice("lr"))
    if pat == "sub_self":
        return gen.add(Step("binary", [x, x], {"op": "sub", "sp": 1}), label="sub")
    if pat == "mul_zero":
        return bs(x, "mul", 0, gen.choice("lr"))
    if pat == "cast_cast":
        y = gen.add(Step("cast", [x], {"dtype": gen.choice(DTYPES), "sp": 0}), label="cast")
        return None if y is None else gen.add(Step("cast", [y], {"dtype": gen.choice(DTYPES), "sp": 1}),
                                               label="cast")
    if pat == "reshape_reshape":
        n = int(np.prod(gen.vals[x].shape))
        y = gen.add(Step("reshape", [x], {"shape": [-1] if n else [0], "sp": 0}), label="reshape")
        return None if y is None else gen.add(Step("reshape", [y], {"shape": [1, -1] if n else [1, 0], "sp": 1}),
                                               label="reshape")
    if pat == "dimshuffle_dimshuffle" and nd:
        perm = [int(a) for a in gen.rng.permutation(nd)]
        y = gen.add(Step("dimshuffle", [x], {"fn": "dimshuffle", "pattern": ["x"] + perm}), label="dimshuffle")
        back = [0] + [1 + perm.index(a) for a in range(nd)]
        return None if y is None else gen.add(Step("dimshuffle", [y], {"fn": "dimshuffle", "pattern": back}),
                                               label="dimshuffle")
    if pat == "sum_broadcast":
        y = gen.p_broadcast_to()
        return None if y is None else gen.add(Step("reduce", [y], {"op": "sum", "axis": gen._axis(
            gen.vars[y].ndim), "keepdims": False, "sp": 0}), label="sum")
    if pat == "log1p_exp":
        return u(u(x, "exp"), "log1p")
    if pat == "log_1p_exp":
        return u(bs(u(x, "exp"), "add", 1, "l"), "log")
    return None
