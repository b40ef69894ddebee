"""The zoo's catalogue, as data: cells and datasets from plugins, and the models they imply.

It is rebuilt from the plugin manager whenever the set of registered plugins changes, so a plugin added
at run time (a test, a notebook) shows up with no extra step. Every cell ``X`` yields one model per
schedule variant: ``X`` on a single scale and ``ms-X`` on the mirror pyramid.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import traceback
from dataclasses import dataclass, field
from typing import Any

from .catalogue import Checkpoint, builtin_checkpoints, make_checkpoint
from .cell import RecurrentCell
from .data import DatasetCapabilities, DatasetFactory, DatasetInfo
from .metrics import BASELINES as CORE_BASELINES
from .plugins import (
    failed_builtin,
    failed_note,
    hook_mistake,
    load_entry_points,
    missing_builtin,
    plugin_order,
    pm,
    record_for,
)

MODEL_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "": ("single", {}),
    "ms-": ("mirror", {}),
}
"""Name prefix -> (schedule, schedule options) of the models every cell yields."""

_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
"""A cell's, dataset's or baseline's name, matched whole (``fullmatch``: ``$`` would accept a trailing newline)."""


@dataclass(frozen=True)
class CellEntry:
    name: str
    cell: type[RecurrentCell]
    plugin: str
    paper: str = ""
    description: str = ""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cell: str
    schedule: str
    schedule_options: dict[str, Any]
    plugin: str
    pretrained: dict[str, Checkpoint]
    """``{tag: record}`` from the pretrained catalogue, in catalogue order (the first is the default)."""


@dataclass(frozen=True)
class DatasetEntry:
    info: DatasetInfo
    factory: DatasetFactory
    plugin: str
    capabilities: DatasetCapabilities = field(default_factory=DatasetCapabilities)


@dataclass
class Registry:
    cells: dict[str, CellEntry] = field(default_factory=dict)
    datasets: dict[str, DatasetEntry] = field(default_factory=dict)
    models: dict[str, ModelEntry] = field(default_factory=dict)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    """Every record of the pretrained catalogue whose model is registered: the zoo's, then plugins'."""


_cache: tuple[tuple[Any, ...], Registry] | None = None
_collecting = False


def _key() -> tuple[Any, ...]:
    # The plugin objects themselves, not their ids: holding them keeps an id from being reused by a new plugin.
    return tuple(sorted(pm.get_plugins(), key=id))


def _describe_plugin(plugin: str) -> str:
    record = record_for(plugin)
    if record.distribution:
        return f"{record.distribution} (built-in)" if record.builtin else record.distribution
    return f"plugin {plugin!r}"


def variant_prefix(name: str) -> str | None:
    """The prefix of :data:`MODEL_VARIANTS` that ``name`` starts with, or ``None``: a cell so named would take the
    name of another cell's model (a cell ``ms-x`` that of the multi-scale model of ``x``) and add ``ms-ms-x``."""
    return next((prefix for prefix in MODEL_VARIANTS if prefix and name.startswith(prefix)), None)


def _clash(kind: str, name: str, holder: str, claimant: str) -> None:
    """Record on both sides that ``claimant`` asked for a name ``holder`` already has: nothing is replaced."""
    record_for(claimant).conflicts.append(f"{kind} {name!r} is taken by {_describe_plugin(holder)}; not added")
    record_for(holder).conflicts.append(f"{kind} {name!r} also claimed by {_describe_plugin(claimant)}; kept")


