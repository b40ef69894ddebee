"""benchmarks/launches.py counts the operations that launch kernels: views and allocations count for nothing."""

import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from launches import Traffic, count  # noqa: E402


def test_views_and_allocations_launch_nothing_and_each_computation_counts():
    x = torch.rand(4, 6)

    def step():
        y = x.view(6, 4).t()[1:]  # views
        torch.empty(3)
        (y + 1).sum()  # two computations
        torch.zeros(2)  # a fill

    assert count(step) == {"add": 1, "sum": 1, "zeros": 1}


def test_traffic_counts_the_bytes_of_activations_outside_products():
    x, y, w = torch.rand(4, 6), torch.rand(4, 6), torch.rand(6, 6)
    counter = Traffic({(6, 6)})
    with counter:
        z = x + y  # reads 2 x 96 bytes, writes 96
        z @ w  # a product: its time is arithmetic, counted by --flops
        w * 2  # a parameter's shape: weight-gradient bookkeeping, not activations
        x.t()  # a view
    assert counter.bytes == 3 * 4 * 6 * 4


def test_a_concatenation_of_other_dtypes_counts_a_copy_per_part_and_what_is_overwritten_is_not_read():
    """A GPU's cat concatenates parts of its result's dtype in one kernel and copies each part otherwise; a copy into
    a span (or a result given as ``out=``) writes it without reading it."""
    a, b = torch.rand(2, 3), torch.rand(2, 3).bfloat16()

    def step():
        torch.cat([a, a], 1)
        torch.cat([a, b], 1, out=torch.empty(0, dtype=torch.bfloat16))

    assert count(step) == {"cat": 1 + 2}
    counter = Traffic(set())
    with counter:
        torch.empty(2, 6).narrow(1, 0, 3).copy_(a)  # reads 24 bytes, writes 24
        torch.cat([a, b], 1, out=torch.empty(0, dtype=torch.bfloat16))  # reads 24 + 12, writes 24
    assert counter.bytes == 2 * 24 + 24 + 12 + 24


def test_the_backward_pass_is_counted_too():
    w = torch.rand(3, requires_grad=True)
    forward_only = count(lambda: (w.detach() * 2).sum())
    with_backward = count(lambda: (w * 2).sum().backward())
    assert sum(with_backward.values()) > sum(forward_only.values())


def test_the_script_counts_our_models_without_the_original():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "launches.py"), "--size", "8", "--hidden", "2",
                             "--in-frames", "2", "--out-frames", "1", "--traffic", "convlstm", "ms-convlstm"],
                            capture_output=True, text=True, timeout=120, env={"PATH": "", "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert [line.split()[0] for line in lines] == ["convlstm", "ms-convlstm"]
    assert all("no ORIG set" in line and int(line.split()[2]) > 0 for line in lines)
    assert all(float(line.split("element-wise GB ours ")[1].split()[0]) > 0 for line in lines)


def test_under_bf16_the_casts_are_counted_too():
    """``--precision bf16`` counts ours under autocast: every cast between float32 and bf16 is a kernel on a GPU."""
    counts = {}
    for precision in ("fp32", "bf16"):
        result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "launches.py"), "--size", "8", "--hidden",
                                 "2", "--in-frames", "2", "--out-frames", "1", "--precision", precision, "--json",
                                 "predrnn-pp"], capture_output=True, text=True, timeout=120,
                                env={"PATH": "", "PYTHONPATH": ""})
        assert result.returncode == 0, result.stderr
        counts[precision] = json.loads(result.stdout.splitlines()[-1])["ours"]
    assert counts["bf16"] > counts["fp32"] > 0


def test_recorded_counts_autocast_without_its_cache_and_needs_a_half_precision():
    """``--recorded`` counts a bf16 step as a clip recording runs it: autocast's cache of cast weights is off there,
    so the convolutions outside the joint ones (the read-out head, the first step's) cast their weights at every
    call."""
    script = [sys.executable, str(ROOT / "benchmarks" / "launches.py"), "--size", "8", "--hidden", "2",
              "--in-frames", "2", "--out-frames", "2", "--json"]
    counts = {}
    for extra in ([], ["--recorded"]):
        result = subprocess.run([*script, "--precision", "bf16", *extra, "convlstm"], capture_output=True, text=True,
                                timeout=120, env={"PATH": "", "PYTHONPATH": ""})
        assert result.returncode == 0, result.stderr
        counts[bool(extra)] = json.loads(result.stdout.splitlines()[-1])["ours"]
    assert counts[True] > counts[False] > 0
    refused = subprocess.run([*script, "--recorded", "convlstm"], capture_output=True, text=True, timeout=120,
                             env={"PATH": "", "PYTHONPATH": ""})
    assert refused.returncode == 2 and "give it --precision bf16 or fp16" in refused.stderr


def test_compiled_cells_casts_are_counted_with_the_clips_weight_copies_and_without():
    """``--compile-cells`` counts the casts in the graphs of compiled cells under bf16: handed the clip's copies,
    each of the five upper layers' ConvLSTM weight is cast once per clip instead of twice per call (the forward's
    cast and the backward's), over the three steps of a 2 -> 2 clip."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "launches.py"), "--size", "8", "--hidden", "2",
                             "--in-frames", "2", "--out-frames", "2", "--precision", "bf16", "--recorded",
                             "--compile-cells", "--json", "convlstm"], capture_output=True, text=True, timeout=300,
                            env={"PATH": "", "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout.splitlines()[-1])
    weights, steps = 5, 3
    assert row["compiled_casts"] > 0
    assert row["compiled_casts_float32_weights"] - row["compiled_casts"] == 2 * weights * steps - weights
    refused = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "launches.py"), "--compile-cells", "--flops",
                              "convlstm"], capture_output=True, text=True, timeout=120,
                             env={"PATH": "", "PYTHONPATH": ""})
    assert refused.returncode == 2 and "counts only the casts of compiled cells" in refused.stderr
