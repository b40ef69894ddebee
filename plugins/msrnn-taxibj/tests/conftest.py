"""Small TaxiBJ files in the public schema ('data' (N, 2, 32, 32) float64, 'date' b'YYYYMMDDSS')."""

from __future__ import annotations

import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest

SLOTS = 48


def day_range(first: str, count: int) -> list[str]:
    start = datetime.date(int(first[:4]), int(first[4:6]), int(first[6:]))
    return [(start + datetime.timedelta(days=i)).strftime("%Y%m%d") for i in range(count)]


def write_year(path: Path, days: list[str], *, skip: dict[str, list[int]] | None = None, counter: list[int],
               negatives: int = 0) -> Path:
    """One yearly file; cell (0, 0) of both channels holds a running slot number, so tests can follow frames."""
    stamps = [f"{day}{slot:02d}".encode() for day in days for slot in range(1, SLOTS + 1)
              if slot not in (skip or {}).get(day, [])]
    rng = np.random.default_rng(len(stamps))
    data = rng.integers(0, 40, size=(len(stamps), 2, 32, 32)).astype(np.float64)
    data[:, :, 0, 0] = np.arange(counter[0], counter[0] + len(stamps))[:, None]
    counter[0] += len(stamps)
    if negatives:
        data[:negatives, 1, 5, 5] = -3.0
    with h5py.File(path, "w") as handle:
        handle.create_dataset("data", data=data, compression="gzip", shuffle=True)
        handle.create_dataset("date", data=np.array(stamps))
    return path


@pytest.fixture
def year_writer():
    """``write_year(path, days, skip=, counter=, negatives=)``, for tests that replace one file."""
    return write_year


@pytest.fixture
def raw_taxibj(tmp_path: Path) -> Path:
    """Four files: 2013 with an incomplete day between two complete ones, 2014 with negative flows, and 31
    days of 2015/16 crossing New Year (enough for the 1344 test windows)."""
    folder = tmp_path / "TaxiBJ"
    folder.mkdir()
    counter = [1]
    write_year(folder / "BJ13_M32x32_T30_InOut.h5", ["20130701", "20130702", "20130703"],
               skip={"20130702": [17]}, counter=counter)
    write_year(folder / "BJ14_M32x32_T30_InOut.h5", ["20140301", "20140302"], counter=counter, negatives=5)
    write_year(folder / "BJ15_M32x32_T30_InOut.h5", ["20150301", "20150302"], counter=counter)
    write_year(folder / "BJ16_M32x32_T30_InOut.h5", day_range("20151220", 31), counter=counter)
    (folder / "BJ_Holiday.txt").write_text("20130919\n")
    return folder
