"""``T.grad``, ``T.Lop``, ``T.Rop``, ``T.jacobian``, ``T.hessian`` and Theano's gradient
modifiers (``zero_grad``, ``disconnected_grad``, ``grad_clip``): symbolic gradients.

The expression is traced into a Graph, ``tcomp.passes.autodiff.grad`` appends the
reverse-mode nodes, and the new nodes come back as Variables, so gradients print,
optimize, fuse with the forward pass and compile in the same function.

Why the modifiers are marks and not ops: each is the identity in the forward pass, so it
needs no kernel, pass or backend support.  ``zero_grad(x)`` returns a fresh node ``x * 1``
recorded in a weak table; ``T.grad`` treats a marked node as a constant (nothing flows
through it) and, for ``grad_clip``, feeds the clipped cotangent of the node back into its
operand as a known gradient.  After differentiation the compiler folds ``x * 1`` away.

``T.Rop`` (a Jacobian-vector product) is computed with the double-VJP identity: with
``g(u) = u^T J`` (an ``Lop``, linear in ``u``), ``J v = d/du sum(g(u) * v)``, so it needs
nothing but the reverse mode; ``u`` is a zeros node whose value never matters.
"""
from __future__ import annotations

import warnings
import weakref

from tcomp.ir import dtypes as dt
from tcomp.ir.graph import paused_gc
from tcomp.ir.ops import get_op

from .shared import SharedVariable
from .tensor.variable import Variable, apply, as_variable, weak_constant_for
from .trace import _postorder, build_graph, variables_from_graph

#: marked nodes: Variable -> ("zero",) | ("disconnected",) | ("clip", lo, hi)
_MARKS: "weakref.WeakKeyDictionary[Variable, tuple]" = weakref.WeakKeyDictionary()


class DisconnectedType:
    """What ``T.grad(..., return_disconnected='Disconnected')`` returns for an input the cost
    does not depend on (Theano's ``DisconnectedType()`` variable): not a tensor, only a marker."""

    def __repr__(self):
        return "DisconnectedType()"


class NullGradient:
    """What ``grad_undefined`` / ``grad_not_implemented`` return inside an op's ``grad``
    (Theano's NullType variables): T.grad raises, naming the op and the input, only when a
    variable being differentiated lies behind that input."""

    def __init__(self, op, x_pos, x, comment, why):
        self.op, self.x_pos, self.x, self.comment, self.why = op, x_pos, x, comment, why

    def message(self) -> str:
        from tcomp.ir.ops.pyop import op_name

        extra = f": {self.comment}" if self.comment else ""
        return (f"T.grad: the gradient of op {op_name(self.op)} with respect to its input {self.x_pos} is "
                f"{self.why}{extra}")


def grad_undefined(op, x_pos, x, comment=""):
    """Theano's ``gradient.grad_undefined``: in an op's ``grad``, input ``x_pos`` has no
    gradient (mathematically undefined)."""
    return NullGradient(op, x_pos, x, comment, "undefined")


def grad_not_implemented(op, x_pos, x, comment=""):
    """Theano's ``gradient.grad_not_implemented``: in an op's ``grad``, input ``x_pos``'s
    gradient is not implemented."""
    return NullGradient(op, x_pos, x, comment, "not implemented")


def _mark(x, mark, what):
    x = as_variable(x, what)
    if not dt.is_float(x.dtype):  # integer/bool values carry no gradient anyway
        return x
    out = apply("mul", [x, weak_constant_for(1, [x])])
    _MARKS[out] = mark
    return out


def zero_grad(x):
    """``x`` in the forward pass; its gradient is zero (``x`` stays connected: no
    disconnected-input error for what lies behind it)."""
    return _mark(x, ("zero",), "zero_grad")


def disconnected_grad(x):
    """``x`` in the forward pass; gradients do not flow through it, and what lies only
    behind it is a disconnected input for ``T.grad`` (``disconnected_inputs`` applies)."""
    return _mark(x, ("disconnected",), "disconnected_grad")


