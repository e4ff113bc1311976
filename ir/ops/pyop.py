"""``py_call``: a node computed by a user's Python op (Theano's ``Op.perform``).

Theano users extend the library with Python ops (``tcomp.Op``, ``tcomp.compile.ops.as_op``,
``tcomp/op.py``).  In the IR such an application is one ``py_call`` node whose attributes are

``op``
    a :class:`PyOpRef`: a ``str`` (``"DoubleOp#3.1f2e9a0c"``: the op's name, a counter and a
    per-process random salt) that also carries the user's op object.  Being a string, it
    prints, parses, hashes and serializes like any attribute; the salt makes the structural
    hash of such a graph unique to this process, so it can never collide with a graph of
    another process (the persistent compile cache only ever sees the native stages around
    the Python call, which contain no ``py_call``).  A graph read back from text or JSON in
    the same process finds the op again through a weak registry; in another process the
    op is gone and running the node raises a clear error.
``outputs``
    the result types (from the op's ``otypes`` / ``make_node``, with dims from
    ``infer_shape`` where it gives them); the node's type is the one result's type or a
    :class:`TupleType` read through ``get_output``.
``pure``
    whether the op declared that ``perform`` depends on its inputs only; only then may CSE
    merge two applications of the same op instance to the same operands.

The reference semantics call ``perform`` and check what it stored against the declared
types (:func:`run_perform`), which the CPU backend reuses between its native stages
(``tcomp/backend/cpu/python_stages.py``).  Passes never fold, fuse or merge a ``py_call``
(``OpDef.kind == 'python'``), and it is not ``differentiable`` here: ``T.grad`` calls the op's
own symbolic ``grad`` (``tcomp/gradient.py``), which the graph-level autodiff cannot.
"""
from __future__ import annotations

import itertools
import threading
import uuid
import weakref

import numpy as np

from ..types import TensorType, TupleType
from .registry import OpDef, register

#: per process: tokens of two processes never compare equal
_SALT = uuid.uuid4().hex[:8]
_counter = itertools.count(1)
_lock = threading.Lock()
#: token -> op object, for graphs read back from text or JSON in this process
_by_token: "weakref.WeakValueDictionary" = weakref.WeakValueDictionary()
#: ops that cannot be weakly referenced (``__slots__`` without ``__weakref__``)
_strong: dict = {}
#: id(op) -> (op, token), for ops without a ``__dict__`` to store the token in
_token_of_id: dict = {}


def op_name(op) -> str:
    """The op's display name: its ``name`` attribute when it has one, else its ``str``."""
    name = getattr(op, "name", None)
    if not isinstance(name, str) or not name:
        try:
            name = str(op)
        except Exception:  # noqa: BLE001 - a user __str__ must not break graph building
            name = type(op).__name__
        if name.startswith("<"):  # object.__str__: <mod.Cls object at 0x..>
            name = type(op).__name__
    return "".join(c if c.isalnum() or c in "_.{}=,-" else "_" for c in name)[:80] or type(op).__name__


def _token(op) -> str:
    with _lock:
        d = getattr(op, "__dict__", None)
        tok = d.get("_tcomp_py_token") if d is not None else _token_of_id.get(id(op), (None, None))[1]
        if tok is not None:
            return tok
        tok = f"{op_name(op)}#{next(_counter)}.{_SALT}"
        if d is not None:
            d["_tcomp_py_token"] = tok
        else:
            _token_of_id[id(op)] = (op, tok)  # (kept alive: its id must not name another op later)
        try:
            _by_token[tok] = op
        except TypeError:
            _strong[tok] = op
        return tok


class PyOpRef(str):
    """The ``op`` attribute of a ``py_call``: the token string, carrying the op object.

    Equal (and hashed) as its string: one token per op *instance* per process, so two
    instances never compare equal, whatever their ``__eq__`` says."""

    __slots__ = ("op",)

    def __new__(cls, op):
        self = super().__new__(cls, _token(op))
        self.op = op
        return self

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):  # a pickled graph attribute gets a new token in the loading process
        return (PyOpRef, (self.op,))


#: token -> op while a pickled function's graph is read back (:func:`loading`)
_loading = threading.local()


