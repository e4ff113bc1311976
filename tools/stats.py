"""``tcomp dump --stats``: what one call of a function costs, estimated from its graph.

Counts are per call of the optimized graph: nodes per op (traced and optimized), kernels
(graph compute nodes; a multi-output kernel counts once; the CPU backend's native kernels
when it is the backend), FLOPs (one per element per elementwise step, transcendentals
included, 2*M*N*K per matrix product, the input size per reduction, 5 per element for a
softmax, a scan's body times its steps), bytes every kernel reads plus writes (what the
memory system must move), and the graph-level memory plan
(``tcomp.passes.memory.plan_memory``): intermediate bytes with and without buffer reuse
(the peak the plan allocates besides inputs and outputs).

Symbolic dims (``?``, named) have no size until a call; ``--shape x=128x784`` gives an
input's shape (types are re-inferred from it), and any dim still unknown counts as 1, which
the report says.
"""
from __future__ import annotations

from collections import Counter

from tcomp.ir import Graph, TensorType, TupleType
from tcomp.ir import dtypes as dt
from tcomp.tools.cli import UsageError

_SOFTMAX_FLOPS = {"softmax": 5, "log_softmax": 5, "logsumexp": 4}


def parse_shape(text: str) -> tuple[str, tuple]:
    """``x=128x784`` -> ("x", (128, 784)); ``s=`` is a scalar (argparse ``type=``)."""
    import argparse

    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.split("x")) if dims else ()
    except ValueError:
        shape = None
    if not sep or not name or shape is None or any(d < 0 for d in shape):
        raise argparse.ArgumentTypeError(f"expected INPUT=DIMS like x=128x784 (an input's name, dims joined by 'x'), "
                                         f"got {text!r}")
    return name, shape


def specialize(g: Graph, shapes: dict) -> Graph:
    """A copy of ``g`` whose named inputs have the given static shapes, every type re-inferred."""
    names = {g.name(n): n for n in g.inputs}
    bad = sorted(set(shapes) - set(names))
    if bad:
        from tcomp.printing import unknown_choice

        raise UsageError(f"--shape: {unknown_choice('input', bad[0], [k for k in names if k])}")
    out = Graph()
    new = {}
    for n in g.topo_order():
        op = g.op(n)
        if op == "input":
            t = g.type(n)
            if g.name(n) in shapes:
                shape = shapes[g.name(n)]
                if len(shape) != t.ndim:
                    raise UsageError(f"--shape {g.name(n)}: {len(shape)} dims given, the input has type {t}")
                t = TensorType(t.dtype, shape)
            new[n] = out.add_input(t, g.name(n)) if n in g.inputs else out.add_node("input", (), {}, type=t)
        elif op == "constant":
            new[n] = out.add_node("constant", (), g.attrs(n), type=g.type(n))
        else:
            try:
                new[n] = out.add_node(op, [new[o] for o in g.operands(n)], g.attrs(n))
            except (TypeError, ValueError) as exc:
                raise UsageError(f"--shape: the graph does not type-check with these shapes: {exc}") from None
    out.inputs = [new[n] for n in g.inputs]
    out.outputs = [new[n] for n in g.outputs]
    return out


def _size(t, unknown: list) -> int:
    if isinstance(t, TupleType):
        return sum(_size(e, unknown) for e in t.elements)
    size = 1
    for d in t.shape:
        if isinstance(d, int):
            size *= d
        else:
            unknown.append(d)
    return size


def _bytes(t, unknown: list) -> int:
    if isinstance(t, TupleType):
        return sum(_bytes(e, unknown) for e in t.elements)
    return _size(t, unknown) * dt.itemsize(t.dtype)


def _inner(a, unknown: list) -> int:
    """The inner (K) dim of a product whose left operand has type ``a``."""
    k = a.shape[-1] if a.ndim else 1
    if not isinstance(k, int):
        unknown.append(k)
        k = 1
    return k


def node_flops(g: Graph, n: int, unknown: list) -> int:
    """Floating-point (and integer) operations of one node per call; data movement is 0 (a
    scan's body is counted by :func:`flops_and_bytes`)."""
    from tcomp.ir import get_op
    from tcomp.ir.ops.fused import step_types

    op = g.op(n)
    kind = get_op(op).kind
    if op == "fused":
        a = g.attrs(n)
        types = step_types(a["body"], [g.type(o) for o in g.operands(n)])
        flops = sum(_size(t, unknown) for (sop, _, _), t in zip(a["body"], types)
                    if sop not in ("constant", "dimshuffle", "reshape", "dot", "matmul"))
        if a["body"][0][0] in ("dot", "matmul"):  # a product step (passes/fusion_gemm.py): 2*M*N*K
            flops += 2 * _size(types[0], unknown) * _inner(g.type(g.operands(n)[0]), unknown)
        return flops + (_size(types[-1], unknown) if a["reduce"] is not None else 0)
    if kind == "elemwise" and op not in ("cast", "copy"):
        return _size(g.type(n), unknown)
    if kind == "reduction":
        return _size(g.type(g.operands(n)[0]), unknown)
    if op in ("dot", "matmul"):
        return 2 * _size(g.type(n), unknown) * _inner(g.type(g.operands(n)[0]), unknown)
    if op in _SOFTMAX_FLOPS:
        return _SOFTMAX_FLOPS[op] * _size(g.type(g.operands(n)[0]), unknown)
    if op == "conv2d":
        w = g.type(g.operands(n)[1])
        return 2 * _size(g.type(n), unknown) * _size(TensorType(w.dtype, w.shape[1:]), unknown)
    return 0


