"""Ahead-of-time export: a compiled function as a standalone shared library with a C header.

``tcomp.aot.export(fn, "out/libdigits.so")`` writes ``libdigits.so`` and ``libdigits.h``; the
library needs nothing but libc, libm and libpthread (no Python, NumPy, LLVM or tcomp).
``tcomp.aot.load(path)`` calls it from Python with the JIT function's checks;
``tcomp inspect libdigits.so`` prints its manifest; ``tcomp aot MODULE.py:NAME -o libNAME.so``
exports from the command line.

What a library is, and why:

* **The JIT's code.**  The native program of each function (``tcomp.passes.kernel_program``:
  kernels plus the generated ``plan``/``run`` entries, ``backend/cpu/host_program.py``) is the
  module the JIT compiles, optimized by the same passes for the target, so for the host target
  a library computes bit for bit what the JIT does.  It is emitted position independent and
  linked with the system ``cc -shared`` (``build.py``).
* **A true C ABI** (``csource.py``): per function ``NAME`` the typed entries ``NAME`` (allocates
  its workspace) and ``NAME_ws`` (takes the caller's), whose parameters are the data pointers
  and the runtime sizes of the symbolic dims, then each output's pointer and capacity;
  ``NAME_shapes`` (the output dims and workspace bytes for given sizes) and ``NAME_dlpack``
  (DLPack ``DLTensor`` descriptors).  Status codes, the last error per thread, shapes and dtypes
  in comments: the header documents itself.
* **Checks before memory** (``cruntime.py``): every entry validates pointers (null, alignment,
  overlaps), sizes and output capacities, then runs ``plan`` (static dims, symbolic dims agreeing,
  the value-dependent checks) and formats the failing check's message in C from the same
  template the JIT formats, so the message text is the JIT's.  Nothing global is written; the
  entries are reentrant and may run concurrently.
* **State** (``state=``): ``'embedded'`` copies the shared variables' values into the library
  read-only (inference; a function with updates is refused); ``'external'`` makes each shared
  variable a state parameter, and updates are written into the caller's buffers after the
  step (straight in when the program donates the buffer), so a C program can train.
* **A manifest** (JSON in the ``.tcomp_manifest`` section and the ``LIB_manifest`` symbol):
  signature, dtypes, shapes, tcomp version, target, each program's structural hash.
* **Targets**: the host (default), ``'x86-64-v3'`` (AVX2, FMA), ``'x86-64'`` (baseline), other
  ``x86-64-v2/v4``; ``'aarch64-linux-gnu'`` writes the object, C source and header to link with
  a cross compiler (``export`` returns their paths) since no linker for it is assumed.
"""
from __future__ import annotations

import json
import os
import re

from .build import TARGETS, read_manifest, resolve_target
from .csource import api_symbols, header, library_source
from .spec import build_spec

FORMAT = "tcomp.aot"
VERSION = 1


def _lib_name(path: str) -> str:
    base = os.path.basename(path)
    m = re.fullmatch(r"lib(.+?)(\.so.*|\.o)?", base)
    name = m.group(1) if m else os.path.splitext(base)[0]
    name = re.sub(r"\W", "_", name)
    if not name or name[0].isdigit():
        name = "_" + name
    return name


def manifest(lib: str, specs, target, state: str) -> dict:
    import tcomp

    fns = []
    for s in specs:
        fns.append({
            "name": s.name, "hash": s.hp.hash, "plan": s.hp.plan_name, "run": s.hp.run_name,
            "inputs": [{"name": p.name, "c_name": p.c_name, "kind": p.kind, "dtype": p.dtype,
                        "shape": [d if isinstance(d, int) else None for d in p.declared], "dims": list(p.dims),
                        "declared": list(p.declared),
                        "updated": p.updated, "shape_deciding": p.position in s.value_inputs} for p in s.params],
            "embedded": [{"name": s.kp.inputs[k].name, "dtype": v.dtype.name, "shape": list(v.shape)}
                         for k, v in s.embedded],
            "outputs": [{"name": o.name, "c_name": o.c_name, "dtype": o.dtype, "dims": list(o.dims)}
                        for o in s.outputs],
            "updates": [{"state": s.params[u.state].name, "donated": u.donates} for u in s.updates],
            "single_output": s.single_output, "workspace_bytes": s.workspace_bytes,
            "entries": [s.name, f"{s.name}_ws", f"{s.name}_shapes", f"{s.name}_dlpack"],
        })
    return {"format": FORMAT, "version": VERSION, "library": lib, "tcomp_version": tcomp.__version__,
            "target": target.as_json(), "state": state, "functions": fns,
            "symbols": api_symbols(lib, specs)}


def export(fn, path: str, target=None, state: str = "embedded"):
    """Write ``libNAME.so`` (``path``) and ``libNAME.h`` beside it; returns the paths written.

    ``fn``: a ``tcomp.function``, or a dict ``{entry name: function}`` for several in one
    library (a single function's entries are named after the library).  ``target``: None (the
    host), one of :data:`TARGETS`; a target of another architecture writes ``libNAME.o``,
    ``libNAME.c`` and ``libNAME.h`` instead (link them with that architecture's ``cc``).
    ``state``: ``'embedded'`` or ``'external'`` (see the module docstring)."""
    from . import build

    lib = _lib_name(path)
    fns = fn if isinstance(fn, dict) else {lib: fn}
    if not fns:
        raise ValueError("tcomp.aot.export: no function to export")
    specs = []
    for name, f in fns.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ValueError(f"tcomp.aot.export: entry name {name!r} is not a C identifier")
        specs.append(build_spec(f, name, state))
    tgt = resolve_target(target)
    if tgt.native:
        build.find_cc()  # before any work: a clear error when there is no C compiler
    info = manifest(lib, specs, tgt, state)
    text = json.dumps(info, sort_keys=True)
    hdr = header(lib, specs, info)
    src = library_source(lib, specs, _cell_symbol(), _max_threads())
    obj = build.emit_object(specs, lib, tgt, text)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    h_path = os.path.join(d, f"lib{lib}.h")
    with open(h_path, "w") as f:
        f.write(hdr)
    if not tgt.native:
        o_path = os.path.join(d, f"lib{lib}.o")
        c_path = os.path.join(d, f"lib{lib}.c")
        with open(o_path, "wb") as f:
            f.write(obj)
        with open(c_path, "w") as f:
            f.write(src)
        return {"object": o_path, "source": c_path, "header": h_path}
    build.link(obj, src, hdr, lib, info["symbols"], os.path.abspath(path))
    return {"library": os.path.abspath(path), "header": h_path}


def _cell_symbol() -> str:
    from tcomp.backend.cpu.parallel import CELL_SYMBOL

    return CELL_SYMBOL


def _max_threads() -> int:
    from tcomp.backend.cpu.parallel import MAX_THREADS

    return MAX_THREADS


def load(path: str):
    """A Python callable of the library's function (a dict of them when it has several),
    with the JIT function's signature and checks (see ``loader.py``)."""
    from .loader import load as _load

    return _load(path)


__all__ = ["export", "load", "read_manifest", "TARGETS"]
