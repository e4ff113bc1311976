"""Process-wide settings, Theano-style: ``tcomp.config.floatX = 'float64'``.

Every option is validated when it is set: an unknown name raises ``AttributeError`` and an
invalid value ``ValueError``, both listing what is valid (Theano silently accepts a typo such
as ``config.floatx``, and the program then runs with the default).

Options (``tcomp.config.OPTIONS`` lists them with their choices):

- ``floatX``: default float dtype of ``T.matrix()`` etc. and of weak Python floats
  (``'float32'``, the default, or ``'float64'``).
- ``backend``: where ``tcomp.function`` runs a graph when no ``backend=``/mode linker says
  otherwise: ``'cpu'`` (LLVM JIT, the default) or ``'reference'`` (NumPy interpreter).
- ``mode``: the default ``mode=`` of ``tcomp.function``: ``'Mode'`` (default: the backend
  above with ``optimizer``), ``'FAST_RUN'``, ``'FAST_COMPILE'``, ``'DebugMode'``
  (alias ``'DEBUG_MODE'``), or tcomp's ``'default'`` / ``'fast_compile'``.
- ``optimizer``: the pass pipeline of mode ``'Mode'``: ``'fast_run'`` (every pass),
  ``'merge'`` (common subexpressions only), ``'fast_compile'``, ``'stabilize'`` or
  ``'None'`` (no pass at all).
- ``device``: ``'cpu'`` (default) or ``'cuda'`` (Theano's ``'cuda0'``, ``'gpu'`` and
  ``'gpu0'`` mean it too): ``tcomp.function`` then defaults to ``backend='cuda'`` (NVPTX
  kernels through the NVIDIA driver; without one, calls raise a clear error while
  ``fn.dump('ptx')`` works).  Other devices (``'cuda1'``, ``'opencl0:0'``) are refused.
- ``compute_test_value``: ``'off'`` / ``'ignore'`` / ``'warn'`` / ``'raise'`` (Theano's).
- ``num_threads``: threads a large elementwise loop may use.
- ``cache``: whether compiled object code is kept in the persistent compile cache
  (``tcomp/runtime/cache.py``; default on, env ``TCOMP_CACHE=0`` turns it off);
  ``cache_dir``: its directory (env ``TCOMP_CACHE_DIR``, default ``$XDG_CACHE_HOME/tcomp`` or
  ``~/.cache/tcomp``); ``cache_max_bytes``: its size bound (env ``TCOMP_CACHE_MAX_BYTES``,
  default 512 MiB; ``0``: none; text like ``'64M'``).  Reading one gives the value in
  effect; setting ``None`` goes back to the environment's.
- ``profile``: Theano's ``config.profile`` (default False): functions compiled while it is
  on time their calls (``fn.profile.summary()``, see ``tcomp/profiling.py``).
- Theano's ``exception_verbosity``, ``allow_gc``, ``cxx``, ``openmp``,
  ``openmp_elemwise_minsize``, ``on_opt_error``, ``print_active_device`` and ``deterministic``
  are accepted (and their values checked) so Theano scripts that set them run; they change
  nothing here (``THEANO_NO_EFFECT``).
- ``warn``: a namespace of Theano's ``warn.*`` flags (``config.warn.ignore_bug_before =
  'all'``, ``config.warn.sum_sum_bug = False``, ...).  They are accepted so Theano scripts
  run; tcomp has none of the old Theano bugs they warn about, so they change nothing.

Flags from the environment, applied at import: ``TCOMP_FLAGS=floatX=float64,mode=FAST_COMPILE``
(comma-separated ``name=value``; ``warn.NAME=value`` for the warn flags).  An unknown name
or invalid value in ``TCOMP_FLAGS`` makes ``import tcomp`` fail with the reason.  Only if
``TCOMP_FLAGS`` is unset, ``THEANO_FLAGS`` is read the same way, except that its names tcomp
does not know (``lib.cnmem``, ``cuda.root``, ...) and values it cannot honour
(``device=opencl0:0``) give a warning, since that variable is usually meant for Theano itself.
``config.change_flags(floatX='float64')`` sets options for a ``with`` block.
"""
import contextlib
import os
import sys
import types
import warnings

