"""What each speed option of a model costs or saves, measured against the plain model in one process.

    python benchmarks/options.py [--options plain,compile,bf16,channels-last,grad-checkpointing]
                                 [--size 32] [--hidden 32] [--in-frames 5] [--out-frames 5] [--batch 4]
                                 [--repeat 5] [--device cpu] [--threads 1] [--clock wall|process] [--train-only]
                                 [--json] [models ...]

Options: ``plain`` (the defaults: fp32, eager), ``compile`` / ``cudagraph`` / ``clip-graph`` (``set_fast_path``),
``bf16`` / ``fp16`` (autocast, as ``train --precision``), ``channels-last`` (``set_channels_last``: the weights too),
``cpu-contiguous`` (``cpu_channels_last = False``: every tensor NCHW on the CPU, the layout before channels-last
activations became the CPU's default), ``embedding`` (``absorb_embedding = False``: the 1x1 embedding computed on
its own, not absorbed by the bottom layer's convolutions), ``zero-states`` (``skip_zero_states = False``: the first
step convolves the zero states too), ``compile-cells`` (``set_compile_cells``: each cell compiled, its gate
arithmetic fused), ``grad-checkpointing``; ``+`` combines them
(``clip-graph+bf16``).
Each option gets its own copy of the same weights. Per option: ``warmup_s``, the first training step (compilation or
recording, after one eager step on a GPU that lets cuDNN choose its algorithms), then the median seconds of a
training step (forward, backward, Adam) and of a forecast (``model(context, horizon)`` without gradients, reported
as frames per second), over ``--repeat`` rounds in which the options take turns, so that a change in the machine's
load hits all of them. Ratios are to the first option listed (usually ``plain``) in the same round; below 1 means
faster. On a GPU, ``peak_mib`` is the peak memory of the warm-up or of one more training step, whichever is higher,
above what was allocated before it (the weights, Adam's state, the clip): a CUDA-graph recording allocates its
activations while it is made, in the warm-up.
"""

from __future__ import annotations

import argparse
import contextlib
import json

import _common
import torch

import msrnn_zoo
from msrnn_zoo import bench, compiled_cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*")
    parser.add_argument("--options", default="plain,compile,bf16,channels-last")
    parser.add_argument("--train-only", action="store_true", help="time the training step alone: no forecasts, "
                        "whose warm-up (a compilation or recording without gradients) would take as long again")
    parser.add_argument("--cells-backend", default="inductor",
                        help="torch.compile backend of compile-cells (aot_eager: traced, not compiled; smoke tests)")
    _common.add_common_options(parser, batch=4, repeat=5)
    args = parser.parse_args()
    with compiled_cells.backend(args.cells_backend):
        measure(args)


def measure(args: argparse.Namespace) -> None:
    device, timer = _common.setup(args)
    options = _common.checked_configs(args.options)
    print(_common.header(args), flush=True)
    for name in args.models or ["ms-convlstm", "ms-predrnn"]:
        torch.manual_seed(0)
        base = msrnn_zoo.create(name, hidden_channels=args.hidden).to(device).train()
        frames, teacher = _common.clip(args, device)
        rows = bench.compare(base, options, frames, teacher, args.in_frames, repeat=args.repeat, timer=timer,
                             train_only=args.train_only, memory=device.type == "cuda")
        for row in rows:
            row = {"model": name, "option": row.pop("config"), **row}
            if args.json:
                print(json.dumps(row), flush=True)
            elif "error" in row:
                print(f"{name:14s} {row['option']:18s} error: {row['error']}", flush=True)
            elif "train_ratio" in row:
                forecast = (f" | forecast {row['forecast_fps']:8.1f} frames/s (x{row['forecast_ratio']:.2f} time)"
                            if "forecast_ratio" in row else "")
                print(f"{name:14s} {row['option']:18s} warm-up {row['warmup_s']:7.1f}s | train {row['train_s']:.3f}s "
                      f"(x{row['train_ratio']:.2f}){forecast}", flush=True)
        with contextlib.suppress(Exception):
            torch._dynamo.reset()  # compiled graphs of this model are not needed by the next one


if __name__ == "__main__":
    main()
