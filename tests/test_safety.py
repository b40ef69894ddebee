"""Nothing a user owns is ever deleted or overwritten: every option that replaces something is tested here
against what is *not* ours (the working directory, a parent, home, a folder without our marker, files beside
a run, files inside it), and a replacement that fails leaves the old run whole."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from msrnn_zoo.cli import main
from msrnn_zoo.io import RUN_MARKER, atomic_write, default_mode, make_sibling_dir, write_text

TINY = ("--hidden", "4", "--layers", "2", "--in-frames", "3", "--out-frames", "3", "--batch-size", "8",
        "--max-train-clips", "8", "--max-eval-clips", "4")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def train(clips, out, *extra):
    return invoke("train", "convlstm", "--data", clips, "--out", out, *TINY, *extra)


def snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under ``root`` with a hash of its bytes: to prove nothing changed."""
    tree = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        tree[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return tree


def without_locks(tree: dict[str, str]) -> dict[str, str]:
    """A snapshot less the runs' empty lock files, which taking a run's lock (to resume or replace it) creates."""
    return {k: v for k, v in tree.items() if Path(k).name != ".msrnn-zoo-lock"}


def refused(result, *words):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    for word in words:
        assert word in result.output, result.output


@pytest.fixture
def run_dir(tmp_path, clips_file):
    out = tmp_path / "runs" / "a"
    result = train(clips_file, out)
    assert result.exit_code == 0, result.output
    return out


def user_files(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thesis.tex").write_text("years of work")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "data.bin").write_bytes(b"\x00\x01")
    return folder


def test_force_never_replaces_the_working_directory(tmp_path, clips_file, monkeypatch):
    work = user_files(tmp_path / "work")
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    refused(train(clips_file, ".", "--force"), "working directory")
    refused(train(clips_file, work, "--force"), "working directory")
    assert snapshot(tmp_path) == before


def test_force_never_replaces_the_working_directory_even_when_it_is_a_run(run_dir, clips_file, monkeypatch):
    monkeypatch.chdir(run_dir)
    before = snapshot(run_dir.parent)
    refused(train(clips_file, ".", "--force"), "working directory")
    assert snapshot(run_dir.parent) == before


def test_force_never_replaces_a_parent_of_the_working_directory(tmp_path, clips_file, monkeypatch):
    user_files(tmp_path / "project")
    inner = tmp_path / "project" / "deep"
    inner.mkdir()
    (tmp_path / "project" / RUN_MARKER).write_text("{}")  # even a forged marker does not make a parent ours
    monkeypatch.chdir(inner)
    before = snapshot(tmp_path)
    refused(train(clips_file, "..", "--force"), "holds the working directory")
    refused(train(clips_file, "../..", "--force"), "holds the working directory")
    assert snapshot(tmp_path) == before


def test_force_never_replaces_home(tmp_path, clips_file, monkeypatch):
    home = user_files(tmp_path / "home")
    (home / RUN_MARKER).write_text("{}")
    monkeypatch.setenv("HOME", str(home))
    before = snapshot(tmp_path)
    refused(train(clips_file, home, "--force"), "home directory")
    assert snapshot(tmp_path) == before


def test_force_never_replaces_a_folder_without_our_marker(tmp_path, clips_file):
    mydata = user_files(tmp_path / "mydata")
    before = snapshot(tmp_path)
    refused(train(clips_file, mydata, "--force"), "no .msrnn-zoo-run marker")
    refused(train(clips_file, mydata), "already exists", "--force")
    assert snapshot(tmp_path) == before


def test_the_same_command_twice_is_told_how_to_continue_the_run_it_made(run_dir, clips_file):
    """Running ``train`` again over its own run (the most common second run) names --resume, and changes nothing."""
    before = snapshot(run_dir.parent)
    refused(train(clips_file, run_dir), "holds a run of msrnn-zoo train", f"--resume {run_dir}", "--force")
    assert snapshot(run_dir.parent) == before
    from msrnn_zoo.train import TrainConfig, Trainer

    cfg = TrainConfig.from_dict(json.loads((run_dir / "train_config.json").read_text()))
    with pytest.raises(FileExistsError, match=r"Trainer\.resume\(.*force=True"):
        Trainer.create(run_dir, cfg)


def test_force_never_replaces_a_file(tmp_path, clips_file):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    refused(train(clips_file, target, "--force"), "is a file")
    refused(train(clips_file, target), "is a file", "new or empty directory")
    assert target.read_text() == "mine"


def test_force_refuses_a_run_holding_files_we_did_not_write(run_dir, clips_file):
    (run_dir / "my-notes.md").write_text("mine")
    before = snapshot(run_dir.parent)
    refused(train(clips_file, run_dir, "--force"), "did not write", "my-notes.md")
    assert snapshot(run_dir.parent) == before


@pytest.mark.parametrize(("name", "content"), [
    ("README.md", "# my notes on this run"),
    ("metrics-test.json", '{"mine": 1}'),
    ("forecast.png", None),  # a picture of the user's: no mark of ours
    ("checkpoints/mynotes.txt", "mine"),
    ("checkpoints/step-00000002/notes.txt", "mine"),
    ("checkpoints/mine/x.txt", "mine"),
])
def test_force_refuses_a_users_file_under_a_name_of_ours(run_dir, clips_file, name, content):
    """Matching the names alone, --force deleted these with the run."""
    path = run_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        Image.new("L", (4, 4)).save(path)
    else:
        path.write_text(content)
    before = snapshot(run_dir.parent)
    refused(train(clips_file, run_dir, "--force"), "did not write", name.split("/")[0])
    assert snapshot(run_dir.parent) == before


def test_force_replaces_our_run_and_nothing_beside_it(run_dir, clips_file, tmp_path):
    beside = {run_dir.parent / name: name for name in ("a.bak", ".a.new", ".a.new-x", "a-old", ".a.old-1")}
    for path, text in beside.items():
        path.write_text(text)
    (run_dir / "metrics-test.json").write_text('{"forecasters": [], "frames": "future", "split": "test"}')  # ours
    others = snapshot(tmp_path / "runs")
    result = train(clips_file, run_dir, "--force", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert '"seed": 1' in (run_dir / "train_config.json").read_text()
    assert not (run_dir / "metrics-test.json").exists()  # the old run is gone as a whole
    for path, text in beside.items():
        assert path.read_text() == text
    after = snapshot(tmp_path / "runs")
    assert {k: v for k, v in after.items() if not k.startswith("a/")} == \
        {k: v for k, v in others.items() if not k.startswith("a/")}  # nothing new or lost beside the run


def test_bad_new_data_is_refused_before_the_old_run_is_touched(run_dir, clips_file, tmp_path):
    bad = np.load(clips_file).astype(np.float32) / 255
    bad[-1, -1, 0, 0] = np.nan  # the very last value: only a full scan finds it
    np.save(tmp_path / "bad.npy", bad)
    before = snapshot(tmp_path / "runs")
    refused(train(tmp_path / "bad.npy", run_dir, "--force"), "clip 39 contains NaN")
    assert snapshot(tmp_path / "runs") == before


def test_bad_data_anywhere_is_found_before_anything_is_written(tmp_path, clips_file):
    bad = np.load(clips_file).astype(np.float32) / 255
    bad[25, 2, 3, 3] = 1.5
    np.save(tmp_path / "bad.npy", bad)
    refused(train(tmp_path / "bad.npy", tmp_path / "new"), "must lie in [0, 1]")
    assert not (tmp_path / "new").exists()
    np.save(tmp_path / "empty.npy", np.zeros((0, 6, 16, 16), np.uint8))
    refused(train(tmp_path / "empty.npy", tmp_path / "new"), "no clips")
    np.save(tmp_path / "ints.npy", np.zeros((4, 6, 16, 16), np.int64))
    refused(train(tmp_path / "ints.npy", tmp_path / "new"), "dtype int64")
    np.save(tmp_path / "short.npy", np.zeros((4, 4, 16, 16), np.uint8))
    refused(train(tmp_path / "short.npy", tmp_path / "new"), "4 frames")
    assert not (tmp_path / "new").exists()


def test_a_new_run_that_fails_midway_leaves_the_old_run_whole(run_dir, clips_file, tmp_path, monkeypatch):
    from msrnn_zoo.train import Trainer

    calls = []

    def failing_step(self, clips):
        calls.append(1)
        raise FloatingPointError("The loss became nan at step 0; lower --lr or check the data for outliers.")

    monkeypatch.setattr(Trainer, "train_step", failing_step)
    before = snapshot(tmp_path / "runs")
    result = train(clips_file, run_dir, "--force")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: The loss became nan")
    assert calls and without_locks(snapshot(tmp_path / "runs")) == without_locks(before)  # no half-made sibling left


def test_the_python_api_replaces_the_same_way(run_dir, clips_file, tmp_path):
    from msrnn_zoo.train import TrainConfig, Trainer

    cfg = TrainConfig.from_dict(json.loads((run_dir / "train_config.json").read_text()))
    cfg.seed = 5
    cfg.max_train_clips = 16  # two steps, so that stopping after one leaves the new run unfinished
    with pytest.raises(FileExistsError, match="force=True"):
        Trainer.create(run_dir, cfg)
    before = snapshot(run_dir)
    trainer = Trainer.create(run_dir, cfg, force=True)
    assert trainer.run_dir != run_dir and trainer.run_dir.parent == run_dir.parent
    trainer.fit(stop_after=1)  # not complete: the old run is still in place
    assert without_locks(snapshot(run_dir)) == without_locks(before)
    trainer.fit()
    assert trainer.run_dir == run_dir and '"seed": 5' in (run_dir / "train_config.json").read_text()
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["a"]


def test_single_file_outputs_replace_only_the_file_they_name(run_dir, tmp_path):
    user_files(tmp_path / "mine")
    before = snapshot(tmp_path / "mine")
    refused(invoke("evaluate", run_dir, "--out", tmp_path / "mine", "--force"), "is a directory")
    refused(invoke("card", run_dir, "--repo-id", "me/a", "--out", tmp_path / "mine", "--force"), "is a directory")
    refused(invoke("predict", run_dir, "--out", tmp_path / "mine", "--force"), ".gif")
    assert snapshot(tmp_path / "mine") == before
    target = tmp_path / "mine" / "metrics.json"
    assert invoke("evaluate", run_dir, "--out", target).exit_code == 0
    refused(invoke("evaluate", run_dir, "--out", target), "already exists", "--force")
    assert "force=True" not in invoke("evaluate", run_dir, "--out", target).output
    assert invoke("evaluate", run_dir, "--out", target, "--force").exit_code == 0
    after = snapshot(tmp_path / "mine")
    assert {k: v for k, v in after.items() if k != "metrics.json"} == before


def test_force_replaces_only_a_file_of_the_kind_we_write(run_dir, tmp_path):
    """``--force`` names one file, and replaces it only if it is what the command writes and we wrote it: not the
    run's own config or weights, not the user's data, photo or README."""
    Image.new("L", (4, 4)).save(tmp_path / "photo.png")
    Image.new("L", (4, 4)).save(tmp_path / "photo.gif")
    (tmp_path / "README.md").write_text("# my project\n")
    np.save(tmp_path / "data.npy", np.zeros((2, 3), np.float32))
    protected = {p.name: p.read_bytes() for p in [*run_dir.iterdir(), *tmp_path.iterdir()] if p.is_file()}
    for name in ("config.json", "train_config.json", "latest.json"):
        refused(invoke("evaluate", run_dir, "--out", run_dir / name, "--force"), "not a metrics file that msrnn-zoo")
    refused(invoke("evaluate", run_dir, "--out", tmp_path / "data.npy", "--force"), "not a metrics file")
    refused(invoke("predict", run_dir, "--out", tmp_path / "photo.png", "--force"), "not a picture that msrnn-zoo")
    refused(invoke("predict", run_dir, "--out", tmp_path / "photo.gif", "--force"), "not a picture")
    refused(invoke("card", run_dir, "--repo-id", "me/a", "--out", tmp_path / "README.md", "--force"),
            "not a model card that msrnn-zoo wrote")
    for path in (run_dir / "model.safetensors", run_dir / "config.json"):
        with pytest.raises(FileExistsError, match="not a"):
            from msrnn_zoo.io import refuse_overwrite

            refuse_overwrite(path, True, "model" if path.suffix == ".safetensors" else "metrics file")
    assert {p.name: p.read_bytes() for p in [*run_dir.iterdir(), *tmp_path.iterdir()] if p.is_file()} == protected
    # what we wrote is ours to replace, again and again
    for _ in range(2):
        assert invoke("evaluate", run_dir, "--out", tmp_path / "m.json", "--force").exit_code == 0
        assert invoke("predict", run_dir, "--out", tmp_path / "f.gif", "--force").exit_code == 0
        assert invoke("card", run_dir, "--repo-id", "me/a", "--out", tmp_path / "card" / "README.md",
                      "--force").exit_code == 0


def test_force_never_writes_a_file_over_the_working_directory_or_its_parent(run_dir, tmp_path, monkeypatch):
    user_files(tmp_path / "work")
    monkeypatch.chdir(tmp_path / "work")
    before = snapshot(tmp_path / "work")
    for out in (".", ".."):
        refused(invoke("evaluate", run_dir, "--out", out, "--force"), "is a directory")
        refused(invoke("card", run_dir, "--repo-id", "me/a", "--out", out, "--force"), "is a directory")
    assert snapshot(tmp_path / "work") == before


def test_predict_never_writes_over_its_own_input(run_dir, tmp_path):
    """The forecast array goes beside the picture as NAME.npy: naming the picture after the input must not replace it,
    even with --force and even when the input looks like a forecast array."""
    context = tmp_path / "clip.npy"
    np.save(context, np.random.default_rng(0).random((3, 1, 16, 16), dtype=np.float32))
    before = context.read_bytes()
    refused(invoke("predict", run_dir, "--input", context, "--out", tmp_path / "clip.gif", "--force"),
            "over your --input")
    assert context.read_bytes() == before and not (tmp_path / "clip.gif").exists()


def test_predict_force_replaces_its_own_forecast_array_and_no_clip_of_the_users(run_dir, tmp_path):
    """A float32 (T, C, H, W) array was taken for a forecast: --force wrote over a clip named like the picture."""
    context = tmp_path / "context.npy"
    np.save(context, np.random.default_rng(0).random((3, 1, 16, 16), dtype=np.float32))
    mine = tmp_path / "mine.npy"
    np.save(mine, np.random.default_rng(1).random((3, 1, 16, 16), dtype=np.float32))
    before = snapshot(tmp_path)
    refused(invoke("predict", run_dir, "--input", context, "--out", tmp_path / "mine.gif", "--force"),
            "mine.npy already exists and is not a forecast array that msrnn-zoo wrote")
    assert snapshot(tmp_path) == before
    ours = tmp_path / "f.gif"
    for horizon in ("2", "4"):  # the second run replaces the first one's picture and array
        result = invoke("predict", run_dir, "--input", context, "--out", ours, "--horizon", horizon, "--force")
        assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "f.npy").shape == (4, 1, 16, 16)
    np.save(tmp_path / "f.npy", np.zeros((4, 1, 16, 16), dtype=np.float32))  # the user's now, though the PNG is ours
    refused(invoke("predict", run_dir, "--input", context, "--out", ours, "--force"), "not a forecast array")
    assert not np.load(tmp_path / "f.npy").any()


def test_save_pretrained_with_force_replaces_only_what_it_wrote(tmp_path):
    import msrnn_zoo

    model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=1)
    model.save_pretrained(tmp_path / "m")
    model.save_pretrained(tmp_path / "m", force=True)  # ours: replaced
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "config.json").write_text('{"name": "my project"}')
    with pytest.raises(FileExistsError, match="not a config that msrnn-zoo wrote"):
        model.save_pretrained(tmp_path / "p", force=True)
    assert (tmp_path / "p" / "config.json").read_text() == '{"name": "my project"}'
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["config.json"]


