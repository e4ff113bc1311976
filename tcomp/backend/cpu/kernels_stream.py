"""Streaming (non-temporal) stores for flat elementwise loops whose output does not fit in
the last-level cache.

Why: an ordinary store to a line that is not in cache first reads the line (read for
ownership), so a memory-bound ``out = f(a, b, c)`` over float32 moves 20 bytes per element
(12 read, 4 written, 4 read for ownership) where 16 are needed.  A non-temporal store
writes whole lines without reading them.  Hand-written AVX-512 C for ``a*b + c*k`` at
2^24 elements on this machine (znver4 VM): 8.9 -> 6.2 ms at one thread, 7.0 -> 5.4 ms at
two.  For an output that fits in cache it is a loss (the next kernel would find the output
in L3; a streamed one is in DRAM), hence the threshold :data:`MIN_BYTES`.

Why a stack buffer: the kernels are scalar IR that LLVM's loop vectorizer widens, and it
will not widen a loop whose scalar store is ``!nontemporal`` (the vector store would be
unaligned, and an unaligned NT store is illegal).  So the aligned middle of a chunk runs in
blocks of :data:`BLOCK_BYTES`: the point function fills a 64-byte aligned stack block with
an ordinary loop of constant trip count (vectorized exactly as the plain loop: the same
instructions, the constants in registers), then the block's 64-byte lines are copied out
with explicit ``<64/itemsize x T>`` loads and ``align 64, !nontemporal`` stores (one
``vmovntps zmm`` per line with AVX-512, two ``ymm`` with AVX2).  A block is read completely
before any of it is written, so an in-place kernel (output == input) stays correct.  The
plain loop writes the rest in place: the elements before the output's first 64-byte
boundary (a view or a user buffer; tcomp's own buffers and chunk starts are aligned), the
tail after the last whole block, everything when the output is not aligned to its element
size.  A first version that also ran those through the buffer, with a variable trip count,
made LLVM spill the point function's constants: 30% slower in cache (2^16 elements: 46
against 35 us), and the fused 2^24 row is compute-bound enough at one thread to lose that.
Software prefetch of every input line 2-16 blocks ahead (``llvm.prefetch``) was slower still
(fused 2^24, one thread: 9.5 ms without, 13-17 ms with; the hardware prefetcher keeps up).

Ordering: non-temporal stores are weakly ordered; each chunk ends with ``fence seq_cst``
before it returns to the pool, whose completion signal would otherwise let another thread
read stale lines.  x86 lowers it to a locked ``or``, and a locked instruction completes
every earlier store, write-combining ones included, before it (AMD APM vol. 2, 7.4.2; Intel
SDM vol. 3, 8.1.2 / 11.3.1).  A generic fence rather than ``llvm.x86.sse.sfence`` keeps the
text valid for every target the ahead-of-time export compiles the JIT's text for
(``aarch64-linux-gnu`` included).

When: only where the host is x86-64 (the kernel text is made for the host; elsewhere the
plain loop stays), for a static output of at least :data:`MIN_BYTES` (and a symbolic one
with :data:`SYMBOLIC`: the size then decides at run time).  Every other kernel's code is
unchanged.
"""
from __future__ import annotations

import os
import platform

from llvmlite import ir

from tcomp.ir import dtypes as dt

from . import irutil as u

