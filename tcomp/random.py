"""``tcomp.RandomStreams``: Theano's random streams on tcomp's counter-based generator.

Each random variable owns a *state*: a shared int64 vector ``[key0, key1, counter]``
(``rv.rng``).  Its draws are random ops (ir/ops/random.py) whose operands are the key
words ``rng[0:2]`` and the counter ``rng[2]``; ``rng.default_update`` is ``rng + [0, 0,
1]``, which ``tcomp.function`` adds to the updates automatically, so results are
reproducible for a seed and different on every call.  The key is derived from the
stream's seed and the variable's index by one Philox evaluation, so variables of one
stream are independent and ``srng.seed(s)`` (new keys, counters 0) restarts every stream
exactly as a fresh ``RandomStreams(s)`` would.  Because the state is an ordinary shared
variable, ``rv.rng.get_value()`` / ``set_value()`` save and restore a stream, and
``srng.state_updates`` lists ``(state, update)`` pairs as in Theano.

Distributions with tensor or symbolic parameters are built from the three primitive
draws (standard uniform, standard normal, and binomial with constant ``n``/``p``) and
ordinary elementwise ops, so they need no backend support of their own and give the same
draws on every backend (``cpu`` and ``reference`` compute the same Philox words).  The
discrete distributions (``choice``, ``permutation``, ``multinomial``, ``poisson``) live in
:mod:`tcomp.random_discrete`.
"""
from __future__ import annotations

import numpy as np

from tcomp import config as _config
from tcomp.ir import dtypes as dt
from tcomp.ir.ops.random import MASK32, philox4x32

from .shared import SharedVariable
from .tensor import basic as B
from .tensor.basic import _dim_entries
from .tensor.variable import Variable, apply, as_variable, compute_test_value, constant, is_python_scalar

#: the counter step of every state (only the counter word advances)
_STEP = np.array([0, 0, 1], dtype="int64")


def stream_key(seed: int, index: int) -> tuple:
    """The Philox key of random variable ``index`` of a stream seeded with ``seed`` (all 64
    bits of the seed count): words 0 and 1 of Philox(index, 0x5EED, 0, 0) under the seed."""
    s = int(seed) & 0xFFFFFFFFFFFFFFFF
    w = philox4x32((np.uint64(index & MASK32), np.uint64(0x5EED), np.uint64(0), np.uint64(0)),
                   (s & MASK32, s >> 32))
    return int(w[0]), int(w[1])


class PhiloxState(np.ndarray):
    """The value of a state variable, ``[key0, key1, counter]`` (int64), with the methods of
    NumPy's ``RandomState`` that Theano's tutorials call on ``rv.rng.get_value()``:
    ``seed(s)`` (a new key, counter 0), ``get_state()`` and ``set_state(state)``."""

    def seed(self, seed=None):
        k0, k1 = stream_key(0 if seed is None else int(seed), 0)
        self[...] = np.array([k0, k1, 0], dtype="int64")

    def get_state(self) -> np.ndarray:
        return np.array(self, dtype="int64")

    def set_state(self, state):
        state = np.asarray(state, dtype="int64")
        if state.shape != (3,):
            raise ValueError(f"set_state: a stream state is [key0, key1, counter], got shape {state.shape}")
        self[...] = state


class RandomStateVariable(SharedVariable):
    """The shared state of one random variable (``rv.rng``); its storage is a
    :class:`PhiloxState`, so ``get_value()`` (a copy) and ``get_value(borrow=True)`` (the
    storage) both have ``seed``/``get_state``/``set_state``."""

    __slots__ = ()

    def _store(self, value, borrow):
        super()._store(value, borrow)
        self._value = self._value.view(PhiloxState)


class RandomVariable(Variable):
    """A draw: a Variable that also carries Theano's ``rng`` (its state, a shared variable)
    and ``update`` (the pair ``(rng, new state)``)."""

    __slots__ = ("rng", "update")


