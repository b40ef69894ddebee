import pytest
import torch

import msrnn_zoo
from msrnn_zoo.plugins import forget, pm, records


def test_toy_cell_gets_ms_twin_and_trains(toy_plugin):
    assert {"toy", "ms-toy"} <= set(msrnn_zoo.list_models("*toy"))
    assert "toy" in msrnn_zoo.list_cells()
    model = msrnn_zoo.create("ms-toy", hidden_channels=4, gain=0.5)
    assert model.config.cell_options == {"gain": 0.5}
    assert model.schedule.scales() == [1, 0.5, 0.25, 0.25, 0.5, 1]
    frames = torch.rand(2, 4, 1, 16, 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    prediction, aux = model.forward_train(frames, torch.ones(2, 3))
    assert aux is None
    loss = (prediction - frames[:, 1:]).pow(2).mean()
    loss.backward()
    optimizer.step()
    assert all(p.grad is not None for p in model.parameters())


def test_toy_plugin_disappears_when_unregistered():
    class P:
        @msrnn_zoo.hookimpl
        def register_cells(self, register):
            register("gone", msrnn_zoo.RecurrentCell)

    with pytest.raises(TypeError):  # abstract cell classes cannot be instantiated, but can be registered
        msrnn_zoo.RecurrentCell(1, 1)
    plugin = P()
    pm.register(plugin, name="gone-plugin")
    assert "gone" in msrnn_zoo.list_cells()
    pm.unregister(plugin)
    forget("gone-plugin")
    assert "gone" not in msrnn_zoo.list_cells()


def test_broken_plugin_is_reported_and_breaks_nothing():
    class Broken:
        @msrnn_zoo.hookimpl
        def register_cells(self, register):
            raise RuntimeError("boom")

    class BadName:
        @msrnn_zoo.hookimpl
        def register_cells(self, register):
            register("Bad Name", object)

    broken, bad = Broken(), BadName()
    pm.register(broken, name="broken-plugin")
    pm.register(bad, name="bad-plugin")
    try:
        assert "convlstm" in msrnn_zoo.list_models()
        by_name = {r.name: r for r in records()}
        assert "boom" in by_name["broken-plugin"].error
        assert "lowercase" in by_name["bad-plugin"].error
        assert by_name["convlstm"].ok and by_name["convlstm"].cells == ["convlstm"]
    finally:
        pm.unregister(broken)
        pm.unregister(bad)
        forget("broken-plugin")
        forget("bad-plugin")


def test_a_name_with_a_trailing_newline_is_refused():
    """`$` in a pattern matches before a final newline: 'nl\\n' would become a model no command line can name."""

    class Newline:
        @msrnn_zoo.hookimpl
        def register_cells(self, register):
            register("nl\n", msrnn_zoo.RecurrentCell)

    plugin = Newline()
    pm.register(plugin, name="newline-plugin")
    try:
        assert "nl\n" not in msrnn_zoo.list_cells()
        assert "lowercase" in {r.name: r for r in records()}["newline-plugin"].error
    finally:
        pm.unregister(plugin)
        forget("newline-plugin")


def test_a_hook_that_uses_the_catalogue_is_reported_not_recursed():
    class Greedy:
        @msrnn_zoo.hookimpl
        def register_cells(self, register):
            msrnn_zoo.list_models()

    plugin = Greedy()
    pm.register(plugin, name="greedy-plugin")
    try:
        assert "convlstm" in msrnn_zoo.list_models()
        by_name = {r.name: r for r in records()}
        assert "while registering" in by_name["greedy-plugin"].error
        assert by_name["convlstm"].ok
    finally:
        pm.unregister(plugin)
        forget("greedy-plugin")


def test_unknown_names_suggest_close_matches():
    with pytest.raises(ValueError, match="Did you mean 'ms-convlstm'"):
        msrnn_zoo.create("ms-convlstmm")
    with pytest.raises(ValueError, match="Unknown dataset 'moving-mnst'.*'moving-mnist'"):
        msrnn_zoo.load_dataset("moving-mnst")


def test_list_filters():
    assert all(n.startswith("ms-") for n in msrnn_zoo.list_models("ms-*"))
    assert "moving-mnist" in msrnn_zoo.list_datasets()


def test_name_globs_ignore_case_as_the_paper_spells_the_names():
    """'MS-*' (the paper writes MS-ConvLSTM) matched nothing, since the zoo's names are lower case."""
    from msrnn_zoo.registry import list_pretrained

    assert msrnn_zoo.list_models("MS-*") == msrnn_zoo.list_models("ms-*") != []
    assert msrnn_zoo.list_models("MS-ConvLSTM") == ["ms-convlstm"]
    assert msrnn_zoo.list_datasets("Moving-*") == ["moving-mnist"]
    assert [r.model for r in list_pretrained("MS-CONVLSTM")] == [r.model for r in list_pretrained("ms-convlstm")] != []


def test_pretrained_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="'convlstm.moving-mnist' is recipe-only"):
        msrnn_zoo.create("convlstm", pretrained=True)
    with pytest.raises(ValueError, match="no checkpoint tagged 'kth2'"):
        msrnn_zoo.create("ms-convlstm", pretrained="kth2")
    with pytest.raises(ValueError, match="no checkpoint tagged 'kth2'"):
        msrnn_zoo.create("ms-convlstm.kth2")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        msrnn_zoo.create("ms-convlstm", pretrained=str(tmp_path))


