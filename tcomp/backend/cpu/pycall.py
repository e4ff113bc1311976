"""Calling a native program from Python with one ctypes call per entry.

Why: reading an array's data pointer from Python (``a.ctypes.data``) costs ~1-2 us, more
than a small kernel; a call of ``x + y*z`` needs four.  So two process-wide native shims,
JIT-compiled once, read the pointers and dims straight from the CPython objects:

``i32 tcomp_py_plan(PyTupleObject *inputs, int64 *scratch)``
    checks every input against the function's spec (an ``ndarray``, the rank, the dtype's
    type character, native byte order, C-contiguous and aligned flags) and returns
    ``-(k + 1)`` for the first input ``k`` that fails (the Python side then converts it or
    raises the same error as before); else writes the data pointers and dims into
    ``scratch`` and returns ``plan(dims, pointers, regs)``.
``i32 tcomp_py_run(PyListObject *outputs, int64 *scratch)``
    writes the outputs' data pointers into ``scratch`` and returns
    ``run(inputs, outputs, workspace, regs)``.

``i32 tcomp_py_call(PyTupleObject *inputs, PyListObject *outputs, int64 *scratch)``
    both in one call when the outputs (allocated with the previous call's shapes) fit.

``scratch`` (int64 words, per thread): the header ``[spec, plan, run, workspace, inputs,
dims, outputs, regs, workspace bytes]`` (inputs..regs: word offsets into scratch), then
those areas.  ``spec``: ``[n_in, ndarray type, (ndim, dims offset, type char, type char)
per input, n_out, (first, end) host slot of each output's dims]``.

The object layouts read (``PyTupleObject.ob_item``, ``PyListObject.ob_item``, NumPy's
``PyArrayObject_fields`` and ``PyArray_Descr``'s type and byteorder characters) are part of
the CPython and NumPy C ABIs; :func:`available` verifies every offset on live objects once
and, if any differs (another interpreter build), the callers fall back to ``a.ctypes``.
These shims are the JIT's only: the program's own ``plan``/``run`` are plain C ABI.
"""
from __future__ import annotations

import ctypes
import sys
import threading

import numpy as np
from llvmlite import ir

from . import irutil as u

TUPLE_ITEMS, LIST_ITEMS = 24, 24
ARR_DATA, ARR_ND, ARR_DIMS, ARR_DESCR, ARR_FLAGS = 16, 24, 32, 56, 64
DESCR_TYPE, DESCR_BYTEORDER = 25, 26
#: NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED
FLAGS_NEEDED = 0x1 | 0x100
HEADER = 9
#: header word with the workspace's capacity in bytes
WS_CAPACITY = 8
#: ``tcomp_py_call`` results: outputs of other dims (or too small a workspace) / run was called
MISS, RAN = 0x40000000, 0x20000000
#: alignment of the arrays tcomp allocates (tcomp.runtime.buffers)
ALIGN = 64
#: ctypes prototype of both shims (the GIL is released during the call)
SHIM = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.py_object, ctypes.c_void_p)
CALL = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.py_object, ctypes.py_object, ctypes.c_void_p)

_lock = threading.Lock()
_shims: list = []
#: all of memory as int64 words: ``MEMORY[(id(a) + ARR_DATA) >> 3]`` is ``a``'s data pointer in
#: ~0.1 us (``a.ctypes.data`` builds a ctypes object: ~1 us); only read where verified
MEMORY = (ctypes.c_uint64 * (1 << 44)).from_address(0)


def _word(b, base, k, typ=u.I64):
    return b.load(b.gep(base, [k if isinstance(k, ir.Value) else ir.Constant(u.I64, k)], source_etype=u.I64,
                        inbounds=True), typ=typ)


def _field(b, obj, off, typ):
    return b.load(b.gep(obj, [ir.Constant(u.I64, off)], source_etype=u.I8, inbounds=True), typ=typ)