def _wrap(expr: Variable, rng: SharedVariable) -> RandomVariable:
    rv = RandomVariable(expr.type, expr.op, expr.inputs, expr.attrs, name=expr.name)
    rv.loc = expr.loc
    rv._shape_of = expr._shape_of  # the variables a static size was read from (x.shape) count as used
    rv.rng = rng
    rv.update = (rng, rng.default_update)
    if _config.compute_test_value != "off":
        compute_test_value(rv, _config.compute_test_value)
    return rv


def _is_const(v) -> bool:
    """A parameter given as a Python/NumPy scalar (goes into the op's attributes)."""
    return is_python_scalar(v) or (isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "biuf")


def _tensor(v, what) -> Variable:
    return as_variable(v, what)


def broadcast_dims(params) -> tuple:
    """The broadcast shape of ``params`` (Variables) as dims: static ints, or shape scalars
    for symbolic dims (only static-1 dims broadcast, so any non-1 dim stands for all)."""
    nd = max((p.ndim for p in params), default=0)
    dims = []
    for k in range(nd):
        entries = [(p, p.ndim - nd + k) for p in params if p.ndim - nd + k >= 0]
        static = [p.type.shape[i] for p, i in entries if isinstance(p.type.shape[i], int) and p.type.shape[i] != 1]
        symbolic = [(p, i) for p, i in entries if not isinstance(p.type.shape[i], int)]
        if static:
            dims.append(static[0])
        elif symbolic:
            dims.append(B.shape_i(*symbolic[0]))
        else:
            dims.append(1)
    return tuple(dims)


def normalize_size(size, ndim, params=(), what="random draw") -> tuple:
    """Theano's ``size`` (None, an int, a tuple of ints / int scalars, or a symbolic int
    vector of static length) as a tuple of dims; None means the parameters' broadcast shape."""
    if size is None:
        dims = broadcast_dims([p for p in params if isinstance(p, Variable)])
    elif isinstance(size, Variable):
        if size.ndim == 0:
            dims = (size,)
        elif size.ndim == 1 and isinstance(size.type.shape[0], int) and dt.is_int(size.dtype):
            dims = tuple(size[i] for i in range(size.type.shape[0]))
        else:
            raise TypeError(f"{what}: size must be a tuple or an int vector of static length, got {size.describe()}")
    elif isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        dims = (int(size),)
    else:
        try:
            dims = tuple(size)
        except TypeError:
            raise TypeError(f"{what}: size must be None, an int or a tuple, got {size!r}") from None
    if ndim is not None and int(ndim) != len(dims):
        raise ValueError(f"{what}: ndim={ndim} does not match size {size!r} ({len(dims)} dims)")
    return dims


def _float_dtype(dtype, params) -> str:
    """Theano's rule: the given dtype, else floatX upcast with the float parameters' dtypes."""
    if dtype is not None:
        d = dt.canonical(dtype)
        if not dt.is_float(d):
            raise TypeError(f"random draw: dtype must be a float dtype, got {d}")
        return d
    floats = [p.dtype for p in params if isinstance(p, Variable) and dt.is_float(p.dtype)]
    return dt.promote_types(dt.canonical("floatX"), *floats)


def _check_shape(out: Variable, dims: tuple, what: str) -> None:
    if out.ndim != len(dims):
        raise ValueError(f"{what}: parameters of shape {out.type} do not broadcast to size {dims} "
                         f"(the draw would have {out.ndim} dims)")


