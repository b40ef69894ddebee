"""``msrnn-zoo``: list, inspect, train, evaluate and forecast from the command line.

Errors a user can cause (a bad name, a bad path, a run that exists) print one red line and exit 1;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from .io import DiskFullError
from .licenses import DEFAULT_LICENSE, check_license
from .validation import MAX_SEED, cli_text

LICENSE_HELP = ("The Hub license id the card claims for the weights (mit, cc-by-4.0, ...; "
                "https://huggingface.co/docs/hub/repositories-licenses); a zoo dataset's own terms are quoted in the "
                "card's text")

# No emoji codes: a path or a message holding ":train:" must print as typed.
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError, OSError,
               FloatingPointError)  # a diverging loss: the user chose the learning rate and the data


def _q(path: str | Path) -> str:
    """A path or name as it must be typed in a shell: a printed command is there to be copied, and ``runs/g ü``
    unquoted is two arguments. One that begins with ``-`` is written ``./-x``: ``evaluate -x`` is read as an option
    ("No such option")."""
    text = str(path)
    return shlex.quote(f"./{text}" if text.startswith("-") else text)


def error_line(message: str) -> None:
    """Print one red ``Error:`` line; the message is plain text (no markup, no emoji, no highlighting).

    Under torchrun every process meets the same mistake; only rank 0 says it.
    """
    from .distributed import is_main_process

    if not is_main_process():
        return
    line = Text("Error: ", style="red")
    line.append(_one_line_but_commands(str(message)))
    err_console.print(line, highlight=False, soft_wrap=True)


def print_table(table: Table) -> None:
    """Print a table of the CLI. Into a terminal it fits the window, as rich does; elsewhere (a pipe, a file, a CI
    log) rich assumes 80 columns and cut names to fit (``checkpoi…``, ``moving-m…``), so there the table is as wide
    as its longest cells need."""
    if console.is_terminal:
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    if natural > console.width:
        table.width = natural
    console.print(table, crop=False)  # lines wider than the console's 80 columns are printed whole


def _one_line_but_commands(message: str) -> str:
    """The message on one line, but for the lines it indents: commands to copy (``not_published_message``), each
    kept on a line of its own so that it can be copied whole."""
    out: list[str] = []
    for raw in message.splitlines():
        if raw.startswith("  ") and raw.strip():
            out.append("\n  " + " ".join(raw.split()))
        elif raw.strip():
            out.append(("\n" if out and out[-1].startswith("\n") else " ") + " ".join(raw.split()))
    return "".join(out).strip(" ")


DISTRIBUTED_COMMANDS = ("train", "reproduce")
"""The commands that run under torchrun (``WORLD_SIZE`` > 1), each process training its share of the batches."""


def _check_not_copied_by_torchrun(ctx: click.Context) -> None:
    """Refuse any other command under torchrun: each of its copies would run the whole command, writing the same
    files at once (and racing on the checks that they do not exist yet)."""
    from .distributed import from_env

    if from_env().active and ctx.command.name not in DISTRIBUTED_COMMANDS:
        raise ValueError(f"`{ctx.command_path}` runs in one process: start it without torchrun (under torchrun only "
                         f"{' and '.join(f'`msrnn-zoo {c}`' for c in DISTRIBUTED_COMMANDS)} share the work between "
                         "processes).")


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a user's mistake into one red line (exit code 1) unless --debug asks for the traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            _check_not_copied_by_torchrun(click.get_current_context())
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            if click.get_current_context().find_root().obj.get("debug"):
                raise
            error_line(cli_text(exc))
            sys.exit(1)
        except (MemoryError, RuntimeError) as exc:  # sizes the user chose (--hidden, --batch-size) that do not fit
            text = str(exc)
            if not isinstance(exc, MemoryError) and not any(
                    sign in text for sign in ("out of memory", "not enough memory", "can't allocate memory")):
                raise
            if click.get_current_context().find_root().obj.get("debug"):
                raise
            error_line(f"Ran out of memory; {_memory_advice()} "
                       f"({type(exc).__name__}: {text.splitlines()[0] if text else 'no detail'}).")
            sys.exit(1)

    return wrapper


MEMORY_OPTIONS = ("--hidden", "--layers", "--batch-size", "--size")
"""The options that size a command's memory, in the order to try lowering them; a command whose options of these
names are not the user's to lower sets its own ``memory_options``."""


def _memory_advice() -> str:
    """What to lower, among the options the running command has (`convert` was told to lower --batch-size, which
    it does not take)."""
    command = click.get_current_context().command
    options = getattr(command, "memory_options", None)
    if options is None:
        have = {name for param in command.params for name in getattr(param, "opts", ())}
        options = [o for o in MEMORY_OPTIONS if o in have]
    if not options:
        return "use smaller clips or a smaller model"
    listed = options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"
    return f"lower {listed}, or use smaller clips"


INTERRUPTED = 130
"""The exit status after Ctrl-C (or SIGTERM while training), as a shell reports a command that SIGINT ended: every
command exits with it, so that a job script or a Makefile tells an interrupted run from a mistake (1)."""


class ZooGroup(click.Group):
    """Click's usage errors (a bad option value, a missing argument) as the same one red line and exit code 1."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.exceptions.Abort as exc:
            if isinstance(exc.__context__, KeyboardInterrupt):  # Ctrl-C: 130, as the shell's 128 + SIGINT
                error_line("Interrupted.")
                sys.exit(INTERRUPTED)
            error_line("Aborted.")
            sys.exit(1)
        except click.ClickException as exc:
            hint = ""
            ctx = getattr(exc, "ctx", None)
            if ctx is not None and isinstance(exc, click.UsageError):
                hint = f" (see `{ctx.command_path} --help`)"
            error_line(exc.format_message() + hint)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


POSITIVE = click.IntRange(min=1)
"""An integer option that must be at least 1 (``--epochs 0`` is refused, never read as "the default")."""


class FiniteFloatRange(click.FloatRange):
    """A ``FloatRange`` that refuses nan and inf: every comparison with nan is false, so ``FloatRange(min=0)`` let
    ``--lr nan`` through to a config check that said "must be a number, got nan (a number)"."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite number; give one in the range {self._describe_range()}.", param, ctx)
        return number


SEED = click.IntRange(0, MAX_SEED)
"""What ``torch.manual_seed`` takes, so that click names ``--seed`` when a seed is out of it."""


class UserPath(click.Path):
    """A path that is not empty, with ``~`` expanded.

    Empty, ``--source "$RAW"`` with ``RAW`` unset would mean the current folder, and ``data prepare`` would search
    it (a home folder, say) to any depth for raw files; ``--input ""`` would read the folder as a file. A quoted
    ``"~/runs/a"`` would be a folder named ``~`` in the current one, which a later ``rm -rf ~`` meant for it would
    take the home folder with it. ``data`` says what the path must be, for the message."""

    def __init__(self, what: str = "path") -> None:
        super().__init__(path_type=Path)
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            where = " (write . for the current one)" if self.what == "folder" else ""
            self.fail(f"is empty; give a {self.what}{where}.", param, ctx)
        path = super().convert(value, param, ctx)
        return path.expanduser() if isinstance(path, Path) else path


DATA_PATH = UserPath("folder")
FILE_PATH = UserPath("file")
PATH = UserPath()
DATA_ROOT = "$MSRNN_ZOO_DATA, or ~/.cache/msrnn_zoo/datasets where it is unset"
"""The data root, as ``data.default_root`` finds it: said in every --root help, since few users set the variable."""
STORE_OR_DATA_ROOT = ("default: DATASET under the data root for a dataset prepared into a store, the data root itself "
                      f"for the others; the data root is {DATA_ROOT}")
MAX_HORIZON = 1000
"""predict's ceiling: a picture of more frames than this is not a picture; long rollouts belong to the API."""
FAST_PATH_CHOICE = click.Choice(["none", "compile", "cudagraph", "clip-graph"])
"""``network.FAST_PATHS`` spelled out (``none`` for ``None``): the CLI starts without importing torch."""
PRECISION_CHOICE = click.Choice(["fp32", "bf16", "fp16", "tf32"])
"""``precision.PRECISIONS`` spelled out, for the same reason."""


def _parse_split(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, float, float]:
    parts = value.split(",")
    try:
        fractions = tuple(float(p) for p in parts)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not three numbers like 0.8,0.1,0.1 (train,val,test).") from None
    import math

    if len(fractions) != 3 or not all(math.isfinite(f) and f >= 0 for f in fractions) \
            or abs(sum(fractions) - 1.0) > 1e-6:
        raise click.BadParameter(f"{value!r} must be three non-negative fractions summing to 1, "
                                 "like 0.8,0.1,0.1 (train,val,test).")
    return fractions


