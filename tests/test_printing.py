"""tcomp.printing (debugprint, pp, pydotprint), the readable fused-kernel block of the text
form (printed by fn.dump and tcomp dump) and its parser, elided constants, locations and
fn.dump's stages.  Expected values come from NumPy or the reference interpreter, never from
printing tcomp's own output back."""
from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.ir import Constant, Graph, TensorType, evaluate, format_graph, parse_graph
from tcomp.ir.verify import verify
from tcomp.passes import fuse_elementwise
from tcomp.printing import debugprint, dot_text, pp, pydotprint

F32 = "float32"
RNG = np.random.default_rng(7)


def TT(*shape, dtype=F32):
    return TensorType(dtype, shape)


def rand(*shape):
    return RNG.standard_normal(shape).astype(F32)


# -- graphs with every kind of fused kernel ------------------------------------------------------

def g_chain():
    g = Graph()
    x, b = g.add_input(TT("n", 5), "x"), g.add_input(TT(5), "b")
    y = g.add_node("tanh", [g.add_node("add", [x, b])], name="y")
    g.outputs = [g.add_node("mul", [y, g.add_constant(np.float32(0.5))])]
    return g, [rand(3, 5), rand(5)]


def g_reduce_and_result():
    g = Graph()
    x = g.add_input(TT("n", 4), "x")
    e = g.add_node("exp", [x])
    c = g.add_node("cast", [g.add_node("mul", [e, g.add_constant(np.float32(2.0))])], {"dtype": "float64"})
    g.outputs = [g.add_node("sum", [c], {"axis": (1,)}), e]
    return g, [rand(2, 4)]


def g_layout():
    g = Graph()
    x, y, z = g.add_input(TT(5, "n")), g.add_input(TT("n", 5)), g.add_input(TT(10))
    xt = g.add_node("dimshuffle", [x], {"pattern": (1, 0)})
    zr = g.add_node("reshape", [z], {"shape": (2, 5)})
    g.outputs = [g.add_node("mul", [g.add_node("exp", [g.add_node("add", [xt, y])]), zr])]
    return g, [rand(5, 2), rand(2, 5), rand(10)]


def g_epilogue():
    g = Graph()
    x = g.add_input(TT("n", 6), "x")
    s = g.add_node("max", [g.add_node("tanh", [x])], {"axis": (1,)})
    r = g.add_node("reshape", [s], {"shape": (-1, 1)})
    p = g.add_node("mul", [g.add_node("exp", [x]), x])
    g.outputs = [r, g.add_node("dimshuffle", [p], {"pattern": (0, "x", 1)})]
    return g, [rand(4, 6)]


def g_random(seed):
    """A random elementwise DAG over two inputs (fusion makes one or more kernels of it)."""
    rng = np.random.default_rng(seed)
    g = Graph()
    vals = [g.add_input(TT("n", 3), "a"), g.add_input(TT(3), "b")]
    vals.append(g.add_node("tanh", [g.add_node("add", vals)]))
    unary, binary = ["exp", "tanh", "neg", "abs", "sigmoid"], ["add", "mul", "sub", "maximum"]
    for _ in range(int(rng.integers(3, 12))):
        if rng.random() < 0.4:
            vals.append(g.add_node(unary[rng.integers(len(unary))], [vals[rng.integers(len(vals))]]))
        elif rng.random() < 0.2:
            vals.append(g.add_node("mul", [vals[rng.integers(len(vals))],
                                           g.add_constant(np.float32(rng.normal()))]))
        else:
            a, b = rng.integers(len(vals), size=2)
            vals.append(g.add_node(binary[rng.integers(len(binary))], [vals[a], vals[b]]))
    outs = [vals[-1]] + ([vals[-2]] if rng.random() < 0.5 else [])
    if rng.random() < 0.5:
        outs.append(g.add_node("sum", [vals[-1]], {"axis": (1,)}))
    g.outputs = outs
    return g, [rand(2, 3), rand(3)]


