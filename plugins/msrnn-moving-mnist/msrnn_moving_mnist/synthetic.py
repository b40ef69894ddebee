"""MNIST-like digit glyphs drawn with Pillow's built-in font, so the demo needs no download at all.

Each digit is rendered large, thickened, optionally slanted, then fitted into a 20x20 box centred in
28x28 — the same normalisation MNIST applies — so the synthetic clips have the look and the scale
of real Moving MNIST and a model trained on them is not thrown by the real thing.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

GLYPH = 28
BOX = 20
RENDER = 56
STROKES = (3, 5)
"""Max-filter sizes at render scale: a thinner and a bolder pen, like different writers."""
SLANTS = (-0.12, 0.0, 0.25)
"""Horizontal shears: upright plus a slant either way, for a little handwriting-like variety."""


@functools.cache
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """The built-in font, scalable when Pillow has FreeType; the small bitmap font otherwise."""
    try:
        return ImageFont.load_default(size=RENDER)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType: bitmap font, upscaled below
        return ImageFont.load_default()


def render_glyph(digit: int, stroke: int = STROKES[0], slant: float = 0.0) -> np.ndarray:
    """One digit as a ``(28, 28)`` uint8 image, white on black."""
    if not 0 <= digit <= 9:
        raise ValueError(f"digit must be 0..9, got {digit}.")
    size = RENDER * 2
    image = Image.new("L", (size, size), 0)
    ImageDraw.Draw(image).text((size // 4, size // 8), str(digit), fill=255, font=_font())
    if stroke > 1:
        image = image.filter(ImageFilter.MaxFilter(stroke))
    if slant:
        # x_src = x + slant * (y - centre): the top leans right for positive slant.
        image = image.transform(image.size, Image.Transform.AFFINE, (1, slant, -slant * size / 2, 0, 1, 0),
                                resample=Image.Resampling.BILINEAR)
    bbox = image.getbbox()
    if bbox is None:
        raise RuntimeError(f"Pillow's default font drew nothing for digit {digit}.")
    glyph = image.crop(bbox)
    scale = BOX / max(glyph.size)
    glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))),
                         Image.Resampling.LANCZOS)
    out = Image.new("L", (GLYPH, GLYPH), 0)
    out.paste(glyph, ((GLYPH - glyph.width) // 2, (GLYPH - glyph.height) // 2))
    return np.asarray(out, dtype=np.uint8)


@functools.cache
def glyph_bank() -> tuple[np.ndarray, np.ndarray]:
    """Every styled glyph ``(K, 28, 28)`` uint8 with its digit labels ``(K,)``, rendered once per process."""
    glyphs, labels = [], []
    for digit in range(10):
        for stroke in STROKES:
            for slant in SLANTS:
                glyphs.append(render_glyph(digit, stroke, slant))
                labels.append(digit)
    bank = np.stack(glyphs)
    bank.setflags(write=False)
    label_array = np.array(labels, dtype=np.int64)
    label_array.setflags(write=False)
    return bank, label_array
