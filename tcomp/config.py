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


sys.modules[__name__].__class__ = _Config
