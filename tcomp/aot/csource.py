"""The generated C of an ahead-of-time library: the header (the true ABI, documented) and
the entries' source (descriptors of each program plus the generic runtime of ``cruntime``).

Why C for the entries (compiled by the same ``cc`` that links the library) and LLVM for the
kernels: the entries are validation, message formatting (``snprintf``), a per-thread error
buffer and ``malloc``; in C they are short and obviously right, and the C compiler checks
them against the header they include.  The numeric code, ``plan`` and ``run`` are the JIT's
own module (same IR, same passes), so a library computes bit for bit what the JIT computes.
"""
from __future__ import annotations

import string

from tcomp.ir import dtypes as dt
from tcomp.ir.types import TensorType

from .cruntime import RUNTIME
from .spec import DL_TYPES, FunctionSpec, Names

STATUS = {"TypeError": 1, "ValueError": 2, "ShapeError": 2, "IndexError": 3}


def _kernel_status(exc) -> int:
    """The C status of a kernel's run-time failure (``native_error``'s exception)."""
    import numpy as np

    if isinstance(exc, np.linalg.LinAlgError):
        return 5
    return STATUS[type(exc).__name__]

_HEADER_COMMON = r"""
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status of every entry: 0 on success, else one of these, and LIB_last_error() says why
 * (the message text the JIT raises; the JIT's exception class is in the comment). */
#ifndef TCOMP_OK
#define TCOMP_OK 0
#define TCOMP_ERR_TYPE 1   /* TypeError: a null or misaligned pointer, a wrong dtype or device */
#define TCOMP_ERR_VALUE 2  /* ValueError: a shape, size, symbolic-dim or value-dependent check */
#define TCOMP_ERR_INDEX 3  /* IndexError: an index array out of bounds (checked while running) */
#define TCOMP_ERR_NOMEM 4  /* MemoryError: the workspace could not be allocated */
#define TCOMP_ERR_LINALG 5 /* numpy.linalg.LinAlgError (a ValueError): a singular or not positive
                              definite matrix (checked while running) */
#endif

/* DLPack (https://dmlc.github.io/dlpack), the structs as dlpack.h v0.8 defines them; skipped
 * when dlpack.h was included first. */
#ifndef DLPACK_DLPACK_H_
#define DLPACK_DLPACK_H_
#define DLPACK_VERSION 80
#define DLPACK_ABI_VERSION 1
typedef enum {
  kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLOpenCL = 4, kDLVulkan = 7, kDLMetal = 8, kDLVPI = 9,
  kDLROCM = 10, kDLROCMHost = 11, kDLExtDev = 12, kDLCUDAManaged = 13, kDLOneAPI = 14, kDLWebGPU = 15,
  kDLHexagon = 16
} DLDeviceType;
typedef struct { DLDeviceType device_type; int32_t device_id; } DLDevice;
typedef enum {
  kDLInt = 0U, kDLUInt = 1U, kDLFloat = 2U, kDLOpaqueHandle = 3U, kDLBfloat = 4U, kDLComplex = 5U, kDLBool = 6U
} DLDataTypeCode;
typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } DLDataType;
typedef struct {
  void *data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t *shape;
  int64_t *strides;
  uint64_t byte_offset;
} DLTensor;
typedef struct DLManagedTensor {
  DLTensor dl_tensor;
  void *manager_ctx;
  void (*deleter)(struct DLManagedTensor *self);
} DLManagedTensor;
#endif
"""


def c_string(s: str) -> str:
    """A C string literal of ``s`` (UTF-8; non-printable bytes as octal escapes)."""
    out = []
    for byte in s.encode():
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= byte < 127 and ch != "?":  # '?' escaped: no trigraphs
            out.append(ch)
        else:
            out.append("\\%03o" % byte)
    return '"' + "".join(out) + '"'


def _dims_text(dims) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _bytes_text(item: int, dims):
    """``4 * x_dim0 * 64``-style byte count of a tensor (None when a dim is value-dependent)."""
    if any(d is None for d in dims):
        return None
    ints = [d for d in dims if isinstance(d, int)]
    names = [d for d in dims if isinstance(d, str)]
    n = item
    for d in ints:
        n *= d
    return " * ".join([str(n)] + names)


