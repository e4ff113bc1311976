"""2-D convolution (NCHW) and its two gradient ops, kept whole as ops.

Why whole ops and not a lowering into gemm + reshapes in the graph: backends want to
pick the algorithm (im2col + gemm, direct, Winograd) and the autodiff wants gradients it
can state exactly, so ``conv2d``, ``conv2d_grad_input`` and ``conv2d_grad_filters`` are
rows of the op table with a NumPy reference each.

Semantics (Theano's ``conv2d`` with ``border_mode`` already turned into ``pad``):

    input    x : (N, C, H, W)            filters w : (O, C, KH, KW)
    wk = w[:, :, ::-1, ::-1] if filter_flip else w      (flip = true convolution)
    xp = x zero-padded by pad=(PH, PW) on both sides of H and W
    y[n, o, i, j] = sum_{c, a, b} xp[n, c, i*SH + a*DH, j*SW + b*DW] * wk[o, c, a, b]
    OH = (H + 2*PH - DH*(KH-1) - 1) // SH + 1     (same for OW)

The DSL maps ``border_mode``: 'valid' -> (0, 0), 'full' -> (DH*(KH-1), DW*(KW-1)),
'half'/'same' -> (DH*(KH//2), DW*(KW//2)), a tuple -> itself.

The gradient ops are the two transposes of that bilinear map; they need the spatial size
of the tensor they rebuild as an attribute, because with a stride the output size does
not determine it (floor division).  Like ``reshape``/``alloc``, an attribute entry
``None`` is filled, in order, from extra int scalar operands at run time.

Pooling (``pool2d`` and its gradient ops) lives in :mod:`.pool`.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import dtypes as dt
from ..types import TensorType, dims_may_match
from .registry import OpDef, register
from .shape import dims_from_attr

CONV_ATTRS = {"pad": (0, 0), "stride": (1, 1), "dilation": (1, 1), "filter_flip": True}


# -- attribute and type checks ----------------------------------------------------------

def int_pair(op: str, attr: str, value, minimum: int) -> tuple:
    """Validate an attribute that must be two ints >= ``minimum``; returns it as a tuple."""
    try:
        pair = tuple(value)
    except TypeError:
        pair = None
    if (pair is None or len(pair) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair)):
        raise ValueError(f"{op}: attribute {attr} must be a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{op}: attribute {attr} must be >= {minimum}, got {pair}")
    return tuple(int(v) for v in pair)


def conv_params(op: str, attrs: dict) -> tuple:
    """(pad, stride, dilation) of a conv op's attrs, validated."""
    pad = int_pair(op, "pad", attrs["pad"], 0)
    stride = int_pair(op, "stride", attrs["stride"], 1)
    dilation = int_pair(op, "dilation", attrs["dilation"], 1)
    if not isinstance(attrs["filter_flip"], (bool, np.bool_)):
        raise ValueError(f"{op}: attribute filter_flip must be a bool, got {attrs['filter_flip']!r}")
    return pad, stride, dilation


def conv_out_dim(size, k, pad, stride, dilation):
    """Output length along one axis, or None when the input or kernel length is symbolic."""
    if not isinstance(size, int) or not isinstance(k, int):
        return None
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def _check_rank4(op: str, what: str, t: TensorType) -> None:
    if t.ndim != 4:
        raise ValueError(f"{op}: {what} must be 4-d, got {t}")


def _float_result(op: str, *types) -> str:
    out = dt.promote_types(*(t.dtype for t in types))
    if not dt.is_float(out):
        raise TypeError(f"{op}: operands must include a float tensor, got {', '.join(str(t) for t in types)}")
    return out


def _check_fits(op: str, x_shape, k_shape, pad, dilation, what_x="input", what_k="filters") -> None:
    for axis, (size, k, p, d) in enumerate(zip(x_shape, k_shape, pad, dilation)):
        if isinstance(size, int) and isinstance(k, int) and d * (k - 1) + 1 > size + 2 * p:
            raise ValueError(f"{op}: {what_k} extent {d * (k - 1) + 1} (kernel {k}, dilation {d}) on spatial axis "
                             f"{axis} is larger than the padded {what_x} ({size} + 2*{p})")


