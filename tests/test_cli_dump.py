"""The ``tcomp`` command on a user's own model file: every dump option, ``tcomp run``, and
one-line errors.  Called in process through ``tcomp.tools.cli.main(argv)``; one subprocess
checks ``python -m tcomp``.  Results are checked against NumPy written here."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections import Counter

import networkx as nx
import numpy as np
import pytest

from tcomp.ir import evaluate, format_graph, from_json, parse_graph
from tcomp.tools.cli import main

MODEL = textwrap.dedent('''\
    import numpy as np
    import tcomp
    import tcomp.tensor as T

    rng = np.random.default_rng(0)
    W1 = tcomp.shared((rng.standard_normal((6, 16)) * 0.3).astype("float32"), "W1")
    b1 = tcomp.shared(np.zeros(16, "float32"), "b1")
    W2 = tcomp.shared((rng.standard_normal((16, 3)) * 0.3).astype("float32"), "W2")
    x = T.matrix("x")
    hidden = T.tanh(T.dot(x, W1) + b1)
    hidden.name = "hidden"
    probs = T.nnet.softmax(T.dot(hidden, W2))
    predict = tcomp.function([x], probs, name="predict")
    table = np.arange(300, dtype="float32")


    def build():
        v = T.vector("v")
        return tcomp.function([v], (v * table).sum(), backend="reference")


    def running():
        v = T.vector("v")
        (total, prod), _ = tcomp.scan(lambda a, s, p: [s + a, p * a], sequences=v,
                                      outputs_info=[T.zeros_like(v[0]), T.ones_like(v[0])])
        return tcomp.function([v], [total, prod])
    ''')
TANH_LINE = 10  # the line of T.tanh(...) above


def numpy_predict(x, W1, b1, W2):
    h = np.tanh(x @ W1 + b1)
    s = h @ W2
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "model.py"
    path.write_text(MODEL)
    return path


@pytest.fixture(scope="module")
def params(model):
    from tcomp.tools.dump import load_target

    return {k: load_target(f"{model}:{k}")[0].get_value() for k in ("W1", "b1", "W2")}


def cli(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def test_dump_optimized_prints_the_fused_kernel_as_a_block_that_runs(capsys, model, params):
    code, out, err = cli(capsys, "dump", f"{model}:predict")
    assert code == 0, err
    assert re.search(r'^  %\d+ = fused\(%\d+, %\d+\) : f32\[\?, 16\] "hidden" \{$', out, re.M)  # the user's name
    assert "    %0 = add($0, $1) : f32[?, 16]\n    %1 = tanh(%0) : f32[?, 16]\n  }" in out
    g = parse_graph(out)
    x = np.random.default_rng(1).standard_normal((5, 6)).astype("float32")
    got = evaluate(g, [x, params["W1"], params["b1"], params["W2"]])[0]
    np.testing.assert_allclose(got, numpy_predict(x, **params), rtol=1e-5, atol=1e-6)


def test_traced_stage_has_no_kernel_and_keeps_user_names(capsys, model):
    code, out, _ = cli(capsys, "dump", f"{model}:predict", "--stage", "traced")
    assert code == 0 and "fused" not in out
    assert re.search(r'= tanh\(%\d+\) : f32\[\?, 16\] "hidden"$', out, re.M)
    assert '"x"' in out and '"W1"' in out


def test_variable_and_builder_targets(capsys, model):
    code, out, _ = cli(capsys, "dump", f"{model}:hidden", "--stage", "traced")
    assert code == 0 and out.startswith('graph(%0: f32[?, ?] "x"') and "softmax" not in out
    code, out, _ = cli(capsys, "dump", f"{model}:build")
    assert code == 0 and "fused(" in out and "reduce sum" in out


def test_llvm_and_asm_stages(capsys, model):
    import llvmlite.binding as llvm

    code, out, _ = cli(capsys, "dump", f"{model}:predict", "--stage", "llvm")
    assert code == 0 and re.search(r"^define .*@", out, re.M)
    code, out, _ = cli(capsys, "dump", f"{model}:predict", "--stage", "asm")
    assert code == 0
    features = llvm.get_host_cpu_features()
    if features.get("avx2", False):
        assert re.search(r"\bv\w+\s+.*%ymm\d+", out), "no 256-bit vector instructions in the asm stage"
    else:
        assert "%xmm" in out


def test_kernels_stage_when_the_function_has_it(capsys, model):
    from tcomp.function import Function

    if "kernels" not in Function.STAGES:
        pytest.skip("no kernel-program stage in Function.dump yet")
    code, out, _ = cli(capsys, "dump", f"{model}:predict", "--stage", "kernels")
    assert code == 0 and out.startswith("kernel program ") and re.search(r"^  fused fused\(", out, re.M)
    code, out, _ = cli(capsys, "dump", f"{model}:predict", "--stage", "kernels", "--format", "json")
    assert code == 0 and isinstance(json.loads(out), dict)


def test_json_format_validates_and_round_trips(capsys, model):
    code, out, _ = cli(capsys, "dump", f"{model}:predict", "--format", "json")
    assert code == 0
    d = json.loads(out)
    assert d["format"] == "tcomp.graph" and {n["op"] for n in d["nodes"]} >= {"input", "dot", "fused", "softmax"}
    g = from_json(out)
    code, text, _ = cli(capsys, "dump", f"{model}:predict", "--full-constants")
    assert format_graph(g, readable=True) == text.rstrip("\n")
    assert json.loads(json.dumps(d)) == d


DOT_NODE = re.compile(r'^  (\w+) \[label="((?:[^"\\]|\\.)*)", [^\[\]]*\];$')
DOT_EDGE = re.compile(r'^  (\w+) -> (\w+)(?: \[label="\d+"\])?;$')


def parse_dot(text: str) -> nx.DiGraph:
    """A small reader for the dot subset pydotprint writes; every line must be understood."""
    lines = text.strip().splitlines()
    assert lines[0] == "digraph tcomp {" and lines[-1] == "}"
    g = nx.MultiDiGraph()
    for line in lines[1:-1]:
        if m := DOT_NODE.match(line):
            g.add_node(m.group(1), label=m.group(2))
        elif m := DOT_EDGE.match(line):
            assert m.group(1) in g and m.group(2) in g, f"edge before its nodes: {line}"
            g.add_edge(m.group(1), m.group(2))
        else:
            assert re.match(r"^  (rankdir=TB|(node|edge) \[[^\]]*\]);$", line), f"unexpected dot line: {line}"
    return g


def test_dot_format_parses_and_matches_the_graph(capsys, model, tmp_path):
    code, out, _ = cli(capsys, "dump", f"{model}:predict", "--format", "dot")
    assert code == 0
    g = parse_dot(out)
    assert nx.is_directed_acyclic_graph(g)
    from tcomp.tools.dump import load_target

    fn = load_target(f"{model}:predict")[0]
    ops = [n for n in g.nodes if n.startswith("n")]
    assert len(ops) == len(fn.optimized) and g.number_of_edges() == fn.optimized.nx.number_of_edges() + 1
    assert any(g.nodes[n]["label"].startswith("fused{tanh($0 + $1)}") for n in ops)
    code, out, err = cli(capsys, "dump", f"{model}:predict", "--format", "dot", "-o", tmp_path / "g.svg")
    assert code == 0 and (tmp_path / "g.dot").exists()
    import shutil

    assert (tmp_path / "g.svg").exists() if shutil.which("dot") else "not installed" in out


def test_print_after_and_print_after_all(capsys, model):
    code, out, _ = cli(capsys, "dump", f"{model}:predict", "--print-after", "fuse_elementwise")
    assert code == 0 and out.startswith("# *** after fuse_elementwise (")
    assert "fused(" in out and "  %1 = tanh(%0) : f32[?, 16]" in out
    code, out, _ = cli(capsys, "dump", f"{model}:predict", "--print-after-all")
    heads = re.findall(r"^# \*\*\* after (\w+) ", out, re.M)
    assert heads[:3] == ["canonicalize", "stabilize", "constant_fold"] and "fuse_elementwise" in heads
    fuse_part = out.split("# *** after fuse_elementwise")[1].split("# ***")[0]
    assert re.search(r"^# \+  %\d+ = fused\(", fuse_part, re.M)  # a unified diff: + lines ...
    assert re.search(r"^# -  %\d+ = tanh\(", fuse_part, re.M)    # ... and - lines, nothing unchanged
    assert "softmax" not in fuse_part
    code, full, _ = cli(capsys, "dump", f"{model}:predict", "--print-after-all", "--full", "--stage", "optimized")
    assert full.count("graph(") == len(heads) + 1  # one graph per pass, then the stage


def test_time_passes_lists_the_pipeline(capsys, model):
    code, out, _ = cli(capsys, "dump", f"{model}:predict", "--time-passes")
    assert code == 0
    for name in ("canonicalize", "simplify", "stabilize", "fuse_elementwise", "total"):
        assert re.search(rf"^# {name}\s+\d+\.\d+", out, re.M), name
    assert re.search(r"^# compile: graph build [\d.]+ ms, passes [\d.]+ ms, backend cpu [\d.]+ ms$", out, re.M)


def test_stats_counts_and_estimates_from_shapes(capsys, model):
    code, out, _ = cli(capsys, "dump", f"{model}:predict", "--stats", "--shape", "x=32x6")
    assert code == 0
    from tcomp.tools.dump import load_target

    fn = load_target(f"{model}:predict")[0]
    per_op = Counter(fn.optimized.op(n) for n in fn.optimized.nodes())
    assert f"optimized nodes per op: {', '.join(f'{k} {v}' for k, v in sorted(per_op.items()))}" in out
    # 2*M*K*N per matmul, add+tanh per hidden element, 5 per softmax element
    flops = 2 * 32 * 6 * 16 + 2 * 32 * 16 + 2 * 32 * 16 * 3 + 5 * 32 * 3
    assert f"FLOPs per call: {flops / 1e3:.2f} kFLOP ({flops})" in out
    f32 = 4
    moved = f32 * ((32 * 6 + 6 * 16 + 32 * 16) + (32 * 16 + 16 + 32 * 16) + (32 * 16 + 16 * 3 + 32 * 3)
                   + (32 * 3 + 32 * 3))
    assert f"({moved})" in out
    peak = int(re.search(r"peak intermediate bytes (\d+) with reuse", out).group(1))
    assert f32 * 32 * 3 <= peak <= f32 * (32 * 16 + 32 * 3)  # dot(x,W1) dies into the kernel's output
    assert "native kernels" in out and "counted as 1" not in out
    code, out, _ = cli(capsys, "dump", f"{model}:predict", "--stats")
    assert code == 0 and "symbolic dims ? counted as 1" in out


def test_stats_of_a_function_with_a_multi_output_scan(capsys, model):
    """The memory plan reads a tuple-typed node's results through its get_output nodes
    (it raised AttributeError on the scan's tuple type)."""
    code, out, _ = cli(capsys, "dump", f"{model}:running", "--stats", "--shape", "v=5")
    assert code == 0
    assert "scan 1" in out and re.search(r"memory plan: \d+ buffers", out)
    assert "FLOPs per call: 10 FLOP (10)" in out  # 5 steps of one add and one mul
    code, out, _ = cli(capsys, "dump", f"{model}:running", "--stats")
    assert code == 0 and "n_steps counted as 1" in out


def test_vectorize_remarks_per_kernel(capsys, model):
    code, out, _ = cli(capsys, "dump", f"{model}:predict", "--vectorize-remarks")
    assert code == 0
    kernels = re.findall(r"^# kernel (k\d+) \(%(\d+) = (\w+)", out, re.M)
    assert {op for _, _, op in kernels} >= {"dot", "fused", "softmax"}
    assert all(k == f"k{n}" for k, n, _ in kernels)
    fused_part = out.split("= fused{")[1].split("# kernel")[0]
    assert re.search(r"passed: vectorized loop \(vectorization width: \d+", fused_part)
    # the options are switched off again: a later compile prints no remarks
    code, _, err = cli(capsys, "dump", f"{model}:predict", "--stage", "llvm")
    assert "remark:" not in err


def test_locations_and_elided_constants(capsys, model):
    code, out, _ = cli(capsys, "dump", f"{model}:predict", "--stage", "traced", "--locations")
    assert re.search(rf"= tanh\(%\d+\) : f32\[\?, 16\] \"hidden\"  # .*model\.py:{TANH_LINE}$", out, re.M)
    parse_graph(out)
    code, out, _ = cli(capsys, "dump", f"{model}:predict", "--locations")  # a kernel keeps its result's line
    assert re.search(rf'= fused\(.*"hidden" \{{  # .*model\.py:{TANH_LINE}$', out, re.M)
    parse_graph(out)
    code, out, _ = cli(capsys, "dump", f"{model}:build", "--stage", "traced")
    assert out.startswith("# 1 constant(s) over 100 elements elided") and "blob<f32[300] constant, sha256 " in out
    code, out, _ = cli(capsys, "dump", f"{model}:build", "--stage", "traced", "--full-constants")
    v = np.arange(300, dtype="float32")[::-1].copy()
    np.testing.assert_allclose(evaluate(parse_graph(out), [v])[0], np.dot(v, np.arange(300, dtype="float32")),
                               rtol=1e-6)


def test_run_a_dumped_file_gives_the_functions_result(capsys, model, params, tmp_path):
    tir = tmp_path / "predict.tir"
    code, out, _ = cli(capsys, "dump", f"{model}:predict", "--stage", "optimized", "-o", tir,
                       "--save-shared", tmp_path / "shared")
    assert code == 0 and tir.exists()
    shared = [tmp_path / "shared" / f"{k}.npy" for k in ("W1", "b1", "W2")]
    assert f"tcomp run {tir} --inputs x.npy {' '.join(map(str, shared))}" in out
    for k, path in zip(("W1", "b1", "W2"), shared):
        np.testing.assert_array_equal(np.load(path), params[k])
    x = np.random.default_rng(2).standard_normal((7, 6)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    files = [tmp_path / "x.npy"] + shared
    code, out, err = cli(capsys, "run", tir, "--inputs", *files, "-o", tmp_path / "out.npz")
    assert code == 0, err
    got = np.load(tmp_path / "out.npz")["out0"]
    np.testing.assert_allclose(got, numpy_predict(x, **params), rtol=1e-5, atol=1e-6)
    code, out, _ = cli(capsys, "run", tir, "--inputs", *files, "--backend", "reference")
    assert code == 0 and out.startswith("out0: float32[7, 3]")


@pytest.mark.parametrize("argv,message", [
    (["dump", "{model}:predict", "--stage", "optimised"], "unknown dump stage 'optimised'; valid: traced, optimized, "
                                                          ".*did you mean 'optimized'"),
    (["dump", "{model}:predict", "--print-after", "simplfy"], "unknown pass 'simplfy'.*did you mean 'simplify'"),
    (["dump", "{model}:predic"], "unknown name 'predic'.*did you mean 'predict'"),
    (["dump", "{model}:build", "--stage", "asm"], "stage 'asm' is not available on backend 'reference'"),
    (["dump", "{model}:predict", "--format", "dot", "--stage", "llvm"], "--format dot prints a graph stage"),
    (["dump", "{model}:predict", "--stats", "--shape", "y=3x4"], "unknown input 'y'; valid: x"),
    (["dump", "{model}:predict", "--shape", "x=3by4"], "expected INPUT=DIMS like x=128x784"),
    (["dump", "nowhere.py:f"], "no such file: nowhere.py"),
    (["bench", "--threads", "0"], "argument --threads: expected comma-separated positive thread counts"),
    (["bench", "--repeat", "-1"], "argument --repeat: expected an integer >= 0"),
    (["inspect", "--layers", "10x5"], "argument --layers: expected comma-separated positive layer sizes"),
    (["demo", "--epochs", "0"], "argument --epochs: expected a positive integer"),
    (["demo", "--backend", "gpu"], "unknown backend 'gpu'; valid: reference, cpu"),
    (["dumb"], "unknown command 'dumb'.*did you mean 'dump'"),
])
def test_bad_options_are_one_line_errors_with_a_hint(capsys, model, argv, message):
    code, out, err = cli(capsys, *[a.format(model=model) for a in argv])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("tcomp"), err
    assert re.search(message, err), err


def test_a_module_that_fails_to_import_shows_its_traceback(capsys, tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("import tcomp\n\nx = undefined_name + 1\n")
    code, out, err = cli(capsys, "dump", f"{bad}:x")
    assert code == 2
    assert "Traceback" in err and 'broken.py", line 3' in err
    assert err.rstrip().splitlines()[-1] == ("tcomp dump: error: cannot import " + str(bad) + ": NameError: name "
                                             "'undefined_name' is not defined (the traceback above shows where the "
                                             "module failed)")


def test_fn_dump_bogus_lists_every_stage(model):
    from tcomp.tools.dump import load_target

    fn = load_target(f"{model}:predict")[0]
    with pytest.raises(ValueError, match="unknown dump stage 'bogus'; valid: " + ", ".join(fn.dump_stages())):
        fn.dump("bogus")


def test_help_lists_valid_choices(capsys):
    from tcomp.function import Function
    from tcomp.passes.manager import PASSES

    code, out, _ = cli(capsys, "dump", "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert f"one of: {', '.join(Function.STAGES)}" in flat
    assert ", ".join(sorted(PASSES)) in flat and "text (parses back), json" in flat
    for cmd in ("bench", "inspect", "demo", "run"):
        code, out, _ = cli(capsys, cmd, "--help")
        assert code == 0 and "usage: tcomp " + cmd in out


def test_python_dash_m_tcomp_version():
    import tcomp

    out = subprocess.run([sys.executable, "-m", "tcomp", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"tcomp {tcomp.__version__}"
