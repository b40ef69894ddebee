"""What joining each gate's convolutions into one (``JointConv2d``) saves: training step and forecast, per model.

    python benchmarks/joint_conv.py [--size 32] [--hidden 32] [--in-frames 5] [--out-frames 5] [--batch 4]
                                    [--repeat 5] [--device cpu] [--threads 1] [models ...]

Each model runs the same weights two ways in one process: ``joint`` (the default: one convolution over the
concatenated inputs) and ``split`` (``JointConv2d.split = True``: one convolution per input, then the sum,
as the cells were written before). Rounds alternate between the two so that a change in the machine's load
hits both; the medians and their ratio are printed, with the activation memory each keeps for the backward
(exact: bytes of the tensors autograd saves). ``joint/split`` below 1 means joining pays.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import msrnn_zoo
from msrnn_zoo.cell import JointConv2d


def set_split(model: torch.nn.Module, split: bool) -> None:
    for module in model.modules():
        if isinstance(module, JointConv2d):
            module.split = split


def saved_bytes(model: msrnn_zoo.Forecaster, frames: torch.Tensor, teacher: torch.Tensor) -> int:
    seen: set[tuple[int, torch.dtype]] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key = (t.untyped_storage().data_ptr(), t.dtype)
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.forward_train(frames, teacher)
    return total


def timed(fn: object, cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--in-frames", type=int, default=5)
    parser.add_argument("--out-frames", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    t = args.in_frames + args.out_frames
    print(f"# {args.size}x{args.size}, hidden {args.hidden}, {args.in_frames}->{args.out_frames} frames, batch "
          f"{args.batch}, {device}, {torch.get_num_threads()} threads; medians of {args.repeat} alternating rounds")
    for name in args.models or ["convlstm", "ms-convlstm", "predrnn", "ms-predrnn"]:
        torch.manual_seed(0)
        model = msrnn_zoo.create(name, hidden_channels=args.hidden).to(device).train()
        frames = torch.rand(args.batch, t, 1, args.size, args.size, device=device)
        teacher = torch.ones(args.batch, t - 1, device=device)

        def train() -> None:
            prediction, aux = model.forward_train(frames, teacher)  # noqa: B023
            loss = (prediction - frames[:, 1:]).pow(2).mean() + (aux if aux is not None else 0)  # noqa: B023
            loss.backward()
            model.zero_grad(set_to_none=True)  # noqa: B023

        def forecast() -> None:
            with torch.no_grad():
                model(frames[:, : args.in_frames], horizon=args.out_frames)  # noqa: B023

        row: dict[str, object] = {"model": name}
        times: dict[str, list[float]] = {}
        for way in ("joint", "split"):
            set_split(model, way == "split")
            row[f"{way}_saved_mib"] = saved_bytes(model, frames, teacher) / 2**20
            train(), forecast()  # warm-up
        for _ in range(args.repeat):
            for way in ("joint", "split"):
                set_split(model, way == "split")
                times.setdefault(f"{way}_train_s", []).append(timed(train, cuda))
                times.setdefault(f"{way}_forecast_s", []).append(timed(forecast, cuda))
        row.update({k: statistics.median(v) for k, v in times.items()})
        row["train_ratio"] = row["joint_train_s"] / row["split_train_s"]  # type: ignore[operator]
        row["forecast_ratio"] = row["joint_forecast_s"] / row["split_forecast_s"]  # type: ignore[operator]
        row["memory_ratio"] = row["joint_saved_mib"] / row["split_saved_mib"]  # type: ignore[operator]
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{name:14s} train joint {row['joint_train_s']:.3f}s split {row['split_train_s']:.3f}s "
                  f"joint/split {row['train_ratio']:.2f} | forecast joint/split {row['forecast_ratio']:.2f} | "
                  f"saved MiB {row['joint_saved_mib']:.1f} / {row['split_saved_mib']:.1f} = "
                  f"{row['memory_ratio']:.2f}", flush=True)


if __name__ == "__main__":
    main()
