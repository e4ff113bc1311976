"""Every op in ``tcomp.ir.OPS`` has a NumPy-checked DSL test in tests/test_ops_*.py, or is
in ``NOT_COVERED_HERE`` with the reason.  A new op without a test fails here.

The tables below say which test function covers each op; the checks make sure that
function exists and that its module names the op (the per-op tests also assert, through
``conftest.compile_fn``, that the op really appears in the traced graph).
"""
import importlib
import inspect

from tcomp.ir.ops import OPS

_ELEMWISE_UNARY = ["neg", "abs", "sign", "floor", "ceil", "round", "relu", "exp", "log", "log1p", "expm1", "sqrt",
                   "tanh", "sigmoid", "softplus", "sin", "cos", "erf", "logical_not"]
_ELEMWISE_BINARY = ["add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "maximum", "minimum", "eq", "neq", "lt",
                    "le", "gt", "ge", "logical_and", "logical_or", "logical_xor"]

#: op -> "module::test function" that checks it against NumPy through the DSL
TESTED_OPS = {
    **{op: "test_ops_elemwise::test_unary" for op in _ELEMWISE_UNARY},
    **{op: "test_ops_elemwise::test_binary" for op in _ELEMWISE_BINARY},
    "where": "test_ops_elemwise::test_switch_and_where",
    "cast": "test_ops_elemwise::test_cast",
    **{op: "test_ops_reduce_linalg::test_reduction" for op in ["sum", "prod", "max", "min", "mean", "argmax",
                                                                 "argmin"]},
    **{op: "test_ops_reduce_linalg::test_softmax_family" for op in ["softmax", "log_softmax", "logsumexp"]},
    "dot": "test_ops_reduce_linalg::test_dot",
    "matmul": "test_ops_reduce_linalg::test_matmul_batched",
    "dimshuffle": "test_ops_shape::test_dimshuffle_and_transpose",
    "reshape": "test_ops_shape::test_reshape_and_flatten",
    "alloc": "test_ops_shape::test_alloc_family",
    "concatenate": "test_ops_shape::test_concatenate",
    "stack": "test_ops_shape::test_stack",
    "shape": "test_ops_shape::test_shape_op",
    "arange": "test_ops_shape::test_arange",
    "subtensor": "test_ops_indexing::test_advanced_indexing",
    "set_subtensor": "test_ops_indexing::test_set_and_inc_subtensor",
    "inc_subtensor": "test_ops_indexing::test_set_and_inc_subtensor",
    **{op: "test_ops_theano_extra::test_unary_extra" for op in ["arctan", "log2", "log10", "exp2", "isnan", "isinf"]},
    "arctan2": "test_ops_theano_extra::test_arctan2",
    "scan": "test_scan::test_rnn_with_several_taps",
    "ifelse": "test_ifelse::test_lazy_branches_and_several_outputs",
    **{op: "test_ops_theano_extra::test_cumsum_cumprod" for op in ["cumsum", "cumprod"]},
    "argsort": "test_ops_theano_extra::test_sort_argsort",
    **{op: "test_ops_linalg::test_matrix_ops_against_numpy" for op in ["matrix_inverse", "det", "cholesky", "solve",
                                                                         "solve_triangular"]},
    "flatnonzero": "test_ops_nonzero::test_nonzero_family_against_numpy",
    **{op: "test_ops_spectral::test_eigh_and_svd_against_numpy" for op in ["eigh", "svd"]},
    "qr": "test_ops_spectral::test_qr_against_numpy",
    **{op: "test_theano_api_sweep::test_bitwise_ops" for op in ["bitwise_and", "bitwise_or", "bitwise_xor",
                                                                  "bitwise_not"]},
}

_CONV_POOL_RANDOM = ("tested against NumPy loops, finite differences and known-answer vectors in "
                     "tests/test_conv_pool_random.py and tests/test_nnet_dsl.py (their own helper's files)")

#: ops deliberately not covered by these files, and why
NOT_COVERED_HERE = {
    "input": "source op: the inputs of every test here",
    "constant": "source op: every Python scalar / array operand in these tests",
    "conv2d": _CONV_POOL_RANDOM,
    "conv2d_grad_input": _CONV_POOL_RANDOM,
    "conv2d_grad_filters": _CONV_POOL_RANDOM,
    "pool2d": _CONV_POOL_RANDOM,
    "pool2d_grad": _CONV_POOL_RANDOM,
    "pool2d_grad_grad": _CONV_POOL_RANDOM,
    "random_uniform": _CONV_POOL_RANDOM,
    "random_normal": _CONV_POOL_RANDOM,
    "random_binomial": _CONV_POOL_RANDOM,
    "fused": "kernel op made by the fusion pass (not reachable from the DSL); tested by the fusion tests",
    "py_call": "a user's Python op (tcomp.Op, as_op): tested against NumPy in tests/test_python_ops.py",
    "get_output": "reads one result of a multi-output fused kernel (made by the fusion pass, not reachable from "
                  "the DSL); tested in tests/test_ir_multi_output.py and the fusion tests",
}
#: names in NOT_COVERED_HERE that other helpers are adding and may not be registered yet
PENDING = {"fused"}


def test_every_op_is_tested_or_excluded():
    uncovered = set(OPS) - set(TESTED_OPS)
    excluded_present = set(NOT_COVERED_HERE) & set(OPS)
    assert uncovered == excluded_present, (
        f"ops without a test in tests/test_ops_*.py: {sorted(uncovered - excluded_present)}; "
        f"excluded ops that now have a test entry: {sorted(excluded_present - uncovered)}")


def test_tables_are_consistent():
    assert not set(TESTED_OPS) & set(NOT_COVERED_HERE)
    stale = set(TESTED_OPS) - set(OPS)
    assert not stale, f"TESTED_OPS lists ops that no longer exist: {sorted(stale)}"
    missing = set(NOT_COVERED_HERE) - set(OPS) - PENDING
    assert not missing, f"NOT_COVERED_HERE lists ops that do not exist: {sorted(missing)}"


def test_listed_tests_exist_and_name_their_op():
    for op, where in sorted(TESTED_OPS.items()):
        module_name, func_name = where.split("::")
        module = importlib.import_module(module_name)
        func = getattr(module, func_name, None)
        assert callable(func) and func_name.startswith("test_"), f"{op}: {where} is not a test function"
        assert f'"{op}"' in inspect.getsource(module), f"{op}: {module_name} never names the op"
