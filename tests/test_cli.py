import json
import re
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from msrnn_zoo.cli import main
from msrnn_zoo.testing import run_cli as run


def test_list_and_json():
    assert "ms-convlstm" in run("list").output
    data = json.loads(run("list", "--json").output)
    names = {m["name"] for m in data["models"]}
    assert {"convlstm", "ms-convlstm"} <= names
    assert any(d["name"] == "moving-mnist" for d in data["datasets"])
    only_ms = json.loads(run("list", "ms-*", "--json").output)
    assert all(m["name"].startswith("ms-") for m in only_ms["models"])
    assert "No model or dataset name matches 'convlstm*x'" in " ".join(run("list", "convlstm*x").output.split())
    assert "No model" not in run("list", "ms-*").output


def test_list_prints_only_the_tables_that_have_rows():
    """A pattern matching cells only ('*convlstm') printed an empty Datasets table under the models."""
    cells_only = run("list", "*convlstm").output
    assert "Models (2)" in cells_only and "Datasets" not in cells_only
    datasets_only = run("list", "moving-*").output
    assert "Datasets (1)" in datasets_only and "Models" not in datasets_only
    nothing = run("list", "nothing*").output
    assert "Models" not in nothing and "Datasets" not in nothing and "No model or dataset name matches" in nothing


def test_list_tables_keep_whole_names_when_not_printed_to_a_terminal(monkeypatch):
    """Into a pipe or a CI log the tables were squashed to 80 columns: `checkpoi…`, `msrnn-zo…`, `moving-m…`."""
    monkeypatch.delenv("COLUMNS", raising=False)  # rich's width when the output is no terminal: 80
    records = json.loads(CliRunner().invoke(main, ["list", "--pretrained", "--json"]).output)
    shown = CliRunner().invoke(main, ["list", "--pretrained"])  # CliRunner's output is no terminal
    assert shown.exit_code == 0 and "…" not in shown.output, shown.output
    lines = shown.output.splitlines()
    for r in records:  # each record on one line of its own, every name whole
        assert any(re.search(rf"│ {re.escape(r['name'])} +│ {r['dataset']} +│ {r['protocol']} +│ "
                             rf"{re.escape(r['repo_id'])} +│", line) for line in lines), r["name"]
    listed = CliRunner().invoke(main, ["list"]).output
    assert "…" not in listed and re.search(r"│ moving-mnist +│ paper \(default\) +│", listed), listed


def test_info_shows_scales_parameters_and_flops():
    out = run("info", "ms-convlstm", "--size", "32", "--hidden", "8").output
    assert "1, 1/2, 1/4, 1/4, 1/2, 1" in out and "FLOPs" in out
    data = json.loads(run("info", "ms-convlstm", "--size", "32", "--hidden", "8", "--json").output)
    assert data["layer_sizes"] == [[32, 32], [16, 16], [8, 8], [8, 8], [16, 16], [32, 32]]
    assert data["parameters"] > 0 and data["flops_per_frame"] > 0
    assert sum(data["flops_per_frame_by_op"].values()) == data["flops_per_frame"]
    shown = run("info", "ms-preciplstm", "--size", "32", "--hidden", "8").output
    assert "convolution" in shown and "bmm" in shown  # its attention's products, beside the convolutions
    small = run("info", "ms-convlstm", "--size", "16", "--hidden", "4").output
    assert "1.405 M (convolution 1.403, bmm 0.002)" in small  # was "0.001 G (convolution 0.001, bmm 0.000)"
    radar = json.loads(run("info", "ms-convlstm", "--size", "4096", "--hidden", "8", "--json").output)
    assert radar["flops_per_frame"] > data["flops_per_frame"]  # counted on the meta device: no 4096x4096 state


def test_info_describes_the_model_train_would_build():
    """info took --hidden but not --layers, --kernel-size or --option: a run's own model could not be described."""
    data = json.loads(run("info", "ms-trajgru", "--size", "16", "--hidden", "4", "--layers", "4", "--kernel-size",
                          "5", "--option", "links=3", "--json").output)
    assert data["layer_sizes"] == [[16, 16], [8, 8], [8, 8], [16, 16]]
    assert data["config"]["kernel_size"] == 5 and data["config"]["cell_options"] == {"links": 3}
    assert "pass --layers instead" in run("info", "ms-trajgru", "--option", "num_layers=4", ok=False).output


@pytest.mark.parametrize(("model", "size"), [("ms-motionrnn", 15), ("ms-motionrnn", 12), ("motionrnn", 15),
                                           ("ms-convlstm", 6), ("ms-convlstm", 1)])
def test_the_size_suggested_for_a_refused_one_is_accepted(model, size):
    """The suggestion satisfies the schedule and every cell at once (ms-motionrnn needs a multiple of 8, not 4)."""
    line = " ".join(run("info", model, "--size", size, "--hidden", 8, ok=False).output.split())
    suggested = re.search(r"The nearest size this model accepts: (\d+)x(\d+)\.", line)
    assert suggested and suggested[1] == suggested[2], line
    assert abs(int(suggested[1]) - size) <= 4
    run("info", model, "--size", suggested[1], "--hidden", 8)
    if not model.startswith("ms-"):
        assert "multi-scale" not in line  # the single-scale model is not told about the pyramid's needs


def test_plugins_lists_distributions():
    data = json.loads(run("plugins", "--json").output)
    convlstm = next(p for p in data if p["name"] == "convlstm")
    assert convlstm["distribution"] == "msrnn-convlstm" and convlstm["cells"] == ["convlstm"]
    assert convlstm["error"] is None


def test_train_evaluate_predict_on_own_clips(tmp_path, clips_file):
    out = tmp_path / "run"
    run("train", "ms-convlstm", "--data", clips_file, "--out", out, "--hidden", "4", "--in-frames", "3",
        "--out-frames", "3", "--batch-size", "8")
    assert (out / "model.safetensors").is_file()
    again = run("train", "ms-convlstm", "--data", clips_file, "--out", out, ok=False)
    assert again.exit_code == 1 and "Traceback" not in again.output
    assert "holds a run of msrnn-zoo train already" in again.output and "--resume" in again.output
    kept = clips_file.read_bytes()  # the data file given as --out: it was called a directory "not empty"
    onto_file = " ".join(run("train", "convlstm", "--data", clips_file, "--out", clips_file, ok=False).output.split())
    assert f"{clips_file} is a file; a run is a directory of its own, so give --out a new or empty" in onto_file
    assert clips_file.read_bytes() == kept
    run("train", "--resume", out, "--epochs", "2", "--grad-checkpointing", "--channels-last", "--fast-path", "none")
    resumed = json.loads((out / "train_config.json").read_text())
    assert resumed["grad_checkpointing"] is True and resumed["channels_last"] is True
    assert resumed["fast_path"] is None
    done = run("train", "--resume", out, ok=False)
    assert done.exit_code == 1 and "already finished its 2 epoch(s)" in done.output
    assert json.loads((out / "latest.json").read_text())["epoch"] == 2
    result = run("evaluate", out)
    assert "copy-last-frame" in result.output and "sum over pixels" in result.output
    assert "scoring test clips: 4/4" in result.output  # not a terminal: a line (at the end, or every 30 s)
    from msrnn_zoo.evaluate import evaluate_run

    calls = []
    evaluate_run(out, batch_size=3, on_batch=lambda done, total: calls.append((done, total)))
    assert calls == [(3, 4), (4, 4)]
    metrics = json.loads((out / "metrics-test.json").read_text())
    assert len(metrics["model"]["metrics"]["mse"]["per_frame"]) == 3
    assert "sum over pixels" in metrics["model"]["metrics"]["mse"]["convention"]
    baselines = ("copy-last-frame", "mean-frame", "blank")
    mse = {name: metrics[name]["metrics"]["mse"]["mean"] for name in ("model", *baselines)}
    best = min(baselines, key=mse.get)
    margin = (mse[best] - mse["model"]) / mse[best]
    side = "below" if margin >= 0 else "above"
    verdict = f"is {abs(margin):.0%} {side} the best baseline's ({best}, {mse[best]:.4f})"
    assert verdict in " ".join(result.output.split())
    gif = tmp_path / "f.gif"
    run("predict", out, "--out", gif, "--scale", "1")
    assert Image.open(gif).n_frames == 6 and gif.with_suffix(".png").is_file()
    assert run("predict", out, "--out", gif, ok=False).exit_code == 1
    context = tmp_path / "context.npy"
    np.save(context, np.random.default_rng(1).random((2, 16, 16), dtype=np.float32))
    run("predict", out, "--input", context, "--horizon", "4", "--out", tmp_path / "g.gif")
    assert np.load(tmp_path / "g.npy").shape == (4, 1, 16, 16)
    # over it, a forecast of the test clip (no array): g.npy stood beside it, stale and no longer known as ours
    replaced = run("predict", out, "--out", tmp_path / "g.gif", "--force")
    assert "Removed" in replaced.output and not (tmp_path / "g.npy").exists()
    run("predict", out, "--input", context, "--horizon", "4", "--out", tmp_path / "g.gif", "--force")
    np.save(tmp_path / "mine.npy", np.zeros(3))  # a user's array beside a picture of ours: never removed
    run("predict", out, "--out", tmp_path / "mine.gif")
    run("predict", out, "--out", tmp_path / "mine.gif", "--force")
    assert np.load(tmp_path / "mine.npy").shape == (3,) and (tmp_path / "g.npy").is_file()
    for many in ((5, 2, 16, 16), (5, 2, 1, 16, 16)):  # a file of clips, as train's --data takes, is not one clip
        np.save(context, np.zeros(many, dtype=np.float32))
        refused = run("predict", out, "--input", context, "--out", tmp_path / "h.png", ok=False)
        assert refused.exit_code == 1 and "save one of them" in refused.output and not (tmp_path / "h.png").exists()
    refused = run("predict", out, "--input", context, "--index", "3", "--out", tmp_path / "h.png", ok=False)
    assert refused.exit_code == 1 and "--index picks a clip of the run's test split" in refused.output  # was ignored
    for empty in ((0, 1, 16, 16), (3, 1, 0, 16)):  # was NumPy's "zero-size array to reduction operation minimum"
        np.save(context, np.zeros(empty, dtype=np.float32))
        refused = run("predict", out, "--input", context, "--out", tmp_path / "h.png", ok=False)
        assert refused.exit_code == 1 and "holds no frames" in refused.output and not (tmp_path / "h.png").exists()


