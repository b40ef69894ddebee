"""Registers the MotionRNN cell with msrnn-zoo (entry point ``motionrnn`` of group ``msrnn_zoo``)."""

from collections.abc import Callable
from typing import Any

from msrnn_zoo import hookimpl

from .cell import MotionRNNCell


@hookimpl
def register_cells(register: Callable[..., Any]) -> None:
    register(
        "motionrnn",
        MotionRNNCell,
        paper="Wu et al., MotionRNN: A Flexible Model for Video Prediction with Spacetime-Varying Motions, "
              "CVPR 2021",
        description="MIM block followed by MotionGRU (learnt transient and trend motion that warps the hidden "
                    "state) and a motion highway; zigzag memory M.",
    )
