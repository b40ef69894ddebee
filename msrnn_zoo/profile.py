"""Counting what a model costs: parameters and floating-point operations at a given frame size."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .network import Forecaster


def flops_per_frame(model: Forecaster, height: int, width: int, batch: int = 1) -> int:
    """FLOPs (2 per multiply-add) of one recurrent step -- one frame in, one forecast out -- per sample."""
    frame = torch.zeros(batch, model.config.in_channels, height, width,
                        device=model.embed.weight.device, dtype=model.embed.weight.dtype)
    state = model.init_state(batch, height, width)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.step(frame, state)
    return int(counter.get_total_flops() // batch)