class Entry:
    """The C parameter lists of one function's typed entries."""

    def __init__(self, spec: FunctionSpec):
        self.spec = spec
        names = Names()
        names.used |= {p.c_name for p in spec.params} | {o.c_name for o in spec.outputs} | {s for s, _ in spec.sizes}
        self.caps = [names.take(f"{o.c_name}_count", "count") for o in spec.outputs]
        params, shape_params, seen = [], [], set()
        for p in spec.params:
            const = "" if p.updated else "const "
            params.append(f"{const}{p.ctype} *{p.c_name}")
            if p.position in spec.value_inputs:
                shape_params.append(f"const {p.ctype} *{p.c_name}")
            for d in p.dims:
                if isinstance(d, str) and d not in seen:
                    seen.add(d)
                    params.append(f"int64_t {d}")
                    shape_params.append(f"int64_t {d}")
        for o, cap in zip(spec.outputs, self.caps):
            params.append(f"{o.ctype} *{o.c_name}")
            params.append(f"int64_t {cap}")
        self.params = params
        self.shape_params = shape_params + ["int64_t *out_dims", "size_t *workspace_bytes"]
        self.out_rank = sum(len(o.dims) for o in spec.outputs)

    @property
    def upper(self) -> str:
        return self.spec.name.upper()

    def prototypes(self) -> dict:
        n = self.spec.name
        sig = ", ".join(self.params) or "void"
        return {
            n: f"int {n}({sig})",
            f"{n}_ws": f"int {n}_ws({', '.join(self.params + ['void *workspace', 'size_t workspace_bytes'])})",
            f"{n}_shapes": f"int {n}_shapes({', '.join(self.shape_params)})",
            f"{n}_dlpack": f"int {n}_dlpack(DLTensor *const *inputs, int32_t num_inputs, DLTensor *const *outputs, "
                           "int32_t num_outputs)",
        }


def header(lib: str, specs, manifest: dict) -> str:
    guard = f"TCOMP_LIB{lib.upper()}_H"
    t = manifest["target"]
    head = [f"/* lib{lib}.h: the C ABI of lib{lib}.so, generated by tcomp {manifest['tcomp_version']} "
            "(tcomp.aot.export).",
            f" * Target {t['triple']} (cpu {t['cpu']}); shared variables: {manifest['state']}.",
            " *",
            " * Every entry returns an int status (TCOMP_OK or TCOMP_ERR_*) and, on failure, leaves the",
            f" * message in {lib}_last_error() (one per thread).  All checks run before any output or state",
            " * is written; only what a kernel finds while running (an index array out of bounds,",
            " * TCOMP_ERR_INDEX; a singular or indefinite matrix, TCOMP_ERR_LINALG) may leave outputs",
            " * and updated state partly written.  Arrays are",
            " * C-contiguous (row-major), aligned to their element size; bool is one byte, 0 or 1.",
            " * Entries are reentrant and thread-safe: nothing global is written, the workspace is the",
            " * caller's (NAME_ws) or allocated for the call (NAME).  Large loops run on up to",
            f" * {lib}_set_num_threads(n) threads (1 until set; at most 16).",
            " * DLPack entries take host tensors (kDLCPU, kDLCUDAHost) of the exact dtype, strides NULL or compact",
            " * row-major (dims of size 1 may have any stride); other strides return TCOMP_ERR_VALUE.",
            " */",
            f"#ifndef {guard}", f"#define {guard}", _HEADER_COMMON,
            "/* The last error message of this thread (\"\" before any). */",
            f"const char *{lib}_last_error(void);",
            "/* Threads a large loop may use (1..16, larger is capped); returns TCOMP_OK or TCOMP_ERR_VALUE. */",
            f"int {lib}_set_num_threads(int n);",
            f"int {lib}_get_num_threads(void);",
            "/* The manifest: JSON (signature, dtypes, shapes, tcomp version, target, program hashes). */",
            f"extern const char {lib}_manifest[];", ""]
    for spec in specs:
        head.append(_function_doc(spec, Entry(spec)))
    head += ["#ifdef __cplusplus", "}", "#endif", f"#endif /* {guard} */", ""]
    return "\n".join(head)


