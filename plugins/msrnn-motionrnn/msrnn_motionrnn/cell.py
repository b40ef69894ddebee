"""MotionRNN (Wu et al., CVPR 2021, arXiv:2103.02243), as the MS-RNN code runs it.

MotionRNN is MIM with motion added. Each layer runs the MIM block of its layer unchanged -- a
:class:`msrnn_mim.MIMCell`, held as ``block``: MIM-N and MIM-S on the difference of the layer below, the
spatiotemporal LSTM update of ``C`` and the zigzag memory ``M``, the layer-0 rule (a plain spatiotemporal
LSTM, no MIM-N/MIM-S) -- and adds two things after it:

- a MotionGRU (:mod:`.motion_gru`) on the block's new hidden state, which learns transient and trend motion
  (``F``, ``D``) and moves the hidden state along it;
- the motion highway, which lets the layer's input past the block where the block's output gate is closed.

    H_t, C_t, N_t, S_t, M', O_t = MIM(X_t, H_{t-1}, C_{t-1}, N_{t-1}, S_{t-1}, M, H^{l-1}_{t-1})
    X'_t, F_t, D_t              = MotionGRU(H_t, F_{t-1}, D_{t-1})
    out_t                       = X'_t + (1 - O_t) . X_t        (every layer but the top)
    out_t                       = H_t                           (the top layer)

``out_t`` goes up the stack and is also the ``H_{t-1}`` the block reads at the next step and the previous
output that the layer above differences. ``M'`` zigzags on as in PredRNN.

We follow the MS-RNN code's arrangement, so that its checkpoints load and agree: MotionGRU runs on the
block's new hidden state, after the block (MS-RNN moved it there, so that MIM-N differences tensors of the
same kind); the top layer has no highway, which leaves its MotionGRU without any effect (we build none
there); and, as in MIM, the bottom layer's block has no MIM-N/MIM-S (the original computes them there but
never reads them). Converting an original checkpoint drops those unused weights (see
:meth:`MotionRNNCell.original_key`). A layer's state is therefore MIM's, ``(H, C)``, then ``N, S`` above the
bottom layer, followed by ``F, D`` (at half resolution) below the top layer.
The original MotionGRU also reshapes two tensors in a way that mixes samples and positions;
``original_layout`` (default ``True``, needed for original checkpoints) keeps that, ``False`` follows the
equations (see :mod:`.motion_gru`).

Options: ``alpha`` (0.5), the trend's update rate; ``motion_kernel_size`` (3), ``k`` of the ``k x k``
offsets MotionGRU learns per position; ``original_layout`` (``True``).
"""

from __future__ import annotations

import torch
from msrnn_mim import MIMCell

from msrnn_zoo.cell import CellOutput, RecurrentCell, State, zeros, zeros_like

from .motion_gru import MotionGRU

_MOTION = {
    "_conv_enc": "encoder", "_conv_u": "conv_update", "_conv_r": "conv_reset", "_conv_z": "conv_candidate",
    "_conv_hm": "conv_mask", "_conv_dec": "conv_merge", "_deconv_dec": "decoder", "_conv_g": "conv_gate",
}
"""The original's MotionGRU convolutions, built in every layer: ours for those our MotionGRU runs."""


