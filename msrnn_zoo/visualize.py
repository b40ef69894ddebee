"""Pictures of one forecast, to see what the numbers in a metrics table hide (blur, drift, vanishing digits).

Clips are ``(T, C, H, W)`` tensors (or arrays) in [0, 1], the same layout datasets yield. A strip puts the
context, the truth and the forecast in labelled rows; an animation plays them side by side in time.
Files are written atomically and never overwrite an existing one silently, because a forecast picture is
often the only record of a run that took hours.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

ChannelReduce = Literal["mean", "first"]
Clip = torch.Tensor | np.ndarray

BACKGROUND = 255
"""Gaps and label areas are white, so dark frames (Moving MNIST) stand out from one another."""
TEXT = 0
BLANK = 224
"""A panel with nothing to show yet (the forecast during the context) is light grey, not black,
so that it cannot be mistaken for a forecast of an empty frame."""


def _check_clip_shape(what: str, shape: Sequence[int]) -> None:
    if len(shape) != 4:
        hint = " (one clip: select it from the batch, e.g. frames[0])" if len(shape) == 5 else ""
        raise ValueError(f"{what} must have shape (T, C, H, W){hint}, got {tuple(shape)}.")
    if shape[0] < 1:
        raise ValueError(f"{what} holds no frames.")


def _to_uint8(clip: Clip, what: str, reduce: ChannelReduce) -> np.ndarray:
    """(T, C, H, W) in [0, 1] -> uint8 (T, H, W) for grayscale or (T, H, W, 3) for RGB."""
    if isinstance(clip, torch.Tensor):
        array = clip.detach().to("cpu", torch.float32).numpy()
    else:
        array = np.asarray(clip, dtype=np.float32)
    _check_clip_shape(what, array.shape)
    array = np.clip(np.nan_to_num(array, nan=0.0), 0.0, 1.0)
    channels = array.shape[1]
    if channels == 3:
        array = array.transpose(0, 2, 3, 1)
    elif channels == 1 or reduce == "first":
        array = array[:, 0]
    elif reduce == "mean":
        array = array.mean(axis=1)
    else:
        raise ValueError(f"channel_reduce must be 'mean' or 'first', got {reduce!r}.")
    return np.rint(array * 255.0).astype(np.uint8)


def _upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    if scale == 1:
        return frames
    return frames.repeat(scale, axis=1).repeat(scale, axis=2)


def _prepare(
    context: Clip,
    truth: Clip | None,
    forecast: Clip,
    scale: int,
    gap: int,
    reduce: ChannelReduce,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, str]:
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}.")
    if gap < 0:
        raise ValueError(f"gap must be non-negative, got {gap}.")
    shapes = {"context": tuple(context.shape), "forecast": tuple(forecast.shape)}
    if truth is not None:
        shapes["truth"] = tuple(truth.shape)
    for what, shape in shapes.items():
        _check_clip_shape(what, shape)
    frame_shapes = {what: shape[1:] for what, shape in shapes.items()}
    if len(set(frame_shapes.values())) != 1:
        raise ValueError(f"context, truth and forecast must share (C, H, W), got {frame_shapes}.")
    if truth is not None and shapes["truth"][0] != shapes["forecast"][0]:
        raise ValueError(
            f"truth and forecast must hold the same number of frames, got {shapes['truth'][0]} and "
            f"{shapes['forecast'][0]}."
        )
    mode = "RGB" if shapes["context"][1] == 3 else "L"
    ctx = _upscale(_to_uint8(context, "context", reduce), scale)
    tru = None if truth is None else _upscale(_to_uint8(truth, "truth", reduce), scale)
    fut = _upscale(_to_uint8(forecast, "forecast", reduce), scale)
    return ctx, tru, fut, mode


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _text_width(font: ImageFont.ImageFont | ImageFont.FreeTypeFont, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(np.ceil(right - left))


def _line_height(font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    return int(np.ceil(font.getbbox("Ag")[3]))


def _canvas(mode: str, width: int, height: int) -> Image.Image:
    return Image.new(mode, (width, height), BACKGROUND if mode == "L" else (BACKGROUND,) * 3)


def _fill(mode: str, value: int) -> int | tuple[int, int, int]:
    return value if mode == "L" else (value, value, value)


def check_strip_size(frames: int, rows: int, height: int, width: int, scale: int) -> None:
    """A ``ValueError`` before a forecast is made for a strip too large to be a picture: one of more pixels than
    Pillow opens without calling it a decompression bomb (``Image.MAX_IMAGE_PIXELS``), which takes gigabytes to draw
    (``predict --horizon 1000 --scale 16``). ``frames`` is the longest row's, ``rows`` 2 or 3, ``height`` and
    ``width`` a frame's before ``scale``. Labels and gaps are left out: the frames alone decide."""
    limit = Image.MAX_IMAGE_PIXELS or float("inf")
    pixels = frames * rows * height * width * scale * scale
    if pixels <= limit:
        return
    fits = [s for s in range(scale - 1, 0, -1) if frames * rows * height * width * s * s <= limit]
    advice = (f"--scale {fits[0]}" + (" or less" if fits[0] > 1 else "")) if fits else "a shorter --horizon"
    raise ValueError(f"The picture would hold {pixels:,} pixels ({rows} rows of {frames} frames of "
                     f"{height * scale}x{width * scale}), more than viewers open ({limit:,}, Pillow's limit): give "
                     f"{advice}. (A long forecast as numbers: msrnn_zoo's Python API, "
                     "model(frames, horizon=N).)")


