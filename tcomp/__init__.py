"""tcomp: Theano's API rebuilt as an LLVM tensor compiler.

    import tcomp
    import tcomp.tensor as T
    x = T.matrix('x'); f = tcomp.function([x], T.tanh(x).sum())
"""
from . import tensor  # noqa: F401  (first: tcomp.gradient and tcomp.tensor import each other)

# isort: split
from . import (
    compile,  # noqa: F401
    config,  # noqa: F401
    ifelse,  # noqa: F401  (a module, as in Theano: tcomp.ifelse.ifelse)
    printing,  # noqa: F401
    scan_module,  # noqa: F401
)
from .function import Function, function  # noqa: F401
from .gradient import Lop, Rop, grad  # noqa: F401  (theano.grad, theano.Rop, theano.Lop)
from .io import In, Out  # noqa: F401
from .jit import jit  # noqa: F401
from .mode import DebugMode, DebugModeError, Mode  # noqa: F401
from .op import Apply, Op  # noqa: F401  (Python ops: theano.Op, theano.Apply)
from .op_from_graph import OpFromGraph  # noqa: F401
from .printing import pp  # noqa: F401
from .random import RandomStreams  # noqa: F401
from .scan import foldl, foldr, map, reduce, scan, until  # noqa: F401,A004  (Theano's theano.scan, theano.map, ...)
from .scan_checkpoints import scan_checkpoints  # noqa: F401,E402  (theano.scan_checkpoints)
from .shared import SharedVariable, shared  # noqa: F401
from .tensor.basic import dot  # noqa: F401  (Theano's theano.dot)
from .tensor.variable import Variable  # noqa: F401  (theano.Variable, for isinstance checks)
from .tensor.variable import Variable as Constant  # noqa: F401
from .trace import (
    MissingInputError,  # noqa: F401
    clone_replace,  # noqa: F401  (PyTensor's name)
)
from .trace import clone_replace as clone  # noqa: F401  (theano.clone)

__version__ = "0.1.0"

from . import theano_paths as _theano_paths  # noqa: E402

_theano_paths.register()
from .profiling import ProfileStats  # noqa: E402,F401  (theano.ProfileStats)


def __getattr__(name):
    """``tcomp.sandbox`` (Theano's ``theano.sandbox.rng_mrg``) on first use: importing it
    eagerly here would import the random streams before the tensor package."""
    if name in ("sandbox", "gof", "sparse", "raise_op", "typed_list"):  # (gof: Theano's theano.gof.Op, tcomp/gof.py)
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'tcomp' has no attribute {name!r}")
