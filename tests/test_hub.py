"""Push to and pull from a Hub: msrnn_zoo.hubserver on 127.0.0.1, talked to by the real huggingface_hub client.

Covers the round trip (Python and CLI, into an empty cache, in a fresh process), revision pinning, the card
the Hub receives, and every failure a user meets -- each one message that names the repo and the cause,
fast (no retries)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from huggingface_hub import ModelCard

import msrnn_zoo
from msrnn_zoo.cli import main
from msrnn_zoo.hub import HubError, HubRepoNotFoundError

TOKEN, OTHER = "tok-me", "tok-other"  # the tokens of users "me" and "other" on the `hub` fixture's server


def tiny(seed: int = 0) -> msrnn_zoo.Forecaster:
    torch.manual_seed(seed)
    return msrnn_zoo.create("ms-convlstm", hidden_channels=4)


FRAMES = torch.rand(2, 3, 1, 16, 16, generator=torch.Generator().manual_seed(1))


def forecast(model: msrnn_zoo.Forecaster) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(FRAMES, horizon=2)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    try:
        fn(*args, **kwargs)
    except Exception as exc:
        return exc, time.perf_counter() - start
    raise AssertionError("expected an error")


# ---------------------------------------------------------------------------------------------- round trip
def test_python_push_writes_a_card_and_pulls_bit_equal(hub, tmp_path):
    model = tiny()
    url = model.push_to_hub("me/tiny", token=TOKEN)
    assert "/me/tiny/commit/" in url
    files = hub.state.repos["me/tiny"].resolve("main").files
    assert set(files) == {"model.safetensors", "config.json", "README.md"}
    card = ModelCard(files["README.md"].data.decode())
    assert card.data.library_name == "msrnn-zoo"
    assert 'pretrained="me/tiny"' in card.text
    pulled = msrnn_zoo.create("ms-convlstm", pretrained="me/tiny")
    assert torch.equal(forecast(pulled), forecast(model))
    assert any((tmp_path / "cache").rglob("model.safetensors"))
    # and loads from the cache when the Hub is gone
    hub.stop()
    again = msrnn_zoo.create("ms-convlstm", pretrained="me/tiny")
    assert torch.equal(forecast(again), forecast(model))


def test_save_pretrained_writes_a_card_but_keeps_the_users(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "a")
    text = (tmp_path / "a" / "README.md").read_text()
    assert "library_name: msrnn-zoo" in text and "ms-convlstm" in text
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "README.md").write_text("my notes")
    model.save_pretrained(tmp_path / "b")
    assert (tmp_path / "b" / "README.md").read_text() == "my notes"


def test_save_pretrained_never_writes_into_a_training_run(run):
    """With force it replaced the run's model.safetensors (under its history) where msrnn-zoo had marked it, and
    otherwise refused it as "not a model that msrnn-zoo wrote", the wrong reason."""
    before = (run / "model.safetensors").read_bytes()
    for force in (False, True):
        with pytest.raises(ValueError, match="is a run of `msrnn-zoo train`: the model written there would replace"):
            tiny().save_pretrained(run, force=force)
    assert (run / "model.safetensors").read_bytes() == before


def test_config_json_records_the_versions_that_wrote_it_beside_the_fields(tmp_path):
    """config.json had no version: a config of a newer zoo, with a key this one lacks, could only be called foreign."""
    from importlib.metadata import version

    model = tiny()
    model.save_pretrained(tmp_path / "a")
    data = json.loads((tmp_path / "a" / "config.json").read_text())
    assert data["written_by"] == {"msrnn-zoo": msrnn_zoo.__version__, "msrnn-convlstm": version("msrnn-convlstm")}
    config = msrnn_zoo.ForecasterConfig.from_dict(data)
    assert config == model.config and "written_by" not in config.to_dict()
    assert torch.equal(forecast(msrnn_zoo.Forecaster.from_pretrained(tmp_path / "a")), forecast(model))


def _edited_config(folder: Path, edit, written_by: dict[str, str] | None) -> None:
    data = json.loads((folder / "config.json").read_text())
    edit(data)
    data.pop("written_by", None)
    if written_by is not None:
        data["written_by"] = written_by
    (folder / "config.json").write_text(json.dumps(data))


@pytest.mark.parametrize("edit", [lambda c: c.update(new_field=1), lambda c: c.update(schedule="zigzag"),
                                  lambda c: c.update(num_layers="six")], ids=["key", "value", "type"])
def test_a_config_of_a_newer_zoo_says_which_versions_and_to_upgrade(tmp_path, edit):
    """It read "Unknown model config keys [...]" (or "not an msrnn-zoo model config" from the Hub), which sent the
    user hunting for a broken file when an upgrade was all it needed."""
    tiny().save_pretrained(tmp_path)
    _edited_config(tmp_path, edit, {"msrnn-zoo": "99.0.0", "msrnn-convlstm": "0.0.1"})
    with pytest.raises(ValueError) as exc:
        msrnn_zoo.Forecaster.from_pretrained(tmp_path)
    text = str(exc.value)
    assert f"written by msrnn-zoo 99.0.0, newer than the msrnn-zoo {msrnn_zoo.__version__} installed" in text
    assert text.endswith("upgrade with `pip install -U msrnn-zoo`.")  # the older plugin is not named
    for older in ({"msrnn-zoo": "0.0.1"}, {"msrnn-zoo": msrnn_zoo.__version__}, None):  # today's message, as it was
        _edited_config(tmp_path, lambda c: None, older)
        with pytest.raises(ValueError) as exc:
            msrnn_zoo.Forecaster.from_pretrained(tmp_path)
        assert "written by" not in str(exc.value) and "pip install" not in str(exc.value)


def test_an_unknown_cell_option_of_a_newer_cell_plugin_names_the_plugin_to_upgrade(tmp_path):
    from importlib.metadata import version

    tiny().save_pretrained(tmp_path)
    _edited_config(tmp_path, lambda c: c["cell_options"].update(peepholes=True),
                   {"msrnn-zoo": msrnn_zoo.__version__, "msrnn-convlstm": "99.1"})
    with pytest.raises(ValueError, match=r"has no option 'peepholes'.* It was written by msrnn-convlstm 99.1, newer "
                       rf"than the msrnn-convlstm {version('msrnn-convlstm')} installed here.*"
                       r"`pip install -U msrnn-convlstm`\.$"):
        msrnn_zoo.Forecaster.from_pretrained(tmp_path)


def test_a_cell_of_a_plugin_not_installed_names_the_distribution_its_config_records_and_no_command(tmp_path):
    """A pulled model of a third party's cell said only "Unknown cell 'foolstm'": its config records the plugin that
    wrote it. The name is said, with no `pip install` of it: it comes from someone else's file."""
    tiny().save_pretrained(tmp_path)
    _edited_config(tmp_path, lambda c: c.update(cell="foolstm"),
                   {"msrnn-zoo": msrnn_zoo.__version__, "msrnn-foolstm": "1.2"})
    with pytest.raises(ValueError) as exc:
        msrnn_zoo.Forecaster.from_pretrained(tmp_path)
    text = str(exc.value)
    assert "Unknown cell 'foolstm'" in text
    assert "written with 'msrnn-foolstm' '1.2', which is not installed here" in text
    assert "pip install -U" not in text and "pip install msrnn-foolstm" not in text
    _edited_config(tmp_path, lambda c: None, {"msrnn-zoo": msrnn_zoo.__version__})  # nothing recorded: nothing said
    with pytest.raises(ValueError) as exc:
        msrnn_zoo.Forecaster.from_pretrained(tmp_path)
    assert "Unknown cell 'foolstm'" in str(exc.value) and "records that it was written" not in str(exc.value)


def test_a_pulled_model_of_an_unknown_cell_names_its_repo_once(hub, tmp_path):
    """The repo's name was put before the unknown cell's error twice ("'me/foo': 'me/foo': Unknown cell")."""
    tiny().save_pretrained(tmp_path)
    _edited_config(tmp_path, lambda c: c.update(cell="foolstm"),
                   {"msrnn-zoo": msrnn_zoo.__version__, "msrnn-foolstm": "1.2"})
    hub.state.put_files("me/foo", {name: (tmp_path / name).read_bytes()
                                   for name in ("config.json", "model.safetensors")})
    exc, _ = timed(msrnn_zoo.Forecaster.from_pretrained, "me/foo")
    assert isinstance(exc, ValueError) and "Unknown cell 'foolstm'" in str(exc)
    assert str(exc).count("me/foo") == 1 and "written with 'msrnn-foolstm' '1.2'" in str(exc)


def test_a_cell_that_reads_a_value_as_it_is_built_still_loads(tmp_path, monkeypatch):
    """The check of a config against its weights' header builds the model on the meta device first; a cell that reads
    a tensor's value in its __init__ cannot be built there, and a model of it that loaded before raised PyTorch's
    "cannot be called on meta tensors" from from_pretrained."""
    from msrnn_convlstm.cell import ConvLSTMCell

    model = tiny()
    model.save_pretrained(tmp_path)
    built = ConvLSTMCell.__init__

    def reading(self, *args, **kwargs):
        built(self, *args, **kwargs)
        self.scale = float(torch.ones(1).item())

    monkeypatch.setattr(ConvLSTMCell, "__init__", reading)
    assert torch.equal(forecast(msrnn_zoo.Forecaster.from_pretrained(tmp_path)), forecast(model))


def test_a_config_without_versions_loads_as_before(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path)
    _edited_config(tmp_path, lambda c: None, None)
    assert torch.equal(forecast(msrnn_zoo.Forecaster.from_pretrained(tmp_path)), forecast(model))


def test_a_hub_config_of_a_newer_zoo_is_not_called_foreign(hub, tmp_path):
    tiny().save_pretrained(tmp_path)
    _edited_config(tmp_path, lambda c: c.update(new_field=1), {"msrnn-zoo": "99.0.0"})
    hub.state.put_files("me/newer", {name: (tmp_path / name).read_bytes()
                                     for name in ("config.json", "model.safetensors")})
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/newer")
    assert "not an msrnn-zoo model config" not in str(exc) and "'me/newer'" in str(exc)
    assert "written by msrnn-zoo 99.0.0" in str(exc) and "pip install -U msrnn-zoo" in str(exc)


