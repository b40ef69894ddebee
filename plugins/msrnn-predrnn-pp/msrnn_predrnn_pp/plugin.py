"""Registers the PredRNN++ cell with msrnn-zoo (entry point ``predrnn-pp`` of group ``msrnn_zoo``)."""

from collections.abc import Callable
from typing import Any

from msrnn_zoo import hookimpl

from .cell import CausalLSTMCell


@hookimpl
def register_cells(register: Callable[..., Any]) -> None:
    register(
        "predrnn-pp",
        CausalLSTMCell,
        paper="Wang et al., PredRNN++: Towards A Resolution of the Deep-in-Time Dilemma in Spatiotemporal "
              "Predictive Learning, ICML 2018",
        description="Causal LSTM: temporal memory C, then the zigzag spatial memory M, in cascade; a "
                    "Gradient Highway Unit before the second layer.",
    )
