"""The graph-level compile cache: a traced graph and its options -> its lowered kernel program.

Why: with the object code cached (``cache.py``), a warm start of the MLP training step still
ran the pass pipeline, the lowering to a kernel program and the program hash (~20 ms of
its ~35 ms ``function(...)``) only to arrive at a program it had made before.  This cache
maps what those steps read to what they produced, so a warm start goes from the traced
graph straight to linking the stored object.

**Key** (:func:`key_for`): the exact digest of the traced graph *before* the passes
(``tcomp.ir.digest``: ids, ops, attributes with their exact types, types, names, inputs,
outputs; not source locations), the pipeline as the pass manager resolves it (names after
``exclude``, each pass's module and qualified name), the donations (updates the program
may write in place), :data:`FORMAT` and the source of every package the result depends on
(tcomp's top level, passes, IR, ops, the CPU backend), all under ``cache.make_key``, which
adds the target, CPU, versions and the runtime's source.  A user-registered pass, a
monkeypatched one, a Python op, instrumentation (``pass_options``) or any backend but
'cpu' gives no key: such a compile does not use this cache.

**Entry**: an ordinary ``cache.py`` entry named ``g<sha256>``: the same header and payload
checksum, temporary file + ``os.replace``, least-recently-used size bound, ``tcomp cache
info|clear`` and ``TCOMP_CACHE=0``.  Its payload is the pickled (kernel program, lowered
graph without source locations); a hit is only taken after the checksum passed, and an entry
that does not unpickle into those types is deleted and the function compiled afresh (and
stored again).  Pickle loads only what this user's own tcomp wrote into this user's own
cache directory, the same trust as loading its object code.

**What a hit holds**: positions only.  Inputs, shared variables and updates bind by position
in ``tcomp.function`` (``Function._run`` fetches each shared variable's current value per
call), and the kernel program never names a Python object, so a hit from another process
or another build of the same graph binds to *this* function's shared variables and reads
their values at call time.  ``f.optimized`` and ``f.pass_report`` of a function compiled
from a hit are computed on first use (the same deterministic passes; see ``Function``).
"""
from __future__ import annotations

import json
import pickle
import sys

from tcomp.ir.digest import Undigestable, graph_digest

from . import cache

#: bump when the payload layout or what the key covers changes
FORMAT = 1
#: the packages whose source the kernel program depends on (read once per process)
PACKAGES = ("tcomp", "tcomp.passes", "tcomp.ir", "tcomp.ir.ops", "tcomp.backend.cpu")
#: this process's counts (tests and tools)
stats = {"hits": 0, "misses": 0, "stores": 0, "rejected": 0}


def _pipeline_identity(pipeline, exclude) -> list:
    """The resolved pass list, each pass as (name, module, qualname); raises ValueError for
    a pass whose code is not tcomp's own module function (its source is not fingerprinted)."""
    from tcomp.passes import PASSES, PassManager

    names = PassManager(pipeline, exclude=exclude).pipeline
    out = []
    for name in names:
        fn = PASSES[name].fn
        mod, qual = getattr(fn, "__module__", None) or "", getattr(fn, "__qualname__", "")
        if not mod.startswith("tcomp.") or getattr(sys.modules.get(mod), qual, None) is not fn:
            raise ValueError(f"pass {name!r} is not tcomp's own {mod}.{qual}")
        out.append([name, mod, qual])
    return out


def key_for(traced, *, backend: str, pipeline, exclude=(), donations=None, pass_options=None,
            cuda_arch=None) -> str | None:
    """The entry name for compiling ``traced`` this way, or None when this compile does not
    use the graph cache (see the module doc)."""
    if backend != "cpu" or pass_options or cuda_arch is not None or not cache.enabled():
        return None
    try:
        passes = _pipeline_identity(pipeline, exclude)
        digest = graph_digest(traced)
    except (Undigestable, ValueError, TypeError, KeyError):
        return None
    content = json.dumps({"format": FORMAT, "graph": digest, "passes": passes,
                          "donate": sorted([int(k), int(v)] for k, v in (donations or {}).items()),
                          "source": cache.source_fingerprint(*PACKAGES)}, sort_keys=True)
    return cache.GRAPH_PREFIX + cache.make_key(content, kind="graph")


def load(key: str):
    """``(kernel program, lowered graph, program hash)`` of a valid entry, or None (a miss;
    an entry whose payload is not that is deleted, see the module doc)."""
    hit = cache.lookup(key)
    if hit is None:
        stats["misses"] += 1
        return None
    sections, meta = hit
    from tcomp.ir import Graph
    from tcomp.passes.kernel_program import KernelProgram

    try:
        kp, g = pickle.loads(sections["program"])
        phash = meta["hash"]
        if type(kp) is not KernelProgram or type(g) is not Graph or type(phash) is not str or \
                meta.get("format") != FORMAT:
            raise TypeError("graph-cache entry of another layout")
    except Exception:  # anything a bad payload raises while unpickling: rebuilt, never used
        cache.discard(key)
        stats["rejected"] += 1
        stats["misses"] += 1
        return None
    stats["hits"] += 1
    return kp, g, phash


def store(key: str, program, graph, program_hash: str) -> bool:
    """Store a compile's kernel program and lowered graph under ``key`` (see the module doc)."""
    g = graph.copy()
    for d in g.nx._node.values():  # the user's source locations are not part of the key
        d.pop("loc", None)
    try:
        payload = pickle.dumps((program, g), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # something in the program does not pickle: not cached
        return False
    done = cache.store(key, {"program": payload}, {"kind": "graph", "format": FORMAT, "hash": program_hash})
    stats["stores"] += done
    return done


__all__ = ["key_for", "load", "store", "stats", "FORMAT", "PACKAGES"]
