"""``tcomp.RandomStreams``: Theano's random streams on tcomp's counter-based generator.

Each draw is a random op whose operands are a seed (a constant derived from the stream's
seed and the draw's index, so two draws are independent) and a counter held in a shared
variable.  The counter has a ``default_update`` of ``counter + 1``, which
``tcomp.function`` adds to the updates automatically: results are reproducible for a
seed and different on every call.
"""
from __future__ import annotations

import numpy as np

from tcomp.ir import dtypes as dt

from .shared import SharedVariable
from .tensor.basic import _dim_entries
from .tensor.variable import apply, constant


class RandomStreams:
    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.n_draws = 0
        self.counters: list[SharedVariable] = []

    def _draw(self, op, size, dtype, params):
        if isinstance(size, (int, np.integer)):
            size = (int(size),)
        shape_attr, dim_operands = _dim_entries(tuple(size), op)
        # a distinct 64-bit key per draw: seed in the high word, draw index in the low word
        key = constant(np.array([self.n_draws & 0xFFFFFFFF, self.seed & 0xFFFFFFFF], dtype="int64"))
        self.n_draws += 1
        counter = SharedVariable(np.int64(0), name=f"rng_counter_{self.n_draws}")
        counter.default_update = counter + 1
        self.counters.append(counter)
        attrs = dict(params, shape=shape_attr, dtype=dt.canonical(dtype))
        return apply(op, [key, counter] + dim_operands, attrs)

    def uniform(self, size=(), low=0.0, high=1.0, dtype=None):
        return self._draw("random_uniform", size, dtype or "floatX", {"low": float(low), "high": float(high)})

    def normal(self, size=(), avg=0.0, std=1.0, dtype=None):
        return self._draw("random_normal", size, dtype or "floatX", {"mean": float(avg), "std": float(std)})

    def binomial(self, size=(), n=1, p=0.5, dtype="int64"):
        return self._draw("random_binomial", size, dtype, {"n": int(n), "p": float(p)})

    def reset(self):
        """Restart every stream from counter 0 (reproduce the same sequence of draws)."""
        for c in self.counters:
            c.set_value(np.int64(0))