#: outputs of at least this many bytes are streamed; None: ``TCOMP_STREAM_MIN_BYTES`` if set,
#: else the host's last-level cache size (``kernels_gemm._cache_sizes``).  Tests lower it (so
#: small arrays take the path); it is part of the code-generation key.
MIN_BYTES = None
#: bytes of the stack block one point loop fills before it is copied out (16 lines).  Fused
#: 2^24 at one thread, best of 30 (loaded): 512 B 9.40-9.65 ms, 1 KiB 9.31-9.85, 2 KiB
#: 9.88-10.08, 4 KiB 9.90-9.97, the plain loop 13.45; at two threads (two runs) 256 B 8.06 /
#: 6.12, 512 B 7.90 / 6.67, 1 KiB 7.63 / 6.36, 2 KiB 8.19 / 6.13, the plain loop 12.26 / 8.22
BLOCK_BYTES = 1024
LINE = 64
#: also emit the path for flat loops of symbolic size (the size then picks it at run time;
#: the point loop is then its own function, called for the head, each block and the tail).
#: Off unless ``TCOMP_STREAM_SYMBOLIC=1``: graphs of many small symbolic kernels pay for the
#: extra code.  The 1000-output graph
#: of ``test_reliability_deep`` (``/tmp/k1000_new.py``, 3 interleaved runs, loaded): 2.05-2.13
#: s off, 2.31-2.97 s on; the distinct-constants one 7.0-8.6 s against 8.5 s.  (Two inline
#: copies of the point loop instead of a call: 1.81 -> 2.59 s.)
SYMBOLIC = os.environ.get("TCOMP_STREAM_SYMBOLIC", "").strip() == "1"


def enabled() -> bool:
    """Streaming stores are emitted at all: an x86-64 host, not turned off by
    ``TCOMP_STREAM_STORES=0``."""
    if os.environ.get("TCOMP_STREAM_STORES", "1").strip() == "0":
        return False
    return platform.machine().lower() in ("x86_64", "amd64")


def min_bytes() -> int:
    if MIN_BYTES is not None:
        return int(MIN_BYTES)
    env = os.environ.get("TCOMP_STREAM_MIN_BYTES", "").strip()
    if env:
        if not env.isdigit():
            raise ValueError(f"TCOMP_STREAM_MIN_BYTES must be a number of bytes >= 0, got {env!r}")
        return int(env)
    from .kernels_gemm import _cache_sizes

    return _cache_sizes()[2]


def codegen_key() -> str:
    """What of the emitted code depends on these settings (part of the compile-cache keys)."""
    return f"nt{min_bytes()}b{BLOCK_BYTES}{'s' if SYMBOLIC else ''}" if enabled() else "nt-off"


def wanted(n, dtype: str) -> bool:
    """Whether a flat loop of ``n`` elements (an int, or an i64 value) of ``dtype`` gets the
    streaming path."""
    es = dt.itemsize(dtype)
    if not enabled() or LINE % es or BLOCK_BYTES % LINE:
        return False
    return SYMBOLIC if not isinstance(n, int) else n * es >= min_bytes()


