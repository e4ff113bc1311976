"""Shared variables: tensors whose storage tcomp holds across calls (Theano's ``shared``).

Concurrency rule (see README, "What is there"): every shared variable has a readers-writer
lock.  A compiled function's call holds, for its whole duration (conversion, native code,
committing the updates), the *write* lock of every shared variable it updates and the
*read* lock of every other shared variable it reads, all acquired in one global order (the
variables' creation order) so calls can never deadlock.  So calls that update the same
variable run one after another and no update is lost; a call that only reads a variable
waits while another call updates it (it never sees a half-written value); calls that only
read run in parallel.  ``get_value()`` takes the read lock and ``set_value()`` the write
lock, so neither sees nor leaves a torn value.  ``get_value(borrow=True)`` returns the
storage itself: reading it while another thread updates the variable is the caller's risk.
The locks are re-entrant per thread (:func:`acquire`), so a call nested in a call (a Python
op's ``perform`` calling a compiled function) never waits for locks its own thread holds.
"""
from __future__ import annotations

import itertools
import threading

import numpy as np

from tcomp.ir import dtypes as dt
from tcomp.ir.types import TensorType

from .tensor.variable import Variable

_seq = itertools.count()


class RWLock:
    """Many readers or one writer; a waiting writer blocks new readers (no writer starvation).

    Deadlock-free when every thread acquires several of them in one global order (a thread
    waiting for lock k holds only locks ordered before k).  Re-entrancy is handled one level
    up (:func:`acquire`): a thread that already holds a lock does not wait for it again."""

    __slots__ = ("_cond", "_readers", "_writer", "_waiting_writers")

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    def acquire_read(self):
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1

    def release_read(self):
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    def acquire_write(self):
        with self._cond:
            self._waiting_writers += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._waiting_writers -= 1
            self._writer = True

    def release_write(self):
        with self._cond:
            self._writer = False
            self._cond.notify_all()

    def try_upgrade(self) -> bool:
        """Read lock -> write lock, only when the caller is the one reader (never waits)."""
        with self._cond:
            if self._readers != 1 or self._writer:
                return False
            self._readers, self._writer = 0, True
            return True

    def downgrade(self):
        with self._cond:
            self._writer, self._readers = False, 1
            self._cond.notify_all()


#: per thread: RWLock -> True (held for writing) / False (reading).  A compiled function
#: called from a Python op's ``perform`` (or ``get_value`` there) runs inside the outer
#: call, which may already hold the same locks: waiting for them again would wait forever.
_tls = threading.local()


def _held() -> dict:
    held = getattr(_tls, "held", None)
    if held is None:
        held = _tls.held = {}
    return held


def acquire(lock: RWLock, write: bool, label: str, held: dict = None) -> str:
    """Take ``lock`` for this thread, re-entrantly; returns how (for :func:`release`):
    'r'/'w' (taken), 'n' (already held strongly enough: nothing to do), 'u' (this thread's
    read lock upgraded, when it is the only reader).  An upgrade another reader prevents
    raises RuntimeError rather than waiting for a reader that may be waiting for us."""
    held = _held() if held is None else held
    mode = held.get(lock)
    if mode is None:
        (lock.acquire_write if write else lock.acquire_read)()
        held[lock] = write
        return "w" if write else "r"
    if mode or not write:
        return "n"
    if not lock.try_upgrade():
        raise RuntimeError(f"shared variable {label}: a call nested in another call on this thread (a Python op's "
                           f"perform calling a compiled function) updates it while the outer call reads it and "
                           f"another thread reads it too; waiting would deadlock. Update it outside the outer call, "
                           f"or pass its value in as an input")
    held[lock] = True
    return "u"


def release(lock: RWLock, how: str, held: dict = None) -> None:
    held = _held() if held is None else held
    if how == "r":
        del held[lock]
        lock.release_read()
    elif how == "w":
        del held[lock]
        lock.release_write()
    elif how == "u":
        held[lock] = False
        lock.downgrade()


