"""Ahead-of-time export: the trained digits MLP as ``libdigits.so`` + ``libdigits.h``, called
from C programs compiled here with ``cc`` (typed entry, DLPack entry, bad inputs, two
threads), from Python (``tcomp.aot.load``), and inspected (``readelf``, ``nm``, the manifest,
``tcomp inspect``).  Expected predictions come from the JIT function and from NumPy.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

import tcomp
import tcomp.aot as aot
import tcomp.tensor as T

CC = shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc): ahead-of-time export links with it")
pytest.importorskip("sklearn")


def _train_mlp(epochs=2, batch=32, lr=0.2):
    from tcomp.examples.digits import Model, load_digits

    tx, ty, vx, vy = load_digits(0)
    m = Model("mlp", tx.shape[1], 10, seed=0)
    y = T.ivector("y")
    cost = m.nll(y)
    grads = T.grad(cost, m.params)
    step = tcomp.function([m.x, y], cost, updates=[(p, p - lr * g) for p, g in zip(m.params, grads)])
    for _ in range(epochs):
        for i in range(len(tx) // batch):
            step(tx[i * batch:(i + 1) * batch], ty[i * batch:(i + 1) * batch])
    predict = tcomp.function([m.x], m.y_pred, name="predict")
    errors = tcomp.function([m.x, y], m.errors(y), name="errors")
    return m, predict, errors, vx, vy


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    d = tmp_path_factory.mktemp("aot")
    tcomp.config.native_program, old = True, tcomp.config.native_program
    try:
        m, predict, errors, vx, vy = _train_mlp()
        paths = aot.export({"predict": predict, "errors": errors}, str(d / "libdigits.so"))
    finally:
        tcomp.config.native_program = old
    return {"dir": d, "model": m, "predict": predict, "errors": errors, "x": vx, "y": vy, "paths": paths}


def _write_matrix(path, a):
    a = np.ascontiguousarray(a, "float32")
    with open(path, "wb") as f:
        f.write(np.asarray(a.shape, "int64").tobytes())
        f.write(a.tobytes())


def _build(d, name, source, threads=False):
    (d / f"{name}.c").write_text(source)
    cmd = [CC, "-O1", "-Wall", "-Werror", "-std=c11", "-I", str(d), "-o", str(d / name), str(d / f"{name}.c"),
           "-L", str(d), "-ldigits", f"-Wl,-rpath,{d}"] + (["-lpthread"] if threads else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return str(d / name)


PREDICT_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include "libdigits.h"

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    FILE *f = fopen(argv[1], "rb");
    int64_t shape[2];
    if (!f || fread(shape, sizeof(int64_t), 2, f) != 2) return 3;
    float *x = malloc(sizeof(float) * shape[0] * shape[1]);
    if (fread(x, sizeof(float), shape[0] * shape[1], f) != (size_t)(shape[0] * shape[1])) return 4;
    fclose(f);
    int64_t *pred = malloc(sizeof(int64_t) * shape[0]);
    int rc = predict(x, shape[0], shape[1], pred, shape[0]);
    if (rc) { printf("error %d %s\n", rc, digits_last_error()); return 1; }
    printf("typed");
    for (int64_t i = 0; i < shape[0]; i++) printf(" %lld", (long long)pred[i]);
    printf("\n");

    /* the same through DLPack descriptors (strides NULL: compact row-major) */
    int64_t out_shape[1] = {shape[0]};
    int64_t *pred2 = calloc(shape[0], sizeof(int64_t));
    DLTensor tx = {x, {kDLCPU, 0}, 2, {kDLFloat, 32, 1}, shape, NULL, 0};
    DLTensor tp = {pred2, {kDLCPU, 0}, 1, {kDLInt, 64, 1}, out_shape, NULL, 0};
    DLTensor *ins[] = {&tx}, *outs[] = {&tp};
    rc = predict_dlpack(ins, 1, outs, 1);
    if (rc) { printf("error %d %s\n", rc, digits_last_error()); return 1; }
    printf("dlpack");
    for (int64_t i = 0; i < shape[0]; i++) printf(" %lld", (long long)pred2[i]);
    printf("\n");

    /* caller workspace: the shape query gives its size */
    int64_t dims[PREDICT_OUT_DIMS];
    size_t ws_bytes = 0;
    rc = predict_shapes(shape[0], shape[1], dims, &ws_bytes);
    void *ws = aligned_alloc(64, (ws_bytes + 63) / 64 * 64 + 64);
    rc = rc ? rc : predict_ws(x, shape[0], shape[1], pred2, shape[0], ws, ws_bytes);
    if (rc) { printf("error %d %s\n", rc, digits_last_error()); return 1; }
    printf("ws %lld", (long long)dims[0]);
    for (int64_t i = 0; i < shape[0]; i++) printf(" %lld", (long long)pred2[i]);
    printf("\n");
    return 0;
}
"""


