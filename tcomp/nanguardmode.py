"""Theano's ``NanGuardMode``: every call checks its arguments, outputs and updates for NaN,
inf and huge values (|x| > 1e10), and raises ``AssertionError`` at the first bad one.

Theano checks every intermediate value as it is computed; tcomp's fused native kernels never
materialize most intermediates, so the outputs and updates are checked, and only when one
is bad does the reference interpreter re-run the traced graph on the call's arguments to
name the first node (in topological order) that produced the bad value, with the Python
line that made it.  Also importable as ``tcomp.compile.nanguardmode.NanGuardMode``."""
from __future__ import annotations

import numpy as np

from .mode import Mode, _describe, _evaluate_all

#: Theano's threshold for "big"
BIG = 1e10


def _problem(value, nan, inf, big) -> str | None:
    a = np.asarray(value)
    if a.dtype.kind not in "fc" or a.size == 0:
        return None
    if nan and np.isnan(a).any():
        return "NaN"
    if inf and np.isinf(a).any():
        return "inf"
    if big and (np.abs(np.where(np.isfinite(a), a, 0)) > BIG).any():
        return f"a value larger than {BIG:g} in magnitude"
    return None


class NanGuardMode(Mode):
    """A :class:`~tcomp.Mode` whose functions raise ``AssertionError`` on NaN
    (``nan_is_error``), inf (``inf_is_error``) or |x| > 1e10 (``big_is_error``)."""

    def __init__(self, nan_is_error=None, inf_is_error=None, big_is_error=None, optimizer="default", linker=None):
        super().__init__(linker=linker, optimizer=optimizer)
        # Theano's defaults (config.NanGuardMode.*): all three on
        self.flags = tuple(True if f is None else bool(f) for f in (nan_is_error, inf_is_error, big_is_error))

    def wrap(self, compiled, fn):
        return NanGuardCompiled(compiled, fn, self.flags)


class NanGuardCompiled:
    """The backend's compiled graph plus NanGuardMode's checks."""

    def __init__(self, inner, fn, flags):
        self.inner = inner
        self.traced = fn.traced
        self.n_explicit = len(fn.inputs)
        self.n_outputs = len(fn.outputs)
        self.fname = fn.name or "function"
        self.flags = flags

    def __getattr__(self, name):  # everything else is the backend's
        return getattr(self.__dict__["inner"], name)

    def __call__(self, inputs):
        for i, a in enumerate(inputs):
            why = _problem(a, *self.flags)
            if why is not None:
                what = f"argument {i}" if i < self.n_explicit else f"shared variable {i - self.n_explicit}"
                label = self.traced.name(self.traced.inputs[i]) or what
                raise AssertionError(f"NanGuardMode: {self.fname}: input {label!r} contains {why}")
        before = [np.array(a, copy=True) for a in inputs]
        results = self.inner(inputs)
        for k, value in enumerate(results):
            why = _problem(value, *self.flags)
            if why is not None:
                what = f"output {k}" if k < self.n_outputs else f"update {k - self.n_outputs}"
                raise AssertionError(f"NanGuardMode: {self.fname}: {what} contains {why}" + self._first_bad(before))
        return results

    def _first_bad(self, inputs) -> str:
        try:
            values = _evaluate_all(self.traced, inputs)
        except Exception:  # the interpreter itself failed: report the output only
            return ""
        for n in self.traced.topo_order():
            if self.traced.op(n) in ("input", "constant") or isinstance(values.get(n), (tuple, type(None))):
                continue
            why = _problem(values[n], *self.flags)
            if why is not None:
                return f"\n  first produced by node {_describe(self.traced, n)} ({why})"
        return ""


__all__ = ["NanGuardMode"]
