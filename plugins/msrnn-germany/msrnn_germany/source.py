"""What ``prepare`` accepts as raw input, found and ordered before anything is decoded.

Two kinds of raw files, in two arrangements:

``train/``, ``test/`` (and optionally ``val/``) folders
    The MS-RNN layout: each folder holds integer-named grayscale PNGs (``0.png``, ``1.png``, ...), pixel
    ``(dBZ + 10) / 70`` in 0..255, one every 5 minutes, in the order of their numbers. The same folders may
    instead hold DWD RADOLAN RY files, so you can choose the split of your own RY download. Without
    ``val/``, validation uses ``test/``, as the MS-RNN code does.
one folder of RY files (searched recursively)
    Split by year as the MS-RNN code's DWD loader does: 2006-2014 train, 2015 val, 2016-2017 test.
    Files of other years are counted and left out.

A file's time comes from its DWD name here, so splits are known before decoding; reading checks that the
header agrees. Every problem is one error naming the file or folder and what was expected.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from msrnn_zoo.validation import with_cli_message

from .radolan import FILE_NAME, FILE_NAME_HINT

SPLIT_FOLDERS = ("train", "val", "test")
PNG_NAME = re.compile(r"^\d+\.png$", re.IGNORECASE)
PNG_HINT = "integer-named grayscale PNGs (0.png, 1.png, ...) as in the MS-RNN Germany data"
PAPER_YEARS = {"train": range(2006, 2015), "val": range(2015, 2016), "test": range(2016, 2018)}
"""The MS-RNN code's DWD split (util/load_DWD.py): train 2006-2014, val 2015, test 2016-2017."""


class SourceError(ValueError):
    """Raw input that cannot be prepared; the message names the file or folder and what was expected."""


@dataclass(frozen=True)
class RawFile:
    path: Path
    time: dt.datetime | None = None
    """UTC end of the 5 minutes, from a RADOLAN file's name; ``None`` for PNGs (only their order is known)."""


@dataclass
class RawSource:
    """The raw files of each split in time order, their kind, and how the splits were chosen."""

    kind: str
    """``png`` or ``radolan``."""
    splits: dict[str, list[RawFile]]
    split_rule: str
    shared: dict[str, str] = field(default_factory=dict)
    """Splits that reuse another split's frames, e.g. ``{"val": "test"}`` (the MS-RNN code's choice)."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Files left out, by reason."""

    @property
    def files(self) -> list[RawFile]:
        return [f for split in SPLIT_FOLDERS if split not in self.shared for f in self.splits.get(split, [])]


def radolan_time(name: str) -> dt.datetime:
    """The time in a DWD RADOLAN file name (``YYMMDDhhmm``, UTC; years 2000-2099)."""
    match = FILE_NAME.match(name)
    if match is None:
        raise SourceError(f"{name} is not named like a DWD RADOLAN file ({FILE_NAME_HINT}).")
    try:
        return dt.datetime.strptime(match["stamp"], "%y%m%d%H%M")
    except ValueError as exc:
        raise SourceError(f"{name}: {match['stamp']} is not a valid YYMMDDhhmm time ({exc}).") from exc


def _visible(paths: Iterable[Path]) -> list[Path]:
    return [p for p in paths if p.is_file() and not p.name.startswith(".")]


def _folder_files(folder: Path) -> tuple[str, list[RawFile]]:
    """The kind and the ordered raw files of one split folder."""
    pngs = [p for p in _visible(folder.iterdir()) if PNG_NAME.match(p.name)]
    ry = [p for p in _visible(folder.rglob("*")) if FILE_NAME.match(p.name)]
    if pngs and ry:
        raise SourceError(f"{folder} mixes PNGs and RADOLAN files; keep one kind of raw file per source.")
    if pngs:
        ordered = sorted(pngs, key=lambda p: (int(p.stem), p.name))
        for before, after in itertools.pairwise(ordered):  # 7.png and 007.png: which comes first is a guess
            if int(before.stem) == int(after.stem):
                raise SourceError(f"{before} and {after} hold the same frame number ({int(after.stem)}); keep one "
                                  "of them: the number orders the frames.")
        return "png", [RawFile(p) for p in ordered]
    if ry:
        return "radolan", _ordered_radolan(ry)
    raise SourceError(f"{folder} holds no files of the expected names: {PNG_HINT}, or DWD RADOLAN RY files named "
                      f"{FILE_NAME_HINT}.")


