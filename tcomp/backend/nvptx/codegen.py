"""Kernel program -> one LLVM module of grid kernels (NVPTX, or the CPU grid emulator).

Each kernel of the program becomes one function written against
:class:`~tcomp.backend.nvptx.target.KernelBuilder`, so the PTX and the emulated code come
from the same generator.  Scalar semantics are the CPU backend's op table
(``backend/cpu/scalar.py``) and the shared polynomial transcendentals
(``backend/mathlib*.py``): both emit only intrinsics NVPTX selects (sqrt, fabs, floor, ceil,
roundeven, copysign, fma, maximum/minimum), never ``llvm.exp``/``llvm.log`` (LLVM aborts
the process on those for NVPTX).

Launch shapes (:class:`LaunchSpec`):

* ``pointwise`` kernels (elemwise, fused, copy, transpose, scalar, arange, concat/stack)
  run a grid-stride loop over the flat output index; views are read through their strides.
* ``rows`` kernels (reduce, fused with a reduction, softmax) give each block one output row
  (a grid-stride loop over rows): each thread accumulates a strided slice, then a tree
  reduction in block memory (``BLOCK`` is a power of two, the tree is unrolled).  A
  reduction also gets a two-pass form (``LaunchSpec.split``: per-part partials to scratch,
  then a combine per row) that the host launches when a few long rows would leave most of
  the GPU idle (``host.split_parts``).
* matmul gives each block a 64 x 64 output tile: per 16-wide K step, 256 threads stage an A
  and a B tile in block memory, barrier, and each accumulates a 4 x 4 register block.
* gather/update/cumulative/random: see ``codegen_data.py``; conv2d and its gradients:
  ``codegen_conv.py`` (direct, one thread per output element); pooling: ``codegen_pool.py``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from llvmlite import ir

from tcomp.backend.cpu import irutil as u
from tcomp.backend.cpu.scalar import cast, emit_elemwise
from tcomp.ir import dtypes as dt
from tcomp.ir import get_op
from tcomp.ir.ops.fused import CONTRACTIONS, step_types
from tcomp.ir.types import TensorType

from .target import KernelBuilder, new_module

_I64 = u.I64


@dataclass(frozen=True)
class LaunchSpec:
    """How the host launches kernel ``name``.  ``kind`` 'prod': one thread per element of the
    product of ``work`` (DimRefs), grid-stride; 'rows': one block per row of that product;
    'tiles': ``work`` = (batch dims, M, N), one block per 64 x 64 tile of each batch."""
    name: str
    kind: str
    work: object
    slots: tuple    # value ids whose addresses fill the ptrs table, in order
    params: tuple   # registers filling the params table, in order
    index: int      # the kernel's position in the program
    #: reductions: (partial LaunchSpec, combine LaunchSpec, reduced dims, accumulator
    #: components), the two-pass form the host launches instead when rows are few and long
    split: tuple = ()


class Ctx:
    """One kernel being generated: the builder plus the program it reads values from."""

    def __init__(self, prog, kernel, kb: KernelBuilder):
        self.p, self.k, self.kb, self.b = prog, kernel, kb, kb.b

    def value(self, v):
        return self.p.values[v]

    def ref(self, v) -> u.TensorRef:
        val = self.value(v)
        dims = [self.kb.dim(d) for d in val.dims]
        s = val.storage
        if s.kind == "view" and not s.contiguous:
            strides = [self.kb.dim(x) for x in s.strides]
        else:
            strides = u.contiguous_strides(self.b, dims)
        return u.TensorRef(self.kb.ptr(v), val.dtype, dims, strides)

    def scalar_arg(self, a) -> ir.Value:
        """A register operand as a value of its graph dtype."""
        ref = a.scalar
        is_f = isinstance(ref, float) or (isinstance(ref, str) and self.p.shape.insts[int(ref[1:])].type == "f64")
        if is_f:
            return cast(self.b, self.kb.fdim(ref), "float64", a.dtype)
        return cast(self.b, u.i64(self.kb.dim(ref)), "int64", a.dtype)


def unravel(b, linear, dims) -> list:
    idx, rest = [], linear
    for d in reversed(dims):
        if isinstance(d, int) and d == 1:
            idx.append(ir.Constant(_I64, 0))
            continue
        d = u.i64(d)
        idx.append(b.urem(rest, d))
        rest = b.udiv(rest, d)
    return list(reversed(idx))


def bidx(dims, idx) -> list:
    """Broadcasting index of an operand of ``dims`` at the iteration index ``idx`` (only
    static 1 dims broadcast, as in the graph types)."""
    r = len(dims)
    sub = idx[len(idx) - r:] if r else []
    return [ir.Constant(_I64, 0) if (isinstance(d, int) and d == 1) else i for d, i in zip(dims, sub)]


def _space_count(ctx, dims):
    n = 1
    for d in dims:
        n = u.mul(ctx.b, n, ctx.kb.dim(d))
    return n


def _emit_pointwise(ctx, space, point) -> None:
    """Grid-stride loop over ``space``; ``point(idx)`` stores the element at ``idx``."""
    dims = [ctx.kb.dim(d) for d in space]
    n = _space_count(ctx, space)

    def body(i):
        point(unravel(ctx.b, i, dims))
    ctx.kb.pointwise(n, body)
    return ("prod", tuple(space))


# -- elementwise and fused ---------------------------------------------------------------------

def _load_arg(ctx, a, idx):
    if a.value is None:
        return ctx.scalar_arg(a), a.dtype
    val = ctx.value(a.value)
    r = ctx.ref(a.value)
    return r.load(ctx.b, bidx(val.dims, idx)), val.dtype


def gen_elemwise(ctx) -> None:
    k = ctx.k
    out = ctx.value(k.writes[0])
    oref = ctx.ref(k.writes[0])
    attrs = dict(k.attrs)

    def point(idx):
        if k.op == "alloc":
            v, d = _load_arg(ctx, k.args[0], idx)
            r = cast(ctx.b, v, d, out.dtype)
        else:
            loaded = [_load_arg(ctx, a, idx) for a in k.args]
            r = emit_elemwise(ctx.b, k.op, get_op(k.op).normalize_attrs(attrs), [x for x, _ in loaded],
                              [d for _, d in loaded], out.dtype)
        oref.store(ctx.b, r, idx)
    return _emit_pointwise(ctx, k.space, point)


def _graph_type(val) -> TensorType:
    return TensorType(val.dtype, tuple(d if isinstance(d, int) else None for d in val.dims))


class FusedBody:
    """Evaluates a fused body at an iteration index (the CPU backend's semantics, see
    ``ir/ops/fused.py``): layout steps read their operand through the step's index map."""

    def __init__(self, ctx):
        self.ctx = ctx
        k = ctx.k
        self.attrs = dict(k.attrs)
        self.body = self.attrs["body"]
        self.stypes = step_types(self.body, [_graph_type(ctx.value(a.value)) if a.value is not None
                                             else TensorType(a.dtype, ()) for a in k.args])
        self.params = dict(k.params)
        extra = tuple(self.attrs.get("outputs", ()))
        self.extra = extra
        need = {len(self.body) - 1, *extra}
        for j in range(len(self.body) - 1, -1, -1):
            if j in need:
                need.update(int(r[1:]) for r in self.body[j][2] if r[0] == "%")
        self.needed = sorted(need)

    def _operand(self, i, idx_for):
        ctx = self.ctx
        a = ctx.k.args[i]
        if a.value is None:
            return ctx.scalar_arg(a), a.dtype
        val = ctx.value(a.value)
        return ctx.ref(a.value).load(ctx.b, idx_for(val.dims)), val.dtype

    def step(self, j, idx, memo):
        ctx, b = self.ctx, self.ctx.b
        op, sattrs, refs = self.body[j]
        sattrs = dict(sattrs)
        if op == "constant":
            c = sattrs["value"].value
            return u.const(c.dtype.name, c.item())
        if op in CONTRACTIONS:
            return self._product(idx)
        if op == "dimshuffle":
            i = int(refs[0][1:])
            pattern = sattrs["pattern"]

            def via(dims):
                sdims = [1 if p == "x" else dims[p] for p in pattern]
                sidx = bidx(sdims, idx)
                src = [ir.Constant(_I64, 0)] * len(dims)
                for ax, p in enumerate(pattern):
                    if p != "x":
                        src[p] = sidx[ax]
                return src
            return self._operand(i, via)[0]
        if op == "reshape":
            i = int(refs[0][1:])
            sdims = [ctx.kb.dim(d) for d in self.params[f"step{j}"]]

            def via_reshape(dims):
                sidx = bidx(list(self.params[f"step{j}"]), idx)
                linear = u.TensorRef(None, "int64", [], u.contiguous_strides(b, sdims)).offset(b, sidx)
                return unravel(b, u.i64(linear), [ctx.kb.dim(d) for d in dims])
            return self._operand(i, via_reshape)[0]
        args, dts = [], []
        for r in refs:
            kk = int(r[1:])
            if r[0] == "$":
                v, d = self._operand(kk, lambda dims: bidx(dims, idx))
            else:
                v, d = memo[kk], self.stypes[kk].dtype
            args.append(v)
            dts.append(d)
        return emit_elemwise(b, op, get_op(op).normalize_attrs(sattrs), args, dts, self.stypes[j].dtype)

    def _product(self, idx):
        """A step-0 product (``passes/fusion_gemm.py``, rank-2 operands) at the point, by a K
        loop.  Compiled functions split these kernels into the tiled matmul and the rest
        first (``runtime._fused``); a program lowered directly (the emulator's tests) runs this."""
        ctx, b = self.ctx, self.ctx.b
        A, B = (ctx.ref(ctx.k.args[i].value) for i in (0, 1))
        dtype = self.stypes[0].dtype

        def step(kk, acc):
            x = cast(b, A.load(b, [idx[0], kk]), A.dtype, dtype)
            y = cast(b, B.load(b, [kk, idx[1]]), B.dtype, dtype)
            return [b.fadd(acc[0], b.fmul(x, y))]
        return u.reduction_loop(b, A.dims[1], [u.const(dtype, 0.0)], step, name="pk")[0]

    def value(self, idx):
        """The last step at ``idx``; extra outputs are stored at the point."""
        memo: dict = {}
        for j in self.needed:
            memo[j] = self.step(j, idx, memo)
        for n, j in enumerate(self.extra):
            self.ctx.ref(self.ctx.k.writes[1 + n]).store(self.ctx.b, memo[j], idx)
        return memo[len(self.body) - 1]


