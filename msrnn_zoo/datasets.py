"""Opening registered datasets by name, with their defaults filled in; preparing and describing their stores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from .data import ClipProtocol, ProgressFn, default_root
from .registry import DatasetEntry, get_dataset
from .store import Store, open_store, prepare_store, scaling_params
from .validation import with_cli_message


def resolve_root(entry: DatasetEntry, root: str | Path | None) -> Path:
    """Where a dataset's data lives: ``root`` as given, else under ``$MSRNN_ZOO_DATA``.

    A dataset with a ``prepare`` capability reads one store, so its default is its own folder
    ``<data root>/<name>``; the others get the data root and keep their own layout below it.
    """
    if root is not None:
        return Path(root).expanduser()
    base = default_root()
    return base / entry.info.name if entry.capabilities.prepare is not None else base


def check_split(entry: DatasetEntry, protocol: ClipProtocol, split: str) -> None:
    if split not in protocol.splits:
        raise ValueError(f"{entry.info.name}/{protocol.name} has no {split!r} split; its splits: "
                         f"{', '.join(protocol.splits)}.")


def check_source(entry: DatasetEntry, source: str | None) -> str | None:
    """The source to read (the dataset's default if ``source`` is ``None``), or a ``ValueError`` naming the ones
    it has: asked once, before a loop over splits that would otherwise meet the same mistake in each."""
    info = entry.info
    if info.sources:
        source = source or info.default_source
        if source not in info.sources:
            raise ValueError(f"Dataset {info.name!r} has no source {source!r}; its sources: "
                             f"{', '.join(info.sources)}.")
    elif source is not None:
        said = f"Dataset {info.name!r} has no named sources; it reads the store at "
        raise with_cli_message(ValueError(f"{said}root= (leave source= out)."), f"{said}--root (leave --source out).")
    return source


def load_dataset(name: str, split: str = "train", source: str | None = None, root: str | Path | None = None,
                 download: bool = False, protocol: str | None = None, **options: Any) -> Dataset:
    """Open ``split`` of dataset ``name`` cut by ``protocol`` (its default if not given).

    ``root`` is the prepared store for datasets built by ``msrnn-zoo data prepare``, the data root for the
    others; ``source`` picks one of a dataset's named sources (its default if not given).
    """
    entry = get_dataset(name)
    info = entry.info
    clip_protocol = info.protocol(protocol)
    check_split(entry, clip_protocol, split)
    source = check_source(entry, source)
    unknown = sorted(set(options) - set(info.options)) if info.options is not None else []
    if unknown:
        raise ValueError(f"Dataset {name!r} has no option {', '.join(map(repr, unknown))}; its options: "
                         f"{', '.join(info.options or ()) or 'none'} (besides split, source, root, download and "
                         "protocol).")
    return entry.factory(split=split, source=source, root=resolve_root(entry, root), download=download,
                         protocol=clip_protocol.name, **options)


def prepare_dataset(name: str, source: str | Path, root: str | Path | None = None, *, force: bool = False,
                    progress: ProgressFn | None = None) -> Store:
    """Decode a dataset's raw public files under ``source`` once, into a memory-mapped store at ``root``."""
    entry = get_dataset(name)
    prepare = entry.capabilities.prepare
    if prepare is None:
        said = f"Dataset {name!r} reads its files as they are and has no prepare step; fetch them with "
        raise with_cli_message(ValueError(f"{said}load_dataset({name!r}, download=True) if it has public files."),
                               f"{said}`msrnn-zoo download {name}` if it has public files.")
    source = Path(source).expanduser()
    if not source.exists():
        said = (f"No raw {name} files at {source}: {{}} must be the folder holding the public files you downloaded "
                "(see the dataset plugin's README).")
        raise with_cli_message(FileNotFoundError(said.format("source=")), said.format("--source"))
    if source.resolve() == Path(source.resolve().anchor):  # the plugins search their source's whole tree
        said = (f" is the root of the file system: prepare would search every file on the disk for raw {name} "
                "files. Give the folder that holds them (see the dataset plugin's README).")
        raise with_cli_message(ValueError(f"source={str(source)!r}{said}"), f"--source {source}{said}")
    report = progress or (lambda task, done, total: None)
    return prepare_store(resolve_root(entry, root), name, lambda out: prepare(source, out, report), force=force)


def to_physical(name: str, root: str | Path | None = None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The dataset's inverse scaling bound to the parameters its store recorded, or ``None``."""
    entry = get_dataset(name)
    scaling = entry.info.scaling
    if scaling is None:
        return None
    params = scaling_params(resolve_root(entry, root)) if entry.capabilities.prepare is not None else {}
    return lambda values: scaling.inverse(values, params)


def describe_dataset(name: str, root: str | Path | None = None, source: str | None = None,
                     explain: Callable[[Exception], str] = str) -> dict[str, Any]:
    """What ``msrnn-zoo data info`` shows: protocols, clips per split and protocol, the plugin's statistics.

    ``explain`` words why a split is unavailable: a Python caller reads the refusal's Python spelling (``str``), and
    ``data info`` passes ``validation.cli_text``, so that its user is not told to call ``prepare_dataset``."""
    entry = get_dataset(name)
    info = entry.info
    check_source(entry, source)  # a mistake of the user's, not a split that is unavailable (once per split)
    store = None
    if entry.capabilities.prepare is not None:
        store = open_store(resolve_root(entry, root), name)  # one clear error before any split is tried
    clips: dict[str, dict[str, int | str]] = {}
    for protocol in info.protocols:
        clips[protocol.name] = {}
        for split in protocol.splits:
            try:
                dataset = load_dataset(name, split=split, source=source, root=root, protocol=protocol.name)
                clips[protocol.name][split] = len(dataset)  # type: ignore[arg-type]
            except (ValueError, FileNotFoundError) as exc:
                clips[protocol.name][split] = f"unavailable: {explain(exc)}"
    described = {
        "name": info.name,
        "description": info.description,
        "url": info.url,
        "license": info.license,
        "citation": info.citation,
        "root": str(resolve_root(entry, root).resolve()),
        "default_protocol": info.default_protocol,
        "protocols": {p.name: p.to_dict() for p in info.protocols},
        "clips": clips,
        "unit": info.scaling.unit if info.scaling else None,
        "scaling": info.scaling.description if info.scaling else None,
        "baselines": sorted(entry.capabilities.baselines),
        "scores": entry.capabilities.scores is not None,
    }
    if entry.capabilities.describe is not None and store is not None:
        described["stats"] = entry.capabilities.describe(store)
    return described
