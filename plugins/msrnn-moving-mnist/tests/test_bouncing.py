"""The motion: digits stay whole inside the canvas and really bounce off its walls."""

from __future__ import annotations

import numpy as np
import pytest
from msrnn_moving_mnist.bouncing import bounce_path, reflect, render_clip


def test_reflect_folds_back_into_the_box() -> None:
    free = np.array([0.0, 10.0, 36.0, 40.0, 72.0, 80.0, -4.0])
    assert reflect(free, 36).tolist() == [0, 10, 36, 32, 0, 8, 4]


def test_paths_stay_inside_and_reverse_at_walls() -> None:
    span, reversals = 36, 0
    for seed in range(50):
        path = bounce_path(np.random.default_rng(seed), 20, span)
        assert path.shape == (20, 2)
        assert path.min() >= 0 and path.max() <= span
        steps = np.diff(path, axis=0)
        signs = np.sign(steps)
        reversals += int(np.sum(signs[1:] * signs[:-1] < 0))
        assert np.abs(steps).max() <= 6  # speed at most 5 px/frame, plus rounding
    assert reversals > 10  # over 50 clips of 20 frames, bounces are common


def test_digits_stay_whole_in_every_frame() -> None:
    a = np.full((28, 28), 200, dtype=np.uint8)
    b = np.zeros((28, 28), dtype=np.uint8)
    b[5:20, 8:18] = 255
    for seed in range(20):
        clip = render_clip([a, b], np.random.default_rng(seed))
        assert clip.shape == (20, 64, 64) and clip.dtype == np.uint8
        mass = clip.astype(np.int64).sum(axis=(1, 2))
        # merged by max: never less than the bigger digit, never more than both — so nothing is cut off
        assert (mass >= max(a.sum(dtype=np.int64), b.sum(dtype=np.int64))).all()
        assert (mass <= a.sum(dtype=np.int64) + b.sum(dtype=np.int64)).all()


def test_oversized_digit_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        render_clip([np.ones((70, 70), dtype=np.uint8)], np.random.default_rng(0))