class SharedLocks:
    """The locks one compiled function holds during a call: write locks of the shared
    variables it updates, read locks of the other shared variables it reads, in the global
    order.  ``with locks:`` acquires them all; an empty set costs nothing.  Re-entrant per
    thread (:func:`acquire`): a call nested in a call that holds the locks goes on."""

    __slots__ = ("_plan",)

    def __init__(self, read=(), write=()):
        write = {id(v): v for v in write}
        read = {id(v): v for v in read if id(v) not in write}
        plan = [(v._seq, v._rw, True, v) for v in write.values()] + \
            [(v._seq, v._rw, False, v) for v in read.values()]
        self._plan = [(lock, w, v.name or "<unnamed>") for _, lock, w, v in sorted(plan, key=lambda p: p[0])]

    def __enter__(self):
        if not self._plan:
            return self
        held = _held()
        done = []
        try:
            for lock, write, label in self._plan:
                if lock in held:  # a nested call (rare): acquire's rules
                    done.append((lock, acquire(lock, write, label, held)))
                elif write:  # (the common case inlined: every call of a function with shared variables)
                    lock.acquire_write()
                    held[lock] = True
                    done.append((lock, "w"))
                else:
                    lock.acquire_read()
                    held[lock] = False
                    done.append((lock, "r"))
        except BaseException:
            _release(done, held)
            raise
        stack = getattr(_tls, "stack", None)
        if stack is None:
            stack = _tls.stack = []
        stack.append(done)
        return self

    def __exit__(self, *exc):
        if self._plan:
            _release(_tls.stack.pop(), _held())
        return False


def _release(done, held):
    for lock, how in reversed(done):
        if how == "r":
            del held[lock]
            lock.release_read()
        elif how == "w":
            del held[lock]
            lock.release_write()
        else:
            release(lock, how, held)


def _checked_kind(arr: np.ndarray, label: str, want: str) -> None:
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{label}: expected a {want} tensor, got an array of dtype {arr.dtype} "
                        "(only bool, integer and float data)")


class SharedVariable(Variable):
    """A root variable bound to a value.  Its type's shape is the value's static shape unless
    ``shape=`` says otherwise (use None entries for dims that may change with set_value).

    The stored value is always a C-contiguous, aligned, writeable array in native byte
    order, so compiled code may read it (and write updates into it) directly."""

    __slots__ = ("_value", "default_update", "_rw", "_seq", "strict", "allow_downcast", "_device")

    def __init__(self, value, name=None, shape=None, dtype=None, strict=False, allow_downcast=None):
        if strict and not (isinstance(value, np.ndarray) and (dtype is None or value.dtype.name == str(dtype))):
            got = f"an array of dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
            raise TypeError(f"{name or 'shared variable'}: strict=True needs a NumPy array"
                            f"{f' of dtype {dtype}' if dtype else ''}, got {got}")
        #: Theano's filter options for set_value (tcomp.io.filter_value)
        self.strict, self.allow_downcast = bool(strict), allow_downcast
        arr = np.array(value, dtype=dtype, copy=True)
        _checked_kind(arr, name or "shared variable", str(dtype or arr.dtype))
        arr = arr.astype(dt.canonical(arr.dtype if dtype is None else dtype), copy=False)
        shape = arr.shape if shape is None else tuple(shape)
        super().__init__(TensorType(arr.dtype.name, shape), "input", name=name)
        self._value = None
        #: the value's copy in GPU memory, if a ``backend='cuda'`` function made one (it may be
        #: newer than ``_value``: reading the value copies it back; writing it invalidates it)
        self._device = None
        #: an expression tcomp.function uses as this variable's update when none is given
        self.default_update = None
        self._rw = RWLock()
        #: position in the global lock order
        self._seq = next(_seq)
        self._store(arr, borrow=True)

    def _store(self, value, borrow):
        """Check ``value`` and make it the storage (a copy unless ``borrow`` and it is
        already native-order, aligned, C-contiguous and writeable).  Caller holds the write
        lock (or the variable is not yet visible to other threads)."""
        label = self.name or "shared variable"
        if isinstance(value, Variable):
            raise TypeError(f"{label}: set_value needs a NumPy array, got a symbolic variable")
        if not (isinstance(value, np.ndarray) and value.dtype.name == self.dtype):
            from .io import filter_value  # Theano's rule: only lossless conversions

            value = filter_value(value, self.dtype, label, strict=self.strict, allow_downcast=self.allow_downcast)
        arr = np.asarray(value)
        _checked_kind(arr, label, self.dtype)
        want = np.dtype(self.dtype)
        if arr.dtype != want:  # the same dtype in non-native byte order
            arr = arr.astype(want)
            borrow = True
        if arr.ndim != self.ndim or any(isinstance(d, int) and d != s for d, s in zip(self.type.shape, arr.shape)):
            raise ValueError(f"{label}: expected shape {self.type}, got {arr.shape}")
        if not (borrow and arr.flags.c_contiguous and arr.flags.writeable and arr.flags.aligned):
            arr = np.array(arr, copy=True, order="C")
        self._value = arr
        if self._device is not None:
            self._device.host_written()

    def get_value(self, borrow=False, return_internal_type=False):
        """A copy of the value (taken under the read lock), or with ``borrow`` the storage.
        ``return_internal_type``: Theano's flag for GPU storage; tcomp's storage is always a
        NumPy array, so it changes nothing."""
        if borrow:
            if self._device is not None:
                self._device.to_host(self)
            return self._value
        how = acquire(self._rw, False, self.name)
        try:
            if self._device is not None:
                self._device.to_host(self)
            return self._value.copy()
        finally:
            release(self._rw, how)

    def set_value(self, value, borrow=False):
        """Store ``value`` (a copy unless ``borrow``).  As in Theano, a value of another
        dtype is converted only without loss (an int32 array into float64, a Python float
        into floatX); a float64 array into a float32 variable raises TypeError (cast it, or
        create the variable with ``allow_downcast=True``); with ``strict`` only an array of
        the exact dtype is accepted."""
        how = acquire(self._rw, True, self.name)
        try:
            self._store(value, borrow)
        finally:
            release(self._rw, how)

    def _assign_in_place(self, new):
        """Commit an update computed by a compiled function (same type, checked at build).
        The calling function holds this variable's write lock."""
        if new.shape == self._value.shape:
            np.copyto(self._value, new, casting="unsafe")
            if self._device is not None:
                self._device.host_written()
        else:
            self._store(new, borrow=True)

    @property
    def value(self):
        return self.get_value()

    def __getstate__(self):
        """Pickling/copying drops the lock (a new one is made on load) and the lock-order
        position (the loaded variable gets its own), and a GPU copy (the value is fetched from
        it first)."""
        if self._device is not None:
            self._device.to_host(self)
        cls_state, slots = super().__getstate__()
        slots.pop("_rw", None)
        slots.pop("_seq", None)
        slots.pop("_device", None)
        return (cls_state, slots)

    def __setstate__(self, state):
        _, slots = state
        for name, value in slots.items():
            object.__setattr__(self, name, value)
        self._rw = RWLock()
        self._seq = next(_seq)
        self._device = None
        for name, default in (("strict", False), ("allow_downcast", None)):
            if not hasattr(self, name):
                setattr(self, name, default)


