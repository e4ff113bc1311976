"""``T.grad``, ``T.jacobian``, ``T.hessian``: symbolic gradients.

The expression is traced into a Graph, ``tcomp.passes.autodiff.grad`` appends the
reverse-mode nodes, and the new nodes come back as Variables, so gradients print,
optimize, fuse with the forward pass and compile in the same function.
"""
from __future__ import annotations

import warnings

from tcomp.ir import dtypes as dt

from .shared import SharedVariable
from .tensor.variable import Variable, as_variable
from .trace import _postorder, build_graph, variables_from_graph


def _roots_of(expr):
    return [v for v in _postorder([expr], lambda v: v) if v.op == "input"]


def grad(cost, wrt, consider_constant=None, disconnected_inputs="raise", known_grads=None):
    """d cost / d wrt for a scalar ``cost``; ``wrt`` a variable or a list of them."""
    from tcomp.passes.autodiff import grad as graph_grad

    if disconnected_inputs not in ("raise", "warn", "ignore"):
        raise ValueError(f"disconnected_inputs must be 'raise', 'warn' or 'ignore', got {disconnected_inputs!r}")
    cost = as_variable(cost, "cost")
    if cost.ndim != 0:
        raise ValueError(f"T.grad: cost must be a scalar, got {cost.describe()}")
    single = not isinstance(wrt, (list, tuple))
    wrt_list = [wrt] if single else list(wrt)
    for w in wrt_list:
        if not isinstance(w, Variable):
            raise TypeError(f"T.grad: wrt must be symbolic variables, got {w!r}")
        if not dt.is_float(w.dtype):
            raise TypeError(f"T.grad: cannot differentiate with respect to {w.describe()}: "
                            f"its dtype {w.dtype} is not a float dtype")
    known_grads = dict(known_grads or {})
    # Every root variable (inputs and shared) becomes a graph input of the traced graph.
    roots = _roots_of(cost)
    for k in known_grads:
        roots += [r for r in _roots_of(k) if r not in roots]
    roots += [r for v in known_grads.values() for r in _roots_of(as_variable(v)) if r not in roots]
    graph, var_to_node, _ = build_graph([r for r in roots if not isinstance(r, SharedVariable)] +
                                        [r for r in roots if isinstance(r, SharedVariable)],
                                        [cost] + list(known_grads) + [as_variable(v) for v in known_grads.values()])
    missing = [w for w in wrt_list if w not in var_to_node]
    if missing and disconnected_inputs == "raise":
        raise ValueError(f"T.grad: cost {cost.describe()} does not depend on {missing[0].describe()} "
                         "(pass disconnected_inputs='ignore' or 'warn' to get zeros)")
    if missing and disconnected_inputs == "warn":
        warnings.warn(f"T.grad: cost does not depend on {', '.join(m.describe() for m in missing)}", stacklevel=2)
    connected = [w for w in wrt_list if w in var_to_node]
    cost_node = var_to_node[cost]
    if not known_grads and not consider_constant and all(w.is_root for w in connected):
        # Differentiate the stabilized forward graph: log(softmax(x)) becomes log_softmax
        # before its VJP is taken, so the backward pass never divides by an underflowed
        # probability (JAX users get this by writing log_softmax themselves).
        from tcomp.passes import stabilize

        graph = stabilize(graph.copy())
        cost_node = graph.outputs[0]
    node_grads = graph_grad(
        graph, cost_node, [var_to_node[w] for w in connected],
        consider_constant=[var_to_node[v] for v in (consider_constant or []) if v in var_to_node],
        disconnected_inputs=disconnected_inputs,
        known_grads={var_to_node[k]: var_to_node[as_variable(v)] for k, v in known_grads.items()} or None)
    node_to_var = {n: v for v, n in var_to_node.items()}
    grads = dict(zip(connected, variables_from_graph(graph, node_to_var, node_grads)))
    from .tensor.basic import zeros_like

    out = [grads[w] if w in grads else zeros_like(w) for w in wrt_list]
    return out[0] if single else out


def jacobian(expression, wrt, consider_constant=None, disconnected_inputs="raise"):
    """Jacobian of a vector (or scalar) ``expression``: one T.grad per output element.

    The number of elements must be static (small cases; no scan here)."""
    from .tensor import basic as B

    expression = as_variable(expression, "expression")
    if expression.ndim > 1:
        raise ValueError(f"T.jacobian: expression must be a scalar or vector, got {expression.describe()}")
    single = not isinstance(wrt, (list, tuple))
    wrt_list = [wrt] if single else list(wrt)
    if expression.ndim == 0:
        rows = [grad(expression, wrt_list, consider_constant, disconnected_inputs)]
    else:
        n = expression.type.shape[0]
        if not isinstance(n, int):
            raise ValueError(f"T.jacobian needs a static length, got {expression.describe()}")
        rows = [grad(expression[i], wrt_list, consider_constant, disconnected_inputs) for i in range(n)]
    if expression.ndim == 0:
        out = rows[0]
    else:
        out = [B.stack([r[j] for r in rows], axis=0) for j in range(len(wrt_list))]
    return out[0] if single else out


def hessian(cost, wrt, consider_constant=None, disconnected_inputs="raise"):
    """Hessian of a scalar ``cost`` with respect to vector(s) ``wrt`` of static length."""
    single = not isinstance(wrt, (list, tuple))
    wrt_list = [wrt] if single else list(wrt)
    out = []
    for w in wrt_list:
        if w.ndim != 1:
            raise ValueError(f"T.hessian: wrt must be vectors, got {w.describe()}")
        g = grad(cost, w, consider_constant, disconnected_inputs)
        out.append(jacobian(g, w, consider_constant, disconnected_inputs))
    return out[0] if single else out
