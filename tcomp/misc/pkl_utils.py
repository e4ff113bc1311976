"""Theano's ``misc.pkl_utils.dump`` / ``load``: pickle an object into a zip file whose NumPy
arrays (a shared variable's value, a model's weights) are stored as separate ``.npy``
members, so they can be read with ``numpy.load`` alone, without the pickle
(``load(f)`` returns the object; ``numpy.load(zipfile.ZipFile(f).open(name))`` an array)."""
from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np

DEFAULT_PROTOCOL = pickle.HIGHEST_PROTOCOL


class _ArrayPickler(pickle.Pickler):
    """Writes each ndarray as a zip member and pickles its member name in its place."""

    def __init__(self, file, archive: zipfile.ZipFile, protocol):
        super().__init__(file, protocol=protocol)
        self.archive = archive
        self.names: dict = {}

    def persistent_id(self, obj):
        if type(obj) is np.ndarray and obj.dtype != object:
            key = id(obj)
            if key not in self.names:
                name = f"array_{len(self.names)}.npy"
                buf = io.BytesIO()
                np.lib.format.write_array(buf, obj, allow_pickle=False)
                self.archive.writestr(name, buf.getvalue())
                self.names[key] = (name, obj)  # keep obj alive so its id stays unique
            return self.names[key][0]
        return None


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile):
        super().__init__(file)
        self.archive = archive
        self.arrays: dict = {}

    def persistent_load(self, pid):
        if pid not in self.arrays:
            with self.archive.open(pid) as member:
                self.arrays[pid] = np.lib.format.read_array(io.BytesIO(member.read()), allow_pickle=False)
        return self.arrays[pid]


def dump(obj, file_handler, protocol=DEFAULT_PROTOCOL):
    """Write ``obj`` to the open binary file ``file_handler`` as a zip archive."""
    with zipfile.ZipFile(file_handler, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        buf = io.BytesIO()
        _ArrayPickler(buf, archive, protocol).dump(obj)
        archive.writestr("pkl", buf.getvalue())


def load(f):
    """Read an object written by :func:`dump` from the open binary file ``f``."""
    with zipfile.ZipFile(f, "r") as archive:
        if "pkl" not in archive.namelist():
            raise ValueError("pkl_utils.load: the file is not an archive written by pkl_utils.dump (no 'pkl' member)")
        with archive.open("pkl") as member:
            return _ArrayUnpickler(io.BytesIO(member.read()), archive).load()


__all__ = ["dump", "load", "DEFAULT_PROTOCOL"]