def _print_versions(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """What a bug report needs: msrnn-zoo's version, then each plugin distribution's, Python's and torch's, one a line.

    ``--version`` said msrnn-zoo's alone, while a cell or a dataset is its plugin's code, released on its own. Read
    from the installed metadata: a plugin that fails to import is listed too (`msrnn-zoo plugins` says why), and
    torch is not imported.
    """
    if not value or ctx.resilient_parsing:
        return
    import importlib.metadata
    import platform

    from .plugins import ENTRY_POINT_GROUP, normalize
    from .versions import ZOO, installed_version

    click.echo(f"{ZOO}, version {installed_version(ZOO)}")
    plugins: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        if dist is not None:
            plugins[normalize(dist.metadata["Name"])] = dist.version
    for name in sorted(plugins):
        click.echo(f"plugin {name} {plugins[name]}")
    click.echo(f"python {platform.python_version()}")
    click.echo(f"torch {installed_version('torch') or 'not installed'}")
    ctx.exit()


EXIT_STATUS = ("Exit status: 0 when the command did what it was asked; 1 on a mistake (a bad option or name, a missing "
               "file, a refused overwrite: one red line on stderr saying what to do, --debug for the traceback); 130 "
               "when interrupted (Ctrl-C, or SIGTERM while training). Results go to stdout; progress bars, notes and "
               "errors to stderr, but for train's progress lines.")
"""For job scripts and Makefiles, which act on the status: said at the foot of ``msrnn-zoo --help``."""


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_STATUS)
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_versions,
              help="Show the versions of msrnn-zoo, its plugins, Python and torch, and exit.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """The MS-RNN model zoo: multi-scale recurrent video prediction for any cell."""
    ctx.obj = {"debug": debug}
    _escape_what_the_output_cannot_encode()
    _lines_whole_where_no_terminal()


def _lines_whole_where_no_terminal() -> None:
    """Into a pipe, a file or a job log, print each line whole, as a terminal would wrap it by itself.

    rich assumes 80 columns there ($COLUMNS where set) and broke longer lines with a newline, in a long path
    (`Metrics written to runs/.../metrics-\ntest.json`) as in a message: what a script greps or a user copies
    no longer matched. The tables are sized by ``print_table``; a terminal keeps rich's wrapping to its width.
    """
    for out in (console, err_console):
        out.soft_wrap = not out.is_terminal


def _escape_what_the_output_cannot_encode() -> None:
    """Print a character the output's encoding lacks (an arrow of the metrics table, an ``é`` or ``中`` of a path) as
    an escape such as ``\\xe9``, as Python's stderr already does, instead of failing on it.

    Where stdout is not UTF-8 (``PYTHONIOENCODING=ascii``, a Windows console or file in cp1252), the first such
    character raised ``UnicodeEncodeError`` after the work: `train` reported an error for a run it had saved, and
    `evaluate` never wrote the metrics file it had scored.
    """
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


# ---------------------------------------------------------------------------------------------- catalogue
@main.command("list")
@click.argument("pattern", required=False)
@click.option("--pretrained", is_flag=True, help="List the pretrained catalogue: every checkpoint and its status.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly
def list_cmd(pattern: str | None, pretrained: bool, as_json: bool) -> None:
    """Every model and dataset (optionally only names matching a glob such as 'ms-*')."""
    from .plugins import failed_note
    from .registry import list_datasets, list_models, registry

    if pretrained:
        _list_pretrained(pattern, as_json)
        return
    reg = registry()
    models: list[dict[str, Any]] = [{"name": m, "cell": reg.models[m].cell, "schedule": reg.models[m].schedule,
               "plugin": reg.models[m].plugin,
               "pretrained": [t for t, r in reg.models[m].pretrained.items() if r.published],
               "paper": reg.cells[reg.models[m].cell].paper} for m in list_models(pattern)]
    datasets: list[dict[str, Any]] = []
    for d in list_datasets(pattern):
        entry = reg.datasets[d]
        info = entry.info
        datasets.append({"name": d, "plugin": entry.plugin, "frames": f"{info.in_frames} -> {info.out_frames}",
                         "size": f"{info.channels}x{info.height}x{info.width}", "sources": list(info.sources),
                         "default_source": info.default_source, "description": info.description,
                         "protocols": {p.name: p.to_dict() for p in info.protocols},
                         "default_protocol": info.default_protocol,
                         "prepare": entry.capabilities.prepare is not None})
    if as_json:
        click.echo(json.dumps({"models": models, "datasets": datasets}, indent=2))
        return
    table = Table(title=f"Models ({len(models)})")
    for col in ("name", "cell", "schedule", "plugin", "pretrained"):
        table.add_column(col)
    for m in models:
        table.add_row(m["name"], m["cell"], m["schedule"], m["plugin"], ", ".join(m["pretrained"]) or "-")
    if models:  # a pattern over cell names ('*lstm') matches no dataset: no empty table under it
        print_table(table)
    dtable = Table(title=f"Datasets ({len(datasets)})")
    for col in ("name", "protocol", "frames", "C x H x W", "sources", "plugin"):
        dtable.add_column(col)
    for ds in datasets:
        for i, (pname, p) in enumerate(ds["protocols"].items()):
            label = f"{pname} (default)" if pname == ds["default_protocol"] and len(ds["protocols"]) > 1 else pname
            sources = ", ".join(ds["sources"]) or ("prepared store" if ds["prepare"] else "-")
            dtable.add_row(ds["name"] if i == 0 else "", label, f"{p['in_frames']} -> {p['out_frames']}",
                           f"{p['channels']}x{p['height']}x{p['width']}", sources if i == 0 else "",
                           ds["plugin"] if i == 0 else "")
    if datasets:
        print_table(dtable)
    if pattern is not None and not models and not datasets:
        console.print(f"No model or dataset name matches {pattern!r}: a pattern is a glob over whole names "
                      "('ms-*', '*lstm'); `msrnn-zoo list` shows them all.")
    elif not models and not datasets:
        console.print("No model or dataset is registered: install the plugins of the cells and datasets you need "
                      "(from a clone of the zoo: pip install plugins/*); `msrnn-zoo plugins` shows what was found.")
    failed = failed_note()
    if failed:
        err_console.print(escape(failed), style="yellow", highlight=False, soft_wrap=True)


def _list_pretrained(pattern: str | None, as_json: bool) -> None:
    from dataclasses import asdict

    from .registry import list_pretrained

    records = list_pretrained(pattern)
    if as_json:
        click.echo(json.dumps([{"name": r.name, **asdict(r)} for r in records], indent=2))
        return
    published = sum(r.published for r in records)
    table = Table(title=f"Pretrained catalogue ({len(records)} checkpoints, {published} published)")
    for col in ("checkpoint", "dataset", "protocol", "Hub repo", "revision", "status", "metrics"):
        table.add_column(col)
    for r in records:
        status = "[green]published[/green]" if r.published else "[yellow]recipe-only[/yellow]"
        metrics = ", ".join(f"{k} {v:g}" for k, v in r.metrics.items()) or "-"
        table.add_row(escape(r.name), escape(r.dataset or "-"), escape(r.protocol or "-"), escape(r.repo_id),
                      r.revision[:7] or "-", status, escape(metrics))
    print_table(table)
    if pattern is not None and not records:
        console.print(escape(f"No checkpoint name matches {pattern!r}: names are MODEL.DATASET ('ms-motionrnn.kth'), "
                             "and a pattern is a glob over them ('ms-*', '*.kth'); `msrnn-zoo list --pretrained` "
                             "shows them all."), highlight=False)
    if published < len(records):
        console.print("A recipe-only checkpoint has no weights yet: `msrnn_zoo.create(MODEL, pretrained=TAG)` prints "
                      "the `reproduce` and `push` commands that would create it.", highlight=False)


@main.command()
@click.argument("name")
@click.option("--size", type=POSITIVE, default=64, show_default=True,
              help="Frame height and width for the FLOPs count.")
@click.option("--hidden", "hidden_channels", type=POSITIVE, default=None,
              help="Hidden channels (default: the model's).")
@click.option("--in-channels", type=POSITIVE, default=None, help="Frame channels (default: the model's).")
@click.option("--layers", "num_layers", type=POSITIVE, default=None, help="Layers (default: the model's).")
@click.option("--kernel-size", type=POSITIVE, default=None, help="Kernel size (default: the model's).")
@click.option("--option", "options", multiple=True, help="A cell option KEY=VALUE (repeatable), as train takes it.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly
def info(name: str, size: int, hidden_channels: int | None, in_channels: int | None, num_layers: int | None,
         kernel_size: int | None, options: tuple[str, ...], as_json: bool) -> None:
    """A model's cell, schedule (scale of every layer), data flow, parameters and FLOPs per frame.

    It takes the options that shape the model as train does, so what it shows is the model a run trains."""
    from .factory import create
    from .profile import flops_per_frame_by_op, flops_unit
    from .registry import get_cell, get_model

    overrides: dict[str, Any] = {k: v for k, v in {"hidden_channels": hidden_channels, "in_channels": in_channels,
                                   "num_layers": num_layers, "kernel_size": kernel_size}.items() if v is not None}
    model = create(name, **overrides, **_parse_options(options, owned=_flags_instead(_MODEL_FLAGS)))
    described = model.describe()
    entry = get_model(name)
    cell = get_cell(entry.cell)
    described.update({"model": name, "plugin": entry.plugin, "paper": cell.paper, "description": cell.description,
                      "config": model.config.to_dict(), "size": size,
                      "flops_per_frame_by_op": flops_per_frame_by_op(model, size, size),
                      "layer_sizes": model.schedule.sizes(size, size)})
    described["flops_per_frame"] = sum(described["flops_per_frame_by_op"].values())
    if as_json:
        click.echo(json.dumps(described, indent=2, default=str))
        return
    table = Table(title=name, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("cell", f"{cell.name} ({described['cell_class']})")
    table.add_row("paper", cell.paper or "-")
    table.add_row("schedule", described["schedule"])
    table.add_row(f"layer sizes at {size}x{size}", ", ".join(f"{h}x{w}" for h, w in described["layer_sizes"]))
    skips = [f"{src}->{i}" for i, src in enumerate(described["skips"]) if src is not None]
    table.add_row("skips", ", ".join(skips) or "none")
    table.add_row("memory flow", described["memory_flow"])
    table.add_row("zigzag memory M", "yes" if described["zigzag_memory"] else "no")
    table.add_row("reads layer below at t-1", "yes" if described["reads_lower_previous"] else "no")
    table.add_row("auxiliary loss", described["auxiliary_loss"] or "none")
    table.add_row("training schedule", described["sampling"])
    table.add_row("parameters", f"{described['parameters']:,}")
    split, total = described["flops_per_frame_by_op"], described["flops_per_frame"]
    scale, unit = flops_unit(total)  # the parts in the total's unit
    parts = f" ({', '.join(f'{op} {n / scale:.3f}' for op, n in split.items())})" if len(split) > 1 else ""
    table.add_row(f"FLOPs per frame at {size}x{size}", f"{total / scale:.3f} {unit}{parts}")
    table.add_row("config", json.dumps(model.config.to_dict()))
    print_table(table)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--traceback", "show_tb", is_flag=True, help="Show the traceback of failed plugins.")
def plugins(as_json: bool, show_tb: bool) -> None:
    """Every entry-point plugin: its distribution, version, what it registered, or why it failed."""
    from .plugins import records
    from .registry import registry

    registry()
    recs = records()
    if as_json:
        click.echo(json.dumps([{"name": r.name, "key": r.key, "distribution": r.distribution, "version": r.version,
                                "builtin": r.builtin, "cells": r.cells, "datasets": r.datasets,
                                "conflicts": r.conflicts, "error": r.error} for r in recs], indent=2))
        return
    table = Table(title=f"Plugins ({len(recs)}), in the order they claim names")
    for col in ("plugin", "distribution", "version", "registered", "status"):
        table.add_column(col)
    for r in recs:
        registered = ", ".join([*(f"cell {c}" for c in r.cells), *(f"dataset {d}" for d in r.datasets)]) or "-"
        if not r.ok and registered != "-":  # one hook wrong (of a newer zoo, say), the others worked: not "failed"
            status = Text(f"partly failed: {r.error}. What it registered ({registered}) is usable.", style="yellow")
        elif not r.ok:
            status = Text(f"failed: {r.error}", style="red")
        elif r.conflicts:
            status = Text("ok; name conflict: " + "; ".join(r.conflicts), style="yellow")
        else:
            status = Text("ok", style="green")
        dist = (r.distribution or "-") + (" (built-in)" if r.builtin else "")
        table.add_row(Text(r.key), Text(dist), r.version or "-", Text(registered), status)
    print_table(table)
    if show_tb:
        for r in recs:
            if r.detail:
                console.print(f"[bold]{escape(r.name)}[/bold]\n{escape(r.detail)}")


# ---------------------------------------------------------------------------------------------- data
@main.command()
@click.argument("dataset")
@click.option("--source", default=None, help="Which of the dataset's sources to fetch.")
@click.option("--root", type=DATA_PATH, default=None, help=f"The data root to fetch into (default {DATA_ROOT}).")
@friendly
def download(dataset: str, source: str | None, root: Path | None) -> None:
    """Fetch a dataset's public files (with a progress bar) so it can be used offline."""
    from .datasets import check_source, load_dataset
    from .registry import get_dataset

    entry = get_dataset(dataset)
    if entry.capabilities.prepare is not None:
        where = entry.info.url or "see its plugin's README"
        raise ValueError(f"{dataset} is built from public files you download yourself ({where}); then run "
                         f"`msrnn-zoo data prepare {_q(dataset)} --source FOLDER --root ROOT`.")
    source = check_source(entry, source)
    if source in entry.info.drawn_sources:  # it read no file and wrote none at --root: "clips ready" misled
        fetched = [s for s in entry.info.sources if s not in entry.info.drawn_sources]
        console.print(f"Nothing to download: {dataset}'s source {source!r} is drawn on the fly, with no files"
                      + (f"; the sources with files: {', '.join(fetched)} (`--source NAME`)." if fetched else "."))
        return
    for split in ("test", "train"):
        try:
            ds = load_dataset(dataset, split=split, source=source, root=root, download=True)
        except ValueError as exc:
            if split == "train":  # some sources only provide a test split
                continue
            raise exc
        except KeyboardInterrupt:  # (was "Aborted." alone) the download's temporary file is gone already
            error_line("Interrupted: the file being downloaded was not kept (files already complete are); run the "
                       "same command again to fetch the rest.")
            sys.exit(INTERRUPTED)
        console.print(f"{dataset} ({split}): {len(ds)} clips ready")  # type: ignore[arg-type]


@main.group()
def data() -> None:
    """Prepare a dataset's public files once into a fast store, and describe a prepared store."""


@data.command("prepare")
@click.argument("dataset")
@click.option("--source", "source", type=DATA_PATH, required=True,
              help="The folder (or file) of raw public files you downloaded.")
@click.option("--root", type=DATA_PATH, default=None,
              help=f"The folder to write the store into, new or empty (default DATASET under the data root, "
                   f"{DATA_ROOT}).")
