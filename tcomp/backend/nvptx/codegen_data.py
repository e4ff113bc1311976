"""Indexing kernels (gather/update) for the grid: not lowered yet (see the package docstring)."""
from __future__ import annotations

GENERATORS: dict = {}
