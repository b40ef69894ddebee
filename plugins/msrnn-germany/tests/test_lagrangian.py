"""The pysteps Lagrangian-persistence baseline (optional extra): skipped cleanly without pysteps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from msrnn_germany import lagrangian, plugin


def blob(t: int, size: int = 64) -> np.ndarray:
    """A rain cell moving 2 pixels down and 3 right per frame."""
    yy, xx = np.mgrid[0:size, 0:size]
    return 0.8 * np.exp(-(((yy - 20 - 2 * t) ** 2 + (xx - 15 - 3 * t) ** 2) / 30.0))


def test_registration_offers_the_baseline_only_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lagrangian, "available", lambda: False)
    assert plugin.baselines() == {}
    monkeypatch.setattr(lagrangian, "available", lambda: True)
    assert plugin.baselines() == {lagrangian.NAME: lagrangian.lagrangian_persistence}


def test_missing_pysteps_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lagrangian, "available", lambda: False)
    lagrangian._methods.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"pip install 'msrnn-germany\[pysteps\]'"):
            lagrangian.nowcast(np.stack([blob(0), blob(1)]), 2)
    finally:
        lagrangian._methods.cache_clear()


def test_one_frame_of_context_is_held_without_pysteps() -> None:
    context = torch.from_numpy(blob(0)).float().reshape(1, 1, 1, 64, 64)
    forecast = lagrangian.lagrangian_persistence(context, 3)
    assert forecast.shape == (1, 3, 1, 64, 64) and forecast.dtype == torch.float32
    assert torch.allclose(forecast, context.repeat(1, 3, 1, 1, 1))


@pytest.mark.skipif(not lagrangian.available(), reason="the pysteps extra is not installed")
def test_a_moving_cell_is_carried_along_its_motion() -> None:
    context = torch.from_numpy(np.stack([blob(t) for t in range(5)])).float().reshape(1, 5, 1, 64, 64)
    context = context.repeat(2, 1, 1, 1, 1)
    forecast = lagrangian.lagrangian_persistence(context, 3)
    assert forecast.shape == (2, 3, 1, 64, 64) and forecast.dtype == context.dtype
    assert float(forecast.min()) >= 0.0 and float(forecast.max()) <= 1.0
    for k in range(3):  # the peak lands where the cell will be, within a pixel
        peak = np.unravel_index(int(forecast[0, k, 0].argmax()), (64, 64))
        assert abs(peak[0] - (20 + 2 * (5 + k))) <= 1 and abs(peak[1] - (15 + 3 * (5 + k))) <= 1
    # and it beats holding the last frame
    truth = torch.from_numpy(np.stack([blob(5 + k) for k in range(3)])).float()
    held = context[0, -1, 0].expand(3, 64, 64)
    assert float((forecast[0, :, 0] - truth).abs().mean()) < 0.5 * float((held - truth).abs().mean())


@pytest.mark.skipif(not lagrangian.available(), reason="the pysteps extra is not installed")
def test_dry_context_stays_dry() -> None:
    forecast = lagrangian.lagrangian_persistence(torch.zeros(1, 5, 1, 32, 32), 2)
    assert torch.equal(forecast, torch.zeros(1, 2, 1, 32, 32))
