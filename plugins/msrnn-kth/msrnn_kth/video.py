"""Decoding the AVIs with PyAV and resizing frames the way both reference codes do (OpenCV INTER_LINEAR).

Both the MS-RNN code and OpenSTL read frames with OpenCV, keep channel 0 of BGR (the blue channel; the
videos are grey, so any channel is the grey value) and resize with ``cv2.resize``'s default bilinear
filter, which samples the two nearest source pixels per axis at half-pixel centres and does not average
over a larger footprint when shrinking. :func:`resize_linear` computes the same weights as a separable
matrix product, so no OpenCV is needed.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def frame_count(path: Path) -> int:
    """Frames the AVI's header announces (0 if it announces none); opening it also checks it is a video."""
    try:
        with av.open(str(path)) as container:
            if "avi" not in container.format.name.split(","):  # FFmpeg opens a picture too, as a 1-frame "video"
                raise ValueError(f"{path} is a {container.format.long_name} file, not an AVI; expected a KTH AVI "
                                 "(160x120, 25 fps). Download it again.")
            if not container.streams.video:
                raise ValueError(f"{path} holds no video stream; expected a KTH AVI (160x120, 25 fps).")
            return int(container.streams.video[0].frames or 0)
    except (av.error.FFmpegError, OSError) as exc:
        raise ValueError(f"{path} does not open as a video ({exc}); the download was probably cut short. "
                         "Download it again.") from exc


def decode_grey(path: Path, limit: int | None = None) -> np.ndarray:
    """Frames (T, H, W) uint8: channel 0 of BGR, as ``cv2.VideoCapture(...).read()[..., 0]`` gives."""
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="bgr24")[:, :, 0])
                if limit is not None and len(frames) >= limit:
                    break
    except (av.error.FFmpegError, OSError, IndexError) as exc:
        raise ValueError(f"{path} does not decode as a video after {len(frames)} frame(s) ({exc}); the file is "
                         "damaged or cut short. Download it again.") from exc
    if not frames:
        raise ValueError(f"{path} decodes to no frames; expected a KTH AVI. Download it again.")
    return np.stack(frames)


def _weights(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) bilinear weights with OpenCV's INTER_LINEAR sampling positions."""
    scale = size_in / size_out
    src = (np.arange(size_out) + 0.5) * scale - 0.5
    left = np.floor(src).astype(int)
    frac = src - left
    frac[left < 0] = 0.0  # before the first pixel: the first pixel
    left = np.clip(left, 0, size_in - 1)
    at_end = left >= size_in - 1
    frac[at_end] = 0.0
    right = np.minimum(left + 1, size_in - 1)
    matrix = np.zeros((size_out, size_in), dtype=np.float64)
    rows = np.arange(size_out)
    np.add.at(matrix, (rows, left), 1.0 - frac)
    np.add.at(matrix, (rows, right), frac)
    return matrix


def resize_linear(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Frames (T, H, W) resized to (T, height, width) as float32, with OpenCV INTER_LINEAR weights."""
    wy = _weights(frames.shape[1], height).astype(np.float32)
    wx = _weights(frames.shape[2], width).astype(np.float32)
    return np.einsum("oh,thw,pw->top", wy, frames.astype(np.float32), wx, optimize=True)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)
