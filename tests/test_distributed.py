"""Training under torchrun: N processes of batch B take the steps of one process of batch N x B."""

import json
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from msrnn_zoo.cli import main
from msrnn_zoo.train import epoch_batches


def test_each_process_trains_its_slice_of_the_single_process_batches():
    data = torch.arange(23.0).view(23, 1, 1, 1, 1)
    whole = [b.flatten().tolist() for b in epoch_batches(data, 6, seed=3, epoch=1)]
    shards = [[b.flatten().tolist() for b in epoch_batches(data, 3, seed=3, epoch=1, rank=r, world_size=2)]
              for r in range(2)]
    assert len(whole) == len(shards[0]) == len(shards[1]) == 3
    for j, batch in enumerate(whole):
        assert shards[0][j] + shards[1][j] == batch
    assert [b.flatten().tolist() for b in epoch_batches(data, 6, seed=3, epoch=1, world_size=1)] == whole


def history(run):
    return [json.loads(line)["loss"] for line in (run / "history.jsonl").read_text().splitlines() if '"loss"' in line]


def torchrun(tmp_path, *args, command=("train",)):
    """``torchrun --standalone --nproc_per_node 2 -m msrnn_zoo.cli train ...`` on the CPU (gloo)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "msrnn_zoo.cli", *command, *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_two_processes_of_batch_b_train_as_one_of_batch_2b_and_resume(tmp_path, clips_file):
    model = ["ms-predrnn-v2", "--data", clips_file, "--hidden", "4", "--layers", "4", "--in-frames", "3",
             "--out-frames", "3", "--seed", "5", "--sampling-steps", "8",  # one schedule over both epochs
             "--val-every", "1"]
    single = tmp_path / "single"
    result = CliRunner().invoke(main, ["train", *map(str, model), "--batch-size", "8", "--epochs", "2",
                                       "--out", str(single)])
    assert result.exit_code == 0, result.output
    pair = tmp_path / "pair"
    done = torchrun(tmp_path, *model, "--batch-size", "4", "--epochs", "1", "--out", pair)
    assert done.stdout.count("Run saved in") == 1  # rank 0 speaks, rank 1 is silent
    assert json.loads((pair / "train_config.json").read_text())["world_size"] == 2
    assert len(history(pair)) == 4  # one line per step: only rank 0 writes
    torchrun(tmp_path, "--resume", pair, "--epochs", "2")
    expected, got = history(single), history(pair)
    assert len(got) == len(expected) == 8
    # within 1e-5 relative: the losses are sums over pixels (about 400), where float32 itself resolves ~3e-5
    assert got == pytest.approx(expected, rel=1e-5, abs=0)
    # each process validates its half of the validation split; the loss is that of the whole split, said once
    assert done.stdout.count("val loss") == 1
    validations = [[json.loads(line)["val_loss"] for line in (run / "history.jsonl").read_text().splitlines()
                    if "val_loss" in line] for run in (single, pair)]
    assert len(validations[0]) == 2 and validations[1] == pytest.approx(validations[0], rel=1e-5, abs=0)
    # the weights too: what rank 0 saved is what one process of batch 8 trained
    from safetensors.torch import load_file

    ours, theirs = load_file(str(pair / "model.safetensors")), load_file(str(single / "model.safetensors"))
    for key, value in theirs.items():
        torch.testing.assert_close(ours[key], value, rtol=1e-4, atol=1e-5)
    # a run of two processes resumes only with two
    again = CliRunner().invoke(main, ["train", "--resume", str(pair), "--epochs", "3"])
    assert again.exit_code == 1 and "torchrun --nproc_per_node 2" in again.output


@pytest.mark.parametrize("command", [["evaluate", "runs/a"], ["predict", "runs/a", "--out", "f.gif"],
                                     ["data", "info", "kth"], ["list"]])
def test_commands_that_run_in_one_process_refuse_torchrun(monkeypatch, tmp_path, command):
    """Each of torchrun's copies would run the whole command and write the same files at once."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    for rank, says in (("0", True), ("1", False)):  # one line from rank 0; rank 1 fails in silence
        monkeypatch.setenv("RANK", rank)
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1, result.output
        assert ("runs in one process: start it without torchrun" in " ".join(result.output.split())) is says
        assert list(tmp_path.iterdir()) == []


