"""``python -m tcomp.backend.nvptx.bench``: the MLP training step on the GPU (``backend='cuda'``)
against the CPU backend and, where installed, PyTorch CUDA eager, on the same machine.

Prints one line per backend: median seconds per step over ``--steps`` calls after a warm-up,
and checks first that the CUDA step's outputs match the reference interpreter.  Without a
driver it says so and exits 0 (so a CI step can run it everywhere).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _median_time(fn, steps):
    fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    from tcomp.backend.nvptx import driver
    from tcomp.backend.nvptx.runtime import CudaCompiled
    from tcomp.examples.mlp import build_classifier_step
    from tcomp.ir import evaluate

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--sizes", default="784,1024,1024,10")
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args(argv)
    sizes = tuple(int(s) for s in a.sizes.split(","))
    if not driver.available():
        print("no CUDA driver/GPU here: nothing to measure")
        return 0
    step, _, _ = build_classifier_step(sizes=sizes, batch=a.batch, backend="cpu")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((a.batch, sizes[0])).astype("float32")
    y = rng.integers(0, sizes[-1], a.batch).astype("int32")
    arrays = [x, y] + [s.get_value() for s in step.shared_inputs]
    cuda = CudaCompiled(step.optimized, donate=step.donations)
    for got, want in zip(cuda(arrays), evaluate(step.optimized, arrays)):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    print(f"device {driver.device().arch}, MLP {sizes}, batch {a.batch}")
    print(f"cuda (tcomp, host copies each call): {_median_time(lambda: cuda(arrays), a.steps) * 1e3:.3f} ms/step")
    cpu = step.compiled
    print(f"cpu  (tcomp):                        {_median_time(lambda: cpu(arrays), a.steps) * 1e3:.3f} ms/step")
    try:
        import torch
    except ImportError:
        print("torch not installed: no PyTorch row")
        return 0
    dev = torch.device("cuda")
    ws = [torch.tensor(v, device=dev, requires_grad=True) for v in arrays[2:]]
    tx, ty = torch.tensor(x, device=dev), torch.tensor(y, device=dev).long()

    def torch_step():
        h = tx
        for k in range(0, len(ws) - 2, 2):
            h = torch.relu(h @ ws[k] + ws[k + 1])
        loss = torch.nn.functional.cross_entropy(h @ ws[-2] + ws[-1], ty)
        grads = torch.autograd.grad(loss, ws)
        with torch.no_grad():
            for w, g in zip(ws, grads):
                w -= 0.01 * g
        torch.cuda.synchronize()
    print(f"torch cuda eager:                    {_median_time(torch_step, a.steps) * 1e3:.3f} ms/step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