def _function_doc(spec: FunctionSpec, e: Entry) -> str:
    n, up = spec.name, e.upper
    lines = [f"/* ---- {n} " + "-" * max(4, 84 - len(n)), " *"]
    width = max([len(p.c_name) for p in spec.params] + [len(o.c_name) for o in spec.outputs] + [4])
    arg_bytes = []
    if spec.params:
        lines.append(" * inputs (const unless updated):")
    for p in spec.params:
        role = " state, read" + (" and updated in place" if p.updated else "") if p.kind == "state" else ""
        item = dt.itemsize(p.dtype)
        lines.append(f" *   {p.c_name:<{width}}  {p.dtype}{_dims_text(p.dims)}{role}")
        arg_bytes.append(_bytes_text(item, p.dims))
    if spec.embedded:
        lines.append(f" * embedded read-only: {', '.join(spec.kp.inputs[k].name for k, _ in spec.embedded)} "
                     f"({sum(v.nbytes for _, v in spec.embedded)} bytes)")
    lines.append(" * outputs (the caller's buffers; NAME_count: the elements each holds):")
    for o in spec.outputs:
        lines.append(f" *   {o.c_name:<{width}}  {o.dtype}{_dims_text(o.dims)}")
        arg_bytes.append(_bytes_text(dt.itemsize(o.dtype), o.dims))
    if any(d is None for o in spec.outputs for d in o.dims):
        lines.append(f" * ('?': a dim that depends on input values; {n}_shapes gives it)")
    known = [b for b in arg_bytes if b is not None]
    text = " + ".join(known) or "0"
    if len(known) < len(arg_bytes):
        text += f" + outputs of value-dependent shape ({n}_shapes)"
    lines.append(f" * argument bytes: {text}")
    if spec.workspace_bytes is not None:
        lines.append(f" * temporary bytes (workspace): {spec.workspace_bytes} ({up}_WORKSPACE_BYTES)")
    else:
        lines.append(f" * temporary bytes (workspace): depends on the sizes; {n}_shapes gives it")
    lines += [" *",
              f" * {n}: allocates its workspace for the call; {n}_ws: the caller's (64-byte aligned,",
              f" *   at least {n}_shapes' workspace_bytes; may be NULL when that is 0).",
              f" * {n}_shapes: every output's dims, output after output, into out_dims[{up}_OUT_DIMS] and the",
              " *   workspace bytes (data pointers: only those of shape-deciding inputs are read).",
              f" * {n}_dlpack: the inputs in the order above ({up}_NUM_INPUTS), the outputs with their shapes set.",
              " */"]
    lines.append(f"#define {up}_NUM_INPUTS {len(spec.params)}")
    lines.append(f"#define {up}_NUM_OUTPUTS {len(spec.outputs)}")
    lines.append(f"#define {up}_OUT_DIMS {e.out_rank}")
    if spec.workspace_bytes is not None:
        lines.append(f"#define {up}_WORKSPACE_BYTES {spec.workspace_bytes}")
    for o in spec.outputs:
        if all(isinstance(d, int) for d in o.dims):
            count = 1
            for d in o.dims:
                count *= d
            lines.append(f"#define {up}_{o.c_name.upper()}_COUNT {count}")
    for proto in e.prototypes().values():
        lines.append(proto + ";")
    lines.append("")
    return "\n".join(lines)


def _ref(r, hp) -> str:
    if isinstance(r, str):
        return f"r[{hp.n_host + int(r[1:])}]"
    return f"INT64_C({int(r)})"


def _is_f64(r, hp) -> bool:
    return isinstance(r, float) or isinstance(r, str) and hp.types[int(r[1:])] == "f64"


def _emit_int(r, hp) -> str:
    if isinstance(r, float):
        return f"tc_f(m, {r!r});"
    if _is_f64(r, hp):
        return f"tc_fr(m, {_ref(r, hp)});"
    return f"tc_i(m, {_ref(r, hp)});"


def _emit_arg(a, hp) -> list:
    """C statements appending one format argument of a check (see ``kernel_program.Check``)."""
    kind = a[0]
    if kind == "int":
        return [_emit_int(a[1], hp)]
    if kind == "tuple":
        refs = a[1]
        out = ['tc_s(m, "(");']
        for i, r in enumerate(refs):
            out += (['tc_s(m, ", ");'] if i else []) + [_emit_int(r, hp)]
        return out + [f'tc_s(m, "{",)" if len(refs) == 1 else ")"}");']
    refs = a[1] if kind == "list" else a[2]
    out = [f'tc_s(m, {c_string(dt.SHORT_NAMES[a[1]] + "[" if kind == "type" else "[")});']
    for i, r in enumerate(refs):
        out += (['tc_s(m, ", ");'] if i else []) + (['tc_s(m, "?");'] if r is None else [_emit_int(r, hp)])
    return out + ['tc_s(m, "]");']


def _check_case(check, hp) -> list:
    out = []
    auto = 0
    for literal, field, spec, conv in string.Formatter().parse(check.template):
        if literal:
            out.append(f"tc_s(m, {c_string(literal)});")
        if field is None:
            continue
        if spec or conv not in (None, "s", "r"):
            raise TypeError(f"tcomp.aot: check message {check.template!r}: format {{{field}:{spec}}} is not supported")
        index = auto if field == "" else int(field)
        auto += 1
        out += _emit_arg(check.args[index], hp)
    return out


