from pathlib import Path

import pytest
import torch

from msrnn_zoo.convert import from_original
from msrnn_zoo.testing import load_fixture, parity_error

FIXTURE = Path(__file__).parent / "data" / "ms-convlstm.safetensors"


def original_weights():
    tensors, _ = load_fixture(FIXTURE)
    return {k[len("weights."):]: v for k, v in tensors.items() if k.startswith("weights.")}


def test_parity_through_the_kit():
    assert parity_error(FIXTURE) < 1e-4


def test_ddp_prefix_and_pth_file(tmp_path):
    weights = {"module." + k: v for k, v in original_weights().items()}
    path = tmp_path / "checkpoint.pth"
    torch.save(weights, path)
    model = from_original(path, "ms-convlstm")
    assert model.config.hidden_channels == 8 and model.config.num_layers == 6
    torch.testing.assert_close(model.embed.weight, weights["module.embed.conv_embed.weight"])


def test_missing_and_leftover_keys_are_named():
    weights = original_weights()
    weights.pop("rnns.lstm.2._conv_h2h.bias")
    with pytest.raises(ValueError, match=r"rnns\.lstm\.2\._conv_x2h\.bias \(ours: cells\.2\.conv_x\.bias\) load into "
                                         r"the joint convolution cells\.2\.conv_xh\.bias, which also needs "
                                         r"cells\.2\.conv_h\.bias"):
        from_original(weights, "ms-convlstm")
    weights = original_weights()
    weights["rnns.lstm.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"left over from the checkpoint: rnns\.lstm\.0\.extra\.weight"):
        from_original(weights, "ms-convlstm")


def test_wrong_model_or_file():
    with pytest.raises(ValueError, match="conv_embed"):
        from_original({"a": torch.zeros(1)}, "convlstm")
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        from_original("/nonexistent.pth", "convlstm")
    with pytest.raises(ValueError, match="hidden_channels=8, but hidden_channels=16"):
        from_original(original_weights(), "ms-convlstm", hidden_channels=16)


PREDRNN_FIXTURE = Path(__file__).parents[1] / "plugins" / "msrnn-predrnn" / "tests" / "data" / "ms-predrnn.safetensors"


@pytest.mark.parametrize("fixture", [FIXTURE, PREDRNN_FIXTURE], ids=lambda p: p.stem)
def test_cli_convert_writes_a_folder_create_loads(tmp_path, fixture):
    """`msrnn-zoo convert` on a .pth made from the original's weights: checked, saved, loadable, at parity."""
    from click.testing import CliRunner

    import msrnn_zoo
    from msrnn_zoo.cli import main
    from msrnn_zoo.testing import parity_against

    tensors, meta = load_fixture(fixture)
    checkpoint = tmp_path / "original.pth"
    torch.save({"module." + k[len("weights."):]: v for k, v in tensors.items() if k.startswith("weights.")},
               checkpoint)
    out = tmp_path / "converted"
    result = CliRunner().invoke(main, ["convert", str(checkpoint), "--model", meta["model"], "--hidden", "8",
                                       "--out", str(out), "--reference", str(fixture), "--size", "16"])
    assert result.exit_code == 0, result.output
    assert "max |difference|" in result.output and "bit-identically" in result.output
    assert "torch.Generator().manual_seed(0)" in result.output  # the forward check's input, to rerun elsewhere
    model = msrnn_zoo.create(meta["model"], pretrained=str(out))
    assert parity_against(model, tensors["input"], tensors["output"], int(meta["in_len"])) < 1e-4
    again = CliRunner().invoke(main, ["convert", str(checkpoint), "--model", meta["model"], "--out", str(out)])
    assert again.exit_code == 1 and "--force" in again.output  # never overwrites


def test_cli_convert_failures_are_one_line(tmp_path):
    from click.testing import CliRunner

    from msrnn_zoo.cli import main

    checkpoint = tmp_path / "original.pth"
    torch.save(original_weights(), checkpoint)
    (tmp_path / "garbage.safetensors").write_text("garbage")
    cases = [
        (["--model", "ms-convlstm", "--reference", str(tmp_path / "garbage.safetensors")],
         "garbage.safetensors is not a readable safetensors file"),
        (["--model", "ms-convlstm", "--reference", str(tmp_path)], "No reference file at"),
        (["--model", "ms-predrnn"], "does not match 'ms-predrnn'"),
        (["--model", "ms-convlstm", "--hidden", "64"], "hidden_channels=8, but hidden_channels=64"),
        (["--model", "ms-convlstm", "--reference", str(PREDRNN_FIXTURE), "--size", "16"], "Parity check failed"),
        (["--model", "ms-convlstm", "--reference", str(PREDRNN_FIXTURE), "--in-len", "99"], "give 1..7"),
        (["--model", "ms-convlstm", "--in-len", "0"], "Invalid value for '--in-len'"),
        (["--model", "ms-convlstm", "--size", "0"], "Invalid value for '--size'"),
    ]
    for options, message in cases:
        out = tmp_path / "out"
        result = CliRunner().invoke(main, ["convert", str(checkpoint), *options, "--out", str(out)])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output
        assert not (out / "model.safetensors").exists()  # nothing written when a check fails


class TrainingSettings:
    """What a training script might pickle beside its weights (the original saves a bare state dict)."""

    lr = 1e-3


def test_files_that_are_no_safe_checkpoint_say_what_to_do(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"notes.pth is not a checkpoint torch.save wrote: it starts with b'not '"):
        from_original(text, "ms-convlstm")
    cut = tmp_path / "cut.pth"
    torch.save(original_weights(), cut)
    cut.write_bytes(cut.read_bytes()[:2000])
    with pytest.raises(ValueError, match="cut.pth could not be read as a checkpoint .*cut short or damaged"):
        from_original(cut, "ms-convlstm")
    pickled = tmp_path / "with-settings.pth"
    torch.save({"state_dict": original_weights(), "settings": TrainingSettings()}, pickled)
    with pytest.raises(ValueError, match="holds Python objects besides tensors, which msrnn-zoo does not unpickle"):
        from_original(pickled, "ms-convlstm")
    # what the message tells a user who trusts the file
    torch.save(torch.load(pickled, weights_only=False)["state_dict"], tmp_path / "weights.pth")
    assert from_original(tmp_path / "weights.pth", "ms-convlstm").config.num_layers == 6


def test_convert_cautions_where_the_checkpoint_fits_another_schedule_as_well(tmp_path):
    """ms-convlstm's weights converted as `convlstm` loaded without a word (a schedule has no weights) and forecast
    nonsense. Without --reference the table now names the model the checkpoint fits as well; with it (the parity
    check decides) it does not; other cells' models are never named."""
    from click.testing import CliRunner

    from msrnn_zoo.cli import main
    from msrnn_zoo.convert import fitting_equally

    assert fitting_equally(original_weights(), "convlstm") == ["ms-convlstm"]
    assert fitting_equally(original_weights(), "ms-convlstm") == ["convlstm"]
    checkpoint = tmp_path / "original.pth"
    torch.save(original_weights(), checkpoint)
    result = CliRunner().invoke(main, ["convert", str(checkpoint), "--model", "convlstm", "--out",
                                       str(tmp_path / "a"), "--size", "16"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "fits ms-convlstm as well" in result.output and "--reference" in result.output
    result = CliRunner().invoke(main, ["convert", str(checkpoint), "--model", "ms-convlstm", "--out",
                                       str(tmp_path / "b"), "--reference", str(FIXTURE), "--size", "16"],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "as well" not in result.output and "max |difference|" in result.output


def test_parts_of_a_joint_convolution_that_cannot_be_joined_are_named():
    """A checkpoint whose two convolutions of one gate have other kernel sizes (or dimensions) than each other failed
    with torch.cat's bare RuntimeError (a traceback under the CLI); now a ValueError names both original keys."""
    weights = original_weights()
    weights["rnns.lstm.1._conv_h2h.weight"] = torch.zeros(32, 8, 5, 5)
    with pytest.raises(ValueError, match=r"rnns\.lstm\.1\._conv_x2h\.weight \(ours: cells\.1\.conv_x\.weight\) "
                                         r"\(32, 8, 3, 3\), rnns\.lstm\.1\._conv_h2h\.weight .* \(32, 8, 5, 5\); the "
                                         "checkpoint is damaged"):
        from_original(weights, "ms-convlstm")
    weights = original_weights()
    weights["rnns.lstm.0._conv_h2h.bias"] = torch.zeros(31)
    with pytest.raises(ValueError, match=r"cells\.0\.conv_xh\.bias must agree in their shape"):
        from_original(weights, "ms-convlstm")


V2_FIXTURE = Path(__file__).parents[1] / "plugins" / "msrnn-predrnn-v2" / "tests" / "data" / "ms-predrnn-v2.safetensors"


def test_integer_or_non_finite_weights_are_refused_before_anything_is_written(tmp_path):
    """int32 weights loaded as their float values without a word; a NaN in PredRNN-V2's adapter (used by the
    training loss only) passed the forward check and was saved, leaving a folder that never loads ("train again with
    a lower learning rate"). Both are refused now, naming the original's key, and nothing is written."""
    from click.testing import CliRunner

    from msrnn_zoo.cli import main

    weights = {k: v.to(torch.int32) if k.startswith("fc.") else v for k, v in original_weights().items()}
    with pytest.raises(ValueError, match=r"fc\.conv_fc\.(bias|weight) is int32, not floating point"):
        from_original(weights, "ms-convlstm")
    tensors, _ = load_fixture(V2_FIXTURE)
    weights = {k[len("weights."):]: v for k, v in tensors.items() if k.startswith("weights.")}
    weights["rnns.adapter.weight"] = torch.full_like(weights["rnns.adapter.weight"], float("nan"))
    torch.save(weights, tmp_path / "diverged.pth")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "diverged.pth"), "--model", "ms-predrnn-v2",
                                       "--out", str(out), "--size", "16"])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "rnns.adapter.weight (ours: aux_loss.adapter.weight) contains NaN or Inf" in said, said
    assert not out.exists()


@pytest.mark.parametrize("key", ["model", "model_state_dict"])
def test_weights_saved_beside_training_state_are_found(tmp_path, key):
    """torch.save({'model': weights, 'optimizer': ...}) was refused as 'not an original MS-RNN checkpoint (first keys:
    ['model', 'optimizer'])'; only 'state_dict' was looked into."""
    path = tmp_path / "checkpoint.pth"
    torch.save({key: {"module." + k: v for k, v in original_weights().items()}, "optimizer": {"lr": 1e-3},
                "epoch": 7}, path)
    assert from_original(path, "ms-convlstm").config.num_layers == 6
    torch.save({"generator": original_weights(), "optimizer": {}}, path)  # a name of the user's own: say what to do
    with pytest.raises(ValueError, match=r"holds dicts under 'generator', 'optimizer': save the one with the weights "
                                         r"alone, torch\.save\(checkpoint\[KEY\], 'weights\.pth'\)"):
        from_original(path, "ms-convlstm")


def test_convert_never_writes_into_a_training_run(tmp_path):
    """`convert --out RUN --force` replaced the run's model.safetensors wherever msrnn-zoo had marked it (a model saved
    there with save_pretrained), under the run's history and checkpoints; a run's unmarked weights were refused as
    "not a model that msrnn-zoo wrote", which it was. Both are refused now as a run, before any work."""
    from click.testing import CliRunner

    import msrnn_zoo
    from msrnn_zoo.cli import main

    run = tmp_path / "run"
    msrnn_zoo.create("ms-convlstm", hidden_channels=8, num_layers=6).save_pretrained(run)
    (run / "train_config.json").write_text("{}")
    before = (run / "model.safetensors").read_bytes()
    checkpoint = tmp_path / "original.pth"
    torch.save(original_weights(), checkpoint)
    result = CliRunner().invoke(main, ["convert", str(checkpoint), "--model", "ms-convlstm", "--out", str(run),
                                       "--size", "16", "--force"])
    assert result.exit_code == 1 and "is a run of `msrnn-zoo train`" in " ".join(result.output.split())
    assert (run / "model.safetensors").read_bytes() == before


def test_convert_out_of_memory_names_the_one_size_it_can_lower(tmp_path, monkeypatch):
    """Its advice was to lower --hidden, --layers or --batch-size: convert reads the first two from the checkpoint
    and has no third; the forward check's --size is what a user can lower."""
    from click.testing import CliRunner

    import msrnn_zoo.convert
    from msrnn_zoo.cli import main

    checkpoint = tmp_path / "original.pth"
    torch.save(original_weights(), checkpoint)

    def too_big(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(msrnn_zoo.convert, "check_conversion", too_big)
    result = CliRunner().invoke(main, ["convert", str(checkpoint), "--model", "ms-convlstm", "--out",
                                       str(tmp_path / "out"), "--size", "100000"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "Ran out of memory; lower --size, or use smaller clips" in said, said
    assert "--hidden" not in said and "--batch-size" not in said


def test_check_conversion_from_python_names_its_arguments_not_converts_flags(tmp_path):
    """check_conversion told a notebook "--in-len N", "--in-len 99: ...", "Check --model" and "another --out": flags
    of `msrnn-zoo convert`, which it had not run. It now names in_len=, the model's name and out; the CLI keeps its
    words (test_cli_convert_failures_are_one_line)."""
    from safetensors.torch import save_file

    from msrnn_zoo.convert import check_conversion

    model = from_original(original_weights(), "ms-convlstm")
    save_file({"input": torch.zeros(8, 1, 1, 16, 16), "output": torch.zeros(7, 1, 1, 16, 16)},
              tmp_path / "no-in-len.safetensors")
    run = tmp_path / "run"
    run.mkdir()
    (run / "train_config.json").write_text("{}")
    out = tmp_path / "out"
    cases = [
        (dict(reference=tmp_path / "no-in-len.safetensors"), out, "frames are context: in_len=N.", "--in-len N."),
        (dict(reference=PREDRNN_FIXTURE, in_len=99), out, "in_len=99: ", "--in-len 99: "),
        (dict(reference=PREDRNN_FIXTURE, size=16), out, "Check the model's name ('ms-convlstm') and the cell options",
         "Check --model and the cell options"),
        ({}, run, "Write it into a folder of its own (another folder as out).", "(another --out)."),
    ]
    for options, where, words, flags in cases:
        with pytest.raises(ValueError) as caught:
            check_conversion(model, "ms-convlstm", where, **options)
        assert words in str(caught.value) and "--" not in str(caught.value), str(caught.value)
        assert flags in caught.value.cli_message, caught.value.cli_message
    assert not out.exists()


@pytest.mark.parametrize("size", [0, -3])
def test_check_conversion_refuses_a_size_below_one_naming_size(tmp_path, size):
    """check_conversion(size=0) said "Layer 0 would run at 0x0: the input is too small" and size=-3 failed on
    "Frames of -3x-3", neither naming the argument to change. It now refuses size= up front; the CLI's words name
    --size."""
    from msrnn_zoo.convert import check_conversion

    model = from_original(original_weights(), "ms-convlstm")
    with pytest.raises(ValueError) as caught:
        check_conversion(model, "ms-convlstm", tmp_path / "out", size=size)
    assert str(caught.value).startswith(f"size={size}: ") and "--" not in str(caught.value), str(caught.value)
    assert caught.value.cli_message.startswith(f"--size {size}: "), caught.value.cli_message
    assert not (tmp_path / "out").exists()