def _ordered_radolan(paths: list[Path]) -> list[RawFile]:
    files = sorted((RawFile(p, radolan_time(p.name)) for p in paths), key=lambda f: (f.time, str(f.path)))
    for before, after in itertools.pairwise(files):
        if before.time == after.time:
            raise SourceError(f"{before.path} and {after.path} hold the same time ({after.time:%Y-%m-%d %H:%M} UTC); "
                              "keep one of them (e.g. the .bz2 or its unpacked copy, not both).")
    return files


def scan(source: str | Path) -> RawSource:
    """Find the raw files under ``source`` and decide the splits; no file is decoded yet."""
    source = Path(source).expanduser()
    if not source.is_dir():
        said = (" is not a folder: give the folder holding train/ and test/ of the MS-RNN Germany PNGs, or your DWD "
                "RADOLAN RY files.")  # (prepare_dataset reaches it from Python, data prepare from the command line)
        raise with_cli_message(SourceError(f"source={str(source)!r}{said}"), f"--source {source}{said}")
    folders = {name: source / name for name in SPLIT_FOLDERS if (source / name).is_dir()}
    if folders:
        return _scan_split_folders(source, folders)
    return _scan_by_year(source)


def _scan_split_folders(source: Path, folders: dict[str, Path]) -> RawSource:
    missing = [name for name in ("train", "test") if name not in folders]
    if missing:
        raise SourceError(f"{source} has {', '.join(f'{n}/' for n in folders)} but no "
                          f"{' or '.join(f'{n}/' for n in missing)}: the MS-RNN layout needs train/ and test/ "
                          "(val/ is optional).")
    kinds, splits = {}, {}
    for name, folder in folders.items():
        kinds[name], splits[name] = _folder_files(folder)
    if len(set(kinds.values())) > 1:
        shown = ", ".join(f"{name}/ {kind}" for name, kind in kinds.items())
        raise SourceError(f"{source}: the split folders hold different kinds of raw files ({shown}); use one kind.")
    shared = {} if "val" in folders else {"val": "test"}
    if shared:
        splits["val"] = splits["test"]
    rule = "train/, val/ and test/ folders" if not shared else "train/ and test/ folders; val is test, as MS-RNN"
    return RawSource(next(iter(kinds.values())), splits, rule, shared)


def _scan_by_year(source: Path) -> RawSource:
    ry = [p for p in _visible(source.rglob("*")) if FILE_NAME.match(p.name)]
    if not ry:
        pngs = [p for p in _visible(source.iterdir()) if PNG_NAME.match(p.name)]
        hint = (f" It holds {len(pngs)} integer-named PNGs directly: the MS-RNN layout keeps them in train/ and "
                "test/ folders." if pngs else "")
        raise SourceError(f"{source} holds no files of the expected names: DWD RADOLAN RY files named "
                          f"{FILE_NAME_HINT}, or train/ and test/ folders of {PNG_HINT}.{hint}")
    files = _ordered_radolan(ry)
    splits: dict[str, list[RawFile]] = {name: [] for name in SPLIT_FOLDERS}
    outside = 0
    for raw in files:
        split = next((name for name, years in PAPER_YEARS.items() if raw.time and raw.time.year in years), None)
        if split is None:
            outside += 1
        else:
            splits[split].append(raw)
    empty = [name for name in SPLIT_FOLDERS if not splits[name]]
    if empty:
        years = ", ".join(f"{name} {min(y)}-{max(y)}" if len(y) > 1 else f"{name} {min(y)}"
                          for name, y in PAPER_YEARS.items())
        said = (f"{source}: no RY file falls in the {', '.join(empty)} years of the MS-RNN split ({years}); "
                f"{outside} of {len(files)} files lie outside those years. To split other years, put the files "
                "in train/, val/ and test/ folders under {}.")
        raise with_cli_message(SourceError(said.replace("{}", "the source folder")), said.replace("{}", "--source"))
    skipped = {"outside the paper's years 2006-2017": outside} if outside else {}
    return RawSource("radolan", splits, "by year, as the MS-RNN code: train 2006-2014, val 2015, test 2016-2017",
                     {}, skipped)
