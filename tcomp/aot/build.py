"""Targets, object code and linking of an ahead-of-time library, and reading its manifest.

One object holds everything llvmlite makes: each function's program module (optimized
exactly as the JIT optimizes it, so the code is the JIT's), the CPU runtime module
(``parallel.runtime_ir``: the thread-count cell and the thread pool), and a data module with
the embedded shared variables (read-only, 64-byte aligned) and the manifest (a JSON string
in the ``.tcomp_manifest`` section and the symbol ``LIB_manifest``).  The system ``cc`` then
compiles the entries' C and links both into ``libLIB.so`` with ``-fvisibility=hidden`` and a
version script that exports the API symbols only.
"""
from __future__ import annotations

import os
import platform
import shutil
import struct
import subprocess
import tempfile
import threading
from dataclasses import dataclass

from llvmlite import ir

MANIFEST_SECTION = ".tcomp_manifest"

#: target name -> (triple, cpu); None: the host (its CPU name and features)
_X86 = "x86_64-unknown-linux-gnu"
TARGETS = {
    "x86-64": (_X86, "x86-64"), "x86-64-v2": (_X86, "x86-64-v2"), "x86-64-v3": (_X86, "x86-64-v3"),
    "x86-64-v4": (_X86, "x86-64-v4"), "aarch64-linux-gnu": ("aarch64-unknown-linux-gnu", "generic"),
}


@dataclass(frozen=True)
class Target:
    name: str
    triple: str
    cpu: str
    features: str

    @property
    def arch(self) -> str:
        return self.triple.split("-", 1)[0]

    @property
    def native(self) -> bool:
        """Code for this machine's architecture (the library can be linked and loaded here)."""
        return self.arch == _host_arch()

    def as_json(self) -> dict:
        return {"name": self.name, "triple": self.triple, "cpu": self.cpu, "features": self.features}


def _host_arch() -> str:
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


def _llvm():
    import llvmlite.binding as llvm

    from tcomp.runtime import engine

    engine.target_machine()  # the native target, initialized the JIT's way
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    return llvm


def resolve_target(target) -> Target:
    llvm = _llvm()
    if target is None or target == "host":
        return Target("host", llvm.get_process_triple(), llvm.get_host_cpu_name(),
                      llvm.get_host_cpu_features().flatten())
    if isinstance(target, str) and target in TARGETS:
        triple, cpu = TARGETS[target]
        return Target(target, triple, cpu, "")
    from tcomp.printing import unknown_choice

    raise ValueError(unknown_choice("tcomp.aot target", str(target), ("host",) + tuple(TARGETS)))


def target_machine(t: Target):
    llvm = _llvm()
    return llvm.Target.from_triple(t.triple).create_target_machine(
        cpu=t.cpu, features=t.features, opt=3, reloc="pic", codemodel="default")


def data_ir(lib: str, specs, manifest_json: str) -> str:
    """The data module: embedded shared variables and the manifest string."""
    from .csource import state_symbol

    m = ir.Module(name=f"lib{lib}_data")
    i8 = ir.IntType(8)
    for spec in specs:
        for k, value in spec.embedded:
            raw = value.tobytes() or b"\0"
            aty = ir.ArrayType(i8, len(raw))
            gv = ir.GlobalVariable(m, aty, name=state_symbol(spec, k))
            gv.global_constant = True
            gv.align = 64
            gv.visibility = "hidden"
            gv.initializer = ir.Constant(aty, bytearray(raw))
    raw = manifest_json.encode() + b"\0"
    aty = ir.ArrayType(i8, len(raw))
    gv = ir.GlobalVariable(m, aty, name=f"{lib}_manifest")
    gv.global_constant = True
    gv.section = MANIFEST_SECTION
    gv.initializer = ir.Constant(aty, bytearray(raw))
    return str(m)


def _runtime_ir(target: Target) -> str:
    """``parallel.runtime_ir`` for the target's architecture.  The pool reads the architecture
    (its ``pause`` intrinsic, the futex syscall number) from ``platform.machine()``; until it
    takes an ``arch`` argument, a cross target swaps in the target's for the emission."""
    import inspect

    from tcomp.backend.cpu import parallel

    if "arch" in inspect.signature(parallel.runtime_ir).parameters:
        return parallel.runtime_ir(arch=target.arch)
    if target.native:
        return parallel.runtime_ir()
    from tcomp.backend.cpu import threadpool

    class _Platform:
        def __getattr__(self, name):
            return getattr(platform, name)

        @staticmethod
        def machine():
            return target.arch

    with _PLATFORM_LOCK:
        saved, threadpool.platform = threadpool.platform, _Platform()
        try:
            return parallel.runtime_ir()
        finally:
            threadpool.platform = saved


_PLATFORM_LOCK = threading.Lock()


