"""Small helpers shared by the engine, the data code and the command-line scripts."""

from .atomic_file import atomic_write

__all__ = ["atomic_write"]
