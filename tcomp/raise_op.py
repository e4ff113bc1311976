"""Run-time assertions: Theano's ``theano.tensor.opt.Assert`` / ``assert_op`` and PyTensor's
``CheckAndRaise``.

``assert_op(x, c1, c2, ...)`` is ``x``, and a call raises ``AssertionError(msg)`` when a
condition is false (a non-scalar condition must hold everywhere).  It is a Python op
(``tcomp/op.py``): a graph that uses it runs as native stages split at the check on the CPU
backend, and the reference interpreter calls the same ``perform``; so the check happens at
call time on both.  Why a Python op and not a native op: a failed check must stop the call
with the user's message, and the native programs report errors only through the fixed codes
of the shape program; a Python stage raises any exception, and costs one boundary crossing
(the checked value is passed through, not copied).

Conditions that are constants are decided when the graph is built: all true gives ``x``
itself (Theano's optimizer removes such an Assert too).  The gradient flows to ``x``; the
conditions have none.  Like Theano's, an assertion whose result is not used is removed with
the rest of the dead graph, so use the returned value.
"""
from __future__ import annotations

import numpy as np

from .op import Apply, Op
from .tensor.variable import Variable, as_variable


class CheckAndRaise(Op):
    """``CheckAndRaise(exc_type, msg)(x, *conds)``: ``x``, raising ``exc_type(msg)`` at call time
    when a condition is false."""

    __props__ = ("exc_type", "msg")
    pure = True  # equal checks of equal values may be merged

    def __init__(self, exc_type=AssertionError, msg=""):
        if not (isinstance(exc_type, type) and issubclass(exc_type, Exception)):
            raise TypeError(f"CheckAndRaise: exc_type must be an exception class, got {exc_type!r}")
        self.exc_type = exc_type
        self.msg = str(msg)

    def __str__(self):
        return f"{type(self).__name__}{{{self.msg!r}}}" if self.msg else type(self).__name__

    @property
    def name(self):
        return type(self).__name__

    def make_node(self, value, *conds):
        value = as_variable(value, f"{self.name} value")
        if not conds:
            raise TypeError(f"{self.name}: give at least one condition")
        conds = [as_variable(c, f"{self.name} condition {i}") for i, c in enumerate(conds)]
        for i, c in enumerate(conds):
            if c.dtype.startswith("float"):
                raise TypeError(f"{self.name}: condition {i} ({c.describe()}) must be a boolean or integer tensor, "
                                "not a float one (compare it: x > 0)")
        return Apply(self, [value] + conds, [value.type()])

    def __call__(self, value, *conds, **kwargs):
        decided = [_constant_truth(c) for c in conds]
        if conds and all(d is True for d in decided) and isinstance(value, Variable):
            return value
        return super().__call__(value, *conds, **kwargs)

    def infer_shape(self, fgraph, node, input_shapes):
        return [input_shapes[0]]

    def perform(self, node, inputs, output_storage):
        value, conds = inputs[0], inputs[1:]
        for i, c in enumerate(conds):
            if not np.all(c):
                detail = f" (condition {i + 1} of {len(conds)} is false)" if len(conds) > 1 else ""
                raise self.exc_type(f"{self.msg or self.default_message}{detail}")
        output_storage[0][0] = value

    default_message = "check failed"

    def grad(self, inputs, output_grads):
        return [output_grads[0]] + [None] * (len(inputs) - 1)

    def __reduce__(self):
        return (type(self), (self.exc_type, self.msg) if type(self) is CheckAndRaise else (self.msg,))


class Assert(CheckAndRaise):
    """Theano's ``Assert(msg)``: ``Assert('x must be positive')(x, T.all(x > 0))``."""

    __props__ = ("msg",)
    default_message = "tcomp Assert failed!"

    def __init__(self, msg=""):
        super().__init__(AssertionError, msg)


def _constant_truth(c):
    """True/False for a constant condition, None when it is only known at call time."""
    if isinstance(c, Variable):
        if c.op != "constant":
            return None
        c = c.attrs["value"].value
    try:
        return bool(np.all(np.asarray(c)))
    except (TypeError, ValueError):
        return None


#: Theano's ``theano.tensor.opt.assert_op``: ``assert_op(x, cond1, cond2, ...)``
assert_op = Assert()

__all__ = ["Assert", "CheckAndRaise", "assert_op"]
