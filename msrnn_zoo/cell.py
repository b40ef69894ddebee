"""The one interface every recurrent cell of the zoo implements.

A cell is a single layer of a stacked convolutional RNN at one spatial scale. The generic network
(:mod:`msrnn_zoo.network`) owns everything between cells -- moving tensors between scales, skips, the
zigzag memory's path -- so a cell only states what it needs through the class attributes below and
implements its paper's equations in :meth:`RecurrentCell.forward`.

What a cell builds its equations with is importable from here too, so that a plugin (ours or a third party's)
imports from one module: :class:`JointConv2d` and :func:`joint_conv2d` (:mod:`msrnn_zoo.joint_conv`), the first
states :func:`zeros` and :func:`zeros_like` (:mod:`msrnn_zoo.zero_states`), :func:`recomputable`
(:mod:`msrnn_zoo.recompute`), :func:`never_compiled` (:mod:`msrnn_zoo.eager`), :func:`autocast_off` and
:func:`memory_format_of`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from .eager import never_compiled
from .embedded_frame import EmbeddedFrame
from .joint_conv import JointConv2d, _fold_joint_convs_hook, fold_joint_convs, joint_conv2d, weight_casts_per_clip
from .layout import memory_format_of
from .precision import autocast_off
from .recompute import recipes_off, recomputable
from .zero_states import is_known_zero, mark_zero, unmark_zero, zero_like_source, zeros, zeros_like

__all__ = [
    "AuxiliaryLoss", "CellOutput", "EmbeddedFrame", "JointConv2d", "RecurrentCell", "State", "autocast_off",
    "fold_joint_convs", "is_known_zero", "joint_conv2d", "mark_zero", "memory_format_of", "never_compiled",
    "recipes_off", "recomputable", "unmark_zero", "weight_casts_per_clip", "zero_like_source", "zeros", "zeros_like",
]

State = tuple[torch.Tensor, ...]


class CellOutput(NamedTuple):
    """What one step of a cell yields.

    ``output`` goes up to the next layer (and to the head from the top layer); ``state`` stays with the
    cell until the next time step; ``memory`` is the zigzag spatiotemporal memory handed to the next layer
    (``None`` for cells without one); ``aux`` is whatever the cell's auxiliary loss needs (``None``).
    """

    output: torch.Tensor
    state: State
    memory: torch.Tensor | None = None
    aux: Any = None


class AuxiliaryLoss(nn.Module, ABC):
    """A loss term computed from the cells' ``aux`` outputs by a module the network owns.

    One instance serves every layer (the network builds it once), which is how PredRNN-V2 shares its
    decoupling adapter across layers. ``forward`` returns one value per sample, shape ``(B,)``; the network
    sums it over layers, averages it over time steps and samples, and scales it by ``weight``.
    """

    weight: ClassVar[float] = 1.0

    def __init__(self, hidden_channels: int) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels

    @abstractmethod
    def forward(self, aux: Any) -> torch.Tensor: ...

    def step_total(self, auxes: list[Any]) -> torch.Tensor:
        """The loss of one time step per sample: :meth:`forward` of every layer's ``aux``, summed over the layers.

        A loss may override it to compute the layers together (an eager step on a GPU waits on each operation's
        launch); it must return the same sum, up to float rounding.
        """
        total = self(auxes[0])
        for aux in auxes[1:]:
            total = total + self(aux)
        return total

    @classmethod
    def original_key(cls, key: str) -> str:
        """Our parameter name for a key of the original implementation's shared module (see converter)."""
        return key


