"""Compilation modes, as in Theano: which passes run, which backend runs the result, and
``DebugMode``, which checks every call against the reference interpreter.

``tcomp.function(..., mode=M)`` takes a name (``'FAST_RUN'``, ``'FAST_COMPILE'``,
``'DebugMode'``, ``'Mode'``, tcomp's ``'default'``/``'fast_compile'``) or a :class:`Mode`.

Why DebugMode compares what it compares: the native code's intermediates are not
observable (fused kernels never materialize them), so a call checks (1) that the compiled
function's outputs and updates match the reference interpreter run on the *unoptimized*
traced graph, (2) that every node the passes kept (same id and op in the optimized graph)
or that carries a user's name has the same value in the reference run of the optimized
graph as in the traced one -- a pass that changes a value is caught at the node it broke,
and (3) that no argument was written into.  On a mismatch it names the first traced node
(in topological order) whose value differs, with its text form, the user's variable name
and the Python line that made it; when only an output differs (the passes are right but
the backend is not), it names that output.  A value that is inf/NaN in the unoptimized
graph but finite after the passes is not a mismatch: that is what stabilization is for.
"""
from __future__ import annotations

import numpy as np

from tcomp import config

#: Theano linker names -> tcomp backend ('py' is Python's own implementations)
LINKERS = {"py": "reference", "c": "cpu", "cvm": "cpu", "vm": "cpu", "c|py": "cpu", "c|py_nogc": "cpu",
           "cvm_nogc": "cpu", "vm_nogc": "cpu", "cpu": "cpu", "reference": "reference"}
#: Theano optimizer names -> tcomp pass pipeline
OPTIMIZERS = {"fast_run": "default", "default": "default", "fast_compile": "fast_compile",
              "merge": ("canonicalize", "cse", "dce"),
              "stabilize": ("canonicalize", "constant_fold", "cse", "stabilize", "cse", "dce"),
              "None": (), None: ()}


class DebugModeError(Exception):
    """A DebugMode call found a value that differs from the reference interpreter's."""


class Mode:
    """A pass pipeline plus a backend (Theano's ``Mode(linker, optimizer)``).

    ``linker``: a Theano linker name (``'cvm'``, ``'c'``, ``'vm'``, ``'c|py'``: the CPU
    backend; ``'py'``: the reference interpreter), ``'cpu'``/``'reference'``, or None
    (``config.backend``).  ``optimizer``: ``'fast_run'``, ``'fast_compile'``, ``'merge'``,
    ``'stabilize'``, ``'None'``, ``'default'`` (``config.optimizer``, read when a function
    is compiled), or a sequence of pass names (``tcomp.passes.PASSES``)."""

    def __init__(self, linker=None, optimizer="default"):
        if linker is not None and linker not in LINKERS:
            raise ValueError(f"Mode: unknown linker {linker!r}; valid linkers: {', '.join(LINKERS)}")
        if isinstance(optimizer, (list, tuple)):
            from tcomp.passes import PASSES

            bad = [p for p in optimizer if p not in PASSES]
            if bad:
                raise ValueError(f"Mode: unknown pass name(s) {bad}; valid names: {sorted(PASSES)}")
            optimizer = tuple(optimizer)
        elif optimizer not in OPTIMIZERS:
            raise ValueError(f"Mode: unknown optimizer {optimizer!r}; valid optimizers: "
                             f"{', '.join(str(k) for k in OPTIMIZERS)} or a list of pass names")
        self.linker = linker
        self.optimizer = optimizer
        self.exclude: tuple = ()

    @property
    def backend(self) -> str:
        return config.backend if self.linker is None else LINKERS[self.linker]

    @property
    def pipeline(self):
        """A PassManager pipeline: a mode name or a tuple of pass names."""
        opt = self.optimizer
        if opt == "default":
            opt = config.optimizer
        return OPTIMIZERS[opt] if isinstance(opt, str) or opt is None else opt

    def excluding(self, *names) -> "Mode":
        """This mode without the named passes (Theano's ``mode.excluding('fusion')``)."""
        from tcomp.passes import PASSES

        bad = [n for n in names if n not in PASSES]
        if bad:
            raise ValueError(f"excluding: unknown pass name(s) {bad}; valid names: {sorted(PASSES)}")
        new = self.clone()
        new.exclude = self.exclude + tuple(names)
        return new

    def clone(self) -> "Mode":
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def excluded(self, exclude) -> tuple:
        """``function(exclude=...)`` plus this mode's own exclusions."""
        exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude or ())
        return exclude + self.exclude

    def wrap(self, compiled, fn):
        """The compiled graph as calls should run it (DebugMode adds its checks)."""
        return compiled

    def __repr__(self):
        return f"{type(self).__name__}(linker={self.linker!r}, optimizer={self.optimizer!r})"


