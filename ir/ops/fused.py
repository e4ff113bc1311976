"""The ``fused`` op: one loop kernel computing a DAG of elementwise ops, optionally
followed by one reduction, with layout steps on its operands and its result, and possibly
several results.  Produced by ``tcomp.passes.fusion``; lowered by the backends.

Format (all attributes hashable and printable):

``body``
    A non-empty tuple of *steps*, evaluated in order.  Step ``j`` is a 3-tuple
    ``(op, attrs, refs)``:

    * ``op``: the name of an ``elemwise`` op of the table (``add``, ``exp``, ``cast``,
      ``where``, ...), ``"constant"`` for an inlined scalar literal, or a *layout step*
      ``"dimshuffle"`` / ``"reshape"`` applied to one kernel operand;
    * ``attrs``: the op's attributes as a tuple of ``(name, value)`` pairs sorted by name,
      complete (defaults filled in), e.g. ``(("dtype", "float32"),)`` for a cast,
      ``(("value", Constant(2.0, float32)),)`` for a constant (always rank 0);
    * ``refs``: a tuple of operand references, ``"$i"`` = kernel operand ``i`` (the fused
      node's ``i``-th graph operand), ``"%k"`` = the result of an earlier step ``k < j``.
      A layout step has exactly one ref, a ``"$i"``; a reshape step has a fully given
      ``shape`` attr (no run-time dim operands; ``-1`` is fine where the type rule allows).

    The last step is the elementwise result; it is never a layout step.  Every kernel
    operand is referenced.

    Step 0 may instead be a matrix product (``op`` in ``CONTRACTIONS``: ``dot``/``matmul``
    with refs exactly ``("$0", "$1")``, operands no other step reads), made by
    ``passes/fusion_gemm.py``: the later steps are then the product's *epilogue*, evaluated
    per point of the product (the iteration space is the product's shape); a backend may
    apply them to each tile of the product as it is computed.
``reduce``
    ``None``, or the name of a reduction (``sum``, ``prod``, ``max``, ``min``) applied to the
    last step's result with the attributes ``axis`` (sorted tuple of ints) and ``keepdims``,
    exactly as the standalone reduction op would.
``epilogue``
    A tuple of ``(op, attrs)`` pairs, op ``"dimshuffle"`` or ``"reshape"`` (attrs as for body
    steps, reshape fully given), applied in order to the (reduced) last step to give the
    *primary* result.  Only layouts that keep memory order are allowed (any reshape; a
    dimshuffle that only inserts or drops size-1 axes, keeping the other axes in order),
    so the primary's bytes are the pre-epilogue value's bytes in C order: a backend writes
    the pre-epilogue value and relabels its shape.
``outputs``
    A tuple of body step indices, default ``()``.  Empty: the node's type is the primary's
    TensorType (the single result).  Non-empty: the node is a *multi-output kernel* of type
    ``TupleType((primary, *types of the listed steps))``; its consumers read it through
    ``get_output`` nodes (tcomp.ir.ops.multi_output).  A listed step is an elementwise step
    (not a constant, not a layout step) whose shape is exactly the iteration space (same
    dims, symbolic names included), listed once; it is the last step only when ``reduce``
    is set (a value needed both reduced and unreduced).

Semantics (what the reference impl below does, and what a backend must reproduce):
each step is the op's own semantics (same dtype promotion, same casts, same NumPy
broadcasting in which only static-1 dims of the graph types broadcast) applied to its
operands; a step's dtype and shape are what the op's type rule infers from its operands'
types (:func:`step_types` computes them).  A backend iterates over the last step's shape
(the "iteration space") and evaluates every step at each point, reading each operand
through broadcasting indices (a layout step through the index map of its dimshuffle or
reshape); a step of smaller shape than the iteration space gives the same value at every
point it broadcasts over, so evaluating it per point is exact.  With a ``reduce``, the
iteration space is still the last step's shape and the values are accumulated over
``axis`` in the reduction's dtype, as the reduction op does.  Extra ``outputs`` are stored
at every point of the iteration space (their shape is the iteration space, so each is
written exactly once).

The reference impl broadcasts by the operands' concrete shapes; unlike the unfused
interpreter it cannot tell a symbolic dim that happens to be 1 at run time from a static 1,
so on such (ill-typed) inputs it broadcasts where the unfused graph raises ShapeError.
"""
from __future__ import annotations

