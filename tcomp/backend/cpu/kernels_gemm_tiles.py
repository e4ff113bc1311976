"""The GEMM runtime's paths for a product with an elementwise epilogue (``fused`` kernels that
start with a product, ``passes/fusion_gemm.py``) other than the packed one: products too
small or too narrow to pack, those the in-place kernel takes (``kernels_gemm_small``: few
rows of C, or one KC block and N <= 256; :func:`rows_epilogue`), and matrix-vector products.

The packed product (``kernels_gemm_ir._gemm``) applies the epilogue to each MC x EW block
of C after its last KC block.  The paths here compute the product as the plain driver
would (the same narrow / no-packing / gemv kernels) in chunks of whole rows into a stack
buffer of ``SCRATCH`` elements (in L1), laid out as C is (rows contiguous, whatever
orientation the driver computes the product in), and call the epilogue on each chunk: its
loop runs along contiguous rows and vectorizes, and its results are the only writes to
the kernel's outputs.  The product only ever lives in the buffer, so a result may be
written over an operand the epilogue reads at the same point (the in-place SGD update
``W - lr * (h.T @ d)`` writes W while reading it).

Measured against the earlier layouts (2-core znver4, the 16 x 128 x 128 product of an
Elman scan step): the epilogue per RB x CB stack tile read a C^T block with a column
stride and ran scalar (the step 1.7x slower than unfused), and the product written into
the kernel's output first stored into a cold output column by column (~2 us more per step
than the unfused kernels, whose product goes to a reused, cache-hot buffer).
"""
from __future__ import annotations

from llvmlite import ir

from . import irutil as u
from . import kernels_gemm_ir as gir
from .kernels_gemm_ir import EPI_ARGS, I64, _cdiv, _gep, _min, c64

#: elements of the stack buffer a chunk of a non-packed product goes to (16 KiB of float32)
SCRATCH = 4096
#: the gemv path's stack tile: CB outputs at a time
CB = 64


def blocked_epilogue(module, cfg):
    """``tcomp_gemm_epi_<cfg>(M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc, epi, env, swap, po, qo,
    flags, narrow)``: a non-packed share of a product with an epilogue (see the module
    docstring): C = A @ B (M x N as computed; C and ``flags`` are not used: every result is
    the epilogue's) in chunks of R rows, each by the narrow kernels when ``narrow`` (as the
    driver picks them) else the no-packing loop, then the epilogue on the chunk.  R fills
    the buffer, in multiples of 64 rows when it holds that many (the narrow kernels work in
    blocks of up to 32 rows: no scalar tail rows inside a chunk)."""
    name = f"tcomp_gemm_epi_{cfg.tag}"
    if name in module.globals:
        return module.globals[name]
    small = gir._gemm_small(module, cfg.dtype)
    narrow_rows, narrow_cols = gir._narrow_rows(module, cfg), gir._narrow_cols(module, cfg)
    et = u.value_type(cfg.dtype)
    fn, b = gir._new_fn(module, name, gir._GEMM_ARGS + EPI_ARGS + [I64, I64], ret=ir.VoidType(),
                        vector_bits=cfg.bits)
    fn.attributes.add("noinline")
    fn.attributes.add("optsize")
    M, N, K, A, rsa, csa, B, rsb, csb, _C, _rsc, _csc, epi, env, swap, po, qo, _flags, narrow = fn.args
    with b.goto_block(fn.entry_basic_block):
        slot = b.alloca(et, size=c64(SCRATCH), name="escratch")
        slot.align = 64
    buf = b.inttoptr(b.ptrtoint(slot, I64), u.PTR)
    is_narrow = b.icmp_signed("!=", narrow, c64(0))
    sw = b.icmp_signed("!=", swap, c64(0))
    rows = b.sdiv(c64(SCRATCH), b.select(b.icmp_signed("<", N, c64(1)), c64(1), N))
    rows = b.select(b.icmp_signed(">=", rows, c64(64)), b.mul(b.sdiv(rows, c64(64)), c64(64)),
                    b.select(b.icmp_signed("<", rows, c64(1)), c64(1), rows))
    # a row of the computed product wider than the buffer: column chunks of SCRATCH (one row)
    cw = b.select(b.icmp_signed(">", N, c64(SCRATCH)), c64(SCRATCH), N)

    def chunk(i, j):
        mb = _min(b, rows, b.sub(M, i))
        nb = _min(b, cw, b.sub(N, j))
        # laid out as C: computed rows contiguous, or (swapped) its columns, which are C's rows
        rs, cs = b.select(sw, c64(1), nb), b.select(sw, mb, c64(1))
        args = [mb, nb, K, _gep(b, A, et, b.mul(i, rsa)), rsa, csa, _gep(b, B, et, b.mul(j, csb)), rsb, csb,
                buf, rs, cs]
        done = b.append_basic_block("edone")
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
        gir.call_epilogue(b, epi, env, swap, buf, rs, cs, b.add(po, i), b.add(qo, j), mb, nb)

    u.for_range(b, _cdiv(b, M, rows), lambda ti: u.for_range(
        b, _cdiv(b, N, cw), lambda tj: chunk(b.mul(ti, rows), b.mul(tj, cw)), name="ecj"), name="eci")
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


def rows_epilogue(b, cfg, rows, M, N, K, A, rsa, csa, B, rsb, csb, sw, i0, m, j0, n, epi, env) -> None:
    """In the driver of products with an epilogue: when the in-place kernel takes the product
    (``kernels_gemm_small.applies``, decided from the whole product as the plain driver
    does), this thread's share in chunks of C's rows into a stack buffer of ``SCRATCH``
    elements, by ``rows`` (the module's declaration of ``gemm_rows``), then the epilogue on
    each chunk; then return.  The share comes as the driver computes it (of C^T when
    ``sw``), mapped back to C's rows and columns as ``kernels_gemm_small.dispatch`` does.
    Chunks are whole blocks of the kernel's 4 rows, and at most SCRATCH / 4 columns wide."""
    from . import kernels_gemm_small as small_m

    et = u.value_type(cfg.dtype)
    with b.goto_block(b.function.entry_basic_block):
        slot = b.alloca(et, size=c64(SCRATCH), name="rscratch")
        slot.align = 64
    buf = b.inttoptr(b.ptrtoint(slot, I64), u.PTR)
    with b.if_then(small_m.applies(b, cfg, M, N, K, csb)):
        r0, mr = b.select(sw, j0, i0), b.select(sw, n, m)
        q0, nq = b.select(sw, i0, j0), b.select(sw, m, n)
        R4 = small_m.ROWS
        cw = _min(b, nq, c64(SCRATCH // R4))
        rows_per = b.mul(b.sdiv(b.sdiv(c64(SCRATCH), b.select(b.icmp_signed("<", cw, c64(1)), c64(1), cw)),
                                c64(R4)), c64(R4))

        def chunk(i, j):
            mb = _min(b, rows_per, b.sub(mr, i))
            nb = _min(b, cw, b.sub(nq, j))
            ri, qj = b.add(r0, i), b.add(q0, j)
            b.call(rows, [mb, nb, K, _gep(b, A, et, b.mul(ri, rsa)), rsa, csa, _gep(b, B, et, qj), rsb, csb,
                          buf, nb, c64(1)])
            b.call(epi, [env, buf, nb, c64(1), ri, qj, mb, nb])

        u.for_range(b, _cdiv(b, mr, rows_per), lambda ti: u.for_range(
            b, _cdiv(b, nq, cw), lambda tj: chunk(b.mul(ti, rows_per), b.mul(tj, cw)), name="erj"), name="eri")
        b.ret_void()
