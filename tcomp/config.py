"""Process-wide settings, Theano-style: ``tcomp.config.floatX = 'float64'``."""
#: default float dtype for T.matrix() etc. and for weak Python floats
floatX = "float32"
#: backend used by tcomp.function when none is given: 'reference' (NumPy interpreter) or 'cpu'
backend = "cpu"
