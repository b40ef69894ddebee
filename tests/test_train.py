import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from msrnn_zoo.sampling import reverse, scheduled, teacher_forcing
from msrnn_zoo.train import Trainer, check_clip_length, epoch_batches, frame_loss, new_train_config


def config(clips_file, **kw):
    return new_train_config("ms-convlstm", model_options={"hidden_channels": 4},
                            **{"data": str(clips_file), "in_frames": 3, "out_frames": 3, "epochs": 2, "batch_size": 4,
                               **kw})


def test_resume_equals_uninterrupted_run(tmp_path, clips_file):
    straight = Trainer.create(tmp_path / "a", config(clips_file))
    losses = straight.fit()
    interrupted = Trainer.create(tmp_path / "b", config(clips_file))
    interrupted.fit(stop_after=5)  # mid-epoch: epoch 0 has 8 steps
    resumed = Trainer.resume(tmp_path / "b")
    assert resumed.progress.step == 5
    assert resumed.fit() == losses
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert json.loads((tmp_path / "b" / "latest.json").read_text())["step"] == 16


def test_a_fit_stopped_by_ctrl_c_is_not_called_again_but_resumed(tmp_path, clips_file):
    """Ctrl-C in a notebook, then `trainer.fit()` again: a stop between the optimizer's update and the step's count
    trained that step twice, and the run went on in silence to other losses than the uninterrupted run's."""
    losses = Trainer.create(tmp_path / "a", config(clips_file)).fit()
    trainer = Trainer.create(tmp_path / "b", config(clips_file))
    update, updates = trainer.optimizer.step, []

    def update_then_ctrl_c(*args, **kwargs):
        update(*args, **kwargs)
        updates.append(1)
        if len(updates) == 3:
            raise KeyboardInterrupt

    trainer.optimizer.step = update_then_ctrl_c
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(stop_after=5)
    with pytest.raises(RuntimeError, match=r"stopped \(KeyboardInterrupt\) after step 2, perhaps inside a step.*"
                                           r"Trainer.resume\(.*\).fit\(\)"):
        trainer.fit()
    assert Trainer.resume(tmp_path / "b").fit() == losses  # from the start: no checkpoint was written yet


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
def test_a_run_drawing_random_numbers_in_training_resumes_exactly(tmp_path, clips_file, monkeypatch, device):
    """A cell's dropout draws from PyTorch's global generator (the GPU's own on a GPU), restored from the checkpoint;
    each epoch's loader drew from it too when it started, so a resumed epoch, whose loader started again after the
    restore, trained on other dropout masks than the uninterrupted run."""
    from msrnn_zoo.network import Forecaster

    forward_train = Forecaster.forward_train

    def with_dropout(self, frames, teacher):
        prediction, aux = forward_train(self, frames, teacher)
        return torch.nn.functional.dropout(prediction, 0.2, training=True), aux

    monkeypatch.setattr(Forecaster, "forward_train", with_dropout)
    losses = Trainer.create(tmp_path / "a", config(clips_file, device=device)).fit()
    Trainer.create(tmp_path / "b", config(clips_file, device=device)).fit(stop_after=5)  # epoch 0 has 8 steps
    assert Trainer.resume(tmp_path / "b").fit() == losses


def test_run_directory_is_never_overwritten(tmp_path, clips_file):
    Trainer.create(tmp_path / "run", config(clips_file)).fit(stop_after=1)
    with pytest.raises(FileExistsError, match="force=True"):
        Trainer.create(tmp_path / "run", config(clips_file))
    Trainer.create(tmp_path / "run", config(clips_file), force=True)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_loss_that_is_not_finite_stops_the_run_before_the_weights_change(tmp_path, clips_file, monkeypatch,
                                                                           precision):
    """The loss is read back once a step, after its backward is queued; a NaN or Inf stops the run there, before the
    optimizer (or the fp16 scaler) could apply it."""
    import msrnn_zoo.train as train

    trainer = Trainer.create(tmp_path / "run", config(clips_file, precision=precision))
    trainer.fit(stop_after=1)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    monkeypatch.setattr(train, "frame_loss", lambda prediction, truth: (prediction - truth).sum() * float("nan"))
    with pytest.raises(FloatingPointError, match="The loss became nan at step 1; lower lr or") as caught:
        trainer.train_step(next(iter(torch.utils.data.DataLoader(trainer.train_set, batch_size=4))))
    assert "--lr" not in str(caught.value) and "lower --lr or" in caught.value.cli_message
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_a_loss_that_is_not_finite_at_the_first_step_does_not_blame_the_learning_rate(tmp_path, clips_file,
                                                                                        monkeypatch):
    """Before any update the weights are the initial ones: a NaN comes from the data or the cell, never from --lr."""
    import msrnn_zoo.train as train

    trainer = Trainer.create(tmp_path / "run", config(clips_file))
    monkeypatch.setattr(train, "frame_loss", lambda prediction, truth: (prediction - truth).sum() * float("nan"))
    with pytest.raises(FloatingPointError) as caught:
        trainer.train_step(next(iter(torch.utils.data.DataLoader(trainer.train_set, batch_size=4))))
    message = str(caught.value)
    assert "lower" not in message and "so lr is not why" in message and "--" not in message, message
    assert "run_conformance('convlstm')" in message, message
    assert "so --lr is not why" in caught.value.cli_message  # the CLI's words


@pytest.mark.parametrize(("item", "words"), [
    (torch.linspace(0, 255, 6 * 16 * 16).reshape(6, 1, 16, 16), "values from 0 to 255, not in [0, 1]"),
    (torch.full((6, 1, 16, 16), float("nan")), "not in [0, 1]"),
    ((torch.rand(6, 1, 16, 16), 0), "its first item is a tuple"),
])
def test_a_dataset_plugins_clips_of_wrong_values_or_type_are_refused(clips_file, item, words):
    """A factory giving frames of 0-255 trained silently on them; a (clip, label) item was an AttributeError."""
    with pytest.raises(ValueError) as caught:
        check_clip_length([item], config(clips_file))
    assert words in str(caught.value), caught.value
    assert check_clip_length([torch.rand(6, 1, 16, 16)], config(clips_file)) == (6, 1, 16, 16)


def test_loss_is_sum_over_pixels_mean_over_frames_and_batch():
    pred = torch.zeros(2, 3, 1, 4, 4)
    truth = torch.full_like(pred, 0.5)
    assert frame_loss(pred, truth).item() == pytest.approx(16 * 0.25 + 16 * 0.5)