CASES = {"chain": g_chain, "reduce_and_result": g_reduce_and_result, "layout": g_layout, "epilogue": g_epilogue}
CASES.update({f"random{s}": (lambda s=s: g_random(s)) for s in range(12)})


@pytest.mark.parametrize("case", sorted(CASES))
def test_readable_fused_block_parses_back_to_the_same_graph(case):
    g, inputs = CASES[case]()
    h = fuse_elementwise(g.copy())
    verify(h)
    text = format_graph(h, readable=True)
    kernels = [n for n in h.nodes() if h.op(n) == "fused"]
    assert kernels and "body=" not in text
    assert all(re.search(rf"^  %{k} = fused\(.*\) : .* {{$", text, re.M) for k in kernels)
    h2 = parse_graph(text)
    for n in h.nodes():
        assert h2.op(n) == h.op(n) and h2.attrs(n) == h.attrs(n) and h2.type(n) == h.type(n)
        assert h2.operands(n) == h.operands(n) and h2.name(n) == h.name(n)
    assert format_graph(h2) == format_graph(h) and format_graph(h2, readable=True) == text
    assert h2.structural_hash() == h.structural_hash()
    for want, got in zip(evaluate(g, inputs), evaluate(h2, inputs)):  # the unfused graph is the oracle
        np.testing.assert_array_equal(got, want)


def test_block_shows_steps_reduce_epilogue_and_outputs_readably():
    g, _ = g_reduce_and_result()
    text = format_graph(fuse_elementwise(g.copy()), readable=True)
    assert "    %0 = exp($0) : f32[n, 4]\n" in text
    assert '    %3 = cast(%2) {dtype="float64"} : f64[n, 4]\n' in text
    assert "    %1 = constant() {value=tensor(2.0)} : f32[]\n" in text
    assert "    reduce sum {axis=(1,), keepdims=false} : f64[n]\n" in text
    assert "    outputs (%0)\n" in text
    g, _ = g_epilogue()
    text = format_graph(fuse_elementwise(g.copy()), readable=True)
    assert "    epilogue reshape {shape=(-1, 1)}\n" in text
    assert max(len(line) for line in text.splitlines()) < 100  # no 300-character tuple lines


BLOCK = textwrap.dedent("""\
    graph(%0: f32[2, 3] "x") {
      %1 = fused(%0) : f32[2, 3] {
        %0 = exp($0) : f32[2, 3]
        %1 = neg(%0) : f32[2, 3]
      }
      return (%1)
    }""")


def test_hand_written_block_evaluates_like_numpy():
    g = parse_graph(BLOCK)
    x = rand(2, 3)
    np.testing.assert_allclose(evaluate(g, [x])[0], -np.exp(x), rtol=1e-6)


@pytest.mark.parametrize("edit,match", [
    (("neg(%0) : f32[2, 3]", "neg(%0) : f32[3]"), "line 4: step %1 of %1 is written as f32\\[3\\] but neg gives"),
    (("%1 = neg", "%2 = neg"), "line 4: steps are numbered in order from %0: expected %1, got %2"),
    (("  }\n  return (%1)\n}", ""), "line 4: missing '}' closing the fused block of %1 \\(opened on line 2\\)"),
    (("  }\n", ""), "line 5: .*got 'return' \\(is the '}' closing the fused block of %1 missing\\?\\)"),
    (("fused(%0) : f32[2, 3] {", "exp(%0) : f32[2, 3] {"), "line 2: only a fused kernel has a '{' block"),
    (("neg(%0)", "neg(%0, $3)"), "line 2: %1 = fused: .*\\$3 but the kernel has 1 operands"),
    (("%1 = neg(%0) : f32[2, 3]", "reduce bogus : f32[2]"), "line 4: unknown op 'bogus'"),
    (("%1 = neg(%0) : f32[2, 3]", "outputs (%0)\n    %1 = neg(%0) : f32[2, 3]"),
     "line 5: kernel steps come before"),
])
def test_block_errors_name_the_line(edit, match):
    text = BLOCK.replace(*edit)
    assert text != BLOCK
    with pytest.raises(ValueError, match=match):
        parse_graph(text)


