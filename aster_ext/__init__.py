"""aster_ext: certified fixed-point quantisation of neural networks."""

__version__ = "0.1.0"
