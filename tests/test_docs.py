"""The documentation does what it says: every command it shows exists with the options shown, and what it tells a
plugin's author to call exists. Read from the files themselves, so a renamed option fails here, not for a reader."""

import ast
import builtins
import dataclasses
import re
import sys
from pathlib import Path

import click
import pytest

from msrnn_zoo.cli import main
from msrnn_zoo.store import StoreWriter

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "DEVELOPERS.md", *(REPO / "docs").glob("*.md"),
               *(REPO / "plugins").glob("*/README.md"), REPO / "cards" / "README.md"])


@dataclasses.dataclass(frozen=True)
class Fence:
    """A fenced block of a document, dedented as Markdown reads it (a list item's fence is indented), with the
    placeholder names the HTML comment on the line before it declares (`<!-- placeholders: A, b -->`)."""

    info: str
    code: str
    line: int
    placeholders: frozenset[str] | None


FENCE = re.compile(r"^( *)(`{3,}|~{3,})([^`\n]*)$")
PLACEHOLDERS = re.compile(r"^ *<!-- placeholders: ([\w, ]+) -->$", flags=re.M)


def fences_of(text: str) -> tuple[list[Fence], str]:
    """Every fenced block, at any indentation, and the text without them (for indented blocks and inline code).
    An unclosed fence runs to the end, as Markdown renders it."""
    lines, fences, rest, i = text.split("\n"), [], [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            rest.append(lines[i])
            i += 1
            continue
        indent, mark, info = len(opening.group(1)), opening.group(2), opening.group(3).strip()
        end = i + 1
        while end < len(lines) and not re.fullmatch(rf" *{mark[0]}{{{len(mark)},}} *", lines[end]):
            end += 1
        code = "\n".join(re.sub(rf"^ {{0,{indent}}}", "", line) for line in lines[i + 1:end])
        marker = PLACEHOLDERS.match(lines[i - 1]) if i else None
        names = frozenset(name.strip() for name in marker.group(1).split(",")) if marker else None
        fences.append(Fence(info, code + "\n", i + 1, names))
        i = end + 1
    return fences, "\n".join(rest)


def code_of(text: str) -> list[str]:
    """The code a document shows: fenced blocks, indented blocks and inline code, backslash continuations joined."""
    fences, rest = fences_of(text)
    fenced = [fence.code.replace("\\\n", " ") for fence in fences]
    rest = rest.replace("\\\n", " ")
    indented = re.findall(r"^(?: {4}|\t)(\S.*)$", rest, flags=re.M)
    inline = re.findall(r"`([^`\n]+)`", rest)
    return [line for block in fenced for line in block.splitlines()] + indented + inline


def commands_in(text: str) -> list[str]:
    """Each `msrnn-zoo ...` command line of a document's text, up to a comment or the end of its code."""
    return [m.group(1).strip() for code in code_of(text)
            for m in re.finditer(r"(?<![\w/-])msrnn-zoo((?: +[^\s#|;&>)]+)+)", code)]


def commands_shown(path: Path) -> list[str]:
    return commands_in(path.read_text())


def options_named_in_prose(text: str) -> list[str]:
    """Inline code that names a command with an option, as prose does without the `msrnn-zoo` before it:
    `train --force`, `evaluate --frames all`. A span without an option names a command only (or a Python name)."""
    return [span for span in re.findall(r"`([^`\n]+)`", fences_of(text)[1].replace("\\\n", " "))
            if (words := span.split()) and words[0] in main.commands and any(w.startswith("--") for w in words)]


def resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = main
    while words and words[0] in ("--debug", "--version"):  # the zoo's own options, before a command
        words = words[1:]
    while words and isinstance(command, click.Group) and words[0] in command.commands:
        command = command.commands[words.pop(0)]
    return command, words


def commands_the_cli_refuses(text: str) -> list[str]:
    """What is wrong with each command a document's text shows: a command that does not exist, an option its
    command has not, a value a choice option refuses. UPPERCASE words, `...` and `<...>` are the reader's values."""
    wrong = []
    for line in commands_in(text) + options_named_in_prose(text):
        command, rest = resolve(line.split())
        if isinstance(command, click.Group) and rest[:1] != ["..."]:  # `msrnn-zoo --debug ...`: any command
            wrong.append(f"`msrnn-zoo {line}`: no such command (`msrnn-zoo --help` lists them)")
            continue
        options = {name: p for p in command.params for name in (*p.opts, *p.secondary_opts)}
        for i, word in enumerate(rest):
            name, equals, value = word.partition("=")
            if not word.startswith("-") or re.fullmatch(r"-[\d.]+", word):  # a negative number is a value
                continue
            if name not in options and name not in ("--help", "-h"):
                wrong.append(f"`msrnn-zoo {line}`: {command.name} has no option {name}")
                continue
            value = value if equals else (rest[i + 1] if i + 1 < len(rest) else "")
            choices = getattr(options.get(name), "type", None)
            if (isinstance(choices, click.Choice) and not getattr(options[name], "is_flag", False) and value
                    and not value.isupper() and "..." not in value and not value.startswith("<")
                    and value not in choices.choices):
                wrong.append(f"`msrnn-zoo {line}`: {name} takes one of {', '.join(choices.choices)}, not {value}")
    return wrong


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_a_document_shows_exists_with_the_options_shown(path):
    wrong = commands_the_cli_refuses(path.read_text())
    assert not wrong, f"{path.relative_to(REPO)} shows commands the CLI refuses:\n" + "\n".join(wrong)


def test_a_command_the_cli_refuses_is_found_wherever_a_document_shows_it():
    """The check above reads a list item's fence (CONTRIBUTING's are indented), a command named in prose without
    `msrnn-zoo`, and a choice's value; it takes UPPERCASE words and `...` for the reader's values."""
    text = ("1. Train:\n\n   ```bash\n   msrnn-zoo train MODEL --epochz 1\n   ```\n\n"
            "Then `evaluate --frame all` or `evaluate RUN --frames al`, `msrnn-zoo data prepair X`; "
            "`msrnn-zoo evaluate RUN --frames all --weights BEST`, `train ... --force` and `list` are right.\n")
    assert commands_the_cli_refuses(text) == [
        "`msrnn-zoo train MODEL --epochz 1`: train has no option --epochz",
        "`msrnn-zoo data prepair X`: no such command (`msrnn-zoo --help` lists them)",
        "`msrnn-zoo evaluate --frame all`: evaluate has no option --frame",
        "`msrnn-zoo evaluate RUN --frames al`: --frames takes one of "
        + ", ".join(next(p for p in main.commands["evaluate"].params if p.name == "frames").type.choices)
        + ", not al",
    ]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_make_target_a_document_shows_exists(path):
    """`make demo`, `make test`, `make test-torch`...: a target the Makefile lost would fail only for a reader."""
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.M))
    shown = {m.group(1) for code in code_of(path.read_text()) for m in re.finditer(r"(?<![\w/-])make +([\w-]+)", code)}
    assert shown <= targets, f"{path.relative_to(REPO)} shows `make {', make '.join(sorted(shown - targets))}`"


