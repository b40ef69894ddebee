"""Ours beside the original MS-RNN code, in one process: a training step and forecasting frames per second.

    ORIG=/path/to/msrnn-original python benchmarks/vs_original.py [--tools ../shared/tools] [--size 32]
        [--hidden 32] [--in-frames 5] [--out-frames 5] [--batch 4] [--repeat 7] [--threads 1] [--device cpu]
        [--clock wall|process] [--channels-last] [--fast-path PATH] [--compile-cells] [--precision P] [--json]
        [models ...]

The original is loaded by ``orig_env.py`` of the shared tools (``--tools``; see their README for exporting
the original's Python files into ``ORIG``). Per model and implementation: the training step of
``gpu_bench.py`` (forward over the whole clip, MSE, backward, Adam; ours with its defaults: fp32, eager),
and a forecast without gradients -- ours ``model(context, horizon)``, the original's test mode, both
``in + out - 1`` recurrent steps -- given as forecast frames per second (batch x out frames / seconds).
``--channels-last`` runs ours in that layout, ``--fast-path`` on a fast path (``set_fast_path``), ``--compile-cells``
with compiled cells (``set_compile_cells``) and ``--precision`` under autocast (options, not the defaults);
``warmup_s`` is our first training step, compilation or recording included.
The four measurements take turns in every round, so that a change in the machine's load hits them all;
``speedup`` is the median over rounds of original seconds / our seconds, above 1 when ours is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import _common
import torch
import torch.nn.functional as F

import msrnn_zoo
from msrnn_zoo.network import FAST_PATHS


def ours(name: str, args: argparse.Namespace, device: torch.device) -> tuple[Callable[[], None], Callable[[], None]]:
    torch.manual_seed(0)
    model = msrnn_zoo.create(name, hidden_channels=args.hidden).to(device).train()
    model.set_channels_last(args.channels_last)
    model.set_fast_path(None if args.fast_path == "none" else args.fast_path).set_compile_cells(args.compile_cells)
    frames, teacher = _common.clip(args, device)
    return _common.model_steps(model, frames, teacher, args.in_frames, precision=args.precision)


def original(name: str, args: argparse.Namespace,
             device: torch.device) -> tuple[Callable[[], None], Callable[[], None]]:
    sys.path.insert(0, str(Path(args.tools).resolve()))
    import orig_env  # the shared tools' loader of the original code

    model = orig_env.build(name, args.size, args.hidden, args.in_frames, args.out_frames, args.batch)
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    x = torch.rand(args.in_frames + args.out_frames, args.batch, 1, args.size, args.size, device=device)

    def train() -> None:
        prediction, _ = model([x, 1.0, 1], mode="train")
        F.mse_loss(prediction, x[1:]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def forecast() -> None:
        with torch.no_grad():
            model([x, 0.0, 1], mode="test")

    return train, forecast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*")
    parser.add_argument("--tools", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "tools"))
    _common.add_common_options(parser, batch=4, repeat=7)
    parser.add_argument("--channels-last", action="store_true", help="ours with set_channels_last (not the default)")
    parser.add_argument("--fast-path", default="none", choices=["none", *filter(None, FAST_PATHS)],
                        help="ours on this fast path (set_fast_path)")
    parser.add_argument("--compile-cells", action="store_true", help="ours with set_compile_cells (not the default)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="ours under autocast")
    args = parser.parse_args()
    if "ORIG" not in os.environ:
        raise SystemExit("Set ORIG to an export of the original's Python files (see the shared tools' README).")
    device, timer = _common.setup(args)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(_common.header(args, f", load average {load:.1f} at start"), flush=True)
    for name in args.models or ["ms-convlstm", "ms-predrnn"]:
        try:
            row = measure(name, args, device, timer)
        except Exception as exc:  # one model that cannot run on this path must not lose the others' rows
            row = {"model": name, "fast_path": args.fast_path, "precision": args.precision,
                   "compile_cells": args.compile_cells, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if args.json:
            print(json.dumps(row), flush=True)
        elif "error" in row:
            print(f"{name:14s} error: {row['error']}", flush=True)
        else:
            print(f"{name:14s} warm-up {row['warmup_s']:.1f}s train ours {row['ours_train_s']:.3f}s "
                  f"original {row['original_train_s']:.3f}s "
                  f"speed-up {row['train_speedup']:.2f} | forecast ours {row['ours_forecast_fps']:.1f} frames/s "
                  f"original {row['original_forecast_fps']:.1f} frames/s speed-up {row['forecast_speedup']:.2f}",
                  flush=True)


def measure(name: str, args: argparse.Namespace, device: torch.device, timer: Callable) -> dict:
    """One model's row: warm-ups, then training steps and forecasts of both taking turns."""
    impls = {"ours": ours(name, args, device), "original": original(name, args, device)}
    warmup = {}
    for impl, (train, forecast) in impls.items():
        warmup[impl] = timer(train)
        forecast()
    cases = {f"{impl}_{what}": fn
             for impl, steps in impls.items() for what, fn in zip(("train", "forecast"), steps)}
    times = _common.rounds(cases, args.repeat, timer)
    frames = args.batch * args.out_frames
    row = {"model": name, "fast_path": args.fast_path, "precision": args.precision,
           "channels_last": args.channels_last, "compile_cells": args.compile_cells,
           "warmup_s": warmup["ours"], "original_warmup_s": warmup["original"],
           **{f"{k}_s": _common.median(v) for k, v in times.items()},
           "train_speedup": _common.median_ratio(times["original_train"], times["ours_train"]),
           "forecast_speedup": _common.median_ratio(times["original_forecast"], times["ours_forecast"]),
           "ours_forecast_fps": frames / _common.median(times["ours_forecast"]),
           "original_forecast_fps": frames / _common.median(times["original_forecast"])}
    return row


if __name__ == "__main__":
    main()
