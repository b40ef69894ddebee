"""`msrnn-zoo reproduce` end to end on Moving MNIST with a tiny budget, then pushed, pulled and compared."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from huggingface_hub import ModelCard

import msrnn_zoo
from msrnn_zoo import reproduce
from msrnn_zoo.cli import main


def test_reproduce_tiny_budget_then_push_and_pull(hub, tmp_path):
    out = tmp_path / "runs" / "a"
    result = CliRunner().invoke(main, [
        "reproduce", "ms-convlstm", "moving-mnist", "--source", "synthetic", "--budget-steps", "2",
        "--set", "hidden_channels=4", "--max-eval-clips", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "budget-limited from 10000" in result.output
    for name in ("README.md", "metrics.png", "forecast.png", "recipe.json", "profile.json", "metrics-test.json"):
        assert (out / name).is_file(), name
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["budget"]["limited"] and recipe["budget"]["steps"] == 2
    assert recipe["deviations"] == {"hidden_channels": {"recipe": 64, "used": 4},
                                    "source": {"recipe": "generated", "used": "synthetic"}}
    train = json.loads((out / "train_config.json").read_text())
    assert (train["lr"], train["batch_size"], train["seed"], train["epochs"], train["max_train_clips"]) == (
        3e-4, 4, 2022, 1, 8)
    card = (out / "README.md").read_text()
    assert "Budget-limited: trained 2 steps" in card and "hidden_channels 4 (recipe: 64)" in card
    assert str(tmp_path) not in card and "pretrained=\"path/to/this/folder\"" in card
    assert "config.py: cfg.lstm_hidden_state = 64" in card  # every setting with its source
    # the dataset's line read "(MNIST handwriting from the `generated` source). Source `synthetic`."
    data_line = next(line for line in card.splitlines() if line.startswith("**moving-mnist**"))
    assert "Source `synthetic`" in data_line and "generated" not in data_line, data_line
    assert "--budget-steps 2 --max-eval-clips 4 --out a" in recipe_command(out)  # what the metrics scored

    pushed = CliRunner(env={"HF_TOKEN": "tok-me"}).invoke(main, ["push", str(out), "--repo-id", "me/ms-convlstm-mm"])
    assert pushed.exit_code == 0, pushed.output
    files = hub.state.repos["me/ms-convlstm-mm"].resolve("main").files
    card = ModelCard(files["README.md"].data.decode())
    assert {r.metric_type for r in card.data.eval_results} >= {"mse", "mae", "ssim", "psnr"}
    assert 'pretrained="me/ms-convlstm-mm"' in card.text
    assert str(tmp_path) not in files["recipe.json"].data.decode() + files["metrics-test.json"].data.decode()

    local = msrnn_zoo.create("ms-convlstm", pretrained=str(out)).eval()
    remote = msrnn_zoo.create("ms-convlstm", pretrained="me/ms-convlstm-mm").eval()
    frames = torch.rand(1, 10, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(remote(frames, horizon=10), local(frames, horizon=10))


def recipe_command(out):
    return json.loads((out / "recipe.json").read_text())["command"]


def test_reproduce_refuses_what_it_cannot_run(tmp_path):
    kth = "pass --root DIR" if "kth" in msrnn_zoo.list_datasets() else "no installed plugin registers that dataset"
    cases = [
        (["ms-convlstm", "kth", "--out", str(tmp_path / "k")], kth),
        (["ms-convlstm", "moving-mnist", "--source", "synthetic", "--set", "loss=mse", "--out", str(tmp_path / "x")],
         "--set cannot change loss"),
        (["ms-convlstm", "moving-mnist", "--budget-steps", "0", "--out", str(tmp_path / "x")],
         "--budget-steps must be at least 1"),
        (["ms-convlstm", "moving-mnist"], "--out runs/NAME"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(main, ["reproduce", *args])
        assert result.exit_code == 1 and message in result.output, result.output
        assert not (tmp_path / "x").exists()
    # a count that evaluation would refuse only after the whole training run is refused before it starts
    zero = CliRunner().invoke(main, ["reproduce", "ms-convlstm", "moving-mnist", "--source", "synthetic",
                                     "--max-eval-clips", "0", "--out", str(tmp_path / "x")])
    assert zero.exit_code == 1 and "--max-eval-clips" in zero.output and not (tmp_path / "x").exists()
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_eval_clips must be a whole number"):
            reproduce.reproduce("ms-convlstm", "moving-mnist", tmp_path / "x", source="synthetic",
                                max_eval_clips=bad)
        with pytest.raises(ValueError, match="max_eval_clips must be a whole number"):
            reproduce.resume(tmp_path / "x", max_eval_clips=bad)
    assert not (tmp_path / "x").exists()


def test_a_recipe_key_typed_as_one_argument_says_to_write_two(tmp_path):
    """The recipe table lists MODEL.DATASET keys; typed as one argument, the fix is the space, not a new name."""
    for args, command in ((["recipe", "ms-convlstm.kth"], "`msrnn-zoo recipe ms-convlstm kth`"),
                          (["reproduce", "ms-convlstm.moving-mnist", "--out", str(tmp_path / "a")],
                           f"`msrnn-zoo reproduce ms-convlstm moving-mnist --out {tmp_path / 'a'}`")):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1 and "two arguments" in result.output and command in result.output, result.output
    assert not (tmp_path / "a").exists()


def test_resume_of_a_missing_folder_or_a_file_says_so(tmp_path):
    """A mistyped --resume is named as missing, not as "not a run started by reproduce" to look into."""
    (tmp_path / "recipe.json").write_text("{}")
    for path, message in ((tmp_path / "nope", "does not exist"),
                          (tmp_path / "recipe.json", f"is a file, not a run directory: give the --out directory of an "
                                                     f"earlier `msrnn-zoo reproduce` ({tmp_path} is one)")):
        result = CliRunner().invoke(main, ["reproduce", "--resume", str(path)])
        assert result.exit_code == 1 and message in result.output and "no recipe.json" not in result.output, \
            result.output
    assert not (tmp_path / "nope").exists()
    trained = tmp_path / "trained"  # a run of `train`, given to reproduce --resume by mistake
    trained.mkdir()
    (trained / "train_config.json").write_text("{}")
    said = " ".join(CliRunner().invoke(main, ["reproduce", "--resume", str(trained)]).output.split())
    assert "no recipe.json). It is a run of `msrnn-zoo train`: continue it with `msrnn-zoo train --resume " in said


def test_reproducing_from_python_names_the_arguments_not_the_flags(tmp_path):
    """reproduce.reproduce, make_plan and resume told a notebook of --set, --budget-steps, --root and "the --out
    directory of an earlier `msrnn-zoo reproduce`": flags of a command it had not run. The CLI keeps its words."""
    (tmp_path / "recipe.json").write_text("{}")
    trained = tmp_path / "trained"
    trained.mkdir()
    (trained / "train_config.json").write_text("{}")
    cases = [
        (lambda: reproduce.make_plan("convlstm", "moving-mnist", source="synthetic", overrides={"loss": "mse"}),
         "overrides cannot change loss", "--set cannot change loss"),
        (lambda: reproduce.make_plan("convlstm", "moving-mnist", source="synthetic", overrides={"sampling": "x"}),
         "(or None: the cell's own)", '--set sampling="x": sampling must be one of scheduled, reverse, none (or null'),
        (lambda: reproduce.make_plan("convlstm", "moving-mnist", source="synthetic", budget_steps=0),
         "budget_steps must be at least 1", "--budget-steps must be at least 1"),
        (lambda: reproduce.resume(tmp_path / "nope"), "give the out directory of an earlier reproduce()",
         "give the --out directory of an earlier `msrnn-zoo reproduce`"),
        (lambda: reproduce.resume(tmp_path / "recipe.json"), "give the out directory of an earlier reproduce() (",
         "give the --out directory of an earlier `msrnn-zoo reproduce` ("),
        (lambda: reproduce.resume(trained), f"continue it with Trainer.resume({str(trained)!r}).fit()",
         f"continue it with `msrnn-zoo train --resume {trained}`")]
    if "kth" in msrnn_zoo.list_datasets():
        cases.append((lambda: reproduce.make_plan("ms-convlstm", "kth"),
                      "pass root=DIR (prepare it first: prepare_dataset('kth', source=RAW_FILES, root=DIR))",
                      "pass --root DIR (prepare it first: msrnn-zoo data prepare kth"))
    for attempt, words, flags in cases:
        with pytest.raises((ValueError, OSError)) as caught:
            attempt()
        assert words in str(caught.value), str(caught.value)
        assert "--" not in str(caught.value) and "msrnn-zoo" not in str(caught.value), str(caught.value)
        assert flags in caught.value.cli_message, caught.value.cli_message


