"""Training-step cost of every model, single-scale beside multi-scale: activation memory and seconds.

    python benchmarks/step_time.py [--size 32] [--hidden 32] [--in-frames 5] [--out-frames 5] [--batch 2]
                                   [--repeat 3] [--device cpu] [--threads 1] [cells ...]
    python benchmarks/step_time.py --grad-checkpointing [...] [models ...]

``--grad-checkpointing`` compares, per model (``ms-convlstm``, ``predrnn``, ...; all 16 by default), the
plain training step with ``model.set_grad_checkpointing(True)``: the memory the forward pass leaves
allocated for the backward (``retained``, measured by the PyTorch profiler's allocation records on the
CPU and by ``torch.cuda.memory_allocated`` on a GPU, so that the per-step inputs a checkpoint keeps are
counted too) and the seconds of forward + backward.

Activation memory is the bytes of the tensors autograd keeps for the backward pass (each storage counted
once), which is what multi-scale saves: it is exact and does not depend on the machine's load. Seconds
are the median of ``--repeat`` forward+backward passes after a warm-up; compare them as MS/single ratios
from one run, never across machines or runs. The same measure of the original implementation is
``../shared/tools/orig_perf.py``, so the two can be read side by side.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # the profiler's complaint that there is no GPU is not news

import torch

import msrnn_zoo


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
        prediction, aux = model.forward_train(frames, teacher)
    del prediction, aux
    return total


def retained_bytes(model: msrnn_zoo.Forecaster, frames: torch.Tensor, teacher: torch.Tensor) -> int:
    """Bytes allocated by ``forward_train`` and still held when it returns: what waits for the backward."""
    gc.collect()
    if frames.is_cuda:
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        prediction, aux = model.forward_train(frames, teacher)
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        prediction, aux = model.forward_train(frames, teacher)
    del prediction, aux
    # allocations are booked on the op that made them, frees on '[memory]' events: their sum is what is held
    return sum(event.self_cpu_memory_usage for event in prof.events())


def checkpointing_rows(args: argparse.Namespace, teacher: torch.Tensor) -> None:
    frames_count = args.in_frames + args.out_frames
    names = args.cells or [m for c in msrnn_zoo.list_cells() for m in (c, f"ms-{c}")]
    for name in names:
        model = msrnn_zoo.create(name, hidden_channels=args.hidden).to(args.device).train()
        frames = torch.rand(args.batch, frames_count, 1, args.size, args.size, device=args.device)
        row: dict[str, object] = {"model": name}
        for key, enable in (("plain", False), ("checkpointed", True)):
            model.set_grad_checkpointing(enable)
            row[f"{key}_mib"] = retained_bytes(model, frames, teacher) / 2**20
        seconds: dict[str, list[float]] = {"plain": [], "checkpointed": []}
        # interleaved, so that a change of the machine's load hits both
        for _ in range(args.repeat + 1 if args.repeat else 0):
            for key, enable in (("plain", False), ("checkpointed", True)):
                model.set_grad_checkpointing(enable)
                seconds[key].append(step_seconds(model, frames, teacher))
        for key, values in seconds.items():
            row[f"{key}_s"] = statistics.median(values[1:]) if values else float("nan")  # the first: warm-up
        row["memory_ratio"] = row["checkpointed_mib"] / row["plain_mib"]  # type: ignore[operator]
        row["time_ratio"] = row["checkpointed_s"] / row["plain_s"]  # type: ignore[operator]
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{name:16s} plain {row['plain_mib']:8.1f} MiB {row['plain_s']:6.2f}s | checkpointed "
                  f"{row['checkpointed_mib']:8.1f} MiB {row['checkpointed_s']:6.2f}s | memory "
                  f"{row['memory_ratio']:.2f} time {row['time_ratio']:.2f}", flush=True)


def step_seconds(model: msrnn_zoo.Forecaster, frames: torch.Tensor, teacher: torch.Tensor) -> float:
    if frames.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    prediction, aux = model.forward_train(frames, teacher)
    loss = (prediction - frames[:, 1:]).pow(2).mean() + (aux if aux is not None else 0)
    loss.backward()
    if frames.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cells", nargs="*")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--in-frames", type=int, default=5)
    parser.add_argument("--out-frames", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="timed steps (0: memory only, with --grad-checkpointing)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 keeps timings steady on a shared machine)")
    parser.add_argument("--json", action="store_true", help="Print one JSON object per cell.")
    parser.add_argument("--grad-checkpointing", action="store_true",
                        help="Compare each model (positional names: models) plain and with gradient checkpointing.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    frames_count = args.in_frames + args.out_frames
    teacher = torch.ones(args.batch, frames_count - 1, device=args.device)
    print(f"# {args.size}x{args.size}, hidden {args.hidden}, {args.in_frames}->{args.out_frames} frames, "
          f"batch {args.batch}, device {args.device}, torch threads {torch.get_num_threads()}")
    if args.grad_checkpointing:
        checkpointing_rows(args, teacher)
        return
    for cell in args.cells or msrnn_zoo.list_cells():
        row = {"cell": cell}
        for name in (cell, f"ms-{cell}"):
            model = msrnn_zoo.create(name, hidden_channels=args.hidden).to(args.device).train()
            frames = torch.rand(args.batch, frames_count, 1, args.size, args.size, device=args.device)
            memory = saved_bytes(model, frames, teacher)
            step_seconds(model, frames, teacher)  # warm-up
            seconds = statistics.median(step_seconds(model, frames, teacher) for _ in range(args.repeat))
            key = "ms" if name.startswith("ms-") else "single"
            row[f"{key}_mib"] = memory / 2**20
            row[f"{key}_s"] = seconds
        row["memory_ratio"] = row["ms_mib"] / row["single_mib"]
        row["time_ratio"] = row["ms_s"] / row["single_s"]
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{cell:12s} single {row['single_mib']:8.1f} MiB {row['single_s']:6.2f}s | "
                  f"ms {row['ms_mib']:8.1f} MiB {row['ms_s']:6.2f}s | "
                  f"ms/single memory {row['memory_ratio']:.2f} time {row['time_ratio']:.2f}", flush=True)


if __name__ == "__main__":
    main()
