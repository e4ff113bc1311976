"""More of ``theano.tensor.nnet``'s functions, found missing by the API sweep
(tests/test_theano_api_sweep.py): ``confusion_matrix``, ``softmax_graph``/``softmax_op``, the
``prepend_*_to_each_row`` helpers and Theano 1.0's full ``batch_normalization_train/test``
(running averages, tuple axes, parameters of reduced rank), as compositions of existing ops."""
from __future__ import annotations

import numpy as np

from . import basic as B
from .variable import as_variable, is_python_scalar


def softmax_graph(c):
    """Theano's ``softmax_graph``: ``exp(c) / exp(c).sum(axis=-1, keepdims=True)`` over the
    last axis, computed as the (max-shifted, stable) softmax op Theano's optimizer makes of it."""
    return B.softmax(as_variable(c, "c"), axis=-1)


def softmax_op(c):
    """Theano's ``softmax_op`` (its Softmax Op instance), applied: the softmax over the last
    axis, a vector giving a (1, n) row as Theano's op (``softmax_graph`` keeps the shape)."""
    from .nnet import softmax

    return softmax(c)


def confusion_matrix(actual, pred):
    """Theano's ``confusion_matrix(actual, pred)`` -> ``[conf_mat, order]``: ``order`` the sorted
    distinct labels of both vectors, ``conf_mat[i, j]`` (int64) the number of samples with
    ``actual == order[i]`` and ``pred == order[j]``."""
    from .array_more import unique

    actual, pred = as_variable(actual, "actual"), as_variable(pred, "pred")
    for name, v in (("actual", actual), ("pred", pred)):
        if v.ndim != 1:
            raise ValueError(f"confusion_matrix: {name} must be a vector, got {v.describe()}")
    order = unique(B.concatenate([actual, pred]))
    one_hot_a = B.cast(B.eq(B.dimshuffle(actual, (0, "x")), order), "int64")
    one_hot_p = B.cast(B.eq(B.dimshuffle(pred, (0, "x")), order), "int64")
    return [B.dot(B.transpose(one_hot_a), one_hot_p), order]


def prepend_scalar_to_each_row(val, mat):
    """Theano's ``prepend_scalar_to_each_row``: the matrix ``mat`` with a first column of
    ``val`` (a scalar, cast to ``mat``'s dtype)."""
    mat = as_variable(mat, "mat")
    if mat.ndim != 2:
        raise TypeError(f"prepend_scalar_to_each_row: mat must be a matrix, got {mat.describe()}")
    v = B.constant(val, mat.dtype) if is_python_scalar(val) else as_variable(val, "val")
    if v.ndim != 0:
        raise TypeError(f"prepend_scalar_to_each_row: val must be a scalar, got {v.describe()}")
    col = B.alloc(B.cast(v, mat.dtype), B.shape_i(mat, 0), 1)
    return B.concatenate([col, mat], axis=1)


def prepend_0_to_each_row(mat):
    """``mat`` with a first column of zeros."""
    return prepend_scalar_to_each_row(0, mat)


def prepend_1_to_each_row(mat):
    """``mat`` with a first column of ones."""
    return prepend_scalar_to_each_row(1, mat)




def _bn_axes(axes, ndim):
    """Theano's ``_prepare_batch_normalization_axes``: (normalized axes, the other axes)."""
    if axes == "per-activation":
        axes = (0,)
    elif axes == "spatial":
        axes = (0,) + tuple(range(2, ndim))
    elif isinstance(axes, (tuple, list, np.ndarray)):
        axes = tuple(int(a) for a in axes)
    else:
        raise ValueError(f"batch normalization: axes must be 'per-activation', 'spatial' or a tuple of ints, "
                         f"got {axes!r}")
    axes = tuple(sorted(set(a % ndim if -ndim <= a < ndim else _bad_axis(a, ndim) for a in axes)))
    if not axes:
        raise ValueError("batch normalization: axes must not be empty")
    return axes, tuple(a for a in range(ndim) if a not in axes)


def _bad_axis(a, ndim):
    raise ValueError(f"batch normalization: axis {a} is out of range for {ndim}-d inputs")


