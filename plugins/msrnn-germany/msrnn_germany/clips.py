"""The paper protocol: how clips are cut from a prepared store, and the torch dataset that serves them.

The MS-RNN code (util/load_hko.py, used for its DWD data) sorts a split's files, takes non-overlapping
blocks of ``(5 + 5) * 6 = 60`` consecutive files and keeps every 6th: ten frames 30 minutes apart, five
in and five out. Clip ``k`` is files ``60k, 60k + 6, ..., 60k + 54``; a split of ``n`` files holds
``n // 60`` clips.

PNGs carry no time, so they are cut exactly so. RADOLAN frames carry their time, so the same blocks are
laid on the clock instead: block ``k`` starts ``k * 300`` minutes after the split's first frame and needs
the frames at ``0, 30, ..., 270`` minutes into it. On a complete archive this is the same as counting
files; where DWD has a gap, the block is dropped instead of silently joining frames hours apart.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from msrnn_zoo.store import MappedArray

IN_FRAMES = 5
OUT_FRAMES = 5
STEP = 6
"""Every 6th 5-minute frame: 30-minute steps."""
BLOCK = (IN_FRAMES + OUT_FRAMES) * STEP
"""Files per clip, and the stride between clips (non-overlapping)."""
FRAME_SECONDS = 300


def clips_by_count(start: int, count: int) -> np.ndarray:
    """Frame indices ``(n, 10)`` of the clips of a split holding ``count`` frames from ``start``."""
    blocks = np.arange(count // BLOCK, dtype=np.int64)[:, None] * BLOCK
    return start + blocks + np.arange(0, BLOCK, STEP, dtype=np.int64)[None, :]


def clips_by_time(times: np.ndarray, start: int, count: int) -> np.ndarray:
    """Frame indices ``(n, 10)`` of the complete clips of a split, laid on its frames' times (seconds).

    ``times[start:start + count]`` must be sorted (the store writes them so).
    """
    if count == 0:
        return np.zeros((0, IN_FRAMES + OUT_FRAMES), dtype=np.int64)
    stamps = np.asarray(times[start:start + count], dtype=np.int64)
    first, last = int(stamps[0]), int(stamps[-1])
    blocks = (last - first) // (BLOCK * FRAME_SECONDS) + 1
    wanted = (first + np.arange(blocks, dtype=np.int64)[:, None] * BLOCK * FRAME_SECONDS
              + np.arange(0, BLOCK, STEP, dtype=np.int64)[None, :] * FRAME_SECONDS)
    found = np.clip(np.searchsorted(stamps, wanted), 0, count - 1)
    complete = (stamps[found] == wanted).all(axis=1)
    return start + found[complete]


def archive_clips(years: Iterable[int]) -> tuple[int, int]:
    """``(files, clips)`` of a split covering whole years of a complete 5-minute archive (288 files a day).

    An upper bound for real data: every gap in DWD's archive drops the 5-hour block it falls in.
    """
    days = sum(366 if calendar.isleap(year) else 365 for year in years)
    files = days * 24 * 3600 // FRAME_SECONDS
    return files, files // BLOCK


def paper_clips(meta: dict[str, Any], times: np.ndarray | None, split: str) -> np.ndarray:
    """The clip index of ``split`` under the paper protocol, from the store's metadata."""
    record = meta["splits"][split]
    if times is None:
        return clips_by_count(int(record["start"]), int(record["count"]))
    return clips_by_time(times, int(record["start"]), int(record["count"]))


class RadarClips(Dataset):
    """Clips ``(10, 1, 124, 124)`` float32 in [0, 1], read from the memory-mapped frames on demand."""

    def __init__(self, frames: MappedArray, index: np.ndarray, *, name: str = "germany") -> None:
        self._frames = frames
        self.index = np.asarray(index, dtype=np.int64)
        self.name = name

    @property
    def frames(self) -> np.ndarray:
        return self._frames.array

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> torch.Tensor:
        position = int(item) + len(self.index) if int(item) < 0 else int(item)
        if not 0 <= position < len(self.index):
            raise IndexError(f"clip index {item} out of range for {len(self.index)} clips")
        block = np.asarray(self.frames[self.index[position]])  # reads the ten frames, not the block around them
        if block.dtype == np.uint8:
            clip = np.divide(block, np.float32(255.0), dtype=np.float32)
        else:
            clip = np.clip(block.astype(np.float32), 0.0, 1.0)
        return torch.from_numpy(clip[:, None])

    def __repr__(self) -> str:
        return f"RadarClips({self.name!r}, clips={len(self.index)})"
