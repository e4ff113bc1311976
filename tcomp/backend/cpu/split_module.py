"""Cutting one emitted llvmlite module into several modules compiled at the same time.

Why: LLVM compiles one module on one core, and a big program's module (hundreds of
kernels, or a deep gradient's huge ``plan``/``run``) took seconds; the machine has more
cores and the optimizer runs in a pool of processes (``tcomp.runtime.optimizer``).  Also
the entries and the kernels want different pipelines: the kernels O3 with the
vectorizers, the huge straight-line entries of a large program no IR passes and FastISel
(``HostProgram.emit_parts`` says why).

How: the module is emitted as for one module (kernel deduplication and templates
unchanged), in two phases.  After the kernels are emitted, :meth:`Splitter.kernel_parts`
groups them and returns their modules, so the caller can hand them to the optimizer while
it emits and prints ``plan``/``run``; :meth:`Splitter.host_part` then makes the module of
everything defined since (the entries and their helpers).  A program with its entries
apart may also call :meth:`Splitter.flush` between kernels: the kernels so far become a
module at once, so LLVM starts while Python emits the rest (a first compile's Python and
LLVM then share the cores instead of taking turns).  References are read from the
printed text of each definition (``@"name"``: every global llvmlite prints is quoted), so
nothing of llvmlite's object model beyond printing is relied on.

* Cheap, read-only definitions (``alwaysinline`` functions such as the math library,
  internal constants) are copied into every module that uses them: LLVM still sees their
  values and bodies.
* Kernel-side definitions that reference each other (a kernel, its parallel worker and
  the pool task; a worker shared by structurally equal kernels) stay together: connected
  components, packed into the groups by size (largest first onto the lightest group).
* A definition used from another module is made ``hidden`` (visible inside the one JIT
  library the objects are linked into, never exported) and declared where it is used.
  The kernels the entries will call are the kernel side's roots (definitions no other
  kernel-side definition uses), hidden before their modules are printed.
"""
from __future__ import annotations

import re

from llvmlite import ir

_REF = re.compile(r'@"((?:[^"\\]|\\.)*)"')


def _defined(gv) -> bool:
    if isinstance(gv, ir.Function):
        return bool(gv.blocks)
    return getattr(gv, "initializer", None) is not None


def _copyable(gv) -> bool:
    """Read-only code or data that each module may have its own copy of."""
    if gv.linkage not in ("internal", "private"):
        return False
    if isinstance(gv, ir.Function):
        return "alwaysinline" in gv.attributes
    return bool(getattr(gv, "global_constant", False))


def _declaration(gv) -> str:
    if isinstance(gv, ir.Function):
        ft = gv.ftype
        args = ", ".join(str(t) for t in ft.args)
        if ft.var_arg:
            args += ", ..." if args else "..."
        return f'declare {ft.return_type} {gv.get_reference()}({args})'
    return f'{gv.get_reference()} = external global {gv.value_type}'


def _size(fn) -> tuple:
    return len(fn.blocks), sum(len(blk.instructions) for blk in fn.blocks)


def remember(fn: ir.Function, body: str) -> None:
    """Keep the printed body of a complete function (its text after the first line, as
    ``str(fn).split("\n", 1)[1]``, which the backend prints anyway to find identical
    kernels and workers), so that the splitter prints only its header (name and linkage
    change after that; printing is most of a first compile's Python time).  A function
    with blocks or instructions added since is printed afresh."""
    fn._split_body = (_size(fn), body)


def _text(gv) -> str:
    """``str(gv)``, from the remembered body where it is still the function's."""
    memo = getattr(gv, "_split_body", None) if isinstance(gv, ir.Function) else None
    if memo is not None and memo[0] == _size(gv):
        head: list = []
        gv.descr_prototype(head)
        return head[0] + memo[1]
    return str(gv)


