"""Compile-time analysis of a graph for the CPU backend: how each node is realized.

Every live node gets a *role*:

``input`` / ``const``
    memory owned by the caller / the graph (constants of rank 0 are also folded into the
    code as LLVM constants wherever they are read elementwise);
``hostval``
    a value the *shapes* depend on (reshape/alloc/random dim operands, arange bounds,
    scalar slice bounds and integer indices) and everything it needs; computed in Python
    with the reference implementation before any memory is allocated, so every buffer
    size is known before native code runs (``shape`` nodes are hostvals read off shapes);
``view``
    dimshuffle, reshape of a contiguous value, basic slicing: NumPy views of another
    node's buffer (no code, no copy);
``inline``
    an elementwise node with one consumer (elementwise or a reduction) of the same shape:
    computed inside the consumer's loop, never stored (the backend's own loop fusion);
``kernel``
    a native loop nest writing a fresh, 64-byte aligned, C-contiguous buffer (or, for a
    multi-output ``fused`` kernel, one buffer per result);
``result``
    a ``get_output`` of a multi-output kernel: storage its kernel writes (every result of
    a live multi-output kernel gets one, added here when DCE removed an unused one).

An op with no role raises ``TypeError`` at compile time (tests/test_cpu_ops.py checks
every op of the table compiles).

Layout: every buffer tcomp allocates is C-contiguous, inputs are made contiguous at call
time, so only views can be ``strided``; their strides travel in the parameter array.
"""
from __future__ import annotations

from tcomp.ir import Graph
from tcomp.ir.ops.fused import step_types
from tcomp.ir.ops.indexing import is_ref, ref_index
from tcomp.ir.types import TupleType
from tcomp.passes.memory import kernel_results

#: ops whose None shape entries are filled from int-scalar operands: op -> (attr, first dim operand)
DIM_OPERANDS = {
    "reshape": ("shape", 1), "alloc": ("shape", 1),
    "random_uniform": ("shape", 2), "random_normal": ("shape", 2), "random_binomial": ("shape", 2),
    "conv2d_grad_input": ("input_shape", 2), "conv2d_grad_filters": ("filter_shape", 2),
}

INLINE_CONSUMERS = frozenset({"sum", "prod", "max", "min", "mean", "argmax", "argmin"})
#: the most inline nodes one operand of a kernel may carry: a longer chain is cut into several
#: kernels (LLVM's time per op grows with the size of one function; see passes/fusion.py)
MAX_INLINE_NODES = 128

NATIVE_KERNELS = {
    "elemwise": "elemwise", "alloc": "elemwise", "fused": "fused", "reduction": "reduce",
    "softmax": "softmax", "log_softmax": "softmax", "logsumexp": "softmax",
    "dot": "matmul", "matmul": "matmul", "concatenate": "concat", "stack": "stack", "arange": "arange",
    "subtensor": "gather", "set_subtensor": "update", "inc_subtensor": "update", "reshape": "copy",
    "conv2d": "conv2d", "conv2d_grad_input": "conv2d_grad_input", "conv2d_grad_filters": "conv2d_grad_filters",
    "pool2d": "pool2d", "pool2d_grad": "pool2d_grad", "pool2d_grad_grad": "pool2d_grad_grad", "dimshuffle": "transpose",
    "random_uniform": "random", "random_normal": "random", "random_binomial": "random",
    "cumsum": "cumulative", "cumprod": "cumulative", "argsort": "argsort",
}


def host_value_operands(g: Graph, n: int) -> list:
    """Operands of ``n`` whose *values* decide a shape or an index (read in Python)."""
    op, ops = g.op(n), g.operands(n)
    if op in DIM_OPERANDS:
        return ops[DIM_OPERANDS[op][1]:]
    if op == "arange":
        return list(ops)
    if op in ("subtensor", "set_subtensor", "inc_subtensor"):
        out = []
        for entry in g.attrs(n)["index"]:
            if entry[0] in ("i", "s"):
                out.extend(ops[ref_index(v)] for v in entry[1:] if is_ref(v))
        return out
    return []


def has_advanced(index) -> bool:
    return any(e[0] == "a" for e in index)