import numpy as np

from ..dtypes import canonical
from ..types import TensorType, TupleType
from .registry import OPS, Constant, OpDef, get_op, register

FUSABLE_REDUCTIONS = ("sum", "prod", "max", "min")
#: a matrix product a body may start with (``passes/fusion_gemm.py``): step 0 only, reading
#: kernel operands ``$0`` and ``$1`` (which no other step reads); the later steps are its epilogue
CONTRACTIONS = ("dot", "matmul")
#: ops a body step may apply to one kernel operand, and the epilogue to the primary result
LAYOUT_OPS = ("dimshuffle", "reshape")


def is_layout_step(step) -> bool:
    """True for a body step (or epilogue pair) that is a dimshuffle or reshape."""
    return isinstance(step, tuple) and len(step) >= 1 and step[0] in LAYOUT_OPS


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


def is_order_keeping(pattern) -> bool:
    """A dimshuffle pattern that only inserts/drops size-1 axes (kept axes stay in order)."""
    kept = [p for p in pattern if p != "x"]
    return all(a < b for a, b in zip(kept, kept[1:]))


def _layout_attrs(op, attrs, where):
    """Normalized attrs of a layout step or epilogue entry; reshape must be fully given."""
    if not isinstance(attrs, tuple):
        raise ValueError(f"fused: {where}: attrs must be a tuple of (name, value) pairs, got {attrs!r}")
    a = get_op(op).normalize_attrs(dict(attrs))
    if op == "reshape":
        shape = a["shape"]
        if not isinstance(shape, tuple) or any(not isinstance(d, int) or isinstance(d, bool) for d in shape):
            raise ValueError(f"fused: {where}: a reshape needs a fully given shape of ints (-1 allowed), "
                             f"got {shape!r}")
    elif not isinstance(a["pattern"], tuple):
        raise ValueError(f"fused: {where}: a dimshuffle pattern must be a tuple, got {a['pattern']!r}")
    return a


def _check_step(step, j):
    if not (isinstance(step, tuple) and len(step) == 3):
        raise ValueError(f"fused: step {j} must be a tuple (op, attrs, refs), got {step!r}")
    op, attrs, refs = step
    if not isinstance(refs, tuple):
        raise ValueError(f"fused: step {j}: refs must be a tuple, got {refs!r}")
    if op == "constant":
        c = dict(attrs).get("value")
        if not isinstance(c, Constant) or c.value.ndim != 0 or refs:
            raise ValueError(f"fused: step {j}: an inlined constant is a rank-0 Constant with no operands")
        return op, dict(attrs), refs
    if op in LAYOUT_OPS:
        if len(refs) != 1 or not isinstance(refs[0], str) or not refs[0].startswith("$"):
            raise ValueError(f"fused: step {j}: a {op} layout step takes exactly one kernel operand ('$i'), "
                             f"got refs {refs!r}")
        return op, _layout_attrs(op, attrs, f"step {j} ({op})"), refs
    opdef = get_op(op)
    if op in CONTRACTIONS:
        if j != 0 or refs != ("$0", "$1"):
            raise ValueError(f"fused: step {j}: a {op} step must be step 0 and read ('$0', '$1'), got refs {refs!r}")
        return op, opdef.normalize_attrs(dict(attrs)), refs
    if opdef.kind != "elemwise":
        raise ValueError(f"fused: step {j}: op {op!r} is not elementwise (kind {opdef.kind!r}) "
                         f"nor a layout step {LAYOUT_OPS}")
    return op, opdef.normalize_attrs(dict(attrs)), refs


