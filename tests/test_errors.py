"""Every mistake a user can make reaches the command line as one red line naming the option or the file
(the traceback only with --debug), and the Python API refuses what would otherwise run silently wrong."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

import msrnn_zoo
from msrnn_zoo import Forecaster
from msrnn_zoo.cli import main

TINY = ("--hidden", "4", "--layers", "2", "--in-frames", "3", "--out-frames", "3", "--batch-size", "8",
        "--max-train-clips", "16", "--max-eval-clips", "4")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_red_line(result, *words):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    for word in words:
        assert word in lines[0], lines[0]
    assert "=True" not in lines[0]  # Python keyword arguments never reach the command line
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small run, copied by each test that damages it."""
    import numpy as np

    root = tmp_path_factory.mktemp("trained")
    clips = root / "clips.npy"
    np.save(clips, (np.random.default_rng(0).random((40, 6, 16, 16)) * 255).astype(np.uint8))
    result = invoke("train", "convlstm", "--data", clips, "--out", root / "run", *TINY, "--checkpoint-every", "1")
    assert result.exit_code == 0, result.output
    return root / "run"


@pytest.fixture
def run(trained, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--epochs", "0"], "--epochs"),
        (["--epochs", "-1"], "--epochs"),
        (["--in-frames", "0"], "--in-frames"),
        (["--out-frames", "0"], "--out-frames"),
        (["--batch-size", "0"], "--batch-size"),
        (["--hidden", "0"], "--hidden"),
        (["--lr", "0"], "--lr"),
        (["--keep-checkpoints", "0"], "--keep-checkpoints"),
        (["--split", "abc"], "--split"),
        (["--split", "0.5,0.5"], "--split"),
        (["--split", "0.9,0.9,-0.8"], "--split"),
        (["--split", "1,0,0"], "leaves the test split"),  # the run could never be scored
        (["--split", "0.9,0.1,0"], "leaves the test split"),
        (["--epochs", "two"], "--epochs"),
        (["--device", "gpu"], "--device"),
        # beyond what torch.manual_seed takes: was "Overflow when unpacking long long", naming no option
        (["--seed", "99999999999999999999"], "--seed"),
        # not finite: --lr was "must be a number, got nan (a number)", --log-every was accepted
        (["--lr", "nan"], "'--lr': nan is not a finite number"),
        (["--lr", "inf"], "'--lr': inf is not a finite number"),
        (["--log-every", "nan"], "'--log-every': nan is not a finite number"),
        (["--log-every", "inf"], "'--log-every': inf is not a finite number"),
    ],
)
def test_bad_training_options_name_themselves(tmp_path, clips_file, args, option):
    out = tmp_path / "r"
    one_red_line(invoke("train", "convlstm", "--data", clips_file, "--out", out, *TINY, *args), option)
    assert not out.exists()


@pytest.mark.parametrize(("clips", "split", "advice"), [
    (6, "0.8,0.1,0.1", "(of its 6: train 5, val 1, test 0): .* (--split 0.75,0.1,0.15) or give more clips."),
    (3, "1,0,0", "(of its 3: train 3, val 0, test 0): .* (--split 0.8,0,0.2) or give more clips."),
    (1, "1,0,0", "(of its 1: train 1, val 0, test 0): .* Give more clips: the run needs at least one to train on"),
])
def test_a_split_without_test_clips_says_what_each_split_got_and_a_split_that_works(tmp_path, clips, split, advice):
    """6 clips split 0.8,0.1,0.1 (5, 1, 0) were told to give the test split a larger share "e.g. 0.8,0.1,0.1"."""
    path = tmp_path / "clips.npy"
    np.save(path, np.zeros((clips, 6, 16, 16), dtype=np.uint8))
    line = one_red_line(invoke("train", "convlstm", "--data", path, "--out", tmp_path / "r", *TINY, "--split", split,
                               "--batch-size", "1"), "leaves the test split")
    assert re.search(re.escape(advice).replace(r"\.\*", ".*"), line), line
    if clips > 1:  # the split advised trains
        suggested = re.search(r"--split ([\d.,]+)\)", line).group(1)
        invoke("train", "convlstm", "--data", path, "--out", tmp_path / "r", *TINY, "--split", suggested,
               "--batch-size", "1", "--epochs", "1")
        assert (tmp_path / "r" / "config.json").exists()


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["predict", "{run}", "--horizon", "0"], "--horizon"),
        (["predict", "{run}", "--horizon", "-3"], "--horizon"),
        (["predict", "{run}", "--index", "-1"], "--index"),
        (["evaluate", "{run}", "--batch-size", "0"], "--batch-size"),
        (["evaluate", "{run}", "--split", "abc"], "--split"),
        (["evaluate", "{run}", "--device", "tpu"], "--device"),
        (["train", "--resume", "{run}", "--epochs", "0"], "--epochs"),
    ],
)
def test_bad_options_of_other_commands(run, command, option):
    one_red_line(invoke(*[c.format(run=run) for c in command]), option)


