"""Registers the PrecipLSTM cell with msrnn-zoo (entry point ``preciplstm`` of group ``msrnn_zoo``)."""

from collections.abc import Callable
from typing import Any

from msrnn_zoo import hookimpl

from .cell import PrecipLSTMCell


@hookimpl
def register_cells(register: Callable[..., Any]) -> None:
    register(
        "preciplstm",
        PrecipLSTMCell,
        paper="Ma et al., PrecipLSTM: A Meteorological Spatiotemporal LSTM for Precipitation Nowcasting, "
              "IEEE TGRS 2022",
        description="Local attention on the input; spatial (SLAM), temporal differencing (TDM), "
                    "ConvLSTM and zigzag memories.",
    )