def gen_fused(ctx) -> None:
    fb = FusedBody(ctx)
    if fb.attrs.get("reduce") is not None:
        from .codegen_block import gen_reduction

        return gen_reduction(ctx, fb.attrs["reduce"], tuple(fb.attrs["axis"]), fb.stypes[-1].dtype,
                      list(ctx.k.param("space")), fb.value)
    space = ctx.k.param("space") if "space" in fb.params else ctx.k.space
    out = ctx.value(ctx.k.writes[0])
    odims = [ctx.kb.dim(d) for d in space]
    oref = u.TensorRef(ctx.kb.ptr(ctx.k.writes[0]), out.dtype, odims, u.contiguous_strides(ctx.b, odims))

    def point(idx):
        oref.store(ctx.b, fb.value(idx), idx)
    return _emit_pointwise(ctx, space, point)


# -- data movement -------------------------------------------------------------------------------

def gen_copy(ctx) -> None:
    """copy/reshape: the output's C-order element i is the source's C-order element i."""
    k = ctx.k
    src, out = ctx.ref(k.args[0].value), ctx.ref(k.writes[0])
    sdims = src.dims

    def point(idx):
        if ctx.value(k.args[0].value).dims == ctx.value(k.writes[0]).dims:
            v = src.load(ctx.b, idx)
        else:
            linear = u.TensorRef(None, "int64", [], u.contiguous_strides(ctx.b, out.dims)).offset(ctx.b, idx)
            v = src.load(ctx.b, unravel(ctx.b, u.i64(linear), sdims))
        out.store(ctx.b, v, idx)
    return _emit_pointwise(ctx, ctx.value(k.writes[0]).dims, point)


