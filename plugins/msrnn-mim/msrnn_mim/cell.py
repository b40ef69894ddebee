"""MIM, Memory In Memory (Wang et al., CVPR 2019, arXiv:1811.07490), as the MS-RNN code runs it.

A spatiotemporal LSTM whose forget path ``f . C_{t-1}`` is replaced by two cascaded recurrent modules.
Layer ``l`` reads its input ``X_t`` (the output of layer ``l-1``), the zigzag memory ``M`` handed up by the
layer below (the bottom layer gets the top layer's from ``t-1``) and ``H^{l-1}_{t-1}``, the previous output
of the layer below, brought to this layer's scale:

MIM-N, the non-stationary module, follows the differences of the layer below through time:

    i_n, f_n, g_n = split(W_dn * (X_t - H^{l-1}_{t-1}) + W_nn * N_{t-1})
    N_t           = sigmoid(f_n) . N_{t-1} + sigmoid(i_n) . tanh(g_n)
    D_t           = sigmoid(W_do * (X_t - H^{l-1}_{t-1}) + W_no * N_t) . tanh(N_t)

MIM-S, the stationary module, reads those differences against the temporal memory:

    i_s, f_s, g_s, o_s = split(W_ds * D_t + W_cs * C_{t-1})
    S_t           = sigmoid(f_s) . S_{t-1} + sigmoid(i_s) . tanh(g_s)
    T_t           = sigmoid(o_s + W_so * S_t) . tanh(S_t)

The block around them:

    i, f, g, o    = split(W_x * X_t + W_h * H_{t-1})
    C_t           = T_t + sigmoid(i) . tanh(g)
    i', f', g'    = split(W'_x * X_t + W_m * M)
    M'            = sigmoid(f') . M + sigmoid(i') . tanh(g')
    O_t           = sigmoid(o + W_co * C_t + W_mo * M')
    H_t           = O_t . tanh(W_1x1 * [C_t, M'])

The bottom layer has no layer below to difference, so it is a plain spatiotemporal LSTM,
``C_t = sigmoid(f) . C_{t-1} + sigmoid(i) . tanh(g)``, as in the paper. The original code still runs MIM-N
and MIM-S there (on ``X_t - 0``) and carries ``N``, ``S`` through time, but nothing reads them; we skip that
dead work, so the bottom layer's state is ``(H, C)`` and the other layers' ``(H, C, N, S)``, and the bottom
layer has no MIM-N or MIM-S convolutions at all (converting an original checkpoint drops their weights there,
see :meth:`MIMCell.original_key`). Every convolution carries a bias, and ``W_co``, ``W_mo``, ``W_no``,
``W_so`` are ``k x k`` convolutions, as in the MS-RNN implementation. Each sum of two convolutions above is
computed as one convolution over its two inputs side by side (:class:`~msrnn_zoo.cell.JointConv2d`); weights
stored as the separate convolutions (``conv_x``, ``conv_h``, ...) load into it.

Other cells built on the MIM block (MotionRNN) hold a ``MIMCell`` of their layer and call
:meth:`MIMCell.step`, which also returns the output gate ``O_t``; the layer-0 rule, the state layout and
the dropping of unused original weights then come with it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
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

_MIMS_ORIGINAL = ("_conv_x2h_n", "_conv_n2h_n", "_conv_diff2o", "_conv_n2o", "_conv_x2h_s", "_conv_c2h_s", "_conv_s2o")
"""The original's MIM-N and MIM-S convolutions: built in every layer, but only run above the bottom one."""


class MIMStep(NamedTuple):
    """One step of the MIM block (:meth:`MIMCell.step`): a :class:`~msrnn_zoo.cell.CellOutput` plus ``O_t``."""

    output: torch.Tensor
    """``H_t``."""
    state: State
    """``(H_t, C_t)``, then ``N_t, S_t`` above the bottom layer."""
    memory: torch.Tensor
    """``M'``, handed on to the next layer."""
    gate: torch.Tensor
    """The output gate ``O_t`` (MotionRNN's highway lets the input through where it is closed)."""


