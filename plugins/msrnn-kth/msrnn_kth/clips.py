"""How each protocol cuts clips from one run of frames: pure functions of frame numbers, shared by the
dataset and by ``count_clips.py`` (which counts the clips of the full public data from the sequences file).

Frame numbers are 1-based and ranges inclusive, as in ``00sequences.txt``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .files import ACTIONS


@dataclass(frozen=True)
class Cut:
    """One protocol's clip geometry and which actions it reads."""

    length: int
    size: int
    actions: tuple[str, ...]
    strides: dict[str, int]
    from_end: bool
    """Clips aligned to the end of each run (OpenSTL scans each video backwards) or to its start (MS-RNN)."""


CUTS = {
    # MS-RNN util/load_kth_only_run.py (config.py kth_only_run = True): jogging, running, walking; a clip starts
    # every 3 frames for running and every 10 for jogging and walking, in both splits.
    "paper": Cut(length=20, size=88, actions=("jogging", "running", "walking"),
                 strides={"running": 3, "jogging": 10, "walking": 10}, from_end=False),
    # OpenSTL openstl/datasets/dataloader_kth.py: all six actions; jogging and running every 3 frames, the others
    # back to back (a clip every 30 frames), scanning each video from its last frame.
    "openstl": Cut(length=30, size=128, actions=ACTIONS,
                   strides={"jogging": 3, "running": 3, "boxing": 30, "handclapping": 30, "handwaving": 30,
                            "walking": 30}, from_end=True),
}
TRAIN_PERSONS = range(1, 17)
TEST_PERSONS = range(17, 26)


def persons(split: str) -> range:
    return TRAIN_PERSONS if split == "train" else TEST_PERSONS


def clip_starts(cut: Cut, action: str, first: int, last: int) -> list[int]:
    """First frame numbers of the clips ``cut`` takes from frames ``first..last`` of a video of ``action``."""
    length, stride = cut.length, cut.strides[action]
    if last - first + 1 < length:
        return []
    if cut.from_end:
        return sorted(range(last - length + 1, first - 1, -stride))
    return list(range(first, last - length + 2, stride))
