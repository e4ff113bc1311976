"""The shape rule of every op, as shape-program code (see ``shape_program``).

Each rule gives the dims the op's type rule gives on concrete types, with the checks the
Python call-time planner made (it was replaced by this program: same checks in the same
order, same message text).  ``ShapeRules.run`` walks the live graph in topological order,
so the first failing check is the first one a node-by-node evaluation would hit.
"""
from __future__ import annotations

from tcomp.ir import dtypes as dt
from tcomp.ir.ops.fused import CONTRACTIONS, LAYOUT_OPS, step_types
from tcomp.ir.ops.indexing import is_ref, ref_index
from tcomp.ir.ops.reduction import reduced_shape
from tcomp.ir.types import TupleType

from .shape_program import LST, SCALAR_ELEMWISE, TUP, TY, I, ShapeBuilder, _lit, joined, shape_parts

#: ops whose None shape entries are filled from int-scalar operands: op -> (attr, first dim operand)
DIM_OPERANDS = {
    "reshape": ("shape", 1), "alloc": ("shape", 1),
    "random_uniform": ("shape", 2), "random_normal": ("shape", 2), "random_binomial": ("shape", 2),
    "conv2d_grad_input": ("input_shape", 2), "conv2d_grad_filters": ("filter_shape", 2),
}


def host_value_operands(g, n) -> list:
    """Operand positions of ``n`` whose *values* decide a shape or an index."""
    op, ops = g.op(n), g.operands(n)
    if op in DIM_OPERANDS:
        return list(range(DIM_OPERANDS[op][1], len(ops)))
    if op == "arange":
        return list(range(len(ops)))
    if op == "scan":  # the trip count (passes/lower_loops.py)
        return [0]
    if op == "flatnonzero":  # the result's length (ir/ops/nonzero.py)
        return [1]
    if op in ("subtensor", "set_subtensor", "inc_subtensor"):
        out = []
        for entry in g.attrs(n)["index"]:
            if entry[0] in ("i", "s"):
                out.extend(ref_index(v) for v in entry[1:] if is_ref(v))
        return out
    return []


