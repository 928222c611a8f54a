"""Weights of the models fomm ships (see :mod:`fomm.pretrained`)."""
