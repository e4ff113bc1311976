"""The kernel program: everything a compiled function does per call, as one frozen artifact.

:func:`tcomp.passes.lower_kernels` makes it from a graph after fusion.  A backend turns it
into two entries, ``plan`` (shapes, checks, workspace size) and ``run`` (views, kernel calls
or launches), and never re-derives roles, inlining, views or memory: there is one fusion
(the graph pass), one memory planner (``passes/memory.py``) and one notion of a view (here).

Design, and why
---------------

**Dims are registers of one straight-line integer program** (:class:`ShapeProgram`).  A dim
anywhere in the program (a value's shape, a view's offset or stride, a buffer's size or
workspace offset, a kernel's iteration space) is a ``DimRef``: an ``int`` literal, or the
name ``"s<k>"`` of the register written by instruction ``k``.  Instructions read input dims
(``dim``), small integer (or float) input *values* (``load``: reshape targets, arange
bounds, slice bounds, scalar indices, the minibatch index of ``givens``) and compute with
``add sub mul floordiv mod max min neg abs sign eq ne lt le gt ge and or not select cast
truediv ceil floor``.  There are no loops, calls or memory writes, so the program lowers to
a few dozen LLVM instructions (CPU ``plan``), runs in C before an AOT entry touches memory,
and is evaluated here in Python by :func:`evaluate_shape_program` (the test oracle).  The
builder hash-conses and folds (``mul(n, 4)`` is one register wherever it occurs, static
dims are literals), so equal sizes are *recognizably* equal: that is what lets the memory
planner reuse buffers exactly when dims are symbolic (see below), what makes most checks
fold away at compile time, and what makes in-place decisions exact (same registers => same
run-time shape).  Registers are typed (``i64``; ``f64`` only for float arange bounds); a
``cast`` to a narrow dtype wraps exactly as NumPy does, so host values computed in the
program equal the reference interpreter's.  Division by zero is total (0), so the program
never traps; a check guards every place where the (since removed) Python planner raised.

**Checks are instructions of the same program** (``check`` with the code of a
:class:`Check`), interleaved in the order a node-by-node evaluation meets them (input
checks first), so the *first* failing check is the one a user expects.  A :class:`Check`
carries the exception class, a ``str.format`` template of the exact message text and its
arguments (ints, Python-tuple shapes, bracketed ``[2, ?]`` shapes,
tensor types ``f32[2, 3]``), so a generated ``plan`` returns only the code (index + 1) and
the host formats the same message (:func:`format_check`; C can format it too: only ints).

**Values and storage** (:class:`Value`, :class:`Storage`): every tensor the program
touches is a value with a dtype, dims and one storage: ``input`` (caller memory; inputs
are C-contiguous at the entry), ``constant`` (bytes in the program: module globals),
``buffer`` (a workspace buffer), ``output`` (the caller's output array ``p``: escaping
values are written straight into caller memory, never copied out), or ``view`` (offset and
strides, in elements, of a *root* value: views of views are composed at lowering, so a
backend only ever adds an offset to a root pointer).  Host values a kernel reads as a
tensor (``cast(x.shape[0])``) are registers stored by a ``scalar`` kernel into a rank-0
buffer.

**Kernels** (:class:`Kernel`), in execution order: ``kind`` (``fused``, ``elemwise``,
``reduce``, ``softmax``, ``matmul``, ``gather``, ``update``, ``conv2d``, ``random``, ...,
``scalar``, ``copy``, ``transpose``), the graph op and its attrs (the fused body for
``fused``), ``args`` in the op's operand order (values, or registers for the operands that
are host values, so a kernel never reads a shape-deciding scalar from memory), the values
it ``writes``, its iteration ``space`` and named ``params`` groups (the fused iteration
space and reshape-step dims, normalized slice starts/steps, arange first/delta): exactly
what the CPU kernels read today from the parameter array.  ``may_alias`` lists the
(written value, read value) pairs that share memory (in place, donation): every other
pointer pair is ``noalias``.

**Memory**: one call of ``passes.memory.assign_storage`` over the kernel schedule.  Sizes
are ints when static, else the *register* of the byte size; the planner's exact-key rule
then reuses a buffer only for a value of the identical size expression (``f32[n, 4]`` and
``i32[4, n]`` share ``mul(n, 16)``).  That choice keeps every buffer's size a single
expression and the workspace layout a prefix sum of 64-byte aligned sizes (each
``Buffer.offset`` an expression evaluated once by ``plan``); the alternative, growing a
buffer to ``max`` of several symbolic sizes, would need ``max`` chains and gives the same
reuse in the common case (a batch dim shared by all intermediates).  Escaping values get
``output`` storage; a donated shared-variable update ``W - lr*g`` is an output whose slot the
caller *may* fill with the input's own array (``Output.donates``): the schedule and the
kernel's ``may_alias`` are valid either way, so no second assignment is needed when a call
cannot donate (read-only, misaligned or overlapping arrays).

**Kernel parameters** (``Kernel.params``, beyond the dims of the values it reads and writes):
``fused``: ``space`` (the last body step's dims) and ``step<j>`` (the dims of leading reshape
step ``j``); ``gather``/``update`` (and basic-subtensor views): ``index``, one (start, step)
pair per index entry, normalized like ``slice.indices`` (an integer index: (index, 0));
``update``: also ``selection``, the dims written; ``arange``: ``start_delta`` (first value and
step in the result dtype; ``f64`` registers for float results); ``scalar``: its register is
its one ``Arg``.  ``space`` is the loop a backend parallelizes or maps onto a grid: the
result dims for elementwise-like kernels, the *input* dims for ``reduce`` and ``softmax``.
Kernels whose index *arrays* are tensors (``gather``, ``update``) bounds-check them while
they run: ``run`` returns 1 + the kernel's position, and the host raises
``IndexError(f"{kernel.label}: index out of bounds (checked in native code)")`` as today.

**What the entries do.**  ``plan(dims of every input, pointers of value_inputs) ->
code``: runs ``shape.insts``, returns 0 or a check's code, and fills the registers the host
needs (output dims, the workspace size).  The host turns a code into
``error_class(check.error)(format_check(check, regs))``; ``ShapeError`` is what the CPU
wrapper re-raises as ``ValueError``, exactly as now.  ``run(inputs, outputs, workspace,
registers)``: for each kernel in order, its pointers (root + offset for views), strides and
params, then the call (CPU) or launch over ``space`` (GPU).  Dtype and rank are not in the
program: the wrapper (or the C entry's descriptor check) verifies them first, so every
``dim`` instruction reads an axis that exists.  Checks are ordered like the planner's walk
over the topological order; the backend's planner walks an order in which donated updates
were moved later, so when two different checks would both fail, the first one reported can
differ in that one case.

**Limits** (clear ``TypeError`` at lowering): a host value must be a scalar computed by
integer/float arithmetic, casts, comparisons, ``where``, ``shape``, scalar inputs,
constants, an element of an input read with integer indices, or a fused kernel of those;
the Python planner also accepted, e.g., a reduction of an input vector as a reshape target.

**Loops and branches nest** (``passes/lower_loops.py`` has the details): a ``scan`` is a
``loop`` kernel and an ``ifelse`` a ``branch`` kernel whose attrs hold the body's own kernel
program (``program``; ``then``/``else``), lowered by the same pipeline; the outer program
sizes the results (trip count a register, result rows from the initial buffers or from the
body's shape rules run on outer registers), the backend runs the nested ``plan`` (per step
when the body's shapes read values) and ``run`` from the outer ``run``, the nested
workspace one heap block grown as needed.  Text, JSON and the hash include the nested
programs.  An ``until`` loop writes its step count into one more program output.

**Forms**: ``str(program)`` (text, for ``fn.dump('kernels')``), :func:`to_json` /
:func:`from_json` (exact round trip; constants as base64 bytes), :func:`program_hash`
(sha256 of an exact encoding of the same content: stable across processes, it names symbols
and keys caches).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from tcomp.ir import dtypes as dt
from tcomp.ir.interpreter import ShapeError
from tcomp.ir.ops import Constant
from tcomp.ir.serialize import _value_from_json, _value_to_json

FORMAT = "tcomp.kernel_program"
VERSION = 1
ALIGN = 64
DimRef = Union[int, str]  # an int literal or a register name "s<k>" (f64 literals: float)


# -- the shape program ------------------------------------------------------------------------

class HostValueUnavailable(TypeError):
    """A rank-0 value decides a shape or an index but only a kernel can compute it (e.g. the
    number of trials of a binomial draw is ``max(n)`` over a tensor ``n``).  ``node`` is the
    graph node: a backend may run the graph in two stages, that value first, then the rest
    with it as a scalar input (``tcomp/backend/cpu/staged.py``)."""

    def __init__(self, message: str, node: int):
        super().__init__(message)
        self.node = node


@dataclass(frozen=True)
class Inst:
    """``s<k> = op(args) {attrs}`` of type ``i64`` or ``f64`` (``check`` writes no register)."""
    op: str
    args: tuple = ()
    attrs: tuple = ()  # sorted (name, value) pairs
    type: str = "i64"

    def attr(self, name):
        return dict(self.attrs)[name]


@dataclass(frozen=True)
class Check:
    """A call-time check: ``error`` ('ShapeError', 'ValueError', 'IndexError') with the
    message ``template.format(*formatted args)``; an arg is ``("int", ref)``,
    ``("tuple", refs)`` (Python tuple repr), ``("list", refs)`` (``[2, 3]``) or
    ``("type", dtype, refs)`` (``f32[2, 3]``)."""
    error: str
    template: str
    args: tuple = ()


@dataclass(frozen=True)
class ShapeProgram:
    insts: tuple
    checks: tuple
    #: graph input positions whose *values* the program loads (passed to ``plan``)
    value_inputs: tuple = ()


# -- values, kernels, memory -----------------------------------------------------------------

@dataclass(frozen=True)
class Storage:
    """``kind``: 'input' (``index``: input position), 'constant' (``data``), 'buffer'
    (``index``: buffer id), 'output' (``index``: output position) or 'view' (``base``: a
    root value, ``offset`` and ``strides`` in elements, ``contiguous`` when C order)."""
    kind: str
    index: Optional[int] = None
    data: Optional[Constant] = None
    base: Optional[int] = None
    offset: DimRef = 0
    strides: tuple = ()
    contiguous: bool = True


@dataclass(frozen=True)
class Value:
    id: int
    dtype: str
    dims: tuple
    storage: Storage
    node: Optional[int] = None  # the graph node it is (None: a copy or an unused result)

    @property
    def ndim(self) -> int:
        return len(self.dims)


@dataclass(frozen=True)
class Arg:
    """One operand of a kernel: a value, or (for a shape-deciding scalar) a register."""
    value: Optional[int] = None
    scalar: DimRef = None
    dtype: Optional[str] = None  # the scalar operand's graph dtype


@dataclass(frozen=True)
class Kernel:
    kind: str
    op: str
    attrs: tuple  # sorted (name, value) pairs of the graph op (the fused body for 'fused')
    args: tuple
    writes: tuple
    space: tuple
    params: tuple = ()  # (name, tuple of DimRef) groups
    may_alias: tuple = ()  # (written value, read value) pairs sharing memory
    node: Optional[int] = None
    label: str = ""

    @property
    def reads(self) -> tuple:
        return tuple(dict.fromkeys(a.value for a in self.args if a.value is not None))

    def param(self, name) -> tuple:
        return dict(self.params)[name]


@dataclass(frozen=True)
class Buffer:
    id: int
    size: DimRef    # bytes
    offset: DimRef  # bytes from the workspace start (64-byte aligned)


@dataclass(frozen=True)
class Input:
    name: str
    dtype: str
    shape: tuple  # the declared type's dims (int, name or None)
    value: int


@dataclass(frozen=True)
class Output:
    value: int
    #: graph input position whose array the caller may pass as this output (a donated update)
    #: when its shape is this call's output shape (the dims may be other registers)
    donates: Optional[int] = None


@dataclass(frozen=True)
class KernelProgram:
    inputs: tuple
    outputs: tuple
    values: tuple
    kernels: tuple
    shape: ShapeProgram
    buffers: tuple
    workspace: DimRef

    def value(self, v: int) -> Value:
        return self.values[v]

    def __str__(self) -> str:
        return format_program(self)

    def to_json(self, indent=None) -> str:
        return to_json(self, indent)

    @property
    def hash(self) -> str:
        return program_hash(self)


# -- JSON --------------------------------------------------------------------------------------

_CLASSES = {c.__name__: c for c in (Inst, Check, ShapeProgram, Storage, Value, Arg, Kernel, Buffer, Input, Output,
                                    KernelProgram)}


_FIELDS: dict = {}  # type -> its dataclass field names (False: not a dataclass)
_HEADS: dict = {}  # type -> (the hash's header of its objects, its field names), or False


def _enc(x):
    # (dispatch on the exact type, field names per class: the hash of a deep gradient's program
    # encoded ~400,000 objects, and dataclasses.is_dataclass/fields per object was most of it)
    t = type(x)
    if t is str or t is int or t is bool or x is None:
        return x
    names = _FIELDS.get(t)
    if names is None:
        names = _FIELDS[t] = tuple(f.name for f in dataclasses.fields(t)) if dataclasses.is_dataclass(t) else False
    if names is not False:
        d = {"@": t.__name__}
        for name in names:
            d[name] = _enc(getattr(x, name))
        return d
    if isinstance(x, tuple):
        return {"tuple": [_enc(e) for e in x]}
    return _value_to_json(x, "kernel program")


def _dec(x):
    if isinstance(x, dict) and "@" in x:
        cls = _CLASSES[x["@"]]
        return cls(**{k: _dec(v) for k, v in x.items() if k != "@"})
    if isinstance(x, dict) and set(x) == {"tuple"}:
        return tuple(_dec(e) for e in x["tuple"])
    return _value_from_json(x, "kernel program")


def to_json(p: KernelProgram, indent=None) -> str:
    """Strict JSON (sorted keys): the canonical form the hash is taken of."""
    return json.dumps({"format": FORMAT, "version": VERSION, "program": _enc(p)}, indent=indent, sort_keys=True,
                      allow_nan=False, separators=None if indent else (",", ":"))


def from_json(text: str) -> KernelProgram:
    d = json.loads(text)
    if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("version") != VERSION:
        raise ValueError(f"not a {FORMAT} version {VERSION} document")
    return _dec(d["program"])


def program_hash(p: KernelProgram) -> str:
    """sha256 of an exact, unambiguous encoding of ``p`` (what :func:`to_json` holds, written
    straight into a list of fragments: no dict per object and no sorted JSON dump, which was
    0.2 s of the 1000-output graph's compile)."""
    out = [f"{FORMAT}.{VERSION}.h1;"]
    _hash_into(p, out)
    h = hashlib.sha256()
    h.update("".join(out).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _hash_into(x, out: list) -> None:
    """Append ``x``'s encoding: every fragment is tagged and length-prefixed or terminated, a
    dataclass by its class and field names, then its fields in declaration order, any
    other value by its exact JSON form (``ir.serialize``: floats, constants, types, lists)."""
    t = type(x)
    if t is str:
        out.append(f"s{len(x)}:{x}")
    elif t is int:
        out.append(f"i{x};")
    elif t is tuple:
        out.append(f"({len(x)};")
        for e in x:
            _hash_into(e, out)
    elif x is None:
        out.append("N")
    elif t is bool:
        out.append("T" if x else "F")
    else:
        head = _HEADS.get(t)
        if head is None:
            names = _FIELDS.get(t)
            if names is None:
                names = _FIELDS[t] = tuple(f.name for f in dataclasses.fields(t)) if dataclasses.is_dataclass(t) \
                    else False
            head = _HEADS[t] = (f"{{{t.__name__}({','.join(names)});", names) if names is not False else False
        if head is not False:
            out.append(head[0])
            for name in head[1]:
                _hash_into(getattr(x, name), out)
        elif isinstance(x, np.bool_):  # (as the JSON form: a NumPy bool or int is a bool or int)
            out.append("T" if x else "F")
        elif isinstance(x, np.integer):
            out.append(f"i{int(x)};")
        else:
            text = json.dumps(_value_to_json(x, "kernel program"), sort_keys=True, allow_nan=False,
                              separators=(",", ":"))
            out.append(f"j{len(text)}:{text}")


# -- evaluating the shape program ---------------------------------------------------------------

def _wrap(v, dtype):
    """``v`` converted to ``dtype``'s value domain (ints wrap, float32 rounds), as NumPy's astype."""
    with np.errstate(all="ignore"):
        r = np.array(v).astype(dtype)
    if dtype == "bool":
        return int(bool(r))
    return float(r) if dt.is_float(dtype) else int(r)


def _fdiv(a, b):
    with np.errstate(all="ignore"):
        return float(np.float64(a) / np.float64(b))


def _floordiv(a, b):
    if isinstance(a, float) or isinstance(b, float):
        with np.errstate(all="ignore"):
            return float(np.floor_divide(np.float64(a), np.float64(b)))
    return 0 if b == 0 else a // b


def _mod(a, b):
    if isinstance(a, float) or isinstance(b, float):
        with np.errstate(all="ignore"):
            return float(np.mod(np.float64(a), np.float64(b)))
    return 0 if b == 0 else a % b


def _sign(a):
    return (a > 0) - (a < 0) if not (isinstance(a, float) and a != a) else a


#: the scalar semantics of every instruction (shared by the evaluator and the builder's folding)
SCALAR_OPS = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "floordiv": _floordiv, "mod": _mod, "truediv": _fdiv,
    "max": lambda a, b: a if a >= b or b != b else b, "min": lambda a, b: a if a <= b or b != b else b,
    "neg": lambda a: -a, "abs": abs, "sign": _sign,
    "eq": lambda a, b: int(a == b), "ne": lambda a, b: int(a != b), "lt": lambda a, b: int(a < b),
    "le": lambda a, b: int(a <= b), "gt": lambda a, b: int(a > b), "ge": lambda a, b: int(a >= b),
    "and": lambda a, b: int(bool(a) and bool(b)), "or": lambda a, b: int(bool(a) or bool(b)),
    "not": lambda a: int(not a), "select": lambda c, a, b: a if c else b,
    "ceil": lambda a: float(math.ceil(a)) if math.isfinite(a) else a,
    "floor": lambda a: float(math.floor(a)) if math.isfinite(a) else a,
}


def apply_inst(inst: Inst, args: list):
    """The result of one non-``check``, non-load instruction on concrete arguments."""
    if inst.op == "cast":
        return _wrap(args[0], inst.attr("dtype"))
    r = SCALAR_OPS[inst.op](*args)
    if inst.type == "f64":
        return float(r)
    return int(r)


def error_class(name: str):
    return {"ShapeError": ShapeError, "ValueError": ValueError, "IndexError": IndexError,
            "TypeError": TypeError}[name]


def format_check(check: Check, regs: dict) -> str:
    def ref(r):
        return regs[r] if isinstance(r, str) else r

    def dim(r):
        return "?" if r is None else str(ref(r))

    out = []
    for a in check.args:
        if a[0] == "int":
            out.append(ref(a[1]))
        elif a[0] == "tuple":
            out.append(tuple(ref(r) for r in a[1]))
        elif a[0] == "list":
            out.append("[" + ", ".join(dim(r) for r in a[1]) + "]")
        else:
            out.append(f"{dt.SHORT_NAMES[a[1]]}[{', '.join(dim(r) for r in a[2])}]")
    return check.template.format(*out)


def evaluate_shape_program(sp: ShapeProgram, arrays) -> dict:
    """Registers (name -> int/float) for these input arrays; raises the first failing
    check's exception with its message (what a generated ``plan`` reports as a code)."""
    regs: dict = {}

    def ref(r):
        return regs[r] if isinstance(r, str) else r

    for k, inst in enumerate(sp.insts):
        if inst.op == "check":
            if not ref(inst.args[0]):
                c = sp.checks[inst.attr("code") - 1]
                raise error_class(c.error)(format_check(c, regs))
            continue
        if inst.op == "dim":
            r = int(np.shape(arrays[inst.attr("input")])[inst.attr("axis")])
        elif inst.op == "load":
            a = np.asarray(arrays[inst.attr("input")])
            v = a.reshape(-1)[ref(inst.args[0])] if a.ndim else a[()]
            r = float(v) if inst.type == "f64" else int(v)
        else:
            r = apply_inst(inst, [ref(a) for a in inst.args])
        regs[f"s{k}"] = r
    return regs


def resolve(ref, regs):
    """A DimRef's concrete value."""
    if isinstance(ref, tuple):
        return tuple(resolve(r, regs) for r in ref)
    return regs[ref] if isinstance(ref, str) else ref


# -- the text form ---------------------------------------------------------------------------------

def _dims(dims) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _attrs(attrs) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in attrs)


