"""``tcomp.testing.verify_grad`` (the public checker, through the DSL and tcomp.function) on
every differentiable op of the op table, in float64.

The cases are the graph builders of ``test_autodiff_ops.py``; each graph is turned back
into DSL expressions over ``verify_grad``'s symbolic arguments (non-float inputs such as
conditions and indices become constants), so a new differentiable op without a case fails
``test_every_differentiable_op_has_a_case`` there and has no verify_grad test here.
"""
import numpy as np
import pytest
from test_autodiff_ops import ALL

import tcomp.tensor as T
from tcomp.ir import dtypes as dt
from tcomp.tensor.variable import constant
from tcomp.testing import verify_grad
from tcomp.trace import variables_from_graph


@pytest.mark.parametrize("name,i,build", ALL, ids=[f"{n}-{i}" for n, i, _ in ALL])
def test_verify_grad_float64(name, i, build):
    g, out, values = build()
    values = [np.asarray(v) for v in values]
    float_inputs = [k for k, n in enumerate(g.inputs) if dt.is_float(g.type(n).dtype)]

    def fn(*args):
        bound = {}
        for k, n in enumerate(g.inputs):
            bound[n] = args[float_inputs.index(k)] if k in float_inputs else constant(values[k])
        y = variables_from_graph(g, bound, [out])[0]
        # a bool/int result (comparisons, argmax: zero gradient) is checked through a float cast
        return y if dt.is_float(y.dtype) else T.cast(y, "float64")

    verify_grad(fn, [values[k] for k in float_inputs], rng=np.random.default_rng(i), backend="reference")
