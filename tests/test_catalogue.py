"""Recipes and the pretrained catalogue: the data files compose, say where each setting comes from, and
never claim what no run produced."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import msrnn_zoo
from msrnn_zoo.catalogue import (
    PRETRAINED_FILE,
    builtin_checkpoints,
    get_recipe,
    list_recipes,
    make_checkpoint,
    read_toml,
    recipe_datasets,
    recipe_tables,
)
from msrnn_zoo.cli import main

PAPER_EPOCHS = {"moving-mnist": 20, "kth": 20, "taxibj": 20, "germany": 16}


def test_a_recipe_for_every_model_on_every_dataset_of_the_paper():
    recipes = list_recipes()
    assert len(recipes) == len(msrnn_zoo.list_models()) * 4
    assert sorted(recipe_datasets()) == sorted(PAPER_EPOCHS)
    for recipe in recipes:
        assert (recipe["hidden_channels"], recipe["num_layers"], recipe["kernel_size"]) == (64, 6, 3)
        assert (recipe["optimizer"], recipe["lr"], recipe["batch_size"]) == ("adam", 3e-4, 4)
        assert recipe["epochs"] == PAPER_EPOCHS[recipe.dataset]
        expected = "reverse" if recipe.model.endswith("predrnn-v2") else "scheduled"
        assert recipe["sampling"] == expected
        assert recipe.reproduce_command().startswith(f"msrnn-zoo reproduce {recipe.model} {recipe.dataset}")
    kth = get_recipe("ms-motionrnn", "kth")
    assert (kth["in_frames"], kth["out_frames"], kth["height"], kth["protocol"]) == (10, 10, 88, "paper")
    assert (get_recipe("convlstm", "taxibj")["in_frames"], get_recipe("convlstm", "germany")["height"]) == (4, 124)


def test_every_setting_names_its_source():
    tables = recipe_tables()
    prose = {"description", "data_note", "prepare", "root_required", "download", "auxiliary_loss"}
    for table in (tables["defaults"], *tables["datasets"].values(), *tables["cells"].values()):
        settings = set(table) - {"sources"} - prose
        missing = settings - set(table.get("sources", {}))
        assert not missing, f"settings without a source: {missing}"
        assert all(table["sources"][k].strip() for k in settings)


def test_unknown_recipe_names_are_clear():
    with pytest.raises(ValueError, match="Unknown recipe dataset 'kht'. Did you mean 'kth'"):
        get_recipe("ms-convlstm", "kht")
    with pytest.raises(ValueError, match="Unknown model"):
        get_recipe("ms-convlstmm", "kth")


def test_the_catalogue_claims_nothing_no_run_produced():
    records = builtin_checkpoints()
    assert len(records) == 64
    for record in records:
        assert record.status == "recipe-only" and not record.metrics and not record.revision
        model, dataset = record.recipe.split(".")
        assert (model, dataset) == (record.model, record.dataset)
        get_recipe(model, dataset)  # composes
    assert set(read_toml(PRETRAINED_FILE)) == {"checkpoint"}
    with pytest.raises(ValueError, match="recipe-only record has no weights"):
        make_checkpoint("test", model="ms-convlstm", tag="x", repo_id="a/b", status="recipe-only", metrics={"mse": 1})
    with pytest.raises(ValueError, match="without the metrics_command"):
        make_checkpoint("test", model="ms-convlstm", tag="x", repo_id="a/b", revision="a" * 40, metrics={"mse": 1.0})
    with pytest.raises(ValueError, match="not one of published, recipe-only"):
        make_checkpoint("test", model="ms-convlstm", tag="x", repo_id="a/b", status="soon")
    with pytest.raises(ValueError, match="is not a 40-digit commit id"):  # `$` matched before a final newline
        make_checkpoint("test", model="ms-convlstm", tag="x", repo_id="a/b", revision="a" * 40 + "\n")


def test_a_published_record_is_pinned_to_a_commit():
    """DEVELOPERS.md and the validator's docstring say so, but a published record without a revision was accepted
    (a plugin's `register(model=..., tag=..., repo_id=...)` is published by default): it loaded whatever the repo's
    main branch held on the day, not the weights its metrics were measured on."""
    with pytest.raises(ValueError, match="a published record needs the revision its weights were pushed at"):
        make_checkpoint("test", model="ms-convlstm", tag="x", repo_id="a/b")
    with pytest.raises(ValueError, match="a published record needs the revision"):
        make_checkpoint("test", model="ms-convlstm", tag="x", repo_id="a/b", status="published",
                        metrics={"mse": 1.0}, metrics_command="msrnn-zoo evaluate runs/x")
    assert make_checkpoint("test", model="ms-convlstm", tag="x", repo_id="a/b", revision="a" * 40).published


def test_a_plugin_cannot_take_a_zoo_tag(toy_plugin):
    from msrnn_zoo.plugins import forget, pm, records

    class Squatter:
        @msrnn_zoo.hookimpl
        def register_checkpoints(self, register):
            register(model="ms-convlstm", tag="kth", repo_id="evil/weights", revision="e" * 40)

    plugin = Squatter()
    pm.register(plugin, name="squatter")
    try:
        record = msrnn_zoo.registry.registry().models["ms-convlstm"].pretrained["kth"]
        assert record.origin == "msrnn-zoo" and record.repo_id == "msrnn-zoo/ms-convlstm-kth"
        failed = next(r for r in records() if r.name == "squatter")
        assert any("in the zoo's own catalogue; not added" in c for c in failed.conflicts), failed
    finally:
        pm.unregister(plugin)
        forget("squatter")


def test_cli_recipe_prints_settings_with_sources():
    result = CliRunner().invoke(main, ["recipe", "ms-predrnn-v2", "germany", "--json"])
    assert result.exit_code == 0, result.output
    assert '"sampling": "reverse"' in result.output and "cfg.reverse_scheduled_sampling" in result.output
    listing = CliRunner().invoke(main, ["recipe", "--json"])
    assert listing.exit_code == 0 and listing.output.count('"recipe":') == 64
    bad = CliRunner().invoke(main, ["recipe", "ms-convlstm"])
    assert bad.exit_code == 1 and "Name both" in bad.output


def test_recipes_agree_with_the_installed_dataset_plugins():
    from msrnn_zoo.registry import get_dataset

    for dataset in recipe_datasets():
        if dataset not in msrnn_zoo.list_datasets():
            continue  # its plugin is not installed here; its own tests check its recipe
        recipe = get_recipe("ms-convlstm", dataset)
        protocol = get_dataset(dataset).info.protocol(recipe.get("protocol"))
        assert (protocol.in_frames, protocol.out_frames, protocol.height, protocol.width) == (
            recipe["in_frames"], recipe["out_frames"], recipe["height"], recipe["width"]), dataset
