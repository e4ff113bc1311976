"""``tcomp dump --vectorize-remarks``: LLVM's loop- and SLP-vectorizer remarks, per kernel.

llvmlite (0.50) has no remark API of its own (no diagnostic handler, no remark streamer,
no per-function pass pipeline that reaches the vectorizers), but LLVM's global options
``-pass-remarks``, ``-pass-remarks-missed`` and ``-pass-remarks-analysis`` can be set
through ``llvm.set_option``; LLVM's default diagnostic handler then writes
``remark: <unknown>:0:0: vectorized loop (vectorization width: 8, interleaved count: 4)``
to the process's stderr (file descriptor 2).  Without debug info a remark names no
function, so each kernel is optimized on its own: the function's unoptimized module is
split into one module per kernel (the kernel, made external so it is kept, plus the
helpers it calls; the other kernels dropped) and each is run through the same O3
pipeline the backend uses while fd 2 is redirected to a file.  The options are put back
to a pattern that matches no pass name afterwards, so later compiles stay quiet.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile

_DEFINE_NAME = re.compile(r'@("(?:[^"\\]|\\.)*"|[-\w.$]+)\s*\(')
_REF = re.compile(r'@("(?:[^"\\]|\\.)*"|[-\w.$]+)')
_PASSES = "loop-vectorize|slp-vectorizer"
_OFF = "^$"  # LLVM keeps the last pattern; an empty one would be ignored, this one matches no pass


def _unquote(name: str) -> str:
    return name[1:-1] if name.startswith('"') else name


def split_functions(text: str) -> tuple[list[str], dict]:
    """(module lines outside function bodies, {function name: its definition lines}) in order."""
    header, funcs = [], {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("define "):
            m = _DEFINE_NAME.search(line)
            j = i
            while lines[j].rstrip() != "}":
                j += 1
            funcs[_unquote(m.group(1))] = lines[i:j + 1]
            i = j + 1
            continue
        header.append(line)
        i += 1
    return header, funcs


def kernel_modules(text: str) -> dict:
    """{kernel name: module text holding that kernel (external) and what it calls}; the
    kernels are the functions the entry (``..._entry``, or a native program's ``..._run``)
    calls, in call order."""
    header, funcs = split_functions(text)
    refs = {name: {_unquote(r) for r in _REF.findall("\n".join(body[1:]))} & set(funcs) for name, body in funcs.items()}
    entries = [n for n in funcs if n.endswith(("_entry", "_run"))]
    kernels = []
    for e in entries:
        body = "\n".join(funcs[e][1:])
        for r in _REF.findall(body):
            name = _unquote(r)
            if name in funcs and name not in kernels and name not in entries:
                kernels.append(name)
    out = {}
    for k in kernels:
        keep, stack = {k}, [k]
        while stack:
            for r in refs[stack.pop()]:
                if r not in keep:
                    keep.add(r)
                    stack.append(r)
        parts = list(header)
        for name, body in funcs.items():
            if name in keep:
                first = body[0]
                if name == k:
                    first = re.sub(r"^define (internal |private )", "define ", first)
                parts += [first] + body[1:]
        out[k] = "\n".join(parts) + "\n"
    return out


def _classify(msg: str) -> str:
    """passed (vectorized), missed (LLVM's verdict) or analysis (a reason or cost note)."""
    if msg.startswith(("vectorized loop", "SLP vectorized", "Stores SLP vectorized", "Vectorized horizontal")):
        return "passed"
    if msg == "loop not vectorized" or "not beneficial" in msg:
        return "missed"
    return "analysis"


def _optimize_capturing_stderr(module_text: str) -> str:
    import llvmlite.binding as llvm

    from tcomp.runtime import engine

    with engine._lock:
        engine._init_llvm()
        mod = llvm.parse_assembly(module_text)
        mod.verify()
        tm = engine.target_machine()
        mod.triple = tm.triple
        mod.data_layout = str(tm.target_data)
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                for opt in ("pass-remarks", "pass-remarks-missed", "pass-remarks-analysis"):
                    llvm.set_option("tcomp", f"-{opt}={_PASSES}")
                engine.optimize(mod, 3, loop_unrolling=False)
            finally:
                for opt in ("pass-remarks", "pass-remarks-missed", "pass-remarks-analysis"):
                    llvm.set_option("tcomp", f"-{opt}={_OFF}")
                os.dup2(saved, 2)
                os.close(saved)
            tmp.seek(0)
            return tmp.read().decode(errors="replace")


def vectorize_remarks(fn) -> dict:
    """{kernel name: [(kind, message)]} for a function compiled by the CPU backend; kind is
    ``passed`` (vectorized), ``missed`` or ``analysis`` (the reason a loop was not)."""
    text = getattr(fn.compiled, "llvm_ir_unoptimized", None)
    if text is None:
        raise ValueError("vectorization remarks need a function compiled by the cpu backend")
    out = {}
    for name, module_text in kernel_modules(text).items():
        found = []
        for line in _optimize_capturing_stderr(module_text).splitlines():
            m = re.match(r"remark: [^:]*:\d+:\d+: (.*)", line.strip())
            if m:
                found.append((_classify(m.group(1)), m.group(1)))
        out[name] = found
    return out


def format_remarks(remarks: dict, graph=None) -> str:
    """One block per kernel, named by the graph node it computes (kernel ``k9`` is ``%9``)."""
    from tcomp.printing import node_label

    lines = ["vectorization remarks (LLVM loop-vectorize / slp-vectorizer, per kernel):"]
    for name, found in remarks.items():
        what = ""
        m = re.fullmatch(r"k(\d+)", name)
        if graph is not None and m and int(m.group(1)) in graph:
            n = int(m.group(1))
            label = node_label(graph, n)
            what = f" (%{n} = {label if len(label) <= 70 else label[:67] + '...'})"
        lines.append(f"kernel {name}{what}:")
        if not found:
            lines.append("  (no remarks: no loop reached the vectorizers)")
        lines += [f"  {kind}: {msg}" for kind, msg in found]
    return "\n".join(lines)
