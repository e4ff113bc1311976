"""``x[key]`` and Theano's functional updates ``set_subtensor``/``inc_subtensor``.

A key is turned into the ``index`` attribute of the ``subtensor`` op (see
``tcomp.ir.ops.indexing``): static ints and slice bounds stay in the attribute, symbolic
ones become operands referenced as ``"$k"``.  ``None`` (newaxis) and ``...`` are handled
here by a dimshuffle after indexing.
"""
from __future__ import annotations

import numpy as np

from tcomp.ir import dtypes as dt

from .variable import Variable, apply, as_variable, constant


def _scalar_part(v, operands, first, what):
    """A static int stays; a symbolic integer scalar becomes an operand reference."""
    if v is None:
        return None
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, Variable):
        if v.op == "constant" and v.ndim == 0:
            return int(v.attrs["value"].value)
        if v.ndim != 0 or not dt.is_int(v.dtype):
            raise TypeError(f"{what} must be an integer scalar, got {v.describe()}")
        operands.append(v)
        return f"${first + len(operands) - 1}"
    raise TypeError(f"{what} must be an int, None or an integer scalar variable, got {v!r}")


def _check_masks(x: Variable, key, is_mask) -> None:
    """A mask's static dims must be those of the axes it indexes (NumPy raises IndexError);
    checked for masks before any ``...`` (symbolic dims: an index past the end still fails
    the gather's bounds check)."""
    axis = 0
    for k in key:
        if k is Ellipsis:
            return
        if k is None:
            continue
        if not is_mask(k):
            axis += 1
            continue
        shape = k.type.shape if isinstance(k, Variable) else np.shape(k)
        want = x.type.shape[axis:axis + len(shape)]
        if len(want) < len(shape) or any(isinstance(m, int) and isinstance(d, int) and m != d
                                         for m, d in zip(shape, want)):
            raise IndexError(f"boolean index of shape {tuple(shape)} does not match axes "
                             f"{axis}..{axis + len(shape) - 1} of {x.describe()}")
        axis += len(shape)


def _expand_key(x: Variable, key):
    from .masks import is_mask, nonzero

    if not isinstance(key, tuple):
        key = (key,)
    # a boolean mask over m axes is its m nonzero() index vectors (NumPy's rule)
    if any(is_mask(k) for k in key):
        _check_masks(x, key, is_mask)
        key = tuple(v for k in key for v in (nonzero(k) if is_mask(k) else (k,)))
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    out = []
    for k in key:
        if k is Ellipsis:
            out.extend([slice(None)] * (x.ndim - n_real))
        else:
            out.append(k)
    return out


def build_index(x: Variable, key, first_operand: int):
    """Return (index attr, operand variables, newaxis positions in the result)."""
    entries = _expand_key(x, key)
    index, operands, newaxes = [], [], []
    axis = 0
    has_adv = any(_is_array_key(k) for k in entries)
    for pos, k in enumerate(entries):
        if k is None:
            if has_adv:
                raise IndexError("tcomp does not combine None (newaxis) with advanced indexing; "
                                 "use dimshuffle afterwards")
            newaxes.append(pos)
            continue
        if axis >= x.ndim:
            raise IndexError(f"too many indices for {x.describe()}")
        if isinstance(k, slice):
            index.append(("s",) + tuple(_scalar_part(v, operands, first_operand, f"slice bound of axis {axis}")
                                        for v in (k.start, k.stop, k.step)))
            if index[-1][3] == 0:
                raise ValueError("slice step cannot be zero")
        elif _is_array_key(k):
            if isinstance(k, list) and np.size(k) == 0:
                k = np.zeros(np.shape(k), dtype=dt.DEFAULT_INT)  # x[[]]: NumPy's empty int index
            v = as_variable(k, f"index of axis {axis}")
            if v.dtype == dt.BOOL:  # (a rank-0 bool: masks of rank >= 1 became nonzero() above)
                raise TypeError(f"a rank-0 boolean index is not supported (axis {axis}); use T.switch")
            if not dt.is_int(v.dtype):
                raise TypeError(f"index of axis {axis} must be integer, got {v.describe()}")
            operands.append(v)
            index.append(("a", f"${first_operand + len(operands) - 1}"))
        else:
            index.append(("i", _scalar_part(k, operands, first_operand, f"index of axis {axis}")))
        axis += 1
    return tuple(index), operands, newaxes


def _is_array_key(k) -> bool:
    if isinstance(k, Variable):
        return k.ndim > 0
    if isinstance(k, (list, np.ndarray)):
        return np.ndim(k) > 0
    return False


def getitem(x: Variable, key) -> Variable:
    index, operands, newaxes = build_index(x, key, 1)
    if newaxes:
        # newaxis positions refer to result positions counted on the key: only supported
        # with basic indexing, where each slice keeps one dim and each int drops one.
        kept = [e[0] == "s" for e in index]
        y = apply("subtensor", [x] + operands, {"index": index}) if index else x
        pattern, k = [], 0
        entries = _expand_key(x, key)
        ki = 0
        for e in entries:
            if e is None:
                pattern.append("x")
            else:
                if kept[ki]:
                    pattern.append(k)
                    k += 1
                ki += 1
        pattern.extend(range(k, y.ndim))
        from .basic import dimshuffle
        return dimshuffle(y, pattern)
    if not index:
        return x
    return apply("subtensor", [x] + operands, {"index": index})


def _update(op, x, y, name):
    if not isinstance(x, Variable) or x.op != "subtensor":
        raise TypeError(f"{name} takes a subtensor (x[...]) as first argument, got "
                        f"{x.describe() if isinstance(x, Variable) else repr(x)}")
    base, idx_operands = x.inputs[0], list(x.inputs[1:])
    # shift operand references by one: y takes position 1
    index = tuple((e[0],) + tuple(f"${int(v[1:]) + 1}" if isinstance(v, str) and v.startswith("$") else v
                                  for v in e[1:]) for e in x.attrs["index"])
    y = as_variable(y) if isinstance(y, Variable) else constant(np.asarray(y, dtype=base.dtype))
    return apply(op, [base, y] + idx_operands, {"index": index})


def set_subtensor(x, y):
    """A copy of ``x``'s base tensor with the selection ``x`` replaced by ``y`` (Theano's API)."""
    return _update("set_subtensor", x, y, "set_subtensor")


def inc_subtensor(x, y):
    """A copy of ``x``'s base tensor with ``y`` added to the selection (repeated indices add up)."""
    return _update("inc_subtensor", x, y, "inc_subtensor")
