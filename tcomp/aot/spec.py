"""What one exported function looks like from C: its parameters, outputs and state.

A :class:`FunctionSpec` is made from a ``tcomp.function`` and its kernel program; the header,
the C entries, the manifest and the Python loader are all generated from it, so the four
agree by construction.

Parameters, in the order of the typed C entry: the function's explicit inputs, then (with
``state='external'``) one state buffer per shared variable the function reads or updates,
then the outputs.  Every symbolic dim of an input or state is a runtime size parameter
(``int64_t``): a *named* dim (``T.tensor(shape=('batch', 784))``) is one parameter shared by
every input that names it, an unnamed one is ``<input>_dim<axis>``.  With
``state='embedded'`` the shared variables' current values are copied into the library as
read-only data and are not parameters (a function with updates cannot be embedded).
"""
from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from tcomp.ir import dtypes as dt
from tcomp.passes.kernel_program import evaluate_shape_program

#: tcomp dtype -> C element type (bool: one byte holding 0 or 1)
C_TYPES = {"bool": "bool", "int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t",
           "uint8": "uint8_t", "float32": "float", "float64": "double"}
#: tcomp dtype -> DLPack (type code, bits): kDLInt 0, kDLUInt 1, kDLFloat 2, kDLBool 6
DL_TYPES = {"bool": (6, 8), "int8": (0, 8), "int16": (0, 16), "int32": (0, 32), "int64": (0, 64),
            "uint8": (1, 8), "float32": (2, 32), "float64": (2, 64)}
_C_RESERVED = frozenset("""auto break case char const continue default do double else enum extern float for goto
if inline int long register restrict return short signed sizeof static struct switch typedef union unsigned void
volatile while bool true false NULL workspace workspace_bytes out_dims""".split())


class Names:
    """Unique C identifiers (sanitized, never a C keyword or another parameter's name)."""

    def __init__(self):
        self.used: set = set()

    def take(self, want: str, fallback: str) -> str:
        base = re.sub(r"\W", "_", want or "") or fallback
        if base[0].isdigit():
            base = "_" + base
        if base in _C_RESERVED or keyword.iskeyword(base):
            base += "_"
        name, k = base, 1
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name


@dataclass
class Param:
    """One input or state buffer of the C entry."""
    kind: str            # 'input' or 'state'
    position: int        # the program input it is
    name: str            # the Python name (the variable's)
    c_name: str
    dtype: str
    dims: tuple          # per axis: an int, or the name of the size parameter
    declared: tuple      # the declared type's dims (int, name or None)
    updated: bool = False

    @property
    def ctype(self) -> str:
        return C_TYPES[self.dtype]

    @property
    def ndim(self) -> int:
        return len(self.dims)


@dataclass
class Out:
    """One output of the C entry (updates are written into their state buffer instead)."""
    index: int           # program output position
    name: str
    c_name: str
    dtype: str
    dims: tuple          # per axis: an int, a size parameter's name, or None (see the shape query)

    @property
    def ctype(self) -> str:
        return C_TYPES[self.dtype]


@dataclass
class Update:
    index: int           # program output position
    state: int           # index into FunctionSpec.params
    donates: bool        # the program may write it straight into the state buffer


@dataclass
class FunctionSpec:
    name: str            # the C prefix of every entry
    hp: object           # HostProgram
    llvm_ir: str
    params: list
    outputs: list
    updates: list
    sizes: list          # size parameter names in order, each (name, [(param index, axis), ...])
    embedded: list = field(default_factory=list)  # (program input, contiguous ndarray)
    single_output: bool = False
    workspace_bytes: Optional[int] = None  # when static (the program's, plus update scratch)

    @property
    def kp(self):
        return self.hp.kp

    @property
    def value_inputs(self) -> tuple:
        return tuple(self.kp.shape.value_inputs)

    def param_at(self, position: int) -> Optional[Param]:
        for p in self.params:
            if p.position == position:
                return p
        return None


