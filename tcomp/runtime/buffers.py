"""Aligned NumPy buffers for native code, and a bounded cache of large output buffers.

Alignment: the generated loops may assume nothing about alignment (inputs come from users),
but every buffer tcomp allocates starts on a 64-byte boundary (a cache line, the widest
AVX-512 vector) so vector loads of owned memory never split cache lines.

Why a cache for large buffers: glibc serves an allocation above its mmap threshold (at most
32 MiB) with a fresh ``mmap`` and returns it with ``munmap`` on free, so every call that
returns a 64 MiB array made the kernel fault in and zero 64 MiB of new pages (NumPy asks
for transparent huge pages above 4 MiB: a few hundred faults, each clearing up to 2 MiB)
before the kernel that writes it could run.  Measured on the fused ``a*b + c*tanh(a)`` of
2^24 float32 (2-vCPU Zen 4, loaded, ``perf stat -e page-faults,system_time``): ~480 page
faults and 4.7 ms of system time per call; 17.0 -> 10.5 ms per call at one thread and
11.6 -> 8.0 at two with the cache.  Below the threshold malloc keeps freed memory in its
heap and reuses it itself, and a lease (~2.5 us of Python) measured 3-5 us slower per call
than a plain array for 1-16 MiB outputs, so only outputs of :data:`LARGE` bytes or more are
leased (an allocate-write-drop loop: 32 MiB 3.8 -> 2.2 ms, 64 MiB 6.8 -> 5.1 ms).

How memory handed to the user stays owned correctly: a large array is a view of a *lease*,
a ctypes object over one cached block (:class:`_Lease`); NumPy keeps the lease as the base
of the array and of every view made from it (``np.frombuffer``'s base; views of a view
point at the array, which points at the lease), so the lease lives exactly as long as any
array that can reach the memory.  Its ``__del__`` gives the block back to the cache, which
hands it out again only after that.  A block is never shared by two live leases.

Bounds: idle (given back, not leased) blocks are kept up to :func:`cache_limit` bytes
(``TCOMP_BUFFER_CACHE_MB``, default min(512 MiB, RAM / 8); 0 turns the cache off), least
recently given back evicted first; a block larger than the limit is freed at once.  Blocks
are reused by size class (1/8-octave steps, so at most 12.5% of a block is slack).

Threads: one lock around the free lists.  A lease can die on any thread, at any point (a
garbage collection run inside the cache's own critical section included): ``__del__`` takes
the lock unless the current thread already holds it, in which case the block is just freed
(never a deadlock, never a half-updated free list).  A forked child starts with a new lock
and an empty cache (the parent's lock may have been held by a thread the child lacks).
"""
from __future__ import annotations

import collections
import ctypes
import functools
import os
import threading

import numpy as np

ALIGNMENT = 64
#: bytes from which an output is leased from the cache: glibc maps every request of 32 MiB
#: or more afresh (its dynamic mmap threshold stops there) and, until a free raises that
#: threshold, smaller ones too; below 16 MiB its heap reuses freed memory as well as the cache
LARGE = 16 << 20
#: smallest size-class step
_MIN_STEP = 1 << 16


def aligned_empty(shape, dtype, align: int = ALIGNMENT) -> np.ndarray:
    """An uninitialized C-contiguous array whose data pointer is a multiple of ``align``
    (large ones, at the default alignment, leased from the buffer cache)."""
    dtype = np.dtype(dtype)
    shape = tuple(int(d) for d in shape)
    count = int(np.prod(shape, dtype=np.int64))
    if align == ALIGNMENT and count * dtype.itemsize >= LARGE and _cache.limit > 0:
        return lease(shape, count, dtype)
    nbytes = (count + 1) * dtype.itemsize  # one spare element: even an empty result keeps an aligned pointer
    raw = np.empty(nbytes + align, dtype=np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off:off + nbytes].view(dtype)[:count].reshape(shape)


def is_aligned(a: np.ndarray, align: int = ALIGNMENT) -> bool:
    return a.ctypes.data % align == 0


