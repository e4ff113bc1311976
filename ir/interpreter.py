"""The reference interpreter: evaluates any Graph with NumPy, node by node.

It is the oracle every backend and pass is tested against, and constant folding runs
through it, so folding and execution cannot disagree.  Besides computing, it checks what
the generated code will trust: every value matches its node's static type, named
symbolic dims agree everywhere, and symbolic dims never broadcast.  A multi-output kernel's value is a Python tuple of
arrays, each checked against its element type; ``get_output`` picks one.  The control ops
(``scan``, ``ifelse``: ``tcomp/ir/ops/control.py``) run their nested graphs through this same
function, step by step; ``ifelse`` evaluates only the branch its condition selects.
"""
from __future__ import annotations

import numpy as np

from .graph import Graph
from .ops import get_op
from .types import TensorType, TupleType


class ShapeError(ValueError):
    """A run-time shape disagrees with the graph's types."""


def check_value(value: np.ndarray, t: TensorType, what: str, named: dict) -> None:
    """Raise ShapeError/TypeError if ``value`` does not fit type ``t``; records named dims."""
    if value.dtype.name != t.dtype:
        raise TypeError(f"{what}: expected dtype {t.dtype}, got {value.dtype.name}")
    if value.ndim != t.ndim:
        raise ShapeError(f"{what}: expected rank {t.ndim} ({t}), got shape {value.shape}")
    for axis, (want, have) in enumerate(zip(t.shape, value.shape)):
        if isinstance(want, int):
            if want != have:
                raise ShapeError(f"{what}: expected {t}, got shape {value.shape} (axis {axis})")
        elif isinstance(want, str):
            seen = named.setdefault(want, have)
            if seen != have:
                raise ShapeError(f"{what}: symbolic dim {want!r} is {have} here but {seen} elsewhere")


def check_elemwise_broadcast(op: str, operand_types, operand_values, result_shape) -> None:
    """Only statically-1 dims may broadcast; everything else must match the result."""
    for i, (t, v) in enumerate(zip(operand_types, operand_values)):
        offset = len(result_shape) - v.ndim
        for axis in range(v.ndim):
            if t.shape[axis] != 1 and v.shape[axis] != result_shape[offset + axis]:
                raise ShapeError(
                    f"{op}: operand {i} ({t}) has size {v.shape[axis]} on axis {axis} but the result "
                    f"has {result_shape[offset + axis]} (a symbolic dim never broadcasts)")


def check_fused_broadcast(node: int, attrs, operand_types, operand_values) -> None:
    """The rule of :func:`check_elemwise_broadcast` inside a ``fused`` kernel: each elementwise
    step's operands, by their declared step types (a symbolic dim never broadcasts, also
    after fusion), against the step's concrete shape."""
    from .ops.fused import step_types

    declared = step_types(attrs["body"], operand_types)
    shapes: list = []
    for j, (op, sattrs, refs) in enumerate(attrs["body"]):
        if op == "constant":
            shapes.append(())
            continue
        arg_shapes = [operand_values[int(r[1:])].shape if r[0] == "$" else shapes[int(r[1:])] for r in refs]
        arg_types = [operand_types[int(r[1:])] if r[0] == "$" else declared[int(r[1:])] for r in refs]
        shape = get_op(op).infer_type([TensorType(t.dtype, sh) for t, sh in zip(arg_types, arg_shapes)],
                                      dict(sattrs)).shape
        if get_op(op).kind == "elemwise":
            for i, (t, sh) in enumerate(zip(arg_types, arg_shapes)):
                offset = len(shape) - len(sh)
                for axis in range(len(sh)):
                    if t.shape[axis] != 1 and sh[axis] != shape[offset + axis]:
                        raise ShapeError(
                            f"%{node} = fused: step {j} operand {i} ({t}) has size {sh[axis]} on axis {axis} but "
                            f"the result has {shape[offset + axis]} (a symbolic dim never broadcasts)")
        shapes.append(shape)


def _fit(value, t: TensorType, what: str, named: dict) -> np.ndarray:
    value = np.asarray(value)
    if value.dtype.name != t.dtype:
        value = value.astype(t.dtype)
    check_value(value, t, what, named)
    return value


def evaluate(graph: Graph, inputs, *, return_all: bool = False):
    """Evaluate ``graph`` on NumPy ``inputs`` (one per graph input, in order).

    Returns the list of output values; ``return_all`` returns the dict of every node's
    value instead (used by tests and by ``tcomp dump``).
    """
    inputs = list(inputs)
    if len(inputs) != len(graph.inputs):
        raise TypeError(f"graph takes {len(graph.inputs)} inputs, got {len(inputs)}")
    values: dict[int, np.ndarray] = {}
    named: dict = {}
    for node, value in zip(graph.inputs, inputs):
        t = graph.type(node)
        value = np.asarray(value)
        label = graph.name(node) or f"%{node}"
        check_value(value, t, f"input {label!r}", named)
        values[node] = value
    for node in graph.topo_order():
        if node in values:
            continue
        op = graph.op(node)
        opdef = get_op(op)
        t = graph.type(node)
        if op == "input":
            raise ValueError(f"input %{node} is not listed in graph.inputs")
        operands = graph.operands(node)
        args = [values[o] for o in operands]
        if op == "fused":
            check_fused_broadcast(node, graph.attrs(node), [graph.type(o) for o in operands], args)
        with np.errstate(all="ignore"):
            result = opdef.impl(args, graph.attrs(node), t)
        if isinstance(t, TupleType):
            if not isinstance(result, tuple) or len(result) != len(t.elements):
                raise TypeError(f"%{node} = {op}: expected a tuple of {len(t.elements)} results ({t}), "
                                f"got {type(result).__name__}")
            result = tuple(_fit(r, e, f"%{node} = {op} result {i}", named) for i, (r, e) in
                           enumerate(zip(result, t.elements)))
            values[node] = result
            continue
        result = np.asarray(result)
        if result.dtype.name != t.dtype:
            result = result.astype(t.dtype)
        if opdef.kind == "elemwise":
            check_elemwise_broadcast(op, [graph.type(o) for o in operands], args, result.shape)
        check_value(result, t, f"%{node} = {op}", named)
        values[node] = result
    if return_all:
        return values
    return [values[o] for o in graph.outputs]
