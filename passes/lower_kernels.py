"""Lowering a graph after fusion to its kernel program (``kernel_program.KernelProgram``).

Decides, once, what the CPU backend's Python planner used to decide per call (roles,
shapes and checks, buffers), in a form every backend consumes:

* **host values** (reshape targets, arange bounds, scalar indices, ``shape`` nodes and what
  they need) become shape-program registers; one that a kernel also reads as a tensor
  (``cast(x.shape[0], f32)``) is stored by a ``scalar`` kernel;
* **views** (no code): every dimshuffle, a basic subtensor, a reshape of a C-contiguous
  value; composed down to a root value, with offset and strides as registers.  A permuting
  dimshuffle that an elementwise reader would read strided is copied by a ``transpose``
  kernel instead (strided loads keep the reader's loop scalar), a reshape of a strided
  value by a ``copy`` kernel;
* **kernels**: every other node, one kernel each (fusion already merged what should run in
  one loop: there is no second, backend-side inlining);
* **outputs** are written by their kernel straight into the caller's output array; an
  output that is an input, a constant, a view or a repeat gets a ``copy`` kernel;
* **memory**: in-place candidates (a pure elementwise kernel reading a dying operand only at
  the index it writes: same dtype, the *same dim registers*, not through a layout step, no
  other read in that storage) and donations (``donate``: graph output position -> input
  position, ``tcomp.function``'s shared-variable updates) are vetted here, donated kernels
  are scheduled after the last other reader of the old value, and
  ``passes.memory.assign_storage`` assigns every buffer (see ``kernel_program``).
"""
from __future__ import annotations

from tcomp.ir import Graph, get_op
from tcomp.ir.types import TupleType

from .kernel_program import ALIGN, Arg, Buffer, Input, Kernel, KernelProgram, Output, Storage, Value
from .lower_loops import CONTROL_OPS, lower_control
from .memory import Step, assign_storage, kernel_results, schedule_donations
from .shape_rules import ShapeRules, host_value_operands

#: graph op -> kernel kind (ops not listed: by their OpDef kind, elemwise or reduce)
KERNEL_KINDS = {
    "alloc": "elemwise", "fused": "fused", "softmax": "softmax", "log_softmax": "softmax", "logsumexp": "softmax",
    "dot": "matmul", "matmul": "matmul", "concatenate": "concat", "stack": "stack", "arange": "arange",
    "subtensor": "gather", "set_subtensor": "update", "inc_subtensor": "update", "reshape": "copy",
    "conv2d": "conv2d", "conv2d_grad_input": "conv2d_grad_input", "conv2d_grad_filters": "conv2d_grad_filters",
    "pool2d": "pool2d", "pool2d_grad": "pool2d_grad", "pool2d_grad_grad": "pool2d_grad_grad",
    "dimshuffle": "transpose", "random_uniform": "random", "random_normal": "random", "random_binomial": "random",
    "cumsum": "cumulative", "cumprod": "cumulative", "argsort": "argsort",
    **{op: "linalg" for op in ("cholesky", "solve", "solve_triangular", "matrix_inverse", "det", "eigh", "svd",
                                    "qr")},
    "flatnonzero": "nonzero",
}
_BY_OPDEF_KIND = {"elemwise": "elemwise", "reduction": "reduce"}
#: readers that take a strided (permuted) operand well
_STRIDED_READERS = ("matmul", "dot", "dimshuffle", "subtensor", "shape")


def _reads_strided(g: Graph, u: int, n: int) -> bool:
    """Reader ``u`` takes operand ``n`` well strided: a product, a view, or a fused kernel
    that reads ``n`` only in its step-0 product (passes/fusion_gemm.py)."""
    if g.op(u) in _STRIDED_READERS:
        return True
    if g.op(u) != "fused" or g.attrs(u)["body"][0][0] not in ("dot", "matmul"):
        return False
    return all(i < 2 for i, o in enumerate(g.operands(u)) if o == n)


def _contiguous_index(index) -> bool:
    """Whether basic indexing keeps a C-contiguous array C-contiguous: integer picks, then
    at most one unit-step slice (``x[2:5]``, ``x[i, 1:3]``), then whole axes only."""
    sliced = False
    for entry in index:
        if entry[0] == "i":
            if sliced:
                return False
            continue
        start, stop, step = entry[1:]
        if step not in (None, 1):
            return False
        whole = start in (None, 0) and stop is None
        if sliced and not whole:
            return False
        sliced = True
    return True