def _array(ctype: str, name: str, items) -> str:
    items = list(items)
    return f"static const {ctype} {name}[{max(len(items), 1)}] = {{{', '.join(items) or '0'}}};"


def state_symbol(spec: FunctionSpec, k: int) -> str:
    return f"tcomp_aot_{spec.name}_state{k}"


def _type_text(dtype, shape) -> str:
    return str(TensorType(dtype, tuple(shape)))


def function_source(spec: FunctionSpec) -> str:
    hp, kp, n = spec.hp, spec.kp, spec.name
    e = Entry(spec)
    lines = [f"/* ---- {n}: program {hp.hash[:16]} */",
             f"int32_t {hp.plan_name}(const int64_t *, void *const *, int64_t *);",
             f"int32_t {hp.run_name}(void *const *, void *const *, void *, const int64_t *);"]
    for k, _ in spec.embedded:
        lines.append(f"extern const unsigned char {state_symbol(spec, k)}[];")
    param_of = {p.position: (j, p) for j, p in enumerate(spec.params)}
    inputs = []
    for k, x in enumerate(kp.inputs):
        j, p = param_of.get(k, (-1, None))
        sizes = [c_string(d) if p is not None and isinstance(d, str) else "NULL" for d in (p.dims if p else x.shape)]
        static = [str(d) if isinstance(d, int) else "-1" for d in x.shape]
        lines.append(_array("char *const", f"{n}__sn{k}", sizes))
        lines.append(_array("int64_t", f"{n}__sd{k}", static))
        code, bits = DL_TYPES[x.dtype]
        inputs.append(f"{{{c_string(x.name)}, {dt.itemsize(x.dtype)}, {len(x.shape)}, {hp.dim_off[k]}, "
                      f"{int(k in spec.value_inputs)}, {j}, {code}, {bits}, {c_string(x.dtype)}, "
                      f"{c_string(_type_text(x.dtype, x.shape))}, {n}__sn{k}, {n}__sd{k}}}")
    lines.append(_array("tc_input", f"{n}__in", inputs))
    lines.append(_array("int32_t", f"{n}__params", [str(p.position) for p in spec.params]))
    outs = []
    for o in spec.outputs:
        lo, hi = hp.out_slots[o.index]
        code, bits = DL_TYPES[o.dtype]
        outs.append(f"{{{c_string(o.name)}, {dt.itemsize(o.dtype)}, {hi - lo}, {o.index}, {lo}, {code}, {bits}, "
                    f"{c_string(o.dtype)}, {c_string(_type_text(o.dtype, o.dims))}}}")
    lines.append(_array("tc_output", f"{n}__out", outs))
    upd = []
    for u in spec.updates:
        upd.append(f"{{{u.index}, {spec.params[u.state].position}, {int(u.donates)}, {hp.out_slots[u.index][0]}}}")
    lines.append(_array("tc_update", f"{n}__upd", upd))
    checks = kp.shape.checks
    lines.append(_array("uint8_t", f"{n}__cs", [str(STATUS[c.error]) for c in checks]))
    # what a kernel that returns its error code means: the message and the status (the JIT's)
    from tcomp.backend.cpu.kernels_linalg import native_error

    errors = [native_error(k) for k in kp.kernels]
    lines.append(_array("uint8_t", f"{n}__ks", [str(_kernel_status(e)) for e in errors]))
    lines.append(_array("char *const", f"{n}__labels", [c_string(str(e)) for e in errors]))
    lines.append(f"static void {n}__check(int32_t code, const int64_t *r, tc_msg *m) {{")
    lines.append("    (void)r;")
    lines.append("    switch (code) {")
    for i, c in enumerate(checks):
        lines.append(f"    case {i + 1}:")
        lines += ["        " + s for s in _check_case(c, hp)]
        lines.append("        break;")
    lines.append('    default: tc_add(m, "check %d failed", (int)code);')
    lines.append("    }")
    lines.append("}")
    pnames = ", ".join(p.name for p in spec.params)
    lines.append(f"static const tc_fn {n}__fn = {{{c_string(n)}, {len(kp.inputs)}, {len(spec.params)}, "
                 f"{len(spec.outputs)}, {len(kp.outputs)}, {len(spec.updates)}, {hp.n_dims}, {hp.n_regs}, "
                 f"{n}__in, {n}__params, {n}__out, {n}__upd, {hp.plan_name}, {hp.run_name}, {n}__check, {n}__cs, "
                 f"{n}__ks, {n}__labels, {c_string(pnames)}}};")
    n_in, n_dims, n_regs, n_out = max(len(kp.inputs), 1), max(hp.n_dims, 1), hp.n_regs, max(len(spec.outputs), 1)

    def fill(shape_only: bool) -> list:
        body = [f"    void *in[{n_in}] = {{0}};", f"    int64_t dims[{n_dims}] = {{0}};",
                f"    int64_t regs[{n_regs}];"]
        for k, x in enumerate(kp.inputs):
            j, p = param_of.get(k, (-1, None))
            off = hp.dim_off[k]
            if p is None:
                body.append(f"    in[{k}] = (void *){state_symbol(spec, k)};")
                body += [f"    dims[{off + a}] = {d};" for a, d in enumerate(x.shape)]
                continue
            if not shape_only or k in spec.value_inputs:
                body.append(f"    in[{k}] = (void *){p.c_name};")
            body += [f"    dims[{off + a}] = {d};" for a, d in enumerate(p.dims)]
        return body

    protos = e.prototypes()
    for kind in ("", "_ws"):
        lines.append(f"API {protos[n + kind]} {{")
        lines += fill(False)
        lines.append(f"    void *outs[{n_out}] = {{0}};")
        lines.append(f"    int64_t caps[{n_out}] = {{0}};")
        for j, (o, cap) in enumerate(zip(spec.outputs, e.caps)):
            lines.append(f"    outs[{j}] = (void *){o.c_name};")
            lines.append(f"    caps[{j}] = {cap};")
        ws = "workspace, workspace_bytes, 0" if kind else "NULL, 0, 1"
        lines.append(f"    return tc_call(&{n}__fn, in, dims, outs, caps, {ws}, regs);")
        lines.append("}")
    lines.append(f"API {protos[n + '_shapes']} {{")
    lines += fill(True)
    lines.append(f"    return tc_shapes(&{n}__fn, in, dims, out_dims, workspace_bytes, regs);")
    lines.append("}")
    lines.append(f"API {protos[n + '_dlpack']} {{")
    lines.append(f"    void *in[{n_in}] = {{0}};")
    lines.append(f"    int64_t dims[{n_dims}] = {{0}};")
    lines.append(f"    int64_t regs[{n_regs}];")
    for k, _ in spec.embedded:
        lines.append(f"    in[{k}] = (void *){state_symbol(spec, k)};")
        lines += [f"    dims[{hp.dim_off[k] + a}] = {d};" for a, d in enumerate(kp.inputs[k].shape)]
    lines.append(f"    return tc_dlpack(&{n}__fn, inputs, num_inputs, outputs, num_outputs, in, dims, regs);")
    lines.append("}")
    return "\n".join(lines) + "\n"


