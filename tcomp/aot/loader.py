"""``tcomp.aot.load``: an exported library called from Python through ctypes.

The callable binds arguments like the JIT function (positional or by input name, the same
messages), converts them by the JIT's rules (an array of the input's dtype as is, a safe cast
or a Python number whose value survives converts, a lossy cast is a TypeError), checks the
rank as the JIT does, then calls the library's own entries: ``NAME_shapes`` for the output
dims and workspace bytes, ``NAME_ws`` with a per-thread workspace.  The shape, size and
value-dependent checks are the library's (native, before any memory is touched): a failure
raises the JIT's exception class with the library's message, which is the JIT's text.

With ``state='external'`` the callable also takes every state buffer after the inputs (by
position or name): C-contiguous, writeable arrays of the exact dtype, read and, for updated
shared variables, written in place by the call.
"""
from __future__ import annotations

import ctypes
import threading

import numpy as np

from tcomp.ir.types import TensorType
from tcomp.runtime.buffers import aligned_empty

from .build import read_manifest

#: the C status codes (csource.STATUS) -> the JIT's exception classes
ERRORS = {1: TypeError, 2: ValueError, 3: IndexError, 4: MemoryError, 5: np.linalg.LinAlgError}


def _convert(value, label: str, want: str):
    """``Function._convert``'s rules (no ``allow_input_downcast``)."""
    from tcomp.function import convert_argument

    return convert_argument(value, label, want)