def test_revision_pins_a_commit(hub, tmp_path):
    first, second = tiny(0), tiny(1)
    url = first.push_to_hub("me/pinned", token=TOKEN)
    commit = url.rsplit("/", 1)[1]
    second.push_to_hub("me/pinned", token=TOKEN)
    assert torch.equal(forecast(msrnn_zoo.create("ms-convlstm", pretrained="me/pinned")), forecast(second))
    pinned = msrnn_zoo.create("ms-convlstm", pretrained="me/pinned", revision=commit)
    assert torch.equal(forecast(pinned), forecast(first))
    pull = CliRunner().invoke(main, ["pull", "me/pinned", "--revision", commit[:40]])
    assert pull.exit_code == 0 and f"at commit {commit[:7]}" in pull.output, pull.output
    with pytest.raises(ValueError, match="only apply with pretrained="):
        msrnn_zoo.create("ms-convlstm", revision=commit)
    with pytest.raises(ValueError, match=r"Config overrides \['hidden_channels'\]"):
        msrnn_zoo.create("ms-convlstm", pretrained="me/pinned", hidden_channels=8)


def test_catalogue_record_pins_its_revision(hub, toy_plugin):
    from msrnn_zoo.plugins import forget, pm

    old, new = msrnn_zoo.create("ms-toy", hidden_channels=4), msrnn_zoo.create("ms-toy", hidden_channels=4)
    hub.state.tokens["tok-zoo"] = "zoo"
    commit = old.push_to_hub("zoo/ms-toy-demo", token="tok-zoo").rsplit("/", 1)[1]
    new.push_to_hub("zoo/ms-toy-demo", token="tok-zoo")

    class Published:
        @msrnn_zoo.hookimpl
        def register_checkpoints(self, register):
            register(model="ms-toy", tag="demo", repo_id="zoo/ms-toy-demo", revision=commit, dataset="toys",
                     metrics={"mse": 1.5}, metrics_command="msrnn-zoo evaluate runs/toy")

    plugin = Published()
    pm.register(plugin, name="published-plugin")
    try:
        assert msrnn_zoo.list_models("ms-toy", pretrained=True) == ["ms-toy.demo"]
        for model in (msrnn_zoo.create("ms-toy", pretrained="demo"), msrnn_zoo.create("ms-toy.demo"),
                      msrnn_zoo.create("ms-toy", pretrained=True)):
            torch.testing.assert_close(model.head.weight, old.head.weight)
        latest = msrnn_zoo.create("ms-toy", pretrained="demo", revision="main")
        torch.testing.assert_close(latest.head.weight, new.head.weight)
    finally:
        pm.unregister(plugin)
        forget("published-plugin")


