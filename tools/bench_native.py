"""A/B of the CPU backend's two call paths in one process: the same graph compiled with and
without ``tcomp.config.native_program``, timed alternately (best of N each), so machine load
hits both alike.  ``python -m tcomp.tools.bench_native CASE [pn]`` with CASE one of ``xyz``
(``x + y*z`` on 3-element vectors, with checks and with ``trust_input``), ``digits`` (the
demo's digits MLP step), ``mlp`` (784-512-512-10 step, batch 128), ``elementwise`` (2^24),
``softmax`` (4096x1024); prints one JSON line.  ``pn`` times the planner first: the first
call after NumPy's pays fresh pages for large outputs, so compare both orders there.
"""
import json
import sys
import time

import numpy as np

import tcomp
import tcomp.tensor as T
from tcomp.backend.cpu import compile_graph
from tcomp.tools import bench as B


def both(build):
    out = []
    for flag in (True, False):
        tcomp.config.native_program = flag
        out.append(build())
    tcomp.config.native_program = False
    return out

def ab(fns, number, rounds):
    best = [1e9] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            for _ in range(number):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t) / number)
    return best

def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rows = {}
    case = argv[0]
    rng = np.random.default_rng(0)
    if case == "xyz":
        def mk(trust):
            x, y, z = T.fvector("x"), T.fvector("y"), T.fvector("z")
            return tcomp.function([x, y, z], x + y * z, trust_input=trust)
        (fn, fo), (tn, to) = both(lambda: mk(False)), both(lambda: mk(True))
        a, b, c = (np.full(3, v, "float32") for v in (1, 2, 3))
        r = ab([lambda: fn(a, b, c), lambda: fo(a, b, c), lambda: tn(a, b, c), lambda: to(a, b, c),
                lambda: np.add(a, np.multiply(b, c))], 300, 80)
        rows = {"native checks us": r[0] * 1e6, "planner checks us": r[1] * 1e6, "native trust us": r[2] * 1e6,
                "planner trust us": r[3] * 1e6, "numpy ufuncs us": r[4] * 1e6}
    elif case == "digits":
        from tcomp.examples import digits
        tx, ty, _, _ = digits.load_digits(0)
        def mk():
            train_x, train_y = tcomp.shared(tx, "train_x"), tcomp.shared(ty, "train_y")
            model = digits.Model("mlp", tx.shape[1], 10, seed=0)
            y, index = T.ivector("y"), T.lscalar("index")
            cost = model.nll(y) + 1e-4 * sum((W ** 2).sum() for W in model.weights)
            grads = T.grad(cost, model.params)
            return tcomp.function([index], cost, updates=[(p, p - 0.1 * g) for p, g in zip(model.params, grads)],
                                  givens={model.x: train_x[index * 32:(index + 1) * 32],
                                          y: train_y[index * 32:(index + 1) * 32]})
        sn, so = both(mk)
        i = [0]
        def stepper(s):
            def go():
                i[0] = (i[0] + 1) % 44
                s(i[0])
            return go
        r = ab([stepper(sn), stepper(so)], 20, 40)
        rows = {"native digits step us": r[0] * 1e6, "planner digits step us": r[1] * 1e6}
    elif case == "mlp":
        from tcomp.examples.mlp import build_classifier_step
        sn, so = both(lambda: build_classifier_step((784, 512, 512, 10), batch=128)[0])
        xv = rng.standard_normal((128, 784)).astype("float32")
        yv = rng.integers(0, 10, 128).astype("int32")
        r = ab([lambda: sn(xv, yv), lambda: so(xv, yv)], 3, 15)
        rows = {"native mlp784 step ms": r[0] * 1e3, "planner mlp784 step ms": r[1] * 1e3}
    elif case in ("elementwise", "softmax"):
        if case == "elementwise":
            n = 1 << 24
            g = B._graph_elementwise(n)
            ins = [rng.standard_normal(n).astype("float32") for _ in range(3)]
            npf = lambda: ins[0] * ins[1] + ins[2] * np.tanh(ins[0])
        else:
            g = B._graph_softmax(4096, 1024)
            ins = [rng.standard_normal((4096, 1024)).astype("float32")]
            npf = lambda: B._np_softmax(ins[0])
        fn, fo = both(lambda: compile_graph(g))
        np.testing.assert_allclose(fn(ins)[0], fo(ins)[0], rtol=1e-5, atol=1e-6)
        order = argv[1] if len(argv) > 1 else "np"
        fns = [lambda: fn(ins), lambda: fo(ins)]
        r = ab(fns + [npf] if order == "np" else fns[::-1] + [npf], 1, 12)
        if order != "np":
            r[0], r[1] = r[1], r[0]
        rows = {f"native {case} ms": r[0] * 1e3, f"planner {case} ms": r[1] * 1e3, f"numpy {case} ms": r[2] * 1e3,
                "order": "native first" if order == "np" else "planner first"}
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rows.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
