"""Reverse-mode automatic differentiation as a graph transformation.

``grad(graph, cost, wrt)`` appends the gradient computation to ``graph`` (in place) and
returns, per ``wrt`` node, the id of the node holding d cost / d wrt.  Gradients are
ordinary graph nodes, so every later pass (folding, CSE, fusion, codegen) sees them like
any other code: that is Theano's design and the reason autodiff lives in ``passes``.

One table, keyed by op name: ``VJP_RULES[op](ctx) -> [cotangent id or None per operand]``
(``None`` = disconnected, e.g. index or dim operands).  A rule builds nodes with
``ctx.graph.add_node`` and may use the helpers below, which keep the types exact: a
cotangent always has its primal node's TensorType, dtype and shape, symbolic dims
included.  Other modules add rows with ``@register_vjp("op")``.

The walk is iterative (no recursion, deep graphs cannot overflow the stack) in reverse
topological order over the nodes that lie on a path from some ``wrt`` to the cost;
cotangents of a node used several times are summed.  Integer and bool nodes never carry
cotangents, but they connect: a float input reached only through them (a comparison, an
int cast) gets a zero gradient, as in Theano.  Non-differentiable ops (``OpDef.differentiable``
False: shape, arange, random draws) stop the flow: what lies behind them is disconnected.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from tcomp.ir import Constant, Graph, TensorType, TupleType, get_op
from tcomp.ir import dtypes as dt
from tcomp.ir.graph import paused_gc

VJP_RULES: dict[str, Callable] = {}


def register_vjp(op_name: str):
    """Decorator: register ``rule(ctx) -> list[Optional[int]]`` as the VJP of ``op_name``."""
    def deco(rule):
        if op_name in VJP_RULES:
            raise ValueError(f"a VJP rule for op {op_name!r} is already registered")
        VJP_RULES[op_name] = rule
        return rule
    return deco


@dataclass
class VJPContext:
    """What a rule sees: the graph, the primal node, its operands and output cotangent.

    ``wants[i]`` says whether operand ``i`` needs a cotangent at all; rules may skip
    building the others (returning None for them is always allowed).
    """
    graph: Graph
    node: int
    operands: list
    cotangent: int
    wants: list

    @property
    def attrs(self) -> dict:
        return self.graph.attrs(self.node)

    @property
    def out_type(self) -> TensorType:
        return self.graph.type(self.node)

    def type(self, n: int) -> TensorType:
        return self.graph.type(n)


# -- helpers for rules: small builders that keep types exact ----------------------------

def const(g: Graph, value, dtype: str) -> int:
    """A scalar constant of ``dtype`` (scalars broadcast against anything)."""
    return g.add_constant(Constant(value, dtype))


def op(g: Graph, name: str, *operands: int, **attrs) -> int:
    return g.add_node(name, operands, attrs)


def cast_to(g: Graph, v: int, dtype: str) -> int:
    return v if g.type(v).dtype == dtype else op(g, "cast", v, dtype=dtype)


def label(g: Graph, n: int) -> str:
    name = g.name(n) if n in g else None
    return repr(name) if name else f"%{n}"


def zeros_like(g: Graph, ref: int) -> int:
    """Zeros with exactly ``ref``'s type, named symbolic dims included.

    An ``alloc`` of 0 (run-time dims from ``shape`` nodes, so ``ref``'s value itself is not
    needed) where that gives ``ref``'s type; alloc can only make anonymous symbolic dims,
    so with named ones ``where(False, ref, 0)`` is used, whose broadcast keeps them.
    """
    t = g.type(ref)
    zero = const(g, 0, t.dtype)
    if any(isinstance(d, str) for d in t.shape):
        return op(g, "where", const(g, False, dt.BOOL), ref, zero)
    if not t.shape:
        return zero
    attr = tuple(d if isinstance(d, int) else None for d in t.shape)
    dims = [op(g, "shape", ref, axis=i) for i, d in enumerate(t.shape) if not isinstance(d, int)]
    return g.add_node("alloc", [zero] + dims, {"shape": attr})


def match_type(g: Graph, v: int, ref: int) -> int:
    """Return ``v`` (equal to ``ref`` in rank, dtype and run-time shape) retyped to ``ref``'s type.

    Needed because merging dims prefers static over symbolic: ``a[None] + b[3]`` has
    type ``[3]``, but a's cotangent must be typed ``[?]``.  A reshape with run-time dims
    erases static or named dims that ``ref`` does not have; ``where(True, v, ref)`` then
    restores the named ones.
    """
    tv, tr = g.type(v), g.type(ref)
    if tv.ndim != tr.ndim or tv.dtype != tr.dtype:
        raise TypeError(f"autodiff: cotangent {tv} cannot stand for {tr} ({label(g, ref)})")
    if tv.shape == tr.shape:
        return v
    # a None dim becomes named through where(); every other mismatch needs a reshape first
    need_reshape = any(have != want and not (have is None and isinstance(want, str))
                       for have, want in zip(tv.shape, tr.shape))
    if need_reshape:
        attr = tuple(w if isinstance(w, int) else None for w in tr.shape)
        dims = [op(g, "shape", v, axis=i) for i, w in enumerate(tr.shape) if not isinstance(w, int)]
        v = g.add_node("reshape", [v] + dims, {"shape": attr})
    if g.type(v).shape != tr.shape:
        v = op(g, "where", const(g, True, dt.BOOL), v, ref)
    if g.type(v) != tr:  # pragma: no cover - would be a bug in the rules above
        raise TypeError(f"autodiff: could not retype {g.type(v)} to {tr}")
    return v


def sum_to(g: Graph, v: int, ref: int) -> int:
    """Undo broadcasting: sum ``v`` down to ``ref``'s type (dtype cast included).

    Only static-1 dims broadcast in tcomp, so the axes to sum are the leading extra axes
    plus the axes where ``ref`` is statically 1 and ``v`` is not.
    """
    tv, tr = g.type(v), g.type(ref)
    lead = tv.ndim - tr.ndim
    if lead < 0:
        raise TypeError(f"autodiff: cotangent {tv} has lower rank than {tr} ({label(g, ref)})")
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(tr.shape) if d == 1 and tv.shape[lead + i] != 1)
    if axes:
        v = op(g, "sum", v, axis=axes, keepdims=True)
        if lead:
            v = op(g, "dimshuffle", v, pattern=tuple(range(lead, tv.ndim)))
    v = cast_to(g, v, tr.dtype)
    return match_type(g, v, ref)


def expand_reduced(g: Graph, v: int, axes: Iterable[int], keepdims: bool, ndim: int) -> int:
    """Re-insert reduced axes as static 1 dims (the keepdims form of a reduction result)."""
    axes = set(axes)
    if keepdims or not axes:
        return v
    pattern, k = [], 0
    for i in range(ndim):
        if i in axes:
            pattern.append("x")
        else:
            pattern.append(k)
            k += 1
    return op(g, "dimshuffle", v, pattern=tuple(pattern))


def broadcast_like(g: Graph, v: int, ref: int) -> int:
    """Broadcast ``v`` (same rank, static 1 where it differs) to ``ref``'s type."""
    tr = g.type(ref)
    if g.type(v).shape == tr.shape:
        return v
    attr = tuple(d if isinstance(d, int) else None for d in tr.shape)
    dims = [op(g, "shape", ref, axis=i) for i, d in enumerate(tr.shape) if not isinstance(d, int)]
    out = g.add_node("alloc", [v] + dims, {"shape": attr})
    return match_type(g, out, ref)


