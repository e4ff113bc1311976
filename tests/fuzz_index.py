"""Indexing proposals of the differential fuzzer: ``x[key]`` with ints, slices (negative
steps, out-of-range bounds, symbolic bounds), ``None``, ``...``, advanced integer arrays
(lists, constants of several int dtypes, symbolic vectors, 2-d arrays, two arrays
broadcasting, NumPy's placement rule for separated arrays), and
``T.set_subtensor``/``T.inc_subtensor`` over such selections (repeated indices accumulate
in ``inc``; ``set`` only gets distinct ones, where NumPy's order is unspecified)."""
from __future__ import annotations

import numpy as np
from fuzz_graphs import Step, _getitem, _key_value, src
from fuzz_ops import OracleError, kind


def make_key(gen, x, allow_none=True, error_prob=0.02):
    """A key for node ``x``: (entries with ("$", node id) refs, operand node ids)."""
    sh, ts = gen.vals[x].shape, gen.tshapes[x]
    nd = len(sh)
    k = int(gen.rng.integers(1, nd + 1))
    front_ellipsis = k < nd and gen.r() < 0.2
    axes = list(range(nd - k, nd)) if front_ellipsis else list(range(k))
    adv_axes = set()
    if gen.r() < 0.35:
        adv_axes = set(int(a) for a in gen.rng.choice(axes, size=min(len(axes), gen.choice([1, 1, 2])),
                                                      replace=False))
    error = gen.r() < error_prob
    length = int(gen.choice([0, 1, 2, 3, 4], [0.3, 1, 2, 2, 1]))
    two_d = len(adv_axes) == 1 and gen.r() < 0.15
    entries, operands = [], []
    for ax in axes:
        s, t = sh[ax], ts[ax]
        if ax in adv_axes:
            entries.append(("a", _adv_index(gen, s, length if s else 0, error, two_d, operands)))
            gen.feat["index:advanced"] += 1
        elif s > 0 and gen.r() < 0.3:
            v = int(gen.rng.integers(-s, s))
            if error and not isinstance(t, int):
                v = s
            if gen.r() < 0.25:
                j = gen.int_scalar_operand(v, axis_node=x, axis=ax)
                if j is None:
                    return None, None
                operands.append(j)
                v = ("$", j)
                gen.feat["index:symbolic int"] += 1
            entries.append(("i", v))
            gen.feat["index:int"] += 1
        else:
            bounds = []
            for _ in range(2):
                b = None if gen.r() < 0.4 else int(gen.rng.integers(-s - 2, s + 3))
                if b is not None and gen.r() < 0.2:
                    j = gen.int_scalar_operand(b, axis_node=x, axis=ax)
                    if j is None:
                        return None, None
                    operands.append(j)
                    b = ("$", j)
                    gen.feat["index:symbolic bound"] += 1
                bounds.append(b)
            step = gen.choice([None, 1, 2, 3, -1, -2, -1])
            entries.append(("s", bounds[0], bounds[1], step))
            gen.feat["index:slice step<0" if step and step < 0 else "index:slice"] += 1
    if front_ellipsis:
        entries.insert(0, ("ell",))
        gen.feat["index:ellipsis"] += 1
    elif k < nd and gen.r() < 0.1:
        entries.append(("ell",))
        gen.feat["index:ellipsis"] += 1
    if allow_none and not adv_axes and gen.r() < 0.15:
        entries.insert(int(gen.rng.integers(0, len(entries) + 1)), ("none",))
        gen.feat["index:newaxis"] += 1
    if adv_axes and len(adv_axes) < len(axes):
        gen.feat["index:advanced+basic"] += 1
    return entries, operands