def test_an_entry_point_that_fails_to_import_is_reported(monkeypatch):
    import importlib.metadata

    from click.testing import CliRunner

    from msrnn_zoo import plugins
    from msrnn_zoo.cli import main

    real = importlib.metadata.entry_points

    def with_a_broken_one(**kwargs):
        found = list(real(**kwargs))
        if kwargs.get("group") == plugins.ENTRY_POINT_GROUP:
            group = plugins.ENTRY_POINT_GROUP
            found.append(importlib.metadata.EntryPoint("broken-dist", "no_such_module.plugin", group))
        return found

    monkeypatch.setattr(importlib.metadata, "entry_points", with_a_broken_one)
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    try:
        assert "convlstm" in msrnn_zoo.list_models()
        record = {r.name: r for r in records()}["broken-dist"]
        assert "ModuleNotFoundError" in record.error and "no_such_module" in record.error
        result = CliRunner().invoke(main, ["plugins"])
        assert result.exit_code == 0 and "broken-dist" in result.output and "failed" in result.output
        assert CliRunner().invoke(main, ["list"]).exit_code == 0
    finally:
        forget("broken-dist")


class MisspeltHook:
    @msrnn_zoo.hookimpl
    def register_cell(self, register):  # register_cells without its s: pluggy never calls it
        register("typo-cell", msrnn_zoo.RecurrentCell)


class Undecorated:
    def register_cells(self, register):  # no @hookimpl: pluggy never calls it
        register("typo-cell", msrnn_zoo.RecurrentCell)


class ReturnsCells:
    @msrnn_zoo.hookimpl
    def register_cells(self, register):
        return {"typo-cell": msrnn_zoo.RecurrentCell}


@pytest.mark.parametrize(("cls", "words"), [
    (MisspeltHook, "its @hookimpl 'register_cell' is no hook of the zoo, so it is never called; name it"),
    (Undecorated, "its register_cells has no @msrnn_zoo.hookimpl decorator, so it is never called"),
    (ReturnsCells, "register_cells returned a dict, which the zoo ignores; call register(...)"),
])
def test_a_hook_that_is_never_called_or_returns_its_cells_is_a_failure_that_says_why(cls, words):
    """Each registered nothing and showed as 'ok' in `msrnn-zoo plugins`; the cell was then merely 'Unknown'."""
    from click.testing import CliRunner

    from msrnn_zoo.cli import main

    plugin = cls()
    pm.register(plugin, name="mistaken-plugin")
    try:
        assert "typo-cell" not in msrnn_zoo.list_cells()
        assert words in {r.name: r for r in records()}["mistaken-plugin"].error
        with pytest.raises(ValueError, match=r"Unknown model 'typo-cell'.*\(mistaken-plugin\).*`msrnn-zoo plugins`"):
            msrnn_zoo.create("typo-cell")
        listed = CliRunner().invoke(main, ["list", "typo-*"])
        assert listed.exit_code == 0 and "(mistaken-plugin)" in listed.output, listed.output
    finally:
        pm.unregister(plugin)
        forget("mistaken-plugin")


def test_the_traceback_of_a_hook_that_raises_shows_the_plugins_line():
    from click.testing import CliRunner

    from msrnn_zoo.cli import main

    class Raises:
        @msrnn_zoo.hookimpl
        def register_cells(self, register):
            return None.missing_attribute  # the line `plugins --traceback` must show

    plugin = Raises()
    pm.register(plugin, name="raising-plugin")
    try:
        result = CliRunner().invoke(main, ["plugins", "--traceback"])
        assert result.exit_code == 0
        assert "return None.missing_attribute" in result.output and "AttributeError" in result.output, result.output
    finally:
        pm.unregister(plugin)
        forget("raising-plugin")


