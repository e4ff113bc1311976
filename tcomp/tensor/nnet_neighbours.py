"""Theano's ``T.nnet.neighbours``: ``images2neibs`` (patches of a 4-d tensor as rows of a
matrix) and ``neibs2images`` (back), as reshapes and gathers.

The non-overlapping case (``neib_step`` = ``neib_shape``, Theano's default) is a reshape, so
mode 'valid' gets its size check from the reshape at run time; overlapping steps gather
rows and columns by index.
"""
from __future__ import annotations

from . import basic as B
from .variable import as_variable

MODES = ("valid", "ignore_borders")


def _pair(v, what):
    out = tuple(int(a) for a in v)
    if len(out) != 2 or min(out) < 1:
        raise ValueError(f"images2neibs: {what} must be two positive ints, got {v!r}")
    return out


def images2neibs(ten4, neib_shape, neib_step=None, mode="valid"):
    """Rows of ``a * b`` values: every (a, b) neighbourhood of every (batch, channel) image,
    images in order, neighbourhoods row-major, each flattened row-major.  ``mode``: 'valid'
    (the image must be covered exactly: a run-time error otherwise) or 'ignore_borders'
    (rows and columns that do not fill a neighbourhood are dropped)."""
    x = as_variable(ten4, "ten4")
    if x.ndim != 4:
        raise TypeError(f"images2neibs: ten4 must be 4-d, got {x.describe()}")
    a, b = _pair(neib_shape, "neib_shape")
    sa, sb = (a, b) if neib_step is None else _pair(neib_step, "neib_step")
    if mode not in MODES:
        raise ValueError(f"images2neibs: mode must be one of {MODES}, got {mode!r}")
    n, c, h, w = (B.shape_i(x, i) for i in range(4))
    rows, cols = (h - a) // sa + 1, (w - b) // sb + 1
    if (sa, sb) == (a, b):
        if mode == "ignore_borders":
            x = x[:, :, :rows * a, :cols * b]
        blocks = B.reshape(x, (n, c, h // a if mode == "valid" else rows, a, w // b if mode == "valid" else cols, b))
        return B.reshape(blocks.dimshuffle(0, 1, 2, 4, 3, 5), (-1, a * b))
    if mode == "valid":
        hs, ws = x.type.shape[2], x.type.shape[3]
        if not (isinstance(hs, int) and isinstance(ws, int)):
            raise ValueError("images2neibs: overlapping steps with mode='valid' need static image sizes "
                             f"(got {x.describe()}); use mode='ignore_borders'")
        if (hs - a) % sa or (ws - b) % sb:
            raise ValueError(f"images2neibs: neib_shape {(a, b)} with neib_step {(sa, sb)} does not cover "
                             f"the {hs}x{ws} images exactly (mode='valid')")
    r_idx = B.dimshuffle(B.arange(rows) * sa, (0, "x")) + B.dimshuffle(B.arange(a), ("x", 0))  # (rows, a)
    c_idx = B.dimshuffle(B.arange(cols) * sb, (0, "x")) + B.dimshuffle(B.arange(b), ("x", 0))  # (cols, b)
    patches = x[:, :, B.dimshuffle(r_idx, (0, "x", 1, "x")), B.dimshuffle(c_idx, ("x", 0, "x", 1))]
    return B.reshape(patches, (-1, a * b))  # (n, c, rows, cols, a, b) flattened


def neibs2images(neibs, neib_shape, original_shape, mode="valid"):
    """The inverse of a non-overlapping ``images2neibs`` (mode 'valid'): the images of shape
    ``original_shape`` rebuilt from their neighbourhood rows."""
    m = as_variable(neibs, "neibs")
    if m.ndim != 2:
        raise TypeError(f"neibs2images: neibs must be a matrix, got {m.describe()}")
    if mode != "valid":
        raise ValueError(f"neibs2images supports mode='valid' only, got {mode!r}")
    a, b = _pair(neib_shape, "neib_shape")
    shape = list(original_shape)
    if len(shape) != 4:
        raise ValueError(f"neibs2images: original_shape must have 4 entries, got {original_shape!r}")
    n, c, h, w = shape
    blocks = B.reshape(m, (n, c, h // a, w // b, a, b)).dimshuffle(0, 1, 2, 4, 3, 5)
    return B.reshape(blocks, (n, c, h, w))
