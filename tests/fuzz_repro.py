"""Standalone reproductions of fuzz failures, and a greedy minimizer.

``minimize`` keeps the failure's class while it (1) keeps one output and drops the
gradient, (2) replaces each intermediate node, latest first, by a fresh input holding that
node's oracle value and type (so the remaining graph is the smallest tail that still
fails), (3) makes every input contiguous.  ``script`` prints the graph as a Python script
that builds it with ``tcomp.tensor``, calls it and compares with the oracle's values.
"""
from __future__ import annotations

import inspect
import re
from collections import Counter

import numpy as np
from fuzz_graphs import Graph, Step, array_src, build_vars, evaluate, generate, layout_arg, names_for, src
from fuzz_ops import OracleError
from fuzz_run import run_batch


def _ancestors(g, roots):
    seen, stack = set(), list(roots)
    while stack:
        k = stack.pop()
        if k not in seen:
            seen.add(k)
            stack.extend(g.steps[k].args)
    return seen


def _roots(g):
    return list(g.outputs) + ([g.grad["cost"]] + list(g.grad["wrt"]) if g.grad else [])


def rebuild(steps, outputs, grad, seed, mode):
    """A Graph from steps (ids already final), with variables, values and features."""
    g = Graph(seed=seed, steps=steps, outputs=outputs, grad=grad, mode=mode)
    g.features = {"ops": Counter(), "build_reject": Counter(), "feat": Counter()}
    g.vars = build_vars(g)
    ts = [v.type.shape for v in g.vars]
    try:
        g.vals = evaluate(g, ts)
    except OracleError as e:
        g.features["error"] = str(e)
        g.vals = [None] * len(steps)
    mism = []
    for i, (v, val) in enumerate(zip(g.vars, g.vals)):
        if val is not None and (v.dtype != val.dtype.name or v.ndim != val.ndim or any(
                isinstance(d, int) and d != s for d, s in zip(v.type.shape, val.shape))):
            mism.append(f"step {i}: tcomp type {v.type}, NumPy {val.dtype.name}{list(val.shape)}")
    if mism:
        g.features["type_mismatch"] = mism
    return g


def subgraph(g, outputs, grad, replace=()):
    """The steps ``outputs``/``grad`` need, with the nodes in ``replace`` turned into inputs."""
    roots = list(outputs) + ([grad["cost"]] + list(grad["wrt"]) if grad else [])
    need, stack = set(), list(roots)
    while stack:
        k = stack.pop()
        if k in need:
            continue
        need.add(k)
        if k not in replace:
            stack.extend(g.steps[k].args)
    order = sorted(need)
    new = {old: n for n, old in enumerate(order)}
    steps = []
    for old in order:
        s = g.steps[old]
        if old in replace:
            var, val = g.vars[old], g.vals[old]
            s = Step("input", [], {"ctor": f"T.tensor('x{new[old]}', dtype='{var.dtype}', shape={var.type.shape!r})",
                                   "value": np.array(val), "layout": "c", "dtype": var.dtype})
        elif s.op == "input":
            s = Step("input", [], dict(s.p, ctor=re.sub(r"'x\d+'", f"'x{new[old]}'", s.p["ctor"], count=1)))
        else:
            s = Step(s.op, [new[a] for a in s.args], s.p)
        steps.append(s)
    grad2 = {"cost": new[grad["cost"]], "wrt": [new[w] for w in grad["wrt"]]} if grad else None
    return rebuild(steps, [new[o] for o in outputs], grad2, g.seed, g.mode)


def _kind(outcome, detail):
    if outcome != "mismatch":
        return outcome
    for k in ("static type", "dtype", "shape", "grad wrt", "elements differ"):
        if k in detail:
            return f"mismatch/{k}"
    return outcome