@pytest.mark.parametrize(
    ("command", "words"),
    [
        (["train", "convlstm", "--data", "{clips}", "--out", "{out}", "--option", "hidden_channels=3"], ["--hidden"]),
        (["train", "convlstm", "--data", "{clips}", "--out", "{out}", "--option", "kernel_size=5"], ["--kernel-size"]),
        (["train", "convlstm", "--data", "{clips}", "--out", "{out}", "--option", "in_channels=3"],
         ["in_channels", "from the data (1 here)"]),
        (["bench", "convlstm", "--size", "8", "--option", "in_channels=3"], ["--in-channels"]),
        (["bench", "convlstm", "--size", "8", "--option", "num_layers=2"], ["--layers"]),
        (["convert", "{clips}", "--model", "convlstm", "--out", "{out}", "--option", "hidden_channels=3"],
         ["--hidden"]),
    ],
)
def test_an_option_with_its_own_flag_is_refused_by_option(tmp_path, clips_file, command, words):
    """Given both ways, the flag's value was either overridden in silence (train) or a TypeError (bench, convert)."""
    out = tmp_path / "r"
    line = one_red_line(invoke(*[c.format(clips=clips_file, out=out) for c in command]), *words)
    assert "is not a cell option here" in line
    assert not out.exists()


def test_resuming_on_clips_of_other_channels_says_what_to_do(run, tmp_path):
    """The run's --data file replaced by clips of 3 channels since: the model keeps its 1-channel input."""
    import numpy as np

    config = json.loads((run / "train_config.json").read_text())
    config["data"] = str(tmp_path / "rgb.npy")  # (the copy's own: the module's run shares its clips)
    (run / "train_config.json").write_text(json.dumps(config))
    np.save(config["data"], (np.random.default_rng(1).random((40, 6, 3, 16, 16)) * 255).astype(np.uint8))
    one_red_line(invoke("train", "--resume", run, "--epochs", "2"), "3 channel(s)", "built for 1", "new run")


def test_rich_markup_and_emoji_codes_print_as_typed():
    line = one_red_line(invoke("info", ":train:[bold]x[/bold]"))
    assert ":train:[bold]x[/bold]" in line


def test_debug_shows_the_traceback_for_option_errors_too(run):
    result = CliRunner().invoke(main, ["--debug", "evaluate", str(run / "nothing")])
    assert result.exit_code != 0 and isinstance(result.exception, FileNotFoundError)


