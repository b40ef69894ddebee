"""Training-step cost of every model, single-scale beside multi-scale: activation memory and seconds.

    python benchmarks/step_time.py [--size 32] [--hidden 32] [--in-frames 5] [--out-frames 5] [--batch 2]
                                   [--repeat 3] [--device cpu] [--threads 1] [--clock wall|process]
                                   [--json] [cells ...]
    python benchmarks/step_time.py --grad-checkpointing [...] [models ...]
    python benchmarks/step_time.py --compile-cells [...] [models ...]
    python benchmarks/step_time.py --kept-by-op [...] [models ...]

``--grad-checkpointing`` compares, per model (``ms-convlstm``, ``predrnn``, ...; all 16 by default), the
plain training step with ``model.set_grad_checkpointing(True)``: the memory the forward pass leaves
allocated for the backward (``retained``, measured by the PyTorch profiler's allocation records on the
CPU and by ``torch.cuda.memory_allocated`` on a GPU, so that the per-step inputs a checkpoint keeps are
counted too) and the seconds of forward + backward. ``--compile-cells`` does the same with
``model.set_compile_cells(True)`` (compiled before it is measured).

``--kept-by-op`` splits each model's activation memory by the operation that made each kept tensor, counted
in feature maps (one hidden-channel map of one sample) per layer and time step: what the cell's equations oblige
autograd to keep (each sigmoid and tanh keeps its output, each new memory is read by the next step), which
bounds the memory of one cell against another's however the step is run, short of recomputing.

Activation memory is the bytes of the tensors autograd keeps for the backward pass (each storage counted
once), which is what multi-scale saves: it is exact and does not depend on the machine's load. Seconds
are the median of ``--repeat`` forward+backward passes after a warm-up round, all models taking turns in
each round; compare them as ratios from one run (MS/single, or a cell against the first one named), never
across machines or runs. The same measure of the original implementation is
``../shared/tools/orig_perf.py``, so the two can be read side by side.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import _common
import torch

import msrnn_zoo
from msrnn_zoo.network import Forecaster
from msrnn_zoo.profile import retained_bytes, saved_bytes, saved_bytes_by_op

OPTIONS = {
    "checkpointed": Forecaster.set_grad_checkpointing,
    "compiled": Forecaster.set_compile_cells,
}
"""The options this script compares with the plain step: ``--grad-checkpointing`` and ``--compile-cells``."""


def option_rows(args: argparse.Namespace, device: torch.device, timer: _common.Timer, option: str) -> None:
    names = args.cells or [m for c in msrnn_zoo.list_cells() for m in (c, f"ms-{c}")]
    switch = OPTIONS[option]
    for name in names:
        torch.manual_seed(0)
        model = msrnn_zoo.create(name, hidden_channels=args.hidden).to(device).train()
        frames, teacher = _common.clip(args, device)
        row: dict[str, object] = {"model": name}
        for key, enable in (("plain", False), (option, True)):
            switch(model, enable)
            if enable and option == "compiled":  # compiled first, so that only the clip is counted
                model.forward_train(frames, teacher)[0].sum().backward()
                model.zero_grad(set_to_none=True)
            row[f"{key}_mib"] = retained_bytes(lambda: model.forward_train(frames, teacher), device) / 2**20  # noqa: B023
        train, _ = _common.model_steps(model, frames, teacher, args.in_frames, optimizer=False)

        def with_option(enable: bool) -> None:
            switch(model, enable)  # noqa: B023
            train()  # noqa: B023

        cases = {"plain": lambda: with_option(False), option: lambda: with_option(True)}
        # one warm-up round, then interleaved rounds, so that a change of the machine's load hits both
        times = _common.rounds(cases, args.repeat + 1 if args.repeat else 0, timer)
        for key, values in times.items():
            row[f"{key}_s"] = _common.median(values[1:])
        row["memory_ratio"] = row[f"{option}_mib"] / row["plain_mib"]  # type: ignore[operator]
        row["time_ratio"] = _common.median_ratio(times[option][1:], times["plain"][1:])
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{name:16s} plain {row['plain_mib']:8.1f} MiB {row['plain_s']:6.2f}s | {option} "
                  f"{row[f'{option}_mib']:8.1f} MiB {row[f'{option}_s']:6.2f}s | memory "
                  f"{row['memory_ratio']:.2f} time {row['time_ratio']:.2f}", flush=True)


def kept_by_op_rows(args: argparse.Namespace, device: torch.device) -> None:
    for name in args.cells or [m for c in msrnn_zoo.list_cells() for m in (c, f"ms-{c}")]:
        torch.manual_seed(0)
        model = msrnn_zoo.create(name, hidden_channels=args.hidden).to(device).train()
        frames, teacher = _common.clip(args, device)
        by_op = saved_bytes_by_op(lambda: model.forward_train(frames, teacher))  # noqa: B023
        # one hidden map of the full frame and of one sample, for every layer at every step of the unrolled clip
        map_bytes = frames.shape[0] * args.hidden * args.size * args.size * frames.element_size()
        per_layer_step = map_bytes * model.config.num_layers * (frames.shape[1] - 1)
        row = {"model": name, "kept_mib": sum(by_op.values()) / 2**20,
               "maps_per_layer_step": sum(by_op.values()) / per_layer_step,
               "by_op": {op: b / per_layer_step for op, b in sorted(by_op.items(), key=lambda kv: -kv[1])}}
        if args.json:
            print(json.dumps(row), flush=True)
            continue
        parts = ", ".join(f"{op} {maps:.2f}" for op, maps in row["by_op"].items() if maps >= 0.05)  # type: ignore[union-attr]
        print(f"{name:16s} kept {row['kept_mib']:8.1f} MiB = {row['maps_per_layer_step']:5.2f} maps per layer and "
              f"step: {parts}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cells", nargs="*")
    _common.add_common_options(parser, batch=2, repeat=3,
                               repeat_help="timed steps (0: memory only, with --grad-checkpointing)")
    # one measurement per run: given two, the script ran one of them and left the other out without a word
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--grad-checkpointing", action="store_true",
                       help="Compare each model (positional names: models) plain and with gradient checkpointing.")
    modes.add_argument("--compile-cells", action="store_true",
                       help="Compare each model (positional names: models) plain and with compiled cells.")
    modes.add_argument("--kept-by-op", action="store_true",
                       help="Split each model's activation memory (positional names: models) by the operation that "
                            "made each kept tensor, in feature maps per layer and time step (no timing).")
    args = parser.parse_args()
    if args.repeat < 0:
        parser.error(f"--repeat {args.repeat}: give the number of timed steps, 0 or more.")
    if args.repeat == 0 and not (args.grad_checkpointing or args.compile_cells or args.kept_by_op):
        parser.error(f"--repeat {args.repeat}: the single- and multi-scale comparison times at least one step (it "
                     "printed 'nan' seconds); --repeat 0, memory only, goes with --grad-checkpointing or "
                     "--compile-cells.")
    device, timer = _common.setup(args)
    print(_common.header(args), flush=True)
    if args.kept_by_op:
        kept_by_op_rows(args, device)
        return
    if args.grad_checkpointing or args.compile_cells:
        option_rows(args, device, timer, "checkpointed" if args.grad_checkpointing else "compiled")
        return
    cells = args.cells or msrnn_zoo.list_cells()
    memory: dict[str, int] = {}
    cases: dict[str, Callable[[], object]] = {}
    for cell in cells:
        for name in (cell, f"ms-{cell}"):
            torch.manual_seed(0)
            model = msrnn_zoo.create(name, hidden_channels=args.hidden).to(device).train()
            frames, teacher = _common.clip(args, device)
            memory[name] = saved_bytes(lambda: model.forward_train(frames, teacher))  # noqa: B023
            cases[name], _ = _common.model_steps(model, frames, teacher, args.in_frames, optimizer=False)
    # every model takes its turn in each round (the first round is the warm-up), so that a change of the
    # machine's load hits all of them and ratios between any two come from the same rounds
    times = {name: values[1:] for name, values in _common.rounds(cases, args.repeat + 1, timer).items()}
    first = cells[0]
    for cell in cells:
        single, ms = cell, f"ms-{cell}"
        row: dict[str, object] = {
            "cell": cell, "single_mib": memory[single] / 2**20, "single_s": _common.median(times[single]),
            "ms_mib": memory[ms] / 2**20, "ms_s": _common.median(times[ms]),
            "memory_ratio": memory[ms] / memory[single],
            "time_ratio": _common.median_ratio(times[ms], times[single]),
            f"single_memory_vs_{first}": memory[single] / memory[first],
            f"single_time_vs_{first}": _common.median_ratio(times[single], times[first]),
        }
        if args.json:
            print(json.dumps(row), flush=True)
            continue
        versus = "" if cell == first else (f" | single vs {first}: memory {row[f'single_memory_vs_{first}']:.2f} "
                                           f"time {row[f'single_time_vs_{first}']:.2f}")
        print(f"{cell:12s} single {row['single_mib']:8.1f} MiB {row['single_s']:6.2f}s | "
              f"ms {row['ms_mib']:8.1f} MiB {row['ms_s']:6.2f}s | "
              f"ms/single memory {row['memory_ratio']:.2f} time {row['time_ratio']:.2f}{versus}", flush=True)


if __name__ == "__main__":
    main()
