"""Input schedules for training: when the network sees the truth and when its own forecast.

A schedule turns training progress (0 at the first step, 1 at the last) into a teacher mask (B, T-1)
for :meth:`~msrnn_zoo.network.Forecaster.forward_train`. A cell names the schedule it was published
with (``RecurrentCell.sampling``); ``train`` looks the name up here, so no model name is ever tested.
How far training is, :func:`progress` says: after every step for most schedules, once an epoch for those in
:data:`PER_EPOCH`, as the original code moves each.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

TeacherSchedule = Callable[[int, int, int, float, torch.Generator], torch.Tensor]


def _bernoulli(batch: int, steps: int, p: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(batch, steps, generator=generator) < p).float()


def scheduled(batch: int, frames: int, in_frames: int, progress: float, generator: torch.Generator) -> torch.Tensor:
    """Scheduled sampling (Bengio et al. 2015) as MS-RNN trains every model but PredRNN-V2.

    Context frames are always the truth; each future step sees the truth with probability
    ``eta = 1 - progress``, decaying linearly from 1 to 0 over training.
    """
    eta = max(0.0, 1.0 - progress)
    mask = torch.ones(batch, frames - 1)
    mask[:, in_frames:] = _bernoulli(batch, frames - 1 - in_frames, eta, generator)
    return mask


def reverse(batch: int, frames: int, in_frames: int, progress: float, generator: torch.Generator) -> torch.Tensor:
    """Reverse scheduled sampling (PredRNN-V2, Wang et al. 2022).

    In the first third of training, context steps see the truth with probability 0.5, rising
    exponentially to 1 by two thirds; future steps start at 0.5 and fall linearly to 0 over the same span.
    Early on the encoder must therefore learn from its own forecasts too. The curves move once an epoch
    (``PER_EPOCH``): MS-RNN's model.py computes them from the epoch number, counted from 1.
    """
    start, end = 1.0 / 3.0, 2.0 / 3.0
    if progress < start:
        eta_context, eta_future = 0.5, 0.5
    elif progress < end:
        eta_context = 1.0 - 0.5 * math.exp(-(progress - start) / (start / 5.0))
        eta_future = 0.5 - 0.5 * (progress - start) / (end - start)
    else:
        eta_context, eta_future = 1.0, 0.0
    mask = torch.ones(batch, frames - 1)
    mask[:, 1:in_frames] = _bernoulli(batch, in_frames - 1, eta_context, generator)
    mask[:, in_frames:] = _bernoulli(batch, frames - 1 - in_frames, eta_future, generator)
    return mask


def teacher_forcing(batch: int, frames: int, in_frames: int, progress: float,
                    generator: torch.Generator) -> torch.Tensor:
    """The evaluation-time mask: truth for the context, own forecasts for the future."""
    mask = torch.zeros(batch, frames - 1)
    mask[:, :in_frames] = 1.0
    return mask


SCHEDULES: dict[str, TeacherSchedule] = {
    "scheduled": scheduled,
    "reverse": reverse,
    "none": teacher_forcing,
}


PER_EPOCH: frozenset[str] = frozenset({"reverse"})
"""Schedules that move once an epoch rather than after every step."""


def progress(name: str, step: int, epoch: int, steps_per_epoch: int, sampling_steps: int) -> float:
    """How far training is for the schedule ``name`` at optimizer step ``step`` (from 0) of epoch ``epoch`` (from 0).

    Scheduled sampling moves after every step: MS-RNN's train_and_test.py lowers eta by 1 / (epochs x batches)
    after each one, so step ``s`` sees ``eta = 1 - s / sampling_steps``. The reverse schedule moves once an
    epoch: its model.py evaluates the curves at the epoch number counted from 1 (``range(1, epochs + 1)``), so
    all of epoch ``e`` stands where a smooth curve would stand at the epoch's end, ``(e + 1) / epochs`` (one
    moving every step would lag the original by up to an epoch).
    """
    if name in PER_EPOCH:
        return (epoch + 1) * steps_per_epoch / sampling_steps
    return step / sampling_steps


def get_schedule(name: str) -> TeacherSchedule:
    if name not in SCHEDULES:
        raise ValueError(f"Unknown sampling schedule {name!r}; known: {', '.join(sorted(SCHEDULES))}.")
    return SCHEDULES[name]