class MotionRNNCell(RecurrentCell):
    uses_memory = True
    uses_lower_previous = True
    memory_flow = ("H, C through time; N, S above the bottom layer and motion F, D (half resolution) below "
                   "the top layer through time; H up the stack; M zigzags up, then top layer -> bottom at t+1")
    original_keys = {**{k: f"block.{v}" for k, v in MIMCell.original_keys.items()},
                     **{k: f"motion_gru.{v}" for k, v in _MOTION.items()}}

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3, *,
                 layer_index: int = 0, num_layers: int = 1, alpha: float = 0.5, motion_kernel_size: int = 3,
                 original_layout: bool = True) -> None:
        super().__init__(in_channels, hidden_channels, kernel_size, layer_index=layer_index, num_layers=num_layers)
        self.has_motion = layer_index < num_layers - 1
        """Whether MotionGRU and the highway run here: everywhere but the top layer. A flag made once, not a property
        of ``layer_index``: a compiled cell guards on it and is shared by the layers below the top one."""
        if hidden_channels % 4:
            raise ValueError(f"MotionRNN needs hidden_channels divisible by 4 (MotionGRU encodes the hidden "
                             f"state to a quarter of its channels); got {hidden_channels}, try "
                             f"{max(4, hidden_channels // 4 * 4)}.")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha, the trend's update rate, must be a number in [0, 1] (MotionRNN uses 0.5); "
                             f"got {alpha!r}.")
        if not isinstance(original_layout, bool):  # bool("False") is True: a string would pick the layout
            raise ValueError(f"original_layout takes True or False (on the command line: --option "
                             f"original_layout=true or =false), got {original_layout!r}.")
        if isinstance(motion_kernel_size, bool) or not isinstance(motion_kernel_size, int) or motion_kernel_size < 1:
            raise ValueError(f"motion_kernel_size (MotionGRU learns k x k offsets per position) must be a positive "
                             f"integer; got {motion_kernel_size!r}.")
        # the MIM block of this layer: it checks its own channels (MIM-N differences the input)
        self.block = MIMCell(in_channels, hidden_channels, kernel_size, layer_index=layer_index,
                             num_layers=num_layers)
        if self.has_motion:  # the top layer has no highway, so a MotionGRU there would change nothing
            if in_channels != hidden_channels:
                raise ValueError(f"MotionRNN layer {layer_index} adds its input back on the motion highway, so "
                                 f"in_channels must equal hidden_channels; got {in_channels} and "
                                 f"{hidden_channels}.")
            self.motion_gru = MotionGRU(hidden_channels, motion_kernel_size, alpha,
                                        original_layout=original_layout)

    def original_key(self, key: str) -> str | None:
        """Drops the original's weights that this layer keeps but never runs.

        The original builds MIM-N, MIM-S and a MotionGRU in every layer. The MIM block's keys are its to
        translate: the bottom layer's MIM-N and MIM-S weights are dropped there (see
        :meth:`msrnn_mim.MIMCell.original_key`). The top layer has no motion highway and outputs the block's
        ``H_t``, which leaves the MotionGRU there without any effect; we build none, so its keys are dropped.
        """
        head = key.split(".", 1)[0]
        if head in MIMCell.original_keys:
            inner = self.block.original_key(key)
            return None if inner is None else f"block.{inner}"
        if head in _MOTION and not self.has_motion:
            return None
        return super().original_key(key)

    def check_size(self, height: int, width: int) -> None:
        super().check_size(height, width)
        if self.has_motion and (height % 2 or width % 2):
            raise ValueError(f"MotionRNN layer {self.layer_index} would run at {height}x{width}, but its MotionGRU "
                             "works at half resolution and needs an even height and width at every layer; crop "
                             "or pad the frames.")

    def init_state(self, batch: int, height: int, width: int, *, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> State:
        state = self.block.init_state(batch, height, width, device=device, dtype=dtype)
        if self.has_motion:
            f = zeros(batch, self.motion_gru.flow_channels, height // 2, width // 2, device, dtype)
            state += (f, zeros_like(f))
        return state

    def forward(self, x: torch.Tensor, state: State, memory: torch.Tensor | None = None,
                lower_previous: torch.Tensor | None = None) -> CellOutput:
        if not self.has_motion:
            return self.block(x, state, memory, lower_previous)
        *mim_state, f, d = state
        out = self.block.step(x, tuple(mim_state), memory, lower_previous)
        moved, f, d = self.motion_gru(out.output, f, d)
        h = moved + (1 - out.gate) * x  # the motion highway
        return CellOutput(h, (h, *out.state[1:], f, d), out.memory)