def test_a_constructor_that_breaks_the_contract_is_blamed_not_the_options():
    """Before: "Cell 'old-init' rejected its options {}: ... unexpected keyword argument 'layer_index'"."""

    class OldInit(msrnn_zoo.RecurrentCell):
        def __init__(self, in_channels, hidden_channels, kernel_size=3):  # no layer_index, num_layers
            super().__init__(in_channels, hidden_channels, kernel_size)

        def init_state(self, batch, height, width, *, device=None, dtype=None):
            return (torch.zeros(batch, self.hidden_channels, height, width, device=device, dtype=dtype),)

        def forward(self, x, state, memory=None, lower_previous=None):
            return msrnn_zoo.CellOutput(x, state)

    class Plugin:
        @msrnn_zoo.hookimpl
        def register_cells(self, register):
            register("old-init", OldInit)

    plugin = Plugin()
    pm.register(plugin, name="old-init-plugin")
    try:
        with pytest.raises(ValueError) as caught:
            msrnn_zoo.create("old-init")
        message = str(caught.value)
        assert "rejected its options" not in message and "'layer_index'" in message, message
        assert "breaks the cell contract" in message and "check_cell_contract('old-init')" in message, message
    finally:
        pm.unregister(plugin)
        forget("old-init-plugin")


def test_a_hook_whose_argument_is_misnamed_is_told_what_the_hooks_take(monkeypatch, tmp_path):
    """pluggy's own error says only that 'reg' is not in the hookspec."""
    import importlib.metadata

    from msrnn_zoo import plugins

    (tmp_path / "misnamed_argument_plugin.py").write_text(
        "from msrnn_zoo import hookimpl\n\n\n@hookimpl\ndef register_cells(reg):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    real = importlib.metadata.entry_points

    def with_a_misnamed_one(**kwargs):
        found = list(real(**kwargs))
        if kwargs.get("group") == plugins.ENTRY_POINT_GROUP:
            found.append(importlib.metadata.EntryPoint("misnamed-argument", "misnamed_argument_plugin",
                                                       plugins.ENTRY_POINT_GROUP))
        return found

    monkeypatch.setattr(importlib.metadata, "entry_points", with_a_misnamed_one)
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    try:
        error = {r.name: r for r in records()}["misnamed-argument"].error
        assert "{'reg'}" in error and "takes one argument, named register: def register_cells(register)" in error
    finally:
        forget("misnamed-argument")


@pytest.fixture
def core_alone(fresh_zoo, monkeypatch):
    """The core installed without any plugin of the zoo: no entry points, no msrnn-* distribution."""
    import importlib.metadata

    import msrnn_zoo.train  # noqa: F401  (imports torch's compiler, which reads entry points, before they go)

    real_distribution = importlib.metadata.distribution

    def uninstalled(name):
        if name.startswith("msrnn-") and name != "msrnn-zoo":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_distribution(name)

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: [])
    monkeypatch.setattr(importlib.metadata, "distribution", uninstalled)


def test_a_name_whose_zoo_plugin_is_not_installed_says_which_to_install(core_alone):
    """The core alone, or a run kept after `pip uninstall msrnn-predrnn`: it said only "Unknown cell 'predrnn'. Run
    `msrnn-zoo list` to see them all (0 cells known)", and `list` showed empty tables."""
    install = r"'predrnn' comes from msrnn-predrnn, a plugin of the zoo that is not installed here: install it"
    where = r"pip install plugins/msrnn-predrnn\), then run this again"
    with pytest.raises(ValueError, match=rf"Unknown model 'ms-predrnn'\..*{install}.*{where}"):
        msrnn_zoo.create("ms-predrnn")
    with pytest.raises(ValueError, match=rf"Unknown cell 'predrnn'\..*{install}"):
        msrnn_zoo.from_config(msrnn_zoo.ForecasterConfig(cell="predrnn"))
    with pytest.raises(ValueError, match="Unknown dataset 'moving-mnist'.*comes from msrnn-moving-mnist"):
        msrnn_zoo.load_dataset("moving-mnist")
    with pytest.raises(ValueError) as caught:  # a name no plugin of the zoo has: nothing to install is invented
        msrnn_zoo.create("ms-mycell")
    assert "comes from" not in str(caught.value)


def test_the_count_of_known_names_is_in_the_right_number():
    """One plugin installed: "(1 datasets known)"."""
    from msrnn_zoo.registry import unknown

    assert "(1 dataset known)" in str(unknown("dataset", "mnist", ["moving-mnist"]))
    assert "(2 recipe datasets known)" in str(unknown("recipe dataset", "mnist", ["kth", "moving-mnist"]))
    assert "(0 cells known)" in str(unknown("cell", "lstm", []))