class ShapeRules:
    """Dims (``dims``), host-value registers (``scal``) and kernel parameter groups
    (``params``) of every live node, emitting checks into ``b``."""

    def __init__(self, g, order, hostval, labels):
        self.g, self.order, self.hostval, self.labels = g, order, hostval, labels
        self.b = ShapeBuilder()
        self.dims: dict = {}
        self.scal: dict = {}
        self.params: dict = {}
        self.named: dict = {}
        self.index: dict = {}  # subtensor node -> per-entry (start, step) / (index, 0) pairs
        self._broadcast_memo: dict = {}     # operand shapes -> (result dims, ok condition)
        self._no_broadcast_memo: dict = {}  # (type shapes, shapes, result) -> (known dims, checks)
        self._described: dict = {}  # node -> describe(node)

    def describe(self, n) -> str:
        """``%5 = fused (reads x, y)``: the node, its name, and for a fused kernel (whose number
        the user never saw) the named inputs it reads, so a shape error names the variables.
        (Made once per node: every check of a fused kernel's steps asks for it.)"""
        text = self._described.get(n)
        if text is None:
            text = self._described[n] = self._describe(n)
        return text

    def _describe(self, n) -> str:
        g = self.g
        name = g.name(n)
        text = f"%{n} = {g.op(n)}" + (f" ({name})" if name else "")
        if g.op(n) == "fused":
            named = [g.name(o) for o in dict.fromkeys(g.operands(n)) if g.op(o) == "input" and g.name(o)]
            if named:
                text += f" (reads {', '.join(named)})"
        return text

    # -- inputs -----------------------------------------------------------------------------------
    def inputs(self):
        """The input checks after dtype and rank (which the entry wrapper checks): static
        dims, named dims agreeing across inputs."""
        b, g = self.b, self.g
        seen: dict = {}
        for k, n in enumerate(g.inputs):
            t, label = g.type(n), self.labels[k]
            raw = tuple(b.dim(k, a) for a in range(t.ndim))
            dims = []
            for a, want in enumerate(t.shape):
                have = raw[a]
                if isinstance(want, int):
                    b.check(b.eq(have, want), "ValueError",
                            [f"input {label!r}: expected {t}, got shape ", TUP(raw), f" (axis {a})"])
                    have = want
                elif isinstance(want, str):
                    if want not in seen:
                        seen[want] = (have, label)
                    else:
                        b.check(b.eq(have, seen[want][0]), "ValueError",
                                [f"input {label!r}: symbolic dim {want!r} is ", I(have), " here but ",
                                 I(seen[want][0]), f" in input {seen[want][1]!r}"])
                        have = seen[want][0]
                dims.append(have)
            self.dims[n] = tuple(dims)
            if n in self.hostval:
                if t.ndim == 0:
                    self.scal[n] = b.load(k, 0, t.dtype)
            for want, have in zip(t.shape, dims):
                if isinstance(want, str):
                    self.named.setdefault(want, have)

    # -- the walk ---------------------------------------------------------------------------------
    def run(self):
        self.inputs()
        g = self.g
        for n in self.order:
            op = g.op(n)
            if op == "input":
                continue
            if op == "constant":
                self.dims[n] = tuple(g.attrs(n)["value"].value.shape)
            else:
                self.dims[n] = self._shape(n, op)
            self.dims[n] = self._check_type(n, g.type(n), self.dims[n])
            if n in self.hostval and op not in ("input",):
                self.scal[n] = self._host_value(n, op)
        return self

    def _check_type(self, n, t, shape):
        if isinstance(t, TupleType):
            return tuple(self._check_element(n, e, s) for e, s in zip(t.elements, shape))
        return self._check_element(n, t, shape)

    def _check_element(self, n, t, shape):
        b = self.b
        if len(shape) != t.ndim:
            b.check(0, "ShapeError", [f"{self.describe(n)}: rank {len(shape)} differs from its type {t}"])
            return tuple(shape)
        out = []
        for a, (want, have) in enumerate(zip(t.shape, shape)):
            if isinstance(want, int):
                b.check(b.eq(have, want), "ShapeError",
                        [f"{self.describe(n)}: expected {t}, got shape ", TUP(shape), f" (axis {a})"])
                have = want
            elif isinstance(want, str):
                seen = self.named.setdefault(want, have)
                b.check(b.eq(have, seen), "ShapeError",
                        [f"{self.describe(n)}: symbolic dim {want!r} is ", I(have), " here but ", I(seen),
                         " elsewhere"])
                have = seen
            out.append(have)
        return tuple(out)

    # -- broadcasting -----------------------------------------------------------------------------
    # (Both rules below are memoized on their register/literal arguments: the builder
    # hash-conses, so a second call with the same arguments emits no instruction but its
    # checks, and a fused body of thousands of steps asks the same broadcast thousands of
    # times.  A hit replays the checks, with this node's message, in the original order; a
    # check whose condition folded to true is dropped before its message is built.)
    def np_broadcast(self, n, shapes):
        """NumPy's broadcast of concrete shapes (a run-time 1 broadcasts), with the planner's
        'do not broadcast' check."""
        b = self.b
        key = tuple(tuple(s) for s in shapes)
        hit = self._broadcast_memo.get(key)
        if hit is None:
            nd = max((len(s) for s in shapes), default=0)
            padded = [(1,) * (nd - len(s)) + tuple(s) for s in shapes]
            res, ok = [], []
            for axis in range(nd):
                r = padded[0][axis]
                for p in padded[1:]:
                    d = p[axis]
                    ok.append(b.any_of([b.eq(d, 1), b.eq(r, 1), b.eq(d, r)]))
                    r = b.select(b.eq(r, 1), d, r)
                res.append(r)
            hit = self._broadcast_memo[key] = (tuple(res), b.all_of(ok))
        res, cond = hit
        if not (_lit(cond) and cond):
            b.check(cond, "ShapeError", [f"{self.describe(n)}: operand shapes "] + shape_parts(shapes)
                    + [" do not broadcast"])
        return res

    def no_broadcast(self, n, what, types, shapes, result):
        """A dim that is not statically 1 must equal the result's; returns the result dims as
        they are known after these checks (an operand's dim where one is not static 1)."""
        b = self.b
        key = (tuple(t.shape for t in types), tuple(tuple(s) for s in shapes), tuple(result))
        hit = self._no_broadcast_memo.get(key)
        if hit is not None:
            known, checks = hit
            for i, a, cond, have, want in checks:
                self._no_broadcast_check(n, what, types[i], i, a, cond, have, want)
            return known
        known = list(result)
        fixed = [False] * len(result)
        checks = []
        for i, (t, s) in enumerate(zip(types, shapes)):
            off = len(result) - len(s)
            for a, (d, have) in enumerate(zip(t.shape, s)):
                if d != 1:
                    cond = b.eq(have, result[off + a])
                    self._no_broadcast_check(n, what, t, i, a, cond, have, result[off + a])
                    checks.append((i, a, cond, have, result[off + a]))
                    if not fixed[off + a]:
                        known[off + a], fixed[off + a] = have, True
        self._no_broadcast_memo[key] = (tuple(known), tuple(checks))
        return tuple(known)

    def _no_broadcast_check(self, n, what, t, i, a, cond, have, want) -> None:
        if not (_lit(cond) and cond):
            self.b.check(cond, "ShapeError",
                         [f"{self.describe(n)}: {what} {i} ({t}) has size ", I(have), f" on axis {a} but the "
                          "result has ", I(want), " (a symbolic dim never broadcasts)"])

    def elementwise(self, n, what, types, shapes):
        out = self.np_broadcast(n, shapes)
        return self.no_broadcast(n, what, types, shapes, out)

    # -- the rules --------------------------------------------------------------------------------
    def _shape(self, n, op):
        g, b = self.g, self.b
        ops = g.operands(n)
        attrs = g.attrs(n)
        if op == "get_output":
            return self.dims[ops[0]][attrs["index"]]
        from tcomp.ir import get_op

        kind = get_op(op).kind
        gtypes = [g.type(o) for o in ops]
        shapes = [self.dims[o] for o in ops]
        if kind == "elemwise":
            return self.elementwise(n, "operand", gtypes, shapes)
        if op == "fused":
            return self._fused(n, attrs, gtypes, shapes)
        if kind == "reduction":
            axes = tuple(attrs["axis"])
            xs = shapes[0]
            if op in ("max", "min", "argmax", "argmin"):
                b.check(b.all_of([b.ne(xs[a], 0) for a in axes]), "ShapeError",
                        [f"{self.describe(n)}: {op} over a zero-size axis of shape ", TUP(xs)])
            return reduced_shape(xs, axes, attrs["keepdims"])
        if op in ("softmax", "log_softmax", "logsumexp"):  # a zero-size axis is valid (ir/ops/nnet.py)
            xs = shapes[0]
            if op == "logsumexp":
                return reduced_shape(xs, (attrs["axis"],), attrs["keepdims"])
            return xs
        if op == "shape":
            return ()
        if op == "dimshuffle":
            src = shapes[0]
            return tuple(1 if p == "x" else src[p] for p in attrs["pattern"])
        if op == "arange":
            return self._arange(n, g.type(n).dtype, [self.value(o) for o in ops])
        if op == "subtensor":
            return self._index(n, ops, attrs["index"], 1)
        if op in ("set_subtensor", "inc_subtensor"):
            return self._update(n, ops, attrs, gtypes, shapes)
        if op in DIM_OPERANDS:
            return self._dim_operands(n, op, ops, attrs, gtypes, shapes)
        from . import shape_rules_nn

        return shape_rules_nn.RULES[op](self, n, attrs, gtypes, shapes)

    def value(self, n):
        """The register holding host value ``n`` (a rank-0 node the shapes depend on)."""
        if self.scal.get(n) is None or isinstance(self.scal[n], tuple):
            from .kernel_program import HostValueUnavailable

            raise HostValueUnavailable(f"kernel program: {self.describe(n)} ({self.g.type(n)}) decides a shape or an "
                                       f"index, but the shape program cannot compute it (only integer/float scalar "
                                       f"arithmetic, shapes, scalar inputs and constants)", n)
        return self.scal[n]

    def _fused(self, n, attrs, gtypes, cshapes):
        b = self.b
        stypes = step_types(attrs["body"], gtypes)
        cur = []
        for j, (op, sattrs, refs) in enumerate(attrs["body"]):
            if op == "constant":
                cur.append(())
                continue
            if op in LAYOUT_OPS:
                k = int(refs[0][1:])
                cur.append(self.layout(n, f"step {j}: ", op, dict(sattrs), gtypes[k].dtype, cshapes[k]))
                continue
            ts = [gtypes[int(r[1:])] if r[0] == "$" else stypes[int(r[1:])] for r in refs]
            ss = [cshapes[int(r[1:])] if r[0] == "$" else cur[int(r[1:])] for r in refs]
            if op in CONTRACTIONS:  # a product step (passes/fusion_gemm.py): the op's own rule
                from . import shape_rules_nn

                cur.append(tuple(shape_rules_nn.RULES[op](self, n, dict(sattrs), ts, ss)))
                continue
            cur.append(self.elementwise(n, f"step {j} operand", ts, ss))
        it = cur[-1]
        params = [("space", tuple(it))]
        params += [(f"step{j}", tuple(cur[j])) for j, step in enumerate(attrs["body"]) if step[0] == "reshape"]
        self.params[n] = params
        primary = it
        if attrs["reduce"] is not None:
            axes = tuple(attrs["axis"])
            if attrs["reduce"] in ("max", "min"):
                b.check(b.all_of([b.ne(it[a], 0) for a in axes]), "ShapeError",
                        [f"{self.describe(n)}: {attrs['reduce']} over a zero-size axis of shape ", TUP(it)])
            primary = reduced_shape(it, axes, attrs["keepdims"])
        for e, (op, sattrs) in enumerate(attrs.get("epilogue", ())):
            primary = self.layout(n, f"step epilogue {e}: ", op, dict(sattrs), stypes[-1].dtype, primary)
        if not attrs.get("outputs"):
            return tuple(primary)
        for j in attrs["outputs"]:
            # the planner's backstop: the loop stores every result at each point of ``it``, so a
            # result of another extent would be written out of bounds (fusion proves equal extents)
            same = b.all_of([b.eq(d, e) for d, e in zip(cur[j], it)]) if len(cur[j]) == len(it) else 0
            b.check(same, "ShapeError", [f"{self.describe(n)}: result step {j} has shape ", TUP(cur[j]),
                                         " but the kernel loops over ", TUP(it),
                                         "; a multi-output kernel's results need one extent"])
        return (tuple(primary),) + tuple(tuple(cur[j]) for j in attrs["outputs"])

    def layout(self, n, where, op, attrs, dtype, shape):
        if op == "dimshuffle":
            return tuple(1 if p == "x" else shape[p] for p in attrs["pattern"])
        return self.reshape(f"{self.describe(n)}: {where}", dtype, shape, tuple(attrs["shape"]))

    def reshape(self, prefix, dtype, xs, filled):
        """``_reshape_infer`` on the concrete type (entries may be registers, even a run-time -1)."""
        b = self.b
        size = b.prod(xs)
        t = TY(dtype, xs)
        m1 = [b.eq(d, -1) for d in filled]
        b.check(b.le(b.total(m1), 1), "ShapeError", [prefix + "reshape: at most one -1 in ", TUP(filled)])
        known = b.prod([b.select(c, 1, d) for c, d in zip(m1, filled)])
        b.check(b.emit("or", (b.emit("not", (b.any_of(m1),)),
                              b.all_of([b.ne(known, 0), b.eq(b.emit("mod", (size, known)), 0)]))), "ShapeError",
                [prefix + "reshape: cannot reshape ", t, " into ", LST(filled)])
        out = tuple(b.select(c, b.emit("floordiv", (size, known)), d) for c, d in zip(m1, filled))
        b.check(b.eq(b.prod(out), size), "ShapeError",
                [prefix + "reshape: cannot reshape ", t, " (", I(size), " elements) into ", LST(out)])
        return out

    def _arange(self, n, od, vals):
        b = self.b
        start, stop, step = vals
        b.check(b.ne(step, 0), "ValueError", [f"{self.describe(n)}: arange step is zero"])
        if all(b.type_of(v) == "i64" for v in vals):
            length = b.emit("neg", (b.emit("floordiv", (b.sub(start, stop), step)),))
        else:
            length = b.cast(b.emit("ceil", (b.emit("truediv", (b.sub(stop, start), step)),)), "int64")
        length = b.emit("max", (0, length))
        if od == "bool":
            b.check(b.le(length, 2), "ValueError", [f"{self.describe(n)}: arange of more than 2 bools"])
        first = b.cast(start, od)
        if od == "bool":
            delta = 1
        else:
            delta = b.cast(b.sub(b.cast(b.add(start, step), od), first), od)
        self.params[n] = [("start_delta", (first, delta))]
        return (length,)

    def _slice(self, d, start, stop, step):
        """``slice(start, stop, step).indices(d)`` -> (start, step, length); None = default."""
        b = self.b
        step = 1 if step is None else step
        pos = b.lt(0, step)  # folds for a static step

        def norm(v, default_pos, default_neg):
            if v is None:
                return b.select(pos, default_pos, default_neg)
            v = b.select(b.lt(v, 0), b.add(v, d), v)
            lo = b.select(pos, 0, -1)
            hi = b.select(pos, d, b.sub(d, 1))
            return b.emit("min", (b.emit("max", (v, lo)), hi))

        a = norm(start, 0, b.sub(d, 1))
        z = norm(stop, d, -1)
        num = b.select(pos, b.sub(z, a), b.sub(a, z))
        den = b.select(pos, step, b.emit("neg", (step,)))
        length = b.emit("max", (0, b.emit("neg", (b.emit("floordiv", (b.emit("neg", (num,)), den)),))))
        return a, step, length

    def _index(self, n, ops, index, first):
        """The planner's ``_index``: bounds and step checks, normalized entries, selection dims."""
        b = self.b
        xs = self.dims[ops[0]]
        pairs, arrays, kinds, lens = [], [], [], []

        def val(v):
            return self.value(ops[ref_index(v)]) if is_ref(v) else v

        for k, e in enumerate(index):
            if e[0] == "s":
                start, stop, step = (val(v) for v in e[1:])
                if step is not None:
                    b.check(b.ne(step, 0), "ValueError", [f"{self.describe(n)}: slice step cannot be zero"])
                a, c, length = self._slice(xs[k], start, stop, step)
                pairs.append((a, c))
                kinds.append("s")
                lens.append(length)
            elif e[0] == "i" or not is_ref(e[1]):
                v = val(e[1])
                b.check(b.all_of([b.le(b.emit("neg", (xs[k],)), v), b.lt(v, xs[k])]), "IndexError",
                        [f"{self.describe(n)}: index ", I(v), f" is out of bounds for axis {k} with size ", I(xs[k])])
                pairs.append((b.select(b.lt(v, 0), b.add(v, xs[k]), v), 0))
                kinds.append("i" if e[0] == "i" else "ai")
                lens.append(None)
            else:
                arrays.append(ops[ref_index(e[1])])
                pairs.append((0, 0))
                kinds.append("a")
                lens.append(None)
        bshape = ()
        if arrays:
            bshape = self.np_broadcast(n, [self.dims[o] for o in arrays])
        self.index[n] = pairs
        self.params[n] = [("index", tuple(x for p in pairs for x in p))]
        rest = tuple(xs[len(index):])
        if not any(k in ("a", "ai") for k in kinds):
            return tuple(ln for ln in lens if ln is not None) + rest
        # NumPy's placement rule: integer scalars count as advanced indices next to arrays
        out = []
        for k, kind in enumerate(kinds):
            out.append(lens[k] if kind == "s" else "ADV")
        positions = [i for i, v in enumerate(out) if v == "ADV"]
        contiguous = positions == list(range(positions[0], positions[0] + len(positions)))
        basic = [v for v in out if v != "ADV"] + list(rest)
        at = positions[0] if contiguous else 0
        return tuple(basic[:at]) + tuple(bshape) + tuple(basic[at:])

    def _update(self, n, ops, attrs, gtypes, shapes):
        b = self.b
        sel = self._index(n, ops, attrs["index"], 2)
        yt, ys = gtypes[1], shapes[1]
        if len(ys) > len(sel):
            b.check(0, "ShapeError", [f"{self.describe(n)}: value of shape ", TUP(ys),
                                      " has more dims than the selection ", TUP(sel)])
            return shapes[0]
        r = self.np_broadcast(n, [ys, sel])
        b.check(b.all_of([b.eq(x, y) for x, y in zip(r, sel)]), "ShapeError",
                [f"{self.describe(n)}: value of shape ", TUP(ys), f" ({yt}) does not fit the selection ", TUP(sel)])
        self.params[n] = self.params[n] + [("selection", tuple(sel))]
        return shapes[0]

    def _dim_operands(self, n, op, ops, attrs, gtypes, shapes):
        b = self.b
        attr, start = DIM_OPERANDS[op]
        dims = iter(self.value(o) for o in ops[start:])
        filled = tuple(b.cast(next(dims), "int64") if d is None else d for d in attrs[attr])
        conds = [b.le(0, d) if (op != "reshape") else b.le(-1, d) for d in filled]
        b.check(b.all_of(conds), "ShapeError", [f"{self.describe(n)}: negative dimension in ", TUP(filled)])
        prefix = f"{self.describe(n)}: "
        if op == "reshape":
            return self.reshape(prefix, gtypes[0].dtype, shapes[0], filled)
        if op == "alloc":
            return self._alloc(prefix, gtypes[0].dtype, shapes[0], filled)
        if op.startswith("random_"):
            b.check(b.le(b.prod(filled), 1 << 32), "ValueError",
                    [f"{self.describe(n)}: a random draw of shape ", TUP(filled),
                     " exceeds the generator's 2**32 elements per call"])
            return filled
        from . import shape_rules_nn

        return shape_rules_nn.conv_grad(self, n, op, attrs, gtypes, shapes, filled)

    def _alloc(self, prefix, dtype, xs, shape):
        b = self.b
        t = TY(dtype, xs)
        nd = len(shape)
        px = (1,) * (nd - len(xs)) + tuple(xs)
        for axis in range(nd):
            a, d = px[axis], shape[axis]
            b.check(b.any_of([b.eq(a, 1), b.eq(d, 1), b.eq(a, d)]), "ShapeError",
                    [prefix + "cannot broadcast alloc of ", t, " to ", LST(shape), ": shapes ", LST(xs), ", ",
                     LST(shape), f" conflict at axis {axis} (", I(a), " vs ", I(d), ")"])
        for have, want in zip(reversed(xs), reversed(shape)):
            b.check(b.emit("not", (b.all_of([b.ne(have, 1), b.eq(want, 1)]),)), "ShapeError",
                    [prefix + "alloc: cannot broadcast ", t, " to ", LST(shape)])
        return tuple(shape)

    # -- host values ------------------------------------------------------------------------------
    def _host_value(self, n, op):
        """The register of a host value (rank 0), computed as the reference would."""
        g, b = self.g, self.b
        t = g.type(n)
        if op == "shape":
            return self.dims[g.operands(n)[0]][g.attrs(n)["axis"]]
        if isinstance(t, TupleType):  # a multi-output kernel over scalars: one register per result
            return self._fused_value(n, t) if op == "fused" and all(e.ndim == 0 for e in t.elements) else None
        if t.ndim != 0:
            return None  # only rank-0 host values are registers; value() reports any other use
        ops = g.operands(n)
        if op == "constant":
            v = g.attrs(n)["value"].value.item()
            return int(v) if not dt.is_float(t.dtype) else float(v)
        if op == "get_output":
            src = self.scal.get(ops[0])
            return None if src is None else src[g.attrs(n)["index"]]
        if op == "subtensor" and all(e[0] == "i" for e in g.attrs(n)["index"]):
            x = ops[0]
            if g.op(x) == "input" and len(g.attrs(n)["index"]) == g.type(x).ndim:
                strides = b.strides(self.dims[x])
                flat = b.total([b.mul(p[0], s) for p, s in zip(self.index[n], strides)])
                return b.load(g.inputs.index(x), flat, t.dtype)
            return None
        if op == "fused":
            return self._fused_value(n, t)
        if op == "cast":
            return None if ops[0] not in self.scal else b.cast(self.scal[ops[0]], t.dtype)
        if op in SCALAR_ELEMWISE and all(o in self.scal and self.scal[o] is not None for o in ops):
            return self._scalar_op(op, [self.scal[o] for o in ops], [g.type(o).dtype for o in ops], t.dtype)
        return None

    def _scalar_op(self, op, args, dtypes, out):
        """One elementwise op on scalar registers, with NumPy's result dtype (``out``)."""
        b = self.b
        if op == "where":
            return b.cast(b.select(b.ne(args[0], 0), args[1], args[2]), out)
        if op in ("truediv",) or dt.is_float(out):
            args = [b.emit("add", (a, 0.0)) if b.type_of(a) == "i64" else a for a in args]
        if op in ("eq", "neq", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not"):
            return b.emit(SCALAR_ELEMWISE[op], args)
        return b.cast(b.emit(SCALAR_ELEMWISE[op], args), out)

    def _fused_value(self, n, t):
        """A fused kernel over scalars that a shape depends on, step by step."""
        g = self.g
        attrs = g.attrs(n)
        ops = g.operands(n)
        if any(o not in self.scal or self.scal[o] is None for o in ops):
            return None
        stypes = step_types(attrs["body"], [g.type(o) for o in ops])
        vals = []
        for j, (op, sattrs, refs) in enumerate(attrs["body"]):
            if op == "constant":
                c = dict(sattrs)["value"].value
                vals.append(float(c.item()) if dt.is_float(c.dtype.name) else int(c.item()))
                continue
            args = [self.scal[ops[int(r[1:])]] if r[0] == "$" else vals[int(r[1:])] for r in refs]
            dts = [g.type(ops[int(r[1:])]).dtype if r[0] == "$" else stypes[int(r[1:])].dtype for r in refs]
            if op in LAYOUT_OPS:
                vals.append(args[0])
            elif op == "cast":
                vals.append(self.b.cast(args[0], stypes[j].dtype))
            elif op in SCALAR_ELEMWISE:
                vals.append(self._scalar_op(op, args, dts, stypes[j].dtype))
            else:
                return None
        res = self.b.cast(vals[-1], t.elements[0].dtype if isinstance(t, TupleType) else t.dtype)
        if attrs.get("outputs"):
            return (res,) + tuple(vals[j] for j in attrs["outputs"])
        return res


__all__ = ["ShapeRules", "DIM_OPERANDS", "host_value_operands", "joined"]
