"""The persistent compile cache: object code on disk, shared by every process of a user.

Why: parsing, O3 and code generation are most of a compile (the MLP training step spends
~1 s there); a second process that builds the same function should link the object it
already made.  ``engine.load(..., cache_key=...)`` consults this cache before compiling and
stores what it compiled.

**Key**: sha256 of the caller's content key (the LLVM IR text for the planner path; the
kernel program hash plus the backend's codegen settings and source fingerprint for the
native path), the optimization settings, the target triple, host CPU name and feature
string, the tcomp, llvmlite and LLVM versions, :data:`FORMAT_VERSION` and a fingerprint of
``tcomp/runtime``'s source (the pass pipeline and target machine settings live there, and a
development tree changes them without a version bump).  An entry
made on another CPU therefore has another name; its header also records the CPU, features
and triple, and a mismatch there is treated as corruption.

**Entry file** ``<dir>/objects/<key>.tco``: :data:`MAGIC`, a little-endian u32 header length,
the header (JSON: format, key, triple, cpu, features, payload section lengths, sha256 of
the payload, caller metadata such as the symbol tables the loader needs), then the payload
(the sections concatenated).  A truncated file, a wrong magic, key, CPU or checksum: the
entry is deleted (only if it is still the file that was read) and the caller rebuilds it;
such an entry is never loaded.

**Concurrency**: a store writes ``<key>.tco.tmp.<pid>.<random>`` in the same directory and
``os.replace``s it onto the entry: readers see the old file or the new one, never half of
one; writers of the same key race harmlessly (same content).  No lock files: a process
killed mid-store leaves at most a temporary file, which the next eviction pass removes
once it is an hour old.

**Size bound**: after a store pushes the directory over :func:`max_bytes`, the least
recently used entries (oldest mtime; a hit touches its entry) are deleted until it fits
(the total is a running estimate between scans, see :func:`_account`).

**Graph entries**: ``graph_cache.py`` stores, in the same directory and format (names
``g<sha256>``, :data:`GRAPH_PREFIX`), the kernel program a traced graph lowered to, so a
warm start skips the passes as well; the checksum, atomic replace, size bound, ``clear`` and
the on/off switch are this module's, and ``info`` counts them as ``graph_entries``.

Settings, read at each use (so a test or ``conftest`` may change them at any time):
``tcomp.config.cache`` / ``TCOMP_CACHE`` (``0`` turns the cache off), ``tcomp.config.cache_dir``
/ ``TCOMP_CACHE_DIR`` (default ``$XDG_CACHE_HOME/tcomp``, else ``~/.cache/tcomp``) and
``tcomp.config.cache_max_bytes`` / ``TCOMP_CACHE_MAX_BYTES`` (default 512 MiB).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import time

MAGIC = b"TCOMPOB1"
#: bump when the entry layout or what the key covers changes
FORMAT_VERSION = 1
DEFAULT_MAX_BYTES = 512 << 20
SUFFIX = ".tco"
#: the name prefix of graph-cache entries (``graph_cache.py``; object entries are bare sha256 hex)
GRAPH_PREFIX = "g"
#: temporary files older than this (seconds) belong to a killed writer and are removed
STALE_TMP_SECONDS = 3600

_overrides: dict = {}  # set by tcomp.config: enabled / dir / max_bytes (None: environment)
_identity: list = []


# -- settings --------------------------------------------------------------------------------------

def _env_bool(text: str | None) -> bool:
    return text is None or text.strip().lower() not in ("0", "false", "no", "off")


def enabled() -> bool:
    """Whether compiles use the cache (``config.cache``, else ``TCOMP_CACHE != 0``)."""
    v = _overrides.get("enabled")
    return _env_bool(os.environ.get("TCOMP_CACHE")) if v is None else v


def directory() -> str:
    """The cache's root directory (not created until something is stored)."""
    v = _overrides.get("dir")
    if v is None:
        v = os.environ.get("TCOMP_CACHE_DIR") or ""
    if not v:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        v = os.path.join(base, "tcomp")
    return os.path.abspath(os.path.expanduser(v))


