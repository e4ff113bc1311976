"""Shared machinery of the pattern-rewriting passes (canonicalize, simplify, stabilize).

A *rule* is ``rule(g, node) -> Optional[int]``: it may add nodes to ``g`` and returns the
id of a node computing the same value as ``node`` (or None when it does not apply).  The
driver, :func:`apply_rules`, replaces ``node`` by that result only when its TensorType is
*exactly* ``node``'s (dtype and shape, symbolic dim names included); otherwise the rewrite
is dropped, so no rule can silently change a type.  Rules that need a cast or a broadcast
to keep the type call :func:`fit_type`, which inserts one where it can be done exactly.

The driver makes one sweep in topological order and re-applies the rules to each result
until none fires (bounded), so the pass is linear in graph size: rules look only a few
nodes up the graph, and operands are simplified before their users.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from tcomp.ir import Constant, Graph, TensorType
from tcomp.ir import dtypes as dt

Rule = Callable[[Graph, int], Optional[int]]

#: how many times rules may fire in a row on one node (a guard against ping-pong rules)
MAX_REWRITES_PER_NODE = 16


def apply_rules(g: Graph, rules: dict[str, list[Rule]]) -> int:
    """Run ``rules`` (op name -> rules) over ``g`` in place; returns how many rewrites fired."""
    fired = 0
    for node in g.topo_order():
        if node not in g:
            continue
        cur = node
        for _ in range(MAX_REWRITES_PER_NODE):
            new = None
            for rule in rules.get(g.op(cur), ()):
                cand = rule(g, cur)
                if cand is None or cand == cur:
                    continue
                if g.type(cand) != g.type(cur):
                    continue  # never change a type; the rule's leftovers die below
                new = cand
                break
            if new is None:
                break
            replace(g, cur, new)
            fired += 1
            cur = new
    g.remove_dead()  # also drops what rejected rewrites left behind
    return fired


def replace(g: Graph, old: int, new: int) -> None:
    """Make every use of ``old`` use ``new``; a user-visible name moves along to ``new``."""
    name = g.name(old)
    g.replace_all_uses(old, new)
    if name is not None and g.name(new) is None and g.op(new) not in ("input", "constant"):
        g.set_name(new, name)


# -- constants -------------------------------------------------------------------------

def const_value(g: Graph, node: int) -> Optional[np.ndarray]:
    """The value of a constant node, else None."""
    if g.op(node) != "constant":
        return None
    return g.attrs(node)["value"].value


def is_const_filled(g: Graph, node: int, value) -> bool:
    """True when ``node`` is a constant whose every element equals ``value`` (and it has any)."""
    v = const_value(g, node)
    if v is None or v.size == 0:
        return False
    if v.dtype == np.bool_:
        return bool(np.all(v == bool(value)))
    return bool(np.all(v == value))


def add_scalar(g: Graph, value, dtype: str) -> int:
    return g.add_constant(Constant(np.array(value, dtype=dtype)))


# -- keeping types exact ---------------------------------------------------------------

def shape_dims(g: Graph, ref: int, shape: tuple) -> tuple[tuple, list]:
    """An alloc/reshape ``shape`` attr and dim operands for ``shape``; symbolic dims are read
    off the same axes of ``ref`` (which must have the same rank and those dims)."""
    attr, operands = [], []
    for axis, d in enumerate(shape):
        if isinstance(d, int):
            attr.append(d)
        else:
            attr.append(None)
            operands.append(g.add_node("shape", [ref], {"axis": axis}))
    return tuple(attr), operands


def fit_type(g: Graph, node: int, want: TensorType, shape_ref: Optional[int] = None) -> Optional[int]:
    """A node equal to ``node`` converted to type ``want`` exactly, or None if impossible.

    The dtype is fixed by a cast (callers only ask where the original op computed in ``want``'s
    dtype anyway, so the cast reproduces it).  A shape is fixed by an ``alloc`` broadcast when
    the target is fully static, or when ``shape_ref`` (a node other than the one being replaced,
    of the target's rank) supplies the symbolic dims; the result's type is checked.
    """
    t = g.type(node)
    if t.dtype != want.dtype:
        node = g.add_node("cast", [node], {"dtype": want.dtype})
        t = g.type(node)
    if t.shape == want.shape:
        return node
    if want.is_static:
        out = g.add_node("alloc", [node], {"shape": want.shape})
    elif shape_ref is not None and g.type(shape_ref).ndim == want.ndim:
        attr, dims = shape_dims(g, shape_ref, want.shape)
        try:
            out = g.add_node("alloc", [node] + dims, {"shape": attr})
        except (TypeError, ValueError):
            return None
    else:
        return None
    return out if g.type(out) == want else None


def filled_like(g: Graph, value, want: TensorType, shape_ref: int) -> Optional[int]:
    """A tensor of type ``want`` filled with ``value`` (an alloc of a scalar constant)."""
    c = add_scalar(g, value, want.dtype)
    if want.ndim == 0:
        return c
    return fit_type(g, c, want, shape_ref)


def is_float_type(t: TensorType) -> bool:
    return dt.is_float(t.dtype)
