"""Theano's remaining ``theano.gradient`` helpers, found missing by the API sweep:
``grad_scale`` (identity forward, scaled gradient backward), ``undefined_grad`` and ``subgraph_grad`` (the
gradient of a graph cut into pieces, Theano's memory-saving idiom).  Both are built on
``tcomp.gradient``'s public pieces (``custom_gradient``, ``grad`` with ``known_grads`` and
``consider_constant``), so nothing new is needed from autodiff."""
from __future__ import annotations

from tcomp.ir import dtypes as dt


class DisconnectedInputError(ValueError):
    """Theano's ``gradient.DisconnectedInputError``: ``T.grad`` was asked for the gradient of a
    cost with respect to a variable it does not depend on (``disconnected_inputs='raise'``)."""


class NullTypeGradError(TypeError):
    """Theano's ``gradient.NullTypeGradError``: a gradient needed by ``T.grad`` is undefined or
    not implemented (``grad_undefined``, ``grad_not_implemented``, ``undefined_grad``)."""


def grad_scale(x, multiplier):
    """``x`` in the forward pass; the gradient flowing back into ``x`` is multiplied by
    ``multiplier`` (a number or a scalar variable): Theano's ``gradient.grad_scale``."""
    from tcomp.gradient import custom_gradient
    from tcomp.tensor.variable import as_variable

    x = as_variable(x, "x")
    if not dt.is_float(x.dtype):
        raise TypeError(f"grad_scale: x must be a float tensor (ints carry no gradient), got {x.describe()}")
    return custom_gradient([x], [x], lambda inputs, gs: [None if gs[0] is None else gs[0] * multiplier],
                           "grad_scale")[0]


def undefined_grad(x):
    """``x`` in the forward pass; its gradient is undefined: ``T.grad`` raises (naming
    ``undefined_grad``) when a variable being differentiated lies behind it (Theano's
    ``gradient.undefined_grad``)."""
    from tcomp.gradient import custom_gradient, grad_undefined
    from tcomp.tensor.variable import as_variable

    x = as_variable(x, "x")
    if not dt.is_float(x.dtype):
        return x
    return custom_gradient([x], [x], lambda inputs, gs: [grad_undefined("undefined_grad", 0, inputs[0])],
                           "undefined_grad")[0]


def subgraph_grad(wrt, end, start=None, cost=None, details=False):
    """Theano's ``gradient.subgraph_grad``: the gradients of one piece of a graph cut at the
    variables ``end``.  ``start`` maps variables of this piece to gradients already known for
    them (from the piece after it), ``cost`` is a cost to differentiate as well; gradients stop
    at ``end`` (considered constant).  Returns ``(wrt_grads, end_grads)`` — ``end_grads`` are the
    gradients to pass as ``start`` to the piece before — and, with ``details=True``, also the
    gradients from ``start`` alone and from ``cost`` alone."""
    from tcomp.gradient import grad

    if cost is None and not start:
        raise ValueError("subgraph_grad: give cost=, start=, or both")
    wrt, end = list(wrt), list(end)
    params = list(dict.fromkeys(wrt + end))
    start_grads = cost_grads = None
    if start:
        start_grads = list(grad(cost=None, wrt=params, known_grads=dict(start), consider_constant=end,
                                disconnected_inputs="ignore"))
    if cost is not None:
        cost_grads = list(grad(cost=cost, wrt=params, consider_constant=end, disconnected_inputs="ignore"))
    if start_grads is None:
        grads = cost_grads
    elif cost_grads is None:
        grads = start_grads
    else:
        grads = [a + b for a, b in zip(start_grads, cost_grads)]
    by_param = dict(zip(params, grads))
    wrt_grads, end_grads = [by_param[v] for v in wrt], [by_param[v] for v in end]
    if details:
        return wrt_grads, end_grads, start_grads, cost_grads
    return wrt_grads, end_grads


__all__ = ["DisconnectedInputError", "NullTypeGradError", "grad_scale", "undefined_grad", "subgraph_grad"]