def kernel_kind(op: str) -> str:
    if op in KERNEL_KINDS:
        return KERNEL_KINDS[op]
    kind = get_op(op).kind
    if kind not in _BY_OPDEF_KIND:
        raise TypeError(f"kernel program: op {op!r} has no kernel kind")
    return _BY_OPDEF_KIND[kind]


def _complete_results(g: Graph) -> None:
    """Every result of a multi-output kernel gets a ``get_output`` (the kernel writes them all)."""
    for n in g.nodes():
        if g.op(n) == "fused" and g.attrs(n).get("outputs"):
            have = {g.attrs(u)["index"] for u in g.users(n) if g.op(u) == "get_output"}
            for i in range(len(g.attrs(n)["outputs"]) + 1):
                if i not in have:
                    g.add_node("get_output", [n], {"index": i})


def _host_values(g: Graph, order) -> set:
    out: set = set()
    stack = [g.operands(n)[i] for n in order for i in host_value_operands(g, n)]
    stack += [n for n in order if g.op(n) == "shape"]
    while stack:
        n = stack.pop()
        if n in out:
            continue
        out.add(n)
        if g.op(n) != "shape":
            stack.extend(g.operands(n))
    return out


class _Lowering:
    def __init__(self, graph: Graph, donate):
        g = graph.copy()
        g.remove_dead()
        _complete_results(g)
        self.g = g
        self.order = g.topo_order()
        self.hostval = _host_values(g, self.order)
        labels = [g.name(n) or f"%{n}" for n in g.inputs]
        self.rules = ShapeRules(g, self.order, self.hostval, labels).run()
        self.b = self.rules.b
        self.donate = dict(donate or {})
        self.values: list = []   # [dtype, dims, node, storage or None (kernel-written)]
        self.vid: dict = {}      # graph node -> value id
        self.kernels: list = []  # dicts, in topological order
        self.writer: dict = {}   # value id -> kernel index
        self.labels = labels
        self.extra_outputs: list = []  # values the program returns after the graph's outputs (a loop's count)

    # -- values ---------------------------------------------------------------------------------
    def new_value(self, dtype, dims, node=None, storage=None) -> int:
        self.values.append([dtype, tuple(dims), node, storage])
        return len(self.values) - 1

    def root(self, v) -> int:
        s = self.values[v][3]
        return s.base if s is not None and s.kind == "view" else v

    def contiguous(self, v) -> bool:
        s = self.values[v][3]
        return s is None or s.kind != "view" or s.contiguous

    def strides_of(self, v) -> tuple:
        s = self.values[v][3]
        if s is not None and s.kind == "view":
            return s.strides
        return self.b.strides(self.values[v][1])

    def offset_of(self, v):
        s = self.values[v][3]
        return s.offset if s is not None and s.kind == "view" else 0

    def tensor_uses(self) -> set:
        """Nodes some kernel, view or output reads as a tensor (not only as a host value)."""
        g = self.g
        used = set(g.outputs)
        for n in self.order:
            if n in self.hostval and g.op(n) not in ("input", "constant"):
                continue
            host = set(host_value_operands(g, n))
            used.update(o for i, o in enumerate(g.operands(n)) if i not in host)
        return used

    # -- roles ----------------------------------------------------------------------------------
    def build(self):
        g, rules = self.g, self.rules
        for k, n in enumerate(g.inputs):
            t = g.type(n)
            self.vid[n] = self.new_value(t.dtype, rules.dims[n], n, Storage("input", index=k))
        used = self.tensor_uses()
        for n in self.order:
            op = g.op(n)
            if op == "input":
                continue
            t = g.type(n)
            if op == "constant":
                self.vid[n] = self.new_value(t.dtype, rules.dims[n], n, Storage("constant", data=g.attrs(n)["value"]))
            elif n in self.hostval:
                if n in used:
                    v = self.new_value(t.dtype, (), n)
                    self.vid[n] = v
                    self.add_kernel("scalar", "scalar", (), (Arg(scalar=rules.value(n), dtype=t.dtype),), (v,), (),
                                    node=n)
            elif op == "get_output":
                continue  # written by its kernel (below)
            elif isinstance(t, TupleType):
                self.kernel_node(n)
            elif not self.view_node(n):
                self.kernel_node(n)

    def view_node(self, n) -> bool:
        g, b = self.g, self.b
        op = g.op(n)
        t = g.type(n)
        dims = self.rules.dims[n]
        if op not in ("dimshuffle", "subtensor", "reshape"):
            return False
        src = self.vid[g.operands(n)[0]]
        if op == "subtensor" and any(e[0] == "a" for e in g.attrs(n)["index"]):
            return False
        if op == "reshape":
            if not self.contiguous(src):
                return False
            st = Storage("view", base=self.root(src), offset=self.offset_of(src), strides=b.strides(dims))
        elif op == "dimshuffle":
            pattern = g.attrs(n)["pattern"]
            kept = [p for p in pattern if p != "x"]
            contig = self.contiguous(src) and kept == sorted(kept)
            if not contig and n not in g.outputs and not all(_reads_strided(g, u, n) for u in g.users(n)):
                return False  # a transpose kernel
            s = self.strides_of(src)
            strides = tuple(0 if p == "x" else s[p] for p in pattern)
            st = Storage("view", base=self.root(src), offset=self.offset_of(src),
                         strides=b.strides(dims) if contig else strides, contiguous=contig)
        else:
            s = self.strides_of(src)
            off = self.offset_of(src)
            strides = []
            for k, (e, (a, c)) in enumerate(zip(g.attrs(n)["index"], self.rules.index[n])):
                off = b.add(off, b.mul(a, s[k]))
                if e[0] == "s":
                    strides.append(b.mul(s[k], c))
            strides += list(s[len(g.attrs(n)["index"]):])
            contig = self.contiguous(src) and _contiguous_index(g.attrs(n)["index"])
            st = Storage("view", base=self.root(src), offset=off, strides=tuple(strides), contiguous=contig)
        self.vid[n] = self.new_value(t.dtype, dims, n, st)
        return True

    def kernel_node(self, n):
        g, rules = self.g, self.rules
        op = g.op(n)
        if op in CONTROL_OPS:  # a loop or branch kernel with nested programs (passes/lower_loops.py)
            return lower_control(self, n)
        host = set(host_value_operands(g, n))
        args = []
        for i, o in enumerate(g.operands(n)):
            if i in host:
                args.append(Arg(scalar=rules.value(o), dtype=g.type(o).dtype))
            else:
                args.append(Arg(value=self.vid[o]))
        writes = []
        for r in kernel_results(g, n):
            t = g.type(r)
            self.vid[r] = self.new_value(t.dtype, rules.dims[r], r)
            writes.append(self.vid[r])
        params = tuple((name, tuple(d)) for name, d in rules.params.get(n, ()))
        kind = kernel_kind(op)
        if kind == "fused":
            space = dict(params)["space"]
        elif kind in ("reduce", "softmax"):
            space = rules.dims[g.operands(n)[0]]
        else:
            space = rules.dims[n]
        self.add_kernel(kind, op, tuple(sorted(g.attrs(n).items())), tuple(args), tuple(writes), space, params, n)

    def add_kernel(self, kind, op, attrs, args, writes, space, params=(), node=None):
        label = self.rules.describe(node) if node is not None else "output copy"
        self.kernels.append(dict(kind=kind, op=op, attrs=attrs, args=args, writes=writes, space=tuple(space),
                                 params=params, node=node, label=label, may_alias=()))
        for w in writes:
            self.writer[w] = len(self.kernels) - 1

    # -- outputs, in place, donation ------------------------------------------------------------
    def outputs(self) -> list:
        g = self.g
        out, claimed = [], set()
        for n in g.outputs:
            v = self.vid[n]
            if v in self.writer and v not in claimed:
                claimed.add(v)
                out.append(v)
                continue
            dtype, dims = self.values[v][0], self.values[v][1]
            w = self.new_value(dtype, dims)
            self.add_kernel("copy", "copy", (), (Arg(value=v),), (w,), dims)
            claimed.add(w)
            out.append(w)
        return out

    def pure_elementwise(self, k) -> bool:
        kd = self.kernels[k]
        if kd["kind"] not in ("elemwise", "fused") or kd["op"] == "alloc" or len(kd["writes"]) != 1:
            return False
        if kd["op"] == "fused":
            a = dict(kd["attrs"])
            return a["reduce"] is None and not a.get("outputs") and not a.get("epilogue")
        return True

    def same_index(self, k, leaf) -> bool:
        kd = self.kernels[k]
        (w,) = kd["writes"]
        reads = [a.value for a in kd["args"] if a.value is not None]
        roots = [self.root(r) for r in dict.fromkeys(reads)]
        if self.root(leaf) != leaf or roots.count(leaf) != 1:
            return False
        if self.values[leaf][:2] != self.values[w][:2]:  # dtype and the same dim registers
            return False
        if kd["op"] == "fused":  # (a product step reads its operands at other indices too)
            refs = {f"${i}" for i, r in enumerate(reads) if r == leaf}
            return not any(s[0] in ("dimshuffle", "reshape", "dot", "matmul") and set(s[2]) & refs
                           for s in dict(kd["attrs"])["body"])
        return True

    def donations(self, outs) -> dict:
        """Kernel-written output value -> donated input value (vetted; the planner may still decline)."""
        g = self.g
        out_roots = {self.root(self.vid[o]) for o in g.outputs}
        out: dict = {}
        for pos, ipos in sorted(self.donate.items()):
            node, v, x = g.outputs[pos], outs[pos], self.vid[g.inputs[ipos]]
            k = self.writer.get(v)
            if k is None or self.kernels[k]["node"] != node or g.users(node) or g.outputs.count(node) != 1:
                continue
            # the same dtype and rank; dims that differ as registers may still agree in a call
            # (an update of another input's extents): the caller donates only when they do
            if len(self.kernels[k]["writes"]) != 1 or self.values[v][0] != self.values[x][0] or \
                    len(self.values[v][1]) != len(self.values[x][1]):
                continue
            if x in out_roots or x in out.values():
                continue
            reads = [a.value for a in self.kernels[k]["args"] if a.value is not None and self.root(a.value) == x]
            if reads and not (self.pure_elementwise(k) and self.same_index(k, reads[0])):
                continue
            out[v] = x
        return out

    def inplace(self, escaping, donated) -> dict:
        out = {}
        for k, kd in enumerate(self.kernels):
            if not self.pure_elementwise(k) or kd["writes"][0] in escaping or kd["writes"][0] in donated:
                continue
            if kd["op"] == "fused" and dict(kd["attrs"])["body"][0][0] in ("dot", "matmul"):
                continue  # a GEMM with an epilogue over its own operand keeps partial sums elsewhere (a malloc)
            cands = [a.value for a in kd["args"] if a.value is not None and a.value in self.writer
                     and a.value not in escaping and self.same_index(k, a.value)]
            if cands:
                out[kd["writes"][0]] = list(dict.fromkeys(cands))
        return out

    # -- memory ---------------------------------------------------------------------------------
    def assign(self, outs):
        b = self.b
        escaping = set(outs)
        donated = self.donations(outs)
        reads = {k: {self.root(a.value) for a in kd["args"] if a.value is not None}
                 for k, kd in enumerate(self.kernels)}
        late = {self.writer[v]: x for v, x in donated.items()}
        deps = {k: {self.writer[r] for r in reads[k] if r in self.writer} for k in late}
        order = schedule_donations(list(range(len(self.kernels))), reads, deps, late)
        steps = [Step(tuple(self.kernels[k]["writes"]), tuple(sorted(reads[k]))) for k in order]
        size_of = {}
        for s in steps:
            for v in s.writes:
                dtype, dims = self.values[v][0], self.values[v][1]
                size_of[v] = b.nbytes(dims, dtype)
        inplace = self.inplace(escaping, donated)
        a = assign_storage(steps, size_of, escaping, inplace, donated)
        ws_ids = sorted({bid for v, bid in a.buffer_of.items() if bid not in a.output_buffers})
        new_id = {bid: i for i, bid in enumerate(ws_ids)}
        buffers, off = [], 0
        for bid in ws_ids:
            size = a.sizes[bid]
            buffers.append(Buffer(new_id[bid], size, off))
            off = b.add(off, b.align(size, ALIGN))
        out_pos = {v: p for p, v in enumerate(outs)}
        for v in size_of:
            if v in a.donated or a.buffer_of.get(v) in a.output_buffers:
                self.values[v][3] = Storage("output", index=out_pos[v])
            else:
                self.values[v][3] = Storage("buffer", index=new_id[a.buffer_of[v]])
        for v, s in a.inplace.items():
            self.kernels[self.writer[v]]["may_alias"] += ((v, s),)
        for v, x in a.donated.items():
            kd = self.kernels[self.writer[v]]
            if x in {arg.value for arg in kd["args"]}:
                kd["may_alias"] += ((v, x),)
        g = self.g
        ins = {x: ipos for pos, ipos in self.donate.items() for x in [self.vid[g.inputs[ipos]]]}
        outputs = tuple(Output(v, ins[a.donated[v]] if v in a.donated else None) for v in outs)
        return order, buffers, off, outputs

    def finish(self) -> KernelProgram:
        self.build()
        outs = self.outputs() + self.extra_outputs
        order, buffers, ws, outputs = self.assign(outs)
        g = self.g
        values = tuple(Value(i, d, dims, st, node) for i, (d, dims, node, st) in enumerate(self.values))
        kernels = tuple(Kernel(**self.kernels[k]) for k in order)
        inputs = tuple(Input(self.labels[k], g.type(n).dtype, g.type(n).shape, self.vid[n])
                       for k, n in enumerate(g.inputs))
        return compact(KernelProgram(inputs, outputs, values, kernels, self.b.finish(), tuple(buffers), ws))


