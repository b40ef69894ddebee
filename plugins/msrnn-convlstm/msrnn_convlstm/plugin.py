"""Registers the ConvLSTM cell with msrnn-zoo (entry point ``convlstm`` of group ``msrnn_zoo``)."""

from collections.abc import Callable
from typing import Any

from msrnn_zoo import hookimpl

from .cell import ConvLSTMCell


@hookimpl
def register_cells(register: Callable[..., Any]) -> None:
    register(
        "convlstm",
        ConvLSTMCell,
        paper="Shi et al., Convolutional LSTM Network: A Machine Learning Approach for Precipitation "
              "Nowcasting, NeurIPS 2015",
        description="LSTM with convolutional gates; hidden and cell state flow through time only.",
    )
