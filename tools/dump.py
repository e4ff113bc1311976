"""``tcomp dump [MODULE.py:NAME]``: a user's model at every stage, pass and kernel.

NAME is a compiled function (``tcomp.function``), a symbolic variable (or a list or
tuple of them: compiled with their free root variables as inputs), a ``tcomp.jit``
function that has been called once, or a builder: a function of no arguments returning
any of these.  Without a target, a bundled example (``--example mlp``) is dumped.

What goes where: the stage text (``--stage``, ``--format``) goes to stdout or ``-o FILE``
and is exactly what ``tcomp.ir.parse_graph`` / ``tcomp run FILE.tir`` read (unless a large
constant was elided: the first line then says so).  The reports (``--print-after``,
``--print-after-all``, ``--time-passes``, ``--stats``, ``--vectorize-remarks``) print on
stdout as ``#`` comment lines, before the stage; asking for a report without ``--stage``
prints only the report.  Passes are replayed on the traced graph in the order the
function's compile ran them (its ``pass_report``), so what is printed is what happened.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
import sys
import time
import traceback

from tcomp.tools.cli import UsageError

GRAPH_STAGES = ("traced", "optimized")


# -- finding the user's function ----------------------------------------------------------------

def _import_module(path_or_name: str):
    """Import a ``.py`` file (its folder goes on sys.path, so sibling imports work) or a
    dotted module name; an exception inside the user's module prints its traceback."""
    is_file = path_or_name.endswith(".py") or os.sep in path_or_name or os.path.isfile(path_or_name)
    try:
        if is_file:
            path = os.path.abspath(path_or_name)
            if not os.path.isfile(path):
                raise UsageError(f"no such file: {path_or_name}", "give MODULE.py:NAME with an existing file")
            folder = os.path.dirname(path)
            stem = os.path.splitext(os.path.basename(path))[0]
            name = f"tcomp_user_{''.join(c if c.isalnum() else '_' for c in stem)}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.path.insert(0, folder)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            finally:
                if sys.path and sys.path[0] == folder:
                    sys.path.pop(0)
            return module
        return importlib.import_module(path_or_name)
    except UsageError:
        raise
    except (Exception, SystemExit) as exc:  # the user's module failed: show where, then one line
        traceback.print_exc(file=sys.stderr)
        raise UsageError(f"cannot import {path_or_name}: {type(exc).__name__}: {exc}",
                         "the traceback above shows where the module failed") from None


def _candidates(module) -> list[str]:
    from tcomp import Function
    from tcomp.jit import JittedFunction
    from tcomp.tensor.variable import Variable

    out = []
    for k, v in vars(module).items():
        if k.startswith("_") or inspect.ismodule(v) or isinstance(v, type):
            continue
        if isinstance(v, (Function, Variable, JittedFunction)) or (
                inspect.isfunction(v) and v.__module__ == module.__name__):
            out.append(k)
    return out


def load_target(spec: str):
    """(object, label) for ``MODULE.py:NAME`` or ``package.module:NAME``."""
    from tcomp import Function

    path, sep, name = spec.rpartition(":")
    if not sep or not path:
        path, name = spec, ""
    module = _import_module(path)
    cands = _candidates(module)
    if not name:
        funcs = [k for k in cands if isinstance(getattr(module, k), Function)]
        if len(funcs) == 1:
            name = funcs[0]
        else:
            raise UsageError(f"{path}: say which object to dump, as {path}:NAME",
                             f"candidates: {', '.join(cands) or 'none'}")
    obj = module
    for part in name.split("."):
        if not hasattr(obj, part):
            from tcomp.printing import unknown_choice

            raise UsageError(f"{path}: {unknown_choice('name', part, cands or ['(none)'])}",
                             "NAME is a tcomp.function, a variable, or a builder function of no arguments")
        obj = getattr(obj, part)
    return obj, name