def library_source(lib: str, specs, cell_symbol: str, max_threads: int) -> str:
    parts = [f"/* lib{lib}.c: the entries of lib{lib}.so, generated by tcomp.aot (do not edit). */",
             "#include <stdarg.h>", "#include <stdio.h>", "#include <stdlib.h>", "#include <string.h>",
             "#include <pthread.h>", f'#include "lib{lib}.h"', "",
             '#define API __attribute__((visibility("default")))',
             f"extern int64_t {cell_symbol};  /* the kernels' thread count (tcomp's CPU runtime) */",
             RUNTIME]
    parts += [function_source(s) for s in specs]
    parts.append(f"""API const char *{lib}_last_error(void) {{ return tc_last_error(); }}
API int {lib}_set_num_threads(int n) {{
    if (n < 1) {{
        tc_msg m = tc_begin();
        tc_add(&m, "num_threads must be >= 1, got %d", n);
        return TCOMP_ERR_VALUE;
    }}
    __atomic_store_n(&{cell_symbol}, (int64_t)(n < {max_threads} ? n : {max_threads}), __ATOMIC_RELAXED);
    return TCOMP_OK;
}}
API int {lib}_get_num_threads(void) {{ return (int)__atomic_load_n(&{cell_symbol}, __ATOMIC_RELAXED); }}
""")
    return "\n".join(parts)


def api_symbols(lib: str, specs) -> list:
    out = [f"{lib}_last_error", f"{lib}_set_num_threads", f"{lib}_get_num_threads", f"{lib}_manifest"]
    for s in specs:
        out += list(Entry(s).prototypes())
    return out


__all__ = ["header", "library_source", "api_symbols", "state_symbol", "c_string", "Entry", "STATUS"]