class RandomStreams:
    """Theano's ``RandomStreams(seed)``: a factory of random variables sharing one seed.

    ``seed`` defaults to 0 (reproducible; Theano draws one from the OS when None)."""

    def __init__(self, seed: int = 0):
        self.default_instance_seed = 0 if seed is None else int(seed)
        self._seed = self.default_instance_seed
        #: ``[(state shared variable, its update expression)]``, one per random variable
        self.state_updates: list = []

    # -- state -----------------------------------------------------------------------------
    def _new_state(self) -> SharedVariable:
        index = len(self.state_updates)
        k0, k1 = stream_key(self._seed, index)
        rng = RandomStateVariable(np.array([k0, k1, 0], dtype="int64"), name=f"rng_state_{index}")
        rng.default_update = rng + constant(_STEP)
        self.state_updates.append((rng, rng.default_update))
        return rng

    def seed(self, seed=None):
        """Re-seed every random variable of this stream (counters back to 0): the draws that
        follow are those of a fresh ``RandomStreams(seed)`` with the same variables.  None
        means the seed given at construction."""
        self._seed = self.default_instance_seed if seed is None else int(seed)
        for index, (rng, _) in enumerate(self.state_updates):
            k0, k1 = stream_key(self._seed, index)
            rng.set_value(np.array([k0, k1, 0], dtype="int64"))

    def reset(self):
        """Restart every stream from counter 0, keeping the keys (repeat the same draws)."""
        for rng, _ in self.state_updates:
            state = rng.get_value()
            state[2] = 0
            rng.set_value(state)

    def updates(self) -> list:
        """Theano's ``RandomStreams.updates()``: the ``(state, update)`` pairs."""
        return list(self.state_updates)

    @property
    def counters(self) -> list:
        """The state variables (one per random variable)."""
        return [rng for rng, _ in self.state_updates]

    # -- primitive draws -------------------------------------------------------------------
    def _primitive(self, op, dims, dtype, attrs, rng=None):
        """One random op of shape ``dims`` reading ``rng`` (a new state unless given)."""
        rng = rng if rng is not None else self._new_state()
        shape_attr, dim_operands = _dim_entries(tuple(dims), op)
        out = apply(op, [rng[0:2], rng[2]] + dim_operands, dict(attrs, shape=shape_attr, dtype=dt.canonical(dtype)))
        return B.with_shape_origins(out, tuple(dims)), rng

    def _standard_uniform(self, dims, dtype, low=0.0):
        return self._primitive("random_uniform", dims, dtype, {"low": low, "high": 1.0})

    # -- Theano's distributions ------------------------------------------------------------
    def uniform(self, size=None, low=0.0, high=1.0, ndim=None, dtype=None):
        """Uniform in ``[low, high)``; ``low``/``high`` may be tensors (broadcast with ``size``;
        then ``low + (high - low) * u`` may round up to ``high`` itself, as in Theano)."""
        if _is_const(low) and _is_const(high):
            dims = normalize_size(size, ndim, (), "uniform")
            out, rng = self._primitive("random_uniform", dims, _float_dtype(dtype, ()),
                                       {"low": float(low), "high": float(high)})
            return _wrap(out, rng)
        lo, hi = _tensor(low, "uniform low"), _tensor(high, "uniform high")
        d = _float_dtype(dtype, (lo, hi))
        dims = normalize_size(size, ndim, (lo, hi), "uniform")
        u, rng = self._standard_uniform(dims, d)
        lo, hi = B.cast(lo, d), B.cast(hi, d)
        out = lo + (hi - lo) * u
        _check_shape(out, dims, "uniform")
        return _wrap(out, rng)

    def normal(self, size=None, avg=0.0, std=1.0, ndim=None, dtype=None):
        """Normal(avg, std); ``avg``/``std`` may be tensors (broadcast with ``size``)."""
        if _is_const(avg) and _is_const(std):
            dims = normalize_size(size, ndim, (), "normal")
            out, rng = self._primitive("random_normal", dims, _float_dtype(dtype, ()),
                                       {"mean": float(avg), "std": float(std)})
            return _wrap(out, rng)
        mu, sd = _tensor(avg, "normal avg"), _tensor(std, "normal std")
        d = _float_dtype(dtype, (mu, sd))
        dims = normalize_size(size, ndim, (mu, sd), "normal")
        z, rng = self._primitive("random_normal", dims, d, {"mean": 0.0, "std": 1.0})
        out = B.cast(mu, d) + B.cast(sd, d) * z
        _check_shape(out, dims, "normal")
        return _wrap(out, rng)

    def binomial(self, size=None, n=1, p=0.5, ndim=None, dtype="int64", prob=None):
        """Binomial(n, p) counts; ``n``/``p`` may be tensors (``prob`` is Theano's old name of ``p``)."""
        if prob is not None:
            p = prob
        if _is_const(n) and _is_const(p):
            dims = normalize_size(size, ndim, (), "binomial")
            out, rng = self._primitive("random_binomial", dims, dtype, {"n": int(n), "p": float(p)})
            return _wrap(out, rng)
        pv = _tensor(p, "binomial p")
        if not dt.is_float(pv.dtype):
            pv = B.cast(pv, "floatX")
        nv = None if _is_const(n) else _tensor(n, "binomial n")
        if nv is not None and not dt.is_int(nv.dtype):
            raise TypeError(f"binomial: n must be an integer, got {nv.describe()}")
        dims = normalize_size(size, ndim, (pv,) if nv is None else (pv, nv), "binomial")
        ud = "float64" if pv.dtype == "float64" else "float32"
        pe = pv.dimshuffle(*range(pv.ndim), "x")
        if nv is None and int(n) == 1:
            u, rng = self._standard_uniform(dims, ud)
            out = B.cast(B.lt(u, pv), dtype)
        else:
            trials = int(n) if nv is None else B.cast(B.max(nv), "int64")
            u, rng = self._standard_uniform(dims + (trials,), ud)
            hit = B.lt(u, pe)
            if nv is not None:
                hit = B.logical_and(hit, B.lt(B.arange(trials), nv.dimshuffle(*range(nv.ndim), "x")))
            out = B.cast(B.sum(B.cast(hit, "int64"), axis=-1), dtype)
        _check_shape(out, dims, "binomial")
        return _wrap(out, rng)

    def random_integers(self, size=None, low=0, high=1, ndim=None, dtype="int64"):
        """Integers uniform in ``[low, high]`` (both included); bounds may be tensors."""
        if _is_const(low) and _is_const(high) and not int(low) <= int(high):
            raise ValueError(f"random_integers: needs low <= high, got low={low!r}, high={high!r}")
        lo = B.cast(_tensor(low, "random_integers low"), "int64")
        hi = B.cast(_tensor(high, "random_integers high"), "int64")
        dims = normalize_size(size, ndim, (lo, hi), "random_integers")
        u, rng = self._standard_uniform(dims, "float64")
        span = B.cast(hi - lo + 1, "float64")
        r = lo + B.cast(B.floor(u * span), "int64")
        out = B.cast(B.minimum(r, hi), dtype)
        _check_shape(out, dims, "random_integers")
        return _wrap(out, rng)

    def integers(self, size=None, low=0, high=1, ndim=None, dtype="int64"):
        """NumPy's convention: ``[low, high)``."""
        if _is_const(low) and _is_const(high):
            return self.random_integers(size, int(low), int(high) - 1, ndim, dtype)
        return self.random_integers(size, low, _tensor(high, "integers high") - 1, ndim, dtype)

    def choice(self, size=None, a=2, replace=True, p=None, ndim=None, dtype="int64"):
        from .random_discrete import choice

        return choice(self, size, a, replace, p, ndim, dtype)

    def permutation(self, size=None, n=1, ndim=None, dtype="int64"):
        from .random_discrete import permutation

        return permutation(self, size, n, ndim, dtype)

    def multinomial(self, size=None, n=1, pvals=(0.5, 0.5), ndim=None, dtype="int64"):
        from .random_discrete import multinomial

        return multinomial(self, size, n, pvals, ndim, dtype)

    def poisson(self, size=None, lam=1.0, ndim=None, dtype="int64"):
        from .random_discrete import poisson

        return poisson(self, size, lam, ndim, dtype)

    def shuffle_row_elements(self, input):
        """Every row (the last axis) of ``input`` shuffled by its own permutation."""
        from .random_discrete import shuffle_row_elements

        return shuffle_row_elements(self, input)
