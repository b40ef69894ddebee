"""The documentation does what it says: every command it shows exists with the options shown, and what it tells a
plugin's author to call exists. Read from the files themselves, so a renamed option fails here, not for a reader."""

import ast
import builtins
import dataclasses
import re
from pathlib import Path

import click
import pytest

from msrnn_zoo.cli import main
from msrnn_zoo.store import StoreWriter

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "DEVELOPERS.md", *(REPO / "docs").glob("*.md"),
               *(REPO / "plugins").glob("*/README.md"), REPO / "cards" / "README.md"])


def code_of(text: str) -> list[str]:
    """The code a document shows: fenced blocks, indented blocks and inline code, backslash continuations joined."""
    text = text.replace("\\\n", " ")
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    rest = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    indented = re.findall(r"^(?: {4}|\t)(\S.*)$", rest, flags=re.M)
    inline = re.findall(r"`([^`\n]+)`", rest)
    return [line for block in fenced for line in block.splitlines()] + indented + inline


def commands_shown(path: Path) -> list[str]:
    """Each `msrnn-zoo ...` command line of a document, up to a comment or the end of its code."""
    return [m.group(1).strip() for code in code_of(path.read_text())
            for m in re.finditer(r"(?<![\w/-])msrnn-zoo((?: +[^\s#|;&>)]+)+)", code)]


def resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = main
    while words and words[0] in ("--debug", "--version"):  # the zoo's own options, before a command
        words = words[1:]
    while words and isinstance(command, click.Group) and words[0] in command.commands:
        command = command.commands[words.pop(0)]
    return command, words


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_a_document_shows_exists_with_the_options_shown(path):
    shown = commands_shown(path)
    wrong = []
    for line in shown:
        command, rest = resolve(line.split())
        if isinstance(command, click.Group) and rest[:1] != ["..."]:  # `msrnn-zoo --debug ...`: any command
            wrong.append(f"`msrnn-zoo {line}`: no such command (`msrnn-zoo --help` lists them)")
            continue
        known = {name for p in command.params for name in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}
        wrong += [f"`msrnn-zoo {line}`: {command.name} has no option {word.split('=')[0]}" for word in rest
                  if word.startswith("-") and word.split("=")[0] not in known]
    assert not wrong, f"{path.relative_to(REPO)} shows commands the CLI refuses:\n" + "\n".join(wrong)


def test_the_documents_show_commands_at_all():
    """The parser above finds what the README shows: a change of its syntax must not pass by finding nothing."""
    shown = commands_shown(REPO / "README.md")
    assert len(shown) >= 30 and "bench ms-predrnn --device cuda" in shown, shown


def test_what_contributing_tells_a_dataset_prepare_to_call_on_its_store_exists():
    """CONTRIBUTING offered `out.path` for other files, which StoreWriter no longer has (a store holds arrays only,
    so that a rebuild can tell its files from a user's): a plugin following it failed with an AttributeError."""
    writer = StoreWriter(dir=REPO, dataset="mydata")
    named = set(re.findall(r"`out\.(\w+)", (REPO / "CONTRIBUTING.md").read_text()))
    assert named >= {"create_array", "save_array", "meta"}, named
    fields = {f.name for f in dataclasses.fields(writer)}
    missing = sorted(name for name in named if name not in fields and not callable(getattr(writer, name, None)))
    assert not missing, f"CONTRIBUTING.md names out.{', out.'.join(missing)}, which StoreWriter has not"


@pytest.mark.parametrize("name", ["train", "reproduce"])
def test_force_says_it_replaces_only_a_run_msrnn_zoo_made(name):
    """`reproduce --help` said --force would 'Replace an existing run directory', any; it replaces only a run
    carrying msrnn-zoo's marker, as `train --force` says."""
    force = next(p for p in main.commands[name].params if "--force" in p.opts)
    assert "made by msrnn-zoo" in force.help, force.help


def names_a_snippet_leaves_undefined(code: str) -> set[str]:
    """Names a snippet reads that it neither imports nor assigns (nor Python's builtins): what it takes silently
    from another snippet, so that a reader who copies it alone meets a NameError."""
    tree = ast.parse(code)
    bound = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)} - bound


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_python_snippet_a_document_shows_runs_on_its_own(path):
    """msrnn-germany's README showed `msrnn_zoo.load_dataset(...)` without `import msrnn_zoo`: copied alone, as a
    reader copies one block, it failed with a NameError. Each ```python block must import or define what it uses."""
    blocks = re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)
    wrong = [f"a snippet uses {', '.join(sorted(names))} without importing or defining it:\n{block}"
             for block in blocks if (names := names_a_snippet_leaves_undefined(block))]
    assert not wrong, f"{path.relative_to(REPO)}: " + "\n".join(wrong)


def command_names(group: click.Group, prefix: str = "") -> list[str]:
    """Every command a user can type, subcommands of a group included (`data prepare`)."""
    names = []
    for name, command in group.commands.items():
        names += command_names(command, f"{prefix}{name} ") if isinstance(command, click.Group) else [prefix + name]
    return names


def test_the_readme_shows_every_command_of_the_cli():
    """The README's command list left out `card` (render the card to review and edit before `push --card`) and
    `download` (a dataset's public files for offline use): a reader of it did not learn that either exists."""
    shown = {" ".join(line.split()[:2]) for line in commands_shown(REPO / "README.md")}
    shown |= {line.split()[0] for line in commands_shown(REPO / "README.md")}
    missing = sorted(name for name in command_names(main) if name not in shown)
    assert not missing, f"README.md shows no `msrnn-zoo {'`, `msrnn-zoo '.join(missing)}` command"


def test_the_readme_trains_evaluates_and_draws_from_python_as_shown(tmp_path, monkeypatch):
    """The README showed no way to train from Python (only the model's forward), though a notebook's users train
    there: its "Training from Python" block is run as written (toy sizes), and what it leaves is what it says."""
    from PIL import Image

    text = (REPO / "README.md").read_text()
    block = re.search(r"^### Training from Python\n.*?^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert block, "README.md has no ```python block under its heading 'Training from Python'"
    monkeypatch.chdir(tmp_path)
    *statements, last = ast.parse(block.group(1)).body
    scope: dict[str, object] = {}
    exec(compile(ast.Module(body=statements, type_ignores=[]), "README.md", "exec"), scope)
    shown = eval(compile(ast.Expression(body=last.value), "README.md", "eval"), scope)
    assert isinstance(shown, Image.Image)  # what a notebook displays as the cell's value
    assert scope["trainer"].progress.epoch == 2 and set(scope["reports"]) >= {"model", "copy-last-frame"}
    assert (tmp_path / "runs" / "nb" / "model.safetensors").is_file()


def test_developers_md_says_why_each_module_of_the_package_is_there():
    """DEVELOPERS.md had no map of msrnn_zoo/: eager.py, forecast.py, versions.py, licenses.py, validation.py and
    others were named nowhere a newcomer looks. Each module gets a line under "Where things live"."""
    text = (REPO / "DEVELOPERS.md").read_text()
    section = text.split("## Where things live", 1)[-1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^- `(\w+)\.py`", section, flags=re.M)) | set(re.findall(r"\(and `(\w+)\.py`", section))
    modules = {path.stem for path in (REPO / "msrnn_zoo").glob("*.py") if path.stem != "__init__"}
    assert not modules - listed, f"DEVELOPERS.md lists no {', '.join(sorted(modules - listed))}.py"
    assert not listed - modules, f"DEVELOPERS.md lists {', '.join(sorted(listed - modules))}.py, which do not exist"
