"""The conformance kit's failures say in words what is wrong with a cell and how to fix it, for each rule of
the cell contract that CONTRIBUTING.md states (never a bare AssertionError)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import msrnn_zoo
from msrnn_zoo import testing
from msrnn_zoo.cell import CellOutput, RecurrentCell, joint_conv2d, zeros
from msrnn_zoo.plugins import forget, pm


class Good(RecurrentCell):
    memory_flow = "H through time"

    def __init__(self, in_channels, hidden_channels, kernel_size=3, *, layer_index=0, num_layers=1):
        super().__init__(in_channels, hidden_channels, kernel_size, layer_index=layer_index, num_layers=num_layers)
        self.conv = nn.Conv2d(in_channels + hidden_channels, hidden_channels, kernel_size, padding=kernel_size // 2)

    def init_state(self, batch, height, width, *, device=None, dtype=None):
        return (zeros(batch, self.hidden_channels, height, width, device, dtype),)

    def forward(self, x, state, memory=None, lower_previous=None):
        h = torch.tanh(self.conv(torch.cat([x, state[0]], 1)))
        return CellOutput(h, (h,))


class BareTensorState(Good):
    def init_state(self, batch, height, width, *, device=None, dtype=None):
        return zeros(batch, self.hidden_channels, height, width, device, dtype)


class ListState(Good):
    def init_state(self, batch, height, width, *, device=None, dtype=None):
        return [zeros(batch, self.hidden_channels, height, width, device, dtype)]


class NoneInState(Good):
    def init_state(self, batch, height, width, *, device=None, dtype=None):
        return (zeros(batch, self.hidden_channels, height, width, device, dtype), None)  # "no memory yet"


class IgnoresDtype(Good):
    def init_state(self, batch, height, width, *, device=None, dtype=None):
        return (torch.zeros(batch, self.hidden_channels, height, width, device=device),)


class IgnoresDevice(Good):
    def init_state(self, batch, height, width, *, device=None, dtype=None):
        return (torch.zeros(batch, self.hidden_channels, height, width, dtype=dtype),)


class SwapsHeightAndWidth(Good):
    def init_state(self, batch, height, width, *, device=None, dtype=None):
        return (zeros(batch, self.hidden_channels, width, height, device, dtype),)


class OldInitState(Good):
    def init_state(self, batch, height, width):
        return (torch.zeros(batch, self.hidden_channels, height, width),)


class NoLayerArguments(Good):
    def __init__(self, in_channels, hidden_channels, kernel_size=3):
        super().__init__(in_channels, hidden_channels, kernel_size)


class MisspeltInitState(RecurrentCell):
    memory_flow = "H through time"

    def init_states(self, batch, height, width, *, device=None, dtype=None):  # not RecurrentCell.init_state
        return (zeros(batch, self.hidden_channels, height, width, device, dtype),)

    def forward(self, x, state, memory=None, lower_previous=None):
        return CellOutput(x, state)


class NoSuperInit(Good):
    def __init__(self, in_channels, hidden_channels, kernel_size=3, *, layer_index=0, num_layers=1):
        self.conv = nn.Conv2d(in_channels, hidden_channels, kernel_size)


class ReturnsATuple(Good):
    def forward(self, x, state, memory=None, lower_previous=None):
        out = super().forward(x, state)
        return out.output, out.state


class WrongOutputWidth(Good):
    def forward(self, x, state, memory=None, lower_previous=None):
        out = super().forward(x, state)
        return CellOutput(out.output[:, :1], out.state)


class OldForward(Good):
    def forward(self, x, state):
        return super().forward(x, state)


class Float64Constant(Good):
    """A per-channel constant built in float64 (as from numpy), which promotes a float32 output."""

    def forward(self, x, state, memory=None, lower_previous=None):
        out = super().forward(x, state)
        scale = torch.full((1, self.hidden_channels, 1, 1), 0.5, dtype=torch.float64)
        return CellOutput(out.output * scale, out.state)


class OutputAsList(Good):
    def forward(self, x, state, memory=None, lower_previous=None):
        out = super().forward(x, state)
        return CellOutput(out.output.tolist(), out.state)


class ForgetsMemory(Good):
    uses_memory = True


class UnusedWeights(Good):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.unused = nn.Conv2d(1, 1, 1)


class NaNOutput(Good):
    def forward(self, x, state, memory=None, lower_previous=None):
        out = super().forward(x, state)
        return CellOutput(out.output / (out.output - out.output), out.state)  # 0 / 0


class KeepsACounter(Good):
    """Python state on self that outlives a clip: the second clip starts where the first ended."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps = 0

    def forward(self, x, state, memory=None, lower_previous=None):
        self.steps += 1
        out = super().forward(x, state)
        return CellOutput(out.output * (1 + 0.01 * self.steps), out.state)


