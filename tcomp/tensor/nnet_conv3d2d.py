"""``T.nnet.conv3d2d``: Theano's older 3-d convolution of a movie, layout
(batch, time, channels, rows, cols) with (out, time, in, rows, cols) filters.  It flips the
filters (a true convolution), is 'valid' in time, and 'valid' or 'full' in space; tcomp
computes it with ``T.nnet.conv3d`` on the axes moved to NCDHW."""
from __future__ import annotations

from .nnet_conv3d import conv3d as _conv3d
from .variable import as_variable


def conv3d(signals, filters, signals_shape=None, filters_shape=None, border_mode="valid"):
    """Convolve spatio-temporal ``filters`` [Nf, Tf, C, Hf, Wf] with ``signals`` [Ns, Ts, C, Hs, Ws]."""
    s = as_variable(signals, "signals")
    f = as_variable(filters, "filters")
    # a string is the rows/cols mode (Theano raised for 'full' since time can only be 'valid')
    modes = ("valid", border_mode, border_mode) if isinstance(border_mode, str) else tuple(border_mode)
    if len(modes) != 3 or modes[0] != "valid":
        raise ValueError(f"conv3d2d.conv3d: the time border mode must be 'valid', got {border_mode!r}")
    if modes[1] != modes[2] or modes[1] not in ("valid", "full"):
        raise ValueError(f"conv3d2d.conv3d: rows and columns need the same border mode, 'valid' or 'full'; "
                         f"got {border_mode!r}")
    if s.ndim != 5 or f.ndim != 5:
        raise ValueError(f"conv3d2d.conv3d: signals and filters must be 5-d, got {s.describe()} and {f.describe()}")
    move = (0, 2, 1, 3, 4)
    filter_shape = None if filters_shape is None else tuple(filters_shape[i] for i in move)
    if modes[1] == "valid":
        pad = (0, 0, 0)
    else:
        shape = filter_shape or f.type.shape
        kh, kw = shape[3], shape[4]
        if not (isinstance(kh, int) and isinstance(kw, int)):
            raise ValueError("conv3d2d.conv3d: border_mode 'full' needs static filter rows and columns "
                             "(give filters_shape=)")
        pad = (0, kh - 1, kw - 1)
    out = _conv3d(s.dimshuffle(*move), f.dimshuffle(*move), filter_shape=filter_shape, border_mode=pad)
    return out.dimshuffle(*move)


__all__ = ["conv3d"]
