"""Recipes and pretrained checkpoints, as data shipped with the package (``cards/*.toml``).

The core names no model and no dataset: which settings the MS-RNN paper trained with, and which
checkpoints exist, are rows of ``recipes.toml`` and ``pretrained.toml``. This module only reads,
composes and validates them; plugins may add checkpoints of their own through the
``register_checkpoints`` hook, into the same catalogue.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DATA_DIR = Path(__file__).parent / "templates"
RECIPES_FILE = DATA_DIR / "recipes.toml"
PRETRAINED_FILE = DATA_DIR / "pretrained.toml"
STATUSES = ("published", "recipe-only")
_COMMIT = re.compile(r"[0-9a-f]{40}")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path} is not a readable TOML file ({exc}); the installation is damaged.") from exc


@lru_cache(maxsize=1)
def recipe_tables() -> dict[str, Any]:
    """``recipes.toml`` as read: ``paper``, ``defaults``, ``datasets``, ``cells``."""
    return read_toml(RECIPES_FILE)


def paper() -> dict[str, str]:
    """Title, authors, arXiv id, code URL, commit and BibTeX of the paper the recipes follow."""
    return dict(recipe_tables()["paper"])


def recipe_datasets() -> list[str]:
    """The datasets the paper trained on (each has a recipe for every model)."""
    return list(recipe_tables()["datasets"])


@dataclass(frozen=True)
class Recipe:
    """The paper's training setting of one model on one dataset, each value with its source."""

    model: str
    dataset: str
    settings: dict[str, Any]
    sources: dict[str, str]

    @property
    def key(self) -> str:
        return f"{self.model}.{self.dataset}"

    def __getitem__(self, name: str) -> Any:
        return self.settings[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.settings.get(name, default)

    def run_dir(self) -> str:
        """A suggested run directory for this recipe."""
        return f"runs/{self.model}-{self.dataset}"

    def data_root(self) -> str | None:
        """The ``--root`` placeholder the commands use, for datasets that must be prepared first."""
        return f"DATA/{self.dataset}" if self.get("root_required") else None

    def reproduce_command(self, out: str | None = None) -> str:
        root = self.data_root()
        parts = ["msrnn-zoo", "reproduce", self.model, self.dataset, *(["--root", root] if root else []),
                 "--out", out or self.run_dir()]
        return shlex.join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.key, "model": self.model, "dataset": self.dataset, "settings": dict(self.settings),
                "sources": dict(self.sources)}


def get_recipe(model: str, dataset: str) -> Recipe:
    """Compose the recipe of ``model`` on ``dataset``: defaults, then the dataset's, then the cell's settings."""
    from .registry import get_model, unknown

    entry = get_model(model)
    tables = recipe_tables()
    if dataset not in tables["datasets"]:
        raise unknown("recipe dataset", dataset, list(tables["datasets"]))
    settings: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for table in (tables["defaults"], tables["datasets"][dataset], tables.get("cells", {}).get(entry.cell, {})):
        settings.update({k: v for k, v in table.items() if k != "sources"})
        sources.update(table.get("sources", {}))
    return Recipe(model, dataset, settings, sources)


def list_recipes(pattern: str | None = None) -> list[Recipe]:
    """Every registered model on every dataset of the paper (optionally models matching a glob)."""
    from .registry import list_models

    return [get_recipe(m, d) for m in list_models(pattern) for d in recipe_datasets()]