def test_sampling_masks():
    g = torch.Generator().manual_seed(0)
    start = scheduled(64, 20, 10, 0.0, g)
    assert start.shape == (64, 19) and start.min() == 1
    end = scheduled(64, 20, 10, 1.0, g)
    assert end[:, :10].min() == 1 and end[:, 10:].max() == 0
    late = reverse(64, 20, 10, 0.9, g)
    assert late[:, :10].min() == 1 and late[:, 10:].max() == 0
    early = reverse(256, 20, 10, 0.0, g)
    assert 0.3 < early[:, 1:10].mean() < 0.7 and 0.3 < early[:, 10:].mean() < 0.7


@pytest.mark.parametrize(("sampling", "expected"), [
    # train_and_test.py: eta = 1, lowered by 1 / (6 epochs x 2 batches) after every step
    ("scheduled", [(1 - s / 12,) for s in range(12)]),
    # model.py at epochs 1..6 of 6 (start 2, end 4, step 0.4): epochs 1-2 (0.5, 0.5); epoch 3
    # (1 - 0.5 exp(-1 / 0.4), 0.5 - 0.5 (3 - 2) / (4 - 2)); epochs 4-6 (1, 0), each for both steps of its epoch
    ("reverse", [(0.5, 0.5)] * 4 + [(0.9589575, 0.25)] * 2 + [(1.0, 0.0)] * 6),
])
def test_input_schedules_move_as_the_originals_do(tmp_path, clips_file, monkeypatch, sampling, expected):
    """The reverse schedule of PredRNN-V2 moved after every step, where the original moves it once an epoch, by the
    epoch's number counted from 1: over 6 epochs, the third trained at eta 0.5 instead of 0.96 for the context."""
    import msrnn_zoo.sampling as sampling_module

    drawn: list[float] = []
    bernoulli = sampling_module._bernoulli
    monkeypatch.setattr(sampling_module, "_bernoulli", lambda b, t, p, g: drawn.append(p) or bernoulli(b, t, p, g))
    trainer = Trainer.create(tmp_path / "run", config(clips_file, sampling=sampling, epochs=6, max_train_clips=8))
    trainer.fit()
    per_step = len(expected[0])
    got = [tuple(drawn[i : i + per_step]) for i in range(0, len(drawn), per_step)]
    assert got == [pytest.approx(probabilities) for probabilities in expected]


@pytest.mark.parametrize("sampling", ["", "Reverse"])
def test_an_unknown_sampling_schedule_is_refused_before_anything_is_written(tmp_path, clips_file, sampling):
    """`train --sampling "$EMPTY"` trained in silence with the cell's own schedule, and recorded "" as the run's."""
    with pytest.raises(ValueError, match=f"Unknown sampling schedule {sampling!r}; use one of none, reverse, "
                                         "scheduled, or leave it out"):
        Trainer.create(tmp_path / "run", config(clips_file, sampling=sampling))
    assert not (tmp_path / "run").exists()



def test_sampling_masks_follow_their_schedules_midway_and_evaluation_feeds_the_whole_context():
    """The checks above look only at the ends of the schedules; midway the rates are the papers' formulas."""
    g = torch.Generator().manual_seed(0)
    assert scheduled(4096, 20, 10, 0.5, g)[:, 10:].mean() == pytest.approx(0.5, abs=0.02)
    midway = reverse(4096, 20, 10, 0.5, g)  # a sixth of training past the first third
    assert midway[:, 0].min() == 1
    assert midway[:, 1:10].mean() == pytest.approx(1 - 0.5 * math.exp(-2.5), abs=0.02)  # rising to 1, time scale 1/15
    assert midway[:, 10:].mean() == pytest.approx(0.25, abs=0.02)  # halfway from 0.5 down to 0
    assert teacher_forcing(2, 20, 10, 1.0, g).tolist() == [[1.0] * 10 + [0.0] * 9] * 2


def test_an_epoch_draws_whole_batches_of_distinct_clips_in_an_order_of_its_own():
    clips = [torch.tensor([i]) for i in range(10)]

    def order(epoch):
        return [batch.flatten().tolist() for batch in epoch_batches(clips, 4, seed=3, epoch=epoch)]

    first, second = order(0), order(1)
    assert [len(b) for b in first] == [len(b) for b in second] == [4, 4]  # the 2 clips left over are dropped
    for batches in (first, second):
        drawn = [i for b in batches for i in b]
        assert len(set(drawn)) == 8
    assert first == order(0) and first != second  # reproducible, yet shuffled again each epoch


def test_a_training_step_scores_the_frames_it_predicts_adds_the_auxiliary_loss_and_draws_its_mask(tmp_path,
                                                                                                  clips_file):
    cfg = new_train_config("predrnn-v2", model_options={"hidden_channels": 4, "num_layers": 2},
                           data=str(clips_file), in_frames=3, out_frames=3, batch_size=4, sampling_steps=30)
    trainer = Trainer.create(tmp_path / "run", cfg)
    seen = []

    def recorded(frames, teacher):
        prediction, aux = trainer.model.forward_train(frames, teacher)
        seen.append((frames, teacher, prediction.detach(), aux.detach()))
        return prediction, aux

    trainer.forward_train = recorded
    clips = next(iter(epoch_batches(trainer.train_set, 4, seed=0, epoch=0)))
    for step in (0, 1, 20):  # the reverse schedule moves once an epoch: at step 20 it is past two thirds
        trainer.progress.step, trainer.progress.epoch = step, step // trainer.steps_per_epoch
        loss = trainer.train_step(clips)
        frames, _, prediction, aux = seen[-1]
        assert aux > 0
        assert loss == pytest.approx((frame_loss(prediction, frames[:, 1:]) + aux).item(), rel=1e-6)
    masks = [teacher for _, teacher, _, _ in seen]
    assert not torch.equal(masks[0], masks[1])  # each step draws its own mask
    assert masks[2][:, :3].min() == 1 and masks[2][:, 3:].max() == 0  # past two thirds: context in, own forecasts


def test_bad_training_setups(tmp_path, clips_file):
    with pytest.raises(ValueError, match="fewer than the 12 the run needs"):
        Trainer.create(tmp_path / "x", new_train_config("convlstm", model_options={"hidden_channels": 4},
                                                        data=str(clips_file), in_frames=6, out_frames=6))
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer.create(tmp_path / "y", config(clips_file, max_train_clips=2))


