"""The CUDA driver API through ctypes (``libcuda.so.1``): just what running a kernel program
needs.

Why ctypes and not NVIDIA's ``cuda-bindings``: the driver library ships with every NVIDIA
driver, so this needs nothing installed beyond the driver itself (the point of the issue:
no toolkit, no nvcc, no extra wheel at run time); the dozen entry points used here are
stable C ABI (the ``_v2`` names since CUDA 4), and the PTX is JIT-compiled by the driver
(``cuModuleLoadDataEx``) with its error log surfaced in the exception.

Everything is lazy: importing this module touches no library; the first :func:`device` call
loads ``libcuda.so.1``, initializes it and retains the primary context of device 0.  On a
machine without a driver that call raises :class:`CudaUnavailable` (a ``RuntimeError``)
naming what was missing.
"""
from __future__ import annotations

import ctypes
import threading

_lib = None
_lock = threading.Lock()
_device = None

# CUjit_option values (cuda.h)
_JIT_INFO_LOG_BUFFER, _JIT_INFO_LOG_SIZE, _JIT_ERROR_LOG_BUFFER, _JIT_ERROR_LOG_SIZE = 3, 4, 5, 6
# CUdevice_attribute values
_ATTR_SM_COUNT, _ATTR_CC_MAJOR, _ATTR_CC_MINOR = 16, 75, 76


class CudaUnavailable(RuntimeError):
    """No usable CUDA driver or device on this machine."""


class CudaError(RuntimeError):
    """A CUDA driver call failed (the message names the call and the driver's reason)."""


def _load():
    global _lib
    if _lib is None:
        try:
            _lib = ctypes.CDLL("libcuda.so.1")
        except OSError as e:
            raise CudaUnavailable(f"backend='cuda' needs the NVIDIA driver: libcuda.so.1 could not be loaded ({e}); "
                                  "fn.dump('ptx') works without one") from None
    return _lib


def _name(code: int) -> str:
    s = ctypes.c_char_p()
    if _lib is not None and _lib.cuGetErrorString(code, ctypes.byref(s)) == 0 and s.value:
        return s.value.decode()
    return f"CUDA error {code}"


def check(code: int, what: str) -> None:
    if code != 0:
        raise CudaError(f"{what} failed: {_name(code)} ({code})")


class Device:
    """Device 0 with its primary context current in the calling thread."""

    def __init__(self):
        lib = _load()
        rc = lib.cuInit(0)
        if rc != 0:
            raise CudaUnavailable(f"cuInit failed: {_name(rc)} ({rc}); no usable NVIDIA GPU")
        self.lib = lib
        dev = ctypes.c_int()
        check(lib.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
        self.handle = dev.value
        ctx = ctypes.c_void_p()
        check(lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), self.handle), "cuDevicePrimaryCtxRetain")
        self.ctx = ctx
        self.make_current()
        self.arch = f"sm_{self.attribute(_ATTR_CC_MAJOR)}{self.attribute(_ATTR_CC_MINOR)}"
        self.sm_count = self.attribute(_ATTR_SM_COUNT)
        lib.cuLaunchKernel.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 6 + [ctypes.c_uint, ctypes.c_void_p,
                                                                                   ctypes.c_void_p, ctypes.c_void_p]
        for f in ("cuMemcpyHtoD_v2", "cuMemcpyHtoDAsync_v2"):
            getattr(lib, f).argtypes = [ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t] + \
                ([ctypes.c_void_p] if "Async" in f else [])
        for f in ("cuMemcpyDtoH_v2", "cuMemcpyDtoHAsync_v2"):
            getattr(lib, f).argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t] + \
                ([ctypes.c_void_p] if "Async" in f else [])
        lib.cuMemFree_v2.argtypes = [ctypes.c_uint64]
        lib.cuMemAlloc_v2.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.c_size_t]
        lib.cuMemsetD8_v2.argtypes = [ctypes.c_uint64, ctypes.c_ubyte, ctypes.c_size_t]

    def make_current(self) -> None:
        check(self.lib.cuCtxSetCurrent(self.ctx), "cuCtxSetCurrent")

    def attribute(self, attr: int) -> int:
        v = ctypes.c_int()
        check(self.lib.cuDeviceGetAttribute(ctypes.byref(v), attr, self.handle), "cuDeviceGetAttribute")
        return v.value

    # -- memory --------------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> int:
        p = ctypes.c_uint64()
        check(self.lib.cuMemAlloc_v2(ctypes.byref(p), max(int(nbytes), 1)), f"cuMemAlloc({nbytes})")
        return p.value

    def free(self, ptr: int) -> None:
        check(self.lib.cuMemFree_v2(ptr), "cuMemFree")

    def htod(self, dst: int, host_ptr: int, nbytes: int, stream=None) -> None:
        if nbytes:
            if stream is None:
                check(self.lib.cuMemcpyHtoD_v2(dst, host_ptr, nbytes), "cuMemcpyHtoD")
            else:
                check(self.lib.cuMemcpyHtoDAsync_v2(dst, host_ptr, nbytes, stream.handle), "cuMemcpyHtoDAsync")

    def dtoh(self, host_ptr: int, src: int, nbytes: int, stream=None) -> None:
        if nbytes:
            if stream is None:
                check(self.lib.cuMemcpyDtoH_v2(host_ptr, src, nbytes), "cuMemcpyDtoH")
            else:
                check(self.lib.cuMemcpyDtoHAsync_v2(host_ptr, src, nbytes, stream.handle), "cuMemcpyDtoHAsync")

    def memset(self, dst: int, byte: int, nbytes: int) -> None:
        check(self.lib.cuMemsetD8_v2(dst, byte, nbytes), "cuMemsetD8")

    # -- modules and launches -------------------------------------------------------------------
    def load_module(self, ptx: str) -> "Module":
        return Module(self, ptx)

    def stream(self) -> "Stream":
        return Stream(self)

    def synchronize(self) -> None:
        check(self.lib.cuCtxSynchronize(), "cuCtxSynchronize")


