"""The public TaxiBJ crowd-flow files: finding them, reading them with h5py, and checking their schema.

Each ``BJ<YY>_M32x32_T30_InOut.h5`` holds ``data`` (N, 2, 32, 32): inflow and outflow of every grid cell
in each half-hour slot, and ``date`` (N,): the slot as ``b"YYYYMMDDSS"`` with SS = 01..48. A file that
h5py cannot open, or whose datasets do not have that shape, fails with its path and what was expected.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from msrnn_zoo.validation import with_cli_message

YEARS = (13, 14, 15, 16)
SLOTS_PER_DAY = 48
GRID = 32
FILE_PATTERN = "BJ{year}_M32x32_T30_InOut.h5"
_DATE = re.compile(r"^(\d{8})(\d{2})$")


def file_name(year: int) -> str:
    return FILE_PATTERN.format(year=year)


def find_files(source: Path) -> list[Path]:
    """The four yearly files under ``source`` (a folder, searched one level down too), in year order."""
    if source.is_file():
        said = f" is a file; give the folder that holds {', '.join(file_name(y) for y in YEARS)}."
        raise with_cli_message(  # (prepare_dataset reaches it from Python, data prepare from the command line)
            ValueError(f"source={str(source)!r}{said}"), f"--source {source}{said}")
    found, missing = [], []
    for year in YEARS:
        hits = sorted(source.glob(file_name(year))) or sorted(source.glob(f"*/{file_name(year)}"))
        if hits:
            found.append(hits[0])
        else:
            missing.append(file_name(year))
    if missing:
        what = "none of the TaxiBJ files" if len(missing) == len(YEARS) else f"no {', '.join(missing)}"
        said = (f"{source} holds {what}: TaxiBJ is the four files {', '.join(file_name(y) for y in YEARS)} (from "
                "the DeepST release; BJ_Meteorology.h5 and BJ_Holiday.txt are not used). Point {} at the folder "
                "holding all four.")
        raise with_cli_message(ValueError(said.replace("{}", "source=")), said.replace("{}", "--source"))
    return found


@dataclass
class YearFile:
    """One file's complete days, as read: flows (N, 2, 32, 32) float32 and what was dropped or clamped."""

    path: Path
    flows: np.ndarray
    days: list[str]
    dropped_days: list[str]
    negatives: int
    raw_slots: int


def _parse_dates(path: Path, dates: np.ndarray) -> list[tuple[str, int]]:
    parsed = []
    for raw in dates:
        text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
        match = _DATE.match(text.strip())
        if not match or not 1 <= int(match.group(2)) <= SLOTS_PER_DAY:
            raise ValueError(f"{path}: date entry {text!r} is not YYYYMMDDSS with slot SS in 01..{SLOTS_PER_DAY}; "
                             "this is not a TaxiBJ crowd-flow file.")
        try:  # checked here, where the file is known: the windows' calendar arithmetic would fail without it
            datetime.datetime.strptime(match.group(1), "%Y%m%d")
        except ValueError as exc:
            raise ValueError(f"{path}: date entry {text!r} is not a day of the calendar ({exc}); the file is "
                             "damaged or not a TaxiBJ crowd-flow file. Download it again.") from None
        parsed.append((match.group(1), int(match.group(2))))
    return parsed


def read_year(path: Path) -> YearFile:
    """A file's days that hold all 48 slots in order, negatives clamped to 0 (as the MS-RNN code does)."""
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path} is not a readable HDF5 file ({exc}); the download was probably cut short. "
                         "Download it again.") from exc
    with handle:
        for name in ("data", "date"):
            if name not in handle:
                raise ValueError(f"{path} has no {name!r} dataset (it has {', '.join(handle) or 'nothing'}); "
                                 "a TaxiBJ file holds 'data' (N, 2, 32, 32) and 'date' (N,).")
        data, dates = handle["data"], handle["date"]
        if data.ndim != 4 or data.shape[1:] != (2, GRID, GRID):
            raise ValueError(f"{path}: 'data' has shape {data.shape}, expected (N, 2, {GRID}, {GRID}) "
                             "(inflow and outflow per grid cell).")
        if dates.shape != (data.shape[0],):
            raise ValueError(f"{path}: 'date' has shape {dates.shape} but 'data' holds {data.shape[0]} slots.")
        try:
            flows = np.asarray(data[()], dtype=np.float32)
            stamps = _parse_dates(path, dates[()])
        except OSError as exc:
            raise ValueError(f"{path} is damaged ({exc}); the download was probably cut short. "
                             "Download it again.") from exc
    by_day: dict[str, list[int]] = {}
    order: list[str] = []
    for index, (day, _slot) in enumerate(stamps):
        if day not in by_day:
            by_day[day] = []
            order.append(day)
        by_day[day].append(index)
    keep_days, dropped, keep = [], [], []
    for day in sorted(order):
        indices = by_day[day]
        if [stamps[i][1] for i in indices] == list(range(1, SLOTS_PER_DAY + 1)):
            keep_days.append(day)
            keep.extend(indices)
        else:
            dropped.append(day)
    kept = flows[keep]
    invalid = int((~np.isfinite(kept)).sum())
    if invalid:  # the min-max scaling fitted on them would be NaN, and so would every training clip
        raise ValueError(f"{path}: 'data' holds {invalid} NaN or infinite value(s) in its complete days; TaxiBJ "
                         "flows are finite counts. The file is damaged: download it again.")
    negatives = int((kept < 0).sum())
    np.maximum(kept, 0, out=kept)
    return YearFile(path, kept, keep_days, dropped, negatives, len(stamps))
