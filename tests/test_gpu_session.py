"""benchmarks/gpu_session.sh, the one prepared call of a session with a GPU, in its CPU smoke mode: it cannot rot.

Without the shared tools (an empty TOOLS folder, as in a clone) the parts that need the original are skipped and
say so; every other part runs at tiny sizes and writes what the summary reads.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_the_gpu_session_script_runs_in_smoke_mode(tmp_path):
    out, tools = tmp_path / "out", tmp_path / "no-tools"
    tools.mkdir()
    env = {**os.environ, "SMOKE": "1", "DEVICE": "cpu", "PY": sys.executable, "OUT": str(out), "TOOLS": str(tools),
           "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh")], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert json.loads((out / "device.json").read_text())["models"] >= 16
    options = [json.loads(line) for line in (out / "options.jsonl").read_text().splitlines() if line.startswith("{")]
    assert [(r["model"], r["option"]) for r in options] == [("ms-convlstm", "plain"), ("ms-convlstm", "bf16")]
    assert all(r["train_s"] > 0 and r["forecast_fps"] > 0 for r in options)
    fast = [json.loads(line) for line in (out / "preciplstm_fast.jsonl").read_text().splitlines()
            if line.startswith("{")]
    assert {r["model"] for r in fast} == {"preciplstm", "predrnn"} and all("train_s" in r for r in fast)
    checkpointing = [json.loads(line) for line in (out / "grad_checkpointing.jsonl").read_text().splitlines()
                     if line.startswith("{")]
    assert [r["model"] for r in checkpointing] == ["ms-convlstm", "predrnn"]
    assert all(0 < r["memory_ratio"] < 1 for r in checkpointing)
    assert "ours:" in (out / "local_attention.txt").read_text()
    backwards = [json.loads(line) for line in (out / "joint_conv_backward.jsonl").read_text().splitlines()
                 if line.startswith("{")]
    assert [r["model"] for r in backwards] == ["ms-convlstm"]
    assert backwards[0]["hooks_kept_mib"] == backwards[0]["function_kept_mib"] < backwards[0]["concatenation_kept_mib"]
    batch16 = [json.loads(line) for line in (out / "batch16_graph.jsonl").read_text().splitlines()
               if line.startswith("{")]
    assert {r["model"] for r in batch16} == {"convlstm", "ms-convlstm"} and all("train_s" in r for r in batch16)
    graph = [json.loads(line) for line in (out / "preciplstm_graph.jsonl").read_text().splitlines()
             if line.startswith("{")]
    assert [r["model"] for r in graph][::2] == ["predrnn", "preciplstm", "ms-preciplstm"]
    bf16 = [json.loads(line) for line in (out / "batch16_graph_bf16.jsonl").read_text().splitlines()
            if line.startswith("{")]
    assert [r["option"] for r in bf16] == ["none+bf16"] * 2 and all("train_s" in r for r in bf16)
    eager = [json.loads(line) for line in (out / "preciplstm_eager.jsonl").read_text().splitlines()
             if line.startswith("{")]
    assert [r["model"] for r in eager] == ["predrnn", "preciplstm"] and all("train_s" in r for r in eager)
    levers = [json.loads(line) for line in (out / "gaps_batch16.jsonl").read_text().splitlines()
              if line.startswith("{")]
    assert [r["option"] for r in levers] == ["none", "none+compile-cells", "none+channels-last+compile-cells"] * 2
    assert all("train_s" in r and "forecast_fps" not in r for r in levers)  # --train-only: no forecast compiled
    tf32 = [json.loads(line) for line in (out / "preciplstm_tf32.jsonl").read_text().splitlines()
            if line.startswith("{")]
    assert [(r["model"], r["option"]) for r in tf32] == [("predrnn", "none+tf32"), ("preciplstm", "none+tf32")]
    kernels = [json.loads(line) for line in (out / "kernels.jsonl").read_text().splitlines() if line.startswith("{")]
    assert [r["config"] for r in kernels] == ["none+channels-last", "none+channels-last+bf16"]
    assert all("convolution" in r["kinds"] for r in kernels)
    skipped = (out / "skipped.txt").read_text()
    for part in ("gaps_fp32", "gaps_bf16", "vs_original_graph",
                 "vs_original_graph_bf16", "gpu_bench_b4", "gpu_bench_b16", "vs_original"):
        assert f"{part}: no " in skipped  # the original and its tools are missing here: said, not failed
    assert "status" not in skipped  # no part failed or ran out of time
    summary = (out / "summary.md").read_text()
    assert "| ms-convlstm | bf16 |" in summary and "| predrnn |" in summary
    assert "(no results: gpu_bench_b4.jsonl is missing or empty)" in summary
    assert "| convlstm | plain |" in summary and "x predrnn time" in summary  # batch 16 ms/single; PrecipLSTM
    assert "| preciplstm | plain |" in summary  # its eager step
    assert "| convlstm | none+channels-last+bf16 |" in summary  # where the step's time goes


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_the_comparisons_with_the_original_run_as_the_script_calls_them(tmp_path):
    """The parts beside the original, against a stand-in for it (tests/data/stand_in_tools): every configuration
    the script names is one the benchmark knows, and each gets its row."""
    out = tmp_path / "out"
    env = {**os.environ, "SMOKE": "1", "DEVICE": "cpu", "PY": sys.executable, "OUT": str(out),
           "TOOLS": str(ROOT / "tests" / "data" / "stand_in_tools"), "OMP_NUM_THREADS": "1",
           "ONLY_PARTS": "gaps_fp32,gaps_bf16"}
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh")], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name, configs in (("gaps_fp32", ["none", "none+compile-cells", "none+channels-last",
                                         "none+channels-last+compile-cells"]),
                          ("gaps_bf16", ["none+bf16", "none+bf16+channels-last",
                                         "none+bf16+channels-last+compile-cells"])):
        found = [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines() if line.startswith("{")]
        assert [r["config"] for r in found] == configs
        assert all(r["train_speedup"] > 0 and "forecast_speedup" not in r for r in found), found  # --train-only
    assert "status" not in (out / "skipped.txt").read_text()
    assert "| convlstm | none+bf16+channels-last+compile-cells |" in (out / "summary.md").read_text()


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("git") is None, reason="needs bash and git")
def test_prepare_replaces_only_a_gpu_folder_it_made(tmp_path):
    """The script runs from a copy of its checkout's layout: a user's .gpu (or a link) is refused and kept."""
    repo, original, tools = tmp_path / "repo", tmp_path / "original", tmp_path / "tools"
    (repo / "benchmarks").mkdir(parents=True)
    shutil.copy(ROOT / "benchmarks" / "prepare_gpu_session.sh", repo / "benchmarks")
    (repo / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\n')
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    original.mkdir()
    (original / "model.py").write_text("")
    tools.mkdir()
    for name in ("gpu_bench.py", "orig_env.py"):
        (tools / name).write_text("")

    def prepare():
        return subprocess.run(["bash", str(repo / "benchmarks" / "prepare_gpu_session.sh"), str(original),
                               str(tools)], env={**os.environ, "PY": sys.executable}, capture_output=True, text=True)

    (repo / ".gpu").mkdir()
    (repo / ".gpu" / "mine.txt").write_text("keep")
    refused = prepare()
    assert refused.returncode == 2 and "not made by this script" in refused.stdout
    assert (repo / ".gpu" / "mine.txt").read_text() == "keep"
    shutil.rmtree(repo / ".gpu")
    (repo / "elsewhere").mkdir()
    (repo / ".gpu").symlink_to(repo / "elsewhere")
    assert prepare().returncode == 2 and (repo / "elsewhere").is_dir()
    (repo / ".gpu").unlink()
    for _ in range(2):  # made, then replaced by the second run
        done = prepare()
        assert done.returncode == 0, done.stdout + done.stderr
    assert (repo / ".gpu" / "gpu_bench.py").is_file() and (repo / ".gpu" / "msrnn-original" / "model.py").is_file()
    assert (repo / "elsewhere").is_dir() and (repo / "benchmarks" / "prepare_gpu_session.sh").is_file()
