"""Theano module paths that programs import from, mapped onto tcomp's modules:
``theano.compile.function_module`` (Function, function), ``theano.compile.sharedvalue``
(SharedVariable, shared), ``theano.compile.nanguardmode`` (NanGuardMode) and
``theano.compile.profiling`` (ProfileStats); ``theano.tensor.var`` and
``theano.tensor.sharedvar`` (the variable classes, for isinstance checks).  Each is
registered in ``sys.modules`` and as an attribute of ``tcomp.compile``, so both
``from tcomp.compile.sharedvalue import SharedVariable`` and ``tcomp.compile.sharedvalue.shared``
work."""
from __future__ import annotations

import sys
import types


def _module_only(full: str, doc: str, **members) -> types.ModuleType:
    """A module importable by name whose parent keeps its attribute of the same name
    (``tcomp.tensor.var`` is also the variance function ``T.var``)."""
    module = types.ModuleType(full, doc)
    module.__dict__.update(members)
    module.__all__ = sorted(members)
    sys.modules[full] = module
    return module


def _alias(parent, name: str, doc: str, **members) -> None:
    """A module importable by name that is also the attribute ``name`` of ``parent``."""
    setattr(parent, name, _module_only(f"{parent.__name__}.{name}", doc, **members))


def register() -> None:
    from . import compile as compile_module
    from . import gof, nanguardmode, profiling, tensor
    from . import io as io_module
    from . import mode as mode_module
    from .function import Function, function
    from .shared import SharedVariable, shared
    from .tensor.variable import Variable

    _alias(compile_module, "function_module", "Theano's theano.compile.function_module.",
           Function=Function, function=function)
    _alias(compile_module, "sharedvalue", "Theano's theano.compile.sharedvalue.",
           SharedVariable=SharedVariable, shared=shared)
    # theano.compile.function is the function, and also a module holding it
    _module_only(f"{compile_module.__name__}.function", "Theano's theano.compile.function.", function=function)
    for name, module in (("mode", mode_module), ("io", io_module), ("nanguardmode", nanguardmode),
                         ("profiling", profiling)):
        sys.modules[f"{compile_module.__name__}.{name}"] = module
        setattr(compile_module, name, module)
    for name, value in (("function", function), ("shared", shared), ("SharedVariable", SharedVariable),
                        ("In", io_module.In), ("Out", io_module.Out), ("Mode", mode_module.Mode),
                        ("get_mode", mode_module.get_mode)):
        setattr(compile_module, name, value)
    # isinstance checks of Theano code: every symbolic tensor is a tcomp Variable
    _module_only(f"{tensor.__name__}.var", "Theano's theano.tensor.var.", TensorVariable=Variable,
                 TensorConstant=Variable, _tensor_py_operators=Variable)
    _alias(tensor, "sharedvar", "Theano's theano.tensor.sharedvar.", TensorSharedVariable=SharedVariable,
           SharedVariable=SharedVariable)
    gof.Variable = gof.Constant = Variable
    # theano.tensor.sort / theano.tensor.subtensor / theano.gof.graph (tcomp/tensor/graph_paths.py)
    from .tensor import graph_paths

    sort_members, subtensor_members, graph_members = graph_paths.members()
    _module_only(f"{tensor.__name__}.sort", "Theano's theano.tensor.sort.", **sort_members)
    _alias(tensor, "subtensor", "Theano's theano.tensor.subtensor.", **subtensor_members)
    _alias(gof, "graph", "Theano's theano.gof.graph.", **graph_members)
