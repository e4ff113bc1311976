"""tcomp"""
