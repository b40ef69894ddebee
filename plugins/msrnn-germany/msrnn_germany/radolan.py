"""DWD RADOLAN RY composites: 5-minute precipitation over Germany on the 900x900 km national grid.

Files are read with wradlib (:func:`wradlib.io.radolan.read_radolan_composite`), the field's reader of the
RADOLAN binary format; this module only decompresses, checks that the file is the product the dataset
expects, and turns it into a rain rate on a north-up grid. Every problem is one error naming the file.

An RY file holds the precipitation *amount* of five minutes in steps of 0.01 mm (header ``PR E-02``,
``INT 5``); the MS-RNN code multiplies it by 12 to get mm/h, as :func:`read_ry` does (from ``INT``).
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import io
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PRODUCT = "RY"
GRID = (900, 900)
INTERVAL_SECONDS = 300
FILE_NAME = re.compile(r"^raa01-(?P<product>[a-z0-9]{2})_10000-(?P<stamp>\d{10})-dwd---bin(?:\.bz2|\.gz)?$",
                       re.IGNORECASE)
"""DWD's open-data names, e.g. ``raa01-ry_10000-2106011200-dwd---bin.bz2`` (YYMMDDhhmm, UTC)."""
FILE_NAME_HINT = "raa01-ry_10000-YYMMDDhhmm-dwd---bin (optionally .bz2 or .gz), as opendata.dwd.de names them"
SOURCE_URL = "https://opendata.dwd.de/weather/radar/radolan/ry/"


class RadolanError(ValueError):
    """A RADOLAN file that cannot be used; the message names the file and what was expected."""


@dataclass(frozen=True)
class RyFrame:
    """One RY composite: rain rate in mm/h, north-up, and the time (UTC) its 5 minutes end."""

    rain: np.ndarray
    time: dt.datetime
    nodata: int
    """Pixels without a measurement (outside radar coverage), set to 0 mm/h in ``rain``."""


def is_radolan_name(name: str) -> bool:
    return FILE_NAME.match(name) is not None


def _raw_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is bzip2 or gzip (recognised by content, not by name)."""
    raw = path.read_bytes()
    try:
        if raw[:3] == b"BZh":
            return bz2.decompress(raw)
        if raw[:2] == b"\x1f\x8b":
            return gzip.decompress(raw)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise RadolanError(f"{path} cannot be decompressed ({exc}); the download was probably cut short. "
                           f"Fetch it again from {SOURCE_URL}.") from exc
    return raw


def read_ry(path: str | Path) -> RyFrame:
    """Read one RY composite as a rain rate in mm/h on a north-up 900x900 grid.

    Pixels flagged "no data" (outside radar coverage) become 0 mm/h: the models need a value everywhere
    and the MS-RNN data has no mask. Clutter-flagged pixels keep their value, as wradlib returns them.
    """
    path = Path(path)
    from wradlib.io.radolan import read_radolan_composite  # heavy import (xarray, dask): only when reading

    raw = _raw_bytes(path)
    if not raw[:2].isalpha() or b"\x03" not in raw[:2048]:
        raise RadolanError(f"{path} is not a RADOLAN binary composite (no ASCII header ending in ETX); expected "
                           f"an RY file named {FILE_NAME_HINT}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # wradlib warns about non-composite site ids; we check below
            _, attrs = read_radolan_composite(io.BytesIO(raw), loaddata=False)
    except Exception as exc:  # wradlib raises what its parser hits first: the header is damaged
        raise RadolanError(f"{path} has a damaged RADOLAN header ({type(exc).__name__}: {exc}).") from exc
    product = attrs.get("producttype")
    if product != PRODUCT:
        raise RadolanError(
            f"{path} is a RADOLAN {product} composite, not {PRODUCT}: the germany dataset is built from RY "
            f"(5-minute precipitation, 900x900 grid) from {SOURCE_URL}. Remove the other products from --source."
        )
    shape = (attrs.get("nrow"), attrs.get("ncol"))
    if shape != GRID:
        raise RadolanError(f"{path}: the header gives a {shape[0]}x{shape[1]} grid, but RY is {GRID[0]}x{GRID[1]}.")
    interval = attrs.get("intervalseconds")
    if interval != INTERVAL_SECONDS:
        raise RadolanError(f"{path}: the header gives an interval of {interval} s, but RY sums {INTERVAL_SECONDS} s.")
    if "precision" not in attrs:
        raise RadolanError(f"{path}: the header has no precision field (PR), so its values have no unit.")
    try:
        amount, attrs = read_radolan_composite(io.BytesIO(raw), missing=-1)
    except Exception as exc:
        raise RadolanError(f"{path} is truncated or damaged ({type(exc).__name__}: {exc}); fetch it again from "
                           f"{SOURCE_URL}.") from exc
    amount = np.asarray(amount, dtype=np.float64).reshape(GRID)
    missing = amount < 0
    rain = np.where(missing, 0.0, amount) * (3600.0 / INTERVAL_SECONDS)
    # RADOLAN rows run from south to north; images are drawn from the top, so flip to north-up.
    return RyFrame(np.ascontiguousarray(rain[::-1], dtype=np.float32), attrs["datetime"], int(missing.sum()))