# ---------------------------------------------------------------------------------------------- failures
def test_offline_with_an_empty_cache_is_immediate(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    exc, seconds = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/absent")
    assert isinstance(exc, HubError)
    assert "'me/absent'" in str(exc) and "offline mode is on (HF_HUB_OFFLINE=1)" in str(exc)
    assert "msrnn-zoo pull me/absent" in str(exc) and "unset HF_HUB_OFFLINE" in str(exc)
    assert seconds < 3
    assert hub.state.requests == []


def test_a_file_missing_offline_says_which_cache_folder_to_bring_and_where(hub, tmp_path, monkeypatch):
    """A node that never reaches the Hub was told to "pull it once while online", naming neither the cache's
    setting, nor that the folder does not exist, nor what to copy there from a machine that can pull."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "absent"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/far", revision="v1")
    said = str(exc)
    assert f"not in the Hub cache {tmp_path / 'absent'} (from $HF_HUB_CACHE, a folder that does not exist)" in said
    assert "On a machine that reaches the Hub, run `msrnn-zoo pull me/far --revision v1`, then copy the folder " \
        f"models--me--far of its Hub cache (pull prints where it is) into {tmp_path / 'absent'} here" in said, said
    assert said.endswith("; or unset HF_HUB_OFFLINE.") and "once while online" not in said, said
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("MSRNN_ZOO_HUB_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/far")
    assert "Check the network connection; or on a machine that reaches the Hub, run `msrnn-zoo pull me/far`, then " \
        "copy the folder models--me--far" in str(exc), exc
    assert hub.state.requests == []


def test_a_shortened_commit_id_offline_names_the_whole_one_the_cache_holds(hub, monkeypatch):
    """pull prints "at commit 27c9c84"; pinned offline, that revision was called not in the cache, which held it."""
    tiny().push_to_hub("me/short", token=TOKEN)
    assert CliRunner().invoke(main, ["pull", "me/short"]).exit_code == 0
    commit = hub.state.repos["me/short"].branches["main"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/short", revision=commit[:7])
    assert isinstance(exc, HubError) and f"holds commit {commit}, which begins with '{commit[:7]}'" in str(exc), exc
    assert f"Pass revision='{commit}'." in str(exc) and "not in the Hub cache" not in str(exc), exc
    msrnn_zoo.create("ms-convlstm", pretrained="me/short", revision=commit)


def test_evaluate_and_predict_of_a_pulled_repo_say_it_is_no_run_and_how_to_load_it(hub, tmp_path, monkeypatch):
    """`msrnn-zoo evaluate me/pulled` after pull said only "train one with `msrnn-zoo train ... --out me/pulled`"."""
    tiny().push_to_hub("me/pulled", token=TOKEN)
    assert CliRunner().invoke(main, ["pull", "me/pulled"]).exit_code == 0
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for command in (["evaluate", "me/pulled"], ["predict", "me/pulled", "--out", "f.gif"]):
        result = CliRunner().invoke(main, command)
        said = " ".join(result.output.split())
        assert result.exit_code == 1 and "me/pulled is also a Hub repo whose model the cache holds (pulled)" in said
        assert 'Load it in Python with msrnn_zoo.create("ms-convlstm", pretrained="me/pulled").' in said, said
    said = " ".join(CliRunner().invoke(main, ["evaluate", "me/other"]).output.split())
    assert "No run directory at me/other" in said and "Hub repo" not in said, said


def test_offline_messages_name_what_made_them_offline(hub, monkeypatch):
    """local_files_only=True was blamed on HF_HUB_OFFLINE, which was not set, and the pull lost the revision."""
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/absent", local_files_only=True,
                   revision="v1")
    assert "local_files_only=True was asked" in str(exc) and "HF_HUB_OFFLINE" not in str(exc)
    assert "`msrnn-zoo pull me/absent --revision v1`" in str(exc) and "leave out local_files_only" in str(exc)
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/absent", local_files_only=True,
                   force_download=True)
    assert "local_files_only=True was asked" in str(exc) and "HF_HUB_OFFLINE" not in str(exc)
    assert hub.state.requests == []


def test_no_network_is_one_message_without_retries(hub, monkeypatch):
    monkeypatch.setenv("MSRNN_ZOO_HUB_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    exc, seconds = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/tiny")
    assert isinstance(exc, HubError)
    assert "Cannot reach the Hub" in str(exc) and "connection refused" in str(exc) and "'me/tiny'" in str(exc)
    assert seconds < 3


def test_unknown_private_and_gated_names(hub):
    tiny().push_to_hub("me/secret", token=TOKEN, private=True)
    for repo in ("me/absent", "me/secret"):  # anonymous: the Hub answers 401 to both
        exc, seconds = timed(msrnn_zoo.create, "ms-convlstm", pretrained=repo)
        assert isinstance(exc, HubRepoNotFoundError)
        assert f"'{repo}'" in str(exc) and "HTTP 401" in str(exc) and "private" in str(exc)
        assert "no token was sent" in str(exc)
        assert seconds < 3
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/absent", token=TOKEN)
    assert "HTTP 404" in str(exc) and "'me/absent'" in str(exc)
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/secret", token=OTHER)
    assert "HTTP 404" in str(exc) and "cannot see it" in str(exc)
    assert msrnn_zoo.create("ms-convlstm", pretrained="me/secret", token=TOKEN) is not None
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/secret", token="forged")
    assert "rejected the token" in str(exc)
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/secret", token=TOKEN, revision="nope")
    assert "'me/secret' at revision 'nope'" in str(exc) and "no such revision" in str(exc)


def test_a_repo_not_in_our_format(hub):
    hub.state.put_files("me/bert", {"README.md": b"# a language model", "pytorch_model.bin": b"x"})
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/bert")
    assert "'me/bert' has no config.json: it is not an msrnn-zoo model" in str(exc)
    hub.state.put_files("me/other", {"config.json": b'{"model_type": "bert"}', "model.safetensors": b"x"})
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/other")
    assert "'me/other'" in str(exc) and "config.json is not an msrnn-zoo model config" in str(exc)


def test_a_corrupt_download_is_caught_and_pull_force_repairs_it(hub, tmp_path):
    model = tiny()
    model.push_to_hub("me/fragile", token=TOKEN)
    hub.state.corrupt.add(("me/fragile", "model.safetensors"))
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/fragile")
    assert isinstance(exc, HubError)
    assert "model.safetensors of Hub repo 'me/fragile' is corrupt" in str(exc)
    assert "msrnn-zoo pull me/fragile --force" in str(exc)
    hub.state.corrupt.clear()
    result = CliRunner().invoke(main, ["pull", "me/fragile", "--force"])
    assert result.exit_code == 0, result.output
    assert torch.equal(forecast(msrnn_zoo.create("ms-convlstm", pretrained="me/fragile")), forecast(model))


def test_a_repo_holding_damaged_weights_says_the_repo_is_at_fault(hub, tmp_path):
    """Its hash checks (the Hub serves what it holds), so the advice for a local run ("train again") was wrong."""
    from msrnn_zoo.hub import upload_files

    tiny().save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not safetensors")
    upload_files("me/damaged", {name: tmp_path / "m" / name for name in ("model.safetensors", "config.json")},
                 token=TOKEN)
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/damaged")
    assert isinstance(exc, HubError) and "Hub repo 'me/damaged'" in str(exc)
    assert "the repo itself holds a damaged or foreign file" in str(exc) and "train again" not in str(exc)
    result = CliRunner().invoke(main, ["pull", "me/damaged"])
    assert result.exit_code == 1 and "the repo itself holds a damaged" in " ".join(result.output.split())


def test_the_fake_hub_reads_a_refused_request_before_the_next_one_on_its_connection(hub):
    """The fake Hub answered 401 to a create without a token and left its body unread: the next request on that
    kept-alive connection (huggingface_hub reuses its connections) was parsed from that body: HTTP 400 or 501."""
    import http.client
    from urllib.parse import urlsplit

    connection = http.client.HTTPConnection(urlsplit(hub.endpoint).netloc, timeout=5)
    body = json.dumps({"name": "x", "organization": "me"})
    connection.request("POST", "/api/repos/create", body=body, headers={"Content-Type": "application/json"})
    first = connection.getresponse()
    first.read()
    connection.request("POST", "/api/repos/create", body=body, headers={"Authorization": f"Bearer {TOKEN}"})
    second = connection.getresponse()
    second.read()
    connection.close()
    assert (first.status, second.status) == (401, 200)


def test_push_failures_are_one_line(hub, tmp_path, monkeypatch):
    model = tiny()
    model.save_pretrained(tmp_path / "m")
    monkeypatch.setenv("MSRNN_ZOO_HUB_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    exc, seconds = timed(model.push_to_hub, "me/x", token=TOKEN)
    assert "Cannot reach the Hub" in str(exc) and "push to Hub repo 'me/x'" in str(exc)
    assert seconds < 3
    monkeypatch.setenv("MSRNN_ZOO_HUB_ENDPOINT", hub.endpoint)
    exc, _ = timed(model.push_to_hub, "me/x")  # no token: not "not found", a repo that push would create
    assert "'me/x'" in str(exc) and "HTTP 401" in str(exc) and "not found" not in str(exc)
    assert "needs a token with write access, and none was found" in str(exc)
    exc, _ = timed(model.push_to_hub, "other/x", token=TOKEN)
    assert "HTTP 403" in str(exc) and "'other/x'" in str(exc)
    (tmp_path / "notes.json").write_text("{}")
    exc, _ = timed(model.push_to_hub, "me/x", token=TOKEN, extra_files={"config.json": tmp_path / "notes.json"})
    assert isinstance(exc, ValueError) and "extra_files may not hold config.json" in str(exc)
    assert "me/x" not in hub.state.repos  # refused before anything was created


# ---------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def run(tmp_path, clips_file):
    """A tiny trained and evaluated run of ms-convlstm on 16x16 clips."""
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "ms-convlstm", "--data", str(clips_file), "--hidden", "4",
                                       "--in-frames", "3", "--out-frames", "3", "--max-train-clips", "8",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["evaluate", str(out), "--max-clips", "4"])
    assert result.exit_code == 0, result.output
    return out


def test_cli_push_pull_and_a_fresh_process_forecast_bit_equal(hub, run, tmp_path):
    runner = CliRunner(env={"HF_TOKEN": TOKEN})
    (run / "README.md").write_text("stale card for user/model")
    result = runner.invoke(main, ["push", str(run), "--repo-id", "me/run"])
    assert result.exit_code == 0, result.output
    files = hub.state.repos["me/run"].resolve("main").files
    assert {"model.safetensors", "config.json", "README.md", "metrics.png", "forecast.png"} <= set(files)
    card_text = files["README.md"].data.decode()
    assert 'pretrained="me/run"' in card_text and "user/model" not in card_text
    assert str(tmp_path) not in card_text and str(tmp_path) not in files["metrics-test.json"].data.decode()
    card = ModelCard(card_text)  # the model-index parses into EvalResults with values and conventions
    results = {r.metric_type: r for r in card.data.eval_results}
    assert set(results) >= {"mse", "mae", "ssim", "psnr", "mse_pixel"}
    assert all(isinstance(r.metric_value, float) for r in results.values())
    assert "sum over pixels" in results["mse"].metric_args["convention"]
    assert ("POST", "/api/validate-yaml") in hub.state.requests  # the Hub's own check passed

    cache = tmp_path / "fresh-cache"
    pulled = CliRunner(env={"HF_HUB_CACHE": str(cache)}).invoke(main, ["pull", "me/run"])
    assert pulled.exit_code == 0, pulled.output
    assert "Pulled me/run at commit" in pulled.output
    local = msrnn_zoo.create("ms-convlstm", pretrained=str(run))
    expected = forecast(local)
    script = ("import torch, msrnn_zoo\n"
              "m = msrnn_zoo.create('ms-convlstm', pretrained='me/run').eval()\n"
              "x = torch.rand(2, 3, 1, 16, 16, generator=torch.Generator().manual_seed(1))\n"
              "with torch.no_grad(): y = m(x, horizon=2)\n"
              "torch.save(y, 'forecast.pt')\n")
    # the thread count of this process (conftest.py): oneDNN's sums may round otherwise with another count
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "home"),
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True, timeout=120)
    assert torch.equal(torch.load(tmp_path / "forecast.pt"), expected)


def test_cli_push_with_the_server_down_is_one_red_line(run, monkeypatch):
    monkeypatch.setenv("MSRNN_ZOO_HUB_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    start = time.perf_counter()
    result = CliRunner(env={"HF_TOKEN": TOKEN}).invoke(main, ["push", str(run), "--repo-id", "me/run"])
    assert time.perf_counter() - start < 3
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: Cannot reach the Hub"), result.output


def test_cli_card_needs_the_repo_and_pull_names_the_failure(hub, run):
    result = CliRunner().invoke(main, ["card", str(run)])
    assert result.exit_code != 0 and "--repo-id" in result.output
    result = CliRunner().invoke(main, ["pull", "me/absent"])
    assert result.exit_code == 1 and "'me/absent'" in result.output and "Traceback" not in result.output
    for local in (str(run), "./" + run.name):  # was "neither a local directory nor a Hub repo id"
        result = CliRunner().invoke(main, ["pull", local])
        said = " ".join(result.output.split())
        assert result.exit_code == 1 and "is a local path, and pull downloads a Hub repo" in said, said
        assert f'pretrained="{local}"' in said


def test_list_pretrained_shows_every_record_and_its_status():
    result = CliRunner().invoke(main, ["list", "--pretrained", "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert len(records) == 64 and {r["status"] for r in records} == {"recipe-only"}
    assert {r["name"] for r in records} >= {"ms-motionrnn.kth", "convlstm.moving-mnist", "ms-preciplstm.germany"}
    table = CliRunner().invoke(main, ["list", "--pretrained", "ms-motionrnn"])
    assert "Pretrained catalogue (4 checkpoints, 0 published)" in table.output
    assert "No checkpoint name matches" not in table.output
    nothing = CliRunner().invoke(main, ["list", "--pretrained", "zzz"])  # was an empty table, no word
    assert nothing.exit_code == 0 and "No checkpoint name matches 'zzz'" in " ".join(nothing.output.split())


def test_the_commands_of_a_recipe_only_message_keep_their_own_lines():
    """Squashed into the one error line, the three commands could not be copied."""
    for command in (["pull", "ms-convlstm.kth"], ["info", "ms-convlstm.kth"]):
        lines = CliRunner().invoke(main, command).output.splitlines()
        assert lines[0].startswith("Error: 'ms-convlstm.kth' is recipe-only") and len(lines) == 5, lines
        assert lines[2] == "  msrnn-zoo reproduce ms-convlstm kth --root DATA/kth --out runs/ms-convlstm-kth"
        assert lines[4].startswith("then load it with pretrained='msrnn-zoo/ms-convlstm-kth'")


def test_recipe_only_tags_answer_with_the_commands():
    for call in (lambda: msrnn_zoo.create("ms-motionrnn", pretrained="kth"),
                 lambda: msrnn_zoo.create("ms-motionrnn.kth")):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert "'ms-motionrnn.kth' is recipe-only" in message
        assert "msrnn-zoo reproduce ms-motionrnn kth --root DATA/kth --out runs/ms-motionrnn-kth" in message
        assert "msrnn-zoo push runs/ms-motionrnn-kth --repo-id msrnn-zoo/ms-motionrnn-kth" in message
    with pytest.raises(ValueError, match="'ms-convlstm.moving-mnist' is recipe-only"):
        msrnn_zoo.create("ms-convlstm", pretrained=True)  # the first record is the default
    with pytest.raises(ValueError, match="no checkpoint tagged 'nope'"):
        msrnn_zoo.create("ms-convlstm", pretrained="nope")


def test_a_recipe_only_tag_tells_python_the_calls_that_do_what_the_commands_do():
    """create(NAME) in a notebook listed only the shell commands; it now adds the prepare_dataset and reproduce calls
    that do the same from Python (push has no twin that uploads the run's card). The CLI keeps the commands alone
    (test_the_commands_of_a_recipe_only_message_keep_their_own_lines)."""
    with pytest.raises(ValueError) as info:
        msrnn_zoo.create("ms-motionrnn.kth")
    said = str(info.value)
    assert ("from Python, msrnn_zoo.datasets.prepare_dataset('kth', source=RAW_KTH_AVIS, root='DATA/kth') and "
            "msrnn_zoo.reproduce.reproduce('ms-motionrnn', 'kth', 'runs/ms-motionrnn-kth', root='DATA/kth') do the "
            "first two") in said, said
    assert "msrnn-zoo push runs/ms-motionrnn-kth --repo-id msrnn-zoo/ms-motionrnn-kth" in said
    assert "from Python" not in info.value.cli_message
    with pytest.raises(ValueError) as info:
        msrnn_zoo.create("ms-convlstm", pretrained="moving-mnist")
    assert ("from Python, msrnn_zoo.reproduce.reproduce('ms-convlstm', 'moving-mnist', "
            "'runs/ms-convlstm-moving-mnist') does the first)") in str(info.value), str(info.value)


def test_an_empty_tag_is_refused_not_read_as_random_weights():
    with pytest.raises(ValueError, match=r"'ms-motionrnn\.' ends with '\.' but names no checkpoint.*"
                                         r"ms-motionrnn's tags: moving-mnist, kth"):
        msrnn_zoo.create("ms-motionrnn.")
    with pytest.raises(ValueError, match=r"pretrained='' names no checkpoint.*ms-convlstm's tags: moving-mnist"):
        msrnn_zoo.create("ms-convlstm", pretrained="")


def test_pretrained_takes_a_path_as_a_directory(tmp_path, monkeypatch):
    model = tiny()
    model.save_pretrained(tmp_path / "m")
    loaded = msrnn_zoo.create("ms-convlstm", pretrained=tmp_path / "m")
    assert torch.equal(forecast(loaded), forecast(model))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"pretrained='kth' is not a directory"):
        msrnn_zoo.create("ms-motionrnn", pretrained=Path("kth"))  # a path, not the catalogue's tag


def test_cli_pushes_a_converted_folder(hub, tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "converted")
    (tmp_path / "converted" / "README.md").write_text("a card for someone/else: pretrained=\"someone/else\"")
    result = CliRunner(env={"HF_TOKEN": TOKEN}).invoke(main, ["push", str(tmp_path / "converted"), "me/conv"])
    assert result.exit_code == 0, result.output
    files = hub.state.repos["me/conv"].resolve("main").files
    assert set(files) == {"model.safetensors", "config.json", "README.md"}
    assert 'pretrained="me/conv"' in files["README.md"].data.decode()
    refused = CliRunner(env={"HF_TOKEN": TOKEN}).invoke(
        main, ["push", str(tmp_path / "converted"), "me/conv", "--card", str(tmp_path / "converted" / "README.md")])
    said = " ".join(refused.output.split())
    assert refused.exit_code == 1 and "loads from 'someone/else'" in said
    assert 'Change them to pretrained="me/conv"' in said
    missing = CliRunner(env={"HF_TOKEN": TOKEN}).invoke(
        main, ["push", str(tmp_path / "converted"), "me/conv", "--card", str(tmp_path / "absent.md")])
    assert missing.exit_code == 1 and "No card at" in missing.output and "Errno" not in missing.output
    (tmp_path / "converted" / "config.json").rename(tmp_path / "config.json")  # a model folder missing its config
    incomplete = CliRunner(env={"HF_TOKEN": TOKEN}).invoke(main, ["push", str(tmp_path / "converted"), "me/conv"])
    assert incomplete.exit_code == 1 and "has no config.json" in incomplete.output, incomplete.output
    (tmp_path / "empty").mkdir()
    empty = CliRunner(env={"HF_TOKEN": TOKEN}).invoke(main, ["push", str(tmp_path / "empty"), "me/conv"])
    assert empty.exit_code == 1 and "holds neither a run" in " ".join(empty.output.split())
    (tmp_path / "config.json").rename(tmp_path / "converted" / "config.json")
    (tmp_path / "mine.md").write_text("# My model\n\nNotes of mine, no load lines.\n")
    mine = CliRunner(env={"HF_TOKEN": TOKEN}).invoke(
        main, ["push", str(tmp_path / "converted"), "me/conv", "--card", str(tmp_path / "mine.md")])
    assert mine.exit_code == 0, mine.output
    assert hub.state.repos["me/conv"].resolve("main").files["README.md"].data.decode().startswith("# My model")
    assert torch.equal(forecast(msrnn_zoo.create("ms-convlstm", pretrained="me/conv")), forecast(model))


@pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")  # inside huggingface_hub's LFS PUT
def test_lfs_uploads_and_their_hash_check(hub, monkeypatch):
    """Weights as LFS objects (the basic transfer), downloaded and checked against their sha256."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)  # the fake Hub speaks no xet
    hub.state.lfs_patterns = ("*.safetensors",)
    model = tiny()
    model.push_to_hub("me/lfs", token=TOKEN)
    assert any(method == "PUT" for method, _ in hub.state.requests) and hub.state.lfs_store
    stored = hub.state.repos["me/lfs"].resolve("main").files["model.safetensors"]
    assert stored.lfs and len(stored.oid) == 64
    assert torch.equal(forecast(msrnn_zoo.create("ms-convlstm", pretrained="me/lfs")), forecast(model))
    hub.state.corrupt.add(("me/lfs", "model.safetensors"))
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/lfs", force_download=True)
    assert "corrupt in the cache" in str(exc) and "sha256" in str(exc)


def test_pull_takes_a_catalogue_name():
    result = CliRunner().invoke(main, ["pull", "ms-motionrnn.kth"])
    assert result.exit_code == 1 and "recipe-only" in result.output
    assert "msrnn-zoo reproduce ms-motionrnn kth" in result.output
    result = CliRunner().invoke(main, ["pull", "ms-motionrnn.nope"])
    assert result.exit_code == 1 and "not in the pretrained catalogue" in result.output


def test_a_folder_named_like_the_repo_neither_breaks_pull_nor_hides_why_loading_fails(hub, tmp_path, monkeypatch):
    tiny().push_to_hub("me/shadowed", token=TOKEN)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "me" / "shadowed").mkdir(parents=True)  # e.g. `msrnn-zoo train --out me/shadowed`, not finished
    result = CliRunner().invoke(main, ["pull", "me/shadowed"])
    said = " ".join(result.output.split())
    assert result.exit_code == 0, said  # was "revision='<commit>' applies to Hub repos, but me/shadowed is local"
    assert "Pulled me/shadowed at commit" in said and "loads the folder me/shadowed here instead" in said
    with pytest.raises(FileNotFoundError, match="If you meant the Hub repo 'me/shadowed'"):
        msrnn_zoo.create("ms-convlstm", pretrained="me/shadowed")
    with pytest.raises(ValueError, match="If you meant the Hub repo 'me/shadowed'"):
        msrnn_zoo.create("ms-convlstm", pretrained="me/shadowed", revision="main")


def test_an_empty_token_is_refused_by_name_and_a_pasted_line_end_is_dropped(hub, run):
    for args in (["pull", "me/anything", "--token", ""], ["push", str(run), "me/anything", "--token", " "]):
        result = CliRunner().invoke(main, args)  # was "LocalProtocolError: Illegal header value b'Bearer '"
        said = " ".join(result.output.split())
        assert result.exit_code == 1 and "The token given is empty" in said and "Illegal header" not in said, said
    assert "me/anything" not in hub.state.repos
    tiny().push_to_hub("me/pasted", token=TOKEN + "\n")
    assert "me/pasted" in hub.state.repos
    msrnn_zoo.create("ms-convlstm", pretrained="me/pasted", token=TOKEN + "\n")


def test_a_push_over_an_earlier_one_removes_the_metrics_and_pictures_of_that_model(hub, run, tmp_path):
    from msrnn_zoo.hub import upload_files

    runner = CliRunner(env={"HF_TOKEN": TOKEN})
    assert runner.invoke(main, ["push", str(run), "me/reused"]).exit_code == 0
    (tmp_path / "notes.md").write_text("mine")
    upload_files("me/reused", {"notes.md": tmp_path / "notes.md", "extra.png": tmp_path / "notes.md"}, token=TOKEN)
    tiny(3).save_pretrained(tmp_path / "other")
    result = runner.invoke(main, ["push", str(tmp_path / "other"), "me/reused"])
    said = " ".join(result.output.split())
    assert result.exit_code == 0 and "Removed forecast.png, metrics-test.json, metrics.png from the repo" in said, said
    files = hub.state.repos["me/reused"].resolve("main").files
    # these described the run pushed first (its numbers, its forecast), not the model now beside them
    assert set(files) == {"README.md", "config.json", "model.safetensors", "notes.md", "extra.png"}
    result = runner.invoke(main, ["push", str(tmp_path / "other"), "me/reused"])
    assert result.exit_code == 0 and "Removed" not in result.output


def test_an_empty_revision_and_a_home_path_are_named_as_such(hub):
    tiny().push_to_hub("me/spelled", token=TOKEN)
    result = CliRunner().invoke(main, ["pull", "me/spelled", "--revision", ""])
    said = " ".join(result.output.split())  # was "Hub repo 'me/spelled': no such revision ... (HTTP 404)"
    assert result.exit_code == 1 and "The revision given ('') names no branch" in said, said
    with pytest.raises(ValueError, match="names no branch, tag or commit"):
        msrnn_zoo.create("ms-convlstm", pretrained="me/spelled", revision=" ")
    with pytest.raises(FileNotFoundError, match="~ is not expanded here"):  # was huggingface_hub's repo id rules
        msrnn_zoo.create("ms-convlstm", pretrained="~/models/absent")


def test_weights_that_do_not_fit_the_repos_config_name_the_repo(hub, tmp_path):
    from safetensors.torch import save_file

    tiny().save_pretrained(tmp_path / "m")
    save_file({"fc.weight": torch.zeros(2, 2)}, tmp_path / "foreign.safetensors")  # e.g. another library's
    hub.state.put_files("me/mixed", {"config.json": (tmp_path / "m" / "config.json").read_bytes(),
                                     "model.safetensors": (tmp_path / "foreign.safetensors").read_bytes()})
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/mixed")
    # was the cache path alone
    assert isinstance(exc, ValueError) and str(exc).startswith("Hub repo 'me/mixed' (commit "), exc
    assert "holds 1 weight(s) the model does not have (fc.weight)" in str(exc)


@pytest.mark.parametrize("field, value, said", [
    ("hidden_channels", 100_000, "has shape (16,) but the model built from config.json needs (400000,)"),
    ("num_layers", 12, "num_layers is 12, but"),
])
def test_a_config_claiming_sizes_its_weights_lack_is_refused_before_the_model_is_built(tmp_path, monkeypatch, field,
                                                                                       value, said):
    """The model was built from config.json first, its weights read after: a config of someone else's repo claiming
    hidden_channels 100000 (or a million layers) beside small weights allocated gigabytes (or built layers for
    minutes) before it was refused."""
    from msrnn_zoo import factory

    tiny().save_pretrained(tmp_path)
    _edited_config(tmp_path, lambda c: c.update({field: value}), None)
    built: list[str] = []
    real = factory.from_config
    monkeypatch.setattr(factory, "from_config", lambda config: (built.append(torch.empty(0).device.type),
                                                                real(config))[1])
    with pytest.raises(ValueError) as exc:
        msrnn_zoo.Forecaster.from_pretrained(tmp_path)
    assert said in str(exc.value)
    assert built == (["meta"] if field == "hidden_channels" else [])  # the shapes alone, or not even them


@pytest.mark.parametrize("field, value", [("hidden_channels", 10**400), ("in_channels", 2**62),
                                          ("kernel_size", 10**30 + 1)])
def test_a_config_size_no_model_could_have_is_named_not_pytorchs_overflow(tmp_path, field, value):
    """It was PyTorch's "Overflow when unpacking long long" (a TypeError with C++ frames), its "Storage size
    calculation overflowed", or a cell said to break the cell contract."""
    tiny().save_pretrained(tmp_path)
    _edited_config(tmp_path, lambda c: c.update({field: value}), None)
    with pytest.raises(ValueError, match=rf"config.json: {field} must be at most 2147483647, got {value}; no model"):
        msrnn_zoo.Forecaster.from_pretrained(tmp_path)


def test_weights_of_another_format_are_still_named_unreadable_before_the_model_is_built(tmp_path):
    tiny().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x80\x04\x95" + b"\x00" * 64)  # a pickle's first bytes
    with pytest.raises(ValueError, match="is not a readable safetensors file"):
        msrnn_zoo.Forecaster.from_pretrained(tmp_path)


def test_card_of_a_saved_folder_says_it_is_no_run_before_asking_for_force(tmp_path):
    tiny().save_pretrained(tmp_path / "saved")  # holds the README.md save_pretrained writes
    for extra in ([], ["--force"]):
        result = CliRunner().invoke(main, ["card", str(tmp_path / "saved"), "--repo-id", "me/x", *extra])
        said = " ".join(result.output.split())  # was "... already exists ...; pass --force", then "is not a run"
        assert result.exit_code == 1 and "is not a run" in said and "--force" not in said, said


def test_push_of_a_card_that_is_not_utf8_is_refused_before_the_repo_is_made(hub, run, tmp_path):
    (tmp_path / "latin1.md").write_bytes("caf\xe9, my notes\n".encode("latin-1"))
    result = CliRunner(env={"HF_TOKEN": TOKEN}).invoke(main, ["push", str(run), "me/enc", "--card",
                                                             str(tmp_path / "latin1.md")])
    said = " ".join(result.output.split())  # was "The Hub ... refused the upload ...: 'utf-8' codec can't decode"
    assert result.exit_code == 1 and "is not UTF-8 text" in said, said
    assert "me/enc" not in hub.state.repos  # was created, and left empty


def test_a_hub_cache_that_is_a_file_is_named_with_its_setting(hub, tmp_path, monkeypatch):
    tiny().push_to_hub("me/cached", token=TOKEN)
    (tmp_path / "notes").write_text("mine")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "notes"))
    result = CliRunner().invoke(main, ["pull", "me/cached"])
    said = " ".join(result.output.split())  # was "Could not download ...: NotADirectoryError: [Errno 20] Not a dir..."
    assert result.exit_code == 1 and "the Hub cache" in said and "(from $HF_HUB_CACHE)" in said, said
    assert "Errno" not in said and (tmp_path / "notes").read_text() == "mine"
    with pytest.raises(NotADirectoryError, match=r"\(from cache_dir=\)"):
        msrnn_zoo.create("ms-convlstm", pretrained="me/cached", cache_dir=tmp_path / "notes" / "sub")