def test_a_torchrun_job_described_wrongly_says_so(monkeypatch, tmp_path, clips_file):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    result = CliRunner().invoke(main, ["train", "convlstm", "--data", str(clips_file), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "RANK=None" in result.output and "unset WORLD_SIZE" in " ".join(result.output.split())
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_reproduce_under_torchrun_trains_the_recipes_batch_and_writes_once(tmp_path):
    """Each process takes half the recipe's batch (so the same steps as one process); rank 0 alone scores the run
    and writes its card."""
    args = ["reproduce", "convlstm", "moving-mnist", "--source", "synthetic", "--budget-steps", "2", "--set",
            "hidden_channels=4", "--set", "num_layers=2", "--max-eval-clips", "4"]
    single = tmp_path / "single"
    result = CliRunner().invoke(main, [*args, "--out", str(single)])
    assert result.exit_code == 0, result.output
    pair = tmp_path / "pair"
    done = torchrun(tmp_path, *args, "--out", pair, command=())
    assert done.stdout.count("Model card written") == 1 and done.stdout.count("Recipe convlstm.moving-mnist") == 1
    train = json.loads((pair / "train_config.json").read_text())
    assert (train["batch_size"], train["world_size"]) == (2, 2)  # the recipe's 4, shared
    assert history(pair) == pytest.approx(history(single), rel=1e-5, abs=0)
    assert len(history(pair)) == 2
    for name in ("README.md", "recipe.json", "metrics-test.json", "profile.json"):
        assert (pair / name).is_file(), name
    odd = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "3",
                          "-m", "msrnn_zoo.cli", *args, "--out", str(tmp_path / "odd")],
                         capture_output=True, text=True, timeout=600,
                         env={k: v for k, v in os.environ.items() if k != "WORLD_SIZE"} | {"OMP_NUM_THREADS": "1"})
    assert odd.returncode != 0 and "does not split evenly over torchrun's 3 processes" in odd.stderr
    assert not (tmp_path / "odd").exists()


def test_a_job_without_its_rendezvous_address_says_to_start_it_with_torchrun(monkeypatch, tmp_path, clips_file):
    """WORLD_SIZE, RANK and LOCAL_RANK set by hand (or left over in a shell) without MASTER_ADDR printed PyTorch's
    "Error initializing torch.distributed using env:// rendezvous: environment variable MASTER_ADDR expected", which
    says nothing of torchrun or of WORLD_SIZE."""
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("MASTER_PORT", "29500")
    result = CliRunner().invoke(main, ["train", "convlstm", "--data", str(clips_file), "--out", str(tmp_path / "r")])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "MASTER_ADDR (where they meet, which torchrun sets) is not set" in said and "unset WORLD_SIZE" in said
    assert not (tmp_path / "r").exists()


def test_a_process_started_by_hand_says_what_it_waits_for(monkeypatch, capsys):
    """WORLD_SIZE=2 set by hand with a rendezvous address and no second process waited in silence, for as long as
    PyTorch's timeout; under torchrun (TORCHELASTIC_RUN_ID) nothing is said."""
    import torch.distributed as dist

    from msrnn_zoo import distributed

    for name, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29511"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    joined = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: joined.append(backend))
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    distributed.setup(torch.device("cpu"))
    said = " ".join(capsys.readouterr().err.split())
    assert joined == ["gloo"] and "Rank 1 of 2: waiting for the job's other processes at 127.0.0.1:29511" in said
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")
    distributed.setup(torch.device("cpu"))
    assert capsys.readouterr().err == "" and joined == ["gloo", "gloo"]


def test_ctrl_c_of_a_torchrun_job_says_to_resume_it_under_torchrun(tmp_path):
    """Ctrl-C of `torchrun --nproc_per_node 2 ... train` said "Continue ... with: msrnn-zoo train --resume RUN", a
    command that refuses a run of two processes."""
    from types import SimpleNamespace

    from msrnn_zoo.cli import _how_to_go_on

    (tmp_path / "latest.json").write_text('{"name": "step-00000010", "step": 10}')
    for processes, expected in ((2, f"torchrun --nproc_per_node 2 -m msrnn_zoo.cli train --resume {tmp_path}"),
                                (1, f"with: msrnn-zoo train --resume {tmp_path}")):
        trainer = SimpleNamespace(progress=SimpleNamespace(step=12),
                                  cfg=SimpleNamespace(checkpoint_every=0, world_size=processes))
        said = _how_to_go_on(tmp_path, trainer)
        assert said.endswith(expected) and "at step 10" in said, said
    assert "torchrun --nproc_per_node 3 -m msrnn_zoo.cli reproduce --resume" in _how_to_go_on(
        tmp_path / "none", SimpleNamespace(progress=SimpleNamespace(step=1),
                                           cfg=SimpleNamespace(checkpoint_every=0, world_size=3)), "reproduce")


