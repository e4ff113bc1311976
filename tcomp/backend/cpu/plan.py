"""Call-time planning: the concrete shape of every node, the host values shapes depend on,
and the i64 parameter array the native code reads.

Why in Python: every buffer is then allocated by NumPy (aligned, owned by the caller)
before native code runs, the generated code never allocates or computes a shape, and
every check that protects memory (ranks, static and named dims, symbolic dims that must
not broadcast, scalar index bounds, slice steps) happens here with a clear message.
A plan depends only on the input shapes unless a shape depends on input *values*
(``reshape(x, (v, -1))`` with ``v`` read from an input), so it is cached by shapes.
"""
from __future__ import annotations

import math

import numpy as np

from tcomp.ir import dtypes as dt
from tcomp.ir.interpreter import ShapeError
from tcomp.ir.ops.fused import LAYOUT_OPS, step_types
from tcomp.ir.ops.indexing import is_ref, ref_index
from tcomp.ir.ops.reduction import reduced_shape
from tcomp.ir.ops.registry import get_op
from tcomp.ir.types import TensorType, TupleType

from .program import DIM_OPERANDS, Program


class Plan:
    __slots__ = ("shapes", "values", "params", "index_tuples", "memory", "memory_undonated")

    def __init__(self, shapes, values, params, index_tuples):
        self.shapes, self.values, self.params, self.index_tuples = shapes, values, params, index_tuples
        # the backend's buffer assignments for these shapes (set by CompiledGraph): with the
        # donated updates, and without them (for a call whose donated inputs cannot be written)
        self.memory = self.memory_undonated = None


def _no_broadcast(prog: Program, n, what, operand_types, operand_shapes, result_shape):
    """A dim that is not statically 1 must equal the result's dim (symbolic dims never broadcast)."""
    for i, (t, s) in enumerate(zip(operand_types, operand_shapes)):
        off = len(result_shape) - len(s)
        for a, (d, have) in enumerate(zip(t.shape, s)):
            if d != 1 and have != result_shape[off + a]:
                raise ShapeError(f"{prog.describe(n)}: {what} {i} ({t}) has size {have} on axis {a} but the "
                                 f"result has {result_shape[off + a]} (a symbolic dim never broadcasts)")


def _broadcast(prog, n, shapes):
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ShapeError(f"{prog.describe(n)}: operand shapes {', '.join(map(str, shapes))} do not broadcast") from None


def _dummy(shape):
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape=shape, strides=(0,) * len(shape))