def test_train_prints_a_validation_loss_after_each_epoch_and_stops_early_as_asked(tmp_path, clips_file, monkeypatch):
    from msrnn_zoo.train import Trainer

    small = ["--data", clips_file, "--hidden", "4", "--layers", "2", "--in-frames", "3", "--out-frames", "3",
             "--batch-size", "8"]
    empty = run("train", "ms-convlstm", *small, "--split", "0.9,0,0.1", "--val-every", "2", "--out", tmp_path / "e",
                ok=False)
    assert empty.exit_code == 1 and "holds no clips: pass --val-every 0" in " ".join(empty.output.split())
    assert not (tmp_path / "e").exists()  # said at start, not after an epoch
    quiet = run("train", "ms-convlstm", *small, "--out", tmp_path / "q")  # by default: none, as the paper trained
    assert "val loss" not in quiet.output
    scores = iter([2.0, 3.0, 4.0])
    monkeypatch.setattr(Trainer, "validation_loss", lambda self: next(scores))
    out = tmp_path / "run"
    result = run("train", "ms-convlstm", *small, "--epochs", "4", "--early-stopping", "2", "--out", out)
    lines = result.output.splitlines()
    assert "epoch 1/4  val loss 2.0000 (best so far)" in lines
    assert lines.index("epoch 1/4  val loss 2.0000 (best so far)") > lines.index(next(
        line for line in lines if line.startswith("epoch 1/4  step 4/16")))  # after the epoch's progress line
    assert "epoch 3/4  val loss 4.0000 (best 2.0000 after epoch 1, step 4)" in lines
    said = " ".join(result.output.split())
    assert "Early stopping ended the run after epoch 3 of 4" in said and "Run saved in" in said
    assert "evaluate, predict, card and push --weights best" in said
    best = run("predict", out, "--out", tmp_path / "best.png", "--weights", "best")  # epoch 1's weights
    assert "best.png" in "".join(best.output.split())
    none = run("predict", tmp_path / "q", "--out", tmp_path / "q.png", "--weights", "best", ok=False)
    said = " ".join(none.output.split())
    assert none.exit_code == 1 and "has no weights of a best validation" in said and "Traceback" not in said
    assert not (tmp_path / "q.png").exists()
    from msrnn_zoo.evaluate import evaluate_run

    with pytest.raises(ValueError, match="weights must be one of 'last', 'best', got 'newest'"):
        evaluate_run(out, weights="newest")
    scored = evaluate_run(out, max_clips=2, weights="best")
    assert scored["model"].metrics != evaluate_run(out, max_clips=2)["model"].metrics  # epoch 1's, not epoch 3's
    done = run("train", "--resume", out, ok=False)
    assert done.exit_code == 1 and "resume it with a larger --early-stopping" in " ".join(done.output.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["info", "ms-convlstmm"], "Did you mean 'ms-convlstm'"),
        (["train", "convlstm", "--dataset", "nope", "--out", "{tmp}/r"], "Unknown dataset 'nope'"),
        (["train", "convlstm", "--data", "{tmp}/missing.npy", "--out", "{tmp}/r"], "No clip file"),
        (["train", "convlstm", "--out", "{tmp}/r"], "exactly one of --dataset"),
        # options of the other kind of data, which were ignored in silence
        (["train", "convlstm", "--dataset", "moving-mnist", "--source", "synthetic", "--protocol", "small", "--hidden",
          "2", "--layers", "1", "--max-train-clips", "4", "--max-eval-clips", "2", "--split", "0.5,0.25,0.25",
          "--out", "{tmp}/r"],
         "a --dataset comes split already (its --protocol says how): leave --split out"),
        (["train", "convlstm", "--data", "{tmp}/c.npy", "--source", "synthetic", "--out", "{tmp}/r"],
         "--source belongs to --dataset"),
        (["train", "convlstm", "--data", "{tmp}/c.npy", "--root", "{tmp}", "--protocol", "small", "--out", "{tmp}/r"],
         "--root, --protocol belong to --dataset"),
        (["train", "convlstm", "--dataset", "moving-mnist", "--source", "synthetic", "--protocol", "small", "--hidden",
          "2", "--layers", "1", "--max-train-clips", "4", "--max-eval-clips", "2", "--sampling", "none",
          "--sampling-steps", "100", "--out", "{tmp}/r"], "--sampling none has no schedule"),
        (["info", "ms-convlstm", "--size", "-4"], "Invalid value for '--size'"),
        (["info", "ms-convlstm", "--hidden", "0"], "Invalid value for '--hidden'"),
        (["info", "ms-convlstm", "--size", "6"], "divisible by 4"),
        (["evaluate", "{tmp}/nothing"], "No run directory"),
        (["predict", "{tmp}/nothing"], "No run directory"),
        (["evaluate", "{tmp}"], "is not a run: it holds no train_config.json"),
        (["predict", "{tmp}"], "is not a run: it holds no train_config.json"),
        (["train", "--resume", "{tmp}/nothing"], "is not a run: no such directory"),
        (["train", "--resume", "{tmp}"], "is not a run: it holds no train_config.json"),
        (["train", "convlstm", "--resume", "{tmp}"], "is not a run: it holds no train_config.json"),
        # a key given twice: the last value won in silence
        (["train", "ms-trajgru", "--dataset", "moving-mnist", "--source", "synthetic", "--protocol", "small",
          "--hidden", "2", "--layers", "2", "--max-train-clips", "4", "--max-eval-clips", "2", "--option", "links=3",
          "--option", "links=5", "--out", "{tmp}/r"],
         "links is given twice (--option links=3 and --option links=5); give it once"),
        (["reproduce", "ms-convlstm", "moving-mnist", "--source", "synthetic", "--budget-steps", "1",
          "--max-eval-clips", "2", "--set", "hidden_channels=2", "--set", "num_layers=2", "--set", "batch_size=1",
          "--set", "lr=1e-3", "--set", "lr=3e-4", "--out", "{tmp}/r"],
         "lr is given twice (--set lr=1e-3 and --set lr=3e-4); give it once"),
    ],
)
def test_user_errors_are_one_red_line(tmp_path, args, message):
    result = run(*[a.format(tmp=tmp_path) for a in args], ok=False)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_debug_shows_the_traceback():
    result = CliRunner().invoke(main, ["--debug", "info", "nope"])
    assert result.exit_code != 0 and isinstance(result.exception, ValueError)