#: default float dtype for T.matrix() etc. and for weak Python floats
floatX = "float32"
#: backend used by tcomp.function when none is given: 'reference' (NumPy interpreter) or 'cpu'
backend = "cpu"
#: the CPU backend runs each function as one native program (generated ``plan``/``run`` entries
#: over the kernel program, tcomp/backend/cpu/native_function.py); the Python call-time planner
#: it replaced is gone, so this is always True (kept so code that set it keeps working)
native_program = True
#: default mode of tcomp.function (see tcomp.mode): 'Mode' means backend + optimizer
mode = "Mode"
#: pass pipeline of mode 'Mode' (Theano's names)
optimizer = "fast_run"
#: the device computations run on by default: 'cpu', or 'cuda' (tcomp.function's default backend becomes 'cuda')
device = "cpu"

COMPUTE_TEST_VALUE_MODES = ("off", "ignore", "warn", "raise")
_state = {"compute_test_value": "off", "profile": False}

#: option -> its valid values (None: validated by a property setter)
OPTIONS = {
    "floatX": ("float32", "float64"),
    "backend": ("cpu", "reference"),
    "mode": ("Mode", "FAST_RUN", "FAST_COMPILE", "DebugMode", "DEBUG_MODE", "default", "fast_compile"),
    "optimizer": ("fast_run", "merge", "fast_compile", "stabilize", "None"),
    "device": ("cpu", "cuda"),
    "compute_test_value": COMPUTE_TEST_VALUE_MODES,
    "num_threads": None,
    "warn": None,
    "native_program": (True,),
    "cache": None,
    "cache_dir": None,
    "cache_max_bytes": None,
    "profile": None,
}

#: Theano options its scripts set that mean nothing for tcomp (no C compiler, no garbage
#: collection of intermediates to tune, exceptions always name the node): accepted and checked
#: so those scripts run, and they change nothing.  Their defaults are Theano's.
THEANO_NO_EFFECT = {
    "exception_verbosity": ("low", ("low", "high")),
    "allow_gc": (True, bool),
    "cxx": ("", str),
    "openmp": (False, bool),
    "openmp_elemwise_minsize": (200000, int),
    "on_opt_error": ("warn", ("warn", "raise", "pdb", "ignore")),
    "print_active_device": (True, bool),
    "deterministic": ("default", ("default", "more")),
}
for _name, (_default, _kind) in THEANO_NO_EFFECT.items():
    globals()[_name] = _default
    OPTIONS[_name] = _kind if isinstance(_kind, tuple) else None


def _check_no_effect(name, value):
    default, kind = THEANO_NO_EFFECT[name]
    if kind is bool:
        return _parse_bool(name, value)
    if kind is int:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"config.{name} must be an int, got {value!r}") from None
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"config.{name} must be a string, got {value!r}")
        return value
    return _check_choice(name, value)


_GPU_PREFIXES = ("cuda", "gpu", "opencl")
#: Theano's spellings of the one CUDA device tcomp uses (device 0)
_CUDA_ALIASES = ("cuda", "cuda0", "gpu", "gpu0")

#: Theano's warn.* flags (booleans, except ignore_bug_before)
WARN_FLAGS = ("argmax_pushdown_bug", "gpusum_01_011_0111_bug", "sum_sum_bug", "sum_div_dimshuffle_bug",
              "subtensor_merge_bug", "gpu_set_subtensor1", "vm_gc_bug", "signal_conv2d_interface", "reduce_join",
              "inc_set_subtensor1", "round", "identify_1pexp_bug")
IGNORE_BUG_BEFORE = ("None", "all", "0.3", "0.4", "0.4.1", "0.5", "0.6", "0.7", "0.8", "0.8.1", "0.8.2", "0.9",
                     "0.10", "1.0")


def _parse_bool(name, value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"config.{name} must be a boolean (True/False, 1/0), got {value!r}")


