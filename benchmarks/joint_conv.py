"""What joining each gate's convolutions into one (``JointConv2d``) saves: training step and forecast, per model.

    python benchmarks/joint_conv.py [--size 32] [--hidden 32] [--in-frames 5] [--out-frames 5] [--batch 4]
                                    [--repeat 5] [--device cpu] [--threads 1] [--clock wall|process]
                                    [--json] [models ...]

Each model runs the same weights two ways in one process: ``joint`` (the default: one convolution over the
concatenated inputs) and ``split`` (``JointConv2d.split = True``: one convolution per input, then the sum,
as the cells were written before). Rounds alternate between the two so that a change in the machine's load
hits both; the medians and the median per-round ratios are printed, with the activation memory each keeps
for the backward (exact: bytes of the tensors autograd saves). ``joint/split`` below 1 means joining pays.

    python benchmarks/joint_conv.py --backward [common options] [models ...]

compares instead how a joint convolution keeps what its backward needs, the training step (forward and backward)
of the same weights three ways: ``hooks`` (the default: autograd's own convolution, its saved concatenation
swapped for the parts by saved-tensor hooks), ``function`` (the ``autograd.Function`` with a backward in Python,
used under a checkpoint, a memory count or autocast) and ``concatenation`` (plain ``cat`` + ``conv2d``, which
keeps the concatenated copy). Memory is what the forward leaves allocated for the backward (the profiler's
allocation records, which see all three ways; ``saved_bytes``' hooks would turn ``hooks`` into ``function``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Iterator

import _common
import torch
import torch.nn.functional as F

import msrnn_zoo
from msrnn_zoo import joint_conv
from msrnn_zoo.cell import JointConv2d
from msrnn_zoo.profile import retained_bytes, saved_bytes


def set_split(model: torch.nn.Module, split: bool) -> None:
    for module in model.modules():
        if isinstance(module, JointConv2d):
            module.split = split


def in_way(model: torch.nn.Module, split: bool, fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` run with the model's joint convolutions split or not."""

    def run() -> None:
        set_split(model, split)
        fn()

    return run


def _concatenation(weight: torch.Tensor, bias: torch.Tensor | None, padding: object,
                   *inputs: torch.Tensor) -> torch.Tensor:
    return F.conv2d(torch.cat(inputs, dim=1), weight, bias, padding=padding)


@contextlib.contextmanager
def backward_way(way: str) -> Iterator[None]:
    """Joint convolutions kept for the backward by ``hooks``, ``function`` or ``concatenation`` meanwhile."""
    allowed, function = joint_conv._own_hooks_allowed, joint_conv._JointConv.apply
    if way != "hooks":
        joint_conv._own_hooks_allowed = lambda device: False
    if way == "concatenation":
        joint_conv._JointConv.apply = _concatenation  # type: ignore[method-assign]
    try:
        yield
    finally:
        joint_conv._own_hooks_allowed, joint_conv._JointConv.apply = allowed, function  # type: ignore[method-assign]


def compare_backwards(args: argparse.Namespace, device: torch.device, timer: _common.Timer) -> None:
    ways = ("hooks", "function", "concatenation")
    for name in args.models or ["ms-convlstm", "ms-predrnn", "ms-predrnn-pp"]:
        torch.manual_seed(0)
        model = msrnn_zoo.create(name, hidden_channels=args.hidden).to(device).train()
        frames, teacher = _common.clip(args, device)
        train, _ = _common.model_steps(model, frames, teacher, args.in_frames, optimizer=False)
        row: dict[str, object] = {"model": name}
        cases = {}
        for way in ways:
            with backward_way(way):
                row[f"{way}_kept_mib"] = retained_bytes(lambda: model.forward_train(frames, teacher), device) / 2**20  # noqa: B023
                train()  # warm-up

            def run(way: str = way, train: Callable[[], None] = train) -> None:
                with backward_way(way):
                    train()

            cases[way] = run
        times = _common.rounds(cases, args.repeat, timer)
        row.update({f"{way}_train_s": _common.median(times[way]) for way in ways})
        row.update({f"{way}/hooks": _common.median_ratio(times[way], times["hooks"]) for way in ways[1:]})
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{name:14s} train hooks {row['hooks_train_s']:.4f}s, function x{row['function/hooks']:.3f}, "
                  f"concatenation x{row['concatenation/hooks']:.3f} | kept MiB " +
                  " / ".join(f"{row[f'{way}_kept_mib']:.2f}" for way in ways), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*")
    parser.add_argument("--backward", action="store_true", help="compare how a joint convolution keeps what its "
                        "backward needs (hooks, function, concatenation) instead of joint against split")
    _common.add_common_options(parser, batch=4, repeat=5)
    args = parser.parse_args()
    device, timer = _common.setup(args)
    print(_common.header(args, f"; medians of {args.repeat} alternating rounds"), flush=True)
    if args.backward:
        compare_backwards(args, device, timer)
        return
    for name in args.models or ["convlstm", "ms-convlstm", "predrnn", "ms-predrnn"]:
        torch.manual_seed(0)
        model = msrnn_zoo.create(name, hidden_channels=args.hidden).to(device).train()
        frames, teacher = _common.clip(args, device)
        train, forecast = _common.model_steps(model, frames, teacher, args.in_frames, optimizer=False)
        row: dict[str, object] = {"model": name}
        for way in ("joint", "split"):
            set_split(model, way == "split")
            row[f"{way}_saved_mib"] = saved_bytes(lambda: model.forward_train(frames, teacher)) / 2**20  # noqa: B023
            train(), forecast()  # warm-up
        cases = {f"{way}_{what}_s": in_way(model, way == "split", fn)
                 for way in ("joint", "split") for what, fn in (("train", train), ("forecast", forecast))}
        times = _common.rounds(cases, args.repeat, timer)
        row.update({k: _common.median(v) for k, v in times.items()})
        row["train_ratio"] = _common.median_ratio(times["joint_train_s"], times["split_train_s"])
        row["forecast_ratio"] = _common.median_ratio(times["joint_forecast_s"], times["split_forecast_s"])
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