class RecurrentCell(nn.Module, ABC):
    """A convolutional recurrent cell, at whatever resolution it is run.

    Subclasses set the class attributes that describe their data flow and implement :meth:`init_state`
    and :meth:`forward`. No spatial size is fixed at construction: states are made for the size at hand.

    Arguments of every cell: ``in_channels`` and ``hidden_channels``; ``kernel_size`` of its
    convolutions; ``layer_index`` and ``num_layers`` (some cells behave differently in the first or the
    last layer); cell-specific options as keyword arguments with defaults.
    """

    uses_memory: ClassVar[bool] = False
    """Whether the cell reads and writes the zigzag memory M (PredRNN family)."""

    uses_lower_previous: ClassVar[bool] = False
    """Whether the cell reads the previous-time output of the layer below, brought to its own scale."""

    auxiliary_loss: ClassVar[type[AuxiliaryLoss] | None] = None
    """The module class that turns the cells' ``aux`` outputs into a loss, if the cell has one."""

    sampling: ClassVar[str] = "scheduled"
    """The training-time input schedule this cell was published with (see :mod:`msrnn_zoo.sampling`)."""

    memory_flow: ClassVar[str] = "hidden state through time; output up the stack"
    """One line for ``msrnn-zoo info``: which states flow where."""

    gpu_channels_last: ClassVar[bool] = False
    """Whether a run of this cell trained on a GPU keeps its weights and states channels-last (NHWC) by default
    (``train`` told neither ``--channels-last`` nor ``--no-channels-last``). On only where measured to pay:
    cuDNN's NHWC convolutions made some cells' steps faster on an H200 and TrajGRU's 1.56x slower, its warping
    having no NHWC kernel (docs/speed.md). The same computation either way, up to float rounding."""

    original_keys: ClassVar[dict[str, str]] = {}
    """Submodule names of the original implementation that differ from ours: ``{theirs: ours}``."""

    convolves_input_only: bool = False
    """Whether the input ``x`` enters the cell's equations only as an input of :class:`JointConv2d` or
    :func:`joint_conv2d` convolutions (never element-wise, never through a plain ``nn.Conv2d`` call).

    The bottom layer of such a cell is then handed an :class:`EmbeddedFrame` instead of the frame's 1x1
    embedding: its convolutions absorb the embedding and read the frame itself (1 channel, say) instead of
    the embedding's ``hidden`` channels (1 + 1 + 64 input channels instead of 64 + 64 for a frame of one
    channel and a 64-wide state: about half the multiply-adds of that convolution), and keeps no embedding for
    the backward pass. A cell whose bottom layer differs may make this a property of
    ``layer_index``. The conformance kit checks that both ways give the same numbers."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3, *,
                 layer_index: int = 0, num_layers: int = 1) -> None:
        super().__init__()
        if in_channels < 1 or hidden_channels < 1:
            raise ValueError(f"Channel counts must be positive, got in={in_channels}, hidden={hidden_channels}.")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be a positive odd number (so 'same' padding exists), got {kernel_size}."
            )
        if not 0 <= layer_index < num_layers:
            raise ValueError(f"layer_index {layer_index} is outside a stack of {num_layers} layers.")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.kernel_size = kernel_size
        self.layer_index = layer_index
        self.num_layers = num_layers
        # weights saved as separate convolutions (older checkpoints, converted originals) load into joint ones
        self.register_load_state_dict_pre_hook(_fold_joint_convs_hook)

    @property
    def memory_channels(self) -> int:
        """Channels of the zigzag memory this cell expects (only meaningful when ``uses_memory``)."""
        return self.hidden_channels

    def check_size(self, height: int, width: int) -> None:
        """Raise ``ValueError`` if the cell cannot run at this (per-layer) size; most cells run at any size."""
        if height < 1 or width < 1:
            raise ValueError(f"Layer {self.layer_index} would run at {height}x{width}: the input is too small.")

    @abstractmethod
    def init_state(self, batch: int, height: int, width: int, *, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> State:
        """The state before the first frame, for a batch at this cell's resolution."""

    @abstractmethod
    def forward(self, x: torch.Tensor, state: State, memory: torch.Tensor | None = None,
                lower_previous: torch.Tensor | None = None) -> CellOutput:
        """One time step. ``lower_previous`` is ``None`` for the bottom layer (it has no layer below)."""

    def set_fast_path(self, mode: str | None) -> None:
        """Called by the network when its fast path changes (``None``, ``"compile"``, ``"cudagraph"``).

        A cell with a formulation that only pays inside compiled steps switches to it here; most cells
        have none and need not override this.
        """

    def original_key(self, key: str) -> str | None:
        """Translate a parameter key of the original implementation (relative to this layer's cell) to ours.

        ``None`` drops the key: for weights the original keeps in a layer but never uses there (a cell
        that overrides this says why), so that strict conversion need not carry dead parameters.
        """
        head, _, rest = key.partition(".")
        ours = self.original_keys.get(head, head)
        return f"{ours}.{rest}" if rest else ours

    def extra_repr(self) -> str:
        return (f"in={self.in_channels}, hidden={self.hidden_channels}, k={self.kernel_size}, "
                f"layer={self.layer_index}/{self.num_layers}")