class WarnFlags:
    """``config.warn``: Theano's flags that warned about fixed bugs of old Theano versions.
    tcomp never had those bugs, so the flags are accepted (and checked) but do nothing."""

    __slots__ = ("_values",)

    def __init__(self):
        object.__setattr__(self, "_values", {name: True for name in WARN_FLAGS} | {"ignore_bug_before": "0.9"})

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"config.warn has no flag {name!r}; valid flags: "
                                 f"{', '.join(sorted(self._values))}") from None

    def __setattr__(self, name, value):
        if name == "ignore_bug_before":
            value = str(value)
            if value not in IGNORE_BUG_BEFORE:
                raise ValueError(f"config.warn.ignore_bug_before must be one of {IGNORE_BUG_BEFORE}, got {value!r}")
        elif name in WARN_FLAGS:
            value = _parse_bool(f"warn.{name}", value)
        else:
            raise AttributeError(f"config.warn has no flag {name!r}; valid flags: {', '.join(sorted(self._values))}")
        self._values[name] = value

    def __repr__(self):
        return "config.warn(" + ", ".join(f"{k}={v!r}" for k, v in sorted(self._values.items())) + ")"


warn = WarnFlags()


def _check_choice(name, value):
    choices = OPTIONS[name]
    if name == "device" and isinstance(value, str) and value.lower() in _CUDA_ALIASES:
        value = "cuda"
    elif name == "device" and isinstance(value, str) and value.lower().startswith(_GPU_PREFIXES):
        raise ValueError(f"config.device={value!r}: tcomp runs on 'cpu' or on CUDA device 0 ('cuda', also spelled "
                         "'cuda0', 'gpu', 'gpu0'); other GPUs and OpenCL devices are not supported")
    if name == "floatX" and value in ("32", "64"):  # Theano's shorthand
        value = "float" + value
    if value not in choices:
        from difflib import get_close_matches

        close = get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"config.{name} must be one of {', '.join(map(repr, choices))}, got {value!r}{hint}")
    return value


class _Config(types.ModuleType):
    """``num_threads`` is a property: setting it updates the native cell the CPU kernels read
    at call time (tcomp/backend/cpu/parallel.py), so no compiled function needs rebuilding."""

    def __setattr__(self, name, value):
        if name.startswith("_"):
            return super().__setattr__(name, value)
        if name not in OPTIONS:
            raise AttributeError(f"tcomp.config has no option {name!r}; valid options: {', '.join(sorted(OPTIONS))}")
        if name == "warn":
            if value is not self.warn:
                raise AttributeError("config.warn is a namespace; set its flags (config.warn.sum_sum_bug = False)")
            return None
        prop = getattr(type(self), name, None)
        if isinstance(prop, property):
            return prop.__set__(self, value)
        if name in THEANO_NO_EFFECT:
            return super().__setattr__(name, _check_no_effect(name, value))
        return super().__setattr__(name, _check_choice(name, value))

    @property
    def num_threads(self) -> int:
        """Threads a large elementwise loop may use (default: usable CPUs, capped; env
        ``TCOMP_NUM_THREADS``); loops below ~2^17 elements always run on the calling thread."""
        from tcomp.backend.cpu import parallel

        return parallel.get_num_threads()

    @num_threads.setter
    def num_threads(self, n: int) -> None:
        from tcomp.backend.cpu import parallel

        parallel.set_num_threads(n)  # a str is a TypeError (parse_flags converts its text)

    @property
    def cache(self) -> bool:
        """Whether compiles use the persistent compile cache (None restores ``TCOMP_CACHE``)."""
        from tcomp.runtime import cache

        return cache.enabled()

    @cache.setter
    def cache(self, value) -> None:
        from tcomp.runtime import cache

        cache._overrides["enabled"] = None if value is None else _parse_bool("cache", value)

    @property
    def cache_dir(self) -> str:
        """The compile cache's directory (None restores ``TCOMP_CACHE_DIR`` / the default)."""
        from tcomp.runtime import cache

        return cache.directory()

    @cache_dir.setter
    def cache_dir(self, value) -> None:
        from tcomp.runtime import cache

        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"config.cache_dir must be a directory path (str) or None, got {value!r}")
        if value is not None and not str(os.fspath(value)).strip():
            raise ValueError("config.cache_dir must be a non-empty directory path (or None for the default)")
        cache._overrides["dir"] = None if value is None else os.fspath(value)

    @property
    def cache_max_bytes(self) -> int:
        """The compile cache's size bound in bytes (0: none; None restores ``TCOMP_CACHE_MAX_BYTES``)."""
        from tcomp.runtime import cache

        return cache.max_bytes()

    @cache_max_bytes.setter
    def cache_max_bytes(self, value) -> None:
        from tcomp.runtime import cache

        bound = None if value is None else cache.parse_max_bytes(value, "config.cache_max_bytes")
        cache._overrides["max_bytes"] = bound

    @property
    def profile(self) -> bool:
        """Theano's ``config.profile``: every function compiled while it is on keeps a
        ``ProfileStats`` in ``fn.profile`` (``tcomp.function(..., profile=True)`` for one)."""
        return _state["profile"]

    @profile.setter
    def profile(self, value) -> None:
        _state["profile"] = _parse_bool("profile", value)

    @property
    def compute_test_value(self) -> str:
        """Theano's debugging aid: 'off' (default), or 'ignore' / 'warn' / 'raise': every new
        expression whose operands have test values (``x.tag.test_value``, constants, shared
        values) is evaluated at once, so shape errors are raised where it is written; an
        operand without one is skipped silently, with a warning, or raises."""
        return _state["compute_test_value"]

    @compute_test_value.setter
    def compute_test_value(self, value: str) -> None:
        if value not in COMPUTE_TEST_VALUE_MODES:
            raise ValueError(f"config.compute_test_value must be one of {COMPUTE_TEST_VALUE_MODES}, got {value!r}")
        _state["compute_test_value"] = value


