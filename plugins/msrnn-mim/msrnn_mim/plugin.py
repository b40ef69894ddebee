"""Registers the MIM cell with msrnn-zoo (entry point ``mim`` of group ``msrnn_zoo``)."""

from collections.abc import Callable
from typing import Any

from msrnn_zoo import hookimpl

from .cell import MIMCell


@hookimpl
def register_cells(register: Callable[..., Any]) -> None:
    register(
        "mim",
        MIMCell,
        paper="Wang et al., Memory In Memory: A Predictive Neural Network for Learning Higher-Order "
              "Non-Stationarity from Spatiotemporal Dynamics, CVPR 2019",
        description="Spatiotemporal LSTM whose forget path is replaced by cascaded non-stationary (MIM-N, "
                    "differencing the layer below) and stationary (MIM-S) memories; zigzag memory M.",
    )
