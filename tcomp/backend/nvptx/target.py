"""One kernel body, two targets: NVPTX (a real grid) and the CPU grid emulator.

Why an abstraction at all: the issue asks that the *same* kernel bodies run on the GPU and,
without one, on the CPU with thread and block ids supplied by loops.  So a kernel is written
once against :class:`KernelBuilder`, which knows the target:

* ``gpu``: ``void k(ptr ptrs, ptr params)`` with ``nvvm.annotations`` marking it a kernel,
  ids read from ``llvm.nvvm.read.ptx.sreg.*``, block memory a ``[n x T] addrspace(3)``
  global, a barrier ``llvm.nvvm.barrier0``;
* ``emu``: ``void k(ptr ptrs, ptr params, i64 nblocks)`` for the host triple: a loop over
  blocks and, inside, one loop over the block's threads *per phase*; block memory is an
  ``alloca``, per-thread values that live across a barrier are ``alloca`` arrays indexed by
  the thread id.

Kernels that use block memory are written as a *block program*: a list of phases (Python
callbacks emitting per-thread code) and uniform loops of phases.  Consecutive phases are
separated by a barrier on the GPU; the emulator runs each phase for every thread before the
next phase starts, which is exactly the barrier's guarantee.  No SSA value crosses a
phase: what a thread keeps across a barrier goes through :meth:`KernelBuilder.private`.

Arguments: every pointer and every run-time dim of a kernel is loaded, in the entry block,
from two tables (``ptrs``: device addresses, ``params``: i64 registers) that the host
fills once per call for the whole program, so a launch passes two pointers and a
kernel's signature never depends on which dims happen to be symbolic.
"""
from __future__ import annotations

import shutil
import subprocess

from llvmlite import ir

from tcomp.backend.cpu import irutil as u

TRIPLE = "nvptx64-nvidia-cuda"
#: PTX ISA version requested per architecture (ptxas accepts a PTX version >= the arch's minimum)
PTX_FEATURES = {"sm_70": "+ptx64", "sm_75": "+ptx65", "sm_80": "+ptx70", "sm_86": "+ptx71", "sm_89": "+ptx78",
                "sm_90": "+ptx78"}
#: threads per block of every kernel (a compile-time constant: tree reductions unroll over it)
BLOCK = 256
SHARED = 3


def _sreg(b: ir.IRBuilder, name: str) -> ir.Value:
    fn = u.intrinsic(b.module, f"llvm.nvvm.read.ptx.sreg.{name}", u.I32, [])
    return b.zext(b.call(fn, []), u.I64)


