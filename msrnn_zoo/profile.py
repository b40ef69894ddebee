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


def training_memory(model: Forecaster, batch: int, frames: int, height: int, width: int) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one training step (each storage once).

    This is what a multi-scale stack saves, it is exact, and it does not depend on the device or the
    machine's load; the step runs with the truth as every input (the schedule does not change the count).
    """
    param = model.embed.weight
    clips = torch.zeros(batch, frames, model.config.in_channels, height, width, device=param.device,
                        dtype=param.dtype)
    teacher = torch.ones(batch, frames - 1, device=param.device)
    seen: set[tuple[int, torch.dtype]] = set()
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key = (tensor.untyped_storage().data_ptr(), tensor.dtype)
        if key not in seen:
            seen.add(key)
            total += tensor.untyped_storage().nbytes()
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        prediction, aux = model.forward_train(clips, teacher)
    del prediction, aux
    return total