def test_bad_clip_values(tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full((10, 4, 8, 8), 3.0, dtype=np.float32))
    result = run("train", "convlstm", "--data", bad, "--out", tmp_path / "r", "--hidden", "4", ok=False)
    assert "must lie in [0, 1]" in result.output


@pytest.mark.parametrize("channels", [1, 3])
def test_channels_last_clips_are_refused_with_the_transpose(tmp_path, channels):
    """(N, T, H, W, C), as images are stored, trained as H channels of W x C-pixel frames: 16 channels of 16x3."""
    path = tmp_path / "hwc.npy"
    np.save(path, np.zeros((10, 6, 16, 16, channels), dtype=np.uint8))
    result = run("train", "convlstm", "--data", path, "--out", tmp_path / "r", "--hidden", "4", "--layers", "1",
                 "--in-frames", "3", "--out-frames", "3", ok=False)
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "looks like (N, T, H, W, C), channels last" in said, said
    assert "transpose(0, 1, 4, 2, 3)" in said and not (tmp_path / "r").exists()
    np.save(path, np.zeros((10, 6, channels, 16, 16), dtype=np.uint8))
    run("train", "convlstm", "--data", path, "--out", tmp_path / "r", "--hidden", "4", "--layers", "1",
        "--in-frames", "3", "--out-frames", "3", "--batch-size", "2")  # (N, T, C, H, W) as asked: trains


