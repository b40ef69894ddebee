"""Ours beside the original MS-RNN code, in one process: a training step and forecasting frames per second.

    ORIG=/path/to/msrnn-original python benchmarks/vs_original.py [--tools ../shared/tools] [--size 32]
        [--hidden 32] [--in-frames 5] [--out-frames 5] [--batch 4] [--repeat 7] [--threads 1] [--device cpu]
        [--json] [models ...]

The original is loaded by ``orig_env.py`` of the shared tools (``--tools``; see their README for exporting
the original's Python files into ``ORIG``). Per model and implementation: the training step of
``gpu_bench.py`` (forward over the whole clip, MSE, backward, Adam; ours with its defaults: fp32, eager),
and a forecast without gradients -- ours ``model(context, horizon)``, the original's test mode, both
``in + out - 1`` recurrent steps -- given as forecast frames per second (batch x out frames / seconds).
The four measurements take turns in every round, so that a change in the machine's load hits them all;
``speedup`` is the median over rounds of original seconds / our seconds, above 1 when ours is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import msrnn_zoo


def ours(name: str, args: argparse.Namespace) -> tuple[Callable[[], None], Callable[[], None]]:
    torch.manual_seed(0)
    model = msrnn_zoo.create(name, hidden_channels=args.hidden).to(args.device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    t = args.in_frames + args.out_frames
    frames = torch.rand(args.batch, t, 1, args.size, args.size, device=args.device)
    teacher = torch.ones(args.batch, t - 1, device=args.device)

    def train() -> None:
        prediction, aux = model.forward_train(frames, teacher)
        loss = F.mse_loss(prediction, frames[:, 1:]) + (aux if aux is not None else 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def forecast() -> None:
        with torch.no_grad():
            model(frames[:, : args.in_frames], horizon=args.out_frames)

    return train, forecast


def original(name: str, args: argparse.Namespace) -> tuple[Callable[[], None], Callable[[], None]]:
    sys.path.insert(0, str(Path(args.tools).resolve()))
    import orig_env  # the shared tools' loader of the original code

    model = orig_env.build(name, args.size, args.hidden, args.in_frames, args.out_frames, args.batch)
    model = model.to(args.device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    x = torch.rand(args.in_frames + args.out_frames, args.batch, 1, args.size, args.size, device=args.device)

    def train() -> None:
        prediction, _ = model([x, 1.0, 1], mode="train")
        F.mse_loss(prediction, x[1:]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def forecast() -> None:
        with torch.no_grad():
            model([x, 0.0, 1], mode="test")

    return train, forecast


def timed(fn: Callable[[], None], cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*")
    parser.add_argument("--tools", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "tools"))
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--in-frames", type=int, default=5)
    parser.add_argument("--out-frames", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if "ORIG" not in os.environ:
        raise SystemExit("Set ORIG to an export of the original's Python files (see the shared tools' README).")
    torch.set_num_threads(args.threads)
    cuda = torch.device(args.device).type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {args.size}x{args.size}, hidden {args.hidden}, {args.in_frames}->{args.out_frames}, batch "
          f"{args.batch}, {args.device}, {torch.get_num_threads()} threads, load average {load:.1f} at start",
          flush=True)
    for name in args.models or ["ms-convlstm", "ms-predrnn"]:
        impls = {"ours": ours(name, args), "original": original(name, args)}
        for train, forecast in impls.values():  # warm-up
            train(), forecast()
        times: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            for impl, (train, forecast) in impls.items():
                times.setdefault(f"{impl}_train", []).append(timed(train, cuda))
                times.setdefault(f"{impl}_forecast", []).append(timed(forecast, cuda))
        frames = args.batch * args.out_frames
        row = {"model": name, **{f"{k}_s": statistics.median(v) for k, v in times.items()},
               "train_speedup": statistics.median(o / u for o, u in zip(times["original_train"],
                                                                        times["ours_train"])),
               "forecast_speedup": statistics.median(o / u for o, u in zip(times["original_forecast"],
                                                                           times["ours_forecast"])),
               "ours_forecast_fps": frames / statistics.median(times["ours_forecast"]),
               "original_forecast_fps": frames / statistics.median(times["original_forecast"])}
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{name:14s} train ours {row['ours_train_s']:.3f}s original {row['original_train_s']:.3f}s "
                  f"speed-up {row['train_speedup']:.2f} | forecast ours {row['ours_forecast_fps']:.1f} frames/s "
                  f"original {row['original_forecast_fps']:.1f} frames/s speed-up {row['forecast_speedup']:.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