def _check_dim_operands(op: str, types, start: int, shape_attr, attr: str) -> tuple:
    for i, t in enumerate(types[start:]):
        if t.ndim != 0 or not dt.is_int(t.dtype):
            raise TypeError(f"{op}: dim operand {i} must be an integer scalar, got {t}")
    shape = tuple(shape_attr)
    if len(shape) != 2 or not all(d is None or (isinstance(d, int) and d >= 1) for d in shape):
        raise ValueError(f"{op}: attribute {attr} must be two positive ints or None, got {shape_attr!r}")
    if sum(d is None for d in shape) != len(types) - start:
        raise ValueError(f"{op}: {attr} {shape} needs {sum(d is None for d in shape)} dim operands, "
                         f"got {len(types) - start}")
    return shape


# -- the NumPy reference ------------------------------------------------------------------

def windows(xp: np.ndarray, k: tuple, out: tuple, stride: tuple, dilation: tuple) -> np.ndarray:
    """Read-only view (..., OH, OW, KH, KW) of the last two axes of ``xp``: no copy, no loop.

    ``windows[..., i, j, a, b] = xp[..., i*SH + a*DH, j*SW + b*DW]``.
    """
    s_h, s_w = xp.strides[-2:]
    shape = xp.shape[:-2] + (out[0], out[1], k[0], k[1])
    strides = xp.strides[:-2] + (s_h * stride[0], s_w * stride[1], s_h * dilation[0], s_w * dilation[1])
    return as_strided(xp, shape=shape, strides=strides, writeable=False)


def _pad_hw(x: np.ndarray, pad: tuple) -> np.ndarray:
    if pad == (0, 0):
        return x
    return np.pad(x, ((0, 0),) * (x.ndim - 2) + ((pad[0], pad[0]), (pad[1], pad[1])))


def _kernel(w: np.ndarray, flip: bool) -> np.ndarray:
    return w[:, :, ::-1, ::-1] if flip else w


def _runtime_check(op: str, x_shape, w_shape) -> None:
    if x_shape[1] != w_shape[1]:
        raise ValueError(f"{op}: input has {x_shape[1]} channels but filters expect {w_shape[1]} "
                         f"(input {x_shape}, filters {w_shape})")


def conv2d_reference(x, w, pad, stride, dilation, filter_flip, dtype):
    """y = conv2d(x, w): a strided window view contracted with the kernel by one tensordot."""
    _runtime_check("conv2d", x.shape, w.shape)
    x = x.astype(dtype, copy=False)
    w = w.astype(dtype, copy=False)
    kh, kw = w.shape[2:]
    oh = conv_out_dim(x.shape[2], kh, pad[0], stride[0], dilation[0])
    ow = conv_out_dim(x.shape[3], kw, pad[1], stride[1], dilation[1])
    if oh < 1 or ow < 1:
        raise ValueError(f"conv2d: filters {w.shape} (dilation {dilation}) do not fit the input {x.shape} "
                         f"padded by {pad}")
    win = windows(_pad_hw(x, pad), (kh, kw), (oh, ow), stride, dilation)  # (N, C, OH, OW, KH, KW)
    y = np.tensordot(win, _kernel(w, filter_flip), axes=([1, 4, 5], [1, 2, 3]))  # (N, OH, OW, O)
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))


