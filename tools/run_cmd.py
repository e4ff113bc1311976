"""``tcomp run FILE.tir --inputs a.npy b.npy [-o out.npz]``: compile and run a text IR file.

The file is what ``tcomp dump --stage traced|optimized`` prints (or any hand-written graph
in the grammar of ``tcomp.ir.printer``), so a bug report is one file plus its inputs:
``tcomp run`` parses it (with the verifier), compiles it with the chosen backend and runs
it once.  Inputs are ``.npy`` files in the order of the graph's inputs (a ``.npz`` adds its
arrays in their stored order); results are printed, or saved as ``out0, out1, ...`` in an
``.npz``.
"""
from __future__ import annotations

import numpy as np

from tcomp.tools.cli import UsageError


def _load_inputs(paths) -> list:
    arrays = []
    for path in paths:
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--inputs: cannot read {path}: {exc}", "give .npy files written by np.save") from None
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                arrays += [data[k] for k in data.files]
        else:
            arrays.append(data)
    return arrays


def _check(graph, arrays) -> None:
    types = [graph.type(n) for n in graph.inputs]
    names = [graph.name(n) or f"%{n}" for n in graph.inputs]
    want = ", ".join(f"{n}: {t}" for n, t in zip(names, types))
    if len(arrays) != len(types):
        raise UsageError(f"the graph has {len(types)} input(s) ({want}) but {len(arrays)} array(s) were given",
                         "pass one .npy per input with --inputs, in order")
    for name, t, a in zip(names, types, arrays):
        if a.dtype.name != t.dtype or a.ndim != t.ndim or any(
                isinstance(d, int) and d != s for d, s in zip(t.shape, a.shape)):
            raise UsageError(f"input {name!r} has type {t} but its array is {a.dtype.name}{list(a.shape)}",
                             f"save it as {t.dtype} with a matching shape")


def run_file(path: str, arrays: list, backend=None) -> list:
    """Parse, compile and run the text IR in ``path``; returns the results."""
    from tcomp import config
    from tcomp.compile import compile_graph
    from tcomp.ir import parse_graph

    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        graph = parse_graph(text)
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}", "the file must be the text form tcomp dump prints") from None
    _check(graph, arrays)
    fn = compile_graph(graph, backend=backend or config.backend, name="run")
    return [np.asarray(r) for r in fn(list(arrays))]


def main(args) -> int:
    results = run_file(args.file, _load_inputs(args.inputs), getattr(args, "backend", None))
    out = getattr(args, "output", None)
    if out:
        np.savez(out, **{f"out{i}": r for i, r in enumerate(results)})
        print(f"wrote {len(results)} result(s) to {out}")
        return 0
    for i, r in enumerate(results):
        print(f"out{i}: {r.dtype.name}{list(r.shape)}")
        print(np.array2string(r, precision=6, threshold=200))
    return 0
