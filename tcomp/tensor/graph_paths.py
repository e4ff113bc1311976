"""More Theano module paths, found missing by the API sweep: ``theano.tensor.sort`` (sort,
argsort, topk, ...), ``theano.tensor.subtensor`` (set_subtensor, inc_subtensor, take, ...)
and ``theano.gof.graph`` (``inputs``, ``ancestors``, ``variables``: walks of a symbolic graph).
Registered by ``tcomp.theano_paths.register`` like the others; ``T.sort`` stays the function."""
from __future__ import annotations

from .variable import Variable


def _walk(variables):
    from tcomp.trace import _postorder

    outs = [variables] if isinstance(variables, Variable) else list(variables)
    return _postorder(outs, lambda v: v)


def ancestors(variables, blockers=None):
    """Every variable ``variables`` depend on, themselves included, operands before users
    (Theano's ``gof.graph.ancestors``; the walk stops at ``blockers``)."""
    if not blockers:
        return _walk(variables)
    blocked = {id(b) for b in blockers}
    out, seen = [], set()

    def visit(v):
        stack = [(v, False)]
        while stack:
            u, done = stack.pop()
            if done:
                out.append(u)
                continue
            if id(u) in seen:
                continue
            seen.add(id(u))
            stack.append((u, True))
            if id(u) not in blocked:
                stack.extend((i, False) for i in reversed(list(u.inputs)))
    for v in ([variables] if isinstance(variables, Variable) else variables):
        visit(v)
    return out


def inputs(variables, blockers=None):
    """The variables without an operation (inputs, shared variables and constants) that
    ``variables`` depend on, in the order first reached, ``blockers`` counting as inputs
    (Theano's ``gof.graph.inputs``)."""
    blocked = {id(b) for b in blockers or ()}
    return [v for v in ancestors(variables, blockers) if not v.inputs or id(v) in blocked]


def variables(i, o):
    """The variables on paths from the inputs ``i`` to the outputs ``o`` (Theano's
    ``gof.graph.variables``): ``o``'s ancestors, the walk stopping at ``i``."""
    return ancestors(o, blockers=i)


def members():
    """(sort members, subtensor members, graph members) for the module aliases."""
    from . import basic_more as BM
    from . import extra
    from .topk import argtopk, topk, topk_and_argtopk  # (T.topk is the function, not the module)

    sort = dict(sort=extra.sort, argsort=extra.argsort, topk=topk, argtopk=argtopk, topk_and_argtopk=topk_and_argtopk)
    subtensor = dict(set_subtensor=BM.set_subtensor, inc_subtensor=BM.inc_subtensor, take=BM.take)
    graph = dict(inputs=inputs, ancestors=ancestors, variables=variables, Variable=Variable)
    return sort, subtensor, graph