def consider_constant(x):
    """Theano's deprecated name for :func:`zero_grad`."""
    return zero_grad(x)


def grad_clip(x, lower_bound, upper_bound):
    """``x`` in the forward pass; in the backward pass the gradient arriving at this node is
    clipped elementwise to ``[lower_bound, upper_bound]`` before it flows on into ``x``."""
    lo, hi = float(lower_bound), float(upper_bound)
    if not lo <= hi:
        raise ValueError(f"grad_clip: lower_bound {lower_bound!r} must be <= upper_bound {upper_bound!r}")
    return _mark(x, ("clip", lo, hi), "grad_clip")


# -- the core: one reverse-mode pass over a traced graph -----------------------------------

def _roots_of(exprs):
    return [v for v in _postorder(list(exprs), lambda v: v) if v.op == "input"]


def _reach(seeds, blocked: set) -> set:
    """ids of the Variables a gradient seeded at ``seeds`` can reach: the autodiff pass's rule
    (float seeds; integer nodes walked through; blocked nodes and non-differentiable ops end
    the walk), on Variables, so connectivity is known before any graph is built."""
    seen, stack = set(), [s for s in seeds if dt.is_float(s.dtype)]
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if id(v) in blocked or v.op in ("input", "constant") or (  # (get_output: a scan's result; py_call:
                not get_op(v.op).differentiable and v.op not in ("get_output", "py_call")):  # its op's grad)
            continue
        stack.extend(o for o in v.inputs if id(o) not in seen)
    return seen


@paused_gc()  # (building a deep graph's gradient: see tcomp.ir.graph.paused_gc)
def _grad_core(cost, targets, blocked_vars, known_grads, stabilize_ok):
    """Gradients of ``cost`` (or None) plus ``known_grads`` seeds with respect to every
    Variable in ``targets`` (all reachable: the caller checked), as Variables."""
    from tcomp.passes.autodiff import cast_to, match_type
    from tcomp.passes.autodiff import grad as graph_grad

    seeds = ([cost] if cost is not None else []) + list(known_grads)
    roots = _roots_of(seeds + list(known_grads.values()))
    graph, var_to_node, _ = build_graph([r for r in roots if not isinstance(r, SharedVariable)] +
                                        [r for r in roots if isinstance(r, SharedVariable)],
                                        seeds + list(known_grads.values()))
    cost_node = var_to_node[cost] if cost is not None else None
    if stabilize_ok and cost is not None and not known_grads and not blocked_vars and all(t.is_root for t in targets):
        # Differentiate the stabilized forward graph: log(softmax(x)) becomes log_softmax
        # before its VJP is taken, so the backward pass never divides by an underflowed
        # probability (JAX users get this by writing log_softmax themselves).
        from tcomp.passes import stabilize

        graph = stabilize(graph.copy())
        cost_node = graph.outputs[0]
    kg = {}
    for k, v in known_grads.items():
        kn, vn = var_to_node[k], var_to_node[v]
        kg[kn] = match_type(graph, cast_to(graph, vn, graph.type(kn).dtype), kn)
    node_grads = graph_grad(graph, cost_node, [var_to_node[t] for t in targets],
                            consider_constant=[var_to_node[v] for v in blocked_vars if v in var_to_node],
                            disconnected_inputs="ignore", known_grads=kg or None)
    node_to_var = {n: v for v, n in var_to_node.items()}
    return variables_from_graph(graph, node_to_var, node_grads)


def _add(acc: dict, v: Variable, g) -> None:
    acc[id(v)] = g if id(v) not in acc else acc[id(v)] + g


# -- custom-gradient regions: grad_clip, Python ops, OpFromGraph's grad_overrides ------------

