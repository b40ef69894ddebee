"""Shared fixtures: a toy cell registered the way a third-party plugin would be, and small clip files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import msrnn_zoo
from msrnn_zoo.cell import CellOutput, RecurrentCell, zeros
from msrnn_zoo.plugins import forget, pm


class ToyCell(RecurrentCell):
    """A minimal gated cell: enough to prove the core needs nothing model-specific."""

    memory_flow = "H through time"

    def __init__(self, in_channels, hidden_channels, kernel_size=3, *, layer_index=0, num_layers=1, gain=1.0):
        super().__init__(in_channels, hidden_channels, kernel_size, layer_index=layer_index, num_layers=num_layers)
        self.conv = nn.Conv2d(in_channels + hidden_channels, hidden_channels, kernel_size, padding=kernel_size // 2)
        self.gain = gain

    def init_state(self, batch, height, width, *, device=None, dtype=None):
        return (zeros(batch, self.hidden_channels, height, width, device, dtype),)

    def forward(self, x, state, memory=None, lower_previous=None):
        h = torch.tanh(self.gain * self.conv(torch.cat([x, state[0]], 1)))
        return CellOutput(h, (h,))


class ToyPlugin:
    cell = ToyCell

    @msrnn_zoo.hookimpl
    def register_cells(self, register):
        register("toy", ToyCell, paper="none", description="test-only cell")


@pytest.fixture
def toy_plugin():
    plugin = ToyPlugin()
    pm.register(plugin, name="toy-plugin")
    yield plugin
    pm.unregister(plugin)
    forget("toy-plugin")


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A Hub on 127.0.0.1 (users "me" and "other", tokens "tok-me" and "tok-other"), an empty cache, no token
    from the environment or a login, offline mode off."""
    import huggingface_hub

    from msrnn_zoo.hubserver import HubServer

    server = HubServer({"tok-me": "me", "tok-other": "other"}).start()
    monkeypatch.setenv("MSRNN_ZOO_HUB_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_OIDC_RESOURCE",
                 "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    yield server
    server.stop()


@pytest.fixture
def ctrl_c_at_step(monkeypatch):
    """``ctrl_c_at_step(n)``: training raises KeyboardInterrupt, as Ctrl-C does, when it comes to step ``n`` (from 0),
    before that step trains."""
    from msrnn_zoo.train import Trainer

    real = Trainer.train_step

    def arm(step: int) -> None:
        def stopped(self, clips):
            if self.progress.step == step:
                raise KeyboardInterrupt
            return real(self, clips)

        monkeypatch.setattr(Trainer, "train_step", stopped)

    return arm


@pytest.fixture
def clips_file(tmp_path):
    """40 uint8 clips of 6 frames, 16x16, without a channel axis (the (N, T, H, W) form)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "clips.npy"
    np.save(path, (rng.random((40, 6, 16, 16)) * 255).astype(np.uint8))
    return path


@pytest.fixture
def fresh_zoo(monkeypatch, tmp_path):
    """A plugin manager and catalogue of their own, so entry points are loaded again from sys.path.

    The test writes its fake distributions under its ``tmp_path``; their modules are dropped afterwards, and only
    theirs: a checkout (and its .venv) may itself lie in the temporary folder, and dropping a module of torch that
    the test happened to import first makes the next import run it twice.
    """
    import sys

    import pluggy

    from msrnn_zoo import hookspecs, plugins, registry

    pm = pluggy.PluginManager("msrnn_zoo")
    pm.add_hookspecs(hookspecs)
    monkeypatch.setattr(plugins, "pm", pm)
    monkeypatch.setattr(registry, "pm", pm)
    monkeypatch.setattr(plugins, "_records", {})
    monkeypatch.setattr(plugins, "_seen", set())
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    monkeypatch.setattr(registry, "_cache", None)
    before = set(sys.modules)
    yield pm
    ours = (str(tmp_path), str(tmp_path.resolve()))
    for name in set(sys.modules) - before:
        if (getattr(sys.modules[name], "__file__", None) or "").startswith(ours):
            del sys.modules[name]
    registry._cache = None
