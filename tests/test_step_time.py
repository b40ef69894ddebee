"""benchmarks/step_time.py --kept-by-op: what each cell's equations oblige autograd to keep, in feature maps."""

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_kept_maps_follow_the_gates_of_each_cell():
    """Every sigmoid and tanh keeps its output: ConvLSTM's i, f, o and g, tanh(C) are 3 + 2 maps per layer and
    step, PredRNN's two memories 5 + 3, PrecipLSTM's four 9 + 5 (hence its memory against PredRNN's)."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "step_time.py"), "--kept-by-op", "--json",
                             "--size", "8", "--hidden", "4", "--in-frames", "3", "--out-frames", "2",
                             "convlstm", "predrnn", "preciplstm"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["model"]: r for r in map(json.loads, filter(None, result.stdout.splitlines()[1:]))}
    for model, sigmoid, tanh in (("convlstm", 3, 2), ("predrnn", 5, 3), ("preciplstm", 9, 5)):
        assert rows[model]["by_op"]["SigmoidBackward0"] == sigmoid and rows[model]["by_op"]["TanhBackward0"] == tanh
        assert rows[model]["maps_per_layer_step"] > sigmoid + tanh
        assert abs(sum(rows[model]["by_op"].values()) - rows[model]["maps_per_layer_step"]) < 1e-9



def step_time(monkeypatch, capsys, *args):
    """The script run in this process (its imports are this session's): its exit code, stdout and stderr."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.setattr(sys, "argv", ["step_time.py", *args])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(ROOT / "benchmarks" / "step_time.py"), run_name="__main__")
    out, err = capsys.readouterr()
    return stopped.value.code, out, err + (stopped.value.code if isinstance(stopped.value.code, str) else "")


def test_what_the_script_cannot_do_is_one_line_before_anything_runs(monkeypatch, capsys):
    """--device cuda without a GPU was PyTorch's traceback ("Found no NVIDIA driver"); two measurements named
    together ran one and dropped the other without a word; --repeat 0 outside the memory-only modes printed 'nan'
    seconds."""
    code, out, err = step_time(monkeypatch, capsys, "--grad-checkpointing", "--compile-cells", "convlstm")
    assert code == 2 and not out and "not allowed with argument" in err
    code, out, err = step_time(monkeypatch, capsys, "--repeat", "0", "convlstm")
    assert code == 2 and not out and "--repeat 0, memory only, goes with --grad-checkpointing" in err
    if not torch.cuda.is_available():
        code, out, err = step_time(monkeypatch, capsys, "--device", "cuda:7", "convlstm")
        assert not out and "--device cuda:7 was asked for, but PyTorch sees no CUDA device here" in err