class Program:
    """Roles, layouts and parameter-array offsets of one graph's live nodes."""

    def __init__(self, graph: Graph):
        g = graph.copy()
        g.remove_dead()
        self._complete_results(g)
        self.g = g
        self.order = g.topo_order()
        self.role: dict = {}
        self.layout: dict = {}
        self._host_values()
        for n in self.order:
            if n not in self.role:
                self.role[n] = self._role(n)
        self._inline()
        self._layouts()
        self._params()
        #: host values read input *values* (not just shapes): plans cannot be cached by shape
        self.value_dependent = any(self.role[i] == "hostval" for i in g.inputs)

    @staticmethod
    def _complete_results(g: Graph) -> None:
        """Give every result of a multi-output kernel a ``get_output`` node (the kernel writes
        them all; an unused one is a buffer nothing reads)."""
        for n in g.nodes():
            if g.op(n) == "fused" and g.attrs(n).get("outputs"):
                have = {g.attrs(u)["index"] for u in g.users(n) if g.op(u) == "get_output"}
                for i in range(len(g.attrs(n)["outputs"]) + 1):
                    if i not in have:
                        g.add_node("get_output", [n], {"index": i})

    # -- roles ---------------------------------------------------------------------------
    def _host_values(self):
        g = self.g
        stack = [o for n in self.order for o in host_value_operands(g, n)]
        stack += [n for n in self.order if g.op(n) == "shape"]
        while stack:
            n = stack.pop()
            if self.role.get(n) == "hostval":
                continue
            self.role[n] = "hostval"
            if g.op(n) != "shape":  # a shape node needs only its operand's shape
                stack.extend(g.operands(n))
            if g.op(n) == "fused" and g.attrs(n).get("outputs"):
                # the host runs the whole multi-output kernel: every result is a host value (a
                # result left to the kernels would have no buffer: nothing writes it there)
                stack.extend(u for u in g.users(n) if g.op(u) == "get_output")

    def _role(self, n):
        g = self.g
        op = g.op(n)
        if op == "input":
            return "input"
        if op == "constant":
            return "const"
        if op == "dimshuffle":
            return "view"
        if op == "get_output":
            return "result"
        if op == "subtensor" and not has_advanced(g.attrs(n)["index"]):
            return "view"
        if op in NATIVE_KERNELS or self._kind(op) in ("elemwise", "reduction"):
            return "kernel"
        raise TypeError(f"cpu backend: op {op!r} (node %{n}) has no lowering")

    @staticmethod
    def _kind(op):
        from tcomp.ir import get_op

        return get_op(op).kind

    def kernel_kind(self, n) -> str:
        op = self.g.op(n)
        if op in NATIVE_KERNELS:
            return NATIVE_KERNELS[op]
        return NATIVE_KERNELS[self._kind(op)]

    def _inline(self):
        g = self.g
        outputs = set(g.outputs)
        size: dict = {}  # inline node -> inline nodes in its expression tree (itself included)
        for n in self.order:
            if self.role[n] != "kernel" or self._kind(g.op(n)) != "elemwise" or n in outputs:
                continue
            # inline nodes have one use, so their expressions are trees and sizes add up
            size[n] = 1 + sum(size.get(o, 0) for o in g.operands(n) if self.role[o] == "inline")
            if size[n] > MAX_INLINE_NODES:
                continue
            if g.num_uses(n) != 1:
                continue
            (user,) = g.users(n)
            if self.role[user] not in ("kernel", "inline"):
                continue
            uop = g.op(user)
            # equal type shapes are equal extents here, anonymous dims included: ``n`` is an
            # operand of the elementwise ``user``, and a dim of ``n`` that is not statically 1
            # never broadcasts (the planner checks it before any kernel runs)
            if uop in INLINE_CONSUMERS or (self._kind(uop) == "elemwise" and g.type(n).shape == g.type(user).shape):
                self.role[n] = "inline"
        # an inline chain must end in a kernel: roles were assigned in topo order, and a user
        # is never demoted later, so every inline node has a kernel or inline consumer.

    def _layouts(self):
        g = self.g
        for n in self.order:
            lay = "contig"
            if self.role[n] == "view":
                src = g.operands(n)[0]
                if g.op(n) == "dimshuffle":
                    kept = [p for p in g.attrs(n)["pattern"] if p != "x"]
                    if self.layout[src] != "contig" or kept != sorted(kept):
                        lay = "strided"
                        if self._materialize_transpose(n):
                            self.role[n] = "kernel"
                            lay = "contig"
                else:
                    lay = "strided"
            self.layout[n] = lay
        for n in self.order:
            if g.op(n) == "reshape" and self.role[n] == "kernel":
                # a reshape of contiguous memory is a view; of strided memory, a copy + view
                if self.layout[g.operands(n)[0]] == "contig":
                    self.role[n] = "view"

    def _materialize_transpose(self, n) -> bool:
        """Copy a permuting dimshuffle (tiled) when a consumer would read it elementwise:
        strided loads keep the consumer's loop scalar (a transcendental then costs ~3x), while
        matmul reads strided operands well (A by element, B through its packed panels)."""
        g = self.g
        if n in g.outputs:
            return False
        return any(g.op(v) not in ("matmul", "dot", "dimshuffle", "subtensor", "shape") for v in g.users(n))

    def _params(self):
        """Offsets of every node's dims (and strides / extra parameters) in the i64 array."""
        g = self.g
        off = 0
        self.dims_off, self.strides_off, self.extra_off = {}, {}, {}
        for n in self.order:
            t = g.type(n)
            self.dims_off[n] = off
            off += 0 if isinstance(t, TupleType) else t.ndim  # a tuple's dims are its results'
            if self.layout[n] == "strided":
                self.strides_off[n] = off
                off += t.ndim
            extra = self._extra_len(n)
            if extra:
                self.extra_off[n] = off
                off += extra
        self.n_params = max(off, 1)
        self.slot = {n: k for k, n in enumerate(self.order)}

    def _extra_len(self, n) -> int:
        op = self.g.op(n)
        if op == "arange" and self.role[n] == "kernel":
            return 2
        if op == "subtensor" and self.role[n] == "kernel":
            return 2 * len(self.g.attrs(n)["index"])
        if op in ("set_subtensor", "inc_subtensor") and self.role[n] == "kernel":
            return 2 * len(self.g.attrs(n)["index"]) + self.selection_type(n).ndim
        if op == "fused":
            return sum(len(d) for _, d in self.fused_dims_layout(n))
        return 0

    def selection_type(self, n):
        """The type of ``x[index]`` for a set/inc_subtensor node (where ``y`` is written)."""
        from tcomp.ir.ops.indexing import indexed_shape
        from tcomp.ir.types import TensorType

        g = self.g
        types = [g.type(o) for o in g.operands(n)]
        return TensorType(types[0].dtype, indexed_shape(g.op(n), types, tuple(g.attrs(n)["index"])))

    def needs_iteration_dims(self, n) -> bool:
        """A fused kernel whose result's dims are not its iteration space's (a reduction, an
        epilogue, several results): the iteration dims travel as extra parameters."""
        a = self.g.attrs(n)
        return a["reduce"] is not None or bool(a.get("epilogue")) or bool(a.get("outputs"))

    def fused_dims_layout(self, n) -> list:
        """The extra parameters of a fused kernel, in order, as ``(key, dims)`` pairs: ``"it"``
        with the iteration dims (when needed), then ``j`` with the dims of every leading
        ``reshape`` step ``j`` (a symbolic step shape is only known per call)."""
        g = self.g
        stypes = step_types(g.attrs(n)["body"], [g.type(o) for o in g.operands(n)])
        out = [("it", stypes[-1].shape)] if self.needs_iteration_dims(n) else []
        out += [(j, stypes[j].shape) for j, step in enumerate(g.attrs(n)["body"]) if step[0] == "reshape"]
        return out

    def iteration_type(self, n):
        """The type of a fused kernel's last body step (its iteration space)."""
        g = self.g
        return step_types(g.attrs(n)["body"], [g.type(o) for o in g.operands(n)])[-1]

    # -- queries ---------------------------------------------------------------------------
    def kernels(self) -> list:
        return [n for n in self.order if self.role[n] == "kernel"]

    def results(self, n) -> list:
        """The nodes whose storage kernel ``n`` writes: ``[n]``, or its ``get_output`` nodes."""
        return kernel_results(self.g, n)

    def is_scalar_const(self, n) -> bool:
        return self.g.op(n) == "constant" and self.g.type(n).ndim == 0

    def dtype(self, n) -> str:
        return self.g.type(n).dtype

    def describe(self, n) -> str:
        name = self.g.name(n)
        return f"%{n} = {self.g.op(n)}" + (f" ({name})" if name else "")


__all__ = ["Program", "DIM_OPERANDS", "host_value_operands", "has_advanced"]
