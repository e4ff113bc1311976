"""``tcomp.OpFromGraph``: Theano's op defined by a graph (``theano.compile.builders.OpFromGraph``).

``OpFromGraph(inputs, outputs)`` is a callable op: applied to new variables it computes
``outputs`` with ``inputs`` replaced by them.

* ``inline=True``: the graph is cloned onto the call's arguments (``tcomp.clone_replace``),
  so it is optimized, fused and compiled with the rest of the function, and ``T.grad`` goes
  through it like any expression.
* ``inline=False`` (Theano's default): one opaque Python op (``tcomp/op.py``) whose
  ``perform`` runs the graph as its own compiled function (native on the CPU backend).  Its
  gradient is the graph's, computed symbolically on a clone of the graph, so the backward
  pass is native code of the outer function.

``grad_overrides`` (``lop_overrides``) replace the gradient either way: a callable
``f(inputs, output_grads)`` (``f(inputs, outputs, output_grads)``) returning one gradient per
input, or a list with one entry per input: such a callable giving that input's gradient,
``'default'`` (the graph's own), or ``None`` (no gradient).  With ``inline=True`` the
override works as a custom-gradient region (``tcomp.gradient.custom_gradient``).
Shared variables the graph reads are implicit inputs, as in Theano (their gradient is the
graph's own).  ``rop_overrides`` is refused: ``T.Rop`` differentiates the gradient twice.
"""
from __future__ import annotations

from .op import Op, _as_input
from .shared import SharedVariable
from .tensor.variable import Variable, as_variable
from .trace import _postorder, clone_replace


def _is_default(v) -> bool:
    return isinstance(v, str) and v == "default"


