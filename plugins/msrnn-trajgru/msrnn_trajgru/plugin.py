"""Registers the TrajGRU cell with msrnn-zoo (entry point ``trajgru`` of group ``msrnn_zoo``)."""

from collections.abc import Callable
from typing import Any

from msrnn_zoo import hookimpl

from .cell import TrajGRUCell


@hookimpl
def register_cells(register: Callable[..., Any]) -> None:
    register(
        "trajgru",
        TrajGRUCell,
        paper="Shi et al., Deep Learning for Precipitation Nowcasting: A Benchmark and A New Model, "
              "NeurIPS 2017",
        description="GRU whose recurrent connections follow L learned flow fields (bilinear warps of H).",
    )
