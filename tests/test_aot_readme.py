"""The README's "C ABI" example, as written there: the Python export script runs, the C
program compiles against the header with ``cc`` and prints NumPy's softmax and the JIT's
message for a misshapen input."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tcomp.tensor as T

CC = shutil.which("cc")
README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def _section_blocks():
    text = open(README).read()
    section = text[text.index("## C ABI\n"):]
    section = section[:section.index("\n## ", 3)]
    return dict((lang, code) for lang, code in re.findall(r"```(\w+)\n(.*?)```", section, re.S))


@pytest.mark.skipif(CC is None, reason="no C compiler (cc): ahead-of-time export links with it")
def test_readme_c_abi_example_compiles_and_runs(tmp_path):
    import tcomp

    blocks = _section_blocks()
    assert set(blocks) == {"python", "c"}
    (tmp_path / "export.py").write_text(blocks["python"])
    (tmp_path / "main.c").write_text(blocks["c"])
    r = subprocess.run([sys.executable, "export.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "libscores.h").exists()
    subprocess.run([CC, "main.c", "-L.", "-lscores", "-Wl,-rpath,.", "-o", "main", "-Wall", "-Werror"],
                   cwd=tmp_path, check=True, capture_output=True, text=True)
    out = subprocess.run(["./main"], cwd=tmp_path, check=True, capture_output=True, text=True, timeout=60).stdout
    lines = out.splitlines()
    x = np.array([[1, 0, 0, 0], [0, 1, 2, 3]], "float64")
    W = np.arange(12, dtype="float32").reshape(4, 3).astype("float64") / 10
    z = x @ W
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(np.array([ln.split() for ln in lines[:2]], float), p, atol=1e-4)
    # the JIT's message, as the README quotes it
    xs = T.matrix("x")
    f = tcomp.function([xs], T.nnet.softmax(T.dot(xs, tcomp.shared(W.astype("float32"), "W"))))
    with pytest.raises(ValueError) as e:
        f(np.zeros((4, 2), "float32"))
    assert lines[2] == f"error: {e.value}"
    assert f"({e.value})" in open(README).read().replace("`", "").replace("\n", " ")
