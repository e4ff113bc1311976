"""Theano's linear-algebra op classes (``slinalg.Cholesky()``, ``nlinalg.MatrixInverse()``,
``nlinalg.SVD(full_matrices=False)`` ...): programs build them with Theano's constructor
arguments and call them on tensors.  Each is a thin object over the functions of
``slinalg``/``nlinalg``, so there is one implementation of every factorization."""
from __future__ import annotations


def _op_class(name: str, fn, params: tuple, doc: str):
    """A class whose constructor takes ``params`` (keyword or positional, with ``fn``'s
    defaults) and whose instances call ``fn(*inputs, **params)``."""

    def __init__(self, *args, **kwargs):
        if len(args) > len(params):
            raise TypeError(f"{name}() takes at most {len(params)} arguments, got {len(args)}")
        unknown = set(kwargs) - set(params)
        if unknown:
            raise TypeError(f"{name}() got unexpected keyword argument(s) {sorted(unknown)}; accepted: {list(params)}")
        self.params = dict(zip(params, args))
        self.params.update(kwargs)

    def __call__(self, *inputs):
        return fn(*inputs, **self.params)

    def __repr__(self):
        inner = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{name}({inner})"

    return type(name, (), {"__init__": __init__, "__call__": __call__, "__repr__": __repr__, "__doc__": doc})


def _solve(a, b, A_structure="general", lower=False, overwrite_A=False, overwrite_b=False):
    from . import slinalg

    structure = {"general": "gen", "symmetric": "sym", "lower_triangular": "lower", "upper_triangular": "upper"}
    if A_structure not in structure:
        raise ValueError(f"Solve: A_structure must be one of {sorted(structure)}, got {A_structure!r}")
    kind = structure[A_structure]
    if kind in ("lower", "upper"):
        return slinalg.solve_triangular(a, b, lower=kind == "lower")
    return slinalg.solve(a, b, assume_a=kind, lower=lower)


def _cholesky(x, lower=True, on_error="raise"):
    from . import slinalg

    if on_error != "raise":
        raise ValueError(f"Cholesky: only on_error='raise' is supported, got {on_error!r}")
    return slinalg.cholesky(x, lower=lower)


def slinalg_classes() -> dict:
    from . import slinalg

    return {
        "Cholesky": _op_class("Cholesky", _cholesky, ("lower", "on_error"), "Theano's slinalg.Cholesky op."),
        "Solve": _op_class("Solve", _solve, ("A_structure", "lower", "overwrite_A", "overwrite_b"),
                           "Theano's slinalg.Solve op."),
        "Eigvalsh": _op_class("Eigvalsh", lambda a, b=None, lower=True: slinalg.eigvalsh(a, b, lower), ("lower",),
                              "Theano's slinalg.Eigvalsh op."),
        "Expm": _op_class("Expm", slinalg.expm, (), "Theano's slinalg.Expm op."),
    }


def _svd(a, full_matrices=True, compute_uv=True):
    from . import nlinalg

    return nlinalg.svd(a, full_matrices=full_matrices, compute_uv=compute_uv)


def nlinalg_classes() -> dict:
    from . import nlinalg

    return {
        "MatrixInverse": _op_class("MatrixInverse", nlinalg.matrix_inverse, (), "Theano's nlinalg.MatrixInverse op."),
        "MatrixPinv": _op_class("MatrixPinv", nlinalg.pinv, ("hermitian",), "Theano's nlinalg.MatrixPinv op."),
        "Det": _op_class("Det", nlinalg.det, (), "Theano's nlinalg.Det op."),
        "Eigh": _op_class("Eigh", nlinalg.eigh, ("UPLO",), "Theano's nlinalg.Eigh op."),
        "SVD": _op_class("SVD", _svd, ("full_matrices", "compute_uv"), "Theano's nlinalg.SVD op."),
        "QRFull": _op_class("QRFull", nlinalg.qr, ("mode",), "Theano's nlinalg.QRFull op."),
        "AllocDiag": _op_class("AllocDiag", nlinalg.alloc_diag, ("offset",), "Theano's nlinalg.AllocDiag op."),
        "ExtractDiag": _op_class("ExtractDiag", nlinalg.extract_diag, ("offset", "axis1", "axis2"),
                                 "Theano's nlinalg.ExtractDiag op."),
    }