def to_function(obj, label: str, backend=None):
    """A compiled Function for whatever ``load_target`` found."""
    import tcomp
    from tcomp import Function
    from tcomp.jit import JittedFunction
    from tcomp.shared import SharedVariable
    from tcomp.tensor.variable import Variable
    from tcomp.trace import _postorder

    for _ in range(3):  # a builder may return a builder's result, at most a few levels
        if isinstance(obj, Function):
            return obj
        if isinstance(obj, JittedFunction):
            fns = [f for f in obj.cache.values() if isinstance(f, Function)]
            if len(fns) != 1:
                raise UsageError(f"{label} is a tcomp.jit function compiled for {len(fns)} input signatures",
                                 "call it once with example arrays in the module, or dump a tcomp.function")
            return fns[0]
        if isinstance(obj, Variable) or (isinstance(obj, (list, tuple)) and obj
                                         and all(isinstance(v, Variable) for v in obj)):
            outs = [obj] if isinstance(obj, Variable) else list(obj)
            roots = [v for v in _postorder(outs, lambda v: v) if v.op == "input" and not isinstance(v, SharedVariable)]
            return tcomp.function(roots, outs[0] if isinstance(obj, Variable) else outs, backend=backend,
                                  name=label.replace(".", "_"))
        if callable(obj):
            try:
                params = [p for p in inspect.signature(obj).parameters.values()
                          if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            except (TypeError, ValueError):
                params = []
            if params:
                raise UsageError(f"{label} takes arguments ({', '.join(p.name for p in params)})",
                                 "a builder function takes no arguments and returns a tcomp.function or variables")
            obj = obj()
            label = f"{label}()"
            continue
        break
    raise UsageError(f"{label} is a {type(obj).__name__}",
                     "expected a tcomp.function, a symbolic variable (or a list of them), or a builder function")


def _example(name, backend):
    if name == "mlp":
        from tcomp.examples.mlp import build_mse_mlp

        train, _, _ = build_mse_mlp(784, 512, 10, backend=backend)
        return train
    from tcomp.printing import unknown_choice

    raise UsageError(unknown_choice("example", name, ["mlp"]), "or dump your own model: tcomp dump MODULE.py:NAME")


# -- passes --------------------------------------------------------------------------------------

def replay_passes(fn):
    """[(pass name, graph after it, seconds)] for the function's own pipeline, from its traced graph."""
    from tcomp.passes.manager import PASSES

    g = fn.traced.copy()
    out = []
    for rec in fn.pass_report.records:
        t0 = time.perf_counter()
        g = PASSES[rec.name].fn(g)
        out.append((rec.name, g, time.perf_counter() - t0))
        g = g.copy()  # the next pass may mutate what it is given; keep this one for printing
    return out


def pass_reports(fn, print_after=(), print_after_all=False, full=False, full_constants=False,
                 locations=False) -> list[str]:
    """LLVM's -print-after / -print-after-all for one function: whole graphs, or unified
    diffs of the changed lines (``print_after_all`` without ``full``)."""
    from tcomp.printing import graph_text, unknown_choice

    ran = [r.name for r in fn.pass_report.records]
    from tcomp.passes.manager import PASSES

    for name in print_after:
        if name not in PASSES:
            raise UsageError(f"--print-after: {unknown_choice('pass', name, sorted(PASSES))}")
        if name not in ran:
            raise UsageError(f"--print-after: pass {name!r} did not run for this function",
                             f"its pipeline: {', '.join(ran) or '(none)'}")

    def text(g):
        return graph_text(g, full_constants=full_constants, locations=locations)

    lines = []
    before = text(fn.traced)
    for name, g, seconds in replay_passes(fn):
        after = text(g)
        head = f"# *** after {name} ({len(g)} nodes, {1e3 * seconds:.2f} ms) ***"
        if name in print_after or (print_after_all and full):
            lines += [head, after]
        elif print_after_all:
            diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), f"before {name}",
                                             f"after {name}", n=0, lineterm=""))
            lines += [head] + (["# " + d for d in diff] or ["# (no change)"])
        before = after
    return lines


def time_report(fn) -> list[str]:
    c = fn.compile_seconds
    lines = ["# pass timing (this function's compile):"]
    lines += ["# " + line for line in str(fn.pass_report).splitlines()]
    lines.append(f"# compile: graph build {1e3 * c['trace']:.2f} ms, passes {1e3 * c['passes']:.2f} ms, "
                 f"backend {fn.backend} {1e3 * c['backend']:.2f} ms")
    hit = getattr(fn, "graph_cache_hit", None)
    if hit is not None:  # (tcomp/runtime/graph_cache.py: a hit runs no passes; the report above was made after)
        lines.append(f"# graph cache: {'hit' if hit else 'miss'}, key and lookup "
                     f"{1e3 * c.get('graph_cache', 0.0):.2f} ms")
    return lines


# -- the command ---------------------------------------------------------------------------------

