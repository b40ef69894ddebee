"""Where a training step's time goes: device time by kind of kernel, and how much of the step the device is busy.

    python benchmarks/kernels.py --device cuda --size 64 --hidden 64 --in-frames 10 --out-frames 10 --batch 4 \
        [--configs clip-graph,clip-graph+bf16] [--repeat 3] [--top 5] [--json] [models ...]

The other benchmarks say how long a step takes; this one says what it is made of, so that the next change is
aimed at the largest part. Each model and configuration (the names of ``msrnn-zoo bench``) gets one eager step
(cuDNN chooses its algorithms), one step more (the warm-up: a recording or a compilation), then ``--repeat``
timed steps without the profiler and ``--repeat`` under it.

On a GPU the profiler's trace gives every kernel that ran, recorded clips included (a graph's replay runs its
kernels as any launch does). They are sorted into kinds by name: convolution (cuDNN's and CUTLASS's kernels),
layout conversions cuDNN makes around them (NCHW <-> NHWC), matrix products, attention, fused kernels of the
compiler (Triton), element-wise passes, casts and copies, concatenations, reductions, fills, the optimizer's
multi-tensor kernels. ``busy`` is the time at least one kernel runs, against the profiled step's wall time: what
is left is the device waiting for the host (launches, Python), the sign of a launch-bound step.

On the CPU the same kinds sort the operators' own time (the profiler's self time, the operators under it left
out), and what is left of the step is Python and autograd's bookkeeping outside any operator.

Only ratios within one run mean much: the profiler itself slows launches a little.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import _common
import torch

import msrnn_zoo
from msrnn_zoo import bench, compiled_cells

KINDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((kind, re.compile(pattern, re.IGNORECASE)) for kind, pattern in (
    # the order matters: a name takes the first kind that matches (cuDNN's layout kernels say "cudnn" too)
    ("layout", r"nchwToNhwc|nhwcToNchw|nchw2nhwc|nhwc2nchw|convertTensor|transpose_readWrite"),
    ("attention", r"flex_attention|triton_tem_fused|fmha|flash|sdpa|_efficient_attention|scaled_dot_product"),
    ("fused (compiled)", r"triton"),
    ("convolution", r"conv(?!ert)|fprop|dgrad|wgrad|implicit_gemm|winograd|cudnn|xmma|cask"),
    ("matrix product", r"gemm|gemv|cublas|cutlass|splitKreduce|aten::(mm|bmm|addmm|baddbmm|matmul|linear|einsum)\b"),
    ("views and allocations", r"aten::(empty|empty_like|empty_strided|resize_|slice|narrow|as_strided|as_strided_|"
                              r"split|split_with_sizes|chunk|select|reshape|_reshape_alias|view|_unsafe_view|"
                              r"unsqueeze|squeeze|permute|transpose|t|expand|detach|alias|unbind|flatten|unflatten|"
                              r"resolve_conj|resolve_neg|broadcast_tensors|lift_fresh)\b"),
    ("optimizer", r"multi_tensor_apply|_foreach|fused_adam|Optimizer\."),
    ("concatenation", r"CatArray|aten::cat\b"),
    ("cast or copy", r"copy|Memcpy|aten::(to|_to_copy|clone|contiguous)\b"),
    ("fill", r"Memset|fill|aten::(zero_|zeros|zeros_like|ones|ones_like|full)\b"),
    ("reduction", r"reduce_kernel|Reduce|aten::(sum|mean|norm|linalg_vector_norm|amax|amin|max|min|prod|std|var)\b"),
    ("element-wise", r"elementwise|aten::(add|add_|mul|mul_|sub|div|rsub|neg|sigmoid|tanh|sigmoid_backward|"
                     r"tanh_backward|addcmul|addcdiv|where|exp|log|pow|sqrt|rsqrt|clamp|abs|relu|lerp|mse_loss|"
                     r"mse_loss_backward|grid_sampler_2d|grid_sampler_2d_backward|softmax|_softmax|"
                     r"_softmax_backward_data|threshold_backward)\b"),
))


def kind_of(name: str, *, operator: bool = False) -> str:
    """The kind of a kernel, by its CUDA name, or with ``operator`` of a CPU profiler event: ``aten::`` operators
    by their names, every other event (autograd's nodes, Python-level ranges) ``host``, its own time bookkeeping
    rather than arithmetic."""
    if operator and not name.startswith("aten::"):
        return "host"
    for kind, pattern in KINDS:
        if pattern.search(name):
            return kind
    return "other"


def busy_us(intervals: Iterable[tuple[float, float]]) -> float:
    """Microseconds during which at least one of the ``(start, duration)`` intervals runs (streams overlap)."""
    total, end = 0.0, float("-inf")
    for start, duration in sorted(intervals):
        stop = start + duration
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def device_kernels(trace: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """``(name, start us, duration us)`` of every kernel, copy and fill on the device in a Chrome trace that
    ``torch.profiler`` exported."""
    return [(e["name"], float(e["ts"]), float(e.get("dur", 0.0))) for e in trace.get("traceEvents", [])
            if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]


def summarize(items: Iterable[tuple[str, float]], steps: int, step_us: float, busy: float, top: int, *,
              operators: bool = False) -> dict[str, Any]:
    """Per kind: milliseconds per step, share of the sorted time, count per step; the ``top`` names by time.
    ``items`` are ``(name, microseconds)`` of ``steps`` steps of ``step_us`` each; ``operators``: CPU events."""
    kinds: dict[str, list[float]] = {}
    names: dict[str, list[float]] = {}
    for name, us in items:
        for table, key in ((kinds, kind_of(name, operator=operators)), (names, name)):
            entry = table.setdefault(key, [0.0, 0])
            entry[0] += us
            entry[1] += 1
    total = sum(us for us, _ in kinds.values()) or 1.0
    return {
        "step_ms": step_us / 1e3,
        "sorted_ms": total / steps / 1e3,
        "busy_ms": busy / steps / 1e3,
        "busy_share": busy / (step_us * steps) if step_us else 0.0,
        "kinds": {kind: {"ms": us / steps / 1e3, "share": us / total, "per_step": count / steps}
                  for kind, (us, count) in sorted(kinds.items(), key=lambda kv: -kv[1][0])},
        "top": [{"name": name[:120], "ms": us / steps / 1e3, "per_step": count / steps}
                for name, (us, count) in sorted(names.items(), key=lambda kv: -kv[1][0])[:top]],
    }


def profile_steps(train: Callable[[], None], device: torch.device, steps: int, top: int) -> dict[str, Any]:
    """``steps`` training steps under the profiler, sorted by kind (see the module's docstring)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            train()
        if cuda:
            torch.cuda.synchronize(device)
        wall_us = (time.perf_counter() - start) * 1e6
    step_us = wall_us / steps
    if cuda:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "trace.json"
            prof.export_chrome_trace(str(path))
            kernels = device_kernels(json.loads(path.read_text()))
        summary = summarize(((name, dur) for name, _, dur in kernels), steps, step_us,
                            busy_us((ts, dur) for _, ts, dur in kernels), top)
        summary["profiled_with"] = "kernels"
        return summary
    own = [(e.key, e.self_cpu_time_total / e.count) for e in prof.key_averages() for _ in range(e.count)]
    summary = summarize(own, steps, step_us, sum(us for _, us in own), top, operators=True)
    summary["profiled_with"] = "operators' self time"
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*")
    parser.add_argument("--configs", default=None, help="configurations as msrnn-zoo bench names them, comma "
                        "separated (default: clip-graph,clip-graph+bf16 on a GPU, plain on the CPU)")
    parser.add_argument("--top", type=int, default=5, help="how many kernels or operators to name, by time")
    parser.add_argument("--cells-backend", default="inductor",
                        help="torch.compile backend of compile-cells (aot_eager: traced, not compiled; smoke tests)")
    _common.add_common_options(parser, batch=4, repeat=3, repeat_help="steps timed, then as many profiled")
    args = parser.parse_args()
    if args.repeat < 1 or args.top < 0:
        parser.error("--repeat must be at least 1 and --top at least 0")
    with compiled_cells.backend(args.cells_backend):
        measure(args)


def measure(args: argparse.Namespace) -> None:
    device, timer = _common.setup(args)
    configs = _common.checked_configs(args.configs or ("clip-graph,clip-graph+bf16" if device.type == "cuda"
                                                       else "plain"))
    print(_common.header(args, f", {args.repeat} steps profiled"), flush=True)
    for name in args.models or ["predrnn-pp", "predrnn", "convlstm"]:
        torch.manual_seed(0)
        base = msrnn_zoo.create(name, hidden_channels=args.hidden).to(device).train()
        frames, teacher = _common.clip(args, device)
        for config in configs:
            row: dict[str, Any] = {"model": name, "config": config}
            try:
                model, precision = bench.configured(base, config)
                train, _ = bench.model_steps(model, frames, teacher, args.in_frames, precision=precision)
                if device.type == "cuda":
                    bench.settle(model, train)
                train()  # the warm-up: a recording or compilation where the configuration has one
                row["timed_step_ms"] = bench.median(timer(train) for _ in range(args.repeat)) * 1e3
                row.update(profile_steps(train, device, args.repeat, args.top))
            except Exception as exc:  # one failing configuration keeps the others' rows
                row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            report(row, args.json)


def report(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(row), flush=True)
        return
    head = f"{row['model']} {row['config']}:"
    if "error" in row:
        print(f"{head} {row['error']}", flush=True)
        return
    if row["profiled_with"] == "kernels":
        if not row["kinds"]:
            print(f"{head} the profiler saw no kernel (does this CUDA's profiling interface trace them?)", flush=True)
            return
        what = (f"kernels {row['sorted_ms']:.2f} ms, the device busy {row['busy_ms']:.2f} ms "
                f"({row['busy_share']:.0%} of the step)")
    else:
        what = (f"operators' own time {row['sorted_ms']:.2f} ms ({row['busy_share']:.0%} of the step; the rest is "
                "Python outside any operator)")
    print(f"{head} step {row['timed_step_ms']:.2f} ms (profiled {row['step_ms']:.2f} ms); {what}")
    for kind, entry in row["kinds"].items():
        print(f"  {kind:22s} {entry['ms']:9.2f} ms {entry['share']:6.1%} {entry['per_step']:9.1f} per step")
    for entry in row["top"]:
        print(f"    {entry['ms']:9.2f} ms {entry['per_step']:8.1f}x  {entry['name']}")
    print(flush=True)


if __name__ == "__main__":
    main()
