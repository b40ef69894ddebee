"""Registers the PredRNN cell with msrnn-zoo (entry point ``predrnn`` of group ``msrnn_zoo``)."""

from collections.abc import Callable
from typing import Any

from msrnn_zoo import hookimpl

from .cell import PredRNNCell


@hookimpl
def register_cells(register: Callable[..., Any]) -> None:
    register(
        "predrnn",
        PredRNNCell,
        paper="Wang et al., PredRNN: Recurrent Neural Networks for Predictive Learning using "
              "Spatiotemporal LSTMs, NeurIPS 2017",
        description="Spatiotemporal LSTM: a temporal cell state C plus a spatiotemporal memory M that "
                    "zigzags up the stack and from the top layer back to the bottom one.",
    )
