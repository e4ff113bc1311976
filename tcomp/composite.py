"""Compiled functions over composite variables: values made of several dense tensors.

A ``tcomp.sparse`` matrix (data, indices, indptr, two dims) and a ``tcomp.typed_list`` list
(the elements' values end to end, and their shapes) are Python-level wrappers over dense
symbolic tensors, so the graph, the passes and the native program only ever see tensors.
``tcomp.function`` hands a signature with such a variable here: the function is compiled
over the dense parts, and this wrapper unpacks each argument into its arrays and packs each
composite result back (a SciPy matrix, a Python list).

The protocol (``tcomp_composite = True``): ``parts`` (the dense variables), ``is_root``,
``describe()``, ``unpack_argument(value, convert)`` -> arrays for the parts (``convert(value,
label, dtype)`` applies the dense argument rules), ``pack_result(arrays)`` -> the value.
"""
from __future__ import annotations

import warnings

from .tensor.variable import Variable


def is_composite(v) -> bool:
    return getattr(v, "tcomp_composite", False) is True


def has_composite(inputs, outputs) -> bool:
    """Whether a signature (inputs, outputs: a variable or a list) has a composite variable."""
    for group in (inputs, outputs):
        for v in group if isinstance(group, (list, tuple)) else [group]:
            if is_composite(v):
                return True
    return False


def _part_givens(key, value):
    """``givens`` pairs replacing the parts of the composite ``key`` by those of ``value`` (a
    composite of the same kind, or a value its type converts: a SciPy matrix)."""
    if not is_composite(value):
        convert = getattr(key, "as_same_kind", None)
        value = convert(value) if convert is not None else value
    if not is_composite(value) or type(value.type) is not type(key.type) or len(value.parts) != len(key.parts) \
            or getattr(value, "format", None) != getattr(key, "format", None) or value.dtype != key.dtype:
        raise TypeError(f"givens: {key.describe()} must be replaced by a value of its type {key.type}, got "
                        f"{value.describe() if hasattr(value, 'describe') else repr(value)}")
    return [(k, v) for k, v in zip(key.parts, value.parts) if k is not v]


class CompositeFunction:
    """A compiled function with composite variables in its signature; other positions, the
    updates and every option are as in :class:`tcomp.Function` (``fn`` is that function)."""

    def __init__(self, inputs, outputs, on_unused_input="raise", **kwargs):
        from .function import Function, _check_givens, _reachable

        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        self.single_output = outputs is not None and not isinstance(outputs, (list, tuple))
        outs = [] if outputs is None else ([outputs] if self.single_output else list(outputs))
        flat_in = []
        for i, v in enumerate(inputs):
            if is_composite(v):
                if not v.is_root:
                    raise TypeError(f"input {i} ({v.describe()}) is not a root variable: inputs must be made by "
                                    "constructors such as sparse.csr_matrix() or TypedListType(T.fvector)()")
                flat_in.extend(v.parts)
            else:
                flat_in.append(v)
        flat_out, self._out_layout = [], []
        for o in outs:
            parts = list(o.parts) if is_composite(o) else [o]
            self._out_layout.append((o if is_composite(o) else None, len(flat_out), len(parts)))
            flat_out.extend(parts)
        self.inputs, self.outputs = inputs, outs
        updates = kwargs.pop("updates", None)
        pairs = list(updates.items()) if isinstance(updates, dict) else list(updates or [])
        flat_updates = []
        for pair in pairs:  # a composite shared variable's update: its parts' updates
            target = pair[0] if isinstance(pair, (tuple, list)) and len(pair) == 2 else None
            if target is not None and callable(getattr(target, "update_pairs", None)):
                flat_updates.extend(target.update_pairs(pair[1]))
            else:
                flat_updates.append(pair)
        givens = kwargs.pop("givens", None)
        pairs = list(givens.items()) if isinstance(givens, dict) else list(givens or [])
        flat_givens = []
        for pair in pairs:  # a composite replaced by another: part by part
            if isinstance(pair, (tuple, list)) and len(pair) == 2 and is_composite(pair[0]):
                flat_givens.extend(_part_givens(*pair))
            else:
                flat_givens.append(pair)
        self.fn = Function(flat_in, flat_out, on_unused_input="ignore", updates=flat_updates,
                           givens=flat_givens or None, **kwargs)
        if on_unused_input != "ignore":
            reach = _reachable(self.fn.outputs + [e for _, e in self.fn.updates], _check_givens(flat_givens))
            for v in inputs:
                parts = v.parts if is_composite(v) else [v]
                if not any(id(p) in reach for p in parts if isinstance(p, Variable)):
                    msg = (f"input {v.describe()} is not used to compute any output or update "
                           "(pass on_unused_input='ignore' or 'warn' to allow it)")
                    if on_unused_input == "raise":
                        raise ValueError(msg)
                    warnings.warn(msg, stacklevel=4)

    @property
    def dense_function(self):
        """The :class:`tcomp.Function` over the parts (what ``pp``/``debugprint`` print)."""
        return self.fn

    def __getattr__(self, name):  # name, maker, dump, updates, ...: the dense function's
        if name == "fn":
            raise AttributeError(name)
        return getattr(self.fn, name)

    def copy(self, share_memory=False, swap=None, delete_updates=False, name=None):
        """``Function.copy`` of the dense function, keeping this signature; ``swap`` may map a
        sparse shared variable to another (their parts are swapped)."""
        pairs = {}
        for old, new in (swap or {}).items():
            if callable(getattr(old, "update_pairs", None)):
                if not callable(getattr(new, "update_pairs", None)) or new.format != old.format:
                    raise TypeError(f"copy: swap {old.describe()} for a sparse shared variable of its format")
                pairs.update(zip(old.shared_parts, new.shared_parts))
            else:
                pairs[old] = new
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin.fn = self.fn.copy(share_memory=share_memory, swap=pairs or None, delete_updates=delete_updates,
                               name=name)
        return twin

    def __copy__(self):
        return self.copy()

    def _convert(self, value, label, dtype):
        from .function import convert_argument

        if isinstance(value, Variable) or is_composite(value):
            raise TypeError(f"argument {label!r}: got a symbolic variable; pass a value")
        return convert_argument(value, label, dtype, self.fn.allow_input_downcast)

    def __call__(self, *args, **kwargs):
        names = {v.name: k for k, v in enumerate(self.inputs) if v.name}
        args = list(args)
        for key in sorted(kwargs, key=lambda n: names.get(n, -1)):
            k = names.get(key)
            if k is not None and is_composite(self.inputs[k]):
                if k != len(args):
                    raise TypeError(f"{self.fn.name}: argument {key!r} by name needs every argument before it "
                                    "by position")
                args.append(kwargs.pop(key))
        if len(args) > len(self.inputs):
            raise TypeError(f"{self.fn.name} takes {len(self.inputs)} arguments, got {len(args)}")
        flat = []
        for var, value in zip(self.inputs, args):
            if is_composite(var):
                flat.extend(var.unpack_argument(value, self._convert))
            else:
                flat.append(value)
        results = self.fn(*flat, **kwargs)
        if not isinstance(results, list):
            results = [results]
        outs = [results[k] if o is None else o.pack_result(results[k:k + n]) for o, k, n in self._out_layout]
        return outs[0] if self.single_output else outs
