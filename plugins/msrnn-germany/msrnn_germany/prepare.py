"""Raw files -> the prepared store: every frame decoded once, scaled to the paper's pixels, resized to 124x124.

The store keeps *every* frame of the raw input (5-minute steps) in time order, split after split, so a
protocol cuts its clips from it at load time without decoding anything (see :mod:`msrnn_germany.clips`).

Frames are kept as exactly as their source allows:

* MS-RNN PNGs are uint8 already (``P * 255``); they are resized as the MS-RNN loader resizes them
  (``cv2.resize`` with its default bilinear interpolation, no antialiasing) and stay uint8, so the
  store holds the numbers the MS-RNN code trains on.
* RADOLAN RY rain rates become ``P`` in float64, are resized from 900x900 with an antialiased bilinear
  filter (plain bilinear would read 4 of the ~53 pixels behind each output pixel and alias the rain
  field; the MS-RNN code's own 900 -> 124 step is not public) and are stored as float16.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from msrnn_zoo.store import StoreWriter
from msrnn_zoo.validation import with_cli_message

from .radolan import read_ry
from .scaling import rain_to_unit
from .source import SPLIT_FOLDERS, RawFile, SourceError, scan

SIZE = 124
"""Frame side of the paper protocol (MS-RNN config.py: ``cfg.width = cfg.height = 124`` for DWD)."""
FRAMES = "frames"
TIMES = "times"
STORE_VERSION = 1
PNG_MODES = ("L", "LA", "P", "RGB", "RGBA")
"""8-bit modes Pillow turns into grayscale as OpenCV's ``imread(flags=0)`` does for the MS-RNN loader."""

WORKERS = min(8, os.cpu_count() or 1)
"""Files decoded at once. Threads suffice: bz2, numpy and torch release the GIL for the heavy parts."""

Progress = Callable[[str, int, int], None]


def _resize(image: np.ndarray, antialias: bool) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float64))[None, None]
    if tensor.shape[-2:] == (SIZE, SIZE):
        return image.astype(np.float64)
    resized = F.interpolate(tensor, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=antialias)
    return resized[0, 0].numpy()


def resize_like_opencv(image: np.ndarray) -> np.ndarray:
    """A uint8 frame resized to 124x124 as ``cv2.resize(img, (124, 124))`` does: bilinear on half-pixel
    centres, no antialiasing, rounded to uint8 (within one grey level of OpenCV's fixed-point result)."""
    return np.clip(np.rint(_resize(image, antialias=False)), 0, 255).astype(np.uint8)


def resize_antialiased(image: np.ndarray) -> np.ndarray:
    """A float frame resized to 124x124 with a bilinear filter widened to the downscale factor."""
    return _resize(image, antialias=True)


def read_png(path: Path) -> np.ndarray:
    """One MS-RNN PNG as uint8 (H, W) grayscale; a file Pillow cannot decode is one error naming it."""
    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                raise SourceError(f"{path} is a {image.format} image, not a PNG.")
            if image.mode not in PNG_MODES:
                raise SourceError(f"{path} is a {image.mode} PNG; the MS-RNN Germany frames are 8-bit grayscale "
                                  "(pixel = (dBZ + 10) / 70 * 255).")
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        if isinstance(exc, SourceError):
            raise
        said = f"{path} is not a readable PNG ({exc}); replace it or remove it from {{}}."
        raise with_cli_message(SourceError(said.format("the source folder")), said.format("--source")) from exc


def png_frame(raw: RawFile) -> np.ndarray:
    return resize_like_opencv(read_png(raw.path))


def radolan_frame(raw: RawFile) -> tuple[np.ndarray, int]:
    """An RY file as a float16 124x124 frame of pixels, and how many of its pixels had no data."""
    frame = read_ry(raw.path)
    if raw.time is not None and frame.time != raw.time:
        raise SourceError(f"{raw.path}: its name says {raw.time:%Y-%m-%d %H:%M} UTC but its header says "
                          f"{frame.time:%Y-%m-%d %H:%M}; was it renamed? Restore DWD's name.")
    pixels = np.clip(resize_antialiased(rain_to_unit(frame.rain)), 0.0, 1.0)
    return pixels.astype(np.float16), frame.nodata


def decoded(decode: Callable[[RawFile], Any], files: Iterable[RawFile], workers: int = WORKERS) -> Iterator[Any]:
    """``decode(file)`` of every file, in order, ``workers`` at a time with a short queue ahead.

    The first failure (in file order) is raised; on any exit the queued files are cancelled and the few
    running ones finish before this returns, so nothing decodes on after an interrupt.
    """
    if workers <= 1:
        yield from map(decode, files)
        return
    remaining = iter(files)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="germany-decode") as pool:
        pending: deque[Future[Any]] = deque(pool.submit(decode, f) for f in itertools.islice(remaining, 2 * workers))
        try:
            while pending:
                result = pending.popleft().result()
                following = next(remaining, None)
                if following is not None:
                    pending.append(pool.submit(decode, following))
                yield result
        finally:
            for future in pending:
                future.cancel()


def prepare(source: Path, out: StoreWriter, progress: Progress, workers: int = WORKERS) -> None:
    """The ``prepare`` capability: decode ``source`` into ``out``.

    ``out.create_array`` gives memory-mapped arrays filled frame by frame, so an archive larger than
    memory is fine; the core writes into a temporary folder and renames it only when this returns.
    """
    raw = scan(source)
    files = raw.files
    dtype = np.uint8 if raw.kind == "png" else np.float16
    frames = out.create_array(FRAMES, (len(files), SIZE, SIZE), dtype)
    splits: dict[str, dict[str, Any]] = {}
    start = 0
    for split in SPLIT_FOLDERS:
        if split in raw.shared:
            continue
        splits[split] = {"start": start, "count": len(raw.splits[split])}
        start += len(raw.splits[split])
    for split, other in raw.shared.items():
        splits[split] = {**splits[other], "same_frames_as": other}

    task = f"decoding {len(files)} {'PNG' if raw.kind == 'png' else 'RADOLAN RY'} files"
    progress(task, 0, len(files))
    nodata = 0
    decode = png_frame if raw.kind == "png" else radolan_frame
    for index, result in enumerate(decoded(decode, files, workers)):
        if raw.kind == "png":
            frames[index] = result
        else:
            frames[index], missing = result
            nodata += missing
        progress(task, index + 1, len(files))
    frames.flush()

    meta: dict[str, Any] = {
        "version": STORE_VERSION,
        "kind": raw.kind,
        "source": str(Path(source).expanduser().resolve()),
        "split_rule": raw.split_rule,
        "splits": splits,
        "skipped": dict(raw.skipped),
        "frame_size": [SIZE, SIZE],
        "values": ("uint8 pixels P * 255, as in the MS-RNN PNGs" if raw.kind == "png"
                   else "float16 pixels P = clip((dBZ + 10) / 70, 0, 1)"),
        "scaling": {},  # a fixed formula: nothing fitted, nothing to record
    }
    if raw.kind == "radolan":
        stamps = np.array([epoch_seconds(f.time) for f in files if f.time is not None], dtype=np.int64)
        out.save_array(TIMES, stamps)
        meta["nodata_pixels"] = int(nodata)
        meta["nodata_note"] = "RY pixels flagged 'no data' (outside radar coverage) were set to 0 mm/h"
    out.meta.update(meta)


def epoch_seconds(time: dt.datetime) -> int:
    """Seconds since 1970 of a naive UTC time (``timestamp()`` alone would read it as local time)."""
    return int(time.replace(tzinfo=dt.timezone.utc).timestamp())