class MIMCell(RecurrentCell):
    uses_memory = True
    uses_lower_previous = True
    memory_flow = ("H, C through time; N, S (MIM-N, MIM-S) through time above the bottom layer; "
                   "H up the stack; M zigzags up the stack, then top layer -> bottom at t+1")
    # measured on an H200, recorded clips, fp32, batch 4: 0.92x the step's time
    gpu_channels_last = True
    original_keys = {
        "_conv_x2h_n": "conv_diff",
        "_conv_n2h_n": "conv_n",
        "_conv_diff2o": "conv_diff_o",
        "_conv_n2o": "conv_n_o",
        "_conv_x2h_s": "conv_d",
        "_conv_c2h_s": "conv_c_s",
        "_conv_s2o": "conv_s_o",
        "_conv_x2h": "conv_x",
        "_conv_h2h": "conv_h",
        "_conv_c2o": "conv_c_o",
        "_conv_x2h_m": "conv_x_m",
        "_conv_m2h_m": "conv_m",
        "_conv_m2o": "conv_m_o",
        "_conv_c_m": "conv_fuse",
    }

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3, *,
                 layer_index: int = 0, num_layers: int = 1) -> None:
        super().__init__(in_channels, hidden_channels, kernel_size, layer_index=layer_index, num_layers=num_layers)
        self.has_mims = layer_index > 0
        """Whether MIM-N and MIM-S run here: everywhere but the bottom layer, which has nothing below. A flag made
        once, not a property of ``layer_index``: a compiled cell then guards on it, and is shared by every layer
        above the bottom one instead of compiled again for each index."""
        if self.has_mims and in_channels != hidden_channels:
            raise ValueError(f"MIM layer {layer_index} differences its input against the layer below's previous "
                             f"output, so in_channels must equal hidden_channels; got {in_channels} and "
                             f"{hidden_channels}.")
        hid = hidden_channels

        def conv(cin: int, cout: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2)

        def joint(parts: dict[str, int], cout: int) -> JointConv2d:
            return JointConv2d(parts, cout, kernel_size)

        if self.has_mims:  # the bottom layer has nothing below to difference: no MIM-N, no MIM-S
            # MIM-N: gates i_n, f_n, g_n from the difference and N; its output gate
            self.conv_dn = joint({"conv_diff": in_channels, "conv_n": hid}, 3 * hid)
            self.conv_dn_o = joint({"conv_diff_o": in_channels, "conv_n_o": hid}, hid)
            # MIM-S: gates i_s, f_s, g_s, o_s from D and C_{t-1}; S's share of the output gate
            self.conv_dc = joint({"conv_d": hid, "conv_c_s": hid}, 4 * hid)
            self.conv_s_o = conv(hid, hid)
        # temporal memory C: gates i, f, g and the output gate's share o
        self.conv_xh = joint({"conv_x": in_channels, "conv_h": hid}, 4 * hid)
        # spatiotemporal memory M: gates i', f', g'
        self.conv_xm = joint({"conv_x_m": in_channels, "conv_m": hid}, 3 * hid)
        # the output gate also looks at both new memories; H is read out of both together
        self.conv_o = joint({"conv_c_o": hid, "conv_m_o": hid}, hid)
        self.conv_fuse = nn.Conv2d(2 * hid, hid, kernel_size=1)

    @property
    def convolves_input_only(self) -> bool:  # type: ignore[override]  # (a class attribute of RecurrentCell)
        """Without MIM-N the input is only convolved; MIM-N differences it element-wise."""
        return not self.has_mims

    def original_key(self, key: str) -> str | None:
        """The original keeps MIM-N and MIM-S weights in the bottom layer but never runs them: dropped there.

        Its bottom layer computes both modules on ``X_t - 0`` and carries ``N``, ``S`` through time, yet no
        output depends on them (``C_t`` there is the plain LSTM update), so their weights have no effect.
        """
        if not self.has_mims and key.split(".", 1)[0] in _MIMS_ORIGINAL:
            return None
        return super().original_key(key)

    def init_state(self, batch: int, height: int, width: int, *, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> State:
        h = zeros(batch, self.hidden_channels, height, width, device, dtype)
        if not self.has_mims:
            return h, zeros_like(h)
        return h, zeros_like(h), zeros_like(h), zeros_like(h)

    def forward(self, x: torch.Tensor, state: State, memory: torch.Tensor | None = None,
                lower_previous: torch.Tensor | None = None) -> CellOutput:
        out = self.step(x, state, memory, lower_previous)
        return CellOutput(out.output, out.state, out.memory)

    def step(self, x: torch.Tensor, state: State, memory: torch.Tensor | None = None,
             lower_previous: torch.Tensor | None = None) -> MIMStep:
        """One step of the block, as :meth:`forward`, that also returns the output gate ``O_t``."""
        h, c = state[:2]
        m = zeros_like(h) if memory is None else memory
        i, f, g, o = torch.chunk(self.conv_xh(x, h), 4, dim=1)
        if self.has_mims:
            _, _, n, s = state
            # kept by MIM-N's gates as how to make it again from X_t and the layer below's H_{t-1}
            first = lower_previous is None or is_known_zero(lower_previous)
            diff = x if first else recomputable(torch.sub, x, lower_previous)
            d, n = self._non_stationary(diff, n)
            t, s = self._stationary(d, c, s)
            c = t + torch.sigmoid(i) * torch.tanh(g)
        else:
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        i_m, f_m, g_m = torch.chunk(self.conv_xm(x, m), 3, dim=1)
        m = torch.sigmoid(f_m) * m + torch.sigmoid(i_m) * torch.tanh(g_m)
        o = torch.sigmoid(o + self.conv_o(c, m))  # W_co * C_t + W_mo * M'
        h = o * torch.tanh(joint_conv2d(self.conv_fuse, c, m))  # W_1x1 * [C_t, M'], without keeping the copy
        return MIMStep(h, (h, c, n, s) if self.has_mims else (h, c), m, o)

    def _non_stationary(self, diff: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MIM-N: the new ``N`` and its read-out ``D``, from the difference of the layer below."""
        i, f, g = torch.chunk(self.conv_dn(diff, n), 3, dim=1)
        n = torch.sigmoid(f) * n + torch.sigmoid(i) * torch.tanh(g)
        d = torch.sigmoid(self.conv_dn_o(diff, n)) * torch.tanh(n)
        return d, n

    def _stationary(self, d: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MIM-S: the new ``S`` and its read-out ``T``, which stands in for the forget path of ``C``."""
        i, f, g, o = torch.chunk(self.conv_dc(d, c), 4, dim=1)
        s = torch.sigmoid(f) * s + torch.sigmoid(i) * torch.tanh(g)
        t = torch.sigmoid(o + self.conv_s_o(s)) * torch.tanh(s)
        return t, s