def parse_max_bytes(value, what: str = "cache_max_bytes") -> int:
    """An int >= 0 (``0``: no bound); text may end in K, M or G (binary units)."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int >= 0 (bytes), got {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        text = value.strip().upper().removesuffix("B").removesuffix("I")
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text[:-1] if scale != 1 else text
        if not digits.isdigit():
            raise ValueError(f"{what} must be a byte count like 536870912 or 512M, got {value!r}")
        n = int(digits) * scale
    else:
        raise TypeError(f"{what} must be an int >= 0 (bytes), got {value!r} ({type(value).__name__})")
    if n < 0:
        raise ValueError(f"{what} must be >= 0 (bytes; 0: no bound), got {n}")
    return n


def max_bytes() -> int:
    """The size bound in bytes (``config.cache_max_bytes``, else ``TCOMP_CACHE_MAX_BYTES``)."""
    v = _overrides.get("max_bytes")
    if v is not None:
        return v
    env = os.environ.get("TCOMP_CACHE_MAX_BYTES")
    return DEFAULT_MAX_BYTES if not env else parse_max_bytes(env, "TCOMP_CACHE_MAX_BYTES")


def objects_dir() -> str:
    return os.path.join(directory(), "objects")


# -- keys ------------------------------------------------------------------------------------------

def identity() -> dict:
    """What an object's validity depends on besides its content: target and versions."""
    if not _identity:
        import llvmlite
        import llvmlite.binding as llvm

        import tcomp
        from tcomp.runtime import engine

        tm = engine.target_machine()  # also fills engine._host with the CPU name and features
        _identity.append({"format": FORMAT_VERSION, "triple": tm.triple, "cpu": engine._host[0],
                          "features": engine._host[1], "tcomp": tcomp.__version__,
                          "llvmlite": llvmlite.__version__,
                          "llvm": ".".join(map(str, llvm.llvm_version_info)),
                          # the pass pipeline and code generation settings live in these sources
                          "runtime": source_fingerprint("tcomp.runtime")})
    return _identity[0]


def make_key(content, **settings) -> str:
    """The entry name: sha256 of ``content`` (str or bytes), ``settings`` and :func:`identity`."""
    data = content.encode() if isinstance(content, str) else bytes(content)
    head = json.dumps({"id": identity(), "settings": settings}, sort_keys=True).encode()
    h = hashlib.sha256(struct.pack("<Q", len(head)) + head)
    h.update(data)
    return h.hexdigest()


_fingerprints: dict = {}


def source_fingerprint(*packages: str) -> str:
    """sha256 of the source files of ``packages`` (importable names): the generated code of a
    backend changes with its source even when tcomp's version does not (a development tree).
    Each package is read once per process: the code that makes the IR is what was imported
    (a warm start read ~60 files for each key made of it), and the graph cache's key and the
    native path's key share the packages they both cover."""
    if len(packages) == 1:
        return _package_fingerprint(packages[0])
    h = hashlib.sha256(b"tcomp.source-fingerprint")
    for name in packages:
        h.update(f"{name}:{_package_fingerprint(name)};".encode())
    return h.hexdigest()


def _package_fingerprint(name: str) -> str:
    got = _fingerprints.get(name)
    if got is None:
        got = _fingerprints[name] = _fingerprint(name)
    return got


def _fingerprint(name: str) -> str:
    import importlib

    h = hashlib.sha256()
    mod = importlib.import_module(name)
    root = os.path.dirname(mod.__file__)
    for fn in sorted(os.listdir(root)):
        if fn.endswith(".py"):
            with open(os.path.join(root, fn), "rb") as f:
                data = f.read()
            h.update(f"{name}/{fn}:{len(data)}:".encode())
            h.update(data)
    return h.hexdigest()


# -- entries ---------------------------------------------------------------------------------------

def _path(key: str) -> str:
    return os.path.join(objects_dir(), key + SUFFIX)


def _drop(path: str, seen) -> None:
    """Delete a bad entry, unless another process replaced it since it was read."""
    try:
        now = os.stat(path)
        if seen is None or (now.st_ino, now.st_mtime_ns, now.st_size) == seen:
            os.unlink(path)
    except OSError:
        pass


def lookup(key: str):
    """``(sections, meta)`` of a valid entry (``sections``: name -> bytes), or None.  A bad
    entry is deleted (see the module docstring); a hit makes the entry most recently used."""
    path = _path(key)
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read()
    except OSError:
        return None
    seen = (st.st_ino, st.st_mtime_ns, st.st_size)
    parsed = _parse(data, key)
    if parsed is None:
        _drop(path, seen)
        return None
    try:
        os.utime(path)
    except OSError:
        pass
    return parsed


def discard(key: str) -> None:
    """Delete an entry whose payload its reader found unusable although the checksum held
    (another layout): the caller rebuilds it."""
    try:
        os.unlink(_path(key))
    except OSError:
        pass


def _parse(data: bytes, key: str):
    n = len(MAGIC) + 4
    if len(data) < n or data[:len(MAGIC)] != MAGIC:
        return None
    (hlen,) = struct.unpack("<I", data[len(MAGIC):n])
    try:
        head = json.loads(data[n:n + hlen])
    except ValueError:
        return None
    me = identity()
    if not isinstance(head, dict) or head.get("key") != key or \
            any(head.get(k) != me[k] for k in ("format", "triple", "cpu", "features")):
        return None
    payload = memoryview(data)[n + hlen:]
    sizes = head.get("sections")
    if not isinstance(sizes, list) or sum(s for _, s in sizes) != len(payload) or \
            hashlib.sha256(payload).hexdigest() != head.get("sha256"):
        return None
    sections, off = {}, 0
    for name, size in sizes:
        sections[name] = bytes(payload[off:off + size])
        off += size
    return sections, head.get("meta", {})