def test_predict_picks_the_format_from_the_suffix(run_dir, tmp_path):
    png = tmp_path / "pic.png"
    assert invoke("predict", run_dir, "--out", png, "--scale", "1").exit_code == 0
    with Image.open(png) as image:
        assert image.format == "PNG"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pic")) == ["pic.png"]
    refused(invoke("predict", run_dir, "--out", png), "already exists", "--force")
    gif = tmp_path / "anim.GIF"
    assert invoke("predict", run_dir, "--out", gif, "--scale", "1").exit_code == 0
    with Image.open(gif) as image:
        assert image.format == "GIF"
    refused(invoke("predict", run_dir, "--out", tmp_path / "pic.jpg"), "must end in .gif")
    refused(invoke("predict", run_dir, "--horizon", "0"), "--horizon")
    refused(invoke("predict", run_dir, "--horizon", "100000"), "--horizon")


def test_predict_checks_every_file_before_writing_any(run_dir, tmp_path):
    context = tmp_path / "context.npy"
    np.save(context, np.zeros((3, 16, 16), np.uint8))
    (tmp_path / "f.npy").write_text("an array the user already has")
    refused(invoke("predict", run_dir, "--input", context, "--out", tmp_path / "f.gif"), "f.npy", "already exists")
    assert not (tmp_path / "f.gif").exists() and not (tmp_path / "f.png").exists()


