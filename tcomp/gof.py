"""Theano's older module names for extending it: ``theano.gof.Op``, ``theano.gof.Apply``
(``tcomp/op.py``)."""
from .op import Apply, Op  # noqa: F401
from .op_from_graph import OpFromGraph  # noqa: F401

__all__ = ["Op", "Apply", "OpFromGraph"]