def _storage(v: Value) -> str:
    s = v.storage
    if s.kind in ("input", "output", "buffer"):
        return f"{s.kind} {s.index}"
    if s.kind == "constant":
        return "constant" + (f" {s.data.value.item()!r}" if s.data.value.ndim == 0 else f" {list(s.data.value.shape)}")
    lay = "contiguous" if s.contiguous else "strides " + _dims(s.strides)
    return f"view of v{s.base} offset {s.offset} {lay}"


def _fmt_arg(a) -> str:
    return str(a[1]) if a[0] == "int" else _dims(a[-1])


def format_program(p: KernelProgram) -> str:
    from tcomp.ir.ops.fused import format_body

    lines = [f"kernel program {program_hash(p)[:16]}: {len(p.inputs)} inputs, {len(p.outputs)} outputs, "
             f"{len(p.kernels)} kernels, {len(p.buffers)} buffers, workspace {p.workspace} bytes"]
    lines.append("inputs:")
    for i, x in enumerate(p.inputs):
        shape = ", ".join("?" if d is None else str(d) for d in x.shape)
        lines.append(f"  in{i} {x.name!r}: {dt.SHORT_NAMES[x.dtype]}[{shape}] -> v{x.value}")
    lines.append("shape program:")
    for k, inst in enumerate(p.shape.insts):
        args = ", ".join(str(a) for a in inst.args)
        if inst.op == "check":
            c = p.shape.checks[inst.attr("code") - 1]
            refs = ", ".join(_fmt_arg(x) for x in c.args)
            lines.append(f"  check {args} else #{inst.attr('code')} {c.error}: {c.template!r}"
                         + (f" % ({refs})" if refs else ""))
            continue
        if inst.op == "dim":
            lines.append(f"  s{k} = dim in{inst.attr('input')}[{inst.attr('axis')}]")
            continue
        if inst.op == "load":
            lines.append(f"  s{k} = load in{inst.attr('input')}.flat[{args}] : {inst.type}")
            continue
        a = _attrs(inst.attrs)
        lines.append(f"  s{k} = {inst.op} {args}{' {' + a + '}' if a else ''} : {inst.type}")
    lines.append("values:")
    for v in p.values:
        node = f"  (%{v.node})" if v.node is not None else ""
        lines.append(f"  v{v.id}: {dt.SHORT_NAMES[v.dtype]}{_dims(v.dims)} {_storage(v)}{node}")
    lines.append("buffers:")
    for b in p.buffers:
        lines.append(f"  buf{b.id}: offset {b.offset}, {b.size} bytes")
    lines.append("kernels:")
    for k in p.kernels:
        args = ", ".join(f"v{a.value}" if a.value is not None else f"{a.scalar}:{dt.SHORT_NAMES[a.dtype]}"
                         for a in k.args)
        extra = "".join(f" {name}={_dims(d)}" for name, d in k.params if (name, d) != ("space", k.space))
        alias = "".join(f" v{w}~v{r}" for w, r in k.may_alias)
        lines.append(f"  {k.kind} {k.op}({args}) -> {', '.join(f'v{w}' for w in k.writes)} "
                     f"space {_dims(k.space)}{extra}{' aliases' + alias if alias else ''}  # {k.label}")
        if k.op == "fused":
            lines.extend("      " + ln for ln in format_body(dict(k.attrs)).split("\n"))
        elif k.kind in ("loop", "branch"):  # the nested programs, indented (passes/lower_loops.py)
            nested = [(name, v) for name, v in k.attrs if isinstance(v, KernelProgram)]
            rest = [(name, v) for name, v in k.attrs if not isinstance(v, KernelProgram)]
            if rest:
                lines.append(f"      {{{_attrs(rest)}}}")
            for name, sub in nested:
                lines.append(f"      {name}:")
                lines.extend("        " + ln for ln in format_program(sub).split("\n"))
        elif k.attrs and k.kind not in ("scalar", "copy"):
            lines.append(f"      {{{_attrs(k.attrs)}}}")
    lines.append("outputs:")
    for i, o in enumerate(p.outputs):
        donated = f" (may be written into in{o.donates})" if o.donates is not None else ""
        lines.append(f"  out{i} = v{o.value}{donated}")
    return "\n".join(lines)


__all__ = ["KernelProgram", "ShapeProgram", "Inst", "Check", "Value", "Storage", "Arg", "Kernel", "Buffer", "Input",
           "Output", "to_json", "from_json", "program_hash", "evaluate_shape_program", "format_check", "resolve",
           "apply_inst", "SCALAR_OPS", "ALIGN"]
