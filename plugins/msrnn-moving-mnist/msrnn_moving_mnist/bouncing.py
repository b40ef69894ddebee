"""The Moving MNIST motion: digits glide in straight lines and bounce off the walls of the canvas.

Positions come in closed form (a straight line folded back into the box), not by stepping a
simulation, so a clip costs a few array operations and every frame is independent of the others.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CANVAS = 64
FRAMES = 20
SPEED = (2.0, 5.0)
"""Pixels per frame: fast enough that ten frames carry a digit across a good part of the box."""


def reflect(positions: np.ndarray, span: int) -> np.ndarray:
    """Fold free positions back into ``[0, span]`` as a ball bouncing between two walls would be.

    Unfolding the bounces turns the path into a straight line; folding it by ``2 * span`` recovers
    where the ball really is, with no special cases for several bounces in one step.
    """
    if span <= 0:
        return np.zeros(positions.shape, dtype=np.intp)
    folded = np.mod(positions, 2 * span)
    folded = np.where(folded > span, 2 * span - folded, folded)
    return np.rint(folded).astype(np.intp)


def bounce_path(rng: np.random.Generator, frames: int, span: int,
                speed: tuple[float, float] = SPEED) -> np.ndarray:
    """Top-left corners ``(frames, 2)`` as (row, col) of one digit: random start, direction and speed."""
    start = rng.uniform(0.0, span, size=2)
    theta = rng.uniform(0.0, 2.0 * np.pi)
    velocity = rng.uniform(*speed) * np.array([np.sin(theta), np.cos(theta)])
    steps = np.arange(frames, dtype=np.float64)[:, None]
    return reflect(start + steps * velocity, span)


def render_clip(digits: Sequence[np.ndarray], rng: np.random.Generator, frames: int = FRAMES,
                canvas: int = CANVAS, speed: tuple[float, float] = SPEED) -> np.ndarray:
    """Frames ``(frames, canvas, canvas)`` uint8 of the digits moving together, overlaps merged by max.

    Max (not sum) keeps overlapping strokes at the brightness of a single stroke, as in the original
    Moving MNIST, so the target never saturates where the digits cross.
    """
    clip = np.zeros((frames, canvas, canvas), dtype=np.uint8)
    for digit in digits:
        height, width = digit.shape
        if height > canvas or width > canvas:
            raise ValueError(f"A {height}x{width} digit does not fit in a {canvas}x{canvas} canvas.")
        path = bounce_path(rng, frames, canvas - max(height, width), speed)
        for t, (row, col) in enumerate(path):
            window = clip[t, row:row + height, col:col + width]
            np.maximum(window, digit, out=window)
    return clip
