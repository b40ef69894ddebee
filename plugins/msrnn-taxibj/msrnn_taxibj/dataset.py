"""TaxiBJ's prepared store, its windows and splits, and the factory the zoo calls.

``prepare`` reads the four yearly files once and writes the complete days as raw flows
(``flows``: (N, 2, 32, 32) float32, negatives clamped) plus ``starts``: the first frame of every window of
eight consecutive half-hour slots inside one run of complete days of one year (stride 1). The last
:data:`TEST_WINDOWS` windows are the test split and the others train; the min and max of the flows under
the training windows, both channels, scale every item to [0, 1] (``meta["scaling"]``, kept so evaluation
reports flow counts). Loading slices the memory-mapped flows; nothing is decoded twice.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from msrnn_zoo.store import Store, StoreWriter, open_store

from . import files

NAME = "taxibj"
WINDOW = 8
TEST_WINDOWS = 48 * 7 * 4
"""The last four weeks of half-hour windows (1344) are the test split, as the MS-RNN code's len_test."""
CHANNELS = {"paper": (0,), "openstl": (0, 1)}
"""Inflow only (the MS-RNN code keeps channel 0), or inflow and outflow (OpenSTL)."""


def _runs(days: list[str]) -> list[tuple[int, int]]:
    """(first day index, day count) of each stretch of consecutive calendar days."""
    runs: list[tuple[int, int]] = []
    previous = None
    for i, day in enumerate(days):
        date = datetime.date(int(day[:4]), int(day[4:6]), int(day[6:]))
        if previous is not None and date - previous == datetime.timedelta(days=1):
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
        previous = date
    return runs


def window_starts(day_lists: list[list[str]]) -> np.ndarray:
    """First frame of every 8-slot window that stays inside one year's run of consecutive complete days."""
    starts: list[np.ndarray] = []
    offset = 0
    for days in day_lists:
        for first, count in _runs(days):
            frames = count * files.SLOTS_PER_DAY
            if frames >= WINDOW:
                starts.append(offset + first * files.SLOTS_PER_DAY + np.arange(frames - WINDOW + 1))
        offset += len(days) * files.SLOTS_PER_DAY
    return np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, dtype=np.int64)


def prepare(source: Path, out: StoreWriter, progress: Callable[[str, int, int], None]) -> None:
    """Raw yearly h5 files -> the store: complete days, clamped flows, windows and the fitted scaling."""
    paths = files.find_files(source)
    years = []
    for i, path in enumerate(paths):
        progress("reading BJ13..BJ16", i, len(paths))
        years.append(files.read_year(path))
    progress("reading BJ13..BJ16", len(paths), len(paths))
    total = sum(len(y.flows) for y in years)
    flows = out.create_array("flows", (total, 2, files.GRID, files.GRID), np.float32)
    at = 0
    for year in years:
        flows[at:at + len(year.flows)] = year.flows
        at += len(year.flows)
    flows.flush()
    starts = window_starts([y.days for y in years])
    if len(starts) <= TEST_WINDOWS:
        raise ValueError(f"The TaxiBJ files under {source} hold {len(starts)} windows of {WINDOW} consecutive "
                         f"half-hour slots, not more than the {TEST_WINDOWS} of the test split (the last four weeks); "
                         "these are not the full public files.")
    out.save_array("starts", starts)
    train_end = int(starts[-TEST_WINDOWS - 1]) + WINDOW  # frames under the training windows
    lo, hi = float(flows[:train_end].min()), float(flows[:train_end].max())
    if hi <= lo:
        raise ValueError(f"The training frames of {source} are constant ({lo}); min-max scaling needs variation.")
    out.meta.update({
        "scaling": {"min": lo, "max": hi},
        "flow_stats": [{"mean": float(np.mean(flows[:, c], dtype=np.float64)), "max": float(flows[:, c].max())}
                       for c in (0, 1)],
        "years": [{"file": y.path.name, "slots": y.raw_slots, "complete_days": len(y.days),
                   "dropped_days": y.dropped_days, "negatives_clamped": y.negatives} for y in years],
        "train_frames": train_end,
    })
    progress("reading BJ13..BJ16", len(paths), len(paths))


class TaxiBJWindows(Dataset):
    """Windows (8, C, 32, 32) of a split, scaled to [0, 1] by the min-max fitted on the training frames."""

    def __init__(self, root: Path, split: str, channels: tuple[int, ...]) -> None:
        self.root = Path(root)
        self.split = split
        self.channels = list(channels)
        store = open_store(root, NAME)
        starts = np.asarray(store.array("starts"))
        self.starts = starts[:-TEST_WINDOWS] if split == "train" else starts[-TEST_WINDOWS:]
        scaling = store.meta["scaling"]
        self.lo, self.span = np.float32(scaling["min"]), np.float32(scaling["max"] - scaling["min"])
        self._flows = store.mapped("flows")

    @property
    def flows(self) -> np.ndarray:
        return self._flows.array

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        start = int(self.starts[index])
        window = self.flows[start:start + WINDOW][:, self.channels]
        scaled = np.clip((window - self.lo) / self.span, 0.0, 1.0, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(scaled))


def make_taxibj(split: str, root: Path, protocol: str = "paper", **ignored: Any) -> Dataset:
    """The zoo's factory: ``split`` ('train' or 'test') of the store at ``root``, cut by ``protocol``."""
    return TaxiBJWindows(root, split, CHANNELS[protocol])


def inverse(values: torch.Tensor, params: Mapping[str, Any]) -> torch.Tensor:
    """[0, 1] -> flow counts per cell and half hour, with the min and max the store fitted."""
    return values * (params["max"] - params["min"]) + params["min"]


def describe(store: Store) -> dict[str, Any]:
    """What ``msrnn-zoo data info taxibj`` adds: days kept and dropped per year, flow statistics."""
    flows = store.array("flows")
    starts = store.array("starts")
    return {
        "frames (complete half-hour slots)": len(flows),
        "windows": f"{len(starts)} of {WINDOW} slots: {len(starts) - TEST_WINDOWS} train, {TEST_WINDOWS} test",
        **{y["file"]: f"{y['complete_days']} complete days from {y['slots']} slots; {len(y['dropped_days'])} "
                      f"incomplete day(s) dropped; {y['negatives_clamped']} negative value(s) clamped"
           for y in store.meta["years"]},
        "scaling (train min, max)": [store.meta["scaling"]["min"], store.meta["scaling"]["max"]],
        "flow mean / max (inflow, outflow)": [[round(s["mean"], 3), s["max"]] for s in store.meta["flow_stats"]],
    }