class CustomGradient:
    """Outputs whose gradient a function computes from theirs: T.grad blocks the flow at
    ``outputs`` and seeds ``inputs`` with ``vjp(output_grads)`` in a second pass (one list of
    Variables per output index: a result read by several Variables sums their gradients)."""

    def __init__(self, inputs, outputs, vjp, label):
        self.inputs, self.outputs, self.vjp, self.label = list(inputs), outputs, vjp, label


def custom_gradient(outputs, inputs, vjp, label="custom gradient"):
    """``outputs`` as new Variables equal to them whose gradient is ``vjp(inputs,
    output_grads)`` (a list with one gradient or None per input) instead of the gradient of
    the expression behind them (OpFromGraph's ``grad_overrides`` on an inlined graph)."""
    region = CustomGradient(inputs, [], lambda gs: vjp(list(inputs), gs), label)
    marked = []
    for o in outputs:
        o = as_variable(o, label)
        m = apply("mul", [o, weak_constant_for(1, [o])]) if dt.is_float(o.dtype) else o
        if m is not o:
            _MARKS[m] = ("custom", region)
        region.outputs.append([m])
        marked.append(m)
    return marked


def _python_op_region(call: Variable, graph_vars) -> CustomGradient:
    """The region of one ``py_call``: its results, and the op's grad (or L_op)."""
    from tcomp.ir.ops.pyop import op_name, resolve

    op = resolve(call.attrs["op"])
    n_out = len(call.attrs["outputs"])
    if n_out == 1:
        outputs = [[call]]
    else:
        outputs = [[] for _ in range(n_out)]
        for v in graph_vars:
            if v.op == "get_output" and v.inputs[0] is call:
                outputs[v.attrs["index"]].append(v)
    name = op_name(op)

    def vjp(gs):
        outs = [o[0] if o else apply("get_output", [call], {"index": i}) for i, o in enumerate(outputs)]
        gs = [g if g is not None else _basic().zeros_like(o) for g, o in zip(gs, outs)]  # (a result not read)
        if callable(getattr(op, "L_op", None)):
            res = op.L_op(list(call.inputs), outs, gs)
        elif callable(getattr(op, "grad", None)):
            res = op.grad(list(call.inputs), gs)
        else:
            raise TypeError(f"T.grad: Python op {name} has no grad method, and the cost depends through it on a "
                            f"variable being differentiated; define grad(self, inputs, output_grads) on "
                            f"{type(op).__name__} (returning one symbolic gradient per input), or wrap its output "
                            f"in gradient.disconnected_grad")
        res = list(res) if isinstance(res, (list, tuple)) else [res]
        if len(res) != len(call.inputs):
            raise TypeError(f"T.grad: {name}.grad returned {len(res)} gradients for {len(call.inputs)} inputs")
        return res
    return CustomGradient(call.inputs, outputs, vjp, f"Python op {name}")


def _regions(graph_vars) -> list:
    """Every custom-gradient region of the forward graph, in post-order of its last output."""
    pos = {id(v): i for i, v in enumerate(graph_vars)}
    found = {}
    for v in graph_vars:
        mark = _MARKS.get(v)
        if mark is not None and mark[0] == "clip":
            lo, hi = mark[1], mark[2]
            found[id(v)] = (pos[id(v)], CustomGradient(
                [v.inputs[0]], [[v]], lambda gs, lo=lo, hi=hi: [_basic().clip(gs[0], lo, hi)], "grad_clip"))
        elif mark is not None and mark[0] == "custom":
            region = mark[1]
            prev = found.get(id(region))
            found[id(region)] = (max(pos[id(v)], prev[0] if prev else -1), region)
        elif v.op == "py_call":
            found[id(v)] = (pos[id(v)], _python_op_region(v, graph_vars))
    return [r for _, r in sorted(found.values(), key=lambda pr: pr[0])]


def _basic():
    from .tensor import basic as B

    return B


