"""Process-wide settings, Theano-style: ``tcomp.config.floatX = 'float64'``."""
floatX = "float32"
