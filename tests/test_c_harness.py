"""A C program calls a function's generated ``plan`` and ``run`` itself (no Python, no NumPy).

The function has a symbolic dim (``x`` is ``f32[?, ?]``) and a value-dependent shape
(``reshape(x, (n, -1))`` with ``n`` an int32 input), an elementwise op and a reduction.  The
test writes the module as a position-independent object (llvmlite ``emit_object``), compiles
a C driver against it with ``cc``, runs it and compares its outputs with the JIT's and with
NumPy; a bad ``n`` must make ``plan`` return the code of the reshape check.  The ahead-of-time
export (issue 11) is this ABI plus a header.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.backend.cpu.host_program import emit_object
from tcomp.backend.cpu.native_function import NativeFunction
from tcomp.backend.cpu.parallel import runtime_ir
from tcomp.passes.kernel_program import evaluate_shape_program

CC = shutil.which("cc")


def _c_floats(a) -> str:
    return ", ".join(f"{v:.9g}f" for v in np.asarray(a, "float32").ravel())


DRIVER = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int32_t %(plan)s(const int64_t *dims, void *const *inputs, int64_t *regs);
int32_t %(run)s(void *const *inputs, void *const *outputs, void *workspace, const int64_t *regs);

static float x[] = {%(x)s};

static int call(int32_t n) {
    int64_t dims[] = {%(rows)d, %(cols)d};
    void *inputs[] = {x, &n};
    int64_t regs[%(nregs)d];
    int32_t rc = %(plan)s(dims, inputs, regs);
    if (rc) {
        printf("plan %%d\n", rc);
        return 0;
    }
    void *outputs[%(nout)d];
    int64_t sizes[%(nout)d];
    const int64_t slots[][2] = {%(slots)s};
    for (int k = 0; k < %(nout)d; k++) {
        int64_t count = 1;
        for (int64_t a = slots[k][0]; a < slots[k][1]; a++) count *= regs[a];
        sizes[k] = count;
        outputs[k] = malloc(count * sizeof(float) + 64);
    }
    size_t ws_bytes = (size_t)((regs[0] + 63) / 64 * 64 + 64);
    void *ws = aligned_alloc(64, ws_bytes);
    rc = %(run)s(inputs, outputs, ws, regs);
    printf("run %%d\n", rc);
    for (int k = 0; k < %(nout)d; k++) {
        printf("out %%d dims", k);
        for (int64_t a = slots[k][0]; a < slots[k][1]; a++) printf(" %%lld", (long long)regs[a]);
        printf(" values");
        for (int64_t i = 0; i < sizes[k]; i++) printf(" %%.9g", ((float *)outputs[k])[i]);
        printf("\n");
        free(outputs[k]);
    }
    free(ws);
    return 0;
}

int main(void) {
    call(%(n_good)d);
    call(%(n_bad)d);
    return 0;
}
"""


def _parse(text):
    calls, cur = [], None
    for line in text.splitlines():
        words = line.split()
        if words[0] == "plan":
            calls.append(("plan", int(words[1]), []))
        elif words[0] == "run":
            cur = ("run", int(words[1]), [])
            calls.append(cur)
        else:
            k = words.index("values")
            dims = tuple(int(w) for w in words[3:k])
            cur[2].append(np.array([float(w) for w in words[k + 1:]], "float32").reshape(dims))
    return calls