def _refuse_python_ops_in_bodies(vars_) -> None:
    """The graph-level autodiff of a scan/ifelse body cannot call a Python op's grad."""
    from tcomp.ir.ops.control import Body
    from tcomp.ir.ops.pyop import op_name, python_nodes, resolve

    for v in vars_:
        if v.op in ("scan", "ifelse"):
            for b in v.attrs.values():
                found = python_nodes(b.graph) if isinstance(b, Body) else []
                if found:
                    g, n = found[0]
                    raise TypeError(f"T.grad: the {v.op} body uses Python op {op_name(resolve(g.attrs(n)['op']))}; "
                                    "gradients through Python ops inside a loop or branch are not supported")


def grad(cost, wrt, consider_constant=None, disconnected_inputs="raise", add_names=True, known_grads=None,
         return_disconnected="zero", null_gradients="raise"):
    """d cost / d wrt for a scalar ``cost`` (or ``cost=None`` with ``known_grads``);
    ``wrt`` a variable or a list of them, Theano's signature.

    ``consider_constant``: variables gradients do not flow through.  ``known_grads``:
    ``{variable: its gradient}`` extra seeds (types are matched to the variable's).
    ``disconnected_inputs``: 'raise' (ValueError), 'warn' or 'ignore' for a ``wrt`` the cost
    does not depend on; ``return_disconnected`` says what such a ``wrt`` gets: 'zero' (zeros
    of its type), 'None', or 'Disconnected' (a :class:`DisconnectedType`).  ``add_names``
    names new gradient variables ``(dcost/dwrt)`` when both are named.  ``null_gradients``
    is accepted for Theano compatibility: an op without a gradient always raises here.
    """
    if disconnected_inputs not in ("raise", "warn", "ignore"):
        raise ValueError(f"disconnected_inputs must be 'raise', 'warn' or 'ignore', got {disconnected_inputs!r}")
    if return_disconnected not in ("zero", "None", "Disconnected"):
        raise ValueError(f"return_disconnected must be 'zero', 'None' or 'Disconnected', got {return_disconnected!r}")
    if null_gradients not in ("raise", "return"):
        raise ValueError(f"null_gradients must be 'raise' or 'return', got {null_gradients!r}")
    single = not isinstance(wrt, (list, tuple))
    wrt_list = [wrt] if single else list(wrt)
    if any(getattr(w, "is_sparse_variable", False) is True for w in wrt_list):  # structured (tcomp/sparse)
        from .sparse.function import sparse_grad

        return sparse_grad(grad, cost, wrt, consider_constant=consider_constant,
                           disconnected_inputs=disconnected_inputs, add_names=add_names, known_grads=known_grads,
                           return_disconnected=return_disconnected, null_gradients=null_gradients)
    for w in wrt_list:
        if not isinstance(w, Variable):
            raise TypeError(f"T.grad: wrt must be symbolic variables, got {w!r}")
        if not dt.is_float(w.dtype):
            raise TypeError(f"T.grad: cannot differentiate with respect to {w.describe()}: "
                            f"its dtype {w.dtype} is not a float dtype")
    known_grads = {as_variable(k, "known_grads key"): as_variable(v, "known_grads value")
                   for k, v in (known_grads or {}).items()}
    if cost is None:
        if not known_grads:
            raise ValueError("T.grad: cost is None and no known_grads were given")
    else:
        cost = as_variable(cost, "cost")
        if cost.ndim != 0:
            raise ValueError(f"T.grad: cost must be a scalar, got {cost.describe()}")
        if not dt.is_float(cost.dtype):
            raise TypeError(f"T.grad: cost must be a float scalar, got {cost.describe()}")
    for k, v in known_grads.items():
        if k.ndim != v.ndim:
            raise ValueError(f"T.grad: known gradient {v.describe()} of {k.describe()} must have {k.ndim} dims")

    seeds = ([cost] if cost is not None else []) + list(known_grads)
    graph_vars = _postorder(seeds, lambda v: v)
    marks = [v for v in graph_vars if v in _MARKS]
    # grad_clip marks, Python ops, OpFromGraph overrides: operands before users
    regions = _regions(graph_vars)
    region_outputs = [[o for outs in r.outputs for o in outs] for r in regions]
    const_vars = [as_variable(c) for c in (consider_constant or [])]
    blocked_vars = const_vars + marks + [o for outs in region_outputs for o in outs if o not in _MARKS]
    blocked = {id(v) for v in blocked_vars}
    # connected: reachable when zero_grad / grad_clip marks are walked through
    connected = _reach(seeds, {id(v) for v in const_vars} |
                       {id(v) for v in marks if _MARKS[v][0] == "disconnected"})

    acc: dict = {}
    reach = _reach(seeds, blocked)
    _refuse_python_ops_in_bodies(v for v in graph_vars if id(v) in connected)
    # (a region's integer result, such as an index a Python op checked, carries no gradient)
    all_outputs = [o for outs in region_outputs for o in outs if dt.is_float(o.dtype)]
    targets = [t for t in dict.fromkeys(wrt_list + all_outputs) if id(t) in reach]
    if targets:
        for t, g in zip(targets, _grad_core(cost, targets, blocked_vars, known_grads,
                                            stabilize_ok=not marks and not regions)):
            _add(acc, t, g)
    from .tensor import basic as B

    for j in range(len(regions) - 1, -1, -1):  # outermost first: its total gradient is complete
        r = regions[j]
        got = [[acc[id(o)] for o in outs if id(o) in acc] for outs in r.outputs]
        if not any(got):
            continue
        inputs = [i for i in dict.fromkeys(r.inputs) if dt.is_float(i.dtype)]
        earlier = [o for outs in region_outputs[:j] for o in outs if dt.is_float(o.dtype)]
        inner = _reach(inputs, blocked)
        targets = [t for t in dict.fromkeys(wrt_list + earlier) if id(t) in inner]
        if not targets:  # nothing differentiated lies behind it: its vjp is not needed
            continue
        gs = []
        for outs, parts in zip(r.outputs, got):
            total = None
            for p in parts:
                total = p if total is None else total + p
            gs.append(total if total is not None else (B.zeros_like(outs[0]) if outs else None))
        seed: dict = {}
        for inp, g in zip(r.inputs, r.vjp(gs)):
            if g is None or isinstance(g, DisconnectedType) or not dt.is_float(inp.dtype):
                continue
            if isinstance(g, NullGradient):
                behind = _reach([inp], blocked)
                if any(id(t) in behind for t in targets):
                    raise NullTypeGradError(g.message())
                continue
            g = as_variable(g, f"gradient of {r.label}")
            if g.ndim != inp.ndim:
                raise TypeError(f"T.grad: {r.label}: the gradient {g.describe()} of input {inp.describe()} "
                                f"must have rank {inp.ndim}")
            seed[inp] = g if inp not in seed else seed[inp] + g
        if seed:
            for t, g in zip(targets, _grad_core(None, targets, blocked_vars, seed, stabilize_ok=False)):
                _add(acc, t, g)

    forward = {id(v) for v in graph_vars}
    out = []
    for w in wrt_list:
        if id(w) in acc:
            g = acc[id(w)]
            if add_names and g.name is None and id(g) not in forward and w.name and cost is not None and cost.name:
                g.name = f"(d{cost.name}/d{w.name})"
            out.append(g)
            continue
        if id(w) in connected:  # only through zero_grad: a connected zero
            out.append(B.zeros_like(w))
            continue
        if disconnected_inputs == "raise":
            what = cost.describe() if cost is not None else "the known gradients"
            raise DisconnectedInputError(f"T.grad: cost {what} does not depend on {w.describe()} "
                                         "(pass disconnected_inputs='ignore' or 'warn' to get zeros)")
        if disconnected_inputs == "warn":
            warnings.warn(f"T.grad: cost does not depend on {w.describe()}", stacklevel=2)
        out.append(B.zeros_like(w) if return_disconnected == "zero" else
                   None if return_disconnected == "None" else DisconnectedType())
    return out[0] if single else out


