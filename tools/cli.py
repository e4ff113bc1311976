"""The ``tcomp`` command: ``demo``, ``bench``, ``inspect``, ``dump``, ``run``, ``aot``, ``cache``.

Every option says its valid values in ``--help``; a bad value is one line naming the
option, what was given and what would do (with a "did you mean"), never a traceback.
Values are checked by argparse types here, before any subcommand starts working.
"""
from __future__ import annotations

import argparse
import re
import sys


class UsageError(Exception):
    """A user mistake: printed as ``tcomp CMD: error: MESSAGE (HINT)``, exit status 2."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``tcomp dump: error: ... (see 'tcomp dump --help')``."""

    def error(self, message):
        m = re.match(r"argument (\w+): invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:  # an unknown subcommand: name the valid ones and the closest
            from tcomp.printing import unknown_choice

            choices = [c.strip().strip("'") for c in m.group(3).split(",")]
            message = unknown_choice("command", m.group(2), choices)
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# -- value types (argparse type=): each raises ArgumentTypeError with the accepted form ---------

def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = None
    if v is None or v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (1, 2, ...), got {text!r}")
    return v


def nonnegative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = None
    if v is None or v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 (0: the default), got {text!r}")
    return v


def int_list(what: str, minimum: int = 1):
    def parse(text: str) -> tuple:
        parts = text.split(",")
        try:
            vals = tuple(int(p) for p in parts)
        except ValueError:
            vals = None
        if vals is None or len(vals) < minimum or any(v < 1 for v in vals):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return vals
    parse.__name__ = what
    return parse


def choice(what: str, choices):
    """A type that accepts one of ``choices`` (a callable returning them, so the list is
    read when parsing: e.g. Function.STAGES as it is then), with a did-you-mean."""
    def parse(text: str) -> str:
        valid = tuple(choices() if callable(choices) else choices)
        if text not in valid:
            from tcomp.printing import unknown_choice

            raise argparse.ArgumentTypeError(unknown_choice(what, text, valid))
        return text
    parse.__name__ = what
    return parse


def _stages():
    from tcomp.function import Function

    return Function.STAGES


def _passes():
    from tcomp.passes.manager import PASSES

    return sorted(PASSES)


def _backends():
    from tcomp.compile import BACKENDS

    return BACKENDS


def _aot_targets():
    from tcomp.aot import TARGETS

    return ("host",) + tuple(TARGETS)


def _version() -> str:
    import tcomp

    return f"tcomp {tcomp.__version__}"


# -- subcommands ---------------------------------------------------------------------------------

def _demo(args) -> int:
    from tcomp.examples import demo

    return demo.main(args)


def _bench(args) -> int:
    from tcomp.tools import bench

    return bench.main(args.argv)


def _dump(args) -> int:
    from tcomp.tools import dump

    return dump.main(args)


def _run(args) -> int:
    from tcomp.tools import run_cmd

    return run_cmd.main(args)


def _inspect(args) -> int:
    from tcomp.tools import inspect_cmd

    if args.library is not None:  # a library written by tcomp aot: its manifest
        from tcomp.tools import aot_cmd

        return aot_cmd.inspect_library(args.library)

    args.layers = ",".join(map(str, args.layers))
    return inspect_cmd.main(args)


def _aot(args) -> int:
    from tcomp.tools import aot_cmd

    return aot_cmd.main(args)


def _cache(args) -> int:
    from tcomp.tools import cache_cmd

    return cache_cmd.main(args)


def build_parser() -> argparse.ArgumentParser:
    backends = ", ".join(_backends())
    p = _Parser(prog="tcomp", description="tcomp: a Theano-style tensor compiler on LLVM",
                epilog="'tcomp COMMAND --help' shows a command's options")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    d = sub.add_parser("demo", help="build, print and run a small model (trains an MLP on digits when available)")
    d.add_argument("--backend", default=None, type=choice("backend", _backends),
                   help=f"one of: {backends} (default: tcomp.config.backend)")
    d.add_argument("--epochs", type=positive_int, default=None, help="training epochs (a positive integer)")
    d.add_argument("--quick", action="store_true", help="a short run (used by the tests)")
    d.set_defaults(func=_demo)

    b = sub.add_parser("bench", help="benchmarks against NumPy measured in the same run")
    b.add_argument("--quick", action="store_true", help="smaller sizes and 3 repeats (a smoke run)")
    b.add_argument("--repeat", type=nonnegative_int, default=0,
                   help="calls per measurement, best of N (an integer >= 0; 0: 10, or 3 with --quick)")
    b.add_argument("--threads", type=int_list("comma-separated positive thread counts like 1,2"), default=None,
                   help="tcomp.config.num_threads values to run every case with, e.g. 1,2 (positive integers)")
    b.set_defaults(func=_bench)

    i = sub.add_parser("inspect", help="passes, kernels, bytes and compile time of an MLP training step "
                                       "(or the manifest of a library from tcomp aot)")
    i.add_argument("library", nargs="?", default=None, metavar="LIBNAME.so",
                   help="a library written by tcomp aot / tcomp.aot.export: print its manifest")
    i.add_argument("--layers", type=int_list("comma-separated positive layer sizes like 784,512,10 (at least 2)", 2),
                   default=(784, 512, 512, 10), help="layer sizes, comma-separated positive integers "
                                                     "(default 784,512,512,10)")
    i.add_argument("--batch", type=positive_int, default=128, help="batch size (a positive integer)")
    i.add_argument("--backend", default="cpu", type=choice("backend", _backends), help=f"one of: {backends}")
    i.add_argument("--scale", type=positive_int, default=10,
                   help="the larger graph has this many times the hidden layers (a positive integer)")
    i.set_defaults(func=_inspect)

    u = sub.add_parser("dump", help="a model's IR at any stage, after any pass, its kernels and costs",
                       description="Print a compiled function's IR.  TARGET is MODULE.py:NAME (or package.module:NAME):"
                                   " NAME a tcomp.function, a symbolic variable, or a builder function of no arguments."
                                   " Without TARGET a bundled example is dumped.")
    u.add_argument("target", nargs="?", default=None, metavar="MODULE.py:NAME", help="what to dump")
    u.add_argument("--example", default="mlp", type=choice("example", ("mlp",)),
                   help="bundled example used without TARGET: mlp")
    u.add_argument("--stage", default=None, type=choice("dump stage", _stages),
                   help=f"one of: {', '.join(_stages())} (default optimized; which exist depends on the backend)")
    u.add_argument("--backend", default=None, type=choice("backend", _backends),
                   help=f"backend to compile variables and builders with: {backends}")
    u.add_argument("--format", default="text", type=choice("format", ("text", "json", "dot")),
                   help="text (parses back), json (tcomp.ir.to_json) or dot (Graphviz); json and dot for graph stages")
    u.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="write the stage to FILE (with --format dot and FILE.svg/.png/.pdf: rendered by Graphviz)")
    u.add_argument("--print-after", action="append", default=[], type=choice("pass", _passes), metavar="PASS",
                   help=f"print the whole graph after each run of PASS (repeatable): {', '.join(_passes())}")
    u.add_argument("--print-after-all", action="store_true",
                   help="after every pass, print the changed lines as a unified diff (--full: whole graphs)")
    u.add_argument("--full", action="store_true", help="with --print-after-all: whole graphs, not diffs")
    u.add_argument("--time-passes", action="store_true", help="per-pass time and node counts, and compile time")
    u.add_argument("--stats", action="store_true",
                   help="nodes per op, kernels, FLOPs and bytes per call, the memory plan's peak")
    u.add_argument("--shape", action="append", default=[], metavar="INPUT=DIMS", type=_shape_type,
                   help="with --stats: an input's shape for the estimates, e.g. x=128x784 (repeatable)")
    u.add_argument("--vectorize-remarks", action="store_true",
                   help="LLVM's vectorizer remarks (vectorized / missed and why) per kernel (cpu backend)")
    u.add_argument("--full-constants", action="store_true",
                   help="print every constant in full (else constants over 100 elements are elided: no parse back)")
    u.add_argument("--locations", action="store_true", help="file:line of the Python that made each node")
    u.add_argument("--save-shared", default=None, metavar="DIR",
                   help="also write each shared variable's value to DIR/NAME.npy (inputs for tcomp run)")
    u.set_defaults(func=_dump)

    r = sub.add_parser("run", help="compile and run a text IR file (what tcomp dump prints) on .npy inputs")
    r.add_argument("file", metavar="FILE.tir", help="the graph's text form (tcomp dump ... > FILE.tir)")
    r.add_argument("--inputs", nargs="*", default=[], metavar="X.npy",
                   help="one .npy file per graph input, in order (a .npz: its arrays in order)")
    r.add_argument("-o", "--output", default=None, metavar="OUT.npz",
                   help="save the results as out0, out1, ... in OUT.npz (default: print them)")
    r.add_argument("--backend", default=None, type=choice("backend", _backends), help=f"one of: {backends}")
    r.set_defaults(func=_run)

    a = sub.add_parser("aot", help="export a compiled function as a shared library and C header (libNAME.so/.h)",
                       description="Export MODULE.py:NAME (or package.module:NAME): NAME a tcomp.function, symbolic "
                                   "variables, or a builder function of no arguments returning one.  Writes "
                                   "libNAME.so and libNAME.h; the library needs only libc, libm and libpthread.")
    a.add_argument("target", metavar="MODULE.py:NAME", help="what to export")
    a.add_argument("-o", "--output", default=None, metavar="libNAME.so", help="the library to write "
                   "(default libNAME.so in the current folder; the header goes beside it)")
    a.add_argument("--target", dest="target_machine", metavar="TARGET", default=None,
                   type=choice("target", _aot_targets),
                   help="host (default), x86-64-v3, x86-64, ... or aarch64-linux-gnu (object, C source and header)")
    a.add_argument("--state", default="embedded", type=choice("state", ("embedded", "external")),
                   help="embedded: shared variables copied in read-only (default); external: passed as state buffers")
    a.set_defaults(func=_aot)

    c = sub.add_parser("cache", help="the persistent compile cache: info (directory, entries, bytes, bound) or clear")
    c.add_argument("action", type=choice("cache action", ("info", "clear")), metavar="ACTION",
                   help="info: directory, entries, bytes and size bound; clear: delete every entry")
    c.add_argument("--json", action="store_true", help="with info: one JSON object")
    c.set_defaults(func=_cache)
    return p


def _shape_type(text: str):
    from tcomp.tools.stats import parse_shape

    return parse_shape(text)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.argv = argv[1:]
        return args.func(args) or 0
    except SystemExit as exc:  # --help, --version, argparse errors (already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except UsageError as exc:
        prog = f"tcomp {args.command}" if "args" in locals() else "tcomp"
        hint = f" ({exc.hint})" if exc.hint else ""
        print(f"{prog}: error: {exc}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
