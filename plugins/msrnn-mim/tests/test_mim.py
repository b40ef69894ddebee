from pathlib import Path

import pytest
import torch
from msrnn_mim import MIMCell

import msrnn_zoo
from msrnn_zoo import testing
from msrnn_zoo.convert import from_original, translate

DATA = Path(__file__).parent / "data"


def test_registered():
    assert {"mim", "ms-mim"} <= set(msrnn_zoo.list_models())


@pytest.mark.parametrize("name", ["mim", "ms-mim"])
def test_parity_with_original(name):
    assert testing.parity_error(DATA / f"{name}.safetensors") < 1e-5


def test_conformance():
    testing.run_conformance("mim")


def test_differencing_needs_matching_channels():
    MIMCell(3, 8, layer_index=0, num_layers=2)  # the bottom layer differences nothing
    with pytest.raises(ValueError, match="in_channels must equal hidden_channels"):
        MIMCell(3, 8, layer_index=1, num_layers=2)


MIMS = ("conv_dn", "conv_dn_o", "conv_dc", "conv_s_o")  # MIM-N's and MIM-S's convolutions (joint where summed)
MIMS_ORIGINAL = ("_conv_x2h_n", "_conv_n2h_n", "_conv_diff2o", "_conv_n2o", "_conv_x2h_s", "_conv_c2h_s", "_conv_s2o")


def test_bottom_layer_is_a_plain_spatiotemporal_lstm():
    """Layer 0 has no MIM-N/MIM-S: no such modules, no N, S in its state; the layers above have both."""
    model = testing.small("mim")
    bottom, upper = model.cells[0], model.cells[1]
    assert not bottom.has_mims and upper.has_mims
    for name in MIMS:
        assert not hasattr(bottom, name) and hasattr(upper, name), name
    assert len(model.init_state(1, 8, 8).layers[0]) == 2
    assert len(model.init_state(1, 8, 8).layers[1]) == 4


@pytest.mark.parametrize("name", ["mim", "ms-mim"])
def test_state_dict_holds_parameters_only(name):
    """No dormant buffers: everything saved is trained, and the bottom layer saves no MIM-N/MIM-S."""
    model = testing.small(name)
    assert list(model.named_buffers()) == []
    assert set(model.state_dict()) == {n for n, _ in model.named_parameters()}
    assert not [k for k in model.state_dict() if k.startswith("cells.0.") and k.split(".")[2] in MIMS]
    assert all(f"cells.{i}.{m}.weight" in model.state_dict() for i in range(1, len(model.cells)) for m in MIMS)


@pytest.mark.parametrize("name", ["mim", "ms-mim"])
def test_unused_original_weights_are_dropped_on_conversion(name):
    """The original keeps MIM-N/MIM-S weights in the bottom layer but never runs them: conversion drops
    exactly those, strictly, and loads the upper layers' copies."""
    tensors, _ = testing.load_fixture(DATA / f"{name}.safetensors")
    weights = {k[len("weights."):]: v for k, v in tensors.items() if k.startswith("weights.")}
    unused = {k for k in weights if k.startswith("rnns.lstm.0.") and k.split(".")[3] in MIMS_ORIGINAL}
    assert len(unused) == 2 * len(MIMS_ORIGINAL)  # a weight and a bias each
    model = from_original(weights, name)  # strict: raises on anything left over or missing
    origins = [original.split(" + ") for original, _ in translate(weights, model).values()]
    assert {key for keys in origins for key in keys} == set(weights) - unused
    ours = set(model.state_dict())
    assert not [k for k in ours if k.startswith("cells.0.") and k.split(".")[2] in MIMS]
    assert sum(len(keys) for keys in origins) == len(weights) - len(unused)
    # the joint convolution over [difference, N] holds the original's two weights side by side
    joint = torch.cat([weights["rnns.lstm.1._conv_x2h_n.weight"], weights["rnns.lstm.1._conv_n2h_n.weight"]], 1)
    torch.testing.assert_close(model.cells[1].conv_dn.weight, joint, rtol=0, atol=0)


def test_upper_layers_difference_the_layer_below():
    torch.manual_seed(0)
    cell = MIMCell(8, 8, layer_index=1, num_layers=2)
    x = torch.rand(1, 8, 6, 6)
    state = cell.init_state(1, 6, 6)
    memory = torch.rand(1, 8, 6, 6)
    with torch.no_grad():
        same = cell(x, state, memory, None).output
        assert torch.allclose(cell(x, state, memory, torch.zeros_like(x)).output, same)
        assert not torch.allclose(cell(x, state, memory, torch.rand_like(x)).output, same)


def test_round_trip(tmp_path):
    """Saving and loading gives back exactly the tensors that were saved, no more and no fewer."""
    torch.manual_seed(0)
    model = testing.small("ms-mim")
    loaded = type(model).from_pretrained(model.save_pretrained(tmp_path))
    assert set(loaded.state_dict()) == set(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_a_training_step_keeps_no_concatenated_copy_of_gate_inputs():
    """The convolutions over ``[C_t, M']``, read by the output gate and the 1x1 read-out
    keep the parts, not a copy of them for every layer and step."""
    assert testing.concatenations_kept("mim") == 0


def test_compiles_whole():
    """With compiled cells (set_compile_cells) the cell is one fused graph, with the eager numbers."""
    testing.check_compiled_cells("mim")


def test_mim_n_keeps_the_difference_as_a_recipe():
    """MIM-N's gates keep ``X_t - H^{l-1}_{t-1}`` as how to make it again from tensors kept anyway: one feature map
    less per MIM layer and step after the first (whose difference is X_0 itself), the same gradients."""
    from msrnn_zoo import testing

    layers, batch, frames, size = 3, 2, 5, 8
    feature_map = batch * 8 * size * size * 4
    saved = testing.bytes_saved_by_recipes("mim", size, frames, batch, num_layers=layers)
    assert saved == (frames - 2) * (layers - 1) * feature_map  # the bottom layer has no MIM-N
