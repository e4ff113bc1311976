"""2-D pooling over the last two axes (Theano's ``pool_2d``) and its gradient ops.

Semantics follow ``theano.tensor.signal.pool.Pool`` exactly, so models port unchanged:

* ``ws=(KH, KW)`` window, ``stride`` (None means ``ws``), ``pad=(PH, PW)`` on both sides.
* Output length per axis, with ``v = size + 2*pad``:
  ``ignore_border=True``: ``max((v - k) // s + 1, 0)``;
  ``ignore_border=False``: ``(v - 1) // s + 1`` if ``s >= k`` else ``max(0, (v - 1 - k + s) // s) + 1``
  (a last, partial window is kept and clipped at the border).
* ``pad`` must be smaller than ``ws`` and non-zero ``pad`` needs ``ignore_border=True``
  (Theano's restrictions: they guarantee every window holds at least one real pixel).
* Modes: ``'max'`` and ``'sum'`` ignore the padding; ``'average_inc_pad'`` divides by the
  window clipped to the padded image (padding counts as zeros); ``'average_exc_pad'``
  divides by the number of real pixels in the window.  ``'average'`` is an alias of
  ``'average_exc_pad'`` (what Keras' Theano backend used for average pooling); use
  :func:`pool_mode` to canonicalize.

Gradients:

* ``pool2d_grad(x, gy)`` is the input gradient.  For ``'max'`` each window sends its
  output gradient to the position of its maximum; on ties the *first* maximum in
  row-major order within the window wins (Theano's CPU ``MaxPoolGrad`` instead gives
  every tied maximum the full gradient; one winner makes the gradient the exact
  derivative of the function almost everywhere and matches cuDNN/PyTorch).  Overlapping
  windows add up.  For the sum/average modes the gradient is spread over the window
  (divided by the same count as the forward pass).
* ``pool2d_grad_grad(x, g)`` is the transpose of ``pool2d_grad`` in ``gy`` (its VJP, for
  second derivatives): for ``'max'`` it gathers ``g`` at each window's arg-max, for the
  other modes it equals ``pool2d(g)``.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..types import TensorType
from .conv import int_pair, windows
from .registry import OpDef, register

POOL_MODES = ("max", "sum", "average_inc_pad", "average_exc_pad")
POOL_ATTRS = {"ws": (2, 2), "stride": None, "pad": (0, 0), "mode": "max", "ignore_border": True}


def pool_mode(mode: str) -> str:
    """The canonical mode name ('average' -> 'average_exc_pad')."""
    if mode == "average":
        return "average_exc_pad"
    if mode not in POOL_MODES:
        raise ValueError(f"pool2d: mode must be one of {POOL_MODES + ('average',)}, got {mode!r}")
    return mode


def pool_params(op: str, attrs: dict) -> tuple:
    """(ws, stride, pad, mode, ignore_border), validated, with stride None resolved to ws."""
    ws = int_pair(op, "ws", attrs["ws"], 1)
    stride = ws if attrs["stride"] is None else int_pair(op, "stride", attrs["stride"], 1)
    pad = int_pair(op, "pad", attrs["pad"], 0)
    mode = pool_mode(attrs["mode"])
    ignore_border = attrs["ignore_border"]
    if not isinstance(ignore_border, (bool, np.bool_)):
        raise ValueError(f"{op}: attribute ignore_border must be a bool, got {ignore_border!r}")
    if pad[0] >= ws[0] or pad[1] >= ws[1]:
        raise ValueError(f"{op}: pad {pad} must be smaller than the window ws {ws}")
    if pad != (0, 0) and not ignore_border:
        raise ValueError(f"{op}: non-zero pad {pad} needs ignore_border=True (as in Theano)")
    return ws, stride, pad, mode, bool(ignore_border)


def pool_out_dim(size, k: int, stride: int, pad: int, ignore_border: bool):
    """Output length along one axis (Theano's ``Pool.out_shape``); None when ``size`` is symbolic."""
    if not isinstance(size, int):
        return None
    v = size + 2 * pad
    if ignore_border:
        return max((v - k) // stride + 1, 0)
    if stride >= k:
        return (v - 1) // stride + 1
    return max(0, (v - 1 - k + stride) // stride) + 1


# -- NumPy reference -------------------------------------------------------------------------

class _Layout:
    """Geometry shared by the forward and gradient references of one pooling call.

    The image sits at ``[PH:PH+H, PW:PW+W]`` of a buffer large enough for every window,
    including the partial ones of ``ignore_border=False``.
    """

    def __init__(self, hw, ws, stride, pad, ignore_border, mode):
        self.hw, self.ws, self.stride, self.pad, self.mode = tuple(hw), ws, stride, pad, mode
        self.out = tuple(pool_out_dim(int(hw[i]), ws[i], stride[i], pad[i], ignore_border) for i in range(2))
        padded = tuple(hw[i] + 2 * pad[i] for i in range(2))
        self.padded = padded
        self.ext = tuple(max(padded[i], (self.out[i] - 1) * stride[i] + ws[i]) for i in range(2))

    @property
    def empty(self) -> bool:
        return self.out[0] == 0 or self.out[1] == 0

    def buffer(self, x: np.ndarray, fill) -> np.ndarray:
        buf = np.full(x.shape[:-2] + self.ext, fill, dtype=x.dtype)
        buf[..., self.pad[0]:self.pad[0] + self.hw[0], self.pad[1]:self.pad[1] + self.hw[1]] = x
        return buf

    def crop(self, buf: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(buf[..., self.pad[0]:self.pad[0] + self.hw[0],
                                        self.pad[1]:self.pad[1] + self.hw[1]])

    def windows(self, buf: np.ndarray) -> np.ndarray:
        return windows(buf, self.ws, self.out, self.stride, (1, 1))

    def counts(self) -> np.ndarray:
        """(OH, OW) divisor of each window: 1 for 'sum', the clipped window size otherwise."""
        if self.mode == "sum":
            return np.ones(self.out, dtype=np.int64)
        mask = np.zeros(self.ext, dtype=np.int64)
        if self.mode == "average_inc_pad":
            mask[:self.padded[0], :self.padded[1]] = 1
        else:
            mask[self.pad[0]:self.pad[0] + self.hw[0], self.pad[1]:self.pad[1] + self.hw[1]] = 1
        return self.windows(mask).sum(axis=(-2, -1))

    def argmax_flat(self, x: np.ndarray) -> np.ndarray:
        """Flat buffer index, per window, of the first maximum (shape (L, OH, OW), L = leading size)."""
        lead = int(np.prod(x.shape[:-2], dtype=np.int64))
        buf = self.buffer(x.reshape((lead,) + tuple(self.hw)), _lowest(x.dtype))
        win = self.windows(buf).reshape((lead,) + self.out + (self.ws[0] * self.ws[1],))
        k = np.argmax(win, axis=-1)
        rows = np.arange(self.out[0]).reshape(1, -1, 1) * self.stride[0] + k // self.ws[1]
        cols = np.arange(self.out[1]).reshape(1, 1, -1) * self.stride[1] + k % self.ws[1]
        base = np.arange(lead).reshape(-1, 1, 1) * (self.ext[0] * self.ext[1])
        return base + rows * self.ext[1] + cols


def _lowest(dtype):
    d = np.dtype(dtype)
    if d.kind == "f":
        return -np.inf
    return np.iinfo(d).min


def pool2d_reference(x, ws, stride, pad, mode, ignore_border, dtype):
    lay = _Layout(x.shape[-2:], ws, stride, pad, ignore_border, mode)
    out_shape = x.shape[:-2] + lay.out
    if lay.empty or x.size == 0:
        return np.zeros(out_shape, dtype=dtype)
    if mode == "max":
        return np.ascontiguousarray(lay.windows(lay.buffer(x, _lowest(x.dtype))).max(axis=(-2, -1))).astype(dtype)
    xs = x.astype(dtype, copy=False)
    s = lay.windows(lay.buffer(xs, 0)).sum(axis=(-2, -1), dtype=dtype)
    if mode == "sum":
        return s
    return (s / lay.counts()).astype(dtype, copy=False)


def pool2d_grad_reference(x, gy, ws, stride, pad, mode, ignore_border, dtype):
    lay = _Layout(x.shape[-2:], ws, stride, pad, ignore_border, mode)
    _check_gy("pool2d_grad", gy.shape, x.shape[:-2] + lay.out)
    gy = gy.astype(dtype, copy=False)
    if lay.empty or x.size == 0:
        return np.zeros(x.shape, dtype=dtype)
    lead = x.shape[:-2]
    if mode == "max":
        flat = lay.argmax_flat(x)
        nbuf = flat.shape[0] * lay.ext[0] * lay.ext[1]
        g = np.bincount(flat.ravel(), weights=gy.ravel().astype(np.float64), minlength=nbuf)
        return lay.crop(g.reshape(lead + lay.ext)).astype(dtype)
    scaled = gy / lay.counts().astype(dtype)
    gbuf = np.zeros(lead + lay.ext, dtype=dtype)
    (kh, kw), (sh, sw), (oh, ow) = lay.ws, lay.stride, lay.out
    for a in range(kh):  # one strided slab per window tap, never a loop over pixels
        for b in range(kw):
            gbuf[..., a:a + sh * (oh - 1) + 1:sh, b:b + sw * (ow - 1) + 1:sw] += scaled
    return lay.crop(gbuf)


def pool2d_grad_grad_reference(x, g, ws, stride, pad, mode, ignore_border, dtype):
    lay = _Layout(x.shape[-2:], ws, stride, pad, ignore_border, mode)
    if g.shape != x.shape:
        raise ValueError(f"pool2d_grad_grad: g has shape {g.shape} but x has {x.shape}")
    out_shape = x.shape[:-2] + lay.out
    if lay.empty or x.size == 0:
        return np.zeros(out_shape, dtype=dtype)
    if mode != "max":
        return pool2d_reference(g.astype(dtype, copy=False), ws, stride, pad, mode, ignore_border, dtype)
    flat = lay.argmax_flat(x)
    gbuf = lay.buffer(g.astype(dtype, copy=False).reshape((flat.shape[0],) + tuple(lay.hw)), 0)
    return gbuf.ravel()[flat].reshape(out_shape)


def _check_gy(op, have, want):
    if tuple(have) != tuple(want):
        raise ValueError(f"{op}: output gradient has shape {tuple(have)} but pooling gives {tuple(want)}")


# -- type rules ----------------------------------------------------------------------------------

def _pooled_shape(t: TensorType, ws, stride, pad, ignore_border) -> tuple:
    hw = tuple(pool_out_dim(t.shape[-2 + i], ws[i], stride[i], pad[i], ignore_border) for i in range(2))
    return t.shape[:-2] + hw


def _check_x(op, t: TensorType):
    if t.ndim < 2:
        raise ValueError(f"{op}: input must have at least 2 dims (pooling is over the last two), got {t}")
    if t.dtype == dt.BOOL:
        raise TypeError(f"{op}: input must be numeric, got {t}")


def _pool2d_infer(types, attrs):
    (x,) = types
    ws, stride, pad, mode, ib = pool_params("pool2d", attrs)
    _check_x("pool2d", x)
    dtype = x.dtype if mode in ("max", "sum") or dt.is_float(x.dtype) else dt.canonical("floatX")
    return TensorType(dtype, _pooled_shape(x, ws, stride, pad, ib))


def _pool2d_impl(arrays, attrs, out_type):
    ws, stride, pad, mode, ib = pool_params("pool2d", attrs)
    return pool2d_reference(arrays[0], ws, stride, pad, mode, ib, out_type.dtype)


def _grad_infer(op: str, gradient_of_input: bool):
    """Type rule of the gradient ops: pool2d_grad(x, gy) -> like x; pool2d_grad_grad(x, g) -> like pool2d(x)."""
    def infer(types, attrs):
        x, g = types
        ws, stride, pad, mode, ib = pool_params(op, attrs)
        _check_x(op, x)
        if not dt.is_float(x.dtype):
            raise TypeError(f"{op}: input must be a float tensor, got {x}")
        pooled = _pooled_shape(x, ws, stride, pad, ib)
        want, out = (pooled, x.shape) if gradient_of_input else (x.shape, pooled)
        if g.ndim != len(want) or any(isinstance(a, int) and isinstance(b, int) and a != b
                                      for a, b in zip(g.shape, want)):
            raise ValueError(f"{op}: second operand {g} does not match the expected shape "
                             f"[{', '.join('?' if d is None else str(d) for d in want)}] for input {x}")
        if not dt.is_float(g.dtype):
            raise TypeError(f"{op}: gradient operand must be a float tensor, got {g}")
        return TensorType(x.dtype, out)
    return infer


def _grad_impl(arrays, attrs, out_type):
    ws, stride, pad, mode, ib = pool_params("pool2d_grad", attrs)
    return pool2d_grad_reference(arrays[0], arrays[1], ws, stride, pad, mode, ib, out_type.dtype)


def _grad_grad_impl(arrays, attrs, out_type):
    ws, stride, pad, mode, ib = pool_params("pool2d_grad_grad", attrs)
    return pool2d_grad_grad_reference(arrays[0], arrays[1], ws, stride, pad, mode, ib, out_type.dtype)


register(OpDef("pool2d", 1, _pool2d_infer, _pool2d_impl, attr_defaults=dict(POOL_ATTRS), kind="nnet",
               doc="Theano's pool_2d over the last two axes: modes max, sum, average_inc_pad, "
                   "average_exc_pad ('average' = average_exc_pad)"))
register(OpDef("pool2d_grad", 2, _grad_infer("pool2d_grad", True), _grad_impl,
               attr_defaults=dict(POOL_ATTRS), kind="nnet",
               doc="pool2d_grad(x, gy): input gradient of pool2d (max: first arg-max of each window wins)"))
register(OpDef("pool2d_grad_grad", 2, _grad_infer("pool2d_grad_grad", False), _grad_grad_impl,
               attr_defaults=dict(POOL_ATTRS), kind="nnet",
               doc="pool2d_grad_grad(x, g): transpose of pool2d_grad in gy (max: gather g at each arg-max)"))
