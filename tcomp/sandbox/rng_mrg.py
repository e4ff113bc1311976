"""``tcomp.sandbox.rng_mrg.MRG_RandomStreams``: Theano's MRG31k3p streams' API on tcomp's
Philox generator (the same draws as :class:`tcomp.RandomStreams`; the MRG31k3p bit stream
itself is not reproduced, so draws differ from Theano's for a seed).

What differs from ``RandomStreams`` is the MRG signatures: ``binomial(size, p)`` (no
``n`` in second place), ``multinomial(pvals=...)`` of a 2-d ``pvals`` giving one row of
counts per row, ``choice(size, p=...)`` sampling ``size`` indices per row of a 2-d ``p``,
``normal(..., truncate=True)`` / ``truncated_normal`` (cut at two standard deviations), and
``nstreams`` (accepted and unused: a counter-based generator needs no stream count).
"""
from __future__ import annotations

import math
import warnings

from tcomp.ir import dtypes as dt
from tcomp.random import RandomStreams, _check_shape, _float_dtype, _is_const, _wrap, normalize_size
from tcomp.random_discrete import weighted_draws, weighted_without_replacement
from tcomp.tensor import basic as B
from tcomp.tensor.variable import as_variable

__all__ = ["MRG_RandomStreams"]

#: Phi(-2), Phi(2): the truncated normal's quantile range
_P_LO = 0.5 * math.erfc(2.0 / math.sqrt(2.0))
_P_HI = 1.0 - _P_LO


def _normal_quantile(u):
    """Phi^-1(u) for u in [Phi(-2), Phi(2)] by Newton's method on erf, from the logistic
    approximation (error < 0.1 there): five steps reach float64 precision."""
    z = B.log(u / (1.0 - u)) * (1.0 / 1.702)
    for _ in range(5):
        cdf = 0.5 * (1.0 + B.erf(z * (1.0 / math.sqrt(2.0))))
        pdf = B.exp(-0.5 * z * z) * (1.0 / math.sqrt(2.0 * math.pi))
        z = z - (cdf - u) / pdf
    return z


class MRG_RandomStreams(RandomStreams):
    """Theano's ``MRG_RandomStreams(seed=12345)``."""

    def __init__(self, seed: int = 12345):
        super().__init__(seed)

    def uniform(self, size, low=0.0, high=1.0, ndim=None, dtype=None, nstreams=None, **kwargs):
        return super().uniform(size, low, high, ndim, dtype)

    def binomial(self, size=None, p=0.5, ndim=None, dtype="int64", nstreams=None, n=1, **kwargs):
        return super().binomial(size, n, p, ndim, dtype)

    def normal(self, size, avg=0.0, std=1.0, ndim=None, dtype=None, nstreams=None, truncate=False, **kwargs):
        if truncate:
            return self.truncated_normal(size, avg, std, ndim, dtype, nstreams)
        return super().normal(size, avg, std, ndim, dtype)

    def truncated_normal(self, size, avg=0.0, std=1.0, ndim=None, dtype=None, nstreams=None, **kwargs):
        """Normal(avg, std) conditioned on lying within two standard deviations of avg."""
        mu = avg if _is_const(avg) else as_variable(avg, "truncated_normal avg")
        sd = std if _is_const(std) else as_variable(std, "truncated_normal std")
        params = [v for v in (mu, sd) if not _is_const(v)]
        d = _float_dtype(dtype, params)
        dims = normalize_size(size, ndim, params, "truncated_normal")
        u, rng = self._primitive("random_uniform", dims, "float64", {"low": _P_LO, "high": _P_HI})
        out = B.cast(B.cast(as_variable(mu), "float64") + B.cast(as_variable(sd), "float64") * _normal_quantile(u), d)
        _check_shape(out, dims, "truncated_normal")
        return _wrap(out, rng)

    def multinomial(self, size=None, n=1, pvals=None, ndim=None, dtype="int64", nstreams=None, **kwargs):
        """One row of counts of ``n`` draws per row of the 2-d ``pvals`` (one-hot rows for n=1)."""
        if size is not None or ndim is not None:
            raise ValueError("MRG_RandomStreams.multinomial takes no size/ndim: the draws have the shape of pvals")
        if pvals is None:
            raise TypeError("MRG_RandomStreams.multinomial needs pvals")
        pv = as_variable(pvals, "multinomial pvals")
        if pv.ndim != 2:
            raise ValueError(f"MRG_RandomStreams.multinomial needs a 2-d pvals, got {pv.describe()}")
        return super().multinomial(None, n, pv, None, dtype)

    def choice(self, size=1, a=None, replace=True, p=None, ndim=None, dtype="int64", nstreams=None, **kwargs):
        """``size`` category indices per row of the 2-d ``p`` (Theano's MRG choice), without
        replacement when ``replace=False`` (in draw order), else independent draws."""
        if a is not None:
            raise TypeError("MRG_RandomStreams.choice: a must be None (indices 0..p.shape[1]-1 are drawn)")
        if p is None:
            raise TypeError("MRG_RandomStreams.choice needs p")
        if ndim is not None:
            raise ValueError("MRG_RandomStreams.choice takes no ndim")
        pv = as_variable(p, "choice p")
        if pv.ndim != 2:
            raise ValueError(f"MRG_RandomStreams.choice needs a 2-d p, got {pv.describe()}")
        if not dt.is_float(pv.dtype):
            raise TypeError(f"MRG_RandomStreams.choice: p must be float, got {pv.describe()}")
        pv = B.cast(pv, "float64")
        if replace:
            dims = (B.shape_i(pv, 0), size)
            idx, rng = weighted_draws(self, pv.dimshuffle(0, "x", 1), dims)
        else:
            idx, rng = weighted_without_replacement(self, pv, size)
        return _wrap(B.cast(idx, dtype), rng)

    def multinomial_wo_replacement(self, size=None, n=1, pvals=None, ndim=None, dtype="int64", nstreams=None,
                                   **kwargs):
        warnings.warn("MRG_RandomStreams.multinomial_wo_replacement() is deprecated: use choice(size=n, "
                      "replace=False, p=pvals)", DeprecationWarning, stacklevel=2)
        if size is not None:
            raise ValueError("MRG_RandomStreams.multinomial_wo_replacement takes no size")
        return self.choice(size=n, a=None, replace=False, p=pvals, dtype=dtype)