class CachesAZeros(Good):
    """A tensor of the first call's shape kept on self: the next clip of another batch or size breaks."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.offset = None

    def forward(self, x, state, memory=None, lower_previous=None):
        if self.offset is None:
            self.offset = torch.zeros_like(x)
        return super().forward(x + self.offset, state)


class WritesStateInPlace(Good):
    def forward(self, x, state, memory=None, lower_previous=None):
        out = super().forward(x, state)
        state[0].mul_(0).add_(out.output)
        return CellOutput(out.output, state)


class HardCodesItsWidth(Good):
    """Built for the kit's 8 channels whatever hidden_channels says: it fails at every other width."""

    def __init__(self, in_channels, hidden_channels, kernel_size=3, *, layer_index=0, num_layers=1):
        super().__init__(in_channels, hidden_channels, kernel_size, layer_index=layer_index, num_layers=num_layers)
        self.conv = nn.Conv2d(in_channels + 8, 8, kernel_size, padding=kernel_size // 2)

    def init_state(self, batch, height, width, *, device=None, dtype=None):
        return (zeros(batch, 8, height, width, device, dtype),)


class IgnoresKernelSize(Good):
    """Always 3x3: a model asked for kernel_size 5 runs, and is silently another model."""

    def __init__(self, in_channels, hidden_channels, kernel_size=3, *, layer_index=0, num_layers=1):
        super().__init__(in_channels, hidden_channels, kernel_size, layer_index=layer_index, num_layers=num_layers)
        self.conv = nn.Conv2d(in_channels + hidden_channels, hidden_channels, 3, padding=1)


class PadsByOne(Good):
    """Right for 3x3 only: a 5x5 convolution padded by 1 shrinks the frame."""

    def __init__(self, in_channels, hidden_channels, kernel_size=3, *, layer_index=0, num_layers=1):
        super().__init__(in_channels, hidden_channels, kernel_size, layer_index=layer_index, num_layers=num_layers)
        self.conv = nn.Conv2d(in_channels + hidden_channels, hidden_channels, kernel_size, padding=1)


class BadSampling(Good):
    sampling = "sometimes"


class ClaimsConvolvedInput(Good):
    convolves_input_only = True  # but Good concatenates x itself and convolves with a plain nn.Conv2d


CASES = [
    (BareTensorState, "bare tensor", "return (h,)"),
    (ListState, "list, not a non-empty tuple", "tuple of tensors"),
    (NoneInState, "init_state(...)[1] is NoneType, not a tensor", "zeros_like(h)"),
    (IgnoresDtype, "torch.float64 was asked for", "dtype=dtype"),
    (IgnoresDevice, "meta was asked for", "device=device"),
    (SwapsHeightAndWidth, "its last two dimensions are swapped", "(B, channels, height, width)"),
    (OldInitState, "init_state cannot be called", "def init_state(self, batch: int, height: int, width: int, *"),
    (NoLayerArguments, "constructor cannot be called", "layer_index: int = 0, num_layers: int = 1"),
    (NoSuperInit, "constructor failed", "super().__init__"),
    (MisspeltInitState, "it does not define init_state (a misspelt name counts as missing)",
     "define `def init_state(self, batch: int, height: int, width: int, *"),
    (ReturnsATuple, "forward returned tuple", "CellOutput(output, state, memory, aux)"),
    (WrongOutputWidth, "not (B, hidden_channels, H, W)", "hidden output"),
    (OldForward, "forward cannot be called as the network calls it",
     "def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...], memory"),
    (Float64Constant, "forward's output is torch.float64 for an input x of torch.float32", "dtype of the input"),
    (OutputAsList, "forward's output is a list, not (B, hidden_channels, H, W)", "hidden output"),
    (ForgetsMemory, "uses_memory is True", "CellOutput.memory"),
    (UnusedWeights, "unused.weight received no gradient", "use every submodule"),
    (NaNOutput, "a training step gives a loss of nan", "keep every output and state of forward finite"),
    (KeepsACounter, "the same training step, run twice on the same clip, gives other numbers",
     "no attribute of self that changes between calls"),
    (CachesAZeros, "forward failed on a clip of batch 3 at 4x6 after one of batch 2 at 8x12",
     "keep nothing of one call's shape on self"),
    (WritesStateInPlace, "recomputed in the backward pass (gradient checkpointing) give other numbers",
     "write nothing in place into the state it receives"),
    (HardCodesItsWidth, "built with hidden_channels=12 (the other checks use 8): forward's output is (1, 8, 16, 16)",
     "never from a constant such as 8"),
    (IgnoresKernelSize, "its output at a pixel depends on no input farther than built with kernel_size=3",
     "pass kernel_size to the cell's spatial convolutions"),
    (PadsByOne, "built with kernel_size=5 (the other checks use 3): forward's output is (1, 12, 14, 14)",
     "padding kernel_size // 2"),
    (BadSampling, "sampling is 'sometimes'", "scheduled"),
    (ClaimsConvolvedInput, "convolves_input_only is True", "JointConv2d / joint_conv2d"),
]


@pytest.fixture
def register_cell():
    registered = []

    def register(cls):
        class Plugin:
            @msrnn_zoo.hookimpl
            def register_cells(self, register):
                register("broken", cls)

        plugin = Plugin()
        pm.register(plugin, name="broken-kit-plugin")
        registered.append(plugin)

    yield register
    for plugin in registered:
        pm.unregister(plugin)
    forget("broken-kit-plugin")


@pytest.mark.parametrize(("cls", "problem", "fix"), CASES, ids=[c[0].__name__ for c in CASES])
def test_each_broken_rule_is_explained(register_cell, cls, problem, fix):
    register_cell(cls)
    with pytest.raises(testing.ConformanceError) as caught:
        testing.run_conformance("broken")
    message = str(caught.value)
    assert len(message) < 600, message  # one readable message, not a tensor's values
    assert problem in message and "How to fix:" in message and fix in message, message
    assert message.startswith(("cell 'broken'", "model 'broken'")), message


def test_a_good_cell_passes(register_cell):
    register_cell(Good)
    testing.run_conformance("broken")


class ConvolvesInput(Good):
    convolves_input_only = True

    def forward(self, x, state, memory=None, lower_previous=None):
        h = torch.tanh(joint_conv2d(self.conv, x, state[0]))
        return CellOutput(h, (h,))


def test_a_cell_that_only_convolves_its_input_passes(register_cell):
    register_cell(ConvolvesInput)
    testing.run_conformance("broken")


class WithDropout(Good):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x, state, memory=None, lower_previous=None):
        out = super().forward(x, state)
        return CellOutput(self.dropout(out.output), out.state)


