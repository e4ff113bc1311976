"""The CPU backend's persistent thread pool, written as LLVM IR by Python (no C compiler,
no libgomp): one module, made once per process for the JIT and linked into every
ahead-of-time library (``parallel.runtime_ir``).

Why a pool: starting threads with ``pthread_create`` per parallel loop per call cost
10-30 us each, more than a 2^17-element loop takes; a pool pays that once per process.

Entry point (what kernels call, ``parallel.parallel_for``)::

    i32 tcomp_cpu_parallel(ptr task, ptr argv, i64 stop, i64 nt, i64 align, i64 pieces)

runs ``task(argv, lo, hi) -> i32`` over ``[0, stop)`` split statically into ``nt`` chunks of
``ceil(stop / nt)`` rounded up to ``align``; chunk 0 belongs to the calling thread, chunk
``w`` to worker ``w``, each cut into ``pieces`` calls; returns the OR of the return codes.
``nt`` is capped at the CPUs in the process's affinity mask (popcount of
``sched_getaffinity``, read again every :data:`CPUS_EVERY` loops; ``tcomp_cpu_pool_set_cap``
overrides it): more threads than CPUs only take turns on them (the last session saw
``num_threads=3`` on 2 CPUs take 14 ms against 4.4 ms at one thread on a 2^22 elementwise
loop).  Chunk and piece boundaries never change the results: every element is computed by
the same loop body whichever call it falls in.

State: one global array of cache-line-padded slots.  Slot 0 is the header: the pool lock
(the pid of the owning process, 0 when free), the pid that started the workers, how many it
started, and counters (``tcomp_cpu_pool_stat``).  Slot ``w`` is worker ``w``'s mailbox:
``seq`` (posted by the caller), ``done`` (the last ``seq`` whose pieces all finished), the
task, its range, the piece counter ``next`` (``seq << 32 | count << 16 | index``), how many
pieces have finished, the OR of their return codes, and two flags saying who is asleep.  The
last slot is the caller's own mailbox: its chunk is posted there too.  One caller at a time
owns the pool (the lock), so a mailbox is only ever filled by one caller and no chunks of two
loops are ever mixed; a piece is claimed by one compare-and-swap of ``next``, which succeeds
only while that word has pieces left, i.e. while its post is running (a worker that wakes late
finds an exhausted or newer word).

Descheduled threads: on a machine with more runnable threads than cores a worker may not
run for milliseconds.  After its own chunk the caller claims the pieces of every mailbox that
no worker has started and runs them itself, so a loop is never much slower than on one
thread; it only waits for pieces a worker is running.  The other way round, a worker done
with its chunk claims the pieces of the caller's that the caller has not started (the caller
was descheduled, or shares its core): with static chunks alone it sat idle until the caller
finished its half.  And a worker woken onto the CPU the
caller runs on (Linux keeps a woken thread next to its waker when the other CPUs are busy;
the two then take turns on one CPU) moves off it before its piece: it narrows its CPU mask
to the other CPUs (``sched_setaffinity`` migrates it at once) and widens it again.  On a
2-vCPU VM at load 6 that took the best 2-thread GEMM 512 from 1.0x to 1.6-1.9x one thread.

Waiting: spin a while on the word (``pause``, reading the clock every few dozen and, after
the first 20 us, calling ``sched_yield`` every ~12 us, so a spinner sharing a CPU with the
thread it waits for lets it run), then sleep in ``futex(FUTEX_WAIT_PRIVATE)`` after raising the "asleep" flag; the
poster stores the word, then reads the flag and wakes only a sleeper (a sequentially
consistent store/load pair on each side, so a wake is never lost).  Workers spin
:data:`WORKER_SPIN_NS` after their last piece, so the next loop of a program finds them awake.
Workers are started lazily, by the first loop that wants them, and detached.

Never blocking on another caller: a caller that finds the pool taken runs its whole loop
inline, as one call over ``[0, stop)`` (what one thread does).  That covers several Python
threads calling compiled functions at once (the first gets the workers, the others run on
their own thread) and nested parallel loops (a loop inside a chunk finds the pool taken by
its own process and runs inline), so nothing waits for a worker that is waiting for it.

``fork``: the child has only the forking thread.  The lock and the header carry a pid; a
lock held by another pid (the parent, frozen at ``fork``) is stolen with a compare-and-swap,
and an owner whose pid is not the one that started the workers forgets them (the slots are
cleared, the worker count is zeroed) and starts its own.  One ``getpid`` per parallel loop,
no ``pthread_atfork`` (not a stable libc symbol for code made at run time).
"""
from __future__ import annotations

import platform

from llvmlite import ir

I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()

