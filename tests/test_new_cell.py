"""`msrnn-zoo new-cell` writes a plugin distribution that works as written: installed (its entry point read
from its own pyproject.toml), it registers NAME and ms-NAME and passes its own tests."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner

import msrnn_zoo
from msrnn_zoo import plugins
from msrnn_zoo.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def generate(tmp_path: Path, name: str = "convgru") -> Path:
    result = invoke("new-cell", name, "--dir", tmp_path)
    assert result.exit_code == 0, result.output
    return tmp_path / f"msrnn-{name}"


def install_from_pyproject(dist: Path, site: Path) -> None:
    """What pip leaves for an editable install: the sources on sys.path and a dist-info holding the pyproject's
    name, version and entry points (read from the generated pyproject, not assumed)."""
    text = (dist / "pyproject.toml").read_text()
    name = re.search(r'^name = "([^"]+)"', text, re.M).group(1)
    version = re.search(r'^version = "([^"]+)"', text, re.M).group(1)
    section = text.split("[project.entry-points.msrnn_zoo]\n", 1)[1].split("\n\n", 1)[0]
    points = "\n".join(f"{key} = {value}" for key, value in re.findall(r'^(\S+) = "([^"]+)"$', section, re.M))
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[{plugins.ENTRY_POINT_GROUP}]\n{points}\n")


def test_the_generated_distribution_is_complete(tmp_path):
    dist = generate(tmp_path)
    files = sorted(str(p.relative_to(dist)) for p in dist.rglob("*") if p.is_file())
    assert files == ["CARD.md", "README.md", "msrnn_convgru/__init__.py", "msrnn_convgru/cell.py",
                     "msrnn_convgru/plugin.py", "pyproject.toml", "tests/test_msrnn_convgru.py"]
    pyproject = (dist / "pyproject.toml").read_text()
    assert '[project.entry-points.msrnn_zoo]\nconvgru = "msrnn_convgru.plugin"' in pyproject
    assert 'license = "Apache-2.0"' in pyproject
    cell = (dist / "msrnn_convgru" / "cell.py").read_text()
    assert "class ConvgruCell(RecurrentCell)" in cell and "def init_state" in cell and "$" not in cell
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging folder left behind
    for path in dist.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")


def test_installed_it_registers_both_models_and_passes_its_own_tests(tmp_path, monkeypatch, fresh_zoo):
    dist = generate(tmp_path, "my-gru")
    site = tmp_path / "site"
    install_from_pyproject(dist, site)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(dist))
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)  # generating it looked at the plugins already
    assert {"my-gru", "ms-my-gru"} <= set(msrnn_zoo.list_models())
    record = next(r for r in plugins.records() if r.name == "my-gru")
    assert record.distribution == "msrnn-my-gru" and record.cells == ["my-gru"] and record.ok
    listed = invoke("list", "*my-gru", "--json")
    assert {m["name"] for m in json.loads(listed.output)["models"]} == {"my-gru", "ms-my-gru"}
    spec = importlib.util.spec_from_file_location("generated_tests", dist / "tests" / "test_msrnn_my_gru.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.test_registered()
    module.test_conformance()
    module.test_compiles_whole()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("convlstm", "already registered"),
        ("ms-convlstm", "starts with 'ms-'"),
        ("My_Cell", "cannot name a cell"),
        ("2cell", "cannot name a cell"),
        ("", "cannot name a cell"),
        ("a--b", "cannot name a cell"),
        ("nl\n", "cannot name a cell"),  # else a folder and a package whose names end in a newline
        ("zoo", "'msrnn-zoo' is the zoo's own distribution"),
        ("moving-mnist", "names a registered dataset"),
        ("kth", "names a registered dataset"),
    ],
)
def test_bad_names_are_refused(tmp_path, name, words):
    result = invoke("new-cell", name, "--dir", tmp_path)
    assert result.exit_code == 1 and "Traceback" not in result.output and words in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_name_whose_multiscale_model_is_taken_is_refused(tmp_path, monkeypatch):
    """Every model the cell would add must be free, not only its own name, else the installed cell has no
    multi-scale model. The catalogue is simulated: the registry now refuses the cell 'ms-fresh' that made such a
    model 'ms-fresh' without a cell 'fresh'."""
    from msrnn_zoo import registry

    listed = registry.list_models
    monkeypatch.setattr(registry, "list_models", lambda *args, **kwargs: [*listed(*args, **kwargs), "ms-fresh"])
    result = invoke("new-cell", "fresh", "--dir", tmp_path)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "'fresh' would add the models 'fresh' and 'ms-fresh', but 'ms-fresh' is already registered" in " ".join(
        result.output.split()), result.output
    assert list(tmp_path.iterdir()) == []


def test_names_of_installed_distributions_and_importable_packages_are_refused(tmp_path, monkeypatch):
    """A new distribution of the same name (PEP 503: case, '-', '_' and '.' alike) or package would replace it."""
    site = tmp_path / "site"
    (site / "MSRNN_Other.Cell-1.0.dist-info").mkdir(parents=True)
    (site / "MSRNN_Other.Cell-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: MSRNN_Other.Cell\n"
                                                                    "Version: 1.0\n")
    (site / "msrnn_loose").mkdir()
    (site / "msrnn_loose" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("new-cell", "other-cell", "--dir", out)
    assert result.exit_code == 1 and "'msrnn-other-cell' is already installed" in result.output, result.output
    result = invoke("new-cell", "loose", "--dir", out)
    assert result.exit_code == 1 and "'msrnn_loose' can already be imported" in result.output, result.output
    assert list(out.iterdir()) == []


def test_the_name_of_a_plugin_of_the_zoo_that_is_not_installed_is_refused(tmp_path, monkeypatch):
    """With the core alone, `new-cell predrnn` wrote msrnn-predrnn: installed, it ranked as the zoo's own plugin
    (shown as built-in, first to claim names), and installing the real msrnn-predrnn would replace it."""
    import importlib.metadata

    from msrnn_zoo import registry

    for lister in ("list_cells", "list_models", "list_datasets"):
        monkeypatch.setattr(registry, lister, lambda *args, **kwargs: [])
    real = importlib.metadata.distributions
    monkeypatch.setattr(importlib.metadata, "distributions", lambda **kwargs: [
        d for d in real(**kwargs) if (d.metadata["Name"] or "").lower() not in ("msrnn-predrnn", "msrnn-germany")])
    for name in ("predrnn", "germany"):
        result = invoke("new-cell", name, "--dir", tmp_path)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert (f"'msrnn-{name}' is the name of a plugin released with the zoo (plugins/msrnn-{name} of its "
                "repository), which is not installed here") in " ".join(result.output.split()), result.output
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_never_written_into(tmp_path):
    mine = tmp_path / "msrnn-convgru"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    result = invoke("new-cell", "convgru", "--dir", tmp_path)
    assert result.exit_code == 1 and "already exists" in result.output
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty" / "msrnn-convgru"
    empty.mkdir(parents=True)
    assert invoke("new-cell", "convgru", "--dir", tmp_path / "empty").exit_code == 1
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("below", ["", "sub"])
def test_a_dir_that_is_a_file_is_refused_by_name(tmp_path, below):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    result = invoke("new-cell", "convgru", "--dir", notes / below if below else notes)
    assert result.exit_code == 1 and "Errno" not in result.output, result.output
    assert f"{notes} is a file" in result.output and "choose another --dir" in result.output, result.output
    assert notes.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]



def test_new_cell_from_python_names_parent_and_the_list_functions(tmp_path, monkeypatch):
    """scaffold.new_cell told a notebook to see `msrnn-zoo list` and to choose another --dir: a command and a flag of
    `msrnn-zoo new-cell`, which it had not run. It now names list_cells(), list_models(), list_datasets() and parent;
    the CLI keeps its words (test_bad_names_are_refused, test_a_dir_that_is_a_file_is_refused_by_name)."""
    from msrnn_zoo import registry, scaffold

    listed = registry.list_models
    monkeypatch.setattr(registry, "list_models", lambda *args, **kwargs: [*listed(*args, **kwargs), "ms-fresh"])
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    (tmp_path / "msrnn-convgru").mkdir()
    cases = [(("convlstm", tmp_path), "(see msrnn_zoo.list_cells())"),
             (("fresh", tmp_path), "(see msrnn_zoo.list_models())"),
             (("moving-mnist", tmp_path), "(see msrnn_zoo.list_datasets())"),
             (("convgru", notes), "choose another parent (nothing was written)"),
             (("convgru", tmp_path), "already exists; choose another parent (nothing was written)")]
    for (name, parent), words in cases:
        with pytest.raises((ValueError, OSError)) as caught:
            scaffold.new_cell(name, parent)
        assert words in str(caught.value) and "msrnn-zoo list" not in str(caught.value), str(caught.value)
        assert "--dir" not in str(caught.value), str(caught.value)
        assert "see `msrnn-zoo list`" in caught.value.cli_message or "choose another --dir" in caught.value.cli_message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["msrnn-convgru", "notes.txt"]


@pytest.mark.slow
def test_pip_installs_it_into_a_fresh_venv_and_its_tests_pass(tmp_path):
    """The whole path of a plugin author: generate, pip install -e, pytest, msrnn-zoo list."""
    dist = generate(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # the zoo, torch and pip come from this environment; the new distribution goes into the fresh one only
    outer = sysconfig.get_paths()["purelib"]
    Path(purelib, "outer.pth").write_text(f"import site; site.addsitedir({outer!r})\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    env["OMP_NUM_THREADS"] = "1"  # as the suite runs (conftest.py): tiny convolutions, no thread fights
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                              "--no-index", "-e", str(dist)], capture_output=True, text=True, env=env)
    assert install.returncode == 0, install.stdout + install.stderr
    tests = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=dist,
                           capture_output=True, text=True, env=env)
    assert tests.returncode == 0 and "3 passed" in tests.stdout, tests.stdout + tests.stderr
    listed = subprocess.run([str(python), "-c", "from msrnn_zoo.cli import main; main()", "list", "*convgru",
                             "--json"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    assert {m["name"] for m in json.loads(listed.stdout)["models"]} == {"convgru", "ms-convgru"}