def test_a_hub_cache_setting_with_a_variable_is_expanded_as_huggingface_hub_does(hub, tmp_path, monkeypatch):
    """HF_HUB_CACHE='$HOME/x' (single quotes in a job script) was read as it stands: the download made a folder named
    $HOME in the working directory. It is expanded as huggingface_hub expands it; a variable not set is named."""
    from msrnn_zoo.hub import hub_cache

    tiny().push_to_hub("me/vars", token=TOKEN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MY_CACHES", str(tmp_path / "caches"))
    monkeypatch.setenv("HF_HUB_CACHE", "$MY_CACHES/hub")
    assert hub_cache() == str(tmp_path / "caches" / "hub")
    assert CliRunner().invoke(main, ["pull", "me/vars"]).exit_code == 0
    assert (tmp_path / "caches" / "hub").is_dir() and not (tmp_path / "$MY_CACHES").exists()
    monkeypatch.setenv("HF_HUB_CACHE", "${NOT_SET_HERE}/hub")
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    result = CliRunner().invoke(main, ["pull", "me/vars"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "$NOT_SET_HERE in it is not set" in said and "Traceback" not in said, said
    assert list(tmp_path.iterdir()) == [tmp_path / "caches"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs a folder no one may write into, even root")
def test_a_hub_cache_that_cannot_be_written_is_named_with_its_setting(hub, monkeypatch):
    """It was "Could not download Hub repo 'me/w': PermissionError: [Errno 1] ... .incomplete": neither the cache's
    setting, nor another folder, nor (to load a cache shared read-only) offline mode."""
    tiny().push_to_hub("me/w", token=TOKEN)
    monkeypatch.setenv("HF_HUB_CACHE", "/proc/self/hub-cache")  # even root cannot create it
    result = CliRunner().invoke(main, ["pull", "me/w"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "Cannot write the config.json of Hub repo 'me/w' into the Hub cache " \
        "/proc/self/hub-cache (from $HF_HUB_CACHE)" in said, said
    assert said.endswith("Set HF_HUB_CACHE to a folder you can write to."), said
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/w")
    assert "to load only what it holds, without the Hub, set HF_HUB_OFFLINE=1" in str(exc), exc


def test_private_is_refused_for_a_public_repo_instead_of_pushing_there_in_public(hub, run):
    tiny().push_to_hub("me/open", token=TOKEN)
    before = hub.state.repos["me/open"].branches["main"]
    result = CliRunner(env={"HF_TOKEN": TOKEN}).invoke(main, ["push", str(run), "me/open", "--private"])
    said = " ".join(result.output.split())  # was "Pushed 6 files to ...": into the public repo
    assert result.exit_code == 1 and "already exists and is public" in said and "nothing was pushed" in said, said
    with pytest.raises(HubError, match="already exists and is public"):
        tiny(1).push_to_hub("me/open", token=TOKEN, private=True)
    assert hub.state.repos["me/open"].branches["main"] == before and not hub.state.repos["me/open"].private
    tiny(1).push_to_hub("me/closed", token=TOKEN, private=True)
    tiny(2).push_to_hub("me/closed", token=TOKEN, private=True)  # a private repo takes --private again
    assert hub.state.repos["me/closed"].private


def test_push_says_when_the_folders_own_card_is_not_what_it_pushes(hub, run, tmp_path, monkeypatch):
    """A card edited after `msrnn-zoo card`, or given to save_pretrained, was replaced on the Hub without a word."""
    runner = CliRunner(env={"HF_TOKEN": TOKEN})

    def pushed(folder, repo):
        result = runner.invoke(main, ["push", str(folder), repo])
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    assert runner.invoke(main, ["card", str(run), "--repo-id", "me/other"]).exit_code == 0
    assert "Note:" not in pushed(run, "me/a")  # a rendering, for another repo: nothing of the user's is left out
    card = run / "README.md"
    card.write_text(card.read_text() + "\nTrained on my lab's clips.\n")
    said = pushed(run, "me/b")
    assert f"Note: {card} is not pushed" in said and f"--card {card}" in said
    assert "my lab" not in hub.state.repos["me/b"].resolve("main").files["README.md"].data.decode()
    assert "Trained on my lab's clips." in card.read_text()  # left as it was

    import msrnn_zoo.card as card_module

    assert runner.invoke(main, ["card", str(run), "--repo-id", "me/e", "--force"]).exit_code == 0
    renderings = []
    render_card = card_module.render_card
    monkeypatch.setattr(card_module, "render_card", lambda *a, **k: renderings.append(a) or render_card(*a, **k))
    assert "Note:" not in pushed(run, "me/e")  # its own card, for this repo: rendered once, not once more to compare
    assert len(renderings) == 1
    tiny().save_pretrained(tmp_path / "saved")
    assert "Note:" not in pushed(tmp_path / "saved", "me/c")  # the card save_pretrained generated
    tiny().save_pretrained(tmp_path / "carded", card="# Mine\n\nMy own words.\n")
    assert f"Note: {tmp_path / 'carded' / 'README.md'} is not pushed" in pushed(tmp_path / "carded", "me/d")


def test_push_of_a_file_points_at_its_folder(hub, run):
    result = CliRunner(env={"HF_TOKEN": TOKEN}).invoke(main, ["push", str(run / "model.safetensors"), "me/file"])
    said = " ".join(result.output.split())  # was "No run directory at .../model.safetensors; train one with ..."
    assert result.exit_code == 1 and "is a file" in said and f"msrnn-zoo push {run} me/file" in said, said
    assert "me/file" not in hub.state.repos


def test_an_extra_file_that_is_a_folder_is_called_a_folder(hub, tmp_path):
    exc, _ = timed(tiny().push_to_hub, "me/x", token=TOKEN, extra_files={"notes": tmp_path})
    assert isinstance(exc, IsADirectoryError) and f"{tmp_path} is a folder" in str(exc), exc  # was "does not exist"
    assert "me/x" not in hub.state.repos


def test_pushing_the_same_files_again_says_nothing_was_pushed(hub, tmp_path):
    tiny().save_pretrained(tmp_path / "m")
    runner = CliRunner(env={"HF_TOKEN": TOKEN})
    assert "Pushed 3 files" in runner.invoke(main, ["push", str(tmp_path / "m"), "me/same"]).output
    head = hub.state.repos["me/same"].branches["main"]
    result = runner.invoke(main, ["push", str(tmp_path / "m"), "me/same"])
    said = " ".join(result.output.split())  # was "Pushed 3 files to <the earlier commit>"
    assert result.exit_code == 0 and f"Nothing to push: me/same already holds these 3 files as they are (commit " \
        f"{head[:7]})" in said and "Pushed" not in said, said
    assert hub.state.repos["me/same"].branches["main"] == head


def test_a_bad_map_location_is_not_blamed_on_the_repo(hub, tmp_path):
    tiny().push_to_hub("me/dev", token=TOKEN)
    tiny().save_pretrained(tmp_path / "m")
    for source in ("me/dev", tmp_path / "m"):
        exc, _ = timed(msrnn_zoo.Forecaster.from_pretrained, source, map_location="gpu")
        # was "its model.safetensors is not a readable safetensors file (...device gpu is invalid); the repo itself
        # holds a damaged or foreign file. Push the model to it again"
        assert isinstance(exc, ValueError) and str(exc).startswith("map_location='gpu' is not a device"), exc
        assert "damaged" not in str(exc) and "use map_location='cpu', map_location='cuda'" in str(exc)
        assert "--device" not in str(exc)  # it spoke of the command line's option to a Python caller
    with pytest.raises(ValueError, match="^map_location='cuda' was asked for, but PyTorch sees no CUDA device here; "
                                         "use map_location='cpu'"):
        if torch.cuda.is_available():
            pytest.skip("needs a machine without CUDA")
        msrnn_zoo.Forecaster.from_pretrained(tmp_path / "m", map_location="cuda")


def test_metrics_of_earlier_weights_are_neither_carded_nor_pushed(hub, run):
    runner = CliRunner(env={"HF_TOKEN": TOKEN})
    resumed = runner.invoke(main, ["train", "--resume", str(run), "--epochs", "2"])
    assert resumed.exit_code == 0, resumed.output  # new weights; metrics-test.json still scores the epoch-1 ones
    for args in (["push", str(run), "me/later"], ["card", str(run), "--repo-id", "me/later", "--force"]):
        result = runner.invoke(main, args)
        said = " ".join(result.output.split())  # was a card and metrics-test.json of the earlier weights
        assert result.exit_code == 1 and "scored other weights than" in said, said
        assert f"msrnn-zoo evaluate {run} --force" in said
    assert "me/later" not in hub.state.repos
    assert runner.invoke(main, ["evaluate", str(run), "--max-clips", "4", "--force"]).exit_code == 0
    result = runner.invoke(main, ["push", str(run), "me/later"])
    assert result.exit_code == 0, result.output


def test_a_run_being_trained_is_neither_carded_nor_pushed(hub, run):
    """`card` and `push` of a run that a `train --resume` was still training read its weights, latest.json and metrics
    at different moments (and push uploaded the weights later still): the card and the repo could describe different
    steps, in silence."""
    from filelock import FileLock

    runner = CliRunner(env={"HF_TOKEN": TOKEN})
    with FileLock(str(run / ".msrnn-zoo-lock")):  # the `train --resume` of the run, in another process
        for args in (["push", str(run), "me/busy"], ["card", str(run), "--repo-id", "me/busy"]):
            result = runner.invoke(main, args)
            said = " ".join(result.output.split())
            assert result.exit_code == 1 and "Traceback" not in said, said
            assert f"{run} is being trained right now" in said and "Wait for training to end" in said, said
    assert "me/busy" not in hub.state.repos and not (run / "README.md").exists()
    result = runner.invoke(main, ["push", str(run), "me/busy"])  # trained no more
    assert result.exit_code == 0, result.output


def test_card_takes_the_cards_text_not_its_path_and_not_nothing(hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("mine.md").write_text("---\nlicense: mit\n---\n# My model\n")
    model = tiny()
    for card in ("mine.md", Path("mine.md")):  # was a repo whose README.md reads "mine.md" (or a TypeError)
        with pytest.raises(ValueError, match=r"looks like the path of a card.*read_text"):
            model.push_to_hub("me/carded", token=TOKEN, card=card)
    with pytest.raises(ValueError, match="card= is empty"):  # was a blank README.md
        model.save_pretrained(tmp_path / "m", card=" \n")
    assert "me/carded" not in hub.state.repos and not (tmp_path / "m").exists()
    model.push_to_hub("me/carded", token=TOKEN, card=Path("mine.md").read_text())
    assert hub.state.repos["me/carded"].resolve("main").files["README.md"].data.decode().startswith("---\nlicense")


def test_pull_with_the_hub_unreachable_says_nothing_was_downloaded(hub, monkeypatch):
    tiny().push_to_hub("me/away", token=TOKEN)
    assert CliRunner().invoke(main, ["pull", "me/away"]).exit_code == 0
    commit = hub.state.repos["me/away"].branches["main"]
    monkeypatch.setenv("MSRNN_ZOO_HUB_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    for extra in ([], ["--force"]):
        # was "Pulled me/away at commit ..." (the cache's, told as new), and with --force "Cannot pass
        # 'force_download=True' and 'local_files_only=True' at the same time"
        result = CliRunner().invoke(main, ["pull", "me/away", *extra])
        said = " ".join(result.output.split())
        assert result.exit_code == 1 and "Cannot reach the Hub" in said and "nothing was downloaded" in said, said
        assert f"The cache holds it at commit {commit[:7]}, perhaps not the latest" in said
    msrnn_zoo.create("ms-convlstm", pretrained="me/away")  # loading still falls back on the cache


@pytest.mark.parametrize("name", ["HF_ENDPOINT", "MSRNN_ZOO_HUB_ENDPOINT"])
def test_a_hub_address_that_is_no_url_is_named_with_its_variable(name, monkeypatch):
    """HF_ENDPOINT=huggingface.co made "Could not download Hub repo 'me/x': UnsupportedProtocol: Request URL is
    missing an 'http://' or 'https://' protocol.", naming neither the variable nor the fix."""
    monkeypatch.delenv("MSRNN_ZOO_HUB_ENDPOINT", raising=False)
    monkeypatch.setenv(name, "huggingface.co")
    said = " ".join(CliRunner().invoke(main, ["pull", "me/x"]).output.split())
    assert f"{name}='huggingface.co' is not the address of a Hub. Set it to a URL such as https://huggingface.co" \
        in said, said


def test_a_repo_id_the_hub_cannot_hold_is_refused_before_a_card_names_it(hub, run, tmp_path):
    result = CliRunner().invoke(main, ["card", str(run), "--repo-id", "me/My Model", "--out", str(tmp_path / "c.md")])
    said = " ".join(result.output.split())  # was "Model card written": load lines naming a repo that cannot exist
    assert result.exit_code == 1, said
    assert "'me/My Model' is not a valid Hub repo id (Repo id must use alphanumeric chars" in said, said
    assert not (tmp_path / "c.md").exists()
    with pytest.raises(ValueError, match=r"'me/a--b' is not a valid Hub repo id \(Cannot have -- or \.\."):
        tiny().push_to_hub("me/a--b", token=TOKEN)


def test_a_repo_id_the_hub_cannot_hold_is_named_quoted_by_pull_and_create(hub):
    """huggingface_hub's message printed the id as it was, so a terminal's escape codes in it acted on the terminal
    (a colour, a title, a link), and it did not say that the repo id was refused."""
    result = CliRunner().invoke(main, ["pull", "me/\x1b[31mred"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "\x1b" not in result.output, said
    assert "'me/\\x1b[31mred' is not a valid Hub repo id (Repo id must use alphanumeric chars" in said, said
    with pytest.raises(ValueError, match=r"'me/a b' is not a valid Hub repo id"):
        msrnn_zoo.create("ms-convlstm", pretrained="me/a b")


def test_from_pretrained_of_a_missing_path_object_is_not_looked_up_on_the_hub(hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exc, _ = timed(msrnn_zoo.Forecaster.from_pretrained, Path("runs/absent"))
    # was "Hub repo 'runs/absent' was not found on the Hub ...: it does not exist, or it is private"
    assert isinstance(exc, FileNotFoundError) and "runs/absent is not a directory" in str(exc), exc
    assert "not found on the Hub" not in str(exc)
    assert not any(path.startswith("/api/") or "/resolve/" in path for _, path in hub.state.requests)


def test_pretrained_weights_file_is_not_looked_up_on_the_hub(hub, tmp_path, monkeypatch):
    """`create(..., pretrained="runs/a/model.safetensors")` has the form of a repo id: it was sent to the Hub and
    answered "Hub repo 'runs/a/model.safetensors' ..." (offline: "not in the cache") for a file right here."""
    tiny().save_pretrained(tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    for given in ("m/model.safetensors", "m/config.json"):
        exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained=given)
        assert isinstance(exc, FileNotFoundError), exc
        assert f"{given} is a file; pass the directory that holds it (m)" in str(exc), exc
    assert not any(path.startswith("/api/") or "/resolve/" in path for _, path in hub.state.requests)


def test_pull_in_offline_mode_says_nothing_was_downloaded(hub, monkeypatch):
    tiny().push_to_hub("me/plane", token=TOKEN)
    assert CliRunner().invoke(main, ["pull", "me/plane"]).exit_code == 0
    commit = hub.state.repos["me/plane"].branches["main"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(main, ["pull", "me/plane"])
    said = " ".join(result.output.split())  # was "Pulled me/plane at commit ...", from the cache
    assert result.exit_code == 1 and "offline mode is on (HF_HUB_OFFLINE=1)" in said, said
    assert "nothing was downloaded" in said and f"The cache holds it at commit {commit[:7]}" in said
    msrnn_zoo.create("ms-convlstm", pretrained="me/plane")  # loading offline is what the cache is for


def test_a_repo_an_interrupted_push_left_says_to_push_again(hub, monkeypatch):
    """A push cut off between creating the repo and committing to it left a repo called "not an msrnn-zoo model"."""
    from huggingface_hub import HfApi

    def cut(*args, **kwargs):
        raise ConnectionError("connection reset by peer")

    with monkeypatch.context() as patch:
        patch.setattr(HfApi, "create_commit", cut)
        with pytest.raises(HubError, match="Cannot reach the Hub"):
            tiny().push_to_hub("me/cut", token=TOKEN)
    assert "me/cut" in hub.state.repos  # created, nothing committed
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/cut")
    assert isinstance(exc, HubRepoNotFoundError) and "not an msrnn-zoo model" not in str(exc), exc
    assert "'me/cut' is empty" in str(exc) and "a push that did not finish" in str(exc)
    assert "Push to it again (`msrnn-zoo push RUN me/cut`, or push_to_hub)" in str(exc)
    hub.state.put_files("me/half", {"README.md": b"# card", "config.json": tiny().config.to_json().encode()})
    result = CliRunner().invoke(main, ["pull", "me/half"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "'me/half' holds README.md, config.json but no model.safetensors" in said, said
    assert "a push that did not finish" in said and "not an msrnn-zoo model" not in said
    hub.state.put_files("me/bert", {"config.json": b"{}", "pytorch_model.bin": b"x"})  # another library's model
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/bert")
    assert "has no model.safetensors: it is not an msrnn-zoo model" in str(exc), exc


def test_pull_offline_names_the_setting_that_made_it_offline_and_how_to_download(hub, monkeypatch):
    """TRANSFORMERS_OFFLINE=1 was reported as HF_HUB_OFFLINE=1, so the advice to unset HF_HUB_OFFLINE changed
    nothing and was given again; pull --force was told to leave out force_download "to load it from the cache"."""
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    result = CliRunner().invoke(main, ["pull", "me/absent"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "offline mode is on (TRANSFORMERS_OFFLINE=1)" in said, said
    assert "unset TRANSFORMERS_OFFLINE where the Hub can be reached and pull again" in said
    assert "HF_HUB_OFFLINE" not in said
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(main, ["pull", "me/absent", "--force"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "offline mode is on (HF_HUB_OFFLINE=1), so nothing was downloaded" in said, said
    assert "unset HF_HUB_OFFLINE where the Hub can be reached and pull again" in said
    assert "force_download" not in said and "from the cache" not in said
    assert hub.state.requests == []
    with pytest.raises(HubError, match=r"Cannot push to Hub repo 'me/m': offline mode is on \(HF_HUB_OFFLINE=1\)"):
        tiny().push_to_hub("me/m", token=TOKEN)


# ---------------------------------------------------------------------------------------------- card metadata
def card_of(run_dir, repo_id: str = "me/x") -> ModelCard:
    """The card `card` renders for ``run_dir``, read by huggingface_hub as the Hub reads it (strictly)."""
    from msrnn_zoo.card import render_card

    return ModelCard(render_card(run_dir, repo_id), ignore_metadata_errors=False)


@pytest.fixture
def mnist_run(tmp_path):
    """A tiny run of ms-convlstm on Moving MNIST's `small` protocol, its source left to the dataset's default."""
    out = tmp_path / "mm"
    result = CliRunner().invoke(main, ["train", "ms-convlstm", "--dataset", "moving-mnist", "--protocol", "small",
                                       "--hidden", "2", "--layers", "2", "--batch-size", "2", "--max-train-clips", "2",
                                       "--max-eval-clips", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_a_run_on_the_default_source_is_carded_as_that_source_not_the_recipes(mnist_run):
    """The default source of Moving MNIST draws digit glyphs; the card took the recipe's source (`generated`, MNIST's
    digits) instead, and listed ylecun/mnist as the data the model was trained on."""
    card = card_of(mnist_run)
    assert not card.data.datasets
    assert "Source `synthetic`, protocol `small`" in card.text and "moving-mnist (synthetic, small)" in card.text
    assert "generated" not in card.text and "mnist_test_seq" not in card.text


def test_a_card_describes_the_protocol_the_run_used_not_the_recipes(mnist_run):
    """A run on Moving MNIST's `small` protocol (5 -> 5 frames of 32x32) was carded with the recipe's description of
    the `paper` protocol: "two digits bouncing in a 64x64 box"."""
    data = card_of(mnist_run).text.split("## Data")[1].split("## Training")[0]
    assert "64x64" not in data and "(5 -> 5 frames of 32x32)" in data and "protocol `small`" in data, data


def test_card_of_another_split_says_which_split_it_scored(mnist_run):
    """`card` had no --split: scores `evaluate --split train` wrote could not be carded, and the card's Data section
    called any scored clips test clips."""
    assert CliRunner().invoke(main, ["evaluate", str(mnist_run), "--split", "train"]).exit_code == 0
    result = CliRunner().invoke(main, ["card", str(mnist_run), "--repo-id", "me/x", "--split", "train"])
    assert result.exit_code == 0, result.output
    card = ModelCard((mnist_run / "README.md").read_text(), ignore_metadata_errors=False)
    assert "clips of the train split" in card.text and "2 train clips" in card.text and "test clips" not in card.text
    assert {r.dataset_split for r in card.data.eval_results} == {"train"}


def test_a_card_names_the_default_protocol_the_run_used():
    from types import SimpleNamespace

    from msrnn_zoo.card import _run_data

    assert _run_data(SimpleNamespace(dataset="moving-mnist", source=None, protocol=None)) == ("synthetic", "paper")
    assert _run_data(SimpleNamespace(dataset="moving-mnist", source="generated", protocol="small")) == (
        "generated", "small")
    assert _run_data(SimpleNamespace(dataset=None, source=None, protocol=None)) == (None, None)


def test_a_run_whose_scores_are_all_nan_gets_a_card_without_a_model_index(run):
    """An overflowing forecast scores NaN or inf everywhere; the card then held a model-index entry with no name and
    no results, which huggingface_hub (and the Hub) refuse to parse: `card` and `push` failed with a KeyError."""
    path = run / "metrics-test.json"
    metrics = json.loads(path.read_text())
    for result in metrics["model"]["metrics"].values():
        result["mean"] = float("nan")
    path.write_text(json.dumps(metrics))
    card = card_of(run)
    assert card.data.eval_results is None and "model-index" not in card.content
    assert "| nan |" in card.text  # the table still shows what was measured


def test_the_model_index_keeps_the_significant_digits_of_small_scores():
    """Rounded to 6 decimal places, a per-pixel MSE of 3.2e-7 was published as 0.0 (a perfect score), and one of
    0.000146 with three digits, fewer than the card's table showed."""
    from msrnn_zoo.card import eval_results

    def result(mean: float) -> dict:
        return {"mean": mean, "label": "MSE/pixel", "convention": "mean over pixels", "higher_is_better": False}

    metrics = {"forecasters": ["model"], "frames": "future", "split": "test",
               "model": {"samples": 4, "metrics": {"mse_pixel": result(3.2e-7), "mae_pixel": result(0.000146123456),
                                                   "mse": result(175.1210791)}}}
    values = {r.metric_type: r.metric_value for r in eval_results(metrics, "d", "d", None, "video prediction")}
    assert values == {"mse_pixel": 3.2e-7, "mae_pixel": 0.0001461235, "mse": 175.1211}


def test_the_model_index_names_the_clips_scored_not_the_hub_dataset_they_were_made_from(mnist_run, monkeypatch):
    """A run on clips made from a Hub dataset's images (Moving MNIST's `generated`, from ylecun/mnist) was scored as
    "ylecun/mnist, split test", which it never saw; and the config named the protocol alone, so runs on drawn glyphs
    and on MNIST digits would be ranked as one dataset."""
    from msrnn_zoo import card as card_module

    result = CliRunner().invoke(main, ["evaluate", str(mnist_run)])
    assert result.exit_code == 0, result.output
    recipe_dataset = card_module._recipe_dataset
    monkeypatch.setattr(card_module, "_recipe_dataset", lambda name: {
        **recipe_dataset(name), "hub_datasets": {"synthetic": ["someone/digit-glyphs"]}})
    card = card_of(mnist_run)
    assert card.data.datasets == ["someone/digit-glyphs"]  # what the clips were made from
    assert {(r.dataset_type, r.dataset_config, r.dataset_split) for r in card.data.eval_results} == {
        ("moving-mnist", "synthetic-small", "test")}


def test_the_model_index_says_which_precision_scored_the_model():
    """The card's text said `evaluate --precision bf16`, but its model-index published bf16's scores as fp32's."""
    from msrnn_zoo.card import eval_results

    mse = {"mean": 1.5, "label": "MSE", "convention": "sum over pixels", "higher_is_better": False}
    metrics = {"forecasters": ["model"], "frames": "future", "model": {"samples": 4, "metrics": {"mse": mse}}}
    for precision, config in ((None, "future frames"), ("fp32", "future frames"), ("bf16", "future frames, bf16")):
        scored = metrics if precision is None else {**metrics, "precision": precision}
        (result,) = eval_results(scored, "d", "d", None, "video prediction")
        assert (result.metric_config, result.metric_args["precision"]) == (config, precision or "fp32")


def answer_downloads_with(hub, monkeypatch, status: int, headers: dict[str, str] | None = None) -> None:
    """Make the `hub` fixture's server answer every download (HEAD and GET of a file) with ``status``."""
    handler = hub.server.RequestHandlerClass

    def refuse(self, repo_id, revision, path, head):
        self._send(status, b"" if head else b'{"error": "refused"}', {"X-Error-Message": "refused", **(headers or {})},
                   head=head)

    monkeypatch.setattr(handler, "_resolve", refuse)


def test_a_rate_limited_download_says_to_wait_and_that_a_token_helps(hub, monkeypatch):
    """HTTP 429 was a bare "answered HTTP 429": neither that the Hub limits requests, nor to wait, nor to log in."""
    answer_downloads_with(hub, monkeypatch, 429, {"Retry-After": "30"})
    exc, seconds = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/tiny")
    assert isinstance(exc, HubError) and "HTTP 429" in str(exc) and "'me/tiny'" in str(exc)
    assert "limits how many requests" in str(exc) and "wait 30 s and try again" in str(exc)
    assert "hf auth login" in str(exc)
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/tiny", token=TOKEN)
    assert "wait 30 s and try again." in str(exc) and "hf auth login" not in str(exc)
    assert seconds < 3


def test_a_download_refused_with_403_is_not_called_a_missing_write_access(hub, monkeypatch):
    """A token without read access to a repo (a fine-grained one) was told it lacked write access, and to push
    to a repo of its own, while it only tried to download."""
    answer_downloads_with(hub, monkeypatch, 403)
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/tiny", token=TOKEN)
    assert isinstance(exc, HubError) and "HTTP 403" in str(exc) and "download Hub repo 'me/tiny'" in str(exc)
    assert "may not read that repo" in str(exc)
    assert "write" not in str(exc) and "--repo-id" not in str(exc)


def test_a_download_cut_off_halfway_is_not_called_an_unreachable_hub_nor_kept(hub, monkeypatch):
    """Fewer bytes than Content-Length: "Cannot reach the Hub ... check the network" was said of a Hub that had
    just answered; and no part of the file may stay in the cache to load later."""
    tiny().push_to_hub("me/cut", token=TOKEN)
    handler, resolve = hub.server.RequestHandlerClass, hub.server.RequestHandlerClass._resolve

    def cut_off(self, repo_id, revision, path, head):
        if head or path != "model.safetensors":
            return resolve(self, repo_id, revision, path, head)
        commit = self.state.repos[repo_id].resolve(revision)
        stored = commit.files[path]
        self.send_response(200)
        for key, value in {"Content-Length": str(len(stored.data)), "ETag": f'"{stored.oid}"',
                           "X-Repo-Commit": commit.sha, "Content-Type": "application/octet-stream"}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(stored.data[: len(stored.data) // 2])
        self.close_connection = True

    monkeypatch.setattr(handler, "_resolve", cut_off)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # huggingface_hub waits 1 s before each resume
    exc, _ = timed(msrnn_zoo.create, "ms-convlstm", pretrained="me/cut")
    assert isinstance(exc, HubError) and "model.safetensors of Hub repo 'me/cut'" in str(exc)
    assert "broke off" in str(exc) and "Cannot reach" not in str(exc) and "msrnn-zoo pull me/cut" in str(exc)
    cache = Path(os.environ["HF_HUB_CACHE"])
    blobs = list(cache.rglob("blobs/*"))
    assert all(blob.stat().st_size < 1000 for blob in blobs), blobs  # the config only, no half of the weights
    assert not list(cache.rglob("snapshots/*/model.safetensors"))


# ---------------------------------------------------------------------------------------------- the card's license
def pushed_license(hub, repo: str) -> str:
    return ModelCard(hub.state.repos[repo].resolve("main").files["README.md"].data.decode()).data.license


def test_an_unknown_license_is_refused_with_its_close_ids_before_anything_is_written(hub, run, tmp_path):
    """Every card claimed apache-2.0, whatever the user meant to license the weights under; a license id is now
    chosen, and one the Hub does not know is refused, with the ids it resembles, before a file or a repo is made."""
    runner = CliRunner(env={"HF_TOKEN": TOKEN})
    result = runner.invoke(main, ["card", str(run), "--repo-id", "me/x", "--license", "apache2"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "'apache2' is not a license id the Hub knows. Did you mean apache-2.0?" in said
    assert "Traceback" not in result.output and not (run / "README.md").exists()
    result = runner.invoke(main, ["push", str(run), "me/x", "--license", "gpl3"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "Did you mean gpl, lgpl, gpl-3.0 or lgpl-3.0?" in said, said
    result = runner.invoke(main, ["push", str(run), "me/x", "--license", "other"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "does not write cards with `license: other`" in said and "--card" in said
    result = runner.invoke(main, ["push", str(run), "me/x", "--license", "mit", "--card", str(run / "README.md")])
    assert result.exit_code == 1 and "--card pushes" in " ".join(result.output.split()), result.output
    model = tiny()
    with pytest.raises(ValueError, match="Did you mean cc-by-4.0"):
        model.push_to_hub("me/x", token=TOKEN, license="cc-by-4")
    with pytest.raises(ValueError, match="put `license: ID` in your card's YAML header"):
        model.save_pretrained(tmp_path / "m", card="---\nlicense: mit\n---\n# Mine\n", license="mit")
    assert "me/x" not in hub.state.repos and not (tmp_path / "m").exists()


def test_the_license_chosen_is_the_pushed_cards_and_its_card_is_still_ours(hub, run, tmp_path):
    """`card --license mit` then `push`: the repo's card claims mit, and the folder's card is recognised as msrnn-zoo's
    rendering (no note); `push --license` with another license says the folder's card names another; an edited card
    is still said to be left out."""
    runner = CliRunner(env={"HF_TOKEN": TOKEN})

    def pushed(*args):
        result = runner.invoke(main, ["push", *map(str, args)])
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    result = runner.invoke(main, ["card", str(run), "--repo-id", "me/a", "--license", "MIT"])
    assert result.exit_code == 0, result.output
    assert ModelCard((run / "README.md").read_text()).data.license == "mit"
    said = pushed(run, "me/a")
    assert "Note:" not in said and pushed_license(hub, "me/a") == "mit"
    assert f"License mit, as {run / 'README.md'} names it" in said
    assert "Note:" not in pushed(run, "me/b", "--license", "mit") and pushed_license(hub, "me/b") == "mit"
    said = pushed(run, "me/c", "--license", "cc-by-4.0")
    assert f"Note: {run / 'README.md'} names license mit, and the repo gets the card rendered now with license " \
           f"cc-by-4.0" in said and pushed_license(hub, "me/c") == "cc-by-4.0"
    card = run / "README.md"
    card.write_text(card.read_text() + "\nMy notes.\n")
    assert f"Note: {card} is not pushed" in pushed(run, "me/d")
    model = tiny()
    model.save_pretrained(tmp_path / "saved", license="cc-by-nc-4.0")
    assert "Note:" not in pushed(tmp_path / "saved", "me/e") and pushed_license(hub, "me/e") == "cc-by-nc-4.0"
    model.push_to_hub("me/f", token=TOKEN, license="bsd-3-clause")
    assert pushed_license(hub, "me/f") == "bsd-3-clause"


def test_a_card_quotes_the_terms_of_the_data_its_plugin_states(mnist_run, monkeypatch):
    """The card's license is the weights'; a zoo dataset's own terms (its DatasetInfo.license) are now in its text."""
    import dataclasses

    import msrnn_zoo.registry as registry

    assert "its own terms" not in card_of(mnist_run).text  # Moving MNIST's plugin states none
    get_dataset = registry.get_dataset

    def with_terms(name):
        entry = get_dataset(name)
        return dataclasses.replace(entry, info=dataclasses.replace(entry.info, license="free for research; cite it"))

    monkeypatch.setattr(registry, "get_dataset", with_terms)
    card = card_of(mnist_run)
    assert card.data.license == "apache-2.0"
    assert ("The data has its own terms, apart from the license in this card's header. As the moving-mnist plugin "
            "states them: free for research; cite it.") in " ".join(card.text.split())


def test_cli_push_weights_best_publishes_the_best_validations_weights_card_and_metrics_only(hub, tmp_path, clips_file,
                                                                                             monkeypatch, run):
    from msrnn_zoo.train import Trainer

    scores = iter([1.0, 2.0])  # epoch 1's validation is the best: the last weights are epoch 2's
    monkeypatch.setattr(Trainer, "validation_loss", lambda self: next(scores))
    out = tmp_path / "validated"
    runner = CliRunner(env={"HF_TOKEN": TOKEN})
    result = runner.invoke(main, ["train", "ms-convlstm", "--data", str(clips_file), "--hidden", "4", "--in-frames",
                                  "3", "--out-frames", "3", "--max-train-clips", "8", "--epochs", "2",
                                  "--val-every", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert runner.invoke(main, ["evaluate", str(out), "--max-clips", "4"]).exit_code == 0  # the last weights'
    result = runner.invoke(main, ["push", str(out), "--repo-id", "me/best", "--weights", "best"])
    assert result.exit_code == 0, result.output
    files = hub.state.repos["me/best"].resolve("main").files
    assert files["model.safetensors"].data == (out / "model-best.safetensors").read_bytes()
    assert "metrics-test.json" not in files  # the last weights' numbers are never published beside the best ones
    assert "weights of the best validation, epoch 1 (step 2" in files["README.md"].data.decode()
    result = runner.invoke(main, ["evaluate", str(out), "--max-clips", "4", "--weights", "best"])
    assert result.exit_code == 0 and "metrics-test-best.json" in "".join(result.output.split()), result.output
    best = json.loads((out / "metrics-test-best.json").read_text())
    assert best["weights"] == "best" and best["best_validation"]["epoch"] == 0
    assert json.loads((out / "metrics-test.json").read_text())["weights"] == "last"
    assert runner.invoke(main, ["push", str(out), "--repo-id", "me/best", "--weights", "best"]).exit_code == 0
    files = hub.state.repos["me/best"].resolve("main").files
    assert json.loads(files["metrics-test.json"].data)["weights_sha256"] == best["weights_sha256"]
    result = runner.invoke(main, ["card", str(run), "--repo-id", "me/run", "--weights", "best"])  # never validated
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "has no weights of a best validation (model-best.safetensors)" in said, said
    assert "--val-every" in said and "Traceback" not in said


def test_a_missing_catalogue_checkpoint_names_python_functions_not_commands(monkeypatch):
    """create(pretrained=True) of a model without a catalogue entry, or a tag it lacks, told a Python caller to run
    `msrnn-zoo train` or `msrnn-zoo list --pretrained`: it names the functions that do that from Python."""
    import dataclasses

    import msrnn_zoo.registry as registry

    with pytest.raises(ValueError) as caught:
        msrnn_zoo.create("ms-convlstm", pretrained="nosuch")
    said = str(caught.value)
    assert "msrnn_zoo.list_models(pretrained=True)" in said and "msrnn-zoo " not in said, said
    entry = registry.get_model("ms-convlstm")
    monkeypatch.setattr(registry, "get_model", lambda name: dataclasses.replace(entry, pretrained={}))
    with pytest.raises(ValueError) as caught:
        msrnn_zoo.create("ms-convlstm", pretrained=True)
    said = str(caught.value)
    assert "no checkpoint in the pretrained catalogue; train one (Trainer.create" in said, said
    assert "msrnn-zoo " not in said, said


def test_a_weights_file_that_is_a_folder_is_called_a_folder(tmp_path):
    """A model folder whose model.safetensors (or config.json) is a folder was said to have "no model.safetensors",
    which sent its user looking for a file they could see; it is now called a folder where the file should be."""
    tiny().save_pretrained(tmp_path / "m")
    for name in ("model.safetensors", "config.json"):
        (tmp_path / "m" / name).rename(tmp_path / name)
        (tmp_path / "m" / name).mkdir()
        with pytest.raises(IsADirectoryError) as caught:
            msrnn_zoo.create("ms-convlstm", pretrained=tmp_path / "m")
        said = str(caught.value)
        assert f"{tmp_path / 'm' / name} is a folder where" in said and "has no" not in said, said
        (tmp_path / "m" / name).rmdir()
        (tmp_path / name).rename(tmp_path / "m" / name)
