"""``tcomp.function``: compile symbolic inputs -> outputs (+ updates) into a callable.

The traced graph's outputs are the user outputs followed by the update expressions; its
inputs are the explicit inputs followed by every shared variable used.  A call converts
the arguments, runs the compiled graph once, then commits every update into the shared
variables' storage, so all updates see the old values.  From fetching the shared values to
committing the updates a call holds the shared variables' locks (write locks of those it
updates, read locks of the others; the rule is in ``tcomp/shared.py``), so concurrent calls
lose no update and never see a half-written value.
"""
from __future__ import annotations

import time
import warnings
from collections import OrderedDict

import numpy as np

from tcomp.ir import dtypes as dt

from . import io as _io
from .runtime import graph_cache  # (every CPU compile reads it first: imported with tcomp, not in the compile)
from .shared import SharedLocks, SharedVariable
from .tensor.shape_tuple import ShapeTuple
from .tensor.variable import Variable, as_variable
from .trace import _postorder, build_graph, givens_substitution


def _normalize_updates(updates):
    if updates is None:
        return []
    if isinstance(updates, dict):
        pairs = list(updates.items())
    else:
        pairs = [tuple(p) for p in updates]
    out, seen = [], set()
    for i, pair in enumerate(pairs):
        if len(pair) != 2:
            raise TypeError(f"update {i} must be a (shared variable, expression) pair, got {pair!r}")
        var, expr = pair
        if not isinstance(var, SharedVariable):
            raise TypeError(f"update {i}: the target must be a shared variable, got "
                            f"{var.describe() if isinstance(var, Variable) else repr(var)}")
        if var in seen:
            raise ValueError(f"shared variable {var.describe()} is updated twice")
        seen.add(var)
        expr = as_variable(expr, f"update of {var.name}")
        if expr.dtype != var.dtype or expr.ndim != var.ndim:
            raise TypeError(f"update of shared variable {var.describe()} has type {expr.type} ({expr.dtype}); "
                            f"it must have dtype {var.dtype} and rank {var.ndim} "
                            f"(cast it with .astype('{var.dtype}'))")
        for axis, (want, have) in enumerate(zip(var.type.shape, expr.type.shape)):
            if isinstance(want, int) and isinstance(have, int) and want != have:
                raise ValueError(f"update of shared variable {var.describe()} has shape {expr.type} "
                                 f"(axis {axis}: {have} != {want})")
        out.append((var, expr))
    return out


def _check_inputs(inputs):
    seen = set()
    for i, v in enumerate(inputs):
        if not isinstance(v, Variable):
            raise TypeError(f"input {i} must be a symbolic variable, got {type(v).__name__} {v!r}")
        if isinstance(v, SharedVariable):
            raise TypeError(f"input {v.describe()} is a shared variable; shared variables are implicit inputs")
        if not v.is_root:
            raise TypeError(f"input {i} ({v.describe()}) is not a root variable: it is computed by "
                            f"{v.op}; inputs must be made by T.matrix(), T.vector(), ...")
        if v in seen:
            raise ValueError(f"input {v.describe()} is listed twice")
        seen.add(v)


def _check_givens(givens):
    if givens is None:
        return {}
    pairs = givens.items() if isinstance(givens, dict) else givens
    out = OrderedDict()
    for var, repl in pairs:
        if not isinstance(var, Variable):
            raise TypeError(f"givens key must be a variable, got {var!r}")
        repl = as_variable(repl, f"replacement for {var.name}")
        if repl.dtype != var.dtype or repl.ndim != var.ndim:
            raise TypeError(f"givens: replacement for {var.describe()} has type {repl.type}; "
                            f"it must have dtype {var.dtype} and rank {var.ndim}")
        for axis, (want, have) in enumerate(zip(var.type.shape, repl.type.shape)):
            if isinstance(want, int) and isinstance(have, int) and want != have:
                raise ValueError(f"givens: replacement for {var.describe()} has shape {repl.type}")
        out[var] = repl
    return out


