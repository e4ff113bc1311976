"""Compiled functions and gradients with sparse inputs and outputs.

``tcomp.function`` hands a signature with a sparse variable here: the function is compiled
over the dense parts (each sparse input is five arguments: data, indices, indptr and the
two dims; each sparse output five results), and the wrapper unpacks the SciPy matrices a
call is given and packs SciPy matrices from the results.  So the native program, its
caches and its checks are the dense ones.

``T.grad(cost, x)`` with ``x`` sparse is the structured gradient: ``T.grad`` of the stored
values, with ``x``'s pattern.
"""
from __future__ import annotations

import numpy as np

from tcomp.tensor.variable import Variable

from .variable import SparseVariable, _scipy, is_sparse


def has_sparse(*groups) -> bool:
    """Whether any variable in the (nested one level) groups is sparse."""
    for g in groups:
        items = g if isinstance(g, (list, tuple)) else [g]
        for v in items:
            if is_sparse(v):
                return True
    return False


class SparseFunction:
    """A compiled function whose signature has sparse variables: arguments and results of
    those positions are SciPy matrices (other positions as in :class:`tcomp.Function`)."""

    def __init__(self, inputs, outputs, on_unused_input="raise", **kwargs):
        from tcomp.function import Function, _reachable

        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        self.single_output = outputs is not None and not isinstance(outputs, (list, tuple))
        outs = [] if outputs is None else ([outputs] if self.single_output else list(outputs))
        flat_in, self._in_layout = [], []
        for i, v in enumerate(inputs):
            if is_sparse(v):
                if not v.is_root:
                    raise TypeError(f"input {i} ({v.describe()}) is not a root variable: inputs must be made by "
                                    "sparse.csr_matrix() / sparse.csc_matrix()")
                self._in_layout.append((v, len(flat_in)))
                flat_in.extend(v.parts)
            else:
                self._in_layout.append((None, len(flat_in)))
                flat_in.append(v)
        flat_out, self._out_layout = [], []
        for o in outs:
            self._out_layout.append((o.format if is_sparse(o) else None, len(flat_out)))
            flat_out.extend(o.parts if is_sparse(o) else [o])
        self.inputs, self.outputs = inputs, outs
        self.fn = Function(flat_in, flat_out, on_unused_input="ignore", **kwargs)
        if on_unused_input != "ignore":
            reach = _reachable(self.fn.outputs + [e for _, e in self.fn.updates], {})
            for v, _ in zip(inputs, self._in_layout):
                parts = v.parts if is_sparse(v) else [v]
                if not any(id(p) in reach for p in parts if isinstance(p, Variable)):
                    msg = (f"input {v.describe()} is not used to compute any output or update "
                           "(pass on_unused_input='ignore' or 'warn' to allow it)")
                    if on_unused_input == "raise":
                        raise ValueError(msg)
                    import warnings

                    warnings.warn(msg, stacklevel=4)

    def __getattr__(self, name):  # maker, dump, updates, copy-free introspection of the dense function
        if name == "fn":
            raise AttributeError(name)
        return getattr(self.fn, name)

    def _sparse_arg(self, var, value):
        """The five arrays of a sparse argument: converted to the input's format (as Theano's
        filter does) with int32 indices; its values follow the dense argument rules."""
        sp = _scipy()
        label = var.name or var.format
        if isinstance(value, (Variable, SparseVariable)):
            raise TypeError(f"argument {label!r}: got a symbolic variable; pass a SciPy sparse matrix")
        if not sp.issparse(value):
            arr = np.asarray(value)
            if arr.ndim != 2 or arr.dtype.kind not in "biuf":
                raise TypeError(f"argument {label!r}: expected a SciPy {var.format} matrix, got "
                                f"{type(value).__name__}")
            value = sp.csr_matrix(arr)
        m = value.asformat(var.format)
        if m.nnz > np.iinfo(np.int32).max:
            raise ValueError(f"argument {label!r}: {m.nnz} stored entries do not fit int32 indices")
        from tcomp.function import convert_argument

        data = convert_argument(m.data, f"{label}.data", var.dtype, self.fn.allow_input_downcast)
        return [data, m.indices.astype(np.int32, copy=False), m.indptr.astype(np.int32, copy=False),
                np.int64(m.shape[0]), np.int64(m.shape[1])]

    def __call__(self, *args, **kwargs):
        names = {v.name: k for k, v in enumerate(self.inputs) if v.name}
        args = list(args)
        for key in sorted(kwargs, key=lambda n: names.get(n, -1)):
            k = names.get(key)
            if k is not None and is_sparse(self.inputs[k]):
                if k != len(args):
                    raise TypeError(f"{self.fn.name}: a sparse argument ({key!r}) by name needs every argument "
                                    "before it by position")
                args.append(kwargs.pop(key))
        if len(args) > len(self.inputs):
            raise TypeError(f"{self.fn.name} takes {len(self.inputs)} arguments, got {len(args)}")
        flat = []
        for (var, _), value in zip(self._in_layout, args):
            if var is None:
                flat.append(value)
            else:
                flat.extend(self._sparse_arg(var, value))
        results = self.fn(*flat, **kwargs)
        if not isinstance(results, list):
            results = [results]
        sp = _scipy()
        outs = []
        for fmt, k in self._out_layout:
            if fmt is None:
                outs.append(results[k])
                continue
            data, indices, indptr, m, n = results[k:k + 5]
            cls = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
            outs.append(cls((data, indices, indptr), shape=(int(m), int(n))))
        return outs[0] if self.single_output else outs


def sparse_grad(grad, cost, wrt, **kwargs):
    """``T.grad`` with sparse entries in ``wrt``: structured gradients (the pattern of each
    sparse variable, the gradient of its stored values)."""
    single = not isinstance(wrt, (list, tuple))
    wrt_list = [wrt] if single else list(wrt)
    dense = [w.data if is_sparse(w) else w for w in wrt_list]
    grads = grad(cost, dense, **kwargs)
    out = [SparseVariable(w.format, g, w.indices, w.indptr, w.shape) if is_sparse(w) and g is not None else g
           for w, g in zip(wrt_list, grads)]
    return out[0] if single else out
