"""``T.extra_ops``: where Theano keeps cumsum, cumprod, repeat, squeeze and diff."""
from __future__ import annotations

from . import basic as B
from .extra import _axis, cumprod, cumsum, repeat, squeeze  # noqa: F401
from .variable import as_variable


def diff(x, n=1, axis=-1):
    """NumPy's diff: the ``n``-th forward difference along ``axis`` (x[1:] - x[:-1], n times)."""
    x = as_variable(x, "x")
    a = _axis(x, axis, "diff")
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"diff: n must be a non-negative int, got {n!r}")
    lead = (slice(None),) * a
    for _ in range(n):
        x = B.sub(x[lead + (slice(1, None),)], x[lead + (slice(None, -1),)])
    return x