class KernelBuilder:
    """Builds one kernel function of ``module`` for ``target`` ('gpu' or 'emu')."""

    def __init__(self, module: ir.Module, name: str, target: str, block: int = BLOCK):
        if target not in ("gpu", "emu"):
            raise ValueError(f"target must be 'gpu' or 'emu', got {target!r}")
        self.module, self.name, self.target, self.block = module, name, target, block
        args = [u.PTR, u.PTR] + ([u.I64] if target == "emu" else [])
        self.fn = ir.Function(module, ir.FunctionType(ir.VoidType(), args), name=name)
        for a in self.fn.args[:2]:
            a.add_attribute("noalias")
        self.entry = self.fn.append_basic_block("entry")
        start = self.fn.append_basic_block("start")
        self.b = ir.IRBuilder(start)
        self.slots: list = []     # value ids, in ptrs-table order
        self.params: list = []    # register names, in params-table order
        self._ptr_cache: dict = {}
        self._param_cache: dict = {}
        self._shared = 0
        self.tid = self.bid = self.nbid = None
        if target == "gpu":
            module.add_named_metadata("nvvm.annotations", [self.fn, ir.MetaDataString(module, "kernel"),
                                                           ir.Constant(u.I32, 1)])

    # -- arguments -------------------------------------------------------------------------
    def _at_entry(self):
        return ir.IRBuilder(self.entry)

    def ptr(self, value_id: int) -> ir.Value:
        """The device address of value ``value_id`` (its root plus its view offset)."""
        if value_id not in self._ptr_cache:
            self.slots.append(value_id)
            eb = self._at_entry()
            at = eb.gep(self.fn.args[0], [ir.Constant(u.I64, len(self.slots) - 1)], source_etype=u.PTR)
            self._ptr_cache[value_id] = eb.load(at, typ=u.PTR)
        return self._ptr_cache[value_id]

    def dim(self, ref):
        """A DimRef as an int (literal) or an i64 loaded from the params table."""
        if not isinstance(ref, str):
            return ref
        return self._param(ref, u.I64)

    def fdim(self, ref) -> ir.Value:
        """An f64 register (float arange bounds) as a double."""
        if not isinstance(ref, str):
            return ir.Constant(u.F64, float(ref))
        return self._param(ref, u.F64)

    def _param(self, ref, ty):
        key = (ref, str(ty))
        if key not in self._param_cache:
            self.params.append(ref)
            eb = self._at_entry()
            at = eb.gep(self.fn.args[1], [ir.Constant(u.I64, len(self.params) - 1)], source_etype=u.I64)
            self._param_cache[key] = eb.load(at, typ=ty)
        return self._param_cache[key]

    # -- memory ----------------------------------------------------------------------------
    def shared(self, ty: ir.Type, n: int) -> ir.Value:
        """Block memory of ``n`` elements of ``ty`` (one array per block)."""
        arr = ir.ArrayType(ty, n)
        if self.target == "gpu":
            g = ir.GlobalVariable(self.module, arr, f"{self.name}.sh{self._shared}", addrspace=SHARED)
            g.linkage = "internal"
            g.initializer = ir.Constant(arr, None)
            g.align = 16
            self._shared += 1
            return g
        return self._at_entry().alloca(ty, size=n)

    def shared_at(self, base, ty, idx) -> ir.Value:
        if self.target == "gpu":
            return self.b.gep(base, [ir.Constant(u.I64, 0), u.i64(idx)], inbounds=True)
        return self.b.gep(base, [u.i64(idx)], inbounds=True)

    def private(self, ty: ir.Type, n: int = 1):
        """Per-thread storage that survives barriers: ``at(k)`` is element ``k`` of this thread's."""
        if self.target == "gpu":
            slot = self._at_entry().alloca(ty, size=n)

            def at(k):
                return self.b.gep(slot, [u.i64(k)], inbounds=True)
            return at
        slot = self._at_entry().alloca(ty, size=n * self.block)

        def at_emu(k):
            i = self.b.add(self.b.mul(self.tid, ir.Constant(u.I64, n)), u.i64(k))
            return self.b.gep(slot, [i], inbounds=True)
        return at_emu

    # -- the grid ----------------------------------------------------------------------------
    def _grid(self):
        if self.target == "gpu":
            eb = self._at_entry()
            self.tid, self.bid, self.nbid = _sreg(eb, "tid.x"), _sreg(eb, "ctaid.x"), _sreg(eb, "nctaid.x")
        else:
            self.nbid = self.fn.args[2]

    def pointwise(self, n, body) -> None:
        """``for i in grid-stride range(n): body(i)`` (no block memory, no barrier)."""
        self._grid()
        b = self.b
        blk = ir.Constant(u.I64, self.block)

        def per_thread():
            start = b.add(b.mul(self.bid, blk), self.tid)
            stride = b.mul(self.nbid, blk)
            _strided_loop(b, start, u.i64(self.dim(n) if isinstance(n, str) else n), stride, body)
        if self.target == "gpu":
            per_thread()
            return
        u.for_range(b, self.nbid, lambda bid: self._emu_threads(bid, per_thread), name="blk")

    def _emu_threads(self, bid, fn):
        self.bid = bid

        def one(tid):
            self.tid = tid
            fn()
        u.for_range(self.b, self.block, one, name="thr")

    def blocks(self, rows, program) -> None:
        """Run the block program ``program`` once per row in a grid-stride loop over blocks.

        ``program``: list of ``callable(row, loops)`` phases and ``("loop", count, program)``
        items (``count`` an i64 uniform over the block); ``loops`` is the list of enclosing
        loop variables."""
        self._grid()
        b = self.b
        rows = u.i64(rows)

        def run_items(items, row, loops):
            for n, it in enumerate(items):
                if n and self.target == "gpu":
                    self.barrier()
                if isinstance(it, tuple):
                    def one_iteration(i, sub=it[2]):
                        run_items(sub, row, loops + [i])
                        self.barrier()
                    u.for_range(b, it[1], one_iteration, name="ph")
                elif self.target == "gpu":
                    it(row, loops)
                else:
                    def per_thread(t, it=it):
                        self.tid = t
                        it(row, loops)
                    u.for_range(b, self.block, per_thread, name="thr")

        def per_block():
            def one_row(row):
                run_items(program, row, [])
                self.barrier()
            _strided_loop(b, self.bid, rows, self.nbid, one_row)
        if self.target == "gpu":
            per_block()
            return

        def emu_block(bid):
            self.bid = bid
            per_block()
        u.for_range(b, self.nbid, emu_block, name="blk")

    def barrier(self) -> None:
        if self.target == "gpu":
            self.b.call(u.intrinsic(self.module, "llvm.nvvm.barrier0", ir.VoidType(), []), [])

    def finish(self) -> None:
        self.b.ret_void()
        eb = self._at_entry()
        eb.position_at_end(self.entry)
        eb.branch(self.fn.blocks[1])


