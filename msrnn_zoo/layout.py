"""Memory layouts: which layout a tensor is in, so that what a channels-last model makes stays channels-last."""

from __future__ import annotations

import torch


def memory_format_of(tensor: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a 4-D tensor laid out NHWC (and not also NCHW), else ``torch.contiguous_format``:
    the layout in which to make what a channels-last model's next convolution will read."""
    channels_last = (tensor.dim() == 4 and not tensor.is_contiguous()
                     and tensor.is_contiguous(memory_format=torch.channels_last))
    return torch.channels_last if channels_last else torch.contiguous_format
