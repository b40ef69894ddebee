"""What each speed option of a model costs or saves, measured against the plain model in one process.

    python benchmarks/options.py [--options plain,compile,bf16,channels-last,grad-checkpointing]
                                 [--size 32] [--hidden 32] [--in-frames 5] [--out-frames 5] [--batch 4]
                                 [--repeat 5] [--device cpu] [--threads 1] [--json] [models ...]

Options: ``plain`` (fp32, eager), ``compile`` / ``cudagraph`` (``set_fast_path``), ``bf16`` / ``fp16``
(autocast, as ``train --precision``), ``channels-last`` (``set_channels_last``), ``grad-checkpointing``.
Each option gets its own copy of the same weights. Per option: ``warmup_s``, the first training step
(compilation and capture included), then the median seconds of a training step (forward, backward, Adam)
and of a forecast (``model(context, horizon)`` without gradients, reported as frames per second), over
``--repeat`` rounds in which the options take turns, so that a change in the machine's load hits all of
them. Ratios are to ``plain`` in the same round; below 1 means faster.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import time
from collections.abc import Callable

import torch

import msrnn_zoo
from msrnn_zoo.precision import autocast


def variant(base: msrnn_zoo.Forecaster, option: str) -> tuple[msrnn_zoo.Forecaster, str]:
    """A copy of ``base`` set up for ``option``, and the precision its steps run in."""
    model = copy.deepcopy(base)
    precision = "fp32"
    if option in ("compile", "cudagraph"):
        model.set_fast_path(option)
    elif option in ("bf16", "fp16"):
        precision = option
    elif option == "channels-last":
        model.set_channels_last()
    elif option == "grad-checkpointing":
        model.set_grad_checkpointing(True)
    elif option != "plain":
        raise SystemExit(f"unknown option {option!r}")
    return model, precision


def make_steps(model: msrnn_zoo.Forecaster, precision: str, frames: torch.Tensor, teacher: torch.Tensor,
               in_frames: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """A training step (forward, backward, Adam) and a forecast of the clip's future, for one model."""
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    device = frames.device

    def train() -> None:
        with autocast(precision, device):
            prediction, aux = model.forward_train(frames, teacher)
        loss = (prediction.float() - frames[:, 1:]).pow(2).mean() + (aux.float() if aux is not None else 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def forecast() -> None:
        with torch.no_grad(), autocast(precision, device):
            model(frames[:, :in_frames], horizon=frames.shape[1] - in_frames)

    return train, forecast


def timed(fn: Callable[[], object], cuda: bool) -> float:
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
    parser.add_argument("--options", default="plain,compile,bf16,channels-last")
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
    if cuda:
        torch.backends.cudnn.benchmark = True
    options = args.options.split(",")
    if "plain" not in options:
        options.insert(0, "plain")
    t = args.in_frames + args.out_frames
    print(f"# {args.size}x{args.size}, hidden {args.hidden}, {args.in_frames}->{args.out_frames} frames, batch "
          f"{args.batch}, {device}, {torch.get_num_threads()} threads, torch {torch.__version__}", flush=True)
    for name in args.models or ["ms-convlstm", "ms-predrnn"]:
        torch.manual_seed(0)
        base = msrnn_zoo.create(name, hidden_channels=args.hidden).to(device).train()
        frames = torch.rand(args.batch, t, 1, args.size, args.size, device=device)
        teacher = torch.ones(args.batch, t - 1, device=device)
        steps: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {}
        rows: dict[str, dict[str, object]] = {}
        for option in options:
            train, forecast = make_steps(*variant(base, option), frames, teacher, args.in_frames)
            row: dict[str, object] = {"model": name, "option": option}
            try:
                row["warmup_s"] = timed(train, cuda)
                row["forecast_warmup_s"] = timed(forecast, cuda)
                steps[option] = (train, forecast)
            except Exception as exc:  # one option that cannot run here must not lose the others
                row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            rows[option] = row
        times: dict[str, dict[str, list[float]]] = {o: {"train": [], "forecast": []} for o in steps}
        for _ in range(args.repeat):
            for option, (train, forecast) in steps.items():
                times[option]["train"].append(timed(train, cuda))
                times[option]["forecast"].append(timed(forecast, cuda))
        for option, row in rows.items():
            if option in times:
                row["train_s"] = statistics.median(times[option]["train"])
                row["forecast_s"] = statistics.median(times[option]["forecast"])
                row["forecast_fps"] = args.batch * args.out_frames / row["forecast_s"]  # type: ignore[operator]
                plain = times["plain"]
                row["train_ratio"] = statistics.median(a / b for a, b in zip(times[option]["train"], plain["train"]))
                row["forecast_ratio"] = statistics.median(
                    a / b for a, b in zip(times[option]["forecast"], plain["forecast"]))
            if args.json:
                print(json.dumps(row), flush=True)
            elif "error" in row:
                print(f"{name:14s} {option:18s} error: {row['error']}", flush=True)
            else:
                print(f"{name:14s} {option:18s} warm-up {row['warmup_s']:7.1f}s | train {row['train_s']:.3f}s "
                      f"(x{row['train_ratio']:.2f}) | forecast {row['forecast_fps']:8.1f} frames/s "
                      f"(x{row['forecast_ratio']:.2f} time)", flush=True)
        with contextlib.suppress(Exception):
            torch._dynamo.reset()  # compiled graphs of this model are not needed by the next one


if __name__ == "__main__":
    main()
