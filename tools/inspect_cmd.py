"""``tcomp inspect``: what the compiler does to an MLP training step.

Reports nodes before/after each pass, kernels launched per call and intermediate bytes
per call (fused vs unfused), the cold compile time split into trace / passes / backend,
and how pass time grows with graph size (a 10x larger network in the same run).
"""
from __future__ import annotations

import time

from tcomp.passes import plan_memory
from tcomp.passes.memory import is_view


def kernels_per_call(graph) -> int:
    """Nodes that run code at call time: everything but inputs, constants and views.  A
    multi-output kernel counts once: its ``get_output`` readers only name its results."""
    return sum(1 for n in graph.nodes()
               if graph.op(n) not in ("input", "constant", "get_output") and not is_view(graph, n))


def multi_output_kernels(graph) -> tuple[int, int]:
    """(multi-output fused kernels, results they return in all)."""
    ks = [n for n in graph.nodes() if graph.op(n) == "fused" and graph.attrs(n)["outputs"]]
    return len(ks), sum(len(graph.attrs(k)["outputs"]) + 1 for k in ks)


def native_kernels(fn):
    """Native loop nests the CPU backend runs per call (None on another backend)."""
    roles = getattr(getattr(fn.compiled, "prog", None), "role", None)
    return None if roles is None else list(roles.values()).count("kernel")


def _build(sizes, batch, backend, exclude=()):
    from tcomp.examples.mlp import build_classifier_step

    t0 = time.perf_counter()
    step, _, _ = build_classifier_step(sizes, batch, backend=backend, exclude=exclude)
    return step, time.perf_counter() - t0


def _fmt_bytes(n) -> str:
    return f"{n / 2**20:.2f} MiB"


def report(sizes=(784, 512, 512, 10), batch=128, backend="cpu", scale=10, out=print) -> dict:
    target = scale
    step, total = _build(sizes, batch, backend)
    unfused, _ = _build(sizes, batch, backend, exclude=("fuse_elementwise",))
    out(f"MLP {'-'.join(map(str, sizes))}, batch {batch}, softmax cross-entropy, SGD; backend {backend}")
    out(f"traced graph: {len(step.traced)} nodes")
    out(f"{'pass':<18}{'ms':>9}{'nodes before':>14}{'after':>8}")
    for r in step.pass_report.records:
        out(f"{r.name:<18}{1e3 * r.seconds:>9.2f}{r.nodes_before:>14}{r.nodes_after:>8}")
    fused_k, unfused_k = kernels_per_call(step.optimized), kernels_per_call(unfused.optimized)
    native_f, native_u = native_kernels(step), native_kernels(unfused)
    if native_f is not None:
        out(f"cpu backend native kernels per call: fused {native_f}, unfused {native_u}")
    mf, mu = plan_memory(step.optimized, step.donations), plan_memory(unfused.optimized, unfused.donations)
    out(f"graph kernels per call (non-view compute nodes): fused {fused_k}, unfused {unfused_k}")
    n_multi, n_results = multi_output_kernels(step.optimized)
    out(f"multi-output kernels: {n_multi} (computing {n_results} results in {n_multi} loops)")
    out(f"intermediate bytes per call: fused {_fmt_bytes(mf.bytes_without_reuse)} "
        f"({_fmt_bytes(mf.bytes_with_reuse)} with buffer reuse), unfused {_fmt_bytes(mu.bytes_without_reuse)} "
        f"({_fmt_bytes(mu.bytes_with_reuse)} with reuse)")
    if native_f is not None:  # the CPU backend's buffer assignment (inline and view nodes need no buffer)
        m = step.compiled.bytes_allocated_per_call()
        out(f"cpu backend buffers per call: {m['kernels']} kernels -> {m['buffers']} buffers, intermediates "
            f"{_fmt_bytes(m['intermediate_bytes_without_reuse'])} -> {_fmt_bytes(m['intermediate_bytes_with_reuse'])}")
    c = step.compile_seconds
    out(f"compile (first build in this process): total {total:.2f} s = T.grad+trace {total - sum(c.values()):.2f} s"
        f" + graph build {c['trace']:.3f} s + passes {c['passes']:.3f} s + backend (LLVM+JIT) {c['backend']:.2f} s")
    while True:  # grow the network until its traced graph is at least `scale` times larger
        big_sizes = (sizes[0],) + tuple(sizes[1:-1]) * scale + (sizes[-1],)
        big, _ = _build(big_sizes, batch, "reference")
        ratio_nodes = len(big.traced) / len(step.traced)
        if ratio_nodes >= target or len(sizes) < 3:
            break
        scale += max(1, scale // 2)
    ratio_time = big.compile_seconds["passes"] / max(c["passes"], 1e-9)
    out(f"pass time scaling: {len(big.traced)} vs {len(step.traced)} traced nodes ({ratio_nodes:.1f}x) -> "
        f"passes {big.compile_seconds['passes']:.3f} s vs {c['passes']:.3f} s ({ratio_time:.1f}x)")
    return {"native_kernels_fused": native_f, "native_kernels_unfused": native_u,
            "kernels_fused": fused_k, "kernels_unfused": unfused_k, "multi_output_kernels": n_multi,
            "bytes_fused": mf.bytes_without_reuse,
            "bytes_unfused": mu.bytes_without_reuse, "bytes_fused_reuse": mf.bytes_with_reuse,
            "compile_seconds": dict(c, total=total), "pass_scaling": (ratio_nodes, ratio_time)}


def main(args) -> int:
    sizes = tuple(int(s) for s in args.layers.split(","))
    report(sizes, args.batch, args.backend, args.scale)
    return 0
