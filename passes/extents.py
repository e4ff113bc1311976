"""Which dims of a graph are provably the same size at run time.

Every transformation that lets one loop, one buffer or one write serve two values of
"the same shape" (sibling and consumer merging in fusion, extra kernel results, in-place
writes, exact-size buffer reuse, donation, dropping a useless ``alloc``) is only sound when
the two extents are *equal at run time*.  Equal types do not say that: two anonymous
symbolic dims (``?``, ``None`` in a ``TensorType`` shape) are unrelated sizes, so ``f32[?, ?]``
and ``f32[?, ?]`` may be ``(3, 1)`` and ``(3, 3000000)``.  (Merging such siblings into one
multi-output kernel wrote one result with the other's loop bounds: a heap overflow.)

Two levels of proof:

* :func:`same_extent` (types only): same rank and each pair of dims is the same static int
  or the same *name* (every dim with one name is checked to be one size at run time).
  Anonymous dims are never equal here.
* :class:`Extents` (one graph): a union-find over ``(node, axis)`` that also proves
  anonymous dims equal when they provably come from the same place: an elementwise op's
  non-broadcast operand dims and its result dims (symbolic dims never broadcast, and both
  backends check that before any native code runs); a reduction's, dimshuffle's, softmax's
  or set/inc_subtensor's carried axes; ``dot``/``matmul``'s result rows/columns and their
  inner dims (checked equal); ``concatenate``/``stack``'s off-axis dims (checked equal); the
  axes a basic full slice keeps; an ``alloc``/``reshape``/random dim, or an ``arange(0, n, 1)``
  length, read from ``shape(x)[i]``; ``fused`` kernels step by step and ``get_output``.

Why a proof may use any live node of the graph, even one computed after the value: the CPU
backend's ``plan`` entry computes and checks every node's shape before the first kernel
runs (the shape program), and the reference interpreter only computes with NumPy, so
a run-time mismatch anywhere is an error before memory is touched.  Dead nodes (no output
depends on them) are never run, so they prove nothing.  Unknown ops prove
nothing (each of their dims is its own class): the analysis is conservative by default.
Linear in graph size (union-find with path halving).
"""
from __future__ import annotations

from tcomp.ir import Graph, get_op
from tcomp.ir.ops.fused import CONTRACTIONS, FUSABLE_REDUCTIONS, LAYOUT_OPS, step_types
from tcomp.ir.types import TensorType, TupleType

#: ops whose result has exactly their first operand's shape
_SAME_SHAPE = ("softmax", "log_softmax", "set_subtensor", "inc_subtensor", "cumsum", "cumprod", "argsort")
#: ops whose ``None`` shape entries are read, in order, from int-scalar operands from this position
_DIM_OPERANDS = {"alloc": 1, "reshape": 1, "random_uniform": 2, "random_normal": 2, "random_binomial": 2}
_REDUCTIONS = FUSABLE_REDUCTIONS + ("mean", "argmax", "argmin")


def same_extent(a: TensorType, b: TensorType) -> bool:
    """True when shapes ``a`` and ``b`` are equal at run time from the types alone: same rank
    and every dim pair the same static int or the same name (never two anonymous dims)."""
    if a.ndim != b.ndim:
        return False
    return all((isinstance(x, int) and x == y) or (isinstance(x, str) and x == y) for x, y in zip(a.shape, b.shape))


