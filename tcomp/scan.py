"""``tcomp.scan``: Theano's loop, and ``map``/``reduce``/``foldl``/``foldr`` built on it.

``fn`` is called once, on symbolic stand-ins for one step, and what it builds becomes the
loop's body, a nested graph of the ``scan`` op (``tcomp/ir/ops/control.py``).  Which
Variables belong to the body: those created while ``fn`` runs (their ids are at least the
counter's value when the call started), stopped at the stand-ins.  Anything older is an
*outer* value: it is computed once and passed to every step (an implicit non-sequence,
as Theano captures shared variables and closures); constants are copied into the body.
So ``grad`` called inside ``fn`` on outer expressions (Theano's Jacobian recipe) works:
its new nodes are the body, the forward values it reads are captured.

State that changes per step besides the outputs:

* a shared variable that ``fn`` returns an update for is carried as a recurrent state,
  read inside the body at its current value, and ``updates[var]`` is its last value;
* a random stream drawn inside ``fn`` (``tcomp.RandomStreams``: a new state variable with
  a ``default_update`` is made there) is carried the same way, so every step draws fresh
  numbers and ``updates`` advances the stream past all of them.

Semantics follow Theano's documentation: taps of sequences (``dict(input=x, taps=[-2,
0])``: step ``t`` reads ``x[t + 2]`` and ``x[t]``, the loop runs ``len(x) - 2`` steps) and
of recurrent outputs (``dict(initial=h0, taps=[-2, -1])``: ``h0`` holds the two values
before step 0, oldest first), ``None`` for outputs not fed back, ``n_steps`` and the
sequences' lengths (the loop runs the smallest), ``go_backwards`` (sequences read from the
end), ``until`` (``fn`` returns ``tcomp.until(cond)``; the loop stops after the step whose
condition holds, and the outputs have as many rows as steps ran).
"""
from __future__ import annotations

from tcomp.ir import Graph, TensorType
from tcomp.ir import dtypes as dt
from tcomp.ir.ops.control import Body, compatible

from .shared import SharedVariable
from .tensor import basic as B
from .tensor.variable import Variable, apply, as_variable

__all__ = ["scan", "until", "map", "reduce", "foldl", "foldr", "OrderedUpdates"]


class until:  # noqa: N801 - Theano's name
    """Returned by ``fn`` (alone or with outputs/updates): stop after this step when true."""

    def __init__(self, condition):
        self.condition = as_variable(condition, "until condition")
        if self.condition.ndim != 0:
            raise TypeError(f"until: the condition must be a scalar, got {self.condition.describe()}")


class OrderedUpdates(dict):
    """The updates ``scan`` returns (an insertion-ordered dict ``{shared variable: new value}``),
    for ``tcomp.function(..., updates=...)``; ``+`` merges with another dict or pair list."""

    def __add__(self, other):
        out = OrderedUpdates(self)
        out.update(dict(other))
        return out

    __radd__ = __add__


def _parse_result(result):
    """``fn``'s return value -> (outputs, update pairs, condition or None), in any of
    Theano's orders: outputs, updates, until, or a tuple of two or three of them."""
    outputs, updates, cond = [], [], None
    items = list(result) if isinstance(result, tuple) else [result]
    if isinstance(result, tuple) and not any(isinstance(i, (dict, until)) or _is_pairs(i) for i in items):
        items = [list(result)]  # a plain tuple of outputs
    for item in items:
        if isinstance(item, until):
            cond = item.condition
        elif isinstance(item, dict):
            updates.extend(item.items())
        elif _is_pairs(item):
            updates.extend(tuple(p) for p in item)
        elif isinstance(item, (list, tuple)):  # outputs, possibly ending in until / updates
            for o in item:
                if isinstance(o, until):
                    cond = o.condition
                elif isinstance(o, dict):
                    updates.extend(o.items())
                else:
                    outputs.append(o)
        elif item is not None:
            outputs.append(item)
    return [as_variable(o, f"output {k} of the scan function") for k, o in enumerate(outputs)], updates, cond


def _is_pairs(item) -> bool:
    return isinstance(item, list) and bool(item) and all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], SharedVariable) for p in item)


