from pathlib import Path

import pytest
import torch
from msrnn_trajgru import TrajGRUCell

import msrnn_zoo
from msrnn_zoo import testing

DATA = Path(__file__).parent / "data"


def test_registered():
    assert {"trajgru", "ms-trajgru"} <= set(msrnn_zoo.list_models())


@pytest.mark.parametrize("name", ["trajgru", "ms-trajgru"])
def test_parity_with_original(name):
    assert testing.parity_error(DATA / f"{name}.safetensors", links=10) < 1e-5


def test_conformance():
    testing.run_conformance("trajgru", links=3)


def test_links_option_sets_the_number_of_flow_fields():
    model = msrnn_zoo.create("trajgru", hidden_channels=8, num_layers=2, links=13)
    cell = model.cells[0]
    assert cell.flow_conv_out.out_channels == 2 * 13
    assert cell.conv_warped.in_channels == 13 * 8
    assert model.config.cell_options == {"links": 13}
    assert msrnn_zoo.create("trajgru", hidden_channels=8, num_layers=2).cells[0].links == 10


@pytest.mark.parametrize("links", [0, -2, 2.5, True])
def test_bad_links_rejected(links):
    with pytest.raises(ValueError, match="positive integer number of flow links"):
        msrnn_zoo.create("trajgru", hidden_channels=8, num_layers=2, links=links)


def test_unknown_option_names_links():
    with pytest.raises(ValueError, match="links"):
        msrnn_zoo.create("trajgru", link_num=3)


def test_original_convention_moves_state_even_without_flow():
    # With zero flow weights the original's warp is not the identity; the matching convention is, and
    # then TrajGRU with a zero input degenerates to a GRU on the un-warped state.
    torch.manual_seed(0)
    h = torch.rand(1, 4, 6, 6)
    x = torch.zeros(1, 4, 6, 6)
    for align in (False, True):
        cell = TrajGRUCell(4, 4, links=1, warp_align_corners=align)
        with torch.no_grad():
            for conv in (cell.flow_conv_out, cell.conv_x):
                conv.weight.zero_()
                conv.bias.zero_()
            cell.conv_warped.weight.copy_(torch.eye(4).repeat(3, 1)[:, :, None, None])
            cell.conv_warped.bias.zero_()
            out = cell(x, (h,)).output
        z = torch.sigmoid(h)
        gru = (1 - z) * torch.nn.functional.leaky_relu(z * h, 0.2) + z * h
        if align:
            torch.testing.assert_close(out, gru)
        else:
            assert (out - gru).abs().max() > 1e-2


def test_a_training_step_keeps_no_concatenated_copy_of_gate_inputs():
    """The flow network's convolution over ``[X_t, H_{t-1}]`` keeps its parts, not a copy of them."""
    assert testing.concatenations_kept("trajgru") == 0


def test_compiles_whole():
    """With compiled cells (set_compile_cells) the cell is one fused graph, with the eager numbers."""
    testing.check_compiled_cells("trajgru")


@pytest.mark.parametrize("value", ["False", "no", None, 0, 1])
def test_warp_align_corners_takes_only_a_bool(value):
    """A string such as 'False' (which ``--option warp_align_corners=False`` passed before the command line read
    Python's spelling) is truthy: refused, not read as True."""
    with pytest.raises(ValueError, match="warp_align_corners takes True or False"):
        msrnn_zoo.create("trajgru", hidden_channels=4, num_layers=2, warp_align_corners=value)
