"""``f.maker.fgraph``: Theano's view of a compiled function's optimized graph.

Theano's tutorials inspect what the optimizer made of a function through
``f.maker.fgraph``: ``pp(f.maker.fgraph.outputs[0])`` prints the optimized gradient
(``2.0 * x`` for the gradient of ``x ** 2``) and ``f.maker.fgraph.toposort()`` lists the
applied ops.  Here the optimized :class:`tcomp.ir.Graph` is rebuilt as ``tcomp.tensor``
variables: the function's own input and shared variables at the roots, a ``Variable`` per
node (op name, operands, attrs, type), so ``pp``/``debugprint``/``owner`` work on it like
on the user's graph.  It is a snapshot: changing it does not change the compiled function.
"""
from __future__ import annotations

from tcomp.tensor.variable import Apply, Variable


class FunctionGraph:
    """The optimized graph of a compiled function as variables.

    ``inputs``: the function's inputs then the shared variables it reads; ``outputs``: the
    outputs then the update values (as in Theano); ``toposort()``: the applications
    (``.op`` the op's name, ``.inputs``, ``.outputs``, ``.attrs``), operands first;
    ``variables``: the set of all variables; ``apply_nodes``: the applications (a list: an
    application holds lists, so it does not hash)."""

    def __init__(self, function):
        g = function.optimized
        roots = list(function.inputs) + list(function.shared_inputs)
        if len(roots) != len(g.inputs):
            raise ValueError(f"fgraph: the optimized graph has {len(g.inputs)} inputs, the function "
                             f"{len(roots)} input and shared variables")
        var: dict[int, Variable] = dict(zip(g.inputs, roots))
        order = g.topo_order()
        live = g.live_nodes()
        self._applies = []
        for n in order:
            if n not in live or n in var:
                continue
            op = g.op(n)
            if op == "constant":
                var[n] = Variable(g.type(n), "constant", (), dict(g.attrs(n)), name=g.name(n))
                continue
            v = Variable(g.type(n), op, [var[o] for o in g.operands(n)], dict(g.attrs(n)), name=g.name(n))
            var[n] = v
            self._applies.append(Apply(op, list(v.inputs), [v], dict(v.attrs)))
        n_visible = len(function.outputs) + len(function.updates)
        self.inputs = roots
        self.outputs = [var[o] for o in g.outputs[:n_visible]]
        self.variables = set(var.values())
        self.apply_nodes = list(self._applies)

    def toposort(self) -> list:
        """The applications in an order where every operand is computed before its users."""
        return list(self._applies)

    def __repr__(self) -> str:
        return f"FunctionGraph({', '.join(map(str, self.outputs))})"


class FunctionMaker:
    """``f.maker``: what built the function (Theano's ``FunctionMaker``): its ``fgraph``,
    its ``inputs``/``outputs`` and its ``mode``."""

    def __init__(self, function):
        self.function = function
        self.fgraph = FunctionGraph(function)
        self.inputs = list(function.inputs)
        self.outputs = list(function.outputs)
        self.mode = function.mode