#: (body, operand types) -> step types: passes, planners and the backend all ask again for the
#: same kernel, and inferring a long body costs ~10 us a step (bounded; cleared when full)
_STEP_TYPES: dict = {}
_STEP_TYPES_MAX = 4096


def step_types(body, input_types) -> list[TensorType]:
    """The TensorType of every step, given the kernel operands' types."""
    if not isinstance(body, tuple) or not body:
        raise ValueError("fused: body must be a non-empty tuple of steps")
    try:  # (floatX: what int operands of float ops promote to)
        key = (body, tuple(input_types), canonical("floatX"))
        hit = _STEP_TYPES.get(key)
    except TypeError:  # an unhashable (malformed) body: the checks below say what is wrong
        key = hit = None
    if hit is not None:
        return list(hit)
    types = _step_types(body, input_types)
    if key is not None:
        if len(_STEP_TYPES) >= _STEP_TYPES_MAX:
            _STEP_TYPES.clear()
        _STEP_TYPES[key] = tuple(types)
    return types


def _step_types(body, input_types) -> list[TensorType]:
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
                if j and k < 2 and body[0][0] in CONTRACTIONS:
                    raise ValueError(f"fused: step {j} reads {ref}, an operand of the step-0 product")
                used.add(k)
            args.append(input_types[k] if kind == "$" else types[k])
        try:
            types.append(get_op(op).infer_type(args, attrs))
        except (TypeError, ValueError) as exc:
            if op not in LAYOUT_OPS:
                raise
            raise ValueError(f"fused: step {j} ({op} of {refs[0]}): {exc}") from None
    if is_layout_step(body[-1]):
        raise ValueError(f"fused: step {len(body) - 1} ({body[-1][0]}) is a layout step, which cannot be the last "
                         f"step (the last step's shape is the iteration space); use the epilogue")
    if used != set(range(len(input_types))):
        raise ValueError(f"fused: kernel operands {sorted(set(range(len(input_types))) - used)} are unused")
    return types


def _reduce_attrs(attrs):
    return {"axis": tuple(attrs["axis"]), "keepdims": bool(attrs["keepdims"])}


def _epilogue(attrs):
    """The epilogue as validated (op, normalized attrs dict) pairs."""
    epi = attrs["epilogue"]
    if not isinstance(epi, tuple):
        raise ValueError(f"fused: epilogue must be a tuple of (op, attrs) pairs, got {epi!r}")
    out = []
    for e, entry in enumerate(epi):
        if not (isinstance(entry, tuple) and len(entry) == 2 and entry[0] in LAYOUT_OPS):
            raise ValueError(f"fused: epilogue entry {e} must be (op, attrs) with op in {LAYOUT_OPS}, got {entry!r}")
        op, a = entry[0], _layout_attrs(entry[0], entry[1], f"epilogue entry {e} ({entry[0]})")
        if op == "dimshuffle" and not is_order_keeping(a["pattern"]):
            raise ValueError(f"fused: epilogue entry {e} (dimshuffle): pattern {a['pattern']} reorders axes; "
                             f"an epilogue may only insert or drop size-1 axes (memory order is kept)")
        out.append((op, a))
    return out


def _outputs(attrs, types):
    """The validated ``outputs`` step indices."""
    outs = attrs["outputs"]
    body = attrs["body"]
    if not isinstance(outs, tuple):
        raise ValueError(f"fused: outputs must be a tuple of step indices, got {outs!r}")
    last = len(body) - 1
    space = types[-1].shape
    for j in outs:
        if not isinstance(j, int) or isinstance(j, bool) or not 0 <= j <= last:
            raise ValueError(f"fused: outputs entry {j!r} is not a step index 0..{last}")
        op = body[j][0]
        if op == "constant" or op in LAYOUT_OPS:
            raise ValueError(f"fused: outputs entry {j}: step {j} is a {op} step; only elementwise steps "
                             f"can be extra results")
        if types[j].shape != space:
            raise ValueError(f"fused: outputs entry {j}: step {j} has type {types[j]}, not the iteration space "
                             f"shape {list(space)} (a result is stored at every point of the loop)")
        if j == last and attrs["reduce"] is None:
            raise ValueError(f"fused: outputs entry {j} is the last step, which is already the primary result "
                             f"(only a reduced kernel may also return its unreduced last step)")
    if len(set(outs)) != len(outs):
        raise ValueError(f"fused: outputs {outs} lists a step more than once")
    return outs


