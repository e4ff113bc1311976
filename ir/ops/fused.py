"""The ``fused`` op: one loop kernel computing a DAG of elementwise ops, optionally
followed by one reduction.  Produced by ``tcomp.passes.fusion``; lowered by the backends.

Format (all attributes hashable and printable):

``body``
    A non-empty tuple of *steps*, evaluated in order.  Step ``j`` is a 3-tuple
    ``(op, attrs, refs)``:

    * ``op``: the name of an ``elemwise`` op of the table (``add``, ``exp``, ``cast``,
      ``where``, ...), or ``"constant"`` for an inlined scalar literal;
    * ``attrs``: the op's attributes as a tuple of ``(name, value)`` pairs sorted by name,
      complete (defaults filled in), e.g. ``(("dtype", "float32"),)`` for a cast,
      ``(("value", Constant(2.0, float32)),)`` for a constant (always rank 0);
    * ``refs``: a tuple of operand references, ``"$i"`` = kernel operand ``i`` (the fused
      node's ``i``-th graph operand), ``"%k"`` = the result of an earlier step ``k < j``.

    The last step is the elementwise result.  Every kernel operand is referenced.
``reduce``
    ``None``, or the name of a reduction (``sum``, ``prod``, ``max``, ``min``) applied to the
    last step's result with the attributes ``axis`` (sorted tuple of ints) and ``keepdims``,
    exactly as the standalone reduction op would.

Semantics (what the reference impl below does, and what a backend must reproduce):
each step is the op's own semantics (same dtype promotion, same casts, same NumPy
broadcasting in which only static-1 dims of the graph types broadcast) applied to its
operands; a step's dtype and shape are what the op's type rule infers from its operands'
types (:func:`step_types` computes them).  A backend iterates over the last step's shape
(the "iteration space") and evaluates every step at each point, reading each operand
through broadcasting indices; a step of smaller shape than the iteration space gives the
same value at every point it broadcasts over, so evaluating it per point is exact.  With a
``reduce``, the iteration space is still the last step's shape and the values are
accumulated over ``axis`` in the reduction's dtype, as the reduction op does.

The reference impl broadcasts by the operands' concrete shapes; unlike the unfused
interpreter it cannot tell a symbolic dim that happens to be 1 at run time from a static 1,
so on such (ill-typed) inputs it broadcasts where the unfused graph raises ShapeError.

Multi-output kernels are not part of the format: a value needed outside the kernel ends a
kernel (it is the kernel's single result), see ``tcomp.passes.fusion``.
"""
from __future__ import annotations

import numpy as np

from ..types import TensorType
from .registry import OPS, Constant, OpDef, get_op, register

FUSABLE_REDUCTIONS = ("sum", "prod", "max", "min")


def parse_ref(ref: str, n_inputs: int, step: int) -> tuple[str, int]:
    """('$', i) or ('%', k) for a step operand reference, validated."""
    if not isinstance(ref, str) or len(ref) < 2 or ref[0] not in "$%" or not ref[1:].isdigit():
        raise ValueError(f"fused: step {step}: bad operand reference {ref!r} (want '$i' or '%k')")
    k = int(ref[1:])
    if ref[0] == "$" and k >= n_inputs:
        raise ValueError(f"fused: step {step}: {ref} but the kernel has {n_inputs} operands")
    if ref[0] == "%" and k >= step:
        raise ValueError(f"fused: step {step}: {ref} does not refer to an earlier step")
    return ref[0], k


def _check_step(step, j):
    if not (isinstance(step, tuple) and len(step) == 3):
        raise ValueError(f"fused: step {j} must be a tuple (op, attrs, refs), got {step!r}")
    op, attrs, refs = step
    if op == "constant":
        c = dict(attrs).get("value")
        if not isinstance(c, Constant) or c.value.ndim != 0 or refs:
            raise ValueError(f"fused: step {j}: an inlined constant is a rank-0 Constant with no operands")
        return op, dict(attrs), refs
    opdef = get_op(op)
    if opdef.kind != "elemwise":
        raise ValueError(f"fused: step {j}: op {op!r} is not elementwise (kind {opdef.kind!r})")
    return op, opdef.normalize_attrs(dict(attrs)), refs


def step_types(body, input_types) -> list[TensorType]:
    """The TensorType of every step, given the kernel operands' types."""
    if not isinstance(body, tuple) or not body:
        raise ValueError("fused: body must be a non-empty tuple of steps")
    types: list[TensorType] = []
    used = set()
    for j, step in enumerate(body):
        op, attrs, refs = _check_step(step, j)
        if op == "constant":
            types.append(attrs["value"].type)
            continue
        args = []
        for ref in refs:
            kind, k = parse_ref(ref, len(input_types), j)
            if kind == "$":
                used.add(k)
            args.append(input_types[k] if kind == "$" else types[k])
        types.append(get_op(op).infer_type(args, attrs))
    if used != set(range(len(input_types))):
        raise ValueError(f"fused: kernel operands {sorted(set(range(len(input_types))) - used)} are unused")
    return types


def _reduce_attrs(attrs):
    return {"axis": tuple(attrs["axis"]), "keepdims": bool(attrs["keepdims"])}


def _infer(types, attrs):
    result = step_types(attrs["body"], types)[-1]
    red = attrs["reduce"]
    if red is None:
        return result
    if red not in FUSABLE_REDUCTIONS:
        raise ValueError(f"fused: reduce must be None or one of {FUSABLE_REDUCTIONS}, got {red!r}")
    return get_op(red).infer_type([result], _reduce_attrs(attrs))


def _impl(arrays, attrs, out_type):
    values = []
    vtypes = []
    for j, step in enumerate(attrs["body"]):
        op, sattrs, refs = _check_step(step, j)
        if op == "constant":
            values.append(sattrs["value"].value)
            vtypes.append(sattrs["value"].type)
            continue
        args = [arrays[int(r[1:])] if r[0] == "$" else values[int(r[1:])] for r in refs]
        arg_types = [TensorType(a.dtype.name, a.shape) for a in args]
        t = get_op(op).infer_type(arg_types, sattrs)
        with np.errstate(all="ignore"):
            v = np.asarray(OPS[op].impl(args, sattrs, t))
        values.append(v.astype(t.dtype, copy=False))
        vtypes.append(t)
    result = values[-1]
    red = attrs["reduce"]
    if red is None:
        return result
    t = get_op(red).infer_type([vtypes[-1]], _reduce_attrs(attrs))
    with np.errstate(all="ignore"):
        return np.asarray(OPS[red].impl([result], _reduce_attrs(attrs), t)).astype(t.dtype, copy=False)


def format_body(attrs) -> str:
    """A one-line-per-step listing of a kernel body, for dumps and error messages."""
    lines = []
    for j, (op, sattrs, refs) in enumerate(attrs["body"]):
        a = ", ".join(f"{k}={v!r}" for k, v in sattrs)
        lines.append(f"%{j} = {op}({', '.join(refs)}{'; ' + a if a else ''})")
    if attrs["reduce"] is not None:
        lines.append(f"{attrs['reduce']}(%{len(attrs['body']) - 1}, axis={attrs['axis']}, "
                     f"keepdims={attrs['keepdims']})")
    return "\n".join(lines)


register(OpDef("fused", None, _infer, _impl,
               attr_defaults={"body": (), "reduce": None, "axis": (), "keepdims": False},
               kind="kernel", differentiable=False, min_arity=0,
               doc="a fused elementwise kernel (optionally ending in a reduction); see ir/ops/fused.py"))

__all__ = ["FUSABLE_REDUCTIONS", "step_types", "parse_ref", "format_body"]