# -- L and R operators ----------------------------------------------------------------------

def _as_list(x, what):
    if isinstance(x, (list, tuple)):
        return [as_variable(v, what) for v in x]
    return [as_variable(x, what)]


def _format_as(like, values):
    if isinstance(like, list):
        return list(values)
    if isinstance(like, tuple):
        return tuple(values)
    return values[0]


def _eval_point(var, point, what):
    from .tensor import basic as B

    point = as_variable(point, what)
    if point.ndim != var.ndim:
        raise ValueError(f"{what}: eval point {point.describe()} must have the {var.ndim} dims of {var.describe()}")
    return B.cast(point, var.dtype)


def Lop(f, wrt, eval_points, consider_constant=None, disconnected_inputs="raise"):
    """Theano's L operator: ``sum_i eval_points[i]^T (d f[i] / d wrt[j])`` per ``wrt[j]``
    (a vector-Jacobian product), shaped like ``wrt``; a list/tuple ``wrt`` gives a list/tuple."""
    fs = _as_list(f, "Lop f")
    eps = _as_list(eval_points, "Lop eval_points")
    if len(fs) != len(eps):
        raise ValueError(f"Lop: {len(fs)} outputs f but {len(eps)} eval_points")
    for fi in fs:
        if not dt.is_float(fi.dtype):
            raise TypeError(f"Lop: f must be float tensors, got {fi.describe()}")
    known = {fi: _eval_point(fi, e, "Lop") for fi, e in zip(fs, eps)}
    res = grad(None, _as_list(wrt, "Lop wrt"), consider_constant=consider_constant,
               disconnected_inputs=disconnected_inputs, known_grads=known)
    return _format_as(wrt, res)