@click.option("--force", is_flag=True, help="Rebuild a store that is already there.")
@friendly
def data_prepare(dataset: str, source: Path, root: Path | None, force: bool) -> None:
    """Decode a dataset's raw public files once into a memory-mapped store (resumable: just run it again).

    A second prepare into the same --root while one runs is refused, except on Windows, which has no lock for it:
    there, run one prepare into a root at a time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .datasets import prepare_dataset

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    # a log file gets plain lines (below), not the bar, whose end left a blank line before the result or error
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        tasks: dict[str, Any] = {}
        due = _Every(30.0)

        def progress(task: str, done: int, total: int) -> None:
            if not console.is_terminal:  # a log file: a line per part begun or ended, and every 30 s between
                if task not in tasks or done >= total or due():
                    console.print(escape(f"{task}: {done}/{total}"), highlight=False, soft_wrap=True)
                tasks.setdefault(task, None)
                return
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], completed=done, total=total)

        try:
            store = prepare_dataset(dataset, source, root, force=force, progress=progress)
        except KeyboardInterrupt:  # the store's temporary folder is gone already; say how to go on
            bar.stop()
            error_line("Interrupted: nothing half-written was kept (a store already there is untouched); run the "
                       "same command again to start over.")
            sys.exit(INTERRUPTED)
    sizes = ", ".join(f"{name} {tuple(rec['shape'])}" for name, rec in store.arrays.items())
    console.print(f"Prepared {escape(dataset)} in [bold]{escape(str(store.root))}[/bold] ({escape(sizes)}). "
                  f"Next: msrnn-zoo data info {escape(_q(dataset))} --root {escape(_q(store.root))}",
                  highlight=False, soft_wrap=True)
    for note in store.meta.get("notes") or []:  # what the plugin left out or cut of the raw files
        err_console.print(escape(str(note)), style="yellow", highlight=False, soft_wrap=True)


@data.command("info")
@click.argument("dataset")
@click.option("--root", type=DATA_PATH, default=None,
              help=f"The prepared store (or data root) to describe ({STORE_OR_DATA_ROOT}).")
@click.option("--source", default=None, help="The dataset's named source, for datasets that have several.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly
def data_info(dataset: str, root: Path | None, source: str | None, as_json: bool) -> None:
    """A dataset's protocols, clips per split and protocol, and statistics of its prepared store."""
    from .datasets import describe_dataset

    described = describe_dataset(dataset, root, source, explain=cli_text)
    if as_json:
        click.echo(json.dumps(described, indent=2, default=str))
        return
    console.print(f"[bold]{described['name']}[/bold]: {escape(described['description'])}", highlight=False)
    for key in ("url", "license", "citation", "root", "unit", "scaling"):
        if described.get(key):
            console.print(escape(f"  {key}: {described[key]}"), highlight=False)
    protocols = Table(title="Protocols")
    for col in ("protocol", "frames", "C x H x W", *(f"{s} clips" for s in ("train", "val", "test")), "how"):
        protocols.add_column(col)
    for name, p in described["protocols"].items():
        counts = described["clips"][name]
        shown = [str(counts[s]) if isinstance(counts.get(s), int) else "-" for s in ("train", "val", "test")]
        label = f"{name} (default)" if name == described["default_protocol"] else name
        protocols.add_row(label, f"{p['in_frames']} -> {p['out_frames']}",
                          f"{p['channels']}x{p['height']}x{p['width']}", *shown, escape(p["description"]))
    print_table(protocols)
    first_name = ""
    first: dict[str, Any] = {}
    for i, (name, p) in enumerate(described["protocols"].items()):
        own = {k: v for k, v in p["provenance"].items() if i == 0 or first.get(k) != v}
        if i == 0:
            first_name, first = name, dict(p["provenance"])
        if own:
            shared = "" if len(own) == len(p["provenance"]) else f" (the others as in '{first_name}')"
            table = Table(title=escape(f"Where the settings of '{name}' come from{shared}"), show_header=False)
            table.add_column(style="bold")
            table.add_column()
            for setting, origin in own.items():
                table.add_row(escape(setting), escape(origin))
            print_table(table)
    for name, counts in described["clips"].items():
        for split, count in counts.items():
            if not isinstance(count, int):
                console.print(f"[yellow]{escape(f'{name}/{split}: {count}')}[/yellow]", highlight=False)
    if described.get("stats"):
        stats = Table(title="Store statistics", show_header=False)
        stats.add_column(style="bold")
        stats.add_column()
        for key, value in described["stats"].items():
            stats.add_row(escape(key), escape(value if isinstance(value, str) else json.dumps(value, default=str)))
        print_table(stats)


# ---------------------------------------------------------------------------------------------- training
_MODEL_FLAGS = {"hidden_channels": "--hidden", "num_layers": "--layers", "kernel_size": "--kernel-size",
                "in_channels": "--in-channels"}
"""The model options a command sets with flags of its own, not through ``--option``."""


def _parse_options(pairs: tuple[str, ...], flag: str = "--option", owned: dict[str, str] | None = None
                   ) -> dict[str, Any]:
    """``--option links=13`` -> ``{"links": 13}`` (values parsed as JSON where they can be, True, False and None
    as in Python).

    ``owned`` names the keys the command sets otherwise, each with what to do instead: the same value twice would
    be a ``TypeError`` deep inside, and a silent override of the flag's value would be worse. A key given twice
    is refused for the same reason: the last one won in silence, so a value appended to a command line (by hand
    or by a script) replaced the one before it unseen."""
    options: dict[str, Any] = {}
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} takes KEY=VALUE, got {pair!r}.")
        if owned and key in owned:
            raise ValueError(f"{flag} {pair}: {key} is not a cell option here; {owned[key]}.")
        if key in given:
            raise ValueError(f"{key} is given twice ({flag} {given[key]} and {flag} {pair}); give it once.")
        given[key] = pair
        if value in PYTHON_SPELLINGS:  # `links=None`, `skips=False`, as in Python: kept as strings, "False" was truthy
            options[key] = PYTHON_SPELLINGS[value]
            continue
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


PYTHON_SPELLINGS = {"True": True, "False": False, "None": None}
"""Values of ``--option``/``--set`` written as in Python, read as JSON's ``true``, ``false`` and ``null`` are."""


def _flags_instead(flags: dict[str, str], *leave_out: str) -> dict[str, str]:
    """``owned`` for :func:`_parse_options`: each key with the flag to pass instead."""
    return {key: f"pass {flag} instead" for key, flag in flags.items() if key not in leave_out}


def _typed(ctx: click.Context, name: str) -> bool:
    """Whether the user wrote parameter ``name`` on the command line: its default, however it reads, does not
    count, so a check of what was given never refuses what the user left out."""
    return ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE


def _spelled(param: click.Parameter) -> str:
    """A parameter as ``--help`` shows it: ``--hidden`` for an option, ``MODEL`` for an argument."""
    return param.opts[0] if isinstance(param, click.Option) else param.human_readable_name


def _refuse_what_resume_ignores(ctx: click.Context, takes: tuple[str, ...], what: str) -> None:
    """Refuse, before anything runs, every parameter typed beside ``--resume`` that resuming does not apply.

    A resumed run keeps the settings it was made with: ``--hidden 8`` or ``--lr 5`` beside ``--resume`` used to
    exit 0 with the run unchanged, so the user believed a run was changed that was not. ``takes`` names the
    parameters resuming applies (or checks); ``what`` says what resuming keeps and how to change the rest.
    """
    ignored = [_spelled(p) for p in ctx.command.params
               if p.name not in (*takes, "resume") and p.name is not None and _typed(ctx, p.name)]
    if not ignored:
        return
    taken = [_spelled(p) for p in ctx.command.params if p.name in takes and isinstance(p, click.Option)]
    they = "it" if len(ignored) == 1 else "them"
    raise ValueError(f"--resume {what}, so it would ignore {', '.join(ignored)}: leave {they} out. With --resume, "
                     f"msrnn-zoo {ctx.command.name} takes only {', '.join(taken[:-1])} and {taken[-1]}.")


RESUME_TAKES = ("model", "epochs", "device", "keep_checkpoints", "grad_checkpointing", "precision", "channels_last",
                "fast_path", "compile_cells", "val_every", "early_stopping", "log_every")
"""What ``train --resume`` applies: the arguments of ``Trainer.resume``, ``log_every`` (how progress is shown) and
MODEL (checked to be the run's). Every other option of ``train`` sets up a new run and is refused beside it."""


@main.command()
@click.argument("model", required=False)
@click.option("--dataset", default=None, help="A registered dataset (see `msrnn-zoo list`).")
@click.option("--source", default=None, help="The dataset's source (default: its default source).")
@click.option("--root", type=DATA_PATH, default=None,
              help=f"The dataset's prepared store (`msrnn-zoo data prepare`), or data root ({STORE_OR_DATA_ROOT}).")
@click.option("--protocol", default=None, help="How clips are cut: paper, openstl... (default: the dataset's).")
@click.option("--data", type=FILE_PATH, default=None,
              help="Your own clips: a .npy array (N, T, C, H, W) or (N, T, H, W), uint8 or float in [0, 1].")
@click.option("--split", "split_fractions", default="0.8,0.1,0.1", show_default=True, callback=_parse_split,
              help="train,val,test fractions for --data.")
@click.option("--out", type=PATH, default=None, help="Run directory to create.")
@click.option("--resume", type=PATH, default=None, help="Continue this run directory.")
@click.option("--force", is_flag=True,
              help="Replace an existing run made by msrnn-zoo train (the old one stays until the new one completes).")
@click.option("--epochs", type=POSITIVE, default=None,
              help="Epochs to train (default 1; on --resume the run's, and a larger number trains it further).")
