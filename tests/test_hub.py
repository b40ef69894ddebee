"""Pulling weights from a Hub: a server on 127.0.0.1 that answers the way the Hugging Face Hub's
``resolve`` endpoint does (HEAD for metadata, GET for the bytes, error codes in ``X-Error-Code``)."""

from __future__ import annotations

import hashlib
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

import msrnn_zoo

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub(BaseHTTPRequestHandler):
    def __init__(self, *args, root: Path, **kwargs):
        self.root = root
        super().__init__(*args, **kwargs)

    def log_message(self, *args):  # keep the test output clean
        pass

    def _answer(self, body: bool) -> None:
        parts = self.path.split("?")[0].strip("/").split("/")
        # /{org}/{repo}/resolve/{revision}/{filename}
        if len(parts) != 5 or parts[2] != "resolve":
            self.send_response(404)
            self.end_headers()
            return
        repo = self.root / parts[0] / parts[1]
        if not repo.is_dir():
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.end_headers()
            return
        path = repo / parts[4]
        if not path.is_file():
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.end_headers()
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    root = tmp_path / "hub"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(FakeHub, root=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("MSRNN_ZOO_HUB_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield root
    server.shutdown()


def test_pretrained_from_a_hub_repo(hub, tmp_path):
    model = msrnn_zoo.create("ms-convlstm", hidden_channels=4)
    model.save_pretrained(hub / "zoo" / "ms-convlstm-tiny")
    pulled = msrnn_zoo.create("ms-convlstm", pretrained="zoo/ms-convlstm-tiny")
    frames = torch.rand(1, 3, 1, 16, 16)
    torch.testing.assert_close(pulled(frames, horizon=2), model(frames, horizon=2))
    assert any((tmp_path / "cache").rglob("model.safetensors"))


def test_missing_repo_and_file_are_clear(hub):
    with pytest.raises(FileNotFoundError, match="No Hub repo 'zoo/absent'"):
        msrnn_zoo.create("ms-convlstm", pretrained="zoo/absent")
    (hub / "zoo" / "empty").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        msrnn_zoo.create("ms-convlstm", pretrained="zoo/empty")


def test_published_tag_resolves_to_its_repo(hub, toy_plugin):
    from msrnn_zoo.plugins import forget, pm

    # A registered checkpoint is `model.tag` -> Hub repo, as timm's pretrained tags.
    class Tagged:
        @msrnn_zoo.hookimpl
        def register_cells(self, register):
            register("tagged", toy_plugin.cell, pretrained={"ms-tagged.demo": "zoo/ms-tagged-demo"})

    plugin = Tagged()
    pm.register(plugin, name="tagged-plugin")
    try:
        assert msrnn_zoo.list_models("*tagged", pretrained=True) == ["ms-tagged.demo"]
        trained = msrnn_zoo.create("ms-tagged", hidden_channels=4)
        trained.save_pretrained(hub / "zoo" / "ms-tagged-demo")
        for model in (msrnn_zoo.create("ms-tagged", pretrained="demo"), msrnn_zoo.create("ms-tagged.demo"),
                      msrnn_zoo.create("ms-tagged", pretrained=True)):
            torch.testing.assert_close(model.head.weight, trained.head.weight)
    finally:
        pm.unregister(plugin)
        forget("tagged-plugin")
