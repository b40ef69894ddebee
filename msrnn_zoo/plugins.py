"""One plugin manager for the whole zoo, fed by the ``msrnn_zoo`` entry-point group.

Plugins are loaded one by one so that a plugin which fails to import, or whose hook raises, is
recorded with its error (``msrnn-zoo plugins`` shows it) and never takes the others down with it.

Names are first come, first served, in an order that does not depend on how or when anything was
installed: the distributions released with the zoo (:data:`BUILTIN_DISTRIBUTIONS`) first, then every other
distribution sorted by name, then plugins registered at run time (tests, notebooks) in registration order.
So a built-in cell can never be replaced, and a clash is reported on both sides, never resolved by
silently dropping one. Every entry point is its own record, keyed by distribution and entry-point name,
so two distributions that happen to pick the same entry-point name both load and both show.
"""

from __future__ import annotations

import importlib.metadata
import re
import traceback
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "msrnn_zoo"

BUILTIN_DISTRIBUTIONS: tuple[str, ...] = (
    "msrnn-convlstm",
    "msrnn-germany",
    "msrnn-kth",
    "msrnn-mim",
    "msrnn-motionrnn",
    "msrnn-moving-mnist",
    "msrnn-preciplstm",
    "msrnn-predrnn",
    "msrnn-predrnn-pp",
    "msrnn-predrnn-v2",
    "msrnn-taxibj",
    "msrnn-trajgru",
)
"""The plugin distributions released with the zoo (``plugins/`` of its repository, kept equal by a test):
their names come first, so no other distribution can take them."""

pm = pluggy.PluginManager("msrnn_zoo")
pm.add_hookspecs(hookspecs)


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Msrnn_ConvLSTM`` == ``msrnn-convlstm``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


_BUILTIN = frozenset(normalize(n) for n in BUILTIN_DISTRIBUTIONS)


@dataclass
class PluginRecord:
    """What one plugin is and what became of it: shown by ``msrnn-zoo plugins``."""

    name: str
    distribution: str | None = None
    version: str | None = None
    cells: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    error: str | None = None
    detail: str | None = None
    key: str = ""
    """The plugin's name in the plugin manager: the entry-point name, or ``name@distribution`` when an
    earlier distribution already uses that entry-point name."""
    builtin: bool = False
    rank: tuple[Any, ...] = ()
    conflicts: list[str] = field(default_factory=list)
    """Names this plugin asked for that another plugin holds (or that another asked for and this one holds)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def __post_init__(self) -> None:
        self.key = self.key or self.name


_records: dict[str, PluginRecord] = {}
_seen: set[tuple[Any, ...]] = set()
_entry_points_loaded = False


def entry_point_rank(distribution: str | None, name: str, value: str) -> tuple[Any, ...]:
    """The fixed order in which entry points claim names: built-ins, then other distributions by name."""
    dist = normalize(distribution) if distribution else None
    return (0 if dist in _BUILTIN else 1 if dist else 2, dist or "", name, value)


def load_entry_points() -> None:
    """Import every entry point of the group once; a failing import becomes a record, not an exception."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        found.append((entry_point_rank(dist_name, ep.name, ep.value), ep, dist, dist_name))
    for rank, ep, dist, dist_name in sorted(found, key=lambda item: item[0]):
        if rank in _seen:  # the very same entry point, seen by an earlier call: nothing new
            continue
        _seen.add(rank)
        key = ep.name
        if key in _records or pm.has_plugin(key) or pm.is_blocked(key):
            key = f"{ep.name}@{dist_name or ep.value}"
        record = PluginRecord(name=ep.name, distribution=dist_name, version=dist.version if dist is not None else None,
                              key=key, builtin=rank[0] == 0, rank=rank)
        _records[key] = record
        if pm.is_blocked(ep.name):
            record.error = "blocked (pm.set_blocked)"
            continue
        try:
            plugin = ep.load()
            holder = pm.get_name(plugin)
            if holder is not None:
                record.error = (f"points at the same plugin object as {holder!r} "
                                f"({_records[holder].distribution if holder in _records else 'registered directly'})"
                                "; loaded once only")
                continue
            pm.register(plugin, name=key)
        except Exception as exc:  # a broken third-party plugin must not break the zoo
            record.error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, pluggy.PluginValidationError):  # pluggy says what is wrong, not what the hooks take
                record.error += f"\nEach hook of the zoo takes one argument, named register: def {HOOKS[0]}(register)"
            record.detail = traceback.format_exc()