def _adv_index(gen, s, length, error, two_d, operands):
    lo = -s
    vals = [int(v) for v in gen.rng.integers(lo, max(s, 1), length)] if s else []
    if error and gen.r() < 0.5:
        vals = vals + [s]
    form = gen.choice(["list", "const", "input"] + (["2d"] if two_d else []))
    if form == "2d" and len(vals) >= 1:
        arr = np.array(vals * 2, dtype="int64").reshape(2, len(vals))
        gen.feat["index:2-d array"] += 1
        return arr
    if form == "list":
        return list(vals)
    d = gen.choice(["int64", "int32", "int8", "uint8"])
    if d == "uint8" and s > 256 or d == "int8" and s > 127:
        d = "int32"  # (an axis longer than the dtype's range: seed 1039090, 609 in uint8)
    elif d == "uint8":
        vals = [v % s if s else v for v in vals]
    arr = np.array(vals, dtype=d)
    if form == "const":
        return arr
    i = len(gen.g.steps)
    ctor = {"int64": f"T.lvector('x{i}')", "int32": f"T.ivector('x{i}')"}.get(
        d, f"T.tensor('x{i}', dtype='{d}', shape=(None,))")
    j = gen.add(Step("input", [], {"ctor": ctor, "value": arr, "layout": gen.choice(["c", "step", "rev"]),
                                   "dtype": d}), label="index vector input")
    if j is None:
        return list(vals)
    operands.append(j)
    gen.feat["index:symbolic array"] += 1
    return ("$", j)


def _remap(entries, args):
    def m(v):
        return ("$", args.index(v[1])) if isinstance(v, tuple) and v and v[0] == "$" else v
    return [tuple([e[0]] + [m(v) for v in e[1:]]) for e in entries]


def p_subtensor(gen):
    x = gen.pick(lambda i: gen.vars[i].ndim > 0)
    if x is None:
        return None
    entries, operands = make_key(gen, x)
    if entries is None:
        return None
    args = [x] + operands
    return gen.add(Step("subtensor", args, {"key": _remap(entries, args)}), allow_error=True,
                   label="subtensor[adv]" if any(e[0] == "a" for e in entries) else "subtensor")


def p_update(gen):
    x = gen.pick(lambda i: gen.vars[i].ndim > 0 and gen.vars[i].dtype != "bool")
    if x is None:
        return None
    entries, operands = make_key(gen, x, allow_none=False)
    if entries is None:
        return None
    op = "inc_subtensor" if gen.r() < 0.5 else "set_subtensor"
    tmp_args = [x] + operands
    key_entries = _remap(entries, tmp_args)
    try:
        key = _key_value(key_entries, [gen.vals[a] for a in tmp_args])
        sel = _getitem(gen.vals[x], key)
        picked = _getitem(np.arange(gen.vals[x].size).reshape(gen.vals[x].shape), key)
    except OracleError:
        sel = picked = None
    if op == "set_subtensor" and picked is not None and len(np.unique(picked)) != picked.size:
        op = "inc_subtensor"
    names = [gen.name(k) for k in range(len(gen.g.steps))]
    try:
        sel_var = eval(src(Step("subtensor", tmp_args, {"key": key_entries}), names), gen.ns)  # noqa: S307
    except (TypeError, ValueError, IndexError) as e:
        gen.g.features["build_reject"][f"{op} selection: {type(e).__name__}: {str(e)[:80]}"] += 1
        return None
    xd = gen.vars[x].dtype
    p = {"key": None, "y_scalar": None}
    y = None
    if gen.r() < 0.25:
        p["y_scalar"] = gen.scalar_for(xd)
        if kind(xd) != "f" and isinstance(p["y_scalar"], float) or isinstance(p["y_scalar"], bool):
            p["y_scalar"] = 1
    else:
        tsel = sel_var.type.shape
        ssel = sel.shape if sel is not None else tuple(d if isinstance(d, int) else 1 for d in tsel)
        r = int(gen.rng.integers(0, len(ssel) + 1))
        shape, tshape = [], []
        for s, t in zip(ssel[len(ssel) - r:], tsel[len(tsel) - r:]):
            if t == 1 or gen.r() < 0.2:
                shape.append(1)
                tshape.append(1)
            else:
                shape.append(int(s))
                tshape.append(gen.sym_dims((s,))[0] if gen.r() < 0.5 else t)
        yd = xd if gen.r() < 0.7 else gen.dtype()
        if not (kind(yd) == "b" or kind(xd) == "f" or kind(yd) in "iu"):
            yd = xd
        if yd == "bool" and op == "inc_subtensor":
            yd = xd
        y = gen.new_input(shape, tshape, dtype=yd)
        if y is None:
            return None
    args = [x] + ([y] if y is not None else []) + operands
    p["key"] = _remap(entries, args)
    gen.feat["update:" + ("scalar" if y is None else "tensor")] += 1
    return gen.add(Step(op, args, p), allow_error=True, label=op + ("[adv]" if any(e[0] == "a" for e in entries)
                                                                      else ""))