def test_clips_in_memory_are_refused_with_how_to_save_them(tmp_path, clips_file):
    """A notebook's array passed as data failed with "field 'data' must be a string", followed by every value of the
    array printed; a run needs a file to read its clips again from, so the message says how to save one."""
    import numpy as np

    clips = np.load(clips_file)
    for given in (clips, torch.from_numpy(clips)):
        with pytest.raises(ValueError, match=r"not the clips themselves .* numpy.save\('clips.npy', clips\)") as caught:
            Trainer.create(tmp_path / "x", config(clips_file, data=given))
        assert len(str(caught.value)) < 500 and "40, 6, 16, 16" in str(caught.value)
    assert not (tmp_path / "x").exists()


def test_a_clip_file_given_as_a_path_or_relative_is_found_from_any_directory(tmp_path, clips_file, monkeypatch):
    """`data=Path(...)` was refused ("must be a string"), and `data="clips.npy"` was recorded as given: evaluated from
    another directory, the run said its clips were "moved or deleted". Both are recorded absolute, as `train` does."""
    from pathlib import Path

    from msrnn_zoo.evaluate import evaluate_run

    monkeypatch.chdir(clips_file.parent)
    for given in (Path(clips_file.name), clips_file.name):
        assert config(clips_file, data=given).data == str(clips_file.resolve())
    Trainer.create(tmp_path / "run", config(clips_file, data=Path(clips_file.name), epochs=1,
                                            max_train_clips=4)).fit()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert evaluate_run(tmp_path / "run", max_clips=2)["model"].metrics["mse"].mean > 0


def test_a_notebook_cell_run_again_names_the_trainer_of_this_process_that_holds_the_run(tmp_path, clips_file):
    """`trainer = Trainer.create(run, cfg, force=True)` run again in a notebook (the first Trainer still bound to
    `trainer`, holding the run) was told that "another process" trains the run, with `train --resume` to wait for;
    there was no way to let the first Trainer go. It is named, with close(), which drops a replacement it built."""
    run = tmp_path / "run"
    first = Trainer.create(run, config(clips_file, epochs=1))
    for attempt in (lambda: Trainer.create(run, config(clips_file, epochs=1), force=True),
                    lambda: Trainer.resume(run)):
        with pytest.raises(ValueError, match=r"another Trainer of this Python process .* close\(\)") as caught:
            attempt()
        assert "being trained by another process" in caught.value.cli_message
    first.close()
    with pytest.raises(RuntimeError, match=r"closed after step 0; .*Trainer.resume"):
        first.fit()
    replacing = Trainer.create(run, config(clips_file, epochs=1), force=True)
    replacing.close()  # dropped: nothing of it left beside the run, which stays
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != clips_file.name) == ["run"]
    again = Trainer.create(run, config(clips_file, epochs=1), force=True)
    again.fit()
    assert again.progress.step == 8 and (run / "model.safetensors").is_file()


@pytest.mark.parametrize(("argument", "value"), [("max_clips", 0), ("batch_size", 0), ("batch_size", -2),
                                                 ("max_clips", 2.5)])
def test_evaluate_run_names_a_count_of_clips_it_cannot_use(tmp_path, clips_file, argument, value):
    """evaluate_run(run, max_clips=0) said the run's test split held no clips and to prepare the dataset from more
    raw files; batch_size=0 scored at the run's batch size in silence. Both are refused, named."""
    from msrnn_zoo.evaluate import evaluate_run

    with pytest.raises(ValueError, match=rf"^{argument} must be a whole number of at least 1, or None .*{value}"):
        evaluate_run(tmp_path / "no-run-needed", **{argument: value})


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1])
def test_a_seed_torch_cannot_take_is_named(tmp_path, clips_file, seed):
    """`Trainer.create(..., seed=2**64)` failed with PyTorch's "Overflow when unpacking long long", naming nothing."""
    with pytest.raises(ValueError, match=f"seed must be a whole number from 0 to {2**64 - 1}, got {seed}"):
        Trainer.create(tmp_path / "x", config(clips_file, seed=seed))
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_asked_without_cuda(tmp_path, clips_file):
    with pytest.raises(ValueError, match="sees no CUDA"):
        Trainer.create(tmp_path / "z", config(clips_file, device="cuda"))


def test_grad_checkpointing_changes_no_number_and_can_be_switched_on_resume(tmp_path, clips_file):
    plain = Trainer.create(tmp_path / "a", config(clips_file, epochs=1)).fit()
    run = Trainer.create(tmp_path / "b", config(clips_file, epochs=1, grad_checkpointing=True))
    assert run.model.grad_checkpointing
    run.fit(stop_after=3)
    resumed = Trainer.resume(tmp_path / "b", grad_checkpointing=False)
    assert not resumed.model.grad_checkpointing
    assert resumed.fit() == plain
    assert json.loads((tmp_path / "b" / "train_config.json").read_text())["grad_checkpointing"] is False


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_training_keeps_the_loss_in_fp32_and_resumes_exactly(tmp_path, clips_file, precision):
    straight = Trainer.create(tmp_path / "a", config(clips_file, epochs=1, precision=precision))
    assert (straight.scaler is not None) == (precision == "fp16")
    losses = straight.fit()
    assert all(math.isfinite(v) for v in losses)
    full = Trainer.create(tmp_path / "c", config(clips_file, epochs=1)).fit()
    assert losses != full  # autocast changed the arithmetic...
    assert abs(losses[0] - full[0]) < 0.02 * full[0]  # ...not the model
    run = Trainer.create(tmp_path / "b", config(clips_file, epochs=1, precision=precision))
    run.fit(stop_after=3)
    resumed = Trainer.resume(tmp_path / "b")
    if precision == "fp16":
        assert resumed.scaler.get_scale() == run.scaler.get_scale()  # the loss scale is part of the checkpoint
    assert resumed.fit() == losses


def test_tf32_holds_over_the_forward_and_the_backward_and_gives_the_callers_setting_back(tmp_path, clips_file):
    """TF32 products are a setting of the whole process: on while a tf32 step runs (its backward too, which runs
    outside autocast), the caller's own setting back after it, after a step that failed as well."""
    run = Trainer.create(tmp_path / "a", config(clips_file, epochs=1, precision="tf32"))
    seen = []
    forward = run.forward_train

    def watched(*args):
        seen.append(("forward", torch.get_float32_matmul_precision()))
        return forward(*args)

    run.forward_train = watched
    next(run.model.parameters()).register_hook(
        lambda grad: seen.append(("backward", torch.get_float32_matmul_precision())))
    torch.set_float32_matmul_precision("medium")  # the caller's, not PyTorch's default
    try:
        losses = run.fit(stop_after=2)
        assert torch.get_float32_matmul_precision() == "medium"
        assert seen == [("forward", "high"), ("backward", "high")] * 2

        def broken(*args):
            raise RuntimeError("out of memory")

        run.forward_train = broken
        with pytest.raises(RuntimeError, match="out of memory"):
            run.train_step(next(iter(torch.utils.data.DataLoader(run.train_set, batch_size=4))))
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision("highest")
    full = Trainer.create(tmp_path / "b", config(clips_file, epochs=1)).fit(stop_after=2)
    assert losses == pytest.approx(full, rel=1e-3)  # the same model; on this CPU its products are fp32's
    assert json.loads((tmp_path / "a" / "train_config.json").read_text())["precision"] == "tf32"


