"""Every pyproject declares its license as an SPDX string (a TOML table makes setuptools print a deprecation
block per build) and asks for a setuptools that understands it."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECTS = sorted([REPO / "pyproject.toml", *(REPO / "plugins").glob("*/pyproject.toml")])


@pytest.mark.parametrize("path", PYPROJECTS, ids=lambda p: str(p.relative_to(REPO)))
def test_license_is_an_spdx_string(path):
    text = path.read_text()
    assert '\nlicense = "Apache-2.0"\n' in text, f"{path}: write license = \"Apache-2.0\" (an SPDX string)"
    assert 'requires = ["setuptools>=77"]' in text, f"{path}: the SPDX license needs setuptools>=77 to build"


def test_python_dash_m_msrnn_zoo_is_the_command(monkeypatch, capsys):
    """`python -m msrnn_zoo` said "No module named msrnn_zoo.__main__; 'msrnn_zoo' is a package and cannot be
    directly executed"."""
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", ["msrnn_zoo", "--version"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("msrnn_zoo", run_name="__main__", alter_sys=True)
    assert exited.value.code == 0
    import msrnn_zoo

    assert f"version {msrnn_zoo.__version__}" in capsys.readouterr().out


def test_the_version_has_one_source():
    """pyproject.toml and ``msrnn_zoo.__version__`` each said 0.1.0: a release that bumped one would record in every
    config.json, run and store a version other than the one pip installed, and the upgrade advice would mislead."""
    import re
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "msrnn_zoo.__version__"}
    init = (REPO / "msrnn_zoo" / "__init__.py").read_text()
    assert re.search(r'^__version__ = "[0-9][0-9a-z.+-]*"$', init, re.M), "a literal setuptools reads without torch"


@pytest.mark.parametrize("path", PYPROJECTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_dependency_has_a_lower_bound(path):
    """A requirement without a bound lets pip keep whatever old release is installed; the bounds are the oldest
    releases the suite passed with (DEVELOPERS.md: how they were checked). msrnn-zoo was named bare by the dataset
    plugins."""
    import re

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    project = tomllib.loads(path.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    own = f"{project['name']}["  # an extra that names others of the same package (test = ["pkg[pysteps]"])
    for requirement in [*project["dependencies"], *(r for group in extras.values() for r in group)]:
        if not requirement.startswith(own):
            assert re.search(r">=\s*\d", requirement.split(";")[0]), f"{path}: give {requirement!r} a lower bound (>=)"


@pytest.mark.parametrize(
    ("package", "pyproject"),
    [
        ("msrnn_zoo", REPO / "pyproject.toml"),
        ("msrnn_moving_mnist", REPO / "plugins/msrnn-moving-mnist/pyproject.toml"),
    ],
)
def test_the_packages_ship_the_py_typed_marker(package, pyproject):
    """Without a ``py.typed`` marker in the wheel (PEP 561) users' type checkers ignored every hint of the public API
    (create, RecurrentCell, make_moving_mnist...) and treated the package as untyped."""
    from importlib.resources import files

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    assert files(package).joinpath("py.typed").is_file(), f"add an empty {package}/py.typed"
    package_data = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data[package], f"{pyproject}: list py.typed in package-data so the wheel has it"


def test_hints_of_the_path_helpers_say_what_they_accept():
    """atomic_write's hint wanted a writer returning None (``tmp.write_text`` returns an int) and refuse_overwrite's
    and load_clip_array's a str or Path, while they take any os.PathLike: a user's type checker flagged correct
    calls. The hints now say what the functions do."""
    import os
    import typing
    from collections.abc import Callable
    from pathlib import Path

    from msrnn_zoo.data import load_clip_array
    from msrnn_zoo.io import atomic_write, refuse_overwrite

    for function in (atomic_write, refuse_overwrite, load_clip_array):
        assert os.PathLike[str] in typing.get_args(typing.get_type_hints(function)["path"]), function.__name__
    assert typing.get_type_hints(atomic_write)["write"] == Callable[[Path], object]


def test_hints_of_the_plugin_api_say_what_it_returns_and_takes():
    """StoreWriter.create_array said it returns an ndarray, so a dataset plugin's ``array.flush()`` (the memory map
    it is) was an error to a type checker; recomputable refused a convolution's ``bias``, None where there is none,
    which it takes (PrecipLSTM passes one)."""
    import typing

    import numpy as np
    import torch

    from msrnn_zoo.recompute import recomputable
    from msrnn_zoo.store import StoreWriter

    assert typing.get_type_hints(StoreWriter.create_array)["return"] is np.memmap
    assert type(None) in typing.get_args(typing.get_type_hints(recomputable)["sources"])
    with_bias = recomputable(lambda x, bias: x if bias is None else x + bias, torch.ones(1), None)
    assert torch.equal(with_bias, torch.ones(1))  # what the hint now allows


def test_make_lint_checks_the_hints_and_make_test_does_not():
    """No type checker had ever run over the hints the py.typed marker publishes; `make lint` runs mypy with
    pyproject's settings over the core and every plugin package, and `make test` stays as fast as it was."""
    import re

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    makefile = (REPO / "Makefile").read_text()
    recipes = {m[1]: m[2] for m in re.finditer(r"^([a-z-]+):[^\n]*\n((?:\t[^\n]*\n)*)", makefile, re.M)}
    assert "$(BIN)/mypy" in recipes["lint"] and "mypy" not in recipes["test"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    # what mypy's globs take: every plugin package's modules, and nothing an editable install adds beside them (a
    # folder glob took plugins/*/msrnn_*.egg-info, and mypy stopped at it: "There are no .py[i] files")
    taken = {path for pattern in project["tool"]["mypy"]["files"] for path in REPO.glob(pattern)}
    assert REPO / "msrnn_zoo" in taken
    assert all(path.suffix == ".py" or path == REPO / "msrnn_zoo" for path in taken), sorted(map(str, taken))
    for package in REPO.glob("plugins/*/msrnn_*/__init__.py"):
        assert set(package.parent.glob("*.py")) <= taken, package.parent
    assert any(r.startswith("mypy>=") for r in project["project"]["optional-dependencies"]["dev"])
