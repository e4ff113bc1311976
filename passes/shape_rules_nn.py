"""Shape rules of the ops whose call-time check is their type rule on concrete types
(dot, matmul, concatenate, stack, conv2d and its gradients, pool2d and its gradients).

The planner runs ``infer_type`` on the concrete shapes and prefixes the error with the
node; these rules emit the conditions under which that type rule raises *for shapes that
already fit the graph types* (everything else is a build-time error), with its text.
"""
from __future__ import annotations

from tcomp.ir.ops.conv import conv_params
from tcomp.ir.ops.pool import pool_params

from .shape_program import LST, TUP, TY, I, joined


def _types(gtypes, shapes):
    return [TY(t.dtype, s) for t, s in zip(gtypes, shapes)]


def _bcast2(r, a, d, prefix, what_shapes, axis):
    """``types.broadcast_shapes`` of two concrete shapes at one axis: error text and dim."""
    b = r.b
    b.check(b.any_of([b.eq(a, 1), b.eq(d, 1), b.eq(a, d)]), "ShapeError",
            prefix + what_shapes + [f" conflict at axis {axis} (", I(a), " vs ", I(d), ")"])
    return b.select(b.eq(a, 1), d, a)


def _inner(r, n, name, ta, sa, ka, tb, sb, kb):
    b = r.b
    b.check(b.eq(sa[ka], sb[kb]), "ShapeError",
            [f"{r.describe(n)}: {name}: inner dimensions differ: ", TY(ta, sa), f" (axis {ka} = ", I(sa[ka]),
             ") and ", TY(tb, sb), f" (axis {kb} = ", I(sb[kb]), ")"])


def dot(r, n, attrs, gtypes, shapes):
    a, b_ = shapes
    _inner(r, n, "dot", gtypes[0].dtype, a, len(a) - 1, gtypes[1].dtype, b_, 0)
    return tuple(a[:-1]) + tuple(b_[1:])


def matmul(r, n, attrs, gtypes, shapes):
    sa, sb = shapes
    da, db = gtypes[0].dtype, gtypes[1].dtype
    if len(sa) == 1 and len(sb) == 1:
        _inner(r, n, "matmul", da, sa, 0, db, sb, 0)
        return ()
    a_shape = (1,) + tuple(sa) if len(sa) == 1 else tuple(sa)
    b_shape = tuple(sb) + (1,) if len(sb) == 1 else tuple(sb)
    _inner(r, n, "matmul", da, a_shape, len(a_shape) - 1, db, b_shape, len(b_shape) - 2)
    ba, bb = a_shape[:-2], b_shape[:-2]
    nd = max(len(ba), len(bb))
    pa, pb = (1,) * (nd - len(ba)) + ba, (1,) * (nd - len(bb)) + bb
    prefix = [f"{r.describe(n)}: cannot broadcast batch dims of matmul("] + joined(_types(gtypes, shapes)) + ["): "]
    what = ["shapes ", LST(ba), ", ", LST(bb)]
    batch = tuple(_bcast2(r, x, y, prefix, what, k) for k, (x, y) in enumerate(zip(pa, pb)))
    shape = batch + (a_shape[-2], b_shape[-1])
    if len(sa) == 1:
        shape = shape[:-2] + shape[-1:]
    if len(sb) == 1:
        shape = shape[:-1]
    return shape


def concatenate(r, n, attrs, gtypes, shapes):
    b = r.b
    axis = attrs["axis"]
    conds = [b.eq(s[i], shapes[0][i]) for s in shapes[1:] for i in range(len(s)) if i != axis]
    b.check(b.all_of(conds), "ShapeError",
            [f"{r.describe(n)}: concatenate: shapes differ off axis {axis}: "] + joined(_types(gtypes, shapes)))
    out = list(shapes[0])
    out[axis] = b.total([s[axis] for s in shapes])
    return tuple(out)


def stack(r, n, attrs, gtypes, shapes):
    b = r.b
    conds = [b.eq(s[i], shapes[0][i]) for s in shapes[1:] for i in range(len(s))]
    b.check(b.all_of(conds), "ShapeError",
            [f"{r.describe(n)}: stack: operand shapes differ: "] + joined(_types(gtypes, shapes)))
    out = list(shapes[0])
    out.insert(attrs["axis"], len(shapes))
    return tuple(out)


def _conv_out(b, size, k, pad, stride, dilation):
    num = b.sub(b.sub(b.add(size, 2 * pad), b.mul(dilation, b.sub(k, 1))), 1)
    return b.add(b.emit("floordiv", (num, stride)), 1)


def _fits(r, n, op, xs, ks, pad, dilation, what_x="input", what_k="filters"):
    b = r.b
    for axis, (size, k, p, d) in enumerate(zip(xs, ks, pad, dilation)):
        ext = b.add(b.mul(d, b.sub(k, 1)), 1)
        b.check(b.le(ext, b.add(size, 2 * p)), "ShapeError",
                [f"{r.describe(n)}: {op}: {what_k} extent ", I(ext), " (kernel ", I(k), f", dilation {d}) on spatial "
                 f"axis {axis} is larger than the padded {what_x} (", I(size), f" + 2*{p})"])


