"""ConvLSTM for msrnn-zoo."""

from .cell import ConvLSTMCell

__all__ = ["ConvLSTMCell"]
