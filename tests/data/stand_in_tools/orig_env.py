"""A stand-in for the shared tools' loader of the original MS-RNN code, with its calling convention:
``build(name, size, hidden, in_frames, out_frames, batch)`` and ``model([frames, ratio, 1], mode=...)``.
The original's code is not part of a clone; the benchmark scripts' bookkeeping is tested against this."""

import torch
from torch import nn


class Original(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, inputs: list, mode: str) -> tuple[torch.Tensor, None]:
        frames = inputs[0]  # (T, B, 1, H, W), time first as the original has it
        return torch.stack([self.conv(f) for f in frames[:-1]]), None


def build(name: str, size: int, hidden: int, in_frames: int, out_frames: int, batch: int) -> Original:
    if name == "trajgru":
        raise ImportError("the stand-in has no TrajGRU")
    return Original()
