"""The hooks a plugin implements to add cells and datasets to the zoo.

A plugin is any module or object registered under the entry-point group ``msrnn_zoo``; it decorates
its functions with :data:`msrnn_zoo.hookimpl`. Each hook receives a ``register`` callable, so a plugin
never imports the registry and cannot corrupt it: everything it adds goes through one validated door.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("msrnn_zoo")
hookimpl = pluggy.HookimplMarker("msrnn_zoo")


@hookspec
def register_cells(register: Callable[..., Any]) -> None:
    """Register recurrent cells: ``register(name, cell_class, paper=..., description=...)``.

    Each cell ``X`` becomes two models, ``X`` (single scale) and ``ms-X`` (the mirror pyramid).
    """


@hookspec
def register_datasets(register: Callable[..., Any]) -> None:
    """Register datasets: ``register(info, factory, *, prepare=None, describe=None, scores=None, baselines=None)``.

    ``info`` is a :class:`msrnn_zoo.data.DatasetInfo` (its protocols, scaling, citation); ``factory(split=,
    source=, root=, download=, protocol=, **options)`` builds a split. The keywords are optional
    capabilities (see :class:`msrnn_zoo.data.DatasetCapabilities`): ``prepare(source, out, progress)`` raw
    files -> store, ``describe(store)`` statistics for ``data info``, ``scores(context)`` an accumulator of
    the dataset's own scores, ``baselines`` ``{name: fn(context, horizon)}`` scored beside copy-last-frame.
    """


@hookspec
def register_checkpoints(register: Callable[..., Any]) -> None:
    """Add pretrained checkpoints to the catalogue: ``register(model=..., tag=..., repo_id=..., revision=...,
    dataset=..., protocol=..., recipe=..., status="published", metrics={...}, metrics_command=...)``.

    The same fields as a record of the zoo's ``pretrained.toml``; ``create(model, pretrained=tag)`` then loads
    ``repo_id`` at ``revision``. A ``model.tag`` already in the catalogue is refused.
    """