def conv2d_grad_input_reference(gy, w, in_hw, pad, stride, dilation, filter_flip, dtype):
    """dx of <gy, conv2d(x, w)>: scatter-add of gy (x) kernel, one slab per kernel tap."""
    gy = gy.astype(dtype, copy=False)
    w = w.astype(dtype, copy=False)
    n, o, oh, ow = gy.shape
    if w.shape[0] != o:
        raise ValueError(f"conv2d_grad_input: output gradient has {o} channels but filters have {w.shape[0]}")
    kh, kw = w.shape[2:]
    _check_out_matches("conv2d_grad_input", in_hw, (kh, kw), (oh, ow), pad, stride, dilation)
    cols = np.tensordot(gy, _kernel(w, filter_flip), axes=([1], [0]))  # (N, OH, OW, C, KH, KW)
    cols = cols.transpose(0, 3, 4, 5, 1, 2)  # (N, C, KH, KW, OH, OW)
    hp, wp = in_hw[0] + 2 * pad[0], in_hw[1] + 2 * pad[1]
    gxp = np.zeros((n, w.shape[1], hp, wp), dtype=dtype)
    for a in range(kh):  # loops over kernel taps only; each step is a whole strided slab
        r0 = a * dilation[0]
        for b in range(kw):
            c0 = b * dilation[1]
            gxp[:, :, r0:r0 + stride[0] * (oh - 1) + 1:stride[0], c0:c0 + stride[1] * (ow - 1) + 1:stride[1]] += \
                cols[:, :, a, b]
    return np.ascontiguousarray(gxp[:, :, pad[0]:pad[0] + in_hw[0], pad[1]:pad[1] + in_hw[1]])


def conv2d_grad_filters_reference(x, gy, k_hw, pad, stride, dilation, filter_flip, dtype):
    """dw of <gy, conv2d(x, w)>: the window view contracted with gy over batch and pixels."""
    x = x.astype(dtype, copy=False)
    gy = gy.astype(dtype, copy=False)
    if x.shape[0] != gy.shape[0]:
        raise ValueError(f"conv2d_grad_filters: input batch {x.shape[0]} != output-gradient batch {gy.shape[0]}")
    oh, ow = gy.shape[2:]
    _check_out_matches("conv2d_grad_filters", x.shape[2:], k_hw, (oh, ow), pad, stride, dilation)
    win = windows(_pad_hw(x, pad), k_hw, (oh, ow), stride, dilation)  # (N, C, OH, OW, KH, KW)
    gw = np.tensordot(gy, win, axes=([0, 2, 3], [0, 2, 3]))  # (O, C, KH, KW)
    return np.ascontiguousarray(_kernel(gw, filter_flip))


def _check_out_matches(op, in_hw, k_hw, out_hw, pad, stride, dilation):
    for axis in range(2):
        want = conv_out_dim(int(in_hw[axis]), int(k_hw[axis]), pad[axis], stride[axis], dilation[axis])
        if want != out_hw[axis]:
            raise ValueError(f"{op}: spatial axis {axis}: input {in_hw[axis]}, kernel {k_hw[axis]}, pad {pad[axis]}, "
                             f"stride {stride[axis]}, dilation {dilation[axis]} give {want} outputs, "
                             f"but the output gradient has {out_hw[axis]}")


# -- conv2d -----------------------------------------------------------------------------------

def _conv2d_infer(types, attrs):
    x, w = types
    pad, stride, dilation = conv_params("conv2d", attrs)
    _check_rank4("conv2d", "input (N, C, H, W)", x)
    _check_rank4("conv2d", "filters (O, C, KH, KW)", w)
    dtype = _float_result("conv2d", x, w)
    if not dims_may_match(x.shape[1], w.shape[1]):
        raise ValueError(f"conv2d: input {x} has {x.shape[1]} channels but filters {w} expect {w.shape[1]}")
    _check_fits("conv2d", x.shape[2:], w.shape[2:], pad, dilation)
    out_hw = tuple(conv_out_dim(x.shape[2 + i], w.shape[2 + i], pad[i], stride[i], dilation[i]) for i in range(2))
    return TensorType(dtype, (x.shape[0], w.shape[0]) + out_hw)


def _conv2d_impl(arrays, attrs, out_type):
    pad, stride, dilation = conv_params("conv2d", attrs)
    return conv2d_reference(arrays[0], arrays[1], pad, stride, dilation, bool(attrs["filter_flip"]), out_type.dtype)


register(OpDef("conv2d", 2, _conv2d_infer, _conv2d_impl, attr_defaults=dict(CONV_ATTRS), kind="nnet",
               doc="conv2d(input NCHW, filters OCHW): Theano's conv2d (flips filters unless filter_flip=False)"))


# -- conv2d_grad_input -------------------------------------------------------------------------

