"""benchmarks/launches.py counts the operations that launch kernels: views and allocations count for nothing."""

import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from launches import count  # noqa: E402


def test_views_and_allocations_launch_nothing_and_each_computation_counts():
    x = torch.rand(4, 6)

    def step():
        y = x.view(6, 4).t()[1:]  # views
        torch.empty(3)
        (y + 1).sum()  # two computations
        torch.zeros(2)  # a fill

    assert count(step) == {"add": 1, "sum": 1, "zeros": 1}


def test_the_backward_pass_is_counted_too():
    w = torch.rand(3, requires_grad=True)
    forward_only = count(lambda: (w.detach() * 2).sum())
    with_backward = count(lambda: (w * 2).sum().backward())
    assert sum(with_backward.values()) > sum(forward_only.values())


def test_the_script_counts_our_models_without_the_original():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "launches.py"), "--size", "8", "--hidden", "2",
                             "--in-frames", "2", "--out-frames", "1", "convlstm", "ms-convlstm"],
                            capture_output=True, text=True, timeout=120, env={"PATH": "", "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert [line.split()[0] for line in lines] == ["convlstm", "ms-convlstm"]
    assert all("no ORIG set" in line and int(line.split()[2]) > 0 for line in lines)