@dataclass(frozen=True)
class Checkpoint:
    """One record of the pretrained catalogue."""

    model: str
    tag: str
    repo_id: str
    status: str = "published"
    revision: str = ""
    dataset: str = ""
    protocol: str = ""
    recipe: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_command: str = ""
    origin: str = "msrnn-zoo"
    """``msrnn-zoo`` for the zoo's own records, else the plugin that registered it."""

    @property
    def name(self) -> str:
        return f"{self.model}.{self.tag}"

    @property
    def published(self) -> bool:
        return self.status == "published"

    def commands(self) -> list[str]:
        """The commands that would create this checkpoint: prepare the data (if needed), reproduce, push."""
        if not self.recipe:
            return []
        model, _, dataset = self.recipe.partition(".")
        recipe = get_recipe(model, dataset)
        run = recipe.run_dir()
        lines = [recipe["prepare"]] if recipe.get("prepare") else []
        push = shlex.join(["msrnn-zoo", "push", run, "--repo-id", self.repo_id])
        return [*lines, recipe.reproduce_command(run), push]

    def python_calls(self) -> list[str]:
        """The Python calls that do what the first of :meth:`commands` do: prepare the data (if needed) and reproduce.
        Push has no twin here: ``push_to_hub`` of the model would publish its weights without the run's card."""
        if not self.recipe:
            return []
        from .store import prepare_call

        model, _, dataset = self.recipe.partition(".")
        recipe = get_recipe(model, dataset)
        run, root = recipe.run_dir(), recipe.data_root()
        lines = []
        if recipe.get("prepare") and root:
            words = shlex.split(recipe["prepare"])
            source = words[words.index("--source") + 1] if "--source" in words[:-1] else "RAW_FILES"
            lines.append("msrnn_zoo.datasets." + prepare_call(dataset, Path(root), source=source))
        return [*lines, f"msrnn_zoo.reproduce.reproduce({model!r}, {dataset!r}, {run!r}"
                        + (f", root={root!r})" if root else ")")]

    def not_published_message(self, python: bool = False) -> str:
        """Why there are no weights to load, and the commands that would make them; for a Python caller
        (``python``: ``create(NAME, pretrained=...)`` reaches it) also the calls that do all but the push there."""
        commands = self.commands()
        how = ("\n".join(f"  {c}" for c in commands) if commands else
               "  (the record names no recipe; ask its plugin's authors)")
        said = (f"{self.name!r} is recipe-only in the pretrained catalogue: no run has published it yet, so "
                f"there are no weights to load. These commands would create it:\n{how}\n")
        calls = self.python_calls() if python else []
        if calls:
            said += (f"(in a notebook, run them with !; from Python, {' and '.join(calls)} "
                     f"{'do the first two' if len(calls) > 1 else 'does the first'})\n")
        return said + (f"then load it with pretrained={self.repo_id!r} (or your own repo id, if you pushed "
                       "elsewhere).")


def validate_checkpoint(record: Checkpoint) -> Checkpoint:
    """Refuse a record that would claim what it cannot back: a status other than the two, a published
    record without a pinned commit or without the command behind its metrics, metrics on a recipe-only one."""
    where = f"pretrained record {record.name!r}"
    if record.status not in STATUSES:
        raise ValueError(f"{where}: status {record.status!r} is not one of {', '.join(STATUSES)}.")
    if record.repo_id.count("/") != 1:
        raise ValueError(f"{where}: repo_id {record.repo_id!r} is not a Hub repo id like 'user/model'.")
    if record.published:
        if not record.revision:  # else it loads whatever the repo's main holds then, not the weights measured
            raise ValueError(f"{where}: a published record needs the revision its weights were pushed at (the "
                             "40-digit commit id `msrnn-zoo push` printed), so that it always loads those weights.")
        if not _COMMIT.fullmatch(record.revision):
            raise ValueError(f"{where}: revision {record.revision!r} is not a 40-digit commit id.")
        if record.metrics and not record.metrics_command:
            raise ValueError(f"{where}: metrics without the metrics_command that measured them.")
    elif record.metrics or record.revision:
        raise ValueError(f"{where}: a recipe-only record has no weights, so it can have no metrics or revision.")
    for name, value in record.metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: metric {name!r} must be a number, got {value!r}.")
    return record


def make_checkpoint(origin: str, **fields_: Any) -> Checkpoint:
    """A validated record from keyword fields (a TOML table or a plugin's ``register`` call)."""
    known = set(Checkpoint.__dataclass_fields__) - {"origin"}
    unknown_fields = sorted(set(fields_) - known)
    if unknown_fields:
        raise ValueError(f"pretrained record fields {unknown_fields} are unknown; known: {sorted(known)}.")
    for required in ("model", "tag", "repo_id"):
        if not isinstance(fields_.get(required), str) or not fields_[required]:
            raise ValueError(f"a pretrained record needs a non-empty {required!r}, got {fields_.get(required)!r}.")
    return validate_checkpoint(Checkpoint(origin=origin, **{**fields_, "metrics": dict(fields_.get("metrics") or {})}))


@lru_cache(maxsize=1)
def builtin_checkpoints() -> tuple[Checkpoint, ...]:
    """The zoo's own records, in file order."""
    records = [make_checkpoint("msrnn-zoo", **table) for table in read_toml(PRETRAINED_FILE).get("checkpoint", [])]
    seen: set[str] = set()
    for record in records:
        if record.name in seen:
            raise ValueError(f"{PRETRAINED_FILE}: {record.name!r} is listed twice.")
        seen.add(record.name)
    return tuple(records)


def match(records: list[Checkpoint], pattern: str | None) -> list[Checkpoint]:
    from .registry import glob_match

    return [r for r in records if pattern is None or glob_match(r.model, pattern) or glob_match(r.name, pattern)]