def _reachable(roots, givens):
    """Ids of the variables the user's graph reaches from ``roots``; a static dim of ``x.shape``
    (a constant) reaches ``x`` too: its inputs are used, as in Theano, although the value
    needs none of them."""
    sub = givens_substitution(givens)
    seen: set = set()
    pending = list(roots)
    while pending:
        order = _postorder(pending, sub)
        pending = []
        for v in order:
            if id(v) in seen:
                continue
            seen.add(id(v))
            origin = getattr(v, "_shape_of", None)
            for o in (origin,) if isinstance(origin, Variable) else origin or ():
                if id(o) not in seen:
                    pending.append(o)
    return seen


def _default_updates(roots, updates, givens, skip=()):
    """Updates of shared variables used by ``roots`` that carry a ``default_update``
    (random-stream counters), unless the user updates them explicitly or lists them in
    ``skip`` (``no_default_updates``)."""
    explicit = {var for var, _ in updates} | set(skip)
    found = []
    pending = list(roots)
    sub = givens_substitution(givens)
    while pending:
        new_roots = []
        for v in _postorder(pending, sub):
            if isinstance(v, SharedVariable) and v.default_update is not None and v not in explicit:
                explicit.add(v)
                found.append((v, v.default_update))
                new_roots.append(v.default_update)
        pending = new_roots
    return _normalize_updates(found)


def _default_backend(mode) -> str:
    """The mode's backend; ``config.device = 'cuda'`` (Theano's setting) makes it 'cuda'
    unless the mode names a linker."""
    from . import config

    if config.device == "cuda" and getattr(mode, "linker", None) is None:
        return "cuda"
    return mode.backend



def convert_argument(value, label: str, want: str, allow_input_downcast=None) -> np.ndarray:
    """``value`` as an array of dtype ``want`` in native byte order, aligned (strides and
    contiguity are the backend's business).  Arrays of another dtype convert only when the
    cast is safe (or ``allow_input_downcast``); Python numbers and lists convert when their
    values survive.  Shared by compiled functions and ``tcomp.aot.load``'s callables."""
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"argument {label!r}: expected dtype {want}, got an array of dtype {arr.dtype} "
                            "(only bool, integer and float data)")
        if arr.dtype.name == want:
            # the right dtype, but maybe big-endian or misaligned: a native, aligned copy
            return arr if arr.dtype.isnative and arr.flags.aligned else arr.astype(np.dtype(want))
        if allow_input_downcast or np.can_cast(arr.dtype, want, "safe"):
            return arr.astype(want)
        raise TypeError(f"argument {label!r}: expected dtype {want}, got {arr.dtype.name} (a lossy cast; "
                        f"pass allow_input_downcast=True or cast the data)")
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise TypeError(f"argument {label!r}: cannot convert {type(value).__name__} to {want}") from exc
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"argument {label!r}: expected a {want} tensor, got {type(value).__name__}")
    if arr.dtype.name == want or allow_input_downcast is not False:
        # Python numbers/lists convert to the input's dtype when the values survive.
        with np.errstate(all="ignore"):
            conv = arr.astype(want)
            fits = np.array_equal(conv.astype(arr.dtype), arr, equal_nan=True)
        if allow_input_downcast or fits or dt.is_float(want):
            return conv
    raise TypeError(f"argument {label!r}: value of dtype {arr.dtype.name} does not fit {want}")

