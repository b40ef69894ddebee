"""TrajGRU (Shi et al., NeurIPS 2017, arXiv:1706.03458), as the MS-RNN code runs it.

A convolutional GRU whose recurrent connections are not a fixed convolution neighbourhood but ``L``
trajectories, re-estimated at every step from the input and the previous state:

    F_t = W_f * leaky(W_xf * X_t + W_hf * H_{t-1})            (2L channels: L flow fields (u_l, v_l))
    S_t^l = warp(H_{t-1}, -(u_l, v_l))                        l = 1..L, bilinear backward warping
    z_h, r_h, h_h = split(W_s * [S_t^1, ..., S_t^L])          (1x1 convolution over the L warped states)
    z_x, r_x, h_x = split(W_x * X_t)
    Z_t = sigmoid(z_x + z_h)
    R_t = sigmoid(r_x + r_h)
    H'_t = leaky(h_x + R_t . h_h)
    H_t = (1 - Z_t) . H'_t + Z_t . H_{t-1}

``leaky`` is a leaky ReLU of slope 0.2. As in the MS-RNN implementation every convolution carries a bias
(so the reset gate also scales the projection's bias), the flow-generating network uses the cell's
kernel size throughout, and the warp keeps that code's grid convention (see :mod:`msrnn_trajgru.warp`).
``W_xf * X_t + W_hf * H_{t-1}`` is one convolution over ``[X_t, H_{t-1}]`` (:class:`~msrnn_zoo.cell.JointConv2d`);
weights stored as the two convolutions ``flow_conv_x``, ``flow_conv_h`` load into it.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from msrnn_zoo.cell import CellOutput, JointConv2d, RecurrentCell, State, is_known_zero, joint_conv2d, zeros

from .warp import warp

LEAKY_SLOPE = 0.2
"""Negative slope of the leaky ReLUs, in the flow generator and on the candidate state."""


class TrajGRUCell(RecurrentCell):
    memory_flow = "H through time along L learned flow fields; H up the stack"
    convolves_input_only = True
    original_keys: ClassVar[dict[str, str]] = {
        "_conv_x2h": "conv_x",
        "_conv_x2f": "flow_conv_x",
        "_conv_h2f": "flow_conv_h",
        "_conv_flow": "flow_conv_out",
        "project": "conv_warped",
    }

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3, *,
                 layer_index: int = 0, num_layers: int = 1, links: int = 10,
                 warp_align_corners: bool = False) -> None:
        """``links`` is L, the number of flow fields (the original's ``TrajGRU_link_num``).

        ``warp_align_corners=False`` reproduces the original's warp, whose zero flow slightly stretches
        the state (needed to run its checkpoints); ``True`` makes a zero flow the identity, for models
        trained from scratch.
        """
        super().__init__(in_channels, hidden_channels, kernel_size, layer_index=layer_index,
                         num_layers=num_layers)
        if isinstance(links, bool) or not isinstance(links, int) or links < 1:
            raise ValueError(f"TrajGRU needs a positive integer number of flow links, got links={links!r} "
                             "(the paper and the MS-RNN code use 10).")
        if not isinstance(warp_align_corners, bool):  # bool("False") is True: a string would turn it on
            raise ValueError(f"warp_align_corners takes True or False (on the command line: --option "
                             f"warp_align_corners=true or =false), got {warp_align_corners!r}.")
        self.links = links
        self.warp_align_corners = warp_align_corners
        pad = kernel_size // 2
        self.conv_x = nn.Conv2d(in_channels, 3 * hidden_channels, kernel_size, padding=pad)
        self.flow_conv_xh = JointConv2d({"flow_conv_x": in_channels, "flow_conv_h": hidden_channels},
                                        hidden_channels, kernel_size)
        self.flow_conv_out = nn.Conv2d(hidden_channels, 2 * links, kernel_size, padding=pad)
        self.conv_warped = nn.Conv2d(links * hidden_channels, 3 * hidden_channels, kernel_size=1)

    def init_state(self, batch: int, height: int, width: int, *, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> State:
        return (zeros(batch, self.hidden_channels, height, width, device, dtype),)

    def flows(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The structure-generating network: ``L`` flow fields (B, L, 2, H, W) from the input and state."""
        hidden = F.leaky_relu(self.flow_conv_xh(x, h), LEAKY_SLOPE)
        out = self.flow_conv_out(hidden)
        return out.view(out.shape[0], self.links, 2, *out.shape[-2:])

    def read_trajectories(self, x: torch.Tensor, h: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``W_s * [S_t^1, ..., S_t^L]``: the previous state read along the ``L`` trajectories, projected.

        Before the first frame ``H`` is zero (a marked state, see :func:`~msrnn_zoo.cell.mark_zero`): every warp of
        it is zero whatever the flows, so the flow network, the warps and the projection are left out and only the
        projection's bias remains. Nothing is lost to the gradients: the flows of that step do not reach the loss.
        """
        if is_known_zero(h):
            return self.conv_warped.bias.to(like.dtype).view(1, -1, 1, 1)  # type: ignore[union-attr]  # (bias=True)
        # The flows say where content moves to, so the previous state is read at p - flow(p).
        warped = warp(h, -self.flows(x, h), align_corners=self.warp_align_corners)
        return self.conv_warped(warped.flatten(1, 2))

    def forward(self, x: torch.Tensor, state: State, memory: torch.Tensor | None = None,
                lower_previous: torch.Tensor | None = None) -> CellOutput:
        (h,) = state
        z_x, r_x, h_x = torch.chunk(joint_conv2d(self.conv_x, x), 3, dim=1)  # W_x * X_t; absorbs an EmbeddedFrame
        z_h, r_h, h_h = torch.chunk(self.read_trajectories(x, h, like=z_x), 3, dim=1)
        z = torch.sigmoid(z_x + z_h)
        r = torch.sigmoid(r_x + r_h)
        candidate = F.leaky_relu(h_x + r * h_h, LEAKY_SLOPE)
        h = (1 - z) * candidate + z * h
        return CellOutput(h, (h,))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, links={self.links}, warp_align_corners={self.warp_align_corners}"
