"""The offline differential fuzzer: ``python tests/fuzz_main.py --count 50000 --seed 0``.

The parent process hands seed ranges to worker subprocesses (``--worker``) that stream one
JSON line per graph; a worker that dies (segfault, abort) or stalls is replaced, and the
seeds of the batch it was running are re-run one per process so the crashing seed is
named.  ``--repro SEED`` prints a standalone script for a seed; ``--minimize SEED`` first
shrinks the graph (one failing output, then every intermediate replaced by an input holding
its oracle value while the failure persists).  The summary prints every outcome's count,
graphs/s, and histograms of the ops and features the graphs used.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("TCOMP_NUM_THREADS", "1")
# every graph is new: the persistent compile cache would only hash, write and evict (other
# users' entries too) without a single hit; TCOMP_CACHE=1 turns it back on
os.environ.setdefault("TCOMP_CACHE", "0")

BAD = ("mismatch", "missed_error", "unexpected_exception", "crash", "hang")


def _worker(args):
    warnings.simplefilter("ignore")
    import fuzz_graphs as fg
    import fuzz_run as fr

    backends = args.backends.split(",")
    seeds = list(range(args.start, args.start + args.count))
    for b in range(0, len(seeds), args.batch):
        chunk = seeds[b:b + args.batch]
        t0 = time.perf_counter()
        graphs = []
        for s in chunk:
            try:
                graphs.append(fg.generate(s))
            except Exception as e:  # noqa: BLE001 - a generator bug must not stop the run
                print(json.dumps({"seed": s, "outcome": "generator_error", "detail": repr(e)[:500]}), flush=True)
        errs = [g for g in graphs if "error" in g.features]
        ok = [g for g in graphs if "error" not in g.features]
        print(json.dumps({"begin": [g.seed for g in ok + errs]}), flush=True)
        results = {}
        for backend in backends:
            for attempt in range(6):
                res = (fr.run_batch(ok, backend) if ok else []) + [r for g in errs for r in fr.run_batch([g], backend)]
                if not any(o == "env_error" for o, _ in res):
                    break
                time.sleep(20)  # the tree is mid-edit (an import failed): wait for the change to land
            for g, (outcome, detail) in zip(ok + errs, res):
                prev = results.get(g.seed)
                if prev is None or prev[0] in ("match", "expected_error") and outcome not in ("match",):
                    results[g.seed] = (outcome, f"[{backend}] {detail}" if detail else "")
        dt = (time.perf_counter() - t0) / max(len(graphs), 1)
        for g in ok + errs:
            outcome, detail = results[g.seed]
            print(json.dumps({"seed": g.seed, "outcome": outcome, "detail": detail, "mode": g.mode,
                              "ops": dict(g.features["ops"]), "feat": dict(g.features["feat"]),
                              "reject": dict(g.features["build_reject"]), "sec": dt}), flush=True)


def _spawn(start, count, batch, backends, nice):
    cmd = ([] if not nice else ["nice", "-n", str(nice)]) + [
        sys.executable, os.path.abspath(__file__), "--worker", "--start", str(start), "--count", str(count),
        "--batch", str(batch), "--backends", backends]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    q = queue.Queue()

    def pump():
        for line in p.stdout:
            q.put(line)
        q.put(None)
    threading.Thread(target=pump, daemon=True).start()
    threading.Thread(target=lambda: p.stderr.read(), daemon=True).start()
    return p, q


def _run_range(start, count, batch, backends, nice, stall_s, record):
    """Run seeds [start, start+count) in workers, ``record(dict)`` per graph; the number of
    crashes/hangs recorded."""
    lo, hi, bad = start, start + count, 0
    while lo < hi:
        p, q = _spawn(lo, hi - lo, batch, backends, nice)
        inflight, done, dead = [], set(), None
        while True:
            try:
                line = q.get(timeout=stall_s)
            except queue.Empty:
                p.kill()
                dead = "hang"
                break
            if line is None:
                break
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "begin" in msg:
                inflight = msg["begin"]
            elif lo <= msg["seed"] < hi and msg["seed"] not in done:
                done.add(msg["seed"])
                record(msg)
        rc = p.wait()
        if rc == 0 and not dead:
            break
        suspects = [s for s in inflight if s not in done]
        if len(suspects) == 1:
            record({"seed": suspects[0], "outcome": dead or "crash",
                    "detail": f"no output for {stall_s} s" if dead else f"worker exit status {rc}"})
            bad += 1
        elif suspects:
            found = sum(_run_range(s, 1, 1, backends, nice, stall_s, record) for s in suspects)
            if not found:  # only the batch together fails
                record({"seed": suspects[0], "outcome": dead or "crash",
                        "detail": f"batch {suspects} together (each alone passes): exit status {rc}"})
            bad += max(found, 1)
        lo = max(list(done) + inflight + [lo]) + 1
    return bad


def _main(args):
    counts, ops, feats, rejects, modes = Counter(), Counter(), Counter(), Counter(), Counter()
    failures = []
    t0 = time.time()
    out = open(args.out, "a") if args.out else None
    chunk = args.chunk

    def record(msg):
        counts[msg["outcome"]] += 1
        modes[msg.get("mode", "?")] += 1
        ops.update(msg.get("ops", {}))
        feats.update(msg.get("feat", {}))
        rejects.update(msg.get("reject", {}))
        if msg["outcome"] in BAD or msg["outcome"] in ("generator_error", "harness_error", "unstable", "env_error"):
            failures.append(msg)
            if out:
                out.write(json.dumps({k: msg.get(k) for k in ("seed", "outcome", "detail")}) + "\n")
                out.flush()
        total = sum(counts.values())
        if total % args.progress == 0:
            rate = total / (time.time() - t0)
            print(f"[{total} graphs, {rate:.1f}/s] " + ", ".join(f"{k} {v}" for k, v in counts.most_common()),
                  flush=True)

    lock = threading.Lock()

    def locked(msg):
        with lock:
            record(msg)

    chunks = queue.Queue()
    if args.seeds_from:  # re-run the seeds of a failures file, its contiguous runs as chunks
        seeds = sorted({json.loads(line)["seed"] for line in open(args.seeds_from) if line.strip()})
        runs = []
        for s in seeds:
            if runs and s == runs[-1][0] + runs[-1][1] and runs[-1][1] < chunk:
                runs[-1][1] += 1
            else:
                runs.append([s, 1])
        for s, n in runs:
            chunks.put((s, n))
        args.seed, args.count = (seeds[0] if seeds else 0), len(seeds)
    else:
        for s in range(args.seed, args.seed + args.count, chunk):
            chunks.put((s, min(chunk, args.seed + args.count - s)))

    def runner():
        while time.time() - t0 < args.time_limit:
            try:
                s, n = chunks.get_nowait()
            except queue.Empty:
                return
            _run_range(s, n, args.batch, args.backends, args.nice, args.stall, locked)

    threads = [threading.Thread(target=runner, daemon=True) for _ in range(args.jobs)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:  # print what was run so far; the daemon runners die with us
        print("interrupted", flush=True)
        with lock:
            rc = _summary(args, counts, ops, feats, rejects, modes, failures, t0)
        sys.stdout.flush()
        os._exit(rc)
    return _summary(args, counts, ops, feats, rejects, modes, failures, t0)


def _summary(args, counts, ops, feats, rejects, modes, failures, t0):
    wall = time.time() - t0
    total = sum(counts.values())
    print(f"\n== {total} graphs (seeds from {args.seed}, asked {args.count}) in {wall:.0f} s: "
          f"{total / wall:.1f} graphs/s; backends {args.backends}; modes {dict(modes)}")
    for k, v in counts.most_common():
        print(f"  {k:22s} {v}")
    print("\n== ops used (occurrences)")
    for k, v in sorted(ops.items(), key=lambda kv: -kv[1]):
        print(f"  {k:28s} {v}")
    print("\n== features")
    for k, v in sorted(feats.items()):
        print(f"  {k:28s} {v}")
    if rejects:
        print("\n== steps tcomp rejected at build time (dropped by the generator; review)")
        for k, v in rejects.most_common(25):
            print(f"  {v:6d}  {k}")
    if failures:
        print("\n== failures (seed outcome detail)")
        for m in sorted(failures, key=lambda m: m["seed"])[:60]:
            print(f"  {m['seed']} {m['outcome']} {m.get('detail', '')[:300]!r}")
    return 1 if any(counts[b] for b in BAD) else 0


def _triage(args):
    """Group the failures of a run by the pass whose exclusion fixes them and the error text."""
    import re

    import fuzz_graphs as fg
    import fuzz_repro

    groups = {}
    seen = set()
    for line in open(args.triage):
        m = json.loads(line)
        if m["seed"] in seen or m["outcome"] not in BAD:
            continue
        seen.add(m["seed"])
        if m["outcome"] in ("crash", "hang"):
            key = (m["outcome"], "")
        else:
            blame, (outcome, detail) = fuzz_repro.triage(fg.generate(m["seed"]), args.backends.split(",")[0])
            last = [x for x in detail.strip().splitlines() if x.strip()][-1] if detail.strip() else ""
            kind = "mismatch" if outcome == "mismatch" else re.sub(r"[0-9]+", "N", last)[:120]
            key = (outcome + " / " + blame, kind)
        groups.setdefault(key, []).append(m["seed"])
    for (what, kind), seeds in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"{len(seeds):5d}  {what}  {kind}  seeds {seeds[:8]}")
    return 0


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--batch", type=int, default=8, help="graphs compiled into one function")
    ap.add_argument("--chunk", type=int, default=400, help="graphs per worker process")
    ap.add_argument("--backends", default="cpu", help="comma-separated: cpu,reference")
    ap.add_argument("--nice", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes running at once")
    ap.add_argument("--time-limit", type=float, default=1e9, help="start no new chunk after this many seconds")
    ap.add_argument("--stall", type=float, default=300, help="seconds without output before a worker is a hang")
    ap.add_argument("--progress", type=int, default=500)
    ap.add_argument("--out", default=None, help="append failures as JSON lines to this file")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--repro", type=int, default=None, help="print a standalone script for this seed")
    ap.add_argument("--minimize", type=int, default=None, help="shrink this seed's graph, then print its script")
    ap.add_argument("--seeds-from", default=None, help="a failures .jsonl (--out): re-run exactly its seeds")
    ap.add_argument("--triage", default=None, help="a failures .jsonl (--out): re-run each seed, blame a pass")
    args = ap.parse_args(argv)
    if args.worker:
        return _worker(args) or 0
    if args.triage:
        warnings.simplefilter("ignore")
        return _triage(args)
    if args.repro is not None or args.minimize is not None:
        warnings.simplefilter("ignore")
        import fuzz_repro

        seed = args.repro if args.repro is not None else args.minimize
        print(fuzz_repro.script_for_seed(seed, minimize=args.minimize is not None, backend=args.backends.split(",")[0]))
        return 0
    signal.signal(signal.SIGTERM, _sigterm)
    return _main(args)


if __name__ == "__main__":
    sys.exit(main())
