"""The germany dataset read from its prepared store, and the statistics ``msrnn-zoo data info`` shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from msrnn_zoo.store import Store, open_store, prepare_call
from msrnn_zoo.validation import with_cli_message

from .clips import RadarClips, paper_clips
from .prepare import FRAMES, STORE_VERSION, TIMES
from .scaling import unit_to_rain

NAME = "germany"
NO_OPENSTL = ("not offered: OpenSTL has no German radar benchmark and the field has no standard split of the DWD "
              "RADOLAN archive, so there is no 'field's usual setting' to reproduce; use 'paper' (the MS-RNN code's)")
STATS_SAMPLE = 512
"""Frames read for the statistics of ``data info``: evenly spread, so a 19 GB store is described in seconds."""


def _check_store(store: Store) -> None:
    version = store.meta.get("version")
    if version != STORE_VERSION or "splits" not in store.meta:
        said = (f"The germany store at {store.root} was written by another version of msrnn-germany (store version "
                f"{version!r}, this one reads {STORE_VERSION}); rebuild it with ")
        raise with_cli_message(  # (load_dataset reaches it from Python, train and data info from the command line)
            ValueError(f"{said}`{prepare_call(NAME, store.root, force=True)}`."),
            f"{said}`msrnn-zoo data prepare germany --source RAW_FILES --root {store.root} --force`.")


def make_germany(split: str, *, root: str | Path, download: bool = False, protocol: str = "paper",
                 **ignored: Any) -> Dataset:
    """One split of the prepared store at ``root``: clips ``(10, 1, 124, 124)`` float32 in [0, 1].

    The standard arguments it does not use arrive through ``**ignored`` (its ``DatasetInfo`` declares no other
    options, so ``load_dataset`` refuses a stray one by name); ``download`` is refused because DWD's archive is
    fetched by hand. This factory is public (``msrnn_germany.make_germany``), so a direct call still gets its
    protocol checked, against ``INFO`` as ``load_dataset`` checks it; ``root`` is required (the zoo always passes
    the resolved one).
    """
    from .plugin import INFO  # here, not at the top: plugin.py imports this module

    try:
        INFO.protocol(protocol)
    except ValueError as exc:
        raise ValueError(f"{exc} OpenSTL: {NO_OPENSTL}.") from None
    if download:
        said = ("germany cannot download its data: fetch DWD RADOLAN RY files (opendata.dwd.de) or the MS-RNN PNG "
                "folders yourself, then ")
        raise with_cli_message(ValueError(f"{said}prepare them: `{prepare_call(NAME, 'STORE', source='FOLDER')}`."),
                               f"{said}run `msrnn-zoo data prepare germany --source FOLDER --root STORE`.")
    store = open_store(root, NAME)
    _check_store(store)
    if split not in store.meta["splits"]:
        raise ValueError(f"The germany store at {store.root} has no {split!r} split; it has "
                         f"{', '.join(store.meta['splits'])}.")
    times = store.array(TIMES) if TIMES in store.arrays else None
    index = paper_clips(store.meta, times, split)
    return RadarClips(store.mapped(FRAMES), index, name=f"germany/{protocol}/{split}")


def _utc(seconds: int) -> str:
    return np.datetime_as_string(np.datetime64(int(seconds), "s"), unit="m") + " UTC"


def describe(store: Store) -> dict[str, Any]:
    """Frames per split, how they were split, and rain statistics of an even sample of frames."""
    _check_store(store)
    meta = store.meta
    frames = store.array(FRAMES)
    stats: dict[str, Any] = {
        "raw files": "MS-RNN PNG folders" if meta["kind"] == "png" else "DWD RADOLAN RY composites",
        "prepared from": meta.get("source", "?"),
        "split rule": meta["split_rule"],
        "frames per split": {s: r["count"] for s, r in meta["splits"].items()},
        "stored values": meta["values"],
        "openstl protocol": NO_OPENSTL,
    }
    if meta.get("skipped"):
        stats["files left out"] = meta["skipped"]
    if TIMES in store.arrays:
        times = store.array(TIMES)
        stats["time range"] = {s: f"{_utc(times[r['start']])} .. {_utc(times[r['start'] + r['count'] - 1])}"
                               for s, r in meta["splits"].items() if r["count"]}
        stats["no-data pixels"] = f"{meta.get('nodata_pixels', 0)} ({meta.get('nodata_note', '')})"
    if len(frames):
        picks = np.unique(np.linspace(0, len(frames) - 1, num=min(STATS_SAMPLE, len(frames))).round().astype(int))
        sample = np.asarray(frames[picks], dtype=np.float64)
        pixels = sample / 255.0 if frames.dtype == np.uint8 else sample
        rain = unit_to_rain(pixels)
        stats[f"pixel stats ({len(picks)} of {len(frames)} frames)"] = {
            "mean pixel": round(float(pixels.mean()), 4),
            "mean rain mm/h": round(float(rain.mean()), 4),
            "wet (>= 0.5 mm/h)": f"{float((rain >= 0.5).mean()):.2%}",
            "max rain mm/h": round(float(rain.max()), 2),
        }
    return stats