def test_more_processes_than_clips_says_to_start_fewer(monkeypatch, tmp_path, clips_file):
    """3 processes of --batch-size 1 on 2 clips said "fewer than one batch of 3; lower --batch-size", which cannot
    go lower than 1: the processes are what to lower."""
    import torch.distributed as dist
    import torch.nn.parallel

    for name, value in {"WORLD_SIZE": "3", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29512", "TORCHELASTIC_RUN_ID": "job"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)  # no process group: the job fails before any step
    monkeypatch.setattr(dist, "get_world_size", lambda: 3)
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", lambda module, device_ids: module)
    args = ["--hidden", "2", "--layers", "1", "--batch-size", "1", "--max-train-clips", "2"]
    out = str(tmp_path / "r")
    result = CliRunner().invoke(main, ["train", "convlstm", "--data", str(clips_file), *args, "--out", out])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "fewer than one batch of 3 (--batch-size 1 on each of 3 processes)" in said, said
    assert "start fewer processes (torchrun --nproc_per_node)" in said
    assert not (tmp_path / "r").exists()


def test_another_process_of_the_job_stopping_says_how_to_go_on(monkeypatch, tmp_path, clips_file):
    """A rank killed mid-step (by hand, by the out-of-memory killer) left rank 0 with gloo's traceback ending in "Read
    error ... Connection reset by peer", which names neither the job nor how to go on; other errors stay as they were.
    """
    import torch.distributed as dist
    import torch.nn.parallel

    from msrnn_zoo.train import Trainer

    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29513", "TORCHELASTIC_RUN_ID": "job"}.items():
        monkeypatch.setenv(name, value)
    for name, stub in {"is_initialized": lambda: True, "get_world_size": lambda: 2, "barrier": lambda: None,
                       "destroy_process_group": lambda: None}.items():
        monkeypatch.setattr(dist, name, stub)
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", lambda module, device_ids: module)
    args = ["train", "convlstm", "--data", str(clips_file), "--hidden", "2", "--layers", "1", "--out"]
    lost = RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:6563: "
                        "Connection reset by peer. This is typically caused by a remote worker hanging")
    for folder, error in (("lost", lost), ("bug", RuntimeError("a cell's own mistake"))):
        def stopped(self, *a, error=error, **k):
            raise error

        monkeypatch.setattr(Trainer, "_fit", stopped)
        result = CliRunner().invoke(main, [*args, str(tmp_path / folder)])
        said = " ".join(result.output.split())
        if error is lost:
            assert result.exit_code == 1 and "Traceback" not in result.output, result.output
            assert "Another process of this torchrun job stopped" in said and "Connection reset by peer)" in said
            assert f"torchrun --nproc_per_node 2 -m msrnn_zoo.cli train --resume {tmp_path / 'lost'}" in said, said
        else:
            assert result.exception is error  # not taken for a lost process


def test_a_new_run_over_a_run_of_two_processes_says_to_resume_it_under_torchrun(tmp_path):
    """The same torchrun command again said "continue it with `msrnn-zoo train --resume RUN`", which refuses a run
    of two processes."""
    from msrnn_zoo.io import OverwriteRefusedError
    from msrnn_zoo.train import check_run_dir

    run = tmp_path / "r"
    run.mkdir()
    (run / ".msrnn-zoo-run").write_text("{}")
    for config, launcher in (('{"world_size": 2}', "torchrun --nproc_per_node 2 -m msrnn_zoo.cli"),
                             ('{"world_size": 1}', "msrnn-zoo"), ("not json", "msrnn-zoo")):
        (run / "train_config.json").write_text(config)
        with pytest.raises(OverwriteRefusedError) as refused:
            check_run_dir(run)
        assert f"`{launcher} train --resume {run}`" in refused.value.cli_message
