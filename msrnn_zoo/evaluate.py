"""Scoring a trained run on its test split, beside the copy-last-frame baseline, and forecasting with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from .io import read_json
from .metrics import MetricAccumulator, MetricReport, copy_last_frame
from .network import Forecaster
from .train import TRAIN_CONFIG, TrainConfig, open_split


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[Forecaster, TrainConfig]:
    """The trained model of a run directory and the configuration it was trained with."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"No run directory at {run_dir}; train one with `msrnn-zoo train ... --out {run_dir}`.")
    cfg = TrainConfig.from_dict(read_json(run_dir / TRAIN_CONFIG, "run (train_config.json)"))
    if not (run_dir / "model.safetensors").is_file():
        raise FileNotFoundError(f"{run_dir} has no trained weights yet (model.safetensors); let training finish "
                                f"an epoch, or resume it with `msrnn-zoo train --resume {run_dir}`.")
    model = Forecaster.from_pretrained(run_dir, map_location=device).to(device).eval()
    return model, cfg


@torch.no_grad()
def evaluate_run(run_dir: str | Path, *, split: str = "test", batch_size: int | None = None,
                 max_clips: int | None = None, device: str = "cpu") -> dict[str, MetricReport]:
    """Metrics of the run's model and of copy-last-frame on the same clips of ``split``."""
    model, cfg = load_run(run_dir, device)
    if max_clips is not None:
        cfg.max_eval_clips = max_clips
    dataset = open_split(cfg, split)
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError(f"The {split} split of this run's data is empty; nothing to evaluate.")
    loader = DataLoader(dataset, batch_size=batch_size or cfg.batch_size, shuffle=False)
    ours, baseline = MetricAccumulator(), MetricAccumulator()
    for clips in loader:
        clips = clips.to(device)
        context = clips[:, : cfg.in_frames]
        truth = clips[:, cfg.in_frames : cfg.in_frames + cfg.out_frames]
        forecast = model(context, horizon=cfg.out_frames).clamp(0, 1)
        ours.update(forecast, truth)
        baseline.update(copy_last_frame(context, cfg.out_frames), truth)
    return {"model": ours.result(), "copy-last-frame": baseline.result()}


def reports_to_dict(reports: dict[str, MetricReport], run_dir: str | Path, split: str) -> dict[str, Any]:
    return {"run": str(run_dir), "split": split, **{name: rep.to_dict() for name, rep in reports.items()}}


def read_input_clip(path: str | Path) -> torch.Tensor:
    """A context clip from ``.npy``: (T, C, H, W) or (T, H, W), uint8 or float in [0, 1]."""
    from .data import to_unit_float

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No input clip at {path}: pass a .npy array (T, C, H, W) or (T, H, W).")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable .npy array ({exc}).") from exc
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise ValueError(f"{path}: an input clip has shape (T, C, H, W) or (T, H, W), got {array.shape}.")
    return torch.from_numpy(np.ascontiguousarray(to_unit_float(array, str(path))))


@torch.no_grad()
def forecast_clip(model: Forecaster, context: torch.Tensor, horizon: int) -> torch.Tensor:
    """Forecast ``horizon`` frames after one clip (T, C, H, W); values clamped to [0, 1]."""
    device = model.embed.weight.device
    return model(context.unsqueeze(0).to(device), horizon=horizon)[0].clamp(0, 1).cpu()
