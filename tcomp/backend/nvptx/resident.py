"""Shared variables resident on the GPU between calls.

A ``backend='cuda'`` function that reads or updates a shared variable gives it a
:class:`DeviceCopy` (``var._device``, see ``tcomp/shared.py``): the value's device buffer,
owned by the variable (so every CUDA function using the variable sees the same copy) and
two flags saying which side is current.  A call uploads the value only when the host copy
is newer (first use, ``set_value``, an update committed by a CPU function); an update
computed on the GPU is *adopted*: its output buffer becomes the variable's buffer (no copy;
the old buffer goes back to the pool), and the host copy is marked stale.  ``get_value``
(also with ``borrow=True``) copies the value back first, once, so host code always sees the
current value; pickling a variable fetches it too.

Why no in-place donation on the GPU: updates are written into fresh pool buffers and
adopted only after the call's error word came back clean, so a call that fails (an index
out of bounds) leaves every shared value as it was, and all updates trivially see the old
values.  The pool makes the extra buffer free in the steady state (the adopted buffer's
predecessor is the next call's output buffer).
"""
from __future__ import annotations

import threading

import numpy as np


class DeviceCopy:
    """The device buffer of one shared variable on device ``dev`` (its pool owns the memory)."""

    __slots__ = ("dev", "pool", "ptr", "nbytes", "shape", "dtype", "device_current", "host_current", "lock")

    def __init__(self, dev, pool, dtype):
        self.dev, self.pool, self.dtype = dev, pool, np.dtype(dtype)
        self.ptr, self.nbytes, self.shape = None, 0, None
        self.device_current = False   # the buffer holds the variable's value
        self.host_current = True      # var._value holds it
        self.lock = threading.Lock()

    def device_ptr(self, var, stream=None) -> int:
        """The buffer holding the value, uploaded first if the host copy is newer.  The
        caller holds the variable's lock (read or write), as every call does."""
        with self.lock:
            if not self.device_current:
                host = var._value
                if self.ptr is None or self.nbytes != host.nbytes:
                    self._release()
                    self.ptr, self.nbytes = self.pool.get(host.nbytes), host.nbytes
                self.dev.htod(self.ptr, host.ctypes.data, host.nbytes, stream)
                if stream is not None:
                    stream.synchronize()  # the host array may change as soon as we return
                self.shape, self.device_current = host.shape, True
            return self.ptr

    def value_shape(self, var) -> tuple:
        return self.shape if self.device_current else var._value.shape

    def adopt(self, ptr: int, nbytes: int, shape) -> None:
        """A new value computed into ``ptr`` (a pool buffer) becomes the variable's value."""
        with self.lock:
            self._release()
            self.ptr, self.nbytes, self.shape = ptr, nbytes, tuple(shape)
            self.device_current, self.host_current = True, False

    def to_host(self, var) -> None:
        """Copy the value back into ``var``'s storage if the device copy is newer."""
        with self.lock:
            if self.host_current:
                return
            if var._value.shape == self.shape:
                self.dev.dtoh(var._value.ctypes.data, self.ptr, self.nbytes)
            else:  # an update changed the shape (non-static dims)
                arr = np.empty(self.shape, self.dtype)
                self.dev.dtoh(arr.ctypes.data, self.ptr, self.nbytes)
                var._store(arr, borrow=True)  # (its host_written call is undone below)
            self.host_current = self.device_current = True

    def host_written(self) -> None:
        """The host value changed (``set_value``, a CPU function's update): upload next time."""
        self.device_current, self.host_current = False, True

    def _release(self) -> None:
        if self.ptr is not None:
            self.pool.put(self.ptr, self.nbytes)
            self.ptr = None


def device_copy(var, dev, pool) -> DeviceCopy:
    """``var``'s copy on ``dev``, made on first use (a copy on another device is fetched
    back to the host and replaced)."""
    cur = var._device
    if cur is not None and cur.dev is dev:
        return cur
    if cur is not None:
        cur.to_host(var)
    var._device = DeviceCopy(dev, pool, var.dtype)
    return var._device


__all__ = ["DeviceCopy", "device_copy"]
