"""Python ops, as Theano's "Extending Theano" tutorial writes them: ``tcomp.Op``, ``tcomp.Apply``,
``tcomp.compile.ops.as_op``.

An op's application becomes one ``py_call`` node (``ir/ops/pyop.py``).  On the CPU backend
the graph runs as native programs split at each such node (``tcomp/backend/cpu/python_stages.py``):
``perform`` gets NumPy arrays, runs with the GIL held, and its results are checked against
the declared types before the next native stage reads them.  ``T.grad`` calls the op's
symbolic ``grad(inputs, output_grads)`` (``tcomp/gradient.py``).

Why one node per application and never merged (unless ``pure = True``): a Python op may
have side effects or state (a counter, a random draw, a log); Theano ran ``perform`` once
per application, and so does tcomp.
"""
from __future__ import annotations

import inspect

from tcomp.ir import dtypes as dt
from tcomp.ir.ops.pyop import PyOpRef, op_name
from tcomp.ir.types import TensorType as IRTensorType

from .tensor.variable import Variable, apply, as_variable


class Apply:
    """Theano's ``Apply(op, inputs, outputs)``: what ``make_node`` returns.  ``outputs`` are
    placeholder variables (``x.type()``) that give the result types; calling the op returns
    the real result variables."""

    def __init__(self, op, inputs, outputs):
        self.op = op
        self.inputs = [as_variable(v, f"input {i} of {op_name(op)}") for i, v in enumerate(inputs)]
        outs = list(outputs)
        for i, o in enumerate(outs):
            if not isinstance(o, Variable) or not isinstance(o.type, IRTensorType):
                raise TypeError(f"Apply of {op_name(op)}: output {i} must be a tensor variable such as "
                                f"x.type() or T.dmatrix(), got {o!r}")
        if not outs:
            raise TypeError(f"Apply of {op_name(op)}: an op needs at least one output")
        self.outputs = outs

    nin = property(lambda self: len(self.inputs))
    nout = property(lambda self: len(self.outputs))

    def __repr__(self):
        return f"Apply({op_name(self.op)}, {len(self.inputs)} inputs, {len(self.outputs)} outputs)"


def _as_input(op, i, v, want):
    """Input ``i`` as a variable of type ``want`` (Python numbers and arrays become constants of
    its dtype; a symbolic variable must already have its dtype and rank)."""
    if not isinstance(v, Variable):
        from .tensor.variable import constant

        try:
            v = constant(v, dtype=want.dtype)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{op_name(op)}: input {i} ({v!r}) cannot become a {want}: {exc}") from None
    if v.dtype != want.dtype or v.ndim != want.ndim:
        raise TypeError(f"{op_name(op)}: input {i} is {v.describe()}, the op expects {want} "
                        f"(dtype {want.dtype}, rank {want.ndim})")
    return v