def test_a_cell_with_dropout_passes(register_cell):
    """Dropout draws other numbers in every training step; the kit compares ways of one step drawing the same."""
    register_cell(WithDropout)
    testing.run_conformance("broken")


class SwapsOnRequest(Good):
    """Breaks the contract only with its option, which only an override of run_conformance sets."""

    def __init__(self, in_channels, hidden_channels, kernel_size=3, *, layer_index=0, num_layers=1, swap=False):
        super().__init__(in_channels, hidden_channels, kernel_size, layer_index=layer_index, num_layers=num_layers)
        self.swap = swap

    def init_state(self, batch, height, width, *, device=None, dtype=None):
        height, width = (width, height) if self.swap else (height, width)
        return (zeros(batch, self.hidden_channels, height, width, device, dtype),)


def test_overrides_are_checked_against_the_contract_too(register_cell):
    """The models of the other checks are square, so only the contract's own check sees swapped axes."""
    register_cell(SwapsOnRequest)
    testing.run_conformance("broken", swap=False)
    testing.check_cell_contract("broken", hidden_channels=12, kernel_size=5, num_layers=3)
    with pytest.raises(testing.ConformanceError, match="its last two dimensions are swapped"):
        testing.run_conformance("broken", swap=True)
    with pytest.raises(ValueError, match="has no option 'swpa'"):
        testing.run_conformance("broken", swpa=True)