def test_unknown_precision(tmp_path, clips_file):
    with pytest.raises(ValueError, match="Unknown precision 'fp8'; use one of fp32, bf16, fp16, tf32"):
        Trainer.create(tmp_path / "a", config(clips_file, precision="fp8"))


@pytest.mark.parametrize(("size", "channels"), [(16, 1), (20, 1), (16, 3)])
def test_a_dataset_plugins_clips_of_another_size_than_its_protocol_are_refused(tmp_path, size, channels):
    """A factory cutting 20x20 clips for a protocol of 16x16 trained silently, on clips the protocol's scores do
    not describe; one of 3 channels for a protocol of 1 was told to "give it clips of 1 channel(s)", which only the
    plugin's author can."""
    import msrnn_zoo
    from msrnn_zoo.data import ClipProtocol, DatasetInfo
    from msrnn_zoo.plugins import forget, pm

    protocol = ClipProtocol("paper", 3, 3, 1, 16, 16, "6-frame clips of 16x16")

    class Plugin:
        @msrnn_zoo.hookimpl
        def register_datasets(self, register):
            register(DatasetInfo(name="odd-size", protocols=(protocol,)),
                     lambda split, **options: [torch.rand(6, channels, size, size) for _ in range(8)])

    plugin = Plugin()
    pm.register(plugin, name="odd-size-plugin")
    try:
        cfg = new_train_config("convlstm", model_options={"hidden_channels": 4}, dataset="odd-size", in_frames=3,
                               out_frames=3, batch_size=4, root=str(tmp_path / "data"))
        if (size, channels) == (16, 1):
            Trainer.create(tmp_path / "run", cfg)
            return
        with pytest.raises(ValueError) as caught:
            Trainer.create(tmp_path / "run", cfg)
        message = str(caught.value)
        if size != 16:
            assert "odd-size (paper) is 20x20 (height x width), but its protocol declares 16x16" in message
            assert "(odd-size-plugin) must cut its clips at the size its ClipProtocol declares" in message, message
        else:
            assert "first clip of odd-size (paper) has 3 channel(s), but its protocol declares 1" in message
            assert "(odd-size-plugin) must give clips of the channels its ClipProtocol declares" in message, message
        assert not (tmp_path / "run").exists()
    finally:
        pm.unregister(plugin)
        forget("odd-size-plugin")


def history_lines(run):
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def test_validation_changes_no_weight_and_a_resumed_run_validates_as_the_uninterrupted_one(tmp_path, clips_file):
    """A validation loss each epoch (--val-every 1): the weights to the bit of a run without it (the default), and a
    run interrupted mid-epoch and resumed logs the same training and validation losses."""
    validated = Trainer.create(tmp_path / "a", config(clips_file, val_every=1))
    assert json.loads((tmp_path / "a" / "train_config.json").read_text())["val_every"] == 1
    losses = validated.fit()
    plain = Trainer.create(tmp_path / "p", config(clips_file))
    assert plain.cfg.val_every == 0
    assert plain.fit() == losses
    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, validated.model.state_dict()[key]), key
    lines = history_lines(tmp_path / "a")
    val = [line for line in lines if "val_loss" in line]
    assert [(line["epoch"], line["step"]) for line in val] == [(0, 8), (1, 16)]
    assert lines.index(val[0]) == 8 and not any("val_loss" in line for line in history_lines(tmp_path / "p"))
    best = min(val, key=lambda line: line["val_loss"])
    assert json.loads((tmp_path / "a" / "latest.json").read_text())["best"] == best
    interrupted = Trainer.create(tmp_path / "b", config(clips_file, val_every=1))
    interrupted.fit(stop_after=11)  # after the first validation, mid-epoch 1
    assert Trainer.resume(tmp_path / "b").fit() == losses
    assert history_lines(tmp_path / "b") == lines


def test_the_validation_loss_is_the_training_loss_of_the_val_split_forecast_as_evaluate_forecasts(tmp_path,
                                                                                                 clips_file):
    trainer = Trainer.create(tmp_path / "a", config(clips_file, epochs=1, max_eval_clips=3, val_every=1))
    seen = []
    trainer.fit(on_validation=lambda t, loss, best: seen.append((loss, best)))
    clips = torch.stack([trainer.val_set[i] for i in range(3)])[:, :6]  # capped as evaluate caps it
    with torch.no_grad():
        prediction, _ = trainer.model.eval().forward_train(clips, teacher_forcing(3, 6, 3, 1.0, torch.Generator()))
    assert seen == [(pytest.approx(frame_loss(prediction, clips[:, 1:]).item(), rel=1e-5), True)]


def test_early_stopping_ends_the_run_after_its_patience_and_a_larger_one_goes_on(tmp_path, clips_file, monkeypatch):
    scores = iter([3.0, 2.0, 2.5, 2.0, 1.0, 0.5])
    monkeypatch.setattr(Trainer, "validation_loss", lambda self: next(scores))
    trainer = Trainer.create(tmp_path / "a", config(clips_file, epochs=6, early_stopping=2))
    trainer.fit()
    assert trainer.stopped_early and trainer.finished and trainer.progress.epoch == 4
    latest = json.loads((tmp_path / "a" / "latest.json").read_text())
    assert latest["best"] == {"epoch": 1, "step": 16, "val_loss": 2.0} and latest["epoch"] == 4
    assert Trainer.resume(tmp_path / "a").finished  # done: nothing to train
    goes_on = Trainer.resume(tmp_path / "a", early_stopping=3)
    goes_on.fit()
    assert goes_on.progress.epoch == 6 and not goes_on.stopped_early and goes_on.progress.best_val_loss == 0.5


