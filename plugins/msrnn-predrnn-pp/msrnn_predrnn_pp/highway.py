"""The Gradient Highway Unit (GHU) of PredRNN++ (Wang et al., ICML 2018, arXiv:1804.06300).

Deep-in-time recurrent stacks make the gradient of a loss at step t travel through every layer of every
earlier step. The GHU gives it a shortcut: a gated state ``Z`` that runs through time alongside the stack
and, when the switch gate ``S`` is closed, passes its previous value on unchanged:

    P_t = tanh(W_px * X_t + W_pz * Z_{t-1})           (transformed input)
    S_t = sigmoid(W_sx * X_t + W_sz * Z_{t-1})        (switch gate)
    Z_t = S_t . P_t + (1 - S_t) . Z_{t-1}

In PredRNN++ it sits between the first and the second Causal LSTM layer: ``X_t`` is the first layer's
output, and ``Z_t`` replaces it as the second layer's input. As in the MS-RNN implementation, both
convolutions carry a bias, and each produces the pre-activations of P and S stacked along channels
(P first). ``W_x * X_t + W_z * Z_{t-1}`` is one convolution over ``[X_t, Z_{t-1}]``
(:class:`~msrnn_zoo.cell.JointConv2d`); weights stored as the two convolutions ``conv_x``, ``conv_z`` load into it.
"""

from __future__ import annotations

import torch
from torch import nn

from msrnn_zoo.cell import JointConv2d


class GradientHighwayUnit(nn.Module):
    """One GHU: ``forward(x, z) -> z_next``; the caller keeps ``z`` as part of its recurrent state."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv_xz = JointConv2d({"conv_x": in_channels, "conv_z": channels}, 2 * channels, kernel_size)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        p, s = torch.chunk(self.conv_xz(x, z), 2, dim=1)
        s = torch.sigmoid(s)
        return s * torch.tanh(p) + (1 - s) * z
