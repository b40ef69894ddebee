"""Per-frame metric curves drawn with Pillow, for model cards (matplotlib is not a dependency of the zoo).

A forecast's error grows with the horizon, and a single mean hides where a model stops beating a baseline,
so the card shows each metric frame by frame, the model beside the baselines, one panel per metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .io import atomic_write

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (127, 127, 127)]
"""The first series (the model) is blue; baselines follow in red, green, purple, orange, grey."""


@dataclass(frozen=True)
class Panel:
    """One metric: its title (with the arrow of the better direction) and one curve per series."""

    title: str
    series: dict[str, Sequence[float]]
    first_frame: int = 1
    """The number of the first value's frame: 2 for ``evaluate --frames all``, whose curves start at the clip's frame
    2 (the first it predicts), so that the axis numbers the frames as the metrics table does."""
    axis: str = "forecast frame"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.3g}"
    return f"{value:g}"


def _legend_places(names: Sequence[str], font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int,
                   row_height: int) -> list[tuple[int, int]]:
    """Where each legend entry starts (x, top of its row): in rows as wide as the chart, so that a dataset with many
    baselines, or a one-panel chart, shows every name instead of drawing past the right edge."""
    places, x, top = [], 10, 0
    for name in names:
        entry = 22 + int(font.getlength(name))
        if x > 10 and x + entry > width - 10:
            x, top = 10, top + row_height
        places.append((x, top))
        x += entry + 16
    return places


def metric_chart(panels: Sequence[Panel], *, panel_width: int = 360, panel_height: int = 240) -> Image.Image:
    """Panels side by side, x = frame (``first_frame`` on, 1..T for a forecast), a shared legend on top."""
    if not panels:
        raise ValueError("metric_chart needs at least one panel.")
    names: list[str] = []
    for panel in panels:
        for name in panel.series:
            if name not in names:
                names.append(name)
    font = ImageFont.load_default()
    line_h = int(font.getbbox("Ag")[3]) + 4  # (an int already: the stubs say float for a FreeTypeFont)
    width = panel_width * len(panels)
    places = _legend_places(names, font, width, line_h + 4)
    legend_h = (places[-1][1] if places else 0) + line_h + 8
    image = Image.new("RGB", (width, legend_h + panel_height), (255, 255, 255))
    draw = ImageDraw.Draw(image)

    for i, (name, (x, row_top)) in enumerate(zip(names, places, strict=True)):  # legend
        colour = COLOURS[i % len(COLOURS)]
        middle = row_top + (line_h + 8) // 2
        draw.line([(x, middle), (x + 18, middle)], fill=colour, width=3)
        draw.text((x + 22, middle - line_h // 2 + 2), name, fill=(0, 0, 0), font=font)

    for p, panel in enumerate(panels):
        left0, top0 = p * panel_width, legend_h
        values = [v for curve in panel.series.values() for v in curve if math.isfinite(v)]
        ticks = nice_ticks(min(values, default=0.0), max(values, default=1.0))
        lo, hi = ticks[0], ticks[-1]
        tick_w = max(int(font.getlength(_label(t))) for t in ticks)
        left, right = left0 + tick_w + 14, left0 + panel_width - 12
        top, bottom = top0 + line_h + 6, top0 + panel_height - 2 * line_h - 6
        draw.text((left, top0 + 2), panel.title, fill=(0, 0, 0), font=font)
        frames = max((len(c) for c in panel.series.values()), default=1)

        def px(frame: int, value: float, frames: int = frames, lo: float = lo, hi: float = hi,
               left: int = left, right: int = right, top: int = top, bottom: int = bottom) -> tuple[float, float]:
            fx = left + (right - left) * (frame / max(1, frames - 1))
            fy = bottom - (bottom - top) * ((value - lo) / (hi - lo or 1.0))
            return fx, fy

        for t in ticks:  # grid and y labels
            _, y = px(0, t)
            draw.line([(left, y), (right, y)], fill=(225, 225, 225))
            label = _label(t)
            draw.text((left - 6 - font.getlength(label), y - line_h // 2 + 1), label, fill=(60, 60, 60), font=font)
        draw.line([(left, top), (left, bottom), (right, bottom)], fill=(0, 0, 0))
        step = max(1, math.ceil(frames / 10))
        for f in range(0, frames, step):  # x labels: frame numbers from the panel's first
            x_pos, _ = px(f, lo)
            draw.line([(x_pos, bottom), (x_pos, bottom + 3)], fill=(0, 0, 0))
            label = str(f + panel.first_frame)
            draw.text((x_pos - font.getlength(label) / 2, bottom + 5), label, fill=(60, 60, 60), font=font)
        caption = panel.axis
        draw.text(((left + right) / 2 - font.getlength(caption) / 2, bottom + 5 + line_h), caption,
                  fill=(0, 0, 0), font=font)
        for i, name in enumerate(names):
            curve = panel.series.get(name)
            if not curve:
                continue
            colour = COLOURS[i % len(COLOURS)]
            points = [px(f, v) for f, v in enumerate(curve) if math.isfinite(v)]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            for x_pos, y_pos in points:
                draw.ellipse([x_pos - 2.5, y_pos - 2.5, x_pos + 2.5, y_pos + 2.5], fill=colour)
    return image


def save_metric_chart(path: str | Path, panels: Sequence[Panel]) -> Path:
    image = metric_chart(panels)
    from .visualize import png_info

    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=png_info()))