def test_corrupt_weights_file(run):
    (run / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    one_red_line(invoke("evaluate", run), "model.safetensors", "not a readable safetensors file")


def test_corrupt_checkpoint_on_resume(run):
    latest = json.loads((run / "latest.json").read_text())["name"]
    state = run / "checkpoints" / latest / "training_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    config = (run / "train_config.json").read_bytes()
    line = one_red_line(invoke("train", "--resume", run, "--epochs", "2"), "training_state.pt", "damaged")
    assert "Earlier checkpoint" in line and "weights_only" not in line  # not PyTorch's advice to unpickle it
    assert (run / "train_config.json").read_bytes() == config  # nothing was written


def test_corrupt_checkpoint_weights_on_resume(run):
    latest = json.loads((run / "latest.json").read_text())["name"]
    (run / "checkpoints" / latest / "model.safetensors").write_bytes(b"{}")
    one_red_line(invoke("train", "--resume", run, "--epochs", "2"), "model.safetensors")


@pytest.mark.parametrize("pointer", ['{"name": "../../etc"}', '{"nom": 1}', "[1, 2]", "not json"])
def test_damaged_latest_pointer(run, pointer):
    (run / "latest.json").write_text(pointer)
    one_red_line(invoke("train", "--resume", run, "--epochs", "2"), "latest.json")


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("hidden_channels", "8", ["hidden_channels", "'8' (a string)"]),
        ("num_layers", 6.0, ["num_layers", "an integer"]),
        ("num_layers", None, ["num_layers", "null"]),
        ("kernel_size", True, ["kernel_size", "a boolean"]),
        ("in_channels", 0, ["in_channels", "at least 1"]),
        ("cell_options", [], ["cell_options", "an object"]),
        ("cell_options", {"bogus": 1}, ["has no option 'bogus'", "cell options: none"]),
        ("schedule_options", {"0": None}, ["no option '0'"]),
        ("schedule_options", {"levels": "two"}, ["schedule"]),
        ("cell", "nocell", ["Unknown cell 'nocell'"]),
    ],
)
def test_wrong_types_in_config_json(run, field, value, words):
    config = json.loads((run / "config.json").read_text())
    config[field] = value
    (run / "config.json").write_text(json.dumps(config))
    one_red_line(invoke("evaluate", run), "config.json", *words)
    one_red_line(invoke("predict", run, "--out", run.parent / "p.gif"), "config.json", *words)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("epochs", "2", ["epochs", "'2' (a string)"]),
        ("batch_size", None, ["batch_size", "null"]),
        ("in_frames", 3.0, ["in_frames", "an integer"]),
        ("batch_size", 0, ["batch_size", "at least 1"]),
        ("split_fractions", [0.5], ["split_fractions"]),
        ("model_config", "x", ["model_config"]),
        ("model", None, ["model"]),
    ],
)
def test_wrong_types_in_train_config_json(run, field, value, words):
    config = json.loads((run / "train_config.json").read_text())
    config[field] = value
    (run / "train_config.json").write_text(json.dumps(config))
    one_red_line(invoke("train", "--resume", run, "--epochs", "3"), "train_config.json", *words)
    one_red_line(invoke("evaluate", run), "train_config.json", *words)


def test_train_config_json_that_is_not_an_object(run):
    (run / "train_config.json").write_text("[]")
    one_red_line(invoke("evaluate", run), "train_config.json", "JSON object")


@pytest.mark.parametrize("damage", ["missing", "extra", "shape"])
def test_weights_that_do_not_fit_the_config(run, damage):
    weights = load_file(str(run / "model.safetensors"))
    name = sorted(weights)[0]
    if damage == "missing":
        del weights[name]
    elif damage == "extra":
        weights["surplus.weight"] = torch.zeros(1)
    else:
        weights[name] = torch.zeros(3, 3)
    save_file(weights, str(run / "model.safetensors"))
    words = {"missing": ["lacks 1 weight", name], "extra": ["surplus.weight"], "shape": [name, "shape (3, 3)"]}
    one_red_line(invoke("evaluate", run), "model.safetensors", *words[damage])


