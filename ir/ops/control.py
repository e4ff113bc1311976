"""Control flow: the loop op ``scan`` and the conditional op ``ifelse``, whose bodies are
nested graphs held in attributes (:class:`Body`).

Why nested graphs and not unrolled code: a loop of a symbolic number of steps cannot be
unrolled, and a lazy branch must not run its untaken side.  A body is an ordinary
:class:`tcomp.ir.Graph`, so the same verifier, printer, hash, interpreter and passes apply
to it (``tcomp.passes.scan_opt`` runs the whole pipeline on bodies).

``scan`` (Theano's Scan, normalized):

* operands ``(n_steps, *sequences, *initial states, *non_sequences)``.  ``n_steps`` is an
  int scalar; every sequence has at least ``n_steps`` rows along axis 0 (step ``t`` reads
  row ``t``; the front end has already applied taps, ``go_backwards`` and ``n_steps``);
  recurrent output ``i`` has taps ``taps[i]`` (sorted negative ints) and an initial buffer
  of shape ``(L_i, *s_i)`` with ``L_i = -min(taps[i])``: the state's history before step 0,
  oldest first; non-sequences are passed unchanged to every step.
* ``body`` inputs: one row of every sequence, then for every recurrent output the value at
  ``t + tap`` for each of its taps (in ``taps`` order), then the non-sequences.  Types: a
  sequence row or a state has the operand's type without its leading axis, exactly.
* ``body`` outputs: the new value of every recurrent output (same dtype and rank as its
  state, static dims agreeing), then ``n_nitsot`` outputs that are not fed back, then,
  with ``until``, a bool scalar: the loop stops after a step whose condition is true.
* results, in that order (a tuple when there are several, read through ``get_output``):
  ``store[k] == "all"`` (the default): the ``n`` values of output ``k``, shape
  ``(?, *value)``; ``"last"``: only the last one, shape ``value`` (for a recurrent output
  after zero steps, the newest row of its initial buffer).  ``truncate_gradient`` is read
  by the VJP only (the number of steps backpropagated; -1: all).

``ifelse``: operands ``(cond, *captured)``; ``then_body`` and ``else_body`` both take the
captured values (exact types) and return as many results, of the same dtype and rank.
Only the body that ``cond`` selects is evaluated (lazy); the result types merge the two
branches' shapes (a dim stays static or named only where both agree).
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..types import TensorType, TupleType
from .registry import OpDef, register

#: op name -> the attributes that hold nested graphs (printer, parser, serializer, verifier)
GRAPH_ATTRS = {"scan": ("body",), "ifelse": ("then_body", "else_body")}
STORE_MODES = ("all", "last")


class Body:
    """A nested graph as an attribute value.  Treated as immutable (passes build a new Body
    instead of editing one); equal and hashed by structural hash, so CSE merges equal loops
    and the outer graph's hash covers the body."""

    __slots__ = ("graph", "_key")

    def __init__(self, graph):
        from ..graph import Graph

        if not isinstance(graph, Graph):
            raise TypeError(f"a Body wraps a tcomp.ir.Graph, got {type(graph).__name__}")
        self.graph = graph
        self._key = None

    @property
    def key(self) -> str:
        if self._key is None:
            from ..printer import structural_hash

            self._key = structural_hash(self.graph)
        return self._key

    @property
    def input_types(self) -> list:
        return [self.graph.type(n) for n in self.graph.inputs]

    @property
    def output_types(self) -> list:
        return [self.graph.type(n) for n in self.graph.outputs]

    def __eq__(self, other):
        return isinstance(other, Body) and (self is other or self.key == other.key)

    def __hash__(self):
        return hash(self.key)

    def __repr__(self):
        return f"Body({len(self.graph.inputs)} inputs, {len(self.graph.outputs)} outputs, {self.key[:12]})"


def _body(attrs, key, op) -> Body:
    b = attrs.get(key)
    if not isinstance(b, Body):
        raise TypeError(f"{op}: attribute {key!r} must be a Body (a nested graph), got {b!r}")
    return b


