"""One plugin manager for the whole zoo, fed by the ``msrnn_zoo`` entry-point group.

Plugins are loaded one by one so that a plugin which fails to import, or whose hook raises, is
recorded with its error (``msrnn-zoo plugins`` shows it) and never takes the others down with it.
"""

from __future__ import annotations

import importlib.metadata
import traceback
from dataclasses import dataclass, field

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "msrnn_zoo"

pm = pluggy.PluginManager("msrnn_zoo")
pm.add_hookspecs(hookspecs)


@dataclass
class PluginRecord:
    """What one plugin is and what became of it: shown by ``msrnn-zoo plugins``."""

    name: str
    distribution: str | None = None
    version: str | None = None
    cells: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    error: str | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


_records: dict[str, PluginRecord] = {}
_entry_points_loaded = False


def load_entry_points() -> None:
    """Import every entry point of the group once; a failing import becomes a record, not an exception."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        record = PluginRecord(
            name=ep.name,
            distribution=dist.metadata["Name"] if dist is not None else None,
            version=dist.version if dist is not None else None,
        )
        _records[ep.name] = record
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a broken third-party plugin must not break the zoo
            record.error = f"{type(exc).__name__}: {exc}"
            record.detail = traceback.format_exc()


def record_for(plugin_name: str) -> PluginRecord:
    """The record of a plugin, creating one for plugins registered directly (tests, notebooks)."""
    if plugin_name not in _records:
        _records[plugin_name] = PluginRecord(name=plugin_name)
    return _records[plugin_name]


def records() -> list[PluginRecord]:
    """Every plugin known so far, loaded or failed, in a stable order."""
    load_entry_points()
    for name, _plugin in pm.list_name_plugin():
        record_for(name)
    return sorted(_records.values(), key=lambda r: r.name)


def forget(plugin_name: str) -> None:
    """Drop the record of a plugin that was unregistered (used by tests and interactive sessions)."""
    _records.pop(plugin_name, None)