def _strided_loop(b, start, stop, stride, body) -> None:
    pre = b.block
    head = b.append_basic_block("gs.head")
    loop = b.append_basic_block("gs.body")
    done = b.append_basic_block("gs.done")
    b.branch(head)
    b.position_at_end(head)
    iv = b.phi(u.I64)
    iv.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", iv, stop), loop, done)
    b.position_at_end(loop)
    body(iv)
    iv.add_incoming(b.add(iv, stride), b.block)
    b.branch(head)
    b.position_at_end(done)


# -- PTX ---------------------------------------------------------------------------------------

def _init():
    import llvmlite.binding as llvm

    from tcomp.runtime.engine import target_machine

    target_machine()  # the engine's initialization first (it owns llvm.initialize*)
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    return llvm


_machines: dict = {}


def nvptx_machine(arch: str = "sm_80"):
    if arch not in PTX_FEATURES:
        raise ValueError(f"cuda_arch must be one of {', '.join(PTX_FEATURES)}, got {arch!r}")
    if arch not in _machines:
        llvm = _init()
        try:
            t = llvm.Target.from_triple(TRIPLE)
        except RuntimeError as e:
            raise RuntimeError(f"this llvmlite has no NVPTX target: {e}") from None
        _machines[arch] = t.create_target_machine(cpu=arch, features=PTX_FEATURES[arch], opt=3)
    return _machines[arch]


def new_module(name: str, target: str) -> ir.Module:
    m = ir.Module(name=name)
    if target == "gpu":
        m.triple = TRIPLE
        m.data_layout = str(nvptx_machine().target_data)
    return m


def emit_ptx(llvm_ir: str, arch: str = "sm_80") -> str:
    """Optimized PTX of a module made for the gpu target (in this process: every intrinsic the
    kernels emit is one NVPTX selects, see the module docstring of ``codegen``)."""
    llvm = _init()
    tm = nvptx_machine(arch)
    mod = llvm.parse_assembly(llvm_ir)
    mod.triple = TRIPLE
    mod.verify()
    pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=3))
    pb.getModulePassManager().run(mod, pb)
    return tm.emit_assembly(mod)


def find_ptxas():
    import glob

    found = shutil.which("ptxas")
    if found:
        return found
    cands = sorted(glob.glob("/usr/local/cuda*/bin/ptxas"))
    return cands[-1] if cands else None


def ptxas(ptx: str, arch: str, workdir) -> None:
    """Assemble ``ptx`` for ``arch`` with ptxas; raise RuntimeError with its log on failure."""
    import os

    exe = find_ptxas()
    if exe is None:
        raise RuntimeError("ptxas not found (install the CUDA toolkit)")
    src = os.path.join(str(workdir), f"k_{arch}.ptx")
    with open(src, "w") as fh:
        fh.write(ptx)
    res = subprocess.run([exe, f"-arch={arch}", src, "-o", src[:-4] + ".cubin"], capture_output=True, text=True,
                         timeout=300)
    if res.returncode != 0:
        raise RuntimeError(f"ptxas -arch={arch} failed:\n{res.stderr[-4000:]}")


__all__ = ["KernelBuilder", "BLOCK", "TRIPLE", "emit_ptx", "nvptx_machine", "new_module", "ptxas", "find_ptxas"]
