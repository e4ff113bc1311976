"""Copying and pickling compiled functions: both rebuild a Function from its traced graph.

Why rebuild instead of copying native code: the compiled object holds JIT-engine
addresses that mean nothing in another process, and a copy with other shared variables
(``swap``) or without updates (``delete_updates``) may need other in-place decisions
(an update written straight into a shared variable's storage).  The traced graph is the
program: turned back into expressions over the same input variables (and the swapped or
unpickled shared variables), it goes through ``tcomp.function`` again, with the same
arguments (In defaults and names, mode, backend, passes).

A pickle holds the traced graph in the IR's JSON form (``tcomp.ir.to_json``), the input
variables, the shared variables with their values (pickled as objects, so two functions
pickled together still share them after loading), the update targets, the argument
signature and the options.  ``copy.deepcopy`` goes the same way, with deep-copied shared
variables.
"""
from __future__ import annotations

from .shared import SharedVariable
from .trace import variables_from_graph

FORMAT_VERSION = 1


def _rebuild(graph, inputs, shared, n_outputs, targets, keep_updates: bool):
    """(outputs, updates) as expressions over ``inputs`` + ``shared`` (the graph's inputs)."""
    node_to_var = dict(zip(graph.inputs, list(inputs) + list(shared)))
    nodes = graph.outputs[:n_outputs] + (graph.outputs[n_outputs:] if keep_updates else [])
    exprs = variables_from_graph(graph, node_to_var, nodes)
    outs = exprs[:n_outputs]
    updates = list(zip(targets, exprs[n_outputs:])) if keep_updates else []
    return outs, updates


def _make(fn_cls, signature_params, outs, single_output, updates, name, options):
    outputs = outs[0] if single_output else outs
    # the traced graph already holds every default update that applied, so none is added again
    return fn_cls(list(signature_params), outputs, updates=updates, name=name, no_default_updates=True,
                  **options)


def _check_swap(fn, swap) -> dict:
    if swap is None:
        return {}
    if not isinstance(swap, dict):
        raise TypeError(f"copy: swap must be a dict {{old shared variable: new shared variable}}, got {swap!r}")
    used = {id(s) for s in fn.shared_inputs} | {id(v) for v, _ in fn.updates}
    for old, new in swap.items():
        if not isinstance(old, SharedVariable):
            raise TypeError(f"copy: swap key {old!r} is not a shared variable")
        if id(old) not in used:
            raise ValueError(f"copy: SharedVariable {old.describe()} not found in function {fn.name!r}")
        if not isinstance(new, SharedVariable):
            raise TypeError(f"copy: swap value for {old.describe()} must be a shared variable, got {new!r}")
        if new.dtype != old.dtype or new.ndim != old.ndim:
            raise TypeError(f"copy: swap replaces {old.describe()} by {new.describe()}: the type must be the same "
                            f"(dtype {old.dtype}, rank {old.ndim})")
    return dict(swap)


def _options(fn) -> dict:
    """The function's arguments, with the backend and mode it was actually compiled with
    (not the configuration at the time a copy or an unpickled function is built)."""
    options = dict(fn._options, backend=fn.backend, mode=fn.mode)
    if getattr(fn, "trust_input", False):
        options["trust_input"] = True
    return options


def copy_function(fn, share_memory=False, swap=None, delete_updates=False, name=None):
    """See ``Function.copy``."""
    swap = _check_swap(fn, swap)
    shared = [swap.get(s, s) for s in fn.shared_inputs]
    targets = [swap.get(v, v) for v, _ in fn.updates]
    outs, updates = _rebuild(fn.traced, fn.inputs, shared, len(fn.outputs), targets, not delete_updates)
    options = _options(fn)
    if delete_updates:  # inputs used only by the updates are unused now, as Theano allows
        options["on_unused_input"] = "ignore"
    return _make(type(fn), fn.signature.params, outs, fn.single_output, updates,
                 name if name is not None else f"{fn.name} copy", options)


def reduce_function(fn):
    """``Function.__reduce__``: everything needed to rebuild ``fn``, nothing native."""
    from tcomp.ir import to_json

    options = _options(fn)
    if options.get("pass_options"):  # an output stream does not pickle; the copy prints to stderr
        options["pass_options"] = {k: v for k, v in options["pass_options"].items() if k != "stream"}
    state = {"version": FORMAT_VERSION, "graph": to_json(fn.traced), "inputs": list(fn.inputs),
             "shared": list(fn.shared_inputs), "n_outputs": len(fn.outputs), "single_output": fn.single_output,
             "targets": [v for v, _ in fn.updates], "params": list(fn.signature.params), "name": fn.name,
             "options": options}
    from tcomp.ir.ops.pyop import python_ops_of

    ops = python_ops_of(fn.traced)
    if ops:  # Python ops (tcomp/op.py) travel as objects: the graph's JSON names them by token
        state["python_ops"] = ops
    return (load_function, (type(fn), state))


def load_function(fn_cls, state):
    """Rebuild a pickled function (compiles it again in this process)."""
    from tcomp.ir import from_json

    if state.get("version") != FORMAT_VERSION:
        raise ValueError(f"cannot load a pickled tcomp function of format version {state.get('version')!r} "
                         f"(this tcomp reads version {FORMAT_VERSION})")
    from tcomp.ir.ops.pyop import attach, loading

    ops = state.get("python_ops") or {}
    with loading(ops):
        graph = from_json(state["graph"])
    attach(graph, ops)
    outs, updates = _rebuild(graph, state["inputs"], state["shared"], state["n_outputs"], state["targets"], True)
    return _make(fn_cls, state["params"], outs, state["single_output"], updates, state["name"], state["options"])