def is_float_node(g: Graph, n: int) -> bool:
    t = g.type(n)
    if isinstance(t, TupleType):  # a multi-result node (scan, ifelse): some result is float
        return any(dt.is_float(e.dtype) for e in t.elements)
    return dt.is_float(t.dtype)


# -- the transformation -------------------------------------------------------------------

def _ancestors(g: Graph, seeds: Iterable[int], blocked: set) -> set:
    """Nodes on which a seed depends, not through blocked (consider_constant) nodes or
    non-differentiable ops.  Integer and bool nodes are walked through (Theano's choice):
    ``cast(x > 0, float)`` or ``cast(cast(x, int32), float)`` keeps ``x`` connected with a
    zero gradient instead of making it a disconnected input; they carry no cotangent."""
    seen = set()
    stack = [s for s in seeds if is_float_node(g, s)]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n in blocked or (not get_op(g.op(n)).differentiable and g.op(n) != "get_output"):
            continue
        for p in g.operands(n):
            if p not in seen:
                stack.append(p)
    return seen


def _descendants(g: Graph, roots: Iterable[int], within: set) -> set:
    seen = set()
    stack = [r for r in roots if r in within]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(u for u in g.users(n) if u in within and u not in seen)
    return seen


@paused_gc()  # (a deep graph's gradient is millions of live objects: see paused_gc)
def grad(graph: Graph, cost: Optional[int], wrt, consider_constant=(), disconnected_inputs: str = "raise",
         known_grads: Optional[dict] = None) -> list:
    """Add d cost / d wrt to ``graph``; return one node id per ``wrt`` (a list, or one id if
    ``wrt`` is a single id).

    ``cost`` must be a float scalar node (or None when ``known_grads`` seeds the walk).
    ``consider_constant``: nodes treated as constants (no gradient flows through them).
    ``known_grads``: ``{node: cotangent node}`` extra seeds (Theano's known_grads).
    ``disconnected_inputs``: 'raise' (ValueError), 'warn' or 'ignore'; the last two give
    zeros of the wrt's type.
    """
    g = graph
    single = isinstance(wrt, int)
    wrt = [wrt] if single else list(wrt)
    if disconnected_inputs not in ("raise", "warn", "ignore"):
        raise ValueError(f"grad: disconnected_inputs must be 'raise', 'warn' or 'ignore', got {disconnected_inputs!r}")
    known_grads = dict(known_grads or {})
    if cost is None and not known_grads:
        raise ValueError("grad: cost is None and no known_grads were given")
    if cost is not None:
        if cost not in g:
            raise ValueError(f"grad: cost %{cost} is not in the graph")
        ct = g.type(cost)
        if ct.ndim != 0:
            raise ValueError(f"grad: cost {label(g, cost)} must be a scalar, got {ct}; sum it or pass known_grads")
        if not dt.is_float(ct.dtype):
            raise TypeError(f"grad: cost {label(g, cost)} must be a float scalar, got {ct}")
    for w in wrt:
        if not isinstance(w, int) or w not in g:
            raise ValueError(f"grad: wrt {w!r} is not a node of the graph")
        if not is_float_node(g, w):
            raise TypeError(f"grad: cannot differentiate with respect to {label(g, w)} of integer/bool type "
                            f"{g.type(w)}; gradients are defined for float tensors only")
    for n, c in known_grads.items():
        if n not in g or c not in g:
            raise ValueError(f"grad: known_grads entry %{n}: %{c} is not in the graph")
        if g.type(c) != g.type(n):
            raise TypeError(f"grad: known gradient of {label(g, n)} has type {g.type(c)}, expected {g.type(n)}")
    blocked = set(consider_constant)
    seeds = ([cost] if cost is not None else []) + list(known_grads)
    upstream = _ancestors(g, seeds, blocked)
    relevant = _descendants(g, wrt, upstream)
    first_new = g._next_id

    cot: dict[int, int] = {}

    def accumulate(n: int, c: int) -> None:
        cot[n] = c if n not in cot else g.add_node("add", (cot[n], c))

    if cost is not None and cost in relevant:
        accumulate(cost, const(g, 1.0, g.type(cost).dtype))
    for n, c in known_grads.items():
        if n in relevant and is_float_node(g, n):  # (int nodes are relevant only as connectors)
            accumulate(n, c)

    # a multi-result node (scan, ifelse; type TupleType) gets its cotangents from the
    # get_output nodes reading it, one per result (None where a result has none); its rule
    # receives them as a list
    tuple_cot: dict[int, dict] = {}
    order = [n for n in g.topo_order() if n in relevant]
    for n in reversed(order):
        if n in blocked:
            continue
        if isinstance(g.type(n), TupleType):
            if n not in tuple_cot:
                continue
            ct = [tuple_cot[n].get(i) for i in range(len(g.type(n).elements))]
        elif n not in cot:
            continue
        else:
            ct = cot[n]
        opname = g.op(n)
        if get_op(opname).source:
            continue
        operands = g.operands(n)
        if opname == "get_output" and isinstance(g.type(operands[0]), TupleType):
            parts = tuple_cot.setdefault(operands[0], {})
            i = g.attrs(n)["index"]
            parts[i] = ct if i not in parts else g.add_node("add", (parts[i], ct))
            continue
        wants = [o in relevant and is_float_node(g, o) for o in operands]
        if not any(wants):
            continue
        rule = VJP_RULES.get(opname)
        if rule is None:
            raise TypeError(f"grad: op {opname!r} ({label(g, n)}) has no VJP rule in "
                                      f"tcomp.passes.autodiff.VJP_RULES")
        results = rule(VJPContext(g, n, operands, ct, wants))
        if len(results) != len(operands):
            raise RuntimeError(f"VJP rule of {opname!r} returned {len(results)} cotangents "
                               f"for {len(operands)} operands")
        for o, c, w in zip(operands, results, wants):
            if c is None or not w:
                continue
            if g.type(c) != g.type(o):
                raise TypeError(f"VJP rule of {opname!r} gave cotangent {g.type(c)} for operand "
                                f"{label(g, o)} of type {g.type(o)}")
            accumulate(o, c)

    out = []
    for w in wrt:
        if w in cot:
            out.append(cot[w])
            continue
        if w in relevant:  # on a path to the cost, but every rule on the way gave None: zero,
            # read through w (Theano's zeros_like(x) is fill(x, 0)), so that the gradient of
            # this gradient (floor's, a comparison's) is again zero rather than disconnected
            out.append(op(g, "where", const(g, False, dt.BOOL), w, const(g, 0, g.type(w).dtype)))
            continue
        if disconnected_inputs == "raise":
            raise ValueError(f"grad: cost does not depend on {label(g, w)} (disconnected input); "
                             f"pass disconnected_inputs='ignore' or 'warn' to get zeros")
        if disconnected_inputs == "warn":
            warnings.warn(f"grad: cost does not depend on {label(g, w)}; its gradient is zero", stacklevel=2)
        out.append(zeros_like(g, w))
    _remove_unused_new_nodes(g, first_new, out)
    return out[0] if single else out


def _remove_unused_new_nodes(g: Graph, first_new: int, keep: list) -> None:
    """Delete nodes built during this call that no returned gradient uses (rules may build
    partial results for operands that turned out not to need them)."""
    needed = set()
    stack = [k for k in keep if k >= first_new]
    while stack:
        n = stack.pop()
        if n in needed:
            continue
        needed.add(n)
        stack.extend(p for p in g.nx.predecessors(n) if p >= first_new and p not in needed)
    dead = [n for n in g.nx.nodes if n >= first_new and n not in needed]
    g.nx.remove_nodes_from(dead)


# registers the rules for tcomp's ops; autodiff_conv: conv2d, pool2d and their gradient ops
# autodiff_scan: scan and ifelse (backpropagation through time)
from . import autodiff_conv, autodiff_linalg, autodiff_rules, autodiff_scan, autodiff_scan_sort  # noqa: E402,F401
