"""MIM (Memory In Memory) for msrnn-zoo."""

from .cell import MIMCell, MIMStep

__all__ = ["MIMCell", "MIMStep"]
