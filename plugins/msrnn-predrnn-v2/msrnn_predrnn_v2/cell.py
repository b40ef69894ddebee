"""PredRNN-V2 (Wang et al., TPAMI 2022, arXiv:2103.09504), as the MS-RNN code runs it.

The cell is PredRNN's spatiotemporal LSTM; layer ``l`` at time ``t`` reads the zigzag memory
``M^{l-1}_t`` from the layer below (the bottom layer reads ``M^{L}_{t-1}`` from the top layer):

    i, f, g, o    = split(W_x * X_t + W_h * H_{t-1})
    dC_t          = sigmoid(i) . tanh(g)
    C_t           = sigmoid(f) . C_{t-1} + dC_t
    i', f', g'    = split(W'_x * X_t + W_m * M^{l-1}_t)
    dM_t          = sigmoid(i') . tanh(g')
    M^l_t         = sigmoid(f') . M^{l-1}_t + dM_t
    O_t           = sigmoid(o + W_co * C_t + W_mo * M^l_t)
    H_t           = O_t . tanh(W_1x1 * [C_t, M^l_t])

What V2 adds is the memory decoupling loss: the increments of the two memories, mapped by one 1x1
convolution ``A`` shared by every layer, should point in different directions, channel by channel:

    L_decouple = 0.01 * mean_{t, b} sum_{l, c} | cos( vec A(dC^l_t)[b, c], vec A(dM^l_t)[b, c] ) |

where ``vec`` flattens the spatial axes. The second V2 ingredient, reverse scheduled sampling, is a
training schedule (``sampling = "reverse"``, see :mod:`msrnn_zoo.sampling`).

Every convolution carries a bias and there is no forget-gate offset, as in the MS-RNN implementation;
``W_co`` and ``W_mo`` are full ``k x k`` convolutions there.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from msrnn_zoo.cell import AuxiliaryLoss, CellOutput, RecurrentCell, State, zeros


class DecouplingLoss(AuxiliaryLoss):
    """The memory decoupling term: |cosine| between the adapted increments of C and M.

    The network owns one instance, so the adapter ``A`` is shared by all layers (and, being 1x1, by all
    scales of the multi-scale model), as in the paper. Per layer and time step it returns, per sample,
    the sum over channels; the network sums layers, averages steps and samples and applies ``weight``.
    """

    weight: ClassVar[float] = 0.01

    def __init__(self, hidden_channels: int) -> None:
        super().__init__(hidden_channels)
        self.adapter = nn.Conv2d(hidden_channels, hidden_channels, kernel_size=1)

    def forward(self, aux: Any) -> torch.Tensor:
        delta_c, delta_m = aux
        # unit vectors over the spatial positions, one per sample and channel: (B, C, H*W)
        c_dir = F.normalize(self.adapter(delta_c).flatten(2), dim=2)
        m_dir = F.normalize(self.adapter(delta_m).flatten(2), dim=2)
        return (c_dir * m_dir).sum(dim=2).abs().sum(dim=1)

    @classmethod
    def original_key(cls, key: str) -> str:
        """The original keeps the adapter as ``rnns.adapter.*``; the converter hands us ``adapter.*``."""
        return key


class PredRNNV2Cell(RecurrentCell):
    uses_memory = True
    auxiliary_loss = DecouplingLoss
    sampling = "reverse"
    memory_flow = ("H, C through time; H up the stack; M zigzags up the stack, then top layer -> bottom at "
                   "t+1; dC, dM to the decoupling loss")
    original_keys = {
        "_conv_x2h": "conv_x",
        "_conv_h2h": "conv_h",
        "_conv_x2h_m": "conv_x_m",
        "_conv_m2h_m": "conv_m",
        "_conv_c2o": "conv_c_o",
        "_conv_m2o": "conv_m_o",
        "_conv_c_m": "conv_fuse",
    }

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3, *,
                 layer_index: int = 0, num_layers: int = 1) -> None:
        super().__init__(in_channels, hidden_channels, kernel_size, layer_index=layer_index, num_layers=num_layers)
        pad = kernel_size // 2
        hid = hidden_channels
        # temporal memory C: gates i, f, g and the output gate's share o
        self.conv_x = nn.Conv2d(in_channels, 4 * hid, kernel_size, padding=pad)
        self.conv_h = nn.Conv2d(hid, 4 * hid, kernel_size, padding=pad)
        # spatiotemporal memory M: gates i', f', g'
        self.conv_x_m = nn.Conv2d(in_channels, 3 * hid, kernel_size, padding=pad)
        self.conv_m = nn.Conv2d(hid, 3 * hid, kernel_size, padding=pad)
        # the output gate also looks at both new memories
        self.conv_c_o = nn.Conv2d(hid, hid, kernel_size, padding=pad)
        self.conv_m_o = nn.Conv2d(hid, hid, kernel_size, padding=pad)
        # H is read out of both memories together
        self.conv_fuse = nn.Conv2d(2 * hid, hid, kernel_size=1)

    def init_state(self, batch: int, height: int, width: int, *, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> State:
        h = zeros(batch, self.hidden_channels, height, width, device, dtype)
        return h, torch.zeros_like(h)

    def forward(self, x: torch.Tensor, state: State, memory: torch.Tensor | None = None,
                lower_previous: torch.Tensor | None = None) -> CellOutput:
        h, c = state
        if memory is None:  # a cell run on its own starts, like the first step, from an empty M
            memory = torch.zeros_like(h)
        elif memory.shape != h.shape:
            raise ValueError(f"PredRNN-V2 layer {self.layer_index} got a spatiotemporal memory of shape "
                             f"{tuple(memory.shape)}; it needs (B, hidden, H, W) = {tuple(h.shape)}, "
                             "the shape of its own hidden state.")
        i, f, g, o = torch.chunk(self.conv_x(x) + self.conv_h(h), 4, dim=1)
        delta_c = torch.sigmoid(i) * torch.tanh(g)
        c = torch.sigmoid(f) * c + delta_c
        i_m, f_m, g_m = torch.chunk(self.conv_x_m(x) + self.conv_m(memory), 3, dim=1)
        delta_m = torch.sigmoid(i_m) * torch.tanh(g_m)
        m = torch.sigmoid(f_m) * memory + delta_m
        o = torch.sigmoid(o + self.conv_c_o(c) + self.conv_m_o(m))
        h = o * torch.tanh(self.conv_fuse(torch.cat([c, m], dim=1)))
        return CellOutput(h, (h, c), m, (delta_c, delta_m))
