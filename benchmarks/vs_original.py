"""Ours beside the original MS-RNN code, in one process: a training step and forecasting frames per second.

    ORIG=/path/to/msrnn-original python benchmarks/vs_original.py [--tools ../shared/tools] [--size 32]
        [--hidden 32] [--in-frames 5] [--out-frames 5] [--batch 4] [--repeat 7] [--threads 1] [--device cpu]
        [--clock wall|process] [--configs C1,C2,...] [--channels-last] [--fast-path PATH] [--compile-cells]
        [--precision P] [--cells-backend B] [--train-only] [--json] [models ...]

The original is loaded by ``orig_env.py`` of the shared tools (``--tools``; see their README for exporting
the original's Python files into ``ORIG``). Per model and implementation: the training step of
``gpu_bench.py`` (forward over the whole clip, MSE, backward, Adam; ours with its defaults: fp32, eager),
and a forecast without gradients -- ours ``model(context, horizon)``, the original's test mode, both
``in + out - 1`` recurrent steps -- given as forecast frames per second (batch x out frames / seconds).
``--channels-last`` runs ours in that layout, ``--fast-path`` on a fast path (``set_fast_path``), ``--compile-cells``
with compiled cells (``set_compile_cells``) and ``--precision`` under autocast (options, not the defaults);
``--configs`` measures several configurations of ours at once, in the grammar of ``options.py``
(``clip-graph+channels-last+compile-cells``): one row per configuration, all beside the same original in the
same rounds, so that which configuration pays is read from one run. (The original's own seconds moved by up to
1.7x between two calls of the device tool; within one process they do not.)
``warmup_s`` is our first training step, compilation or recording included.
All measurements take turns in every round, so that a change in the machine's load hits them all;
``speedup`` is the median over rounds of original seconds / our seconds, above 1 when ours is faster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import _common
import torch
import torch.nn.functional as F

import msrnn_zoo
from msrnn_zoo import compiled_cells
from msrnn_zoo.network import FAST_PATHS


def ours(base: msrnn_zoo.Forecaster, config: str, clip: tuple[torch.Tensor, torch.Tensor],
         args: argparse.Namespace) -> tuple[Callable[[], None], Callable[[], None]]:
    model, precision = _common.configured(base, config)
    frames, teacher = clip
    return _common.model_steps(model, frames, teacher, args.in_frames, precision=precision)


def flags_config(args: argparse.Namespace) -> str:
    """The one configuration the single-configuration flags name, in the grammar of ``--configs``."""
    parts = [args.fast_path] if args.fast_path != "none" else []
    parts += ["channels-last"] * args.channels_last + ["compile-cells"] * args.compile_cells
    parts += [args.precision] if args.precision != "fp32" else []
    return "+".join(parts) or "plain"


def described(config: str) -> dict[str, object]:
    """What a configuration sets, under the keys the single-configuration rows always had."""
    parts = [_common.OPTIONS[p] for p in config.split("+")]  # what each part sets, from the one grammar
    names = config.split("+")
    return {"config": config,
            "fast_path": next((n for n, p in zip(names, parts) if p.choice == "fast path"), "none"),
            "precision": next((p.precision for p in parts if p.precision is not None), "fp32"),
            "channels_last": "channels-last" in names, "compile_cells": "compile-cells" in names}


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
    parser.add_argument("--configs", default=None, help="several configurations of ours, comma-separated, each in "
                        "the grammar of options.py (clip-graph+compile-cells); replaces the four flags above")
    parser.add_argument("--train-only", action="store_true", help="time the training step alone: no forecasts, "
                        "whose warm-up (a compilation or recording without gradients) would take as long again")
    parser.add_argument("--cells-backend", default="inductor",
                        help="torch.compile backend of compile-cells (aot_eager: traced, not compiled; smoke tests)")
    args = parser.parse_args()
    if "ORIG" not in os.environ:
        raise SystemExit("Set ORIG to an export of the original's Python files (see the shared tools' README).")
    device, timer = _common.setup(args)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(_common.header(args, f", load average {load:.1f} at start"), flush=True)
    configs = _common.checked_configs(args.configs) if args.configs else [flags_config(args)]
    for name in args.models or ["ms-convlstm", "ms-predrnn"]:
        with compiled_cells.backend(args.cells_backend):
            for row in measure(name, configs, args, device, timer):
                report(row, args.json)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        with contextlib.suppress(Exception):
            torch._dynamo.reset()  # compiled cells of this model are not needed by the next one


def report(row: dict, as_json: bool) -> None:
    name, config = row["model"], row["config"]
    if as_json:
        print(json.dumps(row), flush=True)
    elif "error" in row:
        print(f"{name:14s} {config:24s} error: {row['error']}", flush=True)
    else:
        forecast = (f" | forecast ours {row['ours_forecast_fps']:.1f} frames/s original "
                    f"{row['original_forecast_fps']:.1f} frames/s speed-up {row['forecast_speedup']:.2f}"
                    if "forecast_speedup" in row else "")
        print(f"{name:14s} {config:24s} warm-up {row['warmup_s']:.1f}s train ours {row['ours_train_s']:.3f}s "
              f"original {row['original_train_s']:.3f}s speed-up {row['train_speedup']:.2f}{forecast}", flush=True)


def measure(name: str, configs: list[str], args: argparse.Namespace, device: torch.device,
            timer: Callable) -> list[dict]:
    """One row per configuration of ours: warm-ups, then every training step and forecast taking turns."""
    rows = {config: {"model": name, **described(config)} for config in configs}
    whats = ("train",) if args.train_only else ("train", "forecast")
    try:
        impls = {"original": original(name, args, device)}
        warmup = {"original": timer(impls["original"][0])}
        if not args.train_only:
            impls["original"][1]()
        torch.manual_seed(0)
        base = msrnn_zoo.create(name, hidden_channels=args.hidden).to(device).train()
    except Exception as exc:  # one model that cannot run here must not lose the other models' rows
        return [{**row, "error": f"{type(exc).__name__}: {str(exc)[:300]}"} for row in rows.values()]
    clip = _common.clip(args, device)
    for config, row in rows.items():
        try:
            steps = ours(base, config, clip, args)
            warmup[config] = timer(steps[0])
            if not args.train_only:  # a forecast without gradients is compiled or recorded on its own
                steps[1]()
        except Exception as exc:  # a configuration that cannot run here must not lose the others
            row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        else:
            impls[config] = steps
    cases = {(impl, what): fn for impl, steps in impls.items() for what, fn in zip(whats, steps)}
    failed: dict[tuple[str, str], str] = {}  # a case that fails in the rounds (out of memory, say): the rest go on
    times = _common.rounds(cases, args.repeat, timer, failed)
    if failure := next((failed[("original", what)] for what in whats if ("original", what) in failed), None):
        return [{**row, "error": row.get("error", f"original: {failure}")} for row in rows.values()]
    frames = args.batch * args.out_frames
    for config, row in rows.items():
        failure = next((failed[(config, what)] for what in whats if (config, what) in failed), None)
        if failure:
            row["error"] = failure
        if config not in impls or failure:
            continue
        row.update({
            "warmup_s": warmup[config], "original_warmup_s": warmup["original"],
            **{f"{who}_{what}_s": _common.median(times[(impl, what)])
               for who, impl in (("ours", config), ("original", "original")) for what in whats},
            "train_speedup": _common.median_ratio(times[("original", "train")], times[(config, "train")])})
        if not args.train_only:
            row.update({
                "forecast_speedup": _common.median_ratio(times[("original", "forecast")],
                                                         times[(config, "forecast")]),
                "ours_forecast_fps": frames / _common.median(times[(config, "forecast")]),
                "original_forecast_fps": frames / _common.median(times[("original", "forecast")])})
    return list(rows.values())


if __name__ == "__main__":
    main()
