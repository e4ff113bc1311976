"""Theano's ``In``/``Out`` wrappers and how a compiled function binds its arguments.

``tcomp.function([x, In(y, value=1, name='why')], z)`` makes ``y`` optional (positional or
keyword ``why=``).  An ``In`` with an ``update`` keeps a state across calls: tcomp turns it
into a hidden shared variable (the variable is replaced by it, as with ``givens``, and the
update becomes a shared-variable update), so it gets the same locking and in-place update
as any shared variable.  Passing that argument explicitly overwrites the state first.

Also here: Theano's ``TensorType.filter`` rule that shared variables apply to new values
(``filter_value``), so ``set_value`` refuses a value it cannot hold without loss.
"""
from __future__ import annotations

import numpy as np

_NO_VALUE = object()


class In:
    """A compiled function's input with Theano's options.

    ``variable``: the root variable.  ``name``: keyword name of the argument (default: the
    variable's name).  ``value``: default used when the argument is omitted (then it may
    also be given by position or keyword).  ``update``: an expression the stored value is
    replaced with after every call (a state; needs ``value``).  ``implicit``: the argument
    cannot be passed (only its value/update are used; default: False).  ``strict``: an
    argument must already be an array of exactly the variable's dtype.
    ``allow_downcast``: this input's own ``allow_input_downcast``.
    ``mutable`` / ``borrow``: accepted for Theano's sake; tcomp's compiled code never writes
    into an argument nor keeps a reference to it after the call, so both are always safe.
    """

    def __init__(self, variable, name=None, value=None, update=None, mutable=False, strict=False,
                 allow_downcast=None, autoname=True, implicit=None, borrow=False, shared=False):
        from .tensor.variable import Variable

        if not isinstance(variable, Variable):
            raise TypeError(f"In: variable must be a symbolic variable, got {type(variable).__name__}")
        if isinstance(value, Variable):
            raise TypeError(f"In({variable.describe()}): value must be a number or array (the default), not a "
                            "symbolic variable; use givens= to compute an input from others")
        if update is not None and value is None:
            raise ValueError(f"In({variable.describe()}): an input with an update needs a value (its initial "
                             "state)")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"In: name must be a string, got {name!r}")
        self.variable = variable
        self.name = name if name is not None else (variable.name if autoname else None)
        self.value = value
        self.update = update
        self.mutable = bool(mutable)
        self.strict = bool(strict)
        self.allow_downcast = allow_downcast
        self.implicit = bool(implicit) if implicit is not None else False
        self.borrow = bool(borrow)
        if implicit and value is None:
            raise ValueError(f"In({variable.describe()}): an implicit input needs a value")
        if shared:
            raise ValueError("In(shared=True) is not supported: use tcomp.shared() for storage shared between "
                             "functions")

    def __repr__(self):
        return f"In({self.variable!r}, name={self.name!r})"


class Out:
    """A compiled function's output.  ``borrow=True`` lets Theano return its internal
    storage (overwritten by the next call); tcomp always returns a fresh array, so borrow
    changes nothing and is always safe.  ``return_internal_type``: Theano's hint for GPU
    arrays; tcomp's outputs are always NumPy arrays."""

    def __init__(self, variable, borrow=False, return_internal_type=False):
        self.variable = variable
        self.borrow = bool(borrow)
        self.return_internal_type = bool(return_internal_type)

    def __repr__(self):
        return f"Out({self.variable!r}, borrow={self.borrow})"


def unwrap_outputs(outputs):
    """``outputs`` with every ``Out`` replaced by its variable (same nesting)."""
    if isinstance(outputs, Out):
        return outputs.variable
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(o.variable if isinstance(o, Out) else o for o in outputs)
    return outputs


