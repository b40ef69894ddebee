"""Backward warping of feature maps by dense offsets, as the MS-RNN code samples them.

``warp(image, flow)`` reads ``image`` at ``(x + dx, y + dy)`` for every pixel, bilinearly, with zeros outside
the image. The sampling positions are turned into ``grid_sample``'s [-1, 1] range by dividing by
``size - 1`` (the corner-aligned convention) but sampled with ``align_corners=False``, exactly as the
original does; a zero offset therefore reads slightly off the pixel centre (by up to half a pixel towards
the borders), and we keep that so that original checkpoints behave identically.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` (N, C, H, W) at positions displaced by ``flow`` (N, 2, H, W) holding (dx, dy) in pixels."""
    _, _, height, width = image.shape
    rows = torch.arange(height, device=flow.device, dtype=flow.dtype).view(1, height, 1)
    cols = torch.arange(width, device=flow.device, dtype=flow.dtype).view(1, 1, width)
    x = 2.0 * (cols + flow[:, 0]) / max(width - 1, 1) - 1.0
    y = 2.0 * (rows + flow[:, 1]) / max(height - 1, 1) - 1.0
    grid = torch.stack((x, y), dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def warp_many(image: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
    """Warp ``image`` (B, C, H, W) by each of ``K`` flows (B, K, 2, H, W) at once: (B, K, C, H, W)."""
    b, k = flows.shape[:2]
    copies = image.unsqueeze(1).expand(b, k, *image.shape[1:]).reshape(b * k, *image.shape[1:])
    warped = warp(copies, flows.reshape(b * k, *flows.shape[2:]))
    return warped.view(b, k, *image.shape[1:])
