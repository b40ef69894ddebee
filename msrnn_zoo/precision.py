"""Numeric precision of training and forecasting: fp32, tf32, or bf16 / fp16 autocast.

Under ``bf16`` or ``fp16`` the convolutions run in half precision (``torch.autocast``) while the weights,
the optimizer and the loss stay in fp32; ``fp16``'s narrow range also needs the loss scaled during the
backward (``torch.amp.GradScaler``), which the trainer does. ``fp32`` is PyTorch's default and the zoo's.

``tf32`` keeps every tensor in fp32 and lets the GPU's tensor cores compute the matrix products in TF32 (a
10-bit mantissa), as PyTorch already lets cuDNN do for convolutions by default
(``torch.backends.cudnn.allow_tf32``). It pays where a step is matrix products: with them in TF32, PrecipLSTM's
recorded step took 0.313 s on an H200, where in fp32 it had taken 0.699 s in an earlier session (its attention;
docs/speed.md). Without a GPU that computes TF32 the products stay in fp32, and so do the numbers. It is a
setting of the whole process (``torch.set_float32_matmul_precision``), so the zoo sets it only for the steps it
runs and gives the caller's back afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16,
                                             "tf32": None}
"""Precision names -> the autocast dtype (``None``: no autocast)."""

MATMUL_PRECISION: dict[str, str] = {"tf32": "high"}
"""Precision names -> the ``torch.set_float32_matmul_precision`` they run under; the others leave it as it is."""


def check_precision(precision: str) -> str:
    """The precision name, or a ``ValueError`` that lists the known ones."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    return precision


def precision_note(precision: str, device: torch.device | str) -> str | None:
    """What to tell a user whose ``precision`` cannot do here what it says (tf32 without TF32 hardware), else None."""
    if check_precision(precision) != "tf32":
        return None
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8:
        return None
    return (f"precision tf32 computes fp32 on {device}: TF32 is a format of NVIDIA GPUs from Ampere (compute "
            "capability 8.0) on, so the numbers and the speed are fp32's here.")


@contextlib.contextmanager
def float32_products(precision: str) -> Iterator[None]:
    """Run the block with the float32 matrix products ``precision`` asks for (TF32 for ``tf32``), then restore the
    process's setting. The training step holds it over its backward too, which runs outside autocast."""
    wanted = MATMUL_PRECISION.get(check_precision(precision))
    if wanted is None:
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(wanted)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """Run the block in ``precision`` on ``device``: ``with autocast("bf16", "cuda"): model(frames)``."""
    dtype = PRECISIONS[check_precision(precision)]
    with float32_products(precision):
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


def autocast_off(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Autocast switched off on ``device``, for a computation that must keep its inputs' precision.

    A device without autocast (``meta``, on which FLOPs are counted without computing) needs nothing switched off.
    Compiled code never runs there, and Dynamo in PyTorch 2.11 could not trace the query (it broke the graph
    of every compiled cell there; 2.14 can), so the query is asked only outside a trace.
    """
    if not torch.compiler.is_compiling() and not torch.amp.is_autocast_available(device.type):
        return contextlib.nullcontext()
    return torch.autocast(device.type, enabled=False)
