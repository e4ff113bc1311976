"""More of ``theano.tensor.basic``'s functions, found missing by the API sweep
(tests/test_theano_api_sweep.py): shapes as vectors, permutations, integer division helpers,
the real-valued complex helpers, ``take``, variadic ``add``/``mul`` and the ``inplace`` /
``set_instead_of_inc`` arguments of ``inc_subtensor``.

Each is a composition of existing ops (no new table rows), so it fuses, lowers natively and
differentiates through its parts.  tcomp has no complex dtypes: ``real``/``conj`` of a real
tensor are the tensor and ``imag`` is zeros, which is what Theano returns for real inputs.
"""
from __future__ import annotations

import builtins
import functools

import numpy as np

from tcomp.ir import dtypes as dt

from . import basic as B
from . import indexing as _indexing
from .variable import Variable, as_variable, constant


def shape(x) -> Variable:
    """Theano's ``T.shape(x)``: the shape as an int64 vector (``x.shape`` is a tuple of int64
    scalars in tcomp; this stacks them, so ``T.shape(x)[i]`` and ``T.prod(T.shape(x))`` work)."""
    x = as_variable(x, "x")
    if x.ndim == 0:
        return constant(np.zeros(0, "int64"))
    return B.stack([B.cast(B.shape_i(x, i), "int64") for i in range(x.ndim)])


def get_vector_length(v) -> int:
    """The length of the vector ``v`` when it is known before run time (Theano's
    ``get_vector_length``): a tuple/list, a vector of static length, or a stack of scalars."""
    if isinstance(v, (tuple, list)):
        return len(v)
    v = as_variable(v, "v")
    if v.ndim != 1:
        raise TypeError(f"get_vector_length: {v.describe()} is not a vector")
    n = v.type.shape[0]
    if isinstance(n, int):
        return n
    if v.op == "stack":
        return len(v.inputs)
    raise ValueError(f"get_vector_length: the length of {v.describe()} is only known at run time")


def swapaxes(y, axis1, axis2):
    """``y`` with ``axis1`` and ``axis2`` exchanged (NumPy's and Theano's ``swapaxes``)."""
    return as_variable(y, "y").swapaxes(axis1, axis2)


def take(a, indices, axis=None, mode="raise"):
    """NumPy's and Theano's ``take``: ``a[..., indices, ...]`` along ``axis`` (of the flattened
    ``a`` when None)."""
    return as_variable(a, "a").take(indices, axis, mode)


def inverse_permutation(perm):
    """The inverse of each permutation along the last axis of the integer tensor ``perm``
    (Theano's ``inverse_permutation``): ``out[..., perm[..., i]] = i``, as the stable argsort."""
    from .extra import argsort

    perm = as_variable(perm, "perm")
    if not dt.is_int(perm.dtype) or perm.ndim < 1:
        raise TypeError(f"inverse_permutation: perm must be an integer tensor of rank >= 1, got {perm.describe()}")
    return B.cast(argsort(perm, axis=-1), perm.dtype)


def permute_row_elements(x, y, inverse=0):
    """Theano's ``permute_row_elements``: each row (last axis) of ``x`` permuted by the matching
    row of the integer tensor ``y`` (``out[..., j] = x[..., y[..., j]]``), the leading axes of
    ``x`` and ``y`` broadcast against each other; ``inverse`` applies the inverse permutations
    (``out[..., y[..., j]] = x[..., j]``)."""
    from .extra import _dim, _take_along

    x, y = as_variable(x, "x"), as_variable(y, "y")
    if not dt.is_int(y.dtype) or y.ndim < 1:
        raise TypeError(f"permute_row_elements: y must be an integer tensor of rank >= 1, got {y.describe()}")
    if x.ndim < 1:
        raise TypeError(f"permute_row_elements: x must have rank >= 1, got {x.describe()}")
    if inverse:
        y = inverse_permutation(y)
    nd = builtins.max(x.ndim, y.ndim)
    x = B.dimshuffle(x, ("x",) * (nd - x.ndim) + tuple(range(x.ndim)))
    y = B.dimshuffle(y, ("x",) * (nd - y.ndim) + tuple(range(y.ndim)))
    # the broadcast leading shape (a static 1 takes the other operand's dim)
    lead = []
    for i in range(nd - 1):
        lead.append(_dim(y, i) if x.type.shape[i] == 1 else _dim(x, i))
    if any(x.type.shape[i] == 1 and y.type.shape[i] != 1 for i in range(nd - 1)):
        x = B.alloc(x, *lead, _dim(x, nd - 1))
    if any(y.type.shape[i] == 1 and x.type.shape[i] != 1 for i in range(nd - 1)):
        y = B.alloc(y, *lead, _dim(y, nd - 1))
    return _take_along(x, y, nd - 1)


def trunc(x):
    """Round towards zero (NumPy's ``trunc``): ``sign(x) * floor(|x|)``; ints are unchanged."""
    x = as_variable(x, "x")
    if not dt.is_float(x.dtype):
        return x
    return B.mul(B.sign(x), B.floor(B.abs(x)))


def real(x):
    """The real part: ``x`` itself (tcomp has no complex dtypes; Theano returns ``x`` for a
    real input)."""
    return as_variable(x, "x")


def imag(x):
    """The imaginary part of a real tensor: zeros of its shape and dtype (Theano's result for
    a real input)."""
    return B.zeros_like(as_variable(x, "x"))


