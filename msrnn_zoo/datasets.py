"""Opening registered datasets by name, with their defaults filled in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from .data import SPLITS, default_root
from .registry import get_dataset


def load_dataset(name: str, split: str = "train", source: str | None = None, root: str | Path | None = None,
                 download: bool = False, **options: Any) -> Dataset:
    """Open ``split`` of dataset ``name`` from ``source`` (its default if not given)."""
    entry = get_dataset(name)
    info = entry.info
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r} for {name!r}; expected one of {', '.join(SPLITS)}.")
    source = source or info.default_source
    if source not in info.sources:
        raise ValueError(f"Dataset {name!r} has no source {source!r}; its sources: {', '.join(info.sources)}.")
    return entry.factory(split=split, source=source, root=Path(root) if root else default_root(),
                         download=download, **options)