def compatible(value: TensorType, state: TensorType) -> bool:
    """A body result may stand for ``state``: same dtype and rank, static dims agreeing."""
    if not isinstance(value, TensorType) or value.dtype != state.dtype or value.ndim != state.ndim:
        return False
    return all(not (isinstance(a, int) and isinstance(b, int) and a != b) for a, b in zip(value.shape, state.shape))


def merge_types(a: TensorType, b: TensorType) -> TensorType:
    """The type covering both branches' results: dims kept only where they agree."""
    return TensorType(a.dtype, tuple(x if x == y else None for x, y in zip(a.shape, b.shape)))


def _tuple_or_single(types):
    if not types:
        raise ValueError("a control op needs at least one result")
    return types[0] if len(types) == 1 else TupleType(tuple(types))


# -- scan ------------------------------------------------------------------------------------

def scan_layout(attrs, n_operands=None):
    """(n_seqs, n_rec, n_nitsot, n_nonseq, taps) of a scan node, checked against its attrs."""
    taps = attrs["taps"]
    if not isinstance(taps, tuple) or not all(isinstance(t, tuple) and t and all(
            type(k) is int and k < 0 for k in t) and list(t) == sorted(set(t)) for t in taps):
        raise ValueError(f"scan: taps must be a tuple of sorted, distinct negative int tuples, got {taps!r}")
    n_seqs, n_nitsot = attrs["n_seqs"], attrs["n_nitsot"]
    for k, v in (("n_seqs", n_seqs), ("n_nitsot", n_nitsot)):
        if type(v) is not int or v < 0:
            raise ValueError(f"scan: {k} must be a non-negative int, got {v!r}")
    n_rec = len(taps)
    n_nonseq = None if n_operands is None else n_operands - 1 - n_seqs - n_rec
    if n_nonseq is not None and n_nonseq < 0:
        raise TypeError(f"scan: {n_operands} operands cannot hold n_steps, {n_seqs} sequences and {n_rec} "
                        f"initial states")
    return n_seqs, n_rec, n_nitsot, n_nonseq, taps


def _store(attrs, n_out):
    store = attrs["store"]
    if store == ():
        return ("all",) * n_out
    if not isinstance(store, tuple) or len(store) != n_out or any(s not in STORE_MODES for s in store):
        raise ValueError(f"scan: store must be () or one of {STORE_MODES} per output ({n_out}), got {store!r}")
    return store