def emit_chunk(ctx, lo, hi, value, normal, name: str) -> None:
    """``out[i] = value(i)`` for ``i`` in ``[lo, hi)`` of the flat output ``ctx.out``.

    Whole blocks from the output's first 64-byte boundary on are streamed; ``normal(s, e)``
    (the ordinary loop, storing in place) writes the elements before that boundary and the
    tail after the last whole block, all of them when the output is not aligned to its
    element size, and all of them when the output's size is symbolic and below
    :func:`min_bytes` at run time.

    A static size: the block loop and ``normal`` (in a two-trip loop over the head and the
    tail) are emitted inline, so the kernel holds the point function twice.  A symbolic
    size (:data:`SYMBOLIC`): one outlined point function (:func:`_point_function`) serves
    the blocks, the head and the tail, so a kernel that is small at run time pays one call.
    Inline is faster per block (fused 2^24 at one thread, best of 30, loaded: 9.40 against
    10.01 ms; the same at two threads, 6.28 ms)."""
    b, out = ctx.b, ctx.out
    dtype = out.dtype
    es = dt.itemsize(dtype)
    et = u.mem_type(dtype)
    block = BLOCK_BYTES // es
    lanes = LINE // es
    vt = ir.VectorType(et, lanes)
    c = lambda v: ir.Constant(u.I64, v)  # noqa: E731
    lo, hi = u.i64(lo), u.i64(hi)
    size = b.sub(hi, lo)
    addr = b.ptrtoint(u.gep(b, out.ptr, dtype, lo), u.I64)
    to_line = b.udiv(b.and_(b.sub(c(0), addr), c(LINE - 1)), c(es))  # elements to the next line
    head = _min(b, to_line, size)
    if es > 1:  # an address not aligned to the element size never reaches a line boundary
        head = b.select(b.icmp_unsigned("==", b.and_(addr, c(es - 1)), c(0)), head, size)
    n = u.numel(b, out.dims)
    outlined = not isinstance(n, int)
    if not isinstance(n, int):  # small at run time: the head is everything
        head = b.select(b.icmp_signed(">=", n, c(-(-min_bytes() // es))), head, size)
    n_blocks = b.sdiv(b.sub(size, head), c(block))
    m0 = b.add(lo, head)
    m1 = b.add(m0, b.mul(n_blocks, c(block)))

    if outlined:
        kf = _point_function(ctx, value, name)
        args = list(ctx.fn.args[:ctx.n_out + len(ctx.leaves) + 1])

        def run(s, e, dst, off):
            ctx.fail_if(b.icmp_signed("!=", b.call(kf, args + [s, e, dst, off]), ir.Constant(u.I32, 0)))

        def fill(base, buf):
            run(base, b.add(base, c(block)), buf, base)

        def plain(s, e):
            run(s, e, out.ptr, c(0))
    else:
        def fill(base, buf):
            u.for_range(b, block, lambda j: u.store_value(b, value(b.add(base, j)), b.gep(buf, [j], source_etype=et),
                                                          dtype), name=name + ".ntf")
        plain = normal

    with b.if_then(b.icmp_signed(">", n_blocks, c(0))):
        with b.goto_block(ctx.fn.entry_basic_block):
            buf = b.alloca(et, size=c(block), name="ntbuf")
            buf.align = LINE
        nt = b.module.add_metadata([ir.Constant(u.I32, 1)])

        def one_block(k):
            base = b.add(m0, b.mul(k, c(block)))
            fill(base, buf)

            def line(q):
                off = b.mul(q, c(lanes))
                v = b.load(b.gep(buf, [off], source_etype=et), typ=vt, align=LINE)
                st = b.store(v, u.gep(b, out.ptr, dtype, b.add(base, off)), align=LINE)
                st.set_metadata("nontemporal", nt)
            u.for_range(b, block // lanes, line, name=name + ".ntl")
        u.for_range(b, n_blocks, one_block, name=name + ".ntb")
        # non-temporal stores are weakly ordered: drain them before the chunk is reported done
        # (x86 lowers this to a locked or, which waits for them like mfence)
        b.fence("seq_cst")

    if outlined:
        plain(lo, m0)
        plain(m1, hi)
        return

    def part(r):
        first = b.icmp_unsigned("==", r, c(0))
        plain(b.select(first, lo, m1), b.select(first, m0, hi))
    u.for_range(b, 2, part, name=name + ".ntp")


def _point_function(ctx, value, name: str) -> ir.Function:
    """``i32 kf_<hash>(ptr out..., ptr leaf..., ptr params, i64 lo, i64 hi, ptr dst, i64 off)``:
    ``dst[i - off] = value(i)`` for ``i`` in ``[lo, hi)`` (extra results stored in place),
    the point loop emitted once for the stack blocks and the plain head and tail alike."""
    from . import parallel as P

    module = ctx.fn.module
    nptr = ctx.n_out + len(ctx.leaves) + 1
    fn = ir.Function(module, ir.FunctionType(u.I32, [u.PTR] * nptr + [u.I64, u.I64, u.PTR, u.I64]),
                     name=f"k{ctx.n}.ftmp")
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    for a, k in zip(fn.args, ctx.fn.args[:nptr - 1]):  # the kernel's promises (see kctx)
        if "noalias" in k.attributes:
            a.add_attribute("noalias")
    fn.args[nptr + 2].add_attribute("noalias")  # dst: the output (as promised for it) or the block
    with P._Swap(ctx, fn):
        b = ctx.b
        lo, hi, dst, off = fn.args[nptr:]
        dtype = ctx.out.dtype
        u.for_range(b, hi, lambda i: u.store_value(b, value(i), u.gep(b, dst, dtype, b.sub(i, off)), dtype),
                    start=lo, name=name + ".ntf")
        b.ret(ir.Constant(u.I32, 0))
    return P._intern(module, fn, "kf")


def _min(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)
