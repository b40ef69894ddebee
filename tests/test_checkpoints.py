"""Checkpoints: the last K kept, flushed to disk before they are renamed into place, the loss log rolled back
with a resume, and a run extended to more epochs continuing the very run it would have been."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest
import torch

from msrnn_zoo.io import default_mode
from msrnn_zoo.train import Trainer, new_train_config


def config(clips_file, **kw):
    options = {"in_frames": 3, "out_frames": 3, "epochs": 2, "batch_size": 4, **kw}
    return new_train_config("ms-convlstm", model_options={"hidden_channels": 4, "num_layers": 2},
                            data=str(clips_file), **options)


def checkpoints(run):
    return sorted(p.name for p in (run / "checkpoints").iterdir())


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_the_last_k_checkpoints_are_kept(tmp_path, clips_file, keep):
    trainer = Trainer.create(tmp_path / "run", config(clips_file, epochs=1, checkpoint_every=2,
                                                      keep_checkpoints=keep))
    trainer.fit()  # 8 steps: checkpoints at 2, 4, 6, 8 (and 8 again at the epoch's end)
    expected = [f"step-{s:08d}" for s in (2, 4, 6, 8)][-keep:]
    assert checkpoints(tmp_path / "run") == expected
    assert json.loads((tmp_path / "run" / "latest.json").read_text())["name"] == expected[-1]


def test_default_keeps_two(tmp_path, clips_file):
    Trainer.create(tmp_path / "run", config(clips_file, checkpoint_every=3)).fit()
    assert len(checkpoints(tmp_path / "run")) == 2


def test_files_and_directories_are_flushed_before_the_rename(tmp_path, clips_file, monkeypatch):
    import msrnn_zoo.train as train_module

    trainer = Trainer.create(tmp_path / "run", config(clips_file, epochs=1))
    events = []
    monkeypatch.setattr(train_module, "fsync_path", lambda p: events.append(("fsync", str(p))))
    real_rename = type(tmp_path).rename
    monkeypatch.setattr(type(tmp_path), "rename", lambda self, t: (events.append(("rename", str(self))),
                                                                   real_rename(self, t))[1])
    trainer.fit(stop_after=1)
    rename = next(i for i, e in enumerate(events) if e[0] == "rename")
    flushed = {p for kind, p in events[:rename] if kind == "fsync"}
    tmp = events[rename][1]
    assert {f"{tmp}/model.safetensors", f"{tmp}/training_state.pt", tmp} <= flushed
    assert ("fsync", str(tmp_path / "run" / "checkpoints")) in events[rename:]
    for path in (tmp_path / "run" / "checkpoints").rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == default_mode(directory=path.is_dir()), path


def test_a_checkpoint_made_a_link_is_refused_before_training_and_its_target_is_untouched(tmp_path, clips_file):
    """A user who moved a checkpoint to another disk and left a link in its place: the first checkpoint of the
    resumed run then failed in shutil.rmtree, after it was saved, when it came to delete the old ones."""
    import shutil

    run = tmp_path / "run"
    Trainer.create(run, config(clips_file, checkpoint_every=2)).fit(stop_after=4)
    moved = tmp_path / "kept" / "step-00000002"
    shutil.move(run / "checkpoints" / "step-00000002", moved)
    (run / "checkpoints" / "step-00000002").symlink_to(moved, target_is_directory=True)
    before = sorted((p.name, p.stat().st_size) for p in moved.iterdir())
    with pytest.raises(ValueError, match=r"step-00000002 is a symbolic link .*move the link out of"):
        Trainer.resume(run)
    assert sorted((p.name, p.stat().st_size) for p in moved.iterdir()) == before
    assert (run / "checkpoints" / "step-00000002").is_symlink()
    assert json.loads((run / "latest.json").read_text())["step"] == 4  # nothing was trained
    # a link made while the run trains: saving the next checkpoint leaves it and its target alone
    trainer = Trainer.create(tmp_path / "other", config(clips_file, checkpoint_every=2, keep_checkpoints=1))
    trainer.fit(stop_after=2)
    (tmp_path / "other" / "checkpoints" / "step-00000000").symlink_to(moved, target_is_directory=True)
    trainer.save_checkpoint()
    assert sorted((p.name, p.stat().st_size) for p in moved.iterdir()) == before


def test_resume_rolls_the_loss_log_back_to_the_checkpoint(tmp_path, clips_file):
    run = tmp_path / "run"
    Trainer.create(run, config(clips_file, val_every=1)).fit(stop_after=5)
    with (run / "history.jsonl").open("a") as log:  # steps trained after the checkpoint, then a kill mid-line
        log.write('{"step": 6, "epoch": 0, "loss": 1.0}\n{"step": 7, "epoch": 0, "loss": 1.0}\n{"step": 8, "ep')
    resumed = Trainer.resume(run)
    assert [json.loads(line)["step"] for line in (run / "history.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]
    resumed.fit()
    lines = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "loss" in line] == list(range(1, 17))
    assert [line["step"] for line in lines if "val_loss" in line] == [8, 16]  # each epoch's validation, once


def test_one_epoch_resumed_to_two_equals_two_epochs_straight(tmp_path, clips_file):
    # scheduled sampling over 12 steps: a horizon fixed for the run, not recomputed from the epochs
    straight = Trainer.create(tmp_path / "straight", config(clips_file, epochs=2, sampling_steps=12))
    straight_losses = straight.fit()
    short = Trainer.create(tmp_path / "short", config(clips_file, epochs=1, sampling_steps=12))
    short.fit()
    extended = Trainer.resume(tmp_path / "short", epochs=2)
    assert extended.fit() == straight_losses
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, extended.model.state_dict()[key]), key
    assert (tmp_path / "short" / "history.jsonl").read_text() == (tmp_path / "straight" / "history.jsonl").read_text()


def test_the_schedule_horizon_is_fixed_when_the_run_is_created(tmp_path, clips_file):
    run = tmp_path / "run"
    Trainer.create(run, config(clips_file, epochs=1)).fit()
    assert json.loads((run / "train_config.json").read_text())["sampling_steps"] == 8  # one epoch of 8 steps
    extended = Trainer.resume(run, epochs=3)
    assert extended.sampling_steps == 8 and extended.total_steps == 24
    assert json.loads((run / "train_config.json").read_text())["sampling_steps"] == 8


def test_a_run_from_before_the_horizon_was_stored_keeps_its_planned_schedule(tmp_path, clips_file):
    run = tmp_path / "run"
    Trainer.create(run, config(clips_file, epochs=1)).fit()
    cfg = json.loads((run / "train_config.json").read_text())
    del cfg["sampling_steps"], cfg["keep_checkpoints"]
    (run / "train_config.json").write_text(json.dumps(cfg))
    assert Trainer.resume(run, epochs=2).sampling_steps == 8


def test_a_run_whose_data_changed_since_it_was_made_is_not_resumed(tmp_path, clips_file):
    """A clip file replaced by a larger one (or a store prepared again) was resumed in silence: a run planned as 16
    steps over 32 clips went on to 160 over other clips, and its card said so as if it were the run it began as."""
    import io

    import numpy as np

    run = tmp_path / "run"
    Trainer.create(run, config(clips_file)).fit(stop_after=5)
    kept = clips_file.read_bytes()
    before = {name: (run / name).read_text() for name in ("history.jsonl", "train_config.json", "latest.json")}
    np.save(clips_file, np.zeros((400, 6, 16, 16), dtype=np.uint8))
    with pytest.raises(ValueError, match="was trained on 32 training clips, but its data .* now gives 320: it changed"):
        Trainer.resume(run)
    assert {name: (run / name).read_text() for name in before} == before
    # other clips of the same number and shape (another file of the same recording, a store prepared from other
    # files): the count said nothing, and the run trained on over them
    np.save(clips_file, 255 - np.load(io.BytesIO(kept)))
    with pytest.raises(ValueError, match="still gives 32, but other ones .*: it changed since the run was made"):
        Trainer.resume(run)
    assert {name: (run / name).read_text() for name in before} == before
    clips_file.write_bytes(kept)  # the data it trained on, back: the run goes on
    assert Trainer.resume(run).fit()[-1] == pytest.approx(Trainer.create(tmp_path / "b", config(clips_file)).fit()[-1])


def test_a_kill_before_the_runs_weights_are_replaced_leaves_no_finished_run_with_older_weights(tmp_path, clips_file,
                                                                                               monkeypatch):
    """latest.json was replaced before the run's model.safetensors: killed between the two at the last checkpoint, the
    run was finished for `--resume` while `evaluate` and `push` took the weights of the checkpoint before."""
    import msrnn_zoo.train as train

    straight = Trainer.create(tmp_path / "a", config(clips_file, checkpoint_every=3)).fit()
    real = train.atomic_write

    def killed_at_the_last(path, write):
        if path.name == "model.safetensors" and json.loads((tmp_path / "b" / "history.jsonl").read_text()
                                                           .splitlines()[-1])["step"] == 16:
            raise SystemExit(137)
        return real(path, write)

    monkeypatch.setattr(train, "atomic_write", killed_at_the_last)
    with pytest.raises(SystemExit):
        Trainer.create(tmp_path / "b", config(clips_file, checkpoint_every=3)).fit()
    monkeypatch.setattr(train, "atomic_write", real)
    assert Trainer.resume(tmp_path / "b").fit() == straight
    assert (tmp_path / "b" / "model.safetensors").read_bytes() == (tmp_path / "a" / "model.safetensors").read_bytes()


def test_a_kill_before_the_first_checkpoint_is_named_resumes_from_it(tmp_path, clips_file):
    """Killed after the first checkpoint was renamed into place and before latest.json named it, the run was resumed
    from step 0 ("no checkpoint yet"), which then deleted that checkpoint and the loss log of its steps."""
    run = tmp_path / "run"
    straight = Trainer.create(tmp_path / "a", config(clips_file)).fit()
    Trainer.create(run, config(clips_file)).fit(stop_after=5)
    (run / "latest.json").unlink()
    resumed = Trainer.resume(run)
    assert resumed.progress.step == 5 and len((run / "history.jsonl").read_text().splitlines()) == 5
    assert resumed.fit() == straight


def test_ctrl_c_while_a_checkpoint_is_written_leaves_none_half_written(tmp_path, clips_file, monkeypatch):
    """A Ctrl-C (or a full disk) while a checkpoint was written left its hidden checkpoints/.step-N.tmp, weights and
    all, in the run for good unless the run was resumed to that very step."""
    import msrnn_zoo.train as train

    run = tmp_path / "run"
    trainer = Trainer.create(run, config(clips_file))
    trainer.fit(stop_after=2)

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train.torch, "save", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint()
    monkeypatch.undo()
    assert checkpoints(run) == ["step-00000002"]
    assert json.loads((run / "latest.json").read_text())["name"] == "step-00000002"


def test_the_training_data_fingerprint_is_left_out_for_clips_drawn_at_random():
    """A dataset that draws its clips at each read would fail any resume on a fingerprint: it is not checked."""
    from msrnn_zoo.train import train_fingerprint

    fixed = [torch.full((4, 1, 8, 8), float(i)) for i in range(3)]
    assert train_fingerprint(fixed) == train_fingerprint([t.clone() for t in fixed]) is not None
    assert train_fingerprint(fixed) != train_fingerprint([*fixed[:2], fixed[0]])  # another last clip

    class Drawn(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            return torch.rand(4, 1, 8, 8)

    assert train_fingerprint(Drawn()) is None and train_fingerprint([]) is None


@pytest.mark.parametrize("writer", ["safetensors", "torch.save"])
def test_a_disk_that_fills_up_mid_run_stops_it_at_its_last_checkpoint(tmp_path, clips_file, monkeypatch, writer):
    """safetensors says a full disk as a SafetensorError, torch.save as a RuntimeError ("unexpected pos"): train
    ended in a traceback that said neither that the disk was full nor that the run goes on from its last checkpoint."""
    from click.testing import CliRunner
    from safetensors import SafetensorError

    import msrnn_zoo.train as train
    from msrnn_zoo.cli import main

    written = []
    real_save_file, real_open = train.save_file, open

    def save_file(weights, path, **kwargs):
        written.append(path)
        if writer == "safetensors" and len(written) > 1:
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real_save_file(weights, path, **kwargs)

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def open_(path, *args, **kwargs):
        handle = real_open(path, *args, **kwargs)
        return Full(handle) if writer == "torch.save" and len(written) > 1 and str(path).endswith(".pt") else handle

    monkeypatch.setattr(train, "save_file", save_file)
    monkeypatch.setattr(train, "open", open_, raising=False)
    run = tmp_path / "run"
    args = ["train", "convlstm", "--data", str(clips_file), "--hidden", "2", "--layers", "1", "--in-frames", "3",
            "--out-frames", "3", "--batch-size", "8", "--checkpoint-every", "1", "--max-train-clips", "16",
            "--max-eval-clips", "4"]
    result = CliRunner().invoke(main, [*args, "--out", str(run)])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "The disk is full" in said and "Free some space" in said, said
    assert f"Continue from the last checkpoint, at step 1, with: msrnn-zoo train --resume {run}" in said, said
    assert checkpoints(run) == ["step-00000001"]  # the half-written one is gone
    monkeypatch.undo()
    assert CliRunner().invoke(main, ["train", "--resume", str(run)]).exit_code == 0


def _set_written_by(path, written_by, **extra):
    data = json.loads(path.read_text())
    data.pop("written_by", None)
    data.update(extra)
    if written_by is not None:
        data["written_by"] = written_by
    path.write_text(json.dumps(data))


def test_a_run_records_the_versions_that_wrote_it(tmp_path, clips_file):
    from importlib.metadata import version

    import msrnn_zoo
    from msrnn_zoo.evaluate import reports_to_dict

    run = tmp_path / "run"
    Trainer.create(run, config(clips_file, epochs=1)).fit()
    expected = {"msrnn-zoo": msrnn_zoo.__version__, "msrnn-convlstm": version("msrnn-convlstm")}
    for name in ("train_config.json", "config.json"):
        assert json.loads((run / name).read_text())["written_by"] == expected, name
    state = torch.load(next((run / "checkpoints").iterdir()) / "training_state.pt", weights_only=True)
    assert state["written_by"] == expected
    assert reports_to_dict({}, run, "test")["written_by"] == {"msrnn-zoo": msrnn_zoo.__version__}  # no run given
    # evaluate's metrics file names the plugins that scored it too, as the run's config.json does (it named the zoo)
    from msrnn_zoo.testing import run_cli as cli

    cli("evaluate", run, "--max-clips", "2")
    assert json.loads((run / "metrics-test.json").read_text())["written_by"] == expected
    Trainer.resume(run, epochs=2).fit()  # read back as no setting
    assert json.loads((run / "train_config.json").read_text())["written_by"] == expected


def test_a_run_of_a_newer_zoo_with_a_setting_this_one_lacks_is_not_resumed_without_it(tmp_path, clips_file):
    """Its unknown settings were dropped in silence: a run set up to train with them was resumed without."""
    import msrnn_zoo

    run = tmp_path / "run"
    Trainer.create(run, config(clips_file, epochs=1)).fit()
    _set_written_by(run / "train_config.json", {"msrnn-zoo": "99.0"}, grad_clip=1.0)
    with pytest.raises(ValueError, match=rf"settings this msrnn-zoo does not know: grad_clip\. It was written by "
                       rf"msrnn-zoo 99\.0, newer than the msrnn-zoo {msrnn_zoo.__version__} installed.*"
                       r"`pip install -U msrnn-zoo`"):
        Trainer.resume(run, epochs=2)
    for older in ({"msrnn-zoo": "0.0.1"}, None):  # as before: what the zoo no longer has is left out
        _set_written_by(run / "train_config.json", older)
        assert Trainer.resume(run, epochs=2).cfg.epochs == 2


def test_a_run_of_a_newer_cell_plugin_with_an_option_this_one_lacks_says_to_upgrade_it(tmp_path, clips_file):
    run = tmp_path / "run"
    Trainer.create(run, config(clips_file, epochs=1)).fit()
    data = json.loads((run / "train_config.json").read_text())
    data["model_config"]["cell_options"] = {"peepholes": True}
    data["written_by"]["msrnn-convlstm"] = "99.0"
    (run / "train_config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"no option 'peepholes'.* written by msrnn-convlstm 99\.0.*"
                       r"`pip install -U msrnn-convlstm`\.$"):
        Trainer.resume(run, epochs=2)


def test_weights_files_record_their_versions_and_those_of_a_newer_plugin_say_to_upgrade_it(tmp_path, clips_file):
    """A run's and a saved model's safetensors carried no version (their training state and config.json did): weights
    a newer cell plugin laid out otherwise were refused as "another model or configuration", with no upgrade named."""
    from importlib.metadata import version

    from safetensors.torch import load_file, save_file

    import msrnn_zoo
    from msrnn_zoo.io import safetensors_header

    run = tmp_path / "run"
    trainer = Trainer.create(run, config(clips_file, epochs=1, val_every=1))
    trainer.fit()
    trainer.model.save_pretrained(tmp_path / "saved")
    expected = {"msrnn-zoo": msrnn_zoo.__version__, "msrnn-convlstm": version("msrnn-convlstm")}
    checkpoint = next((run / "checkpoints").iterdir()) / "model.safetensors"
    for path in (checkpoint, run / "model.safetensors", run / "model-best.safetensors",
                 tmp_path / "saved" / "model.safetensors"):
        assert json.loads(safetensors_header(path)["__metadata__"]["written_by"]) == expected, path
    tensors = load_file(str(checkpoint))
    tensors[f"{next(iter(tensors))}_added"] = torch.zeros(1)  # what a newer cell plugin might add
    save_file(tensors, str(checkpoint), metadata={"written_by": json.dumps({**expected, "msrnn-convlstm": "99.0"})})
    with pytest.raises(ValueError, match=r"does not have .* written by msrnn-convlstm 99\.0.*"
                                         r"`pip install -U msrnn-convlstm`"):
        Trainer.resume(run, epochs=2)


def test_a_training_state_of_a_newer_zoo_is_not_called_damaged(tmp_path, clips_file):
    run = tmp_path / "run"
    Trainer.create(run, config(clips_file, epochs=1)).fit()
    path = next((run / "checkpoints").iterdir()) / "training_state.pt"
    state = torch.load(path, weights_only=True)
    state["progress"]["new_counter"] = 3
    state["written_by"] = {"msrnn-zoo": "99.0"}
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"holds a training state this msrnn-zoo cannot read \(TypeError.*\)\. It was "
                       r"written by msrnn-zoo 99\.0"):
        Trainer.resume(run, epochs=2)