class AotFunction:
    """One exported function of a loaded library (see the module docstring)."""

    def __init__(self, lib: ctypes.CDLL, libname: str, desc: dict, path: str):
        self._lib, self.desc, self.path = lib, desc, path
        self.name = desc["name"]
        self.params = desc["inputs"]
        self.outputs = desc["outputs"]
        self.single_output = desc["single_output"]
        self._last_error = getattr(lib, f"{libname}_last_error")
        self._last_error.restype = ctypes.c_char_p
        self._last_error.argtypes = []
        self._order = []  # the typed entry's arguments: ('ptr', j) / ('size', j, axis)
        done = set()
        for j, p in enumerate(self.params):
            self._order.append(("ptr", j))
            for axis, d in enumerate(p["dims"]):
                if isinstance(d, str) and d not in done:
                    done.add(d)
                    self._order.append(("size", j, axis))
        self._ws_entry = getattr(lib, f"{self.name}_ws")
        self._ws_entry.restype = ctypes.c_int
        self._ws_entry.argtypes = [ctypes.c_void_p if a[0] == "ptr" else ctypes.c_int64 for a in self._order] + \
            [ctypes.c_void_p, ctypes.c_int64] * len(self.outputs) + [ctypes.c_void_p, ctypes.c_size_t]
        self._shapes = getattr(lib, f"{self.name}_shapes")
        self._shapes.restype = ctypes.c_int
        shape_args = []
        for a in self._order:
            if a[0] == "size":
                shape_args.append(ctypes.c_int64)
            elif self.params[a[1]]["shape_deciding"]:
                shape_args.append(ctypes.c_void_p)
        self._shapes.argtypes = shape_args + [ctypes.c_void_p, ctypes.c_void_p]
        self._out_rank = sum(len(o["dims"]) for o in self.outputs)
        self._tls = threading.local()
        self._by_name: dict = {}
        for j, p in enumerate(self.params):
            self._by_name[p["name"]] = None if p["name"] in self._by_name else j

    def __repr__(self):
        args = ", ".join(p["name"] for p in self.params)
        return f"<tcomp.aot function {self.name}({args}) from {self.path}>"

    def _fail(self, status: int):
        msg = (self._last_error() or b"").decode(errors="replace")
        raise ERRORS.get(status, RuntimeError)(msg)

    def _bind(self, args, kwargs) -> list:
        params, fname = self.params, self.name
        if len(args) > len(params):
            raise TypeError(f"{fname}() takes {len(params)} arguments, got {len(args)}")
        values = list(args) + [None] * (len(params) - len(args))
        given = [True] * len(args) + [False] * (len(params) - len(args))
        for key, value in kwargs.items():
            if key in self._by_name and self._by_name[key] is None:
                raise TypeError(f"{fname}(): several inputs are named {key!r}; pass that argument by position")
            i = self._by_name.get(key)
            if i is None:
                raise TypeError(f"{fname}() got an unexpected keyword argument {key!r} (arguments: "
                                f"{', '.join(p['name'] for p in params)})")
            if given[i]:
                raise TypeError(f"{fname}() got multiple values for argument {key!r}")
            values[i], given[i] = value, True
        missing = [p["name"] for p, g in zip(params, given) if not g]
        if missing:
            raise TypeError(f"{fname}() missing argument(s): {', '.join(missing)}")
        out = []
        for p, v in zip(params, values):
            if p["kind"] == "state":
                out.append(self._state(p, v))
                continue
            a = _convert(v, p["name"], p["dtype"])
            if a.ndim != len(p["shape"]):
                t = TensorType(p["dtype"], tuple(p["shape"]))
                raise ValueError(f"input {p['name']!r}: expected rank {len(p['shape'])} ({t}), got shape {a.shape}")
            if not (a.dtype.isnative and a.flags.aligned and a.flags.c_contiguous) or type(a) is not np.ndarray:
                a = np.array(a, dtype=a.dtype.newbyteorder("="), order="C")
            out.append(a)
        return out

    @staticmethod
    def _state(p, v):
        if not isinstance(v, np.ndarray) or v.dtype.name != p["dtype"]:
            got = f"an array of dtype {v.dtype}" if isinstance(v, np.ndarray) else type(v).__name__
            raise TypeError(f"state {p['name']!r}: expected a NumPy array of dtype {p['dtype']} (updated in place), "
                            f"got {got}")
        if not (v.flags.c_contiguous and v.flags.aligned and v.dtype.isnative):
            raise ValueError(f"state {p['name']!r}: the buffer must be C-contiguous, aligned and in native byte order")
        if p["updated"] and not v.flags.writeable:
            raise ValueError(f"state {p['name']!r}: the buffer is read-only, but the function updates it")
        if v.ndim != len(p["shape"]):
            t = TensorType(p["dtype"], tuple(p["shape"]))
            raise ValueError(f"input {p['name']!r}: expected rank {len(p['shape'])} ({t}), got shape {v.shape}")
        return v

    def _agree(self, arrays) -> None:
        """A named dim is one size parameter of the C entry: the arrays must agree on it (the
        JIT's check and message; the C entry cannot see a disagreement)."""
        seen = {}
        for j, p in enumerate(self.params):
            for axis, d in enumerate(p["dims"]):
                if not isinstance(d, str):
                    continue
                have = arrays[j].shape[axis]
                if d not in seen:
                    seen[d] = (have, p["name"])
                elif have != seen[d][0] and isinstance(p["declared"][axis], str):
                    raise ValueError(f"input {p['name']!r}: symbolic dim {p['declared'][axis]!r} is {have} here but "
                                     f"{seen[d][0]} in input {seen[d][1]!r}")

    def __call__(self, *args, **kwargs):
        arrays = self._bind(args, kwargs)
        self._agree(arrays)
        ptrs = [a.ctypes.data for a in arrays]
        shape_args, typed = [], []
        for a in self._order:
            if a[0] == "size":
                v = arrays[a[1]].shape[a[2]]
                shape_args.append(v)
                typed.append(v)
            else:
                if self.params[a[1]]["shape_deciding"]:
                    shape_args.append(ptrs[a[1]])
                typed.append(ptrs[a[1]])
        out_dims = (ctypes.c_int64 * max(self._out_rank, 1))()
        ws_bytes = ctypes.c_size_t(0)
        rc = self._shapes(*shape_args, ctypes.addressof(out_dims), ctypes.addressof(ws_bytes))
        if rc:
            self._fail(rc)
        outs, at = [], 0
        for o in self.outputs:
            nd = len(o["dims"])
            shape = tuple(out_dims[at:at + nd])
            at += nd
            outs.append(aligned_empty(shape, np.dtype(o["dtype"])))
        for a in outs:
            typed += [a.ctypes.data, a.size]
        ws = getattr(self._tls, "ws", None)
        if ws_bytes.value and (ws is None or ws.nbytes < ws_bytes.value):
            ws = self._tls.ws = aligned_empty((ws_bytes.value,), np.uint8)
        typed += [ws.ctypes.data if ws_bytes.value else None, ws_bytes.value]
        rc = self._ws_entry(*typed)
        if rc:
            self._fail(rc)
        return outs[0] if self.single_output else outs


def load(path: str):
    """The library's function as a callable (a dict name -> callable when it has several)."""
    info = read_manifest(path)
    lib = ctypes.CDLL(path)
    fns = {d["name"]: AotFunction(lib, info["library"], d, path) for d in info["functions"]}
    if len(fns) == 1:
        return next(iter(fns.values()))
    return fns


__all__ = ["load", "AotFunction", "ERRORS"]
