"""PrecipLSTM (Ma et al., "PrecipLSTM: A Meteorological Spatiotemporal LSTM for Precipitation
Nowcasting", IEEE TGRS 60, 2022), as the MS-RNN code runs it.

Four memories share one input. The input first passes a local attention over its ``k x k``
neighbourhood (:mod:`.local_attention`), added back as a residual; the temporal differencing memory
reads instead how the input changed since the previous step:

    X^ = X_t + W_a * LA(X_t)                                        local attention on the input
    i, f, g, o       = split(W_xc * X^ + W_hc * H_{t-1})
    C_t = sigmoid(f) . C_{t-1} + sigmoid(i) . tanh(g)               ConvLSTM memory
    i', f', g'       = split(W_xm * X^ + W_mm * M)
    M' = sigmoid(f') . M + sigmoid(i') . tanh(g')                   zigzag memory (PredRNN)
    i'', f'', g''    = split(W_xs * X^ + W_ss * S_{t-1})
    S_t = sigmoid(f'') . S_{t-1} + sigmoid(i'') . tanh(g'')          spatial memory (SLAM)
    i''', f''', g''' = split(W_xt * (X_t - X_{t-1}) + W_tt * T_{t-1})
    T_t = sigmoid(f''') . T_{t-1} + sigmoid(i''') . tanh(g''')       temporal differencing memory (TDM)
    O   = sigmoid(o + W_oc * C_t + W_os * S_t + W_ot * T_t + W_om * M')
    H_t = O . tanh(W_1x1 * [C_t, S_t, T_t, M'])

``X_{t-1}`` is this layer's own input at the previous step, at the layer's own resolution (after the
down/up-sampling and skip of the multi-scale stack), zero before the first frame; the cell keeps it in
its state. Every convolution carries a bias except the attention's 1x1 projections. Each sum of
convolutions is one convolution over its inputs side by side (:class:`~msrnn_zoo.cell.JointConv2d`; the
output gate's four reads ``W_oc * C_t + W_os * S_t + W_ot * T_t + W_om * M'`` are one convolution over
``[C_t, S_t, T_t, M']``, the input of ``W_1x1`` too); weights stored as the separate convolutions load into it.
On a fast path (``model.set_fast_path``) the local attention runs on GPUs as FlexAttention
(:func:`~msrnn_preciplstm.local_attention.local_attention_flex`), the same numbers in one fused kernel.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from msrnn_zoo.cell import (
    CellOutput,
    JointConv2d,
    RecurrentCell,
    State,
    is_known_zero,
    joint_conv2d,
    recomputable,
    zeros,
    zeros_like,
)

from .local_attention import LocalAttention


def _residual(x: torch.Tensor, attended: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``X^ = X_t + W_a * LA(X_t)``, the input the gates read."""
    return x + F.conv2d(attended, weight, bias, padding=weight.shape[-1] // 2)


def _gates(pre: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """The input/forget/candidate update every PrecipLSTM memory shares: f . memory + i . g."""
    i, f, g = torch.chunk(pre, 3, dim=1)
    return torch.sigmoid(f) * memory + torch.sigmoid(i) * torch.tanh(g)


class PrecipLSTMCell(RecurrentCell):
    uses_memory = True
    memory_flow = ("H, C, S (spatial), T (temporal differencing) and the previous input through time; "
                   "M zigzags up the stack; H up the stack")
    original_keys: ClassVar[dict[str, str]] = {
        "LA": "attention", "_conv_x_x_att": "conv_attention",
        "_conv_x2h": "conv_x", "_conv_h2h": "conv_h",
        "_conv_x2h_m": "conv_x_m", "_conv_m2h_m": "conv_m",
        "_conv_x2h_ms": "conv_x_s", "_conv_ms2h_ms": "conv_s",
        "_conv_x2h_mt": "conv_x_t", "_conv_mt2h_mt": "conv_t",
        "_conv_c2o": "out_c", "_conv_ms2o": "out_s", "_conv_mt2o": "out_t", "_conv_m2o": "out_m",
        "c_m_ms_mt": "conv_fuse",
    }

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3, *,
                 layer_index: int = 0, num_layers: int = 1, window: int = 30) -> None:
        """``window`` is the side of the local attention's neighbourhood, in pixels at the layer's scale."""
        super().__init__(in_channels, hidden_channels, kernel_size, layer_index=layer_index, num_layers=num_layers)
        hid = hidden_channels

        def conv(inp: int, out: int, size: int = kernel_size) -> nn.Conv2d:
            return nn.Conv2d(inp, out, size, padding=size // 2)

        def joint(x_name: str, x_channels: int, memory: str, out: int) -> JointConv2d:
            return JointConv2d({x_name: x_channels, memory: hid}, out, kernel_size)

        self.attention = LocalAttention(in_channels, in_channels, window)
        self.conv_attention = conv(in_channels, in_channels)
        self.conv_xh = joint("conv_x", in_channels, "conv_h", 4 * hid)
        self.conv_xm = joint("conv_x_m", in_channels, "conv_m", 3 * hid)
        self.conv_xs = joint("conv_x_s", in_channels, "conv_s", 3 * hid)
        self.conv_xt = joint("conv_x_t", in_channels, "conv_t", 3 * hid)
        self.conv_o = JointConv2d({"out_c": hid, "out_s": hid, "out_t": hid, "out_m": hid}, hid, kernel_size)
        self.conv_fuse = conv(4 * hid, hid, 1)

    @property
    def window(self) -> int:
        return self.attention.window

    def original_key(self, key: str) -> str | None:
        """Also renames the attention's projections (``LA.conv1`` -> ``attention.query``, ...)."""
        ours = super().original_key(key)
        if ours is None:
            return None
        head, _, rest = ours.partition(".")
        if head == "attention":
            sub, _, leaf = rest.partition(".")
            return f"attention.{LocalAttention.original_keys.get(sub, sub)}.{leaf}"
        return ours

    def set_fast_path(self, mode: str | None) -> None:
        """On a fast path the local attention runs as FlexAttention on GPUs (one fused kernel per direction)."""
        self.attention.implementation = "reference" if mode is None else "flex"

    def init_state(self, batch: int, height: int, width: int, *, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> State:
        h = zeros(batch, self.hidden_channels, height, width, device, dtype)
        previous_input = zeros(batch, self.in_channels, height, width, device, dtype)
        return h, zeros_like(h), zeros_like(h), zeros_like(h), previous_input

    def forward(self, x: torch.Tensor, state: State, memory: torch.Tensor | None = None,
                lower_previous: torch.Tensor | None = None) -> CellOutput:
        if memory is None:
            raise ValueError("PrecipLSTM reads the zigzag memory M: pass the memory tensor "
                             f"(B, {self.memory_channels}, H, W).")
        h, c, s, t, x_previous = state
        # X^ and X_t - X_{t-1} are kept by the gates as how to make them again from X_t, LA(X_t) and X_{t-1},
        # which are kept anyway: two feature maps less per layer and step, for a 3x3 convolution in the backward
        conv = self.conv_attention
        x_hat = recomputable(_residual, x, self.attention(x), conv.weight, conv.bias)
        i, f, g, o = torch.chunk(self.conv_xh(x_hat, h), 4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        m = _gates(self.conv_xm(x_hat, memory), memory)
        s = _gates(self.conv_xs(x_hat, s), s)
        change = x if is_known_zero(x_previous) else recomputable(torch.sub, x, x_previous)  # X_0 - 0 is X_0
        t = _gates(self.conv_xt(change, t), t)
        gate = torch.sigmoid(o + self.conv_o(c, s, t, m))  # W_oc * C_t + W_os * S_t + W_ot * T_t + W_om * M'
        h = gate * torch.tanh(joint_conv2d(self.conv_fuse, c, s, t, m))  # the memories are kept, not their copy
        return CellOutput(h, (h, c, s, t, x), memory=m)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, window={self.window}"
