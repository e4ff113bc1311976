"""What the CPU kernel emitters ask about a graph node: its kernel kind, the extra parameters
its lowering reads, the types of its iteration space and selection, and how to name it.

The emitters (``kernels*.py``) take a *program view* ``prog`` and read ``prog.g``,
``prog.role``, ``prog.layout`` and the parameter-array offsets (``dims_off``, ``strides_off``,
``extra_off``), which :class:`~tcomp.backend.cpu.host_program.Sites` fills from the kernel
program, plus the queries below, which depend only on the graph.  Keeping the queries here,
apart from ``Sites``, leaves one place that decides the layout of a kernel's parameters:
``_extra_len`` here and ``Sites._kernel_extras`` must agree (``Sites`` checks it).
"""
from __future__ import annotations

from tcomp.ir.ops.fused import step_types
from tcomp.passes.memory import kernel_results

#: graph op (or op kind) -> the emitter family of ``compiled.LOWERINGS``
NATIVE_KERNELS = {
    "elemwise": "elemwise", "alloc": "elemwise", "fused": "fused", "reduction": "reduce",
    "softmax": "softmax", "log_softmax": "softmax", "logsumexp": "softmax",
    "dot": "matmul", "matmul": "matmul", "concatenate": "concat", "stack": "stack", "arange": "arange",
    "subtensor": "gather", "set_subtensor": "update", "inc_subtensor": "update", "reshape": "copy",
    "conv2d": "conv2d", "conv2d_grad_input": "conv2d_grad_input", "conv2d_grad_filters": "conv2d_grad_filters",
    "pool2d": "pool2d", "pool2d_grad": "pool2d_grad", "pool2d_grad_grad": "pool2d_grad_grad", "dimshuffle": "transpose",
    "random_uniform": "random", "random_normal": "random", "random_binomial": "random",
    "cumsum": "cumulative", "cumprod": "cumulative", "argsort": "argsort",
    **{op: "linalg" for op in ("cholesky", "solve", "solve_triangular", "matrix_inverse", "det", "eigh", "svd",
                                    "qr")},
    "flatnonzero": "nonzero",
}


def op_kind(op: str) -> str:
    from tcomp.ir import get_op

    return get_op(op).kind


class EmitterView:
    """Graph-only queries of the emitters; a subclass sets ``g``, ``role`` and the offsets."""

    g = None
    role: dict = {}

    def kernel_kind(self, n) -> str:
        op = self.g.op(n)
        if op in NATIVE_KERNELS:
            return NATIVE_KERNELS[op]
        return NATIVE_KERNELS[op_kind(op)]

    def _extra_len(self, n) -> int:
        """How many extra parameters the lowering of kernel ``n`` reads (after its dims)."""
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


__all__ = ["EmitterView", "NATIVE_KERNELS", "op_kind"]