def store(key: str, sections: dict, meta: dict | None = None) -> bool:
    """Write an entry atomically (temporary file + ``os.replace``), then enforce the bound.
    False when the directory cannot be written (the compile goes on without the cache)."""
    me = identity()
    names = list(sections)
    payload = b"".join(sections[k] for k in names)
    head = json.dumps({"format": FORMAT_VERSION, "key": key, "triple": me["triple"], "cpu": me["cpu"],
                       "features": me["features"], "sections": [[k, len(sections[k])] for k in names],
                       "sha256": hashlib.sha256(payload).hexdigest(), "meta": meta or {}},
                      sort_keys=True).encode()
    import secrets  # (only a store needs it: a warm start does not import it)

    folder = objects_dir()
    path = _path(key)
    tmp = f"{path}.tmp.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(MAGIC + struct.pack("<I", len(head)) + head + payload)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
    bound = max_bytes()
    if bound:
        _account(len(head) + len(payload) + len(MAGIC) + 4, bound, path)
    return True


#: this process's estimate of the directory's bytes (None: not scanned yet) and stores since a scan
_estimate = {"dir": None, "bytes": 0, "stores": 0}
#: stores between two scans of the directory (to see other processes' entries)
RESCAN_STORES = 64


def _account(size: int, bound: int, keep: str) -> None:
    """Enforce the bound without scanning the directory at every store (a suite compiling
    thousands of functions would stat every entry each time): a scan at the first store of
    the process and every :data:`RESCAN_STORES` stores, a running total in between."""
    folder = objects_dir()
    est = _estimate
    if est["dir"] != folder or est["stores"] >= RESCAN_STORES:
        entries, _ = _scan()
        est.update(dir=folder, bytes=sum(s for _, s, _ in entries), stores=0)
    else:
        est["bytes"] += size
        est["stores"] += 1
    if est["bytes"] > bound:
        evict(bound, keep=keep)
        est.update(bytes=sum(s for _, s, _ in _scan()[0]), stores=0)


def _scan():
    """``(entries, temporaries)``: lists of ``(mtime_ns, size, path)``."""
    entries, tmps = [], []
    try:
        it = os.scandir(objects_dir())
    except OSError:
        return entries, tmps
    with it:
        for e in it:
            try:
                st = e.stat()
            except OSError:
                continue
            if e.name.endswith(SUFFIX):
                entries.append((st.st_mtime_ns, st.st_size, e.path))
            elif SUFFIX + ".tmp." in e.name:
                tmps.append((st.st_mtime_ns, st.st_size, e.path))
    return entries, tmps


def evict(bound: int, keep: str | None = None) -> int:
    """Delete least recently used entries until the total is <= ``bound`` bytes (``keep``: an
    entry never deleted here, the one just stored); also stale temporaries.  Returns how many
    entries were deleted."""
    entries, tmps = _scan()
    old = time.time_ns() - STALE_TMP_SECONDS * 10 ** 9
    for mtime, _, path in tmps:
        if mtime < old:
            try:
                os.unlink(path)
            except OSError:
                pass
    total = sum(s for _, s, _ in entries)
    removed = 0
    for mtime, size, path in sorted(entries):
        if total <= bound:
            break
        if path == keep:
            continue
        try:
            os.unlink(path)
            removed += 1
        except OSError:
            pass
        total -= size  # gone, whether we or a concurrent evictor removed it
    return removed


def info() -> dict:
    """Directory, entry count, bytes, bound and whether the cache is on (``tcomp cache info``)."""
    entries, tmps = _scan()
    graphs = sum(os.path.basename(p).startswith(GRAPH_PREFIX) for _, _, p in entries)
    return {"directory": directory(), "enabled": enabled(), "entries": len(entries),
            "graph_entries": graphs, "bytes": sum(s for _, s, _ in entries), "max_bytes": max_bytes(),
            "temporary_files": len(tmps)}


def clear() -> int:
    """Delete every entry and temporary file; returns how many entries were deleted."""
    entries, tmps = _scan()
    _estimate["dir"] = None
    n = 0
    for _, _, path in entries + tmps:
        try:
            os.unlink(path)
            n += path.endswith(SUFFIX)
        except OSError:
            pass
    return n


__all__ = ["enabled", "directory", "max_bytes", "make_key", "lookup", "store", "discard", "evict", "info", "clear",
           "source_fingerprint", "identity"]