def test_fit_of_a_finished_run_says_nothing_was_trained_and_how_to_train_further(tmp_path, clips_file, monkeypatch):
    """Trainer.resume(run).fit() of a run whose epochs were done (or that early stopping ended) returned its old
    losses at once, so a notebook's user believed it had trained; `train --resume` refuses it, and so does fit()."""
    Trainer.create(tmp_path / "a", config(clips_file, epochs=1)).fit()
    done = Trainer.resume(tmp_path / "a")
    with pytest.raises(ValueError, match=r"already finished its 1 epoch\(s\); nothing was trained.*"
                                         r"Trainer.resume\(.*, epochs=2\).fit\(\)"):
        done.fit()
    Trainer.resume(tmp_path / "a", epochs=2).fit()  # refused, it held no lock: a larger epochs goes on
    scores = iter([1.0, 2.0, 3.0])
    monkeypatch.setattr(Trainer, "validation_loss", lambda self: next(scores))
    stopped = Trainer.create(tmp_path / "b", config(clips_file, epochs=4, early_stopping=2))
    stopped.fit()
    with pytest.raises(ValueError, match=r"Early stopping ended the run after epoch 3 of 4.*early_stopping=2; best "
                                         r"1.0000 after epoch 1, step 8\); nothing was trained.*early_stopping=3"):
        Trainer.resume(tmp_path / "b").fit()


def test_patience_reached_at_the_last_epoch_is_no_early_stop(tmp_path, clips_file, monkeypatch):
    """Early stopping's patience reached by the last planned epoch's validation ended nothing early: the run said
    "Early stopping ended the run after epoch 3 of 3" and asked for a larger patience, where a larger epochs goes on."""
    scores = iter([1.0, 2.0, 3.0])
    monkeypatch.setattr(Trainer, "validation_loss", lambda self: next(scores))
    trainer = Trainer.create(tmp_path / "a", config(clips_file, epochs=3, early_stopping=2))
    trainer.fit()
    assert trainer.finished and not trainer.stopped_early and trainer.progress.stale_validations == 2
    with pytest.raises(ValueError, match=r"already finished its 3 epoch\(s\); nothing was trained"):
        Trainer.resume(tmp_path / "a").fit()


def test_the_last_epoch_is_validated_when_val_every_does_not_divide_the_epochs(tmp_path, clips_file, monkeypatch):
    """--epochs 3 --val-every 2 validated after epoch 2 only: the final weights were never compared, so the best
    weights were those of epoch 2 even where the last were better. The last epoch is validated too; no weight
    changes."""
    from safetensors.torch import load_file

    from msrnn_zoo.train import best_weights_of

    scores = iter([2.0, 1.0])
    monkeypatch.setattr(Trainer, "validation_loss", lambda self: next(scores))
    run = tmp_path / "a"
    losses = Trainer.create(run, config(clips_file, epochs=3, val_every=2)).fit()
    assert [(line["epoch"], line["step"]) for line in history_lines(run) if "val_loss" in line] == [(1, 16), (2, 24)]
    assert best_weights_of(run / "model-best.safetensors") == {"epoch": 2, "step": 24, "val_loss": 1.0}
    last, best = load_file(str(run / "model.safetensors")), load_file(str(run / "model-best.safetensors"))
    assert all(torch.equal(value, best[key]) for key, value in last.items())
    plain = Trainer.create(tmp_path / "p", config(clips_file, epochs=3))
    assert plain.fit() == losses
    assert all(torch.equal(value, last[key]) for key, value in plain.model.state_dict().items())


def test_validation_asked_of_an_empty_split_is_refused_at_once_and_by_default_there_is_none(tmp_path, clips_file):
    with pytest.raises(ValueError, match=r"every 1 epoch.*validation split of .*clips.npy \(split_fractions=\(0.9, "
                                         r"0, 0.1\)\) holds no clips: pass val_every=0") as caught:
        Trainer.create(tmp_path / "a", config(clips_file, split_fractions=(0.9, 0.0, 0.1), val_every=1))
    assert "--" not in str(caught.value)
    assert re.search(r"clips.npy \(--split 0.9,0,0.1\) holds no clips: pass --val-every 0 without --early-stopping, "
                     r"or give the validation split a share \(--split 0.8,0.1,0.1\)", caught.value.cli_message)
    with pytest.raises(ValueError, match="Early stopping .2. needs a validation loss"):
        Trainer.create(tmp_path / "a", config(clips_file, split_fractions=(0.9, 0.0, 0.1), early_stopping=2))
    assert not (tmp_path / "a").exists()
    trainer = Trainer.create(tmp_path / "a", config(clips_file, split_fractions=(0.9, 0.0, 0.1)))
    assert trainer.cfg.val_every == 0 and trainer.val_set is None
    assert Trainer.create(tmp_path / "b", config(clips_file, early_stopping=2)).cfg.val_every == 1  # counts them
    with pytest.raises(ValueError, match="val_every 0 turns them off"):
        config(clips_file, val_every=0, early_stopping=1).validate()


def test_a_run_recorded_before_validation_resumes_without_it(tmp_path, clips_file):
    Trainer.create(tmp_path / "a", config(clips_file, epochs=1, val_every=0)).fit()
    path = tmp_path / "a" / "train_config.json"
    record = json.loads(path.read_text())
    del record["val_every"], record["early_stopping"]
    path.write_text(json.dumps(record))
    resumed = Trainer.resume(tmp_path / "a", epochs=2)
    assert resumed.cfg.val_every == 0
    resumed.fit()
    assert not any("val_loss" in line for line in history_lines(tmp_path / "a"))


def test_the_best_validation_keeps_its_weights_and_a_resume_keeps_only_the_best_it_records(tmp_path, clips_file,
                                                                                           monkeypatch):
    """model-best.safetensors holds the weights of the best validation (its checkpoint's), marked with it; a resume
    from a checkpoint before a later best puts back the best that checkpoint records (or drops the file)."""
    from safetensors.torch import load_file

    from msrnn_zoo.train import best_weights_of

    scores = iter([2.0, 1.0, 3.0, 3.0, 2.5])
    monkeypatch.setattr(Trainer, "validation_loss", lambda self: next(scores))
    run = tmp_path / "a"
    Trainer.create(run, config(clips_file, epochs=3, val_every=1, keep_checkpoints=5)).fit()
    best = run / "model-best.safetensors"
    assert best_weights_of(best) == {"epoch": 1, "step": 16, "val_loss": 1.0}
    weights = load_file(str(best))
    for key, value in load_file(str(run / "checkpoints" / "step-00000016" / "model.safetensors")).items():
        assert torch.equal(value, weights[key]), key
    assert not torch.equal(load_file(str(run / "model.safetensors"))[key], weights[key])  # the last epoch's differ
    # pointed back at epoch 0's checkpoint (as a kill while epoch 1's was written leaves it): its best is epoch 0's
    (run / "latest.json").write_text(json.dumps({"name": "step-00000008"}))
    resumed = Trainer.resume(run)
    assert best_weights_of(best) == {"epoch": 0, "step": 8, "val_loss": 2.0}
    resumed.fit()  # trains epochs 1 and 2 again (validations 3.0 and 2.5): no better one
    assert best_weights_of(best)["step"] == 8
    # a checkpoint that records no best (none kept of it): no best weights of steps the run will train again
    (run / "latest.json").write_text(json.dumps({"name": "step-00000016"}))
    shutil.rmtree(run / "checkpoints" / "step-00000008")
    state = torch.load(run / "checkpoints" / "step-00000016" / "training_state.pt", weights_only=True)
    state["progress"].update(best_val_loss=None, best_epoch=None, best_step=None)
    torch.save(state, run / "checkpoints" / "step-00000016" / "training_state.pt")
    Trainer.resume(run)
    assert not best.exists()