def _model_dir(tmp_path: Path, transform) -> Path:
    model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=1)
    model.save_pretrained(tmp_path / "m")
    weights = {k: transform(v) for k, v in load_file(str(tmp_path / "m" / "model.safetensors")).items()}
    save_file(weights, str(tmp_path / "m" / "model.safetensors"))
    return tmp_path / "m"


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.bfloat16])
def test_weights_of_another_precision_are_cast_only_when_asked(tmp_path, dtype):
    directory = _model_dir(tmp_path, lambda t: t.to(dtype))
    with pytest.raises(ValueError, match=f"is {str(dtype).replace('torch.', '')} but the model is float32"):
        Forecaster.from_pretrained(directory)
    model = Forecaster.from_pretrained(directory, cast=True)
    assert model.embed.weight.dtype == torch.float32
    with pytest.raises(ValueError, match="pass cast=True"):  # create's message names the way...
        msrnn_zoo.create(model.config.cell, pretrained=str(directory))
    model = msrnn_zoo.create(model.config.cell, pretrained=str(directory), cast=True)  # ...and create takes it
    assert model.embed.weight.dtype == torch.float32


def test_integer_weights_are_never_cast(tmp_path):
    directory = _model_dir(tmp_path, lambda t: (t * 100).to(torch.int32))
    with pytest.raises(ValueError, match="int32.*never converted"):
        Forecaster.from_pretrained(directory, cast=True)


def test_nan_weights_are_refused(tmp_path):
    directory = _model_dir(tmp_path, lambda t: t.clone().fill_(float("nan")) if t.dim() == 4 else t)
    with pytest.raises(ValueError, match="NaN or Inf"):
        Forecaster.from_pretrained(directory)


def test_config_dataclasses_check_their_types():
    with pytest.raises(ValueError, match="hidden_channels.*'8'"):
        msrnn_zoo.ForecasterConfig(cell="convlstm", hidden_channels="8")
    with pytest.raises(ValueError, match="num_layers must be at least 1"):
        msrnn_zoo.create("convlstm", num_layers=0)
    from msrnn_zoo.train import TrainConfig

    with pytest.raises(ValueError, match="epochs must be at least 1"):
        TrainConfig.from_dict({"model": "convlstm", "model_config": {}, "data": "x.npy", "epochs": 0})


@pytest.mark.parametrize("dtype, advice", [
    (torch.complex64, "pass the real part (frames.real) or the magnitude (frames.abs())"),
    (torch.bool, "frames.float()"), (torch.uint8, "divide uint8 frames by 255"),
    (torch.int16, "divide by their largest possible value")])
def test_frames_that_are_not_floats_are_told_how_to_become_floats(dtype, advice):
    """Complex frames were told to "divide uint8 frames by 255"."""
    model = msrnn_zoo.create("convlstm", hidden_channels=2, num_layers=1)
    with pytest.raises(ValueError, match="must be floating point") as caught:
        model(torch.zeros(1, 2, 1, 8, 8, dtype=dtype))
    assert advice in str(caught.value) and (dtype == torch.uint8) == ("uint8" in str(caught.value).split(";")[1])


@pytest.mark.parametrize("sizes, error, words", [
    ((-1, 8, 8), ValueError, "init_state's batch must not be negative, got -1"),
    ((2.0, 8, 8), TypeError, "init_state's batch must be a whole number (int), got 2.0 (float)"),
    ((2, 8.0, 8), TypeError, "init_state's height must be a whole number (int), got 8.0 (float)"),
    ((True, 8, 8), TypeError, "init_state's batch must be a whole number (int), got True (bool)")])
def test_init_state_names_a_size_that_is_not_a_whole_number(sizes, error, words):
    """A float reached torch.zeros as "takes 1 positional argument but 4 were given"; -1 as "Dimension size must be
    non-negative"."""
    model = msrnn_zoo.create("convlstm", hidden_channels=2, num_layers=1)
    with pytest.raises(error) as caught:
        model.init_state(*sizes)
    assert words in str(caught.value)
    assert model.init_state(0, 8, 8).layers[0][0].shape == (0, 2, 8, 8)  # an empty batch stays possible