def replace(obj, **changes):
    """``dataclasses.replace`` for the kernel program's frozen dataclasses (no ``__post_init__``,
    no validation to rerun): a copy of the instance dict, without ``fields()`` and a keyword
    ``__init__`` per object (``compact`` copies every value, kernel and check twice: that was a
    sixth of the 1000-output graph's lowering)."""
    new = object.__new__(type(obj))
    d = new.__dict__
    d.update(obj.__dict__)
    d.update(changes)
    return new


def _each_ref(p: KernelProgram):
    """Every register reference :func:`_map_refs` maps, in no particular order (without
    building the mapped copy)."""
    for v in p.values:
        yield from v.dims
        s = v.storage
        if s is not None:
            yield s.offset
            yield from s.strides
    for k in p.kernels:
        for a in k.args:
            yield a.scalar
        yield from k.space
        for _, d in k.params:
            yield from d
    for b in p.buffers:
        yield b.size
        yield b.offset
    yield p.workspace
    for c in p.shape.checks:
        for a in c.args:  # (the operand forms of _map_fmt)
            if a[0] == "int":
                yield a[1]
            else:
                yield from a[2] if a[0] == "type" else a[1]


def _map_refs(p: KernelProgram, f) -> KernelProgram:
    """``p`` with every register reference outside the instructions mapped through ``f``."""
    def t(refs):
        return tuple(f(r) for r in refs)

    def storage(s):
        return replace(s, offset=f(s.offset), strides=t(s.strides))

    values = tuple(replace(v, dims=t(v.dims), storage=storage(v.storage)) for v in p.values)
    kernels = tuple(replace(k, args=tuple(replace(a, scalar=f(a.scalar)) for a in k.args), space=t(k.space),
                            params=tuple((name, t(d)) for name, d in k.params)) for k in p.kernels)
    buffers = tuple(replace(b, size=f(b.size), offset=f(b.offset)) for b in p.buffers)
    checks = tuple(replace(c, args=tuple(_map_fmt(a, f) for a in c.args)) for c in p.shape.checks)
    return replace(p, values=values, kernels=kernels, buffers=buffers, workspace=f(p.workspace),
                   shape=replace(p.shape, checks=checks))