class Param:
    """One argument of a compiled function: where it goes and how it is checked."""

    __slots__ = ("variable", "name", "default", "state", "implicit", "strict", "allow_downcast")

    def __init__(self, variable, name, default=_NO_VALUE, state=None, implicit=False, strict=False,
                 allow_downcast=None):
        self.variable = variable
        self.name = name
        self.default = default
        #: the hidden shared variable holding an In-with-update's state
        self.state = state
        self.implicit = implicit
        self.strict = strict
        self.allow_downcast = allow_downcast


class Signature:
    """How ``f(*args, **kwargs)`` maps to the graph's explicit inputs.

    ``params`` are the user's inputs in order; ``inputs`` the plain variables the graph
    takes (params without a state); ``givens``/``updates`` what the states add."""

    def __init__(self, params):
        self.params = params
        self.inputs = [p.variable for p in params if p.state is None]
        self.positions = {id(p.variable): i for i, p in enumerate(p for p in params if p.state is None)}
        #: keyword name -> position; None when several inputs share the name (then it is refused)
        self.by_name = {}
        for i, p in enumerate(params):
            if p.name is not None:
                self.by_name[p.name] = None if p.name in self.by_name else i

    def bind(self, fname: str, args, kwargs, convert):
        """The argument list for the graph's explicit inputs (converted by ``convert(value,
        variable)``); sets the states of In-with-update arguments that were passed."""
        params = self.params
        if len(args) > len(params):
            raise TypeError(f"{fname}() takes {len(params)} arguments, got {len(args)}")
        values = list(args) + [_NO_VALUE] * (len(params) - len(args))
        for key, value in kwargs.items():
            if key in self.by_name and self.by_name[key] is None:
                raise TypeError(f"{fname}(): several inputs are named {key!r}; pass that argument by position")
            i = self.by_name.get(key)
            if i is None:
                raise TypeError(f"{fname}() got an unexpected keyword argument {key!r} (arguments: "
                                f"{', '.join(p.name or f'<input {k}>' for k, p in enumerate(params))})")
            if values[i] is not _NO_VALUE:
                raise TypeError(f"{fname}() got multiple values for argument {key!r}")
            values[i] = value
        out = [None] * len(self.inputs)
        missing = []
        for i, (p, value) in enumerate(zip(params, values)):
            label = p.name or f"input {i}"
            if value is not _NO_VALUE and p.implicit:
                raise TypeError(f"{fname}(): argument {label!r} is implicit (its value is internal); do not pass it")
            if p.state is not None:
                if value is not _NO_VALUE:
                    p.state.set_value(self._checked(p, value, label, convert))
                continue
            if value is _NO_VALUE:
                if p.default is _NO_VALUE:
                    missing.append(label)
                    continue
                value = p.default
            out[self.positions[id(p.variable)]] = self._checked(p, value, label, convert)
        if missing:
            raise TypeError(f"{fname}() missing argument(s): {', '.join(missing)}")
        return out

    @staticmethod
    def _checked(p, value, label, convert):
        if p.strict and not (isinstance(value, np.ndarray) and value.dtype.name == p.variable.dtype):
            got = f"an array of dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
            raise TypeError(f"argument {label!r} is strict: it must be a NumPy array of dtype {p.variable.dtype}, "
                            f"got {got}")
        if p.allow_downcast is not None:
            value = filter_value(value, p.variable.dtype, label, allow_downcast=p.allow_downcast)
        return convert(value, p.variable)


def normalize_inputs(inputs):
    """(Signature, givens, updates) for a list of variables and ``In`` objects: the
    In-with-update inputs become hidden shared variables (replacing their variable).
    ``Param`` items (a copied or unpickled function's) are taken as they are: their graph
    already reads the hidden shared variables and updates them."""
    from .shared import SharedVariable
    from .tensor.variable import Variable

    params, givens, updates = [], [], []
    for i, item in enumerate(inputs):
        if isinstance(item, Param):
            params.append(item)
        elif isinstance(item, In):
            var = item.variable
            state = None
            if item.update is not None:
                state = SharedVariable(filter_value(item.value, var.dtype, item.name or f"input {i}"),
                                       name=item.name or var.name, shape=var.type.shape)
                givens.append((var, state))
                updates.append((state, item.update))
            default = _NO_VALUE if item.value is None or state is not None else item.value
            params.append(Param(var, item.name, default, state, item.implicit, item.strict, item.allow_downcast))
        elif isinstance(item, Variable):
            params.append(Param(item, item.name))
        else:
            raise TypeError(f"input {i} must be a symbolic variable or tcomp.In, got {type(item).__name__} {item!r}")
    return Signature(params), givens, updates


