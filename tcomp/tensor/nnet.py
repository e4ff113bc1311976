"""``T.nnet``: Theano's neural-network helpers."""
from __future__ import annotations

import sys
import warnings

import numpy as np

from tcomp.ir import dtypes as dt

from . import basic as B
from .variable import apply, as_variable

sigmoid = B.sigmoid


def relu(x, alpha=0):
    """Theano's rectifier: ``x`` where positive, else ``alpha * x`` (leaky for alpha != 0;
    ``alpha`` may be a tensor)."""
    if isinstance(alpha, (int, float)) and alpha == 0:
        return B.relu(x)
    x = as_variable(x, "x")
    return B.where(B.gt(x, 0), x, alpha * x)


softplus = B.softplus
def _rows(x, axis):
    """Theano's softmax ops work on rows: a vector is one row, so the result is a (1, n)
    matrix (the deeplearning.net RNN tutorial indexes ``s[:, 0, :]`` because of it).
    PyTensor's ``axis=`` keeps the input's shape."""
    x = as_variable(x, "x")
    if axis is None:
        return (x.dimshuffle("x", 0) if x.ndim == 1 else x), -1
    return x, axis


def softmax(c, axis=None):
    """Softmax over the last axis (``axis``: another one); a vector gives a (1, n) row, as Theano."""
    x, axis = _rows(c, axis)
    return B.softmax(x, axis)


def log_softmax(c, axis=None):
    """log(softmax(c)), stable; a vector gives a (1, n) row, as Theano's LogSoftmax."""
    x, axis = _rows(c, axis)
    return B.log_softmax(x, axis)


logsoftmax = log_softmax  # Theano 1.0's name
logsumexp = B.logsumexp


def categorical_crossentropy(coding_dist, true_dist):
    """Per-row cross-entropy.  ``true_dist`` is either integer class indices (vector) or a
    one-hot/probability matrix, as in Theano."""
    p = as_variable(coding_dist, "coding_dist")
    t = as_variable(true_dist, "true_dist")
    if dt.is_int(t.dtype):
        if t.ndim != p.ndim - 1:
            raise ValueError(f"categorical_crossentropy: integer targets {t.describe()} must have one dim "
                             f"fewer than {p.describe()}")
        return -B.log(p[B.arange(t.shape[0]), t])
    return -B.sum(t * B.log(p), axis=-1)


def binary_crossentropy(output, target):
    o = as_variable(output, "output")
    return -(target * B.log(o) + (1 - target) * B.log(1 - o))


def hard_sigmoid(x):
    return B.clip(0.2 * as_variable(x) + 0.5, 0, 1)


# -- convolution, pooling, normalization, dropout ---------------------------------------

def _pair(value, what):
    if isinstance(value, (int, np.integer)):
        return (int(value), int(value))
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")
    return pair


def _shape_hint(var, hint, arg):
    """Check a Theano shape hint (``input_shape``/``filter_shape``: ints or None per dim)
    against ``var``'s static shape; return it as a tuple of ints/None (None if not given)."""
    if hint is None:
        return None
    hint = tuple(None if h is None else int(h) for h in hint)
    if len(hint) != var.ndim:
        raise ValueError(f"conv2d: {arg} {hint} has {len(hint)} dims, {var.describe()} has {var.ndim}")
    for i, (h, d) in enumerate(zip(hint, var.type.shape)):
        if h is not None and isinstance(d, int) and d != h:
            raise ValueError(f"conv2d: {arg}[{i}] = {h} contradicts {var.describe()}")
    return hint


