"""What the benchmark scripts share: their common options, how a step is timed, and how rounds take turns.

Benchmarks compare things measured in the same process, so that what they report are ratios that survive a
busy machine: every case gets one run per round, the rounds alternate the cases, and a ratio is the median
over rounds of the per-round ratio. On a GPU every timing is bracketed by ``torch.cuda.synchronize`` (kernels
run asynchronously). ``--clock process`` counts the CPU seconds of this process instead of wall seconds:
with ``--threads 1`` on a machine shared with other jobs, it leaves out the time spent waiting for a core.

The scripts run as ``python benchmarks/NAME.py``, which puts this folder first on ``sys.path``; they import
this module as ``_common``. Exact memory counts live in :mod:`msrnn_zoo.profile` (cards use them too).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TypeVar

import torch
import torch.nn.functional as F

import msrnn_zoo
from msrnn_zoo.network import FAST_PATHS
from msrnn_zoo.precision import autocast

K = TypeVar("K", bound=Hashable)

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "process": time.process_time}


def add_common_options(parser: argparse.ArgumentParser, *, batch: int = 4, repeat: int = 5,
                       repeat_help: str | None = None) -> None:
    """The options every benchmark takes: clip geometry, rounds, device, threads, clock and JSON output."""
    parser.add_argument("--size", type=int, default=32, help="frame height and width")
    parser.add_argument("--hidden", type=int, default=32, help="hidden channels of every layer")
    parser.add_argument("--in-frames", type=int, default=5)
    parser.add_argument("--out-frames", type=int, default=5)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--repeat", type=int, default=repeat, help=repeat_help or "timed rounds (medians over them)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 keeps timings steady on a shared machine)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="process: CPU seconds of this process (steadier on a shared machine, with --threads 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per row")
    parser.add_argument("--matmul-precision", choices=["highest", "high", "medium"], default=None,
                        help="torch.set_float32_matmul_precision for the whole process (high: TF32 matrix products "
                             "on a GPU, FlexAttention's included; default: PyTorch's, highest)")


class Timer:
    """Seconds of one call by the chosen clock, the device's queued work included."""

    def __init__(self, device: torch.device, clock: str = "wall") -> None:
        self.cuda = device.type == "cuda"
        self.clock = CLOCKS[clock]

    def __call__(self, fn: Callable[[], object]) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        start = self.clock()
        fn()
        if self.cuda:
            torch.cuda.synchronize()
        return self.clock() - start


def setup(args: argparse.Namespace) -> tuple[torch.device, Timer]:
    """Apply the common options (threads; cuDNN's autotuner on a GPU); the device and a timer for it."""
    torch.set_num_threads(args.threads)
    if args.matmul_precision is not None:
        torch.set_float32_matmul_precision(args.matmul_precision)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device, Timer(device, args.clock)


def header(args: argparse.Namespace, extra: str = "") -> str:
    """The first line of a benchmark's output: what was measured, where."""
    return (f"# {args.size}x{args.size}, hidden {args.hidden}, {args.in_frames}->{args.out_frames} frames, batch "
            f"{args.batch}, {args.device}, {torch.get_num_threads()} threads, {args.clock} clock, float32 matmul "
            f"{torch.get_float32_matmul_precision()}, torch {torch.__version__}{extra}")


