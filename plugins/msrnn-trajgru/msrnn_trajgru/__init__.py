"""TrajGRU for msrnn-zoo."""

from .cell import TrajGRUCell
from .warp import warp

__all__ = ["TrajGRUCell", "warp"]