def script_options_refused(text: str) -> list[str]:
    """Options shown for a script of this repository (`python benchmarks/step_time.py --size 64`) that it does not
    declare: an option is declared where its literal (`"--size"`) is in the script, or in benchmarks/_common.py for
    a script that adds its common options. Read as text, not run: importing each script would cost seconds."""
    common = (REPO / "benchmarks" / "_common.py").read_text()
    wrong = []
    for code in code_of(text):
        for m in re.finditer(r"(?<![\w/.-])((?:[\w-]+/)+[\w-]+\.py)((?: +[^\s#|;&>)]+)*)", code):
            script = REPO / m.group(1)
            if not script.is_file():  # a file of the original code, or of a package `new-cell` writes
                continue
            source = script.read_text()
            declared = source + (common if "add_common_options(" in source else "")
            wrong += [f"`{' '.join(m.group(0).split())}`: the script has no option {word.split('=')[0]}"
                      for word in m.group(2).split() if word.startswith("--")
                      and f'"{word.split("=")[0]}"' not in declared]
    return wrong


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_script_option_a_document_shows_exists(path):
    """`msrnn-zoo` commands are checked above; the benchmark and plugin scripts the documents run are checked here,
    so that a number's command still runs as shown."""
    wrong = script_options_refused(path.read_text())
    assert not wrong, f"{path.relative_to(REPO)} shows script options that do not exist:\n" + "\n".join(wrong)


