from pathlib import Path

import pytest
import torch

import msrnn_zoo
from msrnn_zoo import testing
from msrnn_zoo.convert import from_original

DATA = Path(__file__).parent / "data"


def test_registered():
    assert {"predrnn-pp", "ms-predrnn-pp"} <= set(msrnn_zoo.list_models())


@pytest.mark.parametrize("name", ["predrnn-pp", "ms-predrnn-pp"])
def test_parity_with_original(name):
    assert testing.parity_error(DATA / f"{name}.safetensors") < 1e-5


def test_conformance():
    testing.run_conformance("predrnn-pp")


def test_highway_only_in_second_layer():
    model = testing.small("ms-predrnn-pp")
    state = model.init_state(2, 16, 16)
    assert [len(s) for s in state.layers] == [2, 3, 2, 2, 2, 2]
    assert state.layers[1][2].shape == (2, 8, 8, 8)  # Z at the second layer's scale (1/2)
    trainable = {n for n, _ in model.named_parameters() if ".highway." in n}
    assert trainable == {f"cells.1.highway.conv_xz.{p}" for p in ("weight", "bias")}
    assert {n for n in model.state_dict() if ".highway." in n} == trainable


def test_unused_original_highway_weights_are_dropped_on_conversion():
    tensors, _ = testing.load_fixture(DATA / "predrnn-pp.safetensors")
    weights = {k[len("weights."):]: v for k, v in tensors.items() if k.startswith("weights.")}
    assert "rnns.lstm.0._conv_x.weight" in weights  # the original holds a GHU in every layer
    model = from_original(weights, "predrnn-pp")
    # the GHU's joint convolution over [X, Z] holds the original's W_x and W_z side by side
    joint = torch.cat([weights["rnns.lstm.1._conv_x.weight"], weights["rnns.lstm.1._conv_z.weight"]], 1)
    torch.testing.assert_close(model.cells[1].highway.conv_xz.weight, joint)
    assert not hasattr(model.cells[0], "highway")
    with torch.no_grad():
        model.cells[1].highway.conv_xz.weight.zero_()
    weights["rnns.lstm.1._conv_x.weight"] = weights["rnns.lstm.1._conv_x.weight"] + 1
    assert not torch.equal(from_original(weights, "predrnn-pp").cells[1].highway.conv_xz.weight,
                           model.cells[1].highway.conv_xz.weight)


def test_highway_layer_option():
    model = testing.small("predrnn-pp", highway_layer=None)
    assert not any(".highway." in n for n, _ in model.named_parameters())
    assert all(len(s) == 2 for s in model.init_state(1, 8, 8).layers)
    model = testing.small("predrnn-pp", highway_layer=3)
    assert [len(s) for s in model.init_state(1, 8, 8).layers] == [2, 2, 2, 3, 2, 2]


@pytest.mark.parametrize("bad", [6, -1, 1.0, True])
def test_bad_highway_layer(bad):
    with pytest.raises(ValueError, match="highway_layer"):
        msrnn_zoo.create("predrnn-pp", highway_layer=bad)


def test_single_layer_stack_needs_no_highway():
    with pytest.raises(ValueError, match="highway_layer=None"):
        msrnn_zoo.create("predrnn-pp", num_layers=1)
    assert msrnn_zoo.create("predrnn-pp", num_layers=1, highway_layer=None, hidden_channels=4)


def test_the_message_says_how_the_command_line_writes_none():
    """``--option highway_layer=None`` reaches the cell as the string 'None', which the message then asked for
    again: the command line's spelling is JSON's ``null``."""
    with pytest.raises(ValueError, match="--option highway_layer=null"):
        msrnn_zoo.create("predrnn-pp", num_layers=1, highway_layer="None")


def test_options_checked():
    with pytest.raises(ValueError, match="odd"):
        msrnn_zoo.create("predrnn-pp", kernel_size=4)
    with pytest.raises(ValueError, match="no option 'bogus'"):
        msrnn_zoo.create("predrnn-pp", bogus=1)


def test_a_training_step_keeps_no_concatenated_copy_of_gate_inputs():
    """The convolutions over ``[X, H, C]``, ``[X, C, M]``, ``[X, C, M']`` and ``[C, M']``
    keep the parts, not a copy of them for every layer and step."""
    assert testing.concatenations_kept("predrnn-pp") == 0


def test_compiles_whole():
    """With compiled cells (set_compile_cells) the cell is one fused graph, with the eager numbers."""
    testing.check_compiled_cells("predrnn-pp")
