"""Forecasting one clip with a trained model: what ``msrnn-zoo predict`` runs, and the picture of a model card.

Scoring a run on a whole split is :mod:`msrnn_zoo.evaluate`; this module reads a user's context clip, forecasts
after it, and draws the input | truth | forecast strip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .network import Forecaster
from .precision import autocast


def read_input_clip(path: str | Path, channels: int | None = None) -> torch.Tensor:
    """A context clip from ``.npy``: (T, C, H, W) or (T, H, W), uint8 or float in [0, 1].

    ``channels`` is what the model takes: a file of several clips ((N, T, H, W) read as (T, C, H, W), or
    (N, T, C, H, W)) is then refused with a message that says how to pass one of them, and a clip stored channels
    last (T, H, W, C) with the transpose that makes it (T, C, H, W) (it was told to pass one of its clips).
    """
    from .data import MAX_CHANNELS_LAST, read_npy, to_unit_float

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No input clip at {path}: pass a .npy array (T, C, H, W) or (T, H, W).")
    array = read_npy(path)
    one_clip = "if it holds several clips, save one of them (np.save('clip.npy', clips[0])) and pass that"
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise ValueError(f"{path}: an input clip has shape (T, C, H, W) or (T, H, W), got {array.shape}; "
                         f"{one_clip}.")
    if 0 in array.shape:
        raise ValueError(f"{path} holds no frames (shape {array.shape}): an input clip needs at least one context "
                         "frame of at least 1x1 pixels.")
    if channels is not None and array.shape[1] != channels and array.shape[-1] <= MAX_CHANNELS_LAST < array.shape[1]:
        h, w, c = array.shape[1:]  # a frame a few pixels wide, of many channels: an image's own axis order
        raise ValueError(f"{path}: shape {array.shape} reads as {h} channels of {w}x{c}-pixel frames; it looks like "
                         "(T, H, W, C), channels last, as images are usually stored. Save it as (T, C, H, W): "
                         "numpy.save(path, array.transpose(0, 3, 1, 2)).")
    if channels is not None and array.shape[1] != channels:
        raise ValueError(f"{path}: read as one clip (T, C, H, W) = {array.shape}, with {array.shape[1]} channels, "
                         f"but the model takes {channels}; {one_clip}.")
    return torch.from_numpy(np.ascontiguousarray(to_unit_float(array, str(path))))


@torch.no_grad()
def forecast_clip(model: Forecaster, context: torch.Tensor, horizon: int, precision: str = "fp32") -> torch.Tensor:
    """Forecast ``horizon`` frames after one clip (T, C, H, W) on the model's device; values clamped to [0, 1]."""
    device = model.embed.weight.device
    with autocast(precision, device):
        forecast = model(context.unsqueeze(0).to(device), horizon=horizon)
    return forecast[0].float().clamp(0, 1).cpu()


def save_forecast_png(run_dir: str | Path, path: str | Path, index: int = 0, weights: str = "last") -> Path:
    """The input | truth | forecast strip of test clip ``index``, for the card (of the run's ``weights``)."""
    from .evaluate import load_run
    from .train import open_split
    from .visualize import save_png

    model, cfg = load_run(run_dir, "cpu", weights)
    clip = open_split(cfg, "test")[index]
    context, truth = clip[: cfg.in_frames], clip[cfg.in_frames: cfg.in_frames + cfg.out_frames]
    forecast = forecast_clip(model, context, cfg.out_frames)
    return save_png(path, context, truth, forecast, overwrite=True, scale=2)