HOOKS: tuple[str, ...] = tuple(name for name, fn in vars(hookspecs).items() if hasattr(fn, "msrnn_zoo_spec"))
"""The hooks of :mod:`msrnn_zoo.hookspecs`, the only names under which a plugin's functions are called."""


def hook_mistake(plugin: object) -> str | None:
    """Why a hook of ``plugin`` will never be called, or ``None``.

    pluggy accepts a ``@hookimpl`` under a name no hook has (``register_cell``) and ignores a ``register_cells``
    without the decorator; either way the plugin registers nothing and would show as ok. A plugin written for a
    newer zoo, with a hook this one lacks, looks the same to pluggy, so the message offers both ways out.
    """
    for caller in pm.get_hookcallers(plugin) or []:
        impl = next((i for i in caller.get_hookimpls() if i.plugin is plugin), None)
        if caller.spec is None and impl is not None and not impl.opts.get("optionalhook"):
            from . import __version__

            return (f"its @hookimpl {caller.name!r} is no hook of the zoo, so it is never called; name it "
                    f"{' or '.join(HOOKS)}, or, if the plugin was written for a newer msrnn-zoo that has this hook, "
                    f"upgrade msrnn-zoo (this is {__version__})")
    for name in HOOKS:
        if callable(getattr(plugin, name, None)) and pm.parse_hookimpl_opts(plugin, name) is None:
            return (f"its {name} has no @msrnn_zoo.hookimpl decorator, so it is never called; put `@hookimpl` (from "
                    "msrnn_zoo import hookimpl) on the line above it")
    return None


def record_for(plugin_name: str) -> PluginRecord:
    """The record of a plugin, creating one for plugins registered directly (tests, notebooks)."""
    if plugin_name not in _records:
        _records[plugin_name] = PluginRecord(name=plugin_name, key=plugin_name)
    return _records[plugin_name]


def plugin_order() -> list[str]:
    """The plugin manager's plugins in the order they claim names (see the module docstring)."""
    registered = [name for name, _ in pm.list_name_plugin()]
    position = {name: i for i, name in enumerate(registered)}

    def rank(name: str) -> tuple[Any, ...]:
        record = _records.get(name)
        if record is not None and record.rank:
            return (0, record.rank)
        return (1, position[name])

    return sorted(registered, key=rank)


def records() -> list[PluginRecord]:
    """Every plugin known so far, loaded or failed, in the order names are claimed."""
    load_entry_points()
    for name, _plugin in pm.list_name_plugin():
        record_for(name)
    order = {name: i for i, name in enumerate(plugin_order())}
    return sorted(_records.values(), key=lambda r: (r.rank == (), r.rank, order.get(r.key, 0), r.key))


def failed_note() -> str:
    """A sentence naming the plugins that failed (their cells and datasets are missing), or ``""``: where a name
    is not found, the plugin that should have brought it may be why."""
    failed = [r.key for r in records() if not r.ok]
    if not failed:
        return ""
    return (f"{len(failed)} plugin{'s' if len(failed) > 1 else ''} failed to load or register "
            f"({', '.join(failed)}), so what {'they' if len(failed) > 1 else 'it'} would add is missing: "
            "`msrnn-zoo plugins` says why.")


def missing_builtin(name: str) -> str | None:
    """The distribution released with the zoo that registers ``name`` (a cell or dataset), if it is not installed.

    The zoo's plugins are named after what they register (``msrnn-predrnn`` adds the cell ``predrnn``, a test keeps
    it so), so a run or a ``save_pretrained`` folder whose plugin was uninstalled, or a core installed alone, can be
    told what to install instead of only "unknown".
    """
    distribution = normalize(f"msrnn-{name}")
    if distribution not in _BUILTIN:
        return None
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return distribution
    return None


def failed_builtin(name: str) -> PluginRecord | None:
    """The record of the distribution released with the zoo that registers ``name``, where it is installed and
    failed to load (most often a dependency of its own missing, such as ``av`` for ``msrnn-kth``): the one failure
    that explains the unknown name, which :func:`failed_note` only counts among others."""
    distribution = normalize(f"msrnn-{name}")
    if distribution not in _BUILTIN:
        return None
    return next((r for r in records() if not r.ok and r.distribution and normalize(r.distribution) == distribution),
                None)


def forget(plugin_name: str) -> None:
    """Drop the record of a plugin that was unregistered (used by tests and interactive sessions)."""
    _records.pop(plugin_name, None)
