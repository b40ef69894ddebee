"""The whole zoo as a user meets it: sixteen models, each described by `info` and trainable on the
embedded dataset through the same `train` path, with the input schedule its cell's plugin names."""

import json

import pytest
from click.testing import CliRunner

import msrnn_zoo
from msrnn_zoo import sampling
from msrnn_zoo.cli import main
from msrnn_zoo.train import Trainer, new_train_config

CELLS = ["convlstm", "trajgru", "predrnn", "predrnn-pp", "mim", "motionrnn", "predrnn-v2", "preciplstm"]
MODELS = [prefix + cell for cell in CELLS for prefix in ("", "ms-")]


def test_sixteen_models_with_their_plugins():
    data = json.loads(CliRunner().invoke(main, ["list", "--json"]).output)
    plugins = {m["name"]: m["plugin"] for m in data["models"]}
    assert set(MODELS) <= set(plugins)
    assert all(plugins[prefix + cell] == cell for cell in CELLS for prefix in ("", "ms-"))


@pytest.mark.parametrize(("name", "meant"), [("MS-ConvLSTM", "ms-convlstm"), ("MS-PredRNN-V2", "ms-predrnn-v2")])
def test_a_name_spelt_as_the_paper_does_suggests_the_zoo_name(name, meant):
    # the suggestions compared with case, so the paper's spelling got none: "Unknown model 'MS-ConvLSTM'." alone
    with pytest.raises(ValueError, match=f"Unknown model '{name}'. Did you mean '{meant}'"):
        msrnn_zoo.create(name)


@pytest.mark.parametrize("lister", [msrnn_zoo.list_models, msrnn_zoo.list_cells, msrnn_zoo.list_datasets])
def test_a_pattern_that_is_not_a_string_says_what_a_pattern_is(lister):
    # timm's list_models takes a list of globs; here it was fnmatch's "expected str, bytes or os.PathLike object"
    with pytest.raises(TypeError, match=r"A name pattern is one glob string such as 'ms-\*'.*got \['ms-\*'\] \(list\)"):
        lister(["ms-*"])


@pytest.mark.parametrize("name", MODELS)
def test_info_describes_every_model(name):
    result = CliRunner().invoke(main, ["info", name, "--size", "16", "--hidden", "8", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["parameters"] > 0 and info["flops_per_frame"] > 0 and info["memory_flow"]
    expected = [1, 0.5, 0.25, 0.25, 0.5, 1] if name.startswith("ms-") else [1] * 6
    assert info["scales"] == expected


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_every_model_trains_on_the_embedded_dataset(tmp_path, name):
    cfg = new_train_config(name, model_options={"hidden_channels": 8}, dataset="moving-mnist", source="synthetic",
                           in_frames=2, out_frames=2, epochs=4, batch_size=2, lr=1e-2, max_train_clips=2)
    trainer = Trainer.create(tmp_path / "run", cfg)
    cell = msrnn_zoo.create(name, hidden_channels=8).cell_class
    assert trainer.schedule is sampling.get_schedule(cell.sampling)
    losses = trainer.fit()
    assert len(losses) == 4 and losses[-1] < losses[0], losses


def test_predrnn_v2_trains_with_its_own_schedule_and_auxiliary_loss():
    model = msrnn_zoo.create("predrnn-v2", hidden_channels=8)
    assert model.cell_class.sampling == "reverse" and model.aux_loss is not None
    assert msrnn_zoo.create("predrnn", hidden_channels=8).cell_class.sampling == "scheduled"
