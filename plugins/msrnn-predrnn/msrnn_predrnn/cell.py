"""PredRNN's spatiotemporal LSTM (Wang et al., NeurIPS 2017), as the MS-RNN code runs it.

Layer ``l`` at time ``t`` keeps a temporal memory ``C`` of its own and reads the spatiotemporal memory
``M^{l-1}_t`` written by the layer below (the bottom layer reads ``M^{L}_{t-1}`` from the top layer):

    i, f, g, o    = split(W_x * X_t + W_h * H_{t-1})
    C_t           = sigmoid(f) . C_{t-1} + sigmoid(i) . tanh(g)
    i', f', g'    = split(W'_x * X_t + W_m * M^{l-1}_t)
    M^l_t         = sigmoid(f') . M^{l-1}_t + sigmoid(i') . tanh(g')
    O_t           = sigmoid(o + W_co * C_t + W_mo * M^l_t)
    H_t           = O_t . tanh(W_1x1 * [C_t, M^l_t])

Every convolution carries a bias and there is no forget-gate offset, as in the MS-RNN implementation;
``W_co`` and ``W_mo`` are full ``k x k`` convolutions there, not the paper's element-wise products. Each sum of
convolutions (``W_x * X_t + W_h * H_{t-1}``, ``W'_x * X_t + W_m * M``, ``W_co * C_t + W_mo * M^l_t``) is one
convolution over the inputs side by side (:class:`~msrnn_zoo.cell.JointConv2d`); weights stored as the
separate convolutions (``conv_x``, ``conv_h``, ...) load into it.

:meth:`PredRNNCell.st_lstm` computes one step and also hands back what the input gates add to the two
memories, ``dC_t = sigmoid(i) . tanh(g)`` and ``dM_t = sigmoid(i') . tanh(g')``: PredRNN itself does not
use them, PredRNN-V2 (plugin ``msrnn-predrnn-v2``) builds its decoupling loss on them.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from msrnn_zoo.cell import CellOutput, JointConv2d, RecurrentCell, State, joint_conv2d, zeros, zeros_like

Increments = tuple[torch.Tensor, torch.Tensor]
"""``(dC_t, dM_t)``: what one step's input gates add to the temporal and the spatiotemporal memory."""


class PredRNNCell(RecurrentCell):
    """One ST-LSTM layer: temporal memory ``C`` in the state, spatiotemporal memory ``M`` zigzagging."""

    uses_memory = True
    memory_flow = "H, C through time; H up the stack; M zigzags up the stack, then top layer -> bottom at t+1"
    # measured on an H200, recorded clips, fp32: 0.93x the step's time at batch 4 (ms-: 0.85x at batch 16);
    # PredRNN-V2 inherits it (ms-PredRNN-V2 under bf16: 0.90x)
    gpu_channels_last = True
    original_keys = {
        "_conv_x2h": "conv_x",
        "_conv_h2h": "conv_h",
        "_conv_x2h_m": "conv_x_m",
        "_conv_m2h_m": "conv_m",
        "_conv_c2o": "conv_c_o",
        "_conv_m2o": "conv_m_o",
        "_conv_c_m": "conv_fuse",
    }
    convolves_input_only = True
    title: ClassVar[str] = "PredRNN"
    """How error messages name the model."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3, *,
                 layer_index: int = 0, num_layers: int = 1) -> None:
        super().__init__(in_channels, hidden_channels, kernel_size, layer_index=layer_index, num_layers=num_layers)
        hid = hidden_channels
        # temporal memory C: gates i, f, g and the output gate's share o
        self.conv_xh = JointConv2d({"conv_x": in_channels, "conv_h": hid}, 4 * hid, kernel_size)
        # spatiotemporal memory M: gates i', f', g'
        self.conv_xm = JointConv2d({"conv_x_m": in_channels, "conv_m": hid}, 3 * hid, kernel_size)
        # the output gate also looks at both new memories
        self.conv_o = JointConv2d({"conv_c_o": hid, "conv_m_o": hid}, hid, kernel_size)
        # H is read out of both memories together
        self.conv_fuse = nn.Conv2d(2 * hid, hid, kernel_size=1)

    def init_state(self, batch: int, height: int, width: int, *, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> State:
        h = zeros(batch, self.hidden_channels, height, width, device, dtype)
        return h, zeros_like(h)

    def st_lstm(self, x: torch.Tensor, state: State,
                memory: torch.Tensor | None = None) -> tuple[CellOutput, Increments]:
        """One step of the equations of the module docstring, and the memories' increments ``(dC_t, dM_t)``."""
        h, c = state
        if memory is None:  # a cell run on its own starts, like the first step, from an empty M
            memory = zeros_like(h)
        elif memory.shape != h.shape:
            raise ValueError(f"{self.title} layer {self.layer_index} got a spatiotemporal memory of shape "
                             f"{tuple(memory.shape)}; it needs (B, hidden, H, W) = {tuple(h.shape)}, "
                             "the shape of its own hidden state.")
        i, f, g, o = torch.chunk(self.conv_xh(x, h), 4, dim=1)
        delta_c = torch.sigmoid(i) * torch.tanh(g)
        c = torch.sigmoid(f) * c + delta_c
        i_m, f_m, g_m = torch.chunk(self.conv_xm(x, memory), 3, dim=1)
        delta_m = torch.sigmoid(i_m) * torch.tanh(g_m)
        m = torch.sigmoid(f_m) * memory + delta_m
        o = torch.sigmoid(o + self.conv_o(c, m))  # W_co * C_t + W_mo * M^l_t
        h = o * torch.tanh(joint_conv2d(self.conv_fuse, c, m))  # W_1x1 * [C_t, M^l_t], without keeping the copy
        return CellOutput(h, (h, c), m), (delta_c, delta_m)

    def forward(self, x: torch.Tensor, state: State, memory: torch.Tensor | None = None,
                lower_previous: torch.Tensor | None = None) -> CellOutput:
        output, _ = self.st_lstm(x, state, memory)
        return output
