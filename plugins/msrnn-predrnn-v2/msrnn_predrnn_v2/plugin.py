"""Registers the PredRNN-V2 cell with msrnn-zoo (entry point ``predrnn-v2`` of group ``msrnn_zoo``)."""

from collections.abc import Callable
from typing import Any

from msrnn_zoo import hookimpl

from .cell import PredRNNV2Cell


@hookimpl
def register_cells(register: Callable[..., Any]) -> None:
    register(
        "predrnn-v2",
        PredRNNV2Cell,
        paper="Wang et al., PredRNN: A Recurrent Neural Network for Spatiotemporal Predictive Learning, "
              "IEEE TPAMI 2022",
        description="Spatiotemporal LSTM whose memory increments are pushed apart by a decoupling loss; "
                    "trained with reverse scheduled sampling.",
    )
