from pathlib import Path

import pytest
import torch
from msrnn_motionrnn import MotionGRU, MotionRNNCell
from msrnn_motionrnn.warp import warp

import msrnn_zoo
from msrnn_zoo import testing
from msrnn_zoo.convert import from_original, translate

DATA = Path(__file__).parent / "data"


def test_registered():
    assert {"motionrnn", "ms-motionrnn"} <= set(msrnn_zoo.list_models())


@pytest.mark.parametrize("name", ["motionrnn", "ms-motionrnn"])
def test_parity_with_original(name):
    assert testing.parity_error(DATA / f"{name}.safetensors") < 1e-5


def test_conformance():
    testing.run_conformance("motionrnn")


def test_conformance_with_equation_layout():
    testing.check_training_step("ms-motionrnn", original_layout=False)


def test_hidden_channels_divisible_by_four():
    with pytest.raises(ValueError, match="hidden_channels divisible by 4"):
        msrnn_zoo.create("motionrnn", hidden_channels=6)


def test_even_size_at_every_layer():
    with pytest.raises(ValueError, match="even height and width") as info:
        testing.small("motionrnn")(torch.rand(1, 2, 1, 15, 16))
    assert "multi-scale" not in str(info.value)  # a single-scale model is not told about the pyramid
    assert str(info.value).endswith("The nearest size this model accepts: 14x16.")
    with pytest.raises(ValueError, match="layer 2 would run at 5x5"):
        testing.small("ms-motionrnn").check_size(20, 20)
    testing.small("ms-motionrnn").check_size(24, 24)


def test_bad_options():
    with pytest.raises(ValueError, match="alpha"):
        msrnn_zoo.create("motionrnn", alpha=1.5)
    with pytest.raises(ValueError, match="motion_kernel_size"):
        msrnn_zoo.create("motionrnn", motion_kernel_size=0)


@pytest.mark.parametrize("alpha", [None, "0.5", True])
def test_alpha_must_be_a_number(alpha):
    """A string or None was a TypeError about '<=' wrapped in 'rejected its options'; True was read as 1.0."""
    with pytest.raises(ValueError, match="alpha, the trend's update rate, must be a number in"):
        msrnn_zoo.create("motionrnn", hidden_channels=4, num_layers=2, alpha=alpha)


@pytest.mark.parametrize("value", ["False", "no", None, 0])
def test_original_layout_takes_only_a_bool(value):
    """``--option original_layout=False`` reaches the cell as the string 'False', which is truthy: it kept the
    original layout in silence."""
    with pytest.raises(ValueError, match="original_layout takes True or False"):
        msrnn_zoo.create("motionrnn", hidden_channels=4, num_layers=2, original_layout=value)


MIMS = ("conv_dn", "conv_dn_o", "conv_dc", "conv_s_o")  # MIM-N's and MIM-S's convolutions (joint where summed)
MIMS_ORIGINAL = ("_conv_x2h_n", "_conv_n2h_n", "_conv_diff2o", "_conv_n2o", "_conv_x2h_s", "_conv_c2h_s", "_conv_s2o")
MOTION_ORIGINAL = ("_conv_enc", "_conv_u", "_conv_r", "_conv_z", "_conv_hm", "_conv_dec", "_deconv_dec", "_conv_g")


def unused_in(key: str, top: int) -> bool:
    """Whether our key belongs to a module no layer of ours should have (bottom MIM-N/S, top MotionGRU)."""
    parts = key.split(".")
    layer = int(parts[1])
    return (layer == 0 and parts[2] == "block" and parts[3] in MIMS) or (layer == top and parts[2] == "motion_gru")


def test_layer_roles_and_state_layout():
    """Bottom: no MIM-N/S; top: no MotionGRU (no highway to use it). Neither module exists where unused."""
    model = testing.small("motionrnn", num_layers=3)
    bottom, middle, top = model.cells
    for name in MIMS:
        assert not hasattr(bottom.block, name) and hasattr(middle.block, name) and hasattr(top.block, name), name
    assert hasattr(bottom, "motion_gru") and hasattr(middle, "motion_gru") and not hasattr(top, "motion_gru")
    state = model.init_state(2, 8, 8)
    assert [len(s) for s in state.layers] == [4, 6, 4]  # (H, C, F, D), (H, C, N, S, F, D), (H, C, N, S)
    assert state.layers[0][2].shape == (2, 18, 4, 4)  # k^2 = 9 offsets (dx, dy) at half resolution


def test_single_layer_has_neither():
    cell = MotionRNNCell(3, 8, layer_index=0, num_layers=1)
    assert not hasattr(cell, "motion_gru") and not hasattr(cell.block, "conv_dn")
    assert len(cell.init_state(1, 6, 6)) == 2


