"""``@tcomp.jit``: JAX's way in.  The decorated Python function is traced on first call
with symbolic inputs matching the arguments, compiled, and cached per input signature
(dtype, rank, and which dims are 1: the only thing that changes a graph's types, since
only static-1 dims broadcast)."""
from __future__ import annotations

import functools
import threading

import numpy as np

from tcomp.ir import dtypes as dt

from .tensor.basic import tensor
from .tensor.variable import Variable


def _is_weak_scalar(a) -> bool:
    """A Python bool/int/float (not a NumPy scalar, which has a dtype of its own): JAX's weak type."""
    return isinstance(a, (bool, int, float)) and not isinstance(a, np.generic)


def _signature(args):
    """Per argument (dtype, which dims are 1).  A Python scalar is weak, as in JAX: its dtype
    is the one it would take as a constant next to the array arguments (``f(float32_array,
    2.0)`` traces 2.0 as float32, ``f(int8_array, 3)`` traces 3 as int8; alone it takes the
    default of its kind), so its value can change without recompiling.  The approximation:
    a weak scalar takes the promotion of *all* array arguments, not only of those it meets."""
    strong = []
    for i, a in enumerate(args):
        if isinstance(a, Variable):
            raise TypeError(f"argument {i} of a jitted function must be concrete (a NumPy array), got a variable")
        if not _is_weak_scalar(a):
            try:
                strong.append(dt.canonical(np.asarray(a).dtype))
            except TypeError:
                raise TypeError(f"argument {i}: unsupported dtype {np.asarray(a).dtype}") from None
    sig, it = [], iter(strong)
    for a in args:
        if _is_weak_scalar(a):
            sig.append((dt.promote_with_weak(strong, [dt.weak_scalar_kind(a)]), ()))
        else:
            arr = np.asarray(a)
            sig.append((next(it), tuple(d == 1 for d in arr.shape)))
    return tuple(sig)


def _as_argument(a, dtype: str, i: int) -> np.ndarray:
    if not _is_weak_scalar(a):
        return np.asarray(a)
    try:
        out = np.asarray(a, dtype=dtype)
    except OverflowError:
        out = None
    if out is None or (dt.is_int(dtype) and out != a):
        raise OverflowError(f"argument {i}: Python scalar {a!r} does not fit {dtype}, the dtype it takes next to "
                            "the array arguments")
    return out


class JittedFunction:
    def __init__(self, fn, backend=None, **compile_kwargs):
        self.fn = fn
        self.backend = backend
        self.compile_kwargs = compile_kwargs
        #: signature -> (compiled Function, returns a tuple); dropping the JittedFunction drops
        #: them all (and so their native code)
        self.cache: dict = {}
        self._lock = threading.Lock()  # threads calling with a new signature compile it once
        functools.update_wrapper(self, fn)

    def _trace(self, sig):
        import inspect

        try:
            names = list(inspect.signature(self.fn).parameters)
        except (TypeError, ValueError):  # pragma: no cover - builtins
            names = []
        inputs = [tensor(names[i] if i < len(names) else f"arg{i}", dtype, shape=tuple(1 if b else None for b in bc))
                  for i, (dtype, bc) in enumerate(sig)]
        out = self.fn(*inputs)
        return inputs, out

    def lower(self, *args):
        """The compiled ``tcomp.Function`` for these arguments' signature (cached)."""
        from .function import function

        sig = _signature(args)
        hit = self.cache.get(sig)
        if hit is not None:
            return hit
        with self._lock:
            if sig not in self.cache:
                inputs, out = self._trace(sig)
                outputs = list(out) if isinstance(out, (tuple, list)) else out
                compiled = function(inputs, outputs, on_unused_input="ignore", backend=self.backend,
                                    name=getattr(self.fn, "__name__", "jit"), **self.compile_kwargs)
                self.cache[sig] = (compiled, isinstance(out, tuple))
            return self.cache[sig]

    def trace(self, *example_args):
        """The traced graph (``tcomp.ir.Graph``) for these arguments, without running it."""
        return self.lower(*example_args)[0].traced

    def __call__(self, *args):
        compiled, as_tuple = self.lower(*args)
        sig = _signature(args)
        out = compiled(*[_as_argument(a, d, i) for i, (a, (d, _)) in enumerate(zip(args, sig))])
        return tuple(out) if as_tuple else out


def jit(fn=None, *, backend=None, **compile_kwargs):
    """Decorator: ``@tcomp.jit`` or ``@tcomp.jit(backend='reference')``."""
    if fn is None:
        return lambda f: JittedFunction(f, backend=backend, **compile_kwargs)
    return JittedFunction(fn, backend=backend, **compile_kwargs)