def _scan_infer(types, attrs):
    body = _body(attrs, "body", "scan")
    n_seqs, n_rec, n_nitsot, n_nonseq, taps = scan_layout(attrs, len(types))
    n = types[0]
    if n.ndim != 0 or not dt.is_int(n.dtype):
        raise TypeError(f"scan: n_steps must be an int scalar, got {n}")
    seqs = types[1:1 + n_seqs]
    inits = types[1 + n_seqs:1 + n_seqs + n_rec]
    nonseqs = types[1 + n_seqs + n_rec:]
    want = []
    for k, s in enumerate(seqs):
        if s.ndim < 1:
            raise TypeError(f"scan: sequence {k} must have a leading time axis, got {s}")
        want.append(TensorType(s.dtype, s.shape[1:]))
    states = []
    for i, (t, tp) in enumerate(zip(inits, taps)):
        if t.ndim < 1:
            raise TypeError(f"scan: initial state {i} must be a buffer with a leading axis, got {t}")
        if isinstance(t.shape[0], int) and t.shape[0] != -tp[0]:
            raise ValueError(f"scan: initial state {i} has {t.shape[0]} rows but its taps {tp} need {-tp[0]}")
        s = TensorType(t.dtype, t.shape[1:])
        states.append(s)
        want.extend([s] * len(tp))
    want.extend(nonseqs)
    have = body.input_types
    if len(have) != len(want):
        raise TypeError(f"scan: the body takes {len(have)} inputs but the operands give {len(want)} "
                        f"({n_seqs} sequence rows, {sum(map(len, taps))} state taps, {n_nonseq} non-sequences)")
    for k, (h, w) in enumerate(zip(have, want)):
        if not _refines(w, h):
            raise TypeError(f"scan: body input {k} has type {h}, the operands give {w}")
    outs = body.output_types
    n_out = n_rec + n_nitsot
    if len(outs) != n_out + bool(attrs["until"]):
        raise TypeError(f"scan: the body returns {len(outs)} values; expected {n_rec} recurrent + {n_nitsot} other"
                        f"{' + the until condition' if attrs['until'] else ''}")
    for i, (o, s) in enumerate(zip(outs, states)):
        if not compatible(o, s):
            raise TypeError(f"scan: recurrent output {i}: the body gives {o} for a state of type {s} (the dtype, "
                            f"rank and static dims must agree)")
    if attrs["until"]:
        c = outs[-1]
        if not isinstance(c, TensorType) or c.ndim != 0 or c.dtype != dt.BOOL:
            raise TypeError(f"scan: the until condition must be a bool scalar, got {c}")
    if type(attrs["truncate_gradient"]) is not int:
        raise TypeError(f"scan: truncate_gradient must be an int, got {attrs['truncate_gradient']!r}")
    store = _store(attrs, n_out)
    values = states + [o for o in outs[n_rec:n_out]]
    for v in values:
        if isinstance(v, TupleType):
            raise TypeError("scan: body results must be tensors")
    results = [v if mode == "last" else TensorType(v.dtype, (None,) + v.shape) for v, mode in zip(values, store)]
    return _tuple_or_single(results)


def _refines(operand, body_input) -> bool:
    """An operand may be more specific than the body input it feeds: an anonymous dim of the
    body accepts any extent (a graph rebuilt over static-shaped inputs keeps its body)."""
    if not isinstance(operand, TensorType) or not isinstance(body_input, TensorType):
        return operand == body_input
    return (operand.dtype == body_input.dtype and operand.ndim == body_input.ndim
            and all(b is None or a == b for a, b in zip(operand.shape, body_input.shape)))


class StepError(ValueError):
    """A body failed at one step of a loop (the message names the step)."""


def run_scan(arrays, attrs, evaluate):
    """The loop, step by step, with ``evaluate(graph, inputs)`` as the body's interpreter."""
    body = attrs["body"].graph
    n_seqs, n_rec, n_nitsot, _, taps = scan_layout(attrs, len(arrays))
    n = int(arrays[0])
    if n < 0:
        raise ValueError(f"scan: n_steps is {n}; it must be >= 0")
    seqs = arrays[1:1 + n_seqs]
    inits = arrays[1 + n_seqs:1 + n_seqs + n_rec]
    nonseqs = list(arrays[1 + n_seqs + n_rec:])
    for k, s in enumerate(seqs):
        if s.shape[0] < n:
            raise ValueError(f"scan: sequence {k} has {s.shape[0]} rows but the loop runs {n} steps")
    store = _store(attrs, n_rec + n_nitsot)
    history = [list(b) for b in inits]  # the newest L_i values of each state, oldest first
    collected = [[] for _ in range(n_rec + n_nitsot)]
    for t in range(n):
        ins = [s[t] for s in seqs]
        for i, tp in enumerate(taps):
            h = history[i]
            ins.extend(h[len(h) + k] for k in tp)
        ins.extend(nonseqs)
        try:
            outs = evaluate(body, ins)
        except (ValueError, TypeError, IndexError) as exc:
            raise type(exc)(f"scan step {t}: {exc}") from None
        for i in range(n_rec):
            v = outs[i]
            if v.shape != inits[i].shape[1:]:
                raise StepError(f"scan step {t}: recurrent output {i} has shape {v.shape} but its state has "
                                f"shape {inits[i].shape[1:]}")
            history[i].append(v)
            del history[i][0]
        for k in range(n_rec + n_nitsot):
            v = outs[k]
            if collected[k] and v.shape != collected[k][0].shape:
                raise StepError(f"scan step {t}: output {k} has shape {v.shape}, but {collected[k][0].shape} "
                                f"at step 0")
            if store[k] == "last":
                collected[k][:] = [v]
            else:
                collected[k].append(v)
        if attrs["until"] and bool(outs[-1]):
            break
    results = []
    for k, vals in enumerate(collected):
        if store[k] == "last":
            if vals:
                results.append(vals[0])
            elif k < n_rec:
                results.append(np.asarray(inits[k][-1]))
            else:
                raise ValueError(f"scan: the last value of output {k} is asked for, but the loop ran zero steps")
        else:
            like = (inits[k].shape[1:], inits[k].dtype) if k < n_rec else None
            if vals:
                results.append(np.stack(vals))
            elif like is not None:
                results.append(np.zeros((0,) + like[0], like[1]))
            else:
                t = body_output_type(attrs, k)
                if not t.is_static:
                    raise ValueError(f"scan: output {k} ran zero steps and its shape {t} is not static")
                results.append(np.zeros((0,) + t.shape, t.dtype))
    return results[0] if len(results) == 1 else tuple(results)


