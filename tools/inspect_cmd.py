"""``tcomp inspect``: what the compiler does to an MLP training step.

Reports nodes before/after each pass, kernels launched per call and intermediate bytes per
call (fused vs unfused, both from the kernel program the CPU backend runs), the cold compile
time split into trace / passes / backend, and how pass time grows with graph size (a 10x
larger network in the same run).
"""
from __future__ import annotations

import time

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


def program_figures(fn) -> dict:
    """Kernels per call and workspace bytes of ``fn``'s kernel program (the one the CPU
    backend runs; backend-independent: lowered from the optimized graph), for example inputs
    of the declared static shapes."""
    import numpy as np

    from tcomp.passes import lower_kernels
    from tcomp.passes.kernel_program import evaluate_shape_program, resolve

    kp = lower_kernels(fn.optimized, fn.donations)
    regs = evaluate_shape_program(kp.shape, [np.zeros(x.shape, x.dtype) for x in kp.inputs])

    def nbytes(v):
        return int(np.prod(resolve(v.dims, regs), dtype=np.int64)) * np.dtype(v.dtype).itemsize
    return {"kernels": sum(1 for k in kp.kernels if k.kind != "scalar"),
            "bytes_without_reuse": sum(nbytes(v) for v in kp.values if v.storage.kind == "buffer"),
            "workspace_bytes": int(resolve(kp.workspace, regs))}


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
    fused, unfused_p = program_figures(step), program_figures(unfused)
    out(f"kernels per call (the kernel program): fused {fused['kernels']}, unfused {unfused_p['kernels']}")
    n_multi, n_results = multi_output_kernels(step.optimized)
    out(f"multi-output kernels: {n_multi} (computing {n_results} results in {n_multi} loops)")
    out(f"intermediate bytes per call (workspace): fused {_fmt_bytes(fused['workspace_bytes'])} "
        f"({_fmt_bytes(fused['bytes_without_reuse'])} without buffer reuse), unfused "
        f"{_fmt_bytes(unfused_p['workspace_bytes'])} ({_fmt_bytes(unfused_p['bytes_without_reuse'])} without reuse)")
    c = step.compile_seconds
    out(f"compile (first build in this process): total {total:.2f} s = T.grad+trace {total - sum(c.values()):.2f} s"
        f" + graph build {c['trace']:.3f} s + graph cache {c.get('graph_cache', 0.0):.3f} s"
        f" + passes {c['passes']:.3f} s + backend (LLVM+JIT) {c['backend']:.2f} s")
    while True:  # grow the network until its traced graph is at least `scale` times larger
        big_sizes = (sizes[0],) + tuple(sizes[1:-1]) * scale + (sizes[-1],)
        big, _ = _build(big_sizes, batch, "reference")
        ratio_nodes = len(big.traced) / len(step.traced)
        if ratio_nodes >= target or len(sizes) < 3:
            break
        scale += max(1, scale // 2)
    # (the pass reports' own times: a graph-cache hit ran no passes in the compile, and its
    # report is made on first use)
    big_s, small_s = big.pass_report.total_seconds, step.pass_report.total_seconds
    ratio_time = big_s / max(small_s, 1e-9)
    out(f"pass time scaling: {len(big.traced)} vs {len(step.traced)} traced nodes ({ratio_nodes:.1f}x) -> "
        f"passes {big_s:.3f} s vs {small_s:.3f} s ({ratio_time:.1f}x)")
    return {"kernels_fused": fused["kernels"], "kernels_unfused": unfused_p["kernels"], "multi_output_kernels": n_multi,
            "bytes_fused": fused["workspace_bytes"], "bytes_unfused": unfused_p["workspace_bytes"],
            "bytes_fused_without_reuse": fused["bytes_without_reuse"],
            "compile_seconds": dict(c, total=total), "pass_scaling": (ratio_nodes, ratio_time)}


def main(args) -> int:
    sizes = tuple(int(s) for s in args.layers.split(","))
    report(sizes, args.batch, args.backend, args.scale)
    return 0
