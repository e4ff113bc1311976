"""``tcomp aot MODULE.py:NAME -o libNAME.so`` and ``tcomp inspect libNAME.so``.

``aot`` finds NAME the way ``tcomp dump`` does (a compiled function, symbolic variables or a
builder function of no arguments; a module that fails to import prints its traceback) and
exports it with :func:`tcomp.aot.export`.  ``inspect`` of a library prints its manifest.
"""
from __future__ import annotations

import json
import os

from tcomp.tools.cli import UsageError


def main(args) -> int:
    import tcomp.aot as aot
    from tcomp.tools.dump import load_target, to_function

    obj, label = load_target(args.target)
    fn = to_function(obj, label)
    out = args.output or f"lib{label.split('.')[-1].rstrip('()')}.so"
    if not os.path.basename(out).startswith("lib"):
        raise UsageError(f"output {out!r}: a library file is named libNAME.so", "e.g. -o libmodel.so")
    try:
        paths = aot.export(fn, out, target=args.target_machine, state=args.state)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def inspect_library(path: str) -> int:
    from tcomp.aot import read_manifest

    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path}", "give a library written by tcomp aot / tcomp.aot.export")
    try:
        info = read_manifest(path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    fns = ", ".join(f["name"] for f in info["functions"])
    print(f"{os.path.basename(path)}: tcomp {info['tcomp_version']} library {info['library']!r}, "
          f"target {info['target']['triple']} ({info['target']['cpu']}), state {info['state']}, functions: {fns}")
    print(json.dumps(info, indent=2, sort_keys=True))
    return 0