class Function:
    """A compiled function.  Call with positional or keyword (input name) arguments."""

    #: a ``tcomp.profiling.ProfileStats`` when compiled with ``profile=True`` (Theano's ``f.profile``)
    profile = None

    def __init__(self, inputs, outputs, updates=None, givens=None, name=None, on_unused_input="raise",
                 backend=None, mode=None, exclude=(), allow_input_downcast=None, pass_options=None,
                 no_default_updates=False, trust_input=False, cuda_arch=None):
        #: skip the Python-side input checks (PyTensor's ``trust_input``; native code still checks)
        self.trust_input = bool(trust_input)
        #: the arguments a copy or an unpickled function is rebuilt with (tcomp/rebuild.py)
        self._options = dict(on_unused_input=on_unused_input, backend=backend, mode=mode, exclude=exclude,
                             allow_input_downcast=allow_input_downcast, pass_options=pass_options,
                             **({"cuda_arch": cuda_arch} if cuda_arch is not None else {}))
        if on_unused_input not in ("raise", "warn", "ignore"):
            raise ValueError(f"on_unused_input must be 'raise', 'warn' or 'ignore', got {on_unused_input!r}")
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        #: how arguments bind to the inputs: In defaults, names, states (tcomp/io.py)
        self.signature, state_givens, state_updates = _io.normalize_inputs(inputs)
        inputs = self.signature.inputs
        _check_inputs(inputs)
        outputs = _io.unwrap_outputs(outputs)
        if isinstance(outputs, ShapeTuple):  # function([x], x.shape): one int64 vector, as in Theano
            outputs = outputs.vector()
        self.single_output = outputs is not None and not isinstance(outputs, (list, tuple))
        outputs = [] if outputs is None else ([outputs] if self.single_output else list(outputs))
        outputs = [as_variable(o, f"output {i}") for i, o in enumerate(outputs)]
        self.updates = _normalize_updates(updates) + _normalize_updates(state_updates)
        givens = _check_givens(givens)
        givens.update(_check_givens(state_givens))
        skip = _io.skipped_default_updates(no_default_updates)
        if skip is not None:
            self.updates += _default_updates(outputs + [e for _, e in self.updates], self.updates, givens, skip)
        roots = outputs + [e for _, e in self.updates]
        reachable = _reachable(roots, givens)
        for v in inputs:
            if id(v) not in reachable and on_unused_input != "ignore":
                msg = (f"input {v.describe()} is not used to compute any output or update "
                       "(pass on_unused_input='ignore' or 'warn' to allow it)")
                if on_unused_input == "raise":
                    raise ValueError(msg)
                warnings.warn(msg, stacklevel=3)
        self.name = name or "fn"
        self.inputs = inputs
        self.outputs = outputs
        self.allow_input_downcast = allow_input_downcast
        t0 = time.perf_counter()
        from .printing import printed_in

        #: (Print op, variable) of each ``tcomp.printing.Print`` in the graph: computed as hidden
        #: outputs after the outputs and updates, printed after each call
        self.prints = printed_in(_postorder(roots, givens_substitution(givens)))
        self.traced, _, self.shared_inputs = build_graph(inputs, roots + [v for _, v in self.prints], givens)
        from .mode import get_mode

        #: the compilation mode (tcomp/mode.py): pass pipeline, backend, DebugMode's checks
        self.mode = get_mode(mode)
        self.backend = backend or _default_backend(self.mode)
        t1 = time.perf_counter()
        #: graph output position -> input position: updates the backend may write in place
        self.donations = self._donations(len(inputs), len(outputs))
        #: what ``optimized`` / ``pass_report`` are computed with when a graph-cache hit skipped the passes
        self._pass_args = dict(mode=self.mode.pipeline, exclude=self.mode.excluded(exclude), pass_options=pass_options)
        self._optimized = self._pass_report = None
        cached, passes, t2 = self._compile(cuda_arch, t1)
        self.compiled = self.mode.wrap(self.compiled, self)  # DebugMode checks every call
        #: held during every call: write locks of the updated shared variables, read locks
        #: of the other shared variables read (tcomp/shared.py states the rule)
        self._locks = SharedLocks(read=self.shared_inputs, write=[var for var, _ in self.updates])
        #: seconds spent building the graph, on the graph cache's key and lookup, in the passes
        #: (0 after a graph-cache hit) and in the backend (lowering, LLVM + JIT)
        self.compile_seconds = {"trace": t1 - t0, "graph_cache": cached, "passes": passes,
                                "backend": time.perf_counter() - t2}
        #: a backend's direct call path for plain positional calls (None: the general path below)
        make_fast = getattr(type(self.compiled), "fast_call", None)
        self._fast = make_fast(self.compiled, self) if make_fast is not None and not self.prints else None
        self._maker = None

    def _compile(self, cuda_arch, t1: float) -> tuple:
        """Set ``self.compiled``; returns (graph-cache seconds, pass seconds, when the backend
        started).  On the CPU, with the compile cache on, a traced graph compiled before (in
        any process) goes straight to its kernel program (``tcomp/runtime/graph_cache.py``):
        no passes, no lowering."""
        from .compile import compile_graph, optimize

        key = graph_cache.key_for(self.traced, backend=self.backend, donations=self.donations,
                                  pipeline=self._pass_args["mode"], exclude=self._pass_args["exclude"],
                                  pass_options=self._pass_args["pass_options"], cuda_arch=cuda_arch)
        hit = graph_cache.load(key) if key is not None else None
        #: whether the kernel program came from the graph cache (None: this compile does not use it)
        self.graph_cache_hit = None if key is None else hit is not None
        t_cache = time.perf_counter()
        if hit is not None:
            from .backend.cpu.native_function import NativeFunction

            self.compiled = NativeFunction(None, name=self.name, lowered=hit)
            return t_cache - t1, 0.0, t_cache
        if self.backend == "cpu":  # a process's first compile: its LLVM workers start during the passes
            from .runtime import optimizer

            optimizer.start_ahead()
        self._optimized, self._pass_report = optimize(self.traced, **self._pass_args)
        t2 = time.perf_counter()
        self.compiled = compile_graph(self._optimized, backend=self.backend, name=self.name,
                                      donate=self.donations, cuda_arch=cuda_arch)
        if key is not None:
            from .backend.cpu.native_function import NativeFunction

            if type(self.compiled) is NativeFunction:  # (staged, control-flow and Python-op programs: not cached)
                graph_cache.store(key, self.compiled.program, self.compiled.graph, self.compiled.hp.hash)
        return t_cache - t1, t2 - t_cache, t2

    @property
    def optimized(self):
        """The graph after the pass pipeline (computed on first use after a graph-cache hit:
        the same passes on the same traced graph give the graph the program was lowered from)."""
        if self._optimized is None:
            from .compile import optimize

            self._optimized, self._pass_report = optimize(self.traced, **self._pass_args)
        return self._optimized

    @property
    def pass_report(self):
        """The pass manager's report (per pass: time, nodes before and after)."""
        if self._pass_report is None:
            self.optimized  # noqa: B018  (runs the passes)
        return self._pass_report

    @property
    def maker(self):
        """Theano's ``f.maker``: ``f.maker.fgraph`` is the optimized graph as variables
        (``.toposort()``, ``.inputs``, ``.outputs``; tcomp/fgraph.py)."""
        if self._maker is None:
            from .fgraph import FunctionMaker

            self._maker = FunctionMaker(self)
        return self._maker

    def _donations(self, n_inputs: int, n_outputs: int) -> dict:
        """Graph output position -> input position for every update whose target is read by
        the graph: the backend may write the new value straight into the shared storage."""
        pos = {id(s): n_inputs + i for i, s in enumerate(self.shared_inputs)}
        return {n_outputs + k: pos[id(var)] for k, (var, _) in enumerate(self.updates) if id(var) in pos}

    # -- calling -----------------------------------------------------------------------
    def _convert(self, value, var: Variable):
        """``value`` as an array the backends can read directly (:func:`convert_argument`)."""
        label = var.name or f"input {self.inputs.index(var)}"
        if isinstance(value, Variable):
            raise TypeError(f"argument {label!r}: got a symbolic variable; pass a NumPy array")
        return convert_argument(value, label, var.dtype, self.allow_input_downcast)

    def __call__(self, *args, **kwargs):
        if self._fast is not None and not kwargs:
            out = self._fast(args)
            if out is not NotImplemented:
                return out
        # positional/keyword arguments, In defaults and states (tcomp/io.py), converted
        arrays = self.signature.bind(self.name, args, kwargs, self._convert)
        with self._locks:  # see tcomp/shared.py: updates of one shared variable never interleave
            results = self._run(arrays)
        base = len(self.outputs) + len(self.updates)
        for k, (op, _) in enumerate(self.prints):
            op.global_fn(op, results[base + k])
        outs = results[:len(self.outputs)]
        if self.single_output:
            return outs[0]
        return outs

    def _run(self, arrays):
        """Run the compiled graph on the converted inputs plus the shared values and commit
        the updates; the caller holds the shared variables' locks."""
        resident = getattr(type(self.compiled), "run_resident", None)
        if resident is not None:  # the GPU: shared values and updates stay in device memory
            return resident(self.compiled, self, arrays)
        arrays = arrays + [s.get_value(borrow=True) for s in self.shared_inputs]
        results = self.compiled(arrays)
        n_out = len(self.outputs)
        # an update the backend wrote straight into its shared variable's storage is done
        written = [k for k, ((var, _), new) in enumerate(zip(self.updates, results[n_out:]))
                   if new is var.get_value(borrow=True)]
        # Any other result may be an input's own storage (an output that is an input, an
        # update a <- b): copy those so updates cannot clobber each other or returned values.
        # (A backend with ``fresh_outputs`` never returns an input's storage but for the
        # donated updates counted in ``written``.)
        if not getattr(self.compiled, "fresh_outputs", False):
            results = [r if k - n_out in written else
                       np.array(r) if any(np.may_share_memory(r, a) for a in arrays) else r
                       for k, r in enumerate(results)]
        for k, ((var, _), new) in enumerate(zip(self.updates, results[n_out:])):
            if k not in written:
                var._assign_in_place(new)
            elif var._device is not None:  # native code wrote the storage: a GPU copy is stale
                var._device.host_written()
        return results

    #: every stage ``dump`` knows, in compilation order (``tcomp dump --stage`` offers these)
    STAGES = ("traced", "optimized", "kernels", "llvm", "asm", "ptx")
    #: the stages each backend adds after the graph stages
    BACKEND_STAGES = {"reference": (), "cpu": ("llvm", "asm"), "cuda": ("llvm", "ptx")}

    def dump_stages(self) -> tuple:
        """The stages ``dump`` can print for this function (they depend on its backend)."""
        extra = self.BACKEND_STAGES.get(self.backend, ())
        return tuple(s for s in self.STAGES if s in ("traced", "optimized", "kernels") or s in extra)

    def dump(self, stage: str = "optimized", *, full_constants: bool = False, locations: bool = False) -> str:
        """Text of one compilation stage (see ``STAGES``; ``dump_stages()`` lists this function's).

        The graph stages print fused kernels as nested blocks and parse back
        (``tcomp.ir.parse_graph``, ``tcomp run FILE.tir``) unless a large constant was
        elided (``full_constants=False``; the text then says so in a comment).
        ``locations`` adds ``# file:line`` of the Python that made each node.
        """
        if stage not in self.dump_stages():
            from .printing import unknown_choice

            if stage in self.STAGES:
                raise ValueError(f"stage {stage!r} is not available on backend {self.backend!r}; this function "
                                 f"has: {', '.join(self.dump_stages())}")
            raise ValueError(unknown_choice("dump stage", stage, self.dump_stages()))
        if stage in ("traced", "optimized"):
            from .printing import graph_text

            return graph_text(self.traced if stage == "traced" else self.optimized, full_constants=full_constants,
                              locations=locations)
        if stage == "kernels":  # the kernel program of the optimized graph (tcomp.passes.lower_kernels)
            kernels_text = getattr(self.compiled, "kernels_text", None)
            if kernels_text is not None:  # a chain of programs (shapes computed by kernels: backend/cpu/staged.py)
                return kernels_text()
            from tcomp.passes import lower_kernels

            return str(lower_kernels(self.optimized, self.donations))
        return self.compiled.dump(stage)

    # -- copying and pickling (tcomp/rebuild.py) ------------------------------------------
    def copy(self, share_memory=False, swap=None, delete_updates=False, name=None):
        """A new function computing the same thing (Theano's ``Function.copy``).

        ``swap``: ``{old_shared: new_shared}``: the copy reads and updates ``new_shared``
        instead (same dtype and rank); every other shared variable stays shared with this
        function, as in Theano.  ``delete_updates``: the copy updates nothing.  ``name``:
        the copy's name (default: this name + ' copy').  ``share_memory``: in Theano, whether
        the two functions share intermediate buffers; tcomp never shares them (every call
        has its own workspace), so it is accepted and changes nothing.  The copy is rebuilt
        from the traced graph (passes and native code run again)."""
        from .rebuild import copy_function

        return copy_function(self, share_memory=share_memory, swap=swap, delete_updates=delete_updates, name=name)

    def __copy__(self):
        return self.copy()

    def __reduce__(self):
        """Pickle (and ``copy.deepcopy``) as the traced graph, the inputs, the shared
        variables with their values and the options; loading rebuilds the native code."""
        from .rebuild import reduce_function

        return reduce_function(self)