def body_output_type(attrs, k) -> TensorType:
    return attrs["body"].output_types[k]


def _scan_impl(arrays, attrs, out_type):
    from ..interpreter import evaluate

    return run_scan(arrays, attrs, evaluate)


register(OpDef("scan", None, _scan_infer, _scan_impl,
               attr_defaults={"body": None, "n_seqs": 0, "taps": (), "n_nitsot": 0, "until": False, "store": (),
                              "truncate_gradient": -1, "name": None},
               kind="control", min_arity=1,
               doc="a loop whose step is a nested graph (Theano's scan); see ir/ops/control.py"))


# -- ifelse ----------------------------------------------------------------------------------

def _ifelse_infer(types, attrs):
    then_b, else_b = _body(attrs, "then_body", "ifelse"), _body(attrs, "else_body", "ifelse")
    cond, captured = types[0], types[1:]
    if cond.ndim != 0:
        raise TypeError(f"ifelse: the condition must be a scalar, got {cond}")
    for name, b in (("then", then_b), ("else", else_b)):
        if len(b.input_types) != len(captured) or not all(map(_refines, captured, b.input_types)):
            raise TypeError(f"ifelse: the {name} branch takes ({', '.join(map(str, b.input_types))}) but the "
                            f"operands give ({', '.join(map(str, captured))})")
    a, b = then_b.output_types, else_b.output_types
    if len(a) != len(b):
        raise TypeError(f"ifelse: the then branch returns {len(a)} values, the else branch {len(b)}")
    out = []
    for k, (x, y) in enumerate(zip(a, b)):
        if not isinstance(x, TensorType) or not isinstance(y, TensorType) or x.dtype != y.dtype or x.ndim != y.ndim:
            raise TypeError(f"ifelse: result {k}: the then branch gives {x}, the else branch {y} (the dtype and "
                            f"rank must agree)")
        out.append(merge_types(x, y))
    return _tuple_or_single(out)


def _ifelse_impl(arrays, attrs, out_type):
    from ..interpreter import evaluate

    body = attrs["then_body"] if bool(arrays[0]) else attrs["else_body"]
    outs = evaluate(body.graph, arrays[1:])
    return outs[0] if len(outs) == 1 else tuple(outs)


register(OpDef("ifelse", None, _ifelse_infer, _ifelse_impl, attr_defaults={"then_body": None, "else_body": None},
               kind="control", min_arity=1,
               doc="a lazy conditional whose branches are nested graphs (Theano's ifelse)"))

__all__ = ["Body", "GRAPH_ATTRS", "STORE_MODES", "compatible", "merge_types", "scan_layout", "run_scan"]
