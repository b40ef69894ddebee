"""Rain rate <-> dBZ <-> pixel, both ways, against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from msrnn_germany import scaling


def test_known_points_of_the_zr_relation() -> None:
    # Z = 256 R^1.42: 1 mm/h is 256 mm^6/m^3, 10*log10(256) = 24.08 dBZ; pixel (24.08 + 10) / 70.
    assert scaling.rain_to_dbz(np.array(1.0)) == pytest.approx(10 * math.log10(256))
    assert scaling.rain_to_unit(np.array(1.0)) == pytest.approx((10 * math.log10(256) + 10) / 70)
    # 30 dBZ is the MS-RNN code's own check value: (10^3 / 256)^(1/1.42) = 2.612 mm/h.
    assert scaling.dbz_to_rain(np.array(30.0)) == pytest.approx((1000 / 256) ** (1 / 1.42))
    # Pixel 1 is 60 dBZ; anything heavier clips there.
    assert scaling.unit_to_rain(np.array(1.0)) == pytest.approx((1e6 / 256) ** (1 / 1.42))
    assert scaling.rain_to_unit(np.array(1000.0)) == 1.0


def test_dry_pixels_stay_dry_both_ways() -> None:
    assert scaling.rain_to_unit(np.array([0.0]))[0] == 0.0
    assert scaling.unit_to_rain(np.array([0.0]))[0] == 0.0
    # Rain too light to reach -10 dBZ also lands on pixel 0.
    assert scaling.rain_to_unit(np.array([0.001]))[0] == 0.0
    assert float(scaling.inverse(torch.zeros(1))) == 0.0


def test_a_nan_pixel_stays_nan_in_mm_per_hour() -> None:
    """A diverged forecast's NaN was read as 0 mm/h: its MAE in mm/h came out finite, as if it forecast no rain."""
    rain = scaling.unit_to_rain(np.array([np.nan, 0.0, -0.1, 1.0]))
    assert math.isnan(rain[0]) and rain[1] == 0.0 and rain[2] == 0.0
    assert rain[3] == pytest.approx((1e6 / 256) ** (1 / 1.42))
    torch_rain = scaling.inverse(torch.tensor([float("nan"), 0.0, -0.1, 1.0]))
    assert torch.isnan(torch_rain[0]) and torch_rain[1:].tolist() == pytest.approx(rain[1:].tolist())


def test_inverse_undoes_forward_over_the_representable_range() -> None:
    rain = np.geomspace(0.01, 300.0, 200)
    assert np.allclose(scaling.unit_to_rain(scaling.rain_to_unit(rain)), rain, rtol=1e-9)
    pixels = np.linspace(0.001, 1.0, 101)
    assert np.allclose(scaling.rain_to_unit(scaling.unit_to_rain(pixels)), pixels, atol=1e-12)


def test_torch_inverse_matches_numpy_and_is_float64() -> None:
    pixels = torch.linspace(0, 1, 256, dtype=torch.float32).reshape(1, 4, 1, 8, 8)
    rain = scaling.inverse(pixels, {})
    assert rain.dtype == torch.float64 and rain.shape == pixels.shape
    assert np.allclose(rain.numpy(), scaling.unit_to_rain(pixels.numpy()))
    assert bool((rain[..., 1:] >= 0).all())


def test_thresholds_sit_between_uint8_levels() -> None:
    # The scores compare rain >= threshold; no threshold may fall exactly on a stored uint8 level, or
    # rounding would decide the count.
    levels = scaling.unit_to_rain(np.arange(256) / 255.0)
    for threshold in (0.5, 2.0, 5.0, 10.0, 30.0):
        assert np.abs(levels - threshold).min() > 1e-3 * threshold
