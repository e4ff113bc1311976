"""``tcomp dump``: print a bundled example's IR at a compilation stage."""
from __future__ import annotations

import sys


def _example(name, backend):
    if name == "mlp":
        from tcomp.examples.mlp import build_mse_mlp

        train, _, _ = build_mse_mlp(784, 512, 10, backend=backend)
        return train
    raise SystemExit(f"tcomp dump: unknown example {name!r} (available: mlp)")


def main(args) -> int:
    fn = _example(args.example, args.backend)
    try:
        text = fn.dump(args.stage)
    except ValueError as exc:
        print(f"tcomp dump: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0
