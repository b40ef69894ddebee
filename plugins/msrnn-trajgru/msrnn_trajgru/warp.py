"""Backward warping of a feature map along flow fields, by bilinear sampling.

For every output pixel ``p = (x, y)`` and flow ``f = (u, v)`` the warp reads the input at ``p + f(p)``,
interpolating bilinearly and reading zeros outside the image. TrajGRU uses it to gather, for each of its
``L`` links, the previous hidden state along a learned trajectory.

Grid convention, kept from the MS-RNN code so that its checkpoints behave the same: sampling positions
are normalised to [-1, 1] with pixel centres ``0`` and ``W - 1`` at the ends (the ``align_corners=True``
convention), while the original hands the grid to ``grid_sample`` with ``align_corners=False``, which puts
the ends at the outer *edges* of the border pixels. The mismatch means a zero flow is not the identity: it
reads pixel ``x`` at ``x * W / (W - 1) - 1/2``, a slight stretch about the image centre in which the
border pixels are half-mixed with the zero padding. ``align_corners=True`` makes the two conventions agree,
and then a zero flow returns the input exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sampling_grid(flow: torch.Tensor) -> torch.Tensor:
    """Positions ``p + flow(p)`` normalised for ``grid_sample``: ``(..., H, W, 2)`` from ``(..., 2, H, W)``.

    Pixel index ``0`` maps to -1 and ``size - 1`` to +1 (a size of 1 is divided by 1, not 0).
    """
    height, width = flow.shape[-2:]
    xs = torch.arange(width, device=flow.device, dtype=flow.dtype)
    ys = torch.arange(height, device=flow.device, dtype=flow.dtype)
    x = xs + flow[..., 0, :, :]
    y = ys[:, None] + flow[..., 1, :, :]
    x = 2.0 * x / max(width - 1, 1) - 1.0
    y = 2.0 * y / max(height - 1, 1) - 1.0
    return torch.stack((x, y), dim=-1)


def warp(image: torch.Tensor, flow: torch.Tensor, *, align_corners: bool = False) -> torch.Tensor:
    """Sample ``image`` (B, C, H, W) at ``p + flow(p)``.

    ``flow`` is either one field (B, 2, H, W), giving (B, C, H, W), or ``L`` fields (B, L, 2, H, W),
    giving (B, L, C, H, W). Channel 0 of a field is the horizontal displacement, channel 1 the vertical,
    both in pixels. Several fields are sampled in a single ``grid_sample`` call by stacking their grids
    along the height axis, so the image is never copied ``L`` times.

    ``align_corners=False`` is the MS-RNN implementation's setting (see the module docstring for what it
    does to a zero flow); ``True`` gives the exact warp.
    """
    if image.dim() != 4:
        raise ValueError(f"warp expects an image of shape (B, C, H, W), got {tuple(image.shape)}.")
    single = flow.dim() == 4
    fields = flow.unsqueeze(1) if single else flow
    b, _, h, w = image.shape
    if fields.dim() != 5 or fields.shape[0] != b or fields.shape[2] != 2 or fields.shape[-2:] != (h, w):
        raise ValueError(f"warp expects flow of shape (B, 2, H, W) or (B, L, 2, H, W) matching the image "
                         f"{tuple(image.shape)}, got {tuple(flow.shape)}.")
    links = fields.shape[1]
    grid = sampling_grid(fields).reshape(b, links * h, w, 2)
    sampled = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners)
    sampled = sampled.view(b, -1, links, h, w).transpose(1, 2)
    return sampled[:, 0] if single else sampled