class Op:
    """Base class of Python ops (Theano's ``theano.Op`` / ``theano.gof.Op``).

    Define ``perform(self, node, inputs, output_storage)`` (store output ``i`` in
    ``output_storage[i][0]``) and either ``itypes``/``otypes`` (lists of types such as
    ``T.dmatrix``) or ``make_node(self, *inputs)`` returning ``tcomp.Apply(self, inputs,
    [x.type()])``.  Optional: ``infer_shape(self, fgraph, node, input_shapes)`` (or Theano's
    older ``(node, input_shapes)``): the result shapes, so results get static dims where it
    gives constants or an input's named/static dim; ``grad(self, inputs, output_grads)``:
    symbolic gradients (one per input; ``None`` for none); ``pure = True``: ``perform``
    depends on its inputs only, so equal applications of this instance may be merged.
    ``__props__``: the attributes that make two instances equal (Theano's equality and hash).
    """

    itypes = None
    otypes = None
    #: perform depends on its inputs only (no state, no side effects): CSE may merge applications
    pure = False
    #: which output calling the op returns when it has several (None: all, as a list)
    default_output = None

    # -- Theano's equality: by type and __props__, else identity ---------------------------
    def _props(self):
        return tuple(getattr(self, p) for p in type(self).__props__)

    def __eq__(self, other):
        if not hasattr(type(self), "__props__"):
            return self is other
        return type(self) is type(other) and self._props() == other._props()

    def __hash__(self):
        if not hasattr(type(self), "__props__"):
            return object.__hash__(self)
        return hash((type(self), self._props()))

    def __str__(self):
        props = getattr(type(self), "__props__", ())
        if not props:
            return type(self).__name__
        return f"{type(self).__name__}{{{', '.join(f'{p}={getattr(self, p)!r}' for p in props)}}}"

    # -- building ---------------------------------------------------------------------------
    def make_node(self, *inputs):
        """Theano's default for ops with ``itypes``/``otypes``."""
        if self.itypes is None or self.otypes is None:
            raise TypeError(f"Python op {op_name(self)} defines neither make_node nor itypes/otypes")
        if len(inputs) != len(self.itypes):
            raise TypeError(f"{op_name(self)} takes {len(self.itypes)} inputs, got {len(inputs)}")
        ins = [_as_input(self, i, v, t) for i, (v, t) in enumerate(zip(inputs, self.itypes))]
        return Apply(self, ins, [t() for t in self.otypes])

    def __call__(self, *inputs, return_list=False, **kwargs):
        if kwargs:
            raise TypeError(f"{op_name(self)}: unexpected keyword arguments {sorted(kwargs)}")
        node = self.make_node(*inputs)
        if not isinstance(node, Apply):
            raise TypeError(f"{op_name(self)}.make_node must return tcomp.Apply(op, inputs, outputs), "
                            f"got {type(node).__name__}")
        outs = apply_python_op(self, node)
        if return_list:
            return outs
        if self.default_output is not None:
            return outs[self.default_output]
        return outs[0] if len(outs) == 1 else outs

    def __getstate__(self):
        """Pickled without this process's py_call token (ir/ops/pyop.py): a loaded op is a new
        op instance and gets its own."""
        d = dict(self.__dict__)
        d.pop("_tcomp_py_token", None)
        return d

    def R_op(self, inputs, eval_points):
        raise TypeError(f"Python op {op_name(self)}: R_op is not used by tcomp: T.Rop differentiates through the "
                        "op's grad twice (define grad; its result must be differentiable)")


def _dims_from_infer_shape(op, node, out_types):
    """The result types with the dims ``infer_shape`` states: a constant is a static dim, an
    input's dim (``x.shape[i]``) that is static or named is that dim; anything else stays
    symbolic."""
    fn = getattr(op, "infer_shape", None)
    if fn is None:
        return out_types
    shapes = [tuple(x.shape) for x in node.inputs]
    try:
        n_params = len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        n_params = 3
    res = fn(None, node, shapes) if n_params >= 3 else fn(node, shapes)
    res = list(res)
    if len(res) != len(out_types):
        raise TypeError(f"{op_name(op)}.infer_shape returned {len(res)} shapes for {len(out_types)} outputs")
    new = []
    for i, (shape, t) in enumerate(zip(res, out_types)):
        shape = tuple(shape)
        if len(shape) != t.ndim:
            raise TypeError(f"{op_name(op)}.infer_shape: output {i} has rank {t.ndim} ({t}), "
                            f"infer_shape gave {len(shape)} dims")
        dims = []
        for axis, (d, declared) in enumerate(zip(shape, t.shape)):
            got = _static_or_named(d)
            if isinstance(declared, int) and isinstance(got, int) and got != declared:
                raise ValueError(f"{op_name(op)}.infer_shape: output {i} axis {axis} is {got}, its type {t} "
                                 f"says {declared}")
            dims.append(declared if isinstance(declared, int) else got)
        new.append(IRTensorType(t.dtype, dims))
    return new