def test_a_script_option_that_does_not_exist_is_found():
    text = ("    python benchmarks/step_time.py --size 64 --sizes 32 \\\n        --clock process predrnn\n"
            "and `python benchmarks/options.py --train-only --options clip-graph ms-predrnn`.\n")
    assert script_options_refused(text) == [
        "`benchmarks/step_time.py --size 64 --sizes 32 --clock process predrnn`: the script has no option --sizes"]
    shown = [line for path in DOCS for line in code_of(path.read_text()) if "benchmarks/step_time.py --" in line]
    assert len(shown) >= 3, shown  # the documents' own commands are read at all


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


def python_snippets(path: Path) -> list[Fence]:
    return [fence for fence in fences_of(path.read_text())[0] if fence.info in ("python", "py")]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_python_snippet_a_document_shows_runs_on_its_own(path):
    """msrnn-germany's README showed `msrnn_zoo.load_dataset(...)` without `import msrnn_zoo`: copied alone, as a
    reader copies one block, it failed with a NameError. Each ```python block, those inside a list item too (where
    CONTRIBUTING's dataset kit example went unchecked without its import), must parse and import or define what it
    uses, but for the names its `<!-- placeholders: ... -->` line leaves to the reader: exactly those, so that the
    line cannot hide a missing import nor outlive its placeholder."""
    wrong = []
    for fence in python_snippets(path):
        try:
            names = names_a_snippet_leaves_undefined(fence.code)
        except SyntaxError as error:
            wrong.append(f"line {fence.line}: the snippet is not Python ({error.msg}, its line {error.lineno})")
            continue
        if names != (fence.placeholders or set()):
            wrong.append(f"line {fence.line}: the snippet leaves {', '.join(sorted(names)) or 'nothing'} undefined, "
                         f"its placeholders line names {', '.join(sorted(fence.placeholders or ())) or 'nothing'}:"
                         f"\n{fence.code}")
    assert not wrong, f"{path.relative_to(REPO)}: " + "\n".join(wrong)


def test_the_names_the_documents_leave_to_the_reader_are_these():
    """A `<!-- placeholders: ... -->` line exempts names from the check above; each one is listed here with why,
    so that the exemptions grow only in a diff of this test, and a line that is not just before a fence fails."""
    expected = [
        # what a dataset's author writes: the DatasetInfo of the snippet before, the factory and its capabilities
        ("CONTRIBUTING.md", "INFO, MyScores, describe, factory, fn, prepare"),
        # small raw files in the dataset's own format, which only its author can write
        ("CONTRIBUTING.md", "write_small_raw_files"),
    ]
    found, stray = [], []
    for path in DOCS:
        text = path.read_text()
        marked = [fence for fence in fences_of(text)[0] if fence.placeholders is not None]
        found += [(str(path.relative_to(REPO)), ", ".join(sorted(fence.placeholders))) for fence in marked]
        stray += [str(path.relative_to(REPO))] * (len(PLACEHOLDERS.findall(text)) - len(marked))
    assert not stray, f"{', '.join(stray)}: a `<!-- placeholders: ... -->` line not just before a fence"
    assert sorted(found) == sorted(expected), f"placeholders in the documents: {found}, listed here: {expected}"


def test_the_snippets_inside_list_items_are_found():
    """The parser reads fences indented in list items: CONTRIBUTING's snippets went unchecked without it."""
    snippets = python_snippets(REPO / "CONTRIBUTING.md")
    assert len(snippets) >= 7 and any("testing.check_dataset(" in fence.code for fence in snippets), snippets
    assert all(not fence.code.startswith(" ") for fence in snippets), "an indented fence's code is not dedented"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_toml_snippet_a_document_shows_parses(path):
    """A ```toml block is what a plugin's author pastes into pyproject.toml: it must be TOML."""
    for fence in fences_of(path.read_text())[0]:
        if fence.info == "toml":
            try:
                tomllib.loads(fence.code)
            except tomllib.TOMLDecodeError as error:
                pytest.fail(f"{path.relative_to(REPO)} line {fence.line}: the TOML snippet does not parse ({error})")


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
