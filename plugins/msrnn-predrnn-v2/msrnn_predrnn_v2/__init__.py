"""PredRNN-V2 for msrnn-zoo."""

from .cell import DecouplingLoss, PredRNNV2Cell

__all__ = ["DecouplingLoss", "PredRNNV2Cell"]
