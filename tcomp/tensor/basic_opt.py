"""Aesara's ``tensor.basic_opt`` path of the run-time assertion (``assert_op``, ``Assert``):
the same objects as ``tcomp.tensor.opt`` (``tcomp/raise_op.py``)."""
from tcomp.raise_op import Assert, CheckAndRaise, assert_op  # noqa: F401