def skipped_default_updates(no_default_updates):
    """``function(no_default_updates=...)`` as the shared variables whose default update is
    skipped; None when all are (``True``)."""
    from .shared import SharedVariable

    if no_default_updates is True:
        return None
    if no_default_updates is False or no_default_updates is None:
        return ()
    if isinstance(no_default_updates, SharedVariable):
        no_default_updates = [no_default_updates]
    if not isinstance(no_default_updates, (list, tuple, set)):
        raise TypeError(f"no_default_updates must be True, False or a list of shared variables, got "
                        f"{no_default_updates!r}")
    for v in no_default_updates:
        if not isinstance(v, SharedVariable):
            raise TypeError(f"no_default_updates: {v!r} is not a shared variable")
    return tuple(no_default_updates)


def filter_value(value, dtype: str, label: str, strict: bool = False, allow_downcast=None):
    """Theano's ``TensorType.filter`` for a value stored into a variable of ``dtype``.

    An array of the exact dtype passes.  ``strict``: nothing else does.  Otherwise, with
    ``allow_downcast`` anything is cast; an array whose dtype ``dtype`` cannot represent
    exactly (float64 into float32, int64 into float32) raises TypeError; a Python float
    is rounded to floatX (Theano's special case); any other value (Python numbers, lists,
    NumPy scalars) is accepted only when converting it loses nothing."""
    from tcomp import config

    from .tensor.variable import Variable

    if isinstance(value, Variable):
        raise TypeError(f"{label}: expected a NumPy array, got a symbolic variable")
    if isinstance(value, np.ndarray) and value.dtype.name == dtype:
        return value
    if strict:
        got = f"dtype {value.dtype.name}" if isinstance(value, np.ndarray) else type(value).__name__
        raise TypeError(f"{label} is strict: expected a NumPy array of dtype {dtype}, got {got}")
    if isinstance(value, np.ndarray) and value.dtype.kind not in "biuf":
        raise TypeError(f"{label}: expected a {dtype} tensor, got an array of dtype {value.dtype} "
                        "(only bool, integer and float data)")
    if allow_downcast:
        with np.errstate(all="ignore"):  # the caller asked for the cast, overflow included
            return np.asarray(value, dtype=dtype)
    if isinstance(value, np.ndarray):
        if np.promote_types(value.dtype, dtype) != np.dtype(dtype):
            raise TypeError(f"{label} of dtype {dtype} cannot store a value of dtype {value.dtype.name} without "
                            f"risking loss of precision; cast the data to {dtype} (or pass allow_downcast=True)")
        return value.astype(dtype)
    if allow_downcast is None and type(value) is float and dtype == config.floatX:
        return np.asarray(value, dtype=dtype)
    try:
        original = np.asarray(value)
    except Exception as exc:
        raise TypeError(f"{label}: cannot convert {type(value).__name__} to {dtype}") from exc
    if original.dtype.kind not in "biuf":
        raise TypeError(f"{label}: expected a {dtype} tensor, got {type(value).__name__}")
    with np.errstate(all="ignore"):
        converted = original.astype(dtype)
        exact = np.array_equal(converted.astype(original.dtype), original, equal_nan=True)
    if not exact:
        text = str(value)
        text = text if len(text) <= 80 else text[:75] + "(...)"
        raise TypeError(f"{label} of dtype {dtype} cannot store accurately value {text}, it would be represented as "
                        f"{converted}; convert the data to a NumPy array of dtype {dtype} (or pass "
                        "allow_downcast=True)")
    return converted
