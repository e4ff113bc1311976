"""Small llvmlite helpers shared by the CPU kernels: dtype mapping, loops, strided tensors.

Values in registers use the natural LLVM type of a dtype (``i1`` for bool); memory uses
NumPy's layout (bool is one byte), so loads and stores convert.  A :class:`TensorRef` is a
pointer plus per-axis extents and element strides; each extent/stride is either a Python
int (known when the graph is compiled, so LLVM sees constants and vectorizes) or an
``i64`` SSA value loaded from the call's parameter array.
"""
from __future__ import annotations

from typing import Callable, Sequence, Union

from llvmlite import ir

from tcomp.ir import dtypes as dt

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
F64 = ir.DoubleType()
PTR = ir.PointerType()

Ext = Union[int, ir.Value]

_VALUE_TYPES = {"bool": I1, "int8": I8, "int16": ir.IntType(16), "int32": I32, "int64": I64,
                "uint8": I8, "float32": F32, "float64": F64}


def value_type(dtype: str) -> ir.Type:
    """The register type of ``dtype``."""
    return _VALUE_TYPES[dtype]


def mem_type(dtype: str) -> ir.Type:
    """The in-memory element type of ``dtype`` (bool is a byte, as in NumPy)."""
    return I8 if dtype == "bool" else _VALUE_TYPES[dtype]


def const(dtype: str, value) -> ir.Constant:
    t = value_type(dtype)
    if dtype == "bool":
        return ir.Constant(t, int(bool(value)))
    if dt.is_float(dtype):
        return ir.Constant(t, float(value))
    bits = t.width
    v = int(value) & ((1 << bits) - 1)
    return ir.Constant(t, v)


def i64(v: Ext) -> ir.Value:
    return ir.Constant(I64, v) if isinstance(v, int) else v


def mul(b: ir.IRBuilder, x: Ext, y: Ext) -> Ext:
    """Multiply extents, folding Python ints so static shapes stay constants."""
    if isinstance(x, int) and isinstance(y, int):
        return x * y
    if x == 1:
        return y
    if y == 1:
        return x
    if x == 0 or y == 0:
        return 0
    return b.mul(i64(x), i64(y), flags=["nsw"])


def add(b: ir.IRBuilder, x: Ext, y: Ext) -> Ext:
    if isinstance(x, int) and isinstance(y, int):
        return x + y
    if x == 0:
        return y
    if y == 0:
        return x
    return b.add(i64(x), i64(y), flags=["nsw"])


def load_value(b: ir.IRBuilder, ptr: ir.Value, dtype: str) -> ir.Value:
    v = b.load(ptr, typ=mem_type(dtype))
    if dtype == "bool":
        return b.icmp_unsigned("!=", v, ir.Constant(I8, 0))
    return v


def store_value(b: ir.IRBuilder, value: ir.Value, ptr: ir.Value, dtype: str) -> None:
    if dtype == "bool":
        value = b.zext(value, I8)
    b.store(value, ptr)


def gep(b: ir.IRBuilder, ptr: ir.Value, dtype: str, offset: Ext) -> ir.Value:
    if offset == 0:
        return ptr
    return b.gep(ptr, [i64(offset)], source_etype=mem_type(dtype), inbounds=True)


class TensorRef:
    """A strided view of memory: ``ptr``, ``dims`` and ``strides`` (elements)."""

    def __init__(self, ptr, dtype: str, dims: Sequence[Ext], strides: Sequence[Ext]):
        self.ptr, self.dtype = ptr, dtype
        self.dims, self.strides = list(dims), list(strides)

    @property
    def ndim(self) -> int:
        return len(self.dims)

    def offset(self, b: ir.IRBuilder, idx: Sequence[Ext]) -> Ext:
        off: Ext = 0
        for i, s in zip(idx, self.strides):
            off = add(b, off, mul(b, i, s))
        return off

    def addr(self, b: ir.IRBuilder, idx: Sequence[Ext]) -> ir.Value:
        return gep(b, self.ptr, self.dtype, self.offset(b, idx))

    def load(self, b, idx):
        return load_value(b, self.addr(b, idx), self.dtype)

    def store(self, b, value, idx):
        store_value(b, value, self.addr(b, idx), self.dtype)


def contiguous_strides(b: ir.IRBuilder, dims: Sequence[Ext]) -> list:
    strides: list = [1] * len(dims)
    acc: Ext = 1
    for a in range(len(dims) - 1, -1, -1):
        strides[a] = acc
        acc = mul(b, acc, dims[a])
    return strides


def numel(b: ir.IRBuilder, dims: Sequence[Ext]) -> Ext:
    n: Ext = 1
    for d in dims:
        n = mul(b, n, d)
    return n


