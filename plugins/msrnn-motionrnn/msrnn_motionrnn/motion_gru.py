"""MotionGRU (Wu et al., MotionRNN, CVPR 2021): a recurrent unit that learns how features move.

It works on an encoding of the hidden state at half resolution, ``E = Enc(H)`` (a stride-2 2x2 convolution
to a quarter of the channels), and keeps two motion states there, each holding ``k^2`` offsets (dx, dy)
per position: ``F``, the motion filter, and ``D``, its trend.

Transient motion, a GRU over the offsets:

    u  = sigmoid(W_u * [E, F_{t-1}])
    r  = sigmoid(W_r * [E, F_{t-1}])
    z  = tanh(W_z * [E, r . F_{t-1}])
    F' = u . z + (1 - u) . F_{t-1}

Trend motion, a running average of past filters (``alpha`` = 0.5), and the new filter:

    D_t = D_{t-1} + alpha . (F_{t-1} - D_{t-1})
    F_t = F' + D_t

Broadcast: the encoding is warped by each of the ``k^2`` offsets, weighted by a learnt mask, and decoded
back (1x1 merge of the ``k^2`` copies, then a stride-2 transposed convolution to full size and channels):

    m   = sigmoid(W_hm * E)
    H'  = Dec(m . Warp(E, F_t))
    g   = sigmoid(W_g * [H', H])
    X_t = g . H + (1 - g) . H'

The 2x2 stride-2 encoder and its transposed decoder need an even height and width. Two reshapes of the
original code do not do what the equations say -- one lets samples of a batch share offsets, the other
scrambles the warped copies spatially before the merge (see :meth:`MotionGRU.offsets` and
:meth:`MotionGRU.stack_taps`). Its checkpoints were trained that way, so ``original_layout=True`` (the default)
reproduces them; ``False`` gives the per-sample, per-pixel reading of the equations.
"""

from __future__ import annotations

import torch
from torch import nn

from msrnn_zoo.cell import joint_conv2d

from .warp import warp_many


class MotionGRU(nn.Module):
    """Moves the hidden state ``H`` along learnt, recurrent offsets; returns ``X_t`` and the new ``F``, ``D``."""

    def __init__(self, channels: int, kernel_size: int = 3, alpha: float = 0.5, *,
                 original_layout: bool = True) -> None:
        super().__init__()
        if channels % 4:
            raise ValueError(f"MotionGRU encodes the hidden state to a quarter of its channels, so they must be "
                             f"divisible by 4; got {channels}.")
        self.channels = channels
        self.kernel_size = kernel_size
        self.alpha = alpha
        self.original_layout = original_layout
        enc = channels // 4
        taps = kernel_size**2
        self.encoder = nn.Conv2d(channels, enc, kernel_size=2, stride=2)
        self.conv_update = nn.Conv2d(enc + 2 * taps, 2 * taps, kernel_size=1)
        self.conv_reset = nn.Conv2d(enc + 2 * taps, 2 * taps, kernel_size=1)
        self.conv_candidate = nn.Conv2d(enc + 2 * taps, 2 * taps, kernel_size=1)
        self.conv_mask = nn.Conv2d(enc, taps, kernel_size=1)
        self.conv_merge = nn.Conv2d(enc * taps, enc, kernel_size=1)
        self.decoder = nn.ConvTranspose2d(enc, channels, kernel_size=4, stride=2, padding=1)
        self.conv_gate = nn.Conv2d(2 * channels, channels, kernel_size=1)

    @property
    def flow_channels(self) -> int:
        """Channels of ``F`` and ``D``: ``k^2`` offsets of two components each."""
        return 2 * self.kernel_size**2

    def forward(self, h: torch.Tensor, f: torch.Tensor,
                d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e = self.encoder(h)
        # transient motion
        # a convolution over [a, b] keeps a and b, which other operations keep too, not a copy of both
        u = torch.sigmoid(joint_conv2d(self.conv_update, e, f))
        r = torch.sigmoid(joint_conv2d(self.conv_reset, e, f))
        z = torch.tanh(joint_conv2d(self.conv_candidate, e, r * f))
        transient = u * z + (1 - u) * f
        # trend motion
        d = d + self.alpha * (f - d)
        f = transient + d
        # broadcast: warp, weigh, decode
        mask = torch.sigmoid(self.conv_mask(e)).unsqueeze(2)  # (B, k^2, 1, h, w)
        moved = mask * warp_many(e, self.offsets(f))  # (B, k^2, C/4, h, w)
        decoded = self.decoder(self.conv_merge(self.stack_taps(moved)))
        g = torch.sigmoid(joint_conv2d(self.conv_gate, decoded, h))
        return g * h + (1 - g) * decoded, f, d

    def offsets(self, f: torch.Tensor) -> torch.Tensor:
        """The ``k^2`` (dx, dy) offset maps held in ``F`` (B, 2k^2, h, w), as (B, k^2, 2, h, w).

        The original code reshapes the whole batch to (k^2, B, 2, h, w), so with more than one sample,
        sample ``b``'s ``j``-th offset is pair ``j * B + b`` of the batch's: samples borrow each other's
        motion and a forecast depends on the rest of its batch. ``original_layout=False`` gives each
        sample its own ``k^2`` pairs (channels ``2j, 2j + 1``); for a batch of one the two agree.
        """
        b, _, height, width = f.shape
        taps = self.kernel_size**2
        if self.original_layout:
            return f.reshape(taps, b, 2, height, width).transpose(0, 1)
        return f.reshape(b, taps, 2, height, width)

    def stack_taps(self, moved: torch.Tensor) -> torch.Tensor:
        """The ``k^2`` warped copies (B, k^2, C, h, w) as channels of one map (B, C k^2, h, w) for the merge.

        The original code lays them out as (B, C, h, w, k^2) and reshapes that straight to
        (B, C k^2, h, w), so each "pixel" the merge convolution sees is a run of ``k^2`` consecutive
        values of that layout: taps and positions are interleaved, and the map is spatially scrambled.
        ``original_layout=False`` stacks the taps per pixel instead (channel ``c k^2 + j``).
        """
        b, _, _, height, width = moved.shape
        if self.original_layout:
            return moved.permute(0, 2, 3, 4, 1).reshape(b, -1, height, width)
        return moved.transpose(1, 2).reshape(b, -1, height, width)
