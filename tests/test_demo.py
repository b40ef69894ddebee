"""`make demo` stays runnable: its settings are read from the Makefile and run here on a few clips.

The demo's full run (about two minutes of training) is measured by hand and reported in the README; what a
test can guard is that the Makefile's command lines are valid and produce a run, metrics and pictures.
"""

import json
import re
import shlex
from pathlib import Path

from msrnn_zoo.testing import run_cli

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def make_variable(name: str) -> str:
    match = re.search(rf"^{name} \?= (.*)$", MAKEFILE.read_text(), flags=re.MULTILINE)
    assert match, f"{name} is not set in the Makefile"
    return match.group(1)


def invoke(*args: object) -> str:
    return run_cli(*args).output


def test_demo_commands_run_on_a_few_clips(tmp_path):
    model = make_variable("DEMO_MODEL")
    args = shlex.split(make_variable("DEMO_ARGS"))
    run = tmp_path / "run"
    # click keeps the last value of a repeated option: the demo's settings, on 16 clips for one epoch
    invoke("train", model, "--dataset", "moving-mnist", "--source", "synthetic", "--out", run, *args,
           "--epochs", "1", "--max-train-clips", "16", "--max-eval-clips", "4")
    config = json.loads((run / "train_config.json").read_text())
    assert config["protocol"] == "small" and (config["in_frames"], config["out_frames"]) == (5, 5)
    assert "best baseline" in invoke("evaluate", run)
    invoke("predict", run, "--out", tmp_path / "forecast.gif")
    assert (tmp_path / "forecast.png").is_file()


def test_demo_installs_what_it_runs():
    """The demo installs only DEMO_PLUGINS: they must hold the distributions of its model and its dataset."""
    installed = set()
    for folder in make_variable("DEMO_PLUGINS").split():
        project = (MAKEFILE.parent / folder / "pyproject.toml").read_text()
        installed.add(re.search(r'^name = "([^"]+)"', project, flags=re.MULTILINE).group(1))
    listing = json.loads(invoke("list", "--json"))
    model = next(m for m in listing["models"] if m["name"] == make_variable("DEMO_MODEL"))
    dataset = next(d for d in listing["datasets"] if d["name"] == "moving-mnist")
    distribution = {p["name"]: p["distribution"] for p in json.loads(invoke("plugins", "--json"))}
    assert {distribution[model["plugin"]], distribution[dataset["plugin"]]} <= installed
