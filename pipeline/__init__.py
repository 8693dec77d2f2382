"""Project-pipeline monitor: the reserve of major investment projects, its 红黄绿 flags and rates."""

__version__ = "0.1.0"