class DebugMode(Mode):
    """Every call also runs the reference interpreter on the unoptimized graph and raises
    :class:`DebugModeError` at the first node whose value differs (see the module doc).

    ``rtol``/``atol``: tolerances; default per dtype (float32: 1e-4 / 1e-5, float64: 1e-7 /
    1e-10, relative to the largest magnitude for atol); integers and booleans must match
    exactly.  ``check_intermediates=False`` compares outputs and updates only."""

    def __init__(self, optimizer="fast_run", linker=None, rtol=None, atol=None, check_intermediates=True):
        super().__init__(linker=linker, optimizer=optimizer)
        self.rtol, self.atol = rtol, atol
        self.check_intermediates = bool(check_intermediates)

    def wrap(self, compiled, fn):
        return DebugCompiled(compiled, fn, self)


_PREDEFINED = {
    "FAST_RUN": lambda: Mode(optimizer="fast_run"),
    "default": lambda: Mode(optimizer="fast_run"),
    "FAST_COMPILE": lambda: Mode(optimizer="fast_compile"),
    "fast_compile": lambda: Mode(optimizer="fast_compile"),
    "Mode": lambda: Mode(),
    "DebugMode": lambda: DebugMode(),
    "DEBUG_MODE": lambda: DebugMode(),
}


def get_mode(mode=None) -> Mode:
    """A :class:`Mode` for a mode name, a Mode (returned as is), or None (``config.mode``)."""
    if mode is None:
        mode = config.mode
    if isinstance(mode, Mode):
        return mode
    if isinstance(mode, str) and mode in _PREDEFINED:
        return _PREDEFINED[mode]()
    raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(_PREDEFINED)} or a tcomp.Mode object")


# -- DebugMode's checks -----------------------------------------------------------------------

def _tolerances(dtype: str, mode: DebugMode):
    rtol, atol = (1e-4, 1e-5) if dtype == "float32" else (1e-7, 1e-10)
    return (mode.rtol if mode.rtol is not None else rtol), (mode.atol if mode.atol is not None else atol)