def emit_object(specs, lib: str, target: Target, manifest_json: str) -> bytes:
    """One PIC object: every program (optimized as the JIT does), the runtime, the data."""
    llvm = _llvm()
    from tcomp.runtime._optimizer_worker import optimize_module

    tm = target_machine(target)
    ctx = llvm.create_context()
    mods = []
    try:
        from tcomp.backend.cpu import kernels_gemm

        texts = [(s.llvm_ir, True) for s in specs] + [(_runtime_ir(target), True), (data_ir(lib, specs, manifest_json),
                                                                              False)]
        gemm = kernels_gemm.runtime_ir([s.llvm_ir for s in specs], visibility="hidden")
        if gemm is not None:  # the GEMM drivers the programs declare (the JIT links them from one library)
            texts.append((gemm, True))
        for text, opt in texts:
            mod = llvm.parse_assembly(text, context=ctx)
            mods.append(mod)
            mod.verify()
            mod.triple = tm.triple
            mod.data_layout = str(tm.target_data)
            if opt:
                optimize_module(mod, tm, 3, False)
        main = mods[0]
        for other in mods[1:]:
            main.link_in(other)  # (link_in consumes ``other``)
        mods = [main]
        return tm.emit_object(main)
    finally:
        for mod in mods:
            mod.close()
        ctx.close()


def find_cc() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc or not shutil.which(cc.split()[0]):
        raise RuntimeError("tcomp.aot.export: no C compiler found (set CC or install cc/gcc/clang): the library's "
                           "entries are compiled and linked with the system C compiler")
    return cc


def link(obj: bytes, source: str, header_text: str, lib: str, symbols, out_path: str) -> None:
    """``cc -shared`` the object and the entries into ``out_path``, exporting ``symbols`` only."""
    cc = find_cc().split()
    with tempfile.TemporaryDirectory(prefix="tcomp_aot_") as d:
        paths = {name: os.path.join(d, name) for name in (f"lib{lib}.o", f"lib{lib}.c", f"lib{lib}.h", "api.map")}
        with open(paths[f"lib{lib}.o"], "wb") as f:
            f.write(obj)
        for name, text in ((f"lib{lib}.c", source), (f"lib{lib}.h", header_text),
                           ("api.map", version_script(symbols))):
            with open(paths[name], "w") as f:
                f.write(text)
        tmp_out = os.path.join(d, "out.so")
        cmd = cc + ["-shared", "-fPIC", "-O2", "-std=gnu11", "-fvisibility=hidden", "-I", d,
                    "-o", tmp_out, paths[f"lib{lib}.c"], paths[f"lib{lib}.o"],
                    f"-Wl,--version-script={paths['api.map']}", "-Wl,--as-needed", "-lm", "-lpthread",
                    "-Wl,-z,noexecstack", "-Wl,-z,relro,-z,now"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"tcomp.aot.export: linking lib{lib}.so failed ({' '.join(cmd[:1])} exit "
                               f"{r.returncode}):\n{r.stderr[-4000:]}")
        shutil.move(tmp_out, out_path)


def version_script(symbols) -> str:
    return "{\n  global:\n" + "".join(f"    {s};\n" for s in symbols) + "  local: *;\n};\n"


# -- reading an ELF file -------------------------------------------------------------------------

def elf_header(data: bytes) -> dict:
    """Class, byte order, type and machine of an ELF file (``e_machine``: 62 x86-64, 183 AArch64)."""
    if data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    cls, order = data[4], data[5]
    end = "<" if order == 1 else ">"
    e_type, e_machine = struct.unpack_from(end + "HH", data, 16)
    return {"class": {1: 32, 2: 64}.get(cls), "little_endian": order == 1, "type": e_type, "machine": e_machine}


def elf_section(data: bytes, name: str):
    """The bytes of section ``name`` of a 64-bit ELF file, or None."""
    h = elf_header(data)
    if h["class"] != 64:
        raise ValueError("only 64-bit ELF files are read")
    end = "<" if h["little_endian"] else ">"
    e_shoff, = struct.unpack_from(end + "Q", data, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from(end + "HHH", data, 0x3A)

    def sh(i):
        return struct.unpack_from(end + "IIQQQQIIQQ", data, e_shoff + i * e_shentsize)
    names = sh(e_shstrndx)
    str_off = names[4]
    for i in range(e_shnum):
        s = sh(i)
        nm = data[str_off + s[0]:data.index(b"\0", str_off + s[0])].decode()
        if nm == name:
            if s[1] == 8:  # SHT_NOBITS
                return b""
            return data[s[4]:s[4] + s[5]]
    return None


def read_manifest(path: str) -> dict:
    """The manifest of a library (or object) that ``tcomp.aot.export`` wrote."""
    import json

    with open(path, "rb") as f:
        data = f.read()
    try:
        raw = elf_section(data, MANIFEST_SECTION)
    except (ValueError, struct.error) as exc:
        raise ValueError(f"{path}: not a tcomp library ({exc})") from None
    if raw is None:
        raise ValueError(f"{path}: not a tcomp library (no {MANIFEST_SECTION} section)")
    return json.loads(raw.split(b"\0", 1)[0].decode())


__all__ = ["Target", "TARGETS", "resolve_target", "emit_object", "link", "find_cc", "read_manifest", "elf_header",
           "elf_section", "MANIFEST_SECTION"]