@click.option("--batch-size", type=POSITIVE, default=4, show_default=True)
@click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=3e-4, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--in-frames", type=POSITIVE, default=None, help="Context frames (default: the dataset's).")
@click.option("--out-frames", type=POSITIVE, default=None, help="Frames to forecast (default: the dataset's).")
@click.option("--hidden", "hidden_channels", type=POSITIVE, default=64, show_default=True)
@click.option("--layers", "num_layers", type=POSITIVE, default=6, show_default=True)
@click.option("--kernel-size", type=POSITIVE, default=3, show_default=True)
@click.option("--option", "options", multiple=True, help="A cell option KEY=VALUE (repeatable).")
@click.option("--sampling", default=None, help="Input schedule: scheduled, reverse or none (default: the cell's).")
@click.option("--max-train-clips", type=POSITIVE, default=None, help="Use only this many training clips.")
@click.option("--max-eval-clips", type=POSITIVE, default=None, help="Use only this many validation/test clips.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=0,
              help="Also checkpoint every N steps (0: each epoch).")
@click.option("--val-every", type=click.IntRange(min=0), default=None, metavar="N",
              help="A validation loss every N epochs and after the last (0: none): the training loss on the "
                   "validation split (at most --max-eval-clips clips), the model forecasting after the context as "
                   "evaluate does; printed and logged in history.jsonl, the best in latest.json. Default for a new "
                   "run: none (1 with --early-stopping); on --resume the run's.")
@click.option("--early-stopping", type=click.IntRange(min=0), default=None, metavar="PATIENCE",
              help="Stop after PATIENCE validations in a row without a lower validation loss; the run is then "
                   "finished, and goes on only resumed with a larger PATIENCE (or 0). Default 0: off, as the paper "
                   "trained; on --resume the run's.")
@click.option("--keep-checkpoints", type=POSITIVE, default=None,
              help="How many of the latest checkpoints to keep on disk (default 2; on --resume the run's).")
@click.option("--sampling-steps", type=POSITIVE, default=None,
              help="Steps over which scheduled sampling goes from the truth to own forecasts (default: the steps "
                   "of --epochs; fixed for the run, so a resumed run with more epochs continues the same schedule). "
                   "The reverse schedule moves once an epoch over them, as the original's.")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default cpu; on --resume, the run's).")
@click.option("--grad-checkpointing/--no-grad-checkpointing", default=None,
              help="Recompute each time step in the backward pass: far less memory, about 1.3x the time, "
                   "same numbers (default off; on --resume, the run's).")
@click.option("--precision", type=PRECISION_CHOICE, default=None,
              help="fp32 (PyTorch's default), bf16 / fp16 autocast with the loss kept in fp32 (fp16 also scales the "
                   "loss), or tf32: fp32 with the GPU's matrix products in TF32 (PrecipLSTM's attention; the CPU "
                   "computes fp32). Default fp32, on --resume the run's.")
@click.option("--fast-path", type=click.Choice(["auto", *FAST_PATH_CHOICE.choices]), default=None,
              help="auto (the default of a new run): clip-graph for one process on a GPU, none otherwise; "
                   "clip-graph: the whole clip recorded as CUDA graphs, no compiler (GPU only, seconds of warm-up, "
                   "the eager numbers); compile: each time step compiled (torch.compile of one step; the first "
                   "steps pay the compilation); cudagraph: compiled steps replayed as CUDA graphs. On --resume "
                   "the run's.")
@click.option("--channels-last/--no-channels-last", default=None,
              help="Keep weights and states in the NHWC layout. Default for a new run: on for one process on a GPU "
                   "where the cell says it pays there (ConvLSTM, PredRNN, PredRNN++, PredRNN-V2, MIM), off "
                   "elsewhere; on --resume the run's.")
@click.option("--compile-cells/--no-compile-cells", default=None,
              help="torch.compile each cell, fusing its gate arithmetic (the first step pays the compilation; goes "
                   "with --fast-path clip-graph or none). Default off, on --resume the run's.")
@click.option("--log-every", type=FiniteFloatRange(min=0), default=30.0, show_default=True, metavar="SECONDS",
              help="Where the output is not a terminal (a log file, a batch job), a progress line at most every "
                   "SECONDS and at each epoch's end (0: every step); a terminal gets a live bar instead.")
@friendly
def train(model: str | None, dataset: str | None, source: str | None, root: Path | None, protocol: str | None,
          data: Path | None, split_fractions: tuple[float, float, float],
          out: Path | None, resume: Path | None, force: bool, epochs: int | None, batch_size: int, lr: float,
          seed: int, in_frames: int | None, out_frames: int | None, hidden_channels: int, num_layers: int,
          kernel_size: int, options: tuple[str, ...], sampling: str | None, max_train_clips: int | None,
          max_eval_clips: int | None, checkpoint_every: int, val_every: int | None, early_stopping: int | None,
          keep_checkpoints: int | None,
          sampling_steps: int | None, device: str | None, grad_checkpointing: bool | None,
          precision: str | None, channels_last: bool | None, fast_path: str | None,
          compile_cells: bool | None, log_every: float) -> None:
    """Train MODEL on a dataset or your own clips into a run directory (resumable with --resume)."""
    from .train import Trainer, complete_train_options, new_train_config

    if resume is not None:
        _refuse_what_resume_ignores(
            click.get_current_context(), RESUME_TAKES,
            "continues a run with the data, model, optimizer and input schedule it was created with (to change "
            "those, start a new run with --out)")
        if model is not None:
            from .train import read_train_config, require_run

            trained = read_train_config(require_run(resume)).model
            if model != trained:
                raise ValueError(f"{resume} is a run of {trained!r}, not {model!r}; resume it without "
                                 "naming a model, or start a new run with --out.")
        trainer = Trainer.resume(resume, epochs=epochs, device=device, keep_checkpoints=keep_checkpoints,
                                 grad_checkpointing=grad_checkpointing, precision=precision,
                                 channels_last=channels_last, fast_path=fast_path, compile_cells=compile_cells,
                                 val_every=val_every, early_stopping=early_stopping)
        run_dir = resume
        if trainer.dist.is_main:
            _say_where_training_resumes(trainer, run_dir)
    else:
        if model is None:
            raise ValueError("Name the model to train (e.g. `msrnn-zoo train ms-convlstm ...`), or --resume a run.")
        if out is None:
            raise ValueError("Say where the run goes: --out runs/NAME.")
        # checked and completed (the protocol, frames and channels of the data) as new_train_config does
        given = {"split_fractions": split_fractions} if _typed(click.get_current_context(), "split_fractions") else {}
        data_options, in_channels = complete_train_options(model, {
            "dataset": dataset, "source": source, "root": root, "protocol": protocol, "data": data,
            "in_frames": in_frames, "out_frames": out_frames, "sampling": sampling, "sampling_steps": sampling_steps,
            **given})
        cfg = new_train_config(
            model, model_options={"hidden_channels": hidden_channels, "num_layers": num_layers,
                                  "kernel_size": kernel_size, "in_channels": in_channels,
                                  **_parse_options(options, owned={
                                      **_flags_instead(_MODEL_FLAGS, "in_channels"),
                                      "in_channels": f"the frames' channels come from the data ({in_channels} "
                                                     "here)"})},
            **data_options, epochs=1 if epochs is None else epochs,
            batch_size=batch_size, lr=lr, seed=seed, max_train_clips=max_train_clips,
            max_eval_clips=max_eval_clips, checkpoint_every=checkpoint_every, device=device or "cpu",
            keep_checkpoints=2 if keep_checkpoints is None else keep_checkpoints,
            grad_checkpointing=bool(grad_checkpointing), precision=precision or "fp32",
            channels_last=_new_run_channels_last(channels_last, model, device),
            fast_path=_new_run_fast_path(fast_path, device, grad_checkpointing),
            compile_cells=bool(compile_cells), val_every=val_every, early_stopping=early_stopping or 0)
        trainer = Trainer.create(out, cfg, force=force)
        _note_interrupted_replacements(trainer)
        run_dir = out
    replacing = trainer.final_dir is not None
    try:
        with _stopped_as_by_ctrl_c():
            _fit_with_progress(trainer, log_every)
    except KeyboardInterrupt:  # Ctrl-C: say what is left and how to go on, not only "Aborted."
        error_line(f"Interrupted. The new run was dropped; {run_dir} holds the run it was to replace, as it was."
                   if replacing else _how_to_go_on(run_dir, trainer))
        sys.exit(INTERRUPTED)
    except DiskFullError as exc:
        raise _stopped_by_a_full_disk(exc, trainer, run_dir if replacing else None, run_dir) from exc
    except RuntimeError as exc:
        _stop_if_another_process_stopped(exc, trainer, run_dir if replacing else None, run_dir)
        raise
    finally:
        from .distributed import shutdown

        shutdown()
    if trainer.dist.is_main:
        if trainer.stopped_early:
            console.print(escape(trainer.stopped_early_said(cli=True)), highlight=False, soft_wrap=True)
        console.print(f"Run saved in [bold]{escape(str(run_dir))}[/bold] (final loss "
                      f"{trainer.progress.losses[-1]:.4f}). Next: msrnn-zoo evaluate {escape(_q(run_dir))}",
                      soft_wrap=True)


@contextlib.contextmanager
def _stopped_as_by_ctrl_c() -> Iterator[None]:
    """Within it, SIGTERM (how a batch scheduler such as SLURM, or `kill`, stops a job) interrupts training as Ctrl-C
    does: it ended Python at once, without a word, leaving what an interrupt tidies (a replacement being built, a
    checkpoint half written, the run's locks) to the next run. The handler before is restored after."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _how_to_go_on(run_dir: Path, trainer: Any, command: str = "train", stopped: str = "Interrupted") -> str:
    """After Ctrl-C of ``trainer``: the step of the run's last checkpoint, where ``--resume`` goes on (the steps after
    it are trained again), and the command. Checkpoints come at each epoch's end unless ``--checkpoint-every`` says
    more often, so "at most --checkpoint-every steps back" would understate a whole epoch. A run of several processes
    resumes only under torchrun with as many: a plain `msrnn-zoo train --resume` of it is refused."""
    from .distributed import launcher
    from .train import recorded_latest

    step, command = trainer.progress.step, f"{launcher(trainer.cfg.world_size)} {command} --resume {_q(run_dir)}"
    saved = recorded_latest(run_dir).get("step")
    if not isinstance(saved, int):
        every = trainer.cfg.checkpoint_every
        when = f"every {every} steps and at each epoch's end" if every else "at each epoch's end"
        return (f"{stopped} after step {step}, before the run's first checkpoint (one is written {when}). Train it "
                f"from its first step with: {command}")
    return f"{stopped} after step {step}. Continue from the last checkpoint, at step {saved}, with: {command}"


def _stopped_by_a_full_disk(exc: DiskFullError, trainer: Any, replaced: Path | None, run_dir: Path,
                            command: str = "train") -> DiskFullError:
    """The error to end with where training filled the disk: its checkpoints are whole (one is renamed into place only
    once written), so say, as Ctrl-C does, where the run goes on from once there is space, not "run the command
    again" (which would be refused: the run exists)."""
    what = (f"The new run was dropped; {replaced} holds the run it was to replace, as it was." if replaced is not None
            else _how_to_go_on(run_dir, trainer, command, stopped="Training stopped"))
    return DiskFullError(exc.errno, f"The disk is full: {exc.filename} could not be written. Free some space on that "
                                    f"disk. {what}", exc.filename)


def _stop_if_another_process_stopped(exc: RuntimeError, trainer: Any, replaced: Path | None, run_dir: Path,
                                     command: str = "train") -> None:
    """Where ``exc`` is another torchrun process having stopped (killed, out of memory), end with one line saying so
    and how to go on, as Ctrl-C does: gloo's "Read error ... Connection reset by peer" traceback named neither (the
    process that stopped has said nothing, and torchrun's report names it). Any other error goes on as it was."""
    from .distributed import lost_a_process

    if not (trainer.dist.active and lost_a_process(exc)) or click.get_current_context().find_root().obj.get("debug"):
        return
    what = (f"The new run was dropped; {replaced} holds the run it was to replace, as it was." if replaced is not None
            else _how_to_go_on(run_dir, trainer, command))
    error_line(f"Another process of this torchrun job stopped (torchrun's report names it and how it ended), and the "
               f"job with it ({str(exc).split('. ')[0]}). {what}")
    sys.exit(1)


def _note_interrupted_replacements(trainer: Any) -> None:
    """Say what a replacement of the run, killed hard before it could tidy up, had left beside it."""
    for folder in trainer.cleared:
        err_console.print(escape(f"Note: removed {folder}, left by a replacement of this run that was killed "
                                 "before it finished."), highlight=False, soft_wrap=True)
    for folder in trainer.left_beside:
        err_console.print(escape(f"Note: {folder} was left by a replacement of this run that was killed before it "
                                 "finished (its new run, or the old one it was to delete); look inside, and remove "
                                 "it yourself if nothing there is wanted."), highlight=False, soft_wrap=True)


def _say_where_training_resumes(trainer: Any, run_dir: Path) -> None:
    step, total = trainer.progress.step, trainer.total_steps
    if trainer.stopped_early:  # said by the refusal that follows
        return
    if step == 0:
        err_console.print(escape(f"{run_dir} has no checkpoint yet (one is written at each epoch's end, or every "
                                 "--checkpoint-every steps): training it from its first step."),
                          highlight=False, soft_wrap=True)
    elif step < total:
        err_console.print(escape(f"Continuing {run_dir} from its checkpoint at step {step} of {total}."),
                          highlight=False, soft_wrap=True)


def _validation_line(t: Any, loss: float, best: bool) -> None:
    """After an epoch's progress line: its validation loss, and the best so far."""
    from .train import best_validation

    p = t.progress
    said = "best so far" if best else best_validation(p)
    console.print(escape(f"epoch {p.epoch}/{t.cfg.epochs}  val loss {loss:.4f} ({said})"), highlight=False,
                  soft_wrap=True)


def _fit_with_progress(trainer: Any, log_every: float = 30.0) -> None:
    trainer.refuse_finished()  # before the notes and the progress bar, which would announce a training
    if not trainer.dist.is_main:  # under torchrun, rank 0 shows the progress of the whole job
        trainer.fit()
        return
    _note_precision(trainer.cfg.precision, trainer.device)
    if not console.is_terminal:
        _fit_with_log_lines(trainer, log_every)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[fps]:.0f} frames/s"),
               TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("train", total=trainer.total_steps, completed=trainer.progress.step,
                            epoch=trainer.progress.epoch + 1, loss=float("nan"), fps=0.0)

        def on_step(t: Any, loss: float, fps: float) -> None:
            epoch = min(t.progress.epoch + 1, t.cfg.epochs)  # after the last step, still the last epoch
            bar.update(task, completed=t.progress.step, loss=loss, fps=fps, epoch=epoch)

        trainer.fit(on_step=on_step, on_validation=_validation_line)


def _fit_with_progress_then_leave_the_job(trainer: Any) -> None:
    """Train a reproduction, then leave torchrun's process group (if any): what follows (scoring, the card) is rank
    0's alone. Ctrl-C says, as `train` does, what is left and that `reproduce --resume` finishes it (scored and carded,
    which `train --resume` would not do)."""
    from .distributed import shutdown

    final_dir = trainer.final_dir  # a replacement's: the run it replaces
    try:
        with _stopped_as_by_ctrl_c():
            _fit_with_progress(trainer)
    except KeyboardInterrupt:
        error_line(f"Interrupted. The new run was dropped; {final_dir} holds the run it was to replace, as it was."
                   if final_dir is not None else _how_to_go_on(trainer.run_dir, trainer, "reproduce"))
        sys.exit(INTERRUPTED)
    except DiskFullError as exc:
        raise _stopped_by_a_full_disk(exc, trainer, final_dir, trainer.run_dir, "reproduce") from exc
    except RuntimeError as exc:
        _stop_if_another_process_stopped(exc, trainer, final_dir, trainer.run_dir, "reproduce")
        raise
    finally:
        shutdown()


@contextlib.contextmanager
def _counting(label: str, every: float = 30.0) -> Iterator[Callable[[int, int], None]]:
    """A ``report(done, total)`` for a long loop: a bar on a terminal (gone when done), in a log file a line every
    ``every`` seconds and at the end. On stderr, so that what a command prints stays apart."""
    if not err_console.is_terminal:
        due = _Every(every)

        def line(done: int, total: int) -> None:
            if due() or done >= total:
                err_console.print(escape(f"{label}: {done}/{total}"), highlight=False, soft_wrap=True)

        yield line
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(escape(label)), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


