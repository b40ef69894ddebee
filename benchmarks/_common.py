"""What the benchmark scripts share: their common options and output header; how a step is timed and how rounds
take turns live in :mod:`msrnn_zoo.bench`, which ``msrnn-zoo bench`` uses too.

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

import torch

from msrnn_zoo.bench import (  # noqa: F401 (the scripts' names for them)
    CLOCKS,
    OPTIONS,
    Timer,
    configured,
    cuda_peak_mib,
    median,
    median_ratio,
    model_steps,
    parse_configs,
    rounds,
)
from msrnn_zoo.validation import parse_device


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


def setup(args: argparse.Namespace) -> tuple[torch.device, Timer]:
    """Apply the common options (threads; cuDNN's autotuner on a GPU); the device and a timer for it."""
    torch.set_num_threads(args.threads)
    if args.matmul_precision is not None:
        torch.set_float32_matmul_precision(args.matmul_precision)
    try:  # --device cuda without a GPU was PyTorch's traceback, ending in "Found no NVIDIA driver"
        device = parse_device(args.device)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
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


def checked_configs(text: str) -> list[str]:
    """The comma-separated configurations of ``text``, or exit naming an unknown option before anything runs."""
    try:
        return parse_configs(text)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
