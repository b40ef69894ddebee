"""PredRNN for msrnn-zoo."""

from .cell import PredRNNCell

__all__ = ["PredRNNCell"]
