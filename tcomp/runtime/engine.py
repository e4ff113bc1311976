"""The one process-wide LLVM JIT engine.

A second MCJIT engine in the same process has crashed here (DESIGN.md), so every compiled
function adds its module to this single engine.  Access is serialized with a lock:
llvmlite's engine is not thread-safe while modules are being added.
"""
from __future__ import annotations

import threading

import llvmlite.binding as llvm

_lock = threading.RLock()
_engine = None
_target_machine = None
_initialized = False


def _init_llvm() -> None:
    global _initialized
    if not _initialized:
        # llvmlite >= 0.45 initializes core LLVM itself; only the native target is ours.
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _initialized = True


def target_machine() -> "llvm.TargetMachine":
    """The host target machine (host CPU name and features, so AVX2 etc. are used)."""
    global _target_machine
    with _lock:
        if _target_machine is None:
            _init_llvm()
            target = llvm.Target.from_default_triple()
            _target_machine = target.create_target_machine(
                cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
                opt=3, reloc="default", codemodel="jitdefault")
        return _target_machine


def _get_engine():
    global _engine
    if _engine is None:
        tm = target_machine()
        backing = llvm.parse_assembly("")
        _engine = llvm.create_mcjit_compiler(backing, tm)
    return _engine


def optimize(module: "llvm.ModuleRef", level: int = 3, loop_unrolling: bool = True) -> None:
    """Run LLVM's new-pass-manager O``level`` pipeline (vectorizers on) on ``module``.

    ``loop_unrolling=False`` keeps the vectorizer (and its interleaving) but skips the
    unroll passes, which full-unroll small static loop nests into huge code: the CPU
    backend measured 10-40x faster compiles and ~20x smaller modules without them.
    """
    tm = target_machine()
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = loop_unrolling
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(module, pb)


def compile_ir(llvm_ir: str, *, opt_level: int = 3, loop_unrolling: bool = True) -> "llvm.ModuleRef":
    """Parse, verify, optimize and add a module to the engine; returns the module.

    Function addresses are then available from :func:`function_address`.
    """
    with _lock:
        _init_llvm()
        mod = llvm.parse_assembly(llvm_ir)
        mod.verify()
        mod.triple = target_machine().triple
        mod.data_layout = str(target_machine().target_data)
        if opt_level:
            optimize(mod, opt_level, loop_unrolling)
        engine = _get_engine()
        engine.add_module(mod)
        engine.finalize_object()
        engine.run_static_constructors()
        return mod


def function_address(name: str) -> int:
    with _lock:
        addr = _get_engine().get_function_address(name)
    if not addr:
        raise KeyError(f"JIT has no function {name!r}")
    return addr


def host_assembly(module: "llvm.ModuleRef") -> str:
    """The host assembly of an (optimized) module, for ``fn.dump('asm')``."""
    with _lock:
        return target_machine().emit_assembly(module)
