"""Writers of the real raw formats: DWD RADOLAN RY composites and MS-RNN Germany PNG folders.

The RY writer follows DWD's RADOLAN composite format: an ASCII header (product, day/time, site 10000,
month/year, ``BY`` total bytes, ``VS`` format version, ``SW`` software, ``PR`` precision, ``INT`` minutes,
``GP`` grid, ``MF`` module flags, ``MS`` radar sites) closed by ETX (0x03), then one little-endian
uint16 per pixel, rows from south to north: 12 bits of value in units of the precision, and flag bits
0x1000 (secondary data), 0x2000 (no data), 0x4000 (negative), 0x8000 (clutter).
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

SITES = "<boo,ros,emd,hnr,umd,pro,ess,fld,drs,neu,nhb,oft,eis,tur,isn,fbg,mem>"
NODATA = 0x2000 | 2500
"""How DWD writes a pixel without measurement: the no-data bit over the value 2500."""


def ry_bytes(amount: np.ndarray, time: dt.datetime, *, product: str = "RY", precision: int = 2, interval: int = 5,
             nodata: np.ndarray | None = None, clutter: np.ndarray | None = None,
             secondary: np.ndarray | None = None) -> bytes:
    """A RADOLAN composite of ``amount`` (north-up, mm per interval) with a real header."""
    amount = np.asarray(amount, dtype=np.float64)
    nrow, ncol = amount.shape
    raw = np.rint(amount * 10**precision).astype(np.int64)
    if raw.min() < 0 or raw.max() > 0xFFF:
        raise ValueError("RADOLAN values are 12 bits: 0..4095 steps of the precision")
    raw = raw.astype(np.uint16)
    if secondary is not None:
        raw[secondary] |= 0x1000
    if clutter is not None:
        raw[clutter] |= 0x8000
    if nodata is not None:
        raw[nodata] = NODATA
    data = np.ascontiguousarray(raw[::-1]).astype("<u2").tobytes()  # first row written is the southernmost

    def header(total: int) -> str:
        return (f"{product}{time:%d%H%M}10000{time:%m%y}BY{total:7d}VS 3SW   2.28.1PR E-{precision:02d}"
                f"INT{interval:4d}GP{nrow:4d}x{ncol:4d}MF 00000002MS{len(SITES):3d}{SITES}")

    size = len(header(0)) + 1 + len(data)
    return header(size).encode("ascii") + b"\x03" + data


def ry_name(time: dt.datetime, product: str = "ry", suffix: str = "") -> str:
    return f"raa01-{product}_10000-{time:%y%m%d%H%M}-dwd---bin{suffix}"


def write_ry(folder: Path, time: dt.datetime, amount: np.ndarray, *, compress: str = "", name: str | None = None,
             **kwargs: object) -> Path:
    """Write one RY file under DWD's name into ``folder``; ``compress`` is "", "bz2" or "gz"."""
    payload = ry_bytes(amount, time, **kwargs)  # type: ignore[arg-type]
    if compress == "bz2":
        payload = bz2.compress(payload)
    elif compress == "gz":
        payload = gzip.compress(payload)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or ry_name(time, suffix=f".{compress}" if compress else ""))
    path.write_bytes(payload)
    return path


def rain_field(seed: int, shape: tuple[int, int] = (900, 900)) -> np.ndarray:
    """A north-up field of 5-minute amounts (mm) with a dry background and a few rain cells.

    Drawn on a grid ten times coarser and repeated, so a full 900x900 field costs milliseconds.
    """
    rng = np.random.default_rng(seed)
    coarse = (-(-shape[0] // 10), -(-shape[1] // 10))
    yy, xx = np.mgrid[0:coarse[0], 0:coarse[1]]
    field = np.zeros(coarse)
    for _ in range(3):
        cy, cx = rng.uniform(0, coarse[0]), rng.uniform(0, coarse[1])
        peak, radius = rng.uniform(0.1, 3.0), rng.uniform(2, 12)
        field += peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
    field = np.repeat(np.repeat(field, 10, axis=0), 10, axis=1)[: shape[0], : shape[1]]
    return np.round(np.where(field < 0.01, 0.0, field), 2)


def write_ry_series(folder: Path, start: dt.datetime, count: int, *, step_minutes: int = 30,
                    shape: tuple[int, int] = (900, 900), seed: int = 0, compress: str = "") -> list[Path]:
    """``count`` RY files ``step_minutes`` apart (30: only the frames the paper protocol keeps)."""
    return [write_ry(folder, start + dt.timedelta(minutes=step_minutes * i), rain_field(seed + i, shape),
                     compress=compress) for i in range(count)]


def write_pngs(folder: Path, frames: Iterable[np.ndarray], first: int = 0) -> list[Path]:
    """Integer-named grayscale PNGs ``first.png, first+1.png, ...`` as in the MS-RNN Germany data."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames, start=first):
        path = folder / f"{i}.png"
        Image.fromarray(np.asarray(frame, dtype=np.uint8), mode="L").save(path)
        paths.append(path)
    return paths


def numbered_frames(count: int, size: int = 124) -> list[np.ndarray]:
    """Frames whose value encodes their number (``n % 251``), so tests can see which file a clip used."""
    return [np.full((size, size), n % 251, dtype=np.uint8) for n in range(count)]
