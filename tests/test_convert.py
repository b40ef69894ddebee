from pathlib import Path

import pytest
import torch

from msrnn_zoo.convert import from_original
from msrnn_zoo.testing import load_fixture, parity_error

FIXTURE = Path(__file__).parent / "data" / "ms-convlstm.safetensors"


def original_weights():
    tensors, _ = load_fixture(FIXTURE)
    return {k[len("weights."):]: v for k, v in tensors.items() if k.startswith("weights.")}


def test_parity_through_the_kit():
    assert parity_error(FIXTURE) < 1e-4


def test_ddp_prefix_and_pth_file(tmp_path):
    weights = {"module." + k: v for k, v in original_weights().items()}
    path = tmp_path / "checkpoint.pth"
    torch.save(weights, path)
    model = from_original(path, "ms-convlstm")
    assert model.config.hidden_channels == 8 and model.config.num_layers == 6
    torch.testing.assert_close(model.embed.weight, weights["module.embed.conv_embed.weight"])


def test_missing_and_leftover_keys_are_named():
    weights = original_weights()
    weights.pop("rnns.lstm.2._conv_h2h.bias")
    with pytest.raises(ValueError, match=r"rnns\.lstm\.2\._conv_x2h\.bias \(ours: cells\.2\.conv_x\.bias\) load into "
                                         r"the joint convolution cells\.2\.conv_xh\.bias, which also needs "
                                         r"cells\.2\.conv_h\.bias"):
        from_original(weights, "ms-convlstm")
    weights = original_weights()
    weights["rnns.lstm.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"left over from the checkpoint: rnns\.lstm\.0\.extra\.weight"):
        from_original(weights, "ms-convlstm")


def test_wrong_model_or_file():
    with pytest.raises(ValueError, match="conv_embed"):
        from_original({"a": torch.zeros(1)}, "convlstm")
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        from_original("/nonexistent.pth", "convlstm")
    with pytest.raises(ValueError, match="hidden_channels=8, but hidden_channels=16"):
        from_original(original_weights(), "ms-convlstm", hidden_channels=16)
