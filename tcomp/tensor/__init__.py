"""``import tcomp.tensor as T``: symbolic tensors with Theano's names."""
from tcomp.gradient import Lop, Rop, consider_constant, grad, hessian, jacobian, numeric_grad, verify_grad  # noqa: F401,E402

from . import extra_ops, nlinalg, nnet, opt, shared_randomstreams, signal, slinalg, xlogx  # noqa: F401
from .array_more import (  # noqa: F401
    batched_tensordot,
    int_div,
    inv,
    iround,
    power,
    scalar_from_tensor,
    second,
    split,
    stacklists,
    tensor_from_scalar,
    tri,
    tril,
    triu,
)
from .basic import *  # noqa: F401,F403
from .basic import (  # noqa: F401
    abs,
    alloc,
    arange,
    argmax,
    argmin,
    as_tensor_variable,
    broadcast_to,
    cast,
    clip,
    col,
    concatenate,
    cos,
    dimshuffle,
    dot,
    eq,
    erf,
    exp,
    expm1,
    fill,
    flatten,
    ge,
    gt,
    le,
    log,
    log1p,
    log_softmax,
    logsumexp,
    lt,
    matmul,
    matrix,
    max,
    maximum,
    mean,
    min,
    minimum,
    neq,
    ones,
    ones_like,
    prod,
    reshape,
    row,
    scalar,
    sigmoid,
    softmax,
    sqr,
    sqrt,
    stack,
    sum,
    switch,
    tanh,
    tensor,
    tensor3,
    tensor4,
    transpose,
    vector,
    where,
    zeros,
    zeros_like,
)
from .basic import as_tensor_variable as as_tensor  # noqa: F401

# Theano's variadic add/mul, inc_subtensor(..., set_instead_of_inc=) (over basic's add/mul)
from .basic_more import (  # noqa: F401
    add,
    and_,
    bitwise_and,
    bitwise_not,
    bitwise_or,
    bitwise_xor,
    ceil_intdiv,
    conj,
    conjugate,
    divmod,
    get_vector_length,
    imag,
    inc_subtensor,
    inverse_permutation,
    invert,
    mul,
    or_,
    permute_row_elements,
    real,
    set_subtensor,
    shape,
    swapaxes,
    take,
    tensor_copy,
    trunc,
    xor,
)
from .elemwise_more import allclose, choose, deg2rad, isclose, largest, ptp, rad2deg, smallest, tan  # noqa: F401
from .extra import *  # noqa: F401,F403
from .extra_ops import bartlett, bincount, fill_diagonal, fill_diagonal_offset, ravel_multi_index, unravel_index  # noqa: F401
from .grids import mgrid, ogrid  # noqa: F401
from .masks import flatnonzero, nonzero, nonzero_values  # noqa: F401
from .shape_helpers import (  # noqa: F401
    NotScalarConstantError,
    get_scalar_constant_value,
    horizontal_stack,
    shape_padaxis,
    shape_padleft,
    shape_padright,
    vertical_stack,
)
from .special import erfc, erfcinv, erfcx, erfinv, gamma, gammaln, psi  # noqa: F401
from .special_more import i0, i1, polygamma, tri_gamma  # noqa: F401
from .topk import argtopk, topk, topk_and_argtopk  # noqa: F401
from .type import TensorType, addbroadcast, patternbroadcast, specify_shape, unbroadcast  # noqa: F401,E402
from .variable import Variable, constant  # noqa: F401
from .variable import Variable as TensorConstant  # noqa: F401,E402
from .variable import Variable as TensorVariable  # noqa: F401,E402