def test_a_run_without_validation_has_no_best_weights_and_force_replaces_a_run_with_them(tmp_path, clips_file):
    from msrnn_zoo.io import OverwriteRefusedError

    Trainer.create(tmp_path / "a", config(clips_file, epochs=1)).fit()
    assert not (tmp_path / "a" / "model-best.safetensors").exists()
    Trainer.create(tmp_path / "a", config(clips_file, epochs=1, val_every=1), force=True).fit()
    assert (tmp_path / "a" / "model-best.safetensors").is_file()
    Trainer.create(tmp_path / "a", config(clips_file, epochs=1), force=True).fit()  # goes with the run it replaces
    assert not (tmp_path / "a" / "model-best.safetensors").exists()
    mine = tmp_path / "mine"  # a user's file of that name is no best weights of ours: never deleted
    mine.mkdir()
    (mine / "model-best.safetensors").write_bytes(b"my own weights")
    with pytest.raises(OverwriteRefusedError, match="not a run made by"):
        Trainer.create(mine, config(clips_file, epochs=1), force=True)
    assert (mine / "model-best.safetensors").read_bytes() == b"my own weights"
    Trainer.create(tmp_path / "b", config(clips_file, epochs=1)).fit()
    (tmp_path / "b" / "model-best.safetensors").write_bytes(b"my own weights")
    with pytest.raises(OverwriteRefusedError, match="model-best.safetensors"):
        Trainer.create(tmp_path / "b", config(clips_file, epochs=1), force=True)
    assert (tmp_path / "b" / "model-best.safetensors").read_bytes() == b"my own weights"
    Trainer.resume(tmp_path / "b", epochs=2).fit()  # a resume rewrites or removes only best weights of ours
    assert (tmp_path / "b" / "model-best.safetensors").read_bytes() == b"my own weights"



@pytest.mark.parametrize("best", [{"step": float("inf")}, {"step": "eight"}, ["step"], "step", None])
def test_a_hand_edited_best_in_latest_json_reads_as_no_recorded_best(tmp_path, best):
    """latest.json is the user's to edit; a best step of Infinity raised OverflowError's traceback where the best
    weights were checked against it (the others were already read as no record)."""
    from msrnn_zoo.evaluate import _recorded_best_step

    (tmp_path / "latest.json").write_text(json.dumps({"name": "step-00000008", "step": 8, "best": best}))
    assert _recorded_best_step(tmp_path) is None


@pytest.mark.parametrize("crash_in", ["latest", "best"])
def test_a_run_killed_while_it_writes_a_new_best_never_shows_best_weights_its_record_does_not_name(
        tmp_path, clips_file, monkeypatch, crash_in):
    """Killed after latest.json named the best of epoch 1 and before model-best.safetensors was written, the run kept
    epoch 0's weights as its best, and `evaluate --weights best` scored them as epoch 1's best until a resume. Reading
    them now says they are not the recorded best, and the resume from the checkpoint latest.json names (which holds
    that best: the record is written first) puts the best weights back."""
    import msrnn_zoo.train as train_module
    from msrnn_zoo.evaluate import run_weights
    from msrnn_zoo.train import best_weights_of

    scores = iter([2.0, 1.0, 3.0])
    monkeypatch.setattr(Trainer, "validation_loss", lambda self: next(scores))
    write_json, write_best = train_module.write_json, Trainer._write_best

    def crash(path, data, *args, **kwargs):
        if crash_in == "latest" and path.name == "latest.json" and data["step"] == 16:
            raise KeyboardInterrupt  # the second checkpoint's pointer
        return write_json(path, data, *args, **kwargs)

    def crash_best(self, weights):
        if crash_in == "best" and self.progress.step == 16:
            raise KeyboardInterrupt
        return write_best(self, weights)

    monkeypatch.setattr(train_module, "write_json", crash)
    monkeypatch.setattr(Trainer, "_write_best", crash_best)
    run = tmp_path / "a"
    with pytest.raises(KeyboardInterrupt):
        Trainer.create(run, config(clips_file, epochs=3, val_every=1)).fit()
    recorded = json.loads((run / "latest.json").read_text())["best"]["step"]
    held = best_weights_of(run / "model-best.safetensors")["step"]
    assert (held, recorded) == ((8, 8) if crash_in == "latest" else (8, 16))  # the record first, then the weights
    if held != recorded:  # the older best's weights, under a record naming the new best: not taken for it
        with pytest.raises(ValueError, match=rf"holds the weights of the validation at step {held}, but the run's "
                                             rf"record \(latest.json\) names the best at step {recorded}.*"
                                             r"Trainer.resume\(.*\).fit\(\), goes on") as caught:
            run_weights(run, "best")
        assert "--" not in str(caught.value) and "`msrnn-zoo train --resume " in caught.value.cli_message
    else:
        assert run_weights(run, "best") == run / "model-best.safetensors"
    monkeypatch.setattr(train_module, "write_json", write_json)
    monkeypatch.setattr(Trainer, "_write_best", write_best)
    Trainer.resume(run)
    assert best_weights_of(run_weights(run, "best"))["step"] == recorded  # put back, not deleted


def test_new_train_config_takes_the_frames_and_channels_of_the_dataset_or_of_the_clips(tmp_path, clips_file):
    """From Python, new_train_config gave 10 -> 10 frames of 1 channel whatever the data (Moving MNIST's `small`
    protocol, of 10-frame clips, failed unless the frames were given), where `train` took the protocol's, or the
    clip file's (half of them the context). Both now do the same; what is given wins."""
    import numpy as np

    small = new_train_config("ms-convlstm", model_options={"hidden_channels": 4}, dataset="moving-mnist",
                             source="synthetic", protocol="small")
    assert (small.protocol, small.in_frames, small.out_frames, small.model_config["in_channels"]) == ("small", 5, 5, 1)
    paper = new_train_config("ms-convlstm", dataset="moving-mnist", source="synthetic", in_frames=4)
    assert (paper.protocol, paper.in_frames, paper.out_frames) == ("paper", 4, 10)
    own = new_train_config("convlstm", data=clips_file)
    assert (own.in_frames, own.out_frames, own.model_config["in_channels"]) == (3, 3, 1)
    rgb = tmp_path / "rgb.npy"
    np.save(rgb, np.zeros((4, 9, 3, 8, 8), dtype=np.uint8))
    cfg = new_train_config("convlstm", data=rgb, in_frames=6)
    assert (cfg.in_frames, cfg.out_frames, cfg.model_config["in_channels"]) == (6, 3, 3)
    assert new_train_config("convlstm", model_options={"in_channels": 2}, data=rgb).model_config["in_channels"] == 2