def test_push_with_the_hub_down(run, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MSRNN_ZOO_HUB_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    one_red_line(invoke("push", run, "someone/model", "--token", "hf_x"), "Cannot reach the Hub", "someone/model")


class TestStep:
    """``step`` with a state checks what ``forward`` checks: device, batch, size, dtype, finite values."""

    @pytest.fixture
    def model(self):
        torch.manual_seed(0)
        return msrnn_zoo.create("ms-convlstm", hidden_channels=4, num_layers=2)

    @pytest.fixture
    def state(self, model):
        _, state = model.step(torch.rand(2, 1, 16, 16))
        return state

    def test_batch_size(self, model, state):
        with pytest.raises(ValueError, match="batch size 3 but the state was made for 2"):
            model.step(torch.rand(3, 1, 16, 16), state)

    def test_nan_frame_with_a_state(self, model, state):
        frame = torch.rand(2, 1, 16, 16)
        frame[1, 0, 3, 3] = float("nan")
        with pytest.raises(ValueError, match="NaN"):
            model.step(frame, state)

    def test_device(self, model, state):
        with pytest.raises(ValueError, match="frame is on meta but the model is on cpu"):
            model.step(torch.empty(2, 1, 16, 16, device="meta"), state)
        with pytest.raises(ValueError, match="state is on meta"):
            model.step(torch.rand(2, 1, 16, 16), state.to("meta"))

    def test_size_and_dtype(self, model, state):
        with pytest.raises(ValueError, match="32x32 but the state was made for another size"):
            model.step(torch.rand(2, 1, 32, 32), state)
        with pytest.raises(ValueError, match="floating point"):
            model.step(torch.zeros(2, 1, 16, 16, dtype=torch.uint8), state)
        with pytest.raises(ValueError, match="2 channels"):
            model.step(torch.rand(2, 2, 16, 16), state)
        with pytest.raises(ValueError, match="dtype of frame is torch.float64, but the model.s weights are"):
            model.step(torch.rand(2, 1, 16, 16, dtype=torch.float64), state)

    def test_a_state_of_another_model(self, model, state):
        """PredRNN reads a missing zigzag memory as zeros: a ConvLSTM's state ran through it without a word."""
        frame = torch.rand(2, 1, 16, 16)
        predrnn = msrnn_zoo.create("ms-predrnn", hidden_channels=4, num_layers=2)
        with pytest.raises(ValueError, match=r"state holds 2 layers, but this model \(predrnn\) needs 2 layers, a "
                                             r"zigzag memory: it was made by another model.*state=None"):
            predrnn.step(frame, state)
        _, predrnn_state = predrnn.step(frame)
        with pytest.raises(ValueError, match="state holds 2 layers, a zigzag memory, but this model"):
            model.step(frame, predrnn_state)
        deeper = msrnn_zoo.create("ms-convlstm", hidden_channels=4, num_layers=4)
        with pytest.raises(ValueError, match="state holds 2 layers, but this model .convlstm. needs 4 layers"):
            deeper.step(frame, state)
        with pytest.raises(ValueError, match=r"state is torch.float64 but the model's weights are torch.float32; "
                                             r"convert it with state.to\(torch.float32\)"):
            model.step(frame, state.to(torch.float64))
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast picks each operation's precision
            model.step(frame, state.to(torch.bfloat16))

    def test_a_state_of_inference_mode_where_gradients_are_recorded(self, model):
        """A state streamed under torch.inference_mode and continued with gradients on failed inside a joint
        convolution with "Inference tensors do not track version counter"."""
        frame = torch.rand(2, 1, 16, 16)
        with torch.inference_mode():
            _, state = model.step(frame)
        with pytest.raises(ValueError, match=r"state was made under torch.inference_mode.*torch.no_grad\(\), or "
                                             r"copy it first \(state = state.map\(torch.clone\)\)"):
            model.step(frame, state)
        with torch.no_grad():
            expected, _ = model.step(frame, state)
        forecast, _ = model.step(frame, state.map(torch.clone))
        forecast.sum().backward()
        torch.testing.assert_close(forecast.detach(), expected)

    @pytest.mark.parametrize("with_state", [False, True])
    def test_one_frame_not_a_clip_nor_an_array(self, model, state, with_state):
        """The shape in the message is the one passed, and a clip is pointed to the call that takes clips."""
        import numpy as np

        given = state if with_state else None
        with pytest.raises(ValueError, match=r"step takes one frame of shape \(B, C, H, W\), got shape "
                                             r"\(2, 1, 1, 16, 16\)\. For a clip .* model\(frames, horizon=\.\.\.\)"):
            model.step(torch.rand(2, 1, 1, 16, 16), given)
        with pytest.raises(TypeError, match=r"step takes one frame, a torch.Tensor .*got ndarray.*torch.as_tensor"):
            model.step(np.zeros((2, 1, 16, 16), dtype=np.float32), given)

    def test_the_check_can_be_skipped_on_a_hot_path(self, model, state):
        frame = torch.rand(2, 1, 16, 16)
        expected, _ = model.step(frame, state)
        model.check_step_inputs = False
        fast, _ = model.step(frame, state)
        torch.testing.assert_close(fast, expected)
        bad = frame.clone()
        bad[0, 0, 0, 0] = float("nan")
        assert torch.isnan(model.step(bad, state)[0]).any()  # unchecked, as asked


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda m: m.forward_train(torch.rand(2, 3, 1, 16, 16), [[1, 1], [1, 1]]), TypeError,
         r"teacher mask must be a torch.Tensor of shape \(B, T-1\) = \(2, 2\).*got list.*torch.ones\(2, 2\)"),
        (lambda m: msrnn_zoo.create(None), TypeError, r"A model name is a string such as 'ms-convlstm'.*got None"),
        (lambda m: msrnn_zoo.create(3), TypeError, r"A model name is a string .*got 3 \(int\)"),
        (lambda m: msrnn_zoo.ForecasterConfig.from_json("not json"), ValueError,
         r"The model config is not valid JSON \(Expecting value at line 1, column 1\); pass the text of a config"),
        (lambda m: msrnn_zoo.ForecasterConfig.from_json({"cell": "convlstm"}), TypeError,
         r"from_json takes the text of a config.json, got dict; for a dict use ForecasterConfig.from_dict"),
        (lambda m: msrnn_zoo.from_config({"cell": "convlstm"}), TypeError,
         r"from_config takes a ForecasterConfig .*got dict; for a dict use from_config\(ForecasterConfig.from_dict"),
        (lambda m: msrnn_zoo.from_config("convlstm"), TypeError,
         r"from_config takes a ForecasterConfig .*got str; for a model name use msrnn_zoo.create\(name\)"),
        # were "dictionary update sequence element #0 has length 1" and "'list' object is not a mapping"
        (lambda m: msrnn_zoo.create("trajgru", cell_options="links=3"), TypeError,
         r"cell_options is a dict of option names to values \(e.g. cell_options=\{'links': 13\}\), got 'links=3'"),
        (lambda m: msrnn_zoo.create("ms-convlstm", schedule_options=[2]), TypeError,
         r"schedule_options is a dict of option names to values .*got \[2\] \(list\)"),
    ],
    ids=["teacher-list", "create-none", "create-int", "from-json-text", "from-json-dict", "from-config-dict",
         "from-config-name", "create-cell-options-str", "create-schedule-options-list"],
)
def test_api_inputs_of_the_wrong_kind_say_what_is_expected(call, error, words):
    model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=1)
    with pytest.raises(error, match=words):
        call(model)


