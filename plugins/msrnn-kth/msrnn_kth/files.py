"""The public KTH files: the AVIs ``personNN_<action>_dK_uncomp.avi`` and the optional ``00sequences.txt``.

The sequences file lists, per video, the frame ranges (1-based, inclusive) of its separate runs of the
action, as ``person01_boxing_d1<TAB><TAB>frames<TAB>1-95, 96-185, 186-245, 246-360``; a video it marks
``*missing*`` is not in the public release. Its separators vary (tabs, spaces) and its header is prose,
so lines are matched by pattern and anything else that starts with ``person`` is an error naming the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from msrnn_zoo.validation import with_cli_message

ACTIONS = ("boxing", "handclapping", "handwaving", "jogging", "running", "walking")
SEQUENCES_FILE = "00sequences.txt"
VIDEO = re.compile(r"^person(\d\d)_(" + "|".join(ACTIONS) + r")_d([1-4])_uncomp\.avi$")
_LINE = re.compile(r"^(person\d\d_(?:" + "|".join(ACTIONS) + r")_d[1-4])\s+(frames\s+(.*)|\*missing\*)\s*$")
_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


@dataclass(frozen=True)
class Video:
    """One AVI: where it is and what its name says."""

    path: Path
    person: int
    action: str
    scenario: int

    @property
    def name(self) -> str:
        return f"person{self.person:02d}_{self.action}_d{self.scenario}"


def find_videos(source: Path) -> list[Video]:
    """Every KTH AVI under ``source`` (any depth: the per-action zips unpack into folders or not), by name.

    A file is refused rather than read as its folder: the folder may hold far more than the one video named.
    """
    if source.is_file():
        said = "{} is a file; give the folder holding the KTH AVIs (and 00sequences.txt), e.g. {}: it is searched at " \
               "any depth."
        raise with_cli_message(  # (prepare_dataset reaches it from Python, data prepare from the command line)
            ValueError(said.format(f"source={str(source)!r}", f"source={str(source.parent)!r}")),
            said.format(f"--source {source}", f"--source {source.parent}"))
    videos: dict[str, Video] = {}
    for path in sorted(source.rglob("*.avi")):
        match = VIDEO.match(path.name)
        if not match:
            continue
        video = Video(path, int(match.group(1)), match.group(2), int(match.group(3)))
        if video.name in videos:
            raise ValueError(f"{video.name} is there twice: {videos[video.name].path} and {path}; keep one copy.")
        videos[video.name] = video
    if not videos:
        zips = sorted(p.name for p in source.glob("*.zip"))
        hint = (f" It holds {', '.join(zips[:6])}: unzip them first." if zips else "")
        raise ValueError(f"{source} holds no KTH videos (files named personNN_<action>_dK_uncomp.avi, e.g. "
                         f"person01_boxing_d1_uncomp.avi, from https://www.csc.kth.se/cvap/actions/).{hint}")
    return [videos[name] for name in sorted(videos)]


def find_sequences_file(source: Path) -> Path | None:
    """``00sequences.txt`` under the folder ``source``, if there is one."""
    hits = sorted(source.rglob(SEQUENCES_FILE))
    return hits[0] if hits else None


def read_sequences(path: Path) -> tuple[dict[str, list[tuple[int, int]]], list[str]]:
    """``({video name: [(first, last), ...]}, [names marked *missing*])`` from a sequences file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ValueError(f"{path} cannot be read ({exc}).") from exc
    ranges: dict[str, list[tuple[int, int]]] = {}
    missing: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped.startswith("person"):
            continue  # the prose header and blank lines
        match = _LINE.match(stripped)
        if not match:
            raise ValueError(f"{path}, line {number}: {stripped!r} is not 'personNN_<action>_dK  frames  A-B, C-D, "
                             "...' as in KTH's 00sequences.txt.")
        name = match.group(1)
        if match.group(3) is None:
            missing.append(name)
            continue
        spans = []
        for part in match.group(3).split(","):
            found = _RANGE.match(part.strip())
            if not found or int(found.group(1)) < 1 or int(found.group(1)) > int(found.group(2)):
                raise ValueError(f"{path}, line {number}: frame range {part.strip()!r} of {name} is not FIRST-LAST "
                                 "with 1 <= FIRST <= LAST.")
            spans.append((int(found.group(1)), int(found.group(2))))
        if name in ranges:
            raise ValueError(f"{path}, line {number}: {name} is listed twice.")
        ranges[name] = spans
    if not ranges:
        raise ValueError(f"{path} lists no video's frames; it is not KTH's {SEQUENCES_FILE}.")
    return ranges, missing
