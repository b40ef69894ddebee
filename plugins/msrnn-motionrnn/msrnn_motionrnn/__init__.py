"""MotionRNN for msrnn-zoo."""

from .cell import MotionRNNCell
from .motion_gru import MotionGRU

__all__ = ["MotionGRU", "MotionRNNCell"]
