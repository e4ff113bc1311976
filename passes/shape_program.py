"""Building the shape program: a hash-consing, folding emitter (:class:`ShapeBuilder`) and
the shape rule of every op (:class:`ShapeRules`), each the symbolic twin of the op's type
rule on concrete shapes: the same dims, every check with its message text (see
``kernel_program`` for the format).

Why fold and hash-cons here: a dim that is static stays a literal, and the same expression
built twice is the same register, so checks that hold by construction (a dim compared with
itself, a static 1 that always broadcasts) vanish at compile time, the memory planner can
match symbolic sizes exactly, and in-place decisions compare registers.  After a node's
type check passes, its static dims become literals and its named dims the first register of
that name (as the planner's ``_check_type`` guarantees), which keeps later folding strong.
"""
from __future__ import annotations

from tcomp.ir import dtypes as dt

from .kernel_program import SCALAR_OPS, Check, Inst, ShapeProgram, apply_inst

COMMUTATIVE = frozenset({"add", "mul", "max", "min", "eq", "ne", "and", "or"})


def _lit(r) -> bool:
    return not isinstance(r, str)


def _arg_order(a):
    """Commutative operands in one order: literals first, then by text."""
    return (isinstance(a, str), str(a))


def esc(s: str) -> str:
    return s.replace("{", "{{").replace("}", "}}")


def message(*parts) -> tuple:
    """(template, args) from text parts and format args (``("int", r)``, ``("tuple", refs)``,
    ``("list", refs)``, ``("type", dtype, refs)``)."""
    tmpl, args = [], []
    for p in parts:
        if isinstance(p, str):
            tmpl.append(esc(p))
        else:
            tmpl.append("{%d}" % len(args))
            args.append(p)
    return "".join(tmpl), tuple(args)


def I(r):  # noqa: E743 - a format arg: an int
    return ("int", r)


def TUP(refs):
    return ("tuple", tuple(refs))


def LST(refs):
    return ("list", tuple(refs))


def TY(dtype, refs):
    return ("type", dtype, tuple(refs))


def joined(items, sep=", "):
    """Parts listing ``items`` (format args) separated by ``sep``."""
    out = []
    for k, it in enumerate(items):
        if k:
            out.append(sep)
        out.append(it)
    return out


