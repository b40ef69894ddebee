"""Lagrangian persistence with pysteps: the operational nowcast a radar model has to beat.

The motion field is estimated from the context by pysteps' dense Lucas-Kanade optical flow, then the last
context frame is carried along it by semi-Lagrangian extrapolation, one 30-minute step per forecast frame
(Germann and Zawadzki 2002; pysteps ``motion.get_method("LK")`` and ``nowcasts.get_method("extrapolation")``).

It works on the [0, 1] pixels the models see (linear in dBZ, as pysteps' own examples move rain in dB), so it
is scored exactly like the model. Rain advected in from outside the frame is unknown and counted as no echo.
With a single context frame there is no motion to estimate, so it falls back to holding that frame
(``evaluate --frames all`` asks for the second frame from the first alone).

Optional: ``pip install 'msrnn-germany[pysteps]'`` (pysteps builds from source; Lucas-Kanade needs OpenCV).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import warnings
from typing import Any

import numpy as np
import torch

NAME = "lagrangian-persistence"
INSTALL = "pip install 'msrnn-germany[pysteps]'"


def available() -> bool:
    """Whether pysteps and OpenCV are installed; checked without importing them (pysteps is slow to import)."""
    return all(importlib.util.find_spec(name) is not None for name in ("pysteps", "cv2"))


@functools.cache
def _methods() -> tuple[Any, Any]:
    if not available():
        raise ImportError(f"The Lagrangian-persistence baseline needs pysteps and OpenCV: {INSTALL}.")
    with contextlib.redirect_stdout(io.StringIO()):  # pysteps prints where it found its config file
        from pysteps import motion, nowcasts
    return motion.get_method("LK"), nowcasts.get_method("extrapolation")


def nowcast(frames: np.ndarray, horizon: int) -> np.ndarray:
    """Forecast ``(horizon, H, W)`` in [0, 1] of one sequence of context frames ``(T, H, W)`` in [0, 1]."""
    if frames.ndim != 3 or len(frames) < 1:
        raise ValueError(f"context frames must be (T, H, W) with T >= 1, got {frames.shape}")
    last = np.asarray(frames[-1], dtype=np.float64)
    if len(frames) < 2:
        return np.repeat(last[None], horizon, axis=0)
    lucas_kanade, extrapolate = _methods()
    with warnings.catch_warnings():  # e.g. "Singular matrix during outlier detection" on a few features
        warnings.simplefilter("ignore", UserWarning)
        motion = lucas_kanade(np.asarray(frames, dtype=np.float64), verbose=False)
        forecast = extrapolate(last, motion, horizon)
    return np.clip(np.nan_to_num(np.asarray(forecast, dtype=np.float64), nan=0.0), 0.0, 1.0)


@torch.no_grad()
def lagrangian_persistence(context: torch.Tensor, horizon: int) -> torch.Tensor:
    """The zoo baseline: ``context (B, T, C, H, W)`` in [0, 1] -> forecast ``(B, horizon, C, H, W)``."""
    if context.ndim != 5 or context.shape[1] < 1 or horizon < 1:
        raise ValueError(f"context must be (B, T, C, H, W) with T >= 1 and horizon >= 1, got "
                         f"{tuple(context.shape)} and {horizon}")
    frames = context.detach().to("cpu", torch.float64).numpy()
    out = np.empty((frames.shape[0], horizon, *frames.shape[2:]), dtype=np.float64)
    for b in range(frames.shape[0]):
        for c in range(frames.shape[2]):
            out[b, :, c] = nowcast(frames[b, :, c], horizon)
    return torch.from_numpy(out).to(device=context.device, dtype=context.dtype)