def test_a_misspelt_cell_option_in_config_json_is_named_with_the_real_ones(tmp_path):
    # before: "Cell 'trajgru' rejected its options {'link': 13}: TrajGRUCell.__init__() got an unexpected keyword..."
    msrnn_zoo.create("trajgru", hidden_channels=4, num_layers=1).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["cell_options"] = {"link": 13}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json: Cell 'trajgru' has no option 'link'\..*cell options: .*links"):
        Forecaster.from_pretrained(tmp_path)


@pytest.mark.parametrize("frames", [np.zeros((1, 2, 1, 8, 8), dtype=np.float32), [[[[[0.0] * 8] * 8]] * 2]],
                         ids=["ndarray", "list"])
def test_frames_of_numpy_or_a_list_are_told_how_to_become_a_tensor(frames):
    """Was "must be a torch.Tensor ..., got ndarray." with no word of how, unlike step's message."""
    model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=1)
    with pytest.raises(ValueError, match=r"got (ndarray|list); convert it with torch.as_tensor\(frames\)"):
        model(frames, horizon=1)


def test_forward_checks_the_device_too():
    model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=1)
    with pytest.raises(ValueError, match="frames are on meta but the model is on cpu"):
        model(torch.empty(1, 2, 1, 8, 8, device="meta"), horizon=1)