def shared(value, name=None, borrow=False, shape=None, dtype=None, strict=False, allow_downcast=None,
           broadcastable=None) -> SharedVariable:
    """Create a shared variable holding (a copy of, unless ``borrow``) ``value``.  With
    ``borrow`` the array itself is kept only when compiled code can use it as it is
    (native byte order, aligned, C-contiguous, writeable); otherwise it is copied.

    ``strict``: ``value`` and every later ``set_value`` must be a NumPy array of exactly
    the variable's dtype (no conversion at all).  ``allow_downcast``: ``set_value`` casts
    any value, even with loss (Theano's option); default: lossless conversions only.
    A SciPy sparse matrix gives a sparse shared variable (``tcomp/sparse/shared.py``).

    ``broadcastable`` (Theano's): True dims are static 1, the others may change with
    ``set_value`` (the same as ``shape=`` with 1 and None entries)."""
    if broadcastable is not None:
        if shape is not None:
            raise TypeError(f"shared {name or ''}: give shape= or broadcastable=, not both")
        if len(broadcastable) != np.ndim(value):
            raise ValueError(f"shared {name or ''}: broadcastable {tuple(broadcastable)} has {len(broadcastable)} "
                             f"entries for a value of rank {np.ndim(value)}")
        shape = tuple(1 if b else None for b in broadcastable)
    if hasattr(value, "tocsr") and hasattr(value, "nnz") and not isinstance(value, np.ndarray):
        from .sparse.shared import sparse_shared

        return sparse_shared(value, name=name, borrow=borrow)
    s = SharedVariable(value, name=name, shape=shape, dtype=dtype, strict=strict, allow_downcast=allow_downcast)
    if (borrow and isinstance(value, np.ndarray) and value.dtype == np.dtype(s.dtype) and value.flags.c_contiguous
            and value.flags.aligned and value.flags.writeable and value.shape == s._value.shape):
        s._value = value
    return s
