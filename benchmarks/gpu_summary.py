"""The tables of a ``benchmarks/gpu_session.sh`` run, in Markdown, from the files it wrote.

    python benchmarks/gpu_summary.py OUT_DIR

Ratios are within one file, so within one process and one device: ``speed-up`` is the original's median seconds
over ours (above 1: ours is faster), ``memory`` our peak over the original's, ``ms/single`` the multi-scale
model's seconds over its single-scale twin's, ``x first`` an option's seconds over the first option's (usually
plain). A file that is missing or empty (a part skipped or cut short) leaves its table out and says so.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path


def rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def number(value: object, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "–"


def bench_table(found: list[dict]) -> list[str]:
    timed = {(r["impl"], r["model"]): r for r in found if "model" in r and ("s" in r or "error" in r)}
    models = list(dict.fromkeys(model for _, model in timed))
    lines = ["| model | ours s | original s | speed-up | ours / original memory |", "|---|---:|---:|---:|---:|"]
    for model in models:
        ours, orig = timed.get(("ours", model), {}), timed.get(("orig", model), {})
        speedup = orig["s"] / ours["s"] if "s" in ours and "s" in orig else None
        memory = (ours["peak_mib"] / orig["peak_mib"]
                  if ours.get("peak_mib") and orig.get("peak_mib") else None)
        lines.append(f"| {model} | {number(ours.get('s', ours.get('error')))} | {number(orig.get('s'))} | "
                     f"{number(speedup, 2)} | {number(memory, 2)} |")
    return lines


def ms_table(found: list[dict]) -> list[str]:
    seconds = {r["model"]: r["s"] for r in found if r.get("impl") == "ours" and "s" in r}
    lines = ["| cell | single s | ms s | ms/single |", "|---|---:|---:|---:|"]
    for model, single in seconds.items():
        if not model.startswith("ms-") and f"ms-{model}" in seconds:
            ms = seconds[f"ms-{model}"]
            lines.append(f"| {model} | {number(single)} | {number(ms)} | {number(ms / single, 2)} |")
    return lines


def options_table(found: list[dict]) -> list[str]:
    lines = ["| model | option | warm-up s | train s | x first | forecast frames/s |", "|---|---|---:|---:|---:|---:|"]
    for r in found:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['option']} | error: {r['error'][:80]} | | | |")
        elif "option" in r:
            lines.append(f"| {r['model']} | {r['option']} | {number(r.get('warmup_s'), 1)} | "
                         f"{number(r.get('train_s'))} | {number(r.get('train_ratio'), 2)} | "
                         f"{number(r.get('forecast_fps'), 1)} |")
    return lines


def ms_options_table(found: list[dict]) -> list[str]:
    """Per option of ``options.py``: each multi-scale model's training step over its single-scale twin's."""
    seconds = {(r["option"], r["model"]): r["train_s"] for r in found if "train_s" in r}
    lines = ["| cell | option | single s | ms s | ms/single |", "|---|---|---:|---:|---:|"]
    for (option, model), single in seconds.items():
        ms = seconds.get((option, f"ms-{model}"))
        if not model.startswith("ms-") and ms is not None:
            lines.append(f"| {model} | {option} | {number(single)} | {number(ms)} | {number(ms / single, 2)} |")
    return lines


def against_first_table(found: list[dict]) -> list[str]:
    """Per option of ``options.py``: each model's training step and peak memory over the first model's."""
    timed = [r for r in found if "train_s" in r]
    first = {r["option"]: r for r in timed if r["model"] == timed[0]["model"]} if timed else {}
    lines = [f"| model | option | train s | x {timed[0]['model'] if timed else '-'} time | peak MiB | x memory |",
             "|---|---|---:|---:|---:|---:|"]
    for r in timed:
        base = first.get(r["option"], {})
        time_ratio = r["train_s"] / base["train_s"] if base else None
        memory_ratio = r["peak_mib"] / base["peak_mib"] if base.get("peak_mib") and r.get("peak_mib") else None
        lines.append(f"| {r['model']} | {r['option']} | {number(r['train_s'])} | {number(time_ratio, 2)} | "
                     f"{number(r.get('peak_mib'), 1)} | {number(memory_ratio, 2)} |")
    return lines


def columns_table(columns: list[tuple[str, str, int]]) -> Callable[[list[dict]], list[str]]:
    """A table of one row per model, one column per ``(title, key, digits)``."""
    def table(found: list[dict]) -> list[str]:
        lines = ["| model | " + " | ".join(title for title, _, _ in columns) + " |",
                 "|---|" + "---:|" * len(columns)]
        for r in found:
            model = r["model"] + (f" (error: {r['error'][:80]})" if "error" in r else "")
            lines.append(f"| {model} | " + " | ".join(number(r.get(key), digits) for _, key, digits in columns)
                         + " |")
        return lines
    return table


def configs_vs_original_table(found: list[dict]) -> list[str]:
    """``vs_original.py --configs``: one row per model and configuration of ours, beside the same original."""
    lines = ["| model | configuration | warm-up s | ours s | original s | speed-up | forecast speed-up |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in found:
        config = r.get("config", "-")
        if "error" in r:
            lines.append(f"| {r['model']} | {config} | error: {r['error'][:80]} | | | | |")
        else:
            lines.append(f"| {r['model']} | {config} | {number(r.get('warmup_s'), 1)} | "
                         f"{number(r.get('ours_train_s'))} | {number(r.get('original_train_s'))} | "
                         f"{number(r.get('train_speedup'), 2)} | "
                         f"{number(r.get('forecast_speedup'), 2)} |")
    return lines


KERNEL_KINDS = ("convolution", "layout", "element-wise", "cast or copy", "concatenation", "reduction",
                "fused (compiled)", "optimizer")


def kernels_table(found: list[dict]) -> list[str]:
    """``kernels.py``: per model and configuration, the step, how busy the device was, and ms (share) per kind."""
    lines = ["| model | configuration | step ms | busy | " + " | ".join(KERNEL_KINDS) + " | rest |",
             "|---|---|---:|---:|" + "---:|" * (len(KERNEL_KINDS) + 1)]
    for r in found:
        if "error" in r or "kinds" not in r:
            lines.append(f"| {r.get('model')} | {r.get('config')} | error: {str(r.get('error'))[:80]} |"
                         + " |" * (len(KERNEL_KINDS) + 2))
            continue
        kinds = r["kinds"]
        cells = [f"{kinds[k]['ms']:.2f} ({kinds[k]['share']:.0%})" if k in kinds else "–" for k in KERNEL_KINDS]
        rest = sum(v["ms"] for k, v in kinds.items() if k not in KERNEL_KINDS)
        lines.append(f"| {r['model']} | {r['config']} | {number(r.get('timed_step_ms'), 2)} | "
                     f"{number(r.get('busy_share'), 2)} | " + " | ".join(cells) + f" | {rest:.2f} |")
    return lines


forecast_table = columns_table([("ours frames/s", "ours_forecast_fps", 1),
                                ("original frames/s", "original_forecast_fps", 1), ("speed-up", "forecast_speedup", 2)])
fast_vs_original_table = columns_table([
    ("warm-up s", "warmup_s", 1), ("ours s", "ours_train_s", 3), ("original s", "original_train_s", 3),
    ("speed-up", "train_speedup", 2), ("ours frames/s", "ours_forecast_fps", 1),
    ("original frames/s", "original_forecast_fps", 1), ("forecast speed-up", "forecast_speedup", 2)])
checkpointing_table = columns_table([("plain MiB", "plain_mib", 1), ("checkpointed MiB", "checkpointed_mib", 1),
                                     ("memory ratio", "memory_ratio", 2), ("time ratio", "time_ratio", 2)])
backward_table = columns_table([("hooks s", "hooks_train_s", 4), ("function / hooks", "function/hooks", 3),
                                ("concatenation / hooks", "concatenation/hooks", 3),
                                ("hooks MiB", "hooks_kept_mib", 1), ("concatenation MiB", "concatenation_kept_mib", 1)])


SECTIONS = [
    ("Where the targets were missed, fp32: recorded clips with compiled cells, channels-last and both, beside the "
     "original, batch 4 (vs_original.py --configs)", "gaps_fp32.jsonl", configs_vs_original_table),
    ("Batch 16, recorded, the same configurations (benchmarks/options.py)", "gaps_batch16.jsonl", options_table),
    ("Where the recorded step's time goes: device ms per step (share of kernel time) by kind "
     "(benchmarks/kernels.py)", "kernels.jsonl", kernels_table),
    ("Batch 16, recorded, the same configurations: multi-scale against single-scale", "gaps_batch16.jsonl",
     ms_options_table),
    ("Where the targets were missed, bf16 autocast (the fastest path) beside the original in fp32, batch 4 "
     "(vs_original.py --configs)", "gaps_bf16.jsonl", configs_vs_original_table),
    ("PrecipLSTM against PredRNN, recorded, TF32 matrix products (options.py --options clip-graph+tf32)",
     "preciplstm_tf32.jsonl", against_first_table),
    ("Fast path clip-graph beside the original, batch 4, fp32 (vs_original.py --fast-path clip-graph)",
     "vs_original_graph.jsonl", fast_vs_original_table),
    ("Batch 16, plain and clip-graph (benchmarks/options.py)", "batch16_graph.jsonl", options_table),
    ("Batch 16: multi-scale against single-scale", "batch16_graph.jsonl", ms_options_table),
    ("Fast path clip-graph under bf16 autocast beside the original in fp32, batch 4 "
     "(vs_original.py --fast-path clip-graph --precision bf16)", "vs_original_graph_bf16.jsonl",
     fast_vs_original_table),
    ("Batch 16, clip-graph under bf16: multi-scale against single-scale", "batch16_graph_bf16.jsonl",
     ms_options_table),
    ("PrecipLSTM against PredRNN, plain and clip-graph (benchmarks/options.py)", "preciplstm_graph.jsonl",
     against_first_table),
    ("Training step, batch 4, fp32, ours and the original (gpu_bench.py)", "gpu_bench_b4.jsonl", bench_table),
    ("Training step, batch 4: multi-scale against single-scale", "gpu_bench_b4.jsonl", ms_table),
    ("Training step, batch 16: multi-scale against single-scale", "gpu_bench_b16.jsonl", ms_table),
    ("Speed options against the plain model (benchmarks/options.py)", "options.jsonl", options_table),
    ("PrecipLSTM and PredRNN, eager and compiled (benchmarks/options.py)", "preciplstm_fast.jsonl", options_table),
    ("PrecipLSTM against PredRNN, the eager step: the attention's samples stacked (benchmarks/options.py)",
     "preciplstm_eager.jsonl", against_first_table),
    ("Forecasting (benchmarks/vs_original.py)", "vs_original.jsonl", forecast_table),
    ("Gradient checkpointing (benchmarks/step_time.py --grad-checkpointing)", "grad_checkpointing.jsonl",
     checkpointing_table),
    ("The eager step's joint convolutions: backward by hooks, the Python function, or plain cat + conv2d "
     "(benchmarks/joint_conv.py --backward)", "joint_conv_backward.jsonl", backward_table),
]


def summary(out: Path) -> str:
    lines = []
    device = rows(out / "device.json")
    if device:
        lines.append(f"Device: {device[0].get('gpu') or 'cpu'}, torch {device[0].get('torch')}")
    for title, name, table in SECTIONS:
        found = rows(out / name)
        lines += ["", f"## {title}", ""]
        lines += table(found) if found else [f"(no results: {name} is missing or empty)"]
    skipped = out / "skipped.txt"
    if skipped.exists():
        lines += ["", "## Skipped or cut short", "", *(f"- {line}" for line in skipped.read_text().splitlines())]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        raise SystemExit("usage: python benchmarks/gpu_summary.py OUT_DIR (the folder gpu_session.sh wrote)")
    print(summary(Path(sys.argv[1])))