def gen_transpose(ctx) -> None:
    k = ctx.k
    src, out = ctx.ref(k.args[0].value), ctx.ref(k.writes[0])
    pattern = dict(k.attrs)["pattern"]
    nsrc = ctx.value(k.args[0].value).ndim

    def point(idx):
        s = [ir.Constant(_I64, 0)] * nsrc
        for ax, p in enumerate(pattern):
            if p != "x":
                s[p] = idx[ax]
        out.store(ctx.b, src.load(ctx.b, s), idx)
    return _emit_pointwise(ctx, ctx.value(k.writes[0]).dims, point)


def gen_scalar(ctx) -> None:
    k = ctx.k
    out = ctx.ref(k.writes[0])
    dtype = ctx.value(k.writes[0]).dtype

    def point(idx):
        a = k.args[0]
        v = ctx.scalar_arg(a)
        out.store(ctx.b, cast(ctx.b, v, a.dtype, dtype), idx)
    return _emit_pointwise(ctx, ctx.value(k.writes[0]).dims, point)


def gen_arange(ctx) -> None:
    k = ctx.k
    out = ctx.ref(k.writes[0])
    dtype = ctx.value(k.writes[0]).dtype
    first, delta = k.param("start_delta")
    b = ctx.b

    def point(idx):
        i = idx[0]
        if dt.is_float(dtype):
            v = b.fadd(ctx.kb.fdim(first), b.fmul(b.sitofp(i, u.F64), ctx.kb.fdim(delta)))
            v = cast(b, v, "float64", dtype)
        else:
            v = cast(b, b.add(u.i64(ctx.kb.dim(first)), b.mul(i, u.i64(ctx.kb.dim(delta)))), "int64", dtype)
        out.store(b, v, idx)
    return _emit_pointwise(ctx, ctx.value(k.writes[0]).dims, point)


