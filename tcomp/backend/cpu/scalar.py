"""Scalar lowering of every ``elemwise`` op, for every dtype it accepts.

One function, :func:`emit_elemwise`, turns ``op(args)`` into LLVM values; kernels call it
per element inside their loops (so the same code serves plain elementwise nodes, inlined
producer chains and ``fused`` bodies).  Semantics are the reference interpreter's,
including its definitions where NumPy is undefined or raises: integer ``//`` and ``%`` by
zero give 0, ``INT_MIN // -1`` wraps, integer ``**`` with a negative exponent is 0 except
for bases 1 and -1, float -> int casts give 0 for nan/inf/out-of-range values.
Transcendentals go through :mod:`tcomp.backend.mathlib` (vectorizable polynomials, no libm).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from tcomp.ir import dtypes as dt

from . import irutil as u

_FLOAT_UNARY = ("exp", "log", "log1p", "expm1", "tanh", "sigmoid", "softplus", "sin", "cos", "erf", "sqrt",
                "arctan", "log2", "log10", "exp2")


def _mathlib():
    from tcomp.backend import mathlib

    return mathlib


def has_fma() -> bool:
    import llvmlite.binding as llvm

    from tcomp.runtime.engine import target_machine  # noqa: F401  (initializes LLVM)

    return "+fma" in llvm.get_host_cpu_features().flatten().split(",")


_HAS_FMA = None


def _fma(b, x, y, z):
    global _HAS_FMA
    if _HAS_FMA is None:
        _HAS_FMA = has_fma()
    if _HAS_FMA:
        return u.call_intrinsic(b, "fma", x, y, z)
    return b.fadd(b.fmul(x, y), z)


def to_bool(b: ir.IRBuilder, v: ir.Value, dtype: str) -> ir.Value:
    """NumPy truthiness: nonzero (nan is true)."""
    if dtype == "bool":
        return v
    if dt.is_float(dtype):
        return b.fcmp_unordered("!=", v, ir.Constant(v.type, 0.0))
    return b.icmp_unsigned("!=", v, ir.Constant(v.type, 0))


def cast(b: ir.IRBuilder, v: ir.Value, src: str, dst: str) -> ir.Value:
    """``astype`` semantics of the reference (float -> int: nan/inf/out of range give 0)."""
    if src == dst:
        return v
    tt = u.value_type(dst)
    if dst == "bool":
        return to_bool(b, v, src)
    if src == "bool":
        return b.uitofp(v, tt) if dt.is_float(dst) else b.zext(v, tt)
    if dt.is_float(dst):
        if dt.is_float(src):
            return b.fpext(v, tt) if dt.itemsize(dst) > dt.itemsize(src) else b.fptrunc(v, tt)
        return b.sitofp(v, tt) if dt.kind(src) == "i" else b.uitofp(v, tt)
    if dt.is_float(src):
        return _float_to_int(b, v, src, dst)
    sw, dw = v.type.width, tt.width
    if dw < sw:
        return b.trunc(v, tt)
    if dw > sw:
        return b.sext(v, tt) if dt.kind(src) == "i" else b.zext(v, tt)
    return v


def _float_to_int(b, v, src, dst):
    info = np.iinfo(dst)
    ft = v.type
    fdt = np.dtype(src).type
    t = u.call_intrinsic(b, "trunc", v)
    lo, hi = fdt(info.min), fdt(info.max)
    ok = b.and_(b.fcmp_ordered(">=", t, ir.Constant(ft, float(lo))),
                b.fcmp_ordered("<=", t, ir.Constant(ft, float(hi))))
    safe = b.select(ok, t, ir.Constant(ft, 0.0))
    tt = u.value_type(dst)
    if float(hi) > info.max:
        # the bound rounds up to 2**(bits-1): the reference keeps that value and NumPy's
        # x86 conversion of it yields INT_MIN; fptosi of it would be poison, so select it.
        top = b.fcmp_ordered("==", t, ir.Constant(ft, float(hi)))
        safe = b.select(top, ir.Constant(ft, 0.0), safe)
        r = b.fptosi(safe, tt) if dt.kind(dst) == "i" else b.fptoui(safe, tt)
        return b.select(top, ir.Constant(tt, int(info.min) & ((1 << tt.width) - 1)), r)
    return b.fptosi(safe, tt) if dt.kind(dst) == "i" else b.fptoui(safe, tt)


def numpy_astype(b: ir.IRBuilder, v: ir.Value, src: str, dst: str) -> ir.Value:
    """NumPy's plain ``astype`` (used by the reference where it assigns, e.g. set_subtensor):
    like :func:`cast` except float -> int, which is C's conversion as x86 executes it: a
    32/64-bit ``cvtt`` whose nan/out-of-range result is INT_MIN, truncated for 8/16-bit."""
    if not (dt.is_float(src) and dt.is_int(dst)):
        return cast(b, v, src, dst)
    tt = u.value_type(dst)
    wide = u.I64 if tt.width == 64 else u.I32
    bits = wide.width
    t = u.call_intrinsic(b, "trunc", v)
    ft = v.type
    ok = b.and_(b.fcmp_ordered(">=", t, ir.Constant(ft, -float(2 ** (bits - 1)))),
                b.fcmp_ordered("<", t, ir.Constant(ft, float(2 ** (bits - 1)))))
    r = b.fptosi(b.select(ok, t, ir.Constant(ft, 0.0)), wide)
    r = b.select(ok, r, ir.Constant(wide, 1 << (bits - 1)))
    return b.trunc(r, tt) if tt.width < bits else r


def _zero(v):
    return ir.Constant(v.type, 0.0 if isinstance(v.type, (ir.FloatType, ir.DoubleType)) else 0)


def _one(v):
    return ir.Constant(v.type, 1.0 if isinstance(v.type, (ir.FloatType, ir.DoubleType)) else 1)


# -- unary ----------------------------------------------------------------------------


def _unary(b, op, v, src, out):
    k = dt.kind(src)
    if op in _FLOAT_UNARY:
        x = cast(b, v, src, out)
        if op == "sqrt":
            return u.call_intrinsic(b, "sqrt", x)
        return _mathlib().emit_unary(b, op, x)
    if op == "logical_not":
        return b.not_(to_bool(b, v, src))
    if op == "bitwise_not":                             # ints: two's complement; bools (i1): not
        return b.not_(v)
    if op in ("isnan", "isinf"):
        if k != "f":                                    # ints and bools are never nan/inf
            return b.icmp_unsigned("!=", v, v)
        if op == "isnan":
            return b.fcmp_unordered("uno", v, v)
        return b.fcmp_ordered("==", u.call_intrinsic(b, "fabs", v), ir.Constant(v.type, float("inf")))
    if op == "neg":
        return b.fneg(v) if k == "f" else b.sub(_zero(v), v)
    if op == "abs":
        if k == "f":
            return u.call_intrinsic(b, "fabs", v)
        if k == "u":
            return v
        return b.select(b.icmp_signed("<", v, _zero(v)), b.sub(_zero(v), v), v)
    if op == "sign":
        if k == "f":
            one = _one(v)
            neg = b.select(b.fcmp_ordered("<", v, _zero(v)), b.fneg(one), v)
            return b.select(b.fcmp_ordered(">", v, _zero(v)), one, neg)
        if k == "u":
            return b.zext(b.icmp_unsigned("!=", v, _zero(v)), v.type)
        gt = b.zext(b.icmp_signed(">", v, _zero(v)), v.type)
        lt = b.zext(b.icmp_signed("<", v, _zero(v)), v.type)
        return b.sub(gt, lt)
    if op in ("floor", "ceil", "round"):
        if k != "f":
            return v
        return u.call_intrinsic(b, {"floor": "floor", "ceil": "ceil", "round": "roundeven"}[op], v)
    if op == "relu":
        if k == "f":
            return b.select(b.fcmp_ordered("<", v, _zero(v)), _zero(v), v)
        if k == "u":
            return v
        return b.select(b.icmp_signed("<", v, _zero(v)), _zero(v), v)
    raise KeyError(f"cpu backend: no scalar lowering for unary op {op!r}")


# -- binary ---------------------------------------------------------------------------

_FCMP = {"eq": ("==", True), "neq": ("!=", False), "lt": ("<", True), "le": ("<=", True),
         "gt": (">", True), "ge": (">=", True)}
_ICMP = {"eq": "==", "neq": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _while(b, init: list, cond, body, name: str) -> list:
    """``while cond(vals): vals = body(vals)`` with the values carried in phis."""
    pre = b.block
    head = b.append_basic_block(name + ".head")
    loop = b.append_basic_block(name + ".body")
    done = b.append_basic_block(name + ".done")
    b.branch(head)
    b.position_at_end(head)
    phis = []
    for v in init:
        p = b.phi(v.type)
        p.add_incoming(v, pre)
        phis.append(p)
    b.cbranch(cond(phis), loop, done)
    b.position_at_end(loop)
    new = body(phis)
    for p, v in zip(phis, new):
        p.add_incoming(v, b.block)
    b.branch(head)
    b.position_at_end(done)
    return phis


def _fmod(b, x, y):
    """C ``fmod`` without libm, exact: binary long division of |x| by |y|.

    ``t`` runs over |y| * 2**j from the largest not above |x| down to |y|; each
    ``r -= t`` is exact (Sterbenz: t <= r < 2t), so no quotient is ever rounded.
    """
    ax = u.call_intrinsic(b, "fabs", x)
    ay = u.call_intrinsic(b, "fabs", y)
    zero = _zero(x)
    inf = ir.Constant(x.type, float("inf"))
    special = b.or_(b.or_(b.fcmp_ordered("==", ay, zero), b.fcmp_unordered("==", ax, inf)),
                    b.fcmp_unordered("uno", x, y))
    y_inf = b.fcmp_ordered("==", ay, inf)
    valid = b.not_(b.or_(special, y_inf))
    t0 = b.select(valid, ay, zero)
    half = ir.Constant(x.type, 0.5)
    two = ir.Constant(x.type, 2.0)
    (t,) = _while(b, [t0], lambda v: b.and_(valid, b.fcmp_ordered("<=", v[0], b.fmul(ax, half))),
                  lambda v: [b.fmul(v[0], two)], "fmod.up")
    r, _t = _while(b, [ax, t], lambda v: b.and_(valid, b.fcmp_ordered(">=", v[1], ay)),
                   lambda v: [b.select(b.fcmp_ordered(">=", v[0], v[1]), b.fsub(v[0], v[1]), v[0]),
                              b.fmul(v[1], half)], "fmod.down")
    res = u.call_intrinsic(b, "copysign", r, x)
    res = b.select(y_inf, x, res)
    return b.select(special, ir.Constant(x.type, float("nan")), res)


def _float_divmod(b, x, y):
    """NumPy's ``npy_divmod`` for floats: (floor quotient, modulus)."""
    zero, one = _zero(x), _one(x)
    mod = _fmod(b, x, y)
    div = b.fdiv(b.fsub(x, mod), y)
    mod_nz = b.fcmp_unordered("!=", mod, zero)
    flip = b.and_(mod_nz, b.xor(b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", mod, zero)))
    mod2 = b.select(flip, b.fadd(mod, y), mod)
    div = b.select(flip, b.fsub(div, one), div)
    mod2 = b.select(mod_nz, mod2, u.call_intrinsic(b, "copysign", zero, y))
    fl = u.call_intrinsic(b, "floor", div)
    fl = b.select(b.fcmp_ordered(">", b.fsub(div, fl), ir.Constant(x.type, 0.5)), b.fadd(fl, one), fl)
    fl = b.select(b.fcmp_unordered("!=", div, zero), fl, u.call_intrinsic(b, "copysign", zero, b.fdiv(x, y)))
    y_zero = b.fcmp_ordered("==", y, zero)
    return b.select(y_zero, b.fdiv(x, y), fl), b.select(y_zero, mod, mod2)


def _int_divmod(b, x, y, signed):
    zero, one = _zero(x), _one(x)
    y_zero = b.icmp_unsigned("==", y, zero)
    if not signed:
        safe = b.select(y_zero, one, y)
        return (b.select(y_zero, zero, b.udiv(x, safe)), b.select(y_zero, zero, b.urem(x, safe)))
    minus1 = ir.Constant(x.type, -1)
    y_m1 = b.icmp_signed("==", y, minus1)
    safe = b.select(b.or_(y_zero, y_m1), one, y)
    q = b.sdiv(x, safe)
    r = b.srem(x, safe)
    adjust = b.and_(b.icmp_signed("!=", r, zero), b.xor(b.icmp_signed("<", r, zero), b.icmp_signed("<", y, zero)))
    q = b.select(adjust, b.sub(q, one), q)
    r = b.select(adjust, b.add(r, y), r)
    q = b.select(y_m1, b.sub(zero, x), q)  # wraps for INT_MIN like NumPy
    r = b.select(y_m1, zero, r)
    return b.select(y_zero, zero, q), b.select(y_zero, zero, r)


def _int_pow(b, x, y, signed):
    zero, one = _zero(x), _one(x)
    neg = b.icmp_signed("<", y, zero) if signed else ir.Constant(u.I1, 0)
    e0 = b.select(neg, zero, y)
    pre = b.block
    head = b.append_basic_block("ipow.head")
    body = b.append_basic_block("ipow.body")
    done = b.append_basic_block("ipow.done")
    b.branch(head)
    b.position_at_end(head)
    r = b.phi(x.type)
    base = b.phi(x.type)
    e = b.phi(x.type)
    r.add_incoming(one, pre)
    base.add_incoming(x, pre)
    e.add_incoming(e0, pre)
    b.cbranch(b.icmp_unsigned("!=", e, zero), body, done)
    b.position_at_end(body)
    odd = b.icmp_unsigned("!=", b.and_(e, one), zero)
    r.add_incoming(b.select(odd, b.mul(r, base), r), body)
    base.add_incoming(b.mul(base, base), body)
    e.add_incoming(b.lshr(e, one), body)
    b.branch(head)
    b.position_at_end(done)
    if not signed:
        return r
    y_odd = b.icmp_unsigned("!=", b.and_(y, one), zero)
    m1 = ir.Constant(x.type, -1)
    exact = b.select(b.icmp_signed("==", x, one), one,
                     b.select(b.icmp_signed("==", x, m1), b.select(y_odd, m1, one), zero))
    return b.select(neg, exact, r)


def _minmax(b, op, x, y, k):
    if k == "b":
        return b.or_(x, y) if op == "maximum" else b.and_(x, y)
    if k == "f":
        # llvm.maximum/minimum propagate NaN like np.maximum and vectorize as reductions
        return u.call_intrinsic(b, op, x, y)
    cmp = b.icmp_signed if k == "i" else b.icmp_unsigned
    return b.select(cmp(">" if op == "maximum" else "<", x, y), x, y)


def _binary(b, op, x, y, cd):
    """``op`` on two values already cast to the compute dtype ``cd``."""
    k = dt.kind(cd)
    if op in _FCMP:
        if k == "f":
            sym, ordered = _FCMP[op]
            return (b.fcmp_ordered if ordered else b.fcmp_unordered)(sym, x, y)
        cmp = b.icmp_signed if k == "i" else b.icmp_unsigned
        return cmp(_ICMP[op], x, y)
    if op in ("logical_and", "logical_or", "logical_xor"):
        return {"logical_and": b.and_, "logical_or": b.or_, "logical_xor": b.xor}[op](x, y)
    if op in ("bitwise_and", "bitwise_or", "bitwise_xor"):   # ints and bools, on the promoted dtype
        return {"bitwise_and": b.and_, "bitwise_or": b.or_, "bitwise_xor": b.xor}[op](x, y)
    if op in ("maximum", "minimum"):
        return _minmax(b, op, x, y, k)
    if k == "f":
        if op == "add":
            return b.fadd(x, y)
        if op == "sub":
            return b.fsub(x, y)
        if op == "mul":
            return b.fmul(x, y)
        if op == "truediv":
            return b.fdiv(x, y)
        if op == "floordiv":
            return _float_divmod(b, x, y)[0]
        if op == "mod":
            return _float_divmod(b, x, y)[1]
        if op == "pow":
            return _mathlib().emit_pow(b, x, y)
        if op == "arctan2":
            return _mathlib().emit_atan2(b, x, y)
    else:
        signed = k == "i"
        if op == "add":
            return b.add(x, y)
        if op == "sub":
            return b.sub(x, y)
        if op == "mul":
            return b.mul(x, y)
        if op == "floordiv":
            return _int_divmod(b, x, y, signed)[0]
        if op == "mod":
            return _int_divmod(b, x, y, signed)[1]
        if op == "pow":
            return _int_pow(b, x, y, signed)
    raise KeyError(f"cpu backend: no scalar lowering for {op!r} on {cd}")


def emit_elemwise(b: ir.IRBuilder, op: str, attrs: dict, args: list, arg_dtypes: list, out: str) -> ir.Value:
    """The value of elementwise ``op`` on register values ``args`` of ``arg_dtypes``.

    ``out`` is the node's result dtype (from the op's type rule).
    """
    if op == "cast":
        return cast(b, args[0], arg_dtypes[0], out)
    if op == "where":
        c, x, y = args
        return b.select(to_bool(b, c, arg_dtypes[0]), cast(b, x, arg_dtypes[1], out), cast(b, y, arg_dtypes[2], out))
    if len(args) == 1:
        return _unary(b, op, args[0], arg_dtypes[0], out)
    x, y = args
    if op in ("logical_and", "logical_or", "logical_xor"):
        return _binary(b, op, to_bool(b, x, arg_dtypes[0]), to_bool(b, y, arg_dtypes[1]), "bool")
    cd = out if out != "bool" else dt.promote_types(*arg_dtypes)
    return _binary(b, op, cast(b, x, arg_dtypes[0], cd), cast(b, y, arg_dtypes[1], cd), cd)