@pytest.mark.parametrize(("options", "words", "flags"), [
    ({}, 'exactly one of dataset="NAME"', "exactly one of --dataset NAME"),
    ({"dataset": "moving-mnist", "data": "DATA"}, 'exactly one of dataset="NAME"', "exactly one of --dataset NAME"),
    ({"data": "DATA", "source": "synthetic"}, "source= belongs to dataset=", "--source belongs to --dataset"),
    ({"data": "DATA", "root": "x", "protocol": "small"}, "root=, protocol= belong to dataset=",
     "--root, --protocol belong to --dataset"),
    ({"data": "DATA", "sampling": "none", "sampling_steps": 10}, 'sampling="none" has no schedule',
     "--sampling none has no schedule"),
    ({"dataset": "moving-mnist", "split_fractions": (0.5, 0.25, 0.25)}, "leave split_fractions out",
     "leave --split out"),
    ({"data": "DATA", "epochs": 0}, "epochs must be at least 1, got 0", None),
])
def test_new_train_config_refuses_what_train_refuses_in_the_words_of_python(clips_file, options, words, flags):
    """What `train` refused at once (both kinds of data or neither, a dataset's options with one's own clips, a
    split of a dataset...) new_train_config took in silence, ignoring the one or failing later; it is refused there,
    naming the arguments, and `train` says the same with its flags."""
    options = {k: str(clips_file) if v == "DATA" else v for k, v in options.items()}
    with pytest.raises(ValueError) as caught:
        new_train_config("convlstm", **options)
    assert words in str(caught.value) and " --" not in str(caught.value)
    if flags:
        assert flags in caught.value.cli_message


def refused(attempt, words, flags, kind=ValueError):
    """``attempt()`` raises ``kind`` saying ``words`` and no flag (``--``) to a Python caller, and ``flags`` to the
    command line (its ``cli_message``)."""
    with pytest.raises(kind) as caught:
        attempt()
    assert words in str(caught.value) and "--" not in str(caught.value), str(caught.value)
    assert flags in caught.value.cli_message


def test_the_python_api_names_its_arguments_where_train_names_its_flags(tmp_path, clips_file):
    """A notebook's user was told to "lower --in-frames/--out-frames", "lower --batch-size", that "--device cuda was
    asked for", to "train one with `msrnn-zoo train ... --out`": flags of a command they had not run. Each names the
    argument to change; the CLI prints its own words (cli_message), as before."""
    import numpy as np

    from msrnn_zoo.evaluate import load_run
    from msrnn_zoo.train import open_split

    refused(lambda: Trainer.create(tmp_path / "a", config(clips_file, in_frames=4)),
            "lower in_frames/out_frames", "lower --in-frames/--out-frames")
    refused(lambda: Trainer.create(tmp_path / "a", new_train_config(
        "convlstm", model_options={"hidden_channels": 2}, dataset="moving-mnist", source="synthetic",
        protocol="small", dataset_options={"num_clips": 8}, in_frames=6)),
            "lower in_frames/out_frames", "lower --in-frames/--out-frames")
    refused(lambda: Trainer.create(tmp_path / "a", config(clips_file, max_train_clips=2)),
            "lower batch_size or give more clips", "lower --batch-size or give more clips")
    refused(lambda: Trainer.create(tmp_path / "a", config(clips_file, device="gpu")),
            "device='gpu' is not a device PyTorch knows; use device='cpu'", "--device gpu is not a device")
    cfg = config(clips_file)
    cfg.data = None
    refused(lambda: open_split(cfg, "train"), 'own clips (data="clips.npy")', "own clips (--data)")
    refused(lambda: load_run(tmp_path / "none"), "train one with Trainer.create(", "--out", FileNotFoundError)
    refused(lambda: load_run(tmp_path), "run_dir of an earlier Trainer.create", "Give the --out directory",
            FileNotFoundError)
    refused(lambda: load_run(tmp_path, device="gpu"), "device='gpu'", "--device gpu")
    Trainer.create(tmp_path / "run", config(clips_file)).close()
    refused(lambda: load_run(tmp_path / "run"), f"Trainer.resume({str(tmp_path / 'run')!r})",
            "msrnn-zoo train --resume", FileNotFoundError)
    assert not (tmp_path / "a").exists() and np.load(clips_file).shape == (40, 6, 16, 16)


@pytest.mark.parametrize(("options", "words"), [
    ({"epoch": 2}, "takes no epoch=; did you mean epochs=?"),
    ({"hidden_channels": 4}, "model's settings go in model_options (model_options={'hidden_channels': ...})"),
    ({"model_config": {}}, "builds the model's config from model_options"),
    ({"data": ""}, "data= is empty; give the path of a .npy file of clips"),
    ({"data": None, "dataset": "moving-mnist", "root": " "}, "root= is empty"),
])
def test_new_train_config_names_an_argument_it_cannot_take(tmp_path, clips_file, monkeypatch, options, words):
    """`hidden_channels=4` beside the training's arguments, or `epoch=2`, was TrainConfig's bare TypeError; `data=""`
    or `root=""` was read as the working directory, in silence (`train` refuses an empty path)."""
    monkeypatch.chdir(tmp_path)  # where "" would lead: it holds clips.npy, so only the check can refuse it
    with pytest.raises(ValueError) as caught:
        new_train_config("convlstm", **{"data": str(clips_file), **options})
    assert words in str(caught.value)


def test_resuming_from_python_names_its_arguments(tmp_path, clips_file):
    """Trainer.resume(run, epochs=1) of a run of 2 epochs said "--epochs can only raise that", and a folder that is no
    run (or a file) to "Resume the --out directory of an earlier `msrnn-zoo train`"; the CLI's words stay its own."""
    Trainer.create(tmp_path / "run", config(clips_file)).close()
    for attempt, words, flags in (
            (lambda: Trainer.resume(tmp_path / "run", epochs=1), "epochs= can only raise that", "--epochs can only"),
            (lambda: Trainer.resume(tmp_path / "none"), "run_dir of an earlier Trainer.create", "the --out directory"),
            (lambda: Trainer.resume(clips_file), "run_dir of an earlier Trainer.create", "the --out directory")):
        with pytest.raises((ValueError, OSError)) as caught:
            attempt()
        assert words in str(caught.value) and " --" not in str(caught.value), str(caught.value)
        assert flags in caught.value.cli_message