def mismatch(got, want, mode: DebugMode):
    """None when ``got`` matches the reference value ``want``, else a short description."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"shape {got.shape} instead of {want.shape}"
    if want.dtype.kind not in "fc":
        if got.dtype != want.dtype:
            return f"dtype {got.dtype} instead of {want.dtype}"
        bad = got != want
        if bad.any():
            i = np.unravel_index(np.argmax(bad), bad.shape)
            return f"{int(bad.sum())} element(s) differ, first at {i}: {got[i]!r} instead of {want[i]!r}"
        return None
    rtol, atol = _tolerances(want.dtype.name, mode)
    g, w = got.astype(np.float64), want.astype(np.float64)
    finite_w = np.isfinite(w)
    scale = float(np.max(np.abs(w[finite_w]), initial=1.0))
    with np.errstate(all="ignore"):
        close = np.abs(g - w) <= atol * max(1.0, scale) + rtol * np.abs(w)
    close |= (g == w) | (np.isnan(g) & np.isnan(w))
    close |= ~finite_w & np.isfinite(g)  # stabilized: the unoptimized graph overflowed here
    if close.all():
        return None
    i = np.unravel_index(np.argmax(~close), close.shape)
    return (f"{int((~close).sum())} of {close.size} element(s) differ beyond rtol={rtol:g}, atol={atol:g}; "
            f"first at {tuple(int(k) for k in i)}: {g[i]!r} instead of {w[i]!r}")


def _node_text(graph, node) -> str:
    from tcomp.printing import graph_text

    prefix = f"%{node} ="
    for line in graph_text(graph).splitlines():
        if line.strip().startswith(prefix):
            return line.strip()
    return f"%{node} = {graph.op(node)}(...)"


def _describe(graph, node) -> str:
    text = _node_text(graph, node)
    loc = graph.nx.nodes[node].get("loc")
    if loc is not None:
        text += f"  # {loc[0]}:{loc[1]}"
    name = graph.name(node)
    return text + (f" (variable {name!r})" if name else "")


class DebugCompiled:
    """The backend's compiled graph plus DebugMode's checks (see the module doc)."""

    def __init__(self, inner, fn, mode: DebugMode):
        self.inner = inner
        self.traced = fn.traced
        self.optimized = fn.optimized
        self.n_explicit = len(fn.inputs)
        self.n_outputs = len(fn.outputs)
        self.backend = fn.backend
        self.mode = mode
        self.fname = fn.name

    def __getattr__(self, name):  # everything else is the backend's
        return getattr(self.__dict__["inner"], name)

    def __call__(self, inputs):
        before = [np.array(a, copy=True) for a in inputs]
        results = self.inner(inputs)
        for i in range(self.n_explicit):
            if not np.array_equal(before[i], inputs[i], equal_nan=True):
                raise DebugModeError(f"{self.fname}: the compiled code wrote into argument "
                                     f"{self.traced.name(self.traced.inputs[i]) or i!r}")
        ref = _evaluate_all(self.traced, before)
        wrong = []
        for k, (node, got) in enumerate(zip(self.traced.outputs, results)):
            why = mismatch(got, ref[node], self.mode)
            if why is not None:
                wrong.append((k, node, why))
        if self.mode.check_intermediates or wrong:
            self._check_intermediates(before, ref, wrong)
        if wrong:
            k, node, why = wrong[0]
            what = f"output {k}" if k < self.n_outputs else f"update {k - self.n_outputs}"
            raise DebugModeError(f"{self.fname}: {what} computed by the {self.backend!r} backend differs from the "
                                 f"reference interpreter on the unoptimized graph: {why}\n  node: "
                                 f"{_describe(self.traced, node)}\n  (the optimized graph evaluates correctly, so "
                                 "the backend's code for it is wrong)")
        return results

    def _check_intermediates(self, before, ref, wrong):
        opt = self.optimized
        opt_ref = _evaluate_all(opt, before)
        traced = self.traced
        names = {}
        for n in opt.nodes():
            if opt.name(n) is not None and opt.op(n) != "input":
                names.setdefault(opt.name(n), []).append(n)
        for n in traced.topo_order():
            op = traced.op(n)
            if op in ("input", "constant"):
                continue
            counterpart = None
            if n in opt and n in opt_ref and _same_kind(opt.type(n), traced.type(n)):
                counterpart = n
            elif traced.name(n) is not None and len(names.get(traced.name(n), ())) == 1:
                m = names[traced.name(n)][0]
                if m in opt_ref and opt.type(m) == traced.type(n):
                    counterpart = m
            if counterpart is None or isinstance(ref[n], tuple) or isinstance(opt_ref[counterpart], tuple):
                continue
            why = mismatch(opt_ref[counterpart], ref[n], self.mode)
            if why is not None:
                raise DebugModeError(f"{self.fname}: the optimization passes changed the value of node "
                                     f"{_describe(traced, n)}: {why}\n  optimized graph's node: "
                                     f"{_describe(opt, counterpart)}" + _culprit(traced, n, before, self.mode))
        for k, (node, out) in enumerate(zip(traced.outputs, opt.outputs)):
            why = mismatch(opt_ref[out], ref[node], self.mode)
            if why is not None:
                raise DebugModeError(f"{self.fname}: the optimization passes changed output {k}, node "
                                     f"{_describe(traced, node)}: {why}" + _culprit(traced, node, before,
                                                                                    self.mode))


def _same_kind(a, b) -> bool:
    """Types a surviving node may have before and after the passes (a pass may refine a
    symbolic dim to a static one)."""
    from tcomp.ir import TensorType

    return (isinstance(a, TensorType) and isinstance(b, TensorType) and a.dtype == b.dtype
            and len(a.shape) == len(b.shape))


def _evaluate_all(graph, inputs):
    from tcomp.ir import evaluate

    return evaluate(graph, [np.array(a, copy=True) for a in inputs], return_all=True)


def _culprit(traced, node, inputs, mode) -> str:
    """Which pass first changed ``node``'s value (runs the pipeline pass by pass; only on
    an error, so its cost does not matter)."""
    from tcomp.passes import PIPELINES, PassManager

    pipeline = mode.pipeline
    names = PIPELINES[pipeline] if isinstance(pipeline, str) else tuple(pipeline)
    names = tuple(n for n in names if n not in mode.exclude)
    want = _evaluate_all(traced, inputs)[node]
    for k in range(1, len(names) + 1):
        g = PassManager(names[:k]).run(traced)
        if node not in g or not _same_kind(g.type(node), traced.type(node)):
            continue
        got = _evaluate_all(g, inputs).get(node)
        if got is not None and not isinstance(got, tuple) and mismatch(got, want, mode) is not None:
            return f"\n  first wrong after pass {names[k - 1]!r} (pass {k} of {len(names)})"
    return ""