def test_evaluate_never_replaces_a_metrics_file_another_command_wrote_while_it_scored(run_dir, monkeypatch):
    """Two `evaluate` of one run at once (a quick --max-clips look beside the full one) both passed the check that
    no metrics file was there, and the one that finished last replaced the other's without a word."""
    import msrnn_zoo.evaluate

    metrics = run_dir / "metrics-test.json"
    evaluate_run = msrnn_zoo.evaluate.evaluate_run

    def another_command_finishes_first(*args, **kwargs):
        metrics.write_text('{"the other command": "its scores"}')
        return evaluate_run(*args, **kwargs)

    monkeypatch.setattr(msrnn_zoo.evaluate, "evaluate_run", another_command_finishes_first)
    result = invoke("evaluate", run_dir)  # the scores are printed; only the file is refused
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "metrics-test.json was written by another command" in " ".join(result.output.split()), result.output
    assert metrics.read_text() == '{"the other command": "its scores"}'
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_evaluate_writes_no_metrics_of_weights_a_checkpoint_replaced_while_it_scored(run_dir, monkeypatch):
    """`evaluate` of a run still training hashed model.safetensors after scoring: a checkpoint saved meanwhile gave
    the metrics the new weights' digest beside the old weights' scores, and `card` / `push` published them as the new
    weights' numbers. A run being trained is named as such."""
    from filelock import FileLock
    from safetensors.torch import load_file, save_file

    import msrnn_zoo.evaluate

    weights = run_dir / "model.safetensors"
    evaluate_run = msrnn_zoo.evaluate.evaluate_run

    def a_checkpoint_is_saved_meanwhile(*args, **kwargs):
        reports = evaluate_run(*args, **kwargs)
        state = {name: tensor + 1 for name, tensor in load_file(weights).items()}
        atomic_write(weights, lambda tmp: save_file(state, tmp, metadata={"library": "msrnn-zoo"}))
        return reports

    monkeypatch.setattr(msrnn_zoo.evaluate, "evaluate_run", a_checkpoint_is_saved_meanwhile)
    with FileLock(str(run_dir / ".msrnn-zoo-lock")):  # the `train --resume` of the run, in another process
        result = invoke("evaluate", run_dir)
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in said, said
    assert "is being trained right now" in said and "model.safetensors was replaced while it was scored" in said
    assert not (run_dir / "metrics-test.json").exists()
    monkeypatch.setattr(msrnn_zoo.evaluate, "evaluate_run", evaluate_run)
    result = invoke("evaluate", run_dir)  # trained no more: scored, and said as nothing else
    assert result.exit_code == 0 and "being trained" not in result.output, result.output
    assert (run_dir / "metrics-test.json").is_file()


