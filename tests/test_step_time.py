"""benchmarks/step_time.py --kept-by-op: what each cell's equations oblige autograd to keep, in feature maps."""

import json
import subprocess
import sys
from pathlib import Path

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