def forecast_strip(
    context: Clip,
    truth: Clip | None,
    forecast: Clip,
    *,
    scale: int = 1,
    gap: int = 2,
    labels: bool = True,
    channel_reduce: ChannelReduce = "mean",
) -> Image.Image:
    """The whole forecast of one clip in a single picture, rows "input", "truth" (if given), "forecast".

    Rows start at the same column, so the k-th forecast sits under the k-th true future frame, which is
    where errors are judged. ``truth=None`` drops its row, for forecasts past the end of the data.
    Frames with C=3 are drawn in RGB, C=1 in grey, other channel counts as their mean (or first channel).
    ``scale`` enlarges every pixel to a ``scale`` x ``scale`` block, for 64x64 data that is otherwise tiny.
    """
    ctx, tru, fut, mode = _prepare(context, truth, forecast, scale, gap, channel_reduce)
    rows: list[tuple[str, np.ndarray]] = [("input", ctx)]
    if tru is not None:
        rows.append(("truth", tru))
    rows.append(("forecast", fut))

    frame_h, frame_w = ctx.shape[1], ctx.shape[2]
    font = _font()
    label_w = max(_text_width(font, name) for name, _ in rows) + gap if labels else 0
    row_h = max(frame_h, _line_height(font)) if labels else frame_h
    columns = max(len(frames) for _, frames in rows)
    width = gap + label_w + columns * (frame_w + gap)
    height = gap + len(rows) * (row_h + gap)

    canvas = _canvas(mode, width, height)
    draw = ImageDraw.Draw(canvas)
    for r, (name, frames) in enumerate(rows):
        top = gap + r * (row_h + gap)
        if labels:
            draw.text((gap, top + (row_h - _line_height(font)) // 2), name, fill=_fill(mode, TEXT), font=font)
        frame_top = top + (row_h - frame_h) // 2
        for c, frame in enumerate(frames):
            canvas.paste(Image.fromarray(frame, mode), (gap + label_w + c * (frame_w + gap), frame_top))
    return canvas


def forecast_frames(
    context: Clip,
    truth: Clip | None,
    forecast: Clip,
    *,
    scale: int = 1,
    gap: int = 2,
    labels: bool = True,
    channel_reduce: ChannelReduce = "mean",
) -> list[Image.Image]:
    """The frames of the forecast animation: one per context step, then one per forecast step.

    Panels, left to right: "input" (the context; after it, the last frame the model saw, held still, so
    the motion since then is visible), "truth" (the real video throughout; omitted when ``truth`` is
    None) and "forecast" (blank during the context). With ``labels`` each frame names its panels and
    says which step it shows.
    """
    ctx, tru, fut, mode = _prepare(context, truth, forecast, scale, gap, channel_reduce)
    t_in, t_out = len(ctx), len(fut)
    frame_h, frame_w = ctx.shape[1], ctx.shape[2]
    names = ["input", "forecast"] if tru is None else ["input", "truth", "forecast"]
    font = _font()
    line_h = _line_height(font)
    col_w = max([frame_w] + [_text_width(font, n) for n in names]) if labels else frame_w
    text_h = line_h + gap if labels else 0
    width = gap + len(names) * (col_w + gap)
    height = gap + text_h + frame_h + gap + text_h
    blank = np.full_like(ctx[0], BLANK)

    images = []
    for step in range(t_in + t_out):
        if step < t_in:
            panels = {"input": ctx[step], "truth": ctx[step], "forecast": blank}
            caption = f"context {step + 1}/{t_in}"
        else:
            k = step - t_in
            panels = {"input": ctx[-1], "truth": None if tru is None else tru[k], "forecast": fut[k]}
            caption = f"forecast {k + 1}/{t_out}"
        canvas = _canvas(mode, width, height)
        draw = ImageDraw.Draw(canvas)
        for i, name in enumerate(names):
            left = gap + i * (col_w + gap)
            if labels:
                name_left = left + (col_w - _text_width(font, name)) // 2
                draw.text((name_left, gap), name, fill=_fill(mode, TEXT), font=font)
            panel = panels[name]
            assert panel is not None
            canvas.paste(Image.fromarray(panel, mode), (left + (col_w - frame_w) // 2, gap + text_h))
        if labels:
            draw.text((gap, gap + text_h + frame_h + gap), caption, fill=_fill(mode, TEXT), font=font)
        images.append(canvas)
    return images


def png_info(text: dict[str, str] | None = None) -> PngImagePlugin.PngInfo:
    """The ``Software`` text of every PNG we write: how ``force`` knows a picture is ours to replace; ``text``
    adds entries of its own (the hash of the forecast array written beside it, :data:`FORECAST_ARRAY_KEY`)."""
    from .io import SOFTWARE

    info = PngImagePlugin.PngInfo()
    info.add_text("Software", SOFTWARE)
    for key, value in (text or {}).items():
        info.add_text(key, value)
    return info


def _write_atomically(path: str | os.PathLike[str], overwrite: bool, write: Callable[[str], None]) -> Path:
    """Write through a temporary file beside ``path`` so an interrupted run never leaves half a picture."""
    from .io import atomic_write, refuse_overwrite

    refuse_overwrite(path, overwrite, "picture", python_flag="overwrite")
    return atomic_write(Path(path), lambda tmp: write(str(tmp)), replace=overwrite)


def save_png(
    path: str | os.PathLike[str],
    context: Clip,
    truth: Clip | None,
    forecast: Clip,
    *,
    overwrite: bool = False,
    scale: int = 1,
    gap: int = 2,
    labels: bool = True,
    channel_reduce: ChannelReduce = "mean",
    text: dict[str, str] | None = None,
) -> Path:
    """Save :func:`forecast_strip` as one PNG (``text``: entries for its text chunks); returns the path written."""
    image = forecast_strip(
        context, truth, forecast, scale=scale, gap=gap, labels=labels, channel_reduce=channel_reduce
    )
    return _write_atomically(path, overwrite, lambda tmp: image.save(tmp, format="PNG", pnginfo=png_info(text)))


def save_gif(
    path: str | os.PathLike[str],
    context: Clip,
    truth: Clip | None,
    forecast: Clip,
    *,
    duration: int = 200,
    overwrite: bool = False,
    scale: int = 1,
    gap: int = 2,
    labels: bool = True,
    channel_reduce: ChannelReduce = "mean",
) -> Path:
    """Save :func:`forecast_frames` as a GIF that loops forever, ``duration`` milliseconds per frame.

    GIF stores at most 256 colours per frame, so RGB clips are quantised; the PNG strip is exact.
    Pillow merges consecutive identical frames (possible only with ``labels=False``) into a longer one.
    """
    if duration <= 0:
        raise ValueError(f"duration must be positive (milliseconds per frame), got {duration}.")
    images = forecast_frames(
        context, truth, forecast, scale=scale, gap=gap, labels=labels, channel_reduce=channel_reduce
    )

    from .io import SOFTWARE

    def write(tmp: str) -> None:
        first, *rest = images
        first.save(tmp, format="GIF", save_all=True, append_images=rest, duration=duration, loop=0,
                   comment=SOFTWARE.encode())

    return _write_atomically(path, overwrite, write)


__all__ = ["forecast_frames", "forecast_strip", "save_gif", "save_png"]