def test_c_program_predicts_like_the_jit(digits):
    d = digits["dir"]
    x = digits["x"]
    _write_matrix(d / "test_x.bin", x)
    exe = _build(d, "predict_main", PREDICT_C)
    out = subprocess.run([exe, str(d / "test_x.bin")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = {ln.split()[0]: ln.split()[1:] for ln in out.stdout.splitlines()}
    jit = digits["predict"](x)
    # NumPy, written independently: tanh(x W1 + b1) W2 + b2, argmax (softmax is monotone)
    W1, b1, W2, b2 = (p.get_value() for p in digits["model"].params)
    want = np.argmax(np.tanh(x.astype("float64") @ W1 + b1) @ W2 + b2, axis=1)
    assert np.mean(jit == want) > 0.99 and np.mean(jit == digits["y"]) > 0.8
    np.testing.assert_array_equal(np.array(lines["typed"], "int64"), jit)
    np.testing.assert_array_equal(np.array(lines["dlpack"], "int64"), jit)
    assert int(lines["ws"][0]) == len(x)
    np.testing.assert_array_equal(np.array(lines["ws"][1:], "int64"), jit)


def test_load_matches_the_jit(digits):
    x, y = digits["x"], digits["y"]
    fns = aot.load(digits["paths"]["library"])
    np.testing.assert_array_equal(fns["predict"](x), digits["predict"](x))
    np.testing.assert_array_equal(fns["errors"](x, y), digits["errors"](x, y))
    np.testing.assert_array_equal(fns["predict"](x=x[:5]), digits["predict"](x[:5]))
    # the JIT's checks and messages
    for args in [(x[:, :63],), (x[0],), (x.astype("float64"),)]:
        with pytest.raises(Exception) as jit_err:
            digits["predict"](*args)
        with pytest.raises(type(jit_err.value)) as aot_err:
            fns["predict"](*args)
        assert str(aot_err.value) == str(jit_err.value)
    with pytest.raises(ValueError) as jit_err:
        digits["errors"](x[:10], y[:9])
    with pytest.raises(ValueError) as aot_err:
        fns["errors"](x[:10], y[:9])
    assert str(aot_err.value) == str(jit_err.value)
    with pytest.raises(TypeError, match="takes 1 arguments, got 2"):
        fns["predict"](x, x)


BAD_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "libdigits.h"

static float x[4 * 64];
static int32_t y[4];
static int64_t pred[4];

static void report(const char *what, int rc) { printf("%s|%d|%s\n", what, rc, rc ? digits_last_error() : ""); }

int main(void) {
    for (int i = 0; i < 4 * 64; i++) x[i] = (float)(i % 17) / 16.0f;
    float err;
    report("ok", predict(x, 4, 64, pred, 4));
    report("null_input", predict(NULL, 4, 64, pred, 4));
    report("null_output", predict(x, 4, 64, NULL, 4));
    report("small_output", predict(x, 4, 64, pred, 3));
    report("negative_size", predict(x, -1, 64, pred, 4));
    report("inner_dim", predict(x, 4, 63, pred, 4));
    report("rows_vs_labels", errors(x, 4, 64, y, 3, &err, 1));
    report("misaligned", predict((const float *)((const char *)x + 2), 3, 64, pred, 4));
    report("overlap", predict(x, 4, 64, (int64_t *)x, 4));
    size_t need = 0;
    int64_t dims[1];
    report("shapes", predict_shapes(4, 64, dims, &need));
    char ws_raw[64 * 1024 + 128];
    void *ws = (void *)(((uintptr_t)ws_raw + 63) / 64 * 64);
    report("small_workspace", need ? predict_ws(x, 4, 64, pred, 4, ws, need - 1) : 2);
    report("null_workspace", need ? predict_ws(x, 4, 64, pred, 4, NULL, need) : 2);
    report("threads", digits_set_num_threads(0));

    int64_t shape[2] = {4, 64}, out_shape[1] = {4}, bad_out_shape[1] = {5}, strides[2] = {1, 4};
    DLTensor tx = {x, {kDLCPU, 0}, 2, {kDLFloat, 64, 1}, shape, NULL, 0};
    DLTensor tp = {pred, {kDLCPU, 0}, 1, {kDLInt, 64, 1}, out_shape, NULL, 0};
    DLTensor *ins[] = {&tx}, *outs[] = {&tp};
    report("dl_dtype", predict_dlpack(ins, 1, outs, 1));
    tx.dtype.bits = 32;
    tx.strides = strides;
    report("dl_strides", predict_dlpack(ins, 1, outs, 1));
    tx.strides = NULL;
    tx.ndim = 1;
    report("dl_rank", predict_dlpack(ins, 1, outs, 1));
    tx.ndim = 2;
    tp.shape = bad_out_shape;
    report("dl_out_shape", predict_dlpack(ins, 1, outs, 1));
    tp.shape = out_shape;
    tx.device.device_type = kDLCUDA;
    report("dl_device", predict_dlpack(ins, 1, outs, 1));
    tx.device.device_type = kDLCPU;
    report("dl_count", predict_dlpack(ins, 2, outs, 1));
    ins[0] = NULL;
    report("dl_null", predict_dlpack(ins, 1, outs, 1));
    return 0;
}
"""


def test_bad_inputs_return_a_status_and_the_message(digits):
    d = digits["dir"]
    exe = _build(d, "bad_main", BAD_C)
    out = subprocess.run([exe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    res = {}
    for line in out.stdout.splitlines():
        what, rc, msg = line.split("|", 2)
        res[what] = (int(rc), msg)
    assert res["ok"] == (0, "") and res["shapes"] == (0, "")
    x = (np.arange(4 * 64) % 17 / 16.0).astype("float32").reshape(4, 64)

    def jit_message(fn, *args):
        with pytest.raises(ValueError) as e:
            fn(*args)
        return str(e.value)
    expected = {
        "null_input": (1, "input 'x': null data pointer"),
        "null_output": (1, "output 'out0': null data pointer"),
        "small_output": (2, "output 'out0': the buffer holds 3 elements, the result needs 4 (shape (4,))"),
        "negative_size": (2, "size x_dim0 (input 'x' axis 0) must be >= 0, got -1"),
        # the same text as the JIT's (value-dependent and symbolic-dim checks run in plan)
        "inner_dim": (2, jit_message(digits["predict"], x[:, :63])),
        "rows_vs_labels": (2, jit_message(digits["errors"], x, np.zeros(3, "int32"))),
        "overlap": (2, "output 'out0' overlaps input 'x'"),
        "threads": (2, "num_threads must be >= 1, got 0"),
        "dl_dtype": (1, "input 'x': expected dtype float32, got float64"),
        "dl_rank": (2, "input 'x': expected rank 2 (f32[?, ?]), got shape (4,)"),
        "dl_out_shape": (2, "output 'out0': expected shape (4,), got (5,)"),
        "dl_device": (1, "input 'x': device type 2 is not host memory (kDLCPU)"),
        "dl_count": (1, "predict_dlpack: takes 1 inputs (x), got 2"),
        "dl_null": (1, "input 'x': null DLTensor pointer"),
    }
    for what, want in expected.items():
        assert res[what] == want, what
    assert res["misaligned"][0] == 1 and "not aligned to its 4-byte elements" in res["misaligned"][1]
    assert res["small_workspace"][0] == 2 and "bytes given" in res["small_workspace"][1]
    assert res["null_workspace"][0] == 1 and "workspace: null pointer" in res["null_workspace"][1]
    assert res["dl_strides"][0] == 2 and "not compact row-major" in res["dl_strides"][1]
    # the JIT's native function says the same about a rank and a dtype
    shared = [p.get_value() for p in digits["model"].params]
    with pytest.raises(ValueError, match=r"^input 'x': expected rank 2 \(f32\[\?, \?\]\), got shape \(4,\)$"):
        digits["predict"].compiled([x[:, 0]] + shared)
    with pytest.raises(TypeError, match="^input 'x': expected dtype float32, got float64$"):
        digits["predict"].compiled([x.astype("float64")] + shared)


THREADS_C = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "libdigits.h"

#define ROWS %(rows)d
static float x[ROWS * 64];
static int64_t want[ROWS];

typedef struct { int offset, rows, bad, fails; } job;

static void *work(void *arg) {
    job *j = arg;
    int64_t pred[ROWS];
    for (int it = 0; it < 200; it++) {
        int rc = predict(x + (size_t)j->offset * 64, j->rows, 64, pred, j->rows);
        if (rc) j->fails++;
        else if (memcmp(pred, want + j->offset, sizeof(int64_t) * j->rows)) j->bad++;
    }
    return NULL;
}

int main(void) {
    FILE *f = fopen("%(data)s", "rb");
    int64_t shape[2];
    if (!f || fread(shape, 8, 2, f) != 2 || shape[0] != ROWS || fread(x, 4, ROWS * 64, f) != ROWS * 64) return 3;
    fclose(f);
    if (predict(x, ROWS, 64, want, ROWS)) return 4;
    digits_set_num_threads(2);
    job jobs[2] = {{0, ROWS / 2, 0, 0}, {ROWS / 2, ROWS - ROWS / 2, 0, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, work, &jobs[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    printf("%%d %%d %%d %%d\n", jobs[0].bad, jobs[0].fails, jobs[1].bad, jobs[1].fails);
    for (int i = 0; i < ROWS; i++) printf("%%lld ", (long long)want[i]);
    printf("\n");
    return 0;
}
"""


def test_two_c_threads_call_concurrently(digits):
    d, x = digits["dir"], digits["x"][:64]
    _write_matrix(d / "threads_x.bin", x)
    exe = _build(d, "threads_main", THREADS_C % {"rows": len(x), "data": d / "threads_x.bin"}, threads=True)
    out = subprocess.run([exe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    counts, preds = out.stdout.splitlines()
    assert counts.split() == ["0", "0", "0", "0"]
    np.testing.assert_array_equal(np.array(preds.split(), "int64"), digits["predict"](x))


def test_needed_libraries_and_exported_symbols(digits):
    lib = digits["paths"]["library"]
    readelf, nm = shutil.which("readelf"), shutil.which("nm")
    if readelf is None or nm is None:
        pytest.skip("binutils (readelf, nm) not installed")
    dyn = subprocess.run([readelf, "-d", lib], capture_output=True, text=True, check=True).stdout
    needed = {ln.split("[", 1)[1].split("]")[0] for ln in dyn.splitlines() if "(NEEDED)" in ln}
    assert needed and needed <= {"libc.so.6", "libm.so.6", "libpthread.so.0"}, needed
    syms = subprocess.run([nm, "-D", "--defined-only", lib], capture_output=True, text=True, check=True).stdout
    names = {ln.split()[-1] for ln in syms.splitlines() if ln.strip()}
    api = {"digits_last_error", "digits_set_num_threads", "digits_get_num_threads", "digits_manifest"}
    for f in ("predict", "errors"):
        api |= {f, f"{f}_ws", f"{f}_shapes", f"{f}_dlpack"}
    assert names == api
    # the header declares each of them
    text = open(digits["paths"]["header"]).read()
    for name in api - {"digits_manifest"}:
        assert f" {name}(" in text or f"*{name}(" in text, name


def test_manifest_and_tcomp_inspect(digits, capsys):
    from tcomp.tools.cli import main

    lib = digits["paths"]["library"]
    info = aot.read_manifest(lib)
    assert info["format"] == "tcomp.aot" and info["tcomp_version"] == tcomp.__version__
    assert info["target"]["triple"].startswith("x86_64") or info["target"]["triple"].startswith("aarch64")
    fn = {f["name"]: f for f in info["functions"]}
    assert fn["predict"]["hash"] == digits["predict"].compiled.hp.hash
    assert fn["predict"]["inputs"] == [{"name": "x", "c_name": "x", "kind": "input", "dtype": "float32",
                                        "shape": [None, None], "dims": ["x_dim0", "x_dim1"], "declared": [None, None],
                                        "updated": False,
                                        "shape_deciding": False}]
    assert fn["predict"]["outputs"][0]["dtype"] == "int64"
    assert [e["name"] for e in fn["predict"]["embedded"]] == ["W1", "b1", "W2", "b2"]
    assert main(["inspect", lib]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{"):]) == info