class Extents:
    """Equalities between the run-time dims of ``graph``'s nodes (see the module docstring).

    ``same(a, b)``: nodes ``a`` and ``b`` (tensor-typed) have equal shapes at run time.
    ``key(n, axis)``: a hashable name of ``n``'s dim ``axis`` equal for provably equal dims
    (the static int, the dim name, or a class representative).
    """

    def __init__(self, graph: Graph, order=None):
        """``order``: ``graph.topo_order()`` when the caller has it already."""
        self.g = graph
        self._parent: dict = {}
        self._dims: dict = {}  # node -> list of dim variables (a list of lists for a tuple)
        self._keys: dict = {}  # node -> shape_key(node), filled by same()
        live = graph.live_nodes()
        for n in graph.topo_order() if order is None else order:
            if n in live:
                self._visit(n)
            elif not isinstance(graph.type(n), TupleType):
                self._dims[n] = self._fresh(n, graph.type(n))  # never run, never checked: proves nothing
            else:
                self._dims[n] = [self._fresh((n, i), t) for i, t in enumerate(graph.type(n).elements)]

    # -- union-find ---------------------------------------------------------------------------
    def _find(self, v):
        parent = self._parent
        while True:
            p = parent.setdefault(v, v)
            if p == v:
                return v
            gp = parent.setdefault(p, p)
            parent[v] = gp
            v = gp

    def _union(self, a, b) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra == rb:
            return
        # a static or named class keeps its name as representative (keys read well)
        if isinstance(rb, tuple) and rb[0] in ("static", "name"):
            ra, rb = rb, ra
        self._parent[rb] = ra

    def _fresh(self, owner, t: TensorType) -> list:
        """One variable per dim of ``t``, joined with its static or named class."""
        out = []
        for a, d in enumerate(t.shape):
            v = ("dim", owner, a)
            self._parent.setdefault(v, v)
            if isinstance(d, int):
                self._union(("static", d), v)
            elif isinstance(d, str):
                self._union(("name", d), v)
            out.append(v)
        return out

    # -- queries -----------------------------------------------------------------------------
    def dims(self, n) -> list:
        """The dim variables of tensor-typed node ``n``."""
        d = self._dims[n]
        if d and isinstance(d[0], list):
            raise TypeError(f"%{n} is a multi-output kernel; ask about its get_output nodes")
        return d

    def key(self, n, axis):
        return self._find(self.dims(n)[axis])

    def same_dim(self, a, axis_a, b, axis_b) -> bool:
        return self._find(self.dims(a)[axis_a]) == self._find(self.dims(b)[axis_b])

    def same(self, a, b) -> bool:
        """True when tensor nodes ``a`` and ``b`` have the same shape at run time.  (The classes
        are complete once ``__init__`` returns, so each node's class key is found once: fusion
        asks this thousands of times of the same nodes.)"""
        keys = self._keys
        ka = keys.get(a)
        if ka is None:
            ka = keys[a] = self.shape_key(a)
        kb = keys.get(b)
        if kb is None:
            kb = keys[b] = self.shape_key(b)
        return ka == kb

    def shape_key(self, n) -> tuple:
        """``n``'s shape as class keys: equal tuples mean equal run-time shapes."""
        return tuple(self._find(v) for v in self.dims(n))

    # -- rules -------------------------------------------------------------------------------
    def _visit(self, n) -> None:
        g = self.g
        t = g.type(n)
        op = g.op(n)
        if isinstance(t, TupleType):  # a multi-output fused kernel (or a scan/ifelse: nothing known)
            self._dims[n] = self._fused(n) if op == "fused" else [self._fresh((n, k), e)
                                                                  for k, e in enumerate(t.elements)]
            return
        out = self._fresh(n, t)
        self._dims[n] = out
        ops = g.operands(n)
        attrs = g.attrs(n)
        if op == "get_output":
            res = self._dims[ops[0]][attrs["index"]]
            self._join(out, res)
        elif op == "fused":
            self._join(out, self._fused(n)[0])
        elif get_op(op).kind == "elemwise":
            self._elementwise(out, t, [(self._dims[o], g.type(o)) for o in ops])
        elif op in _SAME_SHAPE:
            self._join(out, self._dims[ops[0]])
        elif op in _REDUCTIONS:
            self._reduced(out, self._dims[ops[0]], tuple(attrs["axis"]), attrs["keepdims"])
        elif op == "logsumexp":
            self._reduced(out, self._dims[ops[0]], (attrs["axis"],), attrs["keepdims"])
        elif op == "dimshuffle":
            self._dimshuffle(out, self._dims[ops[0]], attrs["pattern"])
        elif op in ("dot", "matmul"):
            self._matmul(n, out)
        elif op in ("concatenate", "stack"):
            self._concat(n, out)
        elif op == "subtensor":
            self._subtensor(n, out)
        elif op == "arange":
            self._arange(n, out)
        if op in _DIM_OPERANDS:
            self._dims_from_shape_nodes(out, attrs["shape"], ops[_DIM_OPERANDS[op]:])

    def _join(self, xs, ys) -> None:
        for x, y in zip(xs, ys):
            self._union(x, y)

    def _elementwise(self, out, t, operands) -> None:
        """Each operand dim that is not statically 1 is the result's dim (never broadcast)."""
        for dims, ot in operands:
            off = t.ndim - ot.ndim
            for a, d in enumerate(ot.shape):
                if d != 1:
                    self._union(out[off + a], dims[a])

    def _reduced(self, out, src, axes, keepdims) -> None:
        kept = [v for a, v in enumerate(src) if keepdims or a not in axes]
        for a, (o, s) in enumerate(zip(out, kept)):
            if not (keepdims and a in axes):
                self._union(o, s)

    def _dimshuffle(self, out, src, pattern) -> None:
        for o, p in zip(out, pattern):
            if p != "x":
                self._union(o, src[p])

    def _matmul(self, n, out) -> None:
        """Rows of A and columns of B carry; A's inner dim is B's (checked at run time).
        Batch dims may broadcast a run-time 1 (NumPy's matmul), so they prove nothing."""
        a, b = self.g.operands(n)
        self._product(out, self._dims[a], self._dims[b])

    def _product(self, out, da, db) -> None:
        if not da or not db:
            return
        kb = 0 if len(db) == 1 else len(db) - 2
        self._union(da[-1], db[kb])
        if len(da) >= 2:
            self._union(out[len(out) - (2 if len(db) >= 2 else 1)], da[-2])
        if len(db) >= 2:
            self._union(out[-1], db[-1])

    def _concat(self, n, out) -> None:
        """Off-axis dims are checked equal (both backends raise otherwise)."""
        g = self.g
        axis = g.attrs(n)["axis"]
        stack = g.op(n) == "stack"
        for o in g.operands(n):
            for a, v in enumerate(self._dims[o]):
                if stack:
                    self._union(out[a if a < axis else a + 1], v)
                elif a != axis:
                    self._union(out[a], v)

    def _subtensor(self, n, out) -> None:
        """Basic indexing only: a full slice keeps its axis, an integer drops it, trailing
        axes are kept."""
        g = self.g
        index = g.attrs(n)["index"]
        if any(e[0] == "a" for e in index):
            return
        src = self._dims[g.operands(n)[0]]
        k = 0
        for a, e in enumerate(index):
            if e[0] == "s":
                if all(v is None for v in e[1:]):
                    self._union(out[k], src[a])
                k += 1
        for a in range(len(index), len(src)):
            self._union(out[k], src[a])
            k += 1

    def _shape_source(self, o):
        """``(node, axis)`` when scalar node ``o`` is ``shape(node)[axis]``, else None."""
        g = self.g
        if g.op(o) == "shape":
            return g.operands(o)[0], g.attrs(o)["axis"]
        return None

    def _dims_from_shape_nodes(self, out, shape_attr, dim_operands) -> None:
        it = iter(dim_operands)
        for a, d in enumerate(shape_attr):
            if d is None:
                src = self._shape_source(next(it))
                if src is not None and not isinstance(self.g.type(src[0]), TupleType):
                    self._union(out[a], self._dims[src[0]][src[1]])

    def _arange(self, n, out) -> None:
        g = self.g
        start, stop, step = g.operands(n)

        def const(o, v):
            return g.op(o) == "constant" and g.attrs(o)["value"].value.ndim == 0 and g.attrs(o)["value"].value == v
        src = self._shape_source(stop)
        if src is not None and const(start, 0) and const(step, 1) and not isinstance(g.type(src[0]), TupleType):
            self._union(out[0], self._dims[src[0]][src[1]])

    def _fused(self, n) -> list:
        """The result dims of a fused kernel: [primary, *extra results] (each a list)."""
        if n in self._dims and self._dims[n] and isinstance(self._dims[n][0], list):
            return self._dims[n]
        g = self.g
        attrs = g.attrs(n)
        ops = g.operands(n)
        itypes = [g.type(o) for o in ops]
        stypes = step_types(attrs["body"], itypes)
        steps = []
        for j, (op, sattrs, refs) in enumerate(attrs["body"]):
            dims = self._fresh((n, "step", j), stypes[j])
            steps.append(dims)
            if op == "constant":
                continue
            srcs = [(self._dims[ops[int(r[1:])]], itypes[int(r[1:])]) if r[0] == "$" else (steps[int(r[1:])],
                    stypes[int(r[1:])]) for r in refs]
            if op == "dimshuffle":
                self._dimshuffle(dims, srcs[0][0], dict(sattrs)["pattern"])
            elif op in CONTRACTIONS:  # a product step (fusion_gemm): its rows/columns carry
                self._product(dims, srcs[0][0], srcs[1][0])
            elif op not in LAYOUT_OPS:
                self._elementwise(dims, stypes[j], srcs)
        primary = steps[-1]
        t = stypes[-1]
        if attrs["reduce"] is not None:
            red = get_op(attrs["reduce"]).infer_type([t], {"axis": tuple(attrs["axis"]), "keepdims": attrs["keepdims"]})
            dims = self._fresh((n, "reduced"), red)
            self._reduced(dims, primary, tuple(attrs["axis"]), attrs["keepdims"])
            primary, t = dims, red
        for e, (op, sattrs) in enumerate(attrs.get("epilogue", ())):
            nt = get_op(op).infer_type([t], get_op(op).normalize_attrs(dict(sattrs)))
            dims = self._fresh((n, "epilogue", e), nt)
            if op == "dimshuffle":
                self._dimshuffle(dims, primary, dict(sattrs)["pattern"])
            primary, t = dims, nt
        return [primary] + [steps[j] for j in attrs.get("outputs", ())]