@pytest.mark.parametrize("channels", [1, 3])
def test_a_channels_last_input_clip_is_refused_with_the_transpose(tmp_path, channels):
    """predict --input of a clip (T, H, W, C) said it read 16 channels and to pass one of its several clips."""
    from msrnn_zoo.forecast import read_input_clip

    path = tmp_path / "hwc.npy"
    np.save(path, np.zeros((4, 16, 16, channels), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"looks like \(T, H, W, C\), channels last.*transpose\(0, 3, 1, 2\)"):
        read_input_clip(path, channels)
    np.save(path, np.zeros((4, 16, 16, channels), dtype=np.uint8).transpose(0, 3, 1, 2))
    assert read_input_clip(path, channels).shape == (4, channels, 16, 16)  # (T, C, H, W) as asked: read


def test_model_card_from_a_run(tmp_path, clips_file):
    out = tmp_path / "run"
    run("train", "convlstm", "--data", clips_file, "--out", out, "--hidden", "4", "--layers", "2",
        "--in-frames", "3", "--out-frames", "3", "--batch-size", "8")
    run("card", out, "--repo-id", "someone/convlstm-clips", "--out", tmp_path / "before.md")
    assert "Not evaluated yet" in (tmp_path / "before.md").read_text()
    run("evaluate", out)
    run("card", out, "--repo-id", "someone/convlstm-clips")
    text = (out / "README.md").read_text()
    assert text.startswith("---\n") and "library_name: msrnn-zoo" in text
    assert 'pretrained="someone/convlstm-clips"' in text and "copy-last-frame" in text
    assert "sum over pixels and channels per frame" in text
    assert "| training memory |" in text and "| FLOPs per frame at 16x16 |" in text and "layer sizes at 16x16" in text
    assert re.search(r"\| FLOPs per frame at 16x16 \| [1-9][0-9.]* [kM]FLOPs", text)  # not "0.000 GFLOPs"
    assert (out / "metrics.png").is_file() and (out / "forecast.png").is_file()
    assert run("card", out, "--repo-id", "someone/convlstm-clips", ok=False).exit_code == 1  # never overwrites
    for wrong in ("", "convlstm-clips", "someone/convlstm/clips"):  # a card whose load line could never load
        refused = run("card", out, "--repo-id", wrong, "--out", tmp_path / "wrong.md", ok=False)
        assert f"{wrong!r} is not a Hub repo id like 'user/model'" in refused.output
        assert not (tmp_path / "wrong.md").exists()
    assert "evaluate --frames future` on" in text
    run("evaluate", out, "--precision", "bf16", "--force")  # its numbers are not fp32's: the card says how they were
    assert json.loads((out / "metrics-test.json").read_text())["precision"] == "bf16"
    run("card", out, "--repo-id", "someone/convlstm-clips", "--out", tmp_path / "bf16.md")
    assert "evaluate --frames future --precision bf16` on" in (tmp_path / "bf16.md").read_text()


def test_download_fetches_a_dataset_file_from_a_mirror(tmp_path, monkeypatch):
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    np.save(mirror / "mnist_test_seq.npy", np.zeros((20, 3, 64, 64), dtype=np.uint8))

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(mirror)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MSRNN_ZOO_MOVING_MNIST_URL", f"http://127.0.0.1:{server.server_address[1]}/")
        result = run("download", "moving-mnist", "--source", "standard", "--root", tmp_path / "data")
        assert "3 clips ready" in result.output
        assert (tmp_path / "data" / "moving-mnist" / "mnist_test_seq.npy").is_file()
        (mirror / "mnist_test_seq.npy").unlink()
        missing = run("download", "moving-mnist", "--source", "standard", "--root", tmp_path / "other", ok=False)
        assert missing.exit_code == 1 and "Traceback" not in missing.output
        assert not (tmp_path / "other").exists()  # the folders it made for the file were left behind, empty
        (tmp_path / "mine" / "moving-mnist").mkdir(parents=True)  # the user's folders: kept, empty as they were
        run("download", "moving-mnist", "--source", "standard", "--root", tmp_path / "mine", ok=False)
        assert (tmp_path / "mine" / "moving-mnist").is_dir()
        (tmp_path / "mine" / "moving-mnist").rmdir()
        run("download", "moving-mnist", "--source", "standard", "--root", tmp_path / "mine", ok=False)
        assert (tmp_path / "mine").is_dir() and not (tmp_path / "mine" / "moving-mnist").exists()
        (tmp_path / "afile").write_text("mine")  # a file where the data folder must go: was a bare [Errno 20]
        blocked = run("download", "moving-mnist", "--source", "standard", "--root", tmp_path / "afile", ok=False)
        said = " ".join(blocked.output.split())
        assert blocked.exit_code == 1 and "afile is not a folder but a file" in said and "Errno" not in said
        assert (tmp_path / "afile").read_text() == "mine"
    finally:
        server.shutdown()


def test_download_of_a_source_drawn_on_the_fly_says_there_is_nothing_to_fetch(tmp_path):
    """It said "moving-mnist (test): 10000 clips ready" and wrote nothing at --root, as if it had downloaded."""
    result = run("download", "moving-mnist", "--root", tmp_path / "data")
    said = " ".join(result.output.split())
    assert "Nothing to download: moving-mnist's source 'synthetic' is drawn on the fly" in said
    assert "the sources with files: generated, standard" in said and "clips ready" not in said
    assert not (tmp_path / "data").exists()
    assert "has no source 'nope'" in run("download", "moving-mnist", "--source", "nope", ok=False).output


def test_evaluate_and_predict_run_on_the_runs_device(tmp_path, clips_file, monkeypatch):
    """A run trained on a GPU is used on the GPU by default; where there is none, on the CPU, with a note."""
    import torch

    out = tmp_path / "run"
    run("train", "convlstm", "--data", clips_file, "--out", out, "--hidden", "4", "--layers", "2", "--in-frames", "2",
        "--out-frames", "2", "--batch-size", "8", "--precision", "bf16")
    assert json.loads((out / "train_config.json").read_text())["precision"] == "bf16"
    config = json.loads((out / "train_config.json").read_text())
    config["device"] = "cuda"
    (out / "train_config.json").write_text(json.dumps(config))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = run("evaluate", out, "--precision", "bf16")
    assert "trained on cuda, but PyTorch sees no GPU here: running on the CPU" in result.output
    result = run("predict", out, "--out", tmp_path / "f.gif", "--scale", "1")
    assert "running on the CPU" in result.output and (tmp_path / "f.gif").is_file()
    assert "Note" not in run("evaluate", out, "--device", "cpu", "--force").output


def test_a_run_trained_on_cpu_0_resumes_and_evaluates(tmp_path, clips_file):
    """PyTorch takes cpu:0 for the CPU; torch.load and safetensors did not, and called the run's checkpoint and
    weights damaged ("train the run again")."""
    out = tmp_path / "run"
    run("train", "convlstm", "--data", clips_file, "--out", out, "--device", "cpu:0", *TINY_TRAIN)
    run("train", "--resume", out, "--epochs", "2")
    run("evaluate", out, "--device", "cpu:0")
    run("predict", out, "--device", "cpu:0", "--out", tmp_path / "f.png", "--scale", "1")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU run resumed where there is no GPU")
def test_a_gpu_run_resumed_without_a_gpu_names_the_flags_that_continue_it(tmp_path, clips_file):
    """A run `train` made on a GPU (its clips recorded as CUDA graphs, the default there) and resumed on a machine
    without one said "--device cuda was asked for", which nobody had typed; with --device cpu, that clip-graph needs
    a GPU, without the flag that turns it off."""
    out = tmp_path / "run"
    run("train", "convlstm", "--data", clips_file, "--out", out, *TINY_TRAIN)
    record = json.loads((out / "train_config.json").read_text())
    (out / "train_config.json").write_text(json.dumps({**record, "device": "cuda", "fast_path": "clip-graph"}))
    refused = " ".join(run("train", "--resume", out, "--epochs", "2", ok=False).output.split())
    assert "was trained on cuda, which this machine does not have" in refused
    assert "pass --device cpu --fast-path none" in refused and "was asked for" not in refused
    refused = " ".join(run("train", "--resume", out, "--epochs", "2", "--device", "cpu", ok=False).output.split())
    assert "'clip-graph' fast path" in refused and "also pass --fast-path none" in refused
    run("train", "--resume", out, "--epochs", "2", "--device", "cpu", "--fast-path", "none")
    assert json.loads((out / "train_config.json").read_text())["fast_path"] is None


def test_grad_checkpointing_with_recorded_graphs_is_refused_before_a_run_is_made_or_its_record_changed(
        tmp_path, clips_file):
    """The two cannot train together; on a GPU that was said only at the first step: after a new run was made
    without a checkpoint, or after `--resume --grad-checkpointing` (to save memory on a run recording its clips, the
    GPU's default) had written the combination into the run's record, which every later resume then failed on."""
    out = tmp_path / "run"
    refused = run("train", "convlstm", "--data", clips_file, "--out", out, *TINY_TRAIN, "--grad-checkpointing",
                  "--fast-path", "clip-graph", ok=False)
    assert "recorded CUDA graphs of fast path 'clip-graph' cannot do" in " ".join(refused.output.split())
    assert not out.exists()
    run("train", "convlstm", "--data", clips_file, "--out", out, *TINY_TRAIN)
    record = json.loads((out / "train_config.json").read_text())
    (out / "train_config.json").write_text(json.dumps({**record, "fast_path": "cudagraph"}))
    before = (out / "train_config.json").read_text()
    refused = run("train", "--resume", out, "--epochs", "2", "--grad-checkpointing", ok=False)
    text = " ".join(refused.output.split())
    assert "fast path 'cudagraph' cannot do" in text and "(--no-grad-checkpointing, or --fast-path none" in text
    assert (out / "train_config.json").read_text() == before


def test_tf32_is_a_precision_of_train_evaluate_and_predict(tmp_path, clips_file):
    out = tmp_path / "run"
    trained = run("train", "convlstm", "--data", clips_file, "--out", out, "--hidden", "4", "--layers", "2",
                  "--in-frames", "2", "--out-frames", "2", "--batch-size", "8", "--precision", "tf32")
    assert json.loads((out / "train_config.json").read_text())["precision"] == "tf32"
    assert "Note: precision tf32 computes fp32 on cpu" in " ".join(trained.output.split())
    run("train", "--resume", out, "--epochs", "2", "--precision", "fp32")  # a run may change its precision
    assert json.loads((out / "train_config.json").read_text())["precision"] == "fp32"
    run("evaluate", out, "--precision", "tf32", "--out", tmp_path / "tf32.json")
    run("evaluate", out, "--out", tmp_path / "fp32.json")
    mse = [json.loads((tmp_path / f"{p}.json").read_text())["model"]["metrics"]["mse"]["mean"]
           for p in ("tf32", "fp32")]
    assert mse[0] == pytest.approx(mse[1], rel=1e-3)  # the CPU computes fp32; a GPU's TF32 differs slightly
    predicted = run("predict", out, "--out", tmp_path / "f.png", "--precision", "tf32", "--scale", "1")
    assert "computes fp32 on cpu" in " ".join(predicted.output.split())
    assert "Note" not in run("evaluate", out, "--out", tmp_path / "bf16.json", "--precision", "bf16").output
    refused = run("predict", out, "--out", tmp_path / "g.png", "--precision", "fp64", ok=False)
    assert refused.exit_code == 1 and "'fp64' is not one of 'fp32', 'bf16', 'fp16', 'tf32'" in refused.output


def test_card_pictures_never_replace_a_users_files(tmp_path, clips_file):
    out = tmp_path / "run"
    run("train", "convlstm", "--data", clips_file, "--out", out, "--hidden", "4", "--layers", "2",
        "--in-frames", "3", "--out-frames", "3", "--batch-size", "8")
    run("evaluate", out)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.png").write_bytes(b"my plot")
    (mine / "notes.txt").write_text("keep")
    refused = run("card", out, "--repo-id", "me/a", "--out", mine / "card.md", ok=False)
    assert refused.exit_code == 1 and "metrics.png already exists" in refused.output
    assert not (mine / "card.md").exists() and (mine / "metrics.png").read_bytes() == b"my plot"
    forced = run("card", out, "--repo-id", "me/a", "--out", mine / "card.md", "--force", ok=False)
    assert forced.exit_code == 1 and "not a picture that msrnn-zoo wrote" in forced.output  # --force: ours only
    assert not (mine / "card.md").exists() and (mine / "metrics.png").read_bytes() == b"my plot"
    (mine / "metrics.png").unlink()
    run("card", out, "--repo-id", "me/a", "--out", mine / "card.md")
    run("card", out, "--repo-id", "me/a", "--out", mine / "card.md", "--force")  # what it wrote, it replaces
    assert sorted(p.name for p in mine.iterdir()) == ["card.md", "forecast.png", "metrics.png", "notes.txt"]
    assert (mine / "notes.txt").read_text() == "keep"


def test_card_refuses_an_out_named_as_one_of_its_pictures(tmp_path, clips_file):
    """`card RUN --out RUN/metrics.png` wrote the card there, then the chart over it: no card, and a chart."""
    out = tmp_path / "run"
    run("train", "convlstm", "--data", clips_file, "--out", out, "--hidden", "4", "--layers", "2",
        "--in-frames", "3", "--out-frames", "3", "--batch-size", "8")
    run("evaluate", out)
    for name in ("metrics.png", "forecast.png"):
        refused = run("card", out, "--repo-id", "me/a", "--out", out / name, "--force", ok=False)
        said = " ".join(refused.output.split())
        assert refused.exit_code == 1 and f"{out / name} is where the card's picture {name} goes" in said, said
        assert f"Name the card another file, e.g. {out / 'README.md'}" in said
        assert not (out / name).exists() and not (out / "README.md").exists()
    run("card", out, "--repo-id", "me/a", "--out", out / "card.md")  # any other name is the card's own
    assert (out / "card.md").read_text().startswith("---") and (out / "metrics.png").read_bytes()[:4] == b"\x89PNG"


def test_a_run_on_own_clips_given_relatively_works_from_any_folder(tmp_path, clips_file, monkeypatch):
    """``--data clips.npy`` is the file in the folder the user trained from, not in whatever folder evaluate runs in."""
    here = tmp_path / "here"
    here.mkdir()
    (here / "clips.npy").write_bytes(clips_file.read_bytes())
    monkeypatch.chdir(here)
    run("train", "convlstm", "--data", "clips.npy", "--out", "run", "--hidden", "4", "--layers", "2",
        "--in-frames", "2", "--out-frames", "2", "--batch-size", "8")
    assert json.loads((here / "run" / "train_config.json").read_text())["data"] == str(here / "clips.npy")
    monkeypatch.chdir(tmp_path)
    run("evaluate", here / "run")
    run("train", "--resume", here / "run", "--epochs", "2")


def test_own_clips_under_home(tmp_path, clips_file, monkeypatch):
    from msrnn_zoo.data import clips_from_file

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "clips.npy").write_bytes(clips_file.read_bytes())
    assert len(clips_from_file("~/clips.npy", "train")) > 0