def _map_fmt(a, f):
    if a[0] == "int":
        return (a[0], f(a[1]))
    if a[0] == "type":
        return (a[0], a[1], tuple(f(r) for r in a[2]))
    return (a[0], tuple(f(r) for r in a[1]))


def compact(p: KernelProgram) -> KernelProgram:
    """Drop instructions nothing reads (folding leaves some behind) and renumber registers."""
    used: set = {r for r in _each_ref(p) if isinstance(r, str)}

    def mark(r):
        if isinstance(r, str):
            used.add(r)
        return r

    insts = p.shape.insts
    live = [False] * len(insts)
    for k in range(len(insts) - 1, -1, -1):
        if insts[k].op == "check" or f"s{k}" in used:
            live[k] = True
            for a in insts[k].args:
                mark(a)
    names, kept = {}, []
    for k, inst in enumerate(insts):
        if live[k]:
            names[f"s{k}"] = f"s{len(kept)}"
            kept.append(inst)

    def rename(r):
        return names[r] if isinstance(r, str) else r

    kept = tuple(replace(i, args=tuple(rename(a) for a in i.args)) for i in kept)
    p = _map_refs(p, rename)
    return replace(p, shape=replace(p.shape, insts=kept))


def lower_kernels(graph: Graph, donate=None) -> KernelProgram:
    """The kernel program of ``graph`` (optimized: run after fusion).  ``donate``: graph
    output position -> graph input position whose storage that output may be written into."""
    return _Lowering(graph, donate).finish()


__all__ = ["lower_kernels", "kernel_kind", "KERNEL_KINDS"]