def test_a_flush_that_finds_the_disk_full_keeps_the_old_file(tmp_path, monkeypatch):
    """NFS may take every write and report a full disk only at fsync: the file is not whole, and was renamed over
    the good one."""
    target = write_text(tmp_path / "config.json", "old")

    def fsync_failing(errno_: int):
        def fsync(fd):
            raise OSError(errno_, os.strerror(errno_))
        return fsync

    monkeypatch.setattr(os, "fsync", fsync_failing(errno.ENOSPC))
    with pytest.raises(OSError, match="The disk is full: .*config.json could not be written.*Free some space"):
        write_text(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["config.json"]  # no temporary file left
    monkeypatch.setattr(os, "fsync", fsync_failing(errno.EINVAL))  # a file system that cannot flush: written anyway
    assert write_text(target, "new").read_text() == "new"


def test_a_library_that_runs_out_of_space_is_said_to_have_filled_the_disk(tmp_path):
    """safetensors says it as a SafetensorError quoting "os error 28", which the CLI showed as a traceback."""
    from safetensors import SafetensorError

    target = write_text(tmp_path / "model.safetensors", "old")

    def save_file(tmp):
        tmp.write_bytes(b"half")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    with pytest.raises(OSError, match="The disk is full: .*model.safetensors could not be written") as raised:
        atomic_write(target, save_file)
    assert raised.value.errno == errno.ENOSPC
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["model.safetensors"]


def test_a_long_legal_name_is_written_and_replaced(tmp_path):
    """A name of 250 bytes is legal, but the hidden temporary beside it (``.NAME.XXXXXXXX.tmp``) was not: evaluate
    and predict failed after all their work, and train --force of such a run, with "File name too long"."""
    from msrnn_zoo.download import download_file
    from msrnn_zoo.io import swap_in
    from msrnn_zoo.train import interrupted_replacements

    name = "é" * 122 + ".json"  # 249 bytes
    write_text(tmp_path / name, "old")
    assert write_text(tmp_path / name, "new").read_text() == "new"
    source = tmp_path / "remote.bin"
    source.write_bytes(b"data")
    assert download_file(source.as_uri(), tmp_path / ("d" * 250), show_progress=False).read_bytes() == b"data"
    run = tmp_path / ("r" * 250)
    run.mkdir()
    (run / RUN_MARKER).write_text("old")
    new = make_sibling_dir(run, "new")
    (new / RUN_MARKER).write_text("new")
    assert interrupted_replacements(run) == [new]  # were it left by a kill, the next --force would find it
    swap_in(new, run, [RUN_MARKER])  # (the old run is set aside under a hidden name first)
    assert (run / RUN_MARKER).read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == sorted([name, "remote.bin", "d" * 250, "r" * 250])


def test_files_get_normal_permissions(tmp_path, run_dir):
    old = os.umask(0o022)
    try:
        written = atomic_write(tmp_path / "x.bin", lambda p: p.write_bytes(b"1"))
        assert stat.S_IMODE(written.stat().st_mode) == 0o644
        assert stat.S_IMODE(write_text(tmp_path / "y.txt", "y").stat().st_mode) == 0o644
    finally:
        os.umask(old)
    for name in ("model.safetensors", "config.json", "train_config.json", "latest.json", RUN_MARKER):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == default_mode(), name
    assert stat.S_IMODE(run_dir.stat().st_mode) == default_mode(directory=True)


def test_downloads_get_normal_permissions(tmp_path):
    from msrnn_zoo.download import download_file

    source = tmp_path / "remote.bin"
    source.write_bytes(b"data")
    old = os.umask(0o022)
    try:
        got = download_file(source.as_uri(), tmp_path / "data" / "file.bin", show_progress=False)
    finally:
        os.umask(old)
    assert got.read_bytes() == b"data" and stat.S_IMODE(got.stat().st_mode) == 0o644


def test_a_download_into_a_log_file_reports_lines(tmp_path, capsys):
    """stderr not a terminal (a batch job): lines at the start, every LOG_EVERY seconds and at the end, not a bar."""
    from msrnn_zoo.download import download_file

    source = tmp_path / "remote.bin"
    source.write_bytes(os.urandom(3_000_000))
    download_file(source.as_uri(), tmp_path / "file.bin")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "downloading file.bin: 0.1 of 3.0 MB"  # the first 64 KiB
    assert lines[-1] == "downloading file.bin: 3.0 of 3.0 MB"
    download_file(source.as_uri(), tmp_path / "again.bin", show_progress=False)
    assert capsys.readouterr().err == ""


def _parts_beside_a_download(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """A file to download (``b"data"``), the folder it goes to, and there the part file a killed download left and
    one that a download still running writes."""
    source = tmp_path / "remote.bin"
    source.write_bytes(b"data")
    folder = tmp_path / "data"
    folder.mkdir()
    killed = folder / ".file.bin.k1ll3d_x.part"
    killed.write_bytes(b"half a file")
    live = folder / ".file.bin.w0rk1ng_.part"
    live.write_bytes(b"being written")
    return source, folder, killed, live


def test_a_killed_download_leaves_no_temporary_file_after_the_next(tmp_path):
    """kill -9 mid-download left `.file.bin.XXXXXXXX.part` (up to the whole file: 800 MB for Moving MNIST's test
    set) and every later kill another; the next download deletes those, never one still being written."""
    fcntl = pytest.importorskip("fcntl")
    from msrnn_zoo.download import download_file

    source, folder, killed, live = _parts_beside_a_download(tmp_path)
    mine = [folder / ".file.bin.notes.part", folder / "file.bin.part", folder / ".other.bin.k1ll3d_x.part"]
    for path in mine:
        path.write_bytes(b"the user's")
    with live.open("rb") as writer:
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a download still running holds it
        assert download_file(source.as_uri(), folder / "file.bin", show_progress=False).read_bytes() == b"data"
    assert not killed.exists() and live.exists()
    assert all(path.read_bytes() == b"the user's" for path in mine)
    assert sorted(p.name for p in folder.iterdir()) == sorted([live.name, "file.bin", *(p.name for p in mine)])


def test_without_fcntl_a_download_clears_what_a_killed_one_left_and_not_a_file_still_open(tmp_path, monkeypatch):
    """Windows has no fcntl: there a file a running download holds open cannot be deleted, which tells it from one
    a killed download left (deleted, as under the lock on POSIX)."""
    import msrnn_zoo.download
    from msrnn_zoo.download import download_file

    monkeypatch.setattr(msrnn_zoo.download, "fcntl", None)
    source, folder, _, live = _parts_beside_a_download(tmp_path)
    unlink = Path.unlink

    def as_windows(path, missing_ok=False):  # another process holds it open
        if path == live:
            raise PermissionError(13, "The process cannot access the file because it is being used by another "
                                      "process", str(path))
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", as_windows)
    assert download_file(source.as_uri(), folder / "file.bin", show_progress=False).read_bytes() == b"data"
    assert sorted(p.name for p in folder.iterdir()) == sorted([live.name, "file.bin"])


def test_a_folder_in_the_way_of_a_download_is_found_before_it(tmp_path):
    """A folder named as the file failed only at the rename after the whole download: a bare [Errno 21]."""
    from msrnn_zoo.download import download_file

    source = tmp_path / "remote.bin"
    source.write_bytes(b"data")
    (tmp_path / "data" / "file.bin").mkdir(parents=True)
    (tmp_path / "data" / "file.bin" / "mine.txt").write_text("mine")
    with pytest.raises(IsADirectoryError, match="a folder of that name is in the way; move it away"):
        download_file(source.as_uri(), tmp_path / "data" / "file.bin", show_progress=False)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["file.bin"]
    assert (tmp_path / "data" / "file.bin" / "mine.txt").read_text() == "mine"


def test_a_run_resumed_twice_at_once_is_refused_the_second_time(run_dir):
    """Two `train --resume` of one run both trained, each step twice in the history. The lock stands for the other
    process (an OS lock on its own open file, as that process would hold it)."""
    from filelock import FileLock

    before = snapshot(run_dir)
    with FileLock(str(run_dir / ".msrnn-zoo-lock")):
        refused(invoke("train", "--resume", run_dir, "--epochs", "2"), "being trained by another process")
        assert without_locks(snapshot(run_dir)) == without_locks(before)  # nothing written
    result = invoke("train", "--resume", run_dir, "--epochs", "2")  # free again
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    steps = [line["step"] for line in lines if "loss" in line]  # (not the validation lines)
    assert steps == sorted(set(steps))


def test_a_new_run_is_locked_while_it_trains(run_dir, tmp_path):
    """Only resumed and replaced runs were locked: a `train --resume` of a run being trained for the first time was
    accepted, and both processes trained into the folder at once (a `--force` could pull it from under it)."""
    from msrnn_zoo.train import TrainConfig, Trainer

    cfg = TrainConfig.from_dict(json.loads((run_dir / "train_config.json").read_text()))
    fresh = tmp_path / "runs" / "fresh"
    trainer = Trainer.create(fresh, cfg)  # as the first `train --out runs/fresh` holds it, before its first step
    try:
        refused(invoke("train", "--resume", fresh, "--epochs", "2"), "being trained by another process")
        assert not (fresh / "history.jsonl").exists()
        trainer.fit()
    finally:
        trainer._unlock()
    result = invoke("train", "--resume", fresh, "--epochs", "2")  # done: free again
    assert result.exit_code == 0, result.output


def test_a_run_made_in_the_folder_while_a_second_train_got_ready_is_not_written_over(run_dir, tmp_path, monkeypatch):
    """Two `train --out runs/new` started at once both found the folder new; the first trained its run and let the
    lock go before the second took it, and the second wrote its config over the finished run and trained into it."""
    import shutil

    import msrnn_zoo.train

    fresh = tmp_path / "runs" / "fresh"
    check_run_dir = msrnn_zoo.train.check_run_dir

    def the_first_one_finishes_meanwhile(*args, **kwargs):
        replace = check_run_dir(*args, **kwargs)
        shutil.copytree(run_dir, fresh)
        return replace

    monkeypatch.setattr(msrnn_zoo.train, "check_run_dir", the_first_one_finishes_meanwhile)
    clips = json.loads((run_dir / "train_config.json").read_text())["data"]
    before = snapshot(run_dir)
    result = train(clips, fresh, "--epochs", "2")
    refused(result, f"{fresh} holds a run of msrnn-zoo train already", "train --resume")
    assert without_locks(snapshot(fresh)) == without_locks(before)


def test_a_fit_stopped_by_stop_after_takes_the_run_lock_again(run_dir, tmp_path):
    """fit(stop_after=N) lets the run's lock go (so that the run may be resumed); a second fit() of the same Trainer
    then trained on without it, beside a resume of the run that had taken it meanwhile."""
    from msrnn_zoo.train import TrainConfig, Trainer

    cfg = TrainConfig.from_dict(json.loads((run_dir / "train_config.json").read_text()))
    cfg.max_train_clips = 16  # two steps
    fresh = tmp_path / "runs" / "fresh"
    trainer = Trainer.create(fresh, cfg)
    trainer.fit(stop_after=1)
    other = Trainer.resume(fresh)  # holds the lock now, as a `train --resume` in another process would
    try:
        with pytest.raises(ValueError, match="being trained by another (process|Trainer)"):
            trainer.fit()
        assert len((fresh / "history.jsonl").read_text().splitlines()) == 1
    finally:
        other._unlock()
    trainer.fit()  # free again: it goes on, and holds the lock while it trains
    assert trainer.progress.step == 2 and not trainer._locks


def _killed_replacement(run_dir: Path, force_cfg_from: Path):
    """What a `train --force` of ``run_dir`` killed hard leaves: its new run half-built beside the old one, and no
    process holding its locks any more (the OS frees a killed process's locks, as ``_unlock`` does here)."""
    from msrnn_zoo.train import TrainConfig, Trainer

    cfg = TrainConfig.from_dict(json.loads((force_cfg_from / "train_config.json").read_text()))
    trainer = Trainer.create(run_dir, cfg, force=True)
    assert trainer.final_dir == run_dir and trainer.run_dir.name.startswith(f".{run_dir.name}.new-")
    trainer.save_checkpoint()
    return trainer


def test_a_replacement_killed_hard_is_removed_by_the_next_force_and_said(run_dir, clips_file):
    """A `train --force` killed hard (no chance to remove its new run) left `.a.new-XXXX` beside the run, which
    every later run ignored in silence. The next replacement of the run removes it, and says so; the user's own
    hidden folders of similar names stay."""
    left = _killed_replacement(run_dir, run_dir)
    left._unlock()
    half_built = left.run_dir
    users = run_dir.parent / ".a.new-mine"  # the user's: no run marker
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    result = train(clips_file, run_dir, "--force")
    assert result.exit_code == 0, result.output
    assert f"removed {half_built}" in " ".join(result.output.split())
    assert not half_built.exists() and (users / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in run_dir.parent.iterdir()) == [".a.new-mine", "a"]


def test_a_replacement_being_built_is_neither_removed_nor_raced(run_dir, clips_file):
    """While one `train --force` builds its new run (its locks held), a second one of the same run, and a resume of
    the run, are refused before they write; the one being built is untouched."""
    building = _killed_replacement(run_dir, run_dir)
    before = snapshot(run_dir.parent)
    try:
        refused(train(clips_file, run_dir, "--force"), "being trained by another process")
        refused(invoke("train", "--resume", run_dir, "--epochs", "2"), "being trained by another process")
        assert snapshot(run_dir.parent) == before
    finally:
        building._unlock()


def test_a_leftover_of_a_killed_replacement_is_only_named_where_no_run_is_replaced(run_dir, clips_file):
    """Killed in the middle of the swap (the old run set aside, the new one not yet in place): both leftovers are
    complete runs and no run is at the path, so a new run there keeps them and names them. A leftover holding a
    file of the user's is kept too, and named, even by a replacement."""
    import shutil

    aside = run_dir.parent / ".a.old-k1"
    shutil.move(run_dir, aside)
    result = train(clips_file, run_dir)
    assert result.exit_code == 0, result.output
    assert f"{aside} was left by a replacement" in " ".join(result.output.split())
    assert (aside / "model.safetensors").is_file()
    (aside / "notes.txt").write_text("mine")
    result = train(clips_file, run_dir, "--force")
    assert result.exit_code == 0, result.output
    assert f"{aside} was left by a replacement" in " ".join(result.output.split())
    assert (aside / "notes.txt").read_text() == "mine"