ENTRY = "tcomp_cpu_parallel"
STATE = "tcomp_cpu_pool"
#: i64 words per slot: 128 bytes, two cache lines (adjacent-line prefetch shares pairs)
SLOT_WORDS = 16
#: header words (i64 index into slot 0); lock and pid are i32 in the low half
H_LOCK, H_PID, H_NWORKERS = 0, 1, 2
#: counters (``stat``): loops given to the pool, pieces posted to workers, pieces the caller
#: took back, loops run inline because the pool was busy
H_DISPATCHED, H_POSTED, H_TAKEN_BACK, H_INLINE = 3, 4, 5, 6
#: the CPUs this process may run on (popcount of its affinity mask; 0 until first read) and
#: the pieces of callers' chunks that workers ran (``helped``)
H_CPUS, H_HELPED = 7, 8
#: the usable CPUs are read again every this many loops (``os.sched_setaffinity`` later on)
CPUS_EVERY = 256
#: mailbox words (i64 index into slot w); futex words and flags are i32 in the low half
(M_SEQ, M_DONE, M_WORKER_ASLEEP, M_CALLER_ASLEEP, M_TASK, M_ARGV, M_LO, M_HI, M_RC, M_NEXT, M_RUNS,
 M_FINISHED, M_PIECE, M_PIECES, M_CALLER_CPU, M_MOVES) = range(16)
STAT = "tcomp_cpu_pool_stat"
#: what ``i64 tcomp_cpu_pool_stat(i64 which)`` returns, by ``which``
STATS = ("workers", "dispatched", "posted", "worker_pieces", "taken_back", "inline", "moves", "helped", "cpus")
CAP = "tcomp_cpu_pool_set_cap"
#: ``i64 tcomp_cpu_pool_set_cap(i64 n)`` sets the most threads a loop may use whatever the
#: CPU mask says (0: the usable CPUs, the default; tests oversubscribe with it); returns the old
#: most pieces a chunk is cut into (the piece index and count are 16-bit fields of ``next``)
MAX_PIECES = 4096
#: bytes of the CPU masks the worker reads and sets (glibc's cpu_set_t: 1024 CPUs)
CPU_MASK_BYTES = 128
#: nanoseconds a worker spins for its next chunk before sleeping: the next loop of the same
#: program, or of the next call from a Python loop, comes microseconds later and finds it awake
WORKER_SPIN_NS = 100_000
#: nanoseconds the caller spins for a chunk a worker is running (it started, so it ends about
#: when the caller's own did) before sleeping
CALLER_SPIN_NS = 1_000_000
#: ``pause`` instructions between two reads of the clock while spinning (~25 ns each on Zen 4)
SPIN_BATCH = 32
#: ``pause`` instructions between two ``sched_yield`` while spinning (~12 us): on a CPU
#: shared with the thread being waited for (more runnable threads than cores), a spinner that
#: never yields holds that thread off the CPU for its whole spin
YIELD_EVERY = 512
#: nanoseconds of spinning before the first ``sched_yield``: a loop that follows within this
#: long (the next kernel of a program, the next call of a Python loop) finds the worker on
#: its CPU; yielding from the start hands that CPU to any other runnable process for a slice
YIELD_AFTER_NS = 20_000
CLOCK_MONOTONIC = 1

FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 128, 129
#: ``SYS_futex`` per architecture (the Linux syscall tables); elsewhere waits only spin/yield
_SYS_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98, "riscv64": 98,
              "ppc64le": 221, "ppc64": 221, "s390x": 238, "loongarch64": 98}


def _c(v: int, t=I64) -> ir.Constant:
    return ir.Constant(t, v)


def _word(b: ir.IRBuilder, base, k) -> ir.Value:
    return b.gep(base, [k if isinstance(k, ir.Value) else _c(k)], source_etype=I64, inbounds=True)


