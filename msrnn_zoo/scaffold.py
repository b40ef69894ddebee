"""``msrnn-zoo new-cell``: a complete plugin distribution for a new cell, working from the first minute.

The files come from ``templates/new_cell`` (``$name``-style placeholders, so the Python in them needs no
escaping). The cell starts as a ConvGRU that passes the conformance kit; its author replaces the equations.
The distribution is written into a hidden sibling and renamed into place, so a failure leaves nothing, and
an existing directory is never written into.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import re
import shutil
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import TypeVar

from .io import SOFTWARE, atomic_write, make_sibling_dir
from .plugins import BUILTIN_DISTRIBUTIONS
from .validation import with_cli_message

NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
"""A cell's name, matched whole (``fullmatch``: ``$`` would let a trailing newline through into folder names)."""
E = TypeVar("E", bound=BaseException)


def _refusal(kind: Callable[[str], E], say: Callable[[bool], str]) -> E:
    """``kind(say(False))`` in the words of ``new_cell``'s Python caller, carrying ``say(True)``, those of
    ``msrnn-zoo new-cell``, as its ``cli_message``: a notebook was told to see `msrnn-zoo list` and to choose another
    ``--dir``, which no function of theirs takes."""
    return with_cli_message(kind(say(False)), say(True))


def _see(cli: bool, lister: str) -> str:
    """Where the taken names are listed: ``msrnn-zoo list`` (``cli``), or the function ``lister`` of the package."""
    return "see `msrnn-zoo list`" if cli else f"see msrnn_zoo.{lister}()"


def _dir(cli: bool) -> str:
    """The folder to write into: ``--dir`` on the command line, ``parent`` in Python."""
    return "--dir" if cli else "parent"


def names(name: str) -> dict[str, str]:
    """The names a cell ``name`` implies: distribution, package, class."""
    package = "msrnn_" + name.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-")) + "Cell"
    return {"name": name, "dist": f"msrnn-{name}", "package": package, "cls": cls}


def check_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` can be a new cell: well formed and not taken."""
    from .registry import MODEL_VARIANTS, list_cells, list_models, variant_prefix

    if not NAME.fullmatch(name):
        raise ValueError(f"{name!r} cannot name a cell: use lowercase letters and digits, words joined by '-', "
                         "starting with a letter (e.g. 'convgru' or 'my-cell').")
    prefix = variant_prefix(name)
    if prefix is not None:
        schedule = MODEL_VARIANTS[prefix][0]
        raise ValueError(f"{name!r} starts with {prefix!r}, which names the model of every cell on the {schedule!r} "
                         f"schedule; name the cell {name[len(prefix):]!r} and the zoo adds {name!r} itself.")
    if name in list_cells():
        raise _refusal(ValueError, lambda cli: f"{name!r} is already registered ({_see(cli, 'list_cells')}); choose "
                       "another name.")
    models = [prefix + name for prefix in MODEL_VARIANTS]
    taken = [model for model in models if model in list_models()]
    if taken:  # names are first come, first served: the new cell would be installed without these models
        raise _refusal(ValueError, lambda cli: f"{name!r} would add the models {' and '.join(map(repr, models))}, "
                       f"but {' and '.join(map(repr, taken))} {'is' if len(taken) == 1 else 'are'} already registered "
                       f"({_see(cli, 'list_models')}); choose another name.")
    implied = names(name)
    if _taken_by(implied, cli=False):
        raise _refusal(ValueError, lambda cli: f"{name!r} would make the distribution {implied['dist']!r} with "
                       f"package {implied['package']!r}, but {_taken_by(implied, cli)}; installing it would replace "
                       "that. Choose another name (nothing was written).")


def normalize(dist: str) -> str:
    """A distribution name as PEP 503 compares them: pip treats ``msrnn_Foo`` and ``msrnn-foo`` as one."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def _taken_by(implied: dict[str, str], cli: bool) -> str | None:
    """What already owns the names a new cell implies, or ``None``: installing over it would break it (where to see
    it in the command line's words, ``cli``, or Python's)."""
    from .registry import list_datasets

    if implied["name"] in list_datasets():
        return f"{implied['name']!r} names a registered dataset ({_see(cli, 'list_datasets')})"
    dist = normalize(implied["dist"])
    if dist == normalize(SOFTWARE):
        return f"{implied['dist']!r} is the zoo's own distribution"
    installed = {normalize(d.metadata["Name"] or "") for d in importlib.metadata.distributions()}
    if dist in installed:
        return f"a distribution {implied['dist']!r} is already installed"
    if dist in {normalize(d) for d in BUILTIN_DISTRIBUTIONS}:  # not installed, yet its name ranks as the zoo's own
        return (f"{implied['dist']!r} is the name of a plugin released with the zoo (plugins/{dist} of its "
                "repository), which is not installed here")
    if importlib.util.find_spec(implied["package"]) is not None:
        return f"a package {implied['package']!r} can already be imported"
    return None


def new_cell(name: str, parent: str | Path = ".") -> Path:
    """Write the distribution ``msrnn-NAME`` under ``parent``; returns its path. Never touches an existing one."""
    from . import __version__

    check_name(name)
    values = {**names(name), "zoo_version": __version__}
    parent = Path(parent)
    # the nearest existing folder on the way must be a folder: else mkdir's bare "[Errno 17] File exists"
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise _refusal(NotADirectoryError, lambda cli: f"{existing} is a file, so {parent} cannot be the folder to "
                       f"write msrnn-{name} in; choose another {_dir(cli)} (nothing was written).")
    target = parent / values["dist"]
    if target.exists() or target.is_symlink():
        raise _refusal(FileExistsError, lambda cli: f"{target} already exists; choose another {_dir(cli)} (nothing was "
                       "written).")
    template = files("msrnn_zoo") / "templates" / "new_cell"
    staging = make_sibling_dir(target, "new")
    try:
        for source in _walk(template):
            relative = source.relative_to_template
            relative = relative.replace("package/", values["package"] + "/").replace(
                "tests/test_cell.py", f"tests/test_{values['package']}.py")
            text = Template(source.read_text(encoding="utf-8")).substitute(values)
            atomic_write(staging / relative.removesuffix(".tmpl"), functools.partial(Path.write_text, data=text,
                                                                                     encoding="utf-8"))
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


class _Source:
    def __init__(self, resource: object, relative: str) -> None:
        self.resource = resource
        self.relative_to_template = relative

    def read_text(self, encoding: str) -> str:
        return self.resource.read_text(encoding=encoding)  # type: ignore[attr-defined]


def _walk(root: object, prefix: str = "") -> list[_Source]:
    found = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):  # type: ignore[attr-defined]
        if entry.is_dir():
            found.extend(_walk(entry, f"{prefix}{entry.name}/"))
        elif entry.name.endswith(".tmpl"):
            found.append(_Source(entry, prefix + entry.name))
    return found
