"""Run fuzz graphs through ``tcomp.function`` and classify each against the NumPy oracle.

Outcomes: ``match``; ``mismatch`` (a value, dtype or static shape differs beyond the
tolerance the perturbed oracle runs allow; or a gradient differs from finite differences);
``missed_error`` (NumPy/tcomp's documented rules reject the graph, tcomp returned values);
``expected_error`` (both reject it; tcomp with a TypeError/ValueError/IndexError);
``unexpected_exception`` (tcomp raised where NumPy succeeds, or raised another class);
``crash`` (the process died: found by the subprocess driver in ``fuzz_main.py``);
``unstable`` (a perturbed oracle run raised where the exact one did not: nothing to compare).

Several graphs are compiled into one function (their inputs and outputs side by side): the
compile dominates the cost, and a failing batch is re-run one graph at a time so each
outcome belongs to one seed.
"""
from __future__ import annotations

import traceback

import numpy as np
from fuzz_graphs import FLOATS, OracleError, evaluate, layout_arg, ties_of

import tcomp

#: dtype -> (rtol, atol) on top of the perturbation-derived part of the tolerance
BASE_TOL = {"float32": (4e-6, 1e-30), "float64": (1e-14, 1e-300)}
N_NOISY = 3
EXPECTED_ERRORS = (TypeError, ValueError, IndexError)
#: gradient elements compared / skipped (a kink or non-finite within the step), for the summary
FD_STATS = {"compared": 0, "skipped": 0}


def oracle_runs(g):
    """(exact values, [noisy values...], tied comparisons) of every step, or raises OracleError;
    the noisy list is None when a perturbed run raised (unstable)."""
    ts = [v.type.shape for v in g.vars]
    exact = evaluate(g, ts)
    noisy, ties = [], {}
    for k in range(N_NOISY):
        try:
            # (run 1 evaluates step by step: where that overflows and the stabilized math does
            # not, tcomp may give either, so such elements are not judged)
            # runs 0 and 1 push every float result up / down by its error bound, run 2 at random
            # and takes the other answer of every comparison tied within runs 0 and 1's spread
            if k == 2:
                ties = ties_of(g, exact, noisy)
            noisy.append(evaluate(g, ts, noise_rng=np.random.default_rng([g.seed, k, 99]), snap=k == 0,
                                  stable=k != 1, direction=(1, -1, 0)[k],
                                  flips={i: (m, ~exact[i]) for i, m in ties.items()}))
        except OracleError:
            return exact, None, ties
    return exact, noisy, ties


def compare(got, want, noisy, what):
    """A problem description, or None when ``got`` matches ``want`` within the tolerance."""
    got = np.asarray(got)
    if got.dtype != want.dtype:
        return f"{what}: dtype {got.dtype.name}, expected {want.dtype.name}"
    if got.shape != want.shape:
        return f"{what}: shape {got.shape}, expected {want.shape}"
    if not want.size:
        return None
    if want.dtype.name not in FLOATS:
        stable = np.ones(want.shape, bool)
        for n in noisy:
            stable &= n == want
        bad = stable & (got != want)
    else:
        w, gv = want.astype("float64"), got.astype("float64")
        stable = np.ones(want.shape, bool)
        dev = np.zeros(want.shape)
        with np.errstate(all="ignore"):
            for n in noisy:
                n = n.astype("float64")
                same_class = (np.isnan(n) == np.isnan(w)) & (np.isinf(n) == np.isinf(w)) & \
                    ((~np.isinf(w)) | (n == w))
                stable &= same_class
                dev = np.maximum(dev, np.where(np.isfinite(w) & np.isfinite(n), np.abs(n - w), 0))
            rtol, atol = BASE_TOL[want.dtype.name]
            tol = atol + rtol * np.abs(w) + 4 * dev
            finite = np.isfinite(w)
            ok = np.where(finite, np.abs(gv - w) <= tol,
                          np.where(np.isnan(w), np.isnan(gv), gv == w))
        bad = stable & ~ok
    if not bad.any():
        return None
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    return (f"{what}: {int(bad.sum())}/{want.size} elements differ; first at {idx}: got {got[idx]!r}, "
            f"expected {want[idx]!r}")