class _Pool:
    """Emitter of the pool functions into one module."""

    def __init__(self, module: ir.Module, max_threads: int, visibility: str | None):
        self.m = module
        self.max_threads = max_threads
        self.vis = visibility
        self.futex = _SYS_FUTEX.get(platform.machine().lower())
        m = module
        size = SLOT_WORDS * (max_threads + 1)  # header, workers 1..max_threads-1, the caller's chunk
        self.state = ir.GlobalVariable(m, ir.ArrayType(I64, size), name=STATE)
        self.state.initializer = ir.Constant(ir.ArrayType(I64, size), None)
        self.state.align = 128
        self.state.linkage = "internal"
        self.cap = ir.GlobalVariable(m, I64, name="tcomp_cpu_pool_cap")  # not cleared by a reset
        self.cap.initializer = _c(0)
        self.cap.linkage = "internal"
        self.ctpop = m.declare_intrinsic("llvm.ctpop", [I64])
        self.task_ty = ir.FunctionType(I32, [PTR, I64, I64])
        self.getpid = ir.Function(m, ir.FunctionType(I32, []), name="getpid")
        self.create = ir.Function(m, ir.FunctionType(I32, [PTR, PTR, PTR, PTR]), name="pthread_create")
        self.detach = ir.Function(m, ir.FunctionType(I32, [I64]), name="pthread_detach")
        self.syscall = ir.Function(m, ir.FunctionType(I64, [I64], var_arg=True), name="syscall")
        self.yield_ = ir.Function(m, ir.FunctionType(I32, []), name="sched_yield")
        self.clock = ir.Function(m, ir.FunctionType(I32, [I32, PTR]), name="clock_gettime")
        self.getcpu = ir.Function(m, ir.FunctionType(I32, []), name="sched_getcpu")
        self.getaff = ir.Function(m, ir.FunctionType(I32, [I32, I64, PTR]), name="sched_getaffinity")
        self.setaff = ir.Function(m, ir.FunctionType(I32, [I32, I64, PTR]), name="sched_setaffinity")
        arch = platform.machine().lower()
        if arch in ("x86_64", "amd64"):
            self.pause = ir.Function(m, ir.FunctionType(ir.VoidType(), []), name="llvm.x86.sse2.pause")
            self.pause_args = []
        elif arch in ("aarch64", "arm64"):
            self.pause = ir.Function(m, ir.FunctionType(ir.VoidType(), [I32]), name="llvm.aarch64.hint")
            self.pause_args = [_c(1, I32)]  # YIELD
        else:
            self.pause = None
        self.wait = self._emit_wait()
        self.post = self._emit_post()
        self.claim = self._emit_claim()
        self.run_piece = self._emit_run_piece()
        self.worker = self._emit_worker()
        self.entry = self._emit_entry()
        self._emit_stat()
        self._emit_set_cap()

    def _emit_set_cap(self) -> None:
        fn = self._fn(CAP, I64, [I64], internal=False)
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        b.ret(b.atomic_rmw("xchg", self.cap, fn.args[0], "monotonic"))

    def caller_box(self, b) -> ir.Value:
        """The slot the caller posts its own chunk in (after the workers'), so that a worker
        done with its chunk can take pieces of the caller's when the caller was descheduled."""
        return self.slot(b, self.max_threads)

    def _usable_cpus(self, b, head) -> ir.Value:
        """CPUs in this process's affinity mask (popcount), cached in the header and read
        again every :data:`CPUS_EVERY` loops; 1 if the mask cannot be read."""
        word = _word(b, head, H_CPUS)
        have = b.load(word, typ=I64)
        stale = b.or_(b.icmp_signed("<=", have, _c(0)),
                      b.icmp_unsigned("==", b.and_(b.load(_word(b, head, H_DISPATCHED), typ=I64),
                                                   _c(CPUS_EVERY - 1)), _c(0)))
        with b.if_then(stale, likely=False):
            words = CPU_MASK_BYTES // 8
            mask = b.alloca(I64, size=_c(words), name="mask")
            for k in range(words):
                b.store(_c(0), _word(b, mask, k))
            ok = b.icmp_signed("==", b.call(self.getaff, [_c(0, I32), _c(CPU_MASK_BYTES), mask]), _c(0, I32))
            n = _c(0)
            for k in range(words):
                n = b.add(n, b.call(self.ctpop, [b.load(_word(b, mask, k), typ=I64)]))
            b.store(_max(b, b.select(ok, n, _c(1)), _c(1)), word)
        return b.load(word, typ=I64)

    def _bump(self, b, word) -> None:
        b.atomic_rmw("add", word, _c(1), "monotonic")

    def _emit_stat(self) -> None:
        """``i64 tcomp_cpu_pool_stat(i64 which)``: a counter of :data:`STATS` (tests, tuning)."""
        fn = self._fn(STAT, I64, [I64], internal=False)
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        head = self.slot(b, 0)
        which = fn.args[0]
        sums = {}
        for field in (M_RUNS, M_MOVES):  # per-worker counters: summed over the mailboxes
            acc = sums[field] = b.alloca(I64, name=f"sum{field}")
            b.store(_c(0), acc)

            def add(w, field=field, acc=acc):
                v = b.load_atomic(_word(b, self.slot(b, w), field), "monotonic", 8, typ=I64)
                b.store(b.add(b.load(acc, typ=I64), v), acc)
            _for(b, _c(self.max_threads), add, start=_c(1), name="w")
        words = [H_NWORKERS, H_DISPATCHED, H_POSTED, M_RUNS, H_TAKEN_BACK, H_INLINE, M_MOVES, H_HELPED, H_CPUS]
        out = _c(-1)
        for k, word in enumerate(words):
            if word in sums:
                v = b.load(sums[word], typ=I64)
            else:
                v = b.load_atomic(_word(b, head, word), "monotonic", 8, typ=I64)
            out = b.select(b.icmp_signed("==", which, _c(k)), v, out)
        b.ret(out)

    def slot(self, b, w) -> ir.Value:
        w = w if isinstance(w, ir.Value) else _c(w)
        return _word(b, self.base(b), b.mul(w, _c(SLOT_WORDS)))

    def base(self, b) -> ir.Value:
        """The state as an opaque ``ptr`` (llvmlite types a global's address ``[N x i64]*``
        and then refuses stores of other types through it; LLVM folds the round trip)."""
        return b.inttoptr(b.ptrtoint(self.state, I64), PTR)

    def _fn(self, name, ret, args, internal=True):
        fn = ir.Function(self.m, ir.FunctionType(ret, args), name=name)
        if internal:
            fn.linkage = "internal"
        elif self.vis:  # llvmlite has no visibility field; its linkage text is printed verbatim
            fn.linkage = self.vis
        fn.attributes.add("nounwind")
        return fn

    def _futex(self, b, word, op, val):
        if self.futex is None:  # no futex on this OS/arch: give the CPU away and re-check
            b.call(self.yield_, [])
            return
        b.call(self.syscall, [_c(self.futex), word, _c(op), b.zext(val, I64) if val.type != I64 else val,
                              ir.Constant(PTR, None)])

    def _now(self, b, ts) -> ir.Value:
        """CLOCK_MONOTONIC in nanoseconds (vDSO: no system call)."""
        b.call(self.clock, [_c(CLOCK_MONOTONIC, I32), ts])
        sec, nsec = b.load(_word(b, ts, 0), typ=I64), b.load(_word(b, ts, 1), typ=I64)
        return b.add(b.mul(sec, _c(1_000_000_000)), nsec)

    def _emit_wait(self) -> ir.Function:
        """``void wait(ptr word, i32 old, ptr asleep, i64 spin_ns)``: return once ``*word != old``;
        spin (``pause``) for about ``spin_ns``, then sleep in the kernel."""
        fn = self._fn("tcomp_cpu_pool.wait", ir.VoidType(), [PTR, I32, PTR, I64])
        fn.attributes.add("noinline")
        word, old, asleep, spin_ns = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        spin, spin_next, clock, sleep, sleep_loop, sleep_call, out, ret = (
            fn.append_basic_block(n) for n in ("spin", "spin.next", "clock", "sleep", "sleep.loop", "sleep.call",
                                               "out", "ret"))
        ts = b.alloca(I64, size=_c(2), name="ts")
        b.store(_c(0), _word(b, ts, 0))
        b.store(_c(0), _word(b, ts, 1))
        t0 = self._now(b, ts)
        entry = b.block
        b.branch(spin)
        b.position_at_end(spin)
        i = b.phi(I64, name="i")
        i.add_incoming(_c(0), entry)
        v = b.load_atomic(word, "acquire", 4, typ=I32)
        b.cbranch(b.icmp_unsigned("!=", v, old), ret, spin_next)
        b.position_at_end(spin_next)
        if self.pause is not None:
            b.call(self.pause, self.pause_args)
        nxt = b.add(i, _c(1))
        i.add_incoming(nxt, spin_next)
        batch_end = b.icmp_unsigned("==", b.and_(nxt, _c(SPIN_BATCH - 1)), _c(0))
        b.cbranch(batch_end, clock, spin)
        b.position_at_end(clock)
        elapsed = b.sub(self._now(b, ts), t0)
        due = b.and_(b.icmp_unsigned("==", b.and_(nxt, _c(YIELD_EVERY - 1)), _c(0)),
                     b.icmp_signed(">=", elapsed, _c(YIELD_AFTER_NS)))
        with b.if_then(due):
            b.call(self.yield_, [])
        i.add_incoming(nxt, b.block)
        b.cbranch(b.icmp_signed("<", elapsed, spin_ns), spin, sleep)
        b.position_at_end(sleep)
        _store_atomic(b, _c(1, I32), asleep, "seq_cst")
        b.branch(sleep_loop)
        b.position_at_end(sleep_loop)
        v = b.load_atomic(word, "seq_cst", 4, typ=I32)
        b.cbranch(b.icmp_unsigned("!=", v, old), out, sleep_call)
        b.position_at_end(sleep_call)
        self._futex(b, word, FUTEX_WAIT_PRIVATE, old)  # returns at once if *word != old already
        b.branch(sleep_loop)
        b.position_at_end(out)
        _store_atomic(b, _c(0, I32), asleep, "release")
        b.branch(ret)
        b.position_at_end(ret)
        b.ret_void()
        return fn

    def _emit_post(self) -> ir.Function:
        """``void post(ptr word, i32 value, ptr asleep)``: publish ``value``; wake a sleeper."""
        fn = self._fn("tcomp_cpu_pool.post", ir.VoidType(), [PTR, I32, PTR])
        word, value, asleep = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        _store_atomic(b, value, word, "seq_cst")
        sleeping = b.icmp_unsigned("!=", b.load_atomic(asleep, "seq_cst", 4, typ=I32), _c(0, I32))
        with b.if_then(sleeping, likely=False):
            if self.futex is not None:
                self._futex(b, word, FUTEX_WAKE_PRIVATE, _c(1))
        b.ret_void()
        return fn

    def _emit_claim(self) -> ir.Function:
        """``i64 claim(ptr mailbox)``: claim the next unclaimed piece of the chunk posted in the
        mailbox; returns the claimed ``next`` word (``seq << 32 | count << 16 | index``) or -1.

        The count lives in the same word as the index, so one compare-and-swap decides: a
        word with pieces left belongs to a post that is still running (the caller takes back
        every unclaimed piece and waits for every claimed one before it posts that mailbox
        again), so its fields are that post's.  (With the count read from its own field, a
        worker that looked at an exhausted word just as the caller refilled the mailbox for
        a loop with more pieces could claim a piece of a half-written post.)"""
        fn = self._fn("tcomp_cpu_pool.claim", I64, [PTR])
        box = fn.args[0]
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        loop, try_, none = (fn.append_basic_block(n) for n in ("loop", "try", "none"))
        nxt = _word(b, box, M_NEXT)
        b.branch(loop)
        b.position_at_end(loop)
        w = b.load_atomic(nxt, "acquire", 8, typ=I64)
        idx, count = b.and_(w, _c(0xFFFF)), b.and_(b.lshr(w, _c(16)), _c(0xFFFF))
        b.cbranch(b.icmp_unsigned("<", idx, count), try_, none)
        b.position_at_end(try_)
        got = b.cmpxchg(nxt, w, b.add(w, _c(1)), "acq_rel", "acquire")
        with b.if_then(b.extract_value(got, 1)):
            b.ret(w)
        b.branch(loop)
        b.position_at_end(none)
        b.ret(_c(-1))
        return fn

    def _claim_loop(self, b, box, on_piece=None) -> None:
        """Claim and run pieces of ``box`` until none is left (``on_piece(b)`` before each)."""
        fn = b.block.function
        loop, run, done = (fn.append_basic_block(f"drain.{n}") for n in ("loop", "run", "done"))
        b.branch(loop)
        b.position_at_end(loop)
        w = b.call(self.claim, [box])
        b.cbranch(b.icmp_signed("==", w, _c(-1)), done, run)
        b.position_at_end(run)
        if on_piece is not None:
            on_piece(b)
        b.call(self.run_piece, [box, w])
        b.branch(loop)
        b.position_at_end(done)

    def _emit_run_piece(self) -> ir.Function:
        """``void run_piece(ptr mailbox, i64 claimed)``: run one claimed piece (the word
        :meth:`_emit_claim` returned); whoever finishes the chunk's last piece publishes
        ``done = seq``."""
        fn = self._fn("tcomp_cpu_pool.run_piece", ir.VoidType(), [PTR, I64])
        box, w = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        idx, pieces = b.and_(w, _c(0xFFFF)), b.and_(b.lshr(w, _c(16)), _c(0xFFFF))
        seq = b.trunc(b.lshr(w, _c(32)), I32)
        task = b.inttoptr(b.load(_word(b, box, M_TASK), typ=I64), self.task_ty.as_pointer())
        argv = b.inttoptr(b.load(_word(b, box, M_ARGV), typ=I64), PTR)
        lo, hi = b.load(_word(b, box, M_LO), typ=I64), b.load(_word(b, box, M_HI), typ=I64)
        piece = b.load(_word(b, box, M_PIECE), typ=I64)
        plo = _min(b, b.add(lo, b.mul(idx, piece)), hi)
        rc = b.call(task, [argv, plo, _min(b, b.add(plo, piece), hi)])
        b.atomic_rmw("or", _word(b, box, M_RC), b.zext(rc, I64), "monotonic")
        before = b.atomic_rmw("add", _word(b, box, M_FINISHED), _c(1), "acq_rel")
        with b.if_then(b.icmp_signed("==", b.add(before, _c(1)), pieces)):
            b.call(self.post, [_word(b, box, M_DONE), seq, _word(b, box, M_CALLER_ASLEEP)])
        b.ret_void()
        return fn

    def _emit_worker(self) -> ir.Function:
        """``ptr worker(ptr mailbox)``: the pthread start routine; loops for ever, running the
        pieces of each posted chunk that the caller has not taken back, then any pieces of
        the caller's own chunk that the caller has not started (it was descheduled, or its
        CPU is slower): static chunks, balanced at the end by pieces."""
        fn = self._fn("tcomp_cpu_pool.worker", PTR, [PTR])
        box = fn.args[0]
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        loop, inner, run, help_ = (fn.append_basic_block(n) for n in ("loop", "inner", "run", "help"))
        words = CPU_MASK_BYTES // 8
        allowed = b.alloca(I64, size=_c(words), name="allowed")  # the CPUs it was started with
        other = b.alloca(I64, size=_c(words), name="other")
        for k in range(words):
            b.store(_c(0), _word(b, allowed, k))
        have_mask = b.icmp_signed("==", b.call(self.getaff, [_c(0, I32), _c(CPU_MASK_BYTES), allowed]), _c(0, I32))
        entry = b.block
        b.branch(loop)
        b.position_at_end(loop)
        seen = b.phi(I32, name="seen")  # the last seq this worker looked at (mailboxes start at 0)
        seen.add_incoming(_c(0, I32), entry)
        b.call(self.wait, [_word(b, box, M_SEQ), seen, _word(b, box, M_WORKER_ASLEEP), _c(WORKER_SPIN_NS)])
        seq = b.load_atomic(_word(b, box, M_SEQ), "acquire", 4, typ=I32)
        b.branch(inner)
        b.position_at_end(inner)
        w = b.call(self.claim, [box])
        b.cbranch(b.icmp_signed("==", w, _c(-1)), help_, run)
        b.position_at_end(run)
        self._bump(b, _word(b, box, M_RUNS))  # before the piece: counted when the loop returns
        self._leave_callers_cpu(b, box, allowed, other, have_mask)
        b.call(self.run_piece, [box, w])
        b.branch(inner)
        b.position_at_end(help_)
        head = self.slot(b, 0)
        self._claim_loop(b, self.caller_box(b), lambda b: self._bump(b, _word(b, head, H_HELPED)))
        seen.add_incoming(seq, b.block)
        b.branch(loop)
        return fn

    def _leave_callers_cpu(self, b, box, allowed, other, have_mask) -> None:
        """A worker about to run a piece on the CPU the caller posted from (the scheduler
        keeps a woken thread next to its waker when the other CPUs are busy: both then share
        one CPU and two threads are no faster than one) moves: it narrows its CPU mask to the
        others, which migrates it at once, and widens it again, so it is not pinned."""
        words = CPU_MASK_BYTES // 8
        cpu = b.load(_word(b, box, M_CALLER_CPU), typ=I32)
        same = b.icmp_signed("==", b.call(self.getcpu, []), cpu)
        known = b.and_(have_mask, b.and_(b.icmp_signed(">=", cpu, _c(0, I32)),
                                         b.icmp_signed("<", cpu, _c(CPU_MASK_BYTES * 8, I32))))
        with b.if_then(b.and_(same, known), likely=False):
            cpu64 = b.zext(cpu, I64)
            bit = b.shl(_c(1), b.and_(cpu64, _c(63)))
            rest = _c(0)
            for k in range(words):
                v = b.load(_word(b, allowed, k), typ=I64)
                mine = b.icmp_unsigned("==", b.lshr(cpu64, _c(6)), _c(k))
                v = b.select(mine, b.and_(v, b.xor(bit, _c(-1))), v)
                b.store(v, _word(b, other, k))
                rest = b.or_(rest, v)
            with b.if_then(b.icmp_unsigned("!=", rest, _c(0))):  # some other CPU is allowed
                moved = b.call(self.setaff, [_c(0, I32), _c(CPU_MASK_BYTES), other])
                with b.if_then(b.icmp_signed("==", moved, _c(0, I32))):
                    b.call(self.setaff, [_c(0, I32), _c(CPU_MASK_BYTES), allowed])
                    self._bump(b, _word(b, box, M_MOVES))

    def _chunk_bounds(self, b, c, chunk, stop):
        lo = _min(b, b.mul(c, chunk), stop)
        return lo, _min(b, b.add(lo, chunk), stop)

    def _emit_entry(self) -> ir.Function:
        # ``task`` typed as a function pointer so llvmlite can emit the indirect calls
        fn = self._fn(ENTRY, I32, [self.task_ty.as_pointer(), PTR, I64, I64, I64, I64], internal=False)
        task, argv, stop, nt, align, pieces = fn.args
        for a, n in zip(fn.args, ("task", "argv", "stop", "nt", "align", "pieces")):
            a.name = n
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        # at least one of each (callers pass >= 1; a 0 must not divide by zero)
        nt, align, pieces = (_max(b, v, _c(1)) for v in (nt, align, pieces))
        blocks = {n: fn.append_basic_block(n) for n in (
            "contended", "steal", "inline", "owned", "reset", "ready")}
        rc_acc = b.alloca(I32, name="rc")
        tid = b.alloca(I64, name="tid")
        head = self.slot(b, 0)
        lock = _word(b, head, H_LOCK)
        pid = b.call(self.getpid, [])
        got = b.cmpxchg(lock, _c(0, I32), pid, "acquire", "monotonic")
        b.cbranch(b.extract_value(got, 1), blocks["owned"], blocks["contended"])

        b.position_at_end(blocks["contended"])
        holder = b.extract_value(got, 0)
        # held by this process (another Python thread, or a loop around this one): inline;
        # held by another pid: the parent's lock frozen at fork, nobody here will free it
        b.cbranch(b.icmp_unsigned("==", holder, pid), blocks["inline"], blocks["steal"])
        b.position_at_end(blocks["steal"])
        stolen = b.cmpxchg(lock, holder, pid, "acquire", "monotonic")
        b.cbranch(b.extract_value(stolen, 1), blocks["owned"], blocks["inline"])

        b.position_at_end(blocks["inline"])
        self._bump(b, _word(b, head, H_INLINE))
        b.ret(b.call(task, [argv, _c(0), stop]))

        b.position_at_end(blocks["owned"])
        pid_word = _word(b, head, H_PID)
        started_by = b.load(pid_word, typ=I32)
        b.cbranch(b.icmp_unsigned("!=", started_by, pid), blocks["reset"], blocks["ready"])

        b.position_at_end(blocks["reset"])  # first use, or a forked child: no worker exists here
        base = self.base(b)

        def clear(k):  # worker count, counters, mailboxes: not the lock this caller holds
            b.store(_c(0), _word(b, base, k))
        _for(b, _c(SLOT_WORDS * (self.max_threads + 1)), clear, start=_c(H_NWORKERS), name="clear")
        b.store(pid, pid_word)
        b.branch(blocks["ready"])

        b.position_at_end(blocks["ready"])
        # never more threads than CPUs to run them (unless a cap is set): an oversubscribed
        # loop waits for workers that take turns on a CPU with the caller or each other
        cap = b.load_atomic(self.cap, "monotonic", 8, typ=I64)
        cpus = self._usable_cpus(b, head)
        nt = _min(b, nt, b.select(b.icmp_signed(">", cap, _c(0)), cap, cpus))
        with b.if_then(b.icmp_signed("<=", nt, _c(1)), likely=False):  # one CPU: one call, no posts
            self._bump(b, _word(b, head, H_DISPATCHED))
            _store_atomic(b, _c(0, I32), lock, "release")
            b.ret(b.call(task, [argv, _c(0), stop]))
        pieces = _min(b, pieces, _c(MAX_PIECES))
        nworkers = _word(b, head, H_NWORKERS)
        need = _min(b, b.sub(nt, _c(1)), _c(self.max_threads - 1))
        spawn_head, spawn_body, spawn_ok, spawned = (
            fn.append_basic_block(n) for n in ("spawn.head", "spawn.body", "spawn.ok", "spawned"))
        before = b.block
        have0 = b.load(nworkers, typ=I64)
        b.branch(spawn_head)
        b.position_at_end(spawn_head)
        have = b.phi(I64, name="have")
        have.add_incoming(have0, before)
        b.cbranch(b.icmp_signed("<", have, need), spawn_body, spawned)
        b.position_at_end(spawn_body)
        box = self.slot(b, b.add(have, _c(1)))  # cleared by reset, done == seq == 0
        made = b.call(self.create, [tid, ir.Constant(PTR, None), self.worker, box])
        b.cbranch(b.icmp_signed("==", made, _c(0, I32)), spawn_ok, spawned)
        b.position_at_end(spawn_ok)
        b.call(self.detach, [b.load(tid, typ=I64)])
        more = b.add(have, _c(1))
        b.store(more, nworkers)
        have.add_incoming(more, spawn_ok)
        b.branch(spawn_head)
        b.position_at_end(spawned)
        # a failed pthread_create only means fewer workers: the caller runs their chunks
        workers = _min(b, need, b.load(nworkers, typ=I64))
        self._bump(b, _word(b, head, H_DISPATCHED))

        caller_cpu = b.call(self.getcpu, [])  # for workers woken onto it (_leave_callers_cpu)
        chunk = b.sdiv(b.add(stop, b.sub(nt, _c(1))), nt)
        chunk = b.mul(b.sdiv(b.add(chunk, b.sub(align, _c(1))), align), align)

        def fill(box, w):  # chunk w's fields, then its ``next`` word (release): the post
            lo, hi = self._chunk_bounds(b, w, chunk, stop)
            # pieces of ceil(len / pieces) rounded up to align (at least one, maybe empty)
            piece = b.sdiv(b.add(b.sub(hi, lo), b.sub(pieces, _c(1))), pieces)
            piece = _max(b, b.mul(b.sdiv(b.add(piece, b.sub(align, _c(1))), align), align), _c(1))
            count = _max(b, b.sdiv(b.add(b.sub(hi, lo), b.sub(piece, _c(1))), piece), _c(1))
            b.store(b.ptrtoint(task, I64), _word(b, box, M_TASK))
            b.store(b.ptrtoint(argv, I64), _word(b, box, M_ARGV))
            b.store(lo, _word(b, box, M_LO))
            b.store(hi, _word(b, box, M_HI))
            b.store(piece, _word(b, box, M_PIECE))
            b.store(count, _word(b, box, M_PIECES))
            b.store(caller_cpu, _word(b, box, M_CALLER_CPU))
            b.store(_c(0), _word(b, box, M_RC))
            b.store(_c(0), _word(b, box, M_FINISHED))
            seq = b.add(b.load(_word(b, box, M_SEQ), typ=I32), _c(1, I32))
            word = b.or_(b.shl(b.zext(seq, I64), _c(32)), b.shl(count, _c(16)))
            _store_atomic(b, word, _word(b, box, M_NEXT), "release")
            return seq

        def give(w):
            box = self.slot(b, w)
            seq = fill(box, w)
            b.call(self.post, [_word(b, box, M_SEQ), seq, _word(b, box, M_WORKER_ASLEEP)])
            b.atomic_rmw("add", _word(b, head, H_POSTED), b.load(_word(b, box, M_PIECES), typ=I64), "monotonic")

        own = self.caller_box(b)  # posted first: a worker that finishes early finds it there
        _store_atomic(b, fill(own, _c(0)), _word(b, own, M_SEQ), "monotonic")  # (nobody sleeps on it)
        _for(b, b.add(workers, _c(1)), give, start=_c(1), name="give")

        b.store(_c(0, I32), rc_acc)
        self._claim_loop(b, own)

        def extra(c):  # chunks without a worker
            lo, hi = self._chunk_bounds(b, c, chunk, stop)
            b.store(b.or_(b.load(rc_acc, typ=I32), b.call(task, [argv, lo, hi])), rc_acc)
        _for(b, nt, extra, start=b.add(workers, _c(1)), name="extra")

        def take_back(w):  # pieces no worker has started: run them here
            box = self.slot(b, w)
            # a worker that has claimed none may be queued behind this thread on its CPU (woken
            # next to its waker while the other CPU was idle): yield once, so it gets to run and
            # move to another CPU (_leave_callers_cpu) instead of waiting until this loop ends
            idx = b.and_(b.load_atomic(_word(b, box, M_NEXT), "monotonic", 8, typ=I64), _c(0xFFFF))
            with b.if_then(b.icmp_unsigned("==", idx, _c(0)), likely=False):
                b.call(self.yield_, [])
            self._claim_loop(b, box, lambda b: self._bump(b, _word(b, head, H_TAKEN_BACK)))
        _for(b, b.add(workers, _c(1)), take_back, start=_c(1), name="take")

        def collect(w):  # every box's pieces finished (the caller's own: a worker may run one)
            box = b.select(b.icmp_signed("==", w, _c(0)), own, self.slot(b, w))
            seq = b.load(_word(b, box, M_SEQ), typ=I32)
            b.call(self.wait, [_word(b, box, M_DONE), b.sub(seq, _c(1, I32)),
                               _word(b, box, M_CALLER_ASLEEP), _c(CALLER_SPIN_NS)])
            rc = b.trunc(b.load(_word(b, box, M_RC), typ=I64), I32)
            b.store(b.or_(b.load(rc_acc, typ=I32), rc), rc_acc)
        _for(b, b.add(workers, _c(1)), collect, start=_c(0), name="collect")
        _store_atomic(b, _c(0, I32), lock, "release")
        b.ret(b.load(rc_acc, typ=I32))
        return fn