_STATIC_INT_OPS = {"add": sum, "minimum": min, "maximum": max, "mul": lambda v: v[0] * v[1],
                   "sub": lambda v: v[0] - v[1], "cast": lambda v: v[0]}


def _static_int(g: Graph, n: int):
    """The value of int scalar ``n`` when the graph's static shapes fix it (a scan's
    ``n_steps`` is the sequences' shortest length), else None."""
    op = g.op(n)
    if op == "constant":
        return int(g.attrs(n)["value"].value)
    if op == "shape":
        d = g.type(g.operands(n)[0]).shape[g.attrs(n)["axis"]]
        return d if isinstance(d, int) else None
    if op in _STATIC_INT_OPS:
        vals = [_static_int(g, o) for o in g.operands(n)]
        return None if None in vals else int(_STATIC_INT_OPS[op](vals))
    return None


def _scan_steps(g: Graph, n: int, unknown: list) -> int:
    steps = _static_int(g, g.operands(n)[0])
    if steps is None:
        unknown.append("n_steps")
        return 1
    return steps


def flops_and_bytes(g: Graph, unknown: list) -> tuple:
    """FLOPs and bytes read + written of one run of ``g``; a scan adds its body's per step."""
    from tcomp.passes.memory import is_view

    flops = moved = 0
    for n in g.topo_order():
        op = g.op(n)
        if op in ("input", "constant", "get_output") or is_view(g, n):
            continue
        flops += node_flops(g, n, unknown)
        moved += _bytes(g.type(n), unknown) + sum(_bytes(g.type(o), unknown) for o in g.operands(n))
        if op == "scan":  # its body per step (besides the scan's own operands and results), walked once
            steps = _scan_steps(g, n, unknown)
            body_flops, body_moved = flops_and_bytes(g.attrs(n)["body"].graph, unknown)
            flops += steps * body_flops
            moved += steps * body_moved
    return flops, moved


def graph_stats(g: Graph, donations=None) -> dict:
    from tcomp.passes import plan_memory
    from tcomp.tools.inspect_cmd import kernels_per_call

    unknown: list = []
    flops, moved = flops_and_bytes(g, unknown)
    plan = plan_memory(g, donations or {})
    return {"nodes": len(g), "nodes_per_op": dict(sorted(Counter(g.op(n) for n in g.nodes()).items())),
            "kernels": kernels_per_call(g), "flops": flops, "bytes_moved": moved,
            "plan_buffers": len(plan.buffers), "plan_bytes_with_reuse": plan.bytes_with_reuse,
            "plan_bytes_without_reuse": plan.bytes_without_reuse, "plan_dynamic_values": plan.dynamic_values,
            "unknown_dims": sorted({str(d) if d is not None else "?" for d in unknown})}


def function_stats(fn, shapes=None) -> dict:
    from tcomp.tools.inspect_cmd import native_kernels

    g = specialize(fn.optimized, shapes) if shapes else fn.optimized
    s = graph_stats(g, fn.donations)
    s["traced_nodes"] = len(fn.traced)
    s["traced_nodes_per_op"] = dict(sorted(Counter(fn.traced.op(n) for n in fn.traced.nodes()).items()))
    s["native_kernels"] = native_kernels(fn)
    s["shapes"] = {k: list(v) for k, v in (shapes or {}).items()}
    return s


def _human(x: float, unit: str) -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.2f} {prefix}{unit}"
    return f"{x:.0f} {unit}"


def format_stats(s: dict) -> str:
    ops = ", ".join(f"{k} {v}" for k, v in s["nodes_per_op"].items())
    lines = [f"stats (per call{', shapes ' + str(s['shapes']) if s['shapes'] else ''}):",
             f"  nodes: traced {s['traced_nodes']}, optimized {s['nodes']}",
             f"  optimized nodes per op: {ops}",
             f"  kernels per call: {s['kernels']} graph kernels"
             + (f", {s['native_kernels']} native kernels (cpu backend)" if s["native_kernels"] is not None else ""),
             f"  FLOPs per call: {_human(s['flops'], 'FLOP')} ({s['flops']})",
             f"  bytes read + written by kernels per call: {_human(s['bytes_moved'], 'B')} ({s['bytes_moved']})",
             f"  memory plan: {s['plan_buffers']} buffers, peak intermediate bytes {s['plan_bytes_with_reuse']} with "
             f"reuse ({s['plan_bytes_without_reuse']} without)"
             + (f", {s['plan_dynamic_values']} values of run-time size not counted" if s["plan_dynamic_values"]
                else "")]
    if s["unknown_dims"]:
        lines.append(f"  symbolic dims {', '.join(s['unknown_dims'])} counted as 1: figures are per unit of them "
                     f"(give --shape INPUT=DIMS, e.g. --shape x=128x784)")
    return "\n".join(lines)
