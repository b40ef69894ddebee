"""The hook hands the zoo a valid DatasetInfo and a working factory."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pluggy
import pytest
from msrnn_moving_mnist import plugin

from msrnn_zoo.data import DatasetInfo


def test_register_datasets_offers_moving_mnist(tmp_path: Path) -> None:
    calls: list[tuple] = []
    plugin.register_datasets(lambda *args, **kwargs: calls.append((args, kwargs)))
    assert len(calls) == 1
    (info, factory), _ = calls[0]
    assert isinstance(info, DatasetInfo)
    assert (info.name, info.in_frames, info.out_frames, info.frames) == ("moving-mnist", 10, 10, 20)
    assert (info.channels, info.height, info.width) == (1, 64, 64)
    assert info.sources == ("synthetic", "generated", "standard") and info.default_source == "synthetic"
    assert info.description and info.url.startswith("https://")
    clip = factory(split="val", source=info.default_source, root=tmp_path, download=False, num_clips=1)[0]
    assert tuple(clip.shape) == (info.frames, info.channels, info.height, info.width)


def test_hook_matches_the_core_spec() -> None:
    hookspecs = pytest.importorskip("msrnn_zoo.hookspecs")
    pm = pluggy.PluginManager("msrnn_zoo")
    pm.add_hookspecs(hookspecs)
    pm.register(plugin, name="moving-mnist-test")
    seen: list = []
    pm.hook.register_datasets(register=lambda info, factory: seen.append(info.name))
    assert seen == ["moving-mnist"]


def test_entry_point_is_declared() -> None:
    points = [ep for ep in importlib.metadata.entry_points(group="msrnn_zoo") if ep.name == "moving-mnist"]
    if not points:
        pytest.skip("msrnn-moving-mnist is not installed (pip install -e plugins/msrnn-moving-mnist)")
    assert points[0].value == "msrnn_moving_mnist.plugin"
    assert points[0].load() is plugin


def test_small_protocol_is_the_paper_clips_at_half_size(tmp_path: Path) -> None:
    import torch

    import msrnn_zoo

    small = msrnn_zoo.load_dataset("moving-mnist", split="test", source="synthetic", protocol="small", num_clips=2)
    paper = msrnn_zoo.load_dataset("moving-mnist", split="test", source="synthetic", num_clips=2)
    clip = small[1]
    assert tuple(clip.shape) == (10, 1, 32, 32) and len(small) == 2
    torch.testing.assert_close(clip, torch.nn.functional.avg_pool2d(paper[1][:10], 2))
    info = plugin.INFO.protocol("small")
    assert (info.in_frames, info.out_frames, info.height, info.width) == (5, 5, 32, 32)
    with pytest.raises(ValueError, match="no protocol 'tiny'"):
        msrnn_zoo.load_dataset("moving-mnist", split="test", source="synthetic", protocol="tiny")


def test_the_dataset_kit_passes() -> None:
    from msrnn_zoo.testing import check_dataset

    check_dataset("moving-mnist", source="synthetic", num_clips=3)