def Rop(f, wrt, eval_points, disconnected_outputs="raise", return_disconnected="zero"):
    """Theano's R operator: ``sum_j (d f[i] / d wrt[j]) eval_points[j]`` per ``f[i]`` (a
    Jacobian-vector product), shaped like ``f``; a list/tuple ``f`` gives a list/tuple.

    ``disconnected_outputs``: 'raise', 'warn' or 'ignore' for an ``f[i]`` that no ``wrt``
    reaches; it then gets zeros, or with ``return_disconnected='None'`` None."""
    from .tensor import basic as B

    if disconnected_outputs not in ("raise", "warn", "ignore"):
        raise ValueError(f"disconnected_outputs must be 'raise', 'warn' or 'ignore', got {disconnected_outputs!r}")
    if return_disconnected not in ("zero", "None", "Disconnected"):
        raise ValueError(f"return_disconnected must be 'zero', 'None' or 'Disconnected', got {return_disconnected!r}")
    fs = _as_list(f, "Rop f")
    wrts = _as_list(wrt, "Rop wrt")
    eps = _as_list(eval_points, "Rop eval_points")
    if len(wrts) != len(eps):
        raise ValueError(f"Rop: {len(wrts)} wrt but {len(eps)} eval_points")
    for w in wrts:
        if not dt.is_float(w.dtype):
            raise TypeError(f"Rop: wrt must be float tensors, got {w.describe()}")
    eps = [_eval_point(w, e, "Rop") for w, e in zip(wrts, eps)]
    wrt_ids = {id(w) for w in wrts}
    out = [None] * len(fs)
    live = []
    for i, fi in enumerate(fs):
        if not dt.is_float(fi.dtype):
            raise TypeError(f"Rop: f must be float tensors, got {fi.describe()}")
        if wrt_ids & _reach([fi], set()):
            live.append(i)
    if live:
        us = [B.zeros_like(fs[i]) for i in live]  # dummy cotangents: J v does not depend on them
        lops = grad(None, wrts, disconnected_inputs="ignore", known_grads={fs[i]: u for i, u in zip(live, us)})
        s = None
        for g, e in zip(lops, eps):
            term = B.sum(g * e)
            s = term if s is None else s + term
        jvs = grad(B.cast(s, dt.promote_types(*[fs[i].dtype for i in live])), us,
                   disconnected_inputs="ignore", return_disconnected="None")
        for i, jv in zip(live, jvs):
            out[i] = jv if jv is not None else B.zeros_like(fs[i])
    for i, fi in enumerate(fs):
        if out[i] is not None:
            continue
        msg = f"Rop: output {fi.describe()} does not depend on any of the wrt variables"
        if disconnected_outputs == "raise":
            raise ValueError(msg + " (pass disconnected_outputs='ignore' or 'warn')")
        if disconnected_outputs == "warn":
            warnings.warn(msg, stacklevel=2)
        out[i] = B.zeros_like(fi) if return_disconnected == "zero" else \
            None if return_disconnected == "None" else DisconnectedType()
    return _format_as(f, out)


