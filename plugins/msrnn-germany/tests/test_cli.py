"""End to end through the command line: prepare, info, train one epoch, evaluate with the precipitation scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from germany_files import numbered_frames, write_pngs
from msrnn_germany import lagrangian

from msrnn_zoo.testing import run_cli as run


@pytest.fixture
def png_source(tmp_path: Path) -> Path:
    """Two train clips and one test clip of MS-RNN PNGs with a moving bright square (so rain is present)."""
    frames = numbered_frames(180)
    for n, frame in enumerate(frames):
        frame[:] = 60
        x = (n // 6 * 5) % 100
        frame[40:70, x:x + 20] = 200  # ~57 dBZ: heavy rain; the background ~6 dBZ is below 0.5 mm/h
    source = tmp_path / "raw"
    write_pngs(source / "train", frames[:120])
    write_pngs(source / "test", frames[120:])
    return source


def test_prepare_info_train_evaluate(png_source: Path, tmp_path: Path) -> None:
    root = tmp_path / "store"
    assert "Prepared germany" in run("data", "prepare", "germany", "--source", png_source, "--root", root).output
    again = run("data", "prepare", "germany", "--source", png_source, "--root", root, ok=False)
    assert again.exit_code == 1 and "--force" in again.output
    run("data", "prepare", "germany", "--source", png_source, "--root", root, "--force")

    info = run("data", "info", "germany", "--root", root)
    assert "paper" in info.output and "load_hko.py" in info.output and "openstl" in info.output.lower()
    described = json.loads(run("data", "info", "germany", "--root", root, "--json").output)
    assert described["clips"]["paper"] == {"train": 2, "val": 1, "test": 1}
    assert described["unit"] == "mm/h" and "GeoNutzV" in described["license"]

    rundir = tmp_path / "run"
    run("train", "ms-convlstm", "--dataset", "germany", "--root", root, "--out", rundir,
        "--hidden", "4", "--layers", "2", "--batch-size", "2")
    cfg = json.loads((rundir / "train_config.json").read_text())
    assert (cfg["protocol"], cfg["in_frames"], cfg["out_frames"]) == ("paper", 5, 5)

    result = run("evaluate", rundir)
    for label in ("CSI@0.5mm/h", "HSS@30mm/h", "POD@2mm/h", "FAR@10mm/h", "B-MSE", "B-MAE", "MAE [mm/h]"):
        assert label in result.output, label
    scores = json.loads((rundir / "metrics-test.json").read_text())
    expected = ["model", "copy-last-frame", "mean-frame", "blank"]
    if lagrangian.available():
        expected.append(lagrangian.NAME)
    assert scores["forecasters"] == expected
    model = scores["model"]["metrics"]
    assert len(model["csi_0.5"]["per_frame"]) == 5 and "nan_to_num" in model["csi_0.5"]["convention"]
    # the blank forecast never forecasts rain: POD 0 at every threshold where rain was observed
    assert scores["blank"]["metrics"]["pod_0.5"]["mean"] == 0.0
    assert scores["copy-last-frame"]["metrics"]["pod_0.5"]["mean"] > 0.0

    run("evaluate", rundir, "--frames", "all", "--out", tmp_path / "all.json")
    every = json.loads((tmp_path / "all.json").read_text())
    assert every["frames"] == "all" and len(every["model"]["metrics"]["hss_2"]["per_frame"]) == 9


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "info", "germany", "--root", "{tmp}/nothing"], "does not exist"),
        (["data", "info", "germany", "--root", "{raw}"], "never prepared"),
        (["data", "prepare", "germany", "--source", "{tmp}/nothing", "--root", "{tmp}/s"], "No raw germany files"),
        (["data", "prepare", "germany", "--source", "{tmp}", "--root", "{tmp}/s"], "expected names"),
        (["train", "ms-convlstm", "--dataset", "germany", "--root", "{raw}", "--out", "{tmp}/r"], "never prepared"),
        (["train", "ms-convlstm", "--dataset", "germany", "--protocol", "openstl", "--root", "{tmp}/s",
          "--out", "{tmp}/r"], "no protocol 'openstl'"),
    ],
)
def test_mistakes_are_one_red_line(png_source: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = run(*[a.format(tmp=tmp_path, raw=png_source) for a in args], ok=False)
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