@pytest.mark.parametrize("name", ["motionrnn", "ms-motionrnn"])
def test_state_dict_holds_parameters_only(name):
    """No dormant buffers: everything saved is trained, and nothing of the unused modules is saved."""
    model = testing.small(name)
    top = len(model.cells) - 1
    assert list(model.named_buffers()) == []
    assert set(model.state_dict()) == {n for n, _ in model.named_parameters()}
    assert not [k for k in model.state_dict() if k.startswith("cells.") and unused_in(k, top)]
    assert "cells.1.block.conv_dn.weight" in model.state_dict()
    assert f"cells.{top - 1}.motion_gru.encoder.weight" in model.state_dict()


@pytest.mark.parametrize("name", ["motionrnn", "ms-motionrnn"])
def test_unused_original_weights_are_dropped_on_conversion(name):
    """The original keeps MIM-N/S in the bottom layer and a MotionGRU in the top one but never runs them:
    conversion drops exactly those, strictly, and loads the other layers' copies."""
    tensors, _ = testing.load_fixture(DATA / f"{name}.safetensors")
    weights = {k[len("weights."):]: v for k, v in tensors.items() if k.startswith("weights.")}
    top = max(int(k.split(".")[2]) for k in weights if k.startswith("rnns.lstm."))
    unused = {k for k in weights if k.startswith("rnns.lstm.")
              and ((k.split(".")[2] == "0" and k.split(".")[3] in MIMS_ORIGINAL)
                   or (k.split(".")[2] == str(top) and k.split(".")[3] in MOTION_ORIGINAL))}
    assert len(unused) == 2 * (len(MIMS_ORIGINAL) + len(MOTION_ORIGINAL))  # a weight and a bias each
    model = from_original(weights, name)  # strict: raises on anything left over or missing
    assert len(model.cells) == top + 1
    origins = [original.split(" + ") for original, _ in translate(weights, model).values()]
    assert {key for keys in origins for key in keys} == set(weights) - unused
    ours = set(model.state_dict())
    assert not [k for k in ours if k.startswith("cells.") and unused_in(k, top)]
    assert sum(len(keys) for keys in origins) == len(weights) - len(unused)
    # the joint convolution over [difference, N] holds the original's two weights side by side
    joint = torch.cat([weights["rnns.lstm.1._conv_x2h_n.weight"], weights["rnns.lstm.1._conv_n2h_n.weight"]], 1)
    torch.testing.assert_close(model.cells[1].block.conv_dn.weight, joint, rtol=0, atol=0)
    torch.testing.assert_close(model.cells[top - 1].motion_gru.encoder.weight,
                               weights[f"rnns.lstm.{top - 1}._conv_enc.weight"], rtol=0, atol=0)


def test_warp_sampling_convention():
    """Offsets are in pixels, normalised by (size - 1) but sampled with align_corners=False, as the original."""
    ramp = torch.arange(4.0).expand(1, 1, 4, 4)  # value = column index
    for dx in (0.0, 0.5, 1.0):
        flow = torch.tensor([dx, 0.0]).view(1, 2, 1, 1).expand(1, 2, 4, 4)
        expected = (1 + dx) * 4 / 3 - 0.5  # the column actually read for column 1
        assert warp(ramp, flow)[0, 0, 1, 1].item() == pytest.approx(expected)


def test_original_layout_mixes_the_batch():
    """The original reads offsets across samples; original_layout=False keeps each sample to itself."""
    torch.manual_seed(0)
    for original, independent in ((True, False), (False, True)):
        gru = MotionGRU(8, original_layout=original)
        h, f, d = torch.rand(2, 8, 6, 6), torch.randn(2, 18, 3, 3), torch.randn(2, 18, 3, 3)
        with torch.no_grad():
            together = gru(h, f, d)[0][:1]
            alone = gru(h[:1], f[:1], d[:1])[0]
        assert torch.allclose(together, alone, atol=1e-6) is independent
    f = torch.randn(1, 18, 3, 3)
    assert torch.equal(MotionGRU(8).offsets(f), MotionGRU(8, original_layout=False).offsets(f))


def test_highway_needs_matching_channels():
    MotionRNNCell(3, 8, layer_index=0, num_layers=1)  # a lone layer: no differencing, no highway
    with pytest.raises(ValueError, match="in_channels must equal hidden_channels"):
        MotionRNNCell(3, 8, layer_index=0, num_layers=2)


def test_round_trip(tmp_path):
    """Saving and loading gives back exactly the tensors that were saved, no more and no fewer."""
    torch.manual_seed(0)
    model = testing.small("ms-motionrnn")
    loaded = type(model).from_pretrained(model.save_pretrained(tmp_path))
    assert set(loaded.state_dict()) == set(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_a_training_step_keeps_no_concatenated_copy_of_gate_inputs():
    """The convolutions over MotionGRU's ``[E, F]``, ``[E, r . F]``, ``[H', H]`` and the MIM block's ``[C_t, M']``
    keep the parts, not a copy of them for every layer and step."""
    assert testing.concatenations_kept("motionrnn") == 0


def test_compiles_whole():
    """With compiled cells (set_compile_cells) the cell is one fused graph, with the eager numbers."""
    testing.check_compiled_cells("motionrnn")
