"""KTH's prepared store and the clips each protocol cuts from it.

``prepare`` opens every AVI once to check it and read its length, then decodes each and writes its frames
(up to the last frame any sequence range needs) resized for each protocol into one uint8 array per
protocol (``paper``: 88x88, jogging/running/walking only; ``openstl``: 128x128, all six actions). The
store's meta lists every video: its person, action, frame ranges (from the sequences file, or the whole
video) and where its frames start in each array. A clip is then a slice of a memory-mapped array.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from msrnn_zoo.store import Store, StoreWriter, open_store

from . import files
from .clips import CUTS, clip_starts, persons
from .video import decode_grey, frame_count, resize_linear, to_uint8

NAME = "kth"
PAPER_INTERMEDIATE = (160, 160)
"""The MS-RNN code first stores every frame as a 160x160 PNG (util/kth_preproccess.py), then resizes to 88x88."""


def _resized(frames: np.ndarray, protocol: str) -> np.ndarray:
    size = CUTS[protocol].size
    if protocol == "paper":
        frames = to_uint8(resize_linear(frames, *PAPER_INTERMEDIATE))
    return to_uint8(resize_linear(frames, size, size))


def prepare(source: Path, out: StoreWriter, progress: Callable[[str, int, int], None]) -> None:
    """Raw AVIs (+ optional 00sequences.txt) -> one resized uint8 array per protocol and the video index."""
    videos = files.find_videos(source)
    sequences_path = files.find_sequences_file(source)
    sequences, listed_missing = files.read_sequences(sequences_path) if sequences_path else ({}, [])
    plan = []
    for i, video in enumerate(videos):  # open every file before writing anything: a bad one fails early
        progress("checking AVIs", i, len(videos))
        announced = frame_count(video.path) or len(decode_grey(video.path))  # no count in the header: decode
        ranges = sequences.get(video.name)
        reserved = min(announced, max(last for _, last in ranges)) if ranges else announced
        plan.append((video, announced, ranges, reserved))
    progress("checking AVIs", len(videos), len(videos))
    sizes = {p: sum(r for v, _, _, r in plan if v.action in cut.actions) for p, cut in CUTS.items()}
    arrays = {p: out.create_array(p, (max(n, 1), CUTS[p].size, CUTS[p].size), np.uint8) for p, n in sizes.items()}
    offsets = dict.fromkeys(CUTS, 0)
    index = []
    past_end: list[str] = []  # ranges of the sequences file that run past their video's last frame
    for i, (video, announced, ranges, reserved) in enumerate(plan):
        progress("decoding AVIs", i, len(plan))
        frames = decode_grey(video.path, limit=reserved)
        stored = len(frames)  # fewer than reserved only if the file holds fewer frames than its header says
        entry: dict[str, Any] = {
            "name": video.name, "person": video.person, "action": video.action, "file": video.path.name,
            "announced": announced, "reserved": reserved, "stored": stored,
            "ranges": [[first, min(last, stored)] for first, last in (ranges or [(1, stored)]) if first <= stored],
            "from_sequences": ranges is not None, "offsets": {},
        }
        for protocol, cut in CUTS.items():
            if video.action in cut.actions:
                arrays[protocol][offsets[protocol]:offsets[protocol] + stored] = _resized(frames, protocol)
                entry["offsets"][protocol] = offsets[protocol]
                offsets[protocol] += reserved
        past_end += [f"{video.name} frames {first}-{last} of a video of {stored}" for first, last in ranges or []
                     if last > stored]
        index.append(entry)
    progress("decoding AVIs", len(plan), len(plan))
    for array in arrays.values():
        array.flush()
    out.meta.update({
        "videos": index,
        "sequences_file": sequences_path.name if sequences_path else None,
        "listed_missing": listed_missing,
        "listed_not_found": sorted(set(sequences) - {v.name for v in videos}),
        "not_listed": sorted(v.name for v in videos if sequences and v.name not in sequences),
    })
    if past_end and sequences_path:  # (ranges past the end come only from a sequences file)
        out.meta["notes"] = [f"{len(past_end)} frame range(s) of {sequences_path.name} run past their video's end "
                             f"and were cut at its last frame (dropped where they start after it), e.g. "
                             f"{past_end[0]}."]


class KTHClips(Dataset):
    """Clips (T, 1, S, S) in [0, 1] of one split and protocol, sliced from the memory-mapped frames."""

    def __init__(self, root: Path, split: str, protocol: str) -> None:
        self.root, self.split, self.protocol = Path(root), split, protocol
        cut = CUTS[protocol]
        self.length = cut.length
        store = open_store(root, NAME)
        starts: list[int] = []
        names: list[str] = []
        for video in store.meta["videos"]:
            if video["person"] not in persons(split) or protocol not in video["offsets"]:
                continue
            base = video["offsets"][protocol] - 1  # frame numbers are 1-based
            for first, last in video["ranges"]:
                for start in clip_starts(cut, video["action"], first, last):
                    starts.append(base + start)
                    names.append(video["name"])
        self.starts = np.asarray(starts, dtype=np.int64)
        self.names = names
        self._frames = store.mapped(protocol)

    @property
    def frames(self) -> np.ndarray:
        return self._frames.array

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -len(self) <= index < len(self):
            raise IndexError(f"clip {index} out of range for {len(self)} clips")
        start = int(self.starts[index])
        clip = np.divide(self.frames[start:start + self.length, None], np.float32(255.0), dtype=np.float32)
        return torch.from_numpy(clip)


def make_kth(split: str, root: Path, protocol: str = "paper", **ignored: Any) -> Dataset:
    """The zoo's factory: ``split`` ('train': persons 1-16, 'test': 17-25) of the store, cut by ``protocol``."""
    return KTHClips(root, split, protocol)


def describe(store: Store) -> dict[str, Any]:
    """What ``msrnn-zoo data info kth`` adds: videos per action, frames, what the sequences file covered."""
    videos = store.meta["videos"]
    per_action = Counter(v["action"] for v in videos)
    short = [v["name"] for v in videos if v["stored"] < v["reserved"]]
    described: dict[str, Any] = {
        "videos": f"{len(videos)} ({', '.join(f'{a} {per_action[a]}' for a in files.ACTIONS if per_action[a])})",
        "frames stored per video (sum)": sum(v["stored"] for v in videos),
        "frame ranges": (f"from {store.meta['sequences_file']} ({sum(len(v['ranges']) for v in videos)} runs)"
                         if store.meta["sequences_file"] else "whole videos (no 00sequences.txt under --source)"),
        "stored frames (paper 88x88, openstl 128x128)": [int(store.arrays[p]["shape"][0]) for p in CUTS],
    }
    if store.meta["listed_missing"]:
        described["marked *missing* in the sequences file"] = ", ".join(store.meta["listed_missing"])
    if store.meta["listed_not_found"]:
        described["listed but not under --source"] = ", ".join(store.meta["listed_not_found"])
    if store.meta["not_listed"]:
        described["not in the sequences file (whole video used)"] = ", ".join(store.meta["not_listed"])
    if short:
        described["decoded fewer frames than their header announces"] = ", ".join(short)
    if store.meta.get("notes"):
        described["notes"] = " ".join(store.meta["notes"])
    return described