def _collect(registry: Registry) -> None:
    order = {name: i for i, name in enumerate(plugin_order())}

    def call(hook_name: str, make_register: Any) -> None:
        impls = sorted(getattr(pm.hook, hook_name).get_hookimpls(), key=lambda impl: order[impl.plugin_name])
        for impl in impls:
            record = record_for(impl.plugin_name)
            try:
                returned = impl.function(register=make_register(impl.plugin_name, record))
            except Exception as exc:  # one broken plugin must not hide the others
                record.error = f"{hook_name}: {type(exc).__name__}: {exc}"
                record.detail = traceback.format_exc()  # for `plugins --traceback`: the line in the plugin
                continue
            if returned is not None:  # e.g. `return {"mycell": MyCell}`: nothing of it is registered
                record.error = (f"{hook_name} returned a {type(returned).__name__}, which the zoo ignores; call "
                                "register(...) once for each thing to add, and return nothing")

    def cell_register(plugin: str, record: Any) -> Any:
        def register(name: str, cell: type[RecurrentCell], *, paper: str = "", description: str = "") -> None:
            if not _NAME.fullmatch(name):
                raise ValueError(f"cell name {name!r} must be lowercase words joined by '-'")
            prefix = variant_prefix(name)
            if prefix:  # refused whether or not that cell exists: else the order of plugins decided whose model it is
                raise ValueError(f"cell name {name!r} starts with {prefix!r}, the prefix of the models the zoo derives "
                                 f"from every cell ({name!r} is a model of a cell {name[len(prefix):]!r}); name the "
                                 f"cell {name[len(prefix):]!r}, and the zoo adds {name!r} itself")
            if not (isinstance(cell, type) and issubclass(cell, RecurrentCell)):
                raise TypeError(f"cell {name!r} must be a RecurrentCell subclass, got {cell!r}")
            if name in registry.cells:
                _clash("cell", name, registry.cells[name].plugin, plugin)
                return
            registry.cells[name] = CellEntry(name, cell, plugin, paper, description)
            record.cells.append(name)
        return register

    def dataset_register(plugin: str, record: Any) -> Any:
        def register(info: DatasetInfo, factory: DatasetFactory, *, prepare: Any = None, describe: Any = None,
                     scores: Any = None, baselines: dict[str, Any] | None = None) -> None:
            if not isinstance(info, DatasetInfo):
                raise TypeError(f"datasets are registered with a DatasetInfo, got {info!r}")
            if not _NAME.fullmatch(info.name):
                raise ValueError(f"dataset name {info.name!r} must be lowercase words joined by '-'")
            for what, fn in (("factory", factory), ("prepare", prepare), ("describe", describe), ("scores", scores)):
                if fn is not None and not callable(fn):
                    raise TypeError(f"dataset {info.name!r}: {what} must be callable, got {fn!r}")
            baselines = dict(baselines or {})
            for name, fn in baselines.items():
                if not _NAME.fullmatch(name) or name in CORE_BASELINES or name == "model":
                    raise ValueError(f"dataset {info.name!r}: baseline name {name!r} must be lowercase words "
                                     f"joined by '-' and differ from 'model' and {', '.join(CORE_BASELINES)}")
                if not callable(fn):
                    raise TypeError(f"dataset {info.name!r}: baseline {name!r} must be callable, got {fn!r}")
            if info.name in registry.datasets:
                _clash("dataset", info.name, registry.datasets[info.name].plugin, plugin)
                return
            capabilities = DatasetCapabilities(prepare, describe, scores, baselines)
            registry.datasets[info.name] = DatasetEntry(info, factory, plugin, capabilities)
            record.datasets.append(info.name)
        return register

    records: list[Checkpoint] = list(builtin_checkpoints())

    def checkpoint_register(plugin: str, record: Any) -> Any:
        def register(**fields: Any) -> None:
            checkpoint = make_checkpoint(plugin, **fields)
            clash = next((r for r in records if r.name == checkpoint.name), None)
            if clash is not None:  # first come, first served, as for cells and datasets: nothing is replaced
                if clash.origin == "msrnn-zoo":
                    record.conflicts.append(f"pretrained {checkpoint.name!r} is in the zoo's own catalogue; not added")
                else:
                    _clash("pretrained", checkpoint.name, clash.origin, plugin)
                return
            records.append(checkpoint)
            record.checkpoints.append(checkpoint.name)
        return register

    for name, _ in pm.list_name_plugin():
        rec = record_for(name)
        rec.cells.clear()
        rec.datasets.clear()
        rec.checkpoints.clear()
        rec.error = rec.detail = None  # a registered plugin imported fine; its hooks are judged afresh
        rec.conflicts.clear()
    for name, plugin in pm.list_name_plugin():
        record_for(name).error = hook_mistake(plugin)
    call("register_cells", cell_register)
    call("register_datasets", dataset_register)
    call("register_checkpoints", checkpoint_register)
    for cell in registry.cells.values():  # in the order cells were claimed, so model names are too
        for prefix, (schedule, options) in MODEL_VARIANTS.items():
            model = prefix + cell.name
            if model in registry.models:  # cells named like a model are refused; this, should prefixes overlap
                _clash("model", model, registry.models[model].plugin, cell.plugin)
                continue
            registry.models[model] = ModelEntry(model, cell.name, schedule, options, cell.plugin, {})
    for checkpoint in records:  # records of models whose plugin is not installed are left out
        if checkpoint.model in registry.models:
            registry.models[checkpoint.model].pretrained[checkpoint.tag] = checkpoint
            registry.checkpoints.append(checkpoint)