def _module() -> str:
    m = ir.Module(name="tcomp_pycall")
    entry = ir.FunctionType(u.I32, [u.PTR, u.PTR, u.PTR, u.PTR])  # run's type (plan's: three pointers)
    # plan
    fn = ir.Function(m, ir.FunctionType(u.I32, [u.PTR, u.PTR]), name="tcomp_py_plan")
    tup, scratch = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    spec = b.inttoptr(_word(b, scratch, 0), u.PTR)
    plan = b.inttoptr(_word(b, scratch, 1), ir.FunctionType(u.I32, [u.PTR] * 3).as_pointer())
    in_ptrs = b.gep(scratch, [_word(b, scratch, 4)], source_etype=u.I64)
    dims = b.gep(scratch, [_word(b, scratch, 5)], source_etype=u.I64)
    regs = b.gep(scratch, [_word(b, scratch, 7)], source_etype=u.I64)
    n, ndarray = _word(b, spec, 0), _word(b, spec, 1)
    bad = fn.append_basic_block("bad")
    head, body, done = (fn.append_basic_block(x) for x in ("head", "body", "done"))
    pre = b.block
    b.branch(head)
    b.position_at_end(head)
    k = b.phi(u.I64, name="k")
    k.add_incoming(ir.Constant(u.I64, 0), pre)
    b.cbranch(b.icmp_signed("<", k, n), body, done)
    b.position_at_end(body)
    obj = b.load(b.gep(tup, [b.add(k, ir.Constant(u.I64, TUPLE_ITEMS // 8))], source_etype=u.PTR), typ=u.PTR)
    s = b.add(ir.Constant(u.I64, 2), b.mul(k, ir.Constant(u.I64, 4)))
    ok = b.icmp_unsigned("==", b.ptrtoint(_field(b, obj, 8, u.PTR), u.I64), ndarray)
    chk = fn.append_basic_block("chk")
    b.cbranch(ok, chk, bad)
    b.position_at_end(chk)
    nd = b.sext(_field(b, obj, ARR_ND, u.I32), u.I64)
    descr = _field(b, obj, ARR_DESCR, u.PTR)
    tc = b.zext(_field(b, descr, DESCR_TYPE, u.I8), u.I64)
    bo = _field(b, descr, DESCR_BYTEORDER, u.I8)
    flags = _field(b, obj, ARR_FLAGS, u.I32)
    native = "<" if sys.byteorder == "little" else ">"
    conds = [
        b.icmp_signed("==", nd, _word(b, spec, s)),
        b.or_(b.icmp_signed("==", tc, _word(b, spec, b.add(s, ir.Constant(u.I64, 2)))),
              b.icmp_signed("==", tc, _word(b, spec, b.add(s, ir.Constant(u.I64, 3))))),
        b.or_(b.or_(b.icmp_unsigned("==", bo, ir.Constant(u.I8, ord("="))),
                    b.icmp_unsigned("==", bo, ir.Constant(u.I8, ord("|")))),
              b.icmp_unsigned("==", bo, ir.Constant(u.I8, ord(native)))),
        b.icmp_unsigned("==", b.and_(flags, ir.Constant(u.I32, FLAGS_NEEDED)), ir.Constant(u.I32, FLAGS_NEEDED)),
    ]
    all_ok = conds[0]
    for c in conds[1:]:
        all_ok = b.and_(all_ok, c)
    good = fn.append_basic_block("good")
    b.cbranch(all_ok, good, bad)
    b.position_at_end(good)
    b.store(b.ptrtoint(_field(b, obj, ARR_DATA, u.PTR), u.I64), b.gep(in_ptrs, [k], source_etype=u.I64))
    src = _field(b, obj, ARR_DIMS, u.PTR)
    dst = b.gep(dims, [_word(b, spec, b.add(s, ir.Constant(u.I64, 1)))], source_etype=u.I64)
    u.for_range(b, nd, lambda a: b.store(_word(b, src, a), b.gep(dst, [a], source_etype=u.I64)), name="d")
    k.add_incoming(b.add(k, ir.Constant(u.I64, 1)), b.block)
    b.branch(head)
    b.position_at_end(bad)
    b.ret(b.trunc(b.sub(ir.Constant(u.I64, -1), k), u.I32))
    b.position_at_end(done)
    b.ret(b.call(plan, [dims, in_ptrs, regs]))
    # run
    fn = ir.Function(m, ir.FunctionType(u.I32, [u.PTR, u.PTR]), name="tcomp_py_run")
    lst, scratch = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    run = b.inttoptr(_word(b, scratch, 2), entry.as_pointer())
    ws = b.inttoptr(_word(b, scratch, 3), u.PTR)
    in_ptrs = b.gep(scratch, [_word(b, scratch, 4)], source_etype=u.I64)
    out_ptrs = b.gep(scratch, [_word(b, scratch, 6)], source_etype=u.I64)
    regs = b.gep(scratch, [_word(b, scratch, 7)], source_etype=u.I64)
    count = _field(b, lst, 16, u.I64)
    items = _field(b, lst, LIST_ITEMS, u.PTR)

    def one(i):
        o = b.load(b.gep(items, [i], source_etype=u.PTR), typ=u.PTR)
        b.store(_field(b, o, ARR_DATA, u.PTR), b.gep(out_ptrs, [i], source_etype=u.PTR))
    u.for_range(b, count, one, name="o")
    b.ret(b.call(run, [in_ptrs, out_ptrs, ws, regs]))
    py_run = fn
    _call_shim(m, m.globals["tcomp_py_plan"], py_run)
    return str(m)


def _call_shim(m, py_plan, py_run) -> None:
    """``i32 tcomp_py_call(PyTupleObject *inputs, PyListObject *outputs, int64 *scratch)``:
    plan, then run into ``outputs`` if they have the dims plan computed and the workspace is
    big enough (a caller allocates them with the previous call's shapes: one native call
    instead of two).  Returns plan's code, ``RAN | run's code``, or ``MISS`` (the planned
    registers are in scratch: allocate and call ``tcomp_py_run``)."""
    fn = ir.Function(m, ir.FunctionType(u.I32, [u.PTR, u.PTR, u.PTR]), name="tcomp_py_call")
    tup, lst, scratch = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    rc = b.call(py_plan, [tup, scratch])
    planned, failed = fn.append_basic_block("planned"), fn.append_basic_block("failed")
    b.cbranch(b.icmp_signed("==", rc, ir.Constant(u.I32, 0)), planned, failed)
    b.position_at_end(failed)
    b.ret(rc)
    b.position_at_end(planned)
    miss = fn.append_basic_block("miss")
    spec = b.inttoptr(_word(b, scratch, 0), u.PTR)
    regs = b.gep(scratch, [_word(b, scratch, 7)], source_etype=u.I64)
    ok = b.icmp_signed("<=", _word(b, regs, 0), _word(b, scratch, WS_CAPACITY))
    outs = b.add(ir.Constant(u.I64, 2), b.mul(_word(b, spec, 0), ir.Constant(u.I64, 4)))  # n_out, then (lo, hi)
    n_out = _word(b, spec, outs)
    ok = b.and_(ok, b.icmp_signed("==", _field(b, lst, 16, u.I64), n_out))
    items = _field(b, lst, LIST_ITEMS, u.PTR)
    acc = b.alloca(u.I1)
    b.store(ok, acc)

    def one(k):
        o = b.load(b.gep(items, [k], source_etype=u.PTR), typ=u.PTR)
        s = b.add(outs, b.add(ir.Constant(u.I64, 1), b.mul(k, ir.Constant(u.I64, 2))))
        lo, hi = _word(b, spec, s), _word(b, spec, b.add(s, ir.Constant(u.I64, 1)))
        nd = b.sext(_field(b, o, ARR_ND, u.I32), u.I64)
        b.store(b.and_(b.load(acc, typ=u.I1), b.icmp_signed("==", nd, b.sub(hi, lo))), acc)
        dims = _field(b, o, ARR_DIMS, u.PTR)

        def axis(a):
            same = b.icmp_signed("==", _word(b, dims, a), _word(b, regs, b.add(lo, a)))
            b.store(b.and_(b.load(acc, typ=u.I1), same), acc)
        u.for_range(b, b.select(b.load(acc, typ=u.I1), nd, ir.Constant(u.I64, 0)), axis, name="a")
    u.for_range(b, b.select(ok, n_out, ir.Constant(u.I64, 0)), one, name="k")
    run = fn.append_basic_block("run")
    b.cbranch(b.load(acc, typ=u.I1), run, miss)
    b.position_at_end(miss)
    b.ret(ir.Constant(u.I32, MISS))
    b.position_at_end(run)
    b.ret(b.or_(b.call(py_run, [lst, scratch]), ir.Constant(u.I32, RAN)))


def _verify_layouts() -> bool:
    """The offsets above on live objects (False: use the slow path)."""
    def word(addr, typ=ctypes.c_void_p):
        return typ.from_address(addr).value

    try:
        arrays = [np.arange(6, dtype="float32").reshape(2, 3), np.zeros((3, 4), ">f8")[:, ::2], np.zeros((), "int32"),
                  np.zeros(5, "bool")]
        t, lst = tuple(arrays), list(arrays)
        if word(id(t) + TUPLE_ITEMS) != id(arrays[0]) or word(word(id(lst) + LIST_ITEMS) + 8) != id(arrays[1]):
            return False
        if word(id(lst) + 16, ctypes.c_int64) != len(lst):
            return False
        for a in arrays:
            if word(id(a) + 8) != id(np.ndarray) or (word(id(a) + ARR_DATA) or 0) != a.ctypes.data:
                return False
            if word(id(a) + ARR_ND, ctypes.c_int32) != a.ndim or word(id(a) + ARR_FLAGS, ctypes.c_int32) != a.flags.num:
                return False
            if a.ndim and list((ctypes.c_int64 * a.ndim).from_address(word(id(a) + ARR_DIMS))) != list(a.shape):
                return False
            descr = word(id(a) + ARR_DESCR)
            if descr != id(a.dtype) or word(descr + DESCR_TYPE, ctypes.c_char) != a.dtype.char.encode() or \
                    word(descr + DESCR_BYTEORDER, ctypes.c_char) != a.dtype.byteorder.encode():
                return False
        return True
    except Exception:  # any surprise: the slow path is always correct
        return False


def shims():
    """(py_plan, py_run, py_call) ctypes callables, or None when the object layouts differ here."""
    with _lock:
        if not _shims:
            if _verify_layouts():
                from tcomp.runtime import engine
                from tcomp.runtime.cache import source_fingerprint

                # keyed without printing the module (a warm start would print it to find it)
                key = f"pycall:{sys.byteorder}:{source_fingerprint('tcomp.backend.cpu')}"
                # no IR passes and FastISel: 0.003 instead of 0.040 CPU s (O2; O0 with SelectionDAG
                # 0.010) on a first compile (the code is SSA as written, one alloca), the same
                # call overhead (2.05 us, znver4, A/B)
                lib = engine.compile_ir(lambda: [engine.Part(_module(), 0, False, 0)], cache_key=key, opt_level=0,
                                        loop_unrolling=False)
                _shims.append((SHIM(lib.address("tcomp_py_plan")), SHIM(lib.address("tcomp_py_run")),
                               CALL(lib.address("tcomp_py_call")), lib))
            else:
                _shims.append(None)
        got = _shims[0]
        return None if got is None else got[:3]


def _register_warmup() -> None:
    from tcomp.runtime import engine

    engine.warmups.append(shims)  # made while the first program compiles (engine.load)


_register_warmup()


def type_chars(dtype: str) -> tuple:
    """The ``dtype.char`` values an input of ``dtype`` may have (int64 is 'l' and 'q' on LP64)."""
    d = np.dtype(dtype)
    same = [c for c in "?bBhHiIlLqQefdg" if np.dtype(c) == d]
    chars = [ord(c) for c in same] or [ord(d.char)]
    return (chars + chars)[:2]


__all__ = ["shims", "type_chars", "HEADER"]