def for_range(b: ir.IRBuilder, stop: Ext, body: Callable[[ir.Value], None], start: Ext = 0,
              name: str = "i") -> None:
    """Emit ``for (i = start; i < stop; ++i) body(i)`` (a canonical counted loop)."""
    pre = b.block
    head = b.append_basic_block(name + ".head")
    loop = b.append_basic_block(name + ".body")
    done = b.append_basic_block(name + ".done")
    b.branch(head)
    b.position_at_end(head)
    iv = b.phi(I64, name=name)
    iv.add_incoming(i64(start), pre)
    b.cbranch(b.icmp_signed("<", iv, i64(stop)), loop, done)
    b.position_at_end(loop)
    body(iv)
    nxt = b.add(iv, ir.Constant(I64, 1), flags=["nsw", "nuw"])
    iv.add_incoming(nxt, b.block)
    b.branch(head)
    b.position_at_end(done)


def while_loop(b: ir.IRBuilder, cond: Callable[[], ir.Value], body: Callable[[], None], name: str) -> None:
    """Emit ``while cond(): body()``; the state lives in allocas (promoted to registers by LLVM)."""
    head = b.append_basic_block(name + ".head")
    loop = b.append_basic_block(name + ".body")
    done = b.append_basic_block(name + ".done")
    b.branch(head)
    b.position_at_end(head)
    b.cbranch(cond(), loop, done)
    b.position_at_end(loop)
    body()
    b.branch(head)
    b.position_at_end(done)


def loop_nest(b: ir.IRBuilder, dims: Sequence[Ext], body: Callable[[list], None], name: str = "i") -> None:
    """Nested loops over ``dims`` in C order; ``body`` gets the index list."""
    def level(k, idx):
        if k == len(dims):
            body(idx)
            return
        for_range(b, dims[k], lambda i: level(k + 1, idx + [i]), name=f"{name}{k}")
    level(0, [])


def reduction_loop(b: ir.IRBuilder, stop: Ext, init: Sequence[ir.Value],
                   step: Callable[[ir.Value, list], list], name: str = "r") -> list:
    """A counted loop carrying values (accumulators) in phis; returns their final values."""
    pre = b.block
    head = b.append_basic_block(name + ".head")
    loop = b.append_basic_block(name + ".body")
    done = b.append_basic_block(name + ".done")
    b.branch(head)
    b.position_at_end(head)
    iv = b.phi(I64, name=name)
    iv.add_incoming(i64(0), pre)
    accs = []
    for v in init:
        p = b.phi(v.type)
        p.add_incoming(v, pre)
        accs.append(p)
    b.cbranch(b.icmp_signed("<", iv, i64(stop)), loop, done)
    b.position_at_end(loop)
    new = step(iv, list(accs))
    nxt = b.add(iv, ir.Constant(I64, 1), flags=["nsw", "nuw"])
    end = b.block
    iv.add_incoming(nxt, end)
    for p, v in zip(accs, new):
        p.add_incoming(v, end)
    b.branch(head)
    b.position_at_end(done)
    return accs


def nested_reduction(b: ir.IRBuilder, dims: Sequence[Ext], init: list,
                     step: Callable[[list, list], list], name: str = "r") -> list:
    """Nested carried loops over ``dims``; ``step(idx, accs) -> accs``."""
    def level(k, idx, accs):
        if k == len(dims):
            return step(idx, accs)
        return reduction_loop(b, dims[k], accs, lambda i, a: level(k + 1, idx + [i], a), name=f"{name}{k}")
    return level(0, [], list(init))


def intrinsic(module: ir.Module, name: str, ret: ir.Type, args: Sequence[ir.Type]) -> ir.Function:
    """Declare (once) an LLVM intrinsic such as ``llvm.floor.f32``."""
    if name in module.globals:
        return module.globals[name]
    return ir.Function(module, ir.FunctionType(ret, list(args)), name=name)


def type_suffix(t: ir.Type) -> str:
    if isinstance(t, ir.VectorType):
        return f"v{t.count}{type_suffix(t.element)}"
    if isinstance(t, ir.FloatType):
        return "f32"
    if isinstance(t, ir.DoubleType):
        return "f64"
    return f"i{t.width}"


def call_intrinsic(b: ir.IRBuilder, base: str, *args: ir.Value) -> ir.Value:
    """``llvm.<base>.<type>(args)`` on the type of the first argument."""
    t = args[0].type
    fn = intrinsic(b.module, f"llvm.{base}.{type_suffix(t)}", t, [a.type for a in args])
    return b.call(fn, list(args))