def size_class(nbytes: int) -> int:
    """The block size a request of ``nbytes`` is served from: rounded up to a multiple of
    1/8 of its power of two (at least 64 KiB)."""
    step = max(_MIN_STEP, 1 << max(0, int(nbytes).bit_length() - 4))
    return -(-int(nbytes) // step) * step


def _default_limit() -> int:
    env = os.environ.get("TCOMP_BUFFER_CACHE_MB")
    if env is not None and env.strip():
        try:
            mb = int(env)
        except ValueError:
            raise ValueError(f"TCOMP_BUFFER_CACHE_MB must be an integer number of MiB >= 0, got {env!r}") from None
        if mb < 0:
            raise ValueError(f"TCOMP_BUFFER_CACHE_MB must be >= 0, got {mb}")
        return mb << 20
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 4 << 30
    return min(512 << 20, ram // 8)


class BufferCache:
    """Idle large blocks by size class, bounded, least recently given back evicted first."""

    def __init__(self, limit: int):
        self.limit = int(limit)
        self._lock = threading.Lock()
        self._owner = None  # thread ident holding _lock (a lease dying inside is just freed)
        self._me = threading.get_ident
        #: size class -> idle blocks ``(raw, aligned address)``, most recently given back last
        self._free: dict = {}
        #: id(raw) -> (size class, block): every idle block in the order it was given back
        self._order: collections.OrderedDict = collections.OrderedDict()
        self.idle_bytes = 0
        self.stats = dict.fromkeys(("hits", "misses", "given_back", "evicted", "dropped"), 0)

    def _enter(self) -> bool:
        me = self._me()
        if self._owner == me:
            return False
        self._lock.acquire()
        self._owner = me
        return True

    def _exit(self) -> None:
        self._owner = None
        self._lock.release()

    def take(self, cls: int):
        """An idle block of size class ``cls``, or a new one."""
        blk = None
        if self._enter():
            try:
                idle = self._free.get(cls)
                if idle:
                    blk = idle.pop()
                    del self._order[id(blk[0])]
                    self.idle_bytes -= cls
                    self.stats["hits"] += 1
                else:
                    self.stats["misses"] += 1
            finally:
                self._exit()
        if blk is None:
            raw = np.empty(cls + ALIGNMENT, dtype=np.uint8)
            addr = raw.ctypes.data
            blk = (raw, addr + (-addr) % ALIGNMENT)
        return blk

    def give(self, cls: int, blk) -> None:
        """Keep ``blk`` for reuse (its lease is gone), evicting older blocks past the limit."""
        if not self._enter():  # a lease died inside this thread's own critical section
            return  # (dropping ``blk`` frees it)
        evicted = []
        try:
            if cls > self.limit:
                self.stats["dropped"] += 1
                return
            while self.idle_bytes + cls > self.limit and self._order:
                _, (c, old) = self._order.popitem(last=False)
                self._free[c].pop(0)  # a class's list is in give-back order too: ``old`` is its first
                self.idle_bytes -= c
                self.stats["evicted"] += 1
                evicted.append(old)
            self._free.setdefault(cls, []).append(blk)
            self._order[id(blk[0])] = (cls, blk)
            self.idle_bytes += cls
            self.stats["given_back"] += 1
        finally:
            self._exit()
        del evicted  # freed outside the lock

    def after_fork(self) -> None:
        """In a forked child: a new lock and empty lists (another thread of the parent may
        have held the lock, mid-update, at the fork; the child's leases come back here)."""
        self._lock = threading.Lock()
        self._owner = None
        self._free, self._order, self.idle_bytes = {}, collections.OrderedDict(), 0

    def clear(self) -> None:
        """Free every idle block."""
        if self._enter():
            try:
                self._free.clear()
                self._order.clear()
                self.idle_bytes = 0
            finally:
                self._exit()


_cache = BufferCache(_default_limit())
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_cache.after_fork)


class _Lease:
    """Mixin of the per-size-class ctypes array types: the owner of one leased block."""

    __slots__ = ()

    def __del__(self):
        try:
            self._pool.give(self._cls, self._blk)
        except Exception:  # interpreter shutdown: the block is simply freed
            pass


@functools.lru_cache(maxsize=512)
def _lease_type(cls: int):
    return type("TcompBuffer", (_Lease, ctypes.c_char * cls), {"__slots__": ("_pool", "_cls", "_blk")})


def lease(shape, count: int, dtype: np.dtype) -> np.ndarray:
    """A 64-byte aligned C array of ``shape`` (``count`` elements of ``dtype``) on a cached
    block; the block returns to the cache when no array that views it is left."""
    cls = size_class(count * dtype.itemsize)
    pool = _cache
    blk = pool.take(cls)
    owner = _lease_type(cls).from_address(blk[1])
    owner._pool, owner._cls, owner._blk = pool, cls, blk
    a = np.frombuffer(owner, dtype, count=count)
    return a if len(shape) == 1 else a.reshape(shape)


def enabled() -> bool:
    """Whether large arrays are leased from the cache (its limit is not 0)."""
    return _cache.limit > 0


def cache_limit() -> int:
    """Bytes of idle blocks the cache keeps."""
    return _cache.limit


def set_cache_limit(nbytes: int) -> None:
    """Keep at most ``nbytes`` of idle blocks (0: no cache; large arrays are plain NumPy)."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int):
        raise TypeError(f"buffer cache limit must be an int number of bytes, got {nbytes!r}")
    if nbytes < 0:
        raise ValueError(f"buffer cache limit must be >= 0, got {nbytes}")
    _cache.limit = nbytes
    if _cache.idle_bytes > nbytes:
        _cache.clear()


def cache_stats() -> dict:
    """Counters (hits, misses, blocks given back, evicted, dropped) and ``idle_bytes``."""
    return {**_cache.stats, "idle_bytes": _cache.idle_bytes, "limit": _cache.limit}


def clear_cache() -> None:
    """Free every idle block (leased ones return, and are kept, when their arrays die)."""
    _cache.clear()