def clip(args: argparse.Namespace, device: torch.device, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random frames ``(B, in + out, C, H, W)`` and a teacher-forcing mask of ones, as a training step sees."""
    t = args.in_frames + args.out_frames
    frames = torch.rand(args.batch, t, channels, args.size, args.size, device=device)
    return frames, torch.ones(args.batch, t - 1, device=device)


def model_steps(model: msrnn_zoo.Forecaster, frames: torch.Tensor, teacher: torch.Tensor, in_frames: int, *,
                precision: str = "fp32", optimizer: bool = True) -> tuple[Callable[[], None], Callable[[], None]]:
    """A training step and a forecast of one model on one clip.

    The training step is ``forward_train`` over the clip, MSE (plus the cell's auxiliary loss), backward and,
    with ``optimizer``, an Adam step (lr 3e-4, as the recipes) -- the step ``gpu_bench.py`` times. The
    forecast is ``model(context, horizon)`` without gradients over the same clip. ``precision`` runs both under
    autocast as ``train --precision`` does, the loss in fp32.
    """
    adam = torch.optim.Adam(model.parameters(), lr=3e-4) if optimizer else None
    device = frames.device

    def train() -> None:
        with autocast(precision, device):
            prediction, aux = model.forward_train(frames, teacher)
        loss = F.mse_loss(prediction.float(), frames[:, 1:]) + (aux.float() if aux is not None else 0)
        loss.backward()
        if adam is not None:
            adam.step()
        model.zero_grad(set_to_none=True)

    def forecast() -> None:
        with torch.no_grad(), autocast(precision, device):
            model(frames[:, :in_frames], horizon=frames.shape[1] - in_frames)

    return train, forecast


SETTINGS: dict[str, Callable[[msrnn_zoo.Forecaster], object]] = {
    "plain": lambda model: None, "none": lambda model: None,
    "channels-last": lambda model: model.set_channels_last(),
    "cpu-contiguous": lambda model: setattr(model, "cpu_channels_last", False),
    "embedding": lambda model: setattr(model, "absorb_embedding", False),
    "zero-states": lambda model: setattr(model, "skip_zero_states", False),
    "grad-checkpointing": lambda model: model.set_grad_checkpointing(True),
    "compile-cells": lambda model: model.set_compile_cells(True),
    **{path: (lambda model, path=path: model.set_fast_path(path)) for path in FAST_PATHS if path},
}
"""What each option of a configuration does to a model; ``bf16`` and ``fp16`` set the steps' precision instead."""
PRECISIONS = ("bf16", "fp16")
OPTIONS = (*SETTINGS, *PRECISIONS)


def configured(base: msrnn_zoo.Forecaster, option: str) -> tuple[msrnn_zoo.Forecaster, str]:
    """A copy of ``base`` set up for ``option``, and the precision its steps run in.

    One grammar for every script, so that a configuration named in one table means the same in the next: the
    names of :data:`OPTIONS` joined by ``+`` (``clip-graph+bf16``).
    """
    model = copy.deepcopy(base)
    precision = "fp32"
    for part in option.split("+"):
        if part in PRECISIONS:
            precision = part
        else:
            SETTINGS[part](model)
    return model, precision


def checked_configs(text: str) -> list[str]:
    """The comma-separated configurations of ``text``, or exit naming an unknown option before anything runs."""
    configs = text.split(",")
    for config in configs:
        unknown = [part for part in config.split("+") if part not in OPTIONS]
        if unknown:
            what = (f"unknown option {', '.join(map(repr, unknown))} in {config!r}" if config
                    else "an empty configuration")
            raise SystemExit(f"{what} (configurations {text!r}): options are {', '.join(OPTIONS)}, joined by '+'")
    return configs


def cuda_peak_mib(fn: Callable[[], object]) -> float:
    """Peak CUDA memory of one call above what was allocated before it, in MiB."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    resting = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - resting) / 2**20


def rounds(cases: Mapping[K, Callable[[], object]], repeat: int, timer: Timer,
           errors: dict[K, str] | None = None) -> dict[K, list[float]]:
    """``repeat`` rounds in which every case runs once, in turn: the seconds of each case, round by round.

    With ``errors``, a case that raises (out of memory beside the others, say) is recorded there and left out of
    the later rounds, and the others go on; without it, the exception propagates.
    """
    times: dict[K, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            if errors is not None and name in errors:
                continue
            try:
                times[name].append(timer(fn))
            except Exception as exc:
                if errors is None:
                    raise
                errors[name] = f"{type(exc).__name__}: {str(exc)[:300]}"
    return times


def median(values: Iterable[float]) -> float:
    """The median, NaN for no values (a case that was not timed)."""
    values = list(values)
    return statistics.median(values) if values else float("nan")


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of the per-round ratio: a change of the machine's load between rounds cancels out."""
    return median(a / b for a, b in zip(numerator, denominator))