def test_a_recipe_whose_dataset_has_no_plugin_names_the_plugins_records_to_python(monkeypatch):
    """make_plan sent a notebook to `msrnn-zoo plugins` to see what loaded; it now names msrnn_zoo.plugins.records(),
    and the CLI keeps the command."""
    from msrnn_zoo import registry

    def missing(name):
        raise ValueError(f"Unknown dataset {name!r}.")

    monkeypatch.setattr(registry, "get_dataset", missing)
    with pytest.raises(ValueError) as caught:
        reproduce.make_plan("convlstm", "moving-mnist", source="synthetic")
    assert "install its plugin (see msrnn_zoo.plugins.records())." in str(caught.value), str(caught.value)
    assert "install its plugin (see `msrnn-zoo plugins`)." in caught.value.cli_message


def test_an_occupied_out_is_refused_before_the_recipes_data_is_downloaded(tmp_path, monkeypatch):
    """The paper's Moving MNIST recipe downloads MNIST first: a run directory it may not use must stop it before."""
    from msrnn_zoo import datasets

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded before the run directory was checked")

    monkeypatch.setattr(datasets, "load_dataset", no_download)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    for args in (["--out", str(mine)], ["--out", str(mine), "--force"]):
        result = CliRunner().invoke(main, ["reproduce", "ms-convlstm", "moving-mnist", *args])
        assert result.exit_code == 1 and "downloaded before" not in result.output, result.output
        assert str(mine) in result.output
    with pytest.raises(FileExistsError, match="already exists and is not empty"):
        reproduce.reproduce("ms-convlstm", "moving-mnist", mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize(("given", "message"), [
    ({"overrides": {"num_layers": 5}}, "The mirror pyramid needs an even number of layers, got num_layers=5"),
    ({"overrides": {"kernel_size": 2}}, "kernel_size must be a positive odd number"),
    ({"device": "gpu"}, "--device gpu is not a device PyTorch knows"),
])
def test_a_model_or_device_train_would_refuse_is_refused_before_the_recipes_data_is_downloaded(
        given, message, monkeypatch):
    """These were refused only when the trainer built the model: after the paper's Moving MNIST recipe had
    downloaded MNIST, and after the command had announced the plan's steps."""
    from msrnn_zoo import datasets

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded before the model was checked")

    monkeypatch.setattr(datasets, "load_dataset", no_download)
    with pytest.raises(ValueError, match=message):
        reproduce.make_plan("ms-convlstm", "moving-mnist", **given)


def test_reproduce_force_builds_the_new_run_whole_beside_the_old(tmp_path):
    """The recipe file went into the old run while the new one was built beside it: the swapped-in run had none,
    and scoring it failed after the whole training ("No recipe file")."""
    out = tmp_path / "a"
    settings = dict(source="synthetic", budget_steps=1, max_eval_clips=2,
                    overrides={"hidden_channels": 4, "num_layers": 2})
    reproduce.reproduce("convlstm", "moving-mnist", out, **settings)
    assert json.loads((out / "recipe.json").read_text())["budget"]["steps"] == 1
    files = reproduce.reproduce("convlstm", "moving-mnist", out, force=True, **settings | {"budget_steps": 2})
    assert files["README.md"] == out / "README.md" and "trained 2 steps" in files["README.md"].read_text()
    assert json.loads((out / "recipe.json").read_text())["budget"]["steps"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # nothing left beside it


def test_reproduce_resume_refuses_what_it_would_ignore(tmp_path, monkeypatch):
    """`reproduce --resume RUN` finished the run as planned whatever else was typed (MODEL, --set, --budget-steps,
    --out...): each is refused by name before anything runs. A typed --device reaches the run, --device cpu too."""
    calls = []
    monkeypatch.setattr(reproduce, "resume", lambda out, **kwargs: calls.append(kwargs) or {})
    out = str(tmp_path / "a")
    for given, name in [(["ms-convlstm"], "MODEL"), (["ms-convlstm", "moving-mnist"], "MODEL, DATASET"),
                        (["--budget-steps", "3"], "--budget-steps"), (["--set", "seed=1"], "--set"),
                        (["--source", "synthetic"], "--source"), (["--root", str(tmp_path)], "--root"),
                        (["--out", str(tmp_path / "b")], "--out"), (["--force"], "--force")]:
        result = CliRunner().invoke(main, ["reproduce", *given, "--resume", out])
        line = " ".join(result.output.split())
        assert result.exit_code == 1 and f"it would ignore {name}: leave" in line, result.output
        assert "takes only --max-eval-clips, --device and --license" in line
    assert calls == [] and list(tmp_path.iterdir()) == []
    for device, expected in (([], None), (["--device", "cpu"], "cpu")):
        result = CliRunner().invoke(main, ["reproduce", "--resume", out, "--max-eval-clips", "2", *device])
        assert result.exit_code == 0, result.output
        assert (calls[-1]["device"], calls[-1]["max_eval_clips"]) == (expected, 2)


def test_reproduce_says_its_deviations_from_the_recipe_when_it_starts(tmp_path, monkeypatch):
    """`--set` changes were listed only in the card, after the whole run: now the first lines say them."""
    def stop(*args, **kwargs):
        raise ValueError("stopped before training")

    monkeypatch.setattr(reproduce, "start", stop)
    result = CliRunner().invoke(main, ["reproduce", "convlstm", "moving-mnist", "--source", "synthetic", "--set",
                                       "hidden_channels=2", "--set", "lr=0.01", "--out", str(tmp_path / "a")])
    said = " ".join(result.output.split())
    assert "stopped before training" in said, said
    assert "Deviates from the recipe: hidden_channels 2 (recipe: 64), lr 0.01 (recipe: 0.0003), source synthetic " \
           "(recipe: generated); the card records it." in said, said


def test_ctrl_c_of_a_reproduction_says_how_to_finish_it(tmp_path, monkeypatch, ctrl_c_at_step):
    """Ctrl-C during `reproduce` printed "Error: Aborted." and exited 1: not what was left, nor how to go on."""
    ctrl_c_at_step(1)
    out = tmp_path / "a"
    args = ["reproduce", "convlstm", "moving-mnist", "--source", "synthetic", "--budget-steps", "2", "--set",
            "hidden_channels=2", "--set", "num_layers=1", "--max-eval-clips", "2", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    said = " ".join(result.output.split())
    assert result.exit_code == 130 and "Interrupted after step 1, before the run's first checkpoint" in said, said
    assert f"with: msrnn-zoo reproduce --resume {out}" in said and "Aborted" not in said
    monkeypatch.undo()  # training steps as they are
    finished = CliRunner().invoke(main, ["reproduce", "--resume", str(out)])  # the hint works
    assert finished.exit_code == 0 and (out / "README.md").is_file(), finished.output


def test_an_out_holding_a_reproduction_says_to_resume_it_with_reproduce(tmp_path):
    """It said `msrnn-zoo train --resume`, which would train the rest but never score the run or write its card."""
    from msrnn_zoo.io import RUN_MARKER

    done = tmp_path / "rp a"
    done.mkdir()
    (done / RUN_MARKER).write_text("")
    (done / "recipe.json").write_text("{}")
    result = CliRunner().invoke(main, ["reproduce", "ms-convlstm", "moving-mnist", "--out", str(done)])
    line = " ".join(result.output.split())
    assert result.exit_code == 1 and f"msrnn-zoo reproduce --resume '{done}'" in line, result.output
    assert "train --resume" not in line
    with pytest.raises(FileExistsError, match=r"holds a reproduction already; continue it with reproduce\.resume"):
        reproduce.reproduce("ms-convlstm", "moving-mnist", done)
    (done / "recipe.json").unlink()  # a run of train: train --resume continues it
    result = CliRunner().invoke(main, ["reproduce", "ms-convlstm", "moving-mnist", "--out", str(done)])
    assert result.exit_code == 1 and "msrnn-zoo train --resume" in result.output
    assert sorted(p.name for p in done.iterdir()) == [RUN_MARKER]


@pytest.mark.parametrize(("setting", "rule"), [
    ({"batch_size": 0}, "{'batch_size': 0}: batch_size must be a whole number of at least 1"),  # was ZeroDivisionError
    ({"seed": -1}, "{'seed': -1}: seed must be a whole number from 0 to"),  # was accepted; train --seed -1 is refused
    ({"seed": 2**64}, "seed must be a whole number from 0 to 18446744073709551615"),
    ({"seed": 1.5}, "seed must be a whole number"),
    ({"lr": float("nan")}, "{'lr': nan}: lr must be a finite number above 0"),
    ({"lr": float("inf")}, "lr must be a finite number above 0"),
    ({"lr": 0}, "lr must be a finite number above 0"),
    ({"lr": "fast"}, "{'lr': 'fast'}: lr must be a finite number"),
    ({"hidden_channels": True}, "{'hidden_channels': True}: hidden_channels must be a whole number of at least 1"),
    ({"num_layers": -2}, "num_layers must be a whole number of at least 1"),
    ({"kernel_size": 0}, "kernel_size must be a whole number of at least 1"),
    ({"epochs": 0}, "epochs must be a whole number of at least 1"),
    ({"sampling": "bogus"}, "sampling must be one of scheduled, reverse, none"),
])
def test_set_values_follow_trains_rules(setting, rule):
    with pytest.raises(ValueError, match=rule.replace("(", r"\(")):
        reproduce.make_plan("convlstm", "moving-mnist", source="synthetic", overrides=setting)


def test_a_bad_set_value_is_one_red_line_before_anything_runs(tmp_path):
    out = tmp_path / "x"
    result = CliRunner().invoke(main, ["reproduce", "convlstm", "moving-mnist", "--source", "synthetic",
                                       "--set", "batch_size=0", "--out", str(out)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0] == "Error: --set batch_size=0: batch_size must be a whole number of at least 1."
    assert not out.exists()


def test_finishing_a_reproduction_again_keeps_a_card_the_user_edited(tmp_path):
    """`reproduce --resume` of a finished run scores it again and renders its card: a README.md edited after the
    reproduction wrote it was replaced without a word. It is refused before anything runs; an unedited card (local
    or rendered by `card --repo-id`) is still rendered again."""
    out = tmp_path / "a"
    reproduce.reproduce("convlstm", "moving-mnist", out, source="synthetic", budget_steps=1, max_eval_clips=1,
                        overrides={"hidden_channels": 2, "num_layers": 1})
    card = out / "README.md"
    edited = card.read_text() + "\nMy notes on this run.\n"
    card.write_text(edited)
    result = CliRunner().invoke(main, ["reproduce", "--resume", str(out)])
    line = " ".join(result.output.split())
    assert result.exit_code == 1 and "is not the card msrnn-zoo rendered for this run" in line, result.output
    assert f"then run `msrnn-zoo reproduce --resume {out}` again" in line
    with pytest.raises(FileExistsError, match=r"move it away \(it stays yours\), then call reproduce\.resume"):
        reproduce.resume(out)
    assert card.read_text() == edited
    assert CliRunner().invoke(main, ["card", str(out), "--repo-id", "me/a", "--force"]).exit_code == 0
    assert reproduce.resume(out, max_eval_clips=1)["README.md"] == card


def test_a_reproduction_keeps_the_license_it_was_started_with(tmp_path, monkeypatch):
    """`reproduce --license` is checked before training, its card claims it, and `--resume` (of a run stopped before
    its card, or finished) keeps it: the card rendered under it is recognised as msrnn-zoo's, not refused as edited."""
    result = CliRunner().invoke(main, ["reproduce", "ms-convlstm", "moving-mnist", "--out", str(tmp_path / "x"),
                                       "--license", "cc-by"])
    assert result.exit_code == 1 and "Did you mean" in result.output and not (tmp_path / "x").exists()
    out = tmp_path / "a"
    files = reproduce.reproduce("convlstm", "moving-mnist", out, source="synthetic", budget_steps=1, max_eval_clips=1,
                                overrides={"hidden_channels": 2, "num_layers": 1}, license="cc-by-nc-4.0")
    assert ModelCard(files["README.md"].read_text()).data.license == "cc-by-nc-4.0"
    result = CliRunner().invoke(main, ["reproduce", "--resume", str(out), "--max-eval-clips", "1"])
    assert result.exit_code == 0, result.output
    assert ModelCard((out / "README.md").read_text()).data.license == "cc-by-nc-4.0"
    assert reproduce.resume(out, max_eval_clips=1, license="mit")["README.md"] == out / "README.md"
    assert ModelCard((out / "README.md").read_text()).data.license == "mit"
    assert json.loads((out / "recipe.json").read_text())["card_license"] == "mit"


def test_scoring_a_reproduction_again_updates_the_count_its_command_names(tmp_path):
    """`reproduce --resume` of a finished run scores it again with the --max-eval-clips given then (or on every test
    clip): the card's command kept the first scoring's `--max-eval-clips 1` beside metrics over other clips."""
    out = tmp_path / "a"
    reproduce.reproduce("convlstm", "moving-mnist", out, source="synthetic", budget_steps=1, max_eval_clips=1,
                        overrides={"hidden_channels": 2, "num_layers": 1})
    assert "--max-eval-clips 1 --out a" in recipe_command(out)
    reproduce.resume(out, max_eval_clips=2)
    assert "--max-eval-clips 2 --out a" in recipe_command(out) and "--max-eval-clips 1" not in recipe_command(out)
    assert "--max-eval-clips 2 --out a" in (out / "README.md").read_text()


def test_a_reproduction_writes_its_metrics_and_card_before_printing_them(tmp_path):
    """`reproduce ... | head` ended the command at the scores' table: the metrics file and the card, the point of
    the whole training, were never written."""
    out = tmp_path / "a"

    def gone(reports):
        raise SystemExit(1)  # as rich ends a command whose pipe's reader has gone

    trainer = reproduce.start(reproduce.make_plan("convlstm", "moving-mnist", source="synthetic", budget_steps=1,
                                                  overrides={"hidden_channels": 2, "num_layers": 1}, out=out), out)
    trainer.fit()
    with pytest.raises(SystemExit):
        reproduce.finish(trainer, max_eval_clips=1, report=gone)
    assert (out / "metrics-test.json").is_file() and (out / "README.md").is_file()