def gen_concat(ctx) -> None:
    """concatenate / stack: each output element picks its operand by the axis coordinate."""
    k = ctx.k
    axis = dict(k.attrs)["axis"]
    out = ctx.ref(k.writes[0])
    odt = ctx.value(k.writes[0]).dtype
    b = ctx.b
    srcs = [ctx.ref(a.value) for a in k.args]
    dts = [ctx.value(a.value).dtype for a in k.args]
    stack = k.kind == "stack"

    def point(idx):
        result = b.alloca(u.value_type(odt))
        start = ir.Constant(_I64, 0)
        done = b.append_basic_block("cat.done")
        for j, s in enumerate(srcs):
            size = ir.Constant(_I64, 1) if stack else u.i64(s.dims[axis])
            hi = b.add(start, size)
            here = b.icmp_unsigned("<", idx[axis], hi) if j < len(srcs) - 1 else ir.Constant(u.I1, 1)
            take = b.append_basic_block(f"cat.{j}")
            nxt = b.append_basic_block(f"cat.n{j}")
            b.cbranch(here, take, nxt)
            b.position_at_end(take)
            if stack:
                sidx = idx[:axis] + idx[axis + 1:]
            else:
                sidx = list(idx)
                sidx[axis] = b.sub(idx[axis], start)
            b.store(cast(b, s.load(b, sidx), dts[j], odt), result)
            b.branch(done)
            b.position_at_end(nxt)
            start = hi
        b.branch(done)
        b.position_at_end(done)
        out.store(b, b.load(result), idx)
    return _emit_pointwise(ctx, ctx.value(k.writes[0]).dims, point)


def _generators():
    from . import codegen_block, codegen_conv, codegen_data, codegen_pool

    return {
        "elemwise": gen_elemwise, "fused": gen_fused, "copy": gen_copy, "transpose": gen_transpose,
        "scalar": gen_scalar, "arange": gen_arange, "concat": gen_concat, "stack": gen_concat,
        "reduce": codegen_block.gen_reduce, "softmax": codegen_block.gen_softmax,
        "matmul": codegen_block.gen_matmul, **codegen_data.GENERATORS, **codegen_conv.GENERATORS,
        **codegen_pool.GENERATORS,
    }


def supported_kinds() -> tuple:
    return tuple(sorted(_generators()))


def generate(prog, target: str, name: str = "tcomp"):
    """(module, [LaunchSpec per kernel]) for ``target`` 'gpu' or 'emu'."""
    gens = _generators()
    module = new_module(name, target)
    specs = []
    for i, k in enumerate(prog.kernels):
        if k.kind not in gens:
            raise TypeError(f"nvptx backend: kernel kind {k.kind!r} ({k.label}) is not lowered yet; "
                            f"lowered kinds: {', '.join(sorted(gens))}")
        fname = f"{name}_k{i}"
        spec, ctx = _one(prog, k, i, module, fname, target, gens[k.kind], "full")
        if getattr(ctx, "split", None) is not None:  # a reduction: also its two-pass form
            part, _ = _one(prog, k, i, module, fname + "_part", target, gens[k.kind], "partial")
            comb, _ = _one(prog, k, i, module, fname + "_comb", target, gens[k.kind], "combine")
            spec = dataclasses.replace(spec, split=(part, comb) + ctx.split)
        specs.append(spec)
    return module, specs


def _one(prog, k, i, module, fname, target, gen, reduce_mode):
    kb = KernelBuilder(module, fname, target)
    ctx = Ctx(prog, k, kb)
    ctx.k_index = i
    ctx.reduce_mode = reduce_mode
    work = gen(ctx)
    kb.finish()
    return LaunchSpec(fname, work[0], work[1:], tuple(kb.slots), tuple(kb.params), i), ctx


__all__ = ["generate", "LaunchSpec", "supported_kinds", "unravel", "bidx", "FusedBody"]