def set_flag(name: str, value) -> None:
    """Set one option from its text form (``'warn.sum_sum_bug'`` names a warn flag)."""
    module = sys.modules[__name__]
    if name.startswith("warn."):
        setattr(module.warn, name[len("warn."):], value)
    else:
        setattr(module, name, value)


def parse_flags(text: str, source: str = "TCOMP_FLAGS", strict: bool = True) -> None:
    """Apply ``'name=value,name=value'``; with ``strict`` a bad entry raises ValueError naming
    ``source``, otherwise it is reported with a warning and skipped."""
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, sep, value = entry.partition("=")
        name, value = name.strip(), value.strip()
        try:
            if not sep or not name:
                raise ValueError(f"expected name=value, got {entry!r}")
            set_flag(name, int(value) if name == "num_threads" else value)
        except (AttributeError, ValueError) as exc:
            if strict:
                raise ValueError(f"{source}: {exc}") from None
            warnings.warn(f"{source}: ignoring {entry!r}: {exc}", stacklevel=2)


@contextlib.contextmanager
def change_flags(**flags):
    """Set options for a ``with`` block and restore them after (Theano's change_flags);
    ``warn__NAME=...`` sets a warn flag."""
    module = sys.modules[__name__]
    names = {k: ("warn." + k[len("warn__"):] if k.startswith("warn__") else k) for k in flags}
    old = {}
    for key, name in names.items():
        old[name] = getattr(module.warn, name[5:]) if name.startswith("warn.") else getattr(module, name)
    try:
        for key, name in names.items():
            set_flag(name, flags[key])
        yield
    finally:
        for name, value in old.items():
            set_flag(name, value)


sys.modules[__name__].__class__ = _Config

if os.environ.get("TCOMP_FLAGS") is not None:
    parse_flags(os.environ["TCOMP_FLAGS"], "TCOMP_FLAGS", strict=True)
elif os.environ.get("THEANO_FLAGS"):
    parse_flags(os.environ["THEANO_FLAGS"], "THEANO_FLAGS", strict=False)