def test_frames_in_another_precision_are_refused_unless_autocast_decides():
    model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=1)
    with pytest.raises(ValueError, match=r"model.to\(torch.float64\)\), or run under torch.autocast"):
        model(torch.rand(1, 2, 1, 8, 8, dtype=torch.float64), horizon=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.rand(1, 2, 1, 8, 8, dtype=torch.bfloat16), horizon=1).dtype == torch.bfloat16


def test_save_pretrained_never_overwrites_a_config_or_readme_it_did_not_write(tmp_path):
    model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=1)
    (tmp_path / "config.json").write_text('{"my": "project"}')
    with pytest.raises(FileExistsError, match="config.json already exists"):
        model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").read_text() == '{"my": "project"}'
    assert not (tmp_path / "model.safetensors").exists()
    (tmp_path / "config.json").unlink()
    (tmp_path / "README.md").write_text("my readme")
    with pytest.raises(FileExistsError, match="README.md already exists"):
        model.save_pretrained(tmp_path, card="# card")
    assert (tmp_path / "README.md").read_text() == "my readme" and not (tmp_path / "config.json").exists()
    model.save_pretrained(tmp_path)  # without a card the README is not touched
    assert (tmp_path / "README.md").read_text() == "my readme"
    model.save_pretrained(tmp_path, force=True)  # forced: a README of the user's is still not touched
    assert (tmp_path / "README.md").read_text() == "my readme"


def test_a_forced_save_writes_its_generated_card_again(tmp_path):
    """The card it generated described the model it replaced (its name, layers and load line)."""
    msrnn_zoo.create("ms-convlstm", hidden_channels=4).save_pretrained(tmp_path)
    assert "# ms-convlstm" in (tmp_path / "README.md").read_text()
    msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=2).save_pretrained(tmp_path, force=True)
    card = (tmp_path / "README.md").read_text()
    assert "# convlstm" in card and "ms-convlstm" not in card
    msrnn_zoo.create("convlstm", pretrained=str(tmp_path))  # what the card's load line says


@pytest.mark.parametrize("command", [
    ["train", "convlstm", "--data", "{clips}", "--out", "{file}/run", *TINY],
    ["evaluate", "{run}", "--out", "{file}/metrics.json"],
    ["predict", "{run}", "--out", "{file}/f.gif"],
    ["card", "{run}", "--repo-id", "me/x", "--out", "{file}/README.md"],
])
def test_a_file_where_a_folder_must_go_is_one_line_before_any_work(run, tmp_path, clips_file, command):
    """Was a bare "[Errno 20] Not a directory" or "[Errno 17] File exists", evaluate's only after scoring."""
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    args = [c.format(clips=clips_file, file=mine, run=run) for c in command]
    line = one_red_line(invoke(*args), f"{mine} is not a folder but a file")
    assert "Errno" not in line and mine.read_text() == "mine"
    assert "scoring" not in invoke(*args).output  # refused before the work


