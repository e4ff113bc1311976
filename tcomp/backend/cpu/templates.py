"""Reusing an emitted kernel for a structurally identical node, without emitting it again.

Why: a deep graph is often the same few kernels many times over (a long chain cut into
bounded fused kernels, an unrolled recurrence, its gradient).  ``build_module`` already
keeps one copy of byte-identical kernels, but only after emitting each one through
llvmlite's Python IR builder, which costs ~10 us per instruction plus as much again to
print it for the comparison: most of the backend's compile time on such graphs.

A kernel's code depends only on its *signature*: the kernel kind and op, its attributes,
the types of its results, and per operand (walking inline producers for elementwise
kernels and reductions) its op/attributes/type, the value of an inlined scalar constant,
or, for a leaf, which leaf it is, its type and its layout; plus which leaf may alias the
output.  Symbolic dims enter the code only as loads from the kernel's local parameter
table, whose entries (``KernelCtx.slots``) are global offsets of the dims, strides and
extras of nodes of the kernel.  So a template keeps the function and, for each local
slot, *which* node of the signature (by position) and which entry of it; a hit maps
those back to the new node's own offsets.  A slot that names a node outside the
signature makes the template unusable (the kernel is then emitted as before).

``REUSE = False`` turns it off; tests check that the module text and the gather index
are identical either way.
"""
from __future__ import annotations

from tcomp.ir.types import TupleType

#: switch for tests (the result must not depend on it)
REUSE = True
#: debugging aid: on every hit also emit the kernel and raise if its code or slots differ
CHECK = False
#: kernel kinds whose code reads inline producers (their expression is part of the signature)
EXPRESSION_KINDS = ("elemwise", "reduce")


def _attrs_key(attrs: dict):
    return tuple(sorted(attrs.items()))


class KernelTemplates:
    def __init__(self, prog):
        self.prog = prog
        self.check = CHECK
        self.templates: dict = {}  # signature -> (fn, relative slots) or None (not reusable)
        self._pending = None       # (node, signature, local nodes) of the last lookup miss

    # -- signatures ------------------------------------------------------------------------
    def _signature(self, n, leaves, aliased):
        prog, g = self.prog, self.prog.g
        kind = prog.kernel_kind(n)
        results = prog.results(n)
        leaf_index = {}
        for k, leaf in enumerate(leaves):
            leaf_index.setdefault(leaf, k)
        tokens, local = [], []
        if kind == "fused":
            tokens.append(("f", _attrs_key(g.attrs(n))))
            local.append(n)
            for o in g.operands(n):
                local.append(o)
                if prog.is_scalar_const(o):
                    tokens.append(("c", g.type(o), g.attrs(o)["value"]))
                else:
                    tokens.append(("l", leaf_index[o], g.type(o), prog.layout[o]))
        elif kind in EXPRESSION_KINDS:
            roots = g.operands(n)[:1] if g.op(n) == "alloc" else g.operands(n)
            self._walk(n, roots, leaf_index, tokens, local)
        else:  # reads its operands' memory (leaves) and, for host-value operands, only types
            tokens.append(("k", g.op(n), _attrs_key(g.attrs(n)), g.type(n)))
            local.append(n)
            for o in g.operands(n):
                local.append(o)
                tokens.append(("o", leaf_index.get(o), g.type(o), prog.layout[o], prog.role[o] == "hostval"))
        key = (kind, tuple(tokens), tuple(g.type(r) for r in results),
               tuple(leaf_index[leaf] for leaf in leaves), aliased)
        return key, local + list(results) + list(leaves)

    def _walk(self, n, roots, leaf_index, tokens, local) -> None:
        """Pre-order tokens of ``n``'s expression (its inline producers expanded), the order
        ``KernelCtx.value`` and ``expression_leaves`` walk it in."""
        prog, g = self.prog, self.prog.g
        seen: dict = {}
        stack = [(n, True)]
        while stack:
            m, is_root = stack.pop()
            if m in seen:
                tokens.append(("ref", seen[m]))
                continue
            seen[m] = len(local)
            local.append(m)
            t = g.type(m)
            if prog.is_scalar_const(m) and not is_root:
                tokens.append(("c", t, g.attrs(m)["value"]))
            elif is_root or prog.role[m] == "inline":
                ops = roots if is_root else g.operands(m)
                tokens.append(("e", g.op(m), _attrs_key(g.attrs(m)), t, len(ops)))
                stack.extend((o, False) for o in reversed(ops))
            else:
                tokens.append(("l", leaf_index[m], t, prog.layout[m]))

    # -- parameter slots ---------------------------------------------------------------------
    def _entries(self, m):
        """(field, start, count) of the parameter-array entries that belong to node ``m``."""
        prog = self.prog
        t = prog.g.type(m)
        nd = 0 if isinstance(t, TupleType) else t.ndim
        out = [("d", prog.dims_off[m], nd)]
        if m in prog.strides_off:
            out.append(("s", prog.strides_off[m], nd))
        if m in prog.extra_off:
            out.append(("x", prog.extra_off[m], prog._extra_len(m)))
        return out

    def _base(self, field, m) -> int:
        prog = self.prog
        return {"d": prog.dims_off, "s": prog.strides_off, "x": prog.extra_off}[field][m]

    def _relative(self, local, slots):
        """Each global offset in ``slots`` as (field, position in ``local``, entry), or None."""
        where = {}
        for pos, m in enumerate(local):
            for field, start, count in self._entries(m):
                for a in range(count):
                    where.setdefault(start + a, (field, pos, a))
        rel = []
        for off in slots:
            if off not in where:
                return None
            rel.append(where[off])
        return rel

    # -- use -----------------------------------------------------------------------------------
    def lookup(self, n, leaves, aliased):
        """(function, this node's local slots as global offsets) for a known signature, else
        None (then :meth:`record` the emitted kernel)."""
        self._pending = None
        if not REUSE:
            return None
        try:
            sig = self._signature(n, leaves, aliased)
            if sig is not None:
                hash(sig[0])
        except (TypeError, KeyError):  # an unhashable attribute, an operand of an unforeseen role: no template
            sig = None
        if sig is None:
            return None
        key, local = sig
        hit = self.templates.get(key, False)
        if hit is False:
            self._pending = (n, key, local)
            return None
        if hit is None:
            return None
        fn, rel = hit
        return fn, [self._base(field, local[pos]) + a for field, pos, a in rel]

    def record(self, n, fn, slots, hit=None) -> None:
        """Keep the kernel just emitted for ``n`` (its local slots, in local order) as the
        template of the signature :meth:`lookup` computed for it; in check mode ``hit`` is
        what the lookup returned, which must be exactly what was emitted."""
        if hit is not None:
            if hit[0] is not fn or list(hit[1]) != list(slots):
                raise AssertionError(f"cpu backend: kernel template for %{n} ({self.prog.describe(n)}) differs from "
                                     f"its emitted code or parameter slots ({hit[0].name} vs {fn.name}, "
                                     f"{list(hit[1])} vs {list(slots)})")
            return
        if self._pending is None or self._pending[0] != n:
            return
        _, key, local = self._pending
        self._pending = None
        rel = self._relative(local, slots)
        self.templates[key] = None if rel is None else (fn, rel)