@pytest.mark.skipif(CC is None, reason="no C compiler (cc) on PATH: the C harness needs one")
def test_c_program_calls_plan_and_run(tmp_path, monkeypatch):
    monkeypatch.setattr(tcomp.config, "native_program", True)
    x, n = T.matrix("x"), T.iscalar("n")
    r = T.reshape(x, (n, -1))
    f = tcomp.function([x, n], [T.exp(r * 0.5).sum(axis=1), T.tanh(r) * 2 + 1])
    compiled = f.compiled
    assert isinstance(compiled, NativeFunction)
    hp = compiled.hp
    rng = np.random.default_rng(7)
    xv = rng.standard_normal((3, 4)).astype("float32")

    (tmp_path / "prog.o").write_bytes(emit_object(compiled.llvm_ir_unoptimized))
    # the thread-count cell and the thread pool the kernels call (parallel.runtime_ir)
    (tmp_path / "runtime.o").write_bytes(emit_object(runtime_ir()))
    src = DRIVER % dict(plan=hp.plan_name, run=hp.run_name, x=_c_floats(xv), rows=3, cols=4, nregs=hp.n_regs,
                        nout=len(hp.out_slots), slots=", ".join(f"{{{lo}, {hi}}}" for lo, hi in hp.out_slots),
                        n_good=2, n_bad=5)
    (tmp_path / "main.c").write_text(src)
    subprocess.run([CC, "-O1", "-o", str(tmp_path / "main"), str(tmp_path / "main.c"), str(tmp_path / "prog.o"),
                    str(tmp_path / "runtime.o"), "-lm", "-lpthread"], check=True, capture_output=True, text=True)
    out = subprocess.run([str(tmp_path / "main")], check=True, capture_output=True, text=True, timeout=60).stdout
    (good, good_rc, c_outs), (bad, bad_code, _) = _parse(out)

    assert (good, good_rc) == ("run", 0)
    jit = f(xv, np.int32(2))
    want = [np.exp(xv.reshape(2, -1) * 0.5).sum(axis=1), np.tanh(xv.reshape(2, -1)) * 2 + 1]
    for c, j, w in zip(c_outs, jit, want):
        assert c.shape == j.shape == w.shape
        np.testing.assert_array_equal(c, j)  # the same object code
        np.testing.assert_allclose(c, w, rtol=1e-5, atol=1e-6)

    # n = 5 does not divide 12: plan returns the code of the first failing check
    assert bad == "plan" and bad_code > 0
    with pytest.raises(Exception) as info:
        evaluate_shape_program(compiled.program.shape, [xv, np.int32(5)])
    check = compiled.program.shape.checks[bad_code - 1]
    assert "reshape" in check.template and "reshape" in str(info.value)
    with pytest.raises(ValueError, match="reshape"):
        f(xv, np.int32(5))


def test_same_graph_same_module_text():
    """Symbols come from the program hash: two compilations give the same module text."""
    from tcomp.backend.cpu.host_program import HostProgram
    from tcomp.passes.lower_kernels import _Lowering

    x, n = T.matrix("x"), T.iscalar("n")
    g = tcomp.function([x, n], T.exp(T.reshape(x, (n, -1))).sum(axis=0), backend="reference").optimized
    texts = []
    for _ in range(2):
        low = _Lowering(g, None)
        texts.append(HostProgram(low.finish(), low.g).emit())
    assert texts[0] == texts[1]
    assert "_const" not in texts[0] or "internal" in texts[0]


_OBJECT_SCRIPT = r"""
import hashlib
import tcomp
import tcomp.tensor as T
from tcomp.backend.cpu.host_program import HostProgram, emit_object
from tcomp.passes.lower_kernels import _Lowering

x, n = T.matrix("x"), T.iscalar("n")
g = tcomp.function([x, n], T.exp(T.reshape(x, (n, -1))).sum(axis=0) * 2, backend="reference").optimized
low = _Lowering(g, None)
hp = HostProgram(low.finish(), low.g)
print(hp.plan_name, hashlib.sha256(emit_object(hp.emit())).hexdigest())
"""


def test_same_object_code_in_another_process():
    """The same graph gives byte-identical object code (and entry names) in a fresh interpreter."""
    import sys

    here = {}
    exec(compile(_OBJECT_SCRIPT.replace("print(", "here['out'] = ("), "<script>", "exec"), {"here": here})
    here_out = " ".join(here["out"])
    other = subprocess.run([sys.executable, "-c", _OBJECT_SCRIPT], check=True, capture_output=True, text=True,
                           timeout=120).stdout.strip()
    assert other == here_out