def test_save_pretrained_into_a_file_says_so(tmp_path):
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    model = msrnn_zoo.create("convlstm", hidden_channels=2, num_layers=1)
    for target in (mine, mine / "sub"):
        with pytest.raises(NotADirectoryError, match="notes.txt is not a folder but a file"):
            model.save_pretrained(target)
    assert mine.read_text() == "mine"


def test_a_config_edited_after_creation_is_not_saved_beside_the_weights(tmp_path):
    """The folder would never load again (weights of 4 hidden channels, a config of 8)."""
    model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=1)
    model.config.hidden_channels = 8
    with pytest.raises(ValueError, match="no longer describes this model's weights"):
        model.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m").exists()
    model.config.hidden_channels = 4
    model.save_pretrained(tmp_path / "m")
    msrnn_zoo.create("convlstm", pretrained=str(tmp_path / "m"))


def test_evaluating_on_clips_changed_since_training_says_so(run, tmp_path):
    """Was "pred and truth must have the same shape (B, T, C, H, W)", from deep inside the scoring."""
    import numpy as np

    config = json.loads((run / "train_config.json").read_text())
    config["data"] = str(tmp_path / "short.npy")  # (the copy's own: the module's run shares its clips)
    (run / "train_config.json").write_text(json.dumps(config))
    np.save(config["data"], (np.random.default_rng(1).random((40, 4, 16, 16)) * 255).astype(np.uint8))
    one_red_line(invoke("evaluate", run), "have shape (4, 1, 16, 16)", "at least 6 frames", "changed since")


@pytest.mark.parametrize("command", [["evaluate"], ["predict"], ["card", "--repo-id", "me/m"], ["train", "--resume"]])
def test_a_file_given_for_a_run_points_at_the_run_it_belongs_to(run, tmp_path, command):
    """`evaluate run/model.safetensors` blamed writing a metrics file inside a file, predict and card said "No run
    directory; train one with --out" that file, resume "no such directory". Now each points at the run."""
    one_red_line(invoke(*command, run / "model.safetensors"), "is a file, not a run directory",
                 f"its folder {run} is the run")
    (tmp_path / "notes.txt").write_text("mine")
    line = one_red_line(invoke(*command, tmp_path / "notes.txt"), "is a file, not a run directory", "--out")
    assert "train one with" not in line and (tmp_path / "notes.txt").read_text() == "mine"


def test_a_file_that_forcing_would_not_replace_is_not_offered_to_force(run):
    """`card RUN --out RUN/config.json` said the config "holds a model card" and to pass --force, which then refused."""
    before = (run / "config.json").read_bytes()
    line = one_red_line(invoke("card", run, "--repo-id", "me/m", "--out", run / "config.json"),
                        "already exists and is not a model card that msrnn-zoo wrote")
    assert "--force" not in line and (run / "config.json").read_bytes() == before


def test_data_prepare_under_a_file_names_it(tmp_path, monkeypatch):
    """MSRNN_ZOO_DATA (or --root) under a file made data prepare say only "[Errno 20] Not a directory: '.../kth'"."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    monkeypatch.setenv("MSRNN_ZOO_DATA", str(notes))
    one_red_line(invoke("data", "prepare", "kth", "--source", tmp_path), f"--root {notes / 'kth'} lies under {notes}, "
                 "a file; give a new or empty folder", "$MSRNN_ZOO_DATA")
    one_red_line(invoke("data", "prepare", "kth", "--source", tmp_path, "--root", notes), f"--root {notes} is a file")
    # reading it said "the folder does not exist" and advised preparing into a folder under the file
    one_red_line(invoke("data", "info", "kth"), f"No prepared kth data at {notes / 'kth'}: it lies under {notes}, a "
                 "file", "is it set to a file?")
    assert notes.read_text() == "mine"
