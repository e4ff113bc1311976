"""``verify_grad``: check symbolic gradients against finite differences, Theano's way.

Use it in tests of anything with a gradient (a new op, a model, a rewrite that must keep
gradients right)::

    from tcomp.testing import verify_grad
    verify_grad(lambda x, w: T.tanh(T.dot(x, w)), [x_value, w_value])

``fn`` gets one symbolic tensor per point value (same dtype and static shape) and returns
a symbolic tensor.  A non-scalar result is reduced by a random projection
``sum(out * R)``, so every element contributes with its own weight and a wrong gradient
cannot hide behind a symmetric sum.  Both the cost and the gradient run through
``tcomp.function`` (the configured backend), so the check covers the whole stack.

Differences are central, ``(f(x + eps) - f(x - eps)) / 2 eps`` (error O(eps**2), where
Theano's one-sided ones are O(eps)), with eps and tolerances per dtype.  An element
passes when its absolute error is within ``abs_tol`` *or* its relative error
``|a - n| / (|a| + |n|)`` is within ``rel_tol`` (Theano's rule).
"""
from __future__ import annotations

import numpy as np

#: central-difference step per dtype: balances truncation error O(eps**2) against
#: rounding error O(ulp / eps)
DEFAULT_EPS = {"float64": 1e-6, "float32": 1e-3}
#: default (abs_tol, rel_tol) per dtype; the loosest over the point values is used
DEFAULT_TOL = {"float64": (1e-4, 1e-4), "float32": (1e-2, 1e-2)}


class GradientError(AssertionError):
    """The symbolic gradient of argument ``arg`` differs from finite differences."""

    def __init__(self, arg, err_pos, shape, analytic, numeric, abs_err, rel_err, abs_tol, rel_tol):
        self.arg = arg
        self.err_pos = err_pos
        self.shape = shape
        self.analytic = analytic
        self.numeric = numeric
        self.abs_err = abs_err
        self.rel_err = rel_err
        self.abs_tol = abs_tol
        self.rel_tol = rel_tol
        super().__init__(
            f"gradient of argument {arg} (shape {shape}) differs from finite differences at index {err_pos}: "
            f"symbolic {analytic!r} vs numeric {numeric!r}; max abs error {abs_err:.3g} (abs_tol {abs_tol:g}), "
            f"max rel error {rel_err:.3g} (rel_tol {rel_tol:g})")


def _point(pt) -> list:
    if not isinstance(pt, (list, tuple)):
        raise TypeError(f"verify_grad: pt must be a list of NumPy arrays, got {type(pt).__name__}")
    out = []
    for i, p in enumerate(pt):
        a = np.array(p)
        if a.dtype.name not in DEFAULT_EPS:
            raise TypeError(f"verify_grad: point value {i} has dtype {a.dtype.name}; gradients are checked "
                            f"for float32/float64 arguments only")
        out.append(a)
    return out


def _rng(rng):
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, (np.random.Generator, np.random.RandomState)):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"verify_grad: rng must be a numpy Generator, RandomState, seed or None, got {rng!r}")


def _standard_normal(rng, shape, dtype):
    return np.asarray(rng.standard_normal(shape)).astype(dtype)


def verify_grad(fn, pt, rng=None, eps=None, abs_tol=None, rel_tol=None, backend=None):
    """Raise :class:`GradientError` if ``T.grad`` of ``fn`` at ``pt`` disagrees with finite
    differences; returns None on success.

    ``rng`` (Generator, RandomState, seed or None) draws the random projection.
    ``eps``, ``abs_tol``, ``rel_tol`` default per dtype (the loosest over ``pt``).
    ``backend`` is passed to ``tcomp.function`` (default: ``tcomp.config.backend``).
    """
    import tcomp
    import tcomp.tensor as T

    pt = _point(pt)
    rng = _rng(rng)
    dtypes = [p.dtype.name for p in pt]
    if eps is None:
        eps = max(DEFAULT_EPS[d] for d in dtypes)
    if abs_tol is None:
        abs_tol = max(DEFAULT_TOL[d][0] for d in dtypes)
    if rel_tol is None:
        rel_tol = max(DEFAULT_TOL[d][1] for d in dtypes)

    args = [T.tensor(f"verify_grad_arg{i}", p.dtype.name, p.shape) for i, p in enumerate(pt)]
    out = fn(*args)
    if isinstance(out, (list, tuple)):
        raise TypeError("verify_grad: fn must return one symbolic tensor, got a list")
    out = T.as_tensor_variable(out)
    if not np.dtype(out.dtype).kind == "f":
        raise TypeError(f"verify_grad: fn must return a float tensor, got {out.describe()}")
    if out.ndim == 0:
        cost = out
    else:
        out_value = tcomp.function(args, out, on_unused_input="ignore", backend=backend,
                                   no_default_updates=True)(*pt)
        projection = T.constant(_standard_normal(rng, np.shape(out_value), out.dtype))
        cost = T.sum(out * projection)
    # no default updates: a random draw must be the same in every evaluation
    cost_fn = tcomp.function(args, cost, on_unused_input="ignore", backend=backend,
                             no_default_updates=True)
    grads = T.grad(cost, args, disconnected_inputs="ignore")
    grad_fn = tcomp.function(args, list(grads), on_unused_input="ignore", backend=backend,
                             no_default_updates=True)
    analytic = [np.asarray(g) for g in grad_fn(*pt)]

    for i, (p, a) in enumerate(zip(pt, analytic)):
        if a.shape != p.shape:
            raise GradientError(i, (), p.shape, a.shape, p.shape, np.inf, np.inf, abs_tol, rel_tol)
        numeric = np.empty(p.shape, dtype="float64")
        flat = numeric.reshape(-1)
        for j in range(p.size):
            moved = [q.copy() for q in pt]
            x0 = pt[i].reshape(-1)[j]
            # the step actually taken: in float32, x +- eps is rounded
            hi, lo = x0 + p.dtype.type(eps), x0 - p.dtype.type(eps)
            moved[i].reshape(-1)[j] = hi
            plus = float(cost_fn(*moved))
            moved[i].reshape(-1)[j] = lo
            minus = float(cost_fn(*moved))
            flat[j] = (plus - minus) / (float(hi) - float(lo))
        a64 = a.astype("float64")
        abs_err = np.abs(a64 - numeric)
        denom = np.abs(a64) + np.abs(numeric)
        rel_err = np.where(denom > 0, abs_err / np.where(denom > 0, denom, 1), 0.0)
        bad = (abs_err > abs_tol) & (rel_err > rel_tol)
        if bad.any() or not np.isfinite(a64).all():
            pos = np.unravel_index(int(np.argmax(np.where(bad | ~np.isfinite(a64), rel_err + abs_err, -1))),
                                   p.shape) if p.ndim else ()
            raise GradientError(i, tuple(int(k) for k in pos), p.shape, a64[pos], numeric[pos],
                                float(abs_err.max()), float(rel_err.max()), abs_tol, rel_tol)