def _host_program(fn):
    """The function's kernel program and host program (the JIT's own when it has one)."""
    from tcomp.backend.cpu.control_function import ControlFunction, UntilStages
    from tcomp.backend.cpu.host_program import HostProgram
    from tcomp.backend.cpu.native_function import NativeFunction
    from tcomp.backend.cpu.staged import StagedFunction
    from tcomp.passes.lower_kernels import _Lowering

    compiled = getattr(fn, "compiled", None)
    inner = getattr(compiled, "compiled", compiled)  # DebugMode wraps the backend's function
    if isinstance(inner, ControlFunction):
        if inner._trims:  # the loop's count trims the results after run: C would get untrimmed rows
            raise TypeError(f"tcomp.aot: {fn.name} has a scan with until (its results are trimmed to the "
                            "loop's count after the native program returns); export supports scans without until")
        inner = inner.inner
    if isinstance(inner, (StagedFunction, UntilStages)):
        raise TypeError(f"tcomp.aot: {fn.name} runs as a chain of native programs (a shape computed by a kernel, "
                        "e.g. a binomial draw's trial count from max(n) of a tensor, or a graph reading an until "
                        "scan's results); export supports functions that are one native program")
    if isinstance(inner, NativeFunction):
        return inner.hp, inner.llvm_ir_unoptimized
    graph = fn.optimized
    if not any(graph.op(n) == "fused" for n in graph.nodes()):
        from tcomp.passes.fusion import fuse_elementwise

        graph = fuse_elementwise(graph.copy())
    low = _Lowering(graph, fn.donations)
    hp = HostProgram(low.finish(), low.g)
    return hp, hp.emit()


def build_spec(fn, name: str, state: str) -> FunctionSpec:
    from tcomp.function import Function

    if not isinstance(fn, Function):
        raise TypeError(f"tcomp.aot.export: expected a compiled tcomp.function, got {type(fn).__name__}")
    if state not in ("embedded", "external"):
        raise ValueError(f"tcomp.aot.export: state must be 'embedded' or 'external', got {state!r}")
    if fn.prints:
        raise ValueError(f"tcomp.aot.export: function {fn.name!r} contains Print ops; remove them to export it")
    if state == "embedded" and fn.updates:
        targets = ", ".join(repr(v.name or "?") for v, _ in fn.updates)
        raise ValueError(f"tcomp.aot.export: function {fn.name!r} updates shared variables ({targets}); read-only "
                         "embedded state cannot be updated: export it with state='external'")
    from tcomp.compile import _reject_python_ops

    _reject_python_ops(fn.optimized, f"tcomp.aot.export: function {fn.name!r}: a C library",
                       "write the op with tcomp tensor operations to export the function")
    hp, text = _host_program(fn)
    kp = hp.kp
    n_explicit, n_out = len(fn.inputs), len(fn.outputs)
    if len(kp.inputs) != n_explicit + len(fn.shared_inputs) or len(kp.outputs) != n_out + len(fn.updates):
        raise TypeError(f"tcomp.aot.export: function {fn.name!r}: its program has {len(kp.inputs)} inputs and "
                        f"{len(kp.outputs)} outputs, the function {n_explicit}+{len(fn.shared_inputs)} and "
                        f"{n_out}+{len(fn.updates)}")
    names = Names()
    names.take(name, "fn")
    params, embedded, sizes_by_name = [], [], {}
    sizes: list = []

    def dims_of(k, c_name, declared, where):
        dims = []
        for axis, d in enumerate(declared):
            if isinstance(d, int):
                dims.append(d)
                continue
            key = d if isinstance(d, str) else (k, axis)
            if key not in sizes_by_name:
                sizes_by_name[key] = names.take(d if isinstance(d, str) else f"{c_name}_dim{axis}", "size")
                sizes.append((sizes_by_name[key], []))
            size = sizes_by_name[key]
            next(s for s in sizes if s[0] == size)[1].append((where, axis))
            dims.append(size)
        return tuple(dims)

    shared_pos = {id(s): n_explicit + i for i, s in enumerate(fn.shared_inputs)}
    updated = {shared_pos[id(v)] for v, _ in fn.updates if id(v) in shared_pos}
    for k, x in enumerate(kp.inputs):
        if k >= n_explicit and state == "embedded":
            var = fn.shared_inputs[k - n_explicit]
            value = np.ascontiguousarray(var.get_value(borrow=True))
            if value.dtype.name != x.dtype or value.ndim != len(x.shape) or any(
                    isinstance(d, int) and d != v for d, v in zip(x.shape, value.shape)):
                raise TypeError(f"tcomp.aot.export: shared variable {x.name!r} holds {value.dtype.name}"
                                f"{list(value.shape)}, the function was compiled for {x.dtype}{list(x.shape)}")
            embedded.append((k, value))
            continue
        kind = "input" if k < n_explicit else "state"
        c_name = names.take(x.name, f"in{k}")
        p = Param(kind, k, x.name, c_name, x.dtype, (), tuple(x.shape), updated=k in updated)
        p.dims = dims_of(k, c_name, x.shape, len(params))
        params.append(p)
    extra_targets = [v for v, _ in fn.updates if id(v) not in shared_pos]
    if extra_targets:  # an update of a shared variable the function never reads: a write-only state
        raise ValueError(f"tcomp.aot.export: function {fn.name!r} updates shared variable {extra_targets[0].name!r}"
                         " without reading it; read it in the graph (or drop the update) to export")

    outputs = []
    for i in range(n_out):
        o = kp.outputs[i]
        v = kp.values[o.value]
        c_name = names.take(fn.outputs[i].name or f"out{i}", f"out{i}")
        outputs.append(Out(i, fn.outputs[i].name or f"out{i}", c_name, v.dtype, _out_dims(kp, v.dims, params)))
    updates = []
    for j, (var, _) in enumerate(fn.updates):
        pos = shared_pos[id(var)]
        o = kp.outputs[n_out + j]
        p_index = next(i for i, p in enumerate(params) if p.position == pos)
        updates.append(Update(n_out + j, p_index, o.donates == pos))
    spec = FunctionSpec(name=name, hp=hp, llvm_ir=text, params=params, outputs=outputs, updates=updates,
                        sizes=sizes, embedded=embedded, single_output=fn.single_output)
    spec.workspace_bytes = _static_workspace(spec)
    return spec


