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
from collections.abc import Callable

import _common
import torch

import msrnn_zoo
from msrnn_zoo import compiled_cells


def settle(model: msrnn_zoo.Forecaster, train: Callable[[], None]) -> None:
    """One eager training step, so that the warm-up measures compilation or recording alone, and its peak memory
    what a recording holds, not cuDNN's timing of its algorithms on the first call of each shape."""
    fast_path, compiled = model.fast_path, model.compile_cells
    model.set_fast_path(None)
    model.set_compile_cells(False)  # the warm-up counts the compilation
    train()
    model.set_compile_cells(compiled)
    model.set_fast_path(fast_path)


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
    baseline = options[0]
    print(_common.header(args), flush=True)
    for name in args.models or ["ms-convlstm", "ms-predrnn"]:
        torch.manual_seed(0)
        base = msrnn_zoo.create(name, hidden_channels=args.hidden).to(device).train()
        frames, teacher = _common.clip(args, device)
        cases: dict[str, Callable[[], None]] = {}
        rows: dict[str, dict[str, object]] = {}
        for option in options:
            model, precision = _common.configured(base, option)
            train, forecast = _common.model_steps(model, frames, teacher, args.in_frames, precision=precision)
            row: dict[str, object] = {"model": name, "option": option}
            try:
                if device.type == "cuda":  # cuDNN's search of algorithms (GiBs of workspace) done eagerly first
                    settle(model, train)

                def warm_up() -> None:
                    row["warmup_s"] = timer(train)  # noqa: B023 (called at once, in this iteration)

                if device.type == "cuda":
                    row["warmup_peak_mib"] = _common.cuda_peak_mib(warm_up)
                else:
                    warm_up()
                cases[f"{option}:train"] = train
                if not args.train_only:  # a forecast without gradients is compiled or recorded on its own
                    row["forecast_warmup_s"] = timer(forecast)
                    cases[f"{option}:forecast"] = forecast
            except Exception as exc:  # one option that cannot run here must not lose the others
                row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            rows[option] = row
        failed: dict[str, str] = {}  # a case that fails in the rounds (out of memory beside the others, say)
        times = _common.rounds(cases, args.repeat, timer, failed)
        for option, row in rows.items():
            failure = failed.get(f"{option}:train") or failed.get(f"{option}:forecast")
            if failure:
                row["error"] = failure
            elif device.type == "cuda" and f"{option}:train" in cases:
                # a recording allocates its activations while it is made, in the warm-up, not when it replays
                row["peak_mib"] = max(_common.cuda_peak_mib(cases[f"{option}:train"]), row["warmup_peak_mib"])
            if f"{option}:train" in times and not failure:
                train_s = times[f"{option}:train"]
                row["train_s"] = _common.median(train_s)
                baseline_ok = f"{baseline}:train" in times and not any(k.startswith(f"{baseline}:") for k in failed)
                if baseline_ok:
                    row["train_ratio"] = _common.median_ratio(train_s, times[f"{baseline}:train"])
                if f"{option}:forecast" in times:
                    forecast_s = times[f"{option}:forecast"]
                    row["forecast_s"] = _common.median(forecast_s)
                    row["forecast_fps"] = args.batch * args.out_frames / row["forecast_s"]  # type: ignore[operator]
                    if baseline_ok:
                        row["forecast_ratio"] = _common.median_ratio(forecast_s, times[f"{baseline}:forecast"])
            if args.json:
                print(json.dumps(row), flush=True)
            elif "error" in row:
                print(f"{name:14s} {option:18s} error: {row['error']}", flush=True)
            elif "train_ratio" in row:
                forecast = (f" | forecast {row['forecast_fps']:8.1f} frames/s (x{row['forecast_ratio']:.2f} time)"
                            if "forecast_ratio" in row else "")
                print(f"{name:14s} {option:18s} warm-up {row['warmup_s']:7.1f}s | train {row['train_s']:.3f}s "
                      f"(x{row['train_ratio']:.2f}){forecast}", flush=True)
        with contextlib.suppress(Exception):
            torch._dynamo.reset()  # compiled graphs of this model are not needed by the next one


if __name__ == "__main__":
    main()
