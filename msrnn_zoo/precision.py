"""Numeric precision of training and forecasting: fp32, or bf16 / fp16 autocast.

Under ``bf16`` or ``fp16`` the convolutions run in half precision (``torch.autocast``) while the weights,
the optimizer and the loss stay in fp32; ``fp16``'s narrow range also needs the loss scaled during the
backward (``torch.amp.GradScaler``), which the trainer does. ``fp32`` is exact and the default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""Precision names -> the autocast dtype (``None``: no autocast)."""


def check_precision(precision: str) -> str:
    """The precision name, or a ``ValueError`` that lists the known ones."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    return precision


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """Run the block in ``precision`` on ``device``: ``with autocast("bf16", "cuda"): model(frames)``."""
    dtype = PRECISIONS[check_precision(precision)]
    if dtype is None:
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=dtype):
        yield


def grad_scaler(precision: str, device: torch.device | str) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16 (whose small gradients would underflow), ``None`` for the other precisions."""
    if check_precision(precision) != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)