class numeric_grad:  # noqa: N801 - Theano's name
    """Theano's ``gradient.numeric_grad``: the finite-difference gradient of a (compiled)
    function ``f`` of the arrays ``pt`` that returns a scalar, in ``self.gf`` (one array per
    point value, or one array when ``pt`` is a single array).  Central differences, as
    :func:`verify_grad`; ``eps`` defaults per dtype."""

    type_eps = dict(DEFAULT_EPS)

    def __init__(self, f, pt, eps=None, out_type=None):
        single = not isinstance(pt, (list, tuple))
        points = [np.array(p, dtype=np.result_type(p, np.float32)) for p in ([pt] if single else pt)]
        if eps is None:
            eps = max(self.type_eps.get(p.dtype.name, DEFAULT_EPS["float64"]) for p in points)
        grads = []
        for i, p in enumerate(points):
            g = np.empty(p.shape, dtype="float64")
            for j in range(p.size):
                moved = [q.copy() for q in points]
                x0 = p.reshape(-1)[j]
                hi, lo = x0 + p.dtype.type(eps), x0 - p.dtype.type(eps)
                moved[i].reshape(-1)[j] = hi
                plus = float(np.asarray(f(*moved)))
                moved[i].reshape(-1)[j] = lo
                minus = float(np.asarray(f(*moved)))
                g.reshape(-1)[j] = (plus - minus) / (float(hi) - float(lo))
            grads.append(g.astype(out_type or p.dtype))
        self.gf = grads[0] if single else grads

    @staticmethod
    def abs_rel_err(a, b):
        """|a - b| and |a - b| / (|a| + |b|) (0 where both are 0), elementwise."""
        a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
        abs_err = np.abs(a - b)
        denom = np.abs(a) + np.abs(b)
        return abs_err, np.where(denom > 0, abs_err / np.where(denom > 0, denom, 1), 0.0)

    def abs_rel_errors(self, g_pt):
        """(abs_err, rel_err) per point value against the symbolic gradients ``g_pt``."""
        gf = self.gf if isinstance(self.gf, list) else [self.gf]
        g_pt = g_pt if isinstance(g_pt, (list, tuple)) else [g_pt]
        if len(g_pt) != len(gf):
            raise ValueError(f"numeric_grad: {len(g_pt)} gradients for {len(gf)} point values")
        out = []
        for i, (a, b) in enumerate(zip(g_pt, gf)):
            if np.shape(a) != b.shape:
                raise ValueError(f"numeric_grad: gradient {i} has shape {np.shape(a)}, expected {b.shape}")
            out.append(self.abs_rel_err(a, b))
        return out

    def max_err(self, g_pt, abs_tol, rel_tol):
        """(argument, flat position, abs_err, rel_err) of the worst element: Theano's rule scores
        an element by its relative error, or 0 when either error is within its tolerance."""
        best = (0, 0, 0.0, 0.0, -1.0)
        for i, (abs_err, rel_err) in enumerate(self.abs_rel_errors(g_pt)):
            score = np.where((abs_err <= abs_tol) | (rel_err <= rel_tol), 0.0, rel_err).reshape(-1)
            if score.size and score.max() > best[4]:
                pos = int(np.argmax(score))
                best = (i, pos, float(abs_err.reshape(-1)[pos]), float(rel_err.reshape(-1)[pos]), float(score[pos]))
        return best[:4]