def test_new_train_config_takes_fast_path_none_and_auto_as_resume_does(clips_file):
    """new_train_config(fast_path="none") was refused with "use one of none, compile, ...", which named it, while
    Trainer.resume and set_fast_path take "none" (and "auto"); an unknown one lists the values Python takes."""
    assert config(clips_file, fast_path="none").fast_path is None
    assert config(clips_file, fast_path="auto").fast_path is None  # what auto_fast_path picks on the CPU
    with pytest.raises(ValueError, match=r"Unknown fast path 'fast'; use one of None \(no fast path\), 'compile', "):
        config(clips_file, fast_path="fast")


def test_training_refusals_name_python_arguments_to_a_python_caller(tmp_path, clips_file):
    """A notebook's user was told to pass "--val-every 0", "--fast-path none", "--no-grad-checkpointing", a larger
    "--split", that "`msrnn-zoo predict --input`" goes without the clips and that the last weights are used "without
    --weights best": flags of commands they had not run. Each names the argument; the CLI keeps its words."""
    import numpy as np

    from msrnn_zoo.evaluate import load_run

    refused(lambda: config(clips_file, val_every=0, early_stopping=2), "give val_every 1 or more",
            "give val_every (--val-every) 1 or more")
    refused(lambda: config(clips_file, compile_cells=True, fast_path="compile"), "pass compile_cells=False",
            "drop --compile-cells")
    refused(lambda: Trainer.create(tmp_path / "g", config(clips_file, grad_checkpointing=True, fast_path="clip-graph")),
            "grad_checkpointing=False, or no fast path", "(--no-grad-checkpointing, or --fast-path none")
    few = tmp_path / "few.npy"
    np.save(few, np.zeros((6, 6, 16, 16), dtype=np.uint8))
    refused(lambda: Trainer.create(tmp_path / "s", config(few, batch_size=1, split_fractions=(0.8, 0.1, 0.1))),
            "larger share (split_fractions=(0.75, 0.1, 0.15))", "larger share (--split 0.75,0.1,0.15)")
    run = tmp_path / "run"
    Trainer.create(run, config(clips_file, epochs=1)).fit()
    refused(lambda: load_run(run, weights="best"), "val_every=N or early_stopping=N", "without --weights best",
            FileNotFoundError)
    record = json.loads((run / "train_config.json").read_text())
    (run / "train_config.json").write_text(json.dumps({**record, "device": "cuda:7"}))
    refused(lambda: Trainer.resume(run), "resume it with device=", "pass --device ")
    (run / "train_config.json").write_text(json.dumps({**record, "fast_path": "clip-graph"}))
    refused(lambda: Trainer.resume(run, epochs=2), "resume it with fast_path='none'", "pass --fast-path none")
    (run / "train_config.json").write_text(json.dumps(record))
    moved = shutil.move(clips_file, tmp_path / "moved.npy")
    refused(lambda: Trainer.resume(run, epochs=2), f"forecast_clip(load_run({str(run)!r})[0], ...)",
            f"`msrnn-zoo predict {run} --input FRAMES.npy`", FileNotFoundError)
    assert Path(moved).is_file() and not (tmp_path / "g").exists() and not (tmp_path / "s").exists()


def test_the_training_split_loads_in_spawned_workers_as_in_this_process():
    """macOS (and Windows) start DataLoader workers with "spawn", not Linux's "fork": each worker unpickles the
    dataset, so it must pickle (no lambda, no open memory map), and its clips must not depend on the process they
    are read in (a clip is a function of its index, not of a worker's random state)."""
    from torch.utils.data import DataLoader, Subset

    from msrnn_zoo.train import open_split

    cfg = new_train_config("convlstm", model_options={"hidden_channels": 4}, dataset="moving-mnist",
                           source="synthetic", protocol="small", dataset_options={"num_clips": 4}, batch_size=2)
    dataset = open_split(cfg, "train")
    order = [3, 0]  # as epoch_batches shuffles them
    spawned = DataLoader(Subset(dataset, order), batch_size=2, num_workers=1, multiprocessing_context="spawn")
    assert torch.equal(next(iter(spawned)), torch.stack([dataset[i] for i in order]))


def _as_windows_renames(monkeypatch):
    """Windows refuses to rename or delete a folder while a file in it is open (a run's lock, held); Linux does not."""
    import msrnn_zoo.io
    import msrnn_zoo.train

    def held_in(folder) -> bool:
        return any(lock.is_locked and Path(lock.lock_file).parent.resolve() == Path(folder).resolve()
                   for lock in list(msrnn_zoo.train._HELD_HERE.values()))

    rename, rmtree = os.rename, shutil.rmtree

    def refusing_rename(src, dst):
        if held_in(src):
            raise PermissionError(13, "The process cannot access the file because it is being used by another "
                                      "process", str(src))
        rename(src, dst)

    def refusing_rmtree(path, ignore_errors=False, **kw):
        if held_in(path):
            if ignore_errors:
                return
            raise PermissionError(13, "The process cannot access the file", str(path))
        rmtree(path, ignore_errors=ignore_errors, **kw)

    monkeypatch.setattr(msrnn_zoo.io.os, "rename", refusing_rename)
    monkeypatch.setattr(msrnn_zoo.train.shutil, "rmtree", refusing_rmtree)
    monkeypatch.setattr(msrnn_zoo.train, "OPEN_FILES_PIN_FOLDERS", True)


def test_a_replacement_run_is_swapped_in_where_an_open_lock_pins_its_folder(tmp_path, clips_file, monkeypatch):
    """On Windows `train --force` trained the whole new run, then failed to swap it in: it renamed both runs while
    their locks were held open in them, which Windows refuses; a replacement dropped left its folder behind."""
    run = tmp_path / "run"
    Trainer.create(run, config(clips_file, epochs=1)).fit()
    _as_windows_renames(monkeypatch)
    Trainer.create(run, config(clips_file, epochs=1, seed=1), force=True).fit()
    assert json.loads((run / "train_config.json").read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    dropped = Trainer.create(run, config(clips_file, epochs=1, seed=2), force=True)
    dropped.close()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert json.loads((run / "train_config.json").read_text())["seed"] == 1