def finite_difference_check(g, exact, grads, ties=None):
    """Problems of tcomp's T.grad values against central differences of the float64 oracle."""
    ts = [v.type.shape for v in g.vars]
    if ties:
        # a float comparison at a rounding tie (oracle_runs): which branch the forward took is
        # not judged, so neither is the slope (finite differences cross the tie; seed 1007930)
        FD_STATS["skipped"] += 1
        return []
    cost_id = g.grad["cost"]
    problems = []
    rng = np.random.default_rng([g.seed, 5])

    def cost(override):
        try:
            return float(evaluate(g, ts, override=override)[cost_id])
        except OracleError:
            return np.nan

    for wid, gv in zip(g.grad["wrt"], grads):
        x0 = exact[wid]
        gv = np.asarray(gv)
        if gv.shape != x0.shape or gv.dtype != x0.dtype:
            problems.append(f"grad wrt x{wid}: {gv.dtype}{list(gv.shape)}, expected {x0.dtype}{list(x0.shape)}")
            continue
        flat = list(range(x0.size))
        if len(flat) > 24:
            flat = sorted(int(i) for i in rng.choice(flat, 24, replace=False))
        for e in flat:
            idx = np.unravel_index(e, x0.shape) if x0.ndim else ()
            fds, roundoff = [], 0.0
            for h in (1e-6, 1e-5):
                step = h * max(1.0, abs(float(x0[idx])))
                xp, xm = x0.copy(), x0.copy()
                xp[idx] += step
                xm[idx] -= step
                cp, cm = cost({wid: xp}), cost({wid: xm})
                fds.append((cp - cm) / (xp[idx] - xm[idx]))
                # the cost's own rounding, amplified by 1/h (a large cost hides a small slope)
                roundoff = max(roundoff, 64 * 2.2e-16 * max(abs(cp), abs(cm)) / (xp[idx] - xm[idx]))
            fd, fd2 = fds
            if not (np.isfinite(fd) and np.isfinite(fd2)) or abs(fd - fd2) > 1e-5 * (1 + abs(fd)):
                FD_STATS["skipped"] += 1  # a kink, a jump or an overflow within the step
                continue
            FD_STATS["compared"] += 1
            got = float(gv[idx])
            if np.isnan(got) and any(v is not None and v.dtype.kind == "f" and not np.isfinite(v).all() for v in exact):
                FD_STATS["skipped"] += 1  # 0 * inf in the chain rule through an infinite forward value (IEEE)
                continue
            if not abs(got - fd) <= 1e-5 * (1 + abs(fd)) + 10 * abs(fd - fd2) + roundoff:
                problems.append(f"grad wrt x{wid}{list(idx)}: T.grad {got!r}, finite differences {fd!r}")
                break
    return problems


def _flatten_batch(graphs):
    inputs, outputs, spans = [], [], []
    for g in graphs:
        ins = [g.vars[i] for i in g.inputs()]
        outs = [g.vars[o] for o in g.outputs]
        if g.grad:
            import tcomp.tensor as T

            outs += T.grad(g.vars[g.grad["cost"]], [g.vars[i] for i in g.grad["wrt"]])
        spans.append((len(outputs), len(outs)))
        inputs += ins
        outputs += outs
    return inputs, outputs, spans


def _args(graphs):
    return [layout_arg(g.steps[i].p["value"], g.steps[i].p["layout"]) for g in graphs for i in g.inputs()]


def run_batch(graphs, backend="cpu", **function_kwargs):
    """[(outcome, detail)] per graph, compiling them as one function (singly after a failure);
    ``function_kwargs`` go to ``tcomp.function`` (``exclude=``, ``mode=``: triage)."""
    try:
        inputs, outputs, spans = _flatten_batch(graphs)
        f = tcomp.function(inputs, outputs, backend=backend, on_unused_input="ignore", **function_kwargs)
        results = f(*_args(graphs))
    except Exception:  # noqa: BLE001 - classified per graph below
        if len(graphs) > 1:
            return [r for g in graphs for r in run_batch([g], backend, **function_kwargs)]
        return [_classify_exception(graphs[0], traceback.format_exc())]
    return [_check_safely(g, results[a:a + n]) for g, (a, n) in zip(graphs, spans)]


def _check_safely(g, results):
    try:
        return _check(g, results)
    except Exception:  # noqa: BLE001 - a bug of the fuzzer itself, reported apart from tcomp's outcomes
        return "harness_error", traceback.format_exc()[-1500:]


#: exceptions that mean the working tree was mid-edit (another change landing), not a tcomp bug
ENV_ERRORS = ("ModuleNotFoundError", "ImportError", "SyntaxError", "IndentationError")


#: TypeError texts of a call that does not fit its definition: a change half landed in the tree
#: (run 1015000: ``compile_graph() got an unexpected keyword argument 'cuda_arch'`` for 4 minutes)
ENV_TYPE_ERRORS = ("got an unexpected keyword argument", "required positional argument",
                   "positional arguments but")


def _classify_exception(g, tb):
    last = tb.strip().splitlines()[-1]
    if last.split(":")[0] in ENV_ERRORS or last.startswith("TypeError") and any(t in last for t in ENV_TYPE_ERRORS) \
            or last.startswith("AttributeError: module 'tcomp") and "has no attribute" in last:
        # (the last: a module of the tree rewritten under the run, run 1030000: parallel.py)
        return "env_error", last[:300]
    if "error" in g.features:
        name = last.split(":")[0].split(".")[-1]
        if name in {e.__name__ for e in EXPECTED_ERRORS}:
            return "expected_error", last[:300]
        return "unexpected_exception", f"(NumPy: {g.features['error']}) {tb[-1500:]}"
    return "unexpected_exception", tb[-2000:]


def _check(g, results):
    if "error" in g.features:
        return "missed_error", f"NumPy rejects it ({g.features['error']}); tcomp returned values"
    if g.features.get("type_mismatch"):
        return "mismatch", "static type: " + "; ".join(g.features["type_mismatch"][:3])
    exact, noisy, ties = oracle_runs(g)
    if noisy is None:
        return "unstable", "a perturbed oracle run raised"
    problems = []
    for k, o in enumerate(g.outputs):
        p = compare(results[k], exact[o], [n[o] for n in noisy], f"output {k} (step {o})")
        if p:
            problems.append(p)
    if g.grad and not problems:
        problems += finite_difference_check(g, exact, results[len(g.outputs):], ties)
    if problems:
        return "mismatch", "; ".join(problems)[:2000]
    return "match", ""