def _out_dims(kp, dims, params) -> tuple:
    """An output's dims for the header: ints, the size parameter a register reads, or None."""
    out = []
    for d in dims:
        if isinstance(d, int):
            out.append(d)
            continue
        inst = kp.shape.insts[int(d[1:])]
        name = None
        if inst.op == "dim":
            for p in params:
                if p.position == inst.attr("input") and isinstance(p.dims[inst.attr("axis")], str):
                    name = p.dims[inst.attr("axis")]
        out.append(name)
    return tuple(out)


def align64(n: int) -> int:
    return (n + 63) // 64 * 64


def _static_workspace(spec: FunctionSpec) -> Optional[int]:
    """Workspace bytes when no input has a symbolic dim and no shape depends on a value."""
    kp = spec.kp
    if spec.value_inputs or spec.sizes:
        return None
    if any(not isinstance(d, int) for x in kp.inputs for d in x.shape):
        return None
    try:
        regs = evaluate_shape_program(kp.shape, [np.zeros(x.shape, x.dtype) for x in kp.inputs])
    except Exception:  # a check fails for every input: the entries report it at call time
        return None
    ws = kp.workspace if isinstance(kp.workspace, int) else regs[kp.workspace]
    total = align64(int(ws))
    for u in spec.updates:
        v = kp.values[kp.outputs[u.index].value]
        dims = [d if isinstance(d, int) else regs[d] for d in v.dims]
        total += align64(int(np.prod(dims, dtype=np.int64)) * dt.itemsize(v.dtype))
    return total


__all__ = ["FunctionSpec", "Param", "Out", "Update", "build_spec", "C_TYPES", "DL_TYPES", "align64"]
