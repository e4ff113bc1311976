"""The tcomp command."""
