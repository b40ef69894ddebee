"""The MS-RNN paper's Germany recipe runs end to end on a small prepared store: reproduce, evaluate, card."""

from __future__ import annotations

import json

from click.testing import CliRunner
from germany_files import numbered_frames, write_pngs
from huggingface_hub import ModelCard

from msrnn_zoo.cli import main
from msrnn_zoo.datasets import prepare_dataset


def test_reproduce_the_germany_recipe_on_a_small_store(tmp_path):
    frames = numbered_frames(180)
    for n, frame in enumerate(frames):  # a bright square moving right, so there is rain to score
        frame[:] = 60
        frame[40:70, (n // 6 * 5) % 100:(n // 6 * 5) % 100 + 20] = 200
    write_pngs(tmp_path / "raw" / "train", frames[:120])
    write_pngs(tmp_path / "raw" / "test", frames[120:])
    prepare_dataset("germany", tmp_path / "raw", tmp_path / "store")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "reproduce", "ms-predrnn-v2", "germany", "--root", str(tmp_path / "store"), "--budget-steps", "1",
        "--set", "hidden_channels=4", "--set", "num_layers=2", "--set", "batch_size=2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    train = json.loads((out / "train_config.json").read_text())
    assert (train["protocol"], train["in_frames"], train["sampling"]) == ("paper", 5, "reverse")
    card = ModelCard((out / "README.md").read_text())
    assert "germany (paper)" in card.text and "cfg.epoch = 16 for DWD-12-480" in card.text
    assert "CSI" in card.text  # the dataset's own scores are in the card
    assert str(tmp_path) not in card.text
    assert {r.metric_type for r in card.data.eval_results} >= {"mse", "csi_0.5"}
