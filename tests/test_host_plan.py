"""The generated ``plan`` computes every shape-program instruction as the Python evaluator
does (``kernel_program.SCALAR_OPS``: Python floor division and modulo, total at zero,
NaN-aware max/min, NumPy's wrapping casts) and returns the first failing check's code.

Random straight-line programs over a few loaded input values (ints, floats, negatives,
zeros, NaN) are compiled once per batch and compared register by register with
``evaluate_shape_program``.
"""
from __future__ import annotations

import ctypes
import math
import os
import struct
from types import SimpleNamespace

import numpy as np
import pytest
from llvmlite import ir

from tcomp.backend.cpu.host_plan import PlanEmitter
from tcomp.passes.kernel_program import Check, Inst, ShapeProgram, evaluate_shape_program
from tcomp.runtime import engine

I_OPS = ["add", "sub", "mul", "floordiv", "mod", "max", "min", "eq", "ne", "lt", "le", "gt", "ge", "and", "or"]
F_OPS = ["add", "sub", "mul", "floordiv", "mod", "max", "min", "truediv", "eq", "ne", "lt", "le", "gt", "ge"]
UNARY_I = ["neg", "abs", "sign", "not"]
UNARY_F = ["neg", "abs", "sign", "ceil", "floor"]
CASTS = ["int8", "uint8", "int16", "int32", "int64", "bool", "float32", "float64"]


def _program(rng, n_insts):
    """Loads of an int64 and a float64 input vector, then random instructions."""
    insts, types = [], []

    def emit(op, args, attrs=(), t="i64"):
        insts.append(Inst(op, tuple(args), tuple(sorted(attrs)), t))
        types.append(t)
        return f"s{len(insts) - 1}"
    regs = {"i64": [emit("load", (k,), (("input", 0), ("dtype", "int64"))) for k in range(4)],
            "f64": [emit("load", (k,), (("input", 1), ("dtype", "float64")), "f64") for k in range(4)]}
    for _ in range(n_insts):
        t = rng.choice(["i64", "f64"])
        pool = regs[t]
        kind = rng.integers(5)
        a, b = (pool[i] for i in rng.integers(len(pool), size=2))
        if kind == 0:
            op = str(rng.choice(UNARY_I if t == "i64" else UNARY_F))
            r = emit(op, (a,), (), "i64" if op == "not" else t)
        elif kind == 1:
            dtype = str(rng.choice(CASTS))
            if t == "f64" and dtype not in ("bool", "float32", "float64"):
                a = emit("floor", (a,), (), "f64")  # finite, in range: float -> int is C's cast
                a = emit("min", (a, 100.0), (), "f64")
                a = emit("max", (a, -100.0), (), "f64")
            r = emit("cast", (a,), (("dtype", dtype),), "f64" if dtype.startswith("float") else "i64")
        elif kind == 2:
            c = regs["i64"][rng.integers(len(regs["i64"]))]
            r = emit("select", (c, a, b), (), t)
        else:
            op = str(rng.choice(I_OPS if t == "i64" else F_OPS))
            boolean = op in ("eq", "ne", "lt", "le", "gt", "ge", "and", "or")
            res = "i64" if boolean else ("f64" if op == "truediv" else t)
            r = emit(op, (a, b), (), res)
        regs[types[-1]].append(r)
    checks = (Check("ValueError", "last {0}", (("int", f"s{len(insts) - 1}"),)),)
    insts.append(Inst("check", (emit("ge", (regs["i64"][-1], -1000), (), "i64"),), (("code", 1),)))
    return ShapeProgram(tuple(insts), checks, (0, 1))


def _compile(sp):
    module = ir.Module(name="plan_test")
    hp = SimpleNamespace(kp=SimpleNamespace(shape=sp, workspace=0, outputs=(), values=()), module=module,
                         types=["f64" if i.type == "f64" else "i64" for i in sp.insts], n_host=1, out_slots=[],
                         dim_off=[0, 1], plan_name="plan_test")
    PlanEmitter(hp).emit()
    lib = engine.load(str(module), exports=["plan_test"])
    return lib, ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(
        lib.address("plan_test"))


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        a, b = float(a), float(b)
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


@pytest.mark.parametrize("seed", range(int(os.environ.get("TCOMP_PLAN_SEEDS", 6))))  # 60 passed here
def test_plan_matches_the_evaluator(seed):
    rng = np.random.default_rng(seed)
    sp = _program(rng, 150)
    lib, plan = _compile(sp)
    for trial in range(12):
        ints = rng.integers(-9, 10, size=4).astype("int64")
        ints[rng.integers(4)] = 0
        floats = rng.choice([0.0, -0.0, 1.5, -2.25, 7.0, float("nan"), 3.0, -1.0, 1e300], size=4).astype("float64")
        arrays = [ints, floats]
        try:
            want, want_code = evaluate_shape_program(sp, arrays), 0
        except ValueError:
            want, want_code = None, 1
        dims = np.array([4, 4], "int64")
        ptrs = np.array([ints.ctypes.data, floats.ctypes.data], "uint64")
        regs = np.zeros(1 + len(sp.insts), "int64")
        with np.errstate(all="ignore"):
            code = plan(dims.ctypes.data, ptrs.ctypes.data, regs.ctypes.data)
        assert code == want_code, (seed, trial)
        if want is None:
            continue
        for k, inst in enumerate(sp.insts):
            if inst.op == "check":
                continue
            raw = int(regs[1 + k])
            got = struct.unpack("<d", struct.pack("<q", raw))[0] if inst.type == "f64" else raw
            assert _same(got, want[f"s{k}"]), (seed, trial, k, inst, got, want[f"s{k}"])
    del lib