def pre_epilogue_type(attrs, input_types) -> TensorType:
    """The primary result before the epilogue: the last step, reduced if ``reduce`` is set."""
    return _pre_epilogue(attrs, step_types(attrs["body"], input_types))


def _pre_epilogue(attrs, types):
    result = types[-1]
    red = attrs["reduce"]
    if red is None:
        return result
    if red not in FUSABLE_REDUCTIONS:
        raise ValueError(f"fused: reduce must be None or one of {FUSABLE_REDUCTIONS}, got {red!r}")
    return get_op(red).infer_type([result], _reduce_attrs(attrs))


def _result_types(attrs, types) -> list[TensorType]:
    t = _pre_epilogue(attrs, types)
    for e, (op, a) in enumerate(_epilogue(attrs)):
        try:
            t = get_op(op).infer_type([t], a)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"fused: epilogue entry {e} ({op}): {exc}") from None
    return [t] + [types[j] for j in _outputs(attrs, types)]


def result_types(attrs, input_types) -> list[TensorType]:
    """The kernel's results in order: the primary, then each ``outputs`` step's type."""
    return _result_types(attrs, step_types(attrs["body"], input_types))


def _infer(types, attrs):
    results = result_types(attrs, types)
    return results[0] if len(results) == 1 else TupleType(results)


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
    if red is not None:
        t = get_op(red).infer_type([vtypes[-1]], _reduce_attrs(attrs))
        with np.errstate(all="ignore"):
            result = np.asarray(OPS[red].impl([result], _reduce_attrs(attrs), t)).astype(t.dtype, copy=False)
    for op, a in _epilogue(attrs):
        t = get_op(op).infer_type([TensorType(result.dtype.name, result.shape)], a)
        result = np.asarray(OPS[op].impl([result], a, t))
    if not attrs["outputs"]:
        return result
    return (result, *(values[j] for j in attrs["outputs"]))


def format_body(attrs) -> str:
    """A one-line-per-step listing of a kernel body, for dumps and error messages."""
    lines = []
    for j, (op, sattrs, refs) in enumerate(attrs["body"]):
        a = ", ".join(f"{k}={v!r}" for k, v in sattrs)
        lines.append(f"%{j} = {op}({', '.join(refs)}{'; ' + a if a else ''})")
    cur = f"%{len(attrs['body']) - 1}"
    if attrs["reduce"] is not None:
        lines.append(f"{attrs['reduce']}({cur}, axis={attrs['axis']}, keepdims={attrs['keepdims']})")
        cur = "reduced"
    for op, a in attrs.get("epilogue", ()):
        lines.append(f"epilogue {op}({cur}; {', '.join(f'{k}={v!r}' for k, v in a)})")
        cur = "epilogue"
    if attrs.get("outputs"):
        lines.append(f"outputs: primary, {', '.join(f'%{j}' for j in attrs['outputs'])}")
    return "\n".join(lines)


register(OpDef("fused", None, _infer, _impl,
               attr_defaults={"body": (), "reduce": None, "axis": (), "keepdims": False, "outputs": (),
                              "epilogue": ()},
               kind="kernel", differentiable=False, min_arity=0,
               doc="a fused elementwise kernel (optionally ending in a reduction, with layout steps and "
                   "several results); see ir/ops/fused.py"))

__all__ = ["CONTRACTIONS", "FUSABLE_REDUCTIONS", "LAYOUT_OPS", "step_types", "result_types", "pre_epilogue_type",
           "is_layout_step", "is_order_keeping", "parse_ref", "format_body"]
