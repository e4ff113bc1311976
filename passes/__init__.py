"""Graph transformations (depends only on tcomp.ir)."""