class Planner:
    def __init__(self, prog: Program):
        self.prog = prog
        self.g = prog.g
        self._steps = {}
        self._extra_keys = {}  # fused node -> Program.fused_dims_layout keys (what its extras hold)

    def plan(self, arrays: list) -> Plan:
        prog, g = self.prog, self.g
        shapes, values, extras, tuples = {}, {}, {}, {}
        named: dict = {}
        for n, a in zip(g.inputs, arrays):
            shapes[n] = a.shape
            values[n] = a
        for n in prog.order:
            op = g.op(n)
            if op == "input":
                pass
            elif op == "constant":
                shapes[n] = g.attrs(n)["value"].value.shape
                values[n] = g.attrs(n)["value"].value
            else:
                shapes[n] = self._shape(n, op, shapes, values, extras, tuples)
            self._check_type(n, shapes[n], named)
            if prog.role[n] == "hostval" and op not in ("input", "constant"):
                values[n] = self._host_value(n, op, shapes, values)
        params = np.zeros(prog.n_params, dtype=np.int64)
        for n in prog.order:
            s = shapes[n]
            if s and not isinstance(g.type(n), TupleType):
                params[prog.dims_off[n]:prog.dims_off[n] + len(s)] = s
            if n in extras and n in prog.extra_off:
                e = extras[n]
                params[prog.extra_off[n]:prog.extra_off[n] + len(e)] = e
        return Plan(shapes, values, params, tuples)

    # -- checks ------------------------------------------------------------------------------
    def _check_type(self, n, shape, named):
        t = self.g.type(n)
        if isinstance(t, TupleType):  # a multi-output kernel: one shape per result
            for e, s in zip(t.elements, shape):
                self._check_element(n, e, s, named)
            return
        self._check_element(n, t, shape, named)

    def _check_element(self, n, t, shape, named):
        if len(shape) != t.ndim:
            raise ShapeError(f"{self.prog.describe(n)}: rank {len(shape)} differs from its type {t}")
        for a, (want, have) in enumerate(zip(t.shape, shape)):
            if isinstance(want, int) and want != have:
                raise ShapeError(f"{self.prog.describe(n)}: expected {t}, got shape {shape} (axis {a})")
            if isinstance(want, str):
                seen = named.setdefault(want, have)
                if seen != have:
                    raise ShapeError(f"{self.prog.describe(n)}: symbolic dim {want!r} is {have} here but "
                                     f"{seen} elsewhere")

    def _host_value(self, n, op, shapes, values):
        g = self.g
        if op == "shape":
            return np.asarray(shapes[g.operands(n)[0]][g.attrs(n)["axis"]], dtype="int64")
        args = [values[o] for o in g.operands(n)]
        t = g.type(n)
        if isinstance(t, TupleType):
            with np.errstate(all="ignore"):
                return tuple(get_op(op).impl(args, g.attrs(n), t))
        with np.errstate(all="ignore"):
            r = np.asarray(get_op(op).impl(args, g.attrs(n), t))
        r = r.astype(t.dtype, copy=False)
        return r if r.flags.c_contiguous else r.copy(order="C")

    # -- shape rules ---------------------------------------------------------------------------
    def _shape(self, n, op, shapes, values, extras, tuples):
        g, prog = self.g, self.prog
        ops = g.operands(n)
        attrs = g.attrs(n)
        if op == "get_output":
            return shapes[ops[0]][attrs["index"]]
        opdef = get_op(op)
        gtypes = [g.type(o) for o in ops]
        ctypes_ = [TensorType(t.dtype, shapes[o]) for t, o in zip(gtypes, ops)]
        if opdef.kind == "elemwise":
            out = _broadcast(prog, n, [shapes[o] for o in ops])
            _no_broadcast(prog, n, "operand", gtypes, [shapes[o] for o in ops], out)
            return out
        if op == "fused":
            return self._fused(n, attrs, gtypes, [shapes[o] for o in ops], extras)
        if opdef.kind == "reduction":
            axes = tuple(attrs["axis"])
            xs = shapes[ops[0]]
            if op in ("max", "min", "argmax", "argmin") and any(xs[a] == 0 for a in axes):
                raise ShapeError(f"{prog.describe(n)}: {op} over a zero-size axis of shape {xs}")
            return reduced_shape(xs, axes, attrs["keepdims"])
        # softmax family over a zero-size axis: empty softmax, logsumexp -inf (ir/ops/nnet.py)
        if op in ("softmax", "log_softmax"):
            return shapes[ops[0]]
        if op == "logsumexp":
            return reduced_shape(shapes[ops[0]], (attrs["axis"],), attrs["keepdims"])
        if op == "shape":
            return ()
        if op == "arange":
            return self._arange(n, attrs, [values[o] for o in ops], extras)
        if op == "subtensor":
            return self._index(n, ops, attrs["index"], shapes, values, extras, tuples, 1)
        if op in ("set_subtensor", "inc_subtensor"):
            sel = self._index(n, ops, attrs["index"], shapes, values, extras, tuples, 2)
            yt, ys = gtypes[1], shapes[ops[1]]
            if len(ys) > len(sel):
                raise ShapeError(f"{prog.describe(n)}: value of shape {ys} has more dims than the selection {sel}")
            # NumPy assignment semantics (the reference's): a run-time size-1 dim of y broadcasts
            if _broadcast(prog, n, [ys, sel]) != tuple(sel):
                raise ShapeError(f"{prog.describe(n)}: value of shape {ys} ({yt}) does not fit the selection {sel}")
            extras[n] = extras[n] + list(sel)
            return shapes[ops[0]]
        if op in DIM_OPERANDS:
            attr, start = DIM_OPERANDS[op]
            dims = iter(int(values[o]) for o in ops[start:])
            filled = tuple(next(dims) if d is None else d for d in attrs[attr])
            if any(d < 0 for d in filled if d != -1 or op != "reshape"):
                raise ShapeError(f"{prog.describe(n)}: negative dimension in {filled}")
            a2 = dict(attrs)
            a2[attr] = filled
            try:
                out = opdef.infer_type(ctypes_[:start], a2).shape
            except (TypeError, ValueError) as e:
                raise ShapeError(f"{prog.describe(n)}: {e}") from None
            if op.startswith("random_") and int(np.prod(out, dtype=np.int64)) > 1 << 32:
                raise ValueError(f"{prog.describe(n)}: a random draw of shape {out} exceeds the generator's "
                                 f"2**32 elements per call")
            return out
        try:
            out = opdef.infer_type(ctypes_, attrs).shape
        except (TypeError, ValueError) as e:
            raise ShapeError(f"{prog.describe(n)}: {e}") from None
        return out

    def _fused(self, n, attrs, gtypes, cshapes, extras):
        """Step by step shapes of a fused kernel (the run-time checks its ops would make);
        its result shape, or one per result for a multi-output kernel."""
        prog = self.prog
        if n not in self._steps:
            self._steps[n] = step_types(attrs["body"], gtypes)
        stypes = self._steps[n]
        cur = []
        for j, (op, sattrs, refs) in enumerate(attrs["body"]):
            if op == "constant":
                cur.append(())
                continue
            if op in LAYOUT_OPS:  # one kernel operand, re-laid out
                k = int(refs[0][1:])
                cur.append(self._layout_shape(n, j, op, sattrs, gtypes[k].dtype, cshapes[k]))
                continue
            ts, ss = [], []
            for r in refs:
                k = int(r[1:])
                ts.append(gtypes[k] if r[0] == "$" else stypes[k])
                ss.append(cshapes[k] if r[0] == "$" else cur[k])
            out = _broadcast(prog, n, ss)
            _no_broadcast(prog, n, f"step {j} operand", ts, ss, out)
            cur.append(out)
        it = cur[-1]
        if n not in self._extra_keys:
            self._extra_keys[n] = [key for key, _ in prog.fused_dims_layout(n)]
        extras[n] = [d for key in self._extra_keys[n] for d in (it if key == "it" else cur[key])]
        primary = it
        if attrs["reduce"] is not None:
            axes = tuple(attrs["axis"])
            if attrs["reduce"] in ("max", "min") and any(it[a] == 0 for a in axes):
                raise ShapeError(f"{prog.describe(n)}: {attrs['reduce']} over a zero-size axis of shape {it}")
            primary = reduced_shape(it, axes, attrs["keepdims"])
        for e, (op, sattrs) in enumerate(attrs.get("epilogue", ())):
            primary = self._layout_shape(n, f"epilogue {e}", op, sattrs, stypes[-1].dtype, primary)
        if not attrs.get("outputs"):
            return primary
        for j in attrs["outputs"]:
            # the loop stores every result at each point of ``it``: a result of another extent
            # would be written out of bounds (fusion proves equal extents; this is the backstop)
            if tuple(cur[j]) != tuple(it):
                raise ShapeError(f"{prog.describe(n)}: result step {j} has shape {tuple(cur[j])} but the kernel "
                                 f"loops over {tuple(it)}; a multi-output kernel's results need one extent")
        return (primary,) + tuple(cur[j] for j in attrs["outputs"])

    def _layout_shape(self, n, where, op, sattrs, dtype, shape):
        try:
            return get_op(op).infer_type([TensorType(dtype, shape)], dict(sattrs)).shape
        except (TypeError, ValueError) as e:
            raise ShapeError(f"{self.prog.describe(n)}: step {where}: {e}") from None

    def _arange(self, n, attrs, vals, extras):
        start, stop, step = (v.item() for v in vals)
        if step == 0:
            raise ValueError(f"{self.prog.describe(n)}: arange step is zero")
        length = max(0, math.ceil((stop - start) / step))
        od = self.g.type(n).dtype
        if od == "bool" and length > 2:
            raise ValueError(f"{self.prog.describe(n)}: arange of more than 2 bools")
        with np.errstate(all="ignore"):
            first = np.array(start).astype(od)
            delta = np.array(start + step).astype(od) - first if od != "bool" else np.array(1)
        if dt.is_float(od):
            enc = [np.float64(first).view(np.int64), np.float64(delta).view(np.int64)]
        else:
            enc = [int(first), int(delta)]
        extras[n] = enc
        return (length,)

    def _index(self, n, ops, index, shapes, values, extras, tuples, first):
        prog = self.prog
        xs = shapes[ops[0]]
        np_index, params = [], []
        arrays = []
        for k, e in enumerate(index):
            def val(v):
                return int(values[ops[ref_index(v)]]) if is_ref(v) else v
            if e[0] == "s":
                start, stop, step = (val(v) for v in e[1:])
                if step == 0:
                    raise ValueError(f"{prog.describe(n)}: slice step cannot be zero")
                s = slice(start, stop, step)
                np_index.append(s)
                a, _b, c = s.indices(xs[k])
                params += [a, c]
            elif e[0] == "i":
                v = val(e[1])
                if not -xs[k] <= v < xs[k]:
                    raise IndexError(f"{prog.describe(n)}: index {v} is out of bounds for axis {k} with size {xs[k]}")
                np_index.append(v)
                params += [v + xs[k] if v < 0 else v, 0]
            elif is_ref(e[1]):
                o = ops[ref_index(e[1])]
                arrays.append(o)
                np_index.append(np.zeros(shapes[o], dtype=np.intp))
                params += [0, 0]
            else:
                v = e[1]
                if not -xs[k] <= v < xs[k]:
                    raise IndexError(f"{prog.describe(n)}: index {v} is out of bounds for axis {k} with size {xs[k]}")
                np_index.append(np.asarray(v, dtype=np.intp))
                params += [v + xs[k] if v < 0 else v, 0]
        if arrays:  # index arrays broadcast like NumPy's (the reference indexes with NumPy)
            _broadcast(prog, n, [shapes[o] for o in arrays])
        try:
            sel = _dummy(xs)[tuple(np_index)].shape
        except IndexError as e:
            raise IndexError(f"{prog.describe(n)}: {e}") from None
        extras[n] = params
        if not arrays:
            tuples[n] = tuple(np_index)
        return sel