class loading:
    """``with loading({token: op}):`` tokens of another process resolve to these ops (a
    pickled function's graph is read back from JSON, then :func:`attach` gives its nodes
    references with this process's tokens)."""

    def __init__(self, ops: dict):
        self.ops = dict(ops)

    def __enter__(self):
        self.prev = getattr(_loading, "ops", None)
        _loading.ops = self.ops
        return self

    def __exit__(self, *exc):
        _loading.ops = self.prev


def python_ops_of(graph) -> dict:
    """token -> op object of every ``py_call`` in ``graph`` (what a pickle must carry)."""
    return {str(g.attrs(n)["op"]): resolve(g.attrs(n)["op"]) for g, n in python_nodes(graph)}


def attach(graph, ops: dict) -> None:
    """Give every ``py_call`` of ``graph`` whose ``op`` is a token of ``ops`` a reference to
    that op (with a token of this process)."""
    for g, n in python_nodes(graph):
        a = g.attrs(n)
        if not isinstance(a["op"], PyOpRef) and a["op"] in ops:
            a["op"] = PyOpRef(ops[a["op"]])


def resolve(value, where: str = "py_call"):
    """The op object behind a ``py_call``'s ``op`` attribute (a :class:`PyOpRef` or its token)."""
    if isinstance(value, PyOpRef):
        return value.op
    if isinstance(value, str):
        op = _by_token.get(value) or _strong.get(value) or (getattr(_loading, "ops", None) or {}).get(value)
        if op is not None:
            return op
        raise TypeError(f"{where}: the Python op {value!r} does not exist in this process (a graph with Python "
                        "ops can be read back from text or JSON only in the process that made it)")
    raise TypeError(f"{where}: attribute op must be a Python op reference, got {value!r}")


def python_nodes(graph, nested: bool = True) -> list:
    """(graph, node) of every ``py_call`` in ``graph`` (and in its loop and branch bodies)."""
    from .control import Body

    out, stack = [], [graph]
    while stack:
        g = stack.pop()
        for n in g.nodes():
            if g.op(n) == "py_call":
                out.append((g, n))
            elif nested:
                stack.extend(v.graph for v in g.attrs(n).values() if isinstance(v, Body))
    return out


class PerformNode:
    """The ``node`` argument of ``perform``: ``.op``, ``.inputs`` and ``.outputs`` (each with
    ``.type``, ``.dtype``, ``.ndim``), as Theano's ``Apply`` offers them."""

    __slots__ = ("op", "inputs", "outputs")

    def __init__(self, op, in_types, out_types):
        self.op = op
        self.inputs = [_Slot(t) for t in in_types]
        self.outputs = [_Slot(t) for t in out_types]

    def __repr__(self):
        return f"PerformNode({op_name(self.op)}: {len(self.inputs)} inputs, {len(self.outputs)} outputs)"


class _Slot:
    __slots__ = ("type",)

    def __init__(self, t):
        self.type = t

    dtype = property(lambda self: self.type.dtype)
    ndim = property(lambda self: self.type.ndim)
    broadcastable = property(lambda self: self.type.broadcastable)


def check_outputs(op, storage, out_types, inputs=()) -> list:
    """The arrays ``perform`` stored, checked against ``out_types``: a ``TypeError`` naming
    the op and the output for a missing value, another dtype or rank, a ``ValueError`` for a
    static dim that differs.  Results that share memory with an input are copied (the
    native stages after the call may write into their inputs' storage)."""
    out = []
    for i, (cell, t) in enumerate(zip(storage, out_types)):
        v = cell[0] if isinstance(cell, list) and cell else None
        if v is None:
            raise TypeError(f"Python op {op_name(op)}: perform did not store output {i} "
                            f"(set output_storage[{i}][0])")
        if type(v) is not np.ndarray and not isinstance(v, (np.ndarray, np.generic)) and _weak_scalar(v, t):
            v = np.asarray(v, dtype=t.dtype)  # a Python number for a rank-0 result of its kind
        if type(v) is not np.ndarray and not isinstance(v, (np.ndarray, np.generic)):
            raise TypeError(f"Python op {op_name(op)}: output {i} must be a NumPy array of dtype {t.dtype} and "
                            f"rank {t.ndim} ({t}), got {type(v).__name__}")
        arr = np.asarray(v)
        want = _np_dtype(t.dtype)
        native = arr.dtype == want  # (the fast check; another byte order of the same type is copied below)
        if not native and arr.dtype.name != t.dtype:
            raise TypeError(f"Python op {op_name(op)}: output {i} has dtype {arr.dtype.name}, its declared type "
                            f"{t} has dtype {t.dtype} (cast it in perform, e.g. .astype('{t.dtype}'))")
        if arr.ndim != t.ndim:
            raise TypeError(f"Python op {op_name(op)}: output {i} has rank {arr.ndim} (shape {arr.shape}), its "
                            f"declared type {t} has rank {t.ndim}")
        for axis, (d, have) in enumerate(zip(t.shape, arr.shape)):
            if type(d) is int and d != have:
                raise ValueError(f"Python op {op_name(op)}: output {i} has shape {arr.shape}, its declared type "
                                 f"{t} has {d} on axis {axis}")
        flags = arr.flags
        if not (native and flags.c_contiguous and flags.aligned) or any(np.may_share_memory(arr, a) for a in inputs):
            arr = np.array(arr, dtype=want, order="C", copy=True)
        out.append(arr)
    return out


