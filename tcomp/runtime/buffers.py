"""Aligned NumPy buffers for native code.

The generated loops may assume nothing about alignment (inputs come from users), but
every buffer tcomp allocates starts on a 64-byte boundary (a cache line, the widest AVX-512
vector) so vector loads of owned memory never split cache lines.
"""
from __future__ import annotations

import numpy as np

ALIGNMENT = 64


def aligned_empty(shape, dtype, align: int = ALIGNMENT) -> np.ndarray:
    """An uninitialized C-contiguous array whose data pointer is a multiple of ``align``."""
    dtype = np.dtype(dtype)
    shape = tuple(int(d) for d in shape)
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = (count + 1) * dtype.itemsize  # one spare element: even an empty result keeps an aligned pointer
    raw = np.empty(nbytes + align, dtype=np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off:off + nbytes].view(dtype)[:count].reshape(shape)


def is_aligned(a: np.ndarray, align: int = ALIGNMENT) -> bool:
    return a.ctypes.data % align == 0
