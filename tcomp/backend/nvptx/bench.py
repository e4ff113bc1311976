"""``python -m tcomp.backend.nvptx.bench``: the MLP training step on the GPU (``backend='cuda'``)
against the CPU backend and, where installed, PyTorch CUDA eager, on the same machine.

Rows (median milliseconds per step over ``--steps`` calls after a warm-up):

* ``cuda (tcomp.function)``: the step as users run it: parameters resident on the GPU, updates
  adopted on the device, only the batch goes up and the loss comes down;
* ``cuda (host arrays)``: the same kernels with every input copied up and every output down
  (``CudaCompiled.__call__``): what residency saves;
* ``cpu (tcomp.function)``: the CPU backend's step;
* ``torch cuda eager``: the same network, loss and SGD step in PyTorch (skipped if absent).

Before timing, one CUDA step is checked against the CPU backend's (loss and parameters).
Without a driver it says so and exits 0, so a CI step can run it anywhere.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _median_ms(fn, steps, sync=None):
    fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _check(cuda, cpu, pg, pc, x, y):
    np.testing.assert_allclose(cuda(x, y), cpu(x, y), rtol=1e-3, atol=1e-4)
    for a, b in zip(pc, pg):
        np.testing.assert_allclose(b.get_value(), a.get_value(), rtol=1e-3, atol=1e-4)


def main(argv=None) -> int:
    from tcomp.backend.nvptx import driver

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--sizes", default="784,1024,1024,10")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--emulate", action="store_true",
                    help="run the CUDA rows on the CPU grid emulator (checks the bench itself; no PyTorch row)")
    a = ap.parse_args(argv)
    sizes = tuple(int(s) for s in a.sizes.split(","))
    if a.emulate:
        from .emulator import EmulatedDevice
        from .runtime import use_device

        with use_device(EmulatedDevice()):
            return _run(a, sizes, "emulated device (CPU grid emulator)")
    if not driver.available():
        print("no CUDA driver/GPU here: nothing to measure")
        return 0
    return _run(a, sizes, f"device {driver.device().arch} ({driver.device().sm_count} SMs)")


def _run(a, sizes, where) -> int:
    from tcomp.examples.mlp import build_classifier_step

    cuda, _, pg = build_classifier_step(sizes=sizes, batch=a.batch, backend="cuda")
    cpu, _, pc = build_classifier_step(sizes=sizes, batch=a.batch, backend="cpu")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((a.batch, sizes[0])).astype("float32")
    y = rng.integers(0, sizes[-1], a.batch).astype("int32")
    _check(cuda, cpu, pg, pc, x, y)
    print(f"{where}, PTX for {cuda.compiled.arch}, "
          f"MLP {sizes}, batch {a.batch}: the CUDA step matches the CPU backend's")
    print(f"cuda (tcomp.function, resident):  {_median_ms(lambda: cuda(x, y), a.steps):8.3f} ms/step")
    arrays = [x, y] + [p.get_value() for p in pg]
    raw = cuda.compiled
    print(f"cuda (host arrays, copies):       {_median_ms(lambda: raw(arrays), a.steps):8.3f} ms/step")
    print(f"cpu  (tcomp.function):            {_median_ms(lambda: cpu(x, y), a.steps):8.3f} ms/step")
    if a.emulate:
        return 0
    try:
        import torch
    except ImportError:
        print("torch not installed: no PyTorch row")
        return 0
    if not torch.cuda.is_available():
        print("torch has no CUDA here: no PyTorch row")
        return 0
    dev = torch.device("cuda")
    ws = [torch.tensor(p.get_value(), device=dev, requires_grad=True) for p in pc]
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
        return loss.item()  # the loss comes back to the host, as tcomp's step returns it
    print(f"torch cuda eager:                 {_median_ms(torch_step, a.steps, torch.cuda.synchronize):8.3f} ms/step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