def _cut_at_inputs(inputs, givens):
    """Theano compiles a function whose inputs are computed variables (``function([h], out)``
    with ``h = f(x)``): the graph is cut there and ``h`` is given.  Each such input becomes a
    fresh root variable of its type, substituted for it by ``givens``."""
    if not isinstance(inputs, (list, tuple)) or not any(
            isinstance(v, Variable) and not v.is_root and not isinstance(v, SharedVariable)
            and getattr(v, "is_sparse_variable", False) is not True for v in inputs):
        return inputs, givens
    pairs = list(givens.items()) if isinstance(givens, dict) else list(givens or [])
    keyed = {id(k) for k, _ in pairs}
    cut = []
    for v in inputs:
        if isinstance(v, Variable) and not v.is_root and not isinstance(v, SharedVariable):
            if id(v) in keyed:
                raise ValueError(f"input {v.describe()} is also replaced by givens")
            fresh = Variable(v.type, "input", name=v.name)
            pairs.append((v, fresh))
            keyed.add(id(v))
            v = fresh
        cut.append(v)
    return cut, pairs


def _has_composite(inputs, outputs, updates=None, givens=None) -> bool:
    """Whether a signature (or an update's target, or a givens key) has a composite variable
    (a ``tcomp.sparse`` matrix, a ``tcomp.typed_list`` list: ``tcomp/composite.py``)."""
    targets = []
    for pairs in (updates, givens):
        pairs = pairs.items() if isinstance(pairs, dict) else (pairs if isinstance(pairs, (list, tuple)) else [])
        targets += [p[0] for p in pairs if isinstance(p, (tuple, list)) and p]
    for group in (inputs, outputs, targets):
        for v in group if isinstance(group, (list, tuple)) else [group]:
            if getattr(v, "tcomp_composite", False) is True:
                return True
    return False