def test_train_with_neither_the_models_nor_the_datasets_plugin_names_both(core_alone, tmp_path):
    """The core alone: `train ms-convlstm --dataset moving-mnist` named only the dataset's plugin, and after
    installing it the model's, one failed run per plugin."""
    from click.testing import CliRunner

    from msrnn_zoo.cli import main

    result = CliRunner().invoke(main, ["train", "ms-convlstm", "--dataset", "moving-mnist", "--out",
                                       str(tmp_path / "run")])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "pip install plugins/msrnn-convlstm" in said, said
    assert "pip install plugins/msrnn-moving-mnist" in said and not (tmp_path / "run").exists()


def test_a_name_whose_zoo_plugin_failed_to_load_says_why(fresh_zoo, monkeypatch):
    """msrnn-kth installed without its own dependency (av): "Unknown dataset 'kth'" only counted the plugins that
    failed, and sent the user to `msrnn-zoo plugins` to learn which one mattered and why."""
    import importlib.metadata
    from types import SimpleNamespace

    from msrnn_zoo import plugins

    def load():
        raise ModuleNotFoundError("No module named 'av'")

    kth = SimpleNamespace(name="kth", value="msrnn_kth.plugin", group=plugins.ENTRY_POINT_GROUP, load=load,
                          dist=SimpleNamespace(metadata={"Name": "msrnn-kth"}, version="0.1.0"))
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: [kth])
    with pytest.raises(ValueError, match=r"Unknown dataset 'kth'\..* 'kth' comes from msrnn-kth, which is installed "
                                         r"but failed to load \(ModuleNotFoundError: No module named 'av'\): install "
                                         "what it is missing"):
        msrnn_zoo.load_dataset("kth")
    with pytest.raises(ValueError) as caught:  # another name: that failure is not its cause
        msrnn_zoo.load_dataset("taxibj")
    assert "No module named 'av'" not in str(caught.value)


def test_a_hook_of_a_newer_zoo_says_to_upgrade_the_zoo():
    """A plugin written for a newer msrnn-zoo was told only to rename its hook to one of this zoo's."""

    class Newer:
        @msrnn_zoo.hookimpl
        def register_metrics(self, register):
            register("newer-metric", lambda prediction, truth: 0.0)

    plugin = Newer()
    pm.register(plugin, name="newer-plugin")
    try:
        assert "convlstm" in msrnn_zoo.list_cells()  # the catalogue is rebuilt, and the plugin judged
        error = {r.name: r for r in records()}["newer-plugin"].error
        assert "its @hookimpl 'register_metrics' is no hook of the zoo" in error, error
        assert f"written for a newer msrnn-zoo that has this hook, upgrade msrnn-zoo (this is " \
               f"{msrnn_zoo.__version__})" in error, error
    finally:
        pm.unregister(plugin)
        forget("newer-plugin")


def test_a_plugin_with_one_hook_of_a_newer_zoo_says_what_its_other_hooks_registered(toy_plugin):
    """Its cells registered and worked, yet `msrnn-zoo plugins` called the whole plugin "failed"."""
    from click.testing import CliRunner

    from msrnn_zoo.cli import main

    class HalfNewer:
        @msrnn_zoo.hookimpl
        def register_cells(self, register):
            register("half-cell", toy_plugin.cell)

        @msrnn_zoo.hookimpl
        def register_metrics(self, register):
            register("newer-metric", lambda prediction, truth: 0.0)

    plugin = HalfNewer()
    pm.register(plugin, name="half-newer")
    try:
        assert "half-cell" in msrnn_zoo.list_cells()
        result = CliRunner().invoke(main, ["plugins"], terminal_width=400)
        line = next(line for line in result.output.splitlines() if "half-newer" in line)
        said = " ".join(line.split())
        assert "partly failed: its @hookimpl 'register_metrics' is no hook of the zoo" in said, result.output
        assert "What it registered (cell half-cell) is usable." in said and "│ failed" not in said
    finally:
        pm.unregister(plugin)
        forget("half-newer")


def test_list_of_the_core_alone_says_no_plugin_is_installed_instead_of_two_empty_tables(core_alone):
    """Without any plugin, `list` printed an empty Models and an empty Datasets table and nothing else."""
    from click.testing import CliRunner

    from msrnn_zoo.cli import main

    said = " ".join(CliRunner().invoke(main, ["list"]).output.split())
    assert "Models" not in said and "Datasets" not in said, said
    assert "No model or dataset is registered" in said and "pip install plugins/" in said
