"""Theano's ``scan_module`` spelling: ``from tcomp.scan_module import until, scan``."""
from .scan import OrderedUpdates, foldl, foldr, map, reduce, scan, until  # noqa: A004

__all__ = ["scan", "until", "map", "reduce", "foldl", "foldr", "OrderedUpdates"]