def registry() -> Registry:
    """The current catalogue (cached until the set of plugins changes)."""
    global _cache, _collecting
    load_entry_points()
    key = _key()
    if _cache is None or len(_cache[0]) != len(key) or any(a is not b for a, b in zip(_cache[0], key)):
        if _collecting:
            raise RuntimeError("A plugin used the zoo's catalogue (create, list_models, ...) while registering; "
                               "a register_* hook may only call `register`.")
        _collecting = True
        try:
            reg = Registry()
            _collect(reg)
        finally:
            _collecting = False
        _cache = (key, reg)
    return _cache[1]


def refresh() -> Registry:
    """Forget the cached catalogue and rebuild it."""
    global _cache
    _cache = None
    return registry()


def unknown(kind: str, name: str, known: list[str]) -> ValueError:
    """An error for an unknown name that suggests the closest known ones and, for a name of a plugin of the zoo
    that is not installed, which to install."""
    # compared without case: "MS-ConvLSTM", as the paper spells it, is otherwise too far from "ms-convlstm" to suggest
    lowered = {k.lower(): k for k in known}
    close = [lowered[c] for c in difflib.get_close_matches(str(name).lower(), list(lowered), n=3, cutoff=0.5)]
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    base = str(name)
    if kind == "model":  # the cell of a model 'ms-X' is 'X'
        base = base[len(variant_prefix(base) or ""):]
    distribution = missing_builtin(base)
    install = (f" {base!r} comes from {distribution}, a plugin of the zoo that is not installed here: install it "
               f"(from a clone of the zoo: pip install plugins/{distribution}), then run this again."
               if distribution is not None else "")
    broken = failed_builtin(base)
    if broken is not None:  # its own failure, not a count of all failures
        first = (broken.error or "").splitlines()[0]
        install = (f" {base!r} comes from {broken.distribution}, which is installed but failed to load ({first}): "
                   "install what it is missing, then run this again.")
    failed = failed_note()
    kinds = kind if len(known) == 1 else f"{kind}s"
    return ValueError(f"Unknown {kind} {name!r}.{hint} Run `msrnn-zoo list` to see them all "
                      f"({len(known)} {kinds} known).{install}{' ' + failed if failed else ''}")


def _match(names: list[str], pattern: str | None) -> list[str]:
    if pattern is not None and not isinstance(pattern, str):  # else fnmatch's "expected str, bytes or os.PathLike"
        raise TypeError(f"A name pattern is one glob string such as 'ms-*' (or None for every name), got "
                        f"{pattern!r} ({type(pattern).__name__}); for several, join the lists of several calls.")
    return sorted(n for n in names if pattern is None or glob_match(n, pattern))


def glob_match(name: str, pattern: str) -> bool:
    """Whether ``name`` matches the glob ``pattern``, without case on every system: the paper writes MS-ConvLSTM, the
    zoo's names are lower case (and ``create`` suggests them for the paper's spelling), and fnmatch alone ignores
    case on Windows only."""
    return fnmatch.fnmatchcase(name.casefold(), pattern.casefold())


def list_models(pattern: str | None = None, pretrained: bool = False) -> list[str]:
    """Model names, optionally filtered by a glob (``"ms-*"``); ``pretrained=True`` lists the
    ``model.tag`` of every published checkpoint instead (recipe-only ones have no weights to load)."""
    models = registry().models
    if pretrained:
        return sorted(f"{m}.{t}" for m in _match(list(models), pattern) for t, r in models[m].pretrained.items()
                      if r.published)
    return _match(list(models), pattern)


def list_pretrained(pattern: str | None = None) -> list[Checkpoint]:
    """Every record of the pretrained catalogue, published or recipe-only, in catalogue order."""
    from .catalogue import match

    return match(registry().checkpoints, pattern)


def list_cells(pattern: str | None = None) -> list[str]:
    return _match(list(registry().cells), pattern)


def list_datasets(pattern: str | None = None) -> list[str]:
    return _match(list(registry().datasets), pattern)


def get_cell(name: str) -> CellEntry:
    cells = registry().cells
    if name not in cells:
        raise unknown("cell", name, list(cells))
    return cells[name]


def get_model(name: str) -> ModelEntry:
    models = registry().models
    if name not in models:
        raise unknown("model", name, list(models))
    return models[name]


def get_dataset(name: str) -> DatasetEntry:
    datasets = registry().datasets
    if name not in datasets:
        raise unknown("dataset", name, list(datasets))
    return datasets[name]