def conj(x):
    """The complex conjugate of a real tensor: the tensor."""
    return as_variable(x, "x")


conjugate = conj


def tensor_copy(x):
    """Theano's ``tensor_copy``: a new variable with ``x``'s value."""
    return as_variable(x, "x").copy()


def _int_operands(a, b, what):
    a, b = as_variable(a, "a"), as_variable(b, "b")
    for name, v in (("a", a), ("b", b)):
        if not (dt.is_int(v.dtype) or v.dtype == dt.BOOL):
            raise TypeError(f"{what}: {name} must be an integer tensor, got {v.describe()}")
    return a, b


def ceil_intdiv(a, b):
    """Integer division rounded up (Theano's ``ceil_intdiv``): ``-((-a) // b)`` on ints."""
    a, b = _int_operands(a, b, "ceil_intdiv")
    return B.neg(B.floor_div(B.neg(a), b))


def divmod(a, b):  # noqa: A001 - Theano's name
    """Theano's ``divmod``: ``(a // b, a % b)`` with Python's (floor) signs."""
    return B.floor_div(a, b), B.mod(a, b)


def add(*terms):
    """Theano's variadic ``add(a, b, ...)``: the elementwise sum of all terms."""
    if len(terms) < 1:
        raise TypeError("add needs at least one term")
    if len(terms) == 1:
        return as_variable(terms[0], "a")
    return functools.reduce(B.add, terms)


def mul(*terms):
    """Theano's variadic ``mul(a, b, ...)``: the elementwise product of all terms."""
    if len(terms) < 1:
        raise TypeError("mul needs at least one factor")
    if len(terms) == 1:
        return as_variable(terms[0], "a")
    return functools.reduce(B.mul, terms)


def set_subtensor(x, y, inplace=False, tolerate_inplace_aliasing=False):
    """Theano's ``set_subtensor``: a copy of ``x``'s base tensor with the selection ``x``
    replaced by ``y``.  ``inplace`` and ``tolerate_inplace_aliasing`` are accepted and change
    nothing: tcomp's values are never mutated by the graph; in-place reuse of buffers is the
    memory planner's decision."""
    return _indexing.set_subtensor(x, y)


def inc_subtensor(x, y, inplace=False, set_instead_of_inc=False, tolerate_inplace_aliasing=False):
    """Theano's ``inc_subtensor``: a copy of ``x``'s base tensor with ``y`` added to the
    selection ``x`` (repeated advanced indices add up), or assigned with
    ``set_instead_of_inc=True``.  ``inplace``/``tolerate_inplace_aliasing``: as in
    :func:`set_subtensor`."""
    if set_instead_of_inc:
        return _indexing.set_subtensor(x, y)
    return _indexing.inc_subtensor(x, y)


def _is_integral(v) -> bool:
    return isinstance(v, Variable) and dt.is_int(v.dtype)


def _bit_or_logic(bitwise, logical, a, b):
    """Theano's ``and_``/``or_``/``xor`` (and ``&``, ``|``, ``^``): bitwise on integer tensors
    (NumPy's result: ``5 & 3 == 1``), logical on bools (the same thing there) and, as tcomp
    always did, on the truthiness of floats."""
    from .variable import apply_binary

    a_int, b_int = _is_integral(a), _is_integral(b)
    a_flt = isinstance(a, Variable) and dt.is_float(a.dtype)
    b_flt = isinstance(b, Variable) and dt.is_float(b.dtype)
    if (a_int or b_int) and not (a_flt or b_flt) and not isinstance(a, float) and not isinstance(b, float):
        return apply_binary(bitwise, a, b)
    return apply_binary(logical, a, b)


def and_(a, b):
    """Bitwise and of integer tensors, logical and of bools (Theano's ``and_``, ``a & b``)."""
    return _bit_or_logic("bitwise_and", "logical_and", a, b)


def or_(a, b):
    """Bitwise or of integer tensors, logical or of bools (Theano's ``or_``, ``a | b``)."""
    return _bit_or_logic("bitwise_or", "logical_or", a, b)


def xor(a, b):
    """Bitwise xor of integer tensors, logical xor of bools (Theano's ``xor``, ``a ^ b``)."""
    return _bit_or_logic("bitwise_xor", "logical_xor", a, b)


def invert(a):
    """Bitwise not of an integer tensor (``~5 == -6``), logical not of bools and floats'
    truthiness (Theano's ``invert``, ``~a``)."""
    from .variable import apply

    a = as_variable(a, "a")
    return apply("bitwise_not" if dt.is_int(a.dtype) else "logical_not", [a])


bitwise_and, bitwise_or, bitwise_xor, bitwise_not = and_, or_, xor, invert


def cpu_contiguous(x):
    """Theano's ``extra_ops.cpu_contiguous``: ``x`` as a C-contiguous array.  tcomp's
    function outputs are already C-contiguous arrays, so this is a copy of ``x``."""
    return as_variable(x, "x").copy()


__all__ = ["shape", "get_vector_length", "swapaxes", "take", "inverse_permutation", "permute_row_elements",
           "trunc", "real", "imag", "conj", "conjugate", "tensor_copy", "ceil_intdiv", "divmod", "add", "mul",
           "set_subtensor", "inc_subtensor", "and_", "or_", "xor", "invert", "bitwise_and", "bitwise_or",
           "bitwise_xor", "bitwise_not", "cpu_contiguous"]
