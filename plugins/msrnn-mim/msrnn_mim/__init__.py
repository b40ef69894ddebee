"""MIM (Memory In Memory) for msrnn-zoo."""

from .cell import MIMCell

__all__ = ["MIMCell"]
