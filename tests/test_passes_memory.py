"""Memory planning: views, in-place reuse, pool reuse by size, outputs never reused, and a
simulation check that the plan never lets two simultaneously live values share a buffer."""
import numpy as np

from tcomp.ir import Constant, Graph, TensorType
from tcomp.passes import plan_memory


def const(g, value, dtype):
    return g.add_constant(Constant(np.array(value, dtype=dtype)))


def assert_no_conflicts(g, plan):
    """Replay the plan: a buffer may only be (re)assigned once its previous value is dead."""
    order = g.topo_order()
    pos = {n: i for i, n in enumerate(order)}
    last = {}
    for n in order:
        for o in g.operands(n):
            s = plan.storage_of(o)
            last[s] = max(last.get(s, -1), pos[n])
    for o in g.outputs:
        last[plan.storage_of(o)] = len(order)
    holder = {}
    for n in order:
        if n not in plan.buffer_of:
            continue
        b = plan.buffer_of[n]
        if b in holder:
            prev = holder[b]
            in_place = plan.inplace.get(n) is not None and plan.storage_of(plan.inplace[n]) == prev
            assert last.get(prev, pos[prev]) < pos[n] or (in_place and last[prev] == pos[n]), \
                f"%{n} reuses buf{b} while %{prev} is still live"
        holder[b] = n


def test_chain_runs_in_place_and_output_buffer_is_separate():
    g = Graph()
    x = g.add_input(TensorType("float32", (100,)))
    a = g.add_node("exp", [x])
    b = g.add_node("neg", [a])
    c = g.add_node("tanh", [b])
    d = g.add_node("sqrt", [c])
    g.outputs = [d]
    plan = plan_memory(g)
    # the output takes the chain's buffer too (exactly its size): nothing else is allocated
    assert plan.inplace == {b: a, c: b, d: c}
    assert plan.buffer_of[a] == plan.buffer_of[b] == plan.buffer_of[c] == plan.buffer_of[d]
    assert plan.buffers[plan.buffer_of[d]].output and len(plan.buffers) == 1
    assert plan.bytes_without_reuse == 3 * 400 and plan.bytes_with_reuse == 0
    assert_no_conflicts(g, plan)


def test_inputs_are_never_written_in_place():
    g = Graph()
    x = g.add_input(TensorType("float32", (8,)))
    e = g.add_node("exp", [x])
    g.outputs = [g.add_node("sum", [e], {"axis": (0,)})]
    plan = plan_memory(g)
    assert plan.inplace == {} and x not in plan.buffer_of


def test_views_for_reshape_and_axis_insertion_but_not_transpose():
    g = Graph()
    x = g.add_input(TensorType("float32", (4, 6)))
    e = g.add_node("exp", [x])
    r = g.add_node("reshape", [e], {"shape": (24,)})
    d = g.add_node("dimshuffle", [r], {"pattern": ("x", 0)})
    t = g.add_node("dimshuffle", [e], {"pattern": (1, 0)})
    g.outputs = [g.add_node("sum", [d], {"axis": (0, 1)}), g.add_node("sum", [t], {"axis": (0, 1)})]
    plan = plan_memory(g)
    assert plan.view_of == {r: e, d: r}
    assert plan.storage_of(d) == e and t in plan.buffer_of
    assert_no_conflicts(g, plan)


def test_dead_buffer_reused_by_smaller_value_and_liveness_through_views():
    g = Graph()
    x = g.add_input(TensorType("float64", (10, 10)))
    big = g.add_node("exp", [x])                                     # 800 B
    v = g.add_node("reshape", [big], {"shape": (100,)})              # view of big
    s = g.add_node("sum", [v], {"axis": (0,)})                       # big dies here
    y = g.add_node("sum", [x], {"axis": (1,)})                       # 80 B: may take big's buffer
    z = g.add_node("mul", [y, s])
    g.outputs = [g.add_node("log", [z])]
    plan = plan_memory(g)
    assert plan.buffer_of[y] == plan.buffer_of[big]
    assert plan.bytes_without_reuse == 800 + 8 + 80 + 80
    assert plan.bytes_with_reuse < plan.bytes_without_reuse
    assert_no_conflicts(g, plan)


def test_view_keeps_base_alive():
    g = Graph()
    x = g.add_input(TensorType("float32", (4, 4)))
    a = g.add_node("exp", [x])
    v = g.add_node("reshape", [a], {"shape": (16,)})
    b = g.add_node("neg", [x])              # must not take a's buffer: v still reads it below
    c = g.add_node("sum", [v], {"axis": (0,)})
    g.outputs = [b, c]
    plan = plan_memory(g)
    assert plan.buffer_of[b] != plan.buffer_of[a]
    assert_no_conflicts(g, plan)


def test_output_view_makes_base_an_output_buffer():
    g = Graph()
    x = g.add_input(TensorType("float32", (2, 3)))
    a = g.add_node("exp", [x])
    g.outputs = [g.add_node("reshape", [a], {"shape": (6,)})]
    plan = plan_memory(g)
    assert plan.buffers[plan.buffer_of[a]].output and plan.bytes_with_reuse == 0


def test_symbolic_shapes_reuse_only_identical_named_shapes():
    g = Graph()
    x = g.add_input(TensorType("float32", ("n", 3)))
    y = g.add_input(TensorType("float32", (None, 3)))
    a = g.add_node("exp", [x])
    s = g.add_node("sum", [a], {"axis": (0, 1)})
    b = g.add_node("log", [x])                  # same named shape: may take a's dead buffer
    c = g.add_node("sum", [b], {"axis": (0, 1)})
    p = g.add_node("exp", [y])                  # anonymous dim: no reuse at all
    q = g.add_node("sum", [p], {"axis": (0, 1)})
    g.outputs = [g.add_node("add", [g.add_node("add", [s, c]), q])]
    plan = plan_memory(g)
    assert plan.buffer_of[b] == plan.buffer_of[a]
    assert len({plan.buffer_of[p]} & {plan.buffer_of[a]}) == 0
    assert plan.dynamic_values == 3
    assert "memory plan" in str(plan)
    assert_no_conflicts(g, plan)


def test_random_graphs_never_conflict():
    rng = np.random.default_rng(3)
    for trial in range(30):
        g = Graph()
        nodes = [g.add_input(TensorType("float32", (4, 4))), g.add_input(TensorType("float32", (4,)))]
        for _ in range(25):
            k = rng.integers(0, 5)
            a = nodes[rng.integers(len(nodes))]
            b = nodes[rng.integers(len(nodes))]
            if k == 0:
                nodes.append(g.add_node("exp", [a]))
            elif k == 1:
                nodes.append(g.add_node("add", [a, b]))
            elif k == 2 and g.type(a).ndim == 2:
                nodes.append(g.add_node("sum", [a], {"axis": (0,)}))
            elif k == 3:
                nodes.append(g.add_node("reshape", [a], {"shape": g.type(a).shape}))  # a view
            else:
                nodes.append(g.add_node("mul", [a, const(g, 2.0, "float32")]))
        g.outputs = list(rng.choice(nodes[2:], size=2, replace=False))
        g.remove_dead()
        plan = plan_memory(g)
        assert plan.bytes_with_reuse <= plan.bytes_without_reuse
        assert_no_conflicts(g, plan)
