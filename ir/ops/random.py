"""Random-number ops on a counter-based generator: Philox-4x32-10 (Salmon et al., SC'11).

Why counter-based: a draw is a pure function of (key, counter), so every element can be
computed independently (vectorized loops, GPU threads), there is no hidden state for
passes to reorder, and the graph stays deterministic: the state is an ordinary operand.
The DSL's ``RandomStreams`` (tcomp/random.py) gives each random variable a shared state
``[key0, key1, counter]``: the op reads ``state[0:2]`` as its seed and ``state[2]`` as its
counter, and the counter is incremented through ``updates``, so results are reproducible
for a seed and differ per call.  Two draws that must be independent within one call need
different keys or counters (each random variable has its own key).  Distributions with
tensor parameters, and the discrete ones, are compositions of these three ops.

Exact recipe (what a backend must reproduce bit for bit; all integer arithmetic is on
uint32 words, wrapping, and ``mulhi``/``mullo`` are the high/low halves of the 64-bit
product):

* Operands: ``(seed, counter, *dims)``.  ``seed`` is an int scalar, read as its 64-bit
  two's complement ``s``, key ``(k0, k1) = (s & 0xffffffff, s >> 32)``; or an int vector
  of shape (2,), key ``(seed[0] & 0xffffffff, seed[1] & 0xffffffff)``.  ``counter`` is an
  int scalar, read as 64-bit ``c``: ``(c_lo, c_hi) = (c & 0xffffffff, c >> 32)``.
* Element ``i`` (flat C-order index, ``i < 2**32``), block ``b``: Philox-4x32-10 of
  counter ``(i, b, c_lo, c_hi)`` under key ``(k0, k1)`` gives words ``w0..w3``.
  One Philox round: ``(x0, x1, x2, x3) -> (mulhi(M1, x2) ^ x1 ^ k0, mullo(M1, x2),
  mulhi(M0, x0) ^ x3 ^ k1, mullo(M0, x0))`` with ``M0 = 0xD2511F53, M1 = 0xCD9E8D57``;
  ten rounds, the key bumped by ``(0x9E3779B9, 0xBB67AE85)`` before rounds 2..10.
* ``U24(w) = (w >> 8) * 2**-24`` (exact in float32), ``U53(a, b) = ((a >> 5) * 2**26 +
  (b >> 6)) * 2**-53`` (exact in float64, NumPy's recipe).
* ``random_uniform`` (float dtypes, block 0): ``u = U24(w0)`` for float32, ``U53(w0, w1)``
  for float64; ``r = lo + (hi - lo) * u`` in the output dtype, each operation rounded (no
  FMA contraction), with ``lo, hi`` the attrs rounded to the dtype; a result that rounds
  up to ``hi`` is replaced by the largest value below ``hi``, so ``r`` is in ``[low, high)``.
* ``random_normal`` (float dtypes, block 0, Box-Muller, one value per element):
  ``u1 = 1 - U53(w0, w1)`` in (0, 1], ``u2 = U53(w2, w3)``; in float64
  ``z = sqrt(-2 log u1) * cos(2 pi u2)``, ``r = mean + std * z``, then rounded to the
  dtype.  The integer stream is exact; ``log``/``cos`` are libm's, so another
  implementation agrees to a few ulp rather than bit for bit.
* ``random_binomial`` (any numeric dtype; bool needs n == 1): trial ``t`` of element ``i``
  uses word ``t % 4`` of block ``t // 4`` and succeeds iff ``w < T`` with
  ``T = floor(p * 2**32)`` compared as 64-bit ints; the result is the number of successes
  (so ``p = 1`` always succeeds and ``p = 0`` never does).
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes as dt
from ..types import TensorType
from .registry import OpDef, register
from .shape import dims_from_attr

PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF
MAX_ELEMENTS = 1 << 32


def philox4x32(ctr, key, rounds: int = 10):
    """Philox-4x32-``rounds`` of counter words ``ctr`` (4 uint32 arrays, broadcast) under ``key`` (2 ints).

    Returns the 4 output words as uint32 arrays.  Vectorized over the counter arrays.
    """
    x0, x1, x2, x3 = (np.asarray(c, dtype=np.uint64) & MASK32 for c in np.broadcast_arrays(*ctr))
    k0, k1 = int(key[0]) & MASK32, int(key[1]) & MASK32
    m0, m1, mask = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1), np.uint64(MASK32)
    shift = np.uint64(32)
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + PHILOX_W0) & MASK32, (k1 + PHILOX_W1) & MASK32
        p0 = m0 * x0  # < 2**64: exact in uint64
        p1 = m1 * x2
        x0, x1, x2, x3 = ((p1 >> shift) ^ x1 ^ np.uint64(k0), p1 & mask,
                          (p0 >> shift) ^ x3 ^ np.uint64(k1), p0 & mask)
    return tuple(w.astype(np.uint32) for w in (x0, x1, x2, x3))


def key_from_seed(seed: np.ndarray) -> tuple:
    seed = np.asarray(seed)
    if seed.ndim == 0:
        s = int(seed) & 0xFFFFFFFFFFFFFFFF
        return s & MASK32, s >> 32
    return int(seed[0]) & MASK32, int(seed[1]) & MASK32


def counter_words(counter: np.ndarray) -> tuple:
    c = int(np.asarray(counter)) & 0xFFFFFFFFFFFFFFFF
    return c & MASK32, c >> 32


def random_words(seed, counter, size: int, block: int = 0):
    """Words w0..w3 of block ``block`` for elements 0..size-1 (the shared first step of every op)."""
    if size > MAX_ELEMENTS:
        raise ValueError(f"random draw of {size} elements exceeds the generator's 2**32 elements per call")
    c_lo, c_hi = counter_words(counter)
    i = np.arange(size, dtype=np.uint64)
    return philox4x32((i, np.uint64(block), np.uint64(c_lo), np.uint64(c_hi)), key_from_seed(seed))


def u24(w: np.ndarray) -> np.ndarray:
    return (w >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24)


def u53(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    hi = (a >> np.uint32(5)).astype(np.float64)
    lo = (b >> np.uint32(6)).astype(np.float64)
    return (hi * 67108864.0 + lo) * (2.0 ** -53)


# -- type rule shared by the three ops -------------------------------------------------------

def _random_infer(op: str, allowed):
    def infer(types, attrs):
        if len(types) < 2:
            raise TypeError(f"{op} takes (seed, counter, *dims), got {len(types)} operands")
        seed, counter = types[:2]
        if not dt.is_int(seed.dtype) or not (seed.ndim == 0 or seed.shape == (2,)):
            raise TypeError(f"{op}: seed must be an int scalar or an int vector of 2 key words, got {seed}")
        if not dt.is_int(counter.dtype) or counter.ndim != 0:
            raise TypeError(f"{op}: counter must be an int scalar, got {counter}")
        for i, t in enumerate(types[2:]):
            if t.ndim != 0 or not dt.is_int(t.dtype):
                raise TypeError(f"{op}: dim operand {i} must be an integer scalar, got {t}")
        shape = tuple(attrs["shape"])
        if not all(d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in shape):
            raise ValueError(f"{op}: shape {attrs['shape']!r} must hold non-negative ints or None")
        if sum(d is None for d in shape) != len(types) - 2:
            raise ValueError(f"{op}: shape {shape} needs {sum(d is None for d in shape)} dim operands, "
                             f"got {len(types) - 2}")
        dtype = dt.canonical(attrs["dtype"])
        if dt.kind(dtype) not in allowed:
            raise TypeError(f"{op}: dtype {dtype} is not supported (allowed kinds: {allowed})")
        _check_params(op, attrs, dtype)
        return TensorType(dtype, shape)
    return infer


def _finite(op, attrs, *names):
    for name in names:
        v = attrs[name]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
            raise ValueError(f"{op}: attribute {name} must be a finite number, got {v!r}")


def _check_params(op, attrs, dtype):
    if op == "random_uniform":
        _finite(op, attrs, "low", "high")
        lo, hi = np.array(attrs["low"], dtype=dtype), np.array(attrs["high"], dtype=dtype)
        if not lo < hi:
            raise ValueError(f"{op}: needs low < high in {dtype}, got low={attrs['low']!r}, high={attrs['high']!r}")
    elif op == "random_normal":
        _finite(op, attrs, "mean", "std")
        if attrs["std"] < 0:
            raise ValueError(f"{op}: std must be >= 0, got {attrs['std']!r}")
    else:
        n, p = attrs["n"], attrs["p"]
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{op}: n must be an int >= 0, got {n!r}")
        _finite(op, attrs, "p")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{op}: p must be in [0, 1], got {p!r}")
        if dtype == dt.BOOL and n > 1:
            raise TypeError(f"{op}: dtype bool holds counts only for n <= 1, got n={n}")


def _shape(attrs, arrays):
    return dims_from_attr(attrs["shape"], arrays[2:])


# -- implementations ---------------------------------------------------------------------------

def uniform_reference(seed, counter, shape, low, high, dtype):
    size = int(np.prod(shape, dtype=np.int64))
    w = random_words(seed, counter, size)
    u = u24(w[0]) if np.dtype(dtype) == np.float32 else u53(w[0], w[1])
    return scale_uniform(u, low, high, dtype).reshape(shape)


def scale_uniform(u: np.ndarray, low, high, dtype) -> np.ndarray:
    """``lo + (hi - lo) * u`` in ``dtype`` (u in [0, 1)), kept below ``hi`` when rounding reaches it."""
    d = np.dtype(dtype)
    lo, hi = d.type(low), d.type(high)
    r = (lo + (hi - lo) * np.asarray(u).astype(d)).astype(d)
    return np.where(r >= hi, np.nextafter(hi, d.type(-np.inf)), r)


def normal_reference(seed, counter, shape, mean, std, dtype):
    size = int(np.prod(shape, dtype=np.int64))
    w0, w1, w2, w3 = random_words(seed, counter, size)
    u1 = 1.0 - u53(w0, w1)
    u2 = u53(w2, w3)
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos((2.0 * np.pi) * u2)
    return (float(mean) + float(std) * z).astype(dtype).reshape(shape)


def binomial_reference(seed, counter, shape, n, p, dtype):
    size = int(np.prod(shape, dtype=np.int64))
    threshold = np.uint64(min(math.floor(float(p) * 4294967296.0), 1 << 32))
    count = np.zeros(size, dtype=np.int64)
    for block in range((int(n) + 3) // 4):  # one vectorized Philox call per 4 trials
        words = random_words(seed, counter, size, block)
        for t in range(min(4, int(n) - 4 * block)):
            count += words[t].astype(np.uint64) < threshold
    return count.astype(dtype).reshape(shape)


def _uniform_impl(arrays, attrs, out_type):
    return uniform_reference(arrays[0], arrays[1], _shape(attrs, arrays), attrs["low"], attrs["high"], out_type.dtype)


def _normal_impl(arrays, attrs, out_type):
    return normal_reference(arrays[0], arrays[1], _shape(attrs, arrays), attrs["mean"], attrs["std"], out_type.dtype)


def _binomial_impl(arrays, attrs, out_type):
    return binomial_reference(arrays[0], arrays[1], _shape(attrs, arrays), attrs["n"], attrs["p"], out_type.dtype)


register(OpDef("random_uniform", None, _random_infer("random_uniform", "f"), _uniform_impl,
               attr_defaults={"shape": (), "dtype": "floatX", "low": 0.0, "high": 1.0}, kind="random",
               differentiable=False, min_arity=2,
               doc="random_uniform(seed, counter, *dims): Philox-4x32-10 uniform in [low, high)"))
register(OpDef("random_normal", None, _random_infer("random_normal", "f"), _normal_impl,
               attr_defaults={"shape": (), "dtype": "floatX", "mean": 0.0, "std": 1.0}, kind="random",
               differentiable=False, min_arity=2,
               doc="random_normal(seed, counter, *dims): Philox-4x32-10 + Box-Muller normal(mean, std)"))
register(OpDef("random_binomial", None, _random_infer("random_binomial", "biuf"), _binomial_impl,
               attr_defaults={"shape": (), "dtype": "int64", "n": 1, "p": 0.5}, kind="random",
               differentiable=False, min_arity=2,
               doc="random_binomial(seed, counter, *dims): Philox-4x32-10 binomial(n, p) by counting trials"))