class Stream:
    def __init__(self, dev: Device):
        self.dev = dev
        h = ctypes.c_void_p()
        check(dev.lib.cuStreamCreate(ctypes.byref(h), 0), "cuStreamCreate")
        self.handle = h

    def synchronize(self) -> None:
        check(self.dev.lib.cuStreamSynchronize(self.handle), "cuStreamSynchronize")


class Module:
    """PTX JIT-compiled by the driver; a failure raises CudaError with the JIT's error log."""

    def __init__(self, dev: Device, ptx: str):
        self.dev = dev
        size = 1 << 14
        err, info = ctypes.create_string_buffer(size), ctypes.create_string_buffer(size)
        opts = (ctypes.c_int * 4)(_JIT_ERROR_LOG_BUFFER, _JIT_ERROR_LOG_SIZE, _JIT_INFO_LOG_BUFFER, _JIT_INFO_LOG_SIZE)
        vals = (ctypes.c_void_p * 4)(ctypes.cast(err, ctypes.c_void_p), ctypes.c_void_p(size),
                                     ctypes.cast(info, ctypes.c_void_p), ctypes.c_void_p(size))
        h = ctypes.c_void_p()
        data = ptx.encode() + b"\0"
        rc = dev.lib.cuModuleLoadDataEx(ctypes.byref(h), data, 4, opts, vals)
        if rc != 0:
            raise CudaError(f"cuModuleLoadDataEx failed: {_name(rc)} ({rc}); JIT log:\n"
                            f"{err.value.decode(errors='replace')}")
        self.handle = h
        self.info_log = info.value.decode(errors="replace")

    def function(self, name: str) -> "Kernel":
        f = ctypes.c_void_p()
        check(self.dev.lib.cuModuleGetFunction(ctypes.byref(f), self.handle, name.encode()),
              f"cuModuleGetFunction({name})")
        return Kernel(self.dev, f, name)


class Kernel:
    def __init__(self, dev, handle, name):
        self.dev, self.handle, self.name = dev, handle, name

    def launch(self, grid: int, block: int, args, stream=None) -> None:
        """``args``: device addresses (u64), passed as the kernel's pointer parameters."""
        holders = [ctypes.c_uint64(a) for a in args]
        arr = (ctypes.c_void_p * len(holders))(*[ctypes.cast(ctypes.byref(h), ctypes.c_void_p) for h in holders])
        check(self.dev.lib.cuLaunchKernel(self.handle, grid, 1, 1, block, 1, 1, 0,
                                          stream.handle if stream is not None else None, arr, None),
              f"cuLaunchKernel({self.name}, grid={grid}, block={block})")


def device() -> Device:
    """The process's device (created on first use); raises CudaUnavailable without a driver."""
    global _device
    with _lock:
        if _device is None:
            _device = Device()
        _device.make_current()
        return _device


def available() -> bool:
    try:
        device()
        return True
    except CudaUnavailable:
        return False


class MemoryPool:
    """Device allocations reused across calls: freed blocks go to a free list by exact size
    (a program's sizes repeat call after call, so steady-state calls allocate nothing)."""

    def __init__(self, dev: Device):
        self.dev = dev
        self.free_lists: dict = {}
        self.allocated = 0   # bytes ever allocated from the driver

    def get(self, nbytes: int) -> int:
        nbytes = max(int(nbytes), 1)
        lst = self.free_lists.get(nbytes)
        if lst:
            return lst.pop()
        self.allocated += nbytes
        return self.dev.alloc(nbytes)

    def put(self, ptr: int, nbytes: int) -> None:
        self.free_lists.setdefault(max(int(nbytes), 1), []).append(ptr)


__all__ = ["device", "available", "Device", "Module", "Kernel", "Stream", "MemoryPool", "CudaUnavailable",
           "CudaError"]