def minimize(g, backend="cpu", log=print):
    outcome, detail = run_batch([g], backend)[0]
    want = _kind(outcome, detail)
    if outcome in ("match", "expected_error", "unstable"):
        return g, outcome, detail

    def still(h):
        try:
            o, d = run_batch([h], backend)[0]
        except Exception:  # noqa: BLE001 - a reduction that breaks the builder is not a reduction
            return None
        return (o, d) if _kind(o, d) == want else None

    best, best_res = g, (outcome, detail)
    # (1) one output; the gradient only where the failure is in it
    cands = [(list(best.outputs[k:k + 1]), None) for k in range(len(best.outputs))]
    if best.grad:
        cands = [([best.grad["cost"]], best.grad)] + cands
    for outs, grad in cands:
        try:
            h = subgraph(best, outs, grad)
        except Exception:  # noqa: BLE001
            continue
        r = still(h)
        if r:
            best, best_res = h, r
            break
    # (2) cut the graph: intermediates become inputs holding their values
    changed = True
    while changed:
        changed = False
        roots = set(best.outputs) | ({best.grad["cost"]} if best.grad else set())
        for i in sorted(_ancestors(best, roots), reverse=True):
            s = best.steps[i]
            if s.op == "input" or i in roots or best.vals[i] is None:
                continue
            try:
                h = subgraph(best, best.outputs, best.grad, replace={i})
            except Exception:  # noqa: BLE001
                continue
            if best.grad and best.grad["wrt"] and not h.grad["wrt"]:
                continue
            r = still(h)
            if r:
                best, best_res, changed = h, r, True
                log(f"  cut step {i} ({s.op}): {len(best.steps)} steps left")
                break
    # (3) contiguous inputs
    for i in best.inputs():
        if best.steps[i].p["layout"] != "c":
            steps = list(best.steps)
            steps[i] = Step("input", [], dict(steps[i].p, layout="c"))
            h = rebuild(steps, best.outputs, best.grad, best.seed, best.mode)
            r = still(h)
            if r:
                best, best_res = h, r
    return best, best_res[0], best_res[1]


def script(g, backend="cpu"):
    names = names_for(g)
    need = sorted(_ancestors(g, _roots(g)))
    lines = ["import numpy as np", "import tcomp", "import tcomp.tensor as T", "", "nan, inf = np.nan, np.inf", ""]
    lines += [inspect.getsource(layout_arg), ""]
    for i in need:
        lines.append(f"{names[i]} = {src(g.steps[i], names)}")
    ins = [i for i in need if g.steps[i].op == "input"]
    outs = ", ".join(names[o] for o in g.outputs)
    if g.grad:
        lines.append(f"grads = T.grad({names[g.grad['cost']]}, [{', '.join(names[w] for w in g.grad['wrt'])}])")
    lines.append(f"f = tcomp.function([{', '.join(names[i] for i in ins)}], [{outs}]" +
                 (" + grads" if g.grad else "") + f", backend='{backend}', on_unused_input='ignore')")
    for i in ins:
        p = g.steps[i].p
        lines.append(f"a{i} = layout_arg({array_src(p['value'])}, '{p['layout']}')")
    lines.append(f"got = f({', '.join(f'a{i}' for i in ins)})")
    if "error" in g.features:
        lines.append(f"# expected: an exception like NumPy's ({g.features['error']})")
    else:
        for k, o in enumerate(g.outputs):
            lines.append(f"expected_{k} = {array_src(g.vals[o])}")
            lines.append(f"print('output {k}: got', repr(got[{k}]), 'expected', repr(expected_{k}))")
    return "\n".join(lines)


def script_for_seed(seed, minimize_it=False, backend="cpu", minimize=None):
    g = generate(seed)
    if minimize if minimize is not None else minimize_it:
        g, outcome, detail = minimize_graph(g, backend)
        head = f"# seed {seed}: {outcome}: {detail[:400]}".replace("\n", " ")
    else:
        outcome, detail = run_batch([g], backend)[0]
        head = f"# seed {seed}: {outcome}: {detail[:400]}".replace("\n", " ")
    return head + "\n" + script(g, backend)


minimize_graph = minimize

#: passes tried one at a time by ``triage`` (names of tcomp.passes' registry)
TRIAGE_PASSES = ("stabilize", "simplify", "constant_fold", "cse", "fuse_elementwise", "canonicalize")


def triage(g, backend="cpu"):
    """Which pass a failure needs: the first pass whose exclusion makes the graph match, else
    'no pass (fast_compile fails too): lowering/kernels/DSL', or 'several passes'."""
    first = run_batch([g], backend)[0]
    if first[0] in ("match", "expected_error", "unstable"):
        return first[0], first
    for name in TRIAGE_PASSES:
        try:
            if run_batch([g], backend, exclude=[name])[0][0] in ("match", "expected_error"):
                return f"pass {name}", first
        except Exception:  # noqa: BLE001
            continue
    if run_batch([g], backend, mode="fast_compile")[0][0] in ("match", "expected_error"):
        return "several passes", first
    return "no pass (fast_compile fails too): lowering/kernels/DSL", first
