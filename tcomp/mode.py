"""Compilation modes, as in Theano: which passes run, which backend runs the result, and
``DebugMode``, which checks every call against the reference interpreter.

``tcomp.function(..., mode=M)`` takes a name (``'FAST_RUN'``, ``'FAST_COMPILE'``,
``'DebugMode'``, ``'Mode'``, tcomp's ``'default'``/``'fast_compile'``) or a :class:`Mode`.

Why DebugMode compares what it compares: the native code's intermediates are not
observable (fused kernels never materialize them), so every call also runs the reference
interpreter on the *unoptimized* traced graph and on the optimized graph, and checks
(1) that no argument was written into; (2) that every traced node the passes kept (same id,
dtype and rank in the optimized graph) or whose user-given name is on exactly one optimized
node, and every output and update, has the same value in both reference runs -- a pass that
changes a value is caught at the first such node in topological order, named by its text
form, the user's variable name and the Python line that made it, with the pass that first
changed it (found by re-running the pipeline pass by pass, only on a mismatch); (3) that the
compiled function's outputs and updates equal the reference run of the optimized graph (the
same formulas, so tight tolerances): a difference there is the backend's fault.

Accepted differences: a value that is inf/NaN in the unoptimized graph but finite after the
passes, and a difference of at most 5% that the ``stabilize`` pass made: stabilization
rewrites formulas into more accurate ones (``log(1 - sigmoid(x))`` into ``-softplus(x)``), so
there the unoptimized graph is the less accurate of the two.
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
              "stabilize": ("canonicalize", "stabilize", "constant_fold", "cse", "stabilize", "cse", "dce"),
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
            return (f"{int(bad.sum())} element(s) differ, first at {tuple(int(k) for k in i)}: {got[i].item()!r} "
                    f"instead of {want[i].item()!r}")
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
            f"first at {tuple(int(k) for k in i)}: {float(g[i])!r} instead of {float(w[i])!r}")


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
        #: traced nodes / output positions whose difference the stabilize pass made
        self.stabilized: set = set()

    def __getattr__(self, name):  # everything else is the backend's
        return getattr(self.__dict__["inner"], name)

    def __call__(self, inputs):
        before = [np.array(a, copy=True) for a in inputs]
        results = self.inner(inputs)
        for i in range(self.n_explicit):
            if not np.array_equal(before[i], inputs[i], equal_nan=True):
                raise DebugModeError(f"{self.fname}: the compiled code wrote into argument "
                                     f"{self.traced.name(self.traced.inputs[i]) or i!r}")
        opt_ref = _evaluate_all(self.optimized, before)
        self._check_passes(before, _evaluate_all(self.traced, before), opt_ref)
        for k, (node, got) in enumerate(zip(self.optimized.outputs, results)):
            why = mismatch(got, opt_ref[node], self.mode)
            if why is not None:
                what = f"output {k}" if k < self.n_outputs else f"update {k - self.n_outputs}"
                raise DebugModeError(f"{self.fname}: {what} computed by the {self.backend!r} backend differs from the "
                                     f"reference interpreter: {why}\n  node: "
                                     f"{_describe(self.traced, self.traced.outputs[k])}\n  optimized graph's node: "
                                     f"{_describe(self.optimized, node)}\n  (the passes kept its value, so the "
                                     "backend's code for it is wrong)")
        return results

    def _tolerated(self, key, before, got, want, node=None, output=None) -> str | None:
        """None if the difference at ``key`` comes from the stabilize pass and stays within
        5% (accepted: it rewrites formulas into more accurate ones, so the unoptimized graph
        is the less accurate one; a wrong rewrite is off by far more), else the culprit text."""
        if mismatch(got, want, _STABILIZE_TOLERANCE) is not None:
            key = None
        elif key in self.stabilized:
            return None
        name, k, total = _culprit(self.traced, before, self.mode, node=node, output=output)
        if name == "stabilize" and key is not None:
            self.stabilized.add(key)
            return None
        return f"\n  first wrong after pass {name!r} (pass {k} of {total})" if name else ""

    def _check_passes(self, before, ref, opt_ref):
        opt, traced = self.optimized, self.traced
        if self.mode.check_intermediates:
            names = {}
            for n in opt.nodes():
                if opt.name(n) is not None and opt.op(n) != "input":
                    names.setdefault(opt.name(n), []).append(n)
            for n in traced.topo_order():
                if traced.op(n) in ("input", "constant") or isinstance(ref[n], tuple):
                    continue
                counterpart = None
                if n in opt and n in opt_ref and _same_kind(opt.type(n), traced.type(n)):
                    counterpart = n
                elif traced.name(n) is not None and len(names.get(traced.name(n), ())) == 1:
                    m = names[traced.name(n)][0]
                    if m in opt_ref and _same_kind(opt.type(m), traced.type(n)):
                        counterpart = m
                if counterpart is None or isinstance(opt_ref[counterpart], tuple):
                    continue
                why = mismatch(opt_ref[counterpart], ref[n], self.mode)
                if why is None:
                    continue
                culprit = self._tolerated(("node", n), before, opt_ref[counterpart], ref[n], node=n)
                if culprit is not None:
                    raise DebugModeError(f"{self.fname}: the optimization passes changed the value of node "
                                         f"{_describe(traced, n)}: {why}\n  optimized graph's node: "
                                         f"{_describe(opt, counterpart)}" + culprit)
        for k, (node, out) in enumerate(zip(traced.outputs, opt.outputs)):
            why = mismatch(opt_ref[out], ref[node], self.mode)
            if why is None:
                continue
            culprit = self._tolerated(("output", k), before, opt_ref[out], ref[node], output=k)
            if culprit is not None:
                raise DebugModeError(f"{self.fname}: the optimization passes changed output {k}, node "
                                     f"{_describe(traced, node)}: {why}" + culprit)


class _Tolerance:
    def __init__(self, rtol, atol):
        self.rtol, self.atol = rtol, atol


#: how far a value the stabilize pass rewrote may move from the unoptimized graph's
_STABILIZE_TOLERANCE = _Tolerance(rtol=0.05, atol=1e-3)


def _same_kind(a, b) -> bool:
    """Types a surviving node may have before and after the passes (a pass may refine a
    symbolic dim to a static one)."""
    from tcomp.ir import TensorType

    return (isinstance(a, TensorType) and isinstance(b, TensorType) and a.dtype == b.dtype
            and len(a.shape) == len(b.shape))


def _evaluate_all(graph, inputs):
    from tcomp.ir import evaluate

    return evaluate(graph, [np.array(a, copy=True) for a in inputs], return_all=True)


def _culprit(traced, inputs, mode, node=None, output=None):
    """(pass name, its position, pipeline length) of the first pass after which ``node``
    (or output position ``output``) no longer has its traced value; (None, 0, n) if no
    prefix of the pipeline shows it.  Runs the pipeline pass by pass: only on a mismatch."""
    from tcomp.passes import PIPELINES, PassManager

    pipeline = mode.pipeline
    names = PIPELINES[pipeline] if isinstance(pipeline, str) else tuple(pipeline)
    names = tuple(n for n in names if n not in mode.exclude)
    values = _evaluate_all(traced, inputs)
    want = values[node] if node is not None else values[traced.outputs[output]]
    for k in range(1, len(names) + 1):
        g = PassManager(names[:k]).run(traced)
        if node is not None:
            if node not in g or not _same_kind(g.type(node), traced.type(node)):
                continue
            got = _evaluate_all(g, inputs).get(node)
        else:
            got = _evaluate_all(g, inputs)[g.outputs[output]]
        if got is not None and not isinstance(got, tuple) and mismatch(got, want, mode) is not None:
            return names[k - 1], k, len(names)
    return None, 0, len(names)