def _static_or_named(d):
    import numbers

    import numpy as np

    if isinstance(d, numbers.Integral) and not isinstance(d, bool):
        return int(d)
    if isinstance(d, Variable):
        if d.op == "constant":
            v = np.asarray(d.attrs["value"].value)
            return int(v) if v.ndim == 0 and v.dtype.kind in "iu" else None
        if d.op == "shape":
            dim = d.inputs[0].type.shape[d.attrs["axis"]]
            return dim if isinstance(dim, (int, str)) else None
    return None


def apply_python_op(op, node: Apply) -> list:
    """The result variables of ``op`` applied as ``node``: one ``py_call`` node (read through
    ``get_output`` when it has several results)."""
    out_types = [IRTensorType(o.type.dtype, o.type.shape) for o in node.outputs]
    out_types = _dims_from_infer_shape(op, node, out_types)
    attrs = {"op": PyOpRef(op), "outputs": tuple(out_types), "pure": bool(getattr(op, "pure", False))}
    call = apply("py_call", node.inputs, attrs)
    if len(out_types) == 1:
        outs = [call]
    else:
        outs = [apply("get_output", [call], {"index": i}) for i in range(len(out_types))]
    for o, placeholder in zip(outs, node.outputs):
        if placeholder.name is not None:
            o.name = placeholder.name
    return outs


class FromFunctionOp(Op):
    """What :func:`as_op` makes: ``perform`` calls a NumPy function of the inputs."""

    __props__ = ("fn", "itypes", "otypes", "infer_shape_fn")

    def __init__(self, fn, itypes, otypes, infer_shape=None):
        self.fn = fn
        self.itypes = tuple(itypes)
        self.otypes = tuple(otypes)
        self.infer_shape_fn = infer_shape
        self.name = getattr(fn, "__name__", "as_op")
        self.__doc__ = getattr(fn, "__doc__", None)
        if infer_shape is not None:
            # Theano's as_op passes (node, input_shapes); PyTensor's (fgraph, node, input_shapes)
            try:
                theano_style = len(inspect.signature(infer_shape).parameters) == 2
            except (TypeError, ValueError):
                theano_style = False
            if theano_style:
                self.infer_shape = lambda fgraph, node, shapes: infer_shape(node, shapes)
            else:
                self.infer_shape = lambda fgraph, node, shapes: infer_shape(fgraph, node, shapes)

    def __str__(self):
        return self.name

    def __hash__(self):
        return hash((type(self), self.fn, self.itypes, self.otypes))

    def perform(self, node, inputs, output_storage):
        outs = self.fn(*inputs)
        if len(self.otypes) == 1:
            outs = [outs]
        elif not isinstance(outs, (list, tuple)) or len(outs) != len(self.otypes):
            raise TypeError(f"as_op function {self.name} must return {len(self.otypes)} values (a list or tuple), "
                            f"got {type(outs).__name__}")
        for cell, v in zip(output_storage, outs):
            cell[0] = v

    def __reduce__(self):
        return (FromFunctionOp, (self.fn, self.itypes, self.otypes, self.infer_shape_fn))


def _check_types(what, types):
    types = list(types) if isinstance(types, (list, tuple)) else [types]
    for t in types:
        if not isinstance(t, IRTensorType):
            raise TypeError(f"as_op: {what} must be tensor types such as T.dmatrix, got {t!r}")
        dt.canonical(t.dtype)
    return types


def as_op(itypes, otypes, infer_shape=None):
    """Theano's ``@as_op(itypes=[...], otypes=[...])``: a NumPy function as a Python op.
    The function gets one array per input and returns one array (or a list for several
    ``otypes``); ``infer_shape(fgraph, node, input_shapes)`` is optional."""
    itypes, otypes = _check_types("itypes", itypes), _check_types("otypes", otypes)
    if not otypes:
        raise TypeError("as_op: otypes must name at least one output type")

    def decorator(fn):
        if not callable(fn):
            raise TypeError(f"as_op decorates a function, got {fn!r}")
        return FromFunctionOp(fn, itypes, otypes, infer_shape)
    return decorator


__all__ = ["Op", "Apply", "as_op", "FromFunctionOp", "apply_python_op"]