def save_shared(fn, folder: str, tir=None) -> list[str]:
    """Write every shared variable's current value as FOLDER/NAME.npy (the graph inputs after
    the explicit ones) and say how to run the dump with them."""
    import numpy as np

    os.makedirs(folder, exist_ok=True)
    paths, used = [], set()
    for i, s in enumerate(fn.shared_inputs):
        stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in (s.name or f"shared{i}"))
        while stem in used:
            stem += "_"
        used.add(stem)
        path = os.path.join(folder, stem + ".npy")
        np.save(path, s.get_value(borrow=True))
        paths.append(path)
    explicit = " ".join(f"{v.name or f'input{i}'}.npy" for i, v in enumerate(fn.inputs))
    return [f"# wrote {len(paths)} shared variable(s) to {folder}; run the dump with:",
            f"#   tcomp run {tir or 'FILE.tir'} --inputs {' '.join(filter(None, [explicit] + paths))}"]



def stage_text(fn, stage: str, fmt: str, full_constants=False, locations=False) -> str:
    from tcomp.ir import to_json
    from tcomp.printing import dot_text

    if fmt == "text":
        return fn.dump(stage, full_constants=full_constants, locations=locations)
    if stage == "kernels" and fmt == "json":  # the kernel program has its own JSON form
        from tcomp.passes import lower_kernels

        return lower_kernels(fn.optimized, fn.donations).to_json(indent=1) + "\n"
    if stage not in GRAPH_STAGES:
        raise UsageError(f"--format {fmt} prints a graph stage, not {stage!r}",
                         f"use --stage {' or --stage '.join(GRAPH_STAGES)}"
                         + (", or --format text" if fmt == "dot" else ", kernels, or --format text"))
    g = fn.traced if stage == "traced" else fn.optimized
    return to_json(g, indent=1) + "\n" if fmt == "json" else dot_text(g)


def main(args) -> int:
    """Run ``tcomp dump`` for parsed ``args`` (every option has a default, so a bare
    Namespace(example=..., backend=..., stage=...) works too)."""
    opt = lambda k, d=None: getattr(args, k, d)  # noqa: E731
    backend = opt("backend")
    target = opt("target")
    if target:
        obj, label = load_target(target)
        fn = to_function(obj, label, backend)
    else:
        fn = _example(opt("example", "mlp") or "mlp", backend)
    stage = opt("stage")
    fmt = opt("format", "text") or "text"
    full_constants, locations = bool(opt("full_constants")), bool(opt("locations"))
    if stage is not None and stage not in fn.dump_stages():
        raise UsageError(f"--stage: stage {stage!r} is not available on backend {fn.backend!r}",
                         f"this function has: {', '.join(fn.dump_stages())}")
    reports: list[str] = []
    if opt("save_shared"):
        reports += save_shared(fn, opt("save_shared"), opt("output"))
    if opt("print_after") or opt("print_after_all"):
        reports += pass_reports(fn, opt("print_after") or (), bool(opt("print_after_all")), bool(opt("full")),
                                full_constants, locations)
    if opt("time_passes"):
        reports += time_report(fn)
    if opt("stats"):
        from tcomp.tools.stats import format_stats, function_stats

        reports += ["# " + line for line in format_stats(function_stats(fn, dict(opt("shape") or ()))).splitlines()]
    if opt("vectorize_remarks"):
        from tcomp.tools.remarks import format_remarks, vectorize_remarks

        if fn.backend != "cpu":
            raise UsageError(f"--vectorize-remarks needs the cpu backend (this function uses {fn.backend!r})",
                             "pass --backend cpu")
        reports += ["# " + line for line in format_remarks(vectorize_remarks(fn), fn.optimized).splitlines()]
    if reports:
        print("\n".join(reports))
    if reports and stage is None and not opt("output"):
        return 0
    text = stage_text(fn, stage or "optimized", fmt, full_constants, locations)
    out = opt("output")
    if out:
        if fmt == "dot" and os.path.splitext(out)[1].lower() in (".svg", ".png", ".pdf"):
            from tcomp.printing import pydotprint

            pydotprint(fn, out, stage=stage or "optimized", file=sys.stdout)
        else:
            with open(out, "w") as f:
                f.write(text if text.endswith("\n") else text + "\n")
            print(f"# wrote {out}")
        return 0
    print(text, end="" if text.endswith("\n") else "\n")
    return 0
