"""PredRNN++ (Wang et al., ICML 2018, arXiv:1804.06300): the Causal LSTM, as the MS-RNN code runs it.

A Causal LSTM cascades its two memories instead of updating them side by side (as PredRNN's ST-LSTM
does): the temporal memory ``C`` is updated first, and the spatial memory ``M`` -- the zigzag memory
coming from the layer below (from the top layer of the previous step for the bottom layer) -- is then
updated from the new ``C``:

    i, f, g    = sigmoid, sigmoid, tanh (W_1 * [X_t, H_{t-1}, C_{t-1}])
    C_t        = f . C_{t-1} + i . g
    i', f', g' = sigmoid, sigmoid, tanh (W_2 * [X_t, C_t, M_t^{l-1}])
    M_t^l      = f' . tanh(W_3 * M_t^{l-1}) + i' . g'
    o          = tanh(W_4 * [X_t, C_t, M_t^l])
    H_t        = o . tanh(W_5 * [C_t, M_t^l])

``W_3`` and ``W_5`` are 1x1 convolutions, the others ``kernel_size``; all carry a bias. The output gate
is a tanh, as in the paper. In the layer ``highway_layer`` (the second one, by default and in the paper)
the input first passes through the Gradient Highway Unit (:mod:`.highway`): ``X_t <- Z_t = GHU(X_t,
Z_{t-1})``, and that layer carries ``Z`` in its state.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from msrnn_zoo.cell import CellOutput, RecurrentCell, State, joint_conv2d, zeros, zeros_like

from .highway import GradientHighwayUnit


class CausalLSTMCell(RecurrentCell):
    uses_memory = True
    memory_flow = ("H, C through time; M zigzags up the stack and from the top back to the bottom; "
                   "Z (gradient highway) through time in the highway layer")
    # measured on an H200, recorded clips, fp32, batch 4: 0.95x the step's time (ms-: 0.90x)
    gpu_channels_last = True
    original_keys: ClassVar[dict[str, str]] = {
        "_conv_x_h_c": "conv_temporal",
        "_conv_x_c_m": "conv_spatial",
        "_conv_m": "conv_memory",
        "_conv_o": "conv_output",
        "_conv_c_m": "conv_hidden",
        "_conv_x": "highway.conv_x",
        "_conv_z": "highway.conv_z",
    }

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3, *,
                 layer_index: int = 0, num_layers: int = 1, highway_layer: int | None = 1) -> None:
        """``highway_layer``: the layer whose input passes through the GHU (``None``: no GHU at all)."""
        super().__init__(in_channels, hidden_channels, kernel_size, layer_index=layer_index,
                         num_layers=num_layers)
        is_layer = isinstance(highway_layer, int) and not isinstance(highway_layer, bool)
        if highway_layer is not None and not (is_layer and 0 <= highway_layer < num_layers):
            raise ValueError(
                f"highway_layer={highway_layer!r} is not a layer of this {num_layers}-layer stack: it must "
                f"be an integer in 0..{num_layers - 1} (PredRNN++ uses 1, between the first two layers), or "
                "highway_layer=None (on the command line: --option highway_layer=null) for a stack of Causal "
                "LSTMs without the gradient highway."
            )
        self.highway_layer = highway_layer
        self.has_highway = layer_index == highway_layer
        self.convolves_input_only = not self.has_highway  # the GHU mixes its input in element-wise
        hidden, pad = hidden_channels, kernel_size // 2
        if self.has_highway:
            self.highway = GradientHighwayUnit(in_channels, hidden, kernel_size)
        x_channels = hidden if self.has_highway else in_channels
        self.conv_temporal = nn.Conv2d(x_channels + 2 * hidden, 3 * hidden, kernel_size, padding=pad)
        self.conv_spatial = nn.Conv2d(x_channels + 2 * hidden, 3 * hidden, kernel_size, padding=pad)
        self.conv_memory = nn.Conv2d(hidden, hidden, 1)
        self.conv_output = nn.Conv2d(x_channels + 2 * hidden, hidden, kernel_size, padding=pad)
        self.conv_hidden = nn.Conv2d(2 * hidden, hidden, 1)

    def original_key(self, key: str) -> str | None:
        """The original builds a GHU in every layer but runs only one: the others' weights are dropped."""
        if key.split(".", 1)[0] in ("_conv_x", "_conv_z") and not self.has_highway:
            return None
        return super().original_key(key)

    def init_state(self, batch: int, height: int, width: int, *, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> State:
        """``(H, C)``, plus the highway state ``Z`` in the highway layer."""
        h = zeros(batch, self.hidden_channels, height, width, device, dtype)
        return (h, zeros_like(h), zeros_like(h)) if self.has_highway else (h, zeros_like(h))

    def forward(self, x: torch.Tensor, state: State, memory: torch.Tensor | None = None,
                lower_previous: torch.Tensor | None = None) -> CellOutput:
        if memory is None:
            raise ValueError("The Causal LSTM needs the zigzag memory M; run it in a network that passes it.")
        h, c = state[0], state[1]
        if self.has_highway:  # the layer sees the highway state Z_t in place of its input
            x = z = self.highway(x, state[2])
        # each convolution over [a, b, ...] keeps its parts (kept anyway), not a concatenated copy of them
        i, f, g = torch.chunk(joint_conv2d(self.conv_temporal, x, h, c), 3, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        i_m, f_m, g_m = torch.chunk(joint_conv2d(self.conv_spatial, x, c, memory), 3, dim=1)
        m = torch.sigmoid(f_m) * torch.tanh(self.conv_memory(memory)) + torch.sigmoid(i_m) * torch.tanh(g_m)
        o = torch.tanh(joint_conv2d(self.conv_output, x, c, m))
        h = o * torch.tanh(joint_conv2d(self.conv_hidden, c, m))
        new_state = (h, c, z) if self.has_highway else (h, c)
        return CellOutput(h, new_state, m)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", gradient highway" if self.has_highway else "")
