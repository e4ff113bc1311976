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

from tcomp.ir import get_op
from tcomp.tensor.variable import Apply, Variable

#: Theano's op class names for tcomp ops whose name differs from the CamelCase of tcomp's
_THEANO_CLASS = {"dimshuffle": "DimShuffle", "shape": "Shape_i", "fused": "Elemwise", "where": "Elemwise",
                 "set_subtensor": "IncSubtensor", "inc_subtensor": "IncSubtensor", "log_softmax": "LogSoftmax",
                 "logsumexp": "LogSumExp", "conv2d": "CorrMM", "pool2d": "Pool", "max": "MaxAndArgmax",
                 "argmax": "MaxAndArgmax", "get_output": "TupleGetItem"}


def op_of(graph, node: int) -> str:
    """The op name as a ``str`` whose class is named like Theano's op class (``Elemwise``,
    ``CGemv``/``CGemm`` for matrix-vector/matrix-matrix products, ``Sum``, ``Softmax``, ...):
    Theano's tutorials tell what ran from ``type(node.op).__name__`` (the modes tutorial looks
    for Gemv/CGemv/Gemm/CGemm in ``train.maker.fgraph.toposort()``)."""
    op = graph.op(node)
    if op in ("dot", "matmul"):
        nds = sorted(graph.type(o).ndim for o in graph.operands(node))
        cls = {(1, 2): "CGemv", (2, 2): "CGemm"}.get(tuple(nds), "Dot")
    elif op in _THEANO_CLASS:
        cls = _THEANO_CLASS[op]
    elif get_op(op).kind == "elemwise":
        cls = "Elemwise"
    else:
        cls = "".join(part.capitalize() for part in op.split("_"))
    return _op_class(cls)(op)


_CLASSES: dict = {}


def _op_class(name: str) -> type:
    if name not in _CLASSES:
        _CLASSES[name] = type(name, (str,), {"__slots__": (), "__doc__": f"a tcomp op name (Theano's {name})"})
    return _CLASSES[name]


class FunctionGraph:
    """The optimized graph of a compiled function as variables.

    ``inputs``: the function's inputs then the shared variables it reads; ``outputs``: the
    outputs then the update values (as in Theano); ``toposort()``: the applications
    (``.op`` the op's name, a ``str`` whose class has Theano's op class name, see
    :func:`op_of`; ``.inputs``, ``.outputs``, ``.attrs``), operands first;
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
            op = op_of(g, n) if g.op(n) != "constant" else "constant"
            if op == "constant":
                var[n] = Variable(g.type(n), "constant", (), dict(g.attrs(n)), name=g.name(n))
                continue
            v = Variable(g.type(n), str(op), [var[o] for o in g.operands(n)], dict(g.attrs(n)), name=g.name(n))
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
