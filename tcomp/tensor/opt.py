"""Theano's ``theano.tensor.opt`` names that user code reaches for: ``Assert`` and
``assert_op`` (run-time assertions, ``tcomp/raise_op.py``).  tcomp's graph rewrites live in
``tcomp.passes``."""
from tcomp.raise_op import Assert, CheckAndRaise, assert_op  # noqa: F401
