"""Indexing: basic slicing with symbolic bounds, advanced integer indexing, and the
functional updates ``set_subtensor``/``inc_subtensor``.

The ``index`` attribute has one entry per indexed leading axis:

* ``("i", v)``               an integer index (drops the axis)
* ``("s", start, stop, step)`` a slice
* ``("a", v)``               an integer array (advanced indexing, NumPy rules)

where each ``v``/``start``/``stop``/``step`` is a static int, ``None`` (slices only), or
``"$k"``: the value of operand ``k``.  Semantics are NumPy's, incl. negative indices and
the placement rule for advanced indices; out-of-bounds indices raise.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..types import TensorType, broadcast_shapes
from .registry import OpDef, register


def is_ref(v) -> bool:
    return isinstance(v, str) and v.startswith("$")


def ref_index(v) -> int:
    return int(v[1:])


def _check_index(name, types, index, first_index_operand):
    x = types[0]
    if len(index) > x.ndim:
        raise ValueError(f"{name}: too many indices ({len(index)}) for {x}")
    used = set()
    for entry in index:
        if entry[0] not in ("i", "s", "a"):
            raise ValueError(f"{name}: bad index entry {entry!r}")
        for v in entry[1:]:
            if is_ref(v):
                k = ref_index(v)
                if not first_index_operand <= k < len(types):
                    raise ValueError(f"{name}: index refers to missing operand {v}")
                t = types[k]
                if not dt.is_int(t.dtype):
                    raise TypeError(f"{name}: index operand {v} must be integer, got {t}")
                if entry[0] != "a" and t.ndim != 0:
                    raise TypeError(f"{name}: scalar index operand {v} has rank {t.ndim}")
                used.add(k)
            elif v is not None and not isinstance(v, int):
                raise TypeError(f"{name}: index value {v!r} must be an int, None or an operand")
    unused = set(range(first_index_operand, len(types))) - used
    if unused:
        raise ValueError(f"{name}: operands {sorted(unused)} unused by index")


def _slice_len(d, start, stop, step):
    if isinstance(d, int) and all(v is None or isinstance(v, int) for v in (start, stop, step)):
        if step == 0:
            raise ValueError("slice step cannot be zero")
        return len(range(*slice(start, stop, step).indices(d)))
    return None


def indexed_shape(name, types, index) -> tuple:
    """Result shape of ``x[index]`` following NumPy's basic + advanced rules."""
    x = types[0]
    has_adv = any(e[0] == "a" for e in index)
    adv_shapes, adv_pos = [], []
    out = []
    for axis, entry in enumerate(index):
        d = x.shape[axis]
        if entry[0] == "s":
            out.append(_slice_len(d, *entry[1:]))
        elif entry[0] == "i" and not has_adv:
            v = entry[1]
            if isinstance(v, int) and isinstance(d, int) and not -d <= v < d:
                raise ValueError(f"{name}: index {v} out of bounds for axis {axis} of {x}")
        else:
            adv_pos.append(len(out))
            adv_shapes.append(() if entry[0] == "i" else types[ref_index(entry[1])].shape
                              if is_ref(entry[1]) else ())
            out.append("ADV")
    out.extend(x.shape[len(index):])
    if not has_adv:
        return tuple(out)
    bshape = broadcast_shapes(*adv_shapes, what=f"advanced indices of {name}")
    positions = [i for i, v in enumerate(out) if v == "ADV"]
    contiguous = positions == list(range(positions[0], positions[0] + len(positions)))
    rest = [v for v in out if v != "ADV"]
    at = positions[0] if contiguous else 0
    return tuple(rest[:at]) + tuple(bshape) + tuple(rest[at:])


def build_index(index, arrays):
    """The Python/NumPy index tuple for ``index`` given all operand arrays."""
    def val(v):
        return arrays[ref_index(v)] if is_ref(v) else v

    out = []
    for entry in index:
        if entry[0] == "s":
            out.append(slice(*(None if v is None else int(val(v)) for v in entry[1:])))
        elif entry[0] == "i":
            out.append(int(val(entry[1])))
        else:
            out.append(np.asarray(val(entry[1])).astype(np.intp))
    return tuple(out)


def _check_bounds(name, x, index):
    """NumPy's rule: every index-array entry is checked, even when a slice makes the result
    empty, except when the index arrays broadcast to nothing (``x[[], [3]]`` is empty)."""
    if any(isinstance(ix, np.ndarray) and not ix.size for ix in index):
        return
    for axis, ix in enumerate(index):
        if isinstance(ix, np.ndarray) and ix.size:
            d = x.shape[axis]
            if ix.max() >= d or ix.min() < -d:
                raise IndexError(f"{name}: index out of bounds for axis {axis} with size {d}")


def _subtensor_infer(types, attrs):
    index = tuple(attrs["index"])
    _check_index("subtensor", types, index, 1)
    return TensorType(types[0].dtype, indexed_shape("subtensor", types, index))


def _subtensor_impl(arrays, attrs, out_type):
    x = arrays[0]
    ix = build_index(attrs["index"], arrays)
    _check_bounds("subtensor", x, ix)
    return np.array(x[ix])


register(OpDef("subtensor", None, _subtensor_infer, _subtensor_impl, attr_defaults={"index": ()},
               kind="index", doc="x[index]: basic slicing and advanced integer indexing"))


def _update_infer(name):
    def infer(types, attrs):
        index = tuple(attrs["index"])
        if len(types) < 2:
            raise TypeError(f"{name} takes x, y and index operands")
        _check_index(name, types, index, 2)
        x, y = types[0], types[1]
        target = indexed_shape(name, types, index)
        if y.ndim > len(target):
            raise ValueError(f"{name}: value {y} has more dims than the selection {target}")
        broadcast_shapes(target, y.shape, what=f"{name} value {y} into selection of {x}")
        for have, want in zip(reversed(y.shape), reversed(target)):
            if have != 1 and want == 1:
                raise ValueError(f"{name}: value {y} does not fit selection shape {target} of {x}")
        return x
    return infer


def _set_impl(arrays, attrs, out_type):
    x = np.array(arrays[0])
    ix = build_index(attrs["index"], arrays)
    _check_bounds("set_subtensor", x, ix)
    x[ix] = arrays[1].astype(x.dtype, copy=False)
    return x


def _inc_impl(arrays, attrs, out_type):
    x = np.array(arrays[0])
    ix = build_index(attrs["index"], arrays)
    _check_bounds("inc_subtensor", x, ix)
    # add.at accumulates repeated advanced indices (Theano's AdvancedIncSubtensor).  The
    # values are broadcast to the selection first: NumPy 2.4's add.at reads garbage when a
    # multi-dimensional index array meets values that need broadcasting (found by the fuzzer).
    y = np.broadcast_to(arrays[1].astype(x.dtype, copy=False), x[ix].shape)
    np.add.at(x, ix, y)
    return x


register(OpDef("set_subtensor", None, _update_infer("set_subtensor"), _set_impl, attr_defaults={"index": ()},
               kind="index", min_arity=2, doc="a copy of x with x[index] = y"))
register(OpDef("inc_subtensor", None, _update_infer("inc_subtensor"), _inc_impl, attr_defaults={"index": ()},
               kind="index", min_arity=2, doc="a copy of x with x[index] += y (repeated indices accumulate)"))
