"""tcomp's dtypes and the one promotion function.

Dtypes are plain NumPy dtype names (``'float32'``); a name is hashable, printable and
maps 1:1 to ``np.dtype``.  Promotion follows JAX's lattice, not NumPy's: an integer
tensor combined with a float32 tensor gives float32 (never a silent float64), and Python
scalars are *weak*: they take the tensor's dtype within their own kind.
"""
from __future__ import annotations

import numpy as np

BOOL = "bool"
INT_DTYPES = ("int8", "int16", "int32", "int64")
UINT_DTYPES = ("uint8",)
FLOAT_DTYPES = ("float32", "float64")
ALL_DTYPES = (BOOL,) + INT_DTYPES + UINT_DTYPES + FLOAT_DTYPES
_NAMES = frozenset(ALL_DTYPES)

SHORT_NAMES = {
    "bool": "bool", "int8": "i8", "int16": "i16", "int32": "i32", "int64": "i64",
    "uint8": "u8", "float32": "f32", "float64": "f64",
}
FROM_SHORT = {v: k for k, v in SHORT_NAMES.items()}

#: dtype a weak Python int becomes when nothing else fixes it.
DEFAULT_INT = "int64"


def canonical(dtype) -> str:
    """Return tcomp's name for ``dtype`` (a name, short name, NumPy dtype or type)."""
    if isinstance(dtype, str) and dtype in _NAMES:  # the common case, without building a NumPy dtype
        return dtype
    if isinstance(dtype, str) and dtype in FROM_SHORT:
        return FROM_SHORT[dtype]
    if dtype in ("floatX",):
        from_config = _floatx()
        return from_config
    try:
        name = np.dtype(dtype).name
    except TypeError as exc:
        raise TypeError(f"unknown dtype {dtype!r}") from exc
    if name not in ALL_DTYPES:
        raise TypeError(f"dtype {name!r} is not supported by tcomp (supported: {', '.join(ALL_DTYPES)})")
    return name


def _floatx() -> str:
    # Imported lazily: the IR must not import the user-facing package at import time.
    import importlib

    try:
        return importlib.import_module("tcomp.config").floatX
    except ImportError:  # pragma: no cover - tcomp.ir used standalone
        return "float32"


def kind(dtype: str) -> str:
    """'b' bool, 'i' signed int, 'u' unsigned int, 'f' float."""
    if dtype == BOOL:
        return "b"
    if dtype in INT_DTYPES:
        return "i"
    if dtype in UINT_DTYPES:
        return "u"
    if dtype in FLOAT_DTYPES:
        return "f"
    raise TypeError(f"unknown dtype {dtype!r}")


def is_float(dtype: str) -> bool:
    return kind(dtype) == "f"


def is_int(dtype: str) -> bool:
    return kind(dtype) in "iu"


def itemsize(dtype: str) -> int:
    return np.dtype(dtype).itemsize


def _bits(dtype: str) -> int:
    return 8 * itemsize(dtype)


def _promote_pair(a: str, b: str) -> str:
    if a == b:
        return a
    ka, kb = kind(a), kind(b)
    if ka == "b":
        return b
    if kb == "b":
        return a
    if ka == "f" or kb == "f":
        if ka == "f" and kb == "f":
            return a if _bits(a) >= _bits(b) else b
        return a if ka == "f" else b
    if ka == kb:  # both signed or both unsigned
        return a if _bits(a) >= _bits(b) else b
    # signed with unsigned: the smallest signed type holding both
    signed, unsigned = (a, b) if ka == "i" else (b, a)
    need = max(_bits(signed), 2 * _bits(unsigned))
    return f"int{min(need, 64)}"


def promote_types(*dtypes: str) -> str:
    """Promote tensor dtypes (all strong) along JAX's lattice."""
    if not dtypes:
        raise ValueError("promote_types needs at least one dtype")
    out = canonical(dtypes[0])
    for d in dtypes[1:]:
        out = _promote_pair(out, canonical(d))
    return out


def weak_scalar_kind(value) -> str:
    """Kind of a Python scalar: 'b', 'i' or 'f'."""
    if isinstance(value, (bool, np.bool_)):
        return "b"
    if isinstance(value, (int, np.integer)):
        return "i"
    if isinstance(value, (float, np.floating)):
        return "f"
    raise TypeError(f"{value!r} is not a Python scalar")


def promote_with_weak(strong: list[str], weak_kinds: list[str]) -> str:
    """Result dtype of tensors of dtypes ``strong`` combined with weak Python scalars.

    A weak scalar only matters when its kind is higher than every tensor's kind: then it
    lifts the result to the default dtype of that kind (``floatX`` for floats).
    """
    if strong:
        out = promote_types(*strong)
    else:
        out = None
    rank = {"b": 0, "i": 1, "u": 1, "f": 2}
    for wk in weak_kinds:
        if out is None:
            out = {"b": BOOL, "i": DEFAULT_INT, "f": _floatx()}[wk]
        elif rank[wk] > rank[kind(out)]:
            out = DEFAULT_INT if wk == "i" else _floatx()
    if out is None:
        raise ValueError("nothing to promote")
    return out


def weak_default(value) -> str:
    """dtype of a lone Python scalar: bool, DEFAULT_INT or floatX."""
    return {"b": BOOL, "i": DEFAULT_INT, "f": _floatx()}[weak_scalar_kind(value)]


def np_dtype(dtype: str) -> np.dtype:
    return np.dtype(dtype)