def _grad_input_infer(types, attrs):
    gy, w = types[:2]
    op = "conv2d_grad_input"
    pad, stride, dilation = conv_params(op, attrs)
    _check_rank4(op, "output gradient (N, O, OH, OW)", gy)
    _check_rank4(op, "filters (O, C, KH, KW)", w)
    shape = _check_dim_operands(op, types, 2, attrs["input_shape"], "input_shape")
    dtype = _float_result(op, gy, w)
    if not dims_may_match(gy.shape[1], w.shape[0]):
        raise ValueError(f"{op}: output gradient {gy} has {gy.shape[1]} channels but filters {w} have {w.shape[0]}")
    _check_fits(op, shape, w.shape[2:], pad, dilation)
    for i in range(2):
        want = conv_out_dim(shape[i], w.shape[2 + i], pad[i], stride[i], dilation[i])
        if want is not None and isinstance(gy.shape[2 + i], int) and want != gy.shape[2 + i]:
            raise ValueError(f"{op}: input size {shape[i]} on spatial axis {i} gives {want} outputs, "
                             f"but the output gradient {gy} has {gy.shape[2 + i]}")
    return TensorType(dtype, (gy.shape[0], w.shape[1]) + shape)


def _grad_input_impl(arrays, attrs, out_type):
    pad, stride, dilation = conv_params("conv2d_grad_input", attrs)
    in_hw = dims_from_attr(attrs["input_shape"], arrays[2:])
    return conv2d_grad_input_reference(arrays[0], arrays[1], in_hw, pad, stride, dilation,
                                       bool(attrs["filter_flip"]), out_type.dtype)


register(OpDef("conv2d_grad_input", None, _grad_input_infer, _grad_input_impl,
               attr_defaults=dict(CONV_ATTRS, input_shape=(None, None)), kind="nnet", min_arity=2,
               doc="conv2d_grad_input(gy, filters, *dims): the input gradient of conv2d (a transposed conv); "
                   "input_shape=(H, W), None entries from int scalar operands"))


# -- conv2d_grad_filters -----------------------------------------------------------------------

def _grad_filters_infer(types, attrs):
    x, gy = types[:2]
    op = "conv2d_grad_filters"
    pad, stride, dilation = conv_params(op, attrs)
    _check_rank4(op, "input (N, C, H, W)", x)
    _check_rank4(op, "output gradient (N, O, OH, OW)", gy)
    shape = _check_dim_operands(op, types, 2, attrs["filter_shape"], "filter_shape")
    dtype = _float_result(op, x, gy)
    if not dims_may_match(x.shape[0], gy.shape[0]):
        raise ValueError(f"{op}: input {x} and output gradient {gy} differ in batch size")
    _check_fits(op, x.shape[2:], shape, pad, dilation)
    for i in range(2):
        want = conv_out_dim(x.shape[2 + i], shape[i], pad[i], stride[i], dilation[i])
        if want is not None and isinstance(gy.shape[2 + i], int) and want != gy.shape[2 + i]:
            raise ValueError(f"{op}: input {x} with kernel size {shape[i]} on spatial axis {i} gives {want} outputs, "
                             f"but the output gradient {gy} has {gy.shape[2 + i]}")
    return TensorType(dtype, (gy.shape[1], x.shape[1]) + shape)


def _grad_filters_impl(arrays, attrs, out_type):
    pad, stride, dilation = conv_params("conv2d_grad_filters", attrs)
    k_hw = dims_from_attr(attrs["filter_shape"], arrays[2:])
    return conv2d_grad_filters_reference(arrays[0], arrays[1], k_hw, pad, stride, dilation,
                                         bool(attrs["filter_flip"]), out_type.dtype)


register(OpDef("conv2d_grad_filters", None, _grad_filters_infer, _grad_filters_impl,
               attr_defaults=dict(CONV_ATTRS, filter_shape=(None, None)), kind="nnet", min_arity=2,
               doc="conv2d_grad_filters(input, gy, *dims): the filter gradient of conv2d; "
                   "filter_shape=(KH, KW), None entries from int scalar operands"))

__all__ = ["conv2d_reference", "conv2d_grad_input_reference", "conv2d_grad_filters_reference", "conv_out_dim",
           "conv_params", "int_pair", "windows"]
