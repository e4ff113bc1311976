"""Shipped examples (tcomp demo)."""
