"""The ``plan`` entry of a host program: the shape program as straight-line LLVM code.

``int32 <sym>_plan(const int64 *dims, void *const *inputs, int64 *regs)`` (see
``host_program``): every instruction of ``ShapeProgram.insts`` becomes a few ``i64``/``f64``
instructions with the semantics of ``kernel_program.SCALAR_OPS`` (Python's floor division
and modulo, total at zero; NaN-aware max/min; NumPy's wrapping casts), each register is
stored into ``regs`` as soon as it is computed (a failed check's message reads them), and a
check that fails returns its code at once.  No loops, no calls but ``llvm.floor``/``ceil``/
``fabs`` intrinsics, no memory writes but ``regs``: it runs before anything touches memory.
"""
from __future__ import annotations

from llvmlite import ir

from tcomp.ir import dtypes as dt

from . import irutil as u


def reg_index(r: str) -> int:
    return int(r[1:])


def truth(b, v):
    """``v != 0`` of an i64 or f64 register."""
    if v.type == u.F64:
        return b.fcmp_unordered("!=", v, ir.Constant(u.F64, 0.0))
    return b.icmp_signed("!=", v, ir.Constant(u.I64, 0))


class PlanEmitter:
    """Emits ``plan`` for a :class:`host_program.HostProgram` (its layout of ``regs``)."""

    def __init__(self, hp):
        self.kp, self.module, self.types = hp.kp, hp.module, hp.types
        self.n_host, self.out_slots, self.dim_off, self.plan_name = hp.n_host, hp.out_slots, hp.dim_off, hp.plan_name

    def emit(self) -> None:
        kp = self.kp
        fn = ir.Function(self.module, ir.FunctionType(u.I32, [u.PTR, u.PTR, u.PTR]), name=self.plan_name)
        dims, inputs, regs = fn.args
        for a in fn.args:
            a.add_attribute("noalias")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        val: dict = {}
        checked = set()  # registers already checked: registers never change, so a repeat always passes

        def ref(r, want=None):
            if isinstance(r, str):
                v, t = val[r], self.types[reg_index(r)]
            elif isinstance(r, float):
                v, t = ir.Constant(u.F64, r), "f64"
            else:
                v, t = ir.Constant(u.I64, int(r)), "i64"
            if want == "f64" and t == "i64":
                return b.sitofp(v, u.F64)
            return v

        def is_f(r):
            return isinstance(r, float) or (isinstance(r, str) and self.types[reg_index(r)] == "f64")

        def store(slot, v):
            if v.type == u.F64:
                v = b.bitcast(v, u.I64)
            b.store(v, b.gep(regs, [ir.Constant(u.I64, slot)], source_etype=u.I64, inbounds=True))

        for k, inst in enumerate(kp.shape.insts):
            if inst.op == "check":
                (c,) = inst.args
                code = ir.Constant(u.I32, inst.attr("code"))
                if not isinstance(c, str):
                    if not c:
                        b.ret(code)
                        b.position_at_end(fn.append_basic_block(f"dead{k}"))
                    continue
                if c in checked:  # (a wide graph checks one dims equality for each kernel that needs it)
                    continue
                checked.add(c)
                ok, bad = fn.append_basic_block(f"ok{k}"), fn.append_basic_block(f"fail{k}")
                b.cbranch(truth(b, ref(c)), ok, bad)
                b.position_at_end(bad)
                b.ret(code)
                b.position_at_end(ok)
                continue
            v = self._plan_inst(b, inst, ref, is_f, dims, inputs)
            val[f"s{k}"] = v
            store(self.n_host + k, v)
        store(0, ref(kp.workspace))
        for (lo, _), o in zip(self.out_slots, kp.outputs):
            for a, d in enumerate(kp.values[o.value].dims):
                store(lo + a, ref(d))
        b.ret(ir.Constant(u.I32, 0))

    def _plan_inst(self, b, inst, ref, is_f, dims, inputs):
        op, t = inst.op, inst.type
        if op == "dim":
            k = self.dim_off[inst.attr("input")] + inst.attr("axis")
            return b.load(b.gep(dims, [ir.Constant(u.I64, k)], source_etype=u.I64, inbounds=True), typ=u.I64)
        if op == "load":
            dtype = inst.attr("dtype")
            base = b.load(b.gep(inputs, [ir.Constant(u.I64, inst.attr("input"))], source_etype=u.PTR, inbounds=True),
                          typ=u.PTR)
            x = u.load_value(b, u.gep(b, base, dtype, ref(inst.args[0])), dtype)
            return self._to_reg(b, x, dtype, t)
        if op == "cast":
            return self._cast(b, ref(inst.args[0]), inst.attr("dtype"), t)
        if t == "f64" and op not in ("select",):
            args = [ref(a, "f64") for a in inst.args]
        else:
            args = [ref(a) for a in inst.args]
        fl = t == "f64" or any(is_f(a) for a in inst.args)
        if op in ("eq", "ne", "lt", "le", "gt", "ge"):
            sym = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
            if fl:
                x, y = (ref(a, "f64") for a in inst.args)
                c = b.fcmp_unordered("!=", x, y) if op == "ne" else b.fcmp_ordered(sym, x, y)
            else:
                c = b.icmp_signed(sym, *args)
            return b.zext(c, u.I64)
        if op in ("and", "or"):
            x, y = (truth(b, a) for a in args)
            return b.zext(b.and_(x, y) if op == "and" else b.or_(x, y), u.I64)
        if op == "not":
            return b.zext(b.not_(truth(b, args[0])), u.I64)
        if op == "select":
            c, x, y = args
            if t == "f64":
                x, y = ref(inst.args[1], "f64"), ref(inst.args[2], "f64")
            return b.select(truth(b, c), x, y)
        if t == "f64":
            return self._f64_op(b, op, args)
        return self._i64_op(b, op, args)

    @staticmethod
    def _i64_op(b, op, args):
        zero, one = ir.Constant(u.I64, 0), ir.Constant(u.I64, 1)
        if op == "add":
            return b.add(*args)
        if op == "sub":
            return b.sub(*args)
        if op == "mul":
            return b.mul(*args)
        if op in ("floordiv", "mod"):  # Python semantics, total: x // 0 == x % 0 == 0
            x, y = args
            y0 = b.icmp_signed("==", y, zero)
            ys = b.select(y0, one, y)
            q, r = b.sdiv(x, ys), b.srem(x, ys)
            fix = b.and_(b.icmp_signed("!=", r, zero), b.icmp_signed("<", b.xor(r, ys), zero))
            res = b.select(fix, b.sub(q, one), q) if op == "floordiv" else b.select(fix, b.add(r, ys), r)
            return b.select(y0, zero, res)
        if op in ("max", "min"):
            x, y = args
            return b.select(b.icmp_signed(">=" if op == "max" else "<=", x, y), x, y)
        if op == "neg":
            return b.sub(zero, args[0])
        if op == "abs":
            x = args[0]
            return b.select(b.icmp_signed("<", x, zero), b.sub(zero, x), x)
        if op == "sign":
            x = args[0]
            return b.sub(b.zext(b.icmp_signed(">", x, zero), u.I64), b.zext(b.icmp_signed("<", x, zero), u.I64))
        if op in ("ceil", "floor"):
            return args[0]
        raise TypeError(f"shape program: no i64 lowering of {op!r}")

    @staticmethod
    def _f64_op(b, op, args):
        zero = ir.Constant(u.F64, 0.0)
        if op in ("add", "sub", "mul", "truediv"):
            return {"add": b.fadd, "sub": b.fsub, "mul": b.fmul, "truediv": b.fdiv}[op](*args)
        if op == "floordiv":  # NumPy's npy_divmod, step by step (floor(a / b) differs in rounding and at inf)
            x, y = args
            one = ir.Constant(u.F64, 1.0)
            mod = b.frem(x, y)
            div = b.fdiv(b.fsub(x, mod), y)
            adjust = b.and_(b.fcmp_unordered("!=", mod, zero),
                            b.xor(b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", mod, zero)))
            div = b.select(adjust, b.fsub(div, one), div)
            fl = u.call_intrinsic(b, "floor", div)
            fl = b.select(b.fcmp_ordered(">", b.fsub(div, fl), ir.Constant(u.F64, 0.5)), b.fadd(fl, one), fl)
            fl = b.select(b.fcmp_unordered("!=", div, zero), fl, u.call_intrinsic(b, "copysign", zero, b.fdiv(x, y)))
            return b.select(b.fcmp_ordered("==", y, zero), b.fdiv(x, y), fl)
        if op == "mod":
            x, y = args
            r = b.frem(x, y)
            fix = b.and_(b.fcmp_ordered("!=", r, zero),
                         b.xor(b.fcmp_ordered("<", r, zero), b.fcmp_ordered("<", y, zero)))
            r = b.select(fix, b.fadd(r, y), r)
            # NumPy's mod takes the divisor's sign, a zero result included (np.mod(3.0, -1.0) is -0.0)
            return b.select(b.fcmp_ordered("==", r, zero), u.call_intrinsic(b, "copysign", zero, y), r)
        if op in ("max", "min"):  # a if a >= b (a <= b) or b is NaN else b
            x, y = args
            keep = b.or_(b.fcmp_ordered(">=" if op == "max" else "<=", x, y), b.fcmp_unordered("uno", y, y))
            return b.select(keep, x, y)
        if op == "neg":
            return b.fneg(args[0])
        if op == "abs":
            return u.call_intrinsic(b, "fabs", args[0])
        if op == "sign":
            x = args[0]
            inner = b.select(b.fcmp_ordered("<", x, zero), ir.Constant(u.F64, -1.0),
                             b.select(b.fcmp_unordered("uno", x, x), x, zero))
            return b.select(b.fcmp_ordered(">", x, zero), ir.Constant(u.F64, 1.0), inner)
        if op in ("ceil", "floor"):  # + 0.0: Python's float(math.floor(-0.5)) is 0.0, not -0.0
            return b.fadd(u.call_intrinsic(b, op, args[0]), zero)
        raise TypeError(f"shape program: no f64 lowering of {op!r}")

    @staticmethod
    def _to_reg(b, x, dtype, t):
        """A loaded element of ``dtype`` as an ``i64``/``f64`` register."""
        if dt.is_float(dtype):
            x = x if dtype == "float64" else b.fpext(x, u.F64)
            return x if t == "f64" else b.fptosi(x, u.I64)
        if dtype == "bool" or dtype.startswith("uint"):
            x = b.zext(x, u.I64)
        elif x.type != u.I64:
            x = b.sext(x, u.I64)
        return b.sitofp(x, u.F64) if t == "f64" else x

    @staticmethod
    def _cast(b, x, dtype, t):
        """NumPy's ``astype(dtype)`` of a register, back in register form (ints wrap)."""
        if dtype == "bool":
            c = b.fcmp_unordered("!=", x, ir.Constant(u.F64, 0.0)) if x.type == u.F64 else \
                b.icmp_signed("!=", x, ir.Constant(u.I64, 0))
            c = b.zext(c, u.I64)
            return b.sitofp(c, u.F64) if t == "f64" else c
        if dt.is_float(dtype):
            if x.type == u.I64:
                x = b.sitofp(x, u.F64)
            if dtype != "float64":
                x = b.fpext(b.fptrunc(x, u.value_type(dtype)), u.F64)
            return x if t == "f64" else b.fptosi(x, u.I64)
        if x.type == u.F64:
            x = b.fptosi(x, u.I64)
        width = u.value_type(dtype).width
        if width < 64:
            n = b.trunc(x, ir.IntType(width))
            x = b.zext(n, u.I64) if dtype.startswith("uint") else b.sext(n, u.I64)
        return b.sitofp(x, u.F64) if t == "f64" else x


__all__ = ["PlanEmitter", "truth", "reg_index"]