def _bn_params(params, names, ndim, axes, non_bc):
    """Parameters of rank ``len(non_bc)`` broadcast over the normalized axes (Theano's
    dimshuffle), or of the inputs' rank as they are; anything else raises ValueError."""
    full = params[0].ndim == ndim
    want = ndim if full else len(non_bc)
    pattern = ["x"] * ndim
    for i, a in enumerate(non_bc):
        pattern[a] = i
    out = []
    for p, name in zip(params, names):
        if p.ndim != want:
            raise ValueError(f"batch normalization: {name} must have rank {want} (the non-normalized axes, or the "
                             f"inputs' rank), got {p.describe()}")
        out.append(p if full else B.dimshuffle(p, tuple(pattern)))
    return out, full


def batch_normalization_train(inputs, gamma, beta, axes="per-activation", epsilon=1e-4,
                              running_average_factor=0.1, running_mean=None, running_var=None):
    """Theano's ``bn.batch_normalization_train``: ``(out, mean, invstd)`` from the batch
    statistics over ``axes`` ('per-activation' = (0,), 'spatial' = (0, 2, 3, ...), or a tuple),
    and with ``running_mean``/``running_var`` also their new values
    ``running * (1 - f) + batch_stat * f`` (the variance unbiased by m / (m - 1), ``m`` the
    number of values averaged).  ``gamma``/``beta``/running stats have the inputs' rank or only
    the non-normalized axes; then ``mean``, ``invstd`` and the new running stats come back in
    that reduced layout, as in Theano."""
    from .extra import _size

    x = as_variable(inputs, "inputs")
    ndim = x.ndim
    axes, non_bc = _bn_axes(axes, ndim)
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_normalization_train: give both running_mean and running_var, or neither")
    gamma, beta = as_variable(gamma, "gamma"), as_variable(beta, "beta")
    (gamma, beta), full = _bn_params([gamma, beta], ["gamma", "beta"], ndim, axes, non_bc)
    mean = B.mean(x, axis=axes, keepdims=True)
    var = B.mean(B.sqr(x - mean), axis=axes, keepdims=True)
    invstd = 1.0 / B.sqrt(var + epsilon)
    results = [(x - mean) * gamma * invstd + beta, mean, invstd]
    if running_mean is not None:
        rm, rv = as_variable(running_mean, "running_mean"), as_variable(running_var, "running_var")
        if (rm.ndim == ndim) != full or (rv.ndim == ndim) != full:
            raise ValueError("batch_normalization_train: running_mean/running_var must have the layout of gamma")
        (rm, rv), _ = _bn_params([rm, rv], ["running_mean", "running_var"], ndim, axes, non_bc)
        m = _size(x, axes)
        m = float(m) if isinstance(m, int) else B.cast(m, var.dtype)
        f = running_average_factor
        results.append(rm * (1 - f) + mean * f)
        results.append(rv * (1 - f) + (m / (m - 1)) * var * f)
    if not full:
        results = results[:1] + [B.dimshuffle(r, non_bc) for r in results[1:]]
    return tuple(results)


def batch_normalization_test(inputs, gamma, beta, mean, var, axes="per-activation", epsilon=1e-4):
    """Theano's ``bn.batch_normalization_test``: ``(inputs - mean) * gamma / sqrt(var + epsilon)
    + beta`` with given statistics, the parameters laid out as for
    :func:`batch_normalization_train`."""
    x = as_variable(inputs, "inputs")
    axes, non_bc = _bn_axes(axes, x.ndim)
    params = [as_variable(p, n) for p, n in ((gamma, "gamma"), (beta, "beta"), (mean, "mean"), (var, "var"))]
    (gamma, beta, mean, var), _ = _bn_params(params, ["gamma", "beta", "mean", "var"], x.ndim, axes, non_bc)
    return (x - mean) * gamma / B.sqrt(var + epsilon) + beta


__all__ = ["softmax_graph", "softmax_op", "confusion_matrix", "prepend_scalar_to_each_row",
           "prepend_0_to_each_row", "prepend_1_to_each_row", "batch_normalization_train", "batch_normalization_test"]