def _as_list(x):
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _placeholder(t: TensorType, name) -> Variable:
    return Variable(t, "input", name=name)


def _row_type(t: TensorType) -> TensorType:
    return TensorType(t.dtype, t.shape[1:])


def _walk(roots, subst, start):
    """Variables the body needs (operands first), not expanding outer or substituted ones."""
    order, done, stack = [], set(), [(r, False) for r in reversed(roots)]
    while stack:
        v, expanded = stack.pop()
        v = subst.get(id(v), v)
        if expanded:
            if id(v) not in done:
                done.add(id(v))
                order.append(v)
            continue
        if id(v) in done:
            continue
        stack.append((v, True))
        if v.id >= start and v.op not in ("input", "constant"):
            stack.extend((o, False) for o in reversed(v.inputs) if id(subst.get(id(o), o)) not in done)
    return order


def _build_body(fixed, roots, subst, start):
    """The body Graph: inputs ``fixed`` then the captured outer values; returns (graph, captured)."""
    g = Graph()
    node_of = {}
    for v in fixed:
        if id(v) not in node_of:
            node_of[id(v)] = g.add_input(v.type, v.name)
        else:  # the same outer variable passed twice: a second input standing for it
            g.add_input(v.type, v.name)
    captured = []
    for v in _walk(roots, subst, start):
        if id(v) in node_of:
            continue
        if v.op == "constant":
            node_of[id(v)] = g.add_constant(v.attrs["value"], name=v.name)
        elif v.op == "input" or v.id < start:
            node_of[id(v)] = g.add_input(v.type, v.name)
            captured.append(v)
        else:
            node_of[id(v)] = g.add_node(v.op, [node_of[id(subst.get(id(o), o))] for o in v.inputs], v.attrs,
                                        name=v.name)
            if v.loc is not None:  # the line of fn that made it (tcomp dump --locations)
                g.nx.nodes[node_of[id(v)]]["loc"] = v.loc
    g.outputs = [node_of[id(subst.get(id(r), r))] for r in roots]
    return g, captured


def _inner_random_states(roots, subst, start, known):
    """Shared variables made while ``fn`` ran that carry a default update (random streams),
    reachable from ``roots``, in discovery order (their updates may reach more)."""
    found, pending = [], list(roots)
    while pending:
        new = []
        for v in _walk(pending, subst, start):
            if isinstance(v, SharedVariable) and v.id >= start and v.default_update is not None \
                    and id(v) not in known:
                known.add(id(v))
                found.append(v)
                new.append(v.default_update)
        pending = new
    return found


def _check_state(k, what, value: Variable, state: TensorType):
    if not compatible(value.type, state):
        raise TypeError(f"scan: {what}: the scan function returns {value.describe()}, but the initial state "
                        f"(outputs_info {k}) has type {state}; they must have the same dtype and rank "
                        f"(cast the initial state or the result, e.g. with .astype('{state.dtype}'))")


