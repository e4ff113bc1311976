"""Process-wide settings, Theano-style: ``tcomp.config.floatX = 'float64'``."""
import sys
import types

#: default float dtype for T.matrix() etc. and for weak Python floats
floatX = "float32"
#: backend used by tcomp.function when none is given: 'reference' (NumPy interpreter) or 'cpu'
backend = "cpu"


class _Config(types.ModuleType):
    """``num_threads`` is a property: setting it updates the native cell the CPU kernels read
    at call time (tcomp/backend/cpu/parallel.py), so no compiled function needs rebuilding."""

    @property
    def num_threads(self) -> int:
        """Threads a large elementwise loop may use (default: usable CPUs, capped; env
        ``TCOMP_NUM_THREADS``); loops below ~2^17 elements always run on the calling thread."""
        from tcomp.backend.cpu import parallel

        return parallel.get_num_threads()

    @num_threads.setter
    def num_threads(self, n: int) -> None:
        from tcomp.backend.cpu import parallel

        parallel.set_num_threads(n)


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


COMPUTE_TEST_VALUE_MODES = ("off", "ignore", "warn", "raise")
_state = {"compute_test_value": "off"}

sys.modules[__name__].__class__ = _Config
