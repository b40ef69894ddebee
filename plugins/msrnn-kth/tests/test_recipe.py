"""The MS-RNN paper's KTH recipe runs end to end on a small prepared store: reproduce, evaluate, card."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from huggingface_hub import ModelCard

import msrnn_zoo
from msrnn_zoo.cli import main


def test_reproduce_the_kth_recipe_on_a_small_store(kth_store, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "reproduce", "ms-motionrnn", "kth", "--root", str(kth_store), "--budget-steps", "1",
        "--set", "hidden_channels=4", "--set", "num_layers=2", "--max-eval-clips", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    train = json.loads((out / "train_config.json").read_text())
    assert (train["protocol"], train["in_frames"], train["out_frames"]) == ("paper", 10, 10)
    card = ModelCard((out / "README.md").read_text())
    assert "kth (paper)" in card.text and "cfg.kth_only_run = True" in card.text
    assert "88x88" in card.text and str(tmp_path) not in card.text and str(kth_store) not in card.text


def test_the_kth_checkpoint_answers_with_its_commands():
    with pytest.raises(ValueError) as info:
        msrnn_zoo.create("ms-motionrnn", pretrained="kth")
    assert "msrnn-zoo data prepare kth --source RAW_KTH_AVIS --root DATA/kth" in str(info.value)
    assert "msrnn-zoo reproduce ms-motionrnn kth --root DATA/kth --out runs/ms-motionrnn-kth" in str(info.value)