def test_run_cli_fails_a_test_with_what_the_command_printed():
    with pytest.raises(AssertionError, match=r"(?s)msrnn-zoo info nope exited 1:.*nope"):
        run("info", "nope")
    assert run("info", "nope", ok=False).exit_code == 1


TINY_TRAIN = ("--hidden", "4", "--layers", "2", "--in-frames", "3", "--out-frames", "3", "--batch-size", "8",
              "--max-train-clips", "16", "--max-eval-clips", "4")


def test_training_into_a_log_file_prints_progress_lines(tmp_path, clips_file):
    """Not a terminal (CliRunner, a batch job's log): lines instead of a live bar, which a file would get only at
    the end. Every step with --log-every 0; otherwise the first step and each epoch's end."""
    out = run("train", "convlstm", "--data", clips_file, "--out", tmp_path / "a", *TINY_TRAIN, "--epochs", "2",
              "--log-every", "0").output
    lines = [line for line in out.splitlines() if line.startswith("epoch ") and "  step " in line]  # not val loss
    assert [line.split("  ")[:2] for line in lines] == [["epoch 1/2", "step 1/4"], ["epoch 1/2", "step 2/4"],
                                                         ["epoch 2/2", "step 3/4"], ["epoch 2/2", "step 4/4"]]
    assert all("loss " in line and "frames/s" in line and line.endswith(" left") for line in lines)
    assert lines[-1].endswith("0:00:00 left")
    out = run("train", "--resume", tmp_path / "a", "--epochs", "4", "--log-every", "3600").output
    assert [line.split("  ")[:2] for line in out.splitlines() if line.startswith("epoch ") and "  step " in line] == \
        [["epoch 3/4", "step 5/8"], ["epoch 3/4", "step 6/8"], ["epoch 4/4", "step 8/8"]]
    assert "Continuing" in out and "from its checkpoint at step 4 of 8" in out
    assert "Error" in run("train", "--resume", tmp_path / "a", "--log-every", "-1", ok=False).output


def test_resuming_a_run_without_a_checkpoint_says_it_starts_over(tmp_path, clips_file):
    from msrnn_zoo.train import TrainConfig, Trainer

    run("train", "convlstm", "--data", clips_file, "--out", tmp_path / "a", *TINY_TRAIN)
    cfg = TrainConfig.from_dict(json.loads((tmp_path / "a" / "train_config.json").read_text()))
    Trainer.create(tmp_path / "b", cfg)  # set up, never trained: no checkpoint, as after a kill in epoch 1
    out = " ".join(run("train", "--resume", tmp_path / "b").output.split())
    assert "has no checkpoint yet" in out and "training it from its first step" in out
    assert (tmp_path / "b" / "latest.json").is_file()


