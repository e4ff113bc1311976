"""``compile_graph``: a Graph -> its kernel program -> one native program (``plan``/``run``
entries generated in one LLVM module, see ``host_program.py`` and ``native_function.py``).

``LOWERINGS`` maps each kernel kind of the kernel program to its emitter family: the leaves
function (the nodes whose memory the kernel reads, in its pointer order) and the lowering
that writes its loop nest (``kernels*.py``).
"""
from __future__ import annotations

from . import kernels as K
from . import kernels_conv as CV
from . import kernels_data as D
from . import kernels_gemm as GM
from . import kernels_gemm_epilogue as GE
from . import kernels_linalg as LA
from . import kernels_nonzero as NZ
from . import kernels_pool as PL
from . import kernels_random as RN
from . import kernels_scan_sort as SS

LOWERINGS = {
    "elemwise": (K.elemwise_leaves, K.lower_elemwise),
    "fused": (K.fused_leaves, GE.lower_fused),  # one starting with a product: the GEMM with its epilogue
    "reduce": (K.reduce_leaves, K.lower_reduce),
    "softmax": (D.direct_leaves, K.lower_softmax),
    "matmul": (D.direct_leaves, GM.lower_gemm),  # packed GEMM; ints/mixed dtypes: K.lower_matmul
    "concat": (D.direct_leaves, D.lower_concat),
    "stack": (D.direct_leaves, D.lower_stack),
    "arange": (D.direct_leaves, D.lower_arange),
    "copy": (D.direct_leaves, D.lower_copy),
    "transpose": (D.direct_leaves, D.lower_transpose),
    "gather": (D.direct_leaves, D.lower_gather),
    "update": (D.direct_leaves, D.lower_update),
    "conv2d": (D.direct_leaves, CV.lower_conv2d),
    "conv2d_grad_input": (D.conv_leaves, CV.lower_conv2d_grad_input),
    "conv2d_grad_filters": (D.conv_leaves, CV.lower_conv2d_grad_filters),
    "pool2d": (D.direct_leaves, PL.lower_pool2d),
    "pool2d_grad": (D.direct_leaves, PL.lower_pool2d_grad),
    "pool2d_grad_grad": (D.direct_leaves, PL.lower_pool2d_grad_grad),
    "random": (RN.random_leaves, RN.lower_random),
    "cumulative": (D.direct_leaves, SS.lower_cumulative),
    "argsort": (D.direct_leaves, SS.lower_argsort),
    "linalg": (D.direct_leaves, LA.lower_linalg),
    "nonzero": (NZ.nonzero_leaves, NZ.lower_flatnonzero),
}


def compile_graph(graph, *, name: str = "fn", donate=None):
    """Compile ``graph`` (a ``tcomp.ir.Graph``) for the host CPU: a ``NativeFunction``, or a
    ``StagedFunction`` chain of them when shapes depend on values only a kernel computes.
    ``donate``: graph output position -> graph input position whose storage that output may
    be written into (shared-variable updates)."""
    from .staged import compile_native

    return compile_native(graph, name=name, donate=donate)
