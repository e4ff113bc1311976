"""``tcomp.misc``: Theano's ``theano.misc`` helpers (``pkl_utils``)."""