def scan(fn, sequences=None, outputs_info=None, non_sequences=None, n_steps=None, truncate_gradient=-1,
         go_backwards=False, mode=None, name=None, profile=False, allow_gc=None, strict=False,
         return_list=False):
    """Theano's ``scan``: returns ``(outputs, updates)`` (see the module docstring)."""
    from .tensor.variable import _counter

    if not callable(fn):
        raise TypeError(f"scan: fn must be callable, got {fn!r}")
    if type(truncate_gradient) is not int or truncate_gradient == 0 or truncate_gradient < -1:
        raise ValueError(f"scan: truncate_gradient must be -1 (all steps) or a positive int, got "
                         f"{truncate_gradient!r}")
    seq_specs = []
    for k, s in enumerate(_as_list(sequences)):
        if isinstance(s, dict):
            x, taps = s.get("input"), list(s.get("taps", [0]) or [0])
        else:
            x, taps = s, [0]
        x = as_variable(x, f"sequence {k}")
        if x.ndim < 1:
            raise TypeError(f"scan: sequence {k} ({x.describe()}) must have at least one dimension (time)")
        if any(type(t) is not int for t in taps):
            raise TypeError(f"scan: the taps of sequence {k} must be ints, got {taps!r}")
        if go_backwards:
            x = x[::-1]
        seq_specs.append((x, taps))
    # one operand per sequence tap: x[t + tap] for t = 0.. is x[tap - lo + t]
    seq_operands, seq_args, lengths = [], [], []
    for k, (x, taps) in enumerate(seq_specs):
        lo, hi = min(min(taps), 0), max(max(taps), 0)
        lengths.append(B.shape_i(x, 0) - (hi - lo) if hi - lo else B.shape_i(x, 0))
        args = []
        for t in taps:
            operand = x if t - lo == 0 else x[t - lo:]
            seq_operands.append(operand)
            args.append(_placeholder(_row_type(x.type), None if x.name is None else f"{x.name}[t{t:+d}]"))
        seq_args.append(args)
    # recurrent outputs (the None entries are outputs computed each step but not fed back)
    infos = _as_list(outputs_info)
    rec, kinds = [], []  # rec: (init buffer, sorted taps, state type, placeholders by sorted tap); kinds per info
    for k, info in enumerate(infos):
        if info is None or (isinstance(info, dict) and info.get("initial") is None):
            kinds.append(None)
            continue
        if isinstance(info, dict):
            init, taps = as_variable(info["initial"], f"outputs_info {k}"), list(info.get("taps", [-1]) or [-1])
        else:
            init, taps = as_variable(info, f"outputs_info {k}"), [-1]
        if any(type(t) is not int or t >= 0 for t in taps):
            raise ValueError(f"scan: the taps of outputs_info {k} must be negative ints, got {taps!r}")
        L = -min(taps)
        if taps == [-1]:  # the initial value is the state itself
            state, buf = init.type, init.dimshuffle("x", *range(init.ndim))
        else:  # the initial value holds the L values before step 0 along its first axis
            if init.ndim < 1:
                raise ValueError(f"scan: outputs_info {k} with taps {taps} needs an initial value with a "
                                 f"leading axis of at least {L} rows, got {init.describe()}")
            state = _row_type(init.type)
            buf = init if init.type.shape[0] == L else init[:L]
        sorted_taps = sorted(set(taps))
        holders = {t: _placeholder(state, None if init.name is None else f"{init.name}[t{t:+d}]")
                   for t in sorted_taps}
        kinds.append(len(rec))
        rec.append((buf, tuple(sorted_taps), state, holders, [holders[t] for t in taps], k))
    non_seqs = [as_variable(v, f"non_sequences {k}") for k, v in enumerate(_as_list(non_sequences))]
    # call fn: sequence taps, then output taps (the order the user gave), then non-sequences
    args = [a for group in seq_args for a in group]
    for kind in kinds:
        if kind is not None:
            args.extend(rec[kind][4])
    args.extend(non_seqs)
    start = next(_counter)  # what fn builds from here on is the body
    outputs, update_pairs, cond = _parse_result(fn(*args))
    if infos and len(outputs) != len(infos):
        raise ValueError(f"scan: the scan function returns {len(outputs)} outputs but outputs_info has {len(infos)} "
                         f"entries; give None in outputs_info for each output that is not fed back")
    if not infos:
        kinds = [None] * len(outputs)
    # shared variables updated inside fn are recurrent states too
    subst, shared_states = {}, []
    for var, expr in update_pairs:
        if not isinstance(var, SharedVariable):
            raise TypeError(f"scan: an update target must be a shared variable, got {var!r}")
        expr = as_variable(expr, f"update of {var.name}")
        if expr.dtype != var.dtype or expr.ndim != var.ndim:
            raise TypeError(f"scan: the update of shared variable {var.describe()} has type {expr.type}; it must "
                            f"have dtype {var.dtype} and rank {var.ndim}")
        holder = _placeholder(var.type, var.name)
        subst[id(var)] = holder
        shared_states.append((var, expr, holder))
    rec_values = [outputs[k] for k, kind in enumerate(kinds) if kind is not None]
    nitsot = [outputs[k] for k, kind in enumerate(kinds) if kind is None]
    for (buf, taps, state, holders, _, k), v in zip(rec, rec_values):
        _check_state(k, f"output {k}", v, state)
    if cond is not None and cond.dtype != dt.BOOL:
        cond = B.neq(cond, 0)
    roots = rec_values + [e for _, e, _ in shared_states] + nitsot + ([cond] if cond is not None else [])
    random_states = _inner_random_states(roots, subst, start, {id(v) for v, _, _ in shared_states})
    for rng in random_states:
        holder = _placeholder(rng.type, rng.name)
        subst[id(rng)] = holder
        shared_states.append((rng, rng.default_update, holder))
    state_exprs = [e for _, e, _ in shared_states]
    roots = rec_values + state_exprs + nitsot + ([cond] if cond is not None else [])
    fixed = [a for group in seq_args for a in group]
    for _, _, _, holders, _, _ in rec:
        fixed.extend(holders[t] for t in sorted(holders))
    fixed.extend(h for _, _, h in shared_states)
    fixed.extend(non_seqs)
    body, captured = _build_body(fixed, roots, subst, start)
    if strict:
        loose = [v for v in captured if v.op != "constant"]
        if loose:
            raise ValueError(f"scan(strict=True): the scan function uses {', '.join(v.describe() for v in loose)}, "
                             f"which are not passed as sequences or non_sequences")
    # n_steps: the given number and the sequences' usable lengths, whichever is smallest
    counts = [B.cast(as_variable(n_steps, "n_steps"), "int64")] if n_steps is not None else []
    counts += [B.cast(n, "int64") for n in lengths]
    if not counts:
        raise ValueError("scan: give sequences or n_steps (the number of steps is otherwise unknown)")
    n = counts[0]
    for c in counts[1:]:
        n = B.minimum(n, c)
    inits = [r[0] for r in rec] + [v.dimshuffle("x", *range(v.ndim)) for v, _, _ in shared_states]
    taps = tuple(r[1] for r in rec) + ((-1,),) * len(shared_states)
    attrs = {"body": Body(body), "n_seqs": len(seq_operands), "taps": taps, "n_nitsot": len(nitsot),
             "until": cond is not None, "truncate_gradient": truncate_gradient, "name": name}
    node = apply("scan", [n] + seq_operands + inits + non_seqs + captured, attrs, name=name)
    n_out = len(taps) + len(nitsot)
    results = [node] if n_out == 1 else [apply("get_output", [node], {"index": k}) for k in range(n_out)]
    rec_results, state_results = results[:len(rec)], results[len(rec):len(taps)]
    nitsot_results = results[len(taps):]
    out, r_i, n_i = [], iter(rec_results), iter(nitsot_results)
    for kind in kinds:
        out.append(next(r_i) if kind is not None else next(n_i))
    if name:
        for k, v in enumerate(out):
            v.name = f"{name}[{k}]" if len(out) > 1 else name
    updates = OrderedUpdates()
    for (var, _, _), seq in zip(shared_states, state_results):
        updates[var] = seq[-1]
    if return_list:
        return out, updates
    if not out:
        return None, updates
    return (out[0] if len(out) == 1 else out), updates