def _weak_scalar(v, t) -> bool:
    """A Python bool/int/float that a rank-0 result of type ``t`` may take (same kind)."""
    if t.ndim != 0:
        return False
    kind = np.dtype(t.dtype).kind
    if isinstance(v, bool):
        return kind == "b"
    if isinstance(v, int):
        return kind in "iu" and np.can_cast(np.min_scalar_type(v), t.dtype, "safe")
    return isinstance(v, float) and kind == "f"


_DTYPES: dict = {}


def _np_dtype(name: str) -> np.dtype:
    d = _DTYPES.get(name)
    if d is None:
        d = _DTYPES[name] = np.dtype(name)
    return d


def run_perform(op, node, inputs, out_types, protect=()) -> list:
    """Call ``op.perform(node, inputs, output_storage)`` and return the checked results.

    The inputs are handed over as read-only views: other stages still read them, so an op
    writing into its inputs would change what they see.  ``protect``: further arrays the
    results must not share memory with (a call's inputs)."""
    views = []
    for a in inputs:
        v = np.asarray(a).view()
        v.flags.writeable = False
        views.append(v)
    storage = [[None] for _ in out_types]
    try:
        op.perform(node, views, storage)
    except ValueError as exc:
        if "read-only" not in str(exc):
            raise
        raise ValueError(f"Python op {op_name(op)}: perform wrote into one of its inputs ({exc}); inputs are "
                         "read-only (other stages still read them): write the results into new arrays "
                         "(destroy_map is not supported)") from exc
    return check_outputs(op, storage, out_types, list(inputs) + list(protect))


def _out_types(attrs) -> tuple:
    outs = attrs["outputs"]
    if not isinstance(outs, tuple) or not outs or not all(isinstance(t, TensorType) for t in outs):
        raise TypeError(f"py_call: outputs must be a non-empty tuple of tensor types, got {outs!r}")
    return outs


def _infer(types, attrs):
    op = resolve(attrs["op"])
    outs = _out_types(attrs)
    itypes = getattr(op, "itypes", None)
    if itypes is not None:
        if len(itypes) != len(types):
            raise TypeError(f"Python op {op_name(op)} takes {len(itypes)} inputs, got {len(types)}")
        for i, (want, have) in enumerate(zip(itypes, types)):
            if want.dtype != have.dtype or want.ndim != have.ndim:
                raise TypeError(f"Python op {op_name(op)}: input {i} has type {have}, it expects {want}")
    return outs[0] if len(outs) == 1 else TupleType(outs)


def _impl(arrays, attrs, out_type):
    op = resolve(attrs["op"])
    outs = _out_types(attrs)
    node = PerformNode(op, [TensorType(a.dtype.name, (None,) * a.ndim) for a in arrays], outs)
    results = run_perform(op, node, arrays, outs)
    return results[0] if len(results) == 1 else tuple(results)


register(OpDef("py_call", None, _infer, _impl, attr_defaults={"op": None, "outputs": None, "pure": False},
               kind="python", differentiable=False, min_arity=0,
               doc="a user's Python op: calls its perform (Theano's Op); never folded, fused or merged"))

__all__ = ["PyOpRef", "resolve", "loading", "python_ops_of", "attach", "python_nodes", "PerformNode", "run_perform",
           "check_outputs", "op_name"]
