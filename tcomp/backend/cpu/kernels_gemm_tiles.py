"""The GEMM runtime's paths for a product with an elementwise epilogue (``fused`` kernels that
start with a product, ``passes/fusion_gemm.py``) other than the packed one: products too
small or too narrow to pack, and matrix-vector products.

The packed product (``kernels_gemm_ir._gemm``) applies the epilogue to each micro-tile when
its last KC block is done: the micro-kernel writes the tile's final sums into a stack tile
and the epilogue reads them there and writes the kernel's results.  The paths here do the
same per block of C: the block's product goes into a stack tile (RB x CB, in L1) and the
epilogue runs on it.  The product is never written into C first, so a result may be
written over an operand the epilogue reads at the same point (the in-place SGD update
``W - lr * (h.T @ d)`` writes W while reading it): the epilogue reads W before it writes
the same element, and the product only ever lives in the tile.
"""
from __future__ import annotations

from llvmlite import ir

from . import irutil as u
from . import kernels_gemm_ir as gir
from .kernels_gemm_ir import EPI_ARGS, I64, _cdiv, _gep, _min, c64

#: the stack tile of a non-packed block: RB * CB elements, blocks of CB columns (a narrower C:
#: all its columns, and as many more rows)
RB = 32
CB = 64


def blocked_epilogue(module, cfg):
    """``tcomp_gemm_epi_<cfg>(M, N, K, A, rsa, csa, B, rsb, csb, epi, env, swap, po, qo)``:
    C = A @ B (M x N as computed) block by block into a stack tile, each block by the
    narrow kernels when it qualifies (as the driver would pick them) else the no-packing
    loop, then the epilogue on the block."""
    name = f"tcomp_gemm_epi_{cfg.tag}"
    if name in module.globals:
        return module.globals[name]
    small = gir._gemm_small(module, cfg.dtype)
    narrow_rows, narrow_cols = gir._narrow_rows(module, cfg), gir._narrow_cols(module, cfg)
    et = u.value_type(cfg.dtype)
    fn, b = gir._new_fn(module, name, gir._GEMM_ARGS[:9] + EPI_ARGS, ret=ir.VoidType(), vector_bits=cfg.bits)
    fn.attributes.add("noinline")
    fn.attributes.add("optsize")
    M, N, K, A, rsa, csa, B, rsb, csb, epi, env, swap, po, qo = fn.args
    with b.goto_block(fn.entry_basic_block):
        slot = b.alloca(et, size=c64(RB * CB), name="btile")
        slot.align = 64
    tile = b.inttoptr(b.ptrtoint(slot, I64), u.PTR)

    # blocks of CB columns (all of a narrower C) and as many rows as fill the tile
    cw = _min(b, c64(CB), b.select(b.icmp_signed("<", N, c64(1)), c64(1), N))
    rows = b.sdiv(c64(RB * CB), cw)

    def block(i, j):
        mb = _min(b, rows, b.sub(M, i))
        nb = _min(b, cw, b.sub(N, j))
        args = [mb, nb, K, _gep(b, A, et, b.mul(i, rsa)), rsa, csa, _gep(b, B, et, b.mul(j, csb)), rsb, csb,
                tile, cw, c64(1)]
        done = b.append_basic_block("bdone")
        is_narrow = b.icmp_signed("<=", N, c64(cfg.narrow))
        rows_ok = b.and_(b.icmp_signed("==", csa, c64(1)), b.icmp_signed(">=", K, c64(2 * cfg.W)))
        with b.if_then(b.and_(is_narrow, b.and_(rows_ok, b.icmp_signed(">=", mb, c64(4))))):
            b.call(narrow_rows, args)
            b.branch(done)
        with b.if_then(b.and_(is_narrow, b.icmp_signed("==", rsa, c64(1)))):
            b.call(narrow_cols, args)
            b.branch(done)
        b.call(small, args)
        b.branch(done)
        b.position_at_end(done)
        gir.call_epilogue(b, epi, env, swap, tile, cw, c64(1), b.add(po, i), b.add(qo, j), mb, nb)

    u.for_range(b, _cdiv(b, M, rows), lambda ti: u.for_range(
        b, _cdiv(b, N, cw), lambda tj: block(b.mul(ti, rows), b.mul(tj, cw)), name="ebj"), name="ebi")
    b.ret_void()
    return fn


def gemv_epilogue(b, cfg, gemv, epi, env, M, N, K, A, rsa, csa, B, rsb, csb, y0, ylen) -> None:
    """Outputs ``[y0, y0 + ylen)`` of a matrix-vector product (M or N is 1) with the
    epilogue: CB outputs at a time into a stack tile, then the epilogue on them."""
    et = u.value_type(cfg.dtype)
    fn = b.function
    with b.goto_block(fn.entry_basic_block):
        slot = b.alloca(et, size=c64(CB), name="vtile")
        slot.align = 64
    tile = b.inttoptr(b.ptrtoint(slot, I64), u.PTR)
    col = b.icmp_signed("==", N, c64(1))  # (M, K) @ (K, 1): outputs are rows of C

    def chunk(t):
        c0 = b.add(y0, b.mul(t, c64(CB)))
        cl = _min(b, c64(CB), b.sub(b.add(y0, ylen), c0))
        with b.if_else(col) as (t2, o2):
            with t2:
                b.call(gemv, [cl, K, _gep(b, A, et, b.mul(c0, rsa)), rsa, csa, B, rsb, tile])
            with o2:  # (1, K) @ (K, N): y = B^T a, columns c0.. of B
                b.call(gemv, [cl, K, _gep(b, B, et, b.mul(c0, csb)), csb, rsb, A, csa, tile])
        zero = c64(0)
        b.call(epi, [env, tile, b.select(col, c64(1), zero), b.select(col, zero, c64(1)), b.select(col, c0, zero),
                     b.select(col, zero, c0), b.select(col, cl, c64(1)), b.select(col, c64(1), cl)])
    u.for_range(b, _cdiv(b, ylen, CB), chunk, name="evc")
