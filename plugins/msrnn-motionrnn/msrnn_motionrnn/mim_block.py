"""The MIM block (Wang et al., Memory In Memory, CVPR 2019) that MotionRNN is built on in the MS-RNN code.

With ``Delta = X_t - H^{l-1}_{t-1}`` (the input minus the layer below's previous output):

    MIM-N:  i_n, f_n, g_n = split(W_dn * Delta + W_nn * N_{t-1})
            N_t = sigmoid(f_n) . N_{t-1} + sigmoid(i_n) . tanh(g_n)
            D_t = sigmoid(W_do * Delta + W_no * N_t) . tanh(N_t)
    MIM-S:  i_s, f_s, g_s, o_s = split(W_ds * D_t + W_cs * C_{t-1})
            S_t = sigmoid(f_s) . S_{t-1} + sigmoid(i_s) . tanh(g_s)
            T_t = sigmoid(o_s + W_so * S_t) . tanh(S_t)
    block:  i, f, g, o = split(W_x * X_t + W_h * H_{t-1})
            C_t = T_t + sigmoid(i) . tanh(g)        (bottom layer: sigmoid(f) . C_{t-1} + sigmoid(i) . tanh(g))
            i', f', g' = split(W'_x * X_t + W_m * M);  M' = sigmoid(f') . M + sigmoid(i') . tanh(g')
            O_t = sigmoid(o + W_co * C_t + W_mo * M');  H_t = O_t . tanh(W_1x1 * [C_t, M'])

The bottom layer has nothing below to difference: there MIM-N and MIM-S are left out, convolutions and all
(the original computes them but never reads them), and ``N``, ``S`` are ``None``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class BlockOutput(NamedTuple):
    h: torch.Tensor
    c: torch.Tensor
    m: torch.Tensor
    o: torch.Tensor
    """The output gate ``O_t``, which MotionRNN's highway reuses."""
    n: torch.Tensor | None
    s: torch.Tensor | None


class MIMBlock(nn.Module):
    """One MIM step; ``has_mims=False`` (the bottom layer) makes it a plain spatiotemporal LSTM."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int, *, has_mims: bool) -> None:
        super().__init__()
        hid = hidden_channels
        self.has_mims = has_mims

        def conv(cin: int, cout: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2)

        if has_mims:
            self.conv_diff, self.conv_n = conv(in_channels, 3 * hid), conv(hid, 3 * hid)  # MIM-N gates
            self.conv_diff_o, self.conv_n_o = conv(in_channels, hid), conv(hid, hid)  # MIM-N output gate
            self.conv_d, self.conv_c_s = conv(hid, 4 * hid), conv(hid, 4 * hid)  # MIM-S gates
            self.conv_s_o = conv(hid, hid)  # MIM-S output gate
        self.conv_x, self.conv_h = conv(in_channels, 4 * hid), conv(hid, 4 * hid)  # C gates, O's share
        self.conv_x_m, self.conv_m = conv(in_channels, 3 * hid), conv(hid, 3 * hid)  # M gates
        self.conv_c_o, self.conv_m_o = conv(hid, hid), conv(hid, hid)  # O's shares of C_t, M'
        self.conv_fuse = nn.Conv2d(2 * hid, hid, kernel_size=1)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, m: torch.Tensor,
                diff: torch.Tensor | None = None, n: torch.Tensor | None = None,
                s: torch.Tensor | None = None) -> BlockOutput:
        i, f, g, o = torch.chunk(self.conv_x(x) + self.conv_h(h), 4, dim=1)
        if self.has_mims:
            i_n, f_n, g_n = torch.chunk(self.conv_diff(diff) + self.conv_n(n), 3, dim=1)
            n = torch.sigmoid(f_n) * n + torch.sigmoid(i_n) * torch.tanh(g_n)
            d = torch.sigmoid(self.conv_diff_o(diff) + self.conv_n_o(n)) * torch.tanh(n)
            i_s, f_s, g_s, o_s = torch.chunk(self.conv_d(d) + self.conv_c_s(c), 4, dim=1)
            s = torch.sigmoid(f_s) * s + torch.sigmoid(i_s) * torch.tanh(g_s)
            t = torch.sigmoid(o_s + self.conv_s_o(s)) * torch.tanh(s)
            c = t + torch.sigmoid(i) * torch.tanh(g)
        else:
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        i_m, f_m, g_m = torch.chunk(self.conv_x_m(x) + self.conv_m(m), 3, dim=1)
        m = torch.sigmoid(f_m) * m + torch.sigmoid(i_m) * torch.tanh(g_m)
        o = torch.sigmoid(o + self.conv_c_o(c) + self.conv_m_o(m))
        h = o * torch.tanh(self.conv_fuse(torch.cat([c, m], dim=1)))
        return BlockOutput(h, c, m, o, n, s)
