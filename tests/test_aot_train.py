"""Training from C: the digits logistic regression's SGD step exported with
``state='external'`` (W and b are the caller's buffers, updated in place), driven for a few
epochs by a C program; its parameters must equal the JIT's after the same steps.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import tcomp
import tcomp.aot as aot
import tcomp.tensor as T

CC = shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc): ahead-of-time export links with it")

EPOCHS, BATCH, LR = 3, 32, 0.5

TRAIN_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include "liblogreg.h"

int main(int argc, char **argv) {
    FILE *f = fopen(argv[1], "rb");
    int64_t n, d;
    if (!f || fread(&n, 8, 1, f) != 1 || fread(&d, 8, 1, f) != 1) return 3;
    float *x = malloc(sizeof(float) * n * d);
    int32_t *y = malloc(sizeof(int32_t) * n);
    if (fread(x, 4, n * d, f) != (size_t)(n * d) || fread(y, 4, n, f) != (size_t)n) return 4;
    fclose(f);
    static float W[64 * 10], b[10];  /* the state: zeros, as the model starts */
    float loss = 0;
    for (int epoch = 0; epoch < %(epochs)d; epoch++) {
        for (int64_t i = 0; i + %(batch)d <= n; i += %(batch)d) {
            int rc = logreg(x + i * d, %(batch)d, d, y + i, %(batch)d, W, b, &loss, 1);
            if (rc) { fprintf(stderr, "step: %%s\n", logreg_last_error()); return 1; }
        }
        printf("loss %%.9g\n", loss);
    }
    FILE *o = fopen(argv[2], "wb");
    fwrite(W, 4, 64 * 10, o);
    fwrite(b, 4, 10, o);
    fclose(o);
    return 0;
}
"""


def _logreg_step():
    from tcomp.examples.digits import Model

    m = Model("logreg", 64, 10)
    y = T.ivector("y")
    cost = m.nll(y) + 1e-4 * (m.W ** 2).sum()
    grads = T.grad(cost, m.params)
    step = tcomp.function([m.x, y], cost, updates=[(p, p - LR * g) for p, g in zip(m.params, grads)], name="step")
    return m, step


def test_c_program_trains_like_the_jit(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    from tcomp.examples.digits import load_digits

    monkeypatch.setattr(tcomp.config, "native_program", True)
    tx, ty, _, _ = load_digits(0)
    m, step = _logreg_step()
    paths = aot.export(step, str(tmp_path / "liblogreg.so"), state="external")
    header = open(paths["header"]).read()
    assert "int logreg(const float *x, int64_t x_dim0, int64_t x_dim1, const int32_t *y, int64_t y_dim0, " \
           "float *W, float *b, float *out0, int64_t out0_count);" in header
    assert "state, read and updated in place" in header

    with open(tmp_path / "train.bin", "wb") as f:
        f.write(np.asarray(tx.shape, "int64").tobytes() + tx.tobytes() + ty.tobytes())
    (tmp_path / "train.c").write_text(TRAIN_C % {"epochs": EPOCHS, "batch": BATCH})
    subprocess.run([CC, "-O1", "-Wall", "-Werror", "-I", str(tmp_path), "-o", str(tmp_path / "train"),
                    str(tmp_path / "train.c"), "-L", str(tmp_path), "-llogreg", f"-Wl,-rpath,{tmp_path}"],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([str(tmp_path / "train"), str(tmp_path / "train.bin"), str(tmp_path / "params.bin")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    c_losses = [float(ln.split()[1]) for ln in out.stdout.splitlines()]
    raw = np.fromfile(tmp_path / "params.bin", "float32")
    c_W, c_b = raw[:640].reshape(64, 10), raw[640:]

    losses = []
    for _ in range(EPOCHS):  # the JIT, the same steps
        for i in range(0, len(tx) - BATCH + 1, BATCH):
            loss = step(tx[i:i + BATCH], ty[i:i + BATCH])
        losses.append(float(loss))
    np.testing.assert_array_equal(c_W, m.W.get_value())
    np.testing.assert_array_equal(c_b, m.b.get_value())
    np.testing.assert_array_equal(np.float32(c_losses), np.float32(losses))
    assert losses[-1] < losses[0] < np.log(10)

    # NumPy, written independently, for the first step from zeros
    W, b = np.zeros((64, 10)), np.zeros(10)
    x, yb = tx[:BATCH].astype("float64"), ty[:BATCH]
    z = x @ W + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g = p.copy()
    g[np.arange(BATCH), yb] -= 1
    W1 = W - LR * (x.T @ g / BATCH + 2e-4 * W)
    lib = aot.load(paths["library"])
    Ws, bs = np.zeros((64, 10), "float32"), np.zeros(10, "float32")
    loss = lib(tx[:BATCH], ty[:BATCH], Ws, bs)
    np.testing.assert_allclose(loss, -np.mean(np.log(p[np.arange(BATCH), yb])), rtol=1e-5)
    np.testing.assert_allclose(Ws, W1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bs, b - LR * g.mean(0), rtol=1e-4, atol=1e-6)


def test_external_state_without_donation(tmp_path, monkeypatch):
    """Updates the program cannot write in place (a swap) go through workspace scratch."""
    monkeypatch.setattr(tcomp.config, "native_program", True)
    a = tcomp.shared(np.arange(4, dtype="float64"), "a")
    b = tcomp.shared(np.arange(4, 8, dtype="float64"), "b")
    k = T.dscalar("k")
    f = tcomp.function([k], (a * b).sum() * k, updates=[(a, b * k), (b, a + 1)], name="swap")
    paths = aot.export(f, str(tmp_path / "libswap.so"), state="external")
    lib = aot.load(paths["library"])
    av, bv = np.arange(4, dtype="float64"), np.arange(4, 8, dtype="float64")
    want_out = (av * bv).sum() * 2.0
    want_a, want_b = bv * 2.0, av + 1
    out = lib(np.float64(2.0), av, bv)
    assert out == want_out
    np.testing.assert_array_equal(av, want_a)
    np.testing.assert_array_equal(bv, want_b)
    assert f(2.0) == want_out
    np.testing.assert_array_equal(a.get_value(), want_a)
    ro = np.zeros(4)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="state 'a': the buffer is read-only"):
        lib(2.0, ro, np.zeros(4))
    with pytest.raises(ValueError, match="embedded state cannot be updated"):
        aot.export(f, str(tmp_path / "libswap2.so"))
