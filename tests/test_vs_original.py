"""benchmarks/vs_original.py: several configurations of ours beside one original, one row each.

The original's code is not part of a clone, so a stand-in with its calling convention (tests/data/stand_in_tools)
takes its place: what is tested is the script's bookkeeping.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _common  # noqa: E402
import vs_original  # noqa: E402

TOOLS = ROOT / "tests" / "data" / "stand_in_tools"  # orig_env.py: the original's calling convention


def run(*args):
    env = {**os.environ, "ORIG": str(TOOLS / "msrnn-original"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "vs_original.py"), "--tools", str(TOOLS),
                             "--size", "8", "--hidden", "2", "--in-frames", "2", "--out-frames", "2", "--batch", "1",
                             "--repeat", "2", "--json", *args], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_each_configuration_gets_its_row_beside_the_same_original():
    configs = ("plain", "cpu-contiguous", "zero-states+fp16", "grad-checkpointing+compile-cells")
    rows = run("--configs", ",".join(configs), "--cells-backend", "aot_eager", "convlstm", "trajgru")
    by = {(r["model"], r["config"]): r for r in rows}
    assert list(by) == [("convlstm", c) for c in configs] + [("trajgru", c) for c in configs]
    for config in configs:
        row = by[("convlstm", config)]
        assert row["train_speedup"] > 0 and row["ours_train_s"] > 0 and row["original_train_s"] > 0
        assert row["ours_forecast_fps"] > 0 and row["warmup_s"] > 0
    assert by[("convlstm", "zero-states+fp16")]["precision"] == "fp16"
    assert by[("convlstm", "grad-checkpointing+compile-cells")]["compile_cells"] is True
    assert all("the stand-in has no TrajGRU" in by[("trajgru", c)]["error"] for c in configs)  # the others still ran


def test_the_single_configuration_flags_name_one_configuration():
    flags = argparse.Namespace(fast_path="clip-graph", channels_last=False, compile_cells=True, precision="bf16")
    config = vs_original.flags_config(flags)
    assert config == "clip-graph+compile-cells+bf16"
    assert vs_original.described(config) == {"config": config, "fast_path": "clip-graph", "precision": "bf16",
                                              "channels_last": False, "compile_cells": True}
    plain = argparse.Namespace(fast_path="none", channels_last=False, compile_cells=False, precision="fp32")
    assert vs_original.described(vs_original.flags_config(plain))["fast_path"] == "none"


def test_a_mistyped_configuration_is_refused_before_anything_runs():
    with pytest.raises(SystemExit, match="unknown option 'compile-cell' in 'clip-graph\\+compile-cell'.*compile-cells"):
        _common.checked_configs("plain,clip-graph+compile-cell")
    with pytest.raises(SystemExit, match="an empty configuration"):
        _common.checked_configs("plain,,bf16")
    assert _common.checked_configs("plain,clip-graph+bf16") == ["plain", "clip-graph+bf16"]


def test_a_case_that_fails_in_the_rounds_is_reported_and_the_others_go_on():
    calls = {"fine": 0, "fails": 0}

    def fine():
        calls["fine"] += 1

    def fails():
        calls["fails"] += 1
        raise RuntimeError("CUDA out of memory")

    failed = {}
    times = _common.rounds({"fine": fine, "fails": fails}, 3, _common.Timer(_common.torch.device("cpu")), failed)
    assert len(times["fine"]) == 3 and times["fails"] == [] and calls == {"fine": 3, "fails": 1}
    assert failed == {"fails": "RuntimeError: CUDA out of memory"}
