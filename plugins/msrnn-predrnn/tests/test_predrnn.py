from pathlib import Path

import pytest
import torch
from msrnn_predrnn import PredRNNCell

import msrnn_zoo
from msrnn_zoo import testing

DATA = Path(__file__).parent / "data"


def test_registered():
    assert {"predrnn", "ms-predrnn"} <= set(msrnn_zoo.list_models())
    assert PredRNNCell.uses_memory and PredRNNCell.auxiliary_loss is None


@pytest.mark.parametrize("name", ["predrnn", "ms-predrnn"])
def test_parity_with_original(name):
    assert testing.parity_error(DATA / f"{name}.safetensors") < 1e-5


def test_conformance():
    testing.run_conformance("predrnn")


def test_bad_options_and_memory_rejected():
    with pytest.raises(ValueError, match="odd"):
        msrnn_zoo.create("predrnn", kernel_size=2)
    with pytest.raises(ValueError, match="no option 'bogus'"):
        msrnn_zoo.create("predrnn", bogus=1)
    cell = PredRNNCell(4, 4)
    state = cell.init_state(1, 8, 8)
    with pytest.raises(ValueError, match="spatiotemporal memory of shape"):
        cell(torch.rand(1, 4, 8, 8), state, torch.zeros(1, 4, 4, 4))


def test_missing_memory_is_empty_memory():
    torch.manual_seed(0)
    cell = PredRNNCell(3, 4)
    x, state = torch.rand(2, 3, 8, 8), cell.init_state(2, 8, 8)
    alone, with_zeros = cell(x, state), cell(x, state, torch.zeros(2, 4, 8, 8))
    for a, b in zip((alone.output, alone.memory, *alone.state), (with_zeros.output, with_zeros.memory,
                                                                 *with_zeros.state)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["predrnn", "ms-predrnn"])
def test_memory_zigzags(name):
    """M goes up the stack layer by layer, and from the top layer at t to the bottom layer at t+1."""
    torch.manual_seed(0)
    model = testing.small(name).eval()
    written, read = [], []
    for cell in model.cells:
        cell.register_forward_hook(lambda mod, args, out: written.append(out.memory))
        cell.register_forward_pre_hook(lambda mod, args: read.append(args[2]))
    frames = torch.rand(1, 2, 1, 16, 16)
    with torch.no_grad():
        model(frames, horizon=1)
    n = len(model.cells)
    levels = model.levels
    for t in range(2):
        for i in range(1, n):
            moved = model.schedule.move(written[t * n + i - 1], levels[i - 1], levels[i])
            torch.testing.assert_close(read[t * n + i], moved)
    torch.testing.assert_close(read[n], model.schedule.move(written[n - 1], levels[-1], levels[0]))
    assert read[0].abs().sum() == 0  # the very first step starts from an empty M


def test_a_training_step_keeps_no_concatenated_copy_of_gate_inputs():
    """The convolutions over ``[C_t, M_t]``, read by the output gate and the 1x1 read-out
    keep the parts, not a copy of them for every layer and step."""
    assert testing.concatenations_kept("predrnn") == 0


def test_compiles_whole():
    """With compiled cells (set_compile_cells) the cell is one fused graph, with the eager numbers."""
    testing.check_compiled_cells("predrnn")