# -- calls from the entry ------------------------------------------------------------------------

#: a kernel with at most this many pointer arguments is called with them loaded in the entry;
#: one with more through a per-template wrapper reading them via a constant slot table, so
#: the entry stays a few instructions per kernel (a deep graph's kernels can have hundreds of
#: results and operands, and LLVM's time on one huge entry function dominated the compile)
DIRECT_ARGS = 8


def emit_kernel_call(b, fn, ptrs, slots: list, local, tag: str):
    """Call kernel ``fn`` from the entry with the data pointers ``ptrs[slots]`` and its local
    parameter table ``local``; returns its return code."""
    from llvmlite import ir

    from . import irutil as u

    if len(slots) <= DIRECT_ARGS:
        args = [b.load(b.gep(ptrs, [ir.Constant(u.I64, s)], source_etype=u.PTR, inbounds=True), typ=u.PTR)
                for s in slots]
        return b.call(fn, args + [local])
    module = fn.module
    aty = ir.ArrayType(u.I32, len(slots))
    table = ir.GlobalVariable(module, aty, name=f"ptab.{tag}")
    table.linkage = "internal"
    table.global_constant = True
    table.initializer = ir.Constant(aty, list(slots))
    return b.call(_table_wrapper(fn, len(slots)), [ptrs, table, local])


def _table_wrapper(fn, nptr: int):
    """``i32 <fn>.tab(ptr ptrs, ptr table, ptr params)``: ``fn(ptrs[table[0]], ..., params)``."""
    from llvmlite import ir

    from . import irutil as u

    module = fn.module
    name = f"{fn.name}.tab"
    if name in module.globals:
        return module.globals[name]
    w = ir.Function(module, ir.FunctionType(u.I32, [u.PTR, u.PTR, u.PTR]), name=name)
    w.linkage = "internal"
    w.attributes.add("noinline")  # inlined, it would put every load back into the entry
    ptrs, table, params = w.args
    b = ir.IRBuilder(w.append_basic_block("entry"))
    args = []
    for k in range(nptr):
        s = b.load(b.gep(table, [ir.Constant(u.I64, k)], source_etype=u.I32, inbounds=True), typ=u.I32)
        args.append(b.load(b.gep(ptrs, [b.sext(s, u.I64)], source_etype=u.PTR, inbounds=True), typ=u.PTR))
    b.ret(b.call(fn, args + [params]))
    return w