def verify_grad(*args, **kwargs):
    """Theano's ``gradient.verify_grad``: see :func:`tcomp.testing.verify_grad`."""
    from .testing import verify_grad as vg

    return vg(*args, **kwargs)


from .testing import numeric_grad  # noqa: E402,F401  (Theano's gradient.numeric_grad)

# -- Jacobians and Hessians -----------------------------------------------------------------

def jacobian(expression, wrt, consider_constant=None, disconnected_inputs="raise"):
    """Jacobian of a vector (or scalar) ``expression``: one T.grad per output element.

    With a static length the rows are unrolled (every backend runs it); otherwise, as in
    Theano, a ``tcomp.scan`` over the rows computes them (a backend must lower scan)."""
    from .tensor import basic as B

    expression = as_variable(expression, "expression")
    if expression.ndim > 1:
        raise ValueError(f"T.jacobian: expression must be a scalar or vector (flatten it), "
                         f"got {expression.describe()}")
    single = not isinstance(wrt, (list, tuple))
    wrt_list = [wrt] if single else list(wrt)
    if expression.ndim == 0:
        out = grad(expression, wrt_list, consider_constant, disconnected_inputs)
        return out[0] if single else out
    n = expression.type.shape[0]
    if isinstance(n, int):
        rows = [grad(expression[i], wrt_list, consider_constant, disconnected_inputs) for i in range(n)]
        out = [B.stack([r[j] for r in rows], axis=0) for j in range(len(wrt_list))]
    else:
        from .scan import scan

        def row(i, expr, *ws):
            return grad(expr[i], list(ws), consider_constant, disconnected_inputs)

        out, _ = scan(row, sequences=B.arange(B.shape_i(expression, 0)), non_sequences=[expression] + wrt_list,
                      return_list=True)
    return out[0] if single else list(out)


def hessian(cost, wrt, consider_constant=None, disconnected_inputs="raise"):
    """Hessian of a scalar ``cost`` with respect to vector(s) ``wrt`` (a scan over the rows when
    the length is not static, as :func:`jacobian`)."""
    single = not isinstance(wrt, (list, tuple))
    wrt_list = [wrt] if single else list(wrt)
    out = []
    for w in wrt_list:
        if w.ndim != 1:
            raise ValueError(f"T.hessian: wrt must be vectors, got {w.describe()}")
        g = grad(cost, w, consider_constant, disconnected_inputs)
        out.append(jacobian(g, w, consider_constant, disconnected_inputs))
    return out[0] if single else out


from .gradient_more import (  # noqa: E402,F401  (Theano's names; tcomp/gradient_more.py)
    DisconnectedInputError,
    NullTypeGradError,
    grad_scale,
    subgraph_grad,
    undefined_grad,
)
