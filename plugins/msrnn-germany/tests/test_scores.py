"""Precipitation scores against contingency tables counted by hand.

The fields are given in mm/h and turned into the [0, 1] pixels the scores receive, so every test also
goes through the inverse scaling the scores use. Values sit far from the thresholds (0, 1, 3, 7, 20, 50),
so the round trip cannot move a pixel across one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from msrnn_germany.scaling import rain_to_unit
from msrnn_germany.scores import (
    THRESHOLDS,
    PrecipitationScores,
    balancing_weights,
    categorical_scores,
    contingency,
)

TRUTH = [[0.0, 1.0, 3.0], [7.0, 20.0, 50.0]]
PRED = [[1.0, 0.0, 3.0], [20.0, 7.0, 0.0]]

# Pixel by pixel, (truth, forecast) in mm/h: (0, 1) (1, 0) (3, 3) / (7, 20) (20, 7) (50, 0).
#   >= 0.5: FA, miss, hit / hit, hit, miss        -> H 3, M 2, F 1, N 0
#   >= 2:   N, N, hit / hit, hit, miss            -> H 3, M 1, F 0, N 2
#   >= 5:   N, N, N / hit, hit, miss              -> H 2, M 1, F 0, N 3
#   >= 10:  N, N, N / FA, miss, miss              -> H 0, M 2, F 1, N 3
#   >= 30:  N, N, N / N, N, miss                  -> H 0, M 1, F 0, N 5
HAND_COUNTS = {0.5: (3, 2, 1, 0), 2.0: (3, 1, 0, 2), 5.0: (2, 1, 0, 3), 10.0: (0, 2, 1, 3), 30.0: (0, 1, 0, 5)}
HAND_SCORES = {  # POD, FAR, CSI, HSS from the counts above, by hand
    0.5: (3 / 5, 1 / 4, 3 / 6, 2 * (3 * 0 - 2 * 1) / ((3 + 2) * (2 + 0) + (3 + 1) * (1 + 0))),
    2.0: (3 / 4, 0 / 3, 3 / 4, 2 * (3 * 2 - 1 * 0) / ((3 + 1) * (1 + 2) + (3 + 0) * (0 + 2))),
    5.0: (2 / 3, 0 / 2, 2 / 3, 2 * (2 * 3 - 1 * 0) / ((2 + 1) * (1 + 3) + (2 + 0) * (0 + 3))),
    10.0: (0 / 2, 1 / 1, 0 / 3, 2 * (0 * 3 - 2 * 1) / ((0 + 2) * (2 + 3) + (0 + 1) * (1 + 3))),
    30.0: (0 / 1, 0.0, 0 / 1, 0.0),  # FAR 0/0 -> 0; HSS 2(0 - 0) / (1*6 + 0*5) = 0
}
WEIGHTS_OF_TRUTH = [[1, 1, 2], [5, 10, 30]]  # 0 and 1 mm/h -> 1; 3 -> 2; 7 -> 5; 20 -> 10; 50 -> 30


def as_pixels(rain: list, frames: int = 1) -> torch.Tensor:
    """mm/h (H, W) -> pixels (1, frames, 1, H, W)."""
    pixels = torch.from_numpy(rain_to_unit(np.asarray(rain, dtype=np.float64)))
    return pixels.reshape(1, 1, 1, *pixels.shape).repeat(1, frames, 1, 1, 1)


def scored(pred: list, truth: list, frames: int = 1) -> PrecipitationScores:
    scores = PrecipitationScores()
    scores.update(as_pixels(pred, frames), as_pixels(truth, frames))
    return scores


def test_contingency_counts_match_the_hand_count() -> None:
    scores = scored(PRED, TRUTH)
    table = scores.counts_dict()
    for t, (h, m, f, n) in HAND_COUNTS.items():
        assert table[f"{t:g}"] == {"hits": [h], "misses": [m], "false_alarms": [f], "correct_negatives": [n]}


def test_scores_match_the_hand_computation() -> None:
    report = scored(PRED, TRUTH).result()
    for t, expected in HAND_SCORES.items():
        got = [report[f"{s}_{t:g}"].mean for s in ("pod", "far", "csi", "hss")]
        assert got == pytest.approx(expected), t
    assert report["hss_0.5"].mean == pytest.approx(-2 / 7)


def test_balanced_errors_in_mm_per_hour_by_hand() -> None:
    report = scored(PRED, TRUTH).result()
    # |forecast - truth| = 1, 1, 0, 13, 13, 50 mm/h, weighted 1, 1, 2, 5, 10, 30, averaged over 6 pixels.
    assert report["b_mae_mmh"].mean == pytest.approx((1 + 1 + 0 + 5 * 13 + 10 * 13 + 30 * 50) / 6)
    assert report["b_mse_mmh"].mean == pytest.approx((1 + 1 + 0 + 5 * 169 + 10 * 169 + 30 * 2500) / 6)


def test_balanced_errors_in_pixels_are_the_ms_rnn_sums() -> None:
    report = scored(PRED, TRUTH).result()
    diff = rain_to_unit(np.array(PRED)) - rain_to_unit(np.array(TRUTH))
    weights = np.array(WEIGHTS_OF_TRUTH, dtype=np.float64)
    assert report["b_mse"].mean == pytest.approx(float((weights * diff**2).sum()))  # summed over pixels
    assert report["b_mae"].mean == pytest.approx(float((weights * np.abs(diff)).sum()))


def test_weights_step_up_at_each_threshold_inclusive() -> None:
    rain = torch.tensor([0.0, 0.49, 0.5, 1.99, 2.0, 4.99, 5.0, 9.99, 10.0, 29.99, 30.0, 300.0], dtype=torch.float64)
    assert balancing_weights(rain).tolist() == [1, 1, 1, 1, 2, 2, 5, 5, 10, 10, 30, 30]


def test_a_value_on_the_threshold_is_an_event() -> None:
    truth = torch.tensor(THRESHOLDS, dtype=torch.float64).reshape(1, 1, 1, 1, 5)
    counts = contingency(truth.clone(), truth)[0, 0]  # (K, 4)
    # Threshold k sees 5 - k pixels at or above it, all forecast too: hits only, the rest correct negatives.
    assert counts[:, 0].tolist() == [5, 4, 3, 2, 1] and counts[:, 1:3].sum() == 0
    assert counts[:, 3].tolist() == [0, 1, 2, 3, 4]


def test_no_rain_anywhere_scores_zero_by_the_ms_rnn_convention() -> None:
    dry = [[0.0] * 4] * 4
    report = scored(dry, dry).result()
    for t in THRESHOLDS:
        assert scored(dry, dry).counts_dict()[f"{t:g}"]["correct_negatives"] == [16]
        for s in ("pod", "far", "csi", "hss"):
            assert report[f"{s}_{t:g}"].mean == 0.0  # 0/0 everywhere, reported as 0 like nan_to_num
    assert report["b_mse"].mean == 0.0 and report["b_mae_mmh"].mean == 0.0


def test_rain_everywhere_forecast_everywhere() -> None:
    wet = [[50.0] * 3] * 2
    report = scored(wet, wet).result()
    for t in THRESHOLDS:
        assert report[f"pod_{t:g}"].mean == 1.0 and report[f"csi_{t:g}"].mean == 1.0
        assert report[f"far_{t:g}"].mean == 0.0
        assert report[f"hss_{t:g}"].mean == 0.0  # no correct negatives and no misses: 0/0 -> 0


def test_rain_everywhere_forecast_nowhere() -> None:
    report = scored([[0.0] * 3] * 2, [[50.0] * 3] * 2).result()
    for t in THRESHOLDS:
        assert report[f"pod_{t:g}"].mean == 0.0 and report[f"csi_{t:g}"].mean == 0.0
        assert report[f"far_{t:g}"].mean == 0.0  # nothing forecast: 0/0 -> 0
    # every pixel weighs 30 and misses 50 mm/h
    assert report["b_mae_mmh"].mean == pytest.approx(30 * 50)


def test_perfect_forecast_of_a_mixed_field() -> None:
    report = scored(TRUTH, TRUTH).result()
    for t in (0.5, 2.0, 5.0, 10.0, 30.0):
        assert report[f"pod_{t:g}"].mean == pytest.approx(1.0) and report[f"csi_{t:g}"].mean == pytest.approx(1.0)
        assert report[f"far_{t:g}"].mean == 0.0 and report[f"hss_{t:g}"].mean == pytest.approx(1.0)
    assert report["b_mse"].mean == 0.0 and report["b_mae"].mean == 0.0


def test_counts_sum_over_clips_and_batches_before_scoring() -> None:
    # Clip 1 is the hand example, clip 2 a perfect forecast of it: the 0.5 mm/h table adds up to
    # H 3 + 5, M 2 + 0, F 1 + 0, N 0 + 1 -> POD 8/10, not the mean of 0.6 and 1.0 per clip.
    one = PrecipitationScores()
    one.update(torch.cat([as_pixels(PRED), as_pixels(TRUTH)]), torch.cat([as_pixels(TRUTH), as_pixels(TRUTH)]))
    two = PrecipitationScores()
    two.update(as_pixels(PRED), as_pixels(TRUTH))
    two.update(as_pixels(TRUTH), as_pixels(TRUTH))
    for scores in (one, two):
        report = scores.result()
        assert report["pod_0.5"].mean == pytest.approx(8 / 10) and report.samples == 2
    assert one.counts_dict() == two.counts_dict()
    assert two.result()["b_mae_mmh"].mean == pytest.approx((1 + 1 + 0 + 5 * 13 + 10 * 13 + 30 * 50) / 6 / 2)


def test_a_frame_with_a_nan_forecast_pixel_scores_nan_not_dry() -> None:
    """NaN >= threshold is false: a diverged forecast was counted as no rain (FAR 0, the best) and its mm/h errors
    were finite. The other frame and a later batch without NaN still count."""
    pred = torch.cat([as_pixels(PRED), as_pixels(TRUTH)], dim=1)  # frame 1 the hand example, frame 2 perfect
    pred[0, 0, 0, 1, 2] = float("nan")
    scores = PrecipitationScores()
    scores.update(pred, as_pixels(TRUTH, frames=2))
    scores.update(as_pixels(TRUTH, frames=2), as_pixels(TRUTH, frames=2))
    report = scores.result()
    for name in ("pod", "far", "csi", "hss"):
        for t in THRESHOLDS:
            first, second = report[f"{name}_{t:g}"].per_frame
            assert math.isnan(first) and not math.isnan(second)
    assert report["csi_0.5"].per_frame[1] == 1.0 and math.isnan(report["csi_0.5"].mean)
    assert math.isnan(report["b_mae_mmh"].per_frame[0]) and report["b_mae_mmh"].per_frame[1] == 0.0


def test_per_frame_curves_and_their_mean() -> None:
    pred = torch.cat([as_pixels(PRED), as_pixels(TRUTH)], dim=1)  # frame 1 the example, frame 2 perfect
    truth = as_pixels(TRUTH, frames=2)
    scores = PrecipitationScores()
    scores.update(pred, truth)
    report = scores.result()
    assert report.frames == 2
    assert report["csi_0.5"].per_frame == pytest.approx((0.5, 1.0))
    assert report["csi_0.5"].mean == pytest.approx(0.75)
    assert report["far_10"].per_frame == pytest.approx((1.0, 0.0))
    assert report["far_10"].spec.higher_is_better is False and report["csi_10"].spec.higher_is_better


def test_every_score_states_its_convention() -> None:
    report = scored(PRED, TRUTH).result()
    names = [r.name for r in report]
    assert len(names) == 4 * 5 + 4 and len(set(names)) == len(names)
    assert "csi_0.5" in names and "hss_30" in names and "b_mse" in names and "b_mae_mmh" in names
    for result in report:
        assert result.spec.convention and result.spec.label
    assert ">= 0.5 mm/h" in report["pod_0.5"].spec.convention


def test_categorical_scores_agree_with_a_direct_formula() -> None:
    rng = np.random.default_rng(0)
    counts = torch.from_numpy(rng.integers(0, 50, size=(7, 4)))
    got = categorical_scores(counts)
    h, m, f, n = (counts[:, i].double() for i in range(4))
    assert torch.allclose(got["hss"], 2 * (h * n - m * f) / ((h + m) * (m + n) + (h + f) * (f + n)))
    assert torch.allclose(got["csi"], h / (h + m + f))


def test_scores_use_the_inverse_scaling_they_are_given() -> None:
    # A different inverse (rain = 100 * pixel) changes which pixels are events: the hook's context decides.
    scores = PrecipitationScores(to_rain=lambda p: p * 100.0)
    pixels = torch.tensor([0.001, 0.01, 0.1, 0.4]).reshape(1, 1, 1, 1, 4)  # 0.1, 1, 10, 40 mm/h
    scores.update(pixels, pixels)
    table = scores.counts_dict()
    assert [table[k]["hits"][0] for k in ("0.5", "2", "5", "10", "30")] == [3, 2, 2, 2, 1]


def test_mismatched_shapes_and_frame_counts_are_refused() -> None:
    scores = PrecipitationScores()
    with pytest.raises(ValueError, match="must both be"):
        scores.update(torch.zeros(1, 2, 1, 4, 4), torch.zeros(1, 3, 1, 4, 4))
    scores.update(torch.zeros(1, 2, 1, 4, 4), torch.zeros(1, 2, 1, 4, 4))
    with pytest.raises(ValueError, match="same number of frames"):
        scores.update(torch.zeros(1, 3, 1, 4, 4), torch.zeros(1, 3, 1, 4, 4))
    with pytest.raises(RuntimeError, match="no batches"):
        PrecipitationScores().result()