def test_end_of_line_comments_are_ignored_but_not_inside_strings():
    g = parse_graph('graph(%0: f32[2] "a#b") {  # header\n  %1 = exp(%0) : f32[2] "c # d"  # why\n'
                    '  # a whole-line comment\n  return (%1)\n}')
    assert g.name(0) == "a#b" and g.name(1) == "c # d"


# -- fn.dump -----------------------------------------------------------------------------------

def small_mlp(backend="reference"):
    W = tcomp.shared(rand(4, 8), "W")
    b = tcomp.shared(rand(8), "b")
    x = T.matrix("x")
    h = T.tanh(T.dot(x, W) + b)
    h.name = "hidden"
    return tcomp.function([x], T.nnet.softmax(T.dot(h, W.T[:, :4])), backend=backend), (x, h, W, b)


def test_dump_stages_and_a_helpful_error_for_a_bogus_one():
    fn, _ = small_mlp()
    from tcomp.function import Function

    # the reference backend compiles nothing: every stage but the LLVM and PTX ones
    assert fn.dump_stages() == tuple(s for s in Function.STAGES if s not in ("llvm", "asm", "ptx"))
    with pytest.raises(ValueError, match="unknown dump stage 'optimised'; valid: traced, optimized"
                                         ".*did you mean 'optimized'"):
        fn.dump("optimised")
    with pytest.raises(ValueError, match="not available on backend 'reference'; this function has: traced, optimized,"):
        fn.dump("llvm")
    text = fn.dump("optimized")
    assert "fused(" in text and "body=" not in text and '"hidden"' in fn.dump("traced")
    x = rand(5, 4)
    np.testing.assert_array_equal(evaluate(parse_graph(text), [x, fn.shared_inputs[0].get_value(),
                                                                 fn.shared_inputs[1].get_value()])[0], fn(x))


def test_large_constants_are_elided_with_type_and_digest_unless_asked():
    v = T.vector("v")
    c = np.arange(300, dtype=F32)
    fn = tcomp.function([v], v * c, backend="reference")
    text = fn.dump("traced")
    assert text.startswith("# 1 constant(s) over 100 elements elided") and "does not parse back" in text
    assert re.search(r"tensor\(blob<f32\[300\] constant, sha256 [0-9a-f]{12}\.\.>\)", text)
    with pytest.raises(ValueError, match="this constant was abbreviated"):
        parse_graph(text)
    full = fn.dump("traced", full_constants=True)
    np.testing.assert_array_equal(evaluate(parse_graph(full), [np.ones(300, F32)])[0], c)


def test_locations_point_at_the_users_lines(tmp_path):
    src = tmp_path / "user_model.py"
    src.write_text("import tcomp, tcomp.tensor as T\nx = T.vector('x')\ny = T.exp(x)\nz = y * 2.0\n"
                   "f = tcomp.function([x], z, backend='reference')\n")
    from tcomp.tools.dump import load_target

    fn, _ = load_target(f"{src}:f")
    text = fn.dump("traced", locations=True)
    assert re.search(r"= exp\(%0\) : f32\[\?\]  # .*user_model\.py:3$", text, re.M)
    assert re.search(r"= mul\(.*  # .*user_model\.py:4$", text, re.M)
    assert re.search(r'# %0 "x": .*user_model\.py:2$', text, re.M)
    assert format_graph(parse_graph(text)) == str(fn.traced)  # comments parse away
    assert "user_model.py:3" in debugprint(fn, stage="traced", locations=True, file="str")


# -- debugprint / pp / pydotprint ----------------------------------------------------------------

