"""The ``tcomp`` command: ``tcomp demo``, ``tcomp bench``, ``tcomp dump``."""
from __future__ import annotations

import argparse
import sys


def _demo(args) -> int:
    from tcomp.examples import demo

    return demo.main(args)


def _bench(args) -> int:
    from tcomp.tools import bench

    return bench.main(args.rest)


def _dump(args) -> int:
    from tcomp.tools import dump

    return dump.main(args)


def _inspect(args) -> int:
    from tcomp.tools import inspect_cmd

    return inspect_cmd.main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tcomp", description="tcomp: a Theano-style tensor compiler on LLVM")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="build, print and run a small model (trains an MLP on digits when available)")
    d.add_argument("--backend", default=None, help="reference or cpu (default: tcomp.config.backend)")
    d.add_argument("--epochs", type=int, default=None, help="training epochs")
    d.add_argument("--quick", action="store_true", help="a short run (used by the tests)")
    d.set_defaults(func=_demo)
    b = sub.add_parser("bench", help="benchmarks against NumPy measured in the same run")
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=_bench)
    u = sub.add_parser("dump", help="print a model's IR at a stage")
    u.add_argument("--example", default="mlp", help="which bundled example graph to dump")
    u.add_argument("--stage", default="optimized", help="traced, optimized, llvm or asm")
    u.add_argument("--backend", default=None)
    u.set_defaults(func=_dump)
    i = sub.add_parser("inspect", help="passes, kernels, bytes and compile time of an MLP training step")
    i.add_argument("--layers", default="784,512,512,10", help="layer sizes")
    i.add_argument("--batch", type=int, default=128)
    i.add_argument("--backend", default="cpu")
    i.add_argument("--scale", type=int, default=10, help="the larger graph has this many times the hidden layers")
    i.set_defaults(func=_inspect)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # bench parses its own options (argparse.REMAINDER drops --flags)
        from tcomp.tools import bench

        return bench.main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
