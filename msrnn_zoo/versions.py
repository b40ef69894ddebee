"""Which versions of the zoo and of its plugins wrote a file, and what to say when they are newer than this one.

Weights on the Hub and runs on disk outlive the zoo that wrote them: a ``config.json``, a run or a store written by
a newer msrnn-zoo (or a newer cell or dataset plugin) is read by an older one, which does not know the keys, options
or values added since. Every file the zoo writes for others to read records, under :data:`WRITTEN_BY`, the
distributions that wrote it and their versions (as ``transformers_version`` in a ``transformers`` config.json). A
reader that refuses something in such a file adds :func:`upgrade_note`: which versions wrote it, which are installed,
and the ``pip install -U`` that brings what is needed; "not an msrnn-zoo model config" sent users hunting. A file
without the key (written before it existed) or written by the same or an older version reads as it always did.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Iterator
from typing import Any

WRITTEN_BY = "written_by"
"""The key of a written JSON object (beside its fields, never one of them): ``{distribution: version}``, msrnn-zoo's
first, then the plugin distributions that provided the cell or dataset."""

ZOO = "msrnn-zoo"


def installed_version(distribution: str) -> str | None:
    """The version of ``distribution`` installed here, None if it is not installed (msrnn-zoo's is
    ``msrnn_zoo.__version__``, so that an editable checkout reports its own)."""
    if distribution == ZOO:
        from . import __version__

        return __version__
    try:
        return importlib.metadata.version(distribution)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def _plugin_of(kind: str, name: str | None) -> tuple[str, str] | None:
    """The distribution (and its version) that registered the cell or dataset ``name``: None when a plugin was
    registered directly (tests, notebooks) or the name is unknown."""
    if name is None:
        return None
    from .plugins import _records
    from .registry import registry

    entry = getattr(registry(), kind).get(name)
    record = _records.get(entry.plugin) if entry is not None else None
    if record is None or not record.distribution or not record.version:
        return None
    return record.distribution, record.version


def written_by(*, cell: str | None = None, dataset: str | None = None) -> dict[str, str]:
    """What a file records under :data:`WRITTEN_BY`: this zoo's version and that of the plugin distribution of
    ``cell`` and of ``dataset`` where one provided it."""
    versions = {ZOO: str(installed_version(ZOO))}
    for kind, name in (("cells", cell), ("datasets", dataset)):
        plugin = _plugin_of(kind, name)
        if plugin is not None:
            versions.setdefault(plugin[0], plugin[1])
    return versions


def without_written_by(data: Any) -> Any:
    """``data`` without the :data:`WRITTEN_BY` key (a copy; anything other than a dict as it is)."""
    if not isinstance(data, dict) or WRITTEN_BY not in data:
        return data
    return {key: value for key, value in data.items() if key != WRITTEN_BY}


def _is_newer(recorded: str, installed: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(recorded) > Version(installed)
    except InvalidVersion:  # no version packaging can read: claim nothing
        return False


def newer_writers(data: Any) -> list[tuple[str, str, str]]:
    """``(distribution, version that wrote data, version installed here)`` for each writer of ``data`` newer than
    what is installed; a writer that is not installed here is left out (the error about it says to install it)."""
    recorded = data.get(WRITTEN_BY) if isinstance(data, dict) else None
    if not isinstance(recorded, dict):
        return []
    newer = []
    for distribution, version in recorded.items():
        installed = installed_version(str(distribution))
        if isinstance(version, str) and installed is not None and _is_newer(version, installed):
            newer.append((str(distribution), version, installed))
    return newer


def absent_note(data: Any) -> str:
    """A sentence to add to an error about what ``data`` holds, naming the distributions that wrote it and are not
    installed here (else ''): a cell unknown here most likely came from one of them. It names them and no command:
    the name comes from someone else's file, and a crafted one would have the zoo advise installing any package."""
    recorded = data.get(WRITTEN_BY) if isinstance(data, dict) else None
    if not isinstance(recorded, dict):
        return ""
    absent = [f"{dist!r} {version!r}" for dist, version in recorded.items()
              if str(dist) != ZOO and installed_version(str(dist)) is None]
    if not absent:
        return ""
    return (f" The file records that it was written with {', '.join(absent)}, which is not installed here: most "
            "likely the plugin its cell comes from. Find where that is published (the model's card, its author) "
            "before installing anything of that name.")


def upgrade_note(data: Any) -> str:
    """A sentence to add to an error about what ``data`` holds, when newer versions than those installed wrote it
    (else ''): the keys, options or values refused are most likely ones they added."""
    newer = newer_writers(data)
    if not newer:
        return ""
    wrote = ", ".join(f"{dist} {version}" for dist, version, _ in newer)
    have = ", ".join(f"{dist} {installed}" for dist, _, installed in newer)
    return (f" It was written by {wrote}, newer than the {have} installed here, which does not know everything "
            f"that version writes: upgrade with `pip install -U {' '.join(dist for dist, _, _ in newer)}`.")


@contextlib.contextmanager
def upgrade_noted(data: Any) -> Iterator[None]:
    """Within it, a ``ValueError`` about what ``data`` holds gets :func:`upgrade_note` added where newer versions
    wrote ``data``: the readers of a model config, a run's config and a run's cell options say it alike."""
    try:
        yield
    except ValueError as exc:
        note = upgrade_note(data)
        if not note:
            raise
        raise ValueError(f"{exc}{note}") from exc