class ShapeBuilder:
    def __init__(self):
        self.insts: list = []
        self.checks: list = []
        self._memo: dict = {}
        self.types: dict = {}       # register -> 'i64' / 'f64'
        self.nonneg: set = set()    # registers known >= 0 (dims, their sums and products)
        self.value_inputs: set = set()

    # -- emission ------------------------------------------------------------------------------
    def type_of(self, r) -> str:
        if isinstance(r, str):
            return self.types[r]
        return "f64" if isinstance(r, float) else "i64"

    def _nn(self, r) -> bool:
        return (r in self.nonneg) if isinstance(r, str) else r >= 0

    def emit(self, op, args=(), attrs=(), type=None):
        args = tuple(args)
        if type is None:
            if op in ("eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not"):
                type = "i64"
            elif op == "select":
                type = "f64" if "f64" in (self.type_of(args[1]), self.type_of(args[2])) else "i64"
            elif op == "truediv":
                type = "f64"
            else:
                type = "f64" if any(self.type_of(a) == "f64" for a in args) else "i64"
        if op in COMMUTATIVE:
            if len(args) == 2:  # (the common case, without sorted()'s key calls)
                a, b = args
                if _arg_order(b) < _arg_order(a):
                    args = (b, a)
            else:
                args = tuple(sorted(args, key=_arg_order))
        attrs = tuple(sorted(attrs)) if attrs else ()
        if op not in ("dim", "load") and all(_lit(a) for a in args):
            return apply_inst(Inst(op, args, attrs, type), list(args))
        simple = self._simplify(op, args, type)
        if simple is not None:
            return simple
        key = (op, args, attrs, type)
        hit = self._memo.get(key)
        if hit is not None:  # (the Inst is built only when it is new: most emits fold or hit)
            return hit
        inst = Inst(op, args, attrs, type)
        self.insts.append(inst)
        r = f"s{len(self.insts) - 1}"
        self.types[r] = type
        self._memo[key] = r
        if op == "dim" or (op in ("add", "mul", "max", "floordiv") and all(self._nn(a) for a in args)) \
                or (op == "max" and any(_lit(a) and a >= 0 for a in args)) or op in ("abs",) \
                or (op == "select" and self._nn(args[1]) and self._nn(args[2])):
            self.nonneg.add(r)
        return r

    def _simplify(self, op, args, type):
        a = args[0] if args else None
        b = args[1] if len(args) > 1 else None
        if op == "add" and 0 in args and type == "i64":
            return b if a == 0 else a
        if op == "sub" and b == 0:
            return a
        if op == "sub" and a == b and type == "i64":
            return 0
        if op == "mul" and type == "i64":
            if 1 in args:
                return b if a == 1 else a
            if 0 in args:
                return 0
        if op in ("floordiv",) and b == 1 and type == "i64":
            return a
        if op in ("max", "min") and a == b:
            return a
        if op == "max" and type == "i64" and 0 in args and self._nn(b if a == 0 else a):
            return b if a == 0 else a
        if op in ("eq", "le", "ge") and a == b and type == "i64":
            return 1
        if op in ("ne", "lt", "gt") and a == b and type == "i64":
            return 0
        if op == "select":
            c, x, y = args
            if _lit(c):
                return x if c else y
            if x == y:
                return x
            src = self._inst(c)
            # select(x == k, k, x) is x
            if src is not None and src.op == "eq" and y in src.args and x in src.args and x != y:
                return y
        if op == "and":
            if 0 in args:
                return 0
            if 1 in args:
                return b if a == 1 else a
            if a == b:
                return a
        if op == "or":
            if 1 in args:
                return 1
            if 0 in args:
                return b if a == 0 else a
            if a == b:
                return a
        if op == "neg":
            src = self._inst(a)
            if src is not None and src.op == "neg":
                return src.args[0]
        if op == "le" and a == 0 and self._nn(b) or op == "ge" and b == 0 and self._nn(a):
            return 1
        if op == "lt" and b == 0 and self._nn(a) or op == "gt" and a == 0 and self._nn(b):
            return 0
        if op == "not" and _lit(a):
            return int(not a)
        if op == "eq" and (_lit(a) or _lit(b)):  # a non-negative register is never a negative literal
            lit, reg = (a, b) if _lit(a) else (b, a)
            if lit < 0 and self._nn(reg):
                return 0
        return None

    def _inst(self, r):
        return self.insts[int(r[1:])] if isinstance(r, str) else None

    def check(self, cond, error, parts) -> None:
        """Emit a check (dropped when ``cond`` folded to true)."""
        if _lit(cond) and cond:
            return
        template, args = message(*parts)
        self.checks.append(Check(error, template, args))
        self.insts.append(Inst("check", (cond,), (("code", len(self.checks)),)))

    # -- conveniences ----------------------------------------------------------------------------
    def dim(self, k, axis):
        return self.emit("dim", (), (("input", k), ("axis", axis)))

    def load(self, k, index, dtype):
        self.value_inputs.add(k)
        return self.emit("load", (index,), (("input", k), ("dtype", dtype)), "f64" if dt.is_float(dtype) else "i64")

    def cast(self, r, dtype):
        """``r`` in ``dtype``'s value domain (NumPy's astype: ints wrap, float32 rounds)."""
        t = "f64" if dt.is_float(dtype) else "i64"
        if dtype in ("int64", "float64") and self.type_of(r) == t:
            return r
        if _lit(r):
            return apply_inst(Inst("cast", (r,), (("dtype", dtype),), t), [r])
        src = self._inst(r)
        if src is not None and src.op == "cast" and src.attr("dtype") == dtype:
            return r
        if dt.is_int(dtype) and r in self.nonneg and self.type_of(r) == "i64" and dtype == "int64":
            return r
        return self.emit("cast", (r,), (("dtype", dtype),), t)

    def add(self, a, b):
        return self.emit("add", (a, b))

    def sub(self, a, b):
        return self.emit("sub", (a, b))

    def mul(self, a, b):
        return self.emit("mul", (a, b))

    def eq(self, a, b):
        return self.emit("eq", (a, b))

    def ne(self, a, b):
        return self.emit("ne", (a, b))

    def lt(self, a, b):
        return self.emit("lt", (a, b))

    def le(self, a, b):
        return self.emit("le", (a, b))

    def select(self, c, a, b):
        return self.emit("select", (c, a, b))

    def all_of(self, conds):
        out = 1
        for c in conds:
            out = self.emit("and", (out, c))
        return out

    def any_of(self, conds):
        out = 0
        for c in conds:
            out = self.emit("or", (out, c))
        return out

    def prod(self, refs):
        out = 1
        for r in refs:
            out = self.mul(out, r)
        return out

    def total(self, refs):
        out = 0
        for r in refs:
            out = self.add(out, r)
        return out

    def strides(self, dims) -> tuple:
        """C-contiguous strides (elements) of ``dims``."""
        out, s = [], 1
        for d in reversed(dims):
            out.append(s)
            s = self.mul(s, d)
        return tuple(reversed(out))

    def nbytes(self, dims, dtype):
        return self.mul(self.prod(dims), dt.itemsize(dtype))

    def align(self, r, to):
        return self.mul(self.emit("floordiv", (self.add(r, to - 1), to)), to)

    def finish(self) -> ShapeProgram:
        return ShapeProgram(tuple(self.insts), tuple(self.checks), tuple(sorted(self.value_inputs)))


def shape_parts(shapes):
    return joined([TUP(s) for s in shapes])


SCALAR_ELEMWISE = {  # graph op -> shape-program op, for host values computed in the program
    "add": "add", "sub": "sub", "mul": "mul", "floordiv": "floordiv", "mod": "mod", "maximum": "max",
    "minimum": "min", "neg": "neg", "abs": "abs", "sign": "sign", "eq": "eq", "neq": "ne", "lt": "lt", "le": "le",
    "gt": "gt", "ge": "ge", "logical_and": "and", "logical_or": "or", "logical_not": "not", "where": "select",
    "truediv": "truediv", "floor": "floor", "ceil": "ceil",
}
assert set(SCALAR_ELEMWISE.values()) <= set(SCALAR_OPS)