def conv2d(input, filters, input_shape=None, filter_shape=None, border_mode="valid", subsample=(1, 1),
           filter_flip=True, image_shape=None, filter_dilation=(1, 1), num_groups=1):
    """Theano's ``conv2d`` on NCHW input and (out, in / num_groups, kh, kw) filters.

    ``border_mode``: 'valid', 'full', 'half'/'same' (output = input size for odd kernels at
    stride 1), an int, or a pair (ph, pw).  ``input_shape`` (``image_shape``, its old name) and
    ``filter_shape`` are Theano's shape hints: checked against the variables' static shapes,
    and a filter hint supplies static kernel sizes that 'full'/'half' need when the filters'
    own type has none (then the run-time shape is checked).  ``num_groups`` splits the
    channels into groups convolved separately (grouped convolution).
    """
    x = as_variable(input, "input")
    w = as_variable(filters, "filters")
    if image_shape is not None:
        if input_shape is not None:
            raise ValueError("conv2d: give input_shape or its old name image_shape, not both")
        input_shape = image_shape
    if x.ndim != 4:
        raise ValueError(f"conv2d: input must be 4-d (batch, channels, rows, cols), got {x.describe()}")
    if w.ndim != 4:
        raise ValueError(f"conv2d: filters must be 4-d (out, in, kh, kw), got {w.describe()}")
    _shape_hint(x, input_shape, "input_shape")
    fhint = _shape_hint(w, filter_shape, "filter_shape")
    if fhint is not None and any(fhint[i] is not None and not isinstance(w.type.shape[i], int) for i in (2, 3)):
        from .type import specify_shape

        w = specify_shape(w, [fhint[i] if fhint[i] is not None else B.shape_i(w, i) for i in range(4)])
    dil = _pair(filter_dilation, "filter_dilation")
    kh, kw = w.type.shape[2], w.type.shape[3]
    if isinstance(border_mode, str):
        if border_mode == "valid":
            pad = (0, 0)
        elif border_mode in ("full", "half", "same"):
            if not (isinstance(kh, int) and isinstance(kw, int)):
                # symbolic kernel sizes: zero-pad the input in the graph, then a valid convolution
                x = _pad_symbolic(x, w, border_mode, dil)
                pad = (0, 0)
            elif border_mode == "full":
                pad = (dil[0] * (kh - 1), dil[1] * (kw - 1))
            else:
                pad = (dil[0] * (kh // 2), dil[1] * (kw // 2))
        else:
            raise ValueError(f"conv2d: unknown border_mode {border_mode!r}")
    else:
        pad = _pair(border_mode, "border_mode")
    attrs = {"pad": pad, "stride": _pair(subsample, "subsample"), "dilation": dil, "filter_flip": bool(filter_flip)}
    groups = int(num_groups)
    if groups < 1:
        raise ValueError(f"conv2d: num_groups must be >= 1, got {num_groups!r}")
    if groups == 1:
        return apply("conv2d", [x, w], attrs)
    n_out = w.type.shape[0]
    if isinstance(n_out, int) and n_out % groups:
        raise ValueError(f"conv2d: {n_out} filters do not split into {groups} groups")
    cin = B.shape_i(w, 1)  # input channels per group
    cout = B.shape_i(w, 0) // groups
    parts = [apply("conv2d", [x[:, g * cin:(g + 1) * cin], w[g * cout:(g + 1) * cout]], attrs) for g in range(groups)]
    return B.concatenate(parts, axis=1)


def _pad_symbolic(x, w, border_mode, dil):
    """``x`` zero-padded on rows and columns by what ``border_mode`` ('full': d (k - 1),
    'half'/'same': d (k // 2)) asks for kernels whose sizes are known only at run time."""
    out = x
    for axis, d in ((2, dil[0]), (3, dil[1])):
        k = B.shape_i(w, axis)
        p = d * (k - 1) if border_mode == "full" else d * (k // 2)
        shape = [B.shape_i(out, i) for i in range(4)]
        shape[axis] = p
        zeros = B.zeros(shape, dtype=out.dtype)
        out = B.concatenate([zeros, out, zeros], axis=axis)
    return out


def _renamed(new, old, new_name, old_name, default=None):
    """Theano's deprecated pooling argument names (ds, st, padding): either name, not both."""
    if old is None:
        return new
    if new is not None and new != default:
        raise ValueError(f"pool_2d: give {new_name} or its old name {old_name}, not both")
    warnings.warn(f"pool_2d: {old_name} is deprecated, use {new_name}", DeprecationWarning, stacklevel=3)
    return old


def pool_2d(input, ws=None, ignore_border=True, stride=None, pad=(0, 0), mode="max", ds=None, st=None, padding=None):
    """Theano's ``pool_2d`` over the last two axes; mode 'max', 'sum', 'average_inc_pad',
    'average_exc_pad' (or 'average', an alias of the latter).  ``ds``, ``st`` and
    ``padding`` are the old names of ``ws``, ``stride`` and ``pad``.  ``ws`` defaults to
    (2, 2) and ``ignore_border`` to True here (None means True); Theano's own default is in
    ``tcomp.tensor.signal.pool.pool_2d``."""
    x = as_variable(input, "input")
    ws = _renamed(ws, ds, "ws", "ds")
    stride = _renamed(stride, st, "stride", "st")
    pad = _renamed(pad, padding, "pad", "padding", default=(0, 0))
    ws = (2, 2) if ws is None else ws
    if x.ndim < 2:
        raise ValueError(f"pool_2d: input needs at least 2 dims (pooled: the last two), got {x.describe()}")
    attrs = {"ws": _pair(ws, "ws"), "stride": None if stride is None else _pair(stride, "stride"),
             "pad": _pair(pad, "pad"), "mode": "average_exc_pad" if mode == "average" else mode,
             "ignore_border": True if ignore_border is None else bool(ignore_border)}
    return apply("pool2d", [x], attrs)


def batch_normalization(inputs, gamma, beta, mean, std, mode="low_mem"):
    """Theano's ``bn.batch_normalization``: ``(inputs - mean) * (gamma / std) + beta``
    (``mode`` 'low_mem'/'high_mem' picked Theano's kernel; the value is the same)."""
    if mode not in ("low_mem", "high_mem"):
        raise ValueError(f"batch_normalization: mode must be 'low_mem' or 'high_mem', got {mode!r}")
    return (as_variable(inputs) - mean) * (gamma / std) + beta


# Theano 1.0's batch_normalization_train/test and more nnet helpers (before nnet_bn imports them)
from .nnet_more import (  # noqa: E402,F401
    batch_normalization_test,
    batch_normalization_train,
    confusion_matrix,
    prepend_0_to_each_row,
    prepend_1_to_each_row,
    prepend_scalar_to_each_row,
    softmax_graph,
    softmax_op,
)


def dropout(x, p, srng):
    """Inverted dropout: zero each element with probability ``p`` and scale the rest by
    1/(1-p), drawing the mask from ``srng`` (a ``tcomp.RandomStreams``); new mask per call."""
    x = as_variable(x, "x")
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if p == 0:
        return x
    mask = srng.binomial(x.shape, p=1 - p, dtype=x.dtype)
    return x * mask * (1.0 / (1 - p))


# Theano's submodules of T.nnet, importable as modules (``from tcomp.tensor.nnet import conv``,
# ``import tcomp.tensor.nnet.conv``) although this is a module, not a package.
from . import nnet_abstract_conv as abstract_conv  # noqa: E402
from . import nnet_bn as bn  # noqa: E402
from . import nnet_conv as conv  # noqa: E402
from . import nnet_conv3d2d as conv3d2d  # noqa: E402
from . import nnet_ctc as ctc  # noqa: E402
from . import nnet_neighbours as neighbours  # noqa: E402
from .nnet_conv3d import conv3d  # noqa: E402,F401
from .nnet_extra import (  # noqa: E402,F401
    crossentropy_categorical_1hot,
    crossentropy_softmax_1hot,
    crossentropy_softmax_1hot_with_bias,
    crossentropy_softmax_argmax_1hot_with_bias,
    elu,
    h_softmax,
    selu,
    sigmoid_binary_crossentropy,
    softmax_with_bias,
    softsign,
    ultra_fast_sigmoid,
)

conv2d_transpose = abstract_conv.conv2d_transpose
sys.modules[__name__ + ".conv"] = conv
sys.modules[__name__ + ".conv3d2d"] = conv3d2d
sys.modules[__name__ + ".abstract_conv"] = abstract_conv
sys.modules[__name__ + ".bn"] = bn
sys.modules[__name__ + ".ctc"] = ctc
sys.modules[__name__ + ".neighbours"] = neighbours
# Theano's module paths theano.tensor.nnet.nnet and .sigm: their functions live in this module
sys.modules[__name__ + ".nnet"] = sys.modules[__name__]
sys.modules[__name__ + ".sigm"] = sys.modules[__name__]
