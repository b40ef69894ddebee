"""Moving MNIST as torch datasets, and the factory the zoo calls to build a split from a source.

Sources:

``synthetic``
    Pillow-drawn digit glyphs bouncing in the box. No download, so ``make demo`` runs anywhere.
``generated``
    Real MNIST digits (``train-images-idx3-ubyte.gz``) bouncing in the box, made on the fly as in
    PredRNN / E3D-LSTM. The last sixth of the MNIST images is held out for ``val`` and ``test``, so
    those splits measure generalisation to handwriting the model never saw.
``standard``
    The public ``mnist_test_seq.npy`` (10,000 fixed sequences): the benchmark test set, so it serves
    the ``test`` split only and in full — splitting it would make scores incomparable with papers.
    Train on ``generated`` (or ``synthetic``) and test on ``standard``.

Generated clips are a pure function of ``(seed, source, split, index)``: the same index always yields
the same clip, in any worker and any epoch, and the splits never share a clip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from msrnn_zoo.data import SPLITS, default_root

from . import files
from .bouncing import CANVAS, FRAMES, SPEED, render_clip
from .synthetic import glyph_bank

SOURCES = ("synthetic", "generated", "standard")
DIGITS_PER_CLIP = 2
DEFAULT_CLIPS = {
    "synthetic": {"train": 2000, "val": 200, "test": 200},
    "generated": {"train": 10000, "val": 1000, "test": 1000},
}
"""Clips per epoch: small for the CPU demo, PredRNN-sized for real MNIST; ``num_clips`` overrides both."""
_STREAMS = {"synthetic": 1, "generated": 2}
"""Distinct random streams per source, so ``synthetic`` and ``generated`` clip ``i`` move differently."""


class BouncingDigits(Dataset):
    """Clips of digits, drawn from a bank of digit images, bouncing around a 64x64 box."""

    def __init__(self, digits: np.ndarray, *, num_clips: int, seed: int, split: str, source: str,
                 frames: int = FRAMES, canvas: int = CANVAS, digits_per_clip: int = DIGITS_PER_CLIP,
                 speed: tuple[float, float] = SPEED) -> None:
        if digits.ndim != 3 or len(digits) == 0:
            raise ValueError(f"Need a non-empty bank of digit images (K, H, W), got shape {digits.shape}.")
        self.digits = digits
        self.num_clips = num_clips
        self.seed = seed
        self.split = split
        self.source = source
        self.frames = frames
        self.canvas = canvas
        self.digits_per_clip = digits_per_clip
        self.speed = speed
        self._key = (seed, _STREAMS.get(source, 0), SPLITS.index(split))

    def __len__(self) -> int:
        return self.num_clips

    def clip(self, index: int) -> np.ndarray:
        """Clip ``index`` as uint8 ``(frames, canvas, canvas)``: the raw frames, handy for previews."""
        index = _check_index(index, self.num_clips)
        rng = np.random.default_rng((*self._key, index))
        picks = rng.integers(len(self.digits), size=self.digits_per_clip)
        return render_clip([self.digits[i] for i in picks], rng, self.frames, self.canvas, self.speed)

    def __getitem__(self, index: int) -> torch.Tensor:
        return _to_tensor(self.clip(index))

    def __repr__(self) -> str:
        return (f"BouncingDigits(source={self.source!r}, split={self.split!r}, "
                f"clips={self.num_clips}, seed={self.seed})")


class StandardSequences(Dataset):
    """The standard Moving MNIST test sequences, read clip by clip from the memory-mapped ``.npy``.

    ``num_clips`` is a cap (the first that many sequences), so a quick evaluation can ask for fewer.
    """

    def __init__(self, path: str | Path, num_clips: int | None = None) -> None:
        self.path = Path(path)
        self._array: np.ndarray | None = files.open_test_sequences(self.path)
        available = self._array.shape[1]
        self.num_clips = available if num_clips is None else min(num_clips, available)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:  # reopened lazily in a DataLoader worker after unpickling
            self._array = files.open_test_sequences(self.path)
        return self._array

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> torch.Tensor:
        index = _check_index(index, self.num_clips)
        return _to_tensor(np.array(self.array[:, index]))  # copy out of the map

    def __getstate__(self) -> dict[str, Any]:
        # A memmap pickles as a full in-memory copy; spawned workers should map the file themselves.
        return {**self.__dict__, "_array": None}

    def __repr__(self) -> str:
        return f"StandardSequences({str(self.path)!r}, clips={self.num_clips})"


class HalfSize(Dataset):
    """The ``small`` protocol: the first ``frames`` frames of each clip, 2x2-averaged (64x64 -> 32x32)."""

    def __init__(self, clips: Dataset, frames: int) -> None:
        self.clips = clips
        self.frames = frames

    def __len__(self) -> int:
        return len(self.clips)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(self.clips[index][: self.frames], 2)

    def __repr__(self) -> str:
        return f"HalfSize({self.clips!r}, frames={self.frames})"


def make_moving_mnist(split: str, source: str = "synthetic", root: str | Path | None = None,
                      download: bool = False, num_clips: int | None = None, seed: int = 0,
                      protocol: str | None = None, **ignored: Any) -> Dataset:
    """Build one split of Moving MNIST from one source; items are float32 ``(20, 1, 64, 64)`` in [0, 1]
    under the ``paper`` protocol, ``(10, 1, 32, 32)`` under ``small``.

    The standard arguments it does not use arrive through ``**ignored``; its ``DatasetInfo`` declares
    ``num_clips`` and ``seed`` as its options, so ``load_dataset`` refuses any other by name.
    """
    if protocol not in (None, "paper", "small"):
        raise ValueError(f"moving-mnist has no protocol {protocol!r}; its protocols: paper, small.")
    clips = _make(split, source, root, download, num_clips, seed)
    return HalfSize(clips, 10) if protocol == "small" else clips


def _make(split: str, source: str, root: str | Path | None, download: bool, num_clips: int | None,
          seed: int) -> Dataset:
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r} for moving-mnist; expected one of {', '.join(SPLITS)}.")
    if source not in SOURCES:
        raise ValueError(f"Unknown source {source!r} for moving-mnist; expected one of {', '.join(SOURCES)}.")
    _check_num_clips(num_clips)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    root = default_root() if root is None else Path(root)

    if source == "standard":
        if split != "test":
            raise ValueError(
                f"The standard Moving MNIST file is the benchmark test set only; it has no {split!r} split. "
                "Train on source 'generated' (real MNIST digits; fetch them with "
                f"`{files.MNIST_FILE.fetch_command_for(root)}`) or 'synthetic' (no download), and test on 'standard'."
            )
        return StandardSequences(files.locate(files.STANDARD_FILE, root, download), num_clips)

    if source == "synthetic":
        digits = glyph_bank()[0]
    else:
        digits = _split_digits(files.read_idx_images(files.locate(files.MNIST_FILE, root, download)), split)
    count = DEFAULT_CLIPS[source][split] if num_clips is None else num_clips
    return BouncingDigits(digits, num_clips=count, seed=int(seed), split=split, source=source)


def _split_digits(images: np.ndarray, split: str) -> np.ndarray:
    """MNIST images for a split: the first five sixths train, the last sixth is held out for val/test."""
    held_out = len(images) // 6
    if held_out == 0:  # a tiny file (tests, toy mirrors) cannot spare any: share it
        return images
    return images[:-held_out] if split == "train" else images[-held_out:]


def _check_num_clips(num_clips: int | None) -> None:
    if num_clips is None:
        return
    if isinstance(num_clips, bool) or not isinstance(num_clips, (int, np.integer)) or num_clips < 1:
        raise ValueError(f"num_clips must be a positive integer (or None for the default): {num_clips!r}.")


def _check_index(index: int, length: int) -> int:
    """Python-style indexing (negatives count from the end); IndexError ends plain iteration."""
    position = int(index) + length if int(index) < 0 else int(index)
    if not 0 <= position < length:
        raise IndexError(f"clip index {index} out of range for {length} clips")
    return position


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(T, H, W)`` to the zoo's float32 ``(T, 1, H, W)`` in [0, 1].

    Scaled in numpy, not torch: torch's thread pool makes a tiny per-item op slow and jittery when
    DataLoader workers and the training loop compete for cores.
    """
    scaled = np.divide(frames[:, None], np.float32(255.0), dtype=np.float32)  # same values as to_unit_float
    return torch.from_numpy(scaled)