def _store_atomic(b: ir.IRBuilder, value, ptr, ordering: str) -> None:
    """``store atomic`` through an opaque pointer (llvmlite's ``store_atomic`` wants a typed one)."""
    b._insert(ir.instructions.StoreAtomicInstr(b.block, value, ptr, ordering, value.type.width // 8))


def _min(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def _max(b, x, y):
    return b.select(b.icmp_signed(">", x, y), x, y)


def _for(b, stop, body, start=None, name="i"):
    pre = b.block
    fn = pre.function
    head, loop, done = (fn.append_basic_block(f"{name}.{k}") for k in ("head", "body", "done"))
    b.branch(head)
    b.position_at_end(head)
    iv = b.phi(I64, name=name)
    iv.add_incoming(start if start is not None else _c(0), pre)
    b.cbranch(b.icmp_signed("<", iv, stop), loop, done)
    b.position_at_end(loop)
    body(iv)
    iv.add_incoming(b.add(iv, _c(1)), b.block)
    b.branch(head)
    b.position_at_end(done)


def emit(module: ir.Module, max_threads: int, visibility: str | None = None) -> ir.Function:
    """Add the pool (state, worker, ``tcomp_cpu_parallel``) to ``module``; returns the entry.
    ``visibility="hidden"`` for shared libraries: each library keeps its own pool."""
    return _Pool(module, max_threads, visibility).entry