def map(fn, sequences, non_sequences=None, truncate_gradient=-1, go_backwards=False, mode=None,  # noqa: A001
        name=None):
    """Theano's ``map``: ``fn`` applied to every row of the sequences."""
    return scan(fn, sequences=sequences, outputs_info=None, non_sequences=non_sequences,
                truncate_gradient=truncate_gradient, go_backwards=go_backwards, name=name)


def reduce(fn, sequences, outputs_info, non_sequences=None, go_backwards=False, mode=None,  # noqa: A001
           name=None):
    """Theano's ``reduce``: the last value of each output of the loop."""
    outs, updates = scan(fn, sequences=sequences, outputs_info=outputs_info, non_sequences=non_sequences,
                         go_backwards=go_backwards, name=name, return_list=True)
    last = [o[-1] for o in outs]
    return (last[0] if len(last) == 1 else last), updates


def foldl(fn, sequences, outputs_info, non_sequences=None, mode=None, name=None):
    """Theano's ``foldl``: ``reduce`` from the first row."""
    return reduce(fn, sequences, outputs_info, non_sequences, go_backwards=False, name=name)


def foldr(fn, sequences, outputs_info, non_sequences=None, mode=None, name=None):
    """Theano's ``foldr``: ``reduce`` from the last row."""
    return reduce(fn, sequences, outputs_info, non_sequences, go_backwards=True, name=name)
