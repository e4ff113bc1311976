"""The LLVM optimizer process (run as a script by ``tcomp.runtime.optimizer``; imports no tcomp).

Reads requests from stdin, answers on stdout, both framed as an 8-byte little-endian length
and a pickle.  First message: ``(cpu_name, cpu_features)`` for the target machine (the
parent's, so both processes generate the same code), answered ``("ready", rss, pid)``.  Then per module:
``(llvm_ir, opt_level, loop_unrolling, codegen_level)`` -> ``("ok", optimized_ir,
object_bytes, declared, defined, cpu_seconds, rss)`` (``optimized_ir`` is None when ``opt_level`` is 0:
the caller has the text; ``declared``: the external symbols the module uses, ``defined``:
the functions it defines with external linkage; ``codegen_level``: the target machine's
optimization level, 0 for FastISel and the fast register allocator, which are linear in
the size of a function where SelectionDAG and the greedy allocator are not) or ``("error", exception_type_name, message,
rss)``; ``rss`` is this process's resident bytes
(the parent restarts it when it has grown: llvmlite's pass pipeline leaks memory per run,
which is why this work happens here and not in the user's process).  EOF on stdin: exit.
"""
import os
import pickle
import struct
import sys
import time

import llvmlite.binding as llvm


def _read(stream):
    head = stream.read(8)
    if len(head) < 8:
        return None
    (size,) = struct.unpack("<Q", head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


def _write(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # no /proc (macOS): the peak, in bytes there
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def optimize_module(module, tm, level: int, loop_unrolling: bool) -> None:
    """LLVM's O<level> pipeline with both vectorizers (also used in-process by ``engine.optimize``)."""
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = loop_unrolling
    pb = llvm.create_pass_builder(tm, pto)
    mpm = pb.getModulePassManager()
    mpm.run(module, pb)
    mpm.close()
    pb.close()
    pto.close()


def target_machine(cpu: str, features: str, codegen_level: int = 3):
    """The JIT's target machine for this CPU at one code generation level."""
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=cpu, features=features, opt=codegen_level, reloc="default", codemodel="jitdefault")


def compile_module(tm, llvm_ir: str, level: int, loop_unrolling: bool):
    """IR text -> (optimized IR or None at level 0, object code, declared symbols, defined
    functions)."""
    ctx = llvm.create_context()
    try:
        mod = llvm.parse_assembly(llvm_ir, context=ctx)
        try:
            mod.verify()
            mod.triple = tm.triple
            mod.data_layout = str(tm.target_data)
            if level:
                optimize_module(mod, tm, level, loop_unrolling)
            declared = [g.name for g in list(mod.functions) + list(mod.global_variables)
                        if g.is_declaration and not g.name.startswith("llvm.")]
            defined = [f.name for f in mod.functions if not f.is_declaration and f.linkage == llvm.Linkage.external]
            return (str(mod) if level else None), tm.emit_object(mod), declared, defined
        finally:
            mod.close()
    finally:
        ctx.close()


def _fork_siblings(spec: str) -> None:
    """``--siblings in,out;in,out``: fork one more worker per pair of pipe ends (its stdin
    and stdout), now that llvmlite is loaded (a fork costs ~2 ms, a start ~60 ms of CPU).
    Each child goes on as a worker of its own; this process reaps them (SIGCHLD ignored)."""
    import signal

    pairs = [tuple(int(fd) for fd in pair.split(",")) for pair in spec.split(";") if pair]
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for fd_in, fd_out in pairs:
        try:
            pid = os.fork()
        except OSError:  # its pipes close below: the parent sees it gone and starts another
            continue
        if pid == 0:  # (nothing read or written yet: stdin's buffer is empty)
            os.dup2(fd_in, 0)
            os.dup2(fd_out, 1)
            for fd in {fd for pair in pairs for fd in pair}:
                os.close(fd)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            return
    for fd in {fd for pair in pairs for fd in pair}:
        os.close(fd)


def main() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    if len(sys.argv) > 2 and sys.argv[1] == "--siblings":
        _fork_siblings(sys.argv[2])
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not corrupt the protocol
    hello = _read(inp)
    if hello is None:
        return
    cpu, features = hello
    machines = {3: target_machine(cpu, features)}
    _write(out, ("ready", _rss(), os.getpid()))
    while True:
        req = _read(inp)
        if req is None:
            return
        llvm_ir, level, loop_unrolling, codegen_level = req
        try:
            tm = machines.get(codegen_level)
            if tm is None:
                tm = machines[codegen_level] = target_machine(cpu, features, codegen_level)
            t0 = time.process_time()
            made = compile_module(tm, llvm_ir, level, loop_unrolling)
            reply = ("ok", *made, time.process_time() - t0, _rss())
        except Exception as exc:  # reported to the parent, which raises it there
            reply = ("error", type(exc).__name__, str(exc), _rss())
        _write(out, reply)


if __name__ == "__main__":
    main()