def function(inputs, outputs=None, updates=None, givens=None, name=None, on_unused_input="raise",
             backend=None, mode=None, exclude=(), allow_input_downcast=None, pass_options=None,
             no_default_updates=False, trust_input=False, cuda_arch=None, profile=None, rebuild_strict=True,
             accept_inplace=False) -> Function:
    """Compile a function from symbolic ``inputs`` to ``outputs`` (Theano's API).

    The result is a :class:`Function`: call it with one NumPy array (or number, or nested
    list) per input, positionally or by the input's name; it returns the outputs' values
    and then commits the updates.  Arguments:

    inputs
        List of root variables (``T.matrix('x')``, ...) and/or :class:`tcomp.In` objects,
        in the order of the call's positional arguments.  ``In(y, value=1)`` makes ``y``
        optional, ``In(y, name='why')`` sets its keyword name, ``In(s, value=0,
        update=s + 1)`` keeps a state across calls (see ``help(tcomp.In)``).  Shared
        variables are never listed: they are implicit inputs.
    outputs
        A variable (the call returns one array), a list or tuple of variables (returns a
        list), ``None`` or ``[]`` (returns ``[]``; useful with ``updates``).  Each may be
        wrapped in :class:`tcomp.Out`.  Outputs are always fresh arrays.
    updates
        ``[(shared_variable, expression), ...]`` or a dict: after each call the shared
        variable holds the expression's value.  All updates see the old values.  The
        expression must have the shared variable's dtype and rank.
    givens
        ``[(variable, replacement), ...]`` or a dict: the graph is built with each variable
        replaced (shared variable by an input, an input by a slice of a shared dataset,
        ...); same dtype and rank required.
    name
        The function's name, used in error messages and in native symbol names.
    on_unused_input
        ``'raise'`` (default), ``'warn'`` or ``'ignore'`` an input no output or update needs.
    backend
        ``'cpu'`` (LLVM JIT, native code), ``'reference'`` (the NumPy interpreter) or
        ``'cuda'`` (NVPTX kernels run through the NVIDIA driver; shared variables stay in
        GPU memory between calls).  Default: the mode's linker, else ``'cuda'`` when
        ``tcomp.config.device == 'cuda'``, else ``tcomp.config.backend``.
    mode
        A name: ``'FAST_RUN'`` (every pass), ``'FAST_COMPILE'`` (few passes, quick to
        build), ``'DebugMode'`` (every call also runs the reference interpreter on the
        unoptimized graph and raises :class:`tcomp.DebugModeError` naming the first node
        whose value differs), ``'Mode'`` (``config.optimizer``), tcomp's ``'default'`` /
        ``'fast_compile'``; or a :class:`tcomp.Mode` / :class:`tcomp.DebugMode` object.
        Default: ``tcomp.config.mode``.
    exclude
        Pass names to skip, e.g. ``['fuse_elementwise']`` (``tcomp.passes.PASSES`` lists
        them).
    allow_input_downcast
        ``True``: arguments are cast to the input's dtype even when that loses precision
        (a float64 array for a float32 input).  ``None`` (default): arrays must cast safely;
        Python numbers and lists are converted when their values survive (floats are
        rounded to a float input).  ``False``: as ``None``, but Python numbers and lists
        must already have the input's dtype as NumPy reads them (``2`` is int64).
    pass_options
        Pass-manager instrumentation: ``dict(verify_each=True, print_after=['simplify'],
        print_after_all=False, time_passes=True, stream=sys.stderr)``.
    no_default_updates
        ``True``: no shared variable's ``default_update`` is applied (a random stream then
        returns the same numbers on every call); or a list of the shared variables whose
        default update is skipped.  Default ``False``: default updates apply unless an
        explicit update is given.
    trust_input
        ``True``: positional NumPy arguments go to the backend unchecked and unconverted
        (PyTensor's ``trust_input``); the native entry still verifies rank, dtype, layout
        and every shape before it touches memory.
    cuda_arch
        ``backend='cuda'`` only: the GPU architecture the PTX is generated for (``'sm_70'``
        ... ``'sm_90'``).  Default: the device's when a driver is present, else ``'sm_80'``.
    profile
        True (or a ``tcomp.profiling.ProfileStats``): ``f.profile`` counts the calls and their
        time (``f.profile.summary()``); default ``tcomp.config.profile``.
    rebuild_strict
        Theano's; accepted for its programs: givens must keep the replaced variable's dtype
        and rank whatever it says.
    accept_inplace
        Theano's; accepted for its programs (user graphs hold no in-place ops).

    Copying (``f.copy(swap=...)``), pickling and ``copy.deepcopy`` rebuild the function from
    its traced graph; ``f.dump(stage)`` prints each compilation stage.
    """
    inputs, givens = _cut_at_inputs(inputs, givens)
    if _has_composite(inputs, outputs, updates, givens):  # sparse matrices, typed lists: several tensors each
        from .composite import CompositeFunction

        return CompositeFunction(inputs, outputs, updates=updates, givens=givens, name=name,
                                 on_unused_input=on_unused_input, backend=backend, mode=mode, exclude=exclude,
                                 allow_input_downcast=allow_input_downcast, pass_options=pass_options,
                                 no_default_updates=no_default_updates, trust_input=trust_input,
                                 cuda_arch=cuda_arch)
    fn = Function(inputs, outputs, updates=updates, givens=givens, name=name, on_unused_input=on_unused_input,
                  backend=backend, mode=mode, exclude=exclude, allow_input_downcast=allow_input_downcast,
                  pass_options=pass_options, no_default_updates=no_default_updates, trust_input=trust_input,
                  cuda_arch=cuda_arch)
    if profile is None:
        from . import config

        profile = config.profile
    if profile:
        from .profiling import attach

        attach(fn, profile)
    return fn
