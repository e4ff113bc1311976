"""``tcomp cache info`` / ``tcomp cache clear``: the persistent compile cache (tcomp/runtime/cache.py).

``info`` prints the directory, whether the cache is on, the entry count (and how many of
them are graph-cache entries, ``tcomp/runtime/graph_cache.py``), their bytes and the size
bound (``--json`` for scripts); ``clear`` deletes every entry (and any temporary file a
killed writer left) and says how many entries it deleted.
"""
from __future__ import annotations

import json


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def main(args) -> int:
    from tcomp.runtime import cache

    if args.action == "clear":
        n = cache.clear()
        print(f"removed {n} entr{'y' if n == 1 else 'ies'} from {cache.directory()}")
        return 0
    d = cache.info()
    if getattr(args, "json", False):
        print(json.dumps(d, sort_keys=True))
        return 0
    bound = "none" if not d["max_bytes"] else f"{_size(d['max_bytes'])} ({d['max_bytes']} bytes)"
    print(f"directory: {d['directory']}")
    print(f"enabled:   {'yes' if d['enabled'] else 'no (TCOMP_CACHE=0 or tcomp.config.cache = False)'}")
    print(f"entries:   {d['entries']}")
    print(f"graphs:    {d['graph_entries']} of them (traced graph -> kernel program; the rest are object code)")
    print(f"bytes:     {_size(d['bytes'])} ({d['bytes']} bytes)")
    print(f"bound:     {bound}")
    if d["temporary_files"]:
        print(f"temporary: {d['temporary_files']} (writes in progress or left by a killed process)")
    return 0