class _Every:
    """Calling it says whether ``seconds`` have passed since it last said yes (the first call: yes)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.last = seconds, -float("inf")

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


def _fit_with_log_lines(trainer: Any, every: float) -> None:
    """Lines now and then, for a log file: a live bar written to a file shows only once training has ended,
    which for a batch job of hours is no progress report at all."""
    started, first_step = time.monotonic(), trainer.progress.step
    due = _Every(every)

    def on_step(t: Any, loss: float, fps: float) -> None:
        now, step, total = time.monotonic(), t.progress.step, t.total_steps
        epoch_end = t.progress.batch == 0  # the step that closed an epoch has already moved the count on
        if not (due() or epoch_end or step == total):
            return
        epoch = t.progress.epoch if epoch_end else t.progress.epoch + 1
        left = (now - started) / (step - first_step) * (total - step)
        console.print(escape(f"epoch {epoch}/{t.cfg.epochs}  step {step}/{total}  loss {loss:.4f}  {fps:.0f} frames/s  "
                             f"{datetime.timedelta(seconds=round(left))} left"), highlight=False, soft_wrap=True)

    trainer.fit(on_step=on_step, on_validation=_validation_line)


# ---------------------------------------------------------------------------------------------- speed
@main.command()
@click.argument("model")
@click.option("--configs", default=None,
              help="Comma-separated configurations, each one or more speed options joined by '+': plain (the "
                   "defaults), clip-graph, compile, cudagraph, bf16, fp16, tf32 (matrix products: PrecipLSTM), "
                   "channels-last, compile-cells, grad-checkpointing (and the ablations cpu-contiguous, "
                   "embedding, zero-states). Ratios are to the first. Default on a GPU: "
                   "plain,clip-graph,clip-graph+bf16; on the CPU: plain,grad-checkpointing.")
@click.option("--size", type=POSITIVE, default=64, show_default=True, help="Frame height and width.")
@click.option("--in-frames", type=POSITIVE, default=10, show_default=True)
@click.option("--out-frames", type=POSITIVE, default=10, show_default=True)
@click.option("--batch-size", type=POSITIVE, default=4, show_default=True)
@click.option("--hidden", "hidden_channels", type=POSITIVE, default=64, show_default=True)
@click.option("--layers", "num_layers", type=POSITIVE, default=6, show_default=True)
@click.option("--kernel-size", type=POSITIVE, default=3, show_default=True)
@click.option("--in-channels", type=POSITIVE, default=1, show_default=True, help="Frame channels.")
@click.option("--option", "options", multiple=True, help="A cell option KEY=VALUE (repeatable).")
@click.option("--repeat", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="Timed rounds, in each of which every configuration runs once (medians over them).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--threads", type=POSITIVE, default=None, help="CPU threads of PyTorch (default: its own choice).")
@click.option("--train-only", is_flag=True,
              help="Time training steps alone (a forecast compiles or records its own graphs: a second warm-up).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per configuration.")
@friendly
def bench(model: str, configs: str | None, size: int, in_frames: int, out_frames: int, batch_size: int,
          hidden_channels: int, num_layers: int, kernel_size: int, in_channels: int, options: tuple[str, ...],
          repeat: int, device: str, threads: int | None, train_only: bool, as_json: bool) -> None:
    """Time MODEL's training step and forecast under several speed options on this machine, to pick the fastest.

    Which options pay depends on the GPU, the sizes and the cell, so measure them here: every configuration gets
    the same weights and random clip, and they take turns in each round. The default sizes are the MS-RNN paper's
    Moving MNIST setting.
    """
    import torch

    from .bench import OPTIONS, Interrupted, Timer, compare, parse_configs
    from .factory import create, split_tag
    from .validation import parse_device

    if split_tag(model)[1] is not None:  # its weights would be replaced by bench's own random ones anyway
        raise ValueError(f"bench times a model's architecture, not a checkpoint: give {split_tag(model)[0]!r} "
                         f"rather than {model!r}.")
    torch_device = parse_device(device)
    cuda = torch_device.type == "cuda"
    if configs is None:
        configs = "plain,clip-graph,clip-graph+bf16" if cuda else "plain,grad-checkpointing"
    chosen = parse_configs(configs)  # an empty --configs "$UNSET" is refused, not read as the default
    # as train, evaluate and predict do: a tf32 row on the CPU times fp32, and its ratio to plain is noise
    for precision in dict.fromkeys(OPTIONS[part].precision for config in chosen for part in config.split("+")):
        if precision is not None:
            _note_precision(precision, torch_device)
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    base = create(model, hidden_channels=hidden_channels, num_layers=num_layers, kernel_size=kernel_size,
                  in_channels=in_channels, **_parse_options(options, owned=_flags_instead(_MODEL_FLAGS)))
    base.check_size(size, size)
    base = base.to(torch_device).train()
    frames = torch.rand(batch_size, in_frames + out_frames, in_channels, size, size, device=torch_device)
    teacher = torch.ones(batch_size, in_frames + out_frames - 1, device=torch_device)
    if cuda:
        torch.backends.cudnn.benchmark = True  # as train does: cuDNN picks its fastest algorithm per shape
    what = (f"{model}: {size}x{size}, {in_frames} -> {out_frames} frames, batch {batch_size}, hidden "
            f"{hidden_channels}, {num_layers} layers, {torch_device}, {torch.get_num_threads()} threads, "
            f"{repeat} rounds")
    if not as_json:
        err_console.print(escape(f"Timing {len(chosen)} configurations of {what} ..."), highlight=False)
    stopped: int | None = None
    try:
        rows = compare(base, chosen, frames, teacher, in_frames, repeat=repeat, timer=Timer(torch_device),
                       train_only=train_only)
    except Interrupted as stop:  # Ctrl-C in the rounds: what they measured, said to be partial, not "Aborted."
        rows, stopped = stop.result, stop.completed
        what += f" (partial: stopped by Ctrl-C after {stopped} of them)"
    if as_json:
        for row in rows:
            partial = {} if stopped is None else {"partial": True, "rounds_completed": stopped}
            click.echo(json.dumps({"model": model, "device": str(torch_device), **row, **partial}))
    else:
        _print_bench(rows, what, cuda, chosen[0])
    if stopped is not None:
        error_line(f"Interrupted after {stopped} of {repeat} rounds: the times above are the medians of the rounds "
                   "timed so far (partial); run again for the full measurement, with a smaller --repeat to finish "
                   "sooner.")
        sys.exit(INTERRUPTED)
    if all("error" in row for row in rows):  # a table of dashes is no measurement: a script must see it failed
        raise ValueError(f"None of the {len(rows)} configuration(s) could run on {torch_device} (why: above); "
                         "choose others (`msrnn-zoo bench --help`).")


CLEARLY_FASTER = 0.95
"""``bench`` names a configuration faster than the first only below this ratio of its time: on this project's
shared build machine, ratios of the same step in one run have read 0.91 to 1.03 (docs/speed.md), so a few percent
is not a reason to change how one trains."""


def _print_bench(rows: list[dict[str, Any]], what: str, cuda: bool, baseline: str) -> None:
    def number(row: dict[str, Any], key: str, digits: int) -> str:
        return f"{row[key]:.{digits}f}" if key in row else "-"

    memory = ("peak_mib", "peak MiB") if cuda else ("kept_mib", "kept MiB")
    table = Table(title=escape(what))
    table.add_column("configuration", no_wrap=True)
    for name in ("warm-up s", "step s", "x first", "forecast fps", "x first", memory[1]):
        table.add_column(name, justify="right")
    for row in rows:
        if "error" in row:
            table.add_row(escape(row["config"]), *["-"] * 6)
            continue
        table.add_row(escape(row["config"]), number(row, "warmup_s", 2), number(row, "train_s", 3),
                      number(row, "train_ratio", 2), number(row, "forecast_fps", 1), number(row, "forecast_ratio", 2),
                      number(row, memory[0], 1))
    print_table(table)
    console.print(escape(f"Step: a training step (forward, backward, Adam); fps: forecast frames per second "
                         f"(without gradients); x first: time as a multiple of {baseline}'s, in the same rounds; "
                         f"{memory[1]}: "
                         + ("the peak allocated above the weights, Adam's state and the clip." if cuda else
                            "what the forward pass leaves allocated for the backward.")), highlight=False)
    for row in rows:
        if "error" in row:
            err_console.print(Text(f"{row['config']}: ", style="red") + Text(row["error"]), highlight=False)
    timed = [row for row in rows if "train_ratio" in row]
    if len(timed) < 2:  # nothing to choose between
        return
    fastest = min(timed, key=lambda row: row["train_ratio"])
    if fastest["config"] == baseline:
        console.print(escape(f"Fastest training step here: {baseline}, the first configuration."), highlight=False)
        return
    if fastest["train_ratio"] > CLEARLY_FASTER:
        console.print(escape(f"No configuration was clearly faster than {baseline}: the fastest, {fastest['config']}, "
                             f"took {fastest['train_ratio']:.2f}x its time, within what one run on a busy machine "
                             f"can tell apart (a ratio under {CLEARLY_FASTER} counts); keep {baseline}, or time more "
                             "rounds (--repeat)."), highlight=False)
        return
    flags = fastest["train_flags"]
    how = (f"train with {flags}" if flags else "the defaults of train") if flags is not None else \
        "it holds an ablation, which train has no flag for"
    console.print(escape(f"Fastest training step here: {fastest['config']} ({fastest['train_ratio']:.2f}x "
                         f"{baseline}'s time); {how}."), highlight=False)


WEIGHTS_OPTION = click.option(
    "--weights", type=click.Choice(["last", "best"]), default="last", show_default=True,
    help="last: the run's last weights (model.safetensors); best: those of its best validation "
         "(model-best.safetensors, kept by a run trained with --val-every or --early-stopping).")


# ---------------------------------------------------------------------------------------------- results
@main.command()
@click.argument("run_dir", type=PATH)
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--batch-size", type=POSITIVE, default=None, help="Default: the run's training batch size.")
@click.option("--max-clips", type=POSITIVE, default=None,
              help="Score only the first N clips of the split (with --split train, of the clips the run trained on).")
@click.option("--out", type=PATH, default=None,
              help="Where to write the JSON (default RUN_DIR/metrics-SPLIT.json; with --weights best, "
                   "RUN_DIR/metrics-SPLIT-best.json).")
@click.option("--force", is_flag=True,
              help="Overwrite the metrics file named by --out: only that file, and only a metrics file msrnn-zoo "
                   "wrote.")
@click.option("--frames", type=click.Choice(["future", "all"]), default="future", show_default=True,
              help="future: forecast frames only (OpenSTL); all: all T-1 predicted frames, input "
                   "reconstructions included (the MS-RNN code). Recorded in the metrics file.")
@click.option("--device", default=None, help="Default: the device the run trained on (the CPU if that GPU is absent).")
@click.option("--precision", type=PRECISION_CHOICE, default="fp32", show_default=True,
              help="bf16 / fp16: forecast under autocast; tf32: the GPU's matrix products in TF32 (faster on GPUs; "
                   "metrics differ slightly from fp32's).")
@click.option("--fast-path", type=click.Choice(["auto", *FAST_PATH_CHOICE.choices]), default="auto",
              show_default=True,
              help="auto: clip-graph on a GPU from 10 batches on, none otherwise; compile: each time step compiled "
                   "(pays off over many clips); cudagraph, clip-graph: replayed as CUDA graphs (GPU only; "
                   "clip-graph records the whole clip without compiling, the eager path's numbers).")
@click.option("--compile-cells", is_flag=True,
              help="torch.compile each cell, fusing its gate arithmetic (pays off over many clips; goes with "
                   "--fast-path clip-graph, auto or none).")
@WEIGHTS_OPTION
@friendly
def evaluate(run_dir: Path, split: str, batch_size: int | None, max_clips: int | None, out: Path | None,
             force: bool, frames: str, device: str | None, precision: str, fast_path: str,
             compile_cells: bool, weights: str) -> None:
    """Per-frame and mean scores of a run beside baselines (copy-last-frame, mean-frame, blank, the dataset's)."""
    import hashlib

    from .evaluate import WEIGHTS_DIGEST, evaluate_run, metrics_name, reports_to_dict, run_weights
    from .io import file_hash, refuse_overwrite, write_json
    from .train import being_trained, read_train_config, refuse_a_file_for_a_run

    refuse_a_file_for_a_run(run_dir)  # before its metrics file's path inside it is checked
    out = out or run_dir / metrics_name(split, weights)
    refuse_overwrite(out, force, "metrics file")
    device = _run_device(run_dir, device)
    if device is not None:
        _note_precision(precision, device)
    if being_trained(run_dir):
        err_console.print(escape(f"Note: {run_dir} is being trained right now: the {weights} weights it holds at this "
                                 "moment are scored, not those it will end with."), highlight=False, soft_wrap=True)
    # a checkpoint saved while the run is scored replaces its weights: the metrics must name those that were scored
    try:
        path: Path | None = run_weights(run_dir, weights)
    except FileNotFoundError:  # no best weights: evaluate_run says so
        path = None
    before = file_hash(path, hashlib.sha256()) if path is not None and path.is_file() else None
    with _counting(f"scoring {split} clips") as on_batch:
        reports = evaluate_run(run_dir, split=split, batch_size=batch_size, max_clips=max_clips, device=device,
                               frames=frames, precision=precision,  # type: ignore[arg-type]
                               fast_path=None if fast_path == "none" else fast_path, compile_cells=compile_cells,
                               on_batch=on_batch, weights=weights)
    cfg = read_train_config(run_dir)  # read whole above
    data = reports_to_dict(reports, run_dir, split, frames,  # type: ignore[arg-type]
                           weights=run_weights(run_dir, weights), precision=precision, cfg=cfg)
    if before is not None and data[WEIGHTS_DIGEST] != before:
        raise ValueError(f"{path} was replaced while it was scored (the run is being trained, and saved a "
                         "checkpoint meanwhile), so these scores cannot be told to be of the weights it holds now; "
                         f"{out} was not written. Evaluate the run again once training has ended.")
    # written before the tables: `evaluate RUN | head` ends the command at the first line the pipe no longer takes
    write_json(out, data, replace=force)
    _print_reports(reports, frames)
    if "ssim" not in reports["model"].metrics:
        from .metrics import SSIM_WINDOW

        err_console.print(escape(f"Note: SSIM was not scored: its {SSIM_WINDOW}x{SSIM_WINDOW} window does not fit "
                                 "in frames of this size."), highlight=False, soft_wrap=True)
    console.print(f"Metrics written to [bold]{escape(str(out))}[/bold]")


def _new_run_channels_last(channels_last: bool | None, model: str, device: str | None) -> bool:
    if channels_last is None:
        from .train import auto_channels_last

        return auto_channels_last(model, device or "cpu")
    return channels_last


def _new_run_fast_path(fast_path: str | None, device: str | None, grad_checkpointing: bool | None) -> str | None:
    if fast_path in (None, "auto"):
        from .train import auto_fast_path

        return auto_fast_path(device or "cpu", bool(grad_checkpointing))
    return None if fast_path == "none" else fast_path


def _note_precision(precision: str, device: Any) -> None:
    """A note where ``precision`` cannot do on ``device`` what it says; a device that is none is left to the command."""
    from .precision import precision_note

    try:
        note = precision_note(precision, device)
    except (RuntimeError, ValueError, TypeError):
        return
    if note:
        err_console.print(f"[yellow]Note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)


def _run_device(run_dir: Path, device: str | None) -> str | None:
    """The device a run's model is used on (``--device``, else the run's own), saying so when it falls back."""
    if device is not None or not (run_dir / "train_config.json").is_file():
        return device  # loading the run reports a missing or broken directory itself
    from .evaluate import run_device
    from .io import read_json
    from .train import TrainConfig

    chosen, note = run_device(TrainConfig.from_dict(read_json(run_dir / "train_config.json", "run")))
    if note:
        err_console.print(f"[yellow]Note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    return chosen


def _print_margin(reports: dict[str, Any], metric: str = "mse") -> None:
    """One line comparing the model's mean MSE with the best baseline's: a model that learned nothing
    can still beat copy-last-frame, so the verdict is against whichever baseline is strongest on this data."""
    model = reports.get("model")
    rivals = {name: rep[metric].mean for name, rep in reports.items() if name != "model" and metric in rep.metrics}
    if model is None or metric not in model.metrics or not rivals:
        return
    best = min(rivals, key=lambda name: rivals[name])
    ours, theirs = model[metric].mean, rivals[best]
    if theirs <= 0:
        return
    change = (theirs - ours) / theirs
    verdict = "below" if change >= 0 else "above"
    console.print(escape(f"{model[metric].spec.label}: the model's {ours:.4f} is {abs(change):.0%} {verdict} the best "
                         f"baseline's ({best}, {theirs:.4f})."), highlight=False)


def _print_reports(reports: dict[str, Any], frames: str = "future") -> None:
    first = next(iter(reports.values()))
    what = "forecast frames" if frames == "future" else "predicted frames (inputs included)"
    table = Table(title=f"{first.samples} clips, {first.frames} {what} (mean over frames)")
    table.add_column("metric", no_wrap=True)
    for name in reports:
        table.add_column(escape(name), justify="right", no_wrap=True)
    for result in first:
        arrow = "↑" if result.spec.higher_is_better else "↓"
        means = (f"{rep[result.name].mean:.4f}" for rep in reports.values())
        table.add_row(escape(f"{result.spec.label} {arrow}"), *means)
    print_table(table)
    _print_margin(reports)
    console.print("Conventions:", highlight=False)
    for result in first:
        console.print(escape(f"  {result.spec.label}: {result.spec.convention}"), highlight=False)
    for name in [r.name for r in first if r.name in ("mse", "ssim")]:
        spec = first[name].spec
        title = "forecast frame" if frames == "future" else "frame of the clip (2 = first predicted)"
        per = Table(title=escape(f"{spec.label} per {title}"))
        per.add_column("frame", justify="right")
        for forecaster in reports:
            per.add_column(escape(forecaster), justify="right", no_wrap=True)
        for t in range(first.frames):
            number = t + 1 if frames == "future" else t + 2
            per.add_row(str(number), *(f"{rep[name].per_frame[t]:.3f}" for rep in reports.values()))
        print_table(per)


@main.command()
@click.argument("run_dir", type=PATH)
@click.option("--out", type=PATH, default=Path("forecast.gif"), show_default=True,
              help="Picture to write: NAME.gif (an animation, plus a PNG strip beside it) or NAME.png (the strip).")
@click.option("--input", "input_path", type=FILE_PATH, default=None,
              help="Forecast from your own frames (.npy, (T, C, H, W) or (T, H, W)); no ground truth needed. The "
                   "forecast frames are also saved beside the picture, as NAME.npy.")
@click.option("--horizon", type=click.IntRange(1, MAX_HORIZON), default=None,
              help=f"Frames to forecast, 1..{MAX_HORIZON} (default: the run's).")
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True, help="Which test clip to show.")
@click.option("--scale", type=click.IntRange(1, 16), default=2, show_default=True,
              help="Upscale frames for visibility.")
@click.option("--force", is_flag=True,
              help="Overwrite the files this command writes: only those, and only pictures and forecast arrays "
                   "msrnn-zoo wrote (and remove the forecast array of a picture replaced without one).")
@click.option("--device", default=None, help="Default: the device the run trained on (the CPU if that GPU is absent).")
@click.option("--precision", type=PRECISION_CHOICE, default="fp32", show_default=True,
              help="bf16 / fp16: forecast under autocast; tf32: the GPU's matrix products in TF32 (faster on GPUs).")
@click.option("--fast-path", type=FAST_PATH_CHOICE, default="none", show_default=True,
              help="compile: each time step compiled (pays off over many clips); cudagraph, clip-graph: replayed "
                   "as CUDA graphs (GPU only; clip-graph records the whole clip without compiling).")
@click.option("--compile-cells", is_flag=True,
              help="torch.compile each cell, fusing its gate arithmetic (for one clip the compilation costs more "
                   "than it saves; goes with --fast-path clip-graph or none).")
@WEIGHTS_OPTION
@friendly
def predict(run_dir: Path, out: Path, input_path: Path | None, horizon: int | None, index: int, scale: int,
            force: bool, device: str | None, precision: str, fast_path: str, compile_cells: bool,
            weights: str) -> None:
    """Write an input | truth | forecast strip (GIF and/or PNG) for a test clip or your own frames."""
    import hashlib
    import io

    import numpy as np

    from .evaluate import load_run
    from .forecast import forecast_clip, read_input_clip
    from .io import FORECAST_ARRAY_KEY, atomic_write, refuse_overwrite, written_by_us
    from .train import check_run_data, empty_split_error, open_split
    from .visualize import check_strip_size, save_gif, save_png

    if input_path is not None and _typed(click.get_current_context(), "index"):
        raise ValueError("--index picks a clip of the run's test split; with --input the clip is yours: give one "
                         "of them.")
    suffix = out.suffix.lower()
    if suffix not in (".gif", ".png"):
        raise ValueError(f"--out {out}: the picture's name must end in .gif (animation and PNG strip) or .png "
                         "(strip only).")
    gif = out if suffix == ".gif" else None
    png = out.with_suffix(".png") if gif is not None else out
    array_path = out.with_suffix(".npy") if input_path is not None else None
    targets = [p for p in (gif, png, array_path) if p is not None]
    if input_path is not None and any(p.resolve() == Path(input_path).resolve() for p in targets):
        raise ValueError(f"--out {out} would write the forecast over your --input {input_path}; name the picture "
                         "otherwise (the forecast array goes beside it, as NAME.npy).")
    for path in targets:  # every file is checked before any is written
        refuse_overwrite(path, force, "picture" if path.suffix != ".npy" else "forecast array")
    # the forecast array of the picture being replaced: kept, it would stand beside a forecast it is not, and no
    # longer be known as ours (the new PNG records no array), so a later --input --force refused to replace it
    stale_array = out.with_suffix(".npy") if (
        array_path is None and force and written_by_us(out.with_suffix(".npy"), "forecast array")) else None
    model, cfg = load_run(run_dir, _run_device(run_dir, device), weights)
    _note_precision(precision, model.embed.weight.device)
    model.set_fast_path(None if fast_path == "none" else fast_path).set_compile_cells(compile_cells)
    horizon = cfg.out_frames if horizon is None else horizon
    if input_path is not None:
        context, truth = read_input_clip(input_path, model.config.in_channels), None
        if len(context) < cfg.in_frames:  # it forecasts all the same, from less than it learnt to warm up on
            err_console.print(escape(f"Note: {input_path} holds {len(context)} context frame(s), fewer than the "
                                     f"{cfg.in_frames} the run was trained on: the forecast starts from less context "
                                     "than the model learnt to use."), highlight=False, soft_wrap=True)
    else:
        check_run_data(cfg, run_dir)
        dataset = open_split(cfg, "test")
        if len(dataset) == 0:  # type: ignore[arg-type]  # was "--index 0 is outside the test split (0..-1)"
            raise empty_split_error(cfg, "test", "predict has no clip to show (--input FRAMES.npy forecasts frames "
                                    "of your own)")
        if not 0 <= index < len(dataset):  # type: ignore[arg-type]
            raise ValueError(f"--index {index} is outside the test split (0..{len(dataset) - 1}).")  # type: ignore[arg-type]
        clip = dataset[index]
        context = clip[: cfg.in_frames]
        truth = clip[cfg.in_frames : cfg.in_frames + horizon]
        if len(truth) < horizon:  # a strip of rows of unequal length would misalign forecast and truth
            err_console.print(escape(f"Note: test clip {index} holds {len(truth)} frame(s) after its context, fewer "
                                     f"than the {horizon} forecast: the picture shows no truth (--horizon "
                                     f"{len(truth)} or less shows it)."), highlight=False, soft_wrap=True)
            truth = None
    check_strip_size(max(len(context), horizon), 2 if truth is None else 3, context.shape[-2], context.shape[-1],
                     scale)  # before the forecast: a long one takes minutes
    forecast = forecast_clip(model, context, horizon, precision)
    array = io.BytesIO()
    np.save(array, forecast.numpy())
    # the PNG records the array's hash: how a later --force knows the .npy beside it is this command's to replace
    text = {FORECAST_ARRAY_KEY: hashlib.sha256(array.getvalue()).hexdigest()} if array_path is not None else None
    if gif is not None:
        save_gif(gif, context, truth, forecast, overwrite=force, scale=scale)
    save_png(png, context, truth, forecast, overwrite=force, scale=scale, text=text)
    # every file written before a word is printed: `predict ... | head -1` ends the command at the first line the
    # pipe no longer takes, which left the forecast array unwritten
    if stale_array is not None:
        stale_array.unlink(missing_ok=True)
    if array_path is not None:  # frames with no ground truth: the user wants the numbers, not only pictures
        atomic_write(array_path, lambda tmp: tmp.write_bytes(array.getvalue()), replace=force)
    written = " and ".join(f"[bold]{escape(str(p))}[/bold]" for p in (gif, png) if p is not None)
    console.print(f"Forecast of {horizon} frames written to {written}")
    if stale_array is not None:
        console.print(escape(f"Removed {stale_array}: the forecast array of the picture replaced (this forecast, of "
                             "the run's test clip, writes none)."), highlight=False, soft_wrap=True)
    if array_path is not None:
        console.print(f"Forecast frames (T, C, H, W) in [0, 1] saved to [bold]{escape(str(array_path))}[/bold]")


# ---------------------------------------------------------------------------------------------- authoring
@main.command("new-cell")
@click.argument("name")
@click.option("--dir", "parent", type=PATH, default=Path("."), show_default=True,
              help="Where to create the distribution folder msrnn-NAME (it must not exist yet).")
@friendly
def new_cell_cmd(name: str, parent: Path) -> None:
    """Start a plugin distribution for a new cell NAME: pyproject, cell, plugin, README, card, tests."""
    from .scaffold import names, new_cell

    target = new_cell(name, parent)
    package = names(name)["package"]
    console.print(f"Wrote [bold]{escape(str(target))}[/bold]: a working ConvGRU named {escape(name)} whose equations "
                  f"you replace in {escape(package)}/cell.py.", highlight=False)
    console.print(f"Next: pip install -e {escape(_q(target))} && pytest {escape(_q(target / 'tests'))} "
                  f"&& msrnn-zoo list {escape(_q('*' + name))}", highlight=False, soft_wrap=True)


def _refuse_a_recipe_key(command: str, model: str | None, dataset: str | None, rest: str = "") -> None:
    """Refuse ``MODEL.DATASET`` typed as one argument: the recipe table shows its keys that way, and the generic
    "name both" message would not say that only the dot is wrong."""
    if dataset is None and model is not None and "." in model:
        name, _, data = model.rpartition(".")
        raise ValueError(f"{model!r} is a recipe's key; name the model and the dataset as two arguments: "
                         f"`msrnn-zoo {command} {_q(name)} {_q(data)}{rest}`.")


# ---------------------------------------------------------------------------------------------- recipes
@main.command()
@click.argument("model", required=False)
@click.argument("dataset", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly
def recipe(model: str | None, dataset: str | None, as_json: bool) -> None:
    """The MS-RNN paper's setting for MODEL on DATASET, each value with its source (no arguments: list them)."""
    from .catalogue import get_recipe, list_recipes, paper

    if model is None or dataset is None:
        _refuse_a_recipe_key("recipe", model, dataset)
        if model is not None:
            raise ValueError("Name both the model and the dataset (e.g. `msrnn-zoo recipe ms-motionrnn kth`), "
                             "or neither to list every recipe.")
        recipes = list_recipes()
        if as_json:
            click.echo(json.dumps([r.to_dict() for r in recipes], indent=2))
            return
        table = Table(title=f"Recipes ({len(recipes)}): the MS-RNN paper's settings, arXiv {paper()['arxiv']}")
        for col in ("recipe (MODEL.DATASET)", "frames", "size", "epochs", "sampling", "data"):
            table.add_column(col, no_wrap=True)
        for r in recipes:
            table.add_row(r.key, f"{r['in_frames']}->{r['out_frames']}", f"{r['height']}x{r['width']}",
                          str(r["epochs"]), r["sampling"], "store" if r.get("root_required") else "fetch")
        print_table(table)
        first = recipes[0]
        console.print(escape(f"All: {first['num_layers']} layers of hidden {first['hidden_channels']}, kernel "
                             f"{first['kernel_size']}, {first['optimizer']} lr {first['lr']:g}, batch "
                             f"{first['batch_size']}, seed {first['seed']}. Details and sources: msrnn-zoo recipe "
                             "MODEL DATASET. Run one: msrnn-zoo reproduce MODEL DATASET [--root DATA] --out RUN."),
                      highlight=False)
        return
    found = get_recipe(model, dataset)
    if as_json:
        click.echo(json.dumps(found.to_dict(), indent=2))
        return
    table = Table(title=f"Recipe {found.key}: {paper()['title']} (arXiv {paper()['arxiv']})")
    for col in ("setting", "value", "source"):
        table.add_column(col)
    for key, value in found.settings.items():
        table.add_row(escape(key), escape(value if isinstance(value, str) else json.dumps(value)),
                      escape(found.sources.get(key, "")))
    print_table(table)
    console.print(escape(f"Sources name lines of {paper()['code']} at commit {paper()['code_commit'][:7]}; run it "
                         f"with `{found.reproduce_command()}`."), highlight=False)


@main.command()
@click.argument("model", required=False)
@click.argument("dataset", required=False)
@click.option("--out", type=PATH, default=None, help="Run directory to create.")
@click.option("--root", type=DATA_PATH, default=None,
              help=f"The dataset's prepared store (`msrnn-zoo data prepare`), or data root ({STORE_OR_DATA_ROOT}).")
@click.option("--source", default=None, help="Another source of the dataset than the recipe's (e.g. synthetic).")
@click.option("--budget-steps", type=int, default=None,
              help="Train at most this many steps (the card then says the run is budget-limited).")
@click.option("--max-eval-clips", type=POSITIVE, default=None, help="Score only the first N test clips.")
@click.option("--set", "settings", multiple=True,
              help="Change a recipe setting KEY=VALUE (hidden_channels, num_layers, kernel_size, lr, batch_size, "
                   "seed, epochs, sampling); the card lists every change.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--license", "license", default=None, metavar="ID",
              help=f"{LICENSE_HELP} (default: with --resume, the one the reproduction was started with; else "
                   f"{DEFAULT_LICENSE}).")
@click.option("--force", is_flag=True,
              help="Replace an existing run directory made by msrnn-zoo (one carrying its .msrnn-zoo-run marker).")
@click.option("--resume", type=PATH, default=None,
              help="Finish an interrupted reproduction in this directory.")
@friendly
def reproduce(model: str | None, dataset: str | None, out: Path | None, root: Path | None, source: str | None,
              budget_steps: int | None, max_eval_clips: int | None, settings: tuple[str, ...], device: str,
              license: str | None, force: bool, resume: Path | None) -> None:
    """Train MODEL on DATASET by the MS-RNN paper's recipe, evaluate it and write its model card."""
    from . import reproduce as repro
    from .distributed import is_main_process

    ctx = click.get_current_context()
    if resume is not None:
        _refuse_what_resume_ignores(
            ctx, ("device", "max_eval_clips", "license"),
            "finishes a reproduction as it was planned: the recipe, its budget and its changes (to change those, "
            "start a new reproduction with --out)")
        # the run's device unless one is typed: `--device cpu` moves a GPU run to the CPU, as its help says
        files = repro.resume(resume, device=device if _typed(ctx, "device") else None,
                             max_eval_clips=max_eval_clips, fit=_fit_with_progress_then_leave_the_job,
                             license=license)
        run_dir = resume
    else:
        if model is None or dataset is None:
            _refuse_a_recipe_key("reproduce", model, dataset, f" --out {_q(out) if out else 'runs/NAME'}")
            raise ValueError("Name the model and the dataset: `msrnn-zoo reproduce ms-convlstm moving-mnist --out "
                             "runs/a` (`msrnn-zoo recipe` lists them), or --resume RUN.")
        if out is None:
            raise ValueError("Say where the run goes: --out runs/NAME.")
        overrides = {k: v for k, v in _parse_options(settings, "--set").items()}
        license = check_license(license or DEFAULT_LICENSE)  # before hours of training, not at the card
        repro.check_out(out, force)  # before the recipe's data is downloaded
        plan = repro.make_plan(model, dataset, root=root, source=source, budget_steps=budget_steps, device=device,
                               overrides=overrides, out=out)
        budget = plan.budget
        if is_main_process():
            console.print(f"Recipe [bold]{plan.recipe.key}[/bold]: {budget['steps']} steps "
                          f"({budget['epochs']} epoch(s) over {budget['train_clips']} clips)" + (
                              f", budget-limited from {budget['recipe_steps']}" if budget["limited"] else ""),
                          highlight=False)
            if plan.deviations:  # said before the hours of training, not only in the card at the end
                changed = ", ".join(f"{k} {v['used']} (recipe: {v['recipe']})" for k, v in plan.deviations.items())
                console.print(escape(f"Deviates from the recipe: {changed}; the card records it."), highlight=False,
                              soft_wrap=True)
        trainer = repro.start(plan, out, force=force, license=license)
        _note_interrupted_replacements(trainer)
        _fit_with_progress_then_leave_the_job(trainer)
        files = repro.finish(trainer, device=device, max_eval_clips=max_eval_clips, report=_print_reports,
                             license=license)
        run_dir = out
    if not files:  # under torchrun, a rank other than 0: rank 0 evaluates and writes
        return
    console.print(f"Model card written to [bold]{escape(str(files['README.md']))}[/bold] "
                  f"({', '.join(sorted(n for n in files if n != 'README.md'))} beside it). "
                  f"Next: msrnn-zoo push {escape(_q(run_dir))} --repo-id YOU/NAME", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------- sharing
@main.command()
@click.argument("run_dir", type=PATH)
@click.option("--repo-id", required=True, help="The Hub repo the card will describe (its load lines use it).")
@click.option("--out", type=PATH, default=None,
              help="The card file to write (default RUN_DIR/README.md); metrics.png and forecast.png go beside it.")
@click.option("--force", is_flag=True,
              help="Overwrite the card and its two pictures: only those files, and only if msrnn-zoo wrote them.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]),
              help="Whose scores the card shows (`evaluate --split` wrote them); the card names the split. `push` "
                   "publishes the test split's.")
@click.option("--license", "license", default=DEFAULT_LICENSE, show_default=True, metavar="ID",
              help=f"{LICENSE_HELP}; `push` keeps the one this card names.")
@WEIGHTS_OPTION
@friendly
def card(run_dir: Path, repo_id: str, out: Path | None, force: bool, split: str, license: str, weights: str) -> None:
    """Render the model card of a run (and its pictures) to review; `push` renders it again for its repo."""
    from .card import write_card
    from .hub import check_repo_id

    files = write_card(run_dir, out or run_dir / "README.md", check_repo_id(repo_id), split, force=force,
                       license=check_license(license), weights=weights)
    console.print(f"Model card written to [bold]{escape(str(files['README.md']))}[/bold]")


def _public_metrics(path: Path, tmp: Path, name: str | None = None) -> Path:
    """A copy of a metrics file without the run's local path, fit to publish (as ``name``: its own by default)."""
    from .io import read_json, write_json

    data = read_json(path, "metrics file")
    data["run"] = Path(str(data.get("run", ""))).name
    return write_json(tmp / (name or path.name), data)


def _upload_replacing(repo_id: str, files: dict[str, Path], token: str | None, private: bool, message: str) -> str:
    """Upload ``files`` in one commit that also removes the :data:`RUN_EXTRAS` an earlier push left; say which."""
    from .hub import RUN_EXTRAS, repo_state, upload_files

    present, head = repo_state(repo_id, token)
    stale = tuple(sorted((present & set(RUN_EXTRAS)) - set(files)))
    url = upload_files(repo_id, files, token=token, private=private, commit_message=message, delete=stale)
    if head is not None and url.rstrip("/").endswith(head):  # the Hub made no commit: "Pushed" would be untrue
        console.print(escape(f"Nothing to push: {repo_id} already holds these {len(files)} files as they are "
                             f"(commit {head[:7]}); no commit was made."), highlight=False, soft_wrap=True)
        return url
    console.print(f"Pushed {len(files)} files to [bold]{escape(url)}[/bold]", highlight=False)
    if stale:
        console.print(escape(f"Removed {', '.join(stale)} from the repo: an earlier push left them, and they "
                             "described that model, not this one (the repo's history keeps them)."),
                      highlight=False, soft_wrap=True)
    return url


@main.command()
@click.argument("run_dir", type=PATH)
@click.argument("repo_id_arg", metavar="[REPO_ID]", required=False)
@click.option("--repo-id", "repo_id", default=None, help="The Hub repo to push to (user/name).")
@click.option("--private", is_flag=True, help="Create the repo private.")
@click.option("--token", default=None, help="Hub token (default: the one `hf auth login` stored, or $HF_TOKEN).")
@click.option("--card", "card_path", type=FILE_PATH, default=None,
              help="Push this card (e.g. one rendered by `msrnn-zoo card` and edited) instead of rendering it.")
@click.option("--license", "license", default=None, metavar="ID",
              help=f"{LICENSE_HELP} (default: the one RUN_DIR/README.md names, as `card --license` or save_pretrained "
                   f"wrote it, else {DEFAULT_LICENSE}).")
@WEIGHTS_OPTION
@friendly
def push(run_dir: Path, repo_id_arg: str | None, repo_id: str | None, private: bool, token: str | None,
         card_path: Path | None, license: str | None, weights: str) -> None:
    """Upload a run's weights (safetensors), config.json, model card and its pictures to the Hub, in one commit.

    RUN_DIR may also be a folder written by save_pretrained or `msrnn-zoo convert`: its weights and config go
    with a card describing the model."""
    import tempfile

    from .card import render_card, write_card
    from .evaluate import load_run, metrics_name, run_weights
    from .hub import CONFIG_NAME, WEIGHTS_NAME, check_repo_id

    if repo_id and repo_id_arg and repo_id != repo_id_arg:
        raise ValueError(f"Two repo ids given ({repo_id_arg!r} and --repo-id {repo_id!r}); give one.")
    repo_id = repo_id or repo_id_arg
    if not repo_id:
        raise ValueError("Say where to push: --repo-id USER/NAME.")
    check_repo_id(repo_id)  # before the card is rendered and the pictures drawn
    if card_path is not None and license is not None:  # the card given is pushed as it is: --license did nothing
        raise ValueError(f"--license applies to the card msrnn-zoo renders, and --card pushes {card_path} as it is: "
                         "write the license in that card's YAML header (`license: ID`) and leave out --license, or "
                         "leave out --card.")
    if license is not None:
        license = check_license(license)
    if run_dir.is_file():  # else "No run directory at run/model.safetensors; train one with ... --out" that file
        raise NotADirectoryError(f"{run_dir} is a file; push takes the folder of a run or a saved model: "
                                 f"msrnn-zoo push {_q(run_dir.parent)} {_q(repo_id)}")
    if not (run_dir / "train_config.json").is_file():
        if (run_dir / CONFIG_NAME).is_file() or (run_dir / WEIGHTS_NAME).is_file():
            if weights != "last":
                raise ValueError(f"--weights {weights} picks among a run's weights; {run_dir} is a saved model, not a "
                                 "run of `msrnn-zoo train`: its one weights file is pushed without --weights.")
            _push_model_folder(run_dir, repo_id, token, private, card_path, license)  # save_pretrained / convert
            return
        if run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir} holds neither a run (train_config.json, from `msrnn-zoo train`) nor "
                                    f"a saved model ({CONFIG_NAME} and {WEIGHTS_NAME}, from save_pretrained or "
                                    "`msrnn-zoo convert`): push one of those folders.")
    _, run_cfg = load_run(run_dir, "cpu", weights)  # a clear error for a directory that is not a finished run
    license = license or (DEFAULT_LICENSE if card_path else _folder_license(run_dir))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = write_card(run_dir, tmp / "README.md", repo_id, license=license, weights=weights)
        if card_path is not None:
            files["README.md"] = _checked_card(card_path, repo_id, run_dir)
        else:
            ours = files["README.md"].read_text(encoding="utf-8")
            _note_own_card_left(run_dir, repo_id, ours, license,
                                lambda named, chosen: render_card(run_dir, named, license=chosen, weights=weights))
        # the best weights go as the repo's model.safetensors, with their own metrics: never the last ones' beside
        files.update({WEIGHTS_NAME: run_weights(run_dir, weights), CONFIG_NAME: run_dir / CONFIG_NAME})
        for extra in ("recipe.json", "profile.json"):
            if (run_dir / extra).is_file():
                files[extra] = run_dir / extra
        if (run_dir / metrics_name("test", weights)).is_file():
            files["metrics-test.json"] = _public_metrics(run_dir / metrics_name("test", weights), tmp,
                                                         "metrics-test.json")
        _upload_replacing(repo_id, files, token, private, f"Upload {run_dir.name} with msrnn-zoo")
    console.print(escape(f'Load it with: msrnn_zoo.create("{run_cfg.model}", pretrained="{repo_id}")'),
                  highlight=False)


def _folder_license(folder: Path) -> str:
    """The license a push without --license gives its card: the one the folder's README.md names (`card --license`
    or ``save_pretrained(license=...)`` chose it, and the user reviewed that card), else the default. Pushed as
    apache-2.0 instead, a card rendered with ``--license mit`` was published under another license than chosen."""
    from .card import card_license
    from .hub import CARD_NAME
    from .licenses import DEFAULT_LICENSE

    try:
        named = card_license((folder / CARD_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        named = None
    if named is None or named == DEFAULT_LICENSE:
        return DEFAULT_LICENSE
    console.print(escape(f"License {named}, as {folder / CARD_NAME} names it (--license chooses another)."),
                  highlight=False, soft_wrap=True)
    return named


def _note_own_card_left(folder: Path, repo_id: str, ours: str, license: str,
                        render: Callable[[str | None, str], str]) -> None:
    """Say, before the upload, that the folder's README.md will not be the repo's card when it is not simply a
    rendering of msrnn-zoo's (``ours``, the card rendered for ``repo_id`` under ``license``, or ``render(repo,
    license)`` for the repo and license it names): a card edited after `msrnn-zoo card`, or written by
    ``save_pretrained(card=...)``, was replaced on the Hub by a fresh one without a word (it is pushed with --card).
    A rendering under another license than ``license`` (--license) is said too: the repo gets another license."""
    from .card import card_license, is_our_rendering
    from .hub import CARD_NAME

    path = folder / CARD_NAME
    if not path.is_file():
        return
    try:
        text: str | None = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    # msrnn-zoo's own rendering, for some repo or for none (its load line then names a placeholder path): the fresh
    # card says the same, for this repo; the run is loaded again only for a card of another repo
    if text is not None and is_our_rendering(
            text, lambda name, chosen: ours if (name, chosen) == (repo_id, license) else render(name, chosen)):
        named = card_license(text)
        if named != license:
            err_console.print(escape(f"Note: {path} names license {named}, and the repo gets the card rendered now "
                                     f"with license {license} (--license). To push it with {named}: msrnn-zoo push "
                                     f"{_q(folder)} {_q(repo_id)} --license {named}"),
                              style="yellow", highlight=False, soft_wrap=True)
        return
    err_console.print(escape(f"Note: {path} is not pushed: it is not the card msrnn-zoo renders for this model "
                             "(edited, written by hand, or rendered before the run's metrics changed), so the repo "
                             f"gets a card rendered now. To push yours instead: msrnn-zoo push {_q(folder)} "
                             f"{_q(repo_id)} --card {_q(path)}"), style="yellow", highlight=False, soft_wrap=True)


def _checked_card(card_path: Path, repo_id: str, run_dir: Path) -> Path:
    """A card the user rendered (and perhaps edited) may be pushed only to the repo its load lines name; one
    without load lines (written by hand) goes as it is."""
    from .card import card_repos

    if not card_path.is_file():
        raise FileNotFoundError(f"No card at {card_path}: --card takes a Markdown file (`msrnn-zoo card RUN "
                                f"--repo-id {repo_id}` renders one to edit).")
    try:  # the Hub reads a card as UTF-8: another encoding failed the push after creating the repo, empty
        text = card_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{card_path} is not UTF-8 text ({exc.reason} at byte {exc.start}): --card takes a Markdown "
                         "file; save it as UTF-8 (or check that it is the card you meant).") from exc
    others = sorted(card_repos(text) - {repo_id})
    if others:
        is_run = (run_dir / "train_config.json").is_file()
        fix = (f"Render it again with `msrnn-zoo card {_q(run_dir)} --repo-id {_q(repo_id)} --force`" if is_run else
               f'Change them to pretrained="{repo_id}", or leave out --card for a card generated for the repo')
        raise ValueError(f"{card_path} loads from {', '.join(map(repr, others))} (its pretrained= lines), not from "
                         f"{repo_id!r}, where it would be pushed. {fix}.")
    return card_path


def _push_model_folder(folder: Path, repo_id: str, token: str | None, private: bool, card_path: Path | None,
                       license: str | None) -> None:
    """Push a folder written by save_pretrained or `msrnn-zoo convert`: weights, config and a card for the repo
    (under ``license``; None: the one the folder's card names, else the default)."""
    import tempfile

    from .card import _model_name, render_model_card
    from .hub import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME
    from .network import Forecaster

    model = Forecaster.from_pretrained(folder)
    license = license or (DEFAULT_LICENSE if card_path else _folder_license(folder))
    with tempfile.TemporaryDirectory() as tmp_name:
        card = Path(tmp_name) / CARD_NAME
        ours = render_model_card(model, repo_id, license)
        card.write_text(ours, encoding="utf-8")
        if card_path is not None:
            card = _checked_card(card_path, repo_id, folder)
        else:
            _note_own_card_left(folder, repo_id, ours, license,
                                lambda named, chosen: render_model_card(model, named, chosen))
        files = {WEIGHTS_NAME: folder / WEIGHTS_NAME, CONFIG_NAME: folder / CONFIG_NAME, CARD_NAME: card}
        _upload_replacing(repo_id, files, token, private, f"Upload {folder.name} with msrnn-zoo")
    console.print(escape(f'Load it with: msrnn_zoo.create("{_model_name(model)}", pretrained="{repo_id}")'),
                  highlight=False)


@main.command()
@click.argument("repo_id")
@click.option("--revision", default=None, help="A branch, tag or commit id (default: main).")
@click.option("--token", default=None, help="Hub token for private repos.")
@click.option("--force", is_flag=True, help="Download again even if the cache holds the files.")
@friendly
def pull(repo_id: str, revision: str | None, token: str | None, force: bool) -> None:
    """Download a Hub repo's model into the local cache (checked), so it loads offline afterwards.

    REPO_ID is a Hub repo (user/name) or a checkpoint of the pretrained catalogue (ms-motionrnn.kth)."""
    from .card import _model_name
    from .hub import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, _where, download_files
    from .network import Forecaster

    if repo_id.startswith((".", "/", "~")) or ("/" not in repo_id and "." not in repo_id and Path(repo_id).is_dir()):
        raise ValueError(f"{repo_id!r} is a local path, and pull downloads a Hub repo (user/name) into the cache. "
                         f'A local folder loads as it is: msrnn_zoo.create(MODEL, pretrained="{repo_id}").')
    if "/" not in repo_id and "." in repo_id:  # MODEL.TAG: the catalogue says where it lives
        from .factory import split_tag
        from .registry import get_model

        model_name, tag = split_tag(repo_id)
        record = get_model(model_name).pretrained.get(tag or "")
        if record is None:
            raise ValueError(f"{repo_id!r} is not in the pretrained catalogue (`msrnn-zoo list --pretrained`) and "
                             "not a Hub repo id like 'user/model'.")
        if not record.published:
            raise ValueError(record.not_published_message())
        repo_id, revision = record.repo_id, revision or record.revision or None

    paths, commit = download_files(repo_id, (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME), revision=revision, token=token,
                                   force_download=force, optional=(CARD_NAME,), from_hub=True)
    # from the files just pulled: by its name, a folder spelled like the repo here would be read in its place
    origin = _where(repo_id, revision) + (f" (commit {commit[:7]})" if commit else "")
    model = Forecaster._from_files(paths[CONFIG_NAME], paths[WEIGHTS_NAME], origin)
    name = _model_name(model)
    where = paths[WEIGHTS_NAME].parent
    console.print(f"Pulled [bold]{escape(repo_id)}[/bold]" + (f" at commit {commit[:7]}" if commit else "") +
                  escape(f" into {where}: {name}, {sum(p.numel() for p in model.parameters()):,} parameters."),
                  highlight=False)
    pin = f', revision="{revision}"' if revision else ""
    console.print(escape(f'Load it (offline too) with: msrnn_zoo.create("{name}", pretrained="{repo_id}"{pin})'),
                  highlight=False)
    if Path(repo_id).is_dir():
        err_console.print(escape(f"Note: from this working directory, pretrained=\"{repo_id}\" loads the folder "
                                 f"{repo_id} here instead (a local folder wins over a Hub repo of the same name); load "
                                 "the repo from another folder, or rename that one."), highlight=False, soft_wrap=True)


@main.command()
@click.argument("checkpoint", type=FILE_PATH)
@click.option("--model", "model_name", required=True, help="The zoo model the checkpoint is of (e.g. ms-predrnn).")
@click.option("--out", type=PATH, required=True, help="Directory to write the model into.")
@click.option("--hidden", "hidden_channels", type=POSITIVE, default=None,
              help="Hidden channels (read from the checkpoint; given, it must agree).")
@click.option("--layers", "num_layers", type=POSITIVE, default=None, help="Layers (read from the checkpoint).")
@click.option("--in-channels", type=POSITIVE, default=None, help="Frame channels (read from the checkpoint).")
@click.option("--kernel-size", type=POSITIVE, default=3, show_default=True)
@click.option("--option", "options", multiple=True, help="A cell option KEY=VALUE (repeatable).")
@click.option("--reference", type=FILE_PATH, default=None,
              help="A safetensors file with `input` (T, B, C, H, W) and the original's `output` (T-1, B, C, H, W) "
                   "to check parity against (the format of the zoo's parity fixtures).")
@click.option("--in-len", type=POSITIVE, default=None, help="Context frames of --reference (default: its metadata).")
@click.option("--size", type=POSITIVE, default=64, show_default=True, help="Frame size of the forward check.")
@click.option("--force", is_flag=True, help="Overwrite a model already in --out.")
@friendly
def convert(checkpoint: Path, model_name: str, out: Path, hidden_channels: int | None, num_layers: int | None,
            in_channels: int | None, kernel_size: int, options: tuple[str, ...], reference: Path | None,
            in_len: int | None, size: int, force: bool) -> None:
    """Convert a checkpoint of the original MS-RNN code (.pth) into a folder `create(pretrained=DIR)` loads."""
    from .convert import check_conversion, fitting_equally, from_original, read_state_dict

    config = {k: v for k, v in {"hidden_channels": hidden_channels, "num_layers": num_layers,
                                "in_channels": in_channels}.items() if v is not None}
    config.update(kernel_size=kernel_size, **_parse_options(options, owned=_flags_instead(_MODEL_FLAGS)))
    state = read_state_dict(checkpoint)
    model = from_original(state, model_name, **config)
    report = check_conversion(model, model_name, out, size=size, reference=reference, in_len=in_len, force=force)
    twins = fitting_equally(state, model_name, **config) if reference is None else []
    if twins:
        report["caution"] = (f"the checkpoint fits {' and '.join(twins)} as well (a schedule has no weights): only "
                             "the original's class name or its outputs tell which it is; make sure it was "
                             f"{model_name}'s, or check it with --reference (a file of the original's outputs)")
    table = Table(title=escape(f"{checkpoint.name} -> {out}"), show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in report.items():
        table.add_row(escape(key), escape(str(value)))
    print_table(table)
    console.print(escape(f'Load it with: msrnn_zoo.create("{model_name}", pretrained="{out}")'), highlight=False)


convert.memory_options = ("--size",)  # type: ignore[attr-defined]  # its --hidden and --layers are the checkpoint's


if __name__ == "__main__":  # torchrun --nproc_per_node N -m msrnn_zoo.cli train ...
    main()