def conv2d(r, n, attrs, gtypes, shapes):
    b = r.b
    x, w = shapes
    pad, stride, dilation = conv_params("conv2d", attrs)
    b.check(b.eq(x[1], w[1]), "ShapeError",
            [f"{r.describe(n)}: conv2d: input ", TY(gtypes[0].dtype, x), " has ", I(x[1]), " channels but filters ",
             TY(gtypes[1].dtype, w), " expect ", I(w[1])])
    _fits(r, n, "conv2d", x[2:], w[2:], pad, dilation)
    hw = tuple(_conv_out(b, x[2 + i], w[2 + i], pad[i], stride[i], dilation[i]) for i in range(2))
    return (x[0], w[0]) + hw


def conv_grad(r, n, op, attrs, gtypes, shapes, filled):
    """conv2d_grad_input(gy, w, *dims) / conv2d_grad_filters(x, gy, *dims) with the filled shape."""
    b = r.b
    pad, stride, dilation = conv_params(op, attrs)
    attr = "input_shape" if op == "conv2d_grad_input" else "filter_shape"
    b.check(b.all_of([b.le(1, d) for d in filled]), "ShapeError",
            [f"{r.describe(n)}: {op}: attribute {attr} must be two positive ints or None, got ", TUP(filled)])
    p, q = shapes[0], shapes[1]
    tp, tq = TY(gtypes[0].dtype, p), TY(gtypes[1].dtype, q)
    if op == "conv2d_grad_input":
        gy, w = p, q
        b.check(b.eq(gy[1], w[0]), "ShapeError", [f"{r.describe(n)}: {op}: output gradient ", tp, " has ", I(gy[1]),
                                                  " channels but filters ", tq, " have ", I(w[0])])
        _fits(r, n, op, filled, w[2:], pad, dilation)
        for i in range(2):
            want = _conv_out(b, filled[i], w[2 + i], pad[i], stride[i], dilation[i])
            b.check(b.eq(want, gy[2 + i]), "ShapeError",
                    [f"{r.describe(n)}: {op}: input size ", I(filled[i]), f" on spatial axis {i} gives ", I(want),
                     " outputs, but the output gradient ", tp, " has ", I(gy[2 + i])])
        return (gy[0], w[1]) + tuple(filled)
    x, gy = p, q
    b.check(b.eq(x[0], gy[0]), "ShapeError",
            [f"{r.describe(n)}: {op}: input ", tp, " and output gradient ", tq, " differ in batch size"])
    _fits(r, n, op, x[2:], filled, pad, dilation)
    for i in range(2):
        want = _conv_out(b, x[2 + i], filled[i], pad[i], stride[i], dilation[i])
        b.check(b.eq(want, gy[2 + i]), "ShapeError",
                [f"{r.describe(n)}: {op}: input ", tp, " with kernel size ", I(filled[i]), f" on spatial axis {i} "
                 "gives ", I(want), " outputs, but the output gradient ", tq, " has ", I(gy[2 + i])])
    return (gy[1], x[1]) + tuple(filled)


def _pool_dim(b, size, k, stride, pad, ignore_border):
    v = b.add(size, 2 * pad)
    if ignore_border:
        return b.emit("max", (b.add(b.emit("floordiv", (b.sub(v, k), stride)), 1), 0))
    if stride >= k:
        return b.add(b.emit("floordiv", (b.sub(v, 1), stride)), 1)
    return b.add(b.emit("max", (0, b.emit("floordiv", (b.add(b.sub(b.sub(v, 1), k), stride), stride)))), 1)


def _pooled(r, op, attrs, xs):
    ws, stride, pad, _mode, ib = pool_params(op, attrs)
    return tuple(xs[:-2]) + tuple(_pool_dim(r.b, xs[-2 + i], ws[i], stride[i], pad[i], ib) for i in range(2))


def pool2d(r, n, attrs, gtypes, shapes):
    return _pooled(r, "pool2d", attrs, shapes[0])


def _pool_grad(op, gradient_of_input):
    def rule(r, n, attrs, gtypes, shapes):
        b = r.b
        x, g = shapes
        pooled = _pooled(r, op, attrs, x)
        want, out = (pooled, x) if gradient_of_input else (x, pooled)
        b.check(b.all_of([b.eq(a, c) for a, c in zip(g, want)]), "ShapeError",
                [f"{r.describe(n)}: {op}: second operand ", TY(gtypes[1].dtype, g),
                 " does not match the expected shape ", LST(want), " for input ", TY(gtypes[0].dtype, x)])
        return tuple(out)
    return rule


RULES = {"dot": dot, "matmul": matmul, "concatenate": concatenate, "stack": stack, "conv2d": conv2d,
         "pool2d": pool2d, "pool2d_grad": _pool_grad("pool2d_grad", True),
         "pool2d_grad_grad": _pool_grad("pool2d_grad_grad", False),
         # scans and argsort along one axis: the operand's shape (ir/ops/scan_sort.py)
         **{op: (lambda r, n, attrs, gtypes, shapes: tuple(shapes[0])) for op in ("cumsum", "cumprod", "argsort")}}

from .lower_loops import SHAPE_RULES as _CONTROL_RULES  # noqa: E402 - scan and ifelse (issue 15)

RULES.update(_CONTROL_RULES)

from .shape_rules_linalg import RULES as _LINALG_RULES  # noqa: E402 - cholesky, solve, det, ...

RULES.update(_LINALG_RULES)