def test_debugprint_is_an_indented_tree_with_ids_and_shared_subtrees_once():
    x = T.vector("x")
    e = T.exp(x)
    y = e * e + e
    text = debugprint(y, file="str")
    assert text.splitlines() == [
        "add [id A] f32[?]",
        " |mul [id B] f32[?]",
        " | |exp [id C] f32[?]",
        " | | |x [id D] f32[?]",
        " | |exp [id C] f32[?]",
        " |exp [id C] f32[?]",
    ]
    assert debugprint(y, print_type=False, file="str").splitlines()[0] == "add [id A]"


def test_debugprint_of_a_function_labels_updates_and_shows_kernels(capsys):
    W = tcomp.shared(np.ones(3, F32), "W")
    x = T.vector("x")
    fn = tcomp.function([x], (x * W).sum(), updates=[(W, W - 0.1 * x)], backend="reference")
    text = debugprint(fn)
    assert capsys.readouterr().out.strip() == text
    lines = text.splitlines()
    # one kernel computes the loss and W's update: read twice, printed once
    assert lines[0] == "get_output{index=0} [id A] f32[]"
    assert lines[1] == " |fused{(sum($0 * $1, axis=(0,), keepdims=false), $1 - ($0 * 0.1))} [id B] (f32[], f32[3])"
    assert lines[4] == "get_output{index=1} [id E] f32[3]  (update W)"
    assert lines[5].startswith(" |fused{") and lines[5].endswith("[id B] (f32[], f32[3])") and len(lines) == 6


def test_pp_is_one_line_math():
    x, W, b = T.matrix("x"), T.matrix("W"), T.vector("b")
    assert pp(T.dot(x, W) + b) == "(x @ W) + b"
    assert tcomp.pp(T.tanh(x * 2.0) - b) == "tanh(x * 2.0) - b"
    assert pp(T.nnet.softmax(x)) == "softmax(x, axis=1)"
    e = T.exp(x)
    assert pp([e * e, -x]) == "t0 * t0, -x  where t0 = exp(x)"
    fn = tcomp.function([x, b], T.tanh(x + b).sum(axis=1), backend="reference")
    assert pp(fn) == pp(fn, stage="traced") == "sum(tanh(x + b), axis=(1,), keepdims=false)"


def test_printing_walks_are_not_recursive():
    x = T.vector("x")
    y = x
    for _ in range(3000):
        y = y + 1.0
    assert len(debugprint(y, file="str").splitlines()) == 3000 * 2 + 1
    assert pp(y).count("+ 1.0") == 3000
    assert dot_text(y).count("->") == 3000 * 2 + 1


def test_dot_text_lists_every_node_and_edge():
    fn, _ = small_mlp()
    text = dot_text(fn)
    g = fn.optimized
    assert text.startswith("digraph tcomp {") and text.rstrip().endswith("}")
    assert len(re.findall(r"^  n\d+ \[label=", text, re.M)) == len(g)
    assert len(re.findall(r"^  n\d+ -> n\d+", text, re.M)) == g.nx.number_of_edges()
    assert re.search(r'label="fused\{tanh\(\$0 \+ \$1\)\}', text)


def test_pydotprint_writes_dot_and_renders_when_graphviz_is_there(tmp_path):
    import io
    import shutil

    fn, _ = small_mlp()
    msg = io.StringIO()
    out = pydotprint(fn, str(tmp_path / "g.svg"), file=msg)
    assert (tmp_path / "g.dot").read_text() == dot_text(fn)
    if shutil.which("dot"):
        assert out.endswith("g.svg") and (tmp_path / "g.svg").read_text().lstrip().startswith("<")
    else:
        assert out.endswith("g.dot") and "Graphviz's 'dot' program is not installed" in msg.getvalue()


def test_elided_constant_in_a_kernel_step_never_happens_for_scalars():
    g = Graph()
    x = g.add_input(TT(3), "x")
    g.outputs = [g.add_node("exp", [g.add_node("add", [x, g.add_constant(Constant(np.float32(1.5)))])])]
    h = fuse_elementwise(g)
    assert "tensor(1.5)" in format_graph(h, 0, readable=True)
