"""``create``: from a model name to a ready model, in one short path (the way timm's create_model reads)."""

from __future__ import annotations

import inspect
import os
from typing import Any

from .network import Forecaster, ForecasterConfig
from .registry import get_cell, get_model

CONFIG_FIELDS = ("in_channels", "hidden_channels", "num_layers", "kernel_size", "schedule_options", "cell_options")
HUB_OPTIONS = ("revision", "token", "cache_dir", "local_files_only", "force_download", "cast")
"""Keyword arguments of ``create`` that say where pretrained weights come from, not what the model is."""


def split_tag(name: str) -> tuple[str, str | None]:
    """``"ms-motionrnn.kth"`` -> ``("ms-motionrnn", "kth")``: a pretrained checkpoint is ``model.tag``.

    A dot with no tag after it is refused: read as no tag, it would silently give random weights.
    """
    if not isinstance(name, str):
        raise TypeError(f"A model name is a string such as 'ms-convlstm' or 'ms-motionrnn.kth' (see "
                        f"msrnn_zoo.list_models()), got {name!r} ({type(name).__name__}).")
    model, dot, tag = name.partition(".")
    if dot and not tag:
        raise ValueError(f"{name!r} ends with '.' but names no checkpoint; write {model!r} for a model with random "
                         f"weights or {model + '.TAG'!r} with a tag of the pretrained catalogue ({_tags(model)}).")
    return model, tag or None


def _tags(model: str) -> str:
    """The catalogue tags of ``model`` for a message (an unknown model is the error to report first)."""
    tags = ", ".join(get_model(model).pretrained)
    return f"{model}'s tags: {tags}" if tags else f"{model} has none"


def cell_options(cell_class: type, options: dict[str, Any], cell_name: str) -> dict[str, Any]:
    """Check keyword options against the cell's constructor, so a typo fails with the list of real ones."""
    params = inspect.signature(cell_class.__init__).parameters  # type: ignore[misc]  # the class's own, with self
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    base = {"self", "in_channels", "hidden_channels", "kernel_size", "layer_index", "num_layers"}
    allowed = sorted(set(params) - base)
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise ValueError(
            f"Cell {cell_name!r} has no option {', '.join(map(repr, bad))}. Model options: "
            f"{', '.join(CONFIG_FIELDS[:4])}; cell options: {', '.join(allowed) or 'none'}."
        )
    return dict(options)


def build_config(name: str, **kwargs: Any) -> ForecasterConfig:
    """The config of model ``name`` with overrides; keys that are not config fields are cell options."""
    entry = get_model(name)
    cell = get_cell(entry.cell)
    for key, example in (("cell_options", "{'links': 13}"), ("schedule_options", "{'levels': 2}")):
        # checked before they are merged: dict('links=3') failed with "dictionary update sequence element #0"
        if kwargs.get(key) is not None and not isinstance(kwargs[key], dict):
            raise TypeError(f"{key} is a dict of option names to values (e.g. {key}={example}), got "
                             f"{kwargs[key]!r} ({type(kwargs[key]).__name__}).")
    options = dict(kwargs.pop("cell_options", None) or {})
    options.update({k: kwargs.pop(k) for k in list(kwargs) if k not in CONFIG_FIELDS})
    schedule_options = {**entry.schedule_options, **(kwargs.pop("schedule_options", None) or {})}
    return ForecasterConfig(cell=entry.cell, schedule=entry.schedule, schedule_options=schedule_options,
                            cell_options=cell_options(cell.cell, options, entry.cell), **kwargs)


def from_config(config: ForecasterConfig) -> Forecaster:
    """Build the model a config describes (the cell is looked up in the registry by name).

    The cell options are checked as ``create`` checks them, so a misspelt one in a hand-edited ``config.json``
    is named beside the cell's real options, not reported as a constructor's ``unexpected keyword argument``.
    """
    if not isinstance(config, ForecasterConfig):
        hint = {dict: "; for a dict use from_config(ForecasterConfig.from_dict(d))",
                str: "; for a model name use msrnn_zoo.create(name)"}.get(type(config), "")
        raise TypeError(f"from_config takes a ForecasterConfig (model.config, or ForecasterConfig.from_json(text)), "
                        f"got {type(config).__name__}{hint}.")
    cell = get_cell(config.cell)
    cell_options(cell.cell, config.cell_options, config.cell)
    return Forecaster(config, cell.cell)


def create(name: str, pretrained: bool | str | os.PathLike[str] | None = None, **kwargs: Any) -> Forecaster:
    """Build model ``name`` (``"ms-convlstm"``), optionally with published or local weights.

    ``pretrained`` is a tag of the pretrained catalogue (``"kth"``), ``True`` for the model's default
    one, a local directory written by ``save_pretrained`` (a string or a path), or a Hub repo id;
    ``revision=`` pins a branch, tag or commit of the repo (``token``, ``cache_dir``, ``local_files_only``
    and ``force_download`` are passed to the download too; ``cast=True`` accepts weights saved in another
    floating-point precision). ``name`` may carry the tag itself:
    ``create("ms-motionrnn.kth")``. Other keyword arguments override the config; those that are not config
    fields are the cell's own options (e.g. ``links=13`` for TrajGRU).
    """
    model_name, tag = split_tag(name)
    if tag is not None:
        if pretrained not in (None, True, tag):
            raise ValueError(f"{name!r} already names the checkpoint {tag!r}; "
                             f"do not also pass pretrained={pretrained!r}.")
        pretrained = tag
    if isinstance(pretrained, str) and not pretrained.strip():
        raise ValueError(f"pretrained={pretrained!r} names no checkpoint; pass a tag of the pretrained catalogue "
                         f"({_tags(model_name)}), True for the default one, a directory written by save_pretrained, "
                         "a Hub repo id, or leave it out for random weights.")
    if pretrained:
        from .hub import resolve_pretrained

        return resolve_pretrained(model_name, pretrained, **kwargs)
    hub_options = sorted(k for k in kwargs if k in HUB_OPTIONS)
    if hub_options:
        raise ValueError(f"{', '.join(hub_options)} only apply with pretrained= (a catalogue tag, a directory or "
                         "a Hub repo id).")
    return from_config(build_config(model_name, **kwargs))
