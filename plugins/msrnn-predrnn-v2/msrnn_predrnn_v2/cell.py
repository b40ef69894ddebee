"""PredRNN-V2 (Wang et al., TPAMI 2022, arXiv:2103.09504), as the MS-RNN code runs it.

The cell is PredRNN's spatiotemporal LSTM, :class:`msrnn_predrnn.PredRNNCell` with the same weights;
layer ``l`` at time ``t`` reads the zigzag memory ``M^{l-1}_t`` from the layer below (the bottom layer
reads ``M^{L}_{t-1}`` from the top layer):

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
``W_co`` and ``W_mo`` are full ``k x k`` convolutions there. Forecasts are PredRNN's: the decoupling loss
only shapes training.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from msrnn_predrnn import PredRNNCell
from torch import nn

from msrnn_zoo.cell import AuxiliaryLoss, CellOutput, State

EPS = 1e-12
"""The smallest norm a vector is divided by: ``torch.nn.functional.normalize``'s default, which the original uses."""


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
        return self._abs_cosines(self.adapter(delta_c), self.adapter(delta_m))

    def step_total(self, auxes: list[Any]) -> torch.Tensor:
        """The layers of one step through the adapter together, those of one scale as one batch: the same sum
        in a sixth of the operations of a single-scale stack of six layers (a third for the multi-scale one)."""
        by_shape: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for delta_c, delta_m in auxes:
            by_shape.setdefault(tuple(delta_c.shape), []).append((delta_c, delta_m))
        total: torch.Tensor | None = None
        for pairs in by_shape.values():
            batch, layers = pairs[0][0].shape[0], len(pairs)
            # [dC of each layer, then dM of each layer] along the batch: one 1x1 convolution for all of them
            adapted = self.adapter(torch.cat([d for d, _ in pairs] + [d for _, d in pairs]))
            c, m = adapted.chunk(2)
            term = self._abs_cosines(c, m).view(layers, batch).sum(dim=0)
            total = term if total is None else total + term
        assert total is not None
        return total

    @staticmethod
    def _abs_cosines(c: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Per sample, the sum over channels of |cos| between ``c`` and ``m`` as vectors over the positions."""
        c, m = c.flatten(2), m.flatten(2)  # one vector over the spatial positions per sample and channel
        # cos = <c, m> / (|c| |m|), each norm at least F.normalize's eps as there: the same number as the dot
        # product of the two normalized vectors, without dividing the whole (B, C, H*W) tensors
        norms = torch.linalg.vector_norm(c, dim=2).clamp_min(EPS) * torch.linalg.vector_norm(m, dim=2).clamp_min(EPS)
        return ((c * m).sum(dim=2) / norms).abs().sum(dim=1)

    @classmethod
    def original_key(cls, key: str) -> str:
        """The original keeps the adapter as ``rnns.adapter.*``; the converter hands us ``adapter.*``."""
        return key


class PredRNNV2Cell(PredRNNCell):
    """PredRNN's ST-LSTM layer, unchanged, that also hands its increments ``(dC_t, dM_t)`` to the loss."""

    auxiliary_loss = DecouplingLoss
    sampling = "reverse"
    memory_flow = ("H, C through time; H up the stack; M zigzags up the stack, then top layer -> bottom at "
                   "t+1; dC, dM to the decoupling loss")
    title = "PredRNN-V2"

    def forward(self, x: torch.Tensor, state: State, memory: torch.Tensor | None = None,
                lower_previous: torch.Tensor | None = None) -> CellOutput:
        output, increments = self.st_lstm(x, state, memory)
        # built anew, not output._replace(aux=...): Dynamo in PyTorch 2.11 fails an internal check on _replace
        # inside a compiled cell, which then runs eagerly
        return CellOutput(output.output, output.state, output.memory, aux=increments)
