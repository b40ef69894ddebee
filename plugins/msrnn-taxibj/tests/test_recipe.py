"""The MS-RNN paper's TaxiBJ recipe runs end to end on a small prepared store: reproduce, evaluate, card."""

from __future__ import annotations

import json

from click.testing import CliRunner
from huggingface_hub import ModelCard

from msrnn_zoo.cli import main
from msrnn_zoo.datasets import prepare_dataset


def test_reproduce_the_taxibj_recipe_on_a_small_store(raw_taxibj, tmp_path):
    prepare_dataset("taxibj", raw_taxibj, tmp_path / "store")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "reproduce", "ms-convlstm", "taxibj", "--root", str(tmp_path / "store"), "--budget-steps", "2",
        "--set", "hidden_channels=4", "--set", "num_layers=2", "--max-eval-clips", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    train = json.loads((out / "train_config.json").read_text())
    assert (train["protocol"], train["in_frames"], train["out_frames"], train["epochs"]) == ("paper", 4, 4, 1)
    metrics = json.loads((out / "metrics-test.json").read_text())
    assert metrics["frames"] == "all" and len(metrics["model"]["metrics"]["mse"]["per_frame"]) == 7
    card = ModelCard((out / "README.md").read_text())
    assert "taxibj (paper)" in card.text and "config.py: cfg.in_len = 4 for taxiBJ" in card.text
    assert str(tmp_path) not in card.text and "DATA/taxibj" in card.text
    assert {r.metric_type for r in card.data.eval_results} >= {"mse", "mae", "ssim", "psnr"}