def test_float_clips_read_from_a_file_raise_no_warning(tmp_path):
    """A float32 .npy is memory-mapped read-only; each clip's tensor over it made PyTorch warn the user."""
    import warnings

    from msrnn_zoo.data import ClipArrayDataset, load_clip_array

    path = tmp_path / "clips.npy"
    np.save(path, np.random.default_rng(0).random((3, 4, 1, 8, 8), dtype=np.float32))
    clips = ClipArrayDataset(load_clip_array(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clip = clips[1]
    clip += 0  # its own memory: writing to it leaves the file alone
    assert np.array_equal(np.load(path)[1], clip.numpy())


def test_files_that_are_not_one_npy_array_say_what_they_are(tmp_path, clips_file):
    """An .npz was an AttributeError traceback; a text file got NumPy's advice to unpickle it."""
    np.savez(tmp_path / "clips.npz", a=np.zeros((4, 6, 8, 8), dtype=np.float32))
    (tmp_path / "notes.npy").write_text("hello")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    cases = {"clips.npz": "is an .npz archive of several arrays", "notes.npy": "is not an .npy file",
             "objects.npy": "is not a readable .npy array of numbers"}
    run_dir = tmp_path / "run"
    run("train", "convlstm", "--data", clips_file, "--out", run_dir, "--hidden", "2", "--layers", "1",
        "--in-frames", "3", "--out-frames", "3", "--batch-size", "8")
    for name, message in cases.items():
        for command in (["train", "convlstm", "--data", tmp_path / name, "--out", tmp_path / "new"],
                        ["predict", run_dir, "--input", tmp_path / name, "--out", tmp_path / "f.gif"]):
            result = run(*command, ok=False)
            said = " ".join(result.output.split())
            assert result.exit_code == 1 and message in said and "unsafely" not in said, said
            assert not (tmp_path / "new").exists() and not (tmp_path / "f.gif").exists()


def test_resume_refuses_the_options_it_would_ignore(tmp_path, clips_file):
    """`train --resume RUN --hidden 8 --lr 5 ...` exited 0 with the run unchanged: each option that sets up a new run
    is refused by name beside --resume, before anything runs; those it applies (and defaults) are not."""
    from msrnn_zoo.train import TrainConfig, Trainer

    run("train", "convlstm", "--data", clips_file, "--out", tmp_path / "a", *TINY_TRAIN)
    cfg = TrainConfig.from_dict(json.loads((tmp_path / "a" / "train_config.json").read_text()))
    Trainer.create(tmp_path / "b", cfg)  # set up, never trained
    before = (tmp_path / "b" / "train_config.json").read_text()
    ignored = [("--hidden", "8"), ("--lr", "5"), ("--batch-size", "1"), ("--in-frames", "3"), ("--out-frames", "2"),
               ("--sampling", "none"), ("--max-train-clips", "1"), ("--max-eval-clips", "1"), ("--force",),
               ("--seed", "3"), ("--layers", "1"), ("--kernel-size", "5"), ("--option", "x=1"),
               ("--sampling-steps", "3"), ("--checkpoint-every", "1"), ("--split", "0.5,0.25,0.25"),
               ("--source", "synthetic"), ("--root", str(tmp_path)), ("--protocol", "small"),
               ("--out", str(tmp_path / "c")), ("--data", str(clips_file)), ("--dataset", "moving-mnist")]
    for given in ignored:
        line = " ".join(run("train", "--resume", tmp_path / "b", "--epochs", "2", *given, ok=False).output.split())
        assert f"it would ignore {given[0]}: leave it out" in line, line
        assert "takes only --epochs, --val-every, --early-stopping, --keep-checkpoints, --device" in line
        assert "--log-every" in line
    line = " ".join(run("train", "--resume", tmp_path / "b", "--hidden", "8", "--lr", "5", ok=False).output.split())
    assert "ignore --lr, --hidden: leave them out" in line
    assert (tmp_path / "b" / "train_config.json").read_text() == before and not (tmp_path / "c").exists()
    # what --resume applies, and the run's own model named, still go through
    run("train", "convlstm", "--resume", tmp_path / "b", "--epochs", "2", "--keep-checkpoints", "3",
        "--device", "cpu", "--no-grad-checkpointing", "--precision", "fp32", "--fast-path", "none",
        "--no-channels-last", "--no-compile-cells", "--log-every", "0")
    resumed = json.loads((tmp_path / "b" / "train_config.json").read_text())
    assert (resumed["epochs"], resumed["keep_checkpoints"]) == (2, 3)


def test_printed_commands_quote_their_paths(tmp_path, clips_file):
    """`Next: msrnn-zoo evaluate runs/g ü` was two arguments where one was meant: a printed command is copied."""
    import shlex

    out = tmp_path / "g ü"
    hint = run("train", "convlstm", "--data", clips_file, "--out", out, *TINY_TRAIN).output.split("Next: ")[1]
    assert hint.strip() == f"msrnn-zoo evaluate {shlex.quote(str(out))}"
    run(*shlex.split(hint)[1:])  # the command as printed runs
    again = run("train", "convlstm", "--data", clips_file, "--out", out, *TINY_TRAIN, ok=False)
    assert f"msrnn-zoo train --resume {shlex.quote(str(out))}`" in " ".join(again.output.split())
    made = run("new-cell", "foo", "--dir", tmp_path / "my cells").output.split("Next: ")[1]
    target = tmp_path / "my cells" / "msrnn-foo"
    assert " ".join(made.split()) == (f"pip install -e {shlex.quote(str(target))} && pytest "
                                      f"{shlex.quote(str(target / 'tests'))} && msrnn-zoo list '*foo'")


def test_a_printed_path_that_begins_with_a_dash_is_not_read_as_an_option(tmp_path, clips_file, monkeypatch):
    """`--out -x` trained, then printed `Next: msrnn-zoo evaluate -x`, which said "No such option '-x'"."""
    import shlex

    monkeypatch.chdir(tmp_path)
    hint = run("train", "convlstm", "--data", clips_file, "--out", "-x", *TINY_TRAIN).output.split("Next: ")[1]
    assert hint.strip() == "msrnn-zoo evaluate ./-x"
    run(*shlex.split(hint)[1:])  # the command as printed runs


def test_a_quoted_tilde_means_home_and_an_empty_path_is_refused(tmp_path, clips_file, monkeypatch):
    """`--out "~/x"` made a folder named ~ in the current one (which a later `rm -rf ~` meant for it would take
    the home folder with); an empty --input read the current folder as a file."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    run("train", "convlstm", "--data", clips_file, "--out", "~/runs/a", "--hidden", "2", "--layers", "1",
        "--in-frames", "3", "--out-frames", "3", "--batch-size", "8")
    assert (tmp_path / "home" / "runs" / "a" / "model.safetensors").is_file() and not (tmp_path / "~").exists()
    for args in (["predict", "~/runs/a", "--input", ""], ["evaluate", "~/runs/a", "--out", ""],
                 ["train", "convlstm", "--data", "", "--out", "b"]):
        result = run(*args, ok=False)
        assert result.exit_code == 1 and "is empty; give a" in result.output, result.output


def test_ctrl_c_says_how_to_go_on(tmp_path, clips_file, monkeypatch):
    """Was "Error: Aborted." alone."""
    from msrnn_zoo.train import Trainer

    args = ["train", "convlstm", "--data", clips_file, "--hidden", "2", "--layers", "1", "--in-frames", "3",
            "--out-frames", "3", "--batch-size", "8"]
    run(*args, "--out", tmp_path / "a")
    real = Trainer._fit

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_fit", interrupted)
    fresh = run(*args, "--out", tmp_path / "b", ok=False)
    assert fresh.exit_code == 130 and f"train --resume {tmp_path / 'b'}" in " ".join(fresh.output.split())
    forced = run(*args, "--out", tmp_path / "a", "--force", ok=False)
    assert forced.exit_code == 130 and "holds the run it was to replace, as it was" in " ".join(forced.output.split())
    monkeypatch.setattr(Trainer, "_fit", real)
    assert (tmp_path / "a" / "model.safetensors").is_file()
    run("train", "--resume", tmp_path / "b")  # the hint works


def test_sigterm_stops_training_as_ctrl_c_does(tmp_path, clips_file, monkeypatch):
    """A batch scheduler stops a job with SIGTERM, which ended Python at once: no word of how to go on, and a
    replacement's half-built run and locks left to the next run. The handler before it is given back."""
    import os
    import signal

    from msrnn_zoo.train import Trainer

    class KilledError(Exception):
        pass

    def mine(signum, frame):  # stands for the default action, which would end this test's process
        raise KilledError

    args = ["train", "convlstm", "--data", clips_file, "--hidden", "2", "--layers", "1", "--in-frames", "3",
            "--out-frames", "3", "--batch-size", "8"]
    run(*args, "--out", tmp_path / "a")
    before = sorted(p.name for p in tmp_path.iterdir())

    def terminated(self, *a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal arrives at once; this is never reached

    monkeypatch.setattr(Trainer, "_fit", terminated)
    previous = signal.signal(signal.SIGTERM, mine)
    try:
        forced = run(*args, "--out", tmp_path / "a", "--force", ok=False)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert forced.exit_code == 130, forced.output
    assert "holds the run it was to replace, as it was" in " ".join(forced.output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # the half-built replacement is gone


def test_a_run_whose_clip_file_has_gone_says_so_by_the_run(tmp_path, clips_file):
    """`evaluate`, `predict` and `train --resume` of a run whose --data file was moved said "No clip file at ...: pass
    a .npy array", to a user who had passed nothing."""
    import shutil

    clips = tmp_path / "mine.npy"
    shutil.copy(clips_file, clips)
    run("train", "convlstm", "--data", clips, "--hidden", "2", "--layers", "1", "--in-frames", "3", "--out-frames",
        "3", "--batch-size", "8", "--out", tmp_path / "a")
    clips.rename(tmp_path / "moved.npy")
    for args in (["evaluate", tmp_path / "a"], ["predict", tmp_path / "a", "--out", tmp_path / "f.gif"],
                 ["train", "--resume", tmp_path / "a", "--epochs", "2"]):
        said = " ".join(run(*args, ok=False).output.split())
        assert f"{tmp_path / 'a'} was trained on the clips in {clips}, which is no longer there" in said, said
        assert "pass a .npy array" not in said
    context = tmp_path / "context.npy"
    np.save(context, np.zeros((3, 16, 16), dtype=np.float32))
    run("predict", tmp_path / "a", "--input", context, "--out", tmp_path / "g.gif")  # needs no clips of the run's


def test_cell_options_written_as_in_python_are_read_as_their_values():
    """`--option warp_align_corners=False` reached the cell as the string 'False', which is truthy: the opposite of
    what was typed (JSON's lowercase false was the only spelling read)."""
    from msrnn_zoo.cli import _parse_options

    parsed = _parse_options(("a=False", "b=True", "c=None", "d=false", "e=null", "f=13", "g=0.5", "h=Nothing"))
    assert parsed == {"a": False, "b": True, "c": None, "d": False, "e": None, "f": 13, "g": 0.5, "h": "Nothing"}
    info = run("info", "trajgru", "--size", "16", "--hidden", "4", "--option", "warp_align_corners=False", "--json")
    assert '"warp_align_corners": false' in info.output, info.output


def test_a_refused_resume_of_a_finished_run_leaves_its_record_as_it_was(tmp_path, clips_file):
    """`train --resume RUN --precision bf16 --keep-checkpoints 1` of a finished run said "already finished" and exited
    1, but had written bf16 and 1 into the run's train_config.json: the run then told `evaluate` and its card a
    precision (or device) it never trained in."""
    run("train", "convlstm", "--data", clips_file, "--out", tmp_path / "a", *TINY_TRAIN)
    before = (tmp_path / "a" / "train_config.json").read_text()
    done = run("train", "--resume", tmp_path / "a", "--precision", "bf16", "--keep-checkpoints", "1",
               "--grad-checkpointing", ok=False)
    assert done.exit_code == 1 and "already finished its 1 epoch(s)" in done.output
    assert (tmp_path / "a" / "train_config.json").read_text() == before


def test_the_card_of_a_run_stopped_before_its_end_says_so(tmp_path, clips_file):
    """A run interrupted (Ctrl-C, a kill) at step 2 of 2 epochs got a card reading "2 epoch(s) = 2 optimizer steps",
    published by `push` as if the plan had been trained."""
    from msrnn_zoo.train import Trainer, new_train_config

    cfg = new_train_config("convlstm", model_options={"hidden_channels": 2, "num_layers": 1}, data=str(clips_file),
                           in_frames=3, out_frames=3, epochs=2, batch_size=8)
    Trainer.create(tmp_path / "a", cfg).fit(stop_after=2)  # an epoch has 4 steps
    run("card", tmp_path / "a", "--repo-id", "someone/run", "--out", tmp_path / "stopped" / "README.md")
    text = " ".join((tmp_path / "stopped" / "README.md").read_text().split())
    assert "2 epoch(s) = 2 optimizer steps" not in text and "0 of 2 epoch(s) completed, 2 optimizer steps" in text
    assert "Training stopped before its end: these are the weights of step 2" in text
    Trainer.resume(tmp_path / "a").fit()
    run("card", tmp_path / "a", "--repo-id", "someone/run", "--out", tmp_path / "done" / "README.md")
    text = " ".join((tmp_path / "done" / "README.md").read_text().split())
    assert "2 epoch(s) = 8 optimizer steps" in text and "stopped" not in text


def test_the_card_of_a_run_ended_by_early_stopping_says_so_with_its_patience(tmp_path, clips_file, monkeypatch):
    """A run that early stopping ended after epoch 3 of 4 got a card saying "Training stopped before its end", as a
    run killed there: not why it ended, nor its patience and best validation, which its history and latest.json hold."""
    from msrnn_zoo.train import Trainer, new_train_config

    scores = iter([1.0, 2.0, 3.0])
    monkeypatch.setattr(Trainer, "validation_loss", lambda self: next(scores))
    cfg = new_train_config("convlstm", model_options={"hidden_channels": 2, "num_layers": 1}, data=str(clips_file),
                           in_frames=3, out_frames=3, epochs=4, batch_size=8, early_stopping=2)
    Trainer.create(tmp_path / "a", cfg).fit()  # an epoch has 4 steps
    run("card", tmp_path / "a", "--repo-id", "someone/run", "--out", tmp_path / "card" / "README.md")
    text = " ".join((tmp_path / "card" / "README.md").read_text().split())
    assert "3 of 4 epoch(s) completed (ended by early stopping), 12 optimizer steps" in text
    assert ("Early stopping ended training after epoch 3 of the 4 planned: the validation loss had not improved in 2 "
            "validation(s) (patience 2; best 1.0000 after epoch 1, step 4); these are the weights of step 12") in text
    assert "Training stopped before its end" not in text


def test_ctrl_c_names_the_checkpoint_the_run_goes_on_from(tmp_path, clips_file, ctrl_c_at_step):
    """Ctrl-C said "Continue from the last checkpoint (at most --checkpoint-every steps back)" also where no
    --checkpoint-every was given (a whole epoch back) and where no checkpoint was written yet."""
    ctrl_c_at_step(3)
    args = ("train", "convlstm", "--data", clips_file, *TINY_TRAIN, "--epochs", "3")  # 2 steps an epoch
    said = " ".join(run(*args, "--out", tmp_path / "a", ok=False).output.split())
    assert "Interrupted after step 3. Continue from the last checkpoint, at step 2, with: msrnn-zoo train --resume" \
        in said and "--checkpoint-every steps back" not in said, said
    said = " ".join(run(*args, "--out", tmp_path / "b", "--checkpoint-every", "3", ok=False).output.split())
    assert "Continue from the last checkpoint, at step 3," in said, said
    ctrl_c_at_step(0)
    said = " ".join(run(*args, "--out", tmp_path / "c", ok=False).output.split())
    assert "Interrupted after step 0, before the run's first checkpoint (one is written at each epoch's end)" \
        in said, said
    assert f"Train it from its first step with: msrnn-zoo train --resume {tmp_path / 'c'}" in said


def test_a_checkpoint_folder_given_for_a_run_names_its_run(tmp_path, clips_file):
    """`train --resume RUN/checkpoints/step-N` (or evaluate, predict of it) said only "is not a run"."""
    run("train", "convlstm", "--data", clips_file, "--out", tmp_path / "a", *TINY_TRAIN)
    step = next((tmp_path / "a" / "checkpoints").iterdir())
    for args in (["train", "--resume", step], ["evaluate", step], ["predict", step.parent],
                 ["train", "--resume", step.parent]):
        said = " ".join(run(*args, ok=False).output.split())
        assert "is not a run: it holds no train_config.json" in said, said
        assert f"inside the run {tmp_path / 'a'}: give that" in said, said
    assert "inside the run" not in " ".join(run("train", "--resume", tmp_path, ok=False).output.split())


def test_train_help_says_what_resume_takes_when_epochs_and_kept_checkpoints_are_not_given(tmp_path, clips_file):
    """--help said "(default 1)" and "(default 2)" for --epochs and --keep-checkpoints; a resume without them keeps
    the run's own."""
    helped = " ".join(run("train", "--help").output.split())
    assert "Epochs to train (default 1; on --resume the run's, and a larger number trains it further)" in helped
    assert "keep on disk (default 2; on --resume the run's)" in helped
    from msrnn_zoo.train import Trainer, new_train_config

    cfg = new_train_config("convlstm", model_options={"hidden_channels": 2, "num_layers": 1}, data=str(clips_file),
                           in_frames=3, out_frames=3, epochs=3, batch_size=8, keep_checkpoints=3)
    Trainer.create(tmp_path / "a", cfg).fit(stop_after=1)
    run("train", "--resume", tmp_path / "a")
    resumed = json.loads((tmp_path / "a" / "train_config.json").read_text())
    assert (resumed["epochs"], resumed["keep_checkpoints"]) == (3, 3)
    assert len(list((tmp_path / "a" / "checkpoints").iterdir())) == 3


def test_evaluate_max_clips_bounds_the_train_split_too(tmp_path, clips_file):
    out = tmp_path / "run"
    run("train", "ms-convlstm", "--data", clips_file, "--out", out, "--hidden", "4", "--layers", "2",
        "--in-frames", "3", "--out-frames", "3", "--batch-size", "8")
    result = run("evaluate", out, "--split", "train", "--max-clips", "3", "--batch-size", "2")
    assert "scoring train clips: 3/3" in result.output  # was all 32 training clips: --max-clips was ignored
    assert json.loads((out / "metrics-train.json").read_text())["model"]["samples"] == 3
    # a run trained on its first 8 training clips: the 9th on are no training clips of it
    run("train", "ms-convlstm", "--data", clips_file, "--out", tmp_path / "few", "--hidden", "4", "--layers", "2",
        "--in-frames", "3", "--out-frames", "3", "--batch-size", "8", "--max-train-clips", "8")
    run("evaluate", tmp_path / "few", "--split", "train", "--max-clips", "20", "--batch-size", "4")
    assert json.loads((tmp_path / "few" / "metrics-train.json").read_text())["model"]["samples"] == 8


def test_evaluate_scores_frames_smaller_than_the_ssim_window_without_ssim(tmp_path):
    clips = tmp_path / "small.npy"
    np.save(clips, np.random.default_rng(0).integers(0, 256, (10, 6, 8, 8), dtype=np.uint8))
    out = tmp_path / "run"
    run("train", "ms-convlstm", "--data", clips, "--out", out, "--hidden", "4", "--layers", "2", "--in-frames", "3",
        "--out-frames", "3")
    result = run("evaluate", out)  # was "Error: SSIM needs frames of at least 11x11 pixels": no score at all
    assert "SSIM was not scored" in " ".join(result.output.split())
    metrics = json.loads((out / "metrics-test.json").read_text())["model"]["metrics"]
    assert "ssim" not in metrics and metrics["mse"]["mean"] > 0


def test_predict_says_why_a_forecast_past_the_clip_shows_no_truth(tmp_path, clips_file):
    out = tmp_path / "run"
    run("train", "ms-convlstm", "--data", clips_file, "--out", out, "--hidden", "4", "--layers", "2",
        "--in-frames", "3", "--out-frames", "3", "--batch-size", "8")
    said = " ".join(run("predict", out, "--horizon", "5", "--out", tmp_path / "f.png").output.split())
    assert "holds 3 frame(s) after its context, fewer than the 5 forecast: the picture shows no truth" in said
    assert "no truth" not in run("predict", out, "--horizon", "3", "--out", tmp_path / "g.png").output


def test_predict_notes_an_input_of_fewer_context_frames_than_the_run_was_trained_on(tmp_path, clips_file):
    """2 frames given to a run trained on 3 were forecast from in silence, as from a full context."""
    out = tmp_path / "run"
    run("train", "ms-convlstm", "--data", clips_file, "--out", out, "--hidden", "4", "--layers", "2",
        "--in-frames", "3", "--out-frames", "3", "--batch-size", "8", "--max-train-clips", "8")
    for frames in (2, 3):
        np.save(tmp_path / f"c{frames}.npy", np.zeros((frames, 16, 16), dtype=np.uint8))
    said = " ".join(run("predict", out, "--input", tmp_path / "c2.npy", "--out", tmp_path / "f2.png").output.split())
    assert "holds 2 context frame(s), fewer than the 3 the run was trained on" in said
    assert "Note" not in run("predict", out, "--input", tmp_path / "c3.npy", "--out", tmp_path / "f3.png").output
    assert (tmp_path / "f2.npy").exists()  # forecast all the same


def test_predict_refuses_a_picture_too_large_to_open_before_forecasting(tmp_path, clips_file, monkeypatch):
    """--horizon 1000 --scale 16 drew a strip of a billion pixels (gigabytes, minutes) that no viewer opens."""
    from PIL import Image

    out = tmp_path / "run"
    run("train", "ms-convlstm", "--data", clips_file, "--out", out, "--hidden", "4", "--layers", "2",
        "--in-frames", "3", "--out-frames", "3", "--batch-size", "8")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # Pillow's own is 89 million: the same rule, smaller
    said = " ".join(run("predict", out, "--horizon", "20", "--scale", "2", "--out", tmp_path / "f.png",
                        ok=False).output.split())  # 2 rows (no truth past the clip) of 20 frames of 32x32
    assert "would hold 40,960 pixels (2 rows of 20 frames of 32x32)" in said and "a shorter --horizon" in said
    said = " ".join(run("predict", out, "--horizon", "5", "--scale", "3", "--out", tmp_path / "f.png",
                        ok=False).output.split())
    assert "(2 rows of 5 frames of 48x48)" in said and "give --scale 1." in said
    assert not list(tmp_path.glob("f.*"))
    run("predict", out, "--horizon", "5", "--scale", "1", "--out", tmp_path / "f.png")


def test_output_without_utf8_escapes_what_it_cannot_encode(monkeypatch):
    """With stdout in ASCII (PYTHONIOENCODING=ascii; a Windows console or file in cp1252) the first `é` or arrow raised
    UnicodeEncodeError after the work: train reported an error for the run it had saved, evaluate wrote no metrics."""
    import io
    import sys

    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii", errors="strict"))
    main.main(["list", "é*"], standalone_mode=False)
    sys.stdout.flush()
    assert sys.stdout.errors == "backslashreplace"
    assert "No model or dataset name matches '\\xe9*'" in " ".join(raw.getvalue().decode("ascii").split())


@pytest.mark.parametrize("words", [["download"], ["data", "prepare"], ["data", "info"], ["train"]])
def test_root_help_says_where_data_goes_when_msrnn_zoo_data_is_unset(words, monkeypatch):
    """--root's help named only $MSRNN_ZOO_DATA, which few set, and `data info` and `train` gave the data root where a
    prepared dataset reads DATASET below it: a user could not tell where a store was looked for or written."""
    from pathlib import Path

    from msrnn_zoo.data import default_root

    monkeypatch.delenv("MSRNN_ZOO_DATA", raising=False)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: cls("~")))  # the fallback as a help text writes it
    command = main
    for word in words:
        command = command.commands[word]
    root = next(p for p in command.params if "--root" in p.opts)
    assert "$MSRNN_ZOO_DATA" in root.help and str(default_root()) in root.help, root.help
    if words != ["download"]:  # the one that fetches files a dataset reads as they are, into the data root itself
        assert "DATASET under the data root" in root.help, root.help


def test_predict_input_help_says_the_forecast_array_is_written_too():
    """predict --input also writes the forecast as NAME.npy beside the picture, which neither --out's nor --input's
    help said: a user found a file they had not asked for, or did not know the numbers were there."""
    predict = main.commands["predict"]
    helps = " ".join(p.help or "" for p in predict.params if {"--input", "--out"} & set(p.opts))
    assert "NAME.npy" in helps, helps


def _stdout_gone(monkeypatch):
    """Printing to stdout ends the command as rich ends it when the reader of the pipe has gone (`| head -1`)."""
    from msrnn_zoo import cli

    def gone(*args, **kwargs):
        raise SystemExit(1)

    monkeypatch.setattr(cli.console, "print", gone)


def test_evaluate_and_predict_write_their_files_before_printing(tmp_path, clips_file, monkeypatch):
    """`evaluate RUN | head -1` scored the run, then ended at the tables' second line without writing the metrics
    file; `predict --input ... | head -1` left its forecast array unwritten."""
    out = tmp_path / "run"
    run("train", "convlstm", "--data", clips_file, "--out", out, "--hidden", "2", "--layers", "1", "--in-frames", "3",
        "--out-frames", "3", "--batch-size", "8", "--max-train-clips", "8", "--max-eval-clips", "2")
    context = tmp_path / "context.npy"
    np.save(context, np.load(clips_file)[0, :3])
    _stdout_gone(monkeypatch)
    assert run("evaluate", out, ok=False).exit_code == 1
    assert json.loads((out / "metrics-test.json").read_text())["model"]["samples"] == 2
    assert run("predict", out, "--input", context, "--horizon", "2", "--out", tmp_path / "f.png", ok=False).exit_code
    assert np.load(tmp_path / "f.npy").shape[0] == 2


def test_lines_are_printed_whole_into_a_pipe_or_a_log(tmp_path, clips_file, monkeypatch):
    """Where the output is no terminal rich assumed 80 columns (or $COLUMNS) and broke longer lines with a newline,
    in the middle of a path too: `Metrics written to` named a path that grep and copy-paste could not find."""
    monkeypatch.setenv("COLUMNS", "40")
    out = tmp_path / "run"
    run("train", "convlstm", "--data", clips_file, "--out", out, "--hidden", "2", "--layers", "1", "--in-frames", "3",
        "--out-frames", "3", "--batch-size", "8", "--max-train-clips", "8", "--max-eval-clips", "2")
    metrics = tmp_path / ("a-folder-with-a-long-name-" * 4) / "metrics.json"
    metrics.parent.mkdir()
    lines = run("evaluate", out, "--out", metrics).output.splitlines()
    assert f"Metrics written to {metrics}" in lines, lines
    assert any(re.fullmatch(r"MSE: the model's [\d.]+ is \d+% (above|below) the best baseline's \(.+\)\.", line)
               for line in lines), lines
    pattern = "no-such-name-" * 8
    assert any(line.startswith("No model or dataset name matches") and line.endswith("shows them all.")
               for line in run("list", pattern).output.splitlines())


def test_ctrl_c_exits_130_from_every_command(monkeypatch):
    """Ctrl-C of a command without an interrupt message of its own (list, evaluate, predict, ...) printed "Error:
    Aborted." and exited 1, as a mistake does; train, data prepare and download exited 130. A job script or a
    Makefile could not tell an interrupted command from a wrong one."""
    from msrnn_zoo import registry

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "list_models", interrupted)
    result = run("list", ok=False)
    assert result.exit_code == 130 and "Error: Interrupted." in result.output, result.output


def test_version_names_the_plugins_python_and_torch():
    """`--version` said msrnn-zoo's version alone: a bug report needs those of the plugin holding the cell or dataset
    (each released on its own), of Python and of torch."""
    import platform

    import msrnn_zoo

    lines = run("--version").output.splitlines()
    assert lines[0] == f"msrnn-zoo, version {msrnn_zoo.__version__}"
    assert any(re.fullmatch(r"plugin msrnn-convlstm \S+", line) for line in lines), lines
    assert f"python {platform.python_version()}" in lines and any(line.startswith("torch ") for line in lines)


def test_help_says_the_exit_status_and_notes_go_to_stderr(monkeypatch):
    """The exit status a job script acts on was said nowhere in --help; `list`'s note of plugins that failed to load
    (and push's and pull's notes) went to stdout, into what `msrnn-zoo list > names.txt` keeps."""
    helped = " ".join(run("--help").output.split())
    assert "Exit status: 0 when" in helped and "1 on a mistake" in helped and "130 when interrupted" in helped
    from msrnn_zoo import plugins

    monkeypatch.setattr(plugins, "failed_note", lambda: "1 plugin failed to load or register (broken).")
    listed = run("list", "ms-convlstm")
    assert "failed to load" in listed.stderr and "failed to load" not in listed.stdout
    assert "ms-convlstm" in listed.stdout
