"""More of ``theano.tensor.nnet``'s functions, found missing by the API sweep
(tests/test_theano_api_sweep.py): ``confusion_matrix``, ``softmax_graph``/``softmax_op`` and
the ``prepend_*_to_each_row`` helpers, as compositions of existing ops."""
from __future__ import annotations

from . import basic as B
from .variable import as_variable, is_python_scalar


def softmax_graph(c):
    """Theano's ``softmax_graph``: ``exp(c) / exp(c).sum(axis=-1, keepdims=True)`` over the
    last axis, computed as the (max-shifted, stable) softmax op Theano's optimizer makes of it."""
    return B.softmax(as_variable(c, "c"), axis=-1)


def softmax_op(c):
    """Theano's ``softmax_op`` (its Softmax Op instance), applied: the softmax over the last axis."""
    return B.softmax(as_variable(c, "c"), axis=-1)


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


__all__ = ["softmax_graph", "softmax_op", "confusion_matrix", "prepend_scalar_to_each_row",
           "prepend_0_to_each_row", "prepend_1_to_each_row"]