class _Union:
    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        root = x
        while self.parent.setdefault(root, root) != root:
            root = self.parent[root]
        while x != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def join(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


class Splitter:
    """The two phases over one module (see the module docstring)."""

    def __init__(self, module: ir.Module):
        self.module = module
        self.text: dict = {}   # definition name -> its printed text
        self.refs: dict = {}   # definition name -> names of the definitions it references
        self.calls: dict = {}  # definition name -> every reference, repeats included
        self.owner: dict = {}  # non-copyable definition name -> module index
        self.done: set = set()  # definitions already in a returned module
        self._held = None       # (index, extern, body) of a group kept back for the host
        self._flushed = 0       # modules made by flush (their indices come first)
        self._counted: dict = {}  # definition name -> its instruction count (flush)

    # -- helpers -------------------------------------------------------------------------------
    def _defs(self) -> dict:
        return {name: gv for name, gv in self.module.globals.items() if _defined(gv)}

    def _printed(self, name: str) -> str:
        t = self.text.get(name)
        if t is None:
            t = self.text[name] = _text(self.defs[name])
            found = [r for r in _REF.findall(t) if r in self.defs and r != name]
            self.refs[name] = set(found)
            self.calls[name] = found
        return t

    def _cost(self, name: str) -> int:
        """About how much code LLVM sees for a definition: its text plus one copy of every
        ``alwaysinline`` function per call (a fused tanh chain is mostly inlined tanh)."""
        cost = len(self.text[name])
        for r in self.calls[name]:
            if r in self.copyable and isinstance(self.defs[r], ir.Function):
                cost += len(self._printed(r))
        return cost

    def _closure(self, names) -> set:
        """``names`` plus the copyable definitions they use (transitively)."""
        out, todo = set(names), list(names)
        while todo:
            for r in self.refs[todo.pop()]:
                if r in self.copyable and r not in out:
                    self._printed(r)
                    out.add(r)
                    todo.append(r)
        return out

    def _layout(self, names, index):
        order = self.order
        body = sorted(self._closure(names), key=order.get)
        extern = sorted({r for n in body for r in self.refs[n]
                         if r not in self.copyable and self.owner.get(r, index) != index}, key=order.get)
        return extern, body

    def _hide(self, names) -> None:
        for r in names:  # used from another module: visible in the library only
            gv = self.defs[r]
            if gv.linkage in ("internal", "private"):
                gv.linkage = "hidden"
                self.text[r] = _text(gv)

    def _emit(self, extern, body) -> str:
        m = self.module
        lines = [f'; ModuleID = "{m.name}"', f'target triple = "{m.triple}"',
                 f'target datalayout = "{m.data_layout}"', '']
        lines += [it.get_declaration() for it in m.get_identified_types().values()]
        lines += [str(gv) for gv in m.globals.values() if not _defined(gv)]
        lines += [_declaration(self.defs[r]) for r in extern]
        lines += [self.text[n] for n in body]
        return "\n".join(lines + m._get_metadata_lines())

    def _refresh(self) -> None:
        self.defs = self._defs()
        self.order = {name: k for k, name in enumerate(self.module.globals)}
        self.copyable = {name for name, gv in self.defs.items() if _copyable(gv)}

    # -- phases ---------------------------------------------------------------------------------
    def flush(self, min_instructions: int):
        """The module text of the kernel-side definitions made since the last flush, once
        they have ``min_instructions`` instructions (else None: nothing changes), so that
        LLVM starts on them while later kernels are emitted.  Each is made ``hidden`` before
        it is printed: a kernel emitted later may call one of them (a shared parallel
        worker) from its own module.  Call it only between kernels, with every definition
        made so far complete (their text is final from here on)."""
        self._refresh()
        new = [n for n in self.defs if n not in self.owner and n not in self.copyable]
        total = 0
        for n in new:
            count = self._counted.get(n)
            if count is None:
                gv = self.defs[n]
                count = _size(gv)[1] if isinstance(gv, ir.Function) else 1
                self._counted[n] = count
            total += count
        if not new or total < min_instructions:
            return None
        index = self._flushed
        self._flushed += 1
        for n in new:
            gv = self.defs[n]
            if gv.linkage in ("internal", "private"):
                gv.linkage = "hidden"
            self.text.pop(n, None)
            self._printed(n)
            self.owner[n] = index
        extern, body = self._layout(new, index)
        self.done.update(body)
        return self._emit(extern, body)

    def kernel_parts(self, groups: int, hold_one: bool, min_cost: int = 0) -> list:
        """Module texts of the kernels defined so far, in up to ``groups`` modules (one when
        their cost, see :meth:`_cost`, is under ``min_cost``: a second optimizer process
        costs more than it saves on little code); ``hold_one``: the lightest group is kept
        back to be the host's module."""
        self._refresh()
        union = _Union()
        start = [n for n, gv in self.defs.items()
                 if n not in self.copyable and n not in self.owner and isinstance(gv, ir.Function)]
        seen, todo = set(start), list(start)
        while todo:
            name = todo.pop()
            self._printed(name)
            union.find(name)
            for r in self.refs[name]:
                if r in self.owner:  # in a flushed module (hidden): declared here
                    continue
                if r not in self.copyable:
                    union.join(name, r)
                if r not in seen:
                    seen.add(r)
                    todo.append(r)
        members: dict = {}
        for name in seen:
            if name not in self.copyable:
                members.setdefault(union.find(name), []).append(name)
        cost = {root: sum(self._cost(m) for m in ms) for root, ms in members.items()}
        comps = sorted(members, key=lambda root: -cost[root])
        if sum(cost.values()) < min_cost:
            groups = 1
        bins = [[] for _ in range(max(1, min(groups, len(comps))))]
        load = [0] * len(bins)
        for root in comps:
            i = load.index(min(load))
            bins[i].extend(members[root])
            load[i] += cost[root]
        first = self._flushed
        for i, ms in enumerate(bins):
            for name in ms:
                self.owner[name] = first + i
        self.n_groups = first + len(bins)
        layouts = [self._layout(ms, first + i) for i, ms in enumerate(bins)]
        used = {r for name in seen for r in self.refs[name]}
        self._hide([r for extern, _ in layouts for r in extern] +
                   [n for n in seen if n not in used and n not in self.copyable])
        held = load.index(min(load)) if hold_one and comps else None
        out = []
        for i, (extern, body) in enumerate(layouts):
            if i == held:
                self._held = (first + i, extern, body)
            elif body:
                self.done.update(body)
                out.append(self._emit(extern, body))
        return out

    def host_part(self) -> str:
        """The module of everything defined since :meth:`kernel_parts` (with the held group)."""
        self._refresh()
        index = self._held[0] if self._held is not None else getattr(self, "n_groups", 0)
        names = [n for n in self.defs if n not in self.owner and n not in self.copyable]
        for n in names:
            self.owner[n] = index
            self._printed(n)
        extern, body = self._layout(names, index)
        late = [r for r in extern if self.defs[r].linkage in ("internal", "private")]
        if any(r in self.done for r in late):
            raise RuntimeError(f"split_module: the entries use {late[0]!r}, internal to a module already made")
        self._hide(late)
        if self._held is not None:
            _, k_extern, k_body = self._held
            body = sorted(set(body) | set(k_body), key=self.order.get)
            extern = sorted((set(extern) | set(k_extern)) - set(body), key=self.order.get)
        return self._emit(extern, body)


__all__ = ["Splitter", "remember"]