class OpFromGraph(Op):
    """An op computing ``outputs`` from ``inputs`` (see the module docstring)."""

    def __init__(self, inputs, outputs, inline=False, grad_overrides="default", lop_overrides="default",
                 rop_overrides="default", name=None, **kwargs):
        single = isinstance(outputs, Variable)
        outputs = [outputs] if single else list(outputs)
        inputs = list(inputs)
        for i, v in enumerate(inputs):
            if not isinstance(v, Variable) or not v.is_root or isinstance(v, SharedVariable):
                raise TypeError(f"OpFromGraph: input {i} must be a root variable (T.matrix(), ...), got {v!r}")
        if not outputs:
            raise TypeError("OpFromGraph: give at least one output")
        outputs = [as_variable(o, f"OpFromGraph output {i}") for i, o in enumerate(outputs)]
        if not _is_default(rop_overrides):
            raise TypeError("OpFromGraph: rop_overrides is not supported (T.Rop differentiates the gradient twice)")
        if not _is_default(grad_overrides) and not _is_default(lop_overrides):
            raise TypeError("OpFromGraph: give grad_overrides or lop_overrides, not both")
        unknown = set(kwargs) - {"on_unused_input", "mode", "connection_pattern", "strict"}
        if unknown:
            raise TypeError(f"OpFromGraph: unexpected keyword arguments {sorted(unknown)}")
        self.inner_inputs, self.inner_outputs = inputs, outputs
        self.shared_inputs = [v for v in _postorder(outputs, lambda v: v) if isinstance(v, SharedVariable)]
        self.inline = bool(inline)
        self.grad_overrides = grad_overrides
        self.lop_overrides = lop_overrides
        self.name = name or "OpFromGraph"
        self.itypes = [v.type for v in inputs] + [s.type for s in self.shared_inputs]
        self.otypes = [o.type for o in outputs]
        self._fn = None

    def __str__(self):
        return self.name

    # -- applying --------------------------------------------------------------------------
    def __call__(self, *args):
        n = len(self.inner_inputs)
        if len(args) != n:
            raise TypeError(f"{self.name} takes {n} inputs, got {len(args)}")
        args = [_as_input(self, i, a, t) for i, (a, t) in enumerate(zip(args, self.itypes))]
        if not self.inline:
            return super().__call__(*args, *self.shared_inputs)
        outs = clone_replace(self.inner_outputs, dict(zip(self.inner_inputs, args)))
        if self._overridden():
            from .gradient import custom_gradient

            outs = custom_gradient(outs, args + self.shared_inputs, self._vjp, label=self.name)
        return outs[0] if len(outs) == 1 else outs

    def make_node(self, *inputs):
        return _apply(self, inputs)

    def perform(self, node, inputs, output_storage):
        if self._fn is None:
            from .function import function

            holders = [s.type() for s in self.shared_inputs]
            self._fn = function(self.inner_inputs + holders, self.inner_outputs,
                                givens=dict(zip(self.shared_inputs, holders)), on_unused_input="ignore",
                                name=self.name)
        outs = self._fn(*inputs)
        for cell, v in zip(output_storage, outs if isinstance(outs, list) else [outs]):
            cell[0] = v

    def __getstate__(self):
        d = super().__getstate__()
        d["_fn"] = None  # rebuilt on first use
        return d

    # -- gradients ---------------------------------------------------------------------------
    def _overridden(self) -> bool:
        return not (_is_default(self.grad_overrides) and _is_default(self.lop_overrides))

    def grad(self, inputs, output_grads):
        return self._vjp(list(inputs), list(output_grads))

    def _default_grads(self, inputs, output_grads) -> list:
        """The graph's own gradient, on a clone of the graph over ``inputs``."""
        from .gradient import grad

        n = len(self.inner_inputs)
        outs = clone_replace(self.inner_outputs, dict(zip(self.inner_inputs + self.shared_inputs, inputs)))
        known = {o: g for o, g in zip(outs, output_grads) if o.dtype.startswith("float")}
        wrt = [v for v in inputs[:n + len(self.shared_inputs)]]
        floats = [w for w in wrt if w.dtype.startswith("float")]
        res = dict(zip(map(id, floats), grad(None, floats, known_grads=known, disconnected_inputs="ignore",
                                             return_disconnected="None"))) if floats and known else {}
        return [res.get(id(w)) for w in wrt]

    def _vjp(self, inputs, output_grads) -> list:
        n = len(self.inner_inputs)
        if not self._overridden():
            return self._default_grads(inputs, output_grads)
        ov, lop = self.grad_overrides, not _is_default(self.lop_overrides)
        if lop:
            ov = self.lop_overrides
        explicit = inputs[:n]

        def call(f):
            if lop:
                outs = clone_replace(self.inner_outputs, dict(zip(self.inner_inputs, explicit)))
                return f(explicit, outs, output_grads)
            return f(explicit, output_grads)

        if callable(ov) and not isinstance(ov, (list, tuple)):
            got = call(ov)
            got = list(got) if isinstance(got, (list, tuple)) else [got]
            if len(got) != n:
                raise TypeError(f"{self.name}: the gradient override returned {len(got)} gradients for {n} inputs")
        elif isinstance(ov, (list, tuple)):
            if len(ov) != n:
                raise TypeError(f"{self.name}: the gradient override list has {len(ov)} entries for {n} inputs")
            got = []
            for k, entry in enumerate(ov):
                if entry is None or _is_default(entry):
                    got.append(entry)
                elif callable(entry):
                    got.append(call(entry))
                else:
                    raise TypeError(f"{self.name}: gradient override {k} must be a callable, 'default' or None, "
                                    f"got {entry!r}")
        else:
            raise TypeError(f"{self.name}: grad_overrides must be a callable or a list, got {ov!r}")
        need_default = any(_is_default(g) for g in got) or self.shared_inputs
        default = self._default_grads(inputs, output_grads) if need_default else [None] * len(inputs)
        return [default[k] if _is_default(g) else g for k, g in enumerate(got)] + default[n:]


def _apply(op, inputs):
    from .op import Apply

    return Apply(op, list(inputs), [t() for t in op.otypes])


__all__ = ["OpFromGraph"]
