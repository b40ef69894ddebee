"""The download-free source: MNIST-like glyphs, deterministic clips, the factory's checks."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from msrnn_moving_mnist import make_moving_mnist
from msrnn_moving_mnist.synthetic import glyph_bank, render_glyph


def test_glyphs_look_like_mnist_digits() -> None:
    bank, labels = glyph_bank()
    assert bank.shape[1:] == (28, 28) and bank.dtype == np.uint8
    assert sorted(set(labels.tolist())) == list(range(10))
    for glyph in bank:
        rows, cols = np.nonzero(glyph)
        assert glyph.max() > 200
        assert rows.min() >= 2 and rows.max() <= 25 and cols.min() >= 2 and cols.max() <= 25  # 20x20 box
        assert max(rows.max() - rows.min(), cols.max() - cols.min()) >= 17  # scaled up, not a tiny bitmap
    assert not np.array_equal(render_glyph(1), render_glyph(7))


def test_render_glyph_rejects_non_digits() -> None:
    with pytest.raises(ValueError, match=r"0\.\.9"):
        render_glyph(12)


def test_items_are_unit_float_clips(tmp_path: Path) -> None:
    ds = make_moving_mnist("train", "synthetic", tmp_path)
    assert len(ds) == 2000
    clip = ds[0]
    assert isinstance(clip, torch.Tensor)
    assert clip.shape == (20, 1, 64, 64) and clip.dtype == torch.float32
    assert clip.min().item() >= 0.0 and clip.max().item() <= 1.0
    assert (clip.flatten(1).amax(dim=1) > 0.5).all()  # the digits are in every frame
    assert clip[0].ne(clip[-1]).any()  # and they move


def test_same_index_same_clip_and_seeds_and_splits_differ(tmp_path: Path) -> None:
    a = make_moving_mnist("train", "synthetic", tmp_path, seed=3)
    b = make_moving_mnist("train", "synthetic", tmp_path, seed=3)
    assert torch.equal(a[7], b[7]) and torch.equal(a[7], a[7])
    assert not torch.equal(a[7], a[8])
    assert not torch.equal(a[7], make_moving_mnist("train", "synthetic", tmp_path, seed=4)[7])
    val = make_moving_mnist("val", "synthetic", tmp_path, seed=3)
    test = make_moving_mnist("test", "synthetic", tmp_path, seed=3)
    assert not torch.equal(a[0], val[0]) and not torch.equal(val[0], test[0])
    assert torch.equal(a[-1], a[len(a) - 1])


def test_num_clips_and_defaults(tmp_path: Path) -> None:
    assert len(make_moving_mnist("val", "synthetic", tmp_path)) == 200
    ds = make_moving_mnist("test", "synthetic", tmp_path, num_clips=3, ignored_option=True)
    assert len(ds) == 3 and len(list(ds)) == 3
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(ValueError, match="num_clips"):
        make_moving_mnist("test", "synthetic", tmp_path, num_clips=0)
    with pytest.raises(ValueError, match="seed"):
        make_moving_mnist("test", "synthetic", tmp_path, seed=-1)


def test_unknown_split_or_source_names_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train, val, test"):
        make_moving_mnist("dev", "synthetic", tmp_path)
    with pytest.raises(ValueError, match="synthetic, generated, standard"):
        make_moving_mnist("train", "kaggle", tmp_path)


def test_batches_through_a_dataloader(tmp_path: Path) -> None:
    loader = torch.utils.data.DataLoader(make_moving_mnist("train", "synthetic", tmp_path, num_clips=8),
                                         batch_size=4)
    batch = next(iter(loader))
    assert batch.shape == (4, 20, 1, 64, 64) and batch.dtype == torch.float32


def test_a_clip_is_fast(tmp_path: Path) -> None:
    ds = make_moving_mnist("train", "synthetic", tmp_path)
    ds[0]  # glyphs are rendered once, on first use
    per_clip = []
    for attempt in range(5):  # best of five: a busy CI machine may stall any single batch
        start = time.perf_counter()
        for i in range(20):
            ds[attempt * 20 + i]
        per_clip.append((time.perf_counter() - start) / 20)
    assert min(per_clip) < 0.010
